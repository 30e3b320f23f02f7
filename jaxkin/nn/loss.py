"""The self-supervised loss and the paper's TAC metrics, as pure functions.

Shapes: measured TACs ``tac [B, H, W, F]`` (kBq/ml), model TACs of the same shape, ``mask [B, H, W]``
(1 inside, 0 outside; float or bool). The mask selects voxels; sums run over masked voxels and all frames and are
divided by the number of masked entries (voxels x frames), never by all entries.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkin.kinetics import two_tissue_irreversible

__all__ = ["model_tacs", "masked_mse", "voxel_mae", "voxel_cosine", "metric_sums"]


def model_tacs(params, kin, subject, model=two_tissue_irreversible):
    """Frame-averaged model TACs of ``params [B, H, W, P]``, each sample with its own scan.

    ``kin``: a :class:`jaxkin.KineticInput` whose leaves are stacked over subjects (``table [S, G, F]``, ...);
    ``subject [B]`` (int) picks each sample's input function and frames. Returns ``[B, H, W, F]`` (kBq/ml).
    """
    per_sample = jax.tree.map(lambda leaf: leaf[subject], kin)
    return jax.vmap(model)(params, per_sample)


def _mask(mask, like):
    return jnp.asarray(mask, like.dtype)[..., None]


def masked_mse(tac, model_tac, mask):
    """Mean squared error over masked entries, (kBq/ml)^2."""
    m = _mask(mask, tac)
    n = jnp.maximum(jnp.sum(m) * tac.shape[-1], 1.0)
    return jnp.sum(m * (tac - model_tac) ** 2) / n


def voxel_mae(tac, model_tac):
    """Per-voxel mean absolute error over frames, ``[..., F] -> [...]`` (kBq/ml)."""
    return jnp.mean(jnp.abs(tac - model_tac), axis=-1)


def voxel_cosine(tac, model_tac, eps: float = 1e-12):
    """Per-voxel cosine similarity of the two TACs, ``[..., F] -> [...]`` (0 where either TAC is all zero)."""
    dot = jnp.sum(tac * model_tac, axis=-1)
    norm = jnp.sqrt(jnp.sum(tac * tac, axis=-1) * jnp.sum(model_tac * model_tac, axis=-1))
    return dot / jnp.maximum(norm, eps)


def metric_sums(tac, model_tac, mask):
    """Sums over masked voxels for the dataset-level metrics (accumulate over batches, then divide):
    ``n`` voxels, ``se`` squared error over entries, ``mae``/``mae2`` and ``cs``/``cs2`` sums of the per-voxel MAE
    and cosine similarity and of their squares (for mean +- SD over voxels, as in the paper's Table 1)."""
    m = jnp.asarray(mask, tac.dtype)
    mae = voxel_mae(tac, model_tac)
    cs = voxel_cosine(tac, model_tac)
    return {
        "n": jnp.sum(m),
        "se": jnp.sum(m[..., None] * (tac - model_tac) ** 2),
        "mae": jnp.sum(m * mae),
        "mae2": jnp.sum(m * mae**2),
        "cs": jnp.sum(m * cs),
        "cs2": jnp.sum(m * cs**2),
    }
