"""The input delay of a scan: one delay for the whole scan (a global delay, ``FitOptions(delay="global")``) from a
mean TAC.

A positive delay shifts the input (and the whole blood) later: ``C_delayed(t) = C(t - delay)``. The delay of a TAC
is estimated by fitting it with the compartment model and a delay parameter (:func:`jaxkin.fitting.fit_tacs` with a
:class:`jaxkin.kinetics.DelayedInput`): the basis-function start scans delays on a 1 s grid over the range (and the
model's rate grid at each), then Levenberg–Marquardt refines the delay with the other parameters. The scan is then
fitted with the input shifted by that delay (its knots moved, nothing resampled; :func:`shifted_inputs`).

Units: minutes inside; ``delay_range`` in minutes.
"""

from __future__ import annotations

import numpy as np

from jaxkin.input_function import InputFunction
from jaxkin.kinetics import DEFAULT_DELAY_RANGE, prepare_delayed

__all__ = ["estimate_delay", "mean_tac", "shifted_inputs", "GLOBAL_DELAY_STEP"]

#: Spacing of the delay grid of the global delay's search (min): 1 s.
GLOBAL_DELAY_STEP = 1.0 / 60.0


def estimate_delay(tac, input_function: InputFunction, frames, blood: InputFunction | None = None, *,
                   model: str = "2tcmirr", delay_range=DEFAULT_DELAY_RANGE, weights="none", bounds=None,
                   half_life: float | None = None) -> tuple[float, float]:
    """``(delay, standard error)`` in minutes of one TAC ``[F]`` (kBq/ml): the delay of a fit of ``model`` with a
    delayed input, searched on a 1 s grid over ``delay_range`` (min) and refined. ``blood``: the whole-blood curve
    (default the input), delayed with it."""
    from jaxkin.fitting.lm import fit_tacs

    dkin = prepare_delayed(input_function, frames, blood, max_advance=max(-float(delay_range[0]), 0.0),
                           max_delay=float(delay_range[1]))
    kw = {} if half_life is None else {"half_life": half_life}
    res = fit_tacs(np.asarray(tac, np.float64)[None], dkin, model=model, weights=weights, bounds=bounds,
                   delay_range=delay_range, delay_step=GLOBAL_DELAY_STEP, n_iter=32, **kw).to_numpy()
    return float(res.params[0, -1]), float(res.stderr[0, -1])


def mean_tac(pet, region, slab: int = 8) -> np.ndarray:
    """Mean TAC ``[F]`` (kBq/ml, float64) of ``pet`` (``[X, Y, Z, F]`` array or PetImage) over ``region`` (bool
    ``[X, Y, Z]``), read a frame at a time (:func:`jaxkin.regions.tacs.region_sums`); voxels with NaN/Inf are left out.
    ``slab`` is not used (kept for callers)."""
    from jaxkin.regions.tacs import region_sums

    region = np.asarray(region, bool)
    sums, _, count, _ = region_sums(pet, np.asarray(region, bool), 1)  # True: row 1
    if count[1] == 0:
        raise ValueError("the region for the delay holds no finite voxel")
    return sums[1] / count[1]


def shifted_inputs(delay: float, frames, *curves: InputFunction) -> list[InputFunction]:
    """``curves`` delayed by ``delay`` (min; knots moved): a negative delay needs each curve up to the last frame's
    end plus ``-delay``, where its last value is held if it ends earlier."""
    end = float(frames.end[-1]) + max(-float(delay), 0.0)
    return [c.held_to(end).delayed(delay) for c in curves]
