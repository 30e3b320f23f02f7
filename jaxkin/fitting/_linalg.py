"""Small dense linear algebra for the fits, unrolled over the (static, tiny) matrix size and vectorised over voxels.

Private to :mod:`jaxkin.fitting`.
"""

from __future__ import annotations

import jax.numpy as jnp

#: A positive floor that keeps divisions and square roots finite.
TINY = 1e-30


def ridge_for(dtype) -> float:
    """The Tikhonov ridge added to (scaled) normal matrices: 1e-6 in float32, 1e-12 in float64."""
    return 1e-6 if dtype == jnp.float32 else 1e-12


def cholesky(m, ridge):
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


def cho_solve(lower, b):
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


def scaled_solve(m, b, ridge):
    """Solve the Jacobi-scaled system ``(D⁻¹ m D⁻¹ + ridge I) (D x) = D⁻¹ b`` with ``D = sqrt(diag m)``."""
    diag = jnp.diagonal(m, axis1=-2, axis2=-1)
    floor = 1e-12 * jnp.max(diag, axis=-1, keepdims=True) + TINY
    d = jnp.sqrt(jnp.maximum(diag, floor))
    ms = m / (d[..., :, None] * d[..., None, :])
    lower = cholesky(ms, ridge)
    return lower, d, cho_solve(lower, b / d) / d
