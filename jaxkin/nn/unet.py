"""The spatio-temporal UNet of the paper (De Benetti et al., MICCAI 2023) in Flax NNX.

Input: one axial slice's dynamic frames, time padded to ``T`` (64), as ``x [B, T, H, W, C=1]`` (kBq/ml, or
divided by each slice's 99th percentile, times ``input_scale``: :func:`network_input`); output: kinetic
parameters ``[B, H, W, P]`` (``K1, k2, k3, vB``) after the final activation.
``H`` and ``W`` must be multiples of ``2**depth``; ``T`` too when pooling in time.

Architecture (matching the original code; 860,904 parameters for the (2+1)D net, 2,133,928 for the 3D one):

* encoder: ``depth`` blocks with ``root * 2**d`` features, then a bottleneck block with ``root * 2**depth``.
  A (2+1)D block is spatial conv (1,3,3) -> temporal conv (3,1,1) -> ELU -> spatial conv -> the *same* temporal
  conv again (shared weights) -> ELU; a 3D block is conv 3x3x3 -> ELU -> conv 3x3x3 -> ELU. The block's skip is
  ``concat(block input, block output)`` (short + long skip); max pooling (2,2,2) or (1,2,2), stride = kernel.
* decoder: transposed spatial conv (1,3,3) with stride (1,2,2), then transposed temporal conv (3,1,1) with stride
  (2,1,1) (stride 1 when pooling only in space) -- or one transposed 3x3x3 conv for the 3D net --, concat the
  skip, and the block's conv pattern. No batch norm anywhere.
* head: conv 3x3x3 (root -> P), then a conv with kernel (T,1,1) and no padding that collapses time.

Layout: activations are channels-last ``[B, T, H, W, C]``; kernels are stored as true 3D kernels
``[kt, kh, kw, C_in, C_out]``. On CPU, XLA's 3D convolutions are several times slower than 2D ones, so the
module evaluates a (1,3,3) conv as a 2D conv with time folded into the batch, a (3,1,1) conv as a 2D conv with
kernel (3,1) over a ``[B, T, H*W, C]`` view, and a 3x3x3 conv as one 2D conv over the three time-shifted copies of
the input stacked along channels; the head's 3x3x3 conv and the time-collapsing conv, linear with nothing between
them, run as one 2D conv with time folded into channels (:func:`head_collapse`); convs with at most 24 taps x input
channels (the first conv, the level-0 temporal convs) run as sums of shifted slices (one elementwise loop; their
backward stays the conv's) in prediction only (``forward_only=True``). The results equal the 3D convolutions to
float precision (tested).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxkin.kinetics import FDG_MODEL, get_model
from jaxkin.nn.activations import FINAL_ACTIVATIONS, final_activation, inverse_activation

__all__ = ["UNetConfig", "UNet", "count_parameters", "conv3d_reference", "pad_time", "network_input", "input_level",
           "input_curves"]

_DN = ("NHWC", "HWIO", "NHWC")
CONV_TYPES = ("space_time", "3d")
POOLINGS = ("3d", "space")
INPUT_NORMALIZATIONS = ("none", "slice", "input")


_FDG = get_model(FDG_MODEL)


def _one_of(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Shape, switches and input scaling of the network (the rows of the paper's Table 1 differ in ``conv``,
    ``pooling`` and ``final_activation``).

    ``conv``: ``"space_time"`` ((2+1)D) or ``"3d"``; ``pooling``: ``"3d"`` (2,2,2) or ``"space"`` (1,2,2);
    ``final_activation``: ``"abs"``, ``"clamp"``, ``"multi_clamp"`` or ``"sigmoid"``; ``depth`` poolings with
    ``root_features * 2**d`` features; ``time_steps``: frames after edge padding (the head's temporal kernel);
    ``lower``/``upper``: per-parameter bounds (K1, k2, k3, vB) of the ``multi_clamp`` and ``sigmoid`` activations,
    by default the FDG model's (:func:`jaxkin.kinetics.get_model`); ``init_params``: empty (the paper: every layer
    initialised at random) or one value per output channel: the last layer (the time-collapsing conv) starts with a
    zero kernel and the bias that the final activation maps to these parameters, so the untrained network predicts
    exactly them in every voxel; ``input_normalization``: ``"none"`` (the paper: kBq/ml) or ``"slice"`` (each
    slice's TACs divided by their 99th percentile over voxels and frames); ``input_scale`` multiplies the input
    after the normalisation (see :func:`network_input`). Invalid values raise ValueError (one line).
    """

    conv: str = "space_time"
    pooling: str = "3d"
    final_activation: str = "multi_clamp"
    depth: int = 4
    root_features: int = 8
    in_channels: int = 1
    out_channels: int = _FDG.n_params
    time_steps: int = 64
    lower: tuple[float, ...] = _FDG.lower
    upper: tuple[float, ...] = _FDG.upper
    init_params: tuple[float, ...] = ()
    input_scale: float = 1.0
    input_normalization: str = "none"
    condition_on_input: bool = False

    def __post_init__(self):
        _one_of("conv", self.conv, CONV_TYPES)
        _one_of("pooling", self.pooling, POOLINGS)
        _one_of("final_activation", self.final_activation, tuple(FINAL_ACTIVATIONS))
        _one_of("input_normalization", self.input_normalization, INPUT_NORMALIZATIONS)
        n = self.out_channels
        if len(self.lower) != n or len(self.upper) != n or any(lo >= hi for lo, hi in zip(self.lower, self.upper)):
            raise ValueError(f"lower and upper need {n} values each (one per output channel) with lower < upper")
        if self.init_params and (len(self.init_params) != n or not all(
                lo < v < hi for v, lo, hi in zip(self.init_params, self.lower, self.upper))):
            raise ValueError(f"init_params must be empty or {n} values strictly between lower and upper, "
                             f"got {self.init_params!r}")
        if self.pooling == "3d" and self.time_steps % self.size_multiple:
            raise ValueError(f"time_steps ({self.time_steps}) must be a multiple of 2**depth = {self.size_multiple} "
                             "with 3d pooling")

    @property
    def channels(self) -> int:
        """Channels of the network's input: the TACs' (``in_channels``) and, with ``condition_on_input``, the
        input function's two curves."""
        return self.in_channels + (INPUT_CURVES if self.condition_on_input else 0)

    @property
    def needs_input_function(self) -> bool:
        """Whether the network's input depends on the scan's input function (it must be given to predict)."""
        return self.condition_on_input or self.input_normalization == "input"

    @property
    def size_multiple(self) -> int:
        """``H`` and ``W`` must be multiples of this."""
        return 2**self.depth


# --------------------------------------------------------------------------------------------------
# Convolutions on [B, T, H, W, C] in the fast 2D layouts
# --------------------------------------------------------------------------------------------------


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


# Convolutions with few input taps x channels (the network's first conv, 1 channel x 3 x 3, and the level-0 temporal
# convs, 3 taps x 8 channels) run far below XLA's CPU conv speed on this network's large level-0 activations (2-4
# GFLOP/s); written as a sum of shifted copies times kernel rows they become one elementwise loop, which XLA also
# fuses with the bias, ELU and neighbouring adds. Only the forward changes: the backward stays the 2D conv's VJP
# (the elementwise form's kernel gradient would be one reduction per kernel entry). Equal to the 2D conv to float
# rounding (tested). Used for prediction only (``UNet(x, forward_only=True)``): measured on the idle 2-core CPU, the
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
    co = kernel.shape[-1]
    k = _phase_kernel(kernel, (False, up, up))[0] if up else kernel[0]
    pad = [_same_or_up(kernel.shape[1], up), _same_or_up(kernel.shape[2], up)]
    y = (_conv2d(x.reshape(b * t, h, w, c), k, padding=pad) if up
         else _conv2d_same(x.reshape(b * t, h, w, c), k, pad, shift_sum))
    y = y.reshape(b, t, *y.shape[1:])
    return (_interleave(y, (False, True, True), co) if up else y) + bias


def temporal_conv(x, kernel, bias, *, up: bool = False, shift_sum: bool = False):
    """Conv with kernel ``[kt, 1, 1, Ci, Co]`` ('same' padding); ``up``: transposed, stride (2, 1, 1).
    ``shift_sum``: as shifted sums when the kernel has few taps x channels (faster forward, for prediction; not for
    an output that is transposed next: XLA would fuse the shifted sums into the transpose, where their reads are
    strided and 5x slower)."""
    b, t, h, w, c = x.shape
    co = kernel.shape[-1]
    k = (_phase_kernel(kernel, (True, False, False)) if up else kernel)[:, 0]  # a 2D kernel over (T, H*W)
    pad = [_same_or_up(kernel.shape[0], up), (0, 0)]
    y = (_conv2d(x.reshape(b, t, h * w, c), k, padding=pad) if up
         else _conv2d_same(x.reshape(b, t, h * w, c), k, pad, shift_sum))
    y = y.reshape(b, y.shape[1], h, w, y.shape[-1])
    return (_interleave(y, (True, False, False), co) if up else y) + bias


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


def max_pool(x, pooling: str):
    """Max pooling with kernel = stride = (2,2,2) (``"3d"``) or (1,2,2) (``"space"``) on ``[B, T, H, W, C]``."""
    b, t, h, w, c = x.shape
    if pooling == "3d":
        return x.reshape(b, t // 2, 2, h // 2, 2, w // 2, 2, c).max(axis=(2, 4, 6))
    return x.reshape(b, t, h // 2, 2, w // 2, 2, c).max(axis=(3, 5))


# --------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------


class ConvWeights(nnx.Module):
    """Kernel ``[kt, kh, kw, Ci, Co]`` and bias ``[Co]``, initialised U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    (PyTorch's default for conv layers, as in the original).

    ``rng`` is a NumPy generator (seeded from the model's ``nnx.Rngs``): drawing on the host avoids compiling one
    small XLA program per kernel shape, which made building the model take tens of seconds on a CPU.
    """

    def __init__(self, shape: tuple[int, int, int, int, int], *, rng: np.random.Generator):
        bound = 1.0 / math.sqrt(shape[0] * shape[1] * shape[2] * shape[3])
        self.kernel = nnx.Param(jnp.asarray(rng.uniform(-bound, bound, shape), jnp.float32))
        self.bias = nnx.Param(jnp.asarray(rng.uniform(-bound, bound, (shape[-1],)), jnp.float32))


class ConvBlock(nnx.Module):
    """Two convolutions with ELU: (2+1)D (spatial, shared temporal) or 3D (3x3x3)."""

    def __init__(self, c_in: int, c_out: int, conv: str, *, rng: np.random.Generator):
        self.conv = conv
        if conv == "space_time":
            self.space_in = ConvWeights((1, 3, 3, c_in, c_out), rng=rng)
            self.space = ConvWeights((1, 3, 3, c_out, c_out), rng=rng)
            self.time = ConvWeights((3, 1, 1, c_out, c_out), rng=rng)  # used twice (shared weights)
        else:
            self.conv_in = ConvWeights((3, 3, 3, c_in, c_out), rng=rng)
            self.conv_out = ConvWeights((3, 3, 3, c_out, c_out), rng=rng)

    def __call__(self, x, *, shift_sums: bool = False, shift_sum_out: bool = True):
        """``shift_sums``: the forward-only formulation of the smallest convs; ``shift_sum_out``: also for the last
        temporal conv (False when the output is transposed next)."""
        if self.conv == "space_time":
            t, s = self.time, shift_sums
            x = jax.nn.elu(temporal_conv(spatial_conv(x, self.space_in.kernel[...], self.space_in.bias[...], shift_sum=s),
                                         t.kernel[...], t.bias[...], shift_sum=s))
            return jax.nn.elu(temporal_conv(spatial_conv(x, self.space.kernel[...], self.space.bias[...], shift_sum=s),
                                            t.kernel[...], t.bias[...], shift_sum=s and shift_sum_out))
        x = jax.nn.elu(full_conv(x, self.conv_in.kernel[...], self.conv_in.bias[...]))
        return jax.nn.elu(full_conv(x, self.conv_out.kernel[...], self.conv_out.bias[...]))


class Upsample(nnx.Module):
    """Transposed conv doubling H and W (and T when ``up_time``): (1,3,3)+(3,1,1) or one 3x3x3."""

    def __init__(self, channels: int, conv: str, up_time: bool, *, rng: np.random.Generator):
        self.conv, self.up_time = conv, up_time
        if conv == "space_time":
            self.space = ConvWeights((1, 3, 3, channels, channels), rng=rng)
            self.time = ConvWeights((3, 1, 1, channels, channels), rng=rng)
        else:
            self.full = ConvWeights((3, 3, 3, channels, channels), rng=rng)

    def __call__(self, x):
        if self.conv == "space_time":
            x = spatial_conv(x, self.space.kernel[...], self.space.bias[...], up=True)
            return temporal_conv(x, self.time.kernel[...], self.time.bias[...], up=self.up_time)
        return full_conv(x, self.full.kernel[...], self.full.bias[...], up_time=self.up_time, up_space=True)


class DecoderBlock(nnx.Module):
    def __init__(self, c_in: int, c_out: int, c_skip: int, cfg: UNetConfig, *, rng: np.random.Generator):
        self.up = Upsample(c_in, cfg.conv, cfg.pooling == "3d", rng=rng)
        self.block = ConvBlock(c_in + c_skip, c_out, cfg.conv, rng=rng)

    def __call__(self, x, skip, *, shift_sums: bool = False, shift_sum_out: bool = True):
        return self.block(jnp.concatenate([self.up(x), skip], axis=-1), shift_sums=shift_sums,
                          shift_sum_out=shift_sum_out)


class UNet(nnx.Module):
    """The paper's UNet; ``model(x [B, T, H, W, 1]) -> parameters [B, H, W, P]`` (after the final activation).

    ``model.logits(x)`` gives the raw outputs before the final activation. ``forward_only=True`` (both): a
    formulation of the smallest convolutions that is faster when the output is not differentiated (prediction),
    equal to float rounding; gradients through it stay correct but cost more.
    """

    def __init__(self, cfg: UNetConfig = UNetConfig(), *, rngs: nnx.Rngs):
        self.cfg = cfg
        key = rngs.params()
        try:
            seed = np.asarray(jax.random.key_data(key)).ravel()
        except jax.errors.TracerArrayConversionError:  # under nnx.eval_shape / jit: values don't matter
            seed = 0
        rng = np.random.default_rng(seed)
        features = [cfg.root_features * 2**d for d in range(cfg.depth + 1)]
        c, skips, encoders = cfg.channels, [], []
        for f in features[:-1]:
            encoders.append(ConvBlock(c, f, cfg.conv, rng=rng))
            skips.append(c + f)
            c = f
        self.encoders = nnx.List(encoders)
        self.bottleneck = ConvBlock(c, features[-1], cfg.conv, rng=rng)
        self.decoders = nnx.List(
            [DecoderBlock(features[d + 1], features[d], skips[d], cfg, rng=rng) for d in reversed(range(cfg.depth))]
        )
        self.head = ConvWeights((3, 3, 3, cfg.root_features, cfg.out_channels), rng=rng)
        self.collapse = ConvWeights((cfg.time_steps, 1, 1, cfg.out_channels, cfg.out_channels), rng=rng)
        if cfg.init_params:
            self.collapse.kernel = nnx.Param(jnp.zeros_like(self.collapse.kernel[...]))
            self.collapse.bias = nnx.Param(inverse_activation(cfg.final_activation, cfg.init_params, cfg.lower, cfg.upper))

    def logits(self, x, *, forward_only: bool = False):
        cfg = self.cfg
        if x.ndim == 4:
            x = x[..., None]
        if x.shape[1] != cfg.time_steps:
            raise ValueError(f"the network expects {cfg.time_steps} time steps, got {x.shape[1]}")
        m = cfg.size_multiple
        if x.shape[2] % m or x.shape[3] % m:
            raise ValueError(f"H and W must be multiples of {m}, got {x.shape[2]}x{x.shape[3]}")
        skips = []
        for enc in self.encoders:
            y = enc(x, shift_sums=forward_only)
            skips.append(jnp.concatenate([x, y], axis=-1))
            x = max_pool(y, cfg.pooling)
        x = self.bottleneck(x, shift_sums=forward_only)
        for i, (dec, skip) in enumerate(zip(self.decoders, reversed(skips))):
            # the last decoder's output is transposed by the head
            x = dec(x, skip, shift_sums=forward_only, shift_sum_out=i < len(self.decoders) - 1)
        return head_collapse(x, self.head.kernel[...], self.head.bias[...], self.collapse.kernel[...],
                             self.collapse.bias[...])

    def __call__(self, x, *, forward_only: bool = False):
        cfg = self.cfg
        return final_activation(cfg.final_activation)(self.logits(x, forward_only=forward_only), cfg.lower, cfg.upper)


def count_parameters(model: nnx.Module) -> int:
    """Number of trainable scalars."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def pad_time(frames, time_steps: int, axis: int = 1):
    """Pad the time axis to ``time_steps`` by repeating the last frame (edge padding), as in training,
    validation and prediction alike."""
    n = frames.shape[axis]
    if n > time_steps:
        raise ValueError(f"{n} frames do not fit the network's {time_steps} time steps")
    pad = [(0, 0)] * frames.ndim
    pad[axis] = (0, time_steps - n)
    return jnp.pad(frames, pad, mode="edge")


#: The percentile of a slice's values (over voxels and frames) that ``input_normalization="slice"`` divides by.
SLICE_PERCENTILE = 99.0


def slice_scale(tacs, eps: float = 1e-6):
    """Each slice's 99th percentile over voxels and frames: ``[B, H, W, F] -> [B]`` (kBq/ml, at least ``eps``)."""
    flat = tacs.reshape(tacs.shape[0], -1)
    return jnp.maximum(jnp.percentile(flat, SLICE_PERCENTILE, axis=1), eps)


#: Input-function curves that ``condition_on_input`` adds as channels (:func:`input_curves`).
INPUT_CURVES = 2


def input_level(kin):
    """The time-averaged blood activity of each scan, ``[...]`` (kBq/ml): the frame means of the whole blood
    weighted by frame duration (``kin`` a :class:`jaxkin.kinetics.KineticInput`, leaves stacked as ``[..., F]``)."""
    w = kin.frame_duration
    return jnp.sum(kin.blood_mean() * w, axis=-1) / jnp.sum(w, axis=-1)


def input_curves(kin):
    """The input function as the network sees it, ``[..., F, 2]`` (kBq/ml): the frame means of the blood, and the
    frame means of the running integral of the input divided by the scan's length (Patlak's abscissa, scaled)."""
    end = kin.frame_start[..., -1:] + kin.frame_duration[..., -1:]
    return jnp.stack([kin.blood_mean(), kin.integral_mean() / end], axis=-1)


def network_input(tacs, time_steps: int, input_scale: float = 1.0, normalization: str = "none", kin=None,
                  condition: bool = False):
    """TACs ``[B, H, W, F]`` (kBq/ml) -> network input ``[B, T, H, W, C]``: time first, edge-padded, scaled.

    ``normalization="slice"`` first divides each slice by :func:`slice_scale` (the input is then invariant to a
    constant factor on the data); ``"input"`` divides by the scan's :func:`input_level`; ``"none"`` keeps kBq/ml.
    ``input_scale`` multiplies the result in every case. ``kin``: each sample's :class:`jaxkin.kinetics.KineticInput`
    (leaves ``[B, ...]``), needed by ``"input"`` and ``condition``; ``condition`` appends the
    :func:`input_curves` as two channels, divided by the same per-sample scale as the TACs (so the ratio of
    tissue to blood, which the kinetic parameters describe, is kept).
    """
    _one_of("input_normalization", normalization, INPUT_NORMALIZATIONS)
    if (normalization == "input" or condition) and kin is None:
        raise ValueError("this network's input needs the scan's input function (kin)")
    scale = jnp.ones(tacs.shape[:1], tacs.dtype)
    if normalization == "slice":
        scale = slice_scale(tacs)
    elif normalization == "input":
        scale = jnp.maximum(input_level(kin), 1e-6).astype(tacs.dtype)
    x = jnp.moveaxis(tacs / scale[:, None, None, None], -1, 1)[..., None]  # [B, F, H, W, 1]
    if condition:
        curves = (input_curves(kin) / scale[:, None, None]).astype(tacs.dtype)  # [B, F, 2]
        curves = jnp.broadcast_to(curves[:, :, None, None, :], (*x.shape[:4], INPUT_CURVES))
        x = jnp.concatenate([x, curves], axis=-1)
    return pad_time(x * input_scale, time_steps, axis=1)
