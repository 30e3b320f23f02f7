"""The grid a network learned: its training scans' voxel size and field of view (recorded in ``model.json``), checked
against a scan before it is predicted; a scan on another grid is resampled to the training voxel size and its maps
back (linear interpolation, :func:`scipy.ndimage.zoom`), or refused when the scales are too far apart.

A convolutional network learns patterns of a size in voxels: the same organ at 1.65 mm and at 4 mm voxels is a
different pattern, and a prediction at the wrong scale is wrong without any sign of it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxkin.errors import InputError

__all__ = ["GRID_TOLERANCE", "MAX_GRID_RATIO", "GridPlan", "SlabReader", "TrainingGrid", "grid_plan", "predict_memory",
           "resample", "streams", "training_grid"]

#: Relative difference of a voxel size (per axis) up to which a scan is predicted on its own grid.
GRID_TOLERANCE = 0.05

#: A scan whose voxel size differs from the training voxel size by more than this factor (per axis) is refused.
MAX_GRID_RATIO = 2.0


@dataclasses.dataclass(frozen=True)
class TrainingGrid:
    """The training scans' ``voxel_size_mm`` and ``field_of_view_mm`` (3 each, mm; of the first training scan)."""

    voxel_size_mm: tuple
    field_of_view_mm: tuple

    def record(self) -> dict:
        """The fields of ``model.json``."""
        return {"voxel_size_mm": [float(v) for v in self.voxel_size_mm],
                "field_of_view_mm": [float(v) for v in self.field_of_view_mm]}

    @classmethod
    def from_record(cls, info: dict) -> TrainingGrid | None:
        """From ``model.json``; None for a run that did not record it (older runs)."""
        if "voxel_size_mm" not in info or "field_of_view_mm" not in info:
            return None
        return cls(tuple(float(v) for v in info["voxel_size_mm"]), tuple(float(v) for v in info["field_of_view_mm"]))


def training_grid(pet) -> TrainingGrid:
    """The grid of a training scan ``pet`` (a :class:`jaxkin.io.pet.PetImage`)."""
    voxel = tuple(float(v) for v in pet.voxel_size)
    return TrainingGrid(voxel, tuple(v * n for v, n in zip(voxel, pet.shape[:3])))


@dataclasses.dataclass(frozen=True)
class GridPlan:
    """How a scan is predicted: ``shape`` ``(X, Y, Z)`` of the grid the network sees (the scan's own when
    ``resampled`` is False) and ``note`` (a sentence for stderr and the sidecar, or None)."""

    shape: tuple
    resampled: bool
    note: str | None
    sidecar: dict


def grid_plan(grid: TrainingGrid | None, pet) -> GridPlan:
    """The :class:`GridPlan` of ``pet`` for a network trained on ``grid`` (None: not recorded, the scan's grid is
    used and said). InputError (one line) when a voxel size differs by more than :data:`MAX_GRID_RATIO`."""
    shape = tuple(int(n) for n in pet.shape[:3])
    voxel = np.asarray(pet.voxel_size, np.float64)
    if grid is None:
        return GridPlan(shape, False, "the network's training voxel size is not recorded (a run of an older jaxkin): "
                        "the scan is predicted on its own grid, unchecked", {"TrainingGrid": "not recorded"})
    train = np.asarray(grid.voxel_size_mm, np.float64)
    ratio = voxel / train
    said = f"{_mm(voxel)} mm voxels; the network was trained on {_mm(train)} mm"
    if np.any(ratio > MAX_GRID_RATIO) or np.any(ratio < 1.0 / MAX_GRID_RATIO):
        raise InputError(f"{pet.path}: {said}: more than {MAX_GRID_RATIO:g}x apart, a network does not carry over "
                         "such a change of scale; train on scans of this voxel size")
    fov = voxel * np.asarray(shape)
    record = {"TrainingVoxelSizeMM": [float(v) for v in train],
              "TrainingFieldOfViewMM": [float(v) for v in grid.field_of_view_mm],
              "ScanVoxelSizeMM": [float(v) for v in voxel], "ScanFieldOfViewMM": [float(v) for v in fov]}
    if np.all(np.abs(ratio - 1.0) <= GRID_TOLERANCE):
        return GridPlan(shape, False, None, record | {"Resampled": False})
    target = tuple(max(round(n * r), 1) for n, r in zip(shape, ratio))
    note = (f"{said}: resampled to the training voxel size ({'x'.join(map(str, target))} voxels, linear "
            "interpolation) for the network, its maps resampled back to the scan's grid")
    return GridPlan(target, True, note, record | {"Resampled": True, "ResampledShape": list(target),
                                                  "Interpolation": "linear (scipy.ndimage.zoom, order 1)"})


def _mm(values) -> str:
    return " x ".join(f"{v:.3g}" for v in values)


def resample(volume: np.ndarray, shape: tuple) -> np.ndarray:
    """``volume [X, Y, Z, C]`` resampled to ``shape + (C,)`` by linear interpolation, channel by channel (float32;
    corners aligned, :func:`scipy.ndimage.zoom`)."""
    from scipy import ndimage

    volume = np.asarray(volume)
    if tuple(volume.shape[:3]) == tuple(shape):
        return np.asarray(volume, np.float32)
    zoom = [n / m for n, m in zip(shape, volume.shape[:3])]
    out = np.empty(tuple(shape) + volume.shape[3:], np.float32)
    for c in range(volume.shape[3]):
        out[..., c] = ndimage.zoom(np.nan_to_num(volume[..., c].astype(np.float32)), zoom, order=1)
    return out


class SlabReader:
    """The axial slices ``z`` of an uncompressed ``.nii`` :class:`jaxkin.io.pet.PetImage` as an array-like
    ``[X, Y, len(z), F]`` whose slices ``[:, :, a:b]`` (kBq/ml, float32) are read from the file when asked for: the
    network's batches of slices, without the 4D image in memory."""

    def __init__(self, pet, z: slice):
        self.pet, self.z = pet, z
        self.shape = (*pet.shape[:2], z.stop - z.start, pet.shape[3])

    def __getitem__(self, index):
        xs, ys, zs, fs = index
        zs = slice(self.z.start + (zs.start or 0), self.z.start + min(zs.stop, self.shape[2]))
        return self.pet.read(zs)[xs, ys, :, fs]


def streams(pet) -> bool:
    """Whether ``pet`` is predicted a batch of slices at a time straight from its file (an uncompressed ``.nii``,
    read at offsets); a ``.nii.gz`` (one gzip stream, decompressed from its start for every read) is read whole."""
    return hasattr(pet, "read") and str(getattr(pet, "path", "")).endswith(".nii")


def predict_memory(pet, plan: GridPlan, refine: bool = False) -> int:
    """Peak bytes of predicting ``pet`` ``[X, Y, Z, F]`` on the grid of ``plan``: the runtime (1 GiB: JAX and the
    network), the parameters and maps (4 channels each; ``32 N``) and the scan as float32 (``4 N F``) unless it is
    read a batch at a time (:func:`streams`, without resampling or refinement); a resampled grid of ``N'`` voxels
    adds ``4 N' F + 16 N'``."""
    n, f = int(np.prod(pet.shape[:3])), int(pet.shape[3])
    whole = plan.resampled or refine or not streams(pet)
    need = (1 << 30) + 32 * n + (4 * n * f if whole else 0)
    if plan.resampled:
        m = int(np.prod(plan.shape))
        need += 4 * m * f + 16 * m
    return int(need)
