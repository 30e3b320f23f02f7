"""The compartment models: their parameters, units, bounds, macro-parameters and frame-averaged TACs.

Every model's tissue curve is a sum of exponential convolutions of the plasma input ``C_p``,

    C_T(t) = sum_k a_k (C_p * e^{-b_k t})(t),        C(t) = (1 - vB) C_T(t) + vB C_b(t),

with amplitudes ``a_k`` and rates ``b_k`` that depend on the micro-parameters (a rate of 0 is the running
integral of ``C_p``). ``C_b`` is the whole-blood curve, by default the input itself (an image-derived
input). Model values are **frame averages**, computed by any evaluator of the frame-averaged convolution
(:class:`Evaluator`); with a :class:`~jaxkin.kinetics.delayed.DelayedInput` the input delay is one more parameter,
the last.

Units: time in minutes, K1 in ml/cm^3/min, rates in 1/min, activity in kBq/ml, vB dimensionless, delay in min.
Parameter order is ``K1, k2, k3, vB`` (``K1, k2, k3, k4, vB`` for the reversible model, ``K1, k2, vB`` for the
one-tissue model).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxkin.kinetics.delayed import DelayedInput

__all__ = [
    "Evaluator",
    "KineticModel",
    "MODELS",
    "UNITS",
    "FDG_MODEL",
    "get_model",
    "one_tissue",
    "two_tissue_irreversible",
    "two_tissue",
]


class Evaluator(Protocol):
    """What the models need of a scan: the frame means ``[..., F]`` of the convolutions of its input.

    :class:`~jaxkin.kinetics.tabulated.KineticInput` (the default), :class:`~jaxkin.kinetics.exact.KnotGrid`,
    :class:`~jaxkin.kinetics.uniform.UniformGrid` and :class:`~jaxkin.kinetics.delayed.DelayedInput` (whose methods
    also take a ``delay``, min, default 0) all provide it."""

    def frame_conv(self, rate) -> jax.Array:
        """Frame means of ``(C_p * e^{-rate t})``, ``rate [...]`` (1/min) -> ``[..., F]`` (kBq/ml*min)."""

    def integral_mean(self) -> jax.Array:
        """Frame means of the running integral ``int_0^t C_p``, ``[F]`` (kBq/ml*min)."""

    def blood_mean(self) -> jax.Array:
        """Frame means of the whole blood, ``[F]`` (kBq/ml)."""


_TINY = 1e-12


# Each model's ``_components_*(params)`` returns ``(integral_amplitude, amplitudes [..., K], rates [..., K], vB)``:
# C_T = integral_amplitude * int C_p + sum_k amplitudes_k (C_p * e^{-rates_k t}). ``integral_amplitude`` is None
# for models without an irreversible (rate-0) term, so that no work is spent on it.


def _components_1tcm(p):
    k1, k2, vb = p[..., 0], p[..., 1], p[..., 2]
    return None, k1[..., None], k2[..., None], vb


def _components_2tcmirr(p):
    k1, k2, k3, vb = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    lam = k2 + k3
    # K1/lam * [k3 * int C_p + k2 * (C_p * e^{-lam t})]; the _TINY terms keep k2 = k3 = 0 finite (-> K1 int C_p).
    denom = lam + 2 * _TINY
    return k1 * (k3 + _TINY) / denom, (k1 * (k2 + _TINY) / denom)[..., None], lam[..., None], vb


_MIN_SPLIT = 1e-4  # smallest separation of the two rates of the reversible model (1/min)


def _components_2tcm(p):
    k1, k2, k3, k4, vb = p[..., 0], p[..., 1], p[..., 2], p[..., 3], p[..., 4]
    s = k2 + k3 + k4
    # alpha_{1,2} = (s -/+ sqrt(s^2 - 4 k2 k4)) / 2. The split is kept >= _MIN_SPLIT so that the
    # (removable) singularity at alpha1 = alpha2 stays finite; it is only reached outside the bounds.
    split = jnp.sqrt(jnp.maximum(s * s - 4 * k2 * k4, _MIN_SPLIT**2))
    a1, a2 = 0.5 * (s - split), 0.5 * (s + split)
    amplitudes = jnp.stack([k1 * (k3 + k4 - a1) / split, k1 * (a2 - k3 - k4) / split], axis=-1)
    return None, amplitudes, jnp.stack([a1, a2], axis=-1), vb


def _tac(components: Callable, params, kin: Evaluator):
    """The frame-averaged TACs ``[..., F]`` of a model given by its ``components`` (see above): the one TAC function
    of every model and evaluator. With a :class:`DelayedInput` the last parameter is the input delay (min)."""
    params = jnp.asarray(params)
    delay, delay_per_rate = (), ()  # the evaluator's delay argument: none, or the delay of each TAC
    if isinstance(kin, DelayedInput):
        params, d = params[..., :-1], params[..., -1]
        delay, delay_per_rate = (d,), (d[..., None],)
    integral_amplitude, amplitudes, rates, vb = components(params)
    conv = kin.frame_conv(rates, *delay_per_rate)  # [..., K, F]
    tissue = jnp.sum(amplitudes[..., None] * conv, axis=-2)
    if integral_amplitude is not None:
        tissue = tissue + integral_amplitude[..., None] * kin.integral_mean(*delay)
    return (1.0 - vb[..., None]) * tissue + vb[..., None] * kin.blood_mean(*delay)


def one_tissue(params, kin: Evaluator):
    """One-tissue model, ``params [..., 3] = K1, k2, vB`` -> frame-averaged TACs ``[..., F]`` (kBq/ml).

    With a :class:`~jaxkin.kinetics.delayed.DelayedInput`, ``params [..., 4]``: the delay (min) last."""
    return _tac(_components_1tcm, params, kin)


def two_tissue_irreversible(params, kin: Evaluator):
    """Irreversible two-tissue (FDG) model, ``params [..., 4] = K1, k2, k3, vB`` -> TACs ``[..., F]`` (kBq/ml).

    ``C_T = K1/(k2+k3) [k3 int C_p + k2 C_p * e^{-(k2+k3) t}]`` (the paper's Eq. 2). With a
    :class:`~jaxkin.kinetics.delayed.DelayedInput`, ``params [..., 5]``: the delay (min) last.
    """
    return _tac(_components_2tcmirr, params, kin)


def two_tissue(params, kin: Evaluator):
    """Reversible two-tissue model, ``params [..., 5] = K1, k2, k3, k4, vB`` -> TACs ``[..., F]`` (kBq/ml).

    With a :class:`~jaxkin.kinetics.delayed.DelayedInput`, ``params [..., 6]``: the delay (min) last."""
    return _tac(_components_2tcm, params, kin)


def _ki(p):
    return p[..., 0] * p[..., 2] / jnp.maximum(p[..., 1] + p[..., 2], _TINY)


def _vt_1tcm(p):
    return p[..., 0] / jnp.maximum(p[..., 1], _TINY)


def _vt_2tcm(p):
    return p[..., 0] / jnp.maximum(p[..., 1], _TINY) * (1.0 + p[..., 2] / jnp.maximum(p[..., 3], _TINY))


@dataclasses.dataclass(frozen=True)
class KineticModel:
    """A compartment model: its parameters, their units and bounds, the TAC and macro-parameters.

    :meth:`tac` evaluates it with any :class:`Evaluator`. ``components`` maps ``params [..., P]`` to the model's
    convolution terms (``(integral_amplitude, amplitudes [..., K], rates [..., K], vB)``, see :meth:`tac`);
    ``macros`` maps a macro-parameter name to a function of the parameters (``Ki`` in ml/cm^3/min, ``VT`` in
    ml/cm^3).

    Bounds: ``lower``/``upper`` are the **paper's** bounds (what the paper's network, its curve_fit baseline and
    the Table 1 experiments use; the ``paper`` preset); ``physiological_lower``/``physiological_upper`` are the
    ``physiological`` preset, the fits' default (see :data:`jaxkin.kinetics.bounds.BOUNDS_PRESETS`). :meth:`bounds`
    returns either.
    """

    name: str
    description: str
    param_names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    components: Callable
    macros: dict = dataclasses.field(default_factory=dict)
    physiological_lower: tuple[float, ...] = ()
    physiological_upper: tuple[float, ...] = ()

    def tac(self, params, kin: Evaluator):
        """Frame-averaged TACs ``[..., F]`` (kBq/ml) of ``params [..., P]`` for the scan ``kin``.

        ``C_T = integral_amplitude * int C_p + sum_k amplitudes_k (C_p * e^{-rates_k t})`` from :attr:`components`,
        and ``(1 - vB) C_T + vB C_b``. With a :class:`~jaxkin.kinetics.delayed.DelayedInput`, ``params [..., P + 1]``:
        the model's parameters, then the input delay (min; positive = the input and the whole blood arrive later)."""
        return _tac(self.components, params, kin)

    def bounds(self, preset: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(lower, upper)`` of the bounds preset ``preset`` (``physiological`` or ``paper``)."""
        presets = {"physiological": (self.physiological_lower, self.physiological_upper),
                   "paper": (self.lower, self.upper)}
        if preset not in presets:
            raise ValueError(f"unknown bounds preset {preset!r}; choose one of {', '.join(presets)}")
        return presets[preset]

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    @property
    def map_names(self) -> tuple[str, ...]:
        """The parameters, then the macro-parameters: the maps a fit or a network writes (``K1 k2 k3 vB Ki``)."""
        return self.param_names + tuple(self.macros)

    @property
    def units(self) -> dict:
        """``{name: unit}`` of every parameter and macro-parameter (from :data:`UNITS`)."""
        return {name: UNITS[name] for name in self.map_names}

    def macro_parameters(self, params) -> dict:
        """All macro-parameters of ``params [..., P]`` as a dict of arrays ``[...]``."""
        return {name: fn(jnp.asarray(params)) for name, fn in self.macros.items()}

    def named_maps(self, params) -> dict:
        """``{name: [...]}`` for every name of :attr:`map_names`: the parameters of ``params [..., P]`` (slices of
        it) and the macro-parameters computed from them (NumPy arrays of the parameters' dtype)."""
        maps = {name: params[..., i] for i, name in enumerate(self.param_names)}
        return maps | {name: np.asarray(v, params.dtype) for name, v in self.macro_parameters(params).items()}


#: Units of every kinetic parameter and macro-parameter jaxkin writes (BIDS-style strings; "1" = dimensionless).
UNITS: dict[str, str] = {"K1": "mL/cm3/min", "k2": "1/min", "k3": "1/min", "k4": "1/min", "vB": "1",
                         "Ki": "mL/cm3/min", "VT": "mL/cm3", "delay": "min"}

#: The compartment models by name (``1tcm``, ``2tcmirr``, ``2tcm``): parameters, units, bounds, TAC components.
MODELS: dict[str, KineticModel] = {
    "1tcm": KineticModel(
        name="1tcm",
        description="one-tissue compartment model",
        param_names=("K1", "k2", "vB"),
        lower=(0.01, 0.01, 0.0),
        upper=(2.0, 3.0, 1.0),
        components=_components_1tcm,
        macros={"VT": _vt_1tcm},
        physiological_lower=(0.001, 0.001, 0.0),
        physiological_upper=(3.0, 6.0, 1.0),
    ),
    "2tcmirr": KineticModel(
        name="2tcmirr",
        description="irreversible two-tissue compartment model (FDG; the paper's model)",
        param_names=("K1", "k2", "k3", "vB"),
        lower=(0.01, 0.01, 0.01, 0.0),
        upper=(2.0, 3.0, 1.0, 1.0),
        components=_components_2tcmirr,
        macros={"Ki": _ki},
        physiological_lower=(0.001, 0.001, 0.0, 0.0),
        physiological_upper=(3.0, 6.0, 1.0, 1.0),
    ),
    "2tcm": KineticModel(
        name="2tcm",
        description="reversible two-tissue compartment model",
        param_names=("K1", "k2", "k3", "k4", "vB"),
        lower=(0.01, 0.01, 0.01, 0.001, 0.0),
        upper=(2.0, 3.0, 1.0, 1.0, 1.0),
        components=_components_2tcm,
        macros={"VT": _vt_2tcm},
        physiological_lower=(0.001, 0.001, 0.0, 0.0001, 0.0),
        physiological_upper=(3.0, 6.0, 1.0, 1.0, 1.0),
    ),
}

#: The name of the paper's model (irreversible two-tissue, FDG): the network's and the phantom's.
FDG_MODEL = "2tcmirr"


def get_model(name: str) -> KineticModel:
    """The registered model called ``name`` (``1tcm``, ``2tcmirr`` or ``2tcm``)."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown kinetic model {name!r}; choose one of {', '.join(MODELS)}") from None
