"""Input functions (jaxkin.input_function) against closed forms and scipy quadrature; the one table of time units."""

import numpy as np
import pytest
from scipy import integrate

import jaxkin
from jaxkin import InputFunction, input_function
from jaxkin.input_function import MINUTES_PER_TIME_UNIT


@pytest.mark.parametrize(
    "times, values, message",
    [
        ([0, 1, 2], [1, 2], "3 sample times but 2 values"),
        ([0, 2, 1], [1, 2, 3], "strictly increasing; sample 2"),
        ([0, 1, 1], [1, 2, 3], "strictly increasing"),
        ([0, 1, 2], [1, np.nan, 3], "value 1 .* NaN"),
        ([0, 1, 2], [1, np.inf, 3], "NaN or Inf"),
        ([0], [1], "at least two samples"),
    ],
)
def test_bad_input_function_raises(times, values, message):
    with pytest.raises(ValueError, match=message):
        InputFunction.from_samples(times, values, time_unit="min")


def test_input_function_units_ramp_and_delay():
    inp = InputFunction.from_samples([30, 60, 120], [10.0, 20.0, 5.0], time_unit="s")
    # A ramp from (0, 0) is added before a first sample that lies after injection.
    np.testing.assert_allclose(inp.times, [0, 0.5, 1.0, 2.0])
    np.testing.assert_allclose(inp([0.25, 0.75, 1.5]), [5.0, 15.0, 12.5])
    assert inp(-1.0) == 0.0
    late = inp.delayed(0.25)
    np.testing.assert_allclose(late([0.5, 1.0, 1.25]), inp([0.25, 0.75, 1.0]))
    with pytest.raises(ValueError, match="unknown time unit"):
        InputFunction.from_samples([0, 1], [0, 1], time_unit="hours")


def test_time_units_are_one_table():
    assert MINUTES_PER_TIME_UNIT["s"] == MINUTES_PER_TIME_UNIT["seconds"] == 1 / 60
    assert MINUTES_PER_TIME_UNIT["min"] == MINUTES_PER_TIME_UNIT["minutes"] == 1.0
    inp = InputFunction.from_samples([0, 90], [0, 1], time_unit="secs")
    np.testing.assert_allclose(inp.times, [0, 1.5])


def test_running_integral_is_exact():
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0.1, 10.0, 40))
    inp = InputFunction.from_samples(times, rng.uniform(0, 50, 40), time_unit="min")
    for t in [0.05, 0.7, 3.3, 9.0, inp.end]:
        ref, _ = integrate.quad(inp, 0, t, points=inp.times[inp.times < t], limit=200, epsabs=1e-12)
        np.testing.assert_allclose(inp.integral(t), ref, rtol=1e-10)
    assert np.isnan(inp.integral(inp.end + 1))


def test_feng_input_sampling_and_delay():
    params = input_function.FengParameters()
    fine = np.linspace(0, 65, 400_001)
    analytic = input_function.feng(fine, params, delay=0.2)
    assert analytic[fine <= 0.2].max() == 0.0
    assert 100 < analytic.max() < 110  # Feng's published curve peaks at 103.5 at 0.29 min after onset
    np.testing.assert_allclose(fine[np.argmax(analytic)], 0.2 + 0.2896, atol=1e-3)
    inp = jaxkin.feng_input(65.0, params, delay=0.2)
    # The 1-s piecewise-linear interpolant is within 0.1% of the peak everywhere.
    assert np.max(np.abs(inp(fine) - analytic)) < 1e-3 * analytic.max()
    assert 0.2 in inp.times  # the onset kink is a knot
    np.testing.assert_allclose(input_function.feng(fine, scale=2.0), 2.0 * input_function.feng(fine))
