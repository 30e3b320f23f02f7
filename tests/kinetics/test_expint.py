"""The exponential integrals of a piecewise-linear input (jaxkin.kinetics._expint) against quadrature."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxkin.kinetics._expint import interval_coefficients, knot_recurrence, phi_functions


def test_coefficients_are_continuous_across_the_series_switch():
    with jax.enable_x64(True):
        x = jnp.array([1.0 - 1e-9, 1.0, 1.0 + 1e-9])
        for values in (*interval_coefficients(x), *phi_functions(x)):
            v = np.asarray(values)
            np.testing.assert_allclose(v, v[1], rtol=1e-8)
        p1, p2, p3, p4 = (np.asarray(a) for a in phi_functions(jnp.array([0.0, 3.0])))
        np.testing.assert_allclose([p1[0], p2[0], p3[0], p4[0]], [1.0, 0.5, 1 / 6, 1 / 24])
        np.testing.assert_allclose(p1[1], (1 - np.exp(-3.0)) / 3.0, rtol=1e-14)


def test_knot_recurrence_is_the_exact_convolution():
    times = np.array([0.0, 0.4, 1.0, 2.5, 4.0])
    values = np.array([0.0, 10.0, 6.0, 3.0, 2.0])
    rate = 0.8
    with jax.enable_x64(True):
        i_end, interval_integral = (np.asarray(a) for a in knot_recurrence(jnp.asarray(times), jnp.asarray(values),
                                                                           jnp.asarray(rate)))
    fine = np.linspace(0.0, 4.0, 80001)
    c = np.interp(fine, times, values)
    dt = fine[1] - fine[0]
    # I(t) = int_0^t C(s) e^{-rate (t - s)} ds, by the trapezoid rule on a fine grid
    conv = np.array([np.trapezoid(c[: k + 1] * np.exp(-rate * (fine[k] - fine[: k + 1])), dx=dt) if k else 0.0
                     for k in range(0, fine.size, 100)])
    coarse = fine[::100]
    np.testing.assert_allclose(i_end, np.interp(times[1:], coarse, conv), rtol=1e-6)
    running = np.concatenate([[0.0], np.cumsum(0.5 * np.diff(coarse) * (conv[1:] + conv[:-1]))])
    np.testing.assert_allclose(np.cumsum(interval_integral), np.interp(times[1:], coarse, running), rtol=1e-4)
