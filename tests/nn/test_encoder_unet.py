"""The per-voxel temporal encoder + 2D UNet: shapes, outputs within the bounds, the head initialised to given
parameters, the input function's once-per-sample embedding against broadcasting it as channels, and the FLOP count
against XLA's own cost analysis."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxkin.nn import count_parameters
from jaxkin.nn import encoder_unet as E
from jaxkin.nn.unet import UNetConfig

INIT = (0.1, 0.5, 0.05, 0.05)
CFG = UNetConfig(architecture="encoder_unet", depth=2, root_features=4, temporal_features=6, time_steps=12,
                 condition_on_input=True, final_activation="sigmoid", lower=(0.001, 0.001, 0.0, 0.0),
                 upper=(3.0, 6.0, 1.0, 1.0))


def _inputs(batch=2, size=8, seed=0):
    kx, kc = jax.random.split(jax.random.key(seed))
    return jax.random.uniform(kx, (batch, size, size, 12)) * 3.0, jax.random.uniform(kc, (batch, 12, 2)) * 5.0


def test_shapes_and_outputs_within_the_bounds():
    model = E.EncoderUNet(CFG, rngs=nnx.Rngs(0))
    x, curves = _inputs()
    graphdef, state = nnx.split(model)
    out = np.asarray(jax.jit(lambda s, x, c: nnx.merge(graphdef, s)(x, c))(state, x, curves))
    assert out.shape == (2, 8, 8, 4) and np.all(np.isfinite(out))
    assert np.all(out >= np.array(CFG.lower)) and np.all(out <= np.array(CFG.upper))
    assert float(np.std(out[..., 0])) > 0  # the voxels differ: the spatial and per-voxel paths reach the head
    with pytest.raises(ValueError, match="multiples of 4"):
        model(x[:, :6, :6], curves)
    with pytest.raises(ValueError, match="12 time steps"):
        model(x[..., :10], curves)
    with pytest.raises(ValueError, match="curves"):
        model(x)


def test_untrained_network_predicts_init_params_everywhere():
    model = E.EncoderUNet(dataclasses.replace(CFG, init_params=INIT), rngs=nnx.Rngs(1))
    out = np.asarray(model(*_inputs(seed=3)))
    np.testing.assert_allclose(out, np.broadcast_to(INIT, out.shape), rtol=1e-5)


def test_input_function_embedding_equals_broadcast_channels():
    """The curves' part of the first layer, computed once per sample and added to every voxel, equals the plain
    form: a dense layer (a 1x1 conv) over each voxel's TAC concatenated with the curves broadcast to it."""
    model = E.EncoderUNet(CFG, rngs=nnx.Rngs(2))
    x, curves = _inputs()
    kernel, bias = model.encoder.frames.arrays()
    flat = jnp.broadcast_to(curves.reshape(2, 1, 1, -1), (*x.shape[:3], curves[0].size))  # (t, c) per voxel
    plain = jnp.concatenate([x, flat], axis=-1) @ kernel + bias
    np.testing.assert_allclose(np.asarray(model.encoder.first_layer(x, curves)), np.asarray(plain), rtol=1e-5,
                               atol=1e-5)


def test_unconditioned_encoder_reads_the_frames_only():
    cfg = dataclasses.replace(CFG, condition_on_input=False)
    model = E.EncoderUNet(cfg, rngs=nnx.Rngs(0))
    assert model.encoder.frames.kernel.shape == (12, 12)
    assert model(_inputs()[0]).shape == (2, 8, 8, 4)
    assert count_parameters(model) < count_parameters(E.EncoderUNet(CFG, rngs=nnx.Rngs(0)))


def test_flop_count_matches_xlas_cost_analysis():
    """:func:`forward_flops` against XLA's count of the lowered forward (which adds the elementwise operations and
    leaves out the taps on the zero padding: a few percent at 64 x 64)."""
    cfg = dataclasses.replace(CFG, root_features=8, temporal_features=8)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: E.EncoderUNet(cfg, rngs=nnx.Rngs(0))))
    lowered = jax.jit(lambda s, x, c: nnx.merge(graphdef, s).logits(x, c)).lower(
        state, jax.ShapeDtypeStruct((1, 64, 64, 12), jnp.float32), jax.ShapeDtypeStruct((1, 12, 2), jnp.float32))
    xla = lowered.cost_analysis()["flops"]
    assert abs(xla / E.forward_flops(cfg, 64, 64) - 1) < 0.05


def test_recommended_network_costs_under_2_gflop_per_slice():
    cfg = UNetConfig(architecture="encoder_unet", depth=3, root_features=16, temporal_features=64, time_steps=62,
                     condition_on_input=True)
    assert 1.6e9 < E.forward_flops(cfg, 112, 112) < 1.7e9


def test_the_paper_architecture_is_refused():
    with pytest.raises(ValueError, match="encoder_unet"):
        E.EncoderUNet(UNetConfig(), rngs=nnx.Rngs(0))
