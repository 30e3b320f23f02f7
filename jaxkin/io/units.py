"""Units at the file boundary: activity concentrations and times as files write them, turned into kBq/ml and min.

Accepted activity concentrations (case-insensitive, spaces ignored): ``Bq/mL``, ``kBq/mL``, ``MBq/mL``, ``GBq/mL``,
``nCi/mL``, ``uCi/mL`` (also ``µCi/mL``, ``μCi/mL``), ``mCi/mL``, with ``mL``, ``ml``, ``cc`` or ``cm3`` as the volume,
and ``BQML`` (what dcm2niix writes from the DICOM tag). 1 nCi = 37 Bq. Anything else is an
:class:`jaxkin.errors.InputError` naming the file and field; jaxkin never guesses a unit.

Values that are not activity concentrations (SUV or g/mL, %ID/g, arbitrary units; :data:`RELATIVE_UNITS`) are
read by :func:`read_value_units`: converted to kBq/ml where a sidecar gives the injected activity (and the body
weight for SUV, :func:`dose_from_sidecar`), else kept as they are when tissue and input share the unit (the rate
constants are ratios of like units), and refused when the two cannot be reconciled.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from jaxkin.errors import InputError
from jaxkin.input_function import MINUTES_PER_TIME_UNIT

__all__ = ["units_to_kbq", "time_units_to_min", "fraction_scale", "ACTIVITY_UNITS", "ACTIVITY", "RELATIVE_UNITS",
           "unit_kind", "Dose", "dose_from_sidecar", "ValueUnits", "read_value_units"]

#: kBq per unit of activity (also of the injected activity, BIDS ``InjectedRadioactivityUnits``).
_ACTIVITY_KBQ = {"bq": 1e-3, "kbq": 1.0, "mbq": 1e3, "gbq": 1e6,
                 "nci": 0.037, "uci": 37.0, "µci": 37.0, "μci": 37.0, "mci": 37e3}
_VOLUME_UNITS = ("ml", "cc", "cm3", "cm^3")
#: Whole-unit spellings that are not ``<activity>/<volume>``.
_ALIASES = {"bqml": "bq/ml"}
#: The activity units named in error messages.
ACTIVITY_UNITS = ("Bq/mL", "kBq/mL", "MBq/mL", "Bq/cc", "BQML", "nCi/mL", "uCi/mL")


def units_to_kbq(units, *, where: str = "Units") -> float:
    """The factor that turns values in ``units`` into kBq/ml (``Bq/mL`` -> 1e-3, ``nCi/mL`` -> 0.037, ...).

    ``where`` (the file and field) starts the message of the :class:`InputError` raised for anything else."""
    if isinstance(units, str):
        text = units.strip().lower().replace(" ", "")
        text = _ALIASES.get(text, text)
        if "/" in text:
            activity, volume = text.split("/", 1)
            if activity in _ACTIVITY_KBQ and volume in _VOLUME_UNITS:
                return _ACTIVITY_KBQ[activity]
    raise InputError(f"{where}: unknown units {units!r}; use one of {', '.join(ACTIVITY_UNITS)}")


def time_units_to_min(units, *, where: str = "time Units") -> float:
    """Minutes per unit of time: ``s`` -> 1/60, ``min`` -> 1 (case and spaces around ignored; the spellings of
    :data:`jaxkin.input_function.MINUTES_PER_TIME_UNIT`); InputError naming ``where`` otherwise."""
    key = str(units).strip().lower()
    if key not in MINUTES_PER_TIME_UNIT:
        raise InputError(f"{where}: unknown time unit {units!r}; use s or min")
    return MINUTES_PER_TIME_UNIT[key]


def fraction_scale(units, *, where: str) -> float | None:
    """The factor that turns a fraction column into [0, 1]: 1 for ``unitless``/``fraction``/``1``/empty, 0.01 for
    ``%``/``percent``; None when ``units`` is None (not stated: the caller decides from the values, and says so).
    InputError for any other unit."""
    if units is None:
        return None
    key = str(units).strip().lower()
    if key in ("", "unitless", "fraction", "1", "arbitrary", "none", "n/a", "ratio"):
        return 1.0
    if key in ("%", "percent", "percentage"):
        return 0.01
    raise InputError(f"{where}: unknown units {units!r} for a fraction; use unitless or %")


# --------------------------------------------------------------------------------------------------
# Units that are not activities: SUV, %ID/g, arbitrary units
# --------------------------------------------------------------------------------------------------

#: The kind of values in an activity unit (kBq/ml once scaled).
ACTIVITY = "activity"
#: Units of values that are not activity concentrations, by spelling (lower case, spaces removed) -> their kind.
#: SUV is in g/mL (activity / (injected activity / body weight)); %ID/g and %ID/mL are taken alike (tissue density
#: 1 g/mL). Kinetic rate constants, vB, Ki and VT are ratios of like units: tissue and input sharing a kind need no
#: conversion.
RELATIVE_UNITS = {
    **dict.fromkeys(("suv", "suvbw", "g/ml", "g/cc", "g/cm3"), "SUV"),
    **dict.fromkeys(("%id/g", "%id/ml", "%id/cc", "%id/cm3"), "%ID/g"),
    **dict.fromkeys(("arbitrary", "a.u.", "au", "arb.units", "arbitraryunits", "unitless", "1", "ratio"), "arbitrary"),
}


def unit_kind(units) -> str:
    """:data:`ACTIVITY` for an activity concentration (:func:`units_to_kbq` knows it), else the kind of
    :data:`RELATIVE_UNITS` (``SUV``, ``%ID/g``, ``arbitrary``); InputError (naming nothing) for anything else."""
    if isinstance(units, str):
        key = units.strip().lower().replace(" ", "")
        if key in RELATIVE_UNITS:
            return RELATIVE_UNITS[key]
    units_to_kbq(units, where="units")
    return ACTIVITY


@dataclasses.dataclass(frozen=True)
class Dose:
    """What turns SUV and %ID/g into activity: the injected activity (kBq) and the body weight (g, None when not
    given); ``source`` names the file they were read from."""

    injected_kbq: float
    body_weight_g: float | None
    source: str

    def factor(self, kind: str) -> float | None:
        """kBq/ml per unit of ``kind``: injected / body weight for SUV (g/mL), injected / 100 for %ID/g (1 g/mL);
        None where it cannot be converted (arbitrary units, SUV without the body weight)."""
        if kind == "SUV":
            return None if self.body_weight_g is None else self.injected_kbq / self.body_weight_g
        if kind == "%ID/g":
            return self.injected_kbq / 100.0
        return None


def dose_from_sidecar(sidecar: dict | None, where) -> Dose | None:
    """The :class:`Dose` of a BIDS sidecar: ``InjectedRadioactivity`` with ``InjectedRadioactivityUnits`` (MBq, mCi,
    ...), and ``BodyWeight`` (kg, the BIDS unit; or ``{"Value": .., "Units": "kg"|"g"}``); None without an injected
    activity. InputError naming ``where`` for a value that is not a positive number or a unit it does not know."""
    if not sidecar or sidecar.get("InjectedRadioactivity") is None:
        return None
    dose_units = str(sidecar.get("InjectedRadioactivityUnits", "")).strip().lower().replace(" ", "")
    if dose_units not in _ACTIVITY_KBQ:
        raise InputError(f"{where}: field 'InjectedRadioactivityUnits': {sidecar.get('InjectedRadioactivityUnits')!r};"
                         " use MBq, kBq, Bq, GBq, mCi or uCi")
    injected = _positive(sidecar["InjectedRadioactivity"], where, "InjectedRadioactivity") * _ACTIVITY_KBQ[dose_units]
    weight = sidecar.get("BodyWeight")
    grams = None
    if weight is not None:
        value, unit = (weight.get("Value"), weight.get("Units", "kg")) if isinstance(weight, dict) else (weight, "kg")
        unit = str(unit).strip().lower()
        if unit not in ("kg", "g"):
            raise InputError(f"{where}: field 'BodyWeight': unit {unit!r}; use kg (or g)")
        grams = _positive(value, where, "BodyWeight") * (1000.0 if unit == "kg" else 1.0)
    return Dose(injected_kbq=injected, body_weight_g=grams, source=str(where))


def _positive(value, where, field: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = math.nan
    if not (out > 0 and math.isfinite(out)):
        raise InputError(f"{where}: field {field!r}: {value!r} is not a positive number")
    return out


@dataclasses.dataclass(frozen=True)
class ValueUnits:
    """How a file's values are read: ``units`` as the file states them, ``kind`` (:data:`ACTIVITY` once in kBq/ml,
    else the relative kind kept as it is), ``scale`` (the factor applied: to kBq/ml, 1 for a relative kind kept)
    and ``note`` (what was converted, for a sentence the caller starts with the file's name; None without a
    conversion)."""

    units: str
    kind: str
    scale: float
    note: str | None = None


def read_value_units(units, *, where: str, dose: Dose | None = None, want: str | None = None) -> ValueUnits:
    """The :class:`ValueUnits` of values in ``units``: an activity unit scaled to kBq/ml; a relative unit (SUV,
    %ID/g, arbitrary) kept when ``want`` is its kind (or None and no ``dose`` converts it), else converted to kBq/ml
    with ``dose``. InputError naming ``where`` for an unknown unit, or a relative unit that ``want`` (another kind)
    needs converted and ``dose`` cannot convert."""
    try:
        kind = unit_kind(units)
    except InputError:
        raise InputError(f"{where}: unknown units {units!r}; use one of {', '.join(ACTIVITY_UNITS)}, or SUV, g/mL, "
                         "%ID/g or arbitrary with tissue and input in the same unit") from None
    if kind == ACTIVITY:
        return ValueUnits(str(units), ACTIVITY, units_to_kbq(units, where=where))
    if want == kind:
        return ValueUnits(str(units), kind, 1.0)
    factor = dose.factor(kind) if dose is not None else None
    if factor is not None:
        how = (f"x injected {dose.injected_kbq / 1e3:g} MBq / body weight {dose.body_weight_g / 1e3:g} kg"
               if kind == "SUV" else f"x injected {dose.injected_kbq / 1e3:g} MBq / 100 (1 g/mL)")
        return ValueUnits(str(units), ACTIVITY, factor, f"{units} converted to kBq/mL ({how}, from "
                          f"{Path(dose.source).name})")
    if want is None:
        return ValueUnits(str(units), kind, 1.0)
    need = ("BodyWeight (kg) and InjectedRadioactivity with InjectedRadioactivityUnits" if kind == "SUV"
            else "InjectedRadioactivity with InjectedRadioactivityUnits" if kind == "%ID/g" else "a known unit")
    raise InputError(f"{where}: values in {units} cannot be reconciled with {want_words(want)}: give both in the "
                     f"same unit, or {need} in the sidecar to convert to activity")


def want_words(kind: str) -> str:
    """How messages name the kind of the other side's values."""
    return "tissue in kBq/mL (activity)" if kind == ACTIVITY else f"tissue in {kind}"
