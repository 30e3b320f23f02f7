"""What a voxel-wise fit returns (:class:`FitResult`), its static settings (:class:`FitSettings`) and the warning
flags of a fit."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxkin.kinetics import DEFAULT_BOUNDS, DEFAULT_DELAY_RANGE, get_model

__all__ = ["FitResult", "FitSettings", "aicc", "AICC_SSE_FLOOR", "FLAG_NAMES", "FLAG_NOT_CONVERGED", "FLAG_NONFINITE_INPUT",
           "FLAG_NO_SIGNAL",
           "FLAG_NEGATIVE_VALUES", "FLAG_AT_BOUND"]

#: Spacing of the delays in the basis start of a per-voxel delay fit (min): 4 s (11 delays over -10 ... +30 s).
DELAY_STEP = 4.0 / 60.0

#: Warning bit: the cost was still falling over the last iterations.
FLAG_NOT_CONVERGED = 1
#: Warning bit: the TAC had NaN or Inf values (replaced by 0 for the fit).
FLAG_NONFINITE_INPUT = 2
#: Warning bit: every value of the TAC is equal (e.g. all zero).
FLAG_NO_SIGNAL = 4
#: Warning bit: the TAC has negative values.
FLAG_NEGATIVE_VALUES = 8
#: Warning bit: a parameter ended at one of its bounds.
FLAG_AT_BOUND = 16
#: Each warning bit of :attr:`FitResult.flags` and what it means.
FLAG_NAMES = {
    FLAG_NOT_CONVERGED: "not converged (cost still falling at the last iterations)",
    FLAG_NONFINITE_INPUT: "NaN or Inf in the TAC (replaced by 0)",
    FLAG_NO_SIGNAL: "no signal (all values equal, e.g. all zero)",
    FLAG_NEGATIVE_VALUES: "negative values in the TAC",
    FLAG_AT_BOUND: "a parameter is at a bound",
}


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FitResult:
    """Per-TAC fit results (leading axis ``N``).

    ``params [N, P]`` (model order, e.g. K1, k2, k3, vB; then the delay in min when it is fitted), ``macro [N]`` (Ki in ml/cm^3/min for 2tcmirr, VT in
    ml/cm^3 otherwise; name in ``macro_name``), ``sse [N]`` (weighted sum of squared residuals, (kBq/ml)^2),
    ``r2 [N]`` (weighted coefficient of determination; 0 for a flat TAC), ``converged [N]`` bool,
    ``flags [N]`` int32 bit field (:data:`FLAG_NAMES`), ``stderr [N, P]`` standard errors of the parameters,
    ``macro_stderr [N]`` the standard error of the macro-parameter (delta method).
    ``aicc [N]`` the small-sample corrected Akaike information criterion of the fit (:func:`aicc`; smaller is
    better; compare it between models fitted to the same TACs with the same weights).
    """

    params: jax.Array
    macro: jax.Array
    sse: jax.Array
    r2: jax.Array
    converged: jax.Array
    flags: jax.Array
    stderr: jax.Array
    macro_stderr: jax.Array
    aicc: jax.Array | None = None
    model: str = dataclasses.field(metadata=dict(static=True), default="2tcmirr")
    macro_name: str = dataclasses.field(metadata=dict(static=True), default="Ki")

    def __len__(self) -> int:
        return int(self.params.shape[0])

    def to_numpy(self) -> "FitResult":
        return jax.tree_util.tree_map(np.asarray, self)

    def as_dict(self) -> dict:
        """``{param_name: [N], macro_name: [N], "SSE": [N], "R2": [N]}`` as NumPy arrays."""
        names = get_model(self.model).param_names
        names = names + ("delay",) * (self.params.shape[-1] - len(names))  # a fitted delay is the last parameter
        out = {n: np.asarray(self.params[:, i]) for i, n in enumerate(names)}
        out[self.macro_name] = np.asarray(self.macro)
        out["SSE"] = np.asarray(self.sse)
        out["R2"] = np.asarray(self.r2)
        if self.aicc is not None:
            out["AICc"] = np.asarray(self.aicc)
        return out


#: Relative floor of the SSE in :func:`aicc`: a fit whose weighted SSE is below this fraction of the TAC's weighted
#: sum of squares is exact to float32 resolution (residuals ~1e-5 of the signal), and these count as equal.
AICC_SSE_FLOOR = 1e-10


def aicc(sse, scale, n_frames: int, n_params: int):
    """Small-sample corrected Akaike information criterion of least-squares fits (smaller is better):

        AICc = n ln(SSE' / n) + 2k + 2k(k + 1) / (n - k - 1),     SSE' = max(SSE, 1e-10 * sum_f w_f y_f^2)

    ``sse [N]`` the weighted SSE, ``scale [N]`` the TAC's weighted sum of squares ``sum_f w_f y_f^2`` (same weights),
    ``n = n_frames``, ``k = n_params`` (every fitted parameter: vB included, and the delay when fitted). The floor
    :data:`AICC_SSE_FLOOR` keeps exact (noiseless) fits finite: without it ``ln 0 = -inf`` and any two exact fits tie
    at minus infinity; with it exact fits tie at the floor and the penalty picks the model with fewer parameters.
    Works on NumPy or JAX arrays."""
    import jax.numpy as jnp

    n, k = int(n_frames), int(n_params)
    floor = AICC_SSE_FLOOR * scale + 1e-30
    return n * jnp.log(jnp.maximum(sse, floor) / n) + 2 * k + 2 * k * (k + 1) / max(n - k - 1, 1)


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """Static settings of a fit (hashable; one compilation per distinct value).

    ``lower``/``upper``: bounds (default: the model's ``physiological`` preset, :data:`jaxkin.kinetics.BOUNDS_PRESETS`;
    build them from a preset or ranges with :func:`jaxkin.kinetics.resolve_bounds`); ``grid_size``: rate grid points of
    the basis-function start (per rate axis for 2tcm); ``n_iter``: Levenberg–Marquardt iterations; ``mu0``:
    initial damping (relative to the scaled normal matrix). ``delay``: the input delay is a fitted parameter (the
    last, min; the kinetic input is then a :class:`jaxkin.kinetics.DelayedInput`), its bounds the last entries of
    ``lower``/``upper`` (default :data:`jaxkin.kinetics.DEFAULT_DELAY_RANGE`); ``delay_step``: the spacing (min) of
    the delays of the basis-function start's grid. A parameter with ``lower == upper`` is held fixed: it is not
    fitted, its standard error is 0 and it does not count among the parameters (:attr:`free`).
    """

    model: str = "2tcmirr"
    lower: tuple[float, ...] | None = None
    upper: tuple[float, ...] | None = None
    grid_size: int = 32
    n_iter: int = 16
    mu0: float = 1e-3
    delay: bool = False
    delay_step: float = DELAY_STEP

    @property
    def n_params(self) -> int:
        """Fitted parameters per TAC: the model's, plus the delay when fitted."""
        return get_model(self.model).n_params + int(self.delay)

    @property
    def free(self) -> tuple[bool, ...]:
        """Per parameter, whether it is fitted: False for one held fixed (lower == upper)."""
        lo, hi = self.bounds()
        return tuple(bool(a < b) for a, b in zip(lo, hi))

    @property
    def n_free(self) -> int:
        """Parameters fitted per TAC: those not held fixed (the delay, when fitted, included)."""
        return sum(self.free)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        m = get_model(self.model)
        default_lo, default_hi = m.bounds(DEFAULT_BOUNDS)
        if self.delay:
            default_lo, default_hi = default_lo + DEFAULT_DELAY_RANGE[:1], default_hi + DEFAULT_DELAY_RANGE[1:]
        lo = np.array(self.lower if self.lower is not None else default_lo, np.float64)
        hi = np.array(self.upper if self.upper is not None else default_hi, np.float64)
        n = self.n_params
        if lo.shape != (n,) or hi.shape != (n,) or np.any(lo > hi):
            raise ValueError(f"bounds for {m.name}{' with a delay' if self.delay else ''} must be {n} values each "
                             "with lower <= upper")
        return lo, hi
