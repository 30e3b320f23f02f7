"""``jaxkin train``: the same as ``python -m jaxkin.train`` (see :mod:`jaxkin.train`)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train the self-supervised kinetic UNet from a config file")
    from jaxkin import train  # light at import: heavy modules are imported inside its functions

    train.add_arguments(parser)
    parser.set_defaults(run=train.run)
