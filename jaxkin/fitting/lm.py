"""Voxel-wise non-linear fitting of the compartment models: basis functions + bounded, vmapped Levenberg–Marquardt.

Pure functions of arrays. For ``N`` TACs ``[N, F]`` (kBq/ml, frame means) and a :class:`~jaxkin.kinetics.KineticInput`
``kin`` (the input function and frames, shared by every voxel):

1. **Basis-function start** (:mod:`jaxkin.fitting.basis`): the best feasible point of a rate grid, where the
   model is linear in its other coefficients (exact non-negative least squares per grid point).
2. **Levenberg–Marquardt polish.** A fixed number of iterations (so ``vmap`` never waits for the slowest voxel):
   Jacobi-scaled normal equations ``(D⁻¹JᵀWJD⁻¹ + μI) δ' = -D⁻¹JᵀWr``, bounds kept by projection (parameters at a
   bound whose gradient points outwards are frozen for the step), per-voxel damping with accept/reject by
   ``jnp.where``. The 2TCM-irr Jacobian is analytic (value and rate-derivative from one table lookup); the other
   models use forward-mode ``jax.jacfwd``.

The result (:class:`FitResult`) carries the parameters, Ki (or VT), the weighted SSE, R², a convergence flag, a
bit field of warnings (:data:`FLAG_NAMES`) and standard errors from the Jacobian at the solution,
``se = sqrt(diag(C))`` with the covariance ``C = (JᵀWJ)⁻¹ · SSE / (F - P)``, and the standard error of Ki (or VT) by
the delta method, ``sqrt(gᵀ C g)`` with ``g`` the gradient of Ki with respect to the parameters.

**Fixed parameters** (bounds of zero width, :func:`jaxkin.kinetics.with_fixed`) are fitted in the reduced space:
they never move in the LM steps, ``J`` has only the free parameters' columns and ``P`` counts only those (in the
covariance, the AICc and the at-bound flag); a fixed parameter's standard error is 0.

Weights: :func:`jaxkin.fitting.weights.frame_weights`.

Units: minutes, 1/min, kBq/ml; shapes are stated per function. Everything works in float32 (the default) and float64.
"""

from __future__ import annotations

import functools
from functools import partial

import jax
import jax.numpy as jnp

from jaxkin.decay import F18_HALF_LIFE_MIN
from jaxkin.fitting._linalg import TINY, cho_solve, cholesky, ridge_for
from jaxkin.fitting._models import spec as model_spec
from jaxkin.fitting.basis import basis_start
from jaxkin.fitting.result import (
    FLAG_AT_BOUND,
    FLAG_NEGATIVE_VALUES,
    FLAG_NO_SIGNAL,
    FLAG_NONFINITE_INPUT,
    FLAG_NOT_CONVERGED,
    DELAY_STEP,
    FitResult,
    FitSettings,
    aicc,
)
from jaxkin.fitting.weights import frame_weights
from jaxkin.kinetics import DEFAULT_DELAY_RANGE, DelayedInput, KineticInput, get_model, resolve_bounds

__all__ = ["levenberg_marquardt", "fit_chunk", "fit_tacs", "refine_chunk", "refine_tacs", "chunk_length",
           "weighted_r2"]


def levenberg_marquardt(params, tacs, weights, kin: KineticInput, settings: FitSettings):
    """Bounded LM from ``params [N, P]``; returns ``(params, sse, cost_before_last_3, jac_w)`` with ``jac_w`` the
    weighted Jacobian at the solution as ``P`` columns ``[N, F]`` (contiguous: the normal matrix of
    :func:`normal_matrix` from them is several times faster than from one ``[N, F, P]`` array)."""
    spec = model_spec(get_model(settings.model), settings.delay, settings.delay_step)
    lo_np, hi_np = settings.bounds()
    dtype = tacs.dtype
    lo, hi = jnp.asarray(lo_np, dtype), jnp.asarray(hi_np, dtype)
    sw = jnp.sqrt(weights)
    ridge = jnp.asarray(ridge_for(dtype), dtype)
    free = jnp.asarray(settings.free)  # a fixed parameter (lower == upper) never moves: fitted in the reduced space

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
        keep = (~frozen & free).astype(dtype)
        g = g * keep
        hs = normal_matrix(jw, keep)
        diag = [hs[i][i] for i in range(n_p)]
        dmax = functools.reduce(jnp.maximum, diag)
        d = [jnp.sqrt(jnp.maximum(di, 1e-12 * dmax + TINY)) for di in diag]
        hs = [[hs[i][k] / (d[i] * d[k]) for k in range(i + 1)] for i in range(n_p)]
        lower = cholesky(hs, mu + ridge)
        d = jnp.stack(d, axis=-1)
        delta = -cho_solve(lower, g / d) / d * keep
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
    before = costs[-4] if settings.n_iter >= 4 else jnp.full_like(cost, jnp.inf)
    return p, cost, before, jw


def normal_matrix(jw, keep):
    """The lower triangle of ``JᵀWJ``, ``h[i][k] [N]`` for ``k <= i``, from the weighted Jacobian's ``P`` columns
    ``jw[i] [N, F]``, with the rows and columns of the parameters where ``keep [N, P]`` is 0 zeroed."""
    n_p = len(jw)
    return [[jnp.sum(jw[i] * jw[k], axis=-1) * keep[:, i] * keep[:, k] for k in range(i + 1)] for i in range(n_p)]


@partial(jax.jit, static_argnames=("settings",))
def refine_chunk(params, tacs, weights, kin: KineticInput, settings: FitSettings):
    """``settings.n_iter`` LM iterations started from given parameters (e.g. a network's prediction) instead of the
    basis-function start: ``params [N, P]``, ``tacs [N, F]`` (kBq/ml), ``weights [F]`` or ``[N, F]``.

    The start is projected onto the bounds of ``settings``; LM accepts only steps that lower the weighted SSE, and a
    voxel whose result is still worse than the unprojected start (possible only when the start was outside the
    bounds) keeps the start. So every voxel's SSE is at most its start's. Returns ``(params [N, P], sse_start [N],
    sse [N])`` (weighted SSE, (kBq/ml)^2; not finite starts count as infinite)."""
    spec = model_spec(get_model(settings.model), settings.delay, settings.delay_step)
    lo, hi = (jnp.asarray(b, tacs.dtype) for b in settings.bounds())
    w = jnp.broadcast_to(jnp.where(jnp.isfinite(weights), weights, 0.0).astype(tacs.dtype), tacs.shape)
    value, _ = spec.value_and_jac(params, kin)
    sse_start = jnp.sum(w * (value - tacs) ** 2, axis=-1)
    sse_start = jnp.where(jnp.isfinite(sse_start), sse_start, jnp.inf)
    refined, sse, _, _ = levenberg_marquardt(jnp.clip(params, lo, hi), tacs, w, kin, settings)
    keep = sse <= sse_start
    return jnp.where(keep[:, None], refined, params), sse_start, jnp.where(keep, sse, sse_start)


def refine_tacs(params, tacs, kin: KineticInput, model: str = "2tcmirr", *, n_iter: int = 16, bounds=None,
                lower=None, upper=None, weights="none", chunk_size: int = 16384):
    """Polish parameters ``params [N, P]`` of TACs ``tacs [N, F]`` (kBq/ml) with ``n_iter`` Levenberg–Marquardt
    iterations each (:func:`refine_chunk`): ``(params [N, P], sse_start [N], sse [N])`` as NumPy arrays, with
    ``sse <= sse_start`` for every TAC. ``bounds``/``lower``/``upper`` and ``weights`` as in :func:`fit_tacs`
    (default: the ``physiological`` bounds, no weights). Fixed-size chunks (the last padded), split over this
    process's devices, as in :func:`fit_tacs`."""
    import numpy as np

    lo, hi, _ = resolve_bounds(model, bounds)
    settings = FitSettings(model=model, n_iter=int(n_iter),
                           lower=lo if lower is None else tuple(float(v) for v in lower),
                           upper=hi if upper is None else tuple(float(v) for v in upper))
    settings.bounds()  # validate
    dtype = kin.frame_duration.dtype
    tacs = np.asarray(tacs, dtype)
    params = np.asarray(params, dtype)
    n, n_frames = tacs.shape[0], int(kin.frame_duration.shape[0])
    if tacs.ndim != 2 or tacs.shape[1] != n_frames or params.shape != (n, settings.n_params):
        raise ValueError(f"tacs must be [N, {n_frames}] and params [N, {settings.n_params}], got "
                         f"{tuple(tacs.shape)} and {tuple(params.shape)}")
    w = frame_weights(weights, kin, jnp.asarray(tacs))
    from jaxkin import distributed

    parallel = distributed.DataParallel(distributed.local_mesh())
    rows, replicated = parallel.batch_sharding, parallel.replicated
    chunk = chunk_length(n, chunk_size, parallel.size, model)
    kin = jax.device_put(kin, replicated)
    out = [np.zeros((n, settings.n_params), dtype), np.zeros(n, dtype), np.zeros(n, dtype)]
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        pad = chunk - (stop - start)
        part = np.pad(tacs[start:stop], ((0, pad), (0, 0)))
        p0 = np.pad(params[start:stop], ((0, pad), (0, 0)), mode="edge")
        wpart = w if w.ndim == 1 else jnp.pad(w[start:stop], ((0, pad), (0, 0)), constant_values=1.0)
        wpart = jax.device_put(wpart, rows if wpart.ndim == 2 else replicated)
        result = refine_chunk(jax.device_put(p0, rows), jax.device_put(part, rows), wpart, kin, settings)
        for o, r in zip(out, jax.device_get(result)):
            o[start:stop] = np.asarray(r)[: stop - start]
    return tuple(out)


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
    if settings.delay:
        # vB at its bound 0 freezes it, and a delay can then absorb the blood spike: start vB a little inside
        lo_b, hi_b = settings.bounds()
        v = model.n_params - 1
        p0 = p0.at[:, v].set(jnp.clip(p0[:, v], lo_b[v] + 0.01 * (hi_b[v] - lo_b[v]), hi_b[v]))
    params, sse, before, jw = levenberg_marquardt(p0, y, w, kin, settings)

    lo, hi = (jnp.asarray(b, dtype) for b in settings.bounds())
    free = jnp.asarray(settings.free)
    n_frames, n_params = y.shape[-1], params.shape[-1]
    scale = jnp.sum(w * y * y, axis=-1)
    converged = (before - sse <= 1e-4 * sse + 1e-7 * scale) & jnp.isfinite(sse)
    flags = flags | jnp.where(converged, 0, FLAG_NOT_CONVERGED)
    at_bound = jnp.any(((params <= lo) | (params >= hi)) & free, axis=-1)
    flags = flags | jnp.where(at_bound, FLAG_AT_BOUND, 0)

    r2 = weighted_r2(y, sse, w)
    information = aicc(sse, scale, n_frames, settings.n_free)

    jw = tuple(j if f else jnp.zeros_like(j) for j, f in zip(jw, settings.free))  # a fixed parameter: no column,
    hs = normal_matrix(jw, jnp.ones_like(params))  # so the covariance is of the free ones alone
    h = jnp.stack([jnp.stack([hs[max(i, k)][min(i, k)] for k in range(n_params)], -1) for i in range(n_params)], -2)
    ridge = ridge_for(dtype)
    diag = jnp.diagonal(h, axis1=-2, axis2=-1)
    d = jnp.sqrt(jnp.maximum(diag, 1e-12 * jnp.max(diag, axis=-1, keepdims=True) + TINY))
    lower = cholesky(h / (d[:, :, None] * d[:, None, :]), ridge)
    eye = jnp.eye(n_params, dtype=dtype)
    inv = jnp.stack([cho_solve(lower, jnp.broadcast_to(eye[i], d.shape)) for i in range(n_params)], -1)  # [N, P, P]
    sigma2 = sse / max(n_frames - settings.n_free, 1)
    cov = inv / (d[:, :, None] * d[:, None, :]) * sigma2[:, None, None]
    cov = jnp.where(free[:, None] & free[None, :], cov, 0.0)  # a fixed parameter's variance (and covariances): 0
    stderr = jnp.sqrt(jnp.maximum(jnp.diagonal(cov, axis1=-2, axis2=-1), 0.0))

    (macro_name, macro_fn), = model.macros.items()
    grad = jax.vmap(jax.grad(lambda p: macro_fn(p[None, : model.n_params])[0]))(params)  # delta method for Ki / VT
    macro_stderr = jnp.sqrt(jnp.maximum(jnp.einsum("np,npq,nq->n", grad, cov, grad), 0.0))
    finite_or = lambda a, v: jnp.where(jnp.isfinite(a), a, v)  # noqa: E731
    macro = macro_fn(params[:, : model.n_params])
    big = jnp.asarray(jnp.finfo(dtype).max, dtype)
    return FitResult(
        params=finite_or(params, 0.0),
        macro=finite_or(macro, 0.0),
        sse=finite_or(sse, big),
        r2=finite_or(r2, 0.0),
        converged=converged,
        flags=flags.astype(jnp.int32),
        stderr=jnp.minimum(finite_or(stderr, big), big),
        macro_stderr=jnp.minimum(finite_or(macro_stderr, big), big),
        aicc=finite_or(information, big),
        model=model.name,
        macro_name=macro_name,
    )


def weighted_r2(y, sse, w):
    """Weighted coefficient of determination ``1 - SSE / SST`` per TAC (0 for a flat TAC): ``y [N, F]``, ``sse [N]``,
    weights ``w [F]`` or ``[N, F]``."""
    w_full = jnp.broadcast_to(w, y.shape)
    w_mean = jnp.sum(w_full * y, axis=-1) / jnp.maximum(jnp.sum(w_full, axis=-1), TINY)
    sst = jnp.sum(w_full * (y - w_mean[:, None]) ** 2, axis=-1)
    return jnp.where(sst > 0, 1.0 - sse / jnp.where(sst > 0, sst, 1.0), 0.0)


def _next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


# The reversible model's basis start scores ~120 rate pairs per voxel: cap its chunks to bound memory (~0.4 GB).
# With a fitted delay the grids are ~10x larger (a grid of delays) and the delayed model reads rows of its tables per
# TAC: chunks of 2,048 TACs were 1.1-1.7x faster than 4,096 (chunk size in benchmarks/RESULTS.md).
_MAX_CHUNK = {"2tcm": 4096}
_MAX_CHUNK_DELAY = {"2tcm": 512, "2tcmirr": 2048, "1tcm": 2048}

#: Default TACs per compiled chunk of :func:`fit_tacs`, :func:`jaxkin.fitting.fit_volume` and ``jaxkin fit``: on a
#: 2-core CPU 4,096 (whose temporaries stay in cache) fitted ~1.5x more TACs per second than 16,384.
CHUNK_SIZE = 4096

#: Rate grid points of the basis start with a fitted delay (times the delays of the grid), and without.
GRID_SIZE, GRID_SIZE_DELAY = 32, 32


def chunk_length(n: int, chunk_size: int, n_devices: int = 1, model: str = "2tcmirr", delay: bool = False) -> int:
    """Chunk length for ``n`` TACs: ``chunk_size`` (at most 4,096 for ``2tcm``; with a fitted ``delay`` at most
    2,048, 512 for ``2tcm``), or less for small inputs (a power of two >= 256), rounded up to a multiple of the device
    count."""
    cap = (_MAX_CHUNK_DELAY if delay else _MAX_CHUNK).get(model, 1 << 30)
    chunk = min(int(chunk_size), cap, max(_next_pow2(max(n, 1)), 256))
    return -(-chunk // n_devices) * n_devices


def fit_tacs(
    tacs,
    kin: KineticInput,
    model: str = "2tcmirr",
    *,
    weights="none",
    bounds=None,
    lower=None,
    upper=None,
    n_iter: int = 16,
    grid_size: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    half_life: float = F18_HALF_LIFE_MIN,
    decay_corrected: bool = True,
    delay_range=DEFAULT_DELAY_RANGE,
    delay_step: float = DELAY_STEP,
) -> FitResult:
    """Fit ``tacs [N, F]`` (kBq/ml) with ``model`` (``2tcmirr``, ``1tcm``, ``2tcm``) -> :class:`FitResult` ``[N]``.

    ``weights``: ``"none"``, ``"duration"``, ``"poisson"`` or an array ``[F]``/``[N, F]`` (see :func:`frame_weights`).
    ``bounds``: a preset (``"physiological"``, the default, or ``"paper"``) or ranges (``"K1=0,3 k3=0,1"``, a dict),
    see :func:`jaxkin.kinetics.resolve_bounds`; ``lower``/``upper`` (``[P]`` each) replace that side of the bounds
    when given. A parameter whose bounds have zero width is held fixed (:func:`jaxkin.kinetics.with_fixed`; see the
    module). TACs are fitted in fixed-size chunks of
    :func:`chunk_length` (the last one padded), so one compilation serves every chunk; each chunk is split over
    this process's devices (:class:`jaxkin.distributed.DataParallel` over :func:`jaxkin.distributed.local_mesh`).
    The dtype follows ``kin`` (float32 by default).

    **Input delay per voxel**: with ``kin`` a :class:`jaxkin.kinetics.DelayedInput` (:func:`jaxkin.prepare_delayed`)
    the delay of the input (min, positive = later) is a fitted parameter, the last column of ``params`` and
    ``stderr``, bounded by ``delay_range`` (min; default -10 s ... +30 s); the basis start scans delays
    ``delay_step`` min apart (default 4 s) times ``grid_size`` rates (default 32).
    ``lower``/``upper`` then have the delay's bound last.
    """
    delayed = isinstance(kin, DelayedInput)
    lo, hi, _ = resolve_bounds(model, bounds)
    if delayed:
        d_lo, d_hi = (float(v) for v in delay_range)
        if d_lo < -kin.max_advance - 1e-9:
            raise ValueError(f"delay_range starts at {d_lo * 60:g} s but the DelayedInput serves delays from "
                             f"{-kin.max_advance * 60:g} s (prepare_delayed(max_advance=...))")
        if d_hi > kin.max_delay + 1e-9:
            raise ValueError(f"delay_range ends at {d_hi * 60:g} s but the DelayedInput's tables reach "
                             f"{kin.max_delay * 60:g} s (prepare_delayed(max_delay=...))")
        lo, hi = lo + (d_lo,), hi + (d_hi,)
    settings = FitSettings(
        model=model,
        lower=lo if lower is None else tuple(float(v) for v in lower),
        upper=hi if upper is None else tuple(float(v) for v in upper),
        grid_size=grid_size or (GRID_SIZE_DELAY if delayed else GRID_SIZE),
        n_iter=n_iter,
        delay=delayed,
        delay_step=float(delay_step),
    )
    settings.bounds()  # validate
    dtype = kin.frame_duration.dtype
    tacs = jnp.asarray(tacs, dtype)
    if tacs.ndim != 2 or tacs.shape[1] != kin.frame_duration.shape[0]:
        raise ValueError(f"tacs must be [N, {kin.frame_duration.shape[0]}], got {tuple(tacs.shape)}")
    n = tacs.shape[0]
    w = frame_weights(weights, kin, tacs, half_life=half_life, decay_corrected=decay_corrected)
    from jaxkin import distributed

    parallel = distributed.DataParallel(distributed.local_mesh())
    n_dev, rows, replicated = parallel.size, parallel.batch_sharding, parallel.replicated
    chunk = chunk_length(n, chunk_size, n_dev, model, delayed)
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
