"""Final activations: map the network's raw outputs to the valid parameter domain of the kinetic model.

Every function takes logits ``[..., P]`` (last axis = parameters in the model's order, ``K1, k2, k3, vB`` for the
FDG model) and returns parameters of the same shape in their units (ml/cm^3/min, 1/min, 1/min, 1).

* ``abs``: ``|x|`` (Table 1, Exp 1.x and 2.x).
* ``clamp``: ``clip(x, 0.01, 3)`` on every parameter (Exp 3.x).
* ``multi_clamp``: ``clip`` to each parameter's own bounds (Exp 4.x; the paper's bounds).
* ``sigmoid``: ``lower + (upper - lower) * sigmoid(x)``, the same bounds as ``multi_clamp`` but smooth, so a
  voxel whose prediction lies outside the bounds still receives a gradient (a hard clamp gives it zero).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

__all__ = ["FINAL_ACTIVATIONS", "final_activation", "inverse_activation", "CLAMP_RANGE"]

#: The single range of the ``clamp`` activation (the original code's ``clamp(0.01, 3)``).
CLAMP_RANGE = (0.01, 3.0)


def _bounds(lower: Sequence[float], upper: Sequence[float], dtype):
    return jnp.asarray(lower, dtype), jnp.asarray(upper, dtype)


def absolute(logits, lower=None, upper=None):
    return jnp.abs(logits)


def clamp(logits, lower=None, upper=None):
    return jnp.clip(logits, CLAMP_RANGE[0], CLAMP_RANGE[1])


def multi_clamp(logits, lower, upper):
    lo, hi = _bounds(lower, upper, logits.dtype)
    return jnp.clip(logits, lo, hi)


def scaled_sigmoid(logits, lower, upper):
    lo, hi = _bounds(lower, upper, logits.dtype)
    return lo + (hi - lo) * jax.nn.sigmoid(logits)


#: The network's final activations by config name: each maps the last layer's outputs ``[..., 4]`` to K1, k2, k3, vB.
FINAL_ACTIVATIONS: dict[str, Callable] = {
    "abs": absolute,
    "clamp": clamp,
    "multi_clamp": multi_clamp,
    "sigmoid": scaled_sigmoid,
}


def final_activation(name: str) -> Callable:
    """The activation called ``name`` as ``fn(logits, lower, upper)`` (bounds are ignored by abs and clamp)."""
    try:
        return FINAL_ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown final activation {name!r}; choose one of {', '.join(FINAL_ACTIVATIONS)}") from None


def inverse_activation(name: str, params: Sequence[float], lower: Sequence[float], upper: Sequence[float]):
    """Logits ``[P]`` that the activation ``name`` maps to ``params`` (each strictly inside its bounds): used to
    initialise the head's bias so that an untrained network starts from plausible parameters.

    ``sigmoid``: ``logit((p - lower) / (upper - lower))``; ``abs``, ``clamp``, ``multi_clamp``: ``p`` itself.
    """
    final_activation(name)
    p = jnp.asarray(params, jnp.float32)
    if name != "sigmoid":
        return p
    lo, hi = _bounds(lower, upper, jnp.float32)
    u = (p - lo) / (hi - lo)
    return jnp.log(u) - jnp.log1p(-u)
