"""``jaxkin models``: list the kinetic models with their parameters, units and default bounds."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the kinetic models, their parameters and bounds")
    parser.set_defaults(run=run)


def run(args) -> int:
    from jaxkin.kinetics import MODELS

    for model in MODELS.values():
        print(f"{model.name}: {model.description}")
        units = model.units
        for name, lo, hi in zip(model.param_names, model.lower, model.upper):
            print(f"    {name:<3} [{lo:g}, {hi:g}] {units[name]}")
        for name in model.macros:
            print(f"    {name:<3} (macro-parameter) {units[name]}")
    return 0
