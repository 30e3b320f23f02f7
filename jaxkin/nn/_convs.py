"""The UNet's convolutions on channels-last activations ``[B, T, H, W, C]`` with true 3D kernels
``[kt, kh, kw, C_in, C_out]``, in the layouts that are fast on a CPU (private: :mod:`jaxkin.nn.unet` uses them).

XLA's 3D convolutions are several times slower on CPU than its 2D ones, so a (1,3,3) conv runs as a 2D conv with
time folded into the batch (:func:`spatial_conv`), a (3,1,1) conv as a 2D conv with kernel (3,1) over a
``[B, T, H*W, C]`` view (:func:`temporal_conv`), and a 3x3x3 conv as one 2D conv over the three time-shifted copies
of the input stacked along channels (:func:`full_conv`); transposed convs (stride 2) run in a phase form of ordinary
convs. The head's 3x3x3 conv and the time-collapsing conv, linear with nothing between them, run as one 2D conv with
time folded into channels (:func:`head_collapse`). In prediction, convs with at most 24 taps x input channels (the
first conv, the level-0 temporal convs) run as sums of shifted slices (``shift_sum=True``).
Every form equals the 3D convolution (:func:`conv3d_reference`) to float rounding (tested).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["spatial_conv", "temporal_conv", "full_conv", "head_collapse", "conv3d_reference"]

_DN = ("NHWC", "HWIO", "NHWC")


def _conv2d(x, kernel, *, padding, lhs_dilation=(1, 1)):
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=(1, 1), padding=padding, lhs_dilation=lhs_dilation, dimension_numbers=_DN
    )


# A transposed conv with kernel 3, stride 2, padding 1 and output padding 1 doubles the size. Written as a conv of
# the input dilated by 2 (zeros between samples) with padding (1, 2), its output splits into two phases:
#     y[2i] = w[1] x[i],        y[2i+1] = w[0] x[i] + w[2] x[i+1]        (x[n] = 0 past the end),
# i.e. a conv with a 2-tap kernel over x padded by (0, 1), one output block per phase, interleaved afterwards.
# XLA differentiates input-dilated convs very slowly on CPU (10x the forward); this form has ordinary convs only.
_UP_PAD = (1, 2)
_PHASE_TAPS = np.zeros((2, 2, 3), np.float32)  # [phase, tap, kernel index]
_PHASE_TAPS[0, 0, 1] = _PHASE_TAPS[1, 0, 0] = _PHASE_TAPS[1, 1, 2] = 1.0


def _tap_matrix(k: int, up: bool) -> np.ndarray:
    """[phases, taps, k]: which kernel entry each (phase, tap) uses; identity (one phase) when not upsampling."""
    return _PHASE_TAPS if up else np.eye(k, dtype=np.float32)[None]


def _phase_kernel(kernel, up: tuple[bool, bool, bool]):
    """A kernel ``[kt, kh, kw, Ci, Co]`` -> ``[taps_t, taps_h, taps_w, Ci, phases * Co]`` for the phase form."""
    st, sh, sw = (_tap_matrix(k, u) for k, u in zip(kernel.shape[:3], up))
    k = jnp.einsum("pak,qbl,rcm,klmio->abcipqro", st, sh, sw, kernel)
    a, b, c, ci = k.shape[:4]
    return k.reshape(a, b, c, ci, -1)


def _interleave(y, axes_up: tuple[bool, bool, bool], co: int):
    """``[B, T, H, W, (pt, ph, pw, Co)]`` -> ``[B, T*pt, H*ph, W*pw, Co]`` (phase p of index i goes to 2i+p)."""
    b, t, h, w, _ = y.shape
    pt, ph, pw = (2 if u else 1 for u in axes_up)
    y = y.reshape(b, t, h, w, pt, ph, pw, co)
    y = jnp.transpose(y, (0, 1, 4, 2, 5, 3, 6, 7))
    return y.reshape(b, t * pt, h * ph, w * pw, co)


def _same_or_up(k: int, up: bool):
    return (0, 1) if up else (k // 2, k // 2)


# The (2+1)D transposed convs run one conv per output phase with that phase's taps only (per axis: phase 0 the
# middle tap, phase 1 the outer two over x padded by (0, 1); 9 taps in 2D rather than the 16 of the single phase
# conv above, 3 rather than 4 in 1D), the phases stacked so that the reshape interleaves them. Same values (exact
# zeros are no longer added); the level-0 upsampling, forward + backward, ran 2.7x faster on the 2-core CPU under
# load (benchmarks/RESULTS.md).
_PHASES = (((1,), (0, 0)), ((0, 2), (0, 1)))  # (kernel taps, padding) of output phase 0 and 1


def _conv2d_up(x, kernel, up: tuple[bool, bool]):
    """The transposed conv (stride 2, padding 1, output padding 1) of ``x [N, A, B, Ci]`` with ``kernel [ka, kb, Ci,
    Co]`` along the axes where ``up`` is True ('same' along the other) -> ``[N, A * (1 + up_a), B * (1 + up_b),
    Co]``."""

    def phases(k, u):
        return [(np.array(taps), pad) for taps, pad in _PHASES] if u else [(np.arange(k), (k // 2, k // 2))]

    rows = []
    for taps_a, pad_a in phases(kernel.shape[0], up[0]):
        cols = [_conv2d(x, kernel[taps_a][:, taps_b], padding=[pad_a, pad_b])
                for taps_b, pad_b in phases(kernel.shape[1], up[1])]
        rows.append(jnp.stack(cols, axis=3) if up[1] else cols[0])  # [N, A, B, (2,) Co]
    y = jnp.stack(rows, axis=2) if up[0] else rows[0]  # [N, A, (2,) B, (2,) Co]
    n, a, b = x.shape[:3]
    return y.reshape(n, a * (1 + up[0]), b * (1 + up[1]), kernel.shape[-1])


# Convolutions with few input taps x channels (the network's first conv, 1 channel x 3 x 3, and the level-0 temporal
# convs, 3 taps x 8 channels) run far below XLA's CPU conv speed on this network's large level-0 activations (2-4
# GFLOP/s); written as a sum of shifted copies times kernel rows they become one elementwise loop, which XLA also
# fuses with the bias, ELU and neighbouring adds. Only the forward changes: the backward stays the 2D conv's VJP
# (the elementwise form's kernel gradient would be one reduction per kernel entry). Equal to the 2D conv to float
# rounding (tested). Used for prediction only (``jaxkin.nn.unet.SHIFT_SUM_CONVS``): measured on the idle 2-core CPU, the
# prediction forward is ~10% faster, but a train step 5-15% slower (benchmarks/RESULTS.md).
_SHIFT_SUM_MAX_TERMS = 24  # taps x input channels; measured faster up to the level-0 temporal conv (3 x 8)


def _shift_sum_conv2d(x, kernel, pad):
    """The 2D conv ``x [N, A, B, Ci]`` * ``kernel [ka, kb, Ci, Co]`` (``pad`` per axis) as a sum of shifted slices."""
    ka, kb, ci, _ = kernel.shape
    xp = jnp.pad(x, ((0, 0), *pad, (0, 0)))
    a_out, b_out = xp.shape[1] - ka + 1, xp.shape[2] - kb + 1
    terms = (xp[:, i : i + a_out, j : j + b_out, c : c + 1] * kernel[i, j, c]
             for i in range(ka) for j in range(kb) for c in range(ci))
    y = next(terms)
    for term in terms:
        y = y + term
    return y


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv2d_shift_sum(x, kernel, pad):
    return _shift_sum_conv2d(x, kernel, pad)


def _conv2d_shift_sum_fwd(x, kernel, pad):
    return _shift_sum_conv2d(x, kernel, pad), (x, kernel)


def _conv2d_shift_sum_bwd(pad, residuals, g):
    x, kernel = residuals
    return jax.vjp(lambda x, k: _conv2d(x, k, padding=pad), x, kernel)[1](g)


_conv2d_shift_sum.defvjp(_conv2d_shift_sum_fwd, _conv2d_shift_sum_bwd)


def _conv2d_same(x, kernel, pad, shift_sum: bool = False):
    """:func:`_conv2d` ('same' / phase padding ``pad``), by shifted sums when the kernel has few taps x channels
    (and ``shift_sum``)."""
    ka, kb, ci, _ = kernel.shape
    if shift_sum and ka * kb * ci <= _SHIFT_SUM_MAX_TERMS:
        return _conv2d_shift_sum(x, kernel, tuple(map(tuple, pad)))
    return _conv2d(x, kernel, padding=pad)


def spatial_conv(x, kernel, bias, *, up: bool = False, shift_sum: bool = False):
    """Conv with kernel ``[1, kh, kw, Ci, Co]`` ('same' padding); ``up``: transposed, stride (1, 2, 2).
    ``shift_sum``: as shifted sums when the kernel has few taps x channels (faster forward, for prediction)."""
    b, t, h, w, c = x.shape
    x2d = x.reshape(b * t, h, w, c)
    if up:
        y = _conv2d_up(x2d, kernel[0], (True, True))
    else:
        y = _conv2d_same(x2d, kernel[0], [_same_or_up(kernel.shape[1], False), _same_or_up(kernel.shape[2], False)],
                         shift_sum)
    return y.reshape(b, t, *y.shape[1:]) + bias


def temporal_conv(x, kernel, bias, *, up: bool = False, shift_sum: bool = False):
    """Conv with kernel ``[kt, 1, 1, Ci, Co]`` ('same' padding); ``up``: transposed, stride (2, 1, 1).
    ``shift_sum``: as shifted sums when the kernel has few taps x channels (faster forward, for prediction; not for
    an output that is transposed next: XLA would fuse the shifted sums into the transpose, where their reads are
    strided and 5x slower)."""
    b, t, h, w, c = x.shape
    x2d, k = x.reshape(b, t, h * w, c), kernel[:, 0]  # a 2D conv over (T, H*W) with kernel (kt, 1)
    y = (_conv2d_up(x2d, k, (True, False)) if up
         else _conv2d_same(x2d, k, [_same_or_up(kernel.shape[0], False), (0, 0)], shift_sum))
    return y.reshape(b, y.shape[1], h, w, y.shape[-1]) + bias


def full_conv(x, kernel, bias, *, up_time: bool = False, up_space: bool = False):
    """Conv with kernel ``[3, kh, kw, Ci, Co]`` ('same' padding), optionally transposed with stride 2 in time
    and/or space. Evaluated as one 2D conv over time-shifted copies of ``x`` stacked on channels."""
    b, t, h, w, c = x.shape
    co = kernel.shape[-1]
    up = (up_time, up_space, up_space)
    k = _phase_kernel(kernel, up) if (up_time or up_space) else kernel
    taps_t, kh, kw, ci, cout = k.shape
    x = jnp.pad(x, ((0, 0), _same_or_up(kernel.shape[0], up_time), (0, 0), (0, 0), (0, 0)))
    stacked = jnp.concatenate([x[:, dt : dt + t] for dt in range(taps_t)], axis=-1)  # [B, T, H, W, taps*Ci]
    k2d = jnp.transpose(k, (1, 2, 0, 3, 4)).reshape(kh, kw, taps_t * ci, cout)
    pad = [_same_or_up(kernel.shape[1], up_space), _same_or_up(kernel.shape[2], up_space)]
    y = _conv2d(stacked.reshape(b * t, h, w, taps_t * ci), k2d, padding=pad)
    y = y.reshape(b, t, *y.shape[1:])
    return (_interleave(y, up, co) if (up_time or up_space) else y) + bias


def head_collapse(x, kernel, bias, collapse_kernel, collapse_bias):
    """The head: conv ``kernel [3, kh, kw, Ci, P]`` ('same' padding), then the time-collapsing conv
    ``collapse_kernel [T, 1, 1, P, O]`` (no padding) -> ``[B, H, W, O]``. Both are linear with nothing between
    them, so they are evaluated as one 2D conv over ``x`` with time folded into channels (``T * Ci`` of them) and the
    composed kernel ``K[t, kh, kw, Ci, O] = sum_{dt, p} kernel[dt, kh, kw, Ci, p] collapse_kernel[t - dt + 1, p, O]``
    (terms outside ``0 <= t - dt + 1 < T`` are the zero time padding): a third of the head conv's arithmetic, and
    ``T * Ci`` input channels instead of ``3 * Ci`` suit XLA's CPU convolutions far better (about 3x faster,
    forward and backward). Equal to the two convs to float rounding (tested)."""
    b, t, h, w, c = x.shape
    kt, kh, kw = kernel.shape[:3]
    kc = collapse_kernel[:, 0, 0]  # [T, P, O]
    if kc.shape[0] != t:
        raise ValueError(f"the collapsing kernel has {kc.shape[0]} time steps, the input {t}")
    half = kt // 2
    padded = jnp.pad(kc, ((half, half), (0, 0), (0, 0)))  # padded[j] = kc[j - half]
    shifted = jnp.stack([padded[kt - 1 - dt : kt - 1 - dt + t] for dt in range(kt)])  # [dt, t] -> kc[t - dt + half]
    k = jnp.einsum("dhwip,dtpo->hwtio", kernel, shifted).reshape(kh, kw, t * c, kc.shape[-1])
    folded = jnp.transpose(x, (0, 2, 3, 1, 4)).reshape(b, h, w, t * c)  # [B, H, W, (T, Ci)]
    y = _conv2d(folded, k, padding=[(kh // 2, kh // 2), (kw // 2, kw // 2)])
    return y + (bias @ kc.sum(axis=0) + collapse_bias)


def conv3d_reference(x, kernel, bias, *, strides=(1, 1, 1)):
    """A plain XLA 3D convolution with 'same' padding, or for ``strides`` of 2 the transposed conv with kernel
    3, padding 1, output padding 1 (PyTorch's ``ConvTranspose3d`` convention, kernel not flipped). The reference
    that the fast layouts are tested against."""
    pads, dil = [], []
    for k, s in zip(kernel.shape[:3], strides):
        pads.append(_UP_PAD if s == 2 else (k // 2, k // 2))
        dil.append(s)
    y = jax.lax.conv_general_dilated(
        x, kernel, (1, 1, 1), pads, lhs_dilation=tuple(dil), dimension_numbers=("NDHWC", "DHWIO", "NDHWC")
    )
    return y + bias
