"""Exact, frame-averaged compartment models as pure JAX functions.

The models (:mod:`.models`) are sums of exponential convolutions of the input, averaged over each frame; an
**evaluator** computes those frame means for one scan, once prepared from its input function and frames. Every
evaluator offers the same interface (:class:`~jaxkin.kinetics.models.Evaluator`): ``frame_conv(rate)`` for rates of
any shape, ``integral_mean()`` and ``blood_mean()``.

* :class:`KineticInput` (:func:`prepare`, the default; :mod:`.tabulated`): the exact convolution tabulated once per
  scan, in float64, on a grid of rates (:mod:`.rate_grid`) with its analytic rate derivative, and any rate evaluated
  by cubic Hermite interpolation: O(frames) per voxel, differentiable, accurate to ~1e-8 relative.
* :class:`KnotGrid` (:func:`prepare_exact`; :mod:`.exact`): the exact recurrence over every knot of the input (a
  sequential scan), O(knots) per voxel; the reference, differentiable in the input too.
* :class:`UniformGrid` (:func:`prepare_convolve`; :mod:`.uniform`): the paper's style, a ``jnp.convolve`` on a
  uniform fine grid; first-order accurate, for cross-checks only.
* :class:`DelayedInput` (:func:`prepare_delayed`; :mod:`.delayed`): the input delayed per voxel; its methods take the
  delay too, and a model's TAC with it takes the delay as its last parameter.

:mod:`.bounds`: the bounds presets and bounds specifications of the fits; :mod:`.chunked`: model TACs of any number
of voxels in fixed-size chunks.

Units: time in minutes, K1 in ml/cm^3/min, rates in 1/min, activity in kBq/ml, vB dimensionless.
"""

from jaxkin.kinetics.bounds import (
    BOUNDS_PRESETS,
    DEFAULT_BOUNDS,
    DEFAULT_DELAY_RANGE,
    bounds_fields,
    check_bound_names,
    fixed_values,
    parse_fixed,
    resolve_bounds,
    with_fixed,
)
from jaxkin.kinetics.chunked import tacs_in_chunks
from jaxkin.kinetics.delayed import DelayedInput, prepare_delayed
from jaxkin.kinetics.exact import KnotGrid, prepare_exact
from jaxkin.kinetics.models import (
    FDG_MODEL,
    MODELS,
    UNITS,
    Evaluator,
    KineticModel,
    get_model,
    one_tissue,
    two_tissue,
    two_tissue_irreversible,
)
from jaxkin.kinetics.rate_grid import RateGrid
from jaxkin.kinetics.tabulated import KineticInput, prepare
from jaxkin.kinetics.uniform import UniformGrid, prepare_convolve

__all__ = [
    "Evaluator",
    "KineticInput",
    "prepare",
    "RateGrid",
    "KnotGrid",
    "prepare_exact",
    "UniformGrid",
    "prepare_convolve",
    "DelayedInput",
    "prepare_delayed",
    "KineticModel",
    "MODELS",
    "UNITS",
    "FDG_MODEL",
    "get_model",
    "one_tissue",
    "two_tissue_irreversible",
    "two_tissue",
    "BOUNDS_PRESETS",
    "DEFAULT_BOUNDS",
    "DEFAULT_DELAY_RANGE",
    "resolve_bounds",
    "check_bound_names",
    "parse_fixed",
    "with_fixed",
    "fixed_values",
    "bounds_fields",
    "tacs_in_chunks",
]
