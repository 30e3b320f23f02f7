"""jaxkin: kinetic modelling of dynamic PET in JAX.

Time in minutes, rates in 1/min, activity in kBq/ml inside the library (files are converted at the boundary).

The curated public API: the kinetic core (frames, input functions, models), data at the edges (BIDS-PET, the
phantom), conventional fitting, evaluation metrics and the self-supervised network. The network half (Flax, optax,
orbax) is imported on first use, so ``import jaxkin`` stays light. Subpackages: :mod:`jaxkin.fitting`,
:mod:`jaxkin.data`, :mod:`jaxkin.nn`, :mod:`jaxkin.network`, :mod:`jaxkin.evaluation`, :mod:`jaxkin.distributed`.
"""

import importlib

from jaxkin._version import __version__
from jaxkin.data.bids import load_input_function, load_labels, load_pet, write_map
from jaxkin.data.blood import Blood, load_blood
from jaxkin.data.phantom import simulate_dataset, simulate_subject
from jaxkin.errors import InputError
from jaxkin.evaluation.metrics import error_statistics, tac_metrics
from jaxkin.fitting import FitResult, PlotInput, fit_tacs, fit_volume, frame_weights, logan, output_maps, patlak
from jaxkin.frames import FrameSchedule
from jaxkin.input_function import FengParameters, InputFunction, feng, feng_input
from jaxkin.kinetics import (
    MODELS,
    UNITS,
    KineticInput,
    DelayedInput,
    KineticModel,
    KnotGrid,
    RateGrid,
    UniformGrid,
    get_model,
    one_tissue,
    prepare,
    prepare_convolve,
    prepare_delayed,
    prepare_exact,
    two_tissue,
    two_tissue_irreversible,
)

#: Names of the network half, imported from their module on first access.
_LAZY = {
    "TrainConfig": "jaxkin.network",
    "load_config": "jaxkin.network",
    "load_predictor": "jaxkin.network",
    "Predictor": "jaxkin.network",
    "write_parameter_maps": "jaxkin.network",
    "UNet": "jaxkin.nn",
    "UNetConfig": "jaxkin.nn",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jaxkin' has no attribute {name!r}")


__all__ = [
    "__version__",
    "InputError",
    "FrameSchedule",
    "FengParameters",
    "InputFunction",
    "feng",
    "feng_input",
    "MODELS",
    "UNITS",
    "KineticInput",
    "DelayedInput",
    "KineticModel",
    "KnotGrid",
    "RateGrid",
    "UniformGrid",
    "get_model",
    "one_tissue",
    "prepare",
    "prepare_convolve",
    "prepare_delayed",
    "prepare_exact",
    "two_tissue",
    "two_tissue_irreversible",
    "load_input_function",
    "load_blood",
    "Blood",
    "load_labels",
    "load_pet",
    "write_map",
    "simulate_dataset",
    "simulate_subject",
    "FitResult",
    "fit_tacs",
    "frame_weights",
    "fit_volume",
    "output_maps",
    "PlotInput",
    "patlak",
    "logan",
    "error_statistics",
    "tac_metrics",
    *_LAZY,
]
