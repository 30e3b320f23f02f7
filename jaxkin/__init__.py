"""jaxkin: kinetic modelling of dynamic PET in JAX.

Time in minutes, rates in 1/min, activity in kBq/ml inside the library (files are converted at the boundary).

The names most users need; the rest lives in the subpackages, data flowing one way through them:

* :mod:`jaxkin.kinetics`: evaluators of the frame-averaged convolution, the compartment models, their bounds;
* :mod:`jaxkin.io`: files (BIDS-PET, blood, labels, regional tables, maps, the dataset layout);
* :mod:`jaxkin.regions`: regional TACs, map statistics and the image-derived input;
* :mod:`jaxkin.phantom`: the simulated whole-body FDG dataset with ground truth;
* :mod:`jaxkin.fitting`: voxel-wise and regional fits (LM, basis functions, graphical methods, curve_fit);
* :mod:`jaxkin.nn`, :mod:`jaxkin.network`: the (2+1)D UNet and its self-supervised training and prediction;
* :mod:`jaxkin.evaluation`: metrics, reports and figures against ground truth; :mod:`jaxkin.distributed`: devices
  and hosts.

The network half (Flax, optax, orbax) is imported on first use, so ``import jaxkin`` stays light.
"""

import importlib

from jaxkin._version import __version__
from jaxkin.errors import InputError
from jaxkin.fitting import FitResult, fit_tacs, fit_volume, logan, patlak
from jaxkin.frames import FrameSchedule
from jaxkin.input_function import InputFunction, feng_input
from jaxkin.io.blood import Blood, load_blood
from jaxkin.io.labels import read_labels
from jaxkin.io.maps import write_map
from jaxkin.io.pet import load_pet
from jaxkin.kinetics import MODELS, KineticModel, get_model, prepare, prepare_delayed
from jaxkin.phantom import simulate_dataset

#: Names of the network half, imported from their module on first access.
_LAZY = {
    "TrainConfig": "jaxkin.network",
    "load_config": "jaxkin.network",
    "load_predictor": "jaxkin.network",
    "Predictor": "jaxkin.network",
    "write_parameter_maps": "jaxkin.network",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jaxkin' has no attribute {name!r}")


__all__ = [
    "__version__",
    "InputError",
    "FrameSchedule",
    "InputFunction",
    "feng_input",
    "MODELS",
    "KineticModel",
    "get_model",
    "prepare",
    "prepare_delayed",
    "load_pet",
    "load_blood",
    "Blood",
    "read_labels",
    "write_map",
    "simulate_dataset",
    "FitResult",
    "fit_tacs",
    "fit_volume",
    "patlak",
    "logan",
    *_LAZY,
]
