"""The default evaluator (jaxkin.kinetics.tabulated): its rate table against the exact recurrence, its analytic
rate derivative, and the input's coverage."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxkin
from jaxkin import kinetics
from jaxkin import InputFunction

from _reference import FRAMES, INPUT


def _relative_error_on_signal(approx, ref):
    """Max relative error over frames whose reference value is above 1% of that curve's peak."""
    approx, ref = np.asarray(approx, np.float64), np.asarray(ref, np.float64)
    significant = np.abs(ref) > 0.01 * np.abs(ref).max(axis=1, keepdims=True)
    return np.max(np.abs(approx - ref)[significant] / np.abs(ref)[significant])


@pytest.mark.slow
def test_table_matches_exact_recurrence_over_all_rates():
    """Interpolation error of the rate table, on the realistic 1-s (0.2-s at the peak) Feng input."""
    inp = jaxkin.feng_input(65.0, delay=0.3)
    rates = np.concatenate([np.linspace(0, 0.1, 61), np.geomspace(0.1, 10.0, 120)])
    with jax.enable_x64(True):
        table = jaxkin.prepare(inp, FRAMES, dtype=jnp.float64)
        exact = kinetics.prepare_exact(inp, FRAMES, dtype=jnp.float64)
        a = np.asarray(table.frame_conv(jnp.asarray(rates)))
        b = np.asarray(exact.frame_conv(jnp.asarray(rates)))
        np.testing.assert_allclose(table.integral_mean(), exact.integral_mean(), rtol=1e-12)
        np.testing.assert_allclose(table.blood_mean(), exact.blood_mean(), rtol=1e-12)
    assert _relative_error_on_signal(a, b) < 1e-7


@pytest.mark.slow
def test_rate_derivative_matches_the_exact_evaluators_jvp():
    rates = np.array([0.0, 0.004, 0.3, 1.7, 6.0, 10.0])
    with jax.enable_x64(True):
        table = jaxkin.prepare(INPUT, FRAMES, dtype=jnp.float64)
        exact = kinetics.prepare_exact(INPUT, FRAMES, dtype=jnp.float64)
        value, derivative = (np.asarray(a) for a in table.frame_conv_and_derivative(jnp.asarray(rates)))
        _, reference = jax.jvp(exact.frame_conv, (jnp.asarray(rates),), (jnp.ones(rates.shape),))
        beyond = np.asarray(table.frame_conv_and_derivative(jnp.array([12.0]))[1])
        np.testing.assert_array_equal(value, np.asarray(table.frame_conv(jnp.asarray(rates))))
    assert _relative_error_on_signal(derivative, reference) < 1e-6
    assert np.all(beyond == 0.0)  # clamped beyond the grid


def test_input_must_cover_the_scan():
    short = InputFunction.from_samples([0, 30], [0.0, 1.0], time_unit="min")
    with pytest.raises(ValueError, match="does not cover the scan: it ends at 30 min"):
        jaxkin.prepare(short, FRAMES)
