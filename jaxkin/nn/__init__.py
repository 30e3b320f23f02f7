"""Neural networks: the paper's spatio-temporal UNet (:mod:`.unet`, Flax NNX), a per-voxel temporal encoder followed
by a 2D UNet (:mod:`.encoder_unet`), their input (:mod:`.inputs`), final activations (:mod:`.activations`), and the
self-supervised loss and TAC metrics (:mod:`.loss`).

Only :mod:`.unet` and :mod:`.encoder_unet` need Flax; it is imported on first use of its names, so the pure-JAX modules (the TAC metrics
that :mod:`jaxkin.evaluation` shares) load without it.
"""

import importlib

from jaxkin.nn.activations import FINAL_ACTIVATIONS, final_activation
from jaxkin.nn.inputs import network_input, pad_time

#: Names of :mod:`jaxkin.nn.unet`, imported on first access.
_LAZY = ("UNet", "UNetConfig", "count_parameters")


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module("jaxkin.nn.unet"), name)
    raise AttributeError(f"module 'jaxkin.nn' has no attribute {name!r}")


__all__ = ["FINAL_ACTIVATIONS", "final_activation", "UNet", "UNetConfig", "count_parameters", "network_input",
           "pad_time"]
