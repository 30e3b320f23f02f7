"""``jaxkin train`` (also ``python -m jaxkin.train``): train the self-supervised kinetic UNet from a config file.

    jaxkin train --config experiments/exp4_1.py [--set key=value ...] [--workdir DIR] [--data DIR] [--resume]
        [--coordinator HOST:PORT --num-processes N --process-id I | --distributed]

A config file defines ``get_config() -> dict`` with the keys of :class:`jaxkin.network.TrainConfig` (bare, e.g.
``epochs``, or dotted, ``optim.epochs``); ``--set`` overrides them. Without ``--data`` the phantom dataset is
simulated into ``WORKDIR/data`` (once; later runs reuse it). The library: :func:`jaxkin.network.train`.
"""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    from jaxkin.cli._distributed import add_arguments

    parser = subparsers.add_parser("train", help="train the self-supervised kinetic UNet from a config file")
    parser.add_argument("--config", required=True, help="config file defining get_config(), e.g. experiments/exp4_1.py")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (epochs=50 or optim.epochs=50)")
    parser.add_argument("--workdir", default=None, help="output folder (default: runs/<config name>)")
    parser.add_argument("--data", default=None, help="BIDS dataset with a train/val/test split (default: simulate the phantom)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --workdir from its latest checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from jaxkin import distributed
    from jaxkin.cli._distributed import initialize_from_args
    from jaxkin.network import load_config, train

    cfg = load_config(args.config, args.set)
    initialize_from_args(args, "jaxkin train")
    workdir = Path(args.workdir) if args.workdir else Path("runs") / Path(args.config).stem
    _check_workdir(workdir, args.data, args.resume)
    summary = train(cfg, workdir, args.data, resume=args.resume, progress=not args.no_progress)
    if not distributed.is_main_process():
        return 0
    if summary.get("test"):
        t = summary["test"]
        print(f"test: CS {t['cs']:.3f} ± {t['cs_sd']:.3f}, MAE {t['mae']:.3f} ± {t['mae_sd']:.3f} kBq/mL")
    print(f"wrote {workdir}")
    return 0


def _check_workdir(workdir: Path, data, resume: bool) -> None:
    """InputError if the run would write into (or around) the training dataset, or, without ``--resume``, into a
    folder that holds files but is not a jaxkin run (no ``config.json``)."""
    from jaxkin.errors import InputError

    if data:
        w, d = workdir.resolve(), Path(data).resolve()
        if w == d or w.is_relative_to(d) or d.is_relative_to(w):
            raise InputError(f"--workdir {workdir}: overlaps the dataset --data {data}; write the run beside it")
    if workdir.exists() and not workdir.is_dir():
        raise InputError(f"--workdir {workdir}: is a file")
    if (not resume and workdir.is_dir() and not (workdir / "config.json").is_file()
            and any(not p.name.startswith(".") for p in workdir.iterdir())):
        raise InputError(f"--workdir {workdir}: holds files but no jaxkin run (config.json); choose an empty or "
                             "new folder")
