"""The CPU layouts of the UNet's convolutions against XLA's 3D convolutions, the shifted-sum forward against the conv,
and the fused head against the head conv then the time-collapsing conv."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkin.nn import _convs as C


CONV_CASES = [
    ((1, 3, 3, 3, 5), lambda x, k, b: C.spatial_conv(x, k, b), (1, 1, 1)),
    ((1, 3, 3, 3, 5), lambda x, k, b: C.spatial_conv(x, k, b, up=True), (1, 2, 2)),
    ((3, 1, 1, 3, 5), lambda x, k, b: C.temporal_conv(x, k, b), (1, 1, 1)),
    ((3, 1, 1, 3, 5), lambda x, k, b: C.temporal_conv(x, k, b, up=True), (2, 1, 1)),
    ((3, 3, 3, 3, 5), lambda x, k, b: C.full_conv(x, k, b), (1, 1, 1)),
    ((3, 3, 3, 3, 5), lambda x, k, b: C.full_conv(x, k, b, up_time=True, up_space=True), (2, 2, 2)),
    ((3, 3, 3, 3, 5), lambda x, k, b: C.full_conv(x, k, b, up_space=True), (1, 2, 2)),
]


CONV_CASES += [  # few taps x input channels: shifted sums in the forward (C._SHIFT_SUM_MAX_TERMS)
    ((1, 3, 3, 1, 5), lambda x, k, b: C.spatial_conv(x, k, b, shift_sum=True), (1, 1, 1)),
    ((3, 1, 1, 8, 5), lambda x, k, b: C.temporal_conv(x, k, b, shift_sum=True), (1, 1, 1)),
    ((3, 1, 1, 8, 5), lambda x, k, b: C.temporal_conv(x, k, b), (1, 1, 1)),
]


@pytest.mark.slow
@pytest.mark.parametrize("shape,fn,strides", CONV_CASES)
def test_fast_layout_convolutions_equal_xla_3d_convolutions(shape, fn, strides):
    key = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(key[0], (2, 6, 8, 4, shape[3]))
    k = jax.random.normal(key[1], shape)
    b = jax.random.normal(key[2], (5,))
    ours, ref = fn(x, k, b), C.conv3d_reference(x, k, b, strides=strides)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=2e-5)


@pytest.mark.slow
@pytest.mark.parametrize("shape,fn", [((1, 3, 3, 1, 5), lambda x, k, b, s: C.spatial_conv(x, k, b, shift_sum=s)),
                                        ((3, 1, 1, 8, 5), lambda x, k, b, s: C.temporal_conv(x, k, b, shift_sum=s))])
def test_shift_sum_convolutions_equal_the_conv_forward_and_keep_its_gradients(shape, fn):
    """The shifted-sum forward equals XLA's conv to float rounding; its VJP is the conv's (custom VJP)."""
    key = jax.random.split(jax.random.key(3), 4)
    x = jax.random.normal(key[0], (2, 6, 8, 4, shape[3]))
    k, b = jax.random.normal(key[1], shape), jax.random.normal(key[2], (5,))
    g = jax.random.normal(key[3], (2, 6, 8, 4, 5))
    (y_fast, vjp_fast), (y_conv, vjp_conv) = (jax.vjp(lambda x, k, b: fn(x, k, b, s), x, k, b) for s in (True, False))
    np.testing.assert_allclose(y_fast, y_conv, rtol=1e-5, atol=1e-5)
    for a, r in zip(vjp_fast(g), vjp_conv(g)):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("shape,fn,strides", [CONV_CASES[1], CONV_CASES[3]])
def test_transposed_convolutions_have_the_gradients_of_xla_3d_convolutions(shape, fn, strides):
    """The (2+1)D transposed convs (one conv per output phase) differentiate like the dilated 3D conv."""
    key = jax.random.split(jax.random.key(4), 4)
    x = jax.random.normal(key[0], (2, 3, 4, 4, 3))
    k, b = jax.random.normal(key[1], shape), jax.random.normal(key[2], (5,))
    y, vjp = jax.vjp(fn, x, k, b)
    _, vjp_ref = jax.vjp(lambda x, k, b: C.conv3d_reference(x, k, b, strides=strides), x, k, b)
    g = jax.random.normal(key[3], y.shape)
    for a, r in zip(vjp(g), vjp_ref(g)):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_head_with_time_collapse_equals_the_3d_conv_then_the_collapsing_conv():
    key = jax.random.split(jax.random.key(1), 5)
    x = jax.random.normal(key[0], (2, 6, 8, 4, 3))
    k, b = jax.random.normal(key[1], (3, 3, 3, 3, 4)), jax.random.normal(key[2], (4,))
    kc, bc = jax.random.normal(key[3], (6, 1, 1, 4, 5)), jax.random.normal(key[4], (5,))
    head = C.conv3d_reference(x, k, b)  # [B, T, H, W, 4]
    ref = jax.lax.conv_general_dilated(head, kc, (1, 1, 1), "VALID", dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
    ours = C.head_collapse(x, k, b, kc, bc)
    assert ours.shape == (2, 8, 4, 5)
    np.testing.assert_allclose(ours, ref[:, 0] + bc, rtol=1e-5, atol=1e-4)


def test_transposed_reference_equals_scattering_definition():
    """conv3d_reference's stride-2 transposed conv against its definition: y[2i + k - 1] += w[k] x[i] (1D)."""
    x = np.random.default_rng(0).normal(size=5).astype(np.float32)
    w = np.array([0.3, -1.2, 2.0], np.float32)
    y = np.zeros(11)
    for i in range(5):
        for k in range(3):
            y[2 * i + k] += w[2 - k] * x[i]  # dilated-conv form = scatter with the flipped kernel
    y = y[1:11]  # padding 1, output padding 1 -> length 10
    ref = C.conv3d_reference(jnp.asarray(x)[None, :, None, None, None], jnp.asarray(w)[:, None, None, None, None],
                             0.0, strides=(2, 1, 1))
    np.testing.assert_allclose(np.asarray(ref).ravel(), y, rtol=1e-5, atol=1e-6)
