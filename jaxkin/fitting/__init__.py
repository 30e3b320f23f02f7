"""Conventional voxel-wise kinetic fitting.

* :mod:`.lm`: basis-function start (:mod:`.basis`) + bounded, vmapped Levenberg–Marquardt of TACs ``[N, F]``;
* :mod:`.weights`: frame weights (none, duration, poisson);
* :mod:`.volume`: whole 4D images, masked voxels streamed in fixed-size chunks over the devices, and
  :func:`write_fit_maps`, a PET file's maps written as BIDS derivatives;
* :mod:`.graphical`: the Patlak and Logan plots;
* :mod:`.regional`: regional TACs fitted with standard errors (delta method for Ki/VT), AIC and flags;
* :mod:`.baseline`: the paper's scipy ``curve_fit`` on an independent NumPy model.

:func:`output_maps` says which maps each method writes, with their units.
"""

from jaxkin.fitting.baseline import NumpyModel, curve_fit_tac, curve_fit_tacs
from jaxkin.fitting.graphical import GRAPHICAL_METHODS, LinearPlot, PlotInput, logan, patlak
from jaxkin.fitting.lm import fit_chunk, fit_tacs, refine_tacs
from jaxkin.fitting.regional import RegionalFit, compare_regional_fits, fit_regions
from jaxkin.fitting.result import (
    FLAG_AT_BOUND,
    FLAG_NAMES,
    FLAG_NEGATIVE_VALUES,
    FLAG_NO_SIGNAL,
    FLAG_NONFINITE_INPUT,
    FLAG_NOT_CONVERGED,
    FitResult,
    FitSettings,
)
from jaxkin.fitting.volume import VolumeFit, body_mask, fit_volume, output_maps, write_fit_maps
from jaxkin.fitting.weights import frame_weights

__all__ = [
    "FitResult", "FitSettings", "fit_tacs", "fit_chunk", "refine_tacs", "frame_weights", "RegionalFit", "fit_regions", "compare_regional_fits",
    "FLAG_NAMES", "FLAG_NOT_CONVERGED", "FLAG_NONFINITE_INPUT", "FLAG_NO_SIGNAL", "FLAG_NEGATIVE_VALUES",
    "FLAG_AT_BOUND",
    "VolumeFit", "fit_volume", "write_fit_maps", "output_maps", "body_mask",
    "GRAPHICAL_METHODS", "PlotInput", "LinearPlot", "patlak", "logan",
    "NumpyModel", "curve_fit_tac", "curve_fit_tacs",
]
