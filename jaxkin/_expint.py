"""Exact integrals of a piecewise-linear input against a decaying exponential.

Private helpers of :mod:`jaxkin.kinetics`. On one knot interval of length ``h`` with input values ``c0``
(left) and ``c1`` (right), let ``I(s) = I0 e^{-lam s} + int_0^s C(u) e^{-lam (s-u)} du`` and ``x = lam h``.
Then exactly

    I(h)           = E I0 + h (c0 alpha(x) + c1 phi2(x))
    int_0^h I(s)ds = I0 h phi1(x) + h^2 (c0 psi3(x) + c1 (phi2(x) - psi3(x)))

with ``E = e^{-x}`` and

    phi1  = (1 - E) / x                      -> 1     as x -> 0
    phi2  = (x - 1 + E) / x^2                -> 1/2
    alpha = (1 - E - x E) / x^2              -> 1/2
    psi3  = (x^2/2 - 1 + E + x E) / x^3      -> 1/3

The closed forms cancel catastrophically for small ``x``; there a Taylor series is used
(all coefficients are positive multiples of ``(-x)^k``), so every value is accurate to a few ulp
in float32 and float64 for every ``x >= 0``, and the derivatives are finite at ``x = 0``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

_SWITCH = 1.0  # below this x, use the series
_TERMS = 14  # x^14 / 15! < 1e-12 for x <= 1

_PHI1 = tuple(1.0 / math.factorial(k + 1) for k in range(_TERMS))
_PHI2 = tuple(1.0 / math.factorial(k + 2) for k in range(_TERMS))
_ALPHA = tuple((k + 1) / math.factorial(k + 2) for k in range(_TERMS))
_PSI3 = tuple(1.0 / (math.factorial(k + 1) * (k + 3)) for k in range(_TERMS))


def _series(x, coefficients):
    """sum_k coefficients[k] * (-x)^k by Horner's rule."""
    y = -x
    acc = jnp.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        acc = acc * y + c
    return acc


def interval_coefficients(x):
    """Return ``(E, phi1, alpha, phi2, psi3)`` for ``x = lam * h >= 0`` (any shape)."""
    x = jnp.asarray(x)
    small = x < _SWITCH
    xs = jnp.where(small, _SWITCH, x)  # safe argument for the closed forms (no 0/0 in values or grads)
    e = jnp.exp(-x)
    es = jnp.exp(-xs)
    one_minus_e = -jnp.expm1(-xs)
    phi1 = jnp.where(small, _series(x, _PHI1), one_minus_e / xs)
    phi2 = jnp.where(small, _series(x, _PHI2), (xs - one_minus_e) / xs**2)
    alpha = jnp.where(small, _series(x, _ALPHA), (one_minus_e - xs * es) / xs**2)
    psi3 = jnp.where(small, _series(x, _PSI3), (0.5 * xs**2 - one_minus_e + xs * es) / xs**3)
    return e, phi1, alpha, phi2, psi3
