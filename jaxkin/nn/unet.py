"""The spatio-temporal UNet of the paper (De Benetti et al., MICCAI 2023) in Flax NNX.

Input: one axial slice's dynamic frames, time padded to ``T`` (64), as ``x [B, T, H, W, C=1]`` (kBq/ml, or
normalised, times ``input_scale``: :func:`jaxkin.nn.inputs.network_input`); output: kinetic parameters
``[B, H, W, P]`` (``K1, k2, k3, vB``) after the final activation.
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

Activations are channels-last ``[B, T, H, W, C]``; kernels are stored as true 3D kernels ``[kt, kh, kw, C_in,
C_out]`` and evaluated in the CPU-friendly 2D layouts of :mod:`jaxkin.nn._convs`. A call takes the implementation of
the (2+1)D convolutions: :data:`XLA_CONVS` (the default: training) or :data:`SHIFT_SUM_CONVS` (prediction, a faster
forward), equal to float rounding.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxkin.kinetics import FDG_MODEL, get_model
from jaxkin.nn._convs import full_conv, head_collapse, spatial_conv, temporal_conv
from jaxkin.nn.activations import FINAL_ACTIVATIONS, final_activation, inverse_activation
from jaxkin.nn.inputs import INPUT_CURVES, INPUT_NORMALIZATIONS, _one_of

__all__ = ["UNetConfig", "UNet", "count_parameters", "ConvOps", "XLA_CONVS", "SHIFT_SUM_CONVS", "ARCHITECTURES",
           "host_rng"]

#: Choices of ``architecture``: the paper's spatio-temporal UNet (this module), or a per-voxel temporal encoder
#: followed by a 2D UNet over its features (:mod:`jaxkin.nn.encoder_unet`: time first, then space).
ARCHITECTURES = ("spacetime_unet", "encoder_unet")
#: Choices of ``conv``: (2+1)D blocks or 3D ones.
CONV_TYPES = ("space_time", "3d")
#: Choices of ``pooling``: (2,2,2) or (1,2,2).
POOLINGS = ("3d", "space")

_FDG = get_model(FDG_MODEL)


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Shape, switches and input scaling of the network (the rows of the paper's Table 1 differ in ``conv``,
    ``pooling`` and ``final_activation``).

    ``conv``: ``"space_time"`` ((2+1)D) or ``"3d"``; ``pooling``: ``"3d"`` (2,2,2) or ``"space"`` (1,2,2);
    ``final_activation``: ``"abs"``, ``"clamp"``, ``"multi_clamp"`` or ``"sigmoid"``; ``depth`` poolings with
    ``root_features * 2**d`` features; ``time_steps``: frames after edge padding (the head's temporal kernel);
    ``architecture``: ``"spacetime_unet"`` (the paper's, this module) or ``"encoder_unet"``
    (:mod:`jaxkin.nn.encoder_unet`, which ignores ``conv`` and ``pooling``), whose per-voxel encoder compresses
    each TAC to ``temporal_features`` features;
    ``lower``/``upper``: per-parameter bounds (K1, k2, k3, vB) of the ``multi_clamp`` and ``sigmoid`` activations,
    by default the FDG model's (:func:`jaxkin.kinetics.get_model`); ``init_params``: empty (the paper: every layer
    initialised at random) or one value per output channel: the last layer (the time-collapsing conv) starts with a
    zero kernel and the bias that the final activation maps to these parameters, so the untrained network predicts
    exactly them in every voxel; ``input_normalization``: ``"none"`` (the paper: kBq/ml) or ``"slice"`` (each
    slice's TACs divided by their 99th percentile over voxels and frames); ``input_scale`` multiplies the input
    after the normalisation (see :func:`jaxkin.nn.inputs.network_input`). Invalid values raise ValueError (one line).
    """

    architecture: str = "spacetime_unet"
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
    temporal_features: int = 64

    def __post_init__(self):
        _one_of("architecture", self.architecture, ARCHITECTURES)
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
        if self.time_steps % self.time_multiple:
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

    @property
    def time_multiple(self) -> int:
        """``time_steps`` must be a multiple of this: ``2**depth`` for the paper's UNet with 3d pooling, else 1."""
        return self.size_multiple if self.architecture == "spacetime_unet" and self.pooling == "3d" else 1


@dataclasses.dataclass(frozen=True)
class ConvOps:
    """How the network evaluates its 'same' (2+1)D convolutions, spatial ``[1, kh, kw, Ci, Co]`` and temporal
    ``[kt, 1, 1, Ci, Co]`` on ``[B, T, H, W, Ci]``: all as XLA's 2D convs (``shift_sums=False``, :data:`XLA_CONVS`:
    training), or those with at most 24 taps x input channels as sums of shifted slices (``True``,
    :data:`SHIFT_SUM_CONVS`: prediction; a faster forward, a slower gradient). Both equal to float rounding.
    Transposed, 3x3x3 and head convs are XLA's in either case (:mod:`jaxkin.nn._convs`)."""

    shift_sums: bool = False

    def spatial(self, x, kernel, bias):
        """The spatial conv of ``x`` with ``kernel [1, kh, kw, Ci, Co]`` and ``bias [Co]``."""
        return spatial_conv(x, kernel, bias, shift_sum=self.shift_sums)

    def temporal(self, x, kernel, bias):
        """The temporal conv of ``x`` with ``kernel [kt, 1, 1, Ci, Co]`` and ``bias [Co]``."""
        return temporal_conv(x, kernel, bias, shift_sum=self.shift_sums)


#: Every convolution XLA's: what training differentiates.
XLA_CONVS = ConvOps(shift_sums=False)
#: The smallest convolutions as shifted sums: prediction's faster forward.
SHIFT_SUM_CONVS = ConvOps(shift_sums=True)


def max_pool(x, pooling: str):
    """Max pooling with kernel = stride = (2,2,2) (``"3d"``) or (1,2,2) (``"space"``) on ``[B, T, H, W, C]``."""
    b, t, h, w, c = x.shape
    if pooling == "3d":
        return x.reshape(b, t // 2, 2, h // 2, 2, w // 2, 2, c).max(axis=(2, 4, 6))
    return x.reshape(b, t, h // 2, 2, w // 2, 2, c).max(axis=(3, 5))


def host_rng(rngs: nnx.Rngs) -> np.random.Generator:
    """A NumPy generator seeded from ``rngs.params()`` (a fixed seed under ``nnx.eval_shape`` / jit, where the
    values do not matter), for drawing weights on the host (:class:`ConvWeights`)."""
    key = rngs.params()
    try:
        seed = np.asarray(jax.random.key_data(key)).ravel()
    except jax.errors.TracerArrayConversionError:
        seed = 0
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------


class ConvWeights(nnx.Module):
    """Kernel ``[kt, kh, kw, Ci, Co]`` (or any shape ``[..., Ci, Co]``, fan-in = the product of all axes but the
    last) and bias ``[Co]``, initialised U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    (PyTorch's default for conv layers, as in the original).

    ``rng`` is a NumPy generator (seeded from the model's ``nnx.Rngs``): drawing on the host avoids compiling one
    small XLA program per kernel shape, which made building the model take tens of seconds on a CPU.
    """

    def __init__(self, shape: tuple[int, ...], *, rng: np.random.Generator):
        bound = 1.0 / math.sqrt(math.prod(shape[:-1]))
        self.kernel = nnx.Param(jnp.asarray(rng.uniform(-bound, bound, shape), jnp.float32))
        self.bias = nnx.Param(jnp.asarray(rng.uniform(-bound, bound, (shape[-1],)), jnp.float32))

    def arrays(self):
        """``(kernel, bias)`` as arrays."""
        return self.kernel[...], self.bias[...]


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

    def __call__(self, x, convs: ConvOps = XLA_CONVS, last_convs: ConvOps | None = None):
        """``convs`` evaluates the (2+1)D convolutions, ``last_convs`` (default ``convs``) the block's last one."""
        if self.conv == "space_time":
            time, last = self.time.arrays(), convs if last_convs is None else last_convs
            x = jax.nn.elu(convs.temporal(convs.spatial(x, *self.space_in.arrays()), *time))
            return jax.nn.elu(last.temporal(convs.spatial(x, *self.space.arrays()), *time))
        x = jax.nn.elu(full_conv(x, *self.conv_in.arrays()))
        return jax.nn.elu(full_conv(x, *self.conv_out.arrays()))


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
        """XLA's convolutions in training and prediction alike."""
        if self.conv == "space_time":
            x = spatial_conv(x, *self.space.arrays(), up=True)
            return temporal_conv(x, *self.time.arrays(), up=self.up_time)
        return full_conv(x, *self.full.arrays(), up_time=self.up_time, up_space=True)


class DecoderBlock(nnx.Module):
    def __init__(self, c_in: int, c_out: int, c_skip: int, cfg: UNetConfig, *, rng: np.random.Generator):
        self.up = Upsample(c_in, cfg.conv, cfg.pooling == "3d", rng=rng)
        self.block = ConvBlock(c_in + c_skip, c_out, cfg.conv, rng=rng)

    def __call__(self, x, skip, convs: ConvOps = XLA_CONVS, last_convs: ConvOps | None = None):
        return self.block(jnp.concatenate([self.up(x), skip], axis=-1), convs, last_convs)


class UNet(nnx.Module):
    """The paper's UNet; ``model(x [B, T, H, W, 1]) -> parameters [B, H, W, P]`` (after the final activation).

    ``model.logits(x)`` gives the raw outputs before the final activation. ``convs`` (both): how the (2+1)D
    convolutions are evaluated, :data:`XLA_CONVS` (training) or :data:`SHIFT_SUM_CONVS`, faster when the output is
    not differentiated (prediction), equal to float rounding; gradients through it stay correct but cost more.
    """

    def __init__(self, cfg: UNetConfig = UNetConfig(), *, rngs: nnx.Rngs):
        self.cfg = cfg
        rng = host_rng(rngs)
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

    def logits(self, x, *, convs: ConvOps = XLA_CONVS):
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
            y = enc(x, convs)
            skips.append(jnp.concatenate([x, y], axis=-1))
            x = max_pool(y, cfg.pooling)
        x = self.bottleneck(x, convs)
        last = len(self.decoders) - 1
        for i, (dec, skip) in enumerate(zip(self.decoders, reversed(skips))):
            # the head transposes the last decoder's output; shifted sums fused into that transpose would read
            # strided memory (5x slower), so the last conv before it is XLA's
            x = dec(x, skip, convs, XLA_CONVS if i == last else convs)
        return head_collapse(x, *self.head.arrays(), *self.collapse.arrays())

    def __call__(self, x, *, convs: ConvOps = XLA_CONVS):
        cfg = self.cfg
        return final_activation(cfg.final_activation)(self.logits(x, convs=convs), cfg.lower, cfg.upper)


def count_parameters(model: nnx.Module) -> int:
    """Number of trainable scalars."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
