"""What the fits need to know of each compartment model: the rate grid of the basis-function start, the map from
linear coefficients back to micro-parameters, the projection onto the bounds, and the model value with its Jacobian
(analytic for the FDG model, forward-mode autodiff otherwise).

Private to :mod:`jaxkin.fitting`; shapes: ``params [N, P]``, ``rates [..., R]``, TACs ``[N, F]``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxkin.fitting._delay_table import fdg_terms_tabulated
from jaxkin.fitting.result import DELAY_STEP
from jaxkin.kinetics import DelayedInput, KineticInput, KineticModel


def _fdg_terms(k1, k2, k3, vb, lam, e, de, integral, blood):
    """The 2TCM-irr value ``[N, F]``, its Jacobian in K1, k2, k3, vB, and the amplitudes ``a = K1 k3/λ``,
    ``b = K1 k2/λ`` and ``1 - vB`` (``[N, 1]``) from the evaluator's terms at ``λ = k2 + k3``: ``e``/``de`` the frame
    means of the convolution and its λ-derivative, ``integral`` those of the running integral, ``blood`` the blood's."""
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
    return value, (tb * d_k1, tb * d_k2, tb * d_k3, blood - tissue), a, b, tb


def _value_and_jac_2tcmirr(params, kin: KineticInput):
    """Analytic value ``[N, F]`` and Jacobian (4 arrays ``[N, F]``, one per parameter) of the 2TCM-irr model."""
    k1, k2, k3, vb = params[:, 0], params[:, 1], params[:, 2], params[:, 3]
    lam = jnp.maximum(k2 + k3, 1e-12)
    e, de = kin.frame_conv_and_derivative(lam)
    value, jac, *_ = _fdg_terms(k1, k2, k3, vb, lam, e, de, kin.integral_mean(), kin.blood_mean())
    return value, jac


def _value_and_jac_2tcmirr_delayed(params, kin: DelayedInput):
    """Value ``[N, F]`` and Jacobian (5 arrays ``[N, F]``: K1, k2, k3, vB, delay) of the 2TCM-irr model with a
    delayed input: the rate and delay derivatives of the evaluator's tables over rates and delays
    (:func:`~jaxkin.fitting._delay_table.fdg_terms_tabulated`), the rest as without delay."""
    k1, k2, k3, vb, delay = (params[:, i] for i in range(5))
    lam = jnp.maximum(k2 + k3, 1e-12)
    e, de, e_d, integral, integral_d, blood, blood_d = fdg_terms_tabulated(kin, lam, delay)
    value, jac, a, b, tb = _fdg_terms(k1, k2, k3, vb, lam, e, de, integral, blood)
    d_delay = tb * (a * integral_d + b * e_d) + vb[:, None] * blood_d
    return value, (*jac, d_delay)


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
    delay: bool = False  # the last grid column and the last parameter are the input delay (min)


def _with_delay(base: _Spec, model: KineticModel, delay_step: float) -> _Spec:
    """The spec of ``model`` with a fitted input delay: the basis grid is the rate grid times a grid of delays
    (``delay_step`` apart, from the lower to the upper bound), whose last column carries the delay; coefficients map to
    the model's parameters and the grid delay is appended; the Jacobian has a delay column."""

    def basis_rates(lo, hi, size):
        rates = base.basis_rates(lo[:-1], hi[:-1], size)
        n = max(int(np.floor((hi[-1] - lo[-1]) / delay_step + 1e-6)) + 1, 1)
        delays = lo[-1] + delay_step * np.arange(n)
        if delays[-1] < hi[-1] - 1e-9:
            delays = np.append(delays, hi[-1])
        g, d = rates.shape[0], delays.shape[0]
        return np.concatenate([np.repeat(rates, d, axis=0), np.tile(delays, g)[:, None]], axis=1)

    def append_delay(p, grid):
        return jnp.concatenate([p, jnp.broadcast_to(grid[..., -1:], p.shape[:-1] + (1,))], axis=-1)

    def coef_to_params(coef, grid):
        return append_delay(base.coef_to_params(coef, grid[..., :-1]), grid)

    project = None
    if base.project is not None:
        def project(params, grid, lo, hi):
            p, c = base.project(params[..., :-1], grid[..., :-1], lo[:-1], hi[:-1])
            return append_delay(p, grid), c

    if model.name == "2tcmirr":
        value_and_jac = _value_and_jac_2tcmirr_delayed
    else:
        value_and_jac = _jacfwd_value_and_jac(model.tac)
    return _Spec(basis_rates, base.integral_column, coef_to_params, value_and_jac, project, base.grid_scale, True)


def spec(model: KineticModel, delay: bool = False, delay_step: float = DELAY_STEP) -> _Spec:
    """How to fit ``model`` (with a fitted input delay when ``delay``; its basis grid ``delay_step`` min apart): its
    basis grid, coefficient map, projection onto the bounds and Jacobian."""
    base = _spec(model)
    return _with_delay(base, model, delay_step) if delay else base


def _spec(model: KineticModel) -> _Spec:
    if model.name == "2tcmirr":
        return _Spec(_basis_rates_2tcmirr, True, _coef_to_params_2tcmirr, _value_and_jac_2tcmirr, _project_2tcmirr)
    if model.name == "1tcm":
        return _Spec(_basis_rates_1tcm, False, _coef_to_params_1tcm, _jacfwd_value_and_jac(model.tac), _project_1tcm)
    if model.name == "2tcm":
        return _Spec(_basis_rates_2tcm, False, _coef_to_params_2tcm, _jacfwd_value_and_jac(model.tac), None, 0.5)
    raise ValueError(f"no fitting specification for model {model.name!r}")
