"""The UNet: the original networks' parameter counts and weight sharing, the paper's shapes for every Table 1
config (``jax.eval_shape``, no compute), prediction's convolutions against training's, the head initialised to
given parameters, and the extra input channels of a network conditioned on the input function."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxkin import network as N
from jaxkin.nn import UNet, UNetConfig, count_parameters
from jaxkin.nn import unet as U

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "experiments").glob("exp*_*.py"))
INIT = (0.1, 0.5, 0.05, 0.05)


@pytest.mark.parametrize("conv,expected", [("space_time", 860_904), ("3d", 2_133_928)])
def test_parameter_counts_match_the_original_networks(conv, expected):
    model = nnx.eval_shape(lambda: UNet(UNetConfig(conv=conv), rngs=nnx.Rngs(0)))
    n = count_parameters(model)
    assert n == expected  # the original PyTorch nets: 860,904 and 2,133,928


def test_temporal_conv_is_shared_within_a_block():
    model = nnx.eval_shape(lambda: UNet(UNetConfig(), rngs=nnx.Rngs(0)))
    block = model.encoders[0]
    assert block.time.kernel.shape == (3, 1, 1, 8, 8) and not hasattr(block, "time2")


@pytest.mark.slow
def test_shift_sum_network_equals_the_xla_one():
    """Prediction's formulation (shifted sums for the smallest convs) against training's, whole network."""
    cfg = U.UNetConfig(conv="space_time", depth=2, root_features=8, time_steps=16)
    model = U.UNet(cfg, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(5), (2, 16, 8, 8, 1))
    graphdef, state = nnx.split(model)
    logits = jax.jit(lambda s, x, convs: nnx.merge(graphdef, s).logits(x, convs=convs), static_argnums=2)  # as used
    a, b = logits(state, x, U.XLA_CONVS), logits(state, x, U.SHIFT_SUM_CONVS)
    assert float(jnp.max(jnp.abs(a - b))) <= 1e-5 * float(jnp.max(jnp.abs(a)))
    assert not np.array_equal(np.asarray(a), np.asarray(b))  # a different computation, not the same one


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_table1_configs_give_paper_shapes(path):
    cfg = N.load_config(path)
    out = jax.eval_shape(lambda x: N.make_model(cfg)(x), jax.ShapeDtypeStruct((5, 64, 112, 112, 1), jnp.float32))
    assert out.shape == (5, 112, 112, 4)


def test_quickstart_shapes():
    cfg = N.resolve_time_steps(N.load_config(ROOT / "experiments" / "quickstart.py"), 62)  # time_steps 0: auto
    x = jax.ShapeDtypeStruct((5, 64, cfg.data.crop, cfg.data.crop, cfg.model.channels), jnp.float32)  # TAC + input
    assert cfg.data.crop == 32 and jax.eval_shape(lambda x: N.make_model(cfg)(x), x).shape == (5, 32, 32, 4)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["sigmoid", "multi_clamp"])
def test_init_params_are_the_untrained_networks_prediction(activation):
    cfg = UNetConfig(depth=2, time_steps=16, final_activation=activation, init_params=INIT)
    model = UNet(cfg, rngs=nnx.Rngs(3))
    x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 16, 1)) * 20.0
    out = np.asarray(model(x))
    np.testing.assert_allclose(out, np.broadcast_to(INIT, out.shape), rtol=1e-5, atol=1e-7)
    # without init_params the prediction depends on the input (random head)
    plain = np.asarray(UNet(UNetConfig(depth=2, time_steps=16, final_activation=activation), rngs=nnx.Rngs(3))(x))
    assert np.ptp(plain[..., 1]) > 0


def test_the_conditioned_network_takes_three_channels():
    cfg = U.UNetConfig(depth=2, root_features=2, time_steps=64, condition_on_input=True)
    plain = U.UNetConfig(depth=2, root_features=2, time_steps=64)
    assert cfg.channels == 3 and cfg.needs_input_function and not plain.needs_input_function
    n = U.count_parameters(U.UNet(cfg, rngs=nnx.Rngs(0))) - U.count_parameters(U.UNet(plain, rngs=nnx.Rngs(0)))
    # 2 more input channels (3x3 kernels, 2 features) in the first encoder conv and in the last decoder block's
    # first conv, whose skip carries the network's input
    assert n == 2 * (2 * 2 * 9)
