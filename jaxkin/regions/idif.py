"""The image-derived input: which voxels (a vessel label, eroded, an axial segment, its hottest core) and the curve
(their mean TAC as an input function). Minutes and kBq/ml."""

from __future__ import annotations

import numpy as np

from jaxkin.errors import InputError
from jaxkin.frames import FrameSchedule
from jaxkin.input_function import InputFunction, from_frame_means
from jaxkin.io.labels import Labels
from jaxkin.io.pet import PetImage


def idif_mask(pet, mask: np.ndarray, *, erode: int = 0, segment: tuple[int, int] | None = None,
              core: int | None = None) -> tuple[np.ndarray, list[str]]:
    """The voxels of an image-derived input inside ``mask bool [X, Y, Z]`` (e.g. the aorta), and what was done.

    ``segment``: only the axial slices ``[a, b)`` of the PET (e.g. the descending aorta). ``erode``: that many
    binary erosions (6-connected, in 3D) to keep away from the vessel wall and its spill-out. ``core``: in each
    axial slice, only the ``core`` hottest voxels at the frame where the mask's mean peaks (the bolus), as IDIF
    tools do to keep the vessel's core. InputError naming the parameter (``segment``, ``erode``, ``core``) for a
    bad value or when nothing is left.
    """
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    notes = []
    n0 = int(mask.sum())
    if segment is not None:
        a, b = segment
        if not (0 <= a < b <= mask.shape[2]):
            raise InputError(f"segment {a}:{b}: the PET has axial slices 0 to {mask.shape[2]}")
        keep = np.zeros_like(mask)
        keep[:, :, a:b] = True
        mask = mask & keep
        notes.append(f"axial slices {a} to {b - 1} only")
        if not mask.any():
            raise InputError(f"segment {a}:{b}: the label has no voxel in these slices")
    if erode:
        if erode < 0:
            raise InputError("erode must be 0 or more")
        mask = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1), iterations=erode)
        notes.append(f"eroded {erode} time(s) (6-connected)")
        if not mask.any():
            raise InputError(f"erode {erode}: nothing is left of the label ({n0} voxels); erode less")
    if core is not None:
        if core < 1:
            raise InputError("core must be a positive number of voxels per slice")
        zs = np.flatnonzero(mask.any(axis=(0, 1)))
        sl = slice(int(zs[0]), int(zs[-1]) + 1)
        sub = mask[:, :, sl]
        tacs = np.where(np.isfinite(data := masked_tacs(pet, sub, sl)), data, np.nan)
        if not np.isfinite(tacs).any(axis=0).all():
            raise InputError(f"{pet.path}: a frame has NaN or Inf in every voxel of the label; no bolus peak to "
                             "choose the core voxels at")
        peak = int(np.nanargmax(np.nanmean(tacs, axis=0)))
        frame = np.full(sub.shape, -np.inf)
        frame[sub] = np.nan_to_num(data[:, peak], nan=-np.inf)
        out = np.zeros_like(sub)
        for k in range(sub.shape[2]):
            n = int(sub[:, :, k].sum())
            if n == 0:
                continue
            flat = frame[:, :, k].ravel()
            best = np.argsort(flat)[::-1][: min(core, n)]
            bx, by = np.unravel_index(best, sub.shape[:2])
            out[bx, by, k] = True
        mask = np.zeros_like(mask)
        mask[:, :, sl] = out
        notes.append(f"the {core} hottest voxel(s) per axial slice at frame {peak} (the peak of the label's mean)")
    return mask, notes


def masked_tacs(pet, mask: np.ndarray, z: slice) -> np.ndarray:
    """``float64 [V, F]`` (kBq/ml): the TACs of the voxels of ``mask`` (bool ``[X, Y, len(z)]``, the axial slices
    ``z`` of ``pet``) in C order, as ``pet.read(z)[mask]``, read a frame at a time (never the 4D image)."""
    from jaxkin.io.pet import frame_reads

    x, y, k = np.nonzero(mask)
    take = x + mask.shape[0] * (y + mask.shape[1] * k)  # the file's (Fortran) order within the slices
    out = np.empty((take.size, int(pet.shape[3])))
    for f, values in frame_reads(pet, z, np.float64, take=take):
        out[:, f] = values
    return out


def label_mean_tac(pet: PetImage, mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Mean TAC (kBq/ml, ``[F]``) over the finite voxels of ``mask [X, Y, Z]``, and the number of voxels used.

    Only the axial slices that contain the mask are read, a frame at a time.
    """
    zs = np.flatnonzero(mask.any(axis=(0, 1)))
    if zs.size == 0:
        raise InputError(f"{pet.path}: the mask is empty")
    sl = slice(int(zs[0]), int(zs[-1]) + 1)
    data = masked_tacs(pet, mask[:, :, sl], sl)  # [V, F]
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
    """An input function from frame means ``tac [F]`` (kBq/ml) over ``frames`` (min since injection): the curve
    whose mean over every frame is the value given (:func:`jaxkin.input_function.from_frame_means`: knots at the
    frame mid times, zero at the scan's start, the shared mono-exponential tail to the last frame's end). An image
    value is a frame mean, not a sample at the mid time: reading it as a sample would average it again over the
    frame."""
    return from_frame_means(frames, np.asarray(tac, dtype=np.float64))
