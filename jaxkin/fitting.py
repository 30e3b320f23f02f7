"""Voxel-wise non-linear fitting of the compartment models: basis functions + bounded, vmapped Levenberg–Marquardt.

Pure functions of arrays. For ``N`` TACs ``[N, F]`` (kBq/ml, frame means) and a :class:`~jaxkin.kinetics.KineticInput`
``kin`` (the input function and frames, shared by every voxel):

1. **Basis-function start.** For a fixed set of rates the model is linear in its remaining coefficients
   (2TCM-irr: ``C = A·∫C_p + B·(C_p ⊗ e^{-λt}) + V·C_b`` with ``λ = k2 + k3``, ``A = (1-vB)K1 k3/λ``,
   ``B = (1-vB)K1 k2/λ``, ``V = vB``; 1TCM: ``λ = k2``, 2 coefficients; 2TCM: a 2-D grid of the two rates
   ``α1 < α2`` (the eigenvalues), 3 coefficients). The basis columns of every grid point are shared by all
   voxels, so are the (weighted) normal matrices when the weights are shared. For each grid point the
   non-negative least-squares problem (A, B, V >= 0) is solved exactly by enumerating the active sets
   (at most 2^4 - 1 tiny systems); the grid point with the smallest SSE wins and its coefficients are mapped
   back to micro-parameters and projected onto the bounds.
2. **Levenberg–Marquardt polish.** A fixed number of iterations (so ``vmap`` never waits for the slowest voxel):
   Jacobi-scaled normal equations ``(D⁻¹JᵀWJD⁻¹ + μI) δ' = -D⁻¹JᵀWr``, bounds kept by projection (parameters at a
   bound whose gradient points outwards are frozen for the step), per-voxel damping with accept/reject by
   ``jnp.where``. The 2TCM-irr Jacobian is analytic (value and rate-derivative from one table lookup); the other
   models use forward-mode ``jax.jacfwd``.

The result (:class:`FitResult`) carries the parameters, Ki (or VT), the weighted SSE, R², a convergence flag, a
bit field of warnings (:data:`FLAG_NAMES`) and standard errors from the Jacobian at the solution,
``se = sqrt(diag((JᵀWJ)⁻¹) · SSE / (F - P))``.

Weights (:func:`frame_weights`; normalised to mean 1 over the frames of each TAC, which does not change the fit):

* ``none``:     ``w_f = 1``
* ``duration``: ``w_f = Δt_f``
* ``poisson``:  ``w_f = Δt_f · e^{-ln2 · t_f / T½} / max(C_f, c_min)`` — the inverse variance of a decay-corrected
  frame mean with Poisson counts (``t_f`` frame mid time, ``T½`` the isotope's half-life, 109.77 min for F-18,
  ``C_f`` the measured TAC, ``c_min`` = 5% of the TAC's peak so that near-empty frames do not dominate). For
  images that are not decay corrected the decay factor is left out (``decay_corrected=False``).

Units: minutes, 1/min, kBq/ml; shapes are stated per function. Everything works in float32 (the default) and float64.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxkin.kinetics import KineticInput, KineticModel, get_model

__all__ = [
    "FitResult",
    "FitSettings",
    "FLAG_NAMES",
    "FLAG_NOT_CONVERGED",
    "FLAG_NONFINITE_INPUT",
    "FLAG_NO_SIGNAL",
    "FLAG_NEGATIVE_VALUES",
    "FLAG_AT_BOUND",
    "F18_HALF_LIFE_MIN",
    "frame_weights",
    "fit_tacs",
    "fit_chunk",
    "chunk_length",
    "voxel_shardings",
]

F18_HALF_LIFE_MIN = 109.77

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

_TINY = 1e-30


# --------------------------------------------------------------------------------------------------
# Results and settings
# --------------------------------------------------------------------------------------------------


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

    ``lower``/``upper``: bounds (default: the model's, the paper's for 2tcmirr); ``grid_size``: rate grid points of
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
        lo = np.array(self.lower if self.lower is not None else m.lower, np.float64)
        hi = np.array(self.upper if self.upper is not None else m.upper, np.float64)
        if lo.shape != (m.n_params,) or hi.shape != (m.n_params,) or np.any(lo > hi):
            raise ValueError(f"bounds for {m.name} must be {m.n_params} values each with lower <= upper")
        return lo, hi


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------


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
        raise ValueError(f"unknown weights {kind!r}; choose none, duration or poisson")
    else:
        w = jnp.asarray(kind, duration.dtype)
        w = jnp.where(jnp.isfinite(w) & (w > 0), w, 0.0)
    mean = jnp.mean(w, axis=-1, keepdims=True)
    return w / jnp.where(mean > 0, mean, 1.0)


# --------------------------------------------------------------------------------------------------
# Small dense linear algebra, unrolled over the (static, tiny) matrix size and vectorised over voxels
# --------------------------------------------------------------------------------------------------


def _cholesky(m, ridge):
    """Lower Cholesky factor of ``m + ridge·I`` as a nested list of ``[...]`` arrays.

    ``m`` is an array ``[..., P, P]`` or a nested list ``m[i][j]`` of ``[...]`` arrays (only ``i >= j`` is read).
    """
    if not isinstance(m, (list, tuple)):
        m = [[m[..., i, j] for j in range(m.shape[-1])] for i in range(m.shape[-1])]
    p = len(m)
    lower = [[None] * p for _ in range(p)]
    for j in range(p):
        s = m[j][j] + ridge
        for k in range(j):
            s = s - lower[j][k] ** 2
        d = jnp.sqrt(jnp.maximum(s, ridge))
        lower[j][j] = d
        for i in range(j + 1, p):
            off = m[i][j]
            for k in range(j):
                off = off - lower[i][k] * lower[j][k]
            lower[i][j] = off / d
    return lower


def _cho_solve(lower, b):
    """Solve ``L Lᵀ x = b`` for ``b [..., P]`` (broadcasting against the factor) -> ``[..., P]``."""
    p = len(lower)
    y = []
    for i in range(p):
        acc = b[..., i]
        for k in range(i):
            acc = acc - lower[i][k] * y[k]
        y.append(acc / lower[i][i])
    x = [None] * p
    for i in reversed(range(p)):
        acc = y[i]
        for k in range(i + 1, p):
            acc = acc - lower[k][i] * x[k]
        x[i] = acc / lower[i][i]
    return jnp.stack(x, axis=-1)


def _scaled_solve(m, b, ridge):
    """Solve the Jacobi-scaled system ``(D⁻¹ m D⁻¹ + ridge I) (D x) = D⁻¹ b`` with ``D = sqrt(diag m)``."""
    diag = jnp.diagonal(m, axis1=-2, axis2=-1)
    floor = 1e-12 * jnp.max(diag, axis=-1, keepdims=True) + _TINY
    d = jnp.sqrt(jnp.maximum(diag, floor))
    ms = m / (d[..., :, None] * d[..., None, :])
    lower = _cholesky(ms, ridge)
    return lower, d, _cho_solve(lower, b / d) / d


# --------------------------------------------------------------------------------------------------
# Model specifications: basis grid, coefficients -> parameters, value and Jacobian
# --------------------------------------------------------------------------------------------------


def _hermite_with_derivative(kin: KineticInput, rate):
    """``conv(rate)`` and ``d conv / d rate`` from the table; ``rate [N]`` -> two ``[N, F]`` arrays."""
    g = kin.grid
    clipped = jnp.clip(rate, 0.0, g.max_rate)
    pos = jnp.log1p(clipped / g.offset) / g.step
    i = jnp.clip(jnp.floor(pos), 0, g.size - 2).astype(jnp.int32)
    s = (pos - i)[..., None]
    s2 = s * s
    s3 = s2 * s
    t0, t1, d0, d1 = kin.table[i], kin.table[i + 1], kin.slope[i], kin.slope[i + 1]
    value = (2 * s3 - 3 * s2 + 1) * t0 + (3 * s2 - 2 * s3) * t1 + g.step * ((s3 - 2 * s2 + s) * d0 + (s3 - s2) * d1)
    d_pos = (6 * s2 - 6 * s) * (t0 - t1) + g.step * ((3 * s2 - 4 * s + 1) * d0 + (3 * s2 - 2 * s) * d1)
    inside = (rate >= 0.0) & (rate <= g.max_rate)
    d_rate = d_pos * jnp.where(inside, 1.0 / ((clipped + g.offset) * g.step), 0.0)[..., None]
    return value, d_rate


def _value_and_jac_2tcmirr(params, kin: KineticInput):
    """Analytic value ``[N, F]`` and Jacobian (4 arrays ``[N, F]``, one per parameter) of the 2TCM-irr model."""
    k1, k2, k3, vb = params[:, 0], params[:, 1], params[:, 2], params[:, 3]
    lam = jnp.maximum(k2 + k3, 1e-12)
    e, de = _hermite_with_derivative(kin, lam)
    integral = kin.integral_mean
    blood = kin.blood_mean
    inv = 1.0 / lam
    a = (k1 * k3 * inv)[:, None]
    b = (k1 * k2 * inv)[:, None]
    tissue = a * integral + b * e
    c = (k1 * inv * inv)[:, None]
    diff = e - integral
    d_k1 = (k3 * inv)[:, None] * integral + (k2 * inv)[:, None] * e
    d_k2 = c * k3[:, None] * diff + b * de
    d_k3 = -c * k2[:, None] * diff + b * de
    tb = (1.0 - vb)[:, None]
    value = tb * tissue + vb[:, None] * blood
    return value, (tb * d_k1, tb * d_k2, tb * d_k3, blood - tissue)


def _jacfwd_value_and_jac(tac: Callable):
    def value_and_jac(params, kin):
        def single(p):
            v = tac(p, kin)
            return v, v

        jac, value = jax.vmap(jax.jacfwd(single, has_aux=True))(params)
        return value, tuple(jac[..., i] for i in range(jac.shape[-1]))

    return value_and_jac


def _log_grid(lo, hi, size):
    lo = max(lo, 1e-4)
    return np.exp(np.linspace(np.log(lo), np.log(max(hi, lo * 1.0001)), size))


def _basis_rates_2tcmirr(lo, hi, size):
    return _log_grid(lo[1] + lo[2], hi[1] + hi[2], size)[:, None]


def _basis_rates_1tcm(lo, hi, size):
    return _log_grid(lo[1], hi[1], size)[:, None]


def _basis_rates_2tcm(lo, hi, size):
    # α1 α2 = k2 k4 and α1 + α2 = k2 + k3 + k4; α1 can be very slow (small k4): include rate 0 in the grid.
    rates = np.concatenate([[0.0], _log_grid(1e-3, hi[1] + hi[2] + hi[3], size - 1)])
    pairs = [(rates[i], rates[j]) for i in range(size) for j in range(i + 1, size)]
    return np.array(pairs)


def _coef_to_params_2tcmirr(coef, rates):
    a, b, v = coef[..., 0], coef[..., 1], coef[..., 2]
    lam = rates[..., 0]
    ab = a + b
    safe = jnp.where(ab > 0, ab, 1.0)
    k1 = ab / jnp.maximum(1.0 - v, 1e-6)
    k3 = jnp.where(ab > 0, lam * a / safe, 0.5 * lam)
    k2 = lam - k3
    return jnp.stack([k1, k2, k3, v], axis=-1)


def _coef_to_params_1tcm(coef, rates):
    a, v = coef[..., 0], coef[..., 1]
    return jnp.stack([a / jnp.maximum(1.0 - v, 1e-6), jnp.broadcast_to(rates[..., 0], a.shape), v], axis=-1)


def _coef_to_params_2tcm(coef, rates):
    a1, a2, v = coef[..., 0], coef[..., 1], coef[..., 2]
    r1, r2 = rates[..., 0], rates[..., 1]
    k1 = (a1 + a2) / jnp.maximum(1.0 - v, 1e-6)
    frac = jnp.where(a1 + a2 > 0, a1 / jnp.where(a1 + a2 > 0, a1 + a2, 1.0), 0.5)
    k34 = r1 + frac * (r2 - r1)  # k3 + k4
    k2 = r1 + r2 - k34
    k4 = r1 * r2 / jnp.maximum(k2, 1e-9)
    k3 = k34 - k4
    return jnp.stack([k1, k2, k3, k4, v], axis=-1)


def _project_2tcmirr(params, rates, lo, hi):
    """Project onto the bounds keeping λ = k2 + k3 at the grid value; returns (params, coefficients)."""
    lam = rates[..., 0]
    k1 = jnp.clip(params[..., 0], lo[0], hi[0])
    v = jnp.clip(params[..., 3], lo[3], hi[3])
    k3 = jnp.clip(params[..., 2], jnp.maximum(lo[2], lam - hi[1]), jnp.minimum(hi[2], lam - lo[1]))
    k2 = lam - k3
    scale = (1.0 - v) * k1 / lam
    return jnp.stack([k1, k2, k3, v], -1), jnp.stack([scale * k3, scale * k2, v], -1)


def _project_1tcm(params, rates, lo, hi):
    k1 = jnp.clip(params[..., 0], lo[0], hi[0])
    v = jnp.clip(params[..., 2], lo[2], hi[2])
    return jnp.stack([k1, params[..., 1], v], -1), jnp.stack([(1.0 - v) * k1, v], -1)


@dataclasses.dataclass(frozen=True)
class _Spec:
    basis_rates: Callable  # (lower, upper, size) -> [G, R] NumPy
    integral_column: bool  # a rate-0 (running integral) column first
    coef_to_params: Callable  # (coef [N, K], rates [N, R]) -> params [N, P]
    value_and_jac: Callable  # (params [N, P], kin) -> ([N, F], P arrays [N, F])
    project: Callable | None  # (params [..., P], rates [..., R], lo, hi) -> (params, coef) inside the bounds
    grid_scale: float = 1.0  # grid points per rate axis, relative to FitSettings.grid_size


def _spec(model: KineticModel) -> _Spec:
    if model.name == "2tcmirr":
        return _Spec(_basis_rates_2tcmirr, True, _coef_to_params_2tcmirr, _value_and_jac_2tcmirr, _project_2tcmirr)
    if model.name == "1tcm":
        return _Spec(_basis_rates_1tcm, False, _coef_to_params_1tcm, _jacfwd_value_and_jac(model.tac), _project_1tcm)
    if model.name == "2tcm":
        return _Spec(_basis_rates_2tcm, False, _coef_to_params_2tcm, _jacfwd_value_and_jac(model.tac), None, 0.5)
    raise ValueError(f"no fitting specification for model {model.name!r}")


# --------------------------------------------------------------------------------------------------
# Basis-function start: exact NNLS per grid point by active-set enumeration
# --------------------------------------------------------------------------------------------------


def _basis_columns(kin: KineticInput, rates, integral_column: bool):
    """Basis columns ``[G, K, F]`` for grid rates ``[G, R]``: (∫C_p,) conv(r_1..r_R), C_b."""
    g = rates.shape[0]
    cols = [kin.frame_conv(rates[:, r]) for r in range(rates.shape[1])]
    if integral_column:
        cols = [jnp.broadcast_to(kin.integral_mean, (g, kin.integral_mean.shape[-1]))] + cols
    cols.append(jnp.broadcast_to(kin.blood_mean, (g, kin.blood_mean.shape[-1])))
    return jnp.stack(cols, axis=1)


def basis_start(tacs, weights, kin: KineticInput, settings: FitSettings):
    """Best grid point of the basis-function method: parameters ``[N, P]`` inside the bounds.

    ``tacs [N, F]``, ``weights [F]`` (shared: normal matrices computed once) or ``[N, F]``. At every grid point the
    NNLS solution is projected onto the bounds (keeping the grid rates) and scored by its true SSE, so the start is
    the best *feasible* grid candidate.
    """
    spec = _spec(get_model(settings.model))
    lo, hi = settings.bounds()
    dtype = tacs.dtype
    size = max(int(round(settings.grid_size * spec.grid_scale)), 4)
    grid = jnp.asarray(spec.basis_rates(lo, hi, size), dtype)  # [G, R]
    x = _basis_columns(kin, grid, spec.integral_column)  # [G, K, F]
    k = x.shape[1]
    # Scale every column to unit RMS so the normal matrices are well balanced (undone on the coefficients).
    col_scale = jnp.sqrt(jnp.mean(x * x, axis=-1)) + _TINY  # [G, K]
    x = x / col_scale[..., None]
    subsets = [list(c) for size in range(1, k + 1) for c in itertools.combinations(range(k), size)]
    if weights.ndim == 1 and x.shape[0] * len(subsets) * k <= _MAX_SHARED_COLUMNS:
        coef, sse, b, yy, m = _nnls_shared_weights(tacs, weights, x, subsets)
    else:
        coef, sse, b, yy, m = _nnls_per_voxel(tacs, weights, x, subsets)
    params = spec.coef_to_params(coef / col_scale, grid)  # [N, G, P]
    lo_a, hi_a = jnp.asarray(lo, dtype), jnp.asarray(hi, dtype)
    if spec.project is not None:
        params, c = spec.project(params, grid, lo_a, hi_a)
        c = c * col_scale
        mc = jnp.einsum("...ij,...j->...i", m, c)
        sse = yy[:, None] - 2 * jnp.sum(c * b, -1) + jnp.sum(c * mc, -1)
    sse = jnp.where(jnp.isfinite(sse) & jnp.all(jnp.isfinite(params), -1), sse, jnp.inf)
    g_best = jnp.argmin(sse, axis=1)
    params = jnp.take_along_axis(params, g_best[:, None, None], axis=1)[:, 0]
    params = jnp.where(jnp.isfinite(params), params, lo_a)
    return jnp.clip(params, lo_a, hi_a)


# Above this many candidate coefficients per voxel (grid points x active sets x columns), the shared-weight path's
# [N, G*S*K] intermediate is too big and the per-voxel path is used.
_MAX_SHARED_COLUMNS = 4096


def _nnls_shared_weights(tacs, weights, x, subsets):
    """Exact NNLS at every grid point when all voxels share ``weights [F]``: all candidate solutions are linear in
    the TAC, so they come from one matmul with a precomputed ``[F, G·S·K]`` matrix.

    Returns the NNLS coefficients ``[N, G, K]`` (of the columns ``x [G, K, F]``), their SSE ``[N, G]``, ``b = XᵀWy
    [N, G, K]``, ``yᵀWy [N]`` and the normal matrices ``[G, K, K]``."""
    dtype = tacs.dtype
    n_grid, k, _ = x.shape
    wx = x * weights  # [G, K, F]
    m = jnp.einsum("gif,gjf->gij", wx, x)  # [G, K, K]
    ridge = 1e-6 if dtype == jnp.float32 else 1e-12
    maps = []
    for sub in subsets:
        m_s = m[:, sub][:, :, sub]
        diag = jnp.diagonal(m_s, axis1=-2, axis2=-1)
        d = jnp.sqrt(jnp.maximum(diag, _TINY))
        inv_s = jnp.linalg.inv(m_s / (d[:, :, None] * d[:, None, :]) + ridge * jnp.eye(len(sub), dtype=dtype))
        inv_s = inv_s / (d[:, :, None] * d[:, None, :])
        full = jnp.zeros((n_grid, k, x.shape[-1]), dtype).at[:, sub].set(jnp.einsum("gij,gjf->gif", inv_s, wx[:, sub]))
        maps.append(full)
    maps = jnp.stack(maps, axis=1)  # [G, S, K, F]
    n = tacs.shape[0]
    coef = (tacs @ maps.reshape(-1, x.shape[-1]).T).reshape(n, n_grid, len(subsets), k)
    b = (tacs @ wx.reshape(-1, x.shape[-1]).T).reshape(n, n_grid, k)
    yy = jnp.sum(weights * tacs * tacs, axis=-1)
    sse = yy[:, None, None] - jnp.sum(coef * b[:, :, None, :], axis=-1)  # [N, G, S]
    ok = jnp.all(coef >= 0, axis=-1) & jnp.isfinite(sse)
    sse = jnp.where(ok, sse, jnp.inf)
    best = jnp.argmin(sse, axis=2)  # [N, G]
    best_sse = jnp.take_along_axis(sse, best[..., None], axis=2)[..., 0]
    coef = jnp.take_along_axis(coef, best[..., None, None], axis=2)[:, :, 0]
    found = best_sse < yy[:, None]
    coef = jnp.where(found[..., None], coef, 0.0)
    best_sse = jnp.where(found, best_sse, yy[:, None])
    return coef, best_sse, b, yy, m


def _nnls_per_voxel(tacs, weights, x, subsets):
    """Exact NNLS at every grid point with per-voxel weights ``[N, F]`` (or a large grid); see
    :func:`_nnls_shared_weights`."""
    dtype = tacs.dtype
    k = x.shape[1]
    pairs = [(i, j) for i in range(k) for j in range(i, k)]
    wy = weights * tacs  # [N, F]
    b = jnp.einsum("nf,gkf->ngk", wy, x)  # [N, G, K]
    yy = jnp.sum(wy * tacs, axis=-1)[:, None]  # [N, 1]
    if weights.ndim == 1:
        m = jnp.einsum("f,gif,gjf->gij", weights, x, x)  # [G, K, K] shared
    else:
        prods = jnp.stack([x[:, i] * x[:, j] for i, j in pairs], axis=1)  # [G, Q, F]
        q = jnp.einsum("nf,gqf->ngq", weights, prods)
        m = jnp.zeros(q.shape[:2] + (k, k), dtype)
        for idx, (i, j) in enumerate(pairs):
            m = m.at[..., i, j].set(q[..., idx]).at[..., j, i].set(q[..., idx])
    ridge = 1e-6 if dtype == jnp.float32 else 1e-12
    best_sse = yy + jnp.zeros(b.shape[:2], dtype)  # empty active set
    best_coef = jnp.zeros(b.shape, dtype)
    for sub in subsets:
        m_s = m[..., sub, :][..., :, sub]
        b_s = b[..., sub]
        if m_s.ndim == 3:  # shared: factor once per grid point
            lower, d, _ = _scaled_solve(m_s, jnp.zeros(m_s.shape[:-1], dtype), ridge)
            c_s = _cho_solve(lower, b_s / d) / d
        else:
            _, _, c_s = _scaled_solve(m_s, b_s, ridge)
        sse = yy - jnp.sum(c_s * b_s, axis=-1)
        ok = jnp.all(c_s >= 0, axis=-1) & jnp.isfinite(sse) & (sse < best_sse)
        coef = jnp.zeros(b.shape, dtype).at[..., sub].set(c_s)
        best_sse = jnp.where(ok, sse, best_sse)
        best_coef = jnp.where(ok[..., None], coef, best_coef)
    return best_coef, best_sse, b, yy[:, 0], m


# --------------------------------------------------------------------------------------------------
# Levenberg–Marquardt
# --------------------------------------------------------------------------------------------------


def levenberg_marquardt(params, tacs, weights, kin: KineticInput, settings: FitSettings):
    """Bounded LM from ``params [N, P]``; returns ``(params, sse, cost_before_last_3, jac_w [N, F, P])``."""
    spec = _spec(get_model(settings.model))
    lo_np, hi_np = settings.bounds()
    dtype = tacs.dtype
    lo, hi = jnp.asarray(lo_np, dtype), jnp.asarray(hi_np, dtype)
    sw = jnp.sqrt(weights)
    ridge = jnp.asarray(1e-6 if dtype == jnp.float32 else 1e-12, dtype)

    def residuals(p):
        value, jac = spec.value_and_jac(p, kin)
        r = (value - tacs) * sw
        jw = tuple(j * sw for j in jac)  # P arrays [N, F]
        cost = jnp.sum(r * r, axis=-1)
        cost = jnp.where(jnp.isfinite(cost), cost, jnp.inf)
        return r, jw, cost

    def step(state, _):
        p, r, jw, cost, mu = state
        n_p = len(jw)
        g = jnp.stack([jnp.sum(j * r, axis=-1) for j in jw], axis=-1)  # [N, P]
        frozen = ((p <= lo) & (g > 0)) | ((p >= hi) & (g < 0))
        keep = (~frozen).astype(dtype)
        g = g * keep
        diag = [jnp.sum(j * j, axis=-1) * keep[:, i] for i, j in enumerate(jw)]
        dmax = functools.reduce(jnp.maximum, diag)
        d = [jnp.sqrt(jnp.maximum(di, 1e-12 * dmax + _TINY)) for di in diag]
        hs = [[None] * n_p for _ in range(n_p)]
        for i in range(n_p):
            for k in range(i + 1):
                h_ik = jnp.sum(jw[i] * jw[k], axis=-1) * keep[:, i] * keep[:, k]
                hs[i][k] = h_ik / (d[i] * d[k])
        lower = _cholesky(hs, mu + ridge)
        d = jnp.stack(d, axis=-1)
        delta = -_cho_solve(lower, g / d) / d * keep
        delta = jnp.where(jnp.isfinite(delta), delta, 0.0)
        p_new = jnp.clip(p + delta, lo, hi)
        r_new, jw_new, cost_new = residuals(p_new)
        accept = cost_new < cost
        p = jnp.where(accept[:, None], p_new, p)
        r = jnp.where(accept[:, None], r_new, r)
        jw = tuple(jnp.where(accept[:, None], a, b) for a, b in zip(jw_new, jw))
        cost = jnp.where(accept, cost_new, cost)
        mu = jnp.clip(jnp.where(accept, mu * 0.3, mu * 8.0), 1e-9, 1e9)
        return (p, r, jw, cost, mu), cost

    r, jw, cost = residuals(params)
    mu = jnp.full(params.shape[:1], settings.mu0, dtype)
    state = (params, r, jw, cost, mu)
    state, costs = jax.lax.scan(step, state, None, length=settings.n_iter)
    p, r, jw, cost, mu = state
    jw = jnp.stack(jw, axis=-1)
    before = costs[-4] if settings.n_iter >= 4 else jnp.full_like(cost, jnp.inf)
    return p, cost, before, jw


# --------------------------------------------------------------------------------------------------
# A whole fit of one chunk (one compilation per chunk shape and settings)
# --------------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("settings",))
def fit_chunk(tacs, weights, kin: KineticInput, settings: FitSettings) -> FitResult:
    """Fit ``tacs [N, F]`` with ``weights [F]`` or ``[N, F]`` (see :func:`frame_weights`); pure and jitted."""
    model = get_model(settings.model)
    dtype = tacs.dtype
    finite = jnp.isfinite(tacs)
    flags = jnp.where(jnp.all(finite, axis=-1), 0, FLAG_NONFINITE_INPUT)
    y = jnp.where(finite, tacs, 0.0)
    flags = flags | jnp.where(jnp.any(y < 0, axis=-1), FLAG_NEGATIVE_VALUES, 0)
    flat = jnp.max(y, axis=-1) == jnp.min(y, axis=-1)
    flags = flags | jnp.where(flat, FLAG_NO_SIGNAL, 0)
    w = jnp.where(jnp.isfinite(weights), weights, 0.0).astype(dtype)

    p0 = basis_start(y, w, kin, settings)
    params, sse, before, jw = levenberg_marquardt(p0, y, w, kin, settings)

    lo, hi = (jnp.asarray(b, dtype) for b in settings.bounds())
    n_frames, n_params = y.shape[-1], params.shape[-1]
    scale = jnp.sum(w * y * y, axis=-1)
    converged = (before - sse <= 1e-4 * sse + 1e-7 * scale) & jnp.isfinite(sse)
    flags = flags | jnp.where(converged, 0, FLAG_NOT_CONVERGED)
    at_bound = jnp.any((params <= lo) | (params >= hi), axis=-1)
    flags = flags | jnp.where(at_bound, FLAG_AT_BOUND, 0)

    w_full = jnp.broadcast_to(w, y.shape)
    w_mean = jnp.sum(w_full * y, axis=-1) / jnp.maximum(jnp.sum(w_full, axis=-1), _TINY)
    sst = jnp.sum(w_full * (y - w_mean[:, None]) ** 2, axis=-1)
    r2 = jnp.where(sst > 0, 1.0 - sse / jnp.where(sst > 0, sst, 1.0), 0.0)

    h = jnp.einsum("nfp,nfq->npq", jw, jw)
    ridge = 1e-6 if dtype == jnp.float32 else 1e-12
    diag = jnp.diagonal(h, axis1=-2, axis2=-1)
    d = jnp.sqrt(jnp.maximum(diag, 1e-12 * jnp.max(diag, axis=-1, keepdims=True) + _TINY))
    lower = _cholesky(h / (d[:, :, None] * d[:, None, :]), ridge)
    eye = jnp.eye(n_params, dtype=dtype)
    inv_diag = jnp.stack([_cho_solve(lower, jnp.broadcast_to(eye[i], d.shape))[:, i] for i in range(n_params)], -1)
    sigma2 = sse / max(n_frames - n_params, 1)
    stderr = jnp.sqrt(jnp.maximum(inv_diag, 0.0) * sigma2[:, None]) / d

    (macro_name, macro_fn), = model.macros.items()
    finite_or = lambda a, v: jnp.where(jnp.isfinite(a), a, v)  # noqa: E731
    big = jnp.asarray(jnp.finfo(dtype).max, dtype)
    return FitResult(
        params=finite_or(params, 0.0),
        macro=finite_or(macro_fn(params), 0.0),
        sse=finite_or(sse, big),
        r2=finite_or(r2, 0.0),
        converged=converged,
        flags=flags.astype(jnp.int32),
        stderr=jnp.minimum(finite_or(stderr, big), big),
        model=model.name,
        macro_name=macro_name,
    )


def _next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


# The reversible model's basis start scores ~120 rate pairs per voxel: cap its chunks to bound memory (~0.4 GB).
_MAX_CHUNK = {"2tcm": 4096}


def chunk_length(n: int, chunk_size: int, n_devices: int = 1, model: str = "2tcmirr") -> int:
    """Chunk length for ``n`` TACs: ``chunk_size`` (at most 4,096 for ``2tcm``), or less for small inputs (a power
    of two >= 256), rounded up to a multiple of the device count."""
    chunk = min(int(chunk_size), _MAX_CHUNK.get(model, 1 << 30), max(_next_pow2(max(n, 1)), 256))
    return -(-chunk // n_devices) * n_devices


def voxel_shardings():
    """``(n_devices, rows, replicated)``: NamedShardings over all local devices, splitting the voxel axis."""
    devices = np.array(jax.local_devices())
    mesh = jax.sharding.Mesh(devices, ("voxels",))
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("voxels"))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return len(devices), rows, replicated


def fit_tacs(
    tacs,
    kin: KineticInput,
    model: str = "2tcmirr",
    *,
    weights="none",
    lower=None,
    upper=None,
    n_iter: int = 16,
    grid_size: int = 32,
    chunk_size: int = 16384,
    half_life: float = F18_HALF_LIFE_MIN,
    decay_corrected: bool = True,
) -> FitResult:
    """Fit ``tacs [N, F]`` (kBq/ml) with ``model`` (``2tcmirr``, ``1tcm``, ``2tcm``) -> :class:`FitResult` ``[N]``.

    ``weights``: ``"none"``, ``"duration"``, ``"poisson"`` or an array ``[F]``/``[N, F]`` (see :func:`frame_weights`).
    ``lower``/``upper``: bounds (default the model's). TACs are fitted in fixed-size chunks of
    :func:`chunk_length` (the last one padded), so one compilation serves every chunk; each chunk is split over
    all local devices (:func:`voxel_shardings`).
    The dtype follows ``kin`` (float32 by default).
    """
    settings = FitSettings(
        model=model,
        lower=None if lower is None else tuple(float(v) for v in lower),
        upper=None if upper is None else tuple(float(v) for v in upper),
        grid_size=grid_size,
        n_iter=n_iter,
    )
    settings.bounds()  # validate
    dtype = kin.table.dtype
    tacs = jnp.asarray(tacs, dtype)
    if tacs.ndim != 2 or tacs.shape[1] != kin.frame_duration.shape[0]:
        raise ValueError(f"tacs must be [N, {kin.frame_duration.shape[0]}], got {tuple(tacs.shape)}")
    n = tacs.shape[0]
    w = frame_weights(weights, kin, tacs, half_life=half_life, decay_corrected=decay_corrected)
    n_dev, rows, replicated = voxel_shardings()
    chunk = chunk_length(n, chunk_size, n_dev, model)
    kin = jax.device_put(kin, replicated)
    parts = []
    for start in range(0, max(n, 1), chunk):
        part = tacs[start : start + chunk]
        wpart = w if w.ndim == 1 else w[start : start + chunk]
        pad = chunk - part.shape[0]
        if pad:
            part = jnp.pad(part, ((0, pad), (0, 0)))
            if wpart.ndim == 2:
                wpart = jnp.pad(wpart, ((0, pad), (0, 0)), constant_values=1.0)
        wpart = jax.device_put(wpart, rows if wpart.ndim == 2 else replicated)
        parts.append(fit_chunk(jax.device_put(part, rows), wpart, kin, settings))
    result = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs)[:n], *parts)
    return result
