"""The basis-function start of the fits: for a fixed set of rates the model is linear in its remaining coefficients.

2TCM-irr: ``C = A·∫C_p + B·(C_p ⊗ e^{-λt}) + V·C_b`` with ``λ = k2 + k3``, ``A = (1-vB)K1 k3/λ``, ``B = (1-vB)K1 k2/λ``,
``V = vB``; 1TCM: ``λ = k2``, 2 coefficients; 2TCM: a 2-D grid of the two rates ``α1 < α2`` (the eigenvalues),
3 coefficients. The basis columns of every grid point are shared by all voxels, so are the (weighted) normal matrices
when the weights are shared. For each grid point the non-negative least-squares problem (all coefficients >= 0) is
solved exactly by enumerating the active sets (at most 2^4 - 1 tiny systems); the grid point with the smallest SSE
of its solution projected onto the bounds wins.

Shapes: ``tacs [N, F]`` (kBq/ml), ``weights [F]`` or ``[N, F]``, grid rates ``[G, R]`` (1/min).
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp

from jaxkin.fitting._linalg import TINY, cho_solve, ridge_for, scaled_solve
from jaxkin.fitting._models import spec as model_spec
from jaxkin.fitting.result import FitSettings
from jaxkin.kinetics import KineticInput, get_model  # noqa: F401

__all__ = ["basis_start"]


def _basis_columns(kin, rates, integral_column: bool, delay: bool = False):
    """Basis columns ``[G, K, F]`` for grid rates ``[G, R]``: (∫C_p,) conv(r_1..r_R), C_b. With ``delay`` the last
    grid column is the input delay (min) and ``kin`` a :class:`jaxkin.kinetics.DelayedInput`."""
    g = rates.shape[0]
    if delay:
        rates, d = rates[:, :-1], rates[:, -1]
        cols = [kin.frame_conv(rates[:, r], d) for r in range(rates.shape[1])]
        if integral_column:
            cols = [kin.integral_mean(d)] + cols
        cols.append(kin.blood_mean(d))
        return jnp.stack(cols, axis=1)
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
    spec = model_spec(get_model(settings.model), settings.delay, settings.delay_step)
    lo, hi = settings.bounds()
    dtype = tacs.dtype
    size = max(int(round(settings.grid_size * spec.grid_scale)), 4)
    grid = jnp.asarray(spec.basis_rates(lo, hi, size), dtype)  # [G, R] (+ the delay column)
    x = _basis_columns(kin, grid, spec.integral_column, spec.delay)  # [G, K, F]
    k = x.shape[1]
    # Scale every column to unit RMS so the normal matrices are well balanced (undone on the coefficients).
    col_scale = jnp.sqrt(jnp.mean(x * x, axis=-1)) + TINY  # [G, K]
    x = x / col_scale[..., None]
    subsets = [list(c) for size in range(1, k + 1) for c in itertools.combinations(range(k), size)]
    if spec.delay:  # only active sets with a tissue convolution: the others cannot tell delays apart
        conv = set(range(int(spec.integral_column), k - 1))
        subsets = [sub for sub in subsets if conv & set(sub)]
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
# [N, G*S*K] intermediate is too big and the per-voxel path is used. (A fitted delay multiplies the grid by the
# delays, and only active sets with a tissue convolution are kept: 32 rates x 11 delays (4 s apart) x 4 x 3 = 4,224 for the FDG
# model, whose chunks are then capped at 8,192 TACs, ~0.26 GB.)
_MAX_SHARED_COLUMNS = 8192


def _nnls_shared_weights(tacs, weights, x, subsets):
    """Exact NNLS at every grid point when all voxels share ``weights [F]``: all candidate solutions are linear in
    the TAC, so they come from one matmul with a precomputed ``[F, G·S·K]`` matrix.

    Returns the NNLS coefficients ``[N, G, K]`` (of the columns ``x [G, K, F]``), their SSE ``[N, G]``, ``b = XᵀWy
    [N, G, K]``, ``yᵀWy [N]`` and the normal matrices ``[G, K, K]``."""
    dtype = tacs.dtype
    n_grid, k, _ = x.shape
    wx = x * weights  # [G, K, F]
    m = jnp.einsum("gif,gjf->gij", wx, x)  # [G, K, K]
    ridge = ridge_for(dtype)
    maps = []
    for sub in subsets:
        m_s = m[:, sub][:, :, sub]
        diag = jnp.diagonal(m_s, axis1=-2, axis2=-1)
        d = jnp.sqrt(jnp.maximum(diag, TINY))
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
    ridge = ridge_for(dtype)
    best_sse = yy + jnp.zeros(b.shape[:2], dtype)  # empty active set
    best_coef = jnp.zeros(b.shape, dtype)
    for sub in subsets:
        m_s = m[..., sub, :][..., :, sub]
        b_s = b[..., sub]
        if m_s.ndim == 3:  # shared: factor once per grid point
            lower, d, _ = scaled_solve(m_s, jnp.zeros(m_s.shape[:-1], dtype), ridge)
            c_s = cho_solve(lower, b_s / d) / d
        else:
            _, _, c_s = scaled_solve(m_s, b_s, ridge)
        sse = yy - jnp.sum(c_s * b_s, axis=-1)
        ok = jnp.all(c_s >= 0, axis=-1) & jnp.isfinite(sse) & (sse < best_sse)
        coef = jnp.zeros(b.shape, dtype).at[..., sub].set(c_s)
        best_sse = jnp.where(ok, sse, best_sse)
        best_coef = jnp.where(ok[..., None], coef, best_coef)
    return best_coef, best_sse, b, yy[:, 0], m
