"""Training data: the voxel fit's maps that guide a run (``lm_guidance``), against the generating parameters of
noise-free TACs."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import jaxkin
from jaxkin import kinetics
from jaxkin.network.data import lm_targets

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
