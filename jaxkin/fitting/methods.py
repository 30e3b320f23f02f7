"""How the TACs of a chunk are fitted: one small frozen object per fitting method, with the one interface that
:func:`jaxkin.fitting.fit_volume` streams chunks of voxels through.

* :class:`LM`: jaxkin's fit of a compartment model (basis-function start + bounded Levenberg–Marquardt,
  :func:`jaxkin.fitting.fit_chunk`), the input delay of every voxel fitted too when the kinetic input is a
  :class:`jaxkin.kinetics.DelayedInput`;
* :class:`CurveFit`: the scipy ``curve_fit`` baseline on an exact NumPy model (:mod:`jaxkin.fitting.baseline`);
* :class:`Graphical`: the Patlak or Logan plot (:mod:`jaxkin.fitting.graphical`).

The interface (:class:`FitMethod`): ``model``, the name of the model or plot the maps are of; ``fits_delay``;
``maps(delay)``, the ``{name: unit}`` of the maps of a fit; ``launch(tacs, at)``, which starts the fit of one padded
chunk ``tacs [C, F]`` (kBq/ml) on the devices without waiting for it; and ``collect(handle, tacs, n, at)``, the
results of the chunk's first ``n`` TACs as NumPy arrays ``{map name: [>= n]}``. ``at`` (:class:`Placement`) holds
the scan's kinetic input, on the host and on the devices, and the shardings of a chunk.

:func:`output_maps` says which maps a model or plot gives, with their units.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Protocol

import jax
import numpy as np

from jaxkin.decay import F18_HALF_LIFE_MIN
from jaxkin.fitting.baseline import NumpyModel, curve_fit_tacs
from jaxkin.fitting.graphical import GRAPHICAL_METHODS, T_STAR, PlotInput
from jaxkin.fitting.lm import fit_chunk, weighted_r2
from jaxkin.fitting.result import FLAG_NOT_CONVERGED, FitSettings, aicc
from jaxkin.fitting.weights import frame_weights
from jaxkin.kinetics import DEFAULT_DELAY_RANGE, FDG_MODEL, UNITS, DelayedInput, KineticInput, get_model, resolve_bounds

__all__ = ["FitMethod", "LM", "CurveFit", "Graphical", "Placement", "METHODS", "output_maps", "DIAGNOSTIC_UNITS",
           "SE_SUFFIX"]

#: Units of the per-voxel fit diagnostics.
DIAGNOSTIC_UNITS = {"SSE": "(kBq/mL)^2", "R2": "1", "flags": "1", "AICc": "1"}

#: The suffix of a standard-error map's name: ``meas-KiSE`` is the standard error of ``meas-Ki``.
SE_SUFFIX = "SE"


def output_maps(model: str, *, diagnostics: bool = False, delay: bool = False,
                uncertainty: bool = False) -> dict[str, str]:
    """``{map name: unit}`` of what a fit of ``model`` estimates, in order: a compartment model's parameters,
    macro-parameters (the input ``delay`` with a per-voxel delay) and SSE, or a graphical method's slope and
    intercept. ``diagnostics`` adds R2 (and, for compartment models, the warning ``flags`` and the ``AICc``): every map
    :func:`jaxkin.fitting.fit_volume` returns. ``uncertainty`` adds the standard error of every parameter and
    macro-parameter of a compartment model (``<name>SE``, e.g. ``KiSE``, in the parameter's unit; ``delaySE`` with a
    per-voxel delay), R2 and the flags: what :func:`jaxkin.fitting.write_fit_maps` writes with ``uncertainty``."""
    if model in GRAPHICAL_METHODS:
        g = GRAPHICAL_METHODS[model]
        maps = {g.slope: g.slope_unit, "intercept": g.intercept_unit}
        return maps | ({"R2": DIAGNOSTIC_UNITS["R2"]} if diagnostics or uncertainty else {})
    units = get_model(model).units | ({"delay": UNITS["delay"]} if delay else {})
    maps = units | {"SSE": DIAGNOSTIC_UNITS["SSE"]}
    if uncertainty:
        maps |= {f"{name}{SE_SUFFIX}": unit for name, unit in units.items()}
    extra = ("R2", "flags", "AICc") if diagnostics else ("R2", "flags") if uncertainty else ()
    return maps | {name: DIAGNOSTIC_UNITS[name] for name in extra}


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where the chunks of a scan are fitted: its kinetic input ``kin`` on the host and replicated on every device
    (``kin_on_devices``), the sharding that splits a chunk's rows (voxels) over the devices and the one that
    replicates."""

    kin: KineticInput
    kin_on_devices: KineticInput
    rows: jax.sharding.Sharding
    replicated: jax.sharding.Sharding

    @classmethod
    def over(cls, kin: KineticInput, parallel) -> "Placement":
        """``kin`` placed on the devices of ``parallel`` (a :class:`jaxkin.distributed.DataParallel`)."""
        return cls(kin, jax.device_put(kin, parallel.replicated), parallel.batch_sharding, parallel.replicated)

    @property
    def delay(self) -> bool:
        """Whether the input delay of every voxel is fitted (the kinetic input is a DelayedInput)."""
        return isinstance(self.kin, DelayedInput)

    def put(self, array, *, per_row: bool = True):
        """``array`` on the devices: its rows split over them, or (``per_row=False``) replicated."""
        return jax.device_put(array, self.rows if per_row else self.replicated)


class FitMethod(Protocol):
    """What :func:`jaxkin.fitting.fit_volume` needs of a fitting method (see the module)."""

    model: str
    fits_delay: ClassVar[bool]

    def maps(self, delay: bool = False) -> dict[str, str]: ...

    def launch(self, tacs: np.ndarray, at: Placement): ...

    def collect(self, handle, tacs: np.ndarray, n: int, at: Placement) -> dict[str, np.ndarray]: ...


@dataclasses.dataclass(frozen=True)
class LM:
    """jaxkin's fit of the compartment model ``model``: basis-function start + ``n_iter`` iterations of bounded
    Levenberg–Marquardt (:func:`jaxkin.fitting.fit_chunk`), on the devices.

    ``bounds``: a preset or ranges (:func:`jaxkin.kinetics.resolve_bounds`; default ``physiological``).
    ``weights``: ``none``, ``duration`` or ``poisson`` (:func:`jaxkin.fitting.frame_weights`, with the
    radionuclide's ``half_life`` in min and ``decay_corrected``). ``uncertainty``: also the standard-error maps
    (``<name>SE``). ``delay_range``: the bounds (min) of the input delay, fitted per voxel when the kinetic input is a
    :class:`jaxkin.kinetics.DelayedInput`."""

    fits_delay: ClassVar[bool] = True
    model: str = FDG_MODEL
    bounds: object = None
    weights: str = "none"
    n_iter: int = 16
    uncertainty: bool = False
    half_life: float = F18_HALF_LIFE_MIN
    decay_corrected: bool = True
    delay_range: tuple[float, float] = DEFAULT_DELAY_RANGE

    def maps(self, delay: bool = False) -> dict[str, str]:
        return output_maps(self.model, diagnostics=True, delay=delay, uncertainty=self.uncertainty)

    def settings(self, delay: bool = False) -> FitSettings:
        """The static settings of :func:`jaxkin.fitting.fit_chunk`: the bounds (the delay's last with ``delay``)."""
        lower, upper, _ = resolve_bounds(self.model, self.bounds)
        if delay:
            lower, upper = lower + (float(self.delay_range[0]),), upper + (float(self.delay_range[1]),)
        return FitSettings(model=self.model, n_iter=self.n_iter, lower=lower, upper=upper, delay=delay)

    def launch(self, tacs: np.ndarray, at: Placement):
        w = frame_weights(self.weights, at.kin, tacs, half_life=self.half_life, decay_corrected=self.decay_corrected)
        w = at.put(np.asarray(w), per_row=np.ndim(w) == 2)
        return fit_chunk(at.put(tacs), w, at.kin_on_devices, self.settings(at.delay))

    def collect(self, handle, tacs: np.ndarray, n: int, at: Placement) -> dict[str, np.ndarray]:
        r = handle.to_numpy()
        names = get_model(self.model).param_names + ("delay",) * at.delay
        values = {name: r.params[:, i] for i, name in enumerate(names)}
        values[r.macro_name] = r.macro
        values.update(SSE=r.sse, R2=r.r2, flags=r.flags, AICc=r.aicc)
        if self.uncertainty:
            values |= {f"{name}{SE_SUFFIX}": r.stderr[:, i] for i, name in enumerate(names)}
            values[f"{r.macro_name}{SE_SUFFIX}"] = r.macro_stderr
        return values


@dataclasses.dataclass(frozen=True, eq=False)
class CurveFit:
    """The scipy ``curve_fit`` baseline (:func:`jaxkin.fitting.curve_fit_tacs`) of the compartment model of
    ``numpy_model`` (the scan's exact NumPy model), one TAC after the other on the host. ``bounds``, ``weights``,
    ``half_life`` and ``decay_corrected`` as for :class:`LM`."""

    fits_delay: ClassVar[bool] = False
    numpy_model: NumpyModel
    bounds: object = None
    weights: str = "none"
    half_life: float = F18_HALF_LIFE_MIN
    decay_corrected: bool = True

    @property
    def model(self) -> str:
        return self.numpy_model.model.name

    def maps(self, delay: bool = False) -> dict[str, str]:
        return output_maps(self.model, diagnostics=True)

    def launch(self, tacs: np.ndarray, at: Placement):
        return None  # nothing runs on the devices: collect fits

    def collect(self, handle, tacs: np.ndarray, n: int, at: Placement) -> dict[str, np.ndarray]:
        w = None
        if self.weights != "none":
            w = np.asarray(frame_weights(self.weights, at.kin, tacs[:n], half_life=self.half_life,
                                         decay_corrected=self.decay_corrected))
        lower, upper, _ = resolve_bounds(self.model, self.bounds)
        params, sse, ok = curve_fit_tacs(tacs[:n], self.numpy_model, weights=w, lower=lower, upper=upper)
        values = get_model(self.model).named_maps(params)
        values["SSE"] = sse
        y = tacs[:n].astype(np.float64)
        w_full = np.ones(y.shape[-1]) if w is None else w
        with jax.enable_x64(True):
            values["R2"] = np.asarray(weighted_r2(y, sse, w_full))
            n_free = int(np.count_nonzero(np.asarray(lower) < np.asarray(upper)))  # fixed parameters do not count
            values["AICc"] = np.asarray(aicc(sse, np.sum(w_full * y * y, axis=-1), y.shape[-1], n_free))
        values["flags"] = np.where(ok, 0, FLAG_NOT_CONVERGED)
        return values


@dataclasses.dataclass(frozen=True, eq=False)
class Graphical:
    """The graphical method ``model`` (``patlak`` or ``logan``, :data:`jaxkin.fitting.graphical.GRAPHICAL_METHODS`)
    of the scan whose input is ``plot`` (:class:`jaxkin.fitting.PlotInput`), over the frames with mid time at least
    ``t_star`` (min), on the devices."""

    fits_delay: ClassVar[bool] = False
    model: str
    plot: PlotInput
    t_star: float = T_STAR

    def __post_init__(self):
        if self.model not in GRAPHICAL_METHODS:
            raise ValueError(f"model: {self.model!r} is not a graphical method; choose {', '.join(GRAPHICAL_METHODS)}")

    def maps(self, delay: bool = False) -> dict[str, str]:
        return output_maps(self.model, diagnostics=True)

    def launch(self, tacs: np.ndarray, at: Placement):
        return GRAPHICAL_METHODS[self.model].fn(at.put(tacs), at.put(self.plot, per_row=False), self.t_star)

    def collect(self, handle, tacs: np.ndarray, n: int, at: Placement) -> dict[str, np.ndarray]:
        return {GRAPHICAL_METHODS[self.model].slope: handle.slope, "intercept": handle.intercept, "R2": handle.r2}


#: The fitting methods of compartment models by name (graphical methods are plots, not fits of a model).
METHODS = {"lm": LM, "curve_fit": CurveFit}
