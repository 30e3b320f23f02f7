"""Training data: the voxel fit's maps that guide a run (``lm_guidance``), against the generating parameters of
noise-free TACs."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import jaxkin
from jaxkin import kinetics
from jaxkin.network.data import lm_targets, voxel_mask

FRAMES = jaxkin.FrameSchedule.quadra()


@pytest.mark.slow
def test_lm_targets_recover_the_parameters_of_noise_free_tacs():
    rng = np.random.default_rng(1)
    kin = jaxkin.prepare(jaxkin.feng_input(FRAMES.end[-1], delay=0.1), FRAMES)
    truth = np.stack([rng.uniform(0.1, 0.8, (1, 4, 4)), rng.uniform(0.2, 1.0, (1, 4, 4)),
                      rng.uniform(0.02, 0.15, (1, 4, 4)), rng.uniform(0.01, 0.1, (1, 4, 4))], -1).astype(np.float32)
    tac = np.asarray(kinetics.two_tissue_irreversible(jnp.asarray(truth), kin))
    mask = np.ones((1, 4, 4), np.float32)
    mask[0, 0, :] = 0.0
    fit = lm_targets(tac, mask, kin, "test")
    assert fit.shape == (1, 4, 4, 4) and fit.dtype == np.float32
    assert np.all(fit[0, 0] == 0.0)  # not fitted outside the mask
    inside = mask > 0
    ki = lambda p: p[..., 0] * p[..., 2] / (p[..., 1] + p[..., 2])  # noqa: E731
    np.testing.assert_allclose(fit[inside][:, [0, 3]], truth[inside][:, [0, 3]], rtol=2e-2, atol=1e-3)
    np.testing.assert_allclose(ki(fit[inside]), ki(truth[inside]), rtol=2e-2)


def test_voxel_mask_on_the_device_equals_the_host_mask():
    """Prediction computes the mask inside its compiled step (float32); training and the LM polish on the host
    (float64): the same voxels, NaN frames counting as 0, against a hand computation."""
    import jax

    rng = np.random.default_rng(5)
    tac = rng.gamma(2.0, 1.0, (2, 6, 7, 5)).astype(np.float32)
    tac[0, 1, 2, 3] = np.nan
    duration = np.array([0.5, 0.5, 1.0, 2.0, 5.0])
    mean = (np.nan_to_num(tac).astype(np.float64) * duration).sum(-1) / duration.sum()
    host = voxel_mask(tac, duration, 2.0)
    device = jax.jit(lambda t, d: voxel_mask(t, d, 2.0))(jnp.asarray(tac), jnp.asarray(duration, jnp.float32))
    np.testing.assert_array_equal(host, (mean > 2.0).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(device), host)
    assert 0 < host.sum() < host.size
