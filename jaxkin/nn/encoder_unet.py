"""Time first, then space: a per-voxel temporal encoder followed by a 2D UNet over its features (Flax NNX), the
``architecture="encoder_unet"`` of :class:`jaxkin.nn.unet.UNetConfig`.

Input: each voxel's TAC with time last, ``x [B, H, W, T]`` (normalised and scaled as the config says), and with
``condition_on_input`` the scan's input function ``curves [B, T, 2]`` once per sample
(:func:`jaxkin.nn.inputs.voxel_input`); output: kinetic parameters ``[B, H, W, P]`` (``K1, k2, k3, vB``) after the
final activation. ``H`` and ``W`` must be multiples of ``2**depth``; ``T`` is the config's ``time_steps``.

Architecture (``E = temporal_features``, ``R = root_features``, ELU after every layer but the upsampling and the
last):

* temporal encoder, the same for every voxel: a dense layer over the frames ``T -> 2E`` and a dense layer
  ``2E -> E``. With ``condition_on_input`` the first layer also reads the input function's ``2T`` values: its kernel
  ``[3T, 2E]`` acts on ``concat(TAC, curves)``, and since the curves are the same in every voxel of a sample their
  part is computed once per sample and added to every voxel (equal to broadcasting them as channels, tested);
* spatial UNet over the ``E`` feature maps: ``depth`` levels of two 3x3 convs with ``R * 2**d`` features and 2x2
  max pooling, a bottleneck of two 3x3 convs with ``R * 2**depth``, and per level a 2x2 transposed conv with
  stride 2 (``2C -> C``), the concatenated skip and two 3x3 convs;
* head: ``concat(UNet output, temporal features)`` (so small organs keep a direct per-voxel path), a 1x1 conv
  ``R + E -> E`` and a 1x1 conv ``E -> P``, then the final activation. With ``init_params`` the last conv starts
  with a zero kernel and the bias that the activation maps to those parameters.

Cost (:func:`forward_flops`; multiply-adds counted as 2): with the recommended ``depth=3``, ``R=16``, ``E=64`` and
``T=62`` frames, a 112 x 112 slice takes **1.65 GFLOP** forward (XLA's own count: 1.64), against about 14 GFLOP for
the paper's (2+1)D network; the temporal encoder is 0.40 GFLOP of it, the full-resolution level with the head 0.60.
``E=32`` costs 1.18 GFLOP, ``R=24`` 2.87 (the convolutions grow as ``R**2``). 528,436 parameters. Weights are
drawn as the paper's UNet's (PyTorch's default: uniform within 1/sqrt(fan-in)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxkin.nn.activations import final_activation, inverse_activation
from jaxkin.nn.inputs import INPUT_CURVES
from jaxkin.nn.unet import ConvWeights, UNetConfig, host_rng

__all__ = ["EncoderUNet", "forward_flops"]

_DN = ("NHWC", "HWIO", "NHWC")


def conv3x3(x, kernel, bias):
    """'Same' 2D convolution of ``x [B, H, W, Ci]`` with ``kernel [3, 3, Ci, Co]`` plus ``bias [Co]``."""
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN) + bias


def max_pool2(x):
    """2x2 max pooling, stride 2, of ``[B, H, W, C]``."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def up2(x, kernel, bias):
    """Transposed conv with kernel 2x2 and stride 2 of ``x [B, H, W, Ci]``, ``kernel [Ci, 2, 2, Co]``: each input
    pixel writes a 2x2 block of the output ``[B, 2H, 2W, Co]`` (a dense layer, then depth to space)."""
    b, h, w, _ = x.shape
    ci, _, _, co = kernel.shape
    y = (x.reshape(-1, ci) @ kernel.reshape(ci, 4 * co)).reshape(b, h, w, 2, 2, co)
    return jnp.transpose(y, (0, 1, 3, 2, 4, 5)).reshape(b, 2 * h, 2 * w, co) + bias


class DoubleConv(nnx.Module):
    """Two 3x3 convolutions with ELU: ``[B, H, W, c_in] -> [B, H, W, c_out]``."""

    def __init__(self, c_in: int, c_out: int, *, rng: np.random.Generator):
        self.conv_in = ConvWeights((3, 3, c_in, c_out), rng=rng)
        self.conv_out = ConvWeights((3, 3, c_out, c_out), rng=rng)

    def __call__(self, x):
        return jax.nn.elu(conv3x3(jax.nn.elu(conv3x3(x, *self.conv_in.arrays())), *self.conv_out.arrays()))


class TemporalEncoder(nnx.Module):
    """The per-voxel encoder: ``x [B, H, W, T]`` (and ``curves [B, T, 2]``) -> features ``[B, H, W, E]``."""

    def __init__(self, cfg: UNetConfig, *, rng: np.random.Generator):
        t, e = cfg.time_steps, cfg.temporal_features
        self.time_steps, self.condition = t, cfg.condition_on_input
        reads = t * (1 + INPUT_CURVES) if cfg.condition_on_input else t
        self.frames = ConvWeights((reads, 2 * e), rng=rng)  # rows: the TAC's T frames, then the curves' (t, c)
        self.features = ConvWeights((2 * e, e), rng=rng)

    def first_layer(self, x, curves=None):
        """The first dense layer before its ELU, ``[B, H, W, 2E]``: the TAC part per voxel, the curves' part once
        per sample, added to every voxel."""
        kernel, bias = self.frames.arrays()
        t = self.time_steps
        if x.shape[-1] != t:
            raise ValueError(f"the network expects {t} time steps, got {x.shape[-1]}")
        h = x @ kernel[:t] + bias
        if self.condition:
            if curves is None:
                raise ValueError("this network is conditioned on the input function: give its curves")
            h = h + (curves.reshape(curves.shape[0], -1) @ kernel[t:])[:, None, None, :]
        return h

    def __call__(self, x, curves=None):
        kernel, bias = self.features.arrays()
        return jax.nn.elu(jax.nn.elu(self.first_layer(x, curves)) @ kernel + bias)


class EncoderUNet(nnx.Module):
    """``model(x [B, H, W, T], curves [B, T, 2] or None) -> parameters [B, H, W, P]`` (after the final activation);
    ``model.logits(...)`` gives the raw outputs. ``convs`` is accepted for the paper's UNet's signature and unused."""

    def __init__(self, cfg: UNetConfig, *, rngs: nnx.Rngs):
        if cfg.architecture != "encoder_unet":
            raise ValueError(f"EncoderUNet builds architecture 'encoder_unet', not {cfg.architecture!r}")
        self.cfg = cfg
        rng = host_rng(rngs)
        e, features = cfg.temporal_features, [cfg.root_features * 2**d for d in range(cfg.depth + 1)]
        self.encoder = TemporalEncoder(cfg, rng=rng)
        c, down = e, []
        for f in features[:-1]:
            down.append(DoubleConv(c, f, rng=rng))
            c = f
        self.down = nnx.List(down)
        self.bottleneck = DoubleConv(c, features[-1], rng=rng)
        d = list(reversed(range(cfg.depth)))
        self.up = nnx.List([ConvWeights((features[i + 1], 2, 2, features[i]), rng=rng) for i in d])
        self.decode = nnx.List([DoubleConv(2 * features[i], features[i], rng=rng) for i in d])
        self.head = ConvWeights((features[0] + e, e), rng=rng)
        self.out = ConvWeights((e, cfg.out_channels), rng=rng)
        if cfg.init_params:
            self.out.kernel = nnx.Param(jnp.zeros_like(self.out.kernel[...]))
            self.out.bias = nnx.Param(inverse_activation(cfg.final_activation, cfg.init_params, cfg.lower, cfg.upper))

    def logits(self, x, curves=None):
        m = self.cfg.size_multiple
        if x.ndim != 4 or x.shape[1] % m or x.shape[2] % m:
            raise ValueError(f"expected x [B, H, W, T] with H and W multiples of {m}, got shape {x.shape}")
        temporal = self.encoder(x, curves)
        y, skips = temporal, []
        for block in self.down:
            y = block(y)
            skips.append(y)
            y = max_pool2(y)
        y = self.bottleneck(y)
        for up, block, skip in zip(self.up, self.decode, reversed(skips)):
            y = block(jnp.concatenate([up2(y, *up.arrays()), skip], axis=-1))
        kernel, bias = self.head.arrays()
        y = jax.nn.elu(jnp.concatenate([y, temporal], axis=-1) @ kernel + bias)
        kernel, bias = self.out.arrays()
        return y @ kernel + bias

    def __call__(self, x, curves=None, *, convs=None):
        cfg = self.cfg
        return final_activation(cfg.final_activation)(self.logits(x, curves), cfg.lower, cfg.upper)


def forward_flops(cfg: UNetConfig, height: int, width: int) -> int:
    """Floating-point operations of one slice's forward (multiply-adds as 2; biases, activations and pooling not
    counted) of the network of ``cfg`` at ``height x width``."""
    t, e, p = cfg.time_steps, cfg.temporal_features, cfg.out_channels
    features = [cfg.root_features * 2**d for d in range(cfg.depth + 1)]
    pixels = [height * width // 4**d for d in range(cfg.depth + 1)]
    reads = t * (1 + INPUT_CURVES) if cfg.condition_on_input else t
    macs = pixels[0] * (t * 2 * e + 2 * e * e) + (reads - t) * 2 * e  # encoder (the curves once per slice)
    c = e
    for d, f in enumerate(features):  # down blocks and the bottleneck
        macs += pixels[d] * 9 * (c * f + f * f)
        c = f
    for d in range(cfg.depth):  # upsampling (one input pixel per 2x2 block) and decoder blocks
        f = features[d]
        macs += pixels[d + 1] * features[d + 1] * 4 * f + pixels[d] * 9 * (2 * f * f + f * f)
    macs += pixels[0] * ((features[0] + e) * e + e * p)  # head
    return 2 * macs
