"""Units at the file boundary: activity concentrations and times as files write them, turned into kBq/ml and min.

Accepted activity concentrations (case-insensitive, spaces ignored): ``Bq/mL``, ``kBq/mL``, ``MBq/mL``, ``GBq/mL``,
``nCi/mL``, ``uCi/mL`` (also ``µCi/mL``, ``μCi/mL``), ``mCi/mL``, with ``mL``, ``ml``, ``cc`` or ``cm3`` as the volume,
and ``BQML`` (what dcm2niix writes from the DICOM tag). 1 nCi = 37 Bq. Anything else is an
:class:`jaxkin.errors.InputError` naming the file and field; jaxkin never guesses a unit.
"""

from __future__ import annotations

from jaxkin.errors import InputError
from jaxkin.input_function import MINUTES_PER_TIME_UNIT

__all__ = ["units_to_kbq", "time_units_to_min", "fraction_scale", "ACTIVITY_UNITS"]

#: kBq per unit of activity.
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
