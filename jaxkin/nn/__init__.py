"""Neural networks: the paper's spatio-temporal UNet and its final activations."""

from jaxkin.nn.activations import FINAL_ACTIVATIONS, final_activation
from jaxkin.nn.unet import UNet, UNetConfig, count_parameters, network_input, pad_time

__all__ = ["FINAL_ACTIVATIONS", "final_activation", "UNet", "UNetConfig", "count_parameters", "network_input", "pad_time"]
