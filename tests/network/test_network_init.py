"""The quickstart's training options: head-bias initialisation (``init_params``), per-slice input normalisation
(``input_normalization``), their validation, and the organ-mean rank correlation of the training report.

Whether a short run learns the organ contrast is not tested here: on a tiny phantom that a test can afford, the
paper's default (multi-clamp, random init) reached a similar rank correlation within 40 steps, so such a test would
not tell the options apart; the quickstart's report.md states the measured organ means instead.
Small shapes (16 x 16 slices, 16 time steps, depth 2) so the file compiles a few programs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxkin import network as N
from jaxkin.errors import InputError
from jaxkin.nn import UNet, UNetConfig
from jaxkin.nn.activations import final_activation, inverse_activation
from jaxkin.nn.unet import network_input

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
        N.config_from_dict(values)


def test_table1_configs_keep_the_papers_behaviour():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[2] / "experiments").glob("exp*_*.py")):
        cfg = N.load_config(path).model
        assert cfg.init_params == () and cfg.input_normalization == "none" and cfg.input_scale == 1.0, path


def test_organ_rank_correlation_leaves_blood_out():
    def row(organ, ki_pred, ki_true, vb=0.05):
        return {"organ": organ, "predicted": {"Ki": ki_pred}, "true": {"Ki": ki_true, "vB": vb}}

    rows = [row("body", 0.01, 0.003), row("liver", 0.02, 0.004), row("myocardium", 0.03, 0.04),
            row("aorta", 0.5, 0.0, vb=1.0)]
    assert N.organ_rank_correlation(rows, "Ki") == pytest.approx(1.0)  # with the aorta: -0.2
    rows[0]["predicted"]["Ki"] = 0.05
    assert N.organ_rank_correlation(rows, "Ki") == pytest.approx(-0.5)
    assert np.isnan(N.organ_rank_correlation(rows[:2], "Ki"))
