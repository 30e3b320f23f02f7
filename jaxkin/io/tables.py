"""Tables of regional time-activity curves: PETPrep-style TSV with a JSON sidecar, and the wide tables of PMOD and
kinfitr. Times in minutes since injection inside, seconds (or the unit the file states) in the files; activity in
kBq/ml.

* :func:`write_tacs` / :func:`read_tacs`: one row per frame, ``frame_start`` and ``frame_end`` in seconds relative to
  ``TimeZero``, one column per region, with a sidecar (units, voxel counts, volumes, the SD per frame).
  :func:`read_tacs` also reads wide tables (start/end or mid times with durations, one column per region), in
  seconds or minutes as the file states.

Every problem raises :class:`jaxkin.errors.InputError`, one line naming the file and the field.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

import numpy as np

from jaxkin.errors import InputError
from jaxkin.frames import FrameSchedule, frame_problem
from jaxkin.input_function import MINUTES_PER_TIME_UNIT
from jaxkin.io.files import atomic_write, read_json, write_json
from jaxkin.io._formats import MID_TIME_SUFFIXES, frames_from_mid_times, read_wide
from jaxkin.io.units import ACTIVITY, Dose, dose_from_sidecar, read_value_units, unit_kind


@dataclasses.dataclass(frozen=True, eq=False)
class RegionalTacs:
    """Regional TACs ``values [R, F]`` (kBq/ml, frame means) of the regions ``names`` over ``frames`` (minutes since
    injection). ``sd [R, F]`` is the SD over each region's voxels (None if unknown), ``voxels [R]`` the number of
    voxels (the sum of the fractions with partial-volume fractions), ``volume_ml [R]``; ``labels`` the label indices
    of each region. ``injection_start``: the injection in minutes relative to TimeZero (the files' time origin);
    ``half_life`` of the radionuclide (min) when known; ``notes``: assumptions made, one sentence each; ``units`` and
    ``scale_to_kbq``: the unit the values were read in (they are converted to kBq/ml) and its factor;
    ``value_kind``: :data:`jaxkin.io.units.ACTIVITY` (kBq/ml), or the unit kept where the values are not activities
    (``SUV``, ``%ID/g``, ``arbitrary``: the input must share it); ``dose``: the injected activity and body weight of
    the sidecar (:class:`jaxkin.io.units.Dose`), None when not given.

    It also serves as the scan of :func:`jaxkin.io.blood.load_blood`: it has the fields of
    :class:`jaxkin.io.blood.ScanTiming`."""

    names: tuple
    frames: FrameSchedule
    values: np.ndarray
    sd: np.ndarray | None = None
    voxels: np.ndarray | None = None
    volume_ml: np.ndarray | None = None
    labels: tuple | None = None
    injection_start: float = 0.0
    half_life: float | None = None
    notes: tuple = ()
    path: Path | None = None
    extra: dict = dataclasses.field(default_factory=dict)
    units: str = "kBq/mL"
    scale_to_kbq: float = 1.0
    value_kind: str = ACTIVITY
    dose: Dose | None = None

    def column(self, name: str) -> np.ndarray:
        return self.values[list(self.names).index(name)]


def _fmt(x: float) -> str:
    return f"{x:.9g}"


def write_tacs(path, tacs: RegionalTacs, *, extra: dict | None = None) -> Path:
    """Write ``tacs`` as ``path`` (TSV: ``frame_start``, ``frame_end`` in s relative to TimeZero, one column per
    region in kBq/mL, or in the unit of ``tacs.value_kind`` where that is not an activity) and its JSON sidecar (column units, ``InjectionStart``, per region: label indices, voxel count,
    volume, SD per frame), atomically."""
    path = Path(path)
    start = (tacs.frames.start + tacs.injection_start) * 60.0
    end = (tacs.frames.end + tacs.injection_start) * 60.0
    lines = ["\t".join(["frame_start", "frame_end", *tacs.names])]
    for f in range(tacs.frames.n_frames):
        lines.append("\t".join([_fmt(start[f]), _fmt(end[f]), *(_fmt(v) for v in tacs.values[:, f])]))
    with atomic_write(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    regions = {}
    for r, name in enumerate(tacs.names):
        info = {}
        if tacs.labels is not None:
            info["Labels"] = [int(i) for i in tacs.labels[r]]
        if tacs.voxels is not None:
            info["Voxels"] = round(float(tacs.voxels[r]), 6)
        if tacs.volume_ml is not None:
            info["VolumeML"] = round(float(tacs.volume_ml[r]), 6)
        if tacs.sd is not None:
            info["SD"] = [float(_fmt(v)) for v in tacs.sd[r]]
        regions[name] = info
    sidecar = {
        "frame_start": {"Description": "frame start, relative to TimeZero", "Units": "s"},
        "frame_end": {"Description": "frame end, relative to TimeZero", "Units": "s"},
        "Units": "kBq/mL" if tacs.value_kind == ACTIVITY else tacs.units,
        "Description": "mean activity of each region per frame, decay corrected to the injection",
        "InjectionStart": round(tacs.injection_start * 60.0, 6),
        "Regions": regions,
    }
    sidecar.update(extra or {})
    write_json(path.with_suffix(".json"), sidecar)
    return path


_START = {"frame_start", "start", "start_time", "starttime", "tstart", "t_start", "frame_start_time"}
_END = {"frame_end", "end", "end_time", "endtime", "tend", "t_end", "stop", "frame_end_time"}
_MID = {"frame_mid", "mid", "mid_time", "midtime", "times", "time", "t", "frame_mid_time", "mid_frame_time"}
_DURATION = {"frame_duration", "duration", "dur", "frame_length", "durations"}
_SKIP = {"weights", "weight", "frame", "frame_number", "frame_no", "index"}
_FRAME_KINDS = (("start", _START), ("end", _END), ("mid", _MID), ("duration", _DURATION))


@dataclasses.dataclass
class _Columns:
    """A table's header sorted out: ``frame_columns`` (kind -> column index: start, end, mid, duration),
    ``regions`` (column indices), the time and activity units stated in brackets, and the notes so far."""

    frame_columns: dict
    regions: list
    time_units: set
    activity_units: set
    notes: list


def _split_unit(column: str) -> tuple[str, str | None]:
    """``"start[seconds]"`` -> ``("start", "seconds")``; ``"Mid (min)"`` -> ``("mid", "min")``."""
    m = re.match(r"^\s*(.*?)\s*[\[(]\s*([^\])]*?)\s*[\])]\s*$", column)
    base, unit = (m.group(1), m.group(2)) if m else (column.strip(), None)
    return re.sub(r"[\s\-]+", "_", base.strip().lower()), unit


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the table ({err})") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputError(f"{path}: empty table (a header row is needed)")
    delimiter = "\t" if "\t" in lines[0] else ("," if "," in lines[0] else ";" if ";" in lines[0] else None)
    if delimiter is None:
        rows = [ln.split() for ln in lines]
    else:
        rows = list(csv.reader(lines, delimiter=delimiter))
    header = [h.strip() for h in rows[0]]
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise InputError(f"{path}: line {i} has {len(row)} columns, the header has {len(header)}")
    return header, rows[1:]


def _numbers(path: Path, column: str, cells: list[str]) -> np.ndarray:
    out = np.empty(len(cells))
    for i, c in enumerate(cells):
        try:
            out[i] = float(c)
        except ValueError:
            raise InputError(f"{path}: column {column!r}, line {i + 2}: {c!r} is not a number") from None
        if not np.isfinite(out[i]):
            raise InputError(f"{path}: column {column!r}, line {i + 2}: {c!r} (every value must be finite)")
    return out


def _sort_columns(path: Path, header: list[str]) -> _Columns:
    """Which columns hold frame times, which regions, and the units their brackets state."""
    columns = _Columns(frame_columns={}, regions=[], time_units=set(), activity_units=set(), notes=[])
    for j, col in enumerate(header):
        base, unit = _split_unit(col)
        if unit is not None and unit.strip().lower() in MINUTES_PER_TIME_UNIT:
            columns.time_units.add(unit.strip().lower())
        elif unit is not None and unit.strip():
            try:
                unit_kind(unit.strip())
                columns.activity_units.add(unit.strip())
            except InputError:
                raise InputError(f"{path}: column {col!r}: unknown unit {unit!r}") from None
        kind = next((k for k, names in _FRAME_KINDS if base in names and k not in columns.frame_columns), None)
        if kind is not None:
            columns.frame_columns[kind] = j
        elif base in _SKIP:
            columns.notes.append(f"{path.name}: column {col!r} is not a region (ignored)")
        elif not col:
            raise InputError(f"{path}: column {j + 1} has no name")

        else:
            columns.regions.append(j)
    if not columns.regions:
        raise InputError(f"{path}: no region column (expected frame times and one column per region)")
    return columns


def _time_unit(path: Path, header: list[str], columns: _Columns, sidecar: dict, time_unit: str | None) -> str:
    """The frame times' unit: a bracket, else the sidecar, else ``time_unit``, else seconds for
    ``frame_start``/``frame_end`` (noted); InputError otherwise."""
    if len(columns.time_units) > 1:
        raise InputError(f"{path}: frame columns in different time units {sorted(columns.time_units)}")
    kinds = columns.frame_columns
    side_unit = None
    for kind in ("start", "end", "mid", "duration"):
        if kind in kinds:
            entry = sidecar.get(header[kinds[kind]])
            if isinstance(entry, dict) and entry.get("Units"):
                side_unit = str(entry["Units"]).strip().lower()
    unit = next(iter(columns.time_units), None) or side_unit or (time_unit.strip().lower() if time_unit else None)
    if unit is None and {"start", "end"} <= set(kinds) and _split_unit(header[kinds["start"]])[0] == "frame_start":
        unit = "s"
        columns.notes.append(f"{path.name}: frame_start/frame_end taken in seconds (the PETPrep/BIDS convention; no "
                             "unit stated)")
    if unit is None:
        raise InputError(f"{path}: the frame times do not state their unit (s or min); name the column e.g. "
                         "start[s] or start[min], or give time_unit")
    if unit not in MINUTES_PER_TIME_UNIT:
        raise InputError(f"{path}: time unit {unit!r} is neither seconds nor minutes")
    return unit


def _frame_times(path: Path, header: list[str], rows: list, columns: _Columns, unit: str):
    """``(start [F], duration [F])`` in minutes relative to TimeZero, from start with end or duration, or mid times
    with durations; InputError for frames :func:`jaxkin.frames.frame_problem` refuses, naming the line."""
    kinds = columns.frame_columns
    to_min = MINUTES_PER_TIME_UNIT[unit]
    cols = {k: _numbers(path, header[j], [row[j] for row in rows]) * to_min for k, j in kinds.items()}
    if "start" in cols and "end" in cols:
        start, duration = cols["start"], cols["end"] - cols["start"]
    elif "start" in cols and "duration" in cols:
        start, duration = cols["start"], cols["duration"]
    elif "mid" in cols and "duration" in cols:
        start, duration = cols["mid"] - 0.5 * cols["duration"], cols["duration"]
        columns.notes.append(f"{path.name}: frames from mid times and durations")
    elif "mid" in cols and path.suffix.lower() in MID_TIME_SUFFIXES:
        start, duration = frames_from_mid_times(path, cols["mid"], columns.notes)
    elif "mid" in cols:
        raise InputError(f"{path}: only frame mid times ({header[kinds['mid']]!r}); frames need their durations "
                         "(a duration column) or start and end times")
    else:
        raise InputError(f"{path}: no frame times (expected frame_start and frame_end, or start/end, or mid times "
                         "with durations)")
    problem = frame_problem(start, duration)
    if problem is not None:
        i = problem.frame
        if problem.kind == "duration":
            raise InputError(f"{path}: frame {i} (line {i + 2}) has a duration of {duration[i] * 60:g} s")
        if problem.kind == "order":
            raise InputError(f"{path}: frame starts must increase; frame {i} (line {i + 2}) does not")
        if problem.kind == "overlap":
            raise InputError(f"{path}: frames overlap: frame {i} (line {i + 2}) starts before frame {i - 1} ends")
        raise InputError(f"{path}: no frames (a row per frame is needed)")  # empty: the only problem left
    return start, duration


def _region_units(path: Path, names: list[str], columns: _Columns, sidecar: dict, units: str | None) -> list:
    """Each region's activity unit: a bracket in the header (PMOD writes ``end[kBq/cc]``) or the unit the format
    states, else the sidecar's entry for the column (``{"liver": {"Units": "kBq/mL"}}``, the BIDS way), else the
    sidecar's ``Units``, else ``units``; InputError where none is stated or a bracket and the sidecar disagree."""
    if len(columns.activity_units) > 1:
        raise InputError(f"{path}: columns in different activity units {sorted(columns.activity_units)}")
    stated = next(iter(columns.activity_units), None)
    out = []
    for name in names:
        entry = sidecar.get(name)
        own = entry.get("Units") if isinstance(entry, dict) else None
        if stated is not None and own is not None and str(own).strip().lower() != stated.strip().lower():
            raise InputError(f"{path}: column {name!r} is in {stated} in the file but in {own} in its sidecar")
        act = stated or own or sidecar.get("Units") or units
        if act is None:
            raise InputError(f"{path}: the activity unit is not stated (a bracket such as end[kBq/cc], the JSON "
                             f'sidecar\'s Units or {{"{name}": {{"Units": "kBq/mL"}}}}, or units, e.g. kBq/mL)')
        out.append(str(act))
    return out


def _activity_scale(path: Path, names: list[str], columns: _Columns, sidecar: dict, units: str | None,
                    dose: Dose | None) -> tuple[np.ndarray, str, str, float]:
    """``(scale [R], units, kind, scale of the first region)``: the factors that bring each region to kBq/ml (1
    where a relative unit is kept, :func:`jaxkin.io.units.read_value_units`); InputError where regions differ in
    kind (SUV and kBq/mL that cannot be converted)."""
    read = [read_value_units(u, where=f"{path}: column {n!r}", dose=dose)
            for n, u in zip(names, _region_units(path, names, columns, sidecar, units))]
    kinds = {r.kind for r in read}
    if len(kinds) > 1:
        raise InputError(f"{path}: regions in units that cannot be reconciled ({', '.join(sorted(kinds))})")
    columns.notes += list(dict.fromkeys(f"{path.name}: {r.note}" for r in read if r.note))
    if read[0].kind != ACTIVITY:
        columns.notes.append(f"{path.name}: values in {read[0].units} (not an activity; no injected activity and "
                             "body weight in the sidecar to convert them): the input must be in the same unit")
    label = ", ".join(dict.fromkeys(r.units for r in read))
    return np.array([r.scale for r in read]), label, read[0].kind, read[0].scale


def _region_values(path: Path, header: list[str], rows: list, regions: list[int]) -> np.ndarray:
    """``[R, F]`` values of the region columns as written; InputError for a missing or non-finite value."""
    values = np.empty((len(regions), len(rows)))
    for r, j in enumerate(regions):
        for i, c in enumerate(row[j] for row in rows):
            try:
                v = float(c)
            except ValueError:
                v = np.nan if c.strip().lower() in ("nan", "n/a", "na", "") else None
                if v is None:
                    raise InputError(f"{path}: column {header[j]!r}, line {i + 2}: {c!r} is not a number") from None
            if not np.isfinite(v):
                raise InputError(f"{path}: column {header[j]!r}, line {i + 2}: {c!r}; a region's TAC must have a "
                                 "finite value in every frame")
            values[r, i] = v
    return values


def _region_details(sidecar_path: Path, sidecar: dict, names: list[str], shape: tuple, scale: np.ndarray) -> dict:
    """``sd`` (kBq/ml), ``voxels`` and ``volume_ml`` of the regions from the sidecar's ``Regions``, where every
    region has them."""
    info = sidecar.get("Regions")
    out = {}
    if not (isinstance(info, dict) and all(n in info for n in names)):
        return out
    try:
        if all("SD" in info[n] for n in names):
            out["sd"] = np.array([info[n]["SD"] for n in names], np.float64) * np.reshape(scale, (-1, 1))
            if out["sd"].shape != shape:
                raise InputError(f"{sidecar_path}: 'Regions' SD lists must have {shape[1]} values")
        if all("Voxels" in info[n] for n in names):
            out["voxels"] = np.array([info[n]["Voxels"] for n in names], np.float64)
        if all("VolumeML" in info[n] for n in names):
            out["volume_ml"] = np.array([info[n]["VolumeML"] for n in names], np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{sidecar_path}: field 'Regions' must hold numbers") from None
    return out


def read_tacs(path, *, time_unit: str | None = None, units: str | None = None,
              injection_start: float | None = None) -> RegionalTacs:
    """Regional TACs from a table: jaxkin's own (:func:`write_tacs`), PETPrep's, the wide layout of PMOD and
    kinfitr exports (one row per frame, one column per region), PMOD's ``.voistat`` and ``.tac``, and the Turku PET
    Centre's DFT (``.dft``/``.tac``) files (recognised by their content).

    Frame columns (case and unit brackets ignored): start (``frame_start``, ``start``, ``start[seconds]``, ...) with
    end or duration, or mid times (``mid``, ``times``, ...) with durations; mid times alone are refused, except in
    the PMOD and Turku PET Centre formats that only state them (``.voistat``, ``.tac``, ``.dft``): there the frames
    come from a PMOD ``.acqtimes`` file beside the table, else are taken contiguous from 0 (said). Time unit: a bracket in the column name (``start[seconds]``, ``Mid (min)``), else the JSON
    sidecar (``{"frame_start": {"Units": "s"}}``), else ``time_unit``; ``frame_start``/``frame_end`` without any of
    these are seconds (the PETPrep/BIDS convention, said in the notes); anything else is refused. Activity units:
    an activity unit in a bracket (PMOD writes ``end[kBq/cc]``) or the format's title, else the sidecar's entry for
    the column (``{"liver": {"Units": "kBq/mL"}}``), else the sidecar's ``Units``, else ``units``; without one,
    refused. SUV (g/mL), %ID/g and arbitrary units are converted to kBq/ml when the sidecar gives
    ``InjectedRadioactivity`` (with ``InjectedRadioactivityUnits``) and, for SUV, ``BodyWeight`` (kg); otherwise
    they are kept (``value_kind``) and the input must share them. Columns ``weights``/``frame`` are not regions. Times are relative to TimeZero, with the
    injection at the sidecar's ``InjectionStart`` (s), else ``injection_start`` (s), else 0 (said).
    """
    path = Path(path)
    wide = read_wide(path)
    header, rows = (wide.header, wide.rows) if wide is not None else _read_rows(path)
    sidecar_path = path.with_suffix(".json")
    sidecar = read_json(sidecar_path, "TACs sidecar") if sidecar_path.is_file() else {}
    columns = _sort_columns(path, header)
    if wide is not None:
        columns.notes[:0] = [f"{path.name}: read as {wide.fmt}", *wide.notes]
        if wide.units is not None:
            columns.activity_units.add(wide.units)
    unit = _time_unit(path, header, columns, sidecar, time_unit)
    start, duration = _frame_times(path, header, rows, columns, unit)
    names = [_split_name(header[j]) for j in columns.regions]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: a region column name appears twice")
    dose = dose_from_sidecar(sidecar, sidecar_path)
    scale, act, kind, first_scale = _activity_scale(path, names, columns, sidecar, units, dose)
    values = _region_values(path, header, rows, columns.regions) * scale[:, None]
    if "InjectionStart" in sidecar:
        inj = float(sidecar["InjectionStart"]) / 60.0
    elif injection_start is not None:
        inj = float(injection_start) / 60.0
    else:
        inj = 0.0
        columns.notes.append(f"{path.name}: no InjectionStart (sidecar or injection_start); the frame times are taken "
                             "as time since injection")
    return RegionalTacs(names=tuple(names), frames=FrameSchedule(start=start - inj, duration=duration), values=values,
                        **_region_details(sidecar_path, sidecar, names, values.shape, scale), labels=None,
                        injection_start=inj, half_life=None, notes=tuple(columns.notes), path=path,
                        extra={k: sidecar[k] for k in ("Assumptions",) if k in sidecar}, units=act,
                        scale_to_kbq=first_scale, value_kind=kind, dose=dose)


def _split_name(column: str) -> str:
    """A region's name without the unit PMOD writes after it: ``"liver[kBq/cc]"`` -> ``"liver"``."""
    return re.sub(r"\s*\[[^\]]*\]\s*$", "", column).strip() or column
