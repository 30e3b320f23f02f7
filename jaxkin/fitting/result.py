"""What a voxel-wise fit returns (:class:`FitResult`), its static settings (:class:`FitSettings`) and the warning
flags of a fit."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxkin.kinetics import DEFAULT_BOUNDS, get_model

__all__ = ["FitResult", "FitSettings", "FLAG_NAMES", "FLAG_NOT_CONVERGED", "FLAG_NONFINITE_INPUT", "FLAG_NO_SIGNAL",
           "FLAG_NEGATIVE_VALUES", "FLAG_AT_BOUND"]

FLAG_NOT_CONVERGED = 1
FLAG_NONFINITE_INPUT = 2
FLAG_NO_SIGNAL = 4
FLAG_NEGATIVE_VALUES = 8
FLAG_AT_BOUND = 16
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

    ``params [N, P]`` (model order, e.g. K1, k2, k3, vB), ``macro [N]`` (Ki in ml/cm^3/min for 2tcmirr, VT in
    ml/cm^3 otherwise; name in ``macro_name``), ``sse [N]`` (weighted sum of squared residuals, (kBq/ml)^2),
    ``r2 [N]`` (weighted coefficient of determination; 0 for a flat TAC), ``converged [N]`` bool,
    ``flags [N]`` int32 bit field (:data:`FLAG_NAMES`), ``stderr [N, P]`` standard errors of the parameters.
    """

    params: jax.Array
    macro: jax.Array
    sse: jax.Array
    r2: jax.Array
    converged: jax.Array
    flags: jax.Array
    stderr: jax.Array
    model: str = dataclasses.field(metadata=dict(static=True), default="2tcmirr")
    macro_name: str = dataclasses.field(metadata=dict(static=True), default="Ki")

    def __len__(self) -> int:
        return int(self.params.shape[0])

    def to_numpy(self) -> "FitResult":
        return jax.tree_util.tree_map(np.asarray, self)

    def as_dict(self) -> dict:
        """``{param_name: [N], macro_name: [N], "SSE": [N], "R2": [N]}`` as NumPy arrays."""
        names = get_model(self.model).param_names
        out = {n: np.asarray(self.params[:, i]) for i, n in enumerate(names)}
        out[self.macro_name] = np.asarray(self.macro)
        out["SSE"] = np.asarray(self.sse)
        out["R2"] = np.asarray(self.r2)
        return out


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """Static settings of a fit (hashable; one compilation per distinct value).

    ``lower``/``upper``: bounds (default: the model's ``physiological`` preset, :data:`jaxkin.kinetics.BOUNDS_PRESETS`;
    build them from a preset or ranges with :func:`jaxkin.kinetics.resolve_bounds`); ``grid_size``: rate grid points of
    the basis-function start (per rate axis for 2tcm); ``n_iter``: Levenberg–Marquardt iterations; ``mu0``:
    initial damping (relative to the scaled normal matrix).
    """

    model: str = "2tcmirr"
    lower: tuple[float, ...] | None = None
    upper: tuple[float, ...] | None = None
    grid_size: int = 32
    n_iter: int = 16
    mu0: float = 1e-3

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        m = get_model(self.model)
        default_lo, default_hi = m.bounds(DEFAULT_BOUNDS)
        lo = np.array(self.lower if self.lower is not None else default_lo, np.float64)
        hi = np.array(self.upper if self.upper is not None else default_hi, np.float64)
        if lo.shape != (m.n_params,) or hi.shape != (m.n_params,) or np.any(lo > hi):
            raise ValueError(f"bounds for {m.name} must be {m.n_params} values each with lower <= upper")
        return lo, hi
