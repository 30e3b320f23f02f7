"""``jaxkin models``: list the kinetic models with their parameters, units and bounds presets."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the kinetic models, their parameters and bounds")
    parser.set_defaults(run=run)


def run(args) -> int:
    from jaxkin.kinetics import BOUNDS_PRESETS, DEFAULT_BOUNDS, MODELS

    for model in MODELS.values():
        print(f"{model.name}: {model.description}")
        units = model.units
        print(f"    bounds: {' / '.join(BOUNDS_PRESETS)} (default {DEFAULT_BOUNDS})")
        (plo, phi), (qlo, qhi) = (model.bounds(name) for name in BOUNDS_PRESETS)
        for name, a, b, c, d in zip(model.param_names, plo, phi, qlo, qhi):
            print(f"    {name:<3} [{a:g}, {b:g}] / [{c:g}, {d:g}] {units[name]}")
        for name in model.macros:
            print(f"    {name:<3} (macro-parameter) {units[name]}")
    return 0
