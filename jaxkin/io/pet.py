"""A dynamic PET scan in BIDS-PET: read it lazily with its timing, decay and units; write one.

Files carry seconds and the units of their sidecar (``Bq/mL``, ``kBq/mL``, ``MBq/mL``); what these functions return
is in minutes since injection and kBq/ml. :func:`load_pet` opens ``*_pet.nii.gz`` (or ``.nii``) with its sidecar
``*_pet.json`` lazily (a nibabel proxy): nothing but the header is read until :meth:`PetImage.read` asks for some
axial slices. Every problem with a file raises :class:`jaxkin.errors.InputError`, one line naming the file and the
field.
"""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import numpy as np

from jaxkin.decay import HALF_LIVES_MIN, decay_factors, half_life
from jaxkin.errors import InputError
from jaxkin.frames import FrameProblem, FrameSchedule, frame_problem
from jaxkin.io.files import (
    atomic_write,
    nifti_stem,
    one_line,
    open_nifti,
    read_json,
    write_json,
)
from jaxkin.io.units import (
    ACTIVITY,
    Dose,
    dose_from_sidecar,
    read_value_units,
    units_to_kbq,
)

# --------------------------------------------------------------------------------------------------
# PET image
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class PetImage:
    """A 4D BIDS PET image ``[X, Y, Z, F]`` opened lazily, with its frame timing, units and decay correction.

    ``frames`` are in minutes **since injection** (``FrameTimesStart - InjectionStart``); ``injection_start`` is the
    injection in minutes relative to ``TimeZero`` (the origin of every time in the files). ``scale_to_kbq`` turns file
    values into kBq/ml (SUV and %ID/g converted with the sidecar's injected activity and body weight; where they
    cannot be, ``value_kind`` names the unit kept, which the blood must share). ``decay_factors [F]`` (None when the file is already decay corrected to the injection)
    bring each frame to decay correction at the injection, the reference shared with the blood data; :meth:`read`
    applies them. ``notes`` are the assumptions made while reading the sidecar, one sentence each (the commands
    print them and write them in the output sidecars). ``image`` is the nibabel image whose ``dataobj`` is a lazy
    proxy: use :meth:`read` to get kBq/ml for some axial slices.
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
    injection_start: float = 0.0
    half_life: float | None = None
    notes: tuple = ()
    decay_description: str = "decay corrected to the injection"
    value_kind: str = ACTIVITY
    dose: Dose | None = None

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

    def provenance(self) -> dict:
        """Fields for an output sidecar: the time origin, the decay reference and the assumptions made."""
        return {"TimeOrigin": "injection (FrameTimesStart - InjectionStart)",
                "InjectionStart": round(self.injection_start * 60.0, 6),
                "DecayCorrection": self.decay_description,
                "Assumptions": list(self.notes)}

    def read(self, z: slice = slice(None), dtype=np.float32) -> np.ndarray:
        """Activity in kBq/ml, decay corrected to the injection, of the axial slices ``z`` -> ``[X, Y, Zsel, F]``
        (only those slices are read).

        NaN/Inf voxels are returned as they are; see :func:`finite_voxel_mask`.
        """
        if isinstance(z, int):
            z = slice(z, z + 1)
        from jaxkin.io import stream

        try:
            data = stream.slices(self.path, self.image, z)
        except Exception as err:  # EOFError, zlib.error, OSError ... from a damaged file
            raise InputError(f"{self.path}: cannot read image data ({one_line(err)})") from None
        return self._to_kbq(data.astype(dtype, copy=False), slice(None))

    def _to_kbq(self, data: np.ndarray, frames, in_place: bool = False) -> np.ndarray:
        """File values ``[..., f]`` of the frames ``frames`` (a slice or an index) in kBq/ml, decay corrected to the
        injection (the same arithmetic for a frame as for the whole image); ``in_place``: ``data`` is changed (no
        copy; the same values)."""
        out = data if in_place else None
        if self.decay_factors is not None:
            return np.multiply(data, (self.scale_to_kbq * self.decay_factors).astype(data.dtype)[frames], out=out)
        if self.scale_to_kbq != 1.0:
            data = np.multiply(data, np.asarray(self.scale_to_kbq, dtype=data.dtype), out=out)
        return data

    def frame_reads(self, z: slice | None = None, dtype=np.float32, take=None):
        """Iterate ``(f, [X, Y, len(z)] kBq/ml)`` over the frames in file order, only the axial slices ``z`` (default
        all) read and held (see :mod:`jaxkin.io.stream`: a ``.nii.gz`` is decompressed once); with ``take``
        (indices into the slices flattened in Fortran order) only those voxels ``[len(take)]``. The values equal
        those of :meth:`read` bit for bit."""
        from jaxkin.io import stream

        try:
            for f, data in stream.frames(self.path, self.image, z, take, dtype):  # a new array each frame: in place
                yield f, self._to_kbq(data.astype(dtype, copy=False), f, in_place=True)
        except (OSError, EOFError, ValueError, zlib.error) as err:  # a damaged or truncated file
            raise InputError(f"{self.path}: cannot read image data ({one_line(err)})") from None

    def picked_pieces(self, z: slice, take, dtype=np.float64, most: int = 1 << 20):
        """Iterate ``(f, lo, hi, values [hi - lo] kBq/ml)`` over the frames in file order: the values of the voxels
        ``take[lo:hi]`` (ascending indices into the axial slices ``z`` flattened in Fortran order), at most ``most``
        at a time, never a frame nor a value per voxel of ``take`` held (:func:`jaxkin.io.stream.picked_pieces`).
        The values equal those of :meth:`frame_reads` with ``take`` bit for bit."""
        from jaxkin.io import stream

        try:
            for f, lo, hi, values in stream.picked_pieces(self.path, self.image, z, take, dtype, most):
                yield f, lo, hi, self._to_kbq(values, f, in_place=True)  # a new array each piece
        except (OSError, EOFError, ValueError, zlib.error) as err:  # a damaged or truncated file
            raise InputError(f"{self.path}: cannot read image data ({one_line(err)})") from None

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


def frame_reads(volume, z: slice | None = None, dtype=np.float32, take=None):
    """Iterate ``(f, [X, Y, len(z)])`` over the frames of ``volume`` with only the axial slices ``z`` (default all):
    a :class:`PetImage` (in file order, kBq/ml, see :meth:`PetImage.frame_reads`), an object with ``frame_reads``
    or an array ``[X, Y, Z, F]``. With ``take`` (indices into the slices flattened in Fortran order), only those
    voxels, ``[len(take)]``. Each frame is a new array (the caller may change it)."""
    if hasattr(volume, "frame_reads"):
        yield from volume.frame_reads(z, dtype, take)
        return
    yield from array_frames(volume, z, dtype, take)


def picked_pieces(volume, z: slice, take, dtype=np.float64, most: int = 1 << 20):
    """Iterate ``(f, lo, hi, values [hi - lo])`` over the frames of ``volume``: the values of the voxels ``take[lo:hi]``
    (ascending indices into the axial slices ``z`` flattened in Fortran order), at most ``most`` at a time. A
    :class:`PetImage` holds only a piece of its file at once (:meth:`PetImage.picked_pieces`); another volume (an
    array ``[X, Y, Z, F]`` or an object with ``frame_reads``) is read a frame at a time."""
    if hasattr(volume, "picked_pieces"):
        yield from volume.picked_pieces(z, take, dtype, most)
        return
    for f, values in frame_reads(volume, z, dtype, take):
        for lo in range(0, values.size, most):
            yield f, lo, min(lo + most, values.size), values[lo : lo + most]


def array_frames(volume, z: slice | None = None, dtype=np.float32, take=None):
    """:func:`frame_reads` of an array ``[X, Y, Z, F]`` (copies)."""
    z = slice(0, volume.shape[2]) if z is None else z
    for f in range(volume.shape[3]):
        frame = volume[:, :, z, f]
        yield f, (np.array(frame, dtype) if take is None else frame.ravel(order="F")[take].astype(dtype))


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
    """The frame schedule from ``FrameTimesStart`` and ``FrameDuration`` (seconds) of a PET sidecar; InputError
    naming ``where`` and the field for frames that :func:`jaxkin.frames.frame_problem` refuses."""
    start = _number_list(_sidecar_field(sidecar, "FrameTimesStart", where), "FrameTimesStart", where)
    duration = _number_list(_sidecar_field(sidecar, "FrameDuration", where), "FrameDuration", where)
    problem = frame_problem(start / 60.0, duration / 60.0)
    if problem is not None:
        raise InputError(f"{where}: {_frame_problem_text(problem, start, duration)}")
    return FrameSchedule.from_seconds(start, duration)


def _frame_problem_text(problem: FrameProblem, start: np.ndarray, duration: np.ndarray) -> str:
    """``problem`` in the words of a PET sidecar's fields (``start`` and ``duration`` in seconds)."""
    i = problem.frame
    if problem.kind == "length":
        return f"'FrameTimesStart' has {start.shape[0]} entries but 'FrameDuration' has {duration.shape[0]}"
    if problem.kind == "duration":
        return f"'FrameDuration' must be positive; frame {i} has {duration[i]:g} s"
    if problem.kind == "order":
        return (f"'FrameTimesStart' must be strictly increasing; frame {i} starts at {start[i]:g} s, not after "
                f"frame {i - 1} ({start[i - 1]:g} s)")
    if problem.kind == "overlap":
        return (f"frames overlap ('FrameTimesStart' + 'FrameDuration'): frame {i} starts at {start[i]:g} s, before "
                f"frame {i - 1} ends at {start[i - 1] + duration[i - 1]:g} s")
    return f"'FrameTimesStart' and 'FrameDuration': {problem.kind}"  # empty or not finite: _number_list refused them


def _seconds(sidecar: dict, key: str, where: Path) -> float | None:
    """A time field (s) of the sidecar, or None when absent; InputError when it is not a finite number."""
    if key not in sidecar:
        return None
    value = sidecar[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise InputError(f"{where}: field {key!r} must be a number of seconds relative to TimeZero, not {value!r}")
    return float(value)


#: Relative difference above which a ``DecayCorrectionFactor`` is said to disagree with the timing fields.
DECAY_FACTOR_TOLERANCE = 1e-3


def _decay_to_injection(sidecar: dict, where: Path, frames: FrameSchedule, injection_start: float,
                        notes: list) -> tuple[np.ndarray | None, float | None, str]:
    """``(factors [F] or None, half-life min or None, description)``: what brings the frames (since injection) to
    decay correction at the injection. See :func:`load_pet`."""
    corrected = _sidecar_field(sidecar, "ImageDecayCorrected", where)
    if not isinstance(corrected, bool):
        raise InputError(f"{where}: field 'ImageDecayCorrected' must be true or false, not {corrected!r}")
    reference = _seconds(sidecar, "ImageDecayCorrectionTime", where)
    dcf_key = next((k for k in ("DecayCorrectionFactor", "DecayFactor") if k in sidecar), None)
    if not corrected:
        half = tracer_half_life(sidecar, where)
        return decay_factors(frames, half), half, "not decay corrected in the file; corrected by jaxkin to the injection"
    if dcf_key is None and (reference is None or abs(reference / 60.0 - injection_start) < 1e-9):
        if reference is None:
            notes.append(f"{where.name}: ImageDecayCorrectionTime missing; the image is assumed decay corrected to "
                         "the injection")
        half = _optional_half_life(sidecar, where)
        return None, half, "decay corrected to the injection in the file"
    half = tracer_half_life(sidecar, where)
    lam = np.log(2.0) / half
    if dcf_key is None:  # corrected to another time: a constant factor moves the reference to the injection
        r = reference / 60.0 - injection_start  # min since injection
        factors = np.full(frames.n_frames, np.exp(lam * r))
        return factors, half, (f"decay corrected in the file to {reference:g} s after TimeZero "
                               f"({r * 60:g} s after the injection); moved to the injection by jaxkin")
    dcf = _number_list(sidecar[dcf_key], dcf_key, where)
    if dcf.shape[0] != frames.n_frames:
        raise InputError(f"{where}: {dcf_key!r} has {dcf.shape[0]} entries but there are {frames.n_frames} frames")
    if np.any(dcf <= 0):
        raise InputError(f"{where}: {dcf_key!r} must be positive")
    to_injection = decay_factors(frames, half)  # uncorrected frame means -> corrected to the injection
    factors = to_injection / dcf  # undo what the file applied, then correct to the injection
    if reference is not None:
        r = reference / 60.0 - injection_start
        expected = to_injection * np.exp(-lam * r)
        mismatch = float(np.max(np.abs(dcf / expected - 1.0)))
        if mismatch > DECAY_FACTOR_TOLERANCE:
            implied = np.log(to_injection / dcf) / lam  # min since injection, per frame
            notes.append(
                f"{where.name}: {dcf_key} differs by up to {100 * mismatch:.2g}% from decay correction to "
                f"ImageDecayCorrectionTime {reference:g} s (it implies {np.median(implied) * 60:.4g} s after the "
                f"injection); jaxkin undoes the {dcf_key} (what was applied to the image) and corrects to the injection"
            )
    return factors, half, f"{dcf_key} of the file undone and corrected by jaxkin to the injection"


def _optional_half_life(sidecar: dict, where: Path) -> float | None:
    try:
        return tracer_half_life(sidecar, where) if "TracerRadionuclide" in sidecar else None
    except InputError:
        return None


def load_pet(path) -> PetImage:
    """Open a 4D BIDS PET image (``*_pet.nii.gz`` or ``*_pet.nii``) and validate it against its ``*_pet.json``.

    Timing: ``FrameTimesStart`` and ``FrameDuration`` (s, relative to ``TimeZero``) give the frames, shifted by
    ``InjectionStart`` (s relative to TimeZero, may be negative; missing means 0, said in :attr:`PetImage.notes`)
    to minutes since injection. ``ScanStart`` is checked against the first frame (a difference above 1 s is noted).
    Decay: ``ImageDecayCorrected``, ``ImageDecayCorrectionTime`` (s relative to TimeZero) and, when present,
    ``DecayCorrectionFactor`` (or dcm2niix's ``DecayFactor``: the factor the file applied per frame, undone before
    correcting) bring the image to decay correction at the injection with the half-life of ``TracerRadionuclide``.
    Checks: the sidecar exists; the fields are numbers; frames increase, do not overlap and have positive durations;
    the frame count equals the 4th dimension; the file is complete. Voxel data are not read (see
    :meth:`PetImage.read`).
    """
    path = Path(path)
    stem = nifti_stem(path)
    sidecar_path = path.with_name(stem + ".json")
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if not sidecar_path.is_file():
        raise InputError(f"{path}: missing BIDS sidecar {sidecar_path.name}")
    sidecar = read_json(sidecar_path, "BIDS sidecar")
    frames_tz = frames_from_sidecar(sidecar, sidecar_path)
    units = _sidecar_field(sidecar, "Units", sidecar_path)
    dose = dose_from_sidecar(sidecar, sidecar_path)
    read = read_value_units(units, where=f"{sidecar_path}: field 'Units'", dose=dose)
    scale = read.scale
    notes: list[str] = [f"{sidecar_path.name}: {read.note}"] if read.note else []
    injection_s = _seconds(sidecar, "InjectionStart", sidecar_path)
    if injection_s is None:
        injection_s = 0.0
        notes.append(f"{sidecar_path.name}: InjectionStart missing; the injection is assumed at TimeZero (0 s)")
    scan_start = _seconds(sidecar, "ScanStart", sidecar_path)
    first = float(frames_tz.start_seconds[0])
    if scan_start is not None and abs(scan_start - first) > 1.0:
        notes.append(f"{sidecar_path.name}: ScanStart {scan_start:g} s differs from the first frame's start {first:g} s; "
                     "jaxkin uses FrameTimesStart")
    injection_start = injection_s / 60.0
    frames = FrameSchedule.from_seconds(frames_tz.start_seconds - injection_s, frames_tz.duration_seconds)
    if frames.end[-1] <= 0:
        raise InputError(f"{sidecar_path}: every frame ends before the injection (InjectionStart {injection_s:g} s)")
    factors, half, decay_description = _decay_to_injection(sidecar, sidecar_path, frames, injection_start, notes)
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
        decay_corrected=bool(sidecar["ImageDecayCorrected"]),
        affine=np.array(image.affine, dtype=np.float64),
        shape=shape,
        sidecar=sidecar,
        image=image,
        decay_factors=factors,
        injection_start=injection_start,
        half_life=half,
        notes=tuple(notes),
        decay_description=decay_description,
        value_kind=read.kind,
        dose=dose,
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
    """``bool [X, Y, Z]``: True where every frame of the voxel is finite. Reads the image a frame at a time.

    Fitting and prediction exclude (and report) the voxels where this is False instead of fitting NaN/Inf.
    """
    mask = np.ones(pet.shape[:3], dtype=bool)
    for _, data in frame_reads(pet):
        mask &= np.isfinite(data)
    return mask


def nonfinite_message(pet: PetImage, mask: np.ndarray) -> str | None:
    """A one-line report of the voxels excluded for NaN/Inf values, or None if there are none."""
    bad = int(mask.size - np.count_nonzero(mask))
    if bad == 0:
        return None
    return f"{pet.path}: {bad} voxel(s) with NaN or Inf values excluded"
