"""The self-supervised loss and the paper's TAC metrics, as pure functions.

Shapes: measured TACs ``tac [B, H, W, F]`` (kBq/ml), model TACs of the same shape, ``mask [B, H, W]``
(1 inside, 0 outside; float or bool). The mask selects voxels; sums run over masked voxels and all frames and are
divided by the number of masked entries (voxels x frames), never by all entries.

The per-voxel TAC metrics (:func:`voxel_mae`, :func:`voxel_cosine`; the paper, Section 2.2) are defined here once
for both sides: JAX arrays (traced ones too) are computed with ``jax.numpy`` in their own dtype (training's
validation, prediction), host arrays in float64 NumPy (:mod:`jaxkin.evaluation.metrics`). This module needs JAX and
NumPy only, not Flax.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxkin.kinetics import FDG_MODEL, get_model, two_tissue_irreversible
from jaxkin.nn.inputs import _one_of, input_level

__all__ = ["model_tacs", "masked_mse", "loss_weights", "loss_unit", "LOSS_FRAMES", "LOSS_SCALES", "guidance_loss", "GUIDANCE_FLOOR",
           "voxel_mae", "voxel_cosine", "metric_sums", "METRIC_SUMS"]


def model_tacs(params, kin, subject, model=two_tissue_irreversible):
    """Frame-averaged model TACs of ``params [B, H, W, P]``, each sample with its own scan.

    ``kin``: a :class:`jaxkin.kinetics.KineticInput` whose leaves are stacked over subjects (``table [S, G, F]``, ...);
    ``subject [B]`` (int) picks each sample's input function and frames. Returns ``[B, H, W, F]`` (kBq/ml).
    """
    return jax.vmap(model)(params, per_sample_input(kin, subject))


def per_sample_input(kin, subject):
    """The stacked kinetic inputs ``kin`` (leaves ``[S, ...]``) picked for each sample: leaves ``[B, ...]``."""
    return jax.tree.map(lambda leaf: leaf[subject], kin)


def _mask(mask, like):
    return jnp.asarray(mask, like.dtype)[..., None]


def masked_mse(tac, model_tac, mask, weights=None):
    """Mean squared error over masked entries, (kBq/ml)^2.

    ``weights`` (optional, broadcast against ``[B, H, W, F]``, e.g. ``[B, 1, 1, F]``) weigh each entry; they should
    average 1 over frames (see :func:`loss_weights`) so the value stays comparable with the unweighted one."""
    m = _mask(mask, tac)
    n = jnp.maximum(jnp.sum(m) * tac.shape[-1], 1.0)
    err = (tac - model_tac) ** 2
    return jnp.sum(m * (err if weights is None else weights * err)) / n


#: Choices of the frame weights of :func:`loss_weights` (``loss_frames``).
LOSS_FRAMES = ("none", "duration")
#: Choices of the error scale of :func:`loss_weights` (``loss_scale``).
LOSS_SCALES = ("none", "scan", "voxel", "counts")


def loss_unit(scale: str = "none") -> str:
    """The unit of the self-supervised loss with the error scale ``scale`` (:func:`loss_weights`): ``(kBq/mL)^2``
    for the paper's plain MSE (``"none"``), ``1`` (dimensionless) for a scaled one."""
    _one_of("loss_scale", scale, LOSS_SCALES)
    return "(kBq/mL)^2" if scale == "none" else "1"


def loss_weights(kin, tac, frames: str = "none", scale: str = "none"):
    """Weights of the self-supervised loss, broadcastable to ``[B, H, W, F]``, or None (``"none"`` and ``"none"``:
    the paper's plain MSE in (kBq/ml)^2).

    ``kin``: each sample's :class:`jaxkin.kinetics.KineticInput` (leaves ``[B, ...]``); ``tac [B, H, W, F]`` (kBq/ml) the
    measured TACs. ``frames="duration"``: each frame weighs its duration over the mean duration (as the voxel fit's
    frame weights do for counting noise, up to decay), so the 2-s frames of the bolus do not outweigh the 5-min
    frames that carry Ki. ``scale``: the errors are divided by each scan's time-averaged blood activity
    (``"scan"``, :func:`jaxkin.nn.inputs.input_level`: every scan counts alike whatever its dose) or by each voxel's
    time-averaged activity (``"voxel"``: relative errors, so a cold voxel counts as much as the bladder; the
    activity is floored at 1e-3 of the scan's blood level) or by the product of the two (``"counts"``: a voxel's
    squared error over its activity, as counting noise, whose variance grows with the activity, calls for; each
    voxel then counts by its information, between ``"scan"``, where hot voxels dominate, and ``"voxel"``, where
    the noisiest, coldest ones do); the loss is then dimensionless.
    """
    _one_of("loss_frames", frames, LOSS_FRAMES)
    _one_of("loss_scale", scale, LOSS_SCALES)
    if frames == "none" and scale == "none":
        return None
    d = kin.frame_duration
    w = (d / jnp.mean(d, axis=-1, keepdims=True))[:, None, None, :] if frames == "duration" \
        else jnp.ones_like(d)[:, None, None, :]  # [B, 1, 1, F]
    if scale == "none":
        return w
    level = input_level(kin)[:, None, None, None]  # [B, 1, 1, 1] kBq/ml
    if scale == "scan":
        return w / level**2
    voxel = jnp.maximum(jnp.mean(tac * w, axis=-1, keepdims=True), 1e-3 * level)  # [B, H, W, 1] kBq/ml
    return w / (voxel * level) if scale == "counts" else w / voxel**2


#: Floors of the log-space distance of :func:`guidance_loss`, per parameter (K1 ml/cm^3/min, k2, k3 1/min, vB): a
#: parameter well below its floor (a k3 of 0.0001 against 0.0005) counts as equal, so the voxel fit's near-zero
#: estimates in noisy voxels do not dominate; above it the distance is relative (log-ratio). vB's floor, 0.05, makes
#: its distance nearly linear over tissue values (0.01-0.09), where the fit's vB is noisy and often at its bound 0:
#: with a floor of 0.005 the network's tissue vB fell to about a third of the truth (benchmarks/RESULTS.md).
GUIDANCE_FLOOR = (0.01, 0.05, 0.001, 0.05)
#: The floor of Ki's log-ratio distance in :func:`guidance_loss` (ml/cm^3/min): tissue Ki is 0.001-0.2.
GUIDANCE_FLOOR_KI = 0.0005


#: Ki = K1 k3 / (k2 + k3) of parameters ``[..., 4]`` (ml/cm^3/min): the FDG model's own macro-parameter.
_ki = get_model(FDG_MODEL).macros["Ki"]


def guidance_loss(params, target, mask, weight, ki_weight=None):
    """Distance of the predicted ``params [B, H, W, 4]`` (K1, k2, k3, vB) from the voxel fit's ``target`` (same
    shape; see :func:`jaxkin.network.data.lm_targets`): the mean over masked voxels and the 4 parameters of
    ``(log(p + floor) - log(target + floor))^2`` (floors :data:`GUIDANCE_FLOOR`), each sample weighted by
    ``weight [B]`` (the run's ``lm_guidance``, 0 in epochs without guidance). Dimensionless.

    Why log-ratios: the parameters span three decades over organs (k3 0.003 in the liver, 0.3 in the bladder), and
    a relative distance gives each organ its say, as the self-supervised loss's ``voxel`` scale does for TACs.

    ``ki_weight [B]`` (optional): adds, so weighted, the mean over masked voxels of Ki's log-ratio distance (floor
    :data:`GUIDANCE_FLOOR_KI`): Ki is what the fit determines best in each voxel, and the four parameters' distances
    alone leave it loose where k3 is below its floor (liver, spleen).
    """
    floor = jnp.asarray(GUIDANCE_FLOOR, params.dtype)
    target = jnp.maximum(target, 0.0)
    d = (jnp.log(params + floor) - jnp.log(target + floor)) ** 2
    m = _mask(mask, params)
    n = jnp.maximum(jnp.sum(m) * params.shape[-1], 1.0)
    loss = jnp.sum(m * jnp.asarray(weight, params.dtype)[:, None, None, None] * d) / n
    if ki_weight is None:
        return loss
    d_ki = (jnp.log(_ki(params) + GUIDANCE_FLOOR_KI) - jnp.log(_ki(target) + GUIDANCE_FLOOR_KI)) ** 2
    return loss + jnp.sum(m[..., 0] * jnp.asarray(ki_weight, params.dtype)[:, None, None] * d_ki) / (n / 4)


def _namespace(*arrays):
    """``(jax.numpy, arrays)`` when any of ``arrays`` is a JAX array (or a tracer), else ``(numpy, float64
    copies)``."""
    if any(isinstance(a, jax.Array) for a in arrays):
        return jnp, arrays
    return np, tuple(np.asarray(a, np.float64) for a in arrays)


def voxel_mae(tac, model_tac):
    """Per-voxel mean absolute error over frames, ``[..., F] -> [...]`` (kBq/ml); float64 for host arrays."""
    xp, (a, b) = _namespace(tac, model_tac)
    return xp.mean(xp.abs(a - b), axis=-1)


def voxel_cosine(tac, model_tac, eps: float = 1e-12):
    """Per-voxel cosine similarity of the two TACs, ``[..., F] -> [...]``: ``<tac, model> / max(|tac| |model|,
    eps)``, so 0 where either TAC is all zero; float64 for host arrays."""
    xp, (a, b) = _namespace(tac, model_tac)
    dot = xp.sum(a * b, axis=-1)
    norm = xp.sqrt(xp.sum(a * a, axis=-1) * xp.sum(b * b, axis=-1))
    return dot / xp.maximum(norm, eps)


#: The sums of :func:`metric_sums`, in order.
METRIC_SUMS = ("n", "se", "mae", "mae2", "cs", "cs2")


def metric_sums(tac, model_tac, mask):
    """Sums over masked voxels for the dataset-level metrics (accumulate over batches, then divide):
    ``n`` voxels, ``se`` squared error over entries, ``mae``/``mae2`` and ``cs``/``cs2`` sums of the per-voxel MAE
    and cosine similarity and of their squares (for mean +- SD over voxels, as in the paper's Table 1)."""
    tac, model_tac = jnp.asarray(tac), jnp.asarray(model_tac)
    m = jnp.asarray(mask, tac.dtype)
    mae = voxel_mae(tac, model_tac)
    cs = voxel_cosine(tac, model_tac)
    sums = (jnp.sum(m), jnp.sum(m[..., None] * (tac - model_tac) ** 2), jnp.sum(m * mae), jnp.sum(m * mae**2),
            jnp.sum(m * cs), jnp.sum(m * cs**2))
    return dict(zip(METRIC_SUMS, sums))
