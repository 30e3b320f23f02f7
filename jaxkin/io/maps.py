"""Parametric maps on a PET image's grid: their BIDS names, reading one, writing one with its sidecar atomically."""

from __future__ import annotations

import contextlib
import shlex
import sys
from pathlib import Path

import numpy as np

from jaxkin._version import __version__
from jaxkin.errors import InputError
from jaxkin.io.files import (
    AFFINE_ATOL,
    atomic_write,
    one_line,
    open_nifti,
    sidecar_of,
    write_json,
)
from jaxkin.io.pet import PetImage


def read_volume(path, pet: PetImage, *, check_affine: bool = True, dtype=np.float32) -> np.ndarray:
    """A 3D image on the grid of ``pet`` (a mask, a parametric map) as an array ``[X, Y, Z]`` of ``dtype``.

    A trailing axis of length 1 is dropped. InputError if the shape (or, with ``check_affine``, the affine)
    differs from the PET image's, or if the data cannot be read."""
    path = Path(path)
    image = open_nifti(path)
    shape = tuple(int(s) for s in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if shape != tuple(pet.shape[:3]):
        raise InputError(f"{path}: shape {shape} differs from the PET image {pet.path.name} {tuple(pet.shape[:3])}")
    if check_affine and not np.allclose(image.affine, pet.affine, atol=AFFINE_ATOL, rtol=0):
        raise InputError(f"{path}: affine differs from the PET image {pet.path.name}; resample it to the PET grid")
    try:
        return np.asarray(image.dataobj, dtype).reshape(shape)
    except Exception as err:
        raise InputError(f"{path}: cannot read image data ({one_line(err)})") from None


def map_path(out_dir, prefix: str, model: str, param: str) -> Path:
    """``out_dir / f"{prefix}_model-{model}_meas-{param}_mimap.nii.gz"``."""
    return Path(out_dir) / f"{prefix}_model-{model}_meas-{param}_mimap.nii.gz"


def _map_image(reference: PetImage, model: str, param: str, values):
    """The NIfTI image of a map ``values [X, Y, Z]`` (float32) on the grid of ``reference``: its affine, qform/sform
    codes, voxel sizes and spatial units."""
    import nibabel as nib

    ref_header = reference.image.header
    header = ref_header.copy()
    header.set_data_dtype(np.float32)
    header.set_data_shape(values.shape)
    header.set_zooms(tuple(ref_header.get_zooms()[:3]))
    image = nib.Nifti1Image(values, reference.affine, header=header)
    image.header.set_slope_inter(1.0, 0.0)
    qform, qcode = ref_header.get_qform(coded=True)
    sform, scode = ref_header.get_sform(coded=True)
    if qform is not None:
        image.header.set_qform(qform, code=int(qcode))
    if sform is not None:
        image.header.set_sform(sform, code=int(scode))
    image.header["descrip"] = f"jaxkin {model} {param}".encode()[:79]
    return image


def map_sidecar(reference: PetImage, model: str, param: str, *, units: str, command_line: str | None = None,
                extra: dict | None = None) -> dict:
    """The JSON sidecar of a map: ``ModelName``, ``Parameter``, ``Units``, ``SoftwareName``, ``SoftwareVersion``,
    ``CommandLine`` (default: this process's command line), ``Sources`` and anything in ``extra``."""
    sidecar = {
        "ModelName": model,
        "Parameter": param,
        "Units": units,
        "SoftwareName": "jaxkin",
        "SoftwareVersion": __version__,
        "CommandLine": command_line if command_line is not None else shlex.join(sys.argv),
        "Sources": [reference.path.name],
    }
    sidecar.update(extra or {})
    return sidecar


def write_map(out_dir, prefix: str, model: str, param: str, values, *, reference: PetImage, units: str,
              command_line: str | None = None, extra: dict | None = None) -> Path:
    """Write one parametric map ``values [X, Y, Z]`` (float32) on the grid of ``reference``, with a JSON sidecar.

    The image keeps the reference's affine, qform/sform codes, voxel sizes and spatial units. The sidecar is
    :func:`map_sidecar`'s. Both files are written to temporary names in ``out_dir`` and then renamed, so a reader
    never sees half a file.
    """
    import nibabel as nib

    values = np.asarray(values, dtype=np.float32)
    if values.shape != tuple(reference.shape[:3]):
        raise ValueError(f"write_map: values {values.shape} must have the PET's spatial shape {reference.shape[:3]}")
    path = map_path(out_dir, prefix, model, param)
    image = _map_image(reference, model, param, values)
    with atomic_write(path) as tmp:
        nib.save(image, str(tmp))
    write_json(sidecar_of(path), map_sidecar(reference, model, param, units=units, command_line=command_line,
                                             extra=extra))
    return path


@contextlib.contextmanager
def map_streams(out_dir, prefix: str, maps, *, reference: PetImage):
    """Write the maps ``maps`` (``(model, param)`` pairs) on the grid of ``reference`` slab by slab, never holding a
    whole one: yields ``write(model, param, z, values)`` to call with the values ``[X, Y, len(z)]`` (float32) of
    each map's axial slices ``z``, in order from the first slice to the last. Each map is one gzip stream (the
    NIfTI header of :func:`write_map`, then its slabs: a NIfTI stores the axial slices one after the other) under a
    temporary name, renamed when the block ends with every slice written; on an error or an interruption every one
    is removed. The sidecars are not written here (:func:`map_sidecar`)."""
    import gzip

    out_dir = Path(out_dir)
    shape = tuple(int(s) for s in reference.shape[:3])
    with contextlib.ExitStack() as stack:
        streams = {}
        for model, param in maps:
            tmp = stack.enter_context(atomic_write(map_path(out_dir, prefix, model, param)))
            f = stack.enter_context(gzip.GzipFile(tmp, "wb", compresslevel=1, mtime=0))
            header = _map_image(reference, model, param, np.broadcast_to(np.float32(0), shape)).header
            header.write_to(f)
            f.write(b"\0" * (int(header.get_data_offset()) - f.tell()))
            streams[model, param] = [f, header.get_data_dtype(), 0]

        def write(model: str, param: str, z: slice, values) -> None:
            stream = streams[model, param]
            if z.start != stream[2] or np.shape(values) != (*shape[:2], z.stop - z.start):
                raise ValueError(f"map_streams: slices {z.start}:{z.stop} of {model} {param} out of order")
            stream[0].write(np.asarray(values).astype(stream[1], copy=False).tobytes(order="F"))
            stream[2] = z.stop

        yield write
        short = [f"{m} {p}" for (m, p), stream in streams.items() if stream[2] != shape[2]]
        if short:
            raise RuntimeError(f"map_streams: maps {', '.join(short)} not written to their last slice")
