"""``jaxkin models``: list the kinetic models with their parameters, units and bounds presets, then the graphical
methods (what ``jaxkin fit --model`` takes)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the kinetic models (their parameters and bounds) and the "
                                   "graphical methods")
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
    from jaxkin.fitting.graphical import GRAPHICAL_METHODS, T_STAR

    for name, g in GRAPHICAL_METHODS.items():
        print(f"{name}: graphical method, a straight line over the frames from t* (default {T_STAR:g} min; no bounds, "
              "no fixed parameters)")
        print(f"    {g.slope:<3} (slope) {g.slope_unit}")
        print(f"    intercept {g.intercept_unit}")
    return 0
