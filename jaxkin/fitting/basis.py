"""The basis-function start of the fits: for a fixed set of rates the model is linear in its remaining coefficients.

2TCM-irr: ``C = A·∫C_p + B·(C_p ⊗ e^{-λt}) + V·C_b`` with ``λ = k2 + k3``, ``A = (1-vB)K1 k3/λ``, ``B = (1-vB)K1 k2/λ``,
``V = vB``; 1TCM: ``λ = k2``, 2 coefficients; 2TCM: a 2-D grid of the two rates ``α1 < α2`` (the eigenvalues),
3 coefficients. The basis columns of every grid point are shared by all voxels, so are the (weighted) normal matrices
when the weights are shared. For each grid point the non-negative least-squares problem (all coefficients >= 0) is
solved exactly by enumerating the active sets (at most 2^4 - 1 tiny systems); the grid point with the smallest SSE
of its solution projected onto the bounds wins. With shared weights the inverses of the normal matrices are
computed once; per voxel only the projections ``XᵀWy`` are, and each candidate's SSE is ``yᵀWy - cᵀb``.

Shapes: ``tacs [N, F]`` (kBq/ml), ``weights [F]`` or ``[N, F]``, grid rates ``[G, R]`` (1/min).
"""

from __future__ import annotations

import functools
import itertools

import jax.numpy as jnp

from jaxkin.fitting._linalg import TINY, ridge_for, scaled_solve
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
    integral, blood = kin.integral_mean(), kin.blood_mean()
    if integral_column:
        cols = [jnp.broadcast_to(integral, (g, integral.shape[-1]))] + cols
    cols.append(jnp.broadcast_to(blood, (g, blood.shape[-1])))
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
    lo_a, hi_a = jnp.asarray(lo, dtype), jnp.asarray(hi, dtype)
    if weights.ndim == 1:
        params = _best_shared_weights(tacs, weights, x, subsets, grid, col_scale, spec, lo_a, hi_a)
    else:
        coef, sse, b, yy, m = _nnls_per_voxel(tacs, weights, x, subsets)
        params = spec.coef_to_params(coef / col_scale, grid)  # [N, G, P]
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


def _shared_normal(weights, x, subsets):
    """What the shared-weight start precomputes once per grid (voxel-independent): the weighted columns ``W x
    [G, K, F]``, the normal matrices ``m [G, K, K]`` and, per active set ``s``, the inverse ``[G, |s|, |s|]`` of its
    normal matrix (Jacobi-scaled, with the ridge of :func:`~jaxkin.fitting._linalg.ridge_for`)."""
    dtype = x.dtype
    wx = x * weights  # [G, K, F]
    m = jnp.einsum("gif,gjf->gij", wx, x)  # [G, K, K]
    ridge = ridge_for(dtype)
    invs = []
    for sub in subsets:
        m_s = m[:, sub][:, :, sub]
        diag = jnp.diagonal(m_s, axis1=-2, axis2=-1)
        d = jnp.sqrt(jnp.maximum(diag, TINY))
        inv_s = jnp.linalg.inv(m_s / (d[:, :, None] * d[:, None, :]) + ridge * jnp.eye(len(sub), dtype=dtype))
        invs.append(inv_s / (d[:, :, None] * d[:, None, :]))
    return wx, m, invs


def _nnls_from_projections(bs, yy, invs, subsets):
    """Exact NNLS of one grid point from the projections of the TAC on its columns: ``bs`` (``K`` arrays ``[...]``,
    ``b_k = x_kᵀ W y``), ``yy = yᵀ W y`` and the active sets' inverse normal matrices ``invs`` (``[..., |s|, |s|]``
    each), all broadcastable. The unconstrained solution on an active set is ``c = M_s⁻¹ b_s`` with SSE
    ``yy - cᵀ b_s``; the feasible one (``c >= 0``) with the smallest SSE wins (the first on ties; the empty set,
    SSE ``yy``, if none is better). Returns the ``K`` coefficient arrays and the SSE, elementwise in ``[...]``."""
    k = len(bs)
    shape = jnp.broadcast_shapes(*(b.shape for b in bs), jnp.shape(yy))
    best_sse = jnp.full(shape, jnp.inf, bs[0].dtype)
    coef = [jnp.zeros(shape, bs[0].dtype) for _ in range(k)]
    for sub, inv in zip(subsets, invs):
        c = [sum(inv[..., i, j] * bs[sub[j]] for j in range(len(sub))) for i in range(len(sub))]
        sse = yy - sum(c[i] * bs[col] for i, col in enumerate(sub))
        ok = functools.reduce(jnp.logical_and, [ci >= 0 for ci in c]) & jnp.isfinite(sse) & (sse < best_sse)
        best_sse = jnp.where(ok, sse, best_sse)
        for col in range(k):
            coef[col] = jnp.where(ok, c[sub.index(col)] if col in sub else 0.0, coef[col])
    found = best_sse < yy
    return [jnp.where(found, c, 0.0) for c in coef], jnp.where(found, best_sse, yy)


def _best_shared_weights(tacs, weights, x, subsets, grid, col_scale, spec, lo, hi):
    """The best feasible grid point of every TAC when all share ``weights [F]``: ``x [G, K, F]`` (scaled columns),
    ``grid [G, R]``, ``col_scale [G, K]`` -> parameters ``[N, P]`` (before the final clip to the bounds).

    The normal matrices and their inverses do not depend on the voxel (:func:`_shared_normal`); per voxel only the
    projections ``b = XᵀWy`` (one ``[N, F] x [F, K·G]`` matmul) vary, and every candidate (grid point, active set)
    is a few multiply-adds on them (:func:`_nnls_from_projections`), scored elementwise over ``[N, G]`` and reduced by
    an argmin over the grid; the winner's parameters are then recomputed from its gathered projections."""
    n_grid, k, n_frames = x.shape
    wx, m, invs = _shared_normal(weights, x, subsets)
    b = (tacs @ jnp.swapaxes(wx, 0, 1).reshape(k * n_grid, n_frames).T).reshape(-1, k, n_grid)  # [N, K, G]
    yy = jnp.sum(weights * tacs * tacs, axis=-1)  # [N]

    def score(bs, yy, invs, grid, col_scale, m):
        """Parameters ``[..., P]`` and true SSE ``[...]`` (inf if not finite) of the projected NNLS solution."""
        coef, sse = _nnls_from_projections(bs, yy, invs, subsets)
        params = spec.coef_to_params(jnp.stack(coef, -1) / col_scale, grid)
        if spec.project is not None:
            params, c = spec.project(params, grid, lo, hi)
            c = c * col_scale
            c = [c[..., i] for i in range(k)]
            sse = yy - 2 * sum(c[i] * bs[i] for i in range(k)) + sum(
                c[i] * m[..., i, j] * c[j] for i in range(k) for j in range(k))
        return params, jnp.where(jnp.isfinite(sse) & jnp.all(jnp.isfinite(params), -1), sse, jnp.inf)

    _, sse = score([b[:, i] for i in range(k)], yy[:, None], invs, grid, col_scale, m)  # [N, G]
    g_best = jnp.argmin(sse, axis=1)  # [N]
    bs = [jnp.take_along_axis(b[:, i], g_best[:, None], axis=1)[:, 0] for i in range(k)]
    params, _ = score(bs, yy, [inv[g_best] for inv in invs], grid[g_best], col_scale[g_best], m[g_best])
    return params


def _nnls_per_voxel(tacs, weights, x, subsets):
    """Exact NNLS at every grid point with per-voxel weights ``[N, F]`` (``x [G, K, F]``): returns the NNLS
    coefficients ``[N, G, K]``, their SSE ``[N, G]``, ``b = XᵀWy [N, G, K]``, ``yᵀWy [N]`` and the normal matrices
    ``[N, G, K, K]`` (shared weights ``[F]`` take :func:`_best_shared_weights` instead)."""
    dtype = tacs.dtype
    k = x.shape[1]
    pairs = [(i, j) for i in range(k) for j in range(i, k)]
    wy = weights * tacs  # [N, F]
    b = jnp.einsum("nf,gkf->ngk", wy, x)  # [N, G, K]
    yy = jnp.sum(wy * tacs, axis=-1)[:, None]  # [N, 1]
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
        _, _, c_s = scaled_solve(m_s, b_s, ridge)
        sse = yy - jnp.sum(c_s * b_s, axis=-1)
        ok = jnp.all(c_s >= 0, axis=-1) & jnp.isfinite(sse) & (sse < best_sse)
        coef = jnp.zeros(b.shape, dtype).at[..., sub].set(c_s)
        best_sse = jnp.where(ok, sse, best_sse)
        best_coef = jnp.where(ok[..., None], coef, best_coef)
    return best_coef, best_sse, b, yy[:, 0], m
