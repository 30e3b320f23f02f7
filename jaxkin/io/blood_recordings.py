"""BIDS blood recordings read into samples: each ``*_blood.tsv`` (with its JSON sidecar) becomes one series per
quantity, in minutes since injection and kBq/ml decay corrected to the injection (fractions in [0, 1]).

A recording is a TSV with a ``time`` column (s, relative to ``TimeZero``, unless its sidecar says otherwise) and
some of :data:`BLOOD_COLUMNS` (``n/a`` where a sample has no value); its sidecar gives each column's ``Units`` and
the flags ``PlasmaAvail``, ``WholeBloodAvail``, ``MetaboliteAvail`` (checked against the columns) and
``DispersionCorrected``. :func:`read_recordings` reads several and says, in its notes, everything it assumed.
Combining the series into the model's input is :mod:`jaxkin.io.blood`'s business.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from jaxkin.errors import InputError
from jaxkin.io.files import read_json, read_tsv
from jaxkin.io.units import fraction_scale, time_units_to_min, units_to_kbq

__all__ = ["BLOOD_COLUMNS", "BLOOD_DECAY_REFERENCES", "CONTINUOUS_INTERVAL_S", "Series", "Recordings",
           "read_recordings", "blood_sidecar_flags"]

#: The activity and fraction columns jaxkin reads (``AIF`` is jaxkin's own: an input already metabolite corrected).
BLOOD_COLUMNS = ("AIF", "plasma_radioactivity", "whole_blood_radioactivity", "metabolite_parent_fraction")
#: What the blood activities may be decay corrected to.
BLOOD_DECAY_REFERENCES = ("injection", "timezero", "none")
#: A recording sampled at least this often (median interval, s) with at least 20 samples counts as continuous.
CONTINUOUS_INTERVAL_S = 10.0

#: The sidecar's availability flags and the column each one speaks for.
_FLAGS = {"PlasmaAvail": "plasma_radioactivity", "WholeBloodAvail": "whole_blood_radioactivity",
          "MetaboliteAvail": "metabolite_parent_fraction"}


@dataclasses.dataclass
class Series:
    """Samples of one quantity from one recording: ``t [N]`` (min since injection), ``v [N]`` (kBq/ml, or a
    fraction in [0, 1]); ``continuous``: from a continuous recording (an autosampler)."""

    label: str
    path: Path
    column: str
    t: np.ndarray
    v: np.ndarray
    continuous: bool


#: Negative blood samples beyond noise: refused when their sum exceeds this fraction of the positive samples' sum.
NEGATIVE_BLOOD_FRACTION = 0.1


@dataclasses.dataclass
class Recordings:
    """What :func:`read_recordings` found: ``series`` (column of :data:`BLOOD_COLUMNS` -> its series, one per
    recording that has values), ``notes`` (the assumptions made, one sentence each, in order; :meth:`note` adds one
    once) and ``not_dispersion_corrected`` (continuous recordings whose sidecar says ``DispersionCorrected``
    false)."""

    series: dict = dataclasses.field(default_factory=lambda: {c: [] for c in BLOOD_COLUMNS})
    notes: list = dataclasses.field(default_factory=list)
    not_dispersion_corrected: list = dataclasses.field(default_factory=list)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def negative_samples(self, source: str, **curves) -> None:
        """Note the negative samples of each curve (``name=values`` in kBq/mL, or None): noise after background
        subtraction, kept as measured. InputError when they are more than noise (a curve that is not positive, or
        whose negative sum exceeds :data:`NEGATIVE_BLOOD_FRACTION` of its positive sum: a sign or column mistaken)."""
        for name, values in curves.items():
            if values is None:
                continue
            values = np.asarray(values, np.float64)
            negative = values < 0
            if not negative.any():
                continue
            pos, neg = float(values[~negative].sum()), -float(values[negative].sum())
            what = name.replace("_", " ")
            share = f"{int(negative.sum())} of {values.size} samples negative (down to {values.min():.4g} kBq/mL)"
            if pos <= 0 or neg > NEGATIVE_BLOOD_FRACTION * pos:
                raise InputError(f"{source}: the {what}: {share}, more than noise (their sum is "
                                 f"{neg / max(pos, 1e-30):.0%} of the positive samples'); is the sign or the column "
                                 "right?")
            self.note(f"the {what}: {share}; kept as measured (noise around zero?)")


def blood_sidecar_flags(*, plasma: bool, whole_blood: bool, metabolite: bool, dispersion_corrected: bool) -> dict:
    """The BIDS availability flags of a blood recording's JSON sidecar."""
    return {"PlasmaAvail": plasma, "WholeBloodAvail": whole_blood, "MetaboliteAvail": metabolite,
            "DispersionCorrected": dispersion_corrected}


def _recording_label(path: Path) -> str:
    for part in path.name.split("_"):
        if part.startswith("recording-"):
            return part[len("recording-"):]
    return path.name.removesuffix(".tsv")


def _cells(path: Path, header: list[str], rows: list[list[str]], name: str) -> np.ndarray:
    """A numeric column with NaN for ``n/a`` (BIDS) or empty cells; InputError for anything else."""
    j = header.index(name)
    out = np.full(len(rows), np.nan)
    for i, row in enumerate(rows):
        text = row[j].strip()
        if text.lower() in ("n/a", ""):
            continue
        try:
            out[i] = float(text)
        except ValueError:
            raise InputError(f"{path}: column {name!r}, line {i + 2}: {text!r} is not a number") from None
        if not np.isfinite(out[i]):
            raise InputError(f"{path}: column {name!r}, line {i + 2}: {text!r} is not a finite number; write n/a "
                             "for a missing value")
    return out


def _column_units(sidecar: dict | None, column: str):
    """Units of a TSV column from a BIDS sidecar: ``{"col": {"Units": ...}}`` (or a top-level ``Units``)."""
    if not sidecar:
        return None
    entry = sidecar.get(column)
    if isinstance(entry, dict) and "Units" in entry:
        return entry["Units"]
    if column not in ("time", "metabolite_parent_fraction") and "Units" in sidecar:
        return sidecar["Units"]
    return None


@dataclasses.dataclass(frozen=True)
class _Options:
    """How to read activities: the injection (min relative to TimeZero), the half-life (min) for decay, the decay
    reference of the files, and the units to fall back on (the scan's) when a column states none."""

    injection_start: float
    half_life: float | None
    blood_decay: str
    fallback_scale: float | None
    fallback_units: str | None


@dataclasses.dataclass(frozen=True)
class _Table:
    """One recording's TSV as read: ``header``, ``rows``, its sidecar (None without one) and the sidecar's path."""

    path: Path
    header: list
    rows: list
    sidecar: dict | None
    sidecar_path: Path

    def cells(self, column: str) -> np.ndarray:
        return _cells(self.path, self.header, self.rows, column)


def _open(path: Path) -> _Table:
    header, rows = read_tsv(path)
    if "time" not in header:
        raise InputError(f"{path}: missing column 'time' (seconds)")
    if len(set(header)) != len(header):
        raise InputError(f"{path}: a column name appears twice in the header")
    sidecar_path = path.with_suffix(".json")
    sidecar = read_json(sidecar_path, "blood sidecar") if sidecar_path.is_file() else None
    if not any(c in header for c in BLOOD_COLUMNS):
        raise InputError(f"{path}: no blood column; expected some of {', '.join(BLOOD_COLUMNS[1:])} (or AIF)")
    return _Table(path, header, rows, sidecar, sidecar_path)


def _sample_times(table: _Table, found: Recordings) -> np.ndarray:
    """The ``time`` column in minutes relative to TimeZero: present on every line, strictly increasing."""
    path = table.path
    time_units = _column_units(table.sidecar, "time")
    if time_units is None:
        found.note(f"{path.name}: time units not given in a JSON sidecar; read as s")
    times = table.cells("time")
    if np.any(np.isnan(times)):
        i = int(np.argmax(np.isnan(times)))
        raise InputError(f"{path}: column 'time', line {i + 2}: a sample time is needed")
    times = times * time_units_to_min(time_units or "s", where=f"{table.sidecar_path}: field 'time.Units'")
    if np.any(np.diff(times) <= 0):
        i = int(np.argmax(np.diff(times) <= 0)) + 1
        raise InputError(f"{path}: column 'time' must be strictly increasing; line {i + 2} is not after line {i + 1}")
    return times


def _check_flags(table: _Table) -> None:
    """InputError where an availability flag of the sidecar contradicts the columns."""
    for flag, column in _FLAGS.items():
        value = (table.sidecar or {}).get(flag)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise InputError(f"{table.sidecar_path}: field {flag!r} must be true or false, not {value!r}")
        has = column in table.header and np.any(np.isfinite(table.cells(column)))
        if value and not has:
            raise InputError(f"{table.sidecar_path}: field {flag!r} is true but {table.path.name} has no {column!r} "
                             "values")
        if not value and has:
            raise InputError(f"{table.sidecar_path}: field {flag!r} is false but {table.path.name} has {column!r} "
                             "values")


def _is_continuous(path: Path, label: str, times: np.ndarray, found: Recordings) -> bool:
    """A continuous recording: labelled ``auto``/``cont``, or at least 20 samples every
    :data:`CONTINUOUS_INTERVAL_S` or faster (noted)."""
    named = any(k in label.lower() for k in ("auto", "cont"))
    intervals = np.diff(times) * 60.0
    sampled = len(times) >= 20 and float(np.median(intervals)) <= CONTINUOUS_INTERVAL_S
    if sampled and not named:
        found.note(f"{path.name}: sampled every {np.median(intervals):g} s: treated as a continuous recording")
    return named or sampled


def _decay_to_injection(options: _Options, t_inj: np.ndarray) -> np.ndarray:
    """Factors that bring activities corrected to ``options.blood_decay`` to the injection, at times ``t_inj``."""
    if options.blood_decay == "injection":
        return np.ones_like(t_inj)
    lam = math.log(2.0) / options.half_life
    if options.blood_decay == "timezero":  # reference at -injection_start min since injection
        return np.full_like(t_inj, math.exp(lam * -options.injection_start))
    return np.exp(lam * t_inj)  # uncorrected samples


def _activity_scale(table: _Table, column: str, options: _Options, found: Recordings) -> float:
    units = _column_units(table.sidecar, column)
    if units is not None:
        return units_to_kbq(units, where=f"{table.sidecar_path}: field '{column}.Units'")
    if options.fallback_scale is None:
        raise InputError(
            f"{table.path}: units of column {column!r} unknown: add a JSON sidecar {table.sidecar_path.name} "
            f'with {{"{column}": {{"Units": "kBq/mL"}}}} or give the PET image'
        )
    found.note(f"{table.path.name}: units of {column!r} not given; taken to be the PET image's "
               f"({options.fallback_units})")
    return options.fallback_scale


def _fraction(table: _Table, values: np.ndarray, found: Recordings) -> np.ndarray:
    """The parent fraction in [0, 1]: its stated units, else percent when a value exceeds 1 (noted)."""
    path = table.path
    scale = fraction_scale(_column_units(table.sidecar, "metabolite_parent_fraction"),
                           where=f"{table.sidecar_path}: field 'metabolite_parent_fraction.Units'")
    finite = values[np.isfinite(values)]
    if scale is None:
        scale = 0.01 if finite.size and finite.max() > 1.0 + 1e-6 else 1.0
        if scale == 0.01:
            found.note(f"{path.name}: metabolite_parent_fraction has no units and values up to "
                       f"{finite.max():g}: read as percent")
    top = 100.0 if scale == 0.01 else 1.0
    bad = np.isfinite(values) & ((values < -1e-9) | (values > top * (1 + 1e-6)))
    if np.any(bad):
        i = int(np.argmax(bad))
        raise InputError(f"{path}: column 'metabolite_parent_fraction', line {i + 2}: {values[i]:g} is outside "
                         f"[0, {top:g}]{' (percent)' if top == 100.0 else ''}")
    return values * scale


def _read_one(path: Path, options: _Options, found: Recordings) -> None:
    """Add the series of the recording ``path`` to ``found``."""
    table = _open(path)
    label = _recording_label(path)
    times = _sample_times(table, found)
    t_inj = times - options.injection_start
    _check_flags(table)
    continuous = _is_continuous(path, label, times, found)
    for column in (c for c in BLOOD_COLUMNS if c in table.header):
        values = table.cells(column)
        ok = np.isfinite(values)
        if not ok.any():
            continue
        if column == "metabolite_parent_fraction":
            values = _fraction(table, values, found)
        else:
            values = values * _activity_scale(table, column, options, found) * _decay_to_injection(options, t_inj)
        found.series[column].append(Series(label, path, column, t_inj[ok], values[ok], continuous))
    if continuous and table.sidecar is not None and table.sidecar.get("DispersionCorrected") is False:
        found.not_dispersion_corrected.append(path.name)


def read_recordings(paths, *, injection_start: float, half_life: float | None, blood_decay: str,
                    fallback_scale: float | None = None, fallback_units: str | None = None) -> Recordings:
    """Read the recordings ``paths`` into :class:`Recordings`.

    ``injection_start``: the injection in minutes relative to TimeZero (times become minutes since injection).
    ``blood_decay``: what the activities are decay corrected to (:data:`BLOOD_DECAY_REFERENCES`; ``timezero`` and
    ``none`` need ``half_life``, min); they are returned decay corrected to the injection. ``fallback_scale`` and
    ``fallback_units``: the scan's units (factor to kBq/ml and name) for columns without stated units (None:
    such a column is an InputError)."""
    options = _Options(injection_start=float(injection_start), half_life=half_life, blood_decay=blood_decay,
                       fallback_scale=fallback_scale, fallback_units=fallback_units)
    found = Recordings()
    for path in paths:
        _read_one(Path(path), options, found)
    return found
