"""BIDS-PET files: read a dynamic PET scan, its input function and label map; write parametric maps.

Everything here is the file boundary of jaxkin: files carry seconds and the units of their sidecar
(``Bq/mL``, ``kBq/mL``, ``MBq/mL``); what these functions return is in minutes and kBq/ml.

* :func:`load_pet` opens ``*_pet.nii.gz`` (or ``.nii``) with its sidecar ``*_pet.json`` lazily (a nibabel
  proxy): nothing but the header is read until :meth:`PetImage.read` asks for some axial slices.
* :func:`load_input_function` reads a TSV with a ``time`` column (seconds) and one activity column.
* :func:`load_labels` reads ``*_dseg.nii.gz`` with its label table ``*_dseg.tsv`` (``index``, ``name``).
* :func:`write_map` writes ``<prefix>_model-<model>_meas-<param>_mimap.nii.gz`` and its JSON sidecar atomically.
* :func:`image_derived_input` averages the TAC inside a label, e.g. the aorta.

Every problem with a file raises :class:`jaxkin.errors.InputError`, one line naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path

import numpy as np

from jaxkin.data.files import (
    atomic_write,
    nifti_stem,
    one_line,
    open_nifti,
    read_json,
    read_tsv,
    write_json,
)
from jaxkin.decay import HALF_LIVES_MIN, decay_factors, half_life
from jaxkin.errors import InputError
from jaxkin.frames import FrameSchedule
from jaxkin.input_function import InputFunction

__all__ = [
    "PetImage",
    "Labels",
    "load_pet",
    "load_input_function",
    "write_input_function",
    "load_labels",
    "write_labels",
    "write_pet",
    "map_path",
    "read_volume",
    "slabs",
    "tracer_half_life",
    "write_map",
    "image_derived_input",
    "finite_voxel_mask",
    "units_to_kbq",
    "INPUT_COLUMNS",
]

#: Activity columns of an input-function TSV, in the order they are preferred when several are present.
INPUT_COLUMNS: tuple[str, ...] = ("AIF", "plasma_radioactivity", "whole_blood_radioactivity")

_ACTIVITY_UNITS = {"bq": 1e-3, "kbq": 1.0, "mbq": 1e3}
_VOLUME_UNITS = ("ml", "cc", "cm3")
_TIME_UNITS_TO_MIN = {"s": 1.0 / 60.0, "sec": 1.0 / 60.0, "second": 1.0 / 60.0, "seconds": 1.0 / 60.0,
                      "min": 1.0, "minute": 1.0, "minutes": 1.0}
# Geometry tolerance for "same grid": affines may differ by float32 rounding of the header.
_AFFINE_ATOL = 1e-3


def units_to_kbq(units, *, where: str = "Units") -> float:
    """The factor that turns values in ``units`` into kBq/ml: ``Bq/mL`` -> 1e-3, ``kBq/mL`` -> 1, ``MBq/mL`` -> 1e3.

    Case-insensitive; ``mL``, ``ml``, ``cc`` and ``cm3`` are all accepted. Anything else raises
    :class:`InputError` with ``where`` (the file and field) in the message.
    """
    if isinstance(units, str):
        text = units.strip().lower().replace(" ", "")
        if "/" in text:
            activity, volume = text.split("/", 1)
            if activity in _ACTIVITY_UNITS and volume in _VOLUME_UNITS:
                return _ACTIVITY_UNITS[activity]
    raise InputError(f"{where}: unknown units {units!r}; use Bq/mL, kBq/mL or MBq/mL")


# --------------------------------------------------------------------------------------------------
# PET image
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class PetImage:
    """A 4D BIDS PET image ``[X, Y, Z, F]`` opened lazily, with its frame timing and units.

    ``frames`` are in minutes; ``scale_to_kbq`` turns file values into kBq/ml. ``image`` is the nibabel image
    whose ``dataobj`` is a lazy proxy: use :meth:`read` to get kBq/ml for some axial slices.
    ``decay_factors [F]`` (None when the file is decay corrected) decay-correct each frame mean to t = 0 of the frame
    times; :meth:`read` applies them, so what it returns is always decay corrected, as the kinetic models assume.
    """

    path: Path
    frames: FrameSchedule
    units: str
    scale_to_kbq: float
    decay_corrected: bool
    affine: np.ndarray
    shape: tuple
    sidecar: dict
    image: object
    decay_factors: np.ndarray | None = None

    @property
    def prefix(self) -> str:
        """The file name without ``_pet.nii.gz`` (or ``_pet.nii``): the stem of derived files."""
        return nifti_stem(self.path).removesuffix("_pet")

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel size in mm (from the header zooms)."""
        return tuple(float(z) for z in self.image.header.get_zooms()[:3])

    @property
    def sidecar_path(self) -> Path:
        return self.path.with_name(nifti_stem(self.path) + ".json")

    def read(self, z: slice = slice(None), dtype=np.float32) -> np.ndarray:
        """Activity in kBq/ml of the axial slices ``z`` -> ``[X, Y, Zsel, F]`` (only those slices are read).

        NaN/Inf voxels are returned as they are; see :func:`finite_voxel_mask`.
        """
        if isinstance(z, int):
            z = slice(z, z + 1)
        try:
            data = np.asarray(self.image.dataobj[:, :, z, :])
        except Exception as err:  # EOFError, zlib.error, OSError ... from a damaged file
            raise InputError(f"{self.path}: cannot read image data ({one_line(err)})") from None
        data = data.astype(dtype, copy=False)
        if self.decay_factors is not None:
            return data * (self.scale_to_kbq * self.decay_factors).astype(data.dtype)
        if self.scale_to_kbq != 1.0:
            data = data * np.asarray(self.scale_to_kbq, dtype=data.dtype)
        return data

    def slabs(self, slab: int = 16, z: slice | None = None):
        """Iterate ``(z_slice, data [X, Y, z, F] kBq/ml)`` over the volume, ``slab`` axial slices at a time."""
        return slabs(self, slab, z)


def slabs(volume, slab: int = 16, z: slice | None = None):
    """Iterate ``(z_slice, data [X, Y, z, F])`` over the axial slices ``z`` (default all) of ``volume``, ``slab``
    slices at a time; ``z_slice`` counts from ``z.start``. ``volume`` is a :class:`PetImage` (read lazily, kBq/ml)
    or an array ``[X, Y, Z, F]`` (returned as float32)."""
    z = slice(0, volume.shape[2]) if z is None else z
    for z0 in range(z.start, z.stop, slab):
        zs = slice(z0, min(z0 + slab, z.stop))
        data = volume.read(zs) if hasattr(volume, "read") else np.asarray(volume[:, :, zs], np.float32)
        yield slice(zs.start - z.start, zs.stop - z.start), data


def tracer_half_life(sidecar: dict, where: Path, *, default: float | None = None) -> float:
    """The half-life (min) of the sidecar's ``TracerRadionuclide``; ``default`` when the field is absent (if given).

    InputError naming the field when it is absent without a default, or names an unknown radionuclide."""
    name = sidecar.get("TracerRadionuclide")
    if name is None and default is not None:
        return default
    try:
        return half_life(name)
    except ValueError:
        raise InputError(
            f"{where}: field 'TracerRadionuclide' is {name!r}; decay correcting an image with "
            f"ImageDecayCorrected false needs one of {', '.join(HALF_LIVES_MIN)}"
        ) from None


def _sidecar_field(sidecar: dict, key: str, where: Path):
    if key not in sidecar:
        raise InputError(f"{where}: missing required field {key!r}")
    return sidecar[key]


def _number_list(value, key: str, where: Path) -> np.ndarray:
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}: field {key!r} must be a non-empty list of numbers")
    try:
        out = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: field {key!r} must be a list of numbers") from None
    if out.ndim != 1 or not np.all(np.isfinite(out)):
        raise InputError(f"{where}: field {key!r} must be a list of finite numbers")
    return out


def frames_from_sidecar(sidecar: dict, where: Path) -> FrameSchedule:
    """The frame schedule from ``FrameTimesStart`` and ``FrameDuration`` (seconds) of a PET sidecar."""
    start = _number_list(_sidecar_field(sidecar, "FrameTimesStart", where), "FrameTimesStart", where)
    duration = _number_list(_sidecar_field(sidecar, "FrameDuration", where), "FrameDuration", where)
    if start.shape != duration.shape:
        raise InputError(
            f"{where}: 'FrameTimesStart' has {start.shape[0]} entries but 'FrameDuration' has {duration.shape[0]}"
        )
    if np.any(duration <= 0):
        i = int(np.argmax(duration <= 0))
        raise InputError(f"{where}: 'FrameDuration' must be positive; frame {i} has {duration[i]:g} s")
    if np.any(np.diff(start) <= 0):
        i = int(np.argmax(np.diff(start) <= 0)) + 1
        raise InputError(
            f"{where}: 'FrameTimesStart' must be strictly increasing; frame {i} starts at {start[i]:g} s, "
            f"not after frame {i - 1} ({start[i - 1]:g} s)"
        )
    end = start + duration
    overlap = start[1:] < end[:-1] - 1e-3  # 1 ms of rounding allowed
    if np.any(overlap):
        i = int(np.argmax(overlap)) + 1
        raise InputError(
            f"{where}: frames overlap ('FrameTimesStart' + 'FrameDuration'): frame {i} starts at {start[i]:g} s, "
            f"before frame {i - 1} ends at {end[i - 1]:g} s"
        )
    try:
        return FrameSchedule.from_seconds(start, duration)
    except ValueError as err:
        raise InputError(f"{where}: {err}") from None


def load_pet(path) -> PetImage:
    """Open a 4D BIDS PET image (``*_pet.nii.gz`` or ``*_pet.nii``) and validate it against its ``*_pet.json``.

    Checks: the sidecar exists; ``FrameTimesStart``, ``FrameDuration`` (s), ``Units`` and ``ImageDecayCorrected``
    are present and valid (with ``ImageDecayCorrected`` false, ``TracerRadionuclide`` too: :meth:`PetImage.read`
    then decay-corrects to t = 0 of the frame times); frames increase, do not overlap and have positive durations; the frame count equals
    the 4th dimension; the file is complete. Voxel data are not read (see :meth:`PetImage.read`).
    """
    path = Path(path)
    stem = nifti_stem(path)
    sidecar_path = path.with_name(stem + ".json")
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if not sidecar_path.is_file():
        raise InputError(f"{path}: missing BIDS sidecar {sidecar_path.name}")
    sidecar = read_json(sidecar_path, "BIDS sidecar")
    frames = frames_from_sidecar(sidecar, sidecar_path)
    units = _sidecar_field(sidecar, "Units", sidecar_path)
    scale = units_to_kbq(units, where=f"{sidecar_path}: field 'Units'")
    decay_corrected = _sidecar_field(sidecar, "ImageDecayCorrected", sidecar_path)
    if not isinstance(decay_corrected, bool):
        raise InputError(f"{sidecar_path}: field 'ImageDecayCorrected' must be true or false, not {decay_corrected!r}")
    factors = None if decay_corrected else decay_factors(frames, tracer_half_life(sidecar, sidecar_path))
    image = open_nifti(path)
    shape = tuple(int(s) for s in image.shape)
    if len(shape) != 4:
        raise InputError(f"{path}: expected a 4D image [X, Y, Z, frames], got shape {shape}")
    if shape[3] != frames.n_frames:
        raise InputError(
            f"{sidecar_path}: 'FrameTimesStart' lists {frames.n_frames} frames but {path.name} has "
            f"{shape[3]} frames (4th dimension)"
        )
    return PetImage(
        path=path,
        frames=frames,
        units=str(units),
        scale_to_kbq=float(scale),
        decay_corrected=decay_corrected,
        affine=np.array(image.affine, dtype=np.float64),
        shape=shape,
        sidecar=sidecar,
        image=image,
        decay_factors=factors,
    )


def write_pet(path, data, frames: FrameSchedule, affine, *, units: str = "kBq/mL", sidecar: dict | None = None,
              voxel_size=None) -> Path:
    """Write a 4D PET image ``data [X, Y, Z, F]`` (in ``units``, written as float32) and its ``*_pet.json``.

    The sidecar gets ``FrameTimesStart``/``FrameDuration`` in seconds (rounded to 1 us), ``Units``,
    ``ImageDecayCorrected`` (true unless ``sidecar`` says otherwise) and whatever ``sidecar`` adds. Atomic.
    """
    import nibabel as nib

    path = Path(path)
    stem = nifti_stem(path)
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 4 or data.shape[3] != frames.n_frames:
        raise ValueError(f"write_pet: data {data.shape} must be [X, Y, Z, {frames.n_frames}]")
    units_to_kbq(units, where="write_pet: units")
    image = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    header = image.header
    header.set_xyzt_units("mm", "sec")
    zooms = voxel_size if voxel_size is not None else np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    header.set_zooms(tuple(float(z) for z in zooms) + (1.0,))
    header.set_qform(image.affine, code=1)
    header.set_sform(image.affine, code=1)
    meta = {
        "Modality": "PT",
        "Units": units,
        "ImageDecayCorrected": True,
        "FrameTimesStart": [round(float(s), 6) for s in frames.start_seconds],
        "FrameDuration": [round(float(d), 6) for d in frames.duration_seconds],
    }
    meta.update(sidecar or {})
    with atomic_write(path) as tmp:
        nib.save(image, str(tmp))
    write_json(path.with_name(stem + ".json"), meta)
    return path


def finite_voxel_mask(pet: PetImage, slab: int = 16) -> np.ndarray:
    """``bool [X, Y, Z]``: True where every frame of the voxel is finite. Reads the image slab by slab.

    Fitting and prediction exclude (and report) the voxels where this is False instead of fitting NaN/Inf.
    """
    mask = np.empty(pet.shape[:3], dtype=bool)
    for zs, data in pet.slabs(slab):
        mask[:, :, zs] = np.all(np.isfinite(data), axis=-1)
    return mask


def nonfinite_message(pet: PetImage, mask: np.ndarray) -> str | None:
    """A one-line report of the voxels excluded for NaN/Inf values, or None if there are none."""
    bad = int(mask.size - np.count_nonzero(mask))
    if bad == 0:
        return None
    return f"{pet.path}: {bad} voxel(s) with NaN or Inf values excluded"


# --------------------------------------------------------------------------------------------------
# Input function TSV
# --------------------------------------------------------------------------------------------------


def _numeric_column(path: Path, header: list[str], rows: list[list[str]], name: str) -> np.ndarray:
    j = header.index(name)
    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        text = row[j].strip()
        try:
            out[i] = float(text)
        except ValueError:
            raise InputError(f"{path}: column {name!r}, line {i + 2}: {text!r} is not a number") from None
        if not np.isfinite(out[i]):
            raise InputError(f"{path}: column {name!r}, line {i + 2}: {text!r} is not a finite number")
    return out


def _column_units(sidecar: dict | None, column: str) -> str | None:
    """Units of a TSV column from a BIDS sidecar: ``{"col": {"Units": ...}}`` (or a top-level ``Units``)."""
    if not sidecar:
        return None
    entry = sidecar.get(column)
    if isinstance(entry, dict) and "Units" in entry:
        return entry["Units"]
    if column != "time" and "Units" in sidecar:
        return sidecar["Units"]
    return None


def load_input_function(path, *, pet: PetImage | None = None, column: str | None = None) -> InputFunction:
    """An input function from a TSV: ``time`` (s) and one activity column -> :class:`InputFunction` (min, kBq/ml).

    The activity column is ``column`` or the first of ``AIF``, ``plasma_radioactivity``,
    ``whole_blood_radioactivity`` present. Its units come from a JSON sidecar beside the TSV (same stem,
    ``{"<column>": {"Units": "kBq/mL"}}``), else from ``pet``'s units; the time units likewise (default s).
    With ``pet``, the curve must cover the scan (start at or before the first frame, end at or after the last).
    """
    path = Path(path)
    header, rows = read_tsv(path)
    if "time" not in header:
        raise InputError(f"{path}: missing column 'time' (seconds)")
    if column is None:
        present = [c for c in INPUT_COLUMNS if c in header]
        if not present:
            raise InputError(f"{path}: no activity column; expected one of {', '.join(INPUT_COLUMNS)}")
        column = present[0]
    elif column not in header:
        raise InputError(f"{path}: missing column {column!r}")
    if len(rows) < 2:
        raise InputError(f"{path}: at least two samples are needed, found {len(rows)}")
    sidecar_path = path.with_suffix(".json")
    sidecar = read_json(sidecar_path, "sidecar") if sidecar_path.is_file() else None
    units = _column_units(sidecar, column)
    if units is not None:
        scale = units_to_kbq(units, where=f"{sidecar_path}: field '{column}.Units'")
    elif pet is not None:
        scale = pet.scale_to_kbq
    else:
        raise InputError(
            f"{path}: units of column {column!r} unknown: add a JSON sidecar {sidecar_path.name} with "
            f'{{"{column}": {{"Units": "kBq/mL"}}}} or give the PET image'
        )
    time_units = _column_units(sidecar, "time") or "s"
    time_key = str(time_units).strip().lower()
    if time_key not in _TIME_UNITS_TO_MIN:
        raise InputError(f"{sidecar_path}: field 'time.Units': unknown time unit {time_units!r}; use s or min")
    times = _numeric_column(path, header, rows, "time") * _TIME_UNITS_TO_MIN[time_key]
    values = _numeric_column(path, header, rows, column) * scale
    if np.any(np.diff(times) <= 0):
        i = int(np.argmax(np.diff(times) <= 0)) + 1
        raise InputError(
            f"{path}: column 'time' must be strictly increasing; line {i + 2} is not after line {i + 1}"
        )
    input_function = InputFunction(times, values)
    if pet is not None:
        check_covers(input_function, pet.frames, where=path)
    return input_function


def check_covers(input_function: InputFunction, frames: FrameSchedule, *, where) -> None:
    """InputError unless ``input_function`` spans the scan ``frames`` (a 1 ms tolerance)."""
    tol = 1e-3 / 60.0
    if input_function.end < frames.end[-1] - tol:
        raise InputError(
            f"{where}: column 'time': the input function ends at {input_function.end * 60:g} s but the scan "
            f"ends at {frames.end[-1] * 60:g} s; it must cover the whole scan"
        )
    if input_function.start > frames.start[0] + tol:
        raise InputError(
            f"{where}: column 'time': the input function starts at {input_function.start * 60:g} s, after the "
            f"first frame starts ({frames.start[0] * 60:g} s)"
        )


def write_input_function(path, input_function: InputFunction, *, units: str = "kBq/mL", column: str = "AIF") -> Path:
    """Write ``input_function`` as a TSV (``time`` in s, ``column`` in ``units``) with a JSON sidecar of units.

    Values are converted from kBq/ml to ``units``; times from minutes to seconds. Both files written atomically.
    """
    path = Path(path)
    scale = units_to_kbq(units, where="write_input_function: units")
    times_s = input_function.times * 60.0
    values = input_function.values / scale
    lines = [f"time\t{column}"] + [f"{t!r}\t{v!r}" for t, v in zip(times_s.tolist(), values.tolist())]
    with atomic_write(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json(
        path.with_suffix(".json"),
        {
            "time": {"Description": "time after injection", "Units": "s"},
            column: {"Description": "input function (arterial plasma = whole blood)", "Units": units},
        },
    )
    return path


# --------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Labels:
    """A label map ``data int [X, Y, Z]`` and its table ``names`` (index -> name; 0 is background)."""

    data: np.ndarray
    names: dict
    affine: np.ndarray | None = None
    path: Path | None = None

    def index(self, name: str) -> int:
        for i, n in self.names.items():
            if n == name:
                return int(i)
        raise InputError(
            f"{self.path or 'labels'}: no label named {name!r}; the table has {', '.join(self.names.values())}"
        )

    def mask(self, *names: str) -> np.ndarray:
        """``bool [X, Y, Z]``: voxels carrying any of the labels ``names``."""
        return np.isin(self.data, [self.index(n) for n in names])


def label_table_path(path) -> Path:
    """The label table beside a label map: ``x_dseg.nii.gz`` -> ``x_dseg.tsv``."""
    path = Path(path)
    return path.with_name(nifti_stem(path) + ".tsv")


def load_labels(path, *, pet: PetImage | None = None, table=None) -> Labels:
    """A label map ``*_dseg.nii.gz`` and its table (``table`` or ``*_dseg.tsv`` beside it: ``index``, ``name``).

    With ``pet``, the map must have the PET's spatial shape and affine.
    """
    path = Path(path)
    table = Path(table) if table is not None else label_table_path(path)
    image = open_nifti(path)
    shape = tuple(int(s) for s in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(f"{path}: expected a 3D label map, got shape {shape}")
    affine = np.array(image.affine, dtype=np.float64)
    if pet is not None:
        if shape != tuple(pet.shape[:3]):
            raise InputError(f"{path}: shape {shape} differs from the PET image {pet.path.name} {tuple(pet.shape[:3])}")
        if not np.allclose(affine, pet.affine, atol=_AFFINE_ATOL, rtol=0):
            raise InputError(
                f"{path}: affine differs from the PET image {pet.path.name} (max difference "
                f"{np.abs(affine - pet.affine).max():.4g} mm); resample the labels to the PET grid"
            )
    try:
        raw = np.asarray(image.dataobj).reshape(shape)
    except Exception as err:
        raise InputError(f"{path}: cannot read image data ({one_line(err)})") from None
    if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)) or np.any(raw < 0):
        raise InputError(f"{path}: label values must be non-negative integers")
    data = raw.astype(np.int32)
    header, rows = read_tsv(table)
    for key in ("index", "name"):
        if key not in header:
            raise InputError(f"{table}: missing column {key!r}")
    names = {}
    ji, jn = header.index("index"), header.index("name")
    for i, row in enumerate(rows, start=2):
        try:
            idx = int(row[ji])
        except ValueError:
            raise InputError(f"{table}: column 'index', line {i}: {row[ji]!r} is not an integer") from None
        if idx in names:
            raise InputError(f"{table}: column 'index', line {i}: index {idx} listed twice")
        names[idx] = row[jn].strip()
    unknown = sorted(set(np.unique(data).tolist()) - set(names) - {0})
    if unknown:
        raise InputError(f"{table}: label values {unknown[:10]} of {path.name} are not in the table")
    return Labels(data=data, names=names, affine=affine, path=path)


def write_labels(path, data, names: dict, affine) -> Path:
    """Write a label map ``data int [X, Y, Z]`` (uint8/int16) and its table ``*_dseg.tsv``, atomically."""
    import nibabel as nib

    path = Path(path)
    data = np.asarray(data)
    dtype = np.uint8 if data.max(initial=0) < 256 else np.int16
    image = nib.Nifti1Image(data.astype(dtype), np.asarray(affine, dtype=np.float64))
    image.header.set_xyzt_units("mm")
    image.header.set_qform(image.affine, code=1)
    image.header.set_sform(image.affine, code=1)
    with atomic_write(path) as tmp:
        nib.save(image, str(tmp))
    table = label_table_path(path)
    with atomic_write(table) as tmp:
        tmp.write_text("index\tname\n" + "".join(f"{i}\t{n}\n" for i, n in sorted(names.items())), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# Parametric maps
# --------------------------------------------------------------------------------------------------


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
    if check_affine and not np.allclose(image.affine, pet.affine, atol=_AFFINE_ATOL, rtol=0):
        raise InputError(f"{path}: affine differs from the PET image {pet.path.name}; resample it to the PET grid")
    try:
        return np.asarray(image.dataobj, dtype).reshape(shape)
    except Exception as err:
        raise InputError(f"{path}: cannot read image data ({one_line(err)})") from None


def map_path(out_dir, prefix: str, model: str, param: str) -> Path:
    """``out_dir / f"{prefix}_model-{model}_meas-{param}_mimap.nii.gz"``."""
    return Path(out_dir) / f"{prefix}_model-{model}_meas-{param}_mimap.nii.gz"


def write_map(out_dir, prefix: str, model: str, param: str, values, *, reference: PetImage, units: str,
              command_line: str | None = None, extra: dict | None = None) -> Path:
    """Write one parametric map ``values [X, Y, Z]`` (float32) on the grid of ``reference``, with a JSON sidecar.

    The image keeps the reference's affine, qform/sform codes, voxel sizes and spatial units. The sidecar has
    ``ModelName``, ``Parameter``, ``Units``, ``SoftwareName``, ``SoftwareVersion``, ``CommandLine`` (default: this
    process's command line), ``Sources`` and anything in ``extra``. Both files are written to temporary names in
    ``out_dir`` and then renamed, so a reader never sees half a file.
    """
    import nibabel as nib

    from jaxkin._version import __version__

    values = np.asarray(values, dtype=np.float32)
    if values.shape != tuple(reference.shape[:3]):
        raise ValueError(f"write_map: values {values.shape} must have the PET's spatial shape {reference.shape[:3]}")
    path = map_path(out_dir, prefix, model, param)
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
    with atomic_write(path) as tmp:
        nib.save(image, str(tmp))
    write_json(path.with_name(path.name[: -len(".nii.gz")] + ".json"), sidecar)
    return path


# --------------------------------------------------------------------------------------------------
# Image-derived input function
# --------------------------------------------------------------------------------------------------


def label_mean_tac(pet: PetImage, mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Mean TAC (kBq/ml, ``[F]``) over the finite voxels of ``mask [X, Y, Z]``, and the number of voxels used.

    Only the axial slices that contain the mask are read.
    """
    zs = np.flatnonzero(mask.any(axis=(0, 1)))
    if zs.size == 0:
        raise InputError(f"{pet.path}: the mask is empty")
    sl = slice(int(zs[0]), int(zs[-1]) + 1)
    data = pet.read(sl, dtype=np.float64)[mask[:, :, sl]]  # [V, F]
    finite = np.all(np.isfinite(data), axis=1)
    if not finite.any():
        raise InputError(f"{pet.path}: every voxel of the mask has NaN or Inf values")
    return data[finite].mean(axis=0), int(finite.sum())


def image_derived_input(pet: PetImage, labels: Labels, label: str) -> InputFunction:
    """The mean TAC inside ``label`` (e.g. ``"aorta"``) as an input function (min, kBq/ml).

    Voxels with NaN/Inf values are left out; see :func:`input_from_frame_means` for how the curve is built.
    """
    if labels.data.shape != tuple(pet.shape[:3]):
        raise InputError(f"{labels.path or 'labels'}: shape {labels.data.shape} differs from the PET image {pet.path.name}")
    tac, _ = label_mean_tac(pet, labels.mask(label))
    return input_from_frame_means(pet.frames, tac)


def input_from_frame_means(frames: FrameSchedule, tac) -> InputFunction:
    """An input function from frame means ``tac [F]`` (kBq/ml): samples at the frame mid times.

    The curve ramps from 0 at the scan start (injection) to the first sample and is extended to the end of the last
    frame by linear extrapolation of the last two samples (clipped at 0), so that it covers the scan.
    """
    tac = np.asarray(tac, dtype=np.float64)
    mid = frames.mid
    times, values = list(mid), list(tac)
    if frames.start[0] < mid[0]:
        times.insert(0, float(frames.start[0]))
        values.insert(0, 0.0)
    end = float(frames.end[-1])
    if len(mid) >= 2:
        slope = (tac[-1] - tac[-2]) / (mid[-1] - mid[-2])
        tail = max(tac[-1] + slope * (end - mid[-1]), 0.0)
    else:
        tail = tac[-1]
    times.append(end)
    values.append(tail)
    return InputFunction(np.array(times), np.array(values))
