"""Regional TACs and blood curves as PET programs export them, turned into the wide layout of
:mod:`jaxkin.io.tables` (a header row, one row per frame or sample): PMOD's ``.voistat`` (the long export: one row
per region and frame, mid times only), PMOD's ``.tac`` and ``.bld`` (``start[seconds] end[kBq/cc] ...``, or
``time[seconds] name[kBq/cc] ...``), and the Turku PET Centre's DFT (``.dft``, ``.tac``, ``.bld``, ``.kbq``: four
title lines, then data) and plain (numbers only, units in ``# unit := ...`` comment lines) files.

:func:`read_wide` sniffs the format from the content (the extension only for PMOD's one-line titles) and returns a
:class:`Wide`; every problem is an :class:`jaxkin.errors.InputError`, one line naming the file. The frames of a
file that gives mid times only are found by :func:`frames_from_mid_times`.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from jaxkin.errors import InputError

__all__ = ["Wide", "read_wide", "frames_from_mid_times", "MID_TIME_SUFFIXES"]

#: Files whose formats state frame mid times alone (PMOD, Turku PET Centre): their frames are found from the mid
#: times (:func:`frames_from_mid_times`); a generic table with mid times alone is refused.
MID_TIME_SUFFIXES = (".voistat", ".tac", ".dft", ".bld", ".kbq")
#: Time units of the Turku PET Centre's files, by their spelling in the title (lower case).
_TPC_TIME = {"sec": "s", "s": "s", "min": "min"}


@dataclasses.dataclass
class Wide:
    """A file in the wide layout: ``header`` (a time column, ``start``/``end`` or ``mid``, with its unit in brackets,
    then one column per curve), ``rows`` (strings), ``units`` (the activity unit the file states, None when it does
    not), ``fmt`` (the format's name, for messages and notes) and ``notes``."""

    header: list
    rows: list
    units: str | None
    fmt: str
    notes: list = dataclasses.field(default_factory=list)


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the file ({err})") from None


def read_wide(path) -> Wide | None:
    """The file ``path`` in the wide layout when it is a PMOD ``.voistat``, a Turku PET Centre DFT or plain file,
    or a PMOD title line with mid times (``time[seconds] ...``); None for a generic table (read as it is)."""
    path = Path(path)
    lines = _lines(path)
    content = [ln for ln in lines if ln.strip()]
    if not content:
        return None
    if content[0].startswith("# PMOD_VOI_STATISTICS") or any(ln.startswith("//") for ln in content[:20]):
        return _voistat(path, content)
    data = [ln for ln in content if not ln.lstrip().startswith("#")]
    if data and data[0].split()[0].upper().startswith("DFT"):
        return _dft(path, content)
    if data and all(_is_number(t) for t in data[0].split()) and path.suffix.lower() in MID_TIME_SUFFIXES:
        return _plain(path, content)
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bracket(cell: str) -> tuple[str, str | None]:
    """``"Time [seconds]"`` -> ``("Time", "seconds")``; ``"VoiName(Region) [string]"`` -> ``("VoiName(Region)",
    "string")``."""
    m = re.match(r"^\s*(.*?)\s*\[\s*([^\]]*?)\s*\]\s*$", cell)
    return (m.group(1), m.group(2)) if m else (cell.strip(), None)


def _voistat(path: Path, content: list[str]) -> Wide:
    """PMOD's long export: ``// Component [string] ... VoiName(Region) [string] Time [seconds] Averaged [kBq/cc]
    ...``, one row per region and frame."""
    head = next((ln for ln in content if ln.startswith("//")), None)
    if head is None:
        raise InputError(f"{path}: PMOD .voistat without its column line (// Component [string] ...)")
    columns = [_bracket(c) for c in head[2:].strip().split("\t")]
    names = [n.lower() for n, _ in columns]

    def find(*options):
        return next((names.index(o) for o in options if o in names), None)

    voi, time, mean = find("voiname(region)", "voiname", "region"), find("time", "frame time"), find("averaged",
                                                                                                    "mean")
    for j, what in ((voi, "VoiName(Region)"), (time, "Time"), (mean, "Averaged")):
        if j is None:
            raise InputError(f"{path}: PMOD .voistat without a column {what!r}")
    rows = [ln.split("\t") for ln in content if not ln.startswith("#") and not ln.startswith("//")]
    for i, row in enumerate(rows):
        if len(row) < len(columns):
            raise InputError(f"{path}: data row {i + 1} has {len(row)} columns, the column line has {len(columns)}")
    component = find("component")
    if component is not None and len({row[component] for row in rows}) > 1:
        raise InputError(f"{path}: PMOD .voistat with several components (images); export one image per file")
    regions = list(dict.fromkeys(row[voi] for row in rows))
    times = {r: [row[time] for row in rows if row[voi] == r] for r in regions}
    first = times[regions[0]]
    for r in regions[1:]:
        if times[r] != first:
            raise InputError(f"{path}: region {r!r} has other frame times than {regions[0]!r}")
    values = {r: [row[mean] for row in rows if row[voi] == r] for r in regions}
    notes = [f"{path.name}: PMOD .voistat: the '{columns[mean][0]}' column is the regional mean"]
    if find("pvc") is not None:
        notes.append(f"{path.name}: PMOD .voistat: the PVC column is not used (the '{columns[mean][0]}' means are)")
    header = [f"mid[{columns[time][1] or ''}]", *regions]
    return Wide(header, [[t, *(values[r][i] for r in regions)] for i, t in enumerate(first)], columns[mean][1],
                "PMOD .voistat", notes)


def _dft(path: Path, content: list[str]) -> Wide:
    """Turku PET Centre's DFT: title lines (``DFT`` + region names; study + hemispheres; unit + planes; ``Time``
    (mid) or ``Times`` (start and end) with the time unit in brackets + volumes), then one row per frame."""
    comments = [ln for ln in content if ln.lstrip().startswith("#")]
    data = [ln.split("#", 1)[0].split() for ln in content if not ln.lstrip().startswith("#")]
    data = [d for d in data if d]
    if len(data) < 5:
        raise InputError(f"{path}: DFT file with fewer than four title lines and a data line")
    names, hemis, planes, timing = data[:4]
    n = len(names) - 1
    unit_cells = planes[1:]
    if unit_cells and unit_cells[0].startswith("(") and unit_cells[0].endswith(")"):
        unit_cells = unit_cells[1:]  # a unit written in two parts
    if len(hemis) - 1 != n or len(unit_cells) != n:
        raise InputError(f"{path}: DFT title lines name {n} region(s) but the 2nd/3rd title lines have other counts")
    regions = []
    for i in range(n):
        parts = [p for p in (names[i + 1], hemis[i + 1], unit_cells[i]) if p != "."]
        regions.append(" ".join(parts) if parts else f"region{i + 1}")
    time_type = timing[0].lower()
    if time_type not in ("time", "times") or len(timing) < 2:
        raise InputError(f"{path}: DFT 4th title line starts with {timing[0]!r}; jaxkin reads 'Time' (frame mid "
                         "times) or 'Times' (start and end)")
    unit = timing[1].strip("()").lower()
    if unit not in _TPC_TIME:
        raise InputError(f"{path}: DFT time unit {timing[1]!r}; jaxkin reads (sec) or (min)")
    act = None if planes[0] == "." else planes[0]
    cols = ["start", "end"] if time_type == "times" else ["mid"]
    header = [f"{c}[{_TPC_TIME[unit]}]" for c in cols] + regions
    rows = [[("n/a" if c == "." else c) for c in row] for row in data[4:]]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise InputError(f"{path}: DFT data line {i + 1} has {len(row)} values, expected {len(header)}")
    if comments:
        act = act or _ift(comments).get("unit")
    return Wide(header, rows, act, "Turku PET Centre DFT")


def _ift(comments: list[str]) -> dict:
    """``# key := value`` comment lines (the Turku PET Centre's interfile-style header) as a dict, keys lower case."""
    out = {}
    for ln in comments:
        key, sep, value = ln.lstrip("# ").partition(":=")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def _plain(path: Path, content: list[str]) -> Wide:
    """A Turku PET Centre plain file: numbers only (sample or mid time, then one column per curve); the units in
    ``# unit := kBq/mL`` and ``# timeunit := min`` comment lines, or not stated (refused for the time unit)."""
    info = _ift([ln for ln in content if ln.lstrip().startswith("#")])
    rows = [ln.split("#", 1)[0].split() for ln in content if not ln.lstrip().startswith("#")]
    rows = [r for r in rows if r]
    time_unit = info.get("timeunit", info.get("time_unit", info.get("time unit")))
    if time_unit is None:
        raise InputError(f"{path}: a plain data file that does not state its time unit (a '# timeunit := min' or "
                         "'# timeunit := sec' line)")
    unit = _TPC_TIME.get(time_unit.strip().lower(), time_unit.strip())
    width = len(rows[0])
    if width < 2:
        raise InputError(f"{path}: a plain data file needs a time column and at least one value column")
    header = [f"mid[{unit}]"] + [f"curve{i}" if width > 2 else "value" for i in range(1, width)]
    return Wide(header, rows, info.get("unit", info.get("calibration unit")), "Turku PET Centre plain data")


def frames_from_mid_times(path: Path, mid_min: np.ndarray, notes: list) -> tuple[np.ndarray, np.ndarray]:
    """``(start, duration)`` in minutes of frames given by their mid times ``mid_min [F]`` alone: the frames of a
    PMOD ``.acqtimes`` file beside ``path`` (same stem; checked against the mid times), else contiguous frames from
    0 (each frame ends where the next starts; said in ``notes``). InputError where contiguous frames from 0 cannot
    have these mid times."""
    acq = path.with_suffix(".acqtimes")
    if acq.is_file():
        start, end = _acqtimes(acq)
        if start.size != mid_min.size or np.max(np.abs(0.5 * (start + end) - mid_min)) > 0.5 / 60.0:
            raise InputError(f"{acq}: its frames do not have the mid times of {path.name}")
        notes.append(f"{path.name}: frames from {acq.name}")
        return start, end - start
    start = np.empty_like(mid_min)
    end = np.empty_like(mid_min)
    t = 0.0
    for i, m in enumerate(mid_min):
        start[i], end[i] = t, 2.0 * m - t
        if end[i] <= start[i] + 1e-9:
            raise InputError(f"{path}: only frame mid times, and no contiguous frames from 0 have them (frame {i} at "
                             f"{m * 60:g} s); give the frames in a PMOD {acq.name} beside it")
        t = end[i]
    notes.append(f"{path.name}: only frame mid times: frames taken contiguous from 0 s (each ends where the next "
                 f"starts; the last ends at {end[-1] * 60:g} s); give a PMOD {acq.name} beside it otherwise")
    return start, end - start


def _acqtimes(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A PMOD ``.acqtimes``: a comment line, the number of frames, then ``start end`` per line in seconds."""
    rows = [ln.split("#", 1)[0].split() for ln in _lines(path) if not ln.lstrip().startswith("#")]
    rows = [r for r in rows if r]
    try:
        count = int(float(rows[0][0]))
        pairs = np.array([[float(a), float(b)] for a, b in (r[:2] for r in rows[1:])])
    except (IndexError, ValueError):
        raise InputError(f"{path}: expected the number of frames, then 'start end' in seconds per line") from None
    if pairs.shape != (count, 2):
        raise InputError(f"{path}: states {count} frames but lists {len(pairs)}")
    return pairs[:, 0] / 60.0, pairs[:, 1] / 60.0


def read_blood_wide(path) -> Wide | None:
    """A blood curve file of PMOD (``.bld``: ``time[seconds]`` or ``sample-time[minutes]``, then value columns such
    as ``plasma[kBq/cc]``) or the Turku PET Centre (``.bld``/``.kbq``/``.dft``: DFT or plain) in the wide layout;
    None for a BIDS blood TSV (read as it is)."""
    path = Path(path)
    wide = read_wide(path)
    if wide is not None:
        return wide
    content = [ln for ln in _lines(path) if ln.strip() and not ln.lstrip().startswith("#")]
    if not content:
        return None
    cells = content[0].split("\t") if "\t" in content[0] else content[0].split()
    if not re.match(r"^[\w\-. ]+\[[^\]]+\]$", cells[0].strip()):
        return None
    rows = [ln.split("\t") if "\t" in ln else ln.split() for ln in content[1:]]
    units = [_bracket(c)[1] for c in cells[1:] if _bracket(c)[1]]
    header = [cells[0].strip()] + [_bracket(c)[0] for c in cells[1:]]
    if len(set(units)) > 1:
        raise InputError(f"{path}: value columns in different units {sorted(set(units))}")
    return Wide(header, rows, units[0] if units else None, "PMOD blood curve")


def time_columns(path: Path, header: list) -> tuple[list[str], str]:
    """The time columns of a wide blood table (``["mid"]``, ``["start", "end"]`` or ``["time"]``) and their unit
    (the bracket of the first); InputError when the first column does not state its unit."""
    name, unit = _bracket(header[0])
    if unit is None or not unit.strip():
        raise InputError(f"{path}: the time column {header[0]!r} does not state its unit (e.g. time[seconds])")
    second = _bracket(header[1])[0].lower() if len(header) > 1 else ""
    kinds = ["start", "end"] if name.lower() == "start" and second == "end" else [name.lower()]
    return kinds, unit.strip().lower()
