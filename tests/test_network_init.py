"""The quickstart's training options: head-bias initialisation (``init_params``), per-slice input normalisation
(``input_normalization``), their validation, and that a short run learns the organ contrast of a tiny phantom.

Small shapes (16 x 16 slices, 12 frames padded to 16 time steps, depth 2) so the file compiles a few programs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.stats import spearmanr

import jaxkin
from jaxkin import train as T
from jaxkin.errors import InputError
from jaxkin.nn import UNet, UNetConfig
from jaxkin.nn import loss as L
from jaxkin.nn.activations import final_activation, inverse_activation
from jaxkin.nn.unet import network_input
from jaxkin.data.phantom import ORGAN_PARAMETERS

FRAMES = jaxkin.FrameSchedule.from_durations([10, 10, 20, 20, 30, 60, 60, 120, 180, 300, 300, 600])
TINY = {"depth": 2, "time_steps": 16, "crop": 16, "batch_size": 4, "slices_per_subject": 4, "mask_threshold": 0.2}
INIT = (0.1, 0.5, 0.05, 0.05)


@pytest.mark.parametrize("activation", ["sigmoid", "multi_clamp", "abs", "clamp"])
def test_inverse_activation_round_trips(activation):
    lo, hi = (0.01, 0.01, 0.01, 0.0), (2.0, 3.0, 1.0, 1.0)
    logits = inverse_activation(activation, INIT, lo, hi)
    np.testing.assert_allclose(final_activation(activation)(logits, lo, hi), INIT, rtol=1e-6)


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


def test_slice_normalisation_is_invariant_to_a_constant_factor():
    tac = jax.random.uniform(jax.random.key(1), (3, 16, 16, 12)) * jnp.array([1.0, 30.0, 0.2])[:, None, None, None]
    a = network_input(tac, 16, normalization="slice")
    b = network_input(7.5 * tac, 16, normalization="slice")
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # each slice's 99th percentile is 1 after normalisation
    per_slice = np.percentile(np.asarray(a[:, :12]).reshape(3, -1), 99, axis=1)
    np.testing.assert_allclose(per_slice, 1.0, rtol=1e-4)
    # the paper's default: kBq/ml times input_scale
    np.testing.assert_allclose(np.asarray(network_input(tac, 16, 0.5))[:, :12, ..., 0],
                               0.5 * np.moveaxis(np.asarray(tac), -1, 1), rtol=1e-6)


@pytest.mark.parametrize("values,message", [
    ({"init_params": (0.1, 0.5, 0.05)}, "init_params"),
    ({"init_params": (0.1, 0.5, 0.05, 1.0)}, "init_params"),  # vB on its upper bound
    ({"init_params": "0.1"}, "init_params must be tuple"),
    ({"input_normalization": "subject"}, "input_normalization must be one of"),
    ({"input_normalization": 1}, "input_normalization must be str"),
])
def test_new_options_are_validated(values, message):
    with pytest.raises(InputError, match=message):
        T.config_from_dict(values)


def test_table1_configs_keep_the_papers_behaviour():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "experiments").glob("exp*_*.py")):
        cfg = T.load_config(path)
        assert cfg.init_params == () and cfg.input_normalization == "none" and cfg.input_scale == 1.0, path
