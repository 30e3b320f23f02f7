"""The delayed-input evaluator (jaxkin.kinetics.delayed): the models with it against the ODE reference with a shifted
input, its analytic derivatives against finite differences, and at delay 0 the undelayed evaluator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxkin
from jaxkin.kinetics import prepare_delayed

from _reference import FRAMES, INPUT, ode_delayed_frame_means


@pytest.mark.slow
@pytest.mark.parametrize("model", ["2tcmirr", "1tcm", "2tcm"])
def test_delayed_model_equals_the_ode_with_a_shifted_input(model, dkin64):
    rng = np.random.default_rng(3)
    n = 4
    m = jaxkin.get_model(model)
    lo, hi = (np.array(b) for b in m.bounds("paper"))
    params = rng.uniform(lo, 0.5 * hi, (n, lo.size))
    delays = np.array([-9.5, -2.0, 7.3, 29.0]) / 60.0
    ref = ode_delayed_frame_means(model, params, delays)
    tac = jax.jit(m.tac)  # one program per evaluator, not one per operation
    with jax.enable_x64(True):
        value = np.asarray(tac(np.concatenate([params, delays[:, None]], -1), dkin64))
        # delay 0 is the undelayed table model
        undelayed = np.asarray(tac(params, jaxkin.prepare(INPUT, FRAMES, dtype=jnp.float64)))
        zero = np.asarray(tac(np.concatenate([params, np.zeros((n, 1))], -1), dkin64))
    np.testing.assert_allclose(value, ref, rtol=1e-7, atol=1e-7 * np.abs(ref).max())
    np.testing.assert_allclose(zero, undelayed, rtol=1e-10, atol=1e-10 * np.abs(undelayed).max())


@pytest.mark.slow
def test_without_a_delay_it_is_the_undelayed_evaluator(dkin64):
    """The evaluators' interface: ``frame_conv(rate)``, ``integral_mean()``, ``blood_mean()`` at delay 0."""
    rates = np.array([[0.0, 0.05], [0.9, 4.0]])
    with jax.enable_x64(True):
        table = jaxkin.prepare(INPUT, FRAMES, dtype=jnp.float64)
        conv = np.asarray(dkin64.frame_conv(rates))
        assert conv.shape == (2, 2, FRAMES.n_frames)
        np.testing.assert_allclose(conv, table.frame_conv(rates), rtol=1e-8, atol=1e-10 * np.abs(conv).max())
        np.testing.assert_allclose(dkin64.integral_mean(), table.integral_mean(), rtol=1e-10)
        np.testing.assert_allclose(dkin64.blood_mean(), table.blood_mean(), rtol=1e-10)


@pytest.mark.slow
def test_analytic_derivatives_match_finite_differences(dkin64):
    rate, delay = np.array([0.0, 0.7, 2.3]), np.array([-7.0, 4.3, 21.0]) / 60.0
    h = 1e-6
    with jax.enable_x64(True):
        value, d_rate, d_delay = (np.asarray(a) for a in dkin64.frame_conv_and_derivatives(rate, delay))
        fd_rate = (np.asarray(dkin64.frame_conv(rate + h, delay)) - np.asarray(dkin64.frame_conv(rate - h, delay))) / 2 / h
        fd_delay = (np.asarray(dkin64.frame_conv(rate, delay + h)) - np.asarray(dkin64.frame_conv(rate, delay - h))) / 2 / h
        int_value, int_delay = dkin64.integral_mean_and_derivative(delay)
        fd_int = (np.asarray(dkin64.integral_mean(delay + h)) - np.asarray(dkin64.integral_mean(delay - h))) / 2 / h
        off_knots = delay + 0.2 / 60.0  # d/d delay has a kink where a boundary meets a knot (21 s): FD is off there
        blood_value, blood_delay = dkin64.blood_mean_and_derivative(off_knots)
        fd_blood = (np.asarray(dkin64.blood_mean(off_knots + h)) - np.asarray(dkin64.blood_mean(off_knots - h))) / 2 / h
        _, jvp_delay = jax.jvp(lambda d: dkin64.frame_conv(rate, d), (jnp.asarray(delay),), (jnp.ones(3),))
        blood_mean = np.asarray(dkin64.blood_mean(off_knots))
    np.testing.assert_allclose(d_rate[1:], fd_rate[1:], rtol=1e-6, atol=1e-7 * np.abs(fd_rate).max())
    np.testing.assert_allclose(d_delay, fd_delay, rtol=1e-5, atol=1e-6 * np.abs(fd_delay).max())
    np.testing.assert_allclose(int_delay, fd_int, rtol=1e-5, atol=1e-6 * np.abs(fd_int).max())
    np.testing.assert_allclose(blood_delay, fd_blood, rtol=1e-5, atol=1e-6 * np.abs(fd_blood).max())
    np.testing.assert_array_equal(np.asarray(jvp_delay), d_delay)  # the custom JVP is the analytic derivative
    np.testing.assert_allclose(value[0], np.asarray(int_value)[0], rtol=1e-9)  # rate 0 is the integral
    np.testing.assert_array_equal(np.asarray(blood_value), blood_mean)


def test_tables_reach_the_requested_delays_and_note_a_short_input():
    assert INPUT.end == FRAMES.end[-1]  # the input ends with the scan: an advance reads past its end
    dkin = prepare_delayed(INPUT, FRAMES, max_advance=10 / 60, max_delay=20 / 60)
    assert dkin.max_delay >= 20 / 60 - 1e-9 and dkin.max_advance == pytest.approx(10 / 60)
    n_delays = dkin.delay_table.shape[0] // dkin.grid.size
    np.testing.assert_allclose(-dkin.max_advance + (n_delays - 1) * dkin.delay_step, dkin.max_delay)
    assert dkin.delay_table_1d.shape[0] == round((dkin.max_delay + dkin.max_advance) / dkin.fine_delay_step) + 1
    assert "last value" in dkin.note
