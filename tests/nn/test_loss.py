"""The self-supervised loss, its weights, the guidance distance and the TAC metrics, against NumPy and hand
computations (the 62 Quadra frames, two scans with Feng inputs of different shape and dose)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxkin
from jaxkin import kinetics
from jaxkin.nn import inputs as I
from jaxkin.nn import loss as L

from _tiny_scans import scan_kin, smooth_params

FRAMES = jaxkin.FrameSchedule.quadra()



def test_masked_mse_mae_cosine_against_numpy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2, 4, 5, 12)), rng.normal(size=(2, 4, 5, 12))
    mask = rng.uniform(size=(2, 4, 5)) > 0.6
    d = (a - b)[mask]
    assert np.isclose(float(L.masked_mse(jnp.asarray(a), jnp.asarray(b), mask)), np.mean(d**2), rtol=1e-5)
    # the denominator counts masked entries only: not the same as the mean over all entries
    assert not np.isclose(np.mean(d**2), np.mean((a - b) ** 2 * mask[..., None]))
    from scipy.spatial.distance import cosine

    cs = np.array([1 - cosine(x, y) for x, y in zip(a[mask], b[mask])])
    sums = {k: float(v) for k, v in L.metric_sums(jnp.asarray(a), jnp.asarray(b), mask).items()}
    assert sums["n"] == mask.sum()
    np.testing.assert_allclose(sums["cs"] / sums["n"], cs.mean(), rtol=1e-5)
    np.testing.assert_allclose(sums["mae"] / sums["n"], np.abs(d).mean(), rtol=1e-5)


@pytest.mark.slow
def test_model_tacs_use_each_samples_own_input_function():
    kins = [scan_kin(0.1, 1.0), scan_kin(0.4, 1.7)]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *kins)
    params = jnp.asarray(smooth_params(np.random.default_rng(0), (3, 4, 4)))
    subject = jnp.array([1, 0, 1])
    got = jax.jit(L.model_tacs)(params, stacked, subject)  # jitted: one program, not one per operation
    one = jax.jit(kinetics.two_tissue_irreversible)
    for i, s in enumerate([1, 0, 1]):
        np.testing.assert_allclose(got[i], one(params[i], kins[s]), rtol=1e-6)


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
    level = np.asarray(I.input_level(kin), np.float64)[:, None, None, None]
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


def test_guidance_loss_against_numpy():
    rng = np.random.default_rng(0)
    params = rng.uniform(0.0, 1.0, (2, 3, 3, 4)).astype(np.float32)
    target = rng.uniform(0.0, 1.0, (2, 3, 3, 4)).astype(np.float32)
    target[0, 0, 0, 2] = -0.01  # a fit's estimate below 0 counts as 0
    mask = (rng.uniform(size=(2, 3, 3)) > 0.3).astype(np.float32)
    weight = np.array([2.0, 0.5], np.float32)
    floor = np.array(L.GUIDANCE_FLOOR)
    d = (np.log(params + floor) - np.log(np.maximum(target, 0) + floor)) ** 2
    expected = np.sum(mask[..., None] * weight[:, None, None, None] * d) / (mask.sum() * 4)
    assert float(L.guidance_loss(params, target, mask, weight)) == pytest.approx(expected, rel=1e-5)
    assert float(L.guidance_loss(params, params, mask, weight)) == 0.0
    assert float(L.guidance_loss(params, target, mask, np.zeros(2, np.float32))) == 0.0
    # the gradient pulls each masked parameter toward its target
    grad = np.asarray(jax.grad(L.guidance_loss)(jnp.asarray(params), target, mask, weight))
    inside = np.broadcast_to(mask[..., None] > 0, params.shape) & (target > 0)
    assert np.all(np.sign(grad[inside]) == np.sign(params - target)[inside])
    assert np.all(grad[~np.broadcast_to(mask[..., None] > 0, params.shape)] == 0)


def test_tac_metrics_are_one_definition_for_host_and_jax_arrays():
    """Host arrays (the evaluation's) are computed in float64 NumPy, JAX arrays (training's, traced too) in their
    own dtype with jax.numpy: the same values, to float32 rounding; a zero TAC has cosine 0, not NaN."""
    rng = np.random.default_rng(4)
    a, b = rng.gamma(2.0, 3.0, (5, 7, 12)), rng.gamma(2.0, 3.0, (5, 7, 12))
    a[0, 0] = 0.0
    for metric in (L.voxel_mae, L.voxel_cosine):
        host = metric(a.astype(np.float32), b.astype(np.float32))
        assert isinstance(host, np.ndarray) and host.dtype == np.float64
        traced = jax.jit(metric)(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
        assert isinstance(traced, jax.Array) and traced.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(traced), host, rtol=1e-5)
    np.testing.assert_allclose(L.voxel_mae(a, b), np.abs(a - b).mean(axis=-1), rtol=1e-12)
    cs = L.voxel_cosine(a, b)
    assert cs[0, 0] == 0.0 and np.all(np.isfinite(cs))
    from jaxkin import evaluation

    assert evaluation.voxel_mae is L.voxel_mae and evaluation.voxel_cosine is L.voxel_cosine


def test_the_loss_unit_follows_its_scale():
    from jaxkin.nn.loss import LOSS_SCALES, loss_unit

    assert loss_unit("none") == "(kBq/mL)^2"  # the paper's plain MSE of activities
    assert {loss_unit(s) for s in LOSS_SCALES if s != "none"} == {"1"}  # divided by squared activities


def test_guidance_with_ki_adds_the_weighted_log_ratio_of_ki():
    rng = np.random.default_rng(5)
    params = rng.uniform(0.01, 0.8, (2, 3, 4, 4)).astype(np.float32)
    target = rng.uniform(0.01, 0.8, (2, 3, 4, 4)).astype(np.float32)
    mask = (rng.random((2, 3, 4)) < 0.7).astype(np.float32)
    weight = np.array([1.0, 0.5], np.float32)
    base = float(L.guidance_loss(params, target, mask, weight))
    with_ki = float(L.guidance_loss(params, target, mask, weight, np.array([2.0, 0.0], np.float32)))
    ki = lambda p: p[..., 0] * p[..., 2] / (p[..., 1] + p[..., 2])  # noqa: E731
    d = (np.log(ki(params) + L.GUIDANCE_FLOOR_KI) - np.log(ki(target) + L.GUIDANCE_FLOOR_KI)) ** 2
    expected = base + 2.0 * np.sum(mask[0] * d[0]) / mask.sum()
    assert with_ki == pytest.approx(expected, rel=1e-5)
