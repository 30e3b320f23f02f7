"""Training guided by the voxel fit (``lm_guidance``): the distance of the network's parameters from the LM fit's
maps of the training slices, added to the self-supervised loss.

References: the distance in NumPy, the generating parameters of noise-free TACs (for the fit's targets), and the
plain self-supervised loss computed without the guidance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxkin
from jaxkin import kinetics
from jaxkin import network as N
from jaxkin.network.data import lm_targets
from jaxkin.network.steps import batch_loss, forward
from jaxkin.network.train import guidance_weight
from jaxkin.nn import loss as L

FRAMES = jaxkin.FrameSchedule.quadra()


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


def test_guidance_weight_follows_the_epochs():
    every = N.config_from_dict({"lm_guidance": 0.5})
    first = N.config_from_dict({"lm_guidance": 0.5, "lm_guidance_epochs": 2})
    assert [guidance_weight(every, e) for e in range(4)] == [0.5] * 4
    assert [guidance_weight(first, e) for e in range(4)] == [0.5, 0.5, 0.0, 0.0]
    assert guidance_weight(N.config_from_dict({}), 0) == 0.0


def test_the_guided_loss_is_the_self_supervised_loss_plus_the_distance():
    cfg = N.config_from_dict({"depth": 2, "root_features": 2, "time_steps": 64, "final_activation": "sigmoid",
                              "init_params": (0.1, 0.5, 0.05, 0.05), "loss_scale": "voxel"})
    graphdef, params = N.model_graph(cfg.model), nnx.split(N.make_model(cfg))[1]
    kin = jaxkin.prepare(jaxkin.feng_input(FRAMES.end[-1], delay=0.1), FRAMES)
    stacked = jax.tree.map(lambda x: x[None], kin)
    rng = np.random.default_rng(2)
    batch = {"tac": rng.gamma(2.0, 5.0, (2, 8, 8, FRAMES.n_frames)).astype(np.float32),
             "mask": np.ones((2, 8, 8), np.float32), "subject": np.zeros(2, np.int32)}
    plain = float(batch_loss(graphdef, params, batch, stacked, scale="voxel"))
    target = rng.uniform(0.01, 0.5, (2, 8, 8, 4)).astype(np.float32)
    guided = batch | {"target": target, "guidance": np.array([0.3, 0.3], np.float32)}
    predicted = forward(graphdef, params, batch["tac"], jax.tree.map(lambda x: x[batch["subject"]], stacked))
    distance = float(L.guidance_loss(predicted, target, batch["mask"], guided["guidance"]))
    assert distance > 0
    assert float(batch_loss(graphdef, params, guided, stacked, scale="voxel")) == pytest.approx(plain + distance,
                                                                                                 rel=1e-5)
    off = guided | {"guidance": np.zeros(2, np.float32)}
    assert float(batch_loss(graphdef, params, off, stacked, scale="voxel")) == pytest.approx(plain, rel=1e-6)


@pytest.mark.parametrize("key", ["lm_guidance", "lm_guidance_epochs"])
def test_negative_guidance_settings_are_refused(key):
    with pytest.raises(jaxkin.errors.InputError, match=f"{key} must be 0 or positive"):
        N.config_from_dict({key: -1})
