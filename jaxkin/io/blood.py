"""Blood data of a PET scan: BIDS blood recordings turned into the model's input and whole-blood curves.

A BIDS scan may come with several recordings (``*_recording-autosampler_blood.tsv``, ``*_recording-manual_blood.tsv``),
each a TSV with a ``time`` column (s, relative to ``TimeZero``) and some of ``plasma_radioactivity``,
``whole_blood_radioactivity``, ``metabolite_parent_fraction`` (units per column in the JSON sidecar; ``n/a`` where a
sample has no value), plus the flags ``PlasmaAvail``, ``WholeBloodAvail``, ``MetaboliteAvail`` and
``DispersionCorrected``. :mod:`jaxkin.io.blood_recordings` reads each into samples; :func:`load_blood` combines and
extends them into a :class:`Blood`:

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
from typing import Protocol

import numpy as np

from jaxkin._version import __version__
from jaxkin.errors import InputError
from jaxkin.frames import FrameSchedule
from jaxkin.input_function import InputFunction, extend_tail
from jaxkin.io.blood_recordings import (
    BLOOD_COLUMNS,
    BLOOD_DECAY_REFERENCES,
    Recordings,
    Series,
    blood_sidecar_flags,
    check_kinds,
    frame_mean_curves,
    read_recordings,
)
from jaxkin.io.files import atomic_write, write_json
from jaxkin.io.units import ACTIVITY, read_value_units

__all__ = ["Blood", "ScanTiming", "load_blood", "RECORDING_TOLERANCE", "MAX_EXTRAPOLATION",
           "write_blood", "scan_provenance", "scan_notes"]

#: Two recordings that overlap in time may differ by at most this median relative difference.
RECORDING_TOLERANCE = 0.20
#: Blood may end before the scan by at most this fraction of the scan's duration since injection.
MAX_EXTRAPOLATION = 0.20

_PLASMA, _WHOLE_BLOOD, _FRACTION = BLOOD_COLUMNS[1:]


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


class ScanTiming(Protocol):
    """What :func:`load_blood` needs of the scan its blood belongs to; a :class:`jaxkin.io.pet.PetImage` and a
    :class:`jaxkin.io.tables.RegionalTacs` both have it.

    ``frames``: the frames in minutes since injection (the blood must reach the last one's end);
    ``injection_start``: the injection in minutes relative to TimeZero (the origin of the blood files' times);
    ``half_life``: the radionuclide's half-life in minutes (None when unknown); ``units`` and ``scale_to_kbq``: the
    scan's activity unit and its factor to kBq/ml, taken for blood columns that state no units."""

    @property
    def frames(self) -> FrameSchedule: ...

    @property
    def injection_start(self) -> float: ...

    @property
    def half_life(self) -> float | None: ...

    @property
    def units(self) -> str: ...

    @property
    def scale_to_kbq(self) -> float: ...


# --------------------------------------------------------------------------------------------------
# One curve per quantity from several recordings
# --------------------------------------------------------------------------------------------------


def _combine(series: list[Series], found: Recordings, quantity: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
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
            _check_agree(series, v[same + 1], v[same], found, quantity, t[same])
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
            _check_agree([cont[0], s], s.v[inside], np.interp(s.t[inside], ct, cv), found, quantity, s.t[inside])
        t_parts.append(s.t[~inside])
        v_parts.append(s.v[~inside])
    t = np.concatenate(t_parts)
    v = np.concatenate(v_parts)
    order = np.argsort(t, kind="stable")
    return t[order], v[order], [s.label for s in cont] + [s.label for s in disc]


def _check_agree(series, a, b, found: Recordings, quantity: str, times) -> None:
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
        found.note(f"{quantity}: recordings {', '.join(s.label for s in series)} agree within a median "
                   f"{100 * diff:.1f}% where they overlap")


def _paired_ratio(found: Recordings) -> tuple[np.ndarray, np.ndarray] | None:
    """``(t, plasma / whole blood)`` at the samples where one recording has both, or None."""
    ts, rs = [], []
    for p in found.series[_PLASMA]:
        for w in found.series[_WHOLE_BLOOD]:
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


# --------------------------------------------------------------------------------------------------
# A curve over the scan: from the injection to the scan's end
# --------------------------------------------------------------------------------------------------


def _extend(t: np.ndarray, v: np.ndarray, scan_end: float | None, what: str, found: Recordings, source: str):
    """Extend a curve that ends before ``scan_end`` (min) by :func:`jaxkin.input_function.extend_tail` (a
    mono-exponential of its last :data:`jaxkin.input_function.TAIL_SAMPLES` samples)."""
    if scan_end is None or t[-1] >= scan_end - 1e-3 / 60.0:
        return t, v, None
    gap = scan_end - t[-1]
    if gap > MAX_EXTRAPOLATION * scan_end:
        raise InputError(
            f"{source}: column 'time': the {what} ends at {t[-1] * 60:g} s since injection but the scan ends at "
            f"{scan_end * 60:g} s; jaxkin extends it by at most {100 * MAX_EXTRAPOLATION:.0f}% of the scan"
        )
    tail = extend_tail(t, v, scan_end)
    tt, k, amplitude = t[-tail.samples:], tail.rate, tail.amplitude
    if k > 0:
        how = (f"{amplitude:.6g} * exp(-{k:.6g} * t) kBq/mL (t in min since injection) fitted to its last "
               f"{tt.size} samples ({tt[0] * 60:g}-{tt[-1] * 60:g} s)")
    else:
        how = f"its last value {v[-1]:.6g} kBq/mL held (the last {tt.size} samples do not decrease)"
    found.note(f"the {what} ends {gap * 60:g} s before the scan does; extended to {scan_end * 60:g} s by {how}")
    description = {"From_s": float(t[-1] * 60), "To_s": float(scan_end * 60), "Model": "A*exp(-k*t)" if k > 0
                   else "constant", "A_kBq_per_mL": amplitude if k > 0 else float(v[-1]),
                   "k_per_min": k if k > 0 else 0.0, "Samples": int(tt.size)}
    return np.concatenate([t, tail.times]), np.concatenate([v, tail.values]), description


def _since_injection(t: np.ndarray, v: np.ndarray, what: str, found: Recordings, source: str):
    """Drop samples before the injection (the input is zero there); say so if they held activity."""
    before = t < 0
    if before.any():
        peak = max(float(np.max(np.abs(v))), 1e-12)
        if np.max(np.abs(v[before])) > 0.01 * peak:
            found.note(f"{what}: {int(before.sum())} sample(s) before the injection hold up to "
                       f"{100 * np.max(np.abs(v[before])) / peak:.1f}% of the peak; dropped (is InjectionStart right?)")
        t, v = t[~before], v[~before]
    if t.size < 2:
        raise InputError(f"{source}: at least two samples at or after the injection are needed for {what}, "
                         f"found {t.size}")
    return t, v


def _over_the_scan(curve, scan_end, what: str, found: Recordings, source: str, description: dict, key: str):
    """``curve`` ``(t, v)`` from the injection to ``scan_end``, as ``(t, v)``; an extension is described under
    ``description[key]``."""
    t, v = _since_injection(*curve, f"the {what}", found, source)
    t, v, extension = _extend(t, v, scan_end, what, found, source)
    if extension:
        description[key] = extension
    return t, v


# --------------------------------------------------------------------------------------------------
# The steps of load_blood
# --------------------------------------------------------------------------------------------------


def _check_options(paths: list[Path], blood_decay: str, blood_to_plasma: float | None, half_life: float | None):
    if not paths:
        raise InputError("no blood recording given")
    if blood_decay not in BLOOD_DECAY_REFERENCES:
        raise InputError(f"blood decay reference {blood_decay!r}: use one of {', '.join(BLOOD_DECAY_REFERENCES)}")
    if blood_to_plasma is not None and not (blood_to_plasma > 0 and math.isfinite(blood_to_plasma)):
        raise InputError(f"blood_to_plasma: must be a positive number, not {blood_to_plasma!r}")
    if blood_decay != "injection" and half_life is None:
        raise InputError(f"blood decay reference {blood_decay!r} needs the radionuclide's half-life "
                         "(TracerRadionuclide of the PET sidecar)")


def _keep_only(found: Recordings, column: str, paths: list[Path]) -> None:
    """Keep the series of the activity ``column`` only (the input and the vB curve)."""
    if column not in BLOOD_COLUMNS[:3]:
        raise InputError(f"column {column!r}: use one of {', '.join(BLOOD_COLUMNS[:3])}")
    if not found.series[column]:
        raise InputError(f"{paths[0]}: missing column {column!r}")
    keep = found.series[column]
    found.series = {c: (keep if c == column else []) for c in BLOOD_COLUMNS}


def _plasma_from_whole_blood(found: Recordings, blood_to_plasma: float | None) -> list[Series]:
    """Plasma series where only a continuous whole-blood recording covers the times: whole blood x the paired
    plasma/whole-blood ratio (else 1 / ``blood_to_plasma``, else 1), each noted."""
    ratio = _paired_ratio(found)
    if ratio is not None:
        rt, rv = ratio
        how = (f"the plasma/whole-blood ratio of {rt.size} paired sample(s) "
               f"({rv.min():.3g}-{rv.max():.3g}, interpolated, held outside)")
    elif blood_to_plasma is not None:
        rt, rv = np.array([0.0]), np.array([1.0 / blood_to_plasma])
        how = f"1 / the blood-to-plasma ratio {blood_to_plasma:g}"
    else:
        rt, rv = np.array([0.0]), np.array([1.0])
        how = "a ratio of 1 (no paired plasma and whole-blood samples; plasma = whole blood, as for FDG)"
    out = []
    for s in (s for s in found.series[_WHOLE_BLOOD] if s.continuous):
        out.append(Series(s.label, s.path, _PLASMA, s.t, s.v * np.interp(s.t, rt, rv), True))
        found.note(f"plasma over {s.t[0] * 60:g}-{s.t[-1] * 60:g} s is the whole blood of recording-{s.label} x {how}")
    return out


def _plasma_samples(found: Recordings, whole_blood, blood_to_plasma: float | None, source: str,
                    description: dict) -> tuple[np.ndarray, np.ndarray]:
    """The total plasma ``(t, v)``: the AIF as given; else the plasma recordings (with whole blood where only a
    continuous whole-blood recording covers the times); else the whole blood (/ ``blood_to_plasma``)."""
    if found.series["AIF"]:
        t, v, _ = _combine(found.series["AIF"], found, "AIF")
        description["InputFunctionSource"] = "AIF (an arterial input function, used as given)"
        return t, v
    if found.series[_PLASMA]:
        plasma_series = list(found.series[_PLASMA])
        continuous_whole_blood = any(s.continuous for s in found.series[_WHOLE_BLOOD])
        if continuous_whole_blood and not any(s.continuous for s in plasma_series):
            plasma_series += _plasma_from_whole_blood(found, blood_to_plasma)
        t, v, used = _combine(plasma_series, found, _PLASMA)
        description["PlasmaRecordings"] = used
        description["InputFunctionSource"] = _PLASMA
        return t, v
    if whole_blood is None:
        raise InputError(f"{source}: no activity column (plasma_radioactivity, whole_blood_radioactivity or AIF)")
    if blood_to_plasma is None:
        found.note("no plasma data: the input is the whole blood (plasma = whole blood, as for FDG; give a "
                   "blood-to-plasma ratio R for a constant ratio)")
    else:
        found.note(f"no plasma data: the input is the whole blood / the blood-to-plasma ratio {blood_to_plasma:g}")
    description["InputFunctionSource"] = _WHOLE_BLOOD + (f" / {blood_to_plasma:g}" if blood_to_plasma else "")
    factor = 1.0 if blood_to_plasma is None else 1.0 / blood_to_plasma
    return whole_blood[0], whole_blood[1] * factor


def _parent_plasma(found: Recordings, plasma, description: dict) -> tuple[np.ndarray, np.ndarray]:
    """The plasma x the parent fraction (interpolated onto the plasma times; 1 at the injection when the first
    sample is later; held after the last); the plasma as it is without metabolite data or for an AIF."""
    it, iv = plasma
    if found.series["AIF"]:
        return it, iv
    if not found.series[_FRACTION]:
        found.note("no metabolite data: " + ("the input is the total plasma (" if found.series[_PLASMA] else "(")
                   + "no metabolite correction; right for FDG)")
        return it, iv
    ft, fv, used = _combine(found.series[_FRACTION], found, _FRACTION)
    if ft[0] > 1e-9:
        ft, fv = np.concatenate([[0.0], ft]), np.concatenate([[1.0], fv])
        found.note(f"parent fraction taken as 1 at the injection, interpolated to its first sample at {ft[1] * 60:g} s")
    if it[-1] > ft[-1] + 1e-9:
        found.note(f"parent fraction held at its last value {fv[-1]:.3g} after {ft[-1] * 60:g} s")
    description["InputFunctionSource"] = "plasma_radioactivity x metabolite_parent_fraction (parent plasma)"
    description["MetaboliteRecordings"] = used
    return it, iv * np.interp(it, ft, fv)


def _vb_curve(found: Recordings, whole_blood, input_function: InputFunction, blood_to_plasma: float | None,
              scan_end: float | None, source: str, description: dict) -> InputFunction | None:
    """The curve of the vB term: the whole blood over the scan; else the input x ``blood_to_plasma``; else None
    (the input itself)."""
    if whole_blood is not None:
        t, v = _over_the_scan(whole_blood, scan_end, "whole blood", found, source, description,
                              "WholeBloodExtrapolation")
        description["WholeBloodSource"] = _WHOLE_BLOOD
        return InputFunction(t, v)
    if blood_to_plasma is not None:
        found.note(f"no whole-blood data: the vB term uses the input x the blood-to-plasma ratio {blood_to_plasma:g}")
        description["WholeBloodSource"] = f"input x {blood_to_plasma:g}"
        return input_function.scaled(blood_to_plasma)
    if not found.series["AIF"]:
        found.note("no whole-blood data: the vB term uses the input curve")
    description["WholeBloodSource"] = "the input curve"
    return None


def _closing_notes(found: Recordings, first_sample: float) -> None:
    """What the curves cannot show: a late first sample, recordings not corrected for dispersion."""
    if first_sample > 0.5:
        found.note(f"the first blood sample is {first_sample * 60:g} s after the injection: the input ramps linearly "
                   "from 0 at the injection to it, and may miss the peak")
    if found.not_dispersion_corrected:
        found.note(f"{', '.join(found.not_dispersion_corrected)}: not dispersion corrected (DispersionCorrected "
                   "false); jaxkin does not correct dispersion")


def load_blood(paths, *, pet: ScanTiming | None = None, blood_to_plasma: float | None = None,
               blood_decay: str = "injection", half_life: float | None = None, injection_start: float | None = None,
               column: str | None = None, input_values: str = "auto") -> Blood:
    """Read the blood recording(s) ``paths`` (one path or several) of a scan into a :class:`Blood`.

    ``pet``: the scan the blood belongs to (:class:`ScanTiming`: a :class:`jaxkin.io.pet.PetImage`, or the
    :class:`jaxkin.io.tables.RegionalTacs` of its regions). It gives the time origin (its ``injection_start``), the
    scan's end for the coverage check, the half-life and the units to fall back on; without it, ``injection_start``
    (min relative to TimeZero, default 0) and ``half_life`` (min) do, and the curves are not extended. ``half_life``
    given with ``pet`` overrides the scan's. ``blood_to_plasma`` is the constant whole-blood/plasma ratio (plasma =
    whole blood / ratio where no plasma is measured). ``blood_decay`` is what the activities are decay corrected to
    (:data:`jaxkin.io.blood_recordings.BLOOD_DECAY_REFERENCES`). ``column`` names the only activity column to use
    (the input and the vB curve), overriding the choice described in the module docstring. ``input_values``
    (:data:`jaxkin.io.blood_recordings.INPUT_VALUES`): ``auto`` reads a recording as frame means (an image-derived
    input, :func:`jaxkin.input_function.from_frame_means`) where its sidecar says so or its times are the scan's
    frame mid times, ``samples`` never, ``frame-means`` always. Blood in SUV, %ID/g or arbitrary units is kept where
    the scan shares the unit, converted with the sidecars' injected activity and body weight where it can be, and
    refused otherwise (:func:`jaxkin.io.units.read_value_units`).
    """
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if pet is not None:
        injection_start = pet.injection_start
        half_life = pet.half_life if half_life is None else half_life
    _check_options(paths, blood_decay, blood_to_plasma, half_life)
    found = read_recordings(paths, injection_start=0.0 if injection_start is None else float(injection_start),
                            half_life=half_life, blood_decay=blood_decay,
                            fallback_scale=None if pet is None else pet.scale_to_kbq,
                            fallback_units=None if pet is None else pet.units,
                            scan_kind=None if pet is None else getattr(pet, "value_kind", ACTIVITY),
                            scan_dose=getattr(pet, "dose", None), scan_frames=None if pet is None else pet.frames,
                            input_values=input_values)
    if column is not None:
        _keep_only(found, column, paths)
    scan_end = float(pet.frames.end[-1]) if pet is not None else None
    source = str(paths[0]) if len(paths) == 1 else f"{paths[0].parent}/{'+'.join(p.name for p in paths)}"
    check_kinds(found, pet, source)
    description: dict = {"BloodDecayCorrectedTo": blood_decay,
                         "BloodTimeOrigin": "TimeZero; shifted to time since injection by InjectionStart"}
    if means := frame_mean_curves(found):
        description["FrameMeans"] = means  # read as the curve whose frame means they are
    if blood_decay == "injection":
        found.note("blood activities are assumed decay corrected to the injection (BIDS does not state their "
                   "reference); give the blood decay reference (timezero, or none for uncorrected samples) otherwise")
    whole_blood = None
    if found.series[_WHOLE_BLOOD]:
        wt, wv, used = _combine(found.series[_WHOLE_BLOOD], found, _WHOLE_BLOOD)
        whole_blood = (wt, wv)
        description["WholeBloodRecordings"] = used
    plasma = _plasma_samples(found, whole_blood, blood_to_plasma, source, description)
    parent = _parent_plasma(found, plasma, description)
    it, iv = _over_the_scan(parent, scan_end, "input", found, source, description, "InputExtrapolation")
    input_function = InputFunction(it, iv)
    vb_curve = _vb_curve(found, whole_blood, input_function, blood_to_plasma, scan_end, source, description)
    found.negative_samples(source, input=input_function.values,
                           whole_blood=None if vb_curve is input_function else getattr(vb_curve, "values", None))
    _closing_notes(found, float(it[0]))
    description["Assumptions"] = list(found.notes)
    return Blood(input=input_function, whole_blood=vb_curve, notes=tuple(found.notes), sources=tuple(paths),
                 description=description)


# --------------------------------------------------------------------------------------------------
# Writing a recording; provenance
# --------------------------------------------------------------------------------------------------


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
    if plasma is None and whole_blood is None:
        raise ValueError("write_blood: give plasma and/or whole_blood")
    path = Path(path)
    scale = read_value_units(units, where="write_blood: units").scale  # 1 for SUV and other units kept
    curves = {_PLASMA: plasma, _WHOLE_BLOOD: whole_blood}
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
    meta = {
        "Description": what,
        "SoftwareName": "jaxkin",
        "SoftwareVersion": __version__,
        "time": {"Description": "time relative to TimeZero", "Units": "s"},
        **{k: {"Description": f"{k.split('_radioactivity')[0].replace('_', ' ')} radioactivity ({what}), decay "
               "corrected to the injection", "Units": units} for k in columns},
        **blood_sidecar_flags(plasma=_PLASMA in columns, whole_blood=_WHOLE_BLOOD in columns, metabolite=False,
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
