"""The pure steps: one train step of every Table 1 config, a few steps that reduce the loss with a gradient for
every channel, and the loss of a run guided by the voxel fit.

Small shapes (16 x 16 slices, 12 frames padded to 16 time steps) so the file compiles a handful of programs.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxkin
from jaxkin import network as N
from jaxkin.network.steps import batch_loss, forward
from jaxkin.nn import loss as L

from _tiny_scans import TINY, scan_kin, smooth_params

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "experiments").glob("exp*_*.py"))
QUADRA = jaxkin.FrameSchedule.quadra()


@pytest.fixture(scope="module")
def synthetic_batch():
    """Two 16 x 16 slices of noiseless TACs from smooth random parameter maps, two subjects' input functions."""
    kins = [scan_kin(0.1, 1.0), scan_kin(0.3, 1.3)]
    kin = jax.tree.map(lambda *x: jnp.stack(x), *kins)
    params = smooth_params(np.random.default_rng(1), (2, 16, 16))
    subject = np.array([0, 1], np.int32)
    tac = np.asarray(L.model_tacs(jnp.asarray(params), kin, jnp.asarray(subject)))
    mask = np.ones((2, 16, 16), np.float32)
    mask[:, :2] = 0.0
    return {"tac": tac, "mask": mask, "subject": subject}, kin


# Every Table 1 row runs one real train step at depth 1 (each compile costs ~10 s on the 2-core CPU); all 8 rows are
# also built and run abstractly at 112 x 112 by test_table1_configs_give_paper_shapes.
@pytest.mark.slow
@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_table1_configs_run_one_train_step(path, synthetic_batch):
    batch, kin = synthetic_batch
    cfg = N.load_config(path, [f"{k}={v}" for k, v in (TINY | {"depth": 1}).items()])  # depth 1: compiles fast
    graphdef, params = nnx.split(N.make_model(cfg))
    before = jax.tree.map(np.array, params)  # a host copy: the step donates (deletes) the state it is given
    opt, _ = N.make_optimizer(cfg.optim, 1)
    new, m = N.make_train_step(graphdef, opt)(N.TrainState(params, opt.init(params)), batch, kin)
    assert np.isfinite(float(m["loss"])) and float(m["loss"]) > 0
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b))), new.params, before))
    assert max(moved) > 0


@pytest.mark.slow
def test_training_reduces_loss_and_gradient_reaches_every_channel(synthetic_batch):
    batch, kin = synthetic_batch
    cfg = N.config_from_dict(TINY | {"final_activation": "sigmoid", "input_scale": 0.05, "learning_rate": 3e-3})
    graphdef, params = nnx.split(N.make_model(cfg))

    def loss(p):
        pred = N.forward(graphdef, p, batch["tac"])
        return L.masked_mse(batch["tac"], L.model_tacs(pred, kin, batch["subject"]), batch["mask"])

    grads = jax.jit(jax.grad(loss))(params)
    for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
        per_channel = np.abs(np.asarray(g)).reshape(-1, g.shape[-1]).sum(axis=0)
        assert np.all(per_channel > 0), f"no gradient for some output channels of {jax.tree_util.keystr(path)}"
    opt, _ = N.make_optimizer(cfg.optim, 1)
    step = N.make_train_step(graphdef, opt)
    state, losses = N.TrainState(params, opt.init(params)), []
    for _ in range(20):
        state, m = step(state, batch, kin)
        losses.append(m["loss"])
    losses = [float(x) for x in losses]
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.slow
def test_the_guided_loss_is_the_self_supervised_loss_plus_the_distance():
    cfg = N.config_from_dict({"depth": 2, "root_features": 2, "time_steps": 64, "final_activation": "sigmoid",
                              "init_params": (0.1, 0.5, 0.05, 0.05), "loss_scale": "voxel"})
    graphdef, params = N.model_graph(cfg.model), nnx.split(N.make_model(cfg))[1]
    kin = jaxkin.prepare(jaxkin.feng_input(QUADRA.end[-1], delay=0.1), QUADRA)
    stacked = jax.tree.map(lambda x: x[None], kin)
    rng = np.random.default_rng(2)
    batch = {"tac": rng.gamma(2.0, 5.0, (2, 8, 8, QUADRA.n_frames)).astype(np.float32),
             "mask": np.ones((2, 8, 8), np.float32), "subject": np.zeros(2, np.int32)}
    loss = jax.jit(lambda p, b: batch_loss(graphdef, p, b, stacked, scale="voxel"))  # as the train step: jitted
    plain = float(loss(params, batch))
    target = rng.uniform(0.01, 0.5, (2, 8, 8, 4)).astype(np.float32)
    guided = batch | {"target": target, "guidance": np.array([0.3, 0.3], np.float32)}
    predicted = jax.jit(lambda p: forward(graphdef, p, batch["tac"],
                                          jax.tree.map(lambda x: x[batch["subject"]], stacked)))(params)
    distance = float(L.guidance_loss(predicted, target, batch["mask"], guided["guidance"]))
    assert distance > 0
    assert float(loss(params, guided)) == pytest.approx(plain + distance, rel=1e-5)
    off = guided | {"guidance": np.zeros(2, np.float32)}
    assert float(loss(params, off)) == pytest.approx(plain, rel=1e-6)


@pytest.mark.slow
def test_encoder_unet_train_step_has_finite_gradients_and_learns(synthetic_batch):
    """The time-first network through the guided, weighted loss of a train step: a few steps lower the loss, and
    then (the last layer no longer zero, as ``init_params`` starts it) finite gradients reach every layer."""
    batch, kin = synthetic_batch
    cfg = N.config_from_dict(TINY | {"architecture": "encoder_unet", "root_features": 4, "temporal_features": 8,
                                     "condition_on_input": True, "input_normalization": "input",
                                     "final_activation": "sigmoid", "init_params": (0.1, 0.5, 0.05, 0.05),
                                     "loss_scale": "counts", "loss_frames": "duration", "lm_guidance": 1.0,
                                     "grad_clip_norm": 1.0, "learning_rate": 3e-3})
    graphdef, params = nnx.split(N.make_model(cfg))
    target = smooth_params(np.random.default_rng(4), (2, 16, 16))
    guided = batch | {"target": target, "guidance": np.ones(2, np.float32)}
    opt, _ = N.make_optimizer(cfg.optim, 1)
    step = N.make_train_step(graphdef, opt, frames="duration", scale="counts")
    state, losses = N.TrainState(params, opt.init(params)), []
    for _ in range(10):
        state, m = step(state, guided, kin)
        losses.append(float(m["loss"]))
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    grads = jax.jit(jax.grad(lambda p: batch_loss(graphdef, p, guided, kin, "duration", "counts")))(state.params)
    for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
        assert np.all(np.isfinite(np.asarray(g))) and np.any(np.asarray(g) != 0), jax.tree_util.keystr(path)
