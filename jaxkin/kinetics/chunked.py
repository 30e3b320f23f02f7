"""Model TACs of any number of voxels on the host: fixed-size padded chunks, one compilation per chunk size."""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxkin.kinetics.models import FDG_MODEL, get_model

__all__ = ["tacs_in_chunks"]


@functools.partial(jax.jit, static_argnames="model")
def _model_tacs(params, kin, model: str):
    return get_model(model).tac(params, kin)


def tacs_in_chunks(params, kin, model: str = FDG_MODEL, *, chunk: int = 32768) -> np.ndarray:
    """Model TACs ``[N, F]`` (kBq/ml, float32 NumPy) of ``params [N, P]`` for the scan ``kin`` (an evaluator with
    ``frame_duration [F]``, e.g. a :class:`~jaxkin.kinetics.tabulated.KineticInput`), evaluated on the host's default
    device in fixed-size padded chunks (one compilation per chunk size), for any number of voxels."""
    m = get_model(model)
    params = np.asarray(params, np.float32).reshape(-1, m.n_params)
    n = params.shape[0]
    out = np.empty((n, int(np.asarray(kin.frame_duration).shape[0])), np.float32)
    size = min(chunk, max(1, 1 << (max(n, 1) - 1).bit_length()))
    for i in range(0, n, size):
        part = params[i : i + size]
        padded = np.zeros((size, m.n_params), np.float32)
        padded[: part.shape[0]] = part
        out[i : i + part.shape[0]] = np.asarray(jax.device_get(_model_tacs(padded, kin, model)))[: part.shape[0]]
    return out
