"""jaxkin: kinetic modelling of dynamic PET in JAX.

Time in minutes, rates in 1/min, activity in kBq/ml inside the library (files are converted at the boundary).
"""

from jaxkin._version import __version__

from jaxkin.errors import InputError
from jaxkin.frames import FrameSchedule
from jaxkin.input_function import FengParameters, InputFunction, feng, feng_input
from jaxkin.kinetics import (
    MODELS,
    KineticInput,
    KineticModel,
    KnotGrid,
    RateGrid,
    UniformGrid,
    get_model,
    one_tissue,
    prepare,
    prepare_convolve,
    prepare_exact,
    two_tissue,
    two_tissue_irreversible,
)
from jaxkin.data.bids import load_input_function, load_labels, load_pet, write_map
from jaxkin.data.phantom import simulate_dataset, simulate_subject
from jaxkin.fitting import FitResult, PlotInput, fit_tacs, fit_volume, frame_weights, logan, patlak
from jaxkin.evaluation.metrics import error_statistics, tac_metrics

__all__ = [
    "InputError",
    "FrameSchedule",
    "FengParameters",
    "InputFunction",
    "feng",
    "feng_input",
    "MODELS",
    "KineticInput",
    "KineticModel",
    "KnotGrid",
    "RateGrid",
    "UniformGrid",
    "get_model",
    "one_tissue",
    "prepare",
    "prepare_convolve",
    "prepare_exact",
    "two_tissue",
    "two_tissue_irreversible",
    "load_input_function",
    "load_labels",
    "load_pet",
    "write_map",
    "simulate_dataset",
    "simulate_subject",
    "FitResult",
    "fit_tacs",
    "frame_weights",
    "fit_volume",
    "PlotInput",
    "patlak",
    "logan",
    "error_statistics",
    "tac_metrics",
]
