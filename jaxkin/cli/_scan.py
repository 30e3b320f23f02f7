"""What the commands that read a scan share: the blood options, reading a PET with its blood, saying the notes,
naming the library's options by their flags."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path


def flag(name: str) -> str:
    """The flag of the library parameter ``name``: ``chunk_size`` -> ``--chunk-size``."""
    return "--" + name.replace("_", "-")


@contextlib.contextmanager
def options_worded(**words: str):
    """Reword a :class:`jaxkin.fitting.OptionError` raised inside as the command line names the options: each by
    ``words[name]`` if given, else by its flag (:func:`flag`)."""
    from jaxkin.errors import InputError
    from jaxkin.fitting.options import OptionError

    try:
        yield
    except OptionError as err:
        raise InputError(err.worded(lambda name: words.get(name) or flag(name))) from None


def command_line() -> str | None:
    """The command line as run (``jaxkin ...``), for the sidecars; None when not run from a command line."""
    import shlex

    return shlex.join(["jaxkin"] + sys.argv[1:]) if sys.argv and sys.argv[0] else None


def add_blood_arguments(parser, *, required: bool) -> None:
    """``--input-function`` (one or several blood recordings), ``--blood-to-plasma``, ``--blood-decay``,
    ``--blood-values``."""
    parser.add_argument("--input-function", nargs="+", required=required, metavar="BLOOD_TSV",
                        help="blood recording(s) *_blood.tsv of the scan (BIDS: time in s relative to TimeZero; "
                        "plasma_radioactivity, whole_blood_radioactivity, metabolite_parent_fraction), or a PMOD .bld "
                        "or Turku PET Centre .bld/.kbq/.dft curve (used as the input as given). Several "
                        "recordings (e.g. autosampler and manual) are combined by time")
    parser.add_argument("--blood-to-plasma", type=float, default=None, metavar="R",
                        help="constant whole-blood/plasma ratio: plasma = whole blood / R where no plasma is "
                        "measured, whole blood = plasma x R where no whole blood is (default: not assumed)")
    parser.add_argument("--blood-decay", choices=("injection", "timezero", "none"), default="injection",
                        help="what the blood activities are decay corrected to (BIDS does not say; default: the "
                        "injection). none = not decay corrected")
    parser.add_argument("--blood-values", choices=("auto", "samples", "frame-means"), default="auto",
                        help="how blood values are read: frame-means (means over the scan's frames at their mid "
                        "times, as an image-derived input: the curve whose frame means they are), samples (values at "
                        "their times), auto (default: frame means where the sidecar says so, as jaxkin idif writes, or "
                        "where the times are the scan's frame mid times; said on stderr)")


def say(command: str, notes) -> None:
    """Print each note once on stderr: ``jaxkin <command>: note: ...``."""
    for note in dict.fromkeys(notes):
        print(f"jaxkin {command}: note: {note}", file=sys.stderr)


def load_blood_for(args, pet):
    """The :class:`jaxkin.io.blood.Blood` of ``pet`` from ``args.input_function`` and the blood options."""
    from jaxkin.io.blood import load_blood

    return load_blood(args.input_function, pet=pet, blood_to_plasma=args.blood_to_plasma,
                      blood_decay=args.blood_decay, input_values=args.blood_values)


def add_bids_arguments(parser, *, blood: bool = True) -> None:
    """The BIDS-App options: ``--bids ROOT``, ``--participant-label``, ``--session`` (and ``--blood-dataset``)."""
    group = parser.add_argument_group(
        "BIDS-App mode", "process every PET scan of a BIDS dataset and write a BIDS derivatives dataset into --out")
    group.add_argument("--bids", metavar="ROOT", help="the raw BIDS dataset (holds dataset_description.json)")
    group.add_argument("--participant-label", nargs="+", metavar="LABEL",
                       help="only these participants (01 or sub-01; default all)")
    group.add_argument("--session", nargs="+", metavar="LABEL", help="only these sessions (default all)")
    if blood:
        group.add_argument("--blood-dataset", metavar="DIR",
                           help="take each scan's blood recordings from this derivatives dataset (e.g. the output of "
                           "jaxkin idif --bids) instead of the raw dataset")


def check_modes(args, single: tuple[str, ...]) -> None:
    """InputError unless exactly one of the two modes is asked for: ``--bids`` or the single-scan options."""
    from jaxkin.errors import InputError

    given = [flag(name) for name in single if getattr(args, name, None)]
    if args.bids:
        if given:
            raise InputError(f"{', '.join(given)}: not with --bids (each scan's files come from the dataset)")
        return
    for name in ("participant_label", "session", "blood_dataset"):
        if getattr(args, name, None):
            raise InputError(f"{flag(name)}: only with --bids")
    missing = [flag(name) for name in single[:1] if not getattr(args, name, None)]
    if missing:
        raise InputError(f"{missing[0]} (or --bids ROOT) is required")


@dataclasses.dataclass
class BidsJob:
    """One scan of a BIDS-App run, opened and checked: its PET image, its blood (or None), where its outputs go and
    the ``Sources`` (BIDS URIs) of its outputs."""

    scan: object
    pet: object
    blood: object
    out_dir: Path
    sources: list


def bids_jobs(args, *, command: str, need_blood: bool) -> list[BidsJob]:
    """Every selected scan of ``args.bids``, each PET and blood read and checked before any work (bad input stops
    the run with nothing written). The caller checks what else it needs, then calls :func:`start_derivatives`."""
    from jaxkin.io.pet import load_pet
    from jaxkin.io.blood import load_blood
    from jaxkin.io.layout import bids_uri, check_output_folder, derivative_blood, derivative_dir, find_pet_scans
    from jaxkin.errors import InputError

    root, out = Path(args.bids), Path(args.out)
    blood_root = Path(args.blood_dataset) if getattr(args, "blood_dataset", None) else None
    check_output_folder(out, root, name=f"jaxkin {command}")
    if blood_root is not None and not blood_root.is_dir():
        raise InputError(f"--blood-dataset {blood_root}: folder not found")
    scans = find_pet_scans(root, participants=args.participant_label, sessions=args.session,
                           with_labels=command == "idif")
    jobs = []
    for scan in scans:
        pet = load_pet(scan.pet)
        paths = derivative_blood(blood_root, scan) if blood_root is not None else scan.blood
        blood = None
        if paths and command != "idif":
            blood = load_blood(paths, pet=pet, blood_to_plasma=args.blood_to_plasma, blood_decay=args.blood_decay,
                               input_values=getattr(args, "blood_values", "auto"))
        elif need_blood:
            where = f"--blood-dataset {blood_root}" if blood_root else str(root)
            raise InputError(f"{scan.pet}: no blood recording (*_recording-<label>_blood.tsv) for this scan in "
                             f"{where}")
        sources = [bids_uri(scan.pet, root)]
        if blood is not None:
            sources += [bids_uri(p, blood_root, "blood") if blood_root else bids_uri(p, root) for p in paths]
        jobs.append(BidsJob(scan, pet, blood, derivative_dir(out, scan), sources))
    return jobs


def start_derivatives(args, *, command: str) -> None:
    """Write (or update) the derivatives dataset's ``dataset_description.json`` in ``args.out``: the first file a
    BIDS-App run writes, once every input is checked."""
    from jaxkin.io.layout import write_dataset_description

    blood_root = getattr(args, "blood_dataset", None)
    write_dataset_description(Path(args.out), source_root=Path(args.bids), name=f"jaxkin {command}",
                              links={"blood": Path(blood_root)} if blood_root else None)


def tsv_output(path, mode: str = "") -> Path:
    """``--out`` of a table: a ``.tsv`` path in an existing folder; InputError otherwise (``mode`` ends the
    message's first clause, e.g. ``" with --tacs"``)."""
    from jaxkin.errors import InputError

    out = Path(path)
    if out.suffix != ".tsv":
        raise InputError(f"--out: {out} must end in .tsv{mode}")
    if not out.parent.is_dir():
        raise InputError(f"--out: folder {out.parent} not found")
    return out


def writable_folder(folder: Path) -> None:
    """InputError unless ``folder`` is a folder or can be made one (its nearest existing parent is a writable folder);
    nothing is created (outputs are staged and moved in place when written)."""
    import os

    from jaxkin.errors import InputError

    folder = Path(folder)
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"--out: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"--out: {existing} is not writable")


def replaced(out_dir: Path, pattern: str) -> int:
    """How many files matching ``pattern`` are in ``out_dir`` already (a rerun overwrites them, atomically)."""
    return sum(1 for _ in out_dir.glob(pattern)) if out_dir.is_dir() else 0


def add_label_arguments(parser, *, labels_help: str | None = None, region: bool = False) -> None:
    """``--labels`` in any form, ``--label-table``, ``--group``, ``--no-default-groups`` (and ``--region``)."""
    if labels_help is not None:
        parser.add_argument("--labels", help=labels_help)
    parser.add_argument("--label-table", metavar="TSV|totalsegmentator",
                        help="label names for --labels: a TSV (index, name), or 'totalsegmentator' for the class table "
                        "of TotalSegmentator's v2 'total' task (>= 2.2.1). Default: the *_dseg.tsv beside the file, "
                        "else the names in its NIfTI header extension (TotalSegmentator --ml)")
    parser.add_argument("--group", action="append", default=[], metavar="NAME=A,B",
                        help="a region merging labels, e.g. kidneys=kidney_left,kidney_right (repeatable)")
    parser.add_argument("--no-default-groups", action="store_true",
                        help="do not add the default groups (kidneys, lungs, bone from TotalSegmentator's structures)")
    if region:
        parser.add_argument("--region", nargs="+", metavar="NAME",
                            help="only these regions (names, numbers or groups; default: every label on the PET's "
                            "grid, then the groups)")


def open_labels(args, path, pet):
    """:func:`jaxkin.io.labels.read_labels` of ``path`` on the grid of ``pet`` with the label options of ``args``."""
    from jaxkin.io.labels import read_labels

    return read_labels(path, pet=pet, table=getattr(args, "label_table", None), groups=getattr(args, "group", None),
                       default_groups=not getattr(args, "no_default_groups", False))


def add_memory_argument(parser) -> None:
    """``--max-memory GB``: the memory budget of the command."""
    parser.add_argument("--max-memory", type=float, default=None, metavar="GB",
                        help="memory budget in GB (10^9 bytes): the scan is read a frame at a time and the voxels "
                        "fitted in slabs of slices that fit in it; a scan that cannot be processed within it is "
                        "refused up front (default: 75%% of the memory this process may use: the cgroup limit under "
                        "Slurm or in a container, else the memory available)")


def memory_budget(args, command: str) -> tuple[int, str]:
    """``(bytes, the line that says it)`` of ``--max-memory`` (or the default); the command prints the line on stderr
    when its inputs are checked and the work starts (bad input stays one line)."""
    import math

    from jaxkin.errors import InputError
    from jaxkin.io.memory import GB, default_budget

    if args.max_memory is None:
        budget = default_budget()
        return budget.bytes, (f"jaxkin {command}: note: memory budget {budget.bytes / GB:.1f} GB ({budget.source}; "
                              "--max-memory to change)")
    if not (math.isfinite(args.max_memory) and args.max_memory > 0):
        raise InputError(f"--max-memory {args.max_memory:g}: expected a positive number of GB")
    return int(args.max_memory * GB), f"jaxkin {command}: note: memory budget {args.max_memory:g} GB (--max-memory)"


def within_memory(need: int, budget: int, what: str) -> None:
    """InputError (one line) when ``need`` bytes exceed the ``budget`` of ``--max-memory``."""
    from jaxkin.errors import InputError
    from jaxkin.io.memory import GB

    if need > budget:
        raise InputError(f"{what}: needs at least {need / GB:.2f} GB of memory, more than the budget of "
                         f"{budget / GB:.2f} GB (--max-memory)")


def maps_complete(folder: Path, prefix: str, wanted, record: dict, name: str | None) -> bool:
    """``--skip-existing``: True, said on stdout, when every map ``(model, meas)`` of ``wanted`` is in ``folder``
    with a sidecar whose fields ``record`` are the same; else False (said when some maps of the scan are there)."""
    import json

    same = True
    for model, meas in wanted:
        stem = folder / f"{prefix}_model-{model}_meas-{meas}_mimap"
        try:
            side = json.loads(Path(f"{stem}.json").read_text())
        except (OSError, ValueError):
            same = False
            break
        if not Path(f"{stem}.nii.gz").is_file() or any(side.get(k) != v for k, v in record.items()):
            same = False
            break
    label = name or prefix
    if same:
        print(f"{label}: skipped, its {len(wanted)} maps are there, made with the same options (--skip-existing)")
    elif any(folder.glob(f"{prefix}_model-*_mimap.nii.gz")):
        print(f"{label}: maps there are incomplete or made with other options: done again")
    return same


def add_skip_existing(parser, what: str) -> None:
    """``--skip-existing`` (with ``--bids``)."""
    parser.add_argument("--skip-existing", action="store_true",
                        help=f"with --bids: skip the scans whose maps are all there and were {what} with the same "
                        "options (said per scan), so that a run cut short goes on where it stopped")
