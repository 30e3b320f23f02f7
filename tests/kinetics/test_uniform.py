"""The paper-style uniform-grid evaluator (jaxkin.kinetics.uniform) converges to the exact model."""

import pytest
import jax
import jax.numpy as jnp
import numpy as np

from jaxkin import kinetics

from _reference import FRAMES, INPUT


def _relative_error_on_signal(approx, ref):
    approx, ref = np.asarray(approx, np.float64), np.asarray(ref, np.float64)
    significant = np.abs(ref) > 0.01 * np.abs(ref).max(axis=1, keepdims=True)
    return np.max(np.abs(approx - ref)[significant] / np.abs(ref)[significant])


@pytest.mark.slow
def test_convolve_cross_check_converges_to_exact():
    params = jnp.array([[0.6, 1.2, 0.1, 0.05], [0.243, 0.78, 0.1, 0.02], [1.535, 2.697, 0.007, 0.042]])
    with jax.enable_x64(True):
        exact = kinetics.two_tissue_irreversible(params, kinetics.prepare_exact(INPUT, FRAMES, dtype=jnp.float64))
        errors = []
        for dt in (2 / 60, 1 / 60, 0.5 / 60, 0.25 / 60):
            grid = kinetics.prepare_convolve(INPUT, FRAMES, dt=dt, dtype=jnp.float64)
            errors.append(_relative_error_on_signal(kinetics.two_tissue_irreversible(params, grid), exact))
    assert all(b < 0.7 * a for a, b in zip(errors, errors[1:])), errors  # first-order convergence
    assert errors[-1] < 0.02, errors


def test_frame_conv_takes_rates_of_any_shape():
    grid = kinetics.prepare_convolve(INPUT, FRAMES, dt=1 / 30)
    rates = jnp.array([[0.0, 0.5], [1.0, 3.0]])
    out = np.asarray(grid.frame_conv(rates))
    assert out.shape == (2, 2, FRAMES.n_frames)
    np.testing.assert_allclose(out[1, 0], np.asarray(grid.frame_conv(1.0)), rtol=1e-6)
    np.testing.assert_allclose(out[0, 0], np.asarray(grid.integral_mean()), rtol=1e-6)
