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
from jaxkin.frames import FrameSchedule
from jaxkin.input_function import from_frame_means
from jaxkin.io._formats import read_blood_wide, time_columns
from jaxkin.io.files import read_json, read_tsv
from jaxkin.io.units import (
    ACTIVITY,
    Dose,
    dose_from_sidecar,
    fraction_scale,
    read_value_units,
    time_units_to_min,
)

__all__ = ["BLOOD_COLUMNS", "BLOOD_DECAY_REFERENCES", "CONTINUOUS_INTERVAL_S", "Series", "Recordings",
           "read_recordings", "blood_sidecar_flags", "INPUT_VALUES", "FRAME_MEANS_FIELD", "MID_TIME_TOLERANCE_S",
           "frame_mean_curves", "check_kinds"]

#: The activity and fraction columns jaxkin reads (``AIF`` is jaxkin's own: an input already metabolite corrected).
BLOOD_COLUMNS = ("AIF", "plasma_radioactivity", "whole_blood_radioactivity", "metabolite_parent_fraction")
#: What the blood activities may be decay corrected to.
BLOOD_DECAY_REFERENCES = ("injection", "timezero", "none")
#: A recording sampled at least this often (median interval, s) with at least 20 samples counts as continuous.
CONTINUOUS_INTERVAL_S = 10.0

#: How blood values are read: ``samples`` (values at their times), ``frame-means`` (means over the scan's frames,
#: at their mid times: an image-derived input), ``auto`` (frame means where the sidecar says so or where the times
#: are the scan's frame mid times, samples otherwise).
INPUT_VALUES = ("auto", "samples", "frame-means")
#: The sidecar field (with ``FrameTimesStart`` and ``FrameDuration``, s relative to TimeZero) that marks a
#: recording's values as frame means (``jaxkin idif`` writes it).
FRAME_MEANS_FIELD = "ValuesAreFrameMeans"
#: Sample times within this many seconds of a frame's mid time are at its mid time.
MID_TIME_TOLERANCE_S = 0.5

#: The sidecar's availability flags and the column each one speaks for.
_FLAGS = {"PlasmaAvail": "plasma_radioactivity", "WholeBloodAvail": "whole_blood_radioactivity",
          "MetaboliteAvail": "metabolite_parent_fraction"}


@dataclasses.dataclass
class Series:
    """Samples of one quantity from one recording: ``t [N]`` (min since injection), ``v [N]`` (kBq/ml, or a
    fraction in [0, 1]); ``continuous``: from a continuous recording (an autosampler); ``frames``: the frames (min
    since injection) whose means the values are, at their mid times ``t`` (None: point samples)."""

    label: str
    path: Path
    column: str
    t: np.ndarray
    v: np.ndarray
    continuous: bool
    frames: FrameSchedule | None = None


#: Negative blood samples beyond noise: refused when their sum exceeds this fraction of the positive samples' sum.
NEGATIVE_BLOOD_FRACTION = 0.1


@dataclasses.dataclass
class Recordings:
    """What :func:`read_recordings` found: ``series`` (column of :data:`BLOOD_COLUMNS` -> its series, one per
    recording that has values), ``notes`` (the assumptions made, one sentence each, in order; :meth:`note` adds one
    once), ``not_dispersion_corrected`` (continuous recordings whose sidecar says ``DispersionCorrected``
    false) and ``kinds`` (the kinds of the activity values read: :data:`jaxkin.io.units.ACTIVITY`, or a relative unit
    kept, such as ``SUV``)."""

    series: dict = dataclasses.field(default_factory=lambda: {c: [] for c in BLOOD_COLUMNS})
    notes: list = dataclasses.field(default_factory=list)
    not_dispersion_corrected: list = dataclasses.field(default_factory=list)
    kinds: set = dataclasses.field(default_factory=set)

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
    reference of the files, the units to fall back on (the scan's) when a column states none, the kind of the
    scan's values and its dose (for SUV and %ID/g), the scan's frames and how to read values at their mid times."""

    injection_start: float
    half_life: float | None
    blood_decay: str
    fallback_scale: float | None
    fallback_units: str | None
    scan_kind: str | None = None
    scan_dose: Dose | None = None
    scan_frames: FrameSchedule | None = None
    input_values: str = "auto"


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


def _activity_scale(table: _Table, column: str, options: _Options, found: Recordings, units=None) -> float:
    """The factor that brings ``column`` to kBq/ml (1 for a relative unit the scan shares); the kind is added to
    ``found.kinds``. ``units``: what the file states (else the sidecar's, else the scan's, noted)."""
    units = units if units is not None else _column_units(table.sidecar, column)
    if units is None:
        if options.fallback_scale is None:
            raise InputError(
                f"{table.path}: units of column {column!r} unknown: add a JSON sidecar {table.sidecar_path.name} "
                f'with {{"{column}": {{"Units": "kBq/mL"}}}} or give the PET image'
            )
        found.note(f"{table.path.name}: units of {column!r} not given; taken to be the PET image's "
                   f"({options.fallback_units})")
        found.kinds.add(options.scan_kind or ACTIVITY)
        return options.fallback_scale
    dose = dose_from_sidecar(table.sidecar, table.sidecar_path) or options.scan_dose
    read = read_value_units(units, where=f"{table.sidecar_path}: field '{column}.Units'", dose=dose,
                            want=options.scan_kind)
    if read.note:
        found.note(f"{table.path.name}: {column}: {read.note}")
    found.kinds.add(read.kind)
    return read.scale


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


def _wide_columns(path: Path, names: list[str]) -> list[str]:
    """The blood column of each value column of a PMOD or Turku PET Centre file: one column is the input as given
    (``AIF``), or the whole blood when its name says blood; several need names that say plasma and blood."""
    def which(name: str) -> str | None:
        key = name.lower()
        if "plasma" in key or key in ("ap", "pl", "aif", "input", "parent", "ca", "cp"):
            return "AIF"
        if "blood" in key or key in ("ab", "wb", "bl", "cb"):
            return "whole_blood_radioactivity"
        return None

    if len(names) == 1:
        return [which(names[0]) or "AIF"]
    out = [which(n) for n in names]
    if None in out or len(set(out)) != len(out):
        raise InputError(f"{path}: {len(names)} value columns ({', '.join(names)}); jaxkin reads one curve (the "
                         "input), or a plasma and a (whole) blood column named so")
    return out


def _read_wide(path: Path, wide, options: _Options, found: Recordings) -> None:
    """Add the curves of a PMOD or Turku PET Centre blood file to ``found``."""
    sidecar_path = path.with_suffix(".json")
    table = _Table(path, wide.header, wide.rows, read_json(sidecar_path, "blood sidecar") if sidecar_path.is_file()
                   else None, sidecar_path)
    kinds, unit = time_columns(path, wide.header)
    to_min = time_units_to_min(unit, where=f"{path}: column {wide.header[0]!r}")
    times = [table.cells(table.header[i]) * to_min for i in range(len(kinds))]
    mid = times[0] if len(times) == 1 else 0.5 * (times[0] + times[1])
    if np.any(np.isnan(mid)) or np.any(np.diff(mid) <= 0):
        raise InputError(f"{path}: the times must be given on every line and increase")
    frames = None
    if len(times) == 2 and options.input_values != "samples":
        frames = FrameSchedule(start=times[0] - options.injection_start, duration=times[1] - times[0])
        found.note(f"{path.name}: values with frame start and end times: read as frame means")
    elif options.input_values != "samples" and options.scan_frames is not None:
        at_mid = _at_mid_times(mid - options.injection_start, options.scan_frames)
        if at_mid is not None and at_mid.all():
            frames = options.scan_frames
            found.note(f"{path.name}: values read as frame means (its times are the scan's frame mid times: an "
                       "image-derived input); read them as point samples if they are")
    if frames is None and options.input_values == "frame-means":
        raise InputError(f"{path}: the times are not the scan's frame mid times, so they cannot be read as frame "
                         "means")
    found.note(f"{path.name}: read as {wide.fmt}")
    names = wide.header[len(kinds):]
    for name, column in zip(names, _wide_columns(path, names)):
        values = table.cells(name) * _activity_scale(table, name, options, found, units=wide.units)
        t_inj = mid - options.injection_start
        values = values * _decay_to_injection(options, t_inj)
        ok = np.isfinite(values)
        found.series[column].append(Series(path.stem, path, column, t_inj[ok], values[ok], False, frames))
        found.note(f"{path.name}: column {name!r} is " + ("the input, used as given (no metabolite correction)"
                                                         if column == "AIF" else "the whole blood"))


def _at_mid_times(t: np.ndarray, frames: FrameSchedule) -> np.ndarray | None:
    """Which samples ``t`` (min) are at the mid times of ``frames``, when every frame has one and the others are
    before the first frame's mid (a zero at the injection); None otherwise."""
    tol = MID_TIME_TOLERANCE_S / 60.0
    nearest = np.abs(t[:, None] - frames.mid[None, :]) <= tol
    at_mid = nearest.any(axis=1)
    if int(at_mid.sum()) != frames.n_frames or not nearest.any(axis=0).all():
        return None
    if np.any(~at_mid & (t > frames.mid[0])):
        return None
    return at_mid


def _frame_means(table: _Table, t_inj: np.ndarray, options: _Options, found: Recordings):
    """``(frames, at_mid [N])``: the frames whose means the recording's activities are (None: point samples) and
    the samples that are at their mid times. Frame means where the sidecar says so (:data:`FRAME_MEANS_FIELD` with
    its frames) or, with ``input_values`` ``auto``, where the times are the scan's frame mid times; always with
    ``frame-means`` (the times must be the mid times), never with ``samples``. Said in the notes."""
    every = np.ones(t_inj.shape, bool)
    if options.input_values == "samples":
        return None, every
    side = table.sidecar or {}
    frames, why = None, ""
    if side.get(FRAME_MEANS_FIELD) is True:
        try:
            start = np.asarray(side["FrameTimesStart"], np.float64) / 60.0 - options.injection_start
            frames = FrameSchedule(start=start, duration=np.asarray(side["FrameDuration"], np.float64) / 60.0)
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{table.sidecar_path}: field {FRAME_MEANS_FIELD!r} needs FrameTimesStart and "
                             "FrameDuration (s) of the frames") from None
        why = f"its sidecar's {FRAME_MEANS_FIELD}"
    elif options.scan_frames is not None:
        frames, why = options.scan_frames, "its times are the scan's frame mid times"
    at_mid = None if frames is None else _at_mid_times(t_inj, frames)
    if at_mid is None:
        if options.input_values == "frame-means" or why.startswith("its sidecar"):
            raise InputError(f"{table.path}: column 'time': the samples are not at the mid times of the "
                             f"{'sidecar' if why.startswith('its sidecar') else 'scan'}'s frames, so they cannot be "
                             "read as frame means")
        return None, every
    if options.input_values == "auto" and not why.startswith("its sidecar"):
        found.note(f"{table.path.name}: values read as frame means ({why}: an image-derived input); read them as "
                   "point samples if they are")
    else:
        found.note(f"{table.path.name}: values read as frame means ({why or 'as asked'})")
    return frames, at_mid


def _read_one(path: Path, options: _Options, found: Recordings) -> None:
    """Add the series of the recording ``path`` to ``found``."""
    wide = read_blood_wide(path)
    if wide is not None:
        return _read_wide(path, wide, options, found)
    table = _open(path)
    label = _recording_label(path)
    times = _sample_times(table, found)
    t_inj = times - options.injection_start
    _check_flags(table)
    continuous = _is_continuous(path, label, times, found)
    frames, at_mid = _frame_means(table, t_inj, options, found)
    for column in (c for c in BLOOD_COLUMNS if c in table.header):
        values = table.cells(column)
        ok = np.isfinite(values) & (at_mid if column != "metabolite_parent_fraction" else True)
        if not ok.any():
            continue
        if column == "metabolite_parent_fraction":
            values = _fraction(table, values, found)
        else:
            values = values * _activity_scale(table, column, options, found) * _decay_to_injection(options, t_inj)
        found.series[column].append(Series(label, path, column, t_inj[ok], values[ok], continuous and frames is None,
                                           frames if column != "metabolite_parent_fraction" else None))
    if continuous and table.sidecar is not None and table.sidecar.get("DispersionCorrected") is False:
        found.not_dispersion_corrected.append(path.name)


def read_recordings(paths, *, injection_start: float, half_life: float | None, blood_decay: str,
                    fallback_scale: float | None = None, fallback_units: str | None = None,
                    scan_kind: str | None = None, scan_dose: Dose | None = None,
                    scan_frames: FrameSchedule | None = None, input_values: str = "auto") -> Recordings:
    """Read the recordings ``paths`` into :class:`Recordings`.

    ``injection_start``: the injection in minutes relative to TimeZero (times become minutes since injection).
    ``blood_decay``: what the activities are decay corrected to (:data:`BLOOD_DECAY_REFERENCES`; ``timezero`` and
    ``none`` need ``half_life``, min); they are returned decay corrected to the injection. ``fallback_scale`` and
    ``fallback_units``: the scan's units (factor to kBq/ml and name) for columns without stated units (None:
    such a column is an InputError). ``scan_kind`` and ``scan_dose``: the kind of the scan's values
    (:data:`jaxkin.io.units.ACTIVITY` or a relative unit such as SUV) and the dose that converts relative blood
    units to activity (:func:`jaxkin.io.units.read_value_units`). ``scan_frames`` (min since injection) and
    ``input_values`` (:data:`INPUT_VALUES`): which recordings are frame means (:attr:`Series.frames`)."""
    if input_values not in INPUT_VALUES:
        raise InputError(f"input values {input_values!r}: use one of {', '.join(INPUT_VALUES)}")
    options = _Options(injection_start=float(injection_start), half_life=half_life, blood_decay=blood_decay,
                       fallback_scale=fallback_scale, fallback_units=fallback_units, scan_kind=scan_kind,
                       scan_dose=scan_dose, scan_frames=scan_frames, input_values=input_values)
    found = Recordings()
    for path in paths:
        _read_one(Path(path), options, found)
    return found


def frame_mean_curves(found: Recordings) -> list[str]:
    """Replace each series of frame means by the curve whose frame means they are
    (:func:`jaxkin.input_function.from_frame_means`), at its knots; the names of the files they came from."""
    done = []
    for column, series in found.series.items():
        for s in series:
            if s.frames is None:
                continue
            if s.v.size != s.frames.n_frames:
                raise InputError(f"{s.path}: column {column!r}: {s.v.size} values for {s.frames.n_frames} frames; "
                                 "frame means need a value in every frame")
            curve = from_frame_means(s.frames, s.v)
            s.t, s.v = curve.times, curve.values
            done.append(s.path.name)
    return list(dict.fromkeys(done))


def check_kinds(found: Recordings, pet, source: str) -> None:
    """InputError where the blood's values are not in the kind of the scan's (activity, or the same relative unit);
    a note where both share a relative unit."""
    scan_kind = getattr(pet, "value_kind", ACTIVITY) if pet is not None else None
    kinds = found.kinds - ({scan_kind} if scan_kind else set())
    if scan_kind is not None and kinds:
        raise InputError(f"{source}: the blood is in {', '.join(sorted(kinds))} but the tissue in "
                         f"{'kBq/mL' if scan_kind == ACTIVITY else pet.units}: they cannot be reconciled (give both "
                         "in one unit, or the injected activity and body weight to convert SUV to activity)")
    if scan_kind is not None and scan_kind != ACTIVITY:
        found.note(f"tissue and input are both in {pet.units}: fitted as they are (rate constants, vB, Ki and VT are "
                   f"ratios of like units; SSE and fitted curves are in {pet.units}, not kBq/mL)")
