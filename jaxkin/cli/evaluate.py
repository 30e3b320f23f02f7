"""``jaxkin evaluate``: compare methods' parametric maps with the measured TACs and, on simulated data, the truth
(the library: :mod:`jaxkin.evaluation.report`)."""

from __future__ import annotations

import shlex


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compare methods' parametric maps with the TACs and the ground truth; Markdown report with figures",
        description="For each --pred folder of maps: TAC-fit MAE and cosine similarity (per slice and subject), "
        "organ mean ± SD of K1, k2, k3, vB, Ki and, where the dataset has ground truth (jaxkin simulate), per-organ "
        "bias, SD, RMSE and Pearson r. Writes report.md, TSV tables and PNG figures into --out.",
    )
    parser.add_argument("--dataset", required=True, help="BIDS dataset folder (e.g. from jaxkin simulate)")
    parser.add_argument("--pred", required=True, action="append", metavar="[NAME=]DIR",
                        help="a folder of maps (repeat for several methods); NAME defaults to the folder name")
    parser.add_argument("--out", required=True, help="report folder (must not exist, or be empty)")
    parser.add_argument("--split", choices=("train", "val", "test"), default=None,
                        help="evaluate only this split of participants.tsv (default: every subject with maps)")
    parser.add_argument("--subjects", nargs="+", default=None, help="evaluate only these subjects (e.g. sub-03)")
    parser.add_argument("--no-figures", action="store_true", help="tables and report only")
    parser.add_argument("--group", action="append", default=[], metavar="NAME=A,B",
                        help="an organ merging labels of the label maps, e.g. kidneys=kidney_left,kidney_right "
                        "(repeatable); any label names work")
    parser.add_argument("--no-default-groups", action="store_true",
                        help="do not add the default groups (kidneys, lungs, bone from TotalSegmentator's structures)")
    parser.set_defaults(run=run)


def command_line(args) -> str:
    """The ``jaxkin evaluate`` command of ``args``, normalised (quoted in the report)."""
    words = ["jaxkin", "evaluate", "--dataset", str(args.dataset)]
    for spec in args.pred:
        words += ["--pred", spec]
    words += ["--out", str(args.out)]
    words += ["--split", args.split] if args.split else []
    words += ["--subjects", *args.subjects] if args.subjects else []
    words += ["--no-figures"] if args.no_figures else []
    for group in args.group:
        words += ["--group", group]
    words += ["--no-default-groups"] if args.no_default_groups else []
    return shlex.join(words)


def run(args) -> int:
    from jaxkin.cli._scan import say
    from jaxkin.evaluation import evaluate
    from jaxkin.evaluation.report import left_out_scans

    left_out = left_out_scans(args.dataset, args.pred, split=args.split, subjects=args.subjects)
    say("evaluate", [f"left out {scan}: evaluated are the scans with maps of every method" for scan in left_out])

    out = evaluate(args.dataset, args.pred, args.out, split=args.split, subjects=args.subjects,
                   figures=not args.no_figures, groups=args.group, default_groups=not args.no_default_groups,
                   command=command_line(args))
    print(f"wrote {out / 'report.md'}")
    return 0
