"""Regional kinetic fits: a few TACs (one per region) fitted with any compartment model or graphical method, with the
standard errors and model-selection statistics that regional analysis reports.

:func:`fit_regions` is a pure function of arrays. Compartment models use the voxel fit (:func:`jaxkin.fitting.fit_tacs`:
basis-function start + bounded Levenberg–Marquardt) in float64 with more iterations (a region is worth it), and
report per region:

* the parameters and Ki (``2tcmirr``) or VT (``1tcm``, ``2tcm``) with their standard errors: ``se = sqrt(diag(C))``,
  ``C = (JᵀWJ)⁻¹ · SSE / (F − P)`` at the solution, and for Ki/VT the delta method ``sqrt(gᵀ C g)``;
* the weighted ``SSE``, ``R2``, ``AIC = F · ln(SSE / F) + 2P`` and the small-sample ``AICc = AIC + 2P(P + 1) /
  (F − P − 1)`` (F frames, P fitted parameters; compare models on the same TAC and weights only);
* ``converged`` and the warning ``flags`` (:data:`jaxkin.fitting.result.FLAG_NAMES`).

Graphical methods (Patlak: Ki, Logan: VT) report the slope, its standard error from the straight-line regression
(``|b| · sqrt((1 − r²) / (r² (n − 2)))`` over the n frames used), the intercept, R² and n.

Weights: ``none``, ``duration``, ``poisson`` (:func:`jaxkin.fitting.frame_weights`), ``sd`` (``1 / SD_f²`` from the
regional SD over the voxels per frame, floored at 1% of its largest value) or an array ``[R, F]``.
Units: minutes, 1/min, kBq/ml.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxkin.decay import F18_HALF_LIFE_MIN
from jaxkin.fitting.graphical import GRAPHICAL_METHODS, T_STAR, PlotInput
from jaxkin.fitting.lm import fit_tacs
from jaxkin.fitting.result import FLAG_NAMES
from jaxkin.fitting.weights import WEIGHTS
from jaxkin.frames import FrameSchedule
from jaxkin.input_function import InputFunction
from jaxkin.kinetics import FDG_MODEL, UNITS, get_model, prepare, resolve_bounds

__all__ = ["RegionalFit", "fit_regions", "compare_regional_fits", "sd_weights", "REGIONAL_CHUNK", "REGIONAL_WEIGHTS"]

#: The frame weights of regional fits by name: those of voxel fits and ``sd`` (see the module).
REGIONAL_WEIGHTS = (*WEIGHTS, "sd")

#: Regional fits run in chunks of this many TACs (one compilation for any number of regions).
REGIONAL_CHUNK = 256


@dataclasses.dataclass(frozen=True)
class RegionalFit:
    """One row per region: ``columns`` ``{name: [R]}`` in order (``region`` first), with ``units`` per column and
    the ``model`` / ``weights`` used."""

    model: str
    weights: str
    columns: dict
    units: dict

    def rows(self) -> list[dict]:
        names = list(self.columns)
        return [{n: self.columns[n][i] for n in names} for i in range(len(self.columns["region"]))]


def sd_weights(sd) -> np.ndarray:
    """``[R, F]`` weights ``1 / SD²`` from the regional SD over the voxels per frame (floored at 1% of each region's
    largest SD, so a frame with SD 0 does not take all the weight)."""
    sd = np.asarray(sd, np.float64)
    floor = 0.01 * np.max(sd, axis=-1, keepdims=True)
    return 1.0 / np.maximum(sd, np.maximum(floor, 1e-12)) ** 2


def fit_regions(names, tacs, input_function: InputFunction, frames: FrameSchedule, *, whole_blood=None,
                model: str = FDG_MODEL, weights="none", sd=None, t_star: float = T_STAR, bounds=None, lower=None,
                upper=None, half_life: float = F18_HALF_LIFE_MIN, n_iter: int = 64) -> RegionalFit:
    """Fit the regional TACs ``tacs [R, F]`` (kBq/ml, frame means over ``frames``, minutes since injection) of the
    regions ``names``, with ``input_function`` (and ``whole_blood`` for the vB term; default the input).

    ``model``: ``2tcmirr``, ``1tcm``, ``2tcm``, ``patlak`` or ``logan``; ``weights``: see the module docstring
    (``sd`` needs ``sd [R, F]``). ``bounds``: a bounds specification (:func:`jaxkin.kinetics.resolve_bounds`;
    default ``physiological``), ``lower``/``upper`` replace a side of it; a parameter with a range of zero width is
    held fixed (:func:`jaxkin.kinetics.with_fixed`): its standard error is 0 and ``n_params`` counts the fitted
    parameters only. Returns :class:`RegionalFit`.
    """
    names = [str(n) for n in names]
    tacs = np.asarray(tacs, np.float64)
    if tacs.ndim != 2 or tacs.shape != (len(names), frames.n_frames):
        raise ValueError(f"tacs must be [{len(names)}, {frames.n_frames}], got {tacs.shape}")
    n_frames = frames.n_frames
    columns: dict = {"region": np.array(names, dtype=object)}
    units: dict = {"region": None}
    if model in GRAPHICAL_METHODS:
        g = GRAPHICAL_METHODS[model]
        with jax.enable_x64(True):
            plot = PlotInput.from_input(input_function, frames, dtype=jnp.float64)
            line = jax.tree_util.tree_map(np.asarray, g.fn(jnp.asarray(tacs), plot, t_star))
            mid = np.asarray(plot.mid)
            if model == "patlak":
                used = np.broadcast_to((mid >= t_star) & (np.asarray(plot.cp_mean) > 0), tacs.shape)
            else:
                used = (tacs > 0) & (mid >= t_star)
        n = used.sum(axis=1)
        r2 = np.clip(line.r2, 0.0, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            se = np.abs(line.slope) * np.sqrt((1.0 - r2) / (r2 * np.maximum(n - 2, 1)))
        se = np.where(line.valid & (n > 2) & (r2 > 0), se, np.nan)
        columns |= {g.slope: line.slope, f"{g.slope}_se": se, "intercept": line.intercept, "R2": line.r2,
                    "n_frames": n.astype(np.int64), "valid": line.valid.astype(bool)}
        units |= {g.slope: g.slope_unit, f"{g.slope}_se": g.slope_unit, "intercept": g.intercept_unit, "R2": "1",
                  "n_frames": None, "valid": None}
        return RegionalFit(model=model, weights="none (straight-line regression)", columns=columns, units=units)

    m = get_model(model)
    if isinstance(weights, str) and weights == "sd":
        if sd is None:
            raise ValueError("weights 'sd' need the regional SD per frame")
        w, label = sd_weights(sd), "sd"
    else:
        w, label = weights, (weights if isinstance(weights, str) else "given")
    with jax.enable_x64(True):
        kin = prepare(input_function, frames, whole_blood, dtype=jnp.float64)
        res = fit_tacs(tacs, kin, model, weights=w if isinstance(w, str) else jnp.asarray(w, jnp.float64),
                       bounds=bounds, lower=lower, upper=upper, n_iter=n_iter, chunk_size=REGIONAL_CHUNK,
                       half_life=half_life)
        res = res.to_numpy()
    lo, hi, _ = resolve_bounds(model, bounds)
    p = sum(a < b for a, b in zip(lower if lower is not None else lo, upper if upper is not None else hi))
    for i, name in enumerate(m.param_names):
        columns[name] = res.params[:, i]
        columns[f"{name}_se"] = res.stderr[:, i]
        units[name] = units[f"{name}_se"] = UNITS[name]
    columns[res.macro_name] = res.macro
    columns[f"{res.macro_name}_se"] = res.macro_stderr
    units[res.macro_name] = units[f"{res.macro_name}_se"] = UNITS[res.macro_name]
    sse = np.asarray(res.sse, np.float64)
    aicc = np.asarray(res.aicc, np.float64)  # one definition: jaxkin.fitting.result.aicc (with its SSE floor)
    aic = aicc - 2.0 * p * (p + 1) / max(n_frames - p - 1, 1)
    columns |= {"SSE": sse, "R2": res.r2, "AIC": aic, "AICc": aicc, "n_frames": np.full(len(names), n_frames),
                "n_params": np.full(len(names), p), "converged": res.converged.astype(bool),
                "flags": res.flags.astype(np.int64)}
    units |= {"SSE": "(kBq/mL)^2", "R2": "1", "AIC": "1", "AICc": "1", "n_frames": None, "n_params": None,
              "converged": None, "flags": None}
    return RegionalFit(model=model, weights=label, columns=columns, units=units)


def compare_regional_fits(fits: list[RegionalFit]) -> RegionalFit:
    """Model comparison of regional fits of the same TACs with the same weights (one :class:`RegionalFit` per
    compartment model): per region the ``AICc`` of each model, its difference to the smallest (``dAICc_<model>``),
    the Akaike weights ``w = exp(-dAICc / 2) / sum(exp(-dAICc / 2))`` (``weight_<model>``), the ``preferred`` model
    (smallest AICc) and each model's macro-parameter (Ki or VT) for reference."""
    if len(fits) < 2 or any("AICc" not in f.columns for f in fits):
        raise ValueError("compare_regional_fits: two or more compartment-model fits are needed")
    regions = fits[0].columns["region"]
    if any(len(f.columns["region"]) != len(regions) or np.any(f.columns["region"] != regions) for f in fits):
        raise ValueError("compare_regional_fits: the fits are not of the same regions")
    if len({f.weights for f in fits}) > 1:
        raise ValueError("compare_regional_fits: AICc compares fits with the same weights only")
    aicc = np.stack([np.asarray(f.columns["AICc"], np.float64) for f in fits])  # [M, R]
    delta = aicc - np.min(aicc, axis=0, keepdims=True)
    weight = np.exp(-0.5 * delta)
    weight /= weight.sum(axis=0, keepdims=True)
    names = [f.model for f in fits]
    columns: dict = {"region": regions, "preferred": np.array(names, dtype=object)[np.argmin(aicc, axis=0)]}
    units: dict = {"region": None, "preferred": None}
    for i, f in enumerate(fits):
        macro = next(k for k in ("Ki", "VT") if k in f.columns)
        columns |= {f"AICc_{f.model}": aicc[i], f"dAICc_{f.model}": delta[i], f"weight_{f.model}": weight[i],
                    f"{macro}_{f.model}": f.columns[macro]}
        units |= {f"AICc_{f.model}": "1", f"dAICc_{f.model}": "1", f"weight_{f.model}": "1",
                  f"{macro}_{f.model}": f.units[macro]}
    return RegionalFit(model="comparison", weights=fits[0].weights, columns=columns, units=units)


def flag_text(flags: int) -> str:
    """The warning flags of a fit as words (``"not converged; a parameter is at a bound"``), or ``""``."""
    return "; ".join(text for bit, text in FLAG_NAMES.items() if int(flags) & bit)
