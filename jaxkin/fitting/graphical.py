"""Graphical methods, vectorised over voxels: Patlak (irreversible uptake, Ki) and Logan (reversible, VT).

Both are straight-line fits over the frames whose mid time is at least ``t_star`` minutes:

* Patlak: ``y_f = C_f / Cp_f`` against ``x_f = ∫Cp_f / Cp_f``; slope = Ki (ml/cm^3/min), intercept = the apparent
  distribution volume of the reversible part plus vB. ``C_f`` is the TAC's frame mean, ``Cp_f`` and ``∫Cp_f`` the
  frame means of the input and of its running integral (exact for the piecewise-linear input). ``x`` is shared by
  every voxel. For a voxel with blood volume fraction vB (blood = input), the slope is the voxel's
  ``(1 - vB)·Ki`` and vB goes into the intercept; divide by ``1 - vB`` to compare with a compartment fit's Ki.
* Logan: ``y_f = ∫_0^{e_f} C / C_f`` against ``x_f = ∫_0^{e_f} Cp / C_f`` with ``e_f`` the frame end; the TAC's
  integral is the sum of frame mean × duration (frames must start at injection and be contiguous for it to be
  exact); slope = VT (ml/cm^3).

Frames where the denominator is not positive are left out of that voxel's regression. A voxel with fewer than
two usable frames gets slope 0, intercept 0 and ``valid = False``. Units: minutes, kBq/ml.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxkin.frames import FrameSchedule
from jaxkin.kinetics import UNITS
from jaxkin.input_function import InputFunction

__all__ = ["PlotInput", "LinearPlot", "patlak", "logan", "GraphicalMethod", "GRAPHICAL_METHODS", "T_STAR"]

#: Default start of the linear part of the plots (min): frames with mid time at least this are regressed.
T_STAR = 20.0


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PlotInput:
    """Per-scan quantities of the graphical methods, all ``[F]``: frame mid (min), frame duration (min), frame
    means of the input (kBq/ml) and of its running integral (kBq/ml·min), and the input's integral to each frame end."""

    mid: jax.Array
    duration: jax.Array
    cp_mean: jax.Array
    cp_integral_mean: jax.Array
    cp_integral_end: jax.Array

    @classmethod
    def from_input(cls, input_function: InputFunction, frames: FrameSchedule, dtype=None) -> "PlotInput":
        """Exact frame means: the running integral ``I`` of a piecewise-linear input is piecewise quadratic, so
        Simpson's rule on the knots (frame boundaries added) integrates it exactly."""
        knots = np.union1d(input_function.times, np.concatenate([frames.start, frames.end]))
        knots = knots[knots <= input_function.end]
        mids = 0.5 * (knots[1:] + knots[:-1])
        i_k, i_m = input_function.integral(knots), input_function.integral(mids)
        j = np.concatenate([[0.0], np.cumsum(np.diff(knots) / 6.0 * (i_k[:-1] + 4 * i_m + i_k[1:]))])
        j_at = lambda t: np.interp(t, knots, j)  # noqa: E731 - exact at knots, and frame boundaries are knots
        cp_mean = (input_function.integral(frames.end) - input_function.integral(frames.start)) / frames.duration
        dtype = dtype or jnp.zeros(()).dtype
        return cls(
            mid=jnp.asarray(frames.mid, dtype),
            duration=jnp.asarray(frames.duration, dtype),
            cp_mean=jnp.asarray(cp_mean, dtype),
            cp_integral_mean=jnp.asarray((j_at(frames.end) - j_at(frames.start)) / frames.duration, dtype),
            cp_integral_end=jnp.asarray(input_function.integral(frames.end), dtype),
        )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LinearPlot:
    """Per-voxel straight-line fit ``[N]``: slope (Ki or VT), intercept, R² of the line, ``valid`` (>= 2 frames)."""

    slope: jax.Array
    intercept: jax.Array
    r2: jax.Array
    valid: jax.Array


def _line_fit(x, y, use):
    """Least-squares line through ``(x, y)`` over frames ``use``; all ``[N, F]`` (x may broadcast)."""
    w = use.astype(y.dtype)
    x = jnp.where(use, x, 0.0)
    y = jnp.where(use, y, 0.0)
    n = jnp.sum(w, -1)
    safe_n = jnp.maximum(n, 1.0)
    mx, my = jnp.sum(w * x, -1) / safe_n, jnp.sum(w * y, -1) / safe_n
    dx, dy = (x - mx[:, None]) * w, (y - my[:, None]) * w
    sxx, sxy, syy = jnp.sum(dx * dx, -1), jnp.sum(dx * dy, -1), jnp.sum(dy * dy, -1)
    valid = (n >= 2) & (sxx > 0)
    slope = jnp.where(valid, sxy / jnp.where(valid, sxx, 1.0), 0.0)
    intercept = jnp.where(valid, my - slope * mx, 0.0)
    r2 = jnp.where(valid & (syy > 0), sxy * sxy / jnp.where(valid & (syy > 0), sxx * syy, 1.0), 0.0)
    clean = lambda a: jnp.where(jnp.isfinite(a), a, 0.0)  # noqa: E731
    return LinearPlot(clean(slope), clean(intercept), clean(r2), valid)


@jax.jit
def patlak(tacs, plot: PlotInput, t_star: float = T_STAR) -> LinearPlot:
    """Patlak plot of ``tacs [N, F]`` (kBq/ml) over frames with mid time >= ``t_star`` (min); slope = Ki."""
    tacs = jnp.nan_to_num(jnp.asarray(tacs, plot.cp_mean.dtype), nan=0.0, posinf=0.0, neginf=0.0)
    ok_cp = plot.cp_mean > 0
    cp = jnp.where(ok_cp, plot.cp_mean, 1.0)
    x = plot.cp_integral_mean / cp
    y = tacs / cp
    use = jnp.broadcast_to((plot.mid >= t_star) & ok_cp, tacs.shape)
    return _line_fit(jnp.broadcast_to(x, tacs.shape), y, use)


@jax.jit
def logan(tacs, plot: PlotInput, t_star: float = T_STAR) -> LinearPlot:
    """Logan plot of ``tacs [N, F]`` (kBq/ml) over frames with mid time >= ``t_star`` (min); slope = VT."""
    tacs = jnp.nan_to_num(jnp.asarray(tacs, plot.cp_mean.dtype), nan=0.0, posinf=0.0, neginf=0.0)
    tissue_integral = jnp.cumsum(tacs * plot.duration, axis=-1)
    ok = tacs > 0
    c = jnp.where(ok, tacs, 1.0)
    x = plot.cp_integral_end / c
    y = tissue_integral / c
    use = ok & (plot.mid >= t_star)
    return _line_fit(x, y, use)


@dataclasses.dataclass(frozen=True)
class GraphicalMethod:
    """A graphical method: its function ``(tacs [N, F], plot, t_star) -> LinearPlot``, the name and unit of its
    slope, and the unit of its intercept."""

    name: str
    fn: object
    slope: str
    slope_unit: str
    intercept_unit: str


#: Patlak: y = C/Cp (unitless) against x = ∫Cp/Cp (min), so the intercept is unitless; Logan: y = ∫C/C (min)
#: against x = ∫Cp/C (min), so the intercept is in minutes.
GRAPHICAL_METHODS: dict[str, GraphicalMethod] = {
    "patlak": GraphicalMethod("patlak", patlak, "Ki", UNITS["Ki"], "1"),
    "logan": GraphicalMethod("logan", logan, "VT", UNITS["VT"], "min"),
}
