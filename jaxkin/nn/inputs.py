"""What the network sees: measured TACs turned into its input ``[B, T, H, W, C]`` (time first, edge-padded to
``T`` time steps, optionally normalised and joined by the input function), as pure functions; for the per-voxel
temporal encoder (:mod:`jaxkin.nn.encoder_unet`) the same values with time last and the input function once per
sample (:func:`voxel_input`).

Units: TACs and blood activity in kBq/ml, frame times in min; a normalised input is dimensionless.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["INPUT_NORMALIZATIONS", "SLICE_PERCENTILE", "INPUT_CURVES", "pad_time", "slice_scale", "input_level",
           "input_curves", "network_input", "voxel_input"]

#: Choices of ``input_normalization``: kBq/ml as measured, each slice over its 99th percentile, each scan over its
#: time-averaged blood activity.
INPUT_NORMALIZATIONS = ("none", "slice", "input")
#: The percentile of a slice's values (over voxels and frames) that ``input_normalization="slice"`` divides by.
SLICE_PERCENTILE = 99.0
#: Input-function curves that ``condition_on_input`` adds as channels (:func:`input_curves`).
INPUT_CURVES = 2


def _one_of(name: str, value, choices) -> None:
    """ValueError (one line, naming the setting ``name``) unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def pad_time(frames, time_steps: int, axis: int = 1):
    """Pad the time axis to ``time_steps`` by repeating the last frame (edge padding), as in training,
    validation and prediction alike."""
    n = frames.shape[axis]
    if n > time_steps:
        raise ValueError(f"{n} frames do not fit the network's {time_steps} time steps")
    pad = [(0, 0)] * frames.ndim
    pad[axis] = (0, time_steps - n)
    return jnp.pad(frames, pad, mode="edge")


def slice_scale(tacs, eps: float = 1e-6):
    """Each slice's 99th percentile over voxels and frames: ``[B, H, W, F] -> [B]`` (kBq/ml, at least ``eps``)."""
    flat = tacs.reshape(tacs.shape[0], -1)
    return jnp.maximum(jnp.percentile(flat, SLICE_PERCENTILE, axis=1), eps)


def input_level(kin):
    """The time-averaged blood activity of each scan, ``[...]`` (kBq/ml): the frame means of the whole blood
    weighted by frame duration (``kin`` a :class:`jaxkin.kinetics.KineticInput`, leaves stacked as ``[..., F]``)."""
    w = kin.frame_duration
    return jnp.sum(kin.blood_mean() * w, axis=-1) / jnp.sum(w, axis=-1)


def input_curves(kin):
    """The input function as the network sees it, ``[..., F, 2]`` (kBq/ml): the frame means of the blood, and the
    frame means of the running integral of the input divided by the scan's length (Patlak's abscissa, scaled)."""
    end = kin.frame_start[..., -1:] + kin.frame_duration[..., -1:]
    return jnp.stack([kin.blood_mean(), kin.integral_mean() / end], axis=-1)


def _sample_scale(tacs, normalization: str, kin, condition: bool):
    """Each sample's divisor ``[B]`` of ``normalization`` (1 for ``"none"``); ValueError without ``kin`` where the
    normalisation or the conditioning needs it."""
    _one_of("input_normalization", normalization, INPUT_NORMALIZATIONS)
    if (normalization == "input" or condition) and kin is None:
        raise ValueError("this network's input needs the scan's input function (kin)")
    if normalization == "slice":
        return slice_scale(tacs)
    if normalization == "input":
        return jnp.maximum(input_level(kin), 1e-6).astype(tacs.dtype)
    return jnp.ones(tacs.shape[:1], tacs.dtype)


def network_input(tacs, time_steps: int, input_scale: float = 1.0, normalization: str = "none", kin=None,
                  condition: bool = False):
    """TACs ``[B, H, W, F]`` (kBq/ml) -> network input ``[B, T, H, W, C]``: time first, edge-padded, scaled.

    ``normalization="slice"`` first divides each slice by :func:`slice_scale` (the input is then invariant to a
    constant factor on the data); ``"input"`` divides by the scan's :func:`input_level`; ``"none"`` keeps kBq/ml.
    ``input_scale`` multiplies the result in every case. ``kin``: each sample's :class:`jaxkin.kinetics.KineticInput`
    (leaves ``[B, ...]``), needed by ``"input"`` and ``condition``; ``condition`` appends the
    :func:`input_curves` as two channels, divided by the same per-sample scale as the TACs (so the ratio of
    tissue to blood, which the kinetic parameters describe, is kept).
    """
    scale = _sample_scale(tacs, normalization, kin, condition)
    x = jnp.moveaxis(tacs / scale[:, None, None, None], -1, 1)[..., None]  # [B, F, H, W, 1]
    if condition:
        curves = (input_curves(kin) / scale[:, None, None]).astype(tacs.dtype)  # [B, F, 2]
        curves = jnp.broadcast_to(curves[:, :, None, None, :], (*x.shape[:4], INPUT_CURVES))
        x = jnp.concatenate([x, curves], axis=-1)
    return pad_time(x * input_scale, time_steps, axis=1)


def voxel_input(tacs, time_steps: int, input_scale: float = 1.0, normalization: str = "none", kin=None,
                condition: bool = False):
    """TACs ``[B, H, W, F]`` (kBq/ml) -> ``(x [B, H, W, T], curves [B, T, 2] or None)``: the values of
    :func:`network_input` with time last (each voxel's TAC a row, edge-padded to ``T``) and, with ``condition``,
    the input function's :func:`input_curves` once per sample (equally scaled and padded) instead of broadcast to
    every voxel."""
    scale = _sample_scale(tacs, normalization, kin, condition)
    x = pad_time(tacs / scale[:, None, None, None] * input_scale, time_steps, axis=-1)
    if not condition:
        return x, None
    curves = (input_curves(kin) / scale[:, None, None]).astype(tacs.dtype) * input_scale  # [B, F, 2]
    return x, pad_time(curves, time_steps, axis=1)
