"""benchmarks/torch_reference.py, the PyTorch twin of the exp4_1 network (skipped without PyTorch): its parameter
count, its forward pass with jaxkin's weights copied in, and its kinetic-model TACs, against jaxkin's."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import torch_reference as T
from _tiny_scans import scan_kin

from jaxkin.nn import UNet, UNetConfig
from jaxkin.nn.loss import model_tacs


def test_exp4_1_has_the_parameters_of_jaxkins_network():
    assert sum(p.numel() for p in T.torch_network(UNetConfig()).parameters()) == 860_904


def test_forward_with_copied_weights_equals_jaxkins():
    cfg = UNetConfig(depth=2, root_features=4, time_steps=8)
    jmodel = UNet(cfg, rngs=nnx.Rngs(3))
    tmodel = T.torch_network(cfg)
    T.copy_jaxkin_weights(tmodel, jmodel)
    x = np.random.default_rng(0).gamma(2.0, 1.0, (2, 8, 8, 8, 1)).astype(np.float32)  # [B, T, H, W, 1]
    graphdef, state = nnx.split(jmodel)
    expected = np.asarray(jax.jit(lambda s, x: nnx.merge(graphdef, s).logits(x))(state, x))  # [B, H, W, P]
    with torch.no_grad():
        got = tmodel.logits(torch.from_numpy(x).permute(0, 4, 1, 2, 3))[:, :, 0].permute(0, 2, 3, 1).numpy()
    assert np.max(np.abs(got - expected)) <= 1e-4 * max(np.max(np.abs(expected)), 1.0)


def test_model_tacs_equal_jaxkins():
    one = scan_kin()
    other = dataclasses.replace(one, table=1.6 * one.table, slope=1.6 * one.slope,  # the input times 1.6
                                blood_frame_means=1.6 * one.blood_frame_means)
    kin = jax.tree.map(lambda *x: jnp.stack(x), one, other)  # two subjects
    rng = np.random.default_rng(1)
    lo, hi = np.array([0.05, 0.2, 0.01, 0.0]), np.array([1.2, 2.0, 0.3, 0.2])
    params = (lo + (hi - lo) * rng.uniform(size=(2, 3, 3, 4))).astype(np.float32)
    subject = np.array([1, 0])
    expected = np.asarray(jax.jit(model_tacs)(params, kin, subject))
    got = T.model_tacs(torch.from_numpy(params), T.torch_kinetic_input(jax.device_get(kin)), torch.from_numpy(subject))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5 * np.max(expected))
