"""``jaxkin models``: list the kinetic models with their parameters, units and default bounds."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the kinetic models, their parameters and bounds")
    parser.set_defaults(run=run)


def run(args) -> int:
    from jaxkin.kinetics import MODELS

    for model in MODELS.values():
        print(f"{model.name}: {model.description}")
        for name, unit, lo, hi in zip(model.param_names, model.param_units, model.lower, model.upper):
            print(f"    {name:<3} [{lo:g}, {hi:g}] {unit}")
        for name, unit in model.macro_units.items():
            print(f"    {name:<3} (macro-parameter) {unit}")
    return 0
