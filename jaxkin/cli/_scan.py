"""What the commands that read a scan share: the blood options, reading a PET with its blood, saying the notes."""

from __future__ import annotations

import sys


def add_blood_arguments(parser, *, required: bool) -> None:
    """``--input-function`` (one or several blood recordings), ``--blood-to-plasma``, ``--blood-decay``."""
    parser.add_argument("--input-function", nargs="+", required=required, metavar="BLOOD_TSV",
                        help="blood recording(s) *_blood.tsv of the scan (BIDS: time in s relative to TimeZero; "
                        "plasma_radioactivity, whole_blood_radioactivity, metabolite_parent_fraction). Several "
                        "recordings (e.g. autosampler and manual) are combined by time")
    parser.add_argument("--blood-to-plasma", type=float, default=None, metavar="R",
                        help="constant whole-blood/plasma ratio: plasma = whole blood / R where no plasma is "
                        "measured, whole blood = plasma x R where no whole blood is (default: not assumed)")
    parser.add_argument("--blood-decay", choices=("injection", "timezero", "none"), default="injection",
                        help="what the blood activities are decay corrected to (BIDS does not say; default: the "
                        "injection). none = not decay corrected")


def say(command: str, notes) -> None:
    """Print each note once on stderr: ``jaxkin <command>: note: ...``."""
    for note in dict.fromkeys(notes):
        print(f"jaxkin {command}: note: {note}", file=sys.stderr)


def load_blood_for(args, pet):
    """The :class:`jaxkin.data.blood.Blood` of ``pet`` from ``args.input_function`` and the blood options."""
    from jaxkin.data.blood import load_blood

    return load_blood(args.input_function, pet=pet, blood_to_plasma=args.blood_to_plasma,
                      blood_decay=args.blood_decay)
