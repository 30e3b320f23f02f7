"""The network's input: time padding, the slice and input-function normalisations and the input-function channels,
against hand computations (the 62 Quadra frames, two scans with Feng inputs of different shape and dose)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxkin
from jaxkin.nn import inputs as I

FRAMES = jaxkin.FrameSchedule.quadra()



def test_input_level_is_the_time_weighted_blood_mean(kins):
    kin, _, _ = kins
    blood = np.asarray(kin.blood_mean(), np.float64)
    expected = (blood * FRAMES.duration).sum(axis=1) / FRAMES.duration.sum()
    np.testing.assert_allclose(np.asarray(I.input_level(kin)), expected, rtol=1e-6)


def test_input_normalisation_and_conditioning_see_tissue_relative_to_blood(kins):
    """The network input is invariant to the dose (TACs and input scaled together), and its two extra channels are
    the blood curve and the running integral over the scan length, in units of the scan's blood level."""
    kin, dosed, factor = kins
    tac = jax.random.uniform(jax.random.key(0), (2, 8, 8, FRAMES.n_frames)) * 10.0
    x = I.network_input(tac, 64, normalization="input", kin=kin, condition=True)
    y = I.network_input(tac * factor[:, None, None, None], 64, normalization="input", kin=dosed, condition=True)
    assert x.shape == (2, 64, 8, 8, 3)
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)
    level = np.asarray(I.input_level(kin))
    np.testing.assert_allclose(np.asarray(x[:, :62, 3, 5, 0]), np.asarray(tac[:, 3, 5, :]) / level[:, None], rtol=1e-5)
    blood = np.asarray(kin.blood_mean()) / level[:, None]
    integral = np.asarray(kin.integral_mean()) / FRAMES.end[-1] / level[:, None]
    np.testing.assert_allclose(np.asarray(x[:, :62, 2, 7, 1]), blood, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(x[:, :62, 0, 0, 2]), integral, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(x[:, 62:, 0, 0, 2]), integral[:, -1:].repeat(2, axis=1), rtol=1e-5)
    with pytest.raises(ValueError, match="input function"):
        I.network_input(tac, 64, normalization="input")


@pytest.mark.slow
def test_slice_normalisation_is_invariant_to_a_constant_factor():
    tac = jax.random.uniform(jax.random.key(1), (3, 16, 16, 12)) * jnp.array([1.0, 30.0, 0.2])[:, None, None, None]
    a = I.network_input(tac, 16, normalization="slice")
    b = I.network_input(7.5 * tac, 16, normalization="slice")
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # each slice's 99th percentile is 1 after normalisation
    per_slice = np.percentile(np.asarray(a[:, :12]).reshape(3, -1), 99, axis=1)
    np.testing.assert_allclose(per_slice, 1.0, rtol=1e-4)
    # the paper's default: kBq/ml times input_scale
    np.testing.assert_allclose(np.asarray(I.network_input(tac, 16, 0.5))[:, :12, ..., 0],
                               0.5 * np.moveaxis(np.asarray(tac), -1, 1), rtol=1e-6)


@pytest.mark.parametrize("normalization,condition", [("input", True), ("slice", False), ("none", True)])
def test_voxel_input_is_the_network_input_with_time_last(kins, normalization, condition):
    """The encoder's input (each voxel's TAC a row, the curves once per sample) holds the same values as the UNet's
    ``[B, T, H, W, C]`` input, the curves equal in every voxel."""
    kin = kins[0]
    tac = jax.random.uniform(jax.random.key(1), (2, 4, 4, FRAMES.n_frames)) * 10.0
    ref = np.asarray(I.network_input(tac, 64, 0.5, normalization, kin, condition))
    x, curves = I.voxel_input(tac, 64, 0.5, normalization, kin, condition)
    np.testing.assert_array_equal(np.asarray(x), np.moveaxis(ref[..., 0], 1, -1))
    if condition:
        np.testing.assert_array_equal(np.broadcast_to(np.asarray(curves)[:, :, None, None, :], ref[..., 1:].shape),
                                      ref[..., 1:])
    else:
        assert curves is None
