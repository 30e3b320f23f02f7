"""Frame weights of the fits (normalised to mean 1 over the frames of each TAC, which does not change a fit).

* ``none``:     ``w_f = 1``
* ``duration``: ``w_f = Δt_f``
* ``poisson``:  ``w_f = Δt_f · e^{-ln2 · t_f / T½} / max(C_f, c_min)`` — the inverse variance of a decay-corrected
  frame mean with Poisson counts (``t_f`` frame mid time, ``T½`` the radionuclide's half-life, F-18 by default,
  ``C_f`` the measured TAC, ``c_min`` = 5% of the TAC's peak so that near-empty frames do not dominate). For
  images that are not decay corrected the decay factor is left out (``decay_corrected=False``).

Units: minutes, kBq/ml.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from jaxkin.decay import F18_HALF_LIFE_MIN
from jaxkin.kinetics import KineticInput

__all__ = ["frame_weights", "WEIGHTS"]

#: The frame weights by name (see the module).
WEIGHTS = ("none", "duration", "poisson")


def frame_weights(kind, kin: KineticInput, tacs=None, *, half_life: float = F18_HALF_LIFE_MIN,
                  decay_corrected: bool = True):
    """Frame weights ``[F]`` (``none``, ``duration``) or ``[N, F]`` (``poisson``, from ``tacs [N, F]``).

    An array (``[F]`` or ``[N, F]``) is passed through. Weights are normalised to mean 1 per TAC. See the module
    docstring for the formulas.
    """
    duration = jnp.asarray(kin.frame_duration)
    if kind is None or (isinstance(kind, str) and kind == "none"):
        w = jnp.ones_like(duration)
    elif isinstance(kind, str) and kind == "duration":
        w = duration
    elif isinstance(kind, str) and kind == "poisson":
        if tacs is None:
            raise ValueError("poisson weights need the TACs")
        tacs = jnp.nan_to_num(jnp.asarray(tacs, duration.dtype), nan=0.0, posinf=0.0, neginf=0.0)
        mid = jnp.asarray(kin.frame_start) + 0.5 * duration
        decay = jnp.exp(-math.log(2.0) * mid / half_life) if decay_corrected else jnp.ones_like(mid)
        floor = 0.05 * jnp.max(jnp.abs(tacs), axis=-1, keepdims=True)
        activity = jnp.maximum(tacs, jnp.maximum(floor, jnp.finfo(duration.dtype).tiny * 1e6))
        w = duration * decay / activity
    elif isinstance(kind, str):
        raise ValueError(f"unknown weights {kind!r}; choose {', '.join(WEIGHTS[:-1])} or {WEIGHTS[-1]}")
    else:
        w = jnp.asarray(kind, duration.dtype)
        w = jnp.where(jnp.isfinite(w) & (w > 0), w, 0.0)
    mean = jnp.mean(w, axis=-1, keepdims=True)
    return w / jnp.where(mean > 0, mean, 1.0)
