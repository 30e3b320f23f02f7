"""Blood data of a PET scan: BIDS blood recordings turned into the model's input and whole-blood curves.

A BIDS scan may come with several recordings (``*_recording-autosampler_blood.tsv``, ``*_recording-manual_blood.tsv``),
each a TSV with a ``time`` column (s, relative to ``TimeZero``) and some of ``plasma_radioactivity``,
``whole_blood_radioactivity``, ``metabolite_parent_fraction`` (units per column in the JSON sidecar; ``n/a`` where a
sample has no value), plus the flags ``PlasmaAvail``, ``WholeBloodAvail``, ``MetaboliteAvail`` and
``DispersionCorrected``. :func:`load_blood` reads them all and returns a :class:`Blood`:

* **Time since injection.** Times are shifted by the PET's ``InjectionStart``; samples before the injection are
  dropped (the input is zero before it) and the curve ramps from zero at the injection to the first sample.
* **Decay.** BIDS does not say to which time blood activities are decay corrected. jaxkin assumes the injection
  (``blood_decay="injection"``, the default, stated in every output sidecar); ``"timezero"`` and ``"none"``
  (uncorrected samples) are converted to it with the radionuclide's half-life.
* **Recordings are combined by time**, as kinfitr and bloodstream do: a continuous recording (label with ``auto`` or
  ``cont``, or one sampled every 10 s or faster) over its time range, discrete samples outside it. Discrete samples
  inside a continuous range only check it: a median relative difference above :data:`RECORDING_TOLERANCE` refuses.
* **The tissue input is the parent plasma**: plasma x the parent fraction (interpolated linearly onto the plasma
  times; 1 at injection when the first sample is later; held after the last); plasma alone without metabolite
  data; whole blood (divided by ``blood_to_plasma`` when given) when there is no plasma. Where a continuous
  whole-blood recording covers times without plasma, plasma there is whole blood x the plasma/whole-blood ratio of
  the paired samples (interpolated, held outside).
* **The vB term uses whole blood** when present, else the plasma (x ``blood_to_plasma`` when given).
* **Blood that ends before the scan** is extended by a mono-exponential fitted to its last samples; a gap larger
  than :data:`MAX_EXTRAPOLATION` of the scan (since injection) is refused.

Every choice above that was not read from the files is a sentence in :attr:`Blood.notes` (the commands print them on
stderr and write them in the sidecars). Every problem with a file is an :class:`jaxkin.errors.InputError`, one line
naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from jaxkin.errors import InputError
from jaxkin.input_function import InputFunction
from jaxkin.io.files import read_json, read_tsv
from jaxkin.io.units import fraction_scale, time_units_to_min, units_to_kbq

__all__ = ["Blood", "load_blood", "BLOOD_DECAY_REFERENCES", "BLOOD_COLUMNS", "RECORDING_TOLERANCE",
           "MAX_EXTRAPOLATION", "blood_sidecar_flags", "write_blood", "scan_provenance", "scan_notes"]

#: The activity and fraction columns jaxkin reads (``AIF`` is jaxkin's own: an input already metabolite corrected).
BLOOD_COLUMNS = ("AIF", "plasma_radioactivity", "whole_blood_radioactivity", "metabolite_parent_fraction")
#: What the blood activities may be decay corrected to.
BLOOD_DECAY_REFERENCES = ("injection", "timezero", "none")
#: Two recordings that overlap in time may differ by at most this median relative difference.
RECORDING_TOLERANCE = 0.20
#: Blood may end before the scan by at most this fraction of the scan's duration since injection.
MAX_EXTRAPOLATION = 0.20
#: A recording sampled at least this often (median interval, s) with at least 20 samples counts as continuous.
CONTINUOUS_INTERVAL_S = 10.0
#: Samples used for the mono-exponential extension of a curve that ends before the scan.
TAIL_SAMPLES = 5

_FLAGS = {"PlasmaAvail": "plasma_radioactivity", "WholeBloodAvail": "whole_blood_radioactivity",
          "MetaboliteAvail": "metabolite_parent_fraction"}


@dataclasses.dataclass(frozen=True, eq=False)
class Blood:
    """The input of a scan read from its blood data. Times in minutes since injection, kBq/ml decay corrected to
    the injection.

    ``input``: the tissue input (parent plasma). ``whole_blood``: the curve of the vB term (None: ``input``).
    ``notes``: the assumptions made, one sentence each. ``sources``: the files read. ``description``: what was
    used, for output sidecars (see :meth:`sidecar`)."""

    input: InputFunction
    whole_blood: InputFunction | None = None
    notes: tuple[str, ...] = ()
    sources: tuple[Path, ...] = ()
    description: dict = dataclasses.field(default_factory=dict)

    def sidecar(self) -> dict:
        """Fields for an output sidecar: the blood files, how the input was built, and the notes."""
        out = {"BloodSources": [p.name for p in self.sources]}
        out.update(self.description)
        return out


@dataclasses.dataclass
class _Series:
    """Samples of one quantity from one recording: ``t`` (min since injection), ``v`` (kBq/ml or fraction)."""

    label: str
    path: Path
    column: str
    t: np.ndarray
    v: np.ndarray
    continuous: bool


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


def blood_sidecar_flags(*, plasma: bool, whole_blood: bool, metabolite: bool, dispersion_corrected: bool) -> dict:
    """The BIDS availability flags of a blood recording's JSON sidecar."""
    return {"PlasmaAvail": plasma, "WholeBloodAvail": whole_blood, "MetaboliteAvail": metabolite,
            "DispersionCorrected": dispersion_corrected}


class _Reader:
    """Reads recordings into per-quantity series, collecting notes."""

    def __init__(self, *, injection_start: float, half_life: float | None, blood_decay: str, fallback_scale,
                 fallback_units: str | None):
        self.injection_start = injection_start  # min, relative to TimeZero
        self.half_life = half_life
        self.blood_decay = blood_decay
        self.fallback_scale = fallback_scale
        self.fallback_units = fallback_units
        self.notes: list[str] = []
        self.series: dict[str, list[_Series]] = {c: [] for c in BLOOD_COLUMNS}
        self.dispersion: list[str] = []

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _decay_to_injection(self, t_inj: np.ndarray) -> np.ndarray:
        """Factors that bring activities corrected to ``self.blood_decay`` to the injection, at times ``t_inj``."""
        if self.blood_decay == "injection":
            return np.ones_like(t_inj)
        lam = math.log(2.0) / self.half_life
        if self.blood_decay == "timezero":  # reference at -injection_start min since injection
            return np.full_like(t_inj, math.exp(lam * -self.injection_start))
        return np.exp(lam * t_inj)  # uncorrected samples

    def read(self, path: Path) -> None:
        header, rows = read_tsv(path)
        if "time" not in header:
            raise InputError(f"{path}: missing column 'time' (seconds)")
        if len(set(header)) != len(header):
            raise InputError(f"{path}: a column name appears twice in the header")
        sidecar_path = path.with_suffix(".json")
        sidecar = read_json(sidecar_path, "blood sidecar") if sidecar_path.is_file() else None
        present = [c for c in BLOOD_COLUMNS if c in header]
        if not present:
            raise InputError(f"{path}: no blood column; expected some of {', '.join(BLOOD_COLUMNS[1:])} (or AIF)")
        label = _recording_label(path)
        time_units = _column_units(sidecar, "time") or "s"
        if sidecar is None or _column_units(sidecar, "time") is None:
            self.note(f"{path.name}: time units not given in a JSON sidecar; read as s")
        times = _cells(path, header, rows, "time")
        if np.any(np.isnan(times)):
            i = int(np.argmax(np.isnan(times)))
            raise InputError(f"{path}: column 'time', line {i + 2}: a sample time is needed")
        times = times * time_units_to_min(time_units, where=f"{sidecar_path}: field 'time.Units'")
        if np.any(np.diff(times) <= 0):
            i = int(np.argmax(np.diff(times) <= 0)) + 1
            raise InputError(f"{path}: column 'time' must be strictly increasing; line {i + 2} is not after line {i + 1}")
        t_inj = times - self.injection_start
        for flag, column in _FLAGS.items():
            value = (sidecar or {}).get(flag)
            if value is None:
                continue
            if not isinstance(value, bool):
                raise InputError(f"{sidecar_path}: field {flag!r} must be true or false, not {value!r}")
            has = column in header and np.any(np.isfinite(_cells(path, header, rows, column)))
            if value and not has:
                raise InputError(f"{sidecar_path}: field {flag!r} is true but {path.name} has no {column!r} values")
            if not value and has:
                raise InputError(f"{sidecar_path}: field {flag!r} is false but {path.name} has {column!r} values")
        intervals = np.diff(times) * 60.0
        continuous = any(k in label.lower() for k in ("auto", "cont")) or (
            len(times) >= 20 and float(np.median(intervals)) <= CONTINUOUS_INTERVAL_S)
        if continuous and not any(k in label.lower() for k in ("auto", "cont")):
            self.note(f"{path.name}: sampled every {np.median(intervals):g} s: treated as a continuous recording")
        for column in present:
            values = _cells(path, header, rows, column)
            ok = np.isfinite(values)
            if not ok.any():
                continue
            where = f"{sidecar_path}: field '{column}.Units'"
            if column == "metabolite_parent_fraction":
                values = self._fraction(path, values, _column_units(sidecar, column), where)
            else:
                values = values * self._activity_scale(path, sidecar, column, where)
                values = values * self._decay_to_injection(t_inj)
            self.series[column].append(_Series(label, path, column, t_inj[ok], values[ok], continuous))
        if continuous and sidecar is not None and sidecar.get("DispersionCorrected") is False:
            self.dispersion.append(path.name)

    def _activity_scale(self, path: Path, sidecar, column: str, where: str) -> float:
        units = _column_units(sidecar, column)
        if units is not None:
            return units_to_kbq(units, where=where)
        if self.fallback_scale is None:
            raise InputError(
                f"{path}: units of column {column!r} unknown: add a JSON sidecar {path.with_suffix('.json').name} "
                f'with {{"{column}": {{"Units": "kBq/mL"}}}} or give the PET image'
            )
        self.note(f"{path.name}: units of {column!r} not given; taken to be the PET image's ({self.fallback_units})")
        return self.fallback_scale

    def _fraction(self, path: Path, values: np.ndarray, units, where: str) -> np.ndarray:
        scale = fraction_scale(units, where=where)
        finite = values[np.isfinite(values)]
        if scale is None:
            scale = 0.01 if finite.size and finite.max() > 1.0 + 1e-6 else 1.0
            if scale == 0.01:
                self.note(f"{path.name}: metabolite_parent_fraction has no units and values up to "
                          f"{finite.max():g}: read as percent")
        top = 100.0 if scale == 0.01 else 1.0
        bad = np.isfinite(values) & ((values < -1e-9) | (values > top * (1 + 1e-6)))
        if np.any(bad):
            i = int(np.argmax(bad))
            raise InputError(f"{path}: column 'metabolite_parent_fraction', line {i + 2}: {values[i]:g} is outside "
                             f"[0, {top:g}]{' (percent)' if top == 100.0 else ''}")
        return values * scale


def _combine(series: list[_Series], reader: _Reader, quantity: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One curve from the series of one quantity: continuous recordings over their range, discrete samples outside.

    Returns ``(t, v, used)`` with ``used`` the recordings that contributed. Discrete samples inside a continuous
    range are compared with it (InputError above :data:`RECORDING_TOLERANCE`)."""
    if len(series) == 1:
        return series[0].t, series[0].v, [series[0].label]
    cont = sorted((s for s in series if s.continuous), key=lambda s: s.t[0])
    disc = [s for s in series if not s.continuous]
    if not cont:
        t = np.concatenate([s.t for s in disc])
        v = np.concatenate([s.v for s in disc])
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        same = np.flatnonzero(np.diff(t) < 0.5 / 60.0)  # samples within 0.5 s of each other
        if same.size:
            _check_agree(series, v[same + 1], v[same], reader, quantity, t[same])
            keep = np.ones(t.size, bool)
            keep[same + 1] = False
            t, v = t[keep], v[keep]
        return t, v, [s.label for s in disc]
    for a, b in zip(cont, cont[1:]):
        if b.t[0] <= a.t[-1]:
            raise InputError(f"{b.path}: continuous recording {b.label!r} overlaps {a.label!r} in time; keep one")
    ct = np.concatenate([s.t for s in cont])
    cv = np.concatenate([s.v for s in cont])
    t_parts, v_parts = [ct], [cv]
    for s in disc:
        inside = (s.t >= ct[0]) & (s.t <= ct[-1])
        if inside.any():
            _check_agree([cont[0], s], s.v[inside], np.interp(s.t[inside], ct, cv), reader, quantity, s.t[inside])
        t_parts.append(s.t[~inside])
        v_parts.append(s.v[~inside])
    t = np.concatenate(t_parts)
    v = np.concatenate(v_parts)
    order = np.argsort(t, kind="stable")
    return t[order], v[order], [s.label for s in cont] + [s.label for s in disc]


def _check_agree(series, a, b, reader: _Reader, quantity: str, times) -> None:
    scale = np.maximum(np.abs(b), 0.05 * max(np.max(np.abs(b)), 1e-12))
    diff = float(np.median(np.abs(a - b) / scale))
    if diff > RECORDING_TOLERANCE:
        names = " and ".join(f"recording-{s.label}" for s in series)
        raise InputError(
            f"{series[-1].path}: column {quantity!r}: {names} disagree by a median {100 * diff:.0f}% over "
            f"{len(times)} sample(s) at {times[0] * 60:g}-{times[-1] * 60:g} s since injection (tolerance "
            f"{100 * RECORDING_TOLERANCE:.0f}%); check units and decay correction"
        )
    if len(series) > 1:
        reader.note(f"{quantity}: recordings {', '.join(s.label for s in series)} agree within a median "
                    f"{100 * diff:.1f}% where they overlap")


def _paired_ratio(reader: _Reader) -> tuple[np.ndarray, np.ndarray] | None:
    """``(t, plasma / whole blood)`` at the samples where one recording has both, or None."""
    ts, rs = [], []
    for p in reader.series["plasma_radioactivity"]:
        for w in reader.series["whole_blood_radioactivity"]:
            if p.path != w.path:
                continue
            common, ip, iw = np.intersect1d(p.t, w.t, return_indices=True)
            ok = w.v[iw] > 0
            ts.append(common[ok])
            rs.append(p.v[ip][ok] / w.v[iw][ok])
    if not ts or sum(t.size for t in ts) == 0:
        return None
    t = np.concatenate(ts)
    r = np.concatenate(rs)
    order = np.argsort(t)
    return t[order], r[order]


def _extend(t: np.ndarray, v: np.ndarray, scan_end: float | None, what: str, reader: _Reader, source: str):
    """Extend a curve that ends before ``scan_end`` (min) by a mono-exponential of its last samples."""
    if scan_end is None or t[-1] >= scan_end - 1e-3 / 60.0:
        return t, v, None
    gap = scan_end - t[-1]
    if gap > MAX_EXTRAPOLATION * scan_end:
        raise InputError(
            f"{source}: column 'time': the {what} ends at {t[-1] * 60:g} s since injection but the scan ends at "
            f"{scan_end * 60:g} s; jaxkin extends it by at most {100 * MAX_EXTRAPOLATION:.0f}% of the scan"
        )
    tail = slice(max(0, t.size - TAIL_SAMPLES), t.size)
    tt, vv = t[tail], v[tail]
    ok = vv > 0
    if ok.sum() >= 2:
        slope, intercept = np.polyfit(tt[ok], np.log(vv[ok]), 1)
        k, amplitude = -float(slope), float(np.exp(intercept))
    else:
        k, amplitude = 0.0, float(max(vv[-1], 0.0))
    new_t = np.union1d(np.arange(math.ceil(t[-1]), scan_end), [scan_end])
    new_t = new_t[new_t > t[-1] + 1e-6]
    if k > 0:
        new_v = amplitude * np.exp(-k * new_t)
        how = (f"{amplitude:.6g} * exp(-{k:.6g} * t) kBq/mL (t in min since injection) fitted to its last "
               f"{tt.size} samples ({tt[0] * 60:g}-{tt[-1] * 60:g} s)")
    else:
        new_v = np.full(new_t.shape, float(vv[-1]))
        how = f"its last value {vv[-1]:.6g} kBq/mL held (the last {tt.size} samples do not decrease)"
    reader.note(f"the {what} ends {gap * 60:g} s before the scan does; extended to {scan_end * 60:g} s by {how}")
    description = {"From_s": float(t[-1] * 60), "To_s": float(scan_end * 60), "Model": "A*exp(-k*t)" if k > 0
                   else "constant", "A_kBq_per_mL": amplitude if k > 0 else float(vv[-1]),
                   "k_per_min": k if k > 0 else 0.0, "Samples": int(tt.size)}
    return np.concatenate([t, new_t]), np.concatenate([v, new_v]), description


def _since_injection(t: np.ndarray, v: np.ndarray, what: str, reader: _Reader, source: str):
    """Drop samples before the injection (the input is zero there); say so if they held activity."""
    before = t < 0
    if before.any():
        peak = max(float(np.max(np.abs(v))), 1e-12)
        if np.max(np.abs(v[before])) > 0.01 * peak:
            reader.note(f"{what}: {int(before.sum())} sample(s) before the injection hold up to "
                        f"{100 * np.max(np.abs(v[before])) / peak:.1f}% of the peak; dropped (is InjectionStart right?)")
        t, v = t[~before], v[~before]
    if t.size < 2:
        raise InputError(f"{source}: at least two samples at or after the injection are needed for {what}, "
                         f"found {t.size}")
    return t, v


def load_blood(paths, *, pet=None, blood_to_plasma: float | None = None, blood_decay: str = "injection",
               half_life: float | None = None, injection_start: float | None = None,
               column: str | None = None) -> Blood:
    """Read the blood recording(s) ``paths`` (one path or several) of a scan into a :class:`Blood`.

    ``pet`` (a :class:`jaxkin.io.pet.PetImage`) gives the time origin (its ``InjectionStart``), the scan's end
    for the coverage check, the half-life and units to fall back on; without it, ``injection_start`` (min relative to
    TimeZero, default 0) and ``half_life`` (min) do. ``blood_to_plasma`` is the constant whole-blood/plasma ratio
    (plasma = whole blood / ratio where no plasma is measured). ``blood_decay`` is what the activities are decay
    corrected to (:data:`BLOOD_DECAY_REFERENCES`). ``column`` names the only activity column to use (the input and
    the vB curve), overriding the choice described in the module docstring.
    """
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not paths:
        raise InputError("no blood recording given")
    if blood_decay not in BLOOD_DECAY_REFERENCES:
        raise InputError(f"blood decay reference {blood_decay!r}: use one of {', '.join(BLOOD_DECAY_REFERENCES)}")
    if blood_to_plasma is not None and not (blood_to_plasma > 0 and math.isfinite(blood_to_plasma)):
        raise InputError(f"--blood-to-plasma must be a positive number, not {blood_to_plasma!r}")
    if pet is not None:
        injection_start = pet.injection_start
        half_life = pet.half_life if half_life is None else half_life
    injection_start = 0.0 if injection_start is None else float(injection_start)
    if blood_decay != "injection" and half_life is None:
        raise InputError(f"blood decay reference {blood_decay!r} needs the radionuclide's half-life "
                         "(TracerRadionuclide of the PET sidecar)")
    reader = _Reader(injection_start=injection_start, half_life=half_life, blood_decay=blood_decay,
                     fallback_scale=None if pet is None else pet.scale_to_kbq,
                     fallback_units=None if pet is None else pet.units)
    for path in paths:
        reader.read(path)
    if column is not None:
        if column not in BLOOD_COLUMNS[:3]:
            raise InputError(f"column {column!r}: use one of {', '.join(BLOOD_COLUMNS[:3])}")
        if not reader.series[column]:
            raise InputError(f"{paths[0]}: missing column {column!r}")
        keep = reader.series[column]
        reader.series = {c: (keep if c == column else []) for c in BLOOD_COLUMNS}
    scan_end = float(pet.frames.end[-1]) if pet is not None else None
    source = str(paths[0]) if len(paths) == 1 else f"{paths[0].parent}/{'+'.join(p.name for p in paths)}"
    description: dict = {"BloodDecayCorrectedTo": blood_decay,
                         "BloodTimeOrigin": "TimeZero; shifted to time since injection by InjectionStart"}
    if reader.blood_decay == "injection":
        reader.note("blood activities are assumed decay corrected to the injection (BIDS does not state their "
                    "reference); use --blood-decay timezero or none otherwise")
    wb = pl = None
    if reader.series["whole_blood_radioactivity"]:
        wt, wv, used = _combine(reader.series["whole_blood_radioactivity"], reader, "whole_blood_radioactivity")
        wb = (wt, wv)
        description["WholeBloodRecordings"] = used
    if reader.series["AIF"]:
        at, av, used = _combine(reader.series["AIF"], reader, "AIF")
        pl = (at, av)
        description["InputFunctionSource"] = "AIF (an arterial input function, used as given)"
    elif reader.series["plasma_radioactivity"]:
        plasma_series = list(reader.series["plasma_radioactivity"])
        cont_wb = [s for s in reader.series["whole_blood_radioactivity"] if s.continuous]
        if cont_wb and not any(s.continuous for s in plasma_series):
            ratio = _paired_ratio(reader)
            if ratio is not None:
                rt, rv = ratio
                how = (f"the plasma/whole-blood ratio of {rt.size} paired sample(s) "
                       f"({rv.min():.3g}-{rv.max():.3g}, interpolated, held outside)")
            elif blood_to_plasma is not None:
                rt, rv = np.array([0.0]), np.array([1.0 / blood_to_plasma])
                how = f"1 / --blood-to-plasma {blood_to_plasma:g}"
            else:
                rt, rv = np.array([0.0]), np.array([1.0])
                how = "a ratio of 1 (no paired plasma and whole-blood samples; plasma = whole blood, as for FDG)"
            for s in cont_wb:
                plasma_series.append(_Series(s.label, s.path, "plasma_radioactivity", s.t,
                                             s.v * np.interp(s.t, rt, rv), True))
                reader.note(f"plasma over {s.t[0] * 60:g}-{s.t[-1] * 60:g} s is the whole blood of recording-"
                            f"{s.label} x {how}")
        pt, pv, used = _combine(plasma_series, reader, "plasma_radioactivity")
        pl = (pt, pv)
        description["PlasmaRecordings"] = used
        description["InputFunctionSource"] = "plasma_radioactivity"
    elif wb is not None:
        factor = 1.0 if blood_to_plasma is None else 1.0 / blood_to_plasma
        pl = (wb[0], wb[1] * factor)
        if blood_to_plasma is None:
            reader.note("no plasma data: the input is the whole blood (plasma = whole blood, as for FDG; "
                        "--blood-to-plasma R for a constant ratio)")
        else:
            reader.note(f"no plasma data: the input is the whole blood / --blood-to-plasma {blood_to_plasma:g}")
        description["InputFunctionSource"] = "whole_blood_radioactivity" + (
            f" / {blood_to_plasma:g}" if blood_to_plasma else "")
    else:
        raise InputError(f"{source}: no activity column (plasma_radioactivity, whole_blood_radioactivity or AIF)")
    it, iv = pl
    if reader.series["metabolite_parent_fraction"] and not reader.series["AIF"]:
        ft, fv, used = _combine(reader.series["metabolite_parent_fraction"], reader, "metabolite_parent_fraction")
        if ft[0] > 1e-9:
            ft, fv = np.concatenate([[0.0], ft]), np.concatenate([[1.0], fv])
            reader.note(f"parent fraction taken as 1 at the injection, interpolated to its first sample at "
                        f"{ft[1] * 60:g} s")
        if it[-1] > ft[-1] + 1e-9:
            reader.note(f"parent fraction held at its last value {fv[-1]:.3g} after {ft[-1] * 60:g} s")
        iv = iv * np.interp(it, ft, fv)
        description["InputFunctionSource"] = "plasma_radioactivity x metabolite_parent_fraction (parent plasma)"
        description["MetaboliteRecordings"] = used
    elif not reader.series["AIF"]:
        reader.note("no metabolite data: the input is the total plasma (no metabolite correction; right for FDG)")
    it, iv = _since_injection(it, iv, "the input", reader, source)
    it, iv, ext = _extend(it, iv, scan_end, "input", reader, source)
    if ext:
        description["InputExtrapolation"] = ext
    input_function = InputFunction(it, iv)
    whole_blood = None
    if wb is not None:
        wt, wv = _since_injection(*wb, "the whole blood", reader, source)
        wt, wv, ext = _extend(wt, wv, scan_end, "whole blood", reader, source)
        if ext:
            description["WholeBloodExtrapolation"] = ext
        whole_blood = InputFunction(wt, wv)
        description["WholeBloodSource"] = "whole_blood_radioactivity"
    elif blood_to_plasma is not None:
        whole_blood = input_function.scaled(blood_to_plasma)
        reader.note(f"no whole-blood data: the vB term uses the input x --blood-to-plasma {blood_to_plasma:g}")
        description["WholeBloodSource"] = f"input x {blood_to_plasma:g}"
    else:
        if not reader.series["AIF"]:
            reader.note("no whole-blood data: the vB term uses the input curve")
        description["WholeBloodSource"] = "the input curve"
    if it[0] > 0.5:
        reader.note(f"the first blood sample is {it[0] * 60:g} s after the injection: the input ramps linearly from 0 "
                    "at the injection to it, and may miss the peak")
    if reader.dispersion:
        reader.note(f"{', '.join(reader.dispersion)}: not dispersion corrected (DispersionCorrected false); jaxkin "
                    "does not correct dispersion")
    description["Assumptions"] = list(reader.notes)
    return Blood(input=input_function, whole_blood=whole_blood, notes=tuple(reader.notes), sources=tuple(paths),
                 description=description)


def write_blood(path, *, plasma: InputFunction | None = None, whole_blood: InputFunction | None = None,
                units: str = "kBq/mL", injection_start: float = 0.0, dispersion_corrected: bool = False,
                description: str | None = None, extra: dict | None = None) -> Path:
    """Write a BIDS blood recording: ``path`` (``*_blood.tsv``) and its JSON sidecar, both atomically.

    ``plasma`` and/or ``whole_blood`` are curves in minutes since injection and kBq/ml (decay corrected to the
    injection, jaxkin's convention, stated in the sidecar); they are written at the union of their knots (exact for
    piecewise-linear curves) as ``time`` in s relative to TimeZero (``injection_start``, min relative to TimeZero,
    shifts them back) and activity in ``units``. The sidecar has each column's ``Description`` and ``Units``, the
    flags ``PlasmaAvail``, ``WholeBloodAvail``, ``MetaboliteAvail`` (false) and ``DispersionCorrected``, and
    ``extra``."""
    from jaxkin.io.files import atomic_write, write_json

    if plasma is None and whole_blood is None:
        raise ValueError("write_blood: give plasma and/or whole_blood")
    path = Path(path)
    scale = units_to_kbq(units, where="write_blood: units")
    curves = {"plasma_radioactivity": plasma, "whole_blood_radioactivity": whole_blood}
    curves = {k: c for k, c in curves.items() if c is not None}
    t = np.unique(np.concatenate([c.times for c in curves.values()]))
    columns = {k: np.nan_to_num(c(t), nan=float(c.values[-1])) / scale for k, c in curves.items()}
    header = ["time", *columns]
    lines = ["\t".join(header)]
    for i, ti in enumerate(t):
        lines.append("\t".join([repr(float((ti + injection_start) * 60.0))]
                               + [repr(float(columns[k][i])) for k in columns]))
    with atomic_write(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    what = description or "activity concentration"
    from jaxkin._version import __version__

    meta = {
        "Description": what,
        "SoftwareName": "jaxkin",
        "SoftwareVersion": __version__,
        "time": {"Description": "time relative to TimeZero", "Units": "s"},
        **{k: {"Description": f"{k.split('_radioactivity')[0].replace('_', ' ')} radioactivity ({what}), decay "
               "corrected to the injection", "Units": units} for k in columns},
        **blood_sidecar_flags(plasma="plasma_radioactivity" in columns,
                              whole_blood="whole_blood_radioactivity" in columns, metabolite=False,
                              dispersion_corrected=dispersion_corrected),
        "DecayCorrection": "decay corrected to the injection (InjectionStart)",
    }
    meta.update(extra or {})
    write_json(path.with_suffix(".json"), meta)
    return path


def scan_provenance(pet, blood: Blood | None = None) -> dict:
    """Sidecar fields of a result computed from ``pet`` (a :class:`jaxkin.io.pet.PetImage`) and ``blood``: the
    time origin, the decay references, the blood files and how the input was built, and every assumption made
    (``Assumptions``: the PET's notes, then the blood's)."""
    out = pet.provenance()
    if blood is not None:
        extra = blood.sidecar()
        out["Assumptions"] = list(out.get("Assumptions", [])) + list(extra.pop("Assumptions", []))
        out.update(extra)
    return out


def scan_notes(pet, blood: Blood | None = None) -> list[str]:
    """The assumptions made while reading ``pet`` and ``blood``, in order, each once."""
    notes = list(pet.notes) + (list(blood.notes) if blood is not None else [])
    return list(dict.fromkeys(notes))
