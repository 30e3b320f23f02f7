"""Frame schedules and input functions against closed forms and scipy quadrature."""

import numpy as np
import pytest
from scipy import integrate

import jaxkin
from jaxkin import input_function
from jaxkin import FrameSchedule, InputFunction


def test_quadra_schedule_matches_the_paper():
    frames = FrameSchedule.quadra()
    assert frames.n_frames == 62
    counts = {}
    for d in frames.duration_seconds:
        counts[round(d)] = counts.get(round(d), 0) + 1
    assert counts == {10: 6, 2: 30, 30: 8, 60: 4, 120: 5, 300: 9}
    np.testing.assert_allclose(frames.end[-1], 65.0)
    np.testing.assert_allclose(frames.start[1:], frames.end[:-1])  # back to back
    np.testing.assert_allclose(frames.duration[:2] * 60, [10, 10])
    np.testing.assert_allclose(frames.mid, frames.start + frames.duration / 2)


def test_frames_from_seconds_convert_to_minutes():
    frames = FrameSchedule.from_seconds([0, 30, 90], [30, 60, 120])
    np.testing.assert_allclose(frames.start, [0, 0.5, 1.5])
    np.testing.assert_allclose(frames.duration, [0.5, 1.0, 2.0])
    np.testing.assert_allclose(frames.start_seconds, [0, 30, 90])
    assert frames == FrameSchedule.from_minutes([0, 0.5, 1.5], [0.5, 1, 2])


@pytest.mark.parametrize(
    "start, duration, message",
    [
        ([0, 1, 2], [1, 1], "differ in length"),
        ([0, 2, 1], [1, 1, 1], "strictly increasing"),
        ([0, 1, 1], [1, 1, 1], "strictly increasing"),
        ([0, 1, 2], [1, 0, 1], "durations must be positive; frame 1"),
        ([0, 1, 2], [1, -1, 1], "durations must be positive"),
        ([0, 1, 2], [1, 1.5, 1], "frames overlap: frame 2"),
        ([0, np.nan], [1, 1], "finite"),
        ([], [], "at least one frame"),
    ],
)
def test_bad_frames_raise(start, duration, message):
    with pytest.raises(ValueError, match=message):
        FrameSchedule.from_minutes(start, duration)


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
