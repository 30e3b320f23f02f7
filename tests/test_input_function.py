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


# ------------------------------------------------------------------------------------------ frame means, the tail

#: A clinical FDG protocol (s): short frames over the bolus, long ones later.
_PROTOCOL = jaxkin.FrameSchedule.from_durations([10.0] * 6 + [30.0] * 4 + [60.0] * 4 + [120.0] * 5 + [300.0] * 8)


def _frame_means(f: InputFunction, frames) -> np.ndarray:
    return (f.integral(frames.end) - f.integral(frames.start)) / frames.duration


def test_extend_tail_is_the_exponential_of_the_last_samples():
    t = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    tail = input_function.extend_tail(t, 7.0 * np.exp(-0.02 * t), 62.5)
    np.testing.assert_allclose(tail.times, [61.0, 62.0, 62.5])
    np.testing.assert_allclose(tail.values, 7.0 * np.exp(-0.02 * tail.times), rtol=1e-12)
    assert tail.rate == pytest.approx(0.02) and tail.samples == input_function.TAIL_SAMPLES
    held = input_function.extend_tail(t, 1.0 + t, 62.0)  # rising: the last value is held
    assert held.rate == 0.0 and np.all(held.values == 61.0)


def test_from_frame_means_keeps_every_frame_mean_and_integral():
    truth = input_function.feng_input(float(_PROTOCOL.end[-1]))
    means = _frame_means(truth, _PROTOCOL)
    curve = input_function.from_frame_means(_PROTOCOL, means)
    np.testing.assert_allclose(_frame_means(curve, _PROTOCOL), means, rtol=1e-10)
    np.testing.assert_allclose(curve.integral(_PROTOCOL.end), truth.integral(_PROTOCOL.end), rtol=1e-10)
    assert curve.end == pytest.approx(_PROTOCOL.end[-1]) and curve.values[0] == 0.0
    # The frame means read as samples at the mid times miss the integral to a frame's end by 10% or more.
    samples = InputFunction(np.r_[_PROTOCOL.mid, _PROTOCOL.end[-1]], np.r_[means, means[-1]])
    assert np.max(np.abs(samples.integral(_PROTOCOL.end) / truth.integral(_PROTOCOL.end) - 1)) > 0.1


def _irreversible_tissue(cp: InputFunction, frames, k1, k2, k3, vb, step=1.0 / 600.0):
    """Frame means of the irreversible two-tissue model (Sokoloff/Phelps), by direct numerical convolution on a
    fine grid with scipy's cumulative trapezoid: independent of jaxkin's kinetics."""
    t = np.arange(0.0, float(frames.end[-1]) + step / 2, step)
    c = cp(t)
    k = k2 + k3
    # C_T = K1 k3/k * int Cp + K1 k2/k * int Cp(s) exp(-k (t - s)) ds
    conv = np.exp(-k * t) * integrate.cumulative_trapezoid(c * np.exp(k * t), t, initial=0.0)
    ct = k1 * k3 / k * integrate.cumulative_trapezoid(c, t, initial=0.0) + k1 * k2 / k * conv
    total = (1 - vb) * ct + vb * c
    cum = integrate.cumulative_trapezoid(total, t, initial=0.0)
    return (np.interp(frames.end, t, cum) - np.interp(frames.start, t, cum)) / frames.duration


@pytest.mark.slow
def test_an_idif_read_as_frame_means_gives_the_true_ki():
    """An IDIF made as exact frame means of a known input: read as frame means, Patlak's Ki (against Patlak with
    the true input) and the 2TC fit's Ki (against the model's) match far better than read as samples at the mid
    times (which averages the values again over each frame)."""
    from jaxkin.fitting import fit_regions

    frames = _PROTOCOL
    truth = input_function.feng_input(float(frames.end[-1]) + 1.0)
    k1, k2, k3 = 0.1, 0.15, 0.05
    tacs = np.stack([_irreversible_tissue(truth, frames, k1, k2, k3, 0.0),
                     _irreversible_tissue(truth, frames, k1, k2, k3, 0.05)])
    idif = _frame_means(truth, frames)
    readings = {"frame means": input_function.from_frame_means(frames, idif),
                "samples": InputFunction(np.r_[frames.mid, frames.end[-1]], np.r_[idif, idif[-1]])}
    patlak_truth = fit_regions(["a"], tacs[:1], truth, frames, model="patlak", t_star=20.0).columns["Ki"][0]
    errors = {}
    for name, cp in readings.items():
        patlak = fit_regions(["a"], tacs[:1], cp, frames, model="patlak", t_star=20.0).columns["Ki"][0]
        twotc = fit_regions(["a", "b"], tacs, cp, frames, model="2tcmirr").columns["Ki"]
        errors[name] = (abs(patlak / patlak_truth - 1), np.abs(twotc / (k1 * k3 / (k2 + k3)) - 1).max())
    assert errors["frame means"][0] < 1e-3 and errors["frame means"][1] < 5e-3, errors
    assert errors["samples"][0] > 5 * errors["frame means"][0], errors
    assert errors["samples"][1] > 5 * errors["frame means"][1], errors
