"""The network's view of the input function (``condition_on_input``, ``input_normalization="input"``) and the
weights of the self-supervised loss (``loss_frames``, ``loss_scale``), against hand computations.

Small shapes: 8 x 8 slices, the 62 Quadra frames, two scans with Feng inputs of different shape and dose.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxkin
from jaxkin import network as N
from jaxkin.errors import InputError
from jaxkin.nn import loss as L
from jaxkin.nn import unet as U

FRAMES = jaxkin.FrameSchedule.quadra()


def scan_input(delay: float, dose: float):
    return jaxkin.prepare(jaxkin.feng_input(FRAMES.end[-1], delay=delay).scaled(dose), FRAMES)


@pytest.fixture(scope="module")
def kins():
    """Two scans stacked (leaves [2, ...]), and the same two with 3x and 0.5x the dose."""
    base = [scan_input(0.1, 1.0), scan_input(0.3, 1.6)]
    dosed = [scan_input(0.1, 3.0), scan_input(0.3, 0.8)]
    stack = [jax.tree.map(lambda *x: jnp.stack(x), *k) for k in (base, dosed)]
    return stack[0], stack[1], np.array([3.0, 0.5])


def test_input_level_is_the_time_weighted_blood_mean(kins):
    kin, _, _ = kins
    blood = np.asarray(kin.blood_mean(), np.float64)
    expected = (blood * FRAMES.duration).sum(axis=1) / FRAMES.duration.sum()
    np.testing.assert_allclose(np.asarray(U.input_level(kin)), expected, rtol=1e-6)


def test_input_normalisation_and_conditioning_see_tissue_relative_to_blood(kins):
    """The network input is invariant to the dose (TACs and input scaled together), and its two extra channels are
    the blood curve and the running integral over the scan length, in units of the scan's blood level."""
    kin, dosed, factor = kins
    tac = jax.random.uniform(jax.random.key(0), (2, 8, 8, FRAMES.n_frames)) * 10.0
    x = U.network_input(tac, 64, normalization="input", kin=kin, condition=True)
    y = U.network_input(tac * factor[:, None, None, None], 64, normalization="input", kin=dosed, condition=True)
    assert x.shape == (2, 64, 8, 8, 3)
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)
    level = np.asarray(U.input_level(kin))
    np.testing.assert_allclose(np.asarray(x[:, :62, 3, 5, 0]), np.asarray(tac[:, 3, 5, :]) / level[:, None], rtol=1e-5)
    blood = np.asarray(kin.blood_mean()) / level[:, None]
    integral = np.asarray(kin.integral_mean()) / FRAMES.end[-1] / level[:, None]
    np.testing.assert_allclose(np.asarray(x[:, :62, 2, 7, 1]), blood, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(x[:, :62, 0, 0, 2]), integral, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(x[:, 62:, 0, 0, 2]), integral[:, -1:].repeat(2, axis=1), rtol=1e-5)
    with pytest.raises(ValueError, match="input function"):
        U.network_input(tac, 64, normalization="input")


def test_the_conditioned_network_takes_three_channels():
    cfg = U.UNetConfig(depth=2, root_features=2, time_steps=64, condition_on_input=True)
    plain = U.UNetConfig(depth=2, root_features=2, time_steps=64)
    assert cfg.channels == 3 and cfg.needs_input_function and not plain.needs_input_function
    n = U.count_parameters(U.UNet(cfg, rngs=nnx.Rngs(0))) - U.count_parameters(U.UNet(plain, rngs=nnx.Rngs(0)))
    # 2 more input channels (3x3 kernels, 2 features) in the first encoder conv and in the last decoder block's
    # first conv, whose skip carries the network's input
    assert n == 2 * (2 * 2 * 9)


def test_loss_weights_against_hand_computation(kins):
    kin, _, _ = kins
    rng = np.random.default_rng(1)
    tac = rng.gamma(2.0, 3.0, (2, 4, 4, FRAMES.n_frames)).astype(np.float32)
    model = (tac * rng.uniform(0.8, 1.2, tac.shape)).astype(np.float32)
    mask = (rng.uniform(size=(2, 4, 4)) > 0.3).astype(np.float32)
    err = (tac.astype(np.float64) - model) ** 2
    n = mask.sum() * FRAMES.n_frames
    assert L.loss_weights(kin, tac) is None
    np.testing.assert_allclose(float(L.masked_mse(tac, model, mask)), (mask[..., None] * err).sum() / n, rtol=1e-5)
    d = FRAMES.duration / FRAMES.duration.mean()
    got = L.masked_mse(tac, model, mask, L.loss_weights(kin, tac, frames="duration"))
    np.testing.assert_allclose(float(got), (mask[..., None] * d * err).sum() / n, rtol=1e-5)
    level = np.asarray(U.input_level(kin), np.float64)[:, None, None, None]
    got = L.masked_mse(tac, model, mask, L.loss_weights(kin, tac, scale="scan"))
    np.testing.assert_allclose(float(got), (mask[..., None] * err / level**2).sum() / n, rtol=1e-5)
    voxel = tac.astype(np.float64).mean(axis=-1, keepdims=True)
    got = L.masked_mse(tac, model, mask, L.loss_weights(kin, tac, scale="voxel"))
    np.testing.assert_allclose(float(got), (mask[..., None] * err / voxel**2).sum() / n, rtol=1e-5)
    got = L.masked_mse(tac, model, mask, L.loss_weights(kin, tac, scale="counts"))
    np.testing.assert_allclose(float(got), (mask[..., None] * err / (voxel * level)).sum() / n, rtol=1e-5)


def test_relative_errors_weigh_a_hot_voxel_like_a_cold_one(kins):
    kin, _, _ = kins
    rng = np.random.default_rng(2)
    tac = rng.gamma(2.0, 3.0, (2, 4, 4, FRAMES.n_frames)).astype(np.float32)
    model = tac * 1.1
    mask = np.ones((2, 4, 4), np.float32)
    hot = np.ones((2, 4, 4, 1), np.float32)
    hot[0, 1, 2] = 50.0  # one voxel 50x brighter, its model too: the same relative error
    w = L.loss_weights(kin, tac * hot, scale="voxel")
    a = float(L.masked_mse(tac * hot, model * hot, mask, w))
    b = float(L.masked_mse(tac, model, mask, L.loss_weights(kin, tac, scale="voxel")))
    assert a == pytest.approx(b, rel=1e-5)
    assert float(L.masked_mse(tac * hot, model * hot, mask)) > 10 * float(L.masked_mse(tac, model, mask))


def test_counts_scale_weighs_counting_noise_alike_in_hot_and_cold_voxels(kins):
    # counting noise: the variance of a voxel's frame grows with its activity; with the same standard normal draws
    # a voxel 50x brighter has 50x the squared error, which "counts" weighs alike and "voxel" 50x less
    kin, _, _ = kins
    rng = np.random.default_rng(3)
    clean = rng.gamma(4.0, 2.0, (2, 4, 4, FRAMES.n_frames)).astype(np.float32)
    z = rng.standard_normal(clean.shape).astype(np.float32)
    bright = np.ones((2, 4, 4, 1), np.float32)
    bright[:, :2] = 50.0
    tac = clean * bright
    model = tac + 0.3 * np.sqrt(tac) * z
    mask = np.zeros((2, 4, 4), np.float32)
    losses = {}
    for scale in ("counts", "voxel"):
        w = L.loss_weights(kin, tac, scale=scale)
        hot, cold = mask.copy(), mask.copy()
        hot[:, :2], cold[:, 2:] = 1.0, 1.0
        losses[scale] = (float(L.masked_mse(tac, model, hot, w)), float(L.masked_mse(tac, model, cold, w)))
    # the hot half and the cold half differ in their clean TACs and draws, so alike is within sampling error
    assert losses["counts"][0] == pytest.approx(losses["counts"][1], rel=0.3)
    assert losses["voxel"][1] > 20 * losses["voxel"][0]


@pytest.mark.parametrize("values,message", [
    ({"loss_frames": "poisson"}, "loss_frames must be one of"),
    ({"loss_scale": "organ"}, "loss_scale must be one of"),
    ({"grad_clip_norm": -1.0}, "grad_clip_norm must be 0 or positive"),
    ({"condition_on_input": "yes"}, "condition_on_input must be bool"),
    ({"input_normalization": "blood"}, "input_normalization must be one of"),
])
def test_the_options_are_validated(values, message):
    with pytest.raises(InputError, match=message):
        N.config_from_dict(values)


def test_a_network_fed_the_input_function_refuses_a_volume_without_it(kins):
    cfg = N.config_from_dict({"depth": 2, "root_features": 2, "time_steps": 64, "condition_on_input": True,
                              "input_normalization": "input", "predict_batch_size": 2})
    predictor = N.Predictor(N.model_graph(cfg.model), nnx.split(N.make_model(cfg))[1], cfg, FRAMES.n_frames)
    volume = np.random.default_rng(3).gamma(2.0, 5.0, (8, 8, 3, FRAMES.n_frames)).astype(np.float32)
    with pytest.raises(InputError, match="input function"):
        predictor.predict_volume(volume)
    kin = jax.tree.map(lambda leaf: leaf[0], kins[0])
    maps, metrics = predictor.predict_volume(volume, kin=kin)
    assert maps.shape == (8, 8, 3, 4) and np.all(np.isfinite(maps)) and metrics["voxels"] > 0
