"""The FDG model's terms with a delayed input from the tables over rates and delays: the fast path of the
Levenberg–Marquardt iterations of a fit with a fitted delay (:func:`jaxkin.fitting._models.spec`).

Private to :mod:`jaxkin.fitting`. The tables are the :class:`~jaxkin.kinetics.delayed.DelayedInput`'s
(``delay_table``, ``delay_table_1d``): frame means and their derivatives at every grid rate and delay, interpolated by
cubic Hermite in ``u = log(rate + offset)`` and in the delay. Shapes: ``rate``, ``delay [N]`` (1/min, min); every
term ``[N, F]``.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxkin.kinetics import DelayedInput
from jaxkin.kinetics.rate_grid import hermite_basis, hermite_basis_slopes


def _hermite_weights(x, step):
    """Cubic Hermite weights ``[N, node, value|derivative]`` at ``x [N]`` (node spacing ``step``), and their d/dx."""
    h00, h01, h10, h11 = hermite_basis(x)
    e00, _, e10, e11 = hermite_basis_slopes(x)  # h01' = -h00'
    w = jnp.stack([jnp.stack([h00, step * h10], -1), jnp.stack([h01, step * h11], -1)], -2)
    dw = jnp.stack([jnp.stack([e00, step * e10], -1), jnp.stack([-e00, step * e11], -1)], -2)
    return w, dw


def _linear_derivative_weights(x):
    """Weights ``[N, node, value|derivative]`` that interpolate the tabulated derivatives linearly (the delay
    derivative: no float32 cancellation of value differences over a short step)."""
    zero = jnp.zeros_like(x)
    return jnp.stack([jnp.stack([zero, 1.0 - x], -1), jnp.stack([zero, x], -1)], -2)


def _delay_position(delay, max_advance, step, size):
    """The lower node ``[N]`` (int32), the fraction to the upper node (0 to 1) and whether the delay is inside a delay
    grid of ``size`` nodes ``step`` min apart from ``-max_advance``."""
    q = (delay + max_advance) / step
    k = jnp.clip(jnp.floor(q), 0, size - 2).astype(jnp.int32)
    return k, jnp.clip(q - k, 0.0, 1.0), (q >= 0.0) & (q <= size - 1)


def fdg_terms_tabulated(dkin: DelayedInput, rate, delay):
    """Everything the irreversible two-tissue model and its Jacobian need at ``rate``, ``delay [N]``:
    ``(conv, conv_rate, conv_delay, integral, integral_delay, blood, blood_delay)``, each ``[N, F]``: the frame means
    of the convolution at ``rate`` (kBq/ml*min), of the rate-0 term (kBq/ml*min) and of the blood (kBq/ml) with the
    input delayed by ``delay``, with their derivatives. Four rows of one table and two of the other per TAC. Delays
    outside ``[-max_advance, max_delay]`` are clamped (derivative 0), as are rates outside the grid."""
    g = dkin.grid
    dtype = dkin.delay_table.dtype
    n_delays = dkin.delay_table.shape[0] // g.size
    n_fine = dkin.delay_table_1d.shape[0]
    n_frames = dkin.delay_table.shape[-1] // 4
    at = g.locate(jnp.asarray(rate, dtype))
    delay = jnp.asarray(delay, dtype)
    k, t, in_delay = _delay_position(delay, dkin.max_advance, dkin.delay_step, n_delays)
    ws, dws = _hermite_weights(at.fraction, g.step)
    wt, dwt = _hermite_weights(t, dkin.delay_step)
    dwt = dwt * (in_delay.astype(dtype) / dkin.delay_step)[:, None, None]
    dws = dws * at.d_fraction[:, None, None]
    # rows (rate node r, delay node d), each [a = value|d/du][b = value|d/ddelay] x F
    base = at.index * n_delays + k
    rows = dkin.delay_table[jnp.stack([base, base + 1, base + n_delays, base + n_delays + 1], -1)]
    rows = rows.reshape(rows.shape[0], 2, 2, 2, 2, n_frames)  # [N, r, d, a, b, F]
    w = jnp.stack([jnp.einsum("nra,ndb->nrdab", ws, wt), jnp.einsum("nra,ndb->nrdab", dws, wt),
                   jnp.einsum("nra,ndb->nrdab", ws, dwt)], 1).reshape(-1, 3, 16)
    conv, conv_rate, conv_delay = jnp.moveaxis(jnp.einsum("nkq,nqf->nkf", w, rows.reshape(-1, 16, n_frames)), 1, 0)
    # the rate-0 term and the blood (only C1 in the delay: a finer grid)
    fine = dkin.fine_delay_step
    k1, t1, in_fine = _delay_position(delay, dkin.max_advance, fine, n_fine)
    wt1, _ = _hermite_weights(t1, fine)
    dwt1 = _linear_derivative_weights(t1) * in_fine.astype(dtype)[:, None, None]
    rows1 = dkin.delay_table_1d[jnp.stack([k1, k1 + 1], -1)].reshape(-1, 2, 2, 2, n_frames)  # [N, d, c, b, F]
    w1 = jnp.stack([wt1, dwt1], 1).reshape(-1, 2, 4)  # [N, value|d/ddelay, (d, b)]
    x1 = jnp.einsum("nkq,nqcf->nkcf", w1, rows1.transpose(0, 1, 3, 2, 4).reshape(-1, 4, 2, n_frames))
    integral, integral_d = x1[:, 0, 0], x1[:, 1, 0]
    blood, blood_d = x1[:, 0, 1], x1[:, 1, 1]
    return conv, conv_rate, conv_delay, integral, integral_d, blood, blood_d
