"""The exact evaluator (jaxkin.kinetics.exact): the evaluators' interface, padding, and the input's coverage.
Its accuracy against the ODE reference is tested with the models (tests/kinetics/test_models.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkin import kinetics
from jaxkin import InputFunction

from _reference import FRAMES, INPUT


@pytest.mark.slow
def test_frame_conv_takes_rates_of_any_shape():
    with jax.enable_x64(True):
        exact = kinetics.prepare_exact(INPUT, FRAMES, dtype=jnp.float64)
        frame_conv = jax.jit(lambda kin, rate: kin.frame_conv(rate))
        rates = jnp.array([[0.0, 0.3, 1.1], [2.5, 0.01, 7.0]])
        out = np.asarray(frame_conv(exact, rates))
        flat = np.asarray(frame_conv(exact, rates.reshape(-1)))
        one = np.asarray(frame_conv(exact, rates[1, 2]))
        integral = np.asarray(jax.jit(lambda kin: kin.integral_mean())(exact))
    assert out.shape == (2, 3, FRAMES.n_frames) and flat.shape == (6, FRAMES.n_frames) and one.shape == (FRAMES.n_frames,)
    np.testing.assert_allclose(out.reshape(6, -1), flat, rtol=1e-14)
    np.testing.assert_allclose(out[1, 2], one, rtol=1e-14)
    np.testing.assert_allclose(out[0, 0], integral, rtol=1e-14)  # the rate-0 convolution
    assert np.all(np.diff(out[0, :], axis=0) < 0)  # faster rates, smaller convolutions


@pytest.mark.slow
def test_integral_and_blood_means_are_exact():
    """Rate 0 is the running integral of the input, the blood term the frame means of the input itself."""
    with jax.enable_x64(True):
        exact = kinetics.prepare_exact(INPUT, FRAMES, dtype=jnp.float64)
        integral = np.asarray(exact.integral_mean())
        blood = np.asarray(exact.blood_mean())
    s = np.linspace(0.0, 1.0, 4001)
    for f in (0, 17, 40, FRAMES.n_frames - 1):
        t = FRAMES.start[f] + s * FRAMES.duration[f]
        np.testing.assert_allclose(integral[f], np.trapezoid(INPUT.integral(t), s), rtol=1e-5)
        np.testing.assert_allclose(blood[f], np.trapezoid(INPUT(t), s), rtol=1e-5)


@pytest.mark.slow
def test_padding_changes_nothing():
    with jax.enable_x64(True):
        plain = kinetics.prepare_exact(INPUT, FRAMES, dtype=jnp.float64)
        padded = kinetics.prepare_exact(INPUT, FRAMES, dtype=jnp.float64, pad_to=1024)
        frame_conv = jax.jit(lambda kin, rate: kin.frame_conv(rate))
        rates = jnp.array([0.0, 0.2, 3.0])
        assert padded.times.shape[0] % 1024 == 0 and padded.times.shape[0] > plain.times.shape[0]
        np.testing.assert_allclose(frame_conv(padded, rates), frame_conv(plain, rates), rtol=1e-13)


def test_input_must_cover_the_scan():
    short = InputFunction.from_samples([0, 30], [0.0, 1.0], time_unit="min")
    with pytest.raises(ValueError, match="does not cover the scan: it ends at 30 min"):
        kinetics.prepare_exact(short, FRAMES)
