"""The automatic mask of a whole-volume fit: the body, every voxel inside the patient, only the air around it left
out (:func:`body_mask_from_integrals`, from the voxels' time integrals ``sum_f C_f Δt_f``). Voxels with NaN/Inf are
never in it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxkin.errors import InputError
from jaxkin.io.pet import frame_reads

__all__ = ["body_mask", "body_mask_from_integrals", "time_integrals", "check_signal", "fit_mask", "FitMask", "MIN_SIGNAL",
           "MIN_COMPONENT_FRACTION"]

#: The automatic mask keeps voxels whose time integral is at least this fraction of the body's median integral.
MIN_SIGNAL = 0.05

#: The automatic mask: components smaller than this fraction of the largest one are noise in the air, not body.
MIN_COMPONENT_FRACTION = 1e-3


def time_integrals(pet, frame_duration, z: slice, slab: int = 8):
    """``(auc float32, finite bool) [X, Y, len(z)]``: the time integrals ``sum_f C_f Δt_f`` (kBq/ml·min, summed in
    frame order; 0 where not finite) of the axial slices ``z`` of ``pet`` (``[X, Y, Z, F]`` array or PetImage,
    kBq/ml; ``frame_duration`` ``[F]`` in min), read a frame at a time in file order (a ``.nii.gz`` is decompressed
    once; the next frame of the slices is read in a background thread while this one is added, so two are held),
    and which voxels are finite in every frame. ``slab`` is not used (kept for callers).

    A value that is not finite only spoils its own voxel's sum, which is set to 0 at the end; the sums are made in
    blocks of :data:`BLOCK` voxels, which stay in the processor's cache."""
    from jaxkin.io.stream import prefetched

    shape = (*pet.shape[:2], z.stop - z.start)
    auc = finite = order = None
    dur = np.asarray(frame_duration, np.float32)
    for f, data in prefetched(frame_reads(pet, z)):
        if auc is None:  # the frames' own order (a file's: Fortran), so that the blocks below are views in all three
            order = "F" if data.flags.f_contiguous else "C"
            auc, finite = np.zeros(shape, np.float32, order=order), np.ones(shape, bool, order=order)
            auc_flat, finite_flat = auc.reshape(-1, order=order), finite.reshape(-1, order=order)
        flat = data.reshape(-1, order=order)
        for a in range(0, flat.size, BLOCK):
            block = flat[a : a + BLOCK]
            finite_flat[a : a + BLOCK] &= np.isfinite(block)
            block *= dur[f]
            auc_flat[a : a + BLOCK] += block
        del data, flat
    if auc is None:
        auc, finite = np.zeros(shape, np.float32), np.ones(shape, bool)
    auc[~finite] = 0.0
    return auc, finite


#: Voxels of a frame added into the time integrals at once by :func:`time_integrals`.
BLOCK = 1 << 16


def _otsu_log(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``log(values)`` (``values`` > 0, any shape), returned on the linear scale: the split of
    the histogram of the logs into two classes with the largest between-class variance. ``values.min()`` when all
    values are (nearly) equal, so everything is one class."""
    logs = np.log(values.astype(np.float64).ravel())
    lo, hi = float(logs.min()), float(logs.max())
    if hi - lo < 1e-9:
        return float(values.min())
    counts, edges = np.histogram(logs, bins=bins, range=(lo, hi))
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(counts)[:-1].astype(np.float64)  # class 0 = bins 0..k, class 1 = bins k+1..
    w1 = counts.sum() - w0
    s0 = np.cumsum(counts * centres)[:-1]
    mean0 = s0 / np.maximum(w0, 1)
    mean1 = (np.sum(counts * centres) - s0) / np.maximum(w1, 1)
    between = np.where((w0 > 0) & (w1 > 0), w0 * w1 * (mean0 - mean1) ** 2, -1.0)
    return float(np.exp(edges[int(np.argmax(between)) + 1]))


def body_mask_from_integrals(auc, finite, min_signal: float = MIN_SIGNAL) -> np.ndarray:
    """The body: ``bool [X, Y, Z]`` from the time integrals ``auc float [X, Y, Z]`` (kBq/ml*min; any consistent unit)
    of the voxels and ``finite bool [X, Y, Z]`` (False where a frame is NaN/Inf; those voxels are never in the mask).

    1. *Where is the body?* Otsu's threshold on the log of the positive integrals separates the air around the
       patient (noise, blur tails, many decades below tissue) from the body (the log scale puts lungs, fat and
       muscle in one mode and the background in the other). Its only use is the body's *level*: the median integral
       of the voxels above it. A median over the body is set by the soft tissue that fills most of it, not by the
       hottest organs (bladder, brain, heart: 20-50x muscle but a few per cent of the volume), so unlike a
       percentile of the whole image it does not move when the bladder fills. If the image holds no air (cropped to
       the body), Otsu splits the body instead and the level is still of the order of the soft tissue.
    2. Keep every voxel whose integral is at least ``min_signal`` (default :data:`MIN_SIGNAL`) times that level:
       far below lung, fat and muscle (in FDG, 30-50% of the body's median or more), above the air.
    3. Fill holes in every axial slice (``scipy.ndimage.binary_fill_holes`` in-plane): the body contour encloses
       lungs, bowel gas and cold lesions in axial slices, whatever their activity.
    4. Drop connected components (26-connected, in 3D) smaller than ``MIN_COMPONENT_FRACTION`` of the largest:
       isolated noise in the air. Larger ones stay, so a body split into several pieces (arms beside the torso,
       legs) is kept whole.

    Then the voxels that are not finite are left out. Returns an all-False mask when no integral is positive.
    """
    from scipy import ndimage

    auc = np.asarray(auc)
    finite = np.asarray(finite, bool)
    positive = auc[finite & (auc > 0)]
    if positive.size == 0:
        return np.zeros(auc.shape, bool)
    split = _otsu_log(positive)
    level = float(np.median(positive[positive >= split]))
    mask = finite & (auc >= min_signal * level) & (auc > 0)
    in_plane = ndimage.generate_binary_structure(2, 1)[:, :, None]  # no connection across slices: per-slice fill
    mask = ndimage.binary_fill_holes(mask, structure=in_plane)
    parts, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n > 1:
        sizes = np.bincount(parts.ravel())
        sizes[0] = 0
        keep = sizes >= MIN_COMPONENT_FRACTION * sizes.max()
        keep[0] = False
        mask = keep[parts]
    return mask & finite


def body_mask(pet, frame_duration, *, min_signal: float = MIN_SIGNAL, slab: int = 8):
    """``(mask, finite) bool [X, Y, Z]`` of ``pet`` (``[X, Y, Z, F]`` array or PetImage, kBq/ml; ``frame_duration``
    ``[F]`` in min): the body (:func:`body_mask_from_integrals`) and the finite voxels."""
    auc, finite = time_integrals(pet, frame_duration, slice(0, pet.shape[2]), slab)
    return body_mask_from_integrals(auc, finite, min_signal), finite


@dataclasses.dataclass(frozen=True)
class FitMask:
    """The voxels a fit takes, found in one pass over the image (:func:`fit_mask`): ``mask`` bool ``[X, Y, Z]``
    (finite voxels only) and ``n_nonfinite``, the voxels of the image with NaN/Inf in a frame (never fitted)."""

    mask: np.ndarray
    n_nonfinite: int


def check_signal(pet, frame_duration, mask=None, *, min_signal: float = MIN_SIGNAL, source="the image",
                 slab: int = 8) -> np.ndarray:
    """The fit mask (``mask`` itself, or the body of :func:`body_mask` when None), after an InputError if ``pet``
    holds nothing a fit could mean (see :func:`fit_mask`, which also leaves out the voxels with NaN/Inf)."""
    found = fit_mask(pet, frame_duration, mask, min_signal=min_signal, source=source)
    return mask if mask is not None else found.mask


def fit_mask(pet, frame_duration, mask=None, *, min_signal: float = MIN_SIGNAL, source="the image") -> FitMask:
    """The :class:`FitMask` of ``pet`` (``[X, Y, Z, F]`` array or PetImage, kBq/ml; ``frame_duration`` ``[F]`` in
    min, named ``source`` in messages): ``mask`` (bool ``[X, Y, Z]``, or the body of
    :func:`body_mask_from_integrals` when None) without the voxels with NaN/Inf, from one pass over the image (its
    time integrals), after an InputError if the image holds nothing a fit could mean: no finite voxel with a
    positive time integral (an all-zero or all-NaN image); time integrals mostly negative (their negative sum
    outweighs the positive one: a sign-flipped image, whose positive voxels are noise); or an empty fit mask
    (``mask`` without a finite voxel, or, without ``mask``, an empty body mask)."""
    auc, finite = time_integrals(pet, frame_duration, slice(0, pet.shape[2]))
    positive = float(auc[finite & (auc > 0)].sum(dtype=np.float64))
    negative = -float(auc[finite & (auc < 0)].sum(dtype=np.float64))
    if positive <= 0.0:
        raise InputError(f"{source}: no voxel with a positive time integral (the image is zero, negative or NaN "
                         "everywhere); nothing to fit")
    if negative > positive:
        raise InputError(f"{source}: the time integrals are mostly negative ({negative / (negative + positive):.0%} "
                         "of their absolute sum): a sign-flipped or wrongly scaled image; nothing fitted")
    n_nonfinite = int(finite.size - np.count_nonzero(finite))
    if mask is not None:
        del auc
        mask = np.asarray(mask, bool)
        if mask.shape != finite.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the image's {finite.shape}")
        mask = mask & finite
        if not mask.any():
            raise InputError(f"{source}: the fit mask holds no voxel with finite values; nothing to fit")
        return FitMask(mask, n_nonfinite)
    body = body_mask_from_integrals(auc, finite, min_signal)
    if not body.any():
        raise InputError(f"{source}: the automatic mask found no voxel with signal; nothing to fit")
    return FitMask(body, n_nonfinite)
