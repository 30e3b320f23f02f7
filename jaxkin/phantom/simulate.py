"""One phantom subject simulated as arrays: anatomy -> parameter maps -> TACs -> PSF -> counting noise."""

from __future__ import annotations

import numpy as np

from jaxkin.decay import F18_HALF_LIFE_MIN
from jaxkin.frames import FrameSchedule
from jaxkin.input_function import FengParameters, feng_input
from jaxkin.kinetics import FDG_MODEL, prepare, tacs_in_chunks
from jaxkin.phantom.anatomy import (
    INPUT_DELAY_MIN,
    INPUT_SCALE_SD,
    LABELS,
    NOISE_S,
    ORGAN_DELAY_S,
    Subject,
    affine_of,
    draw_anatomy,
    draw_parameter_maps,
    get_preset,
    label_index,
)

# --------------------------------------------------------------------------------------------------
# Kinetics and physics
# --------------------------------------------------------------------------------------------------

def noise_sd(clean: np.ndarray, frames: FrameSchedule, noise_scale: float) -> np.ndarray:
    """Noise SD (kBq/ml) for a noiseless image ``clean [..., F]`` (kBq/ml): the formula of
    :mod:`jaxkin.phantom.anatomy` with ``s = noise_scale * NOISE_S``; decay-aware (F-18, half-life 109.77 min) and
    inversely proportional to the frame duration (min)."""
    return np.sqrt(np.maximum(clean, 0.0) * (noise_scale * NOISE_S * _decay_per_duration(frames)).astype(np.float32))


def _decay_per_duration(frames: FrameSchedule) -> np.ndarray:
    """``exp(ln2 t_mid / T_half) / duration`` per frame, ``[F]`` (1/min)."""
    return np.exp(np.log(2.0) / F18_HALF_LIFE_MIN * frames.mid) / frames.duration


def _blur(volume: np.ndarray, fwhm_mm: float, voxel_mm) -> np.ndarray:
    """Gaussian PSF of ``fwhm_mm`` on every frame of ``volume [X, Y, Z, F]``.

    Edges are mirrored (the body goes on beyond the axial FOV), which keeps each frame's total activity."""
    if fwhm_mm <= 0:
        return volume
    from scipy import ndimage

    sigma = [fwhm_mm / (2 * np.sqrt(2 * np.log(2))) / v for v in voxel_mm] + [0.0]
    return ndimage.gaussian_filter(volume, sigma=sigma, mode="reflect", truncate=3.0)


def _bounding_box(mask: np.ndarray, fwhm_mm: float, voxel_mm) -> tuple:
    """Slices of the bounding box of ``mask``, widened by twice the blur radius (+1) and clipped to the grid."""
    sigma = [fwhm_mm / (2 * np.sqrt(2 * np.log(2))) / v for v in voxel_mm]
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        if idx.size == 0:
            return (slice(0, 0),) * 3
        margin = 2 * int(np.ceil(3.0 * sigma[axis])) + 1
        box.append(slice(max(int(idx[0]) - margin, 0), min(int(idx[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)


def _noiseless_tacs(truth: np.ndarray, labels: np.ndarray, input_function, frames: FrameSchedule,
                    organ_delays: bool) -> np.ndarray:
    """Frame means ``float32 [x, y, z, F]`` (kBq/ml) of the parameter maps ``truth [x, y, z, 4]`` inside the body
    (``labels > 0``; zero outside), each organ with its input delay when ``organ_delays``."""
    inside = labels > 0
    clean = np.zeros(labels.shape + (frames.n_frames,), np.float32)
    if not organ_delays:
        clean[inside] = tacs_in_chunks(truth[inside], prepare(input_function, frames), FDG_MODEL)
        return clean
    for d in sorted(set(ORGAN_DELAY_S.values())):
        names = [n for n, v in ORGAN_DELAY_S.items() if v == d]
        sel = np.isin(labels, [label_index(n) for n in names])
        if not sel.any():
            continue
        end = float(frames.end[-1]) + max(-d / 60.0, 0.0)
        shifted = input_function.held_to(end).delayed(d / 60.0)
        clean[sel] = tacs_in_chunks(truth[sel], prepare(shifted, frames), FDG_MODEL)
    return clean


def _add_noise(pet: np.ndarray, frames: FrameSchedule, noise_scale: float, seed: np.random.SeedSequence) -> None:
    """Add the counting noise of :func:`noise_sd` to ``pet [..., F]`` in place (computed in place to spare memory
    traffic)."""
    sd = np.maximum(pet, 0.0)
    sd *= (noise_scale * NOISE_S * _decay_per_duration(frames)).astype(np.float32)
    np.sqrt(sd, out=sd)
    noise = np.random.default_rng(seed).standard_normal(pet.shape, dtype=np.float32)
    noise *= sd
    del sd
    pet += noise


def simulate_subject(index: int, *, seed: int = 0, preset: str = "small", noise_scale: float = 1.0,
                     fwhm_mm: float | None = None, frames: FrameSchedule | None = None,
                     organ_delays: bool = False) -> Subject:
    """Simulate subject ``index`` (0-based; id ``sub-{index+1:02d}``) of the phantom, in memory.

    Deterministic in ``(seed, index)``: anatomy, parameters and input come from one random stream and the noise
    from another, so ``noise_scale`` and ``fwhm_mm`` change only the image, not the ground truth.
    ``fwhm_mm`` defaults to the preset's (4 mm); 0 disables the blur; ``noise_scale`` 0 gives noiseless data.
    ``frames`` defaults to the paper's 62 Quadra frames. ``organ_delays``: each organ sees the input (and its blood
    the whole blood) delayed by :data:`ORGAN_DELAY_S` (lungs and heart early, the lower body and bladder late); the
    input function written for the subject stays the measured (aortic) one.
    """
    p = get_preset(preset)
    fwhm = p.fwhm_mm if fwhm_mm is None else float(fwhm_mm)
    if noise_scale < 0 or fwhm < 0:
        raise ValueError("noise_scale and fwhm_mm must be >= 0")
    frames = frames or FrameSchedule.quadra()
    anatomy_seq, noise_seq = np.random.SeedSequence([int(seed), int(index)]).spawn(2)
    rng = np.random.default_rng(anatomy_seq)

    input_scale = float(np.exp(rng.normal(0.0, INPUT_SCALE_SD)))
    input_delay = float(rng.uniform(*INPUT_DELAY_MIN))
    # 10 s samples, 1 s over the 3 min of the bolus: the piecewise-linear curve *is* the true input.
    input_function = feng_input(float(frames.end[-1]), FengParameters(), delay=input_delay, scale=input_scale,
                                step=10.0 / 60.0, peak_step=1.0 / 60.0)
    labels = draw_anatomy(rng, p)
    truth, organ_params = draw_parameter_maps(rng, p, labels)

    # The physics runs on the body's bounding box plus a zero margin of twice the PSF radius (so the blur, with
    # mirrored edges, is the same as on the whole grid); outside it there is no activity and hence no noise.
    box = _bounding_box(labels > 0, fwhm, p.voxel_mm)
    pet = _blur(_noiseless_tacs(truth[box], labels[box], input_function, frames, organ_delays), fwhm, p.voxel_mm)
    if noise_scale > 0:
        _add_noise(pet, frames, noise_scale, noise_seq)
    full = np.zeros(p.shape + (frames.n_frames,), np.float32)
    full[box] = pet
    return Subject(
        index=int(index),
        subject_id=f"sub-{index + 1:02d}",
        pet=full,
        frames=frames,
        input_function=input_function,
        labels=labels.astype(np.int16),
        label_names=dict(LABELS),
        truth=truth,
        organ_params=organ_params,
        affine=affine_of(p),
        voxel_mm=p.voxel_mm,
        preset=p.name,
        seed=int(seed),
        noise_scale=float(noise_scale),
        fwhm_mm=fwhm,
        input_scale=input_scale,
        input_delay=input_delay,
        organ_delays=dict(ORGAN_DELAY_S) if organ_delays else {},
    )
