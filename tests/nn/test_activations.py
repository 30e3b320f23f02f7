"""The final activations against NumPy, their gradients, and their inverses (the head's initial bias)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkin.nn.activations import final_activation, inverse_activation

INIT = (0.1, 0.5, 0.05, 0.05)


def test_final_activations():
    lo, hi = (0.01, 0.01, 0.01, 0.0), (2.0, 3.0, 1.0, 1.0)
    z = jnp.array([[-5.0, 0.5, 7.0, 0.3], [1.0, -2.0, 0.2, 5.0]])
    np.testing.assert_allclose(final_activation("abs")(z, lo, hi), np.abs(z))
    np.testing.assert_allclose(final_activation("clamp")(z, lo, hi), np.clip(z, 0.01, 3.0))
    np.testing.assert_allclose(final_activation("multi_clamp")(z, lo, hi), np.clip(z, lo, hi))
    s = final_activation("sigmoid")(z, lo, hi)
    np.testing.assert_allclose(s, np.array(lo) + (np.array(hi) - np.array(lo)) / (1 + np.exp(-np.asarray(z))), rtol=1e-6)
    g_clamp = jax.grad(lambda z: final_activation("multi_clamp")(z, lo, hi).sum())(z)
    g_sig = jax.grad(lambda z: final_activation("sigmoid")(z, lo, hi).sum())(z)
    assert np.sum(np.asarray(g_clamp) == 0) >= 3  # out-of-range entries get no gradient from a hard clamp
    assert np.all(np.asarray(g_sig) > 0)


@pytest.mark.parametrize("activation", ["sigmoid", "multi_clamp", "abs", "clamp"])
def test_inverse_activation_round_trips(activation):
    lo, hi = (0.01, 0.01, 0.01, 0.0), (2.0, 3.0, 1.0, 1.0)
    logits = inverse_activation(activation, INIT, lo, hi)
    np.testing.assert_allclose(final_activation(activation)(logits, lo, hi), INIT, rtol=1e-6)
