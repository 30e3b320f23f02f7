"""Conventional voxel-wise kinetic fitting.

* :mod:`.lm`: basis-function start (:mod:`.basis`) + bounded, vmapped Levenberg–Marquardt of TACs ``[N, F]``;
* :mod:`.weights`: frame weights (none, duration, poisson);
* :mod:`.graphical`: the Patlak and Logan plots;
* :mod:`.baseline`: the paper's scipy ``curve_fit`` on an independent NumPy model;
* :mod:`.methods`: the fitting methods of a chunk of voxels (:class:`LM`, :class:`CurveFit`, :class:`Graphical`) and
  :func:`output_maps`, which maps each model gives, with their units;
* :mod:`.mask`: the automatic mask of a whole image, the body;
* :mod:`.volume`: :func:`fit_volume`, whole 4D images, masked voxels streamed in fixed-size chunks over the devices;
* :mod:`.options`, :mod:`.maps`: the maps of a PET file written as BIDS derivatives, one :class:`FitRequest` (with
  its :class:`FitOptions`) -> :func:`write_fit_maps` -> :class:`FitMaps`;
* :mod:`.delay`: one input delay for a scan;
* :mod:`.regional`: regional TACs fitted with standard errors (delta method for Ki/VT), AIC and flags, and
  :mod:`.tables`: written as tables, one :class:`RegionalRequest` -> :func:`write_regional_fits`.
"""

from jaxkin.fitting.baseline import NumpyModel, curve_fit_tac, curve_fit_tacs
from jaxkin.fitting.graphical import GRAPHICAL_METHODS, LinearPlot, PlotInput, logan, patlak
from jaxkin.fitting.lm import fit_chunk, fit_tacs, refine_tacs
from jaxkin.fitting.maps import FitMaps, FitRequest, write_fit_maps
from jaxkin.fitting.mask import body_mask
from jaxkin.fitting.methods import LM, METHODS, CurveFit, Graphical, output_maps
from jaxkin.fitting.options import DELAY_MODES, FIT_MODELS, FitOptions, OptionError
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
from jaxkin.fitting.tables import RegionalRequest, RegionalTables, write_regional_fits
from jaxkin.fitting.volume import VolumeFit, fit_volume
from jaxkin.fitting.weights import frame_weights

__all__ = [
    "FitResult", "FitSettings", "fit_tacs", "fit_chunk", "refine_tacs", "frame_weights",
    "RegionalFit", "fit_regions", "compare_regional_fits", "RegionalRequest", "RegionalTables", "write_regional_fits",
    "FLAG_NAMES", "FLAG_NOT_CONVERGED", "FLAG_NONFINITE_INPUT", "FLAG_NO_SIGNAL", "FLAG_NEGATIVE_VALUES",
    "FLAG_AT_BOUND",
    "LM", "CurveFit", "Graphical", "METHODS", "output_maps",
    "VolumeFit", "fit_volume", "body_mask",
    "FitOptions", "FitRequest", "FitMaps", "write_fit_maps", "OptionError", "FIT_MODELS", "DELAY_MODES",
    "GRAPHICAL_METHODS", "PlotInput", "LinearPlot", "patlak", "logan",
    "NumpyModel", "curve_fit_tac", "curve_fit_tacs",
]
