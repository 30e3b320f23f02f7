"""Bounds of the fitted parameters: the presets, the input delay's range, and bounds specifications.

A bounds specification is ``None`` (the default preset), a preset name, or explicit ranges such as
``"K1=0,3 k3=0,1"`` (see :func:`resolve_bounds`). A parameter whose range has zero width (``vB=0.02,0.02``) is
**fixed** at that value: the fits hold it there and estimate the others (:func:`with_fixed` adds fixed values given
as ``{"vB": 0.02}`` or ``"vB=0.02,k4=0"`` to a specification, :func:`fixed_values` reads them back). The bounds values of each preset are the models'
(:class:`~jaxkin.kinetics.models.KineticModel`). Units: those of the parameters (:data:`jaxkin.kinetics.models.UNITS`).
"""

from __future__ import annotations

import numpy as np

from jaxkin.errors import InputError
from jaxkin.kinetics.models import get_model

__all__ = ["BOUNDS_PRESETS", "DEFAULT_BOUNDS", "DEFAULT_DELAY_RANGE", "resolve_bounds", "check_bound_names",
           "parse_fixed", "with_fixed", "fixed_values", "bounds_fields"]

#: The bounds presets: name -> what they are. Every fit states the preset and the bounds it used (sidecars).
#:
#: * ``paper``: the paper's bounds, K1 in [0.01, 2], k2 in [0.01, 3], k3 in [0.01, 1], vB in [0, 1] (k4 in
#:   [0.001, 1]): what the paper's network, its curve_fit baseline and the Table 1 experiments use. They cut off
#:   healthy organs: liver k3 is about 0.003-0.01/min and spleen k2 can exceed 3/min (total-body dynamic FDG PET of
#:   healthy subjects: Liu G. et al., "Kinetic metrics of 18F-FDG in normal human organs identified by systematic
#:   dynamic total-body positron emission tomography", Eur J Nucl Med Mol Imaging 48(8):2363-2372 (2021)), so every
#:   method is biased there with them.
#: * ``physiological`` (the fits' default): K1 in [0.001, 3] mL/cm3/min, k2 in [0.001, 6]/min, k3 in [0, 1]/min,
#:   k4 in [0.0001, 1]/min, vB in [0, 1]. Where the numbers come from: they contain every organ of the phantom
#:   (:data:`jaxkin.phantom.ORGAN_PARAMETERS`, whose values the phantom takes from the literature the paper
#:   follows) with its per-subject and intra-organ variation (log-normal, SD 0.10 each: at 4 combined SDs a factor
#:   1.76 either way, so spleen k2 2.697 -> 4.75, spleen K1 1.535 -> 2.70, bladder k3 0.3 -> 0.53, liver k3 0.003
#:   -> 0.0017, muscle K1 0.05 -> 0.028), and the healthy-organ values of Liu et al. (2021) above (liver k3
#:   0.003-0.01/min, spleen k2 above 3/min), with margin. k3 = 0 (no trapping) and vB = 0 or 1 are physically
#:   possible, so they are allowed. The rates stay inside the default rate grid of :func:`jaxkin.kinetics.prepare`
#:   (10.2/min).
BOUNDS_PRESETS: dict[str, str] = {
    "physiological": "contains every organ of the jaxkin phantom with its variation and the healthy organs of "
                     "total-body FDG PET (Liu et al., Eur J Nucl Med Mol Imaging 2021: liver k3 0.003-0.01/min, "
                     "spleen k2 above 3/min), with margin",
    "paper": "the paper's bounds (its network, its curve_fit baseline, Table 1)",
}
#: The bounds preset of the fits when none is given.
DEFAULT_BOUNDS = "physiological"

#: Bounds of a fitted input delay (min): -10 s (the input arrives earlier at the tissue than where it was measured,
#: e.g. lungs and heart before the descending aorta) to +30 s (later: legs, bladder). For comparison, the delay fit of
#: the Turku PET Centre's software library TPCCLIB (its fitdelay tool) scans -10 ... +50 s.
DEFAULT_DELAY_RANGE = (-10.0 / 60.0, 30.0 / 60.0)


def resolve_bounds(model: str, bounds=None) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    """``(lower, upper, description)`` of ``model``'s bounds from a bounds specification:

    * ``None``: the default preset (:data:`DEFAULT_BOUNDS`, ``physiological``);
    * a preset name (``"physiological"``, ``"paper"``);
    * explicit ranges, as a string ``"K1=0,3 k3=0,1"``, a list of such tokens (``["K1=0,3", "k3=0,1"]``, as a command
      line splits them) or a dict ``{"K1": (0, 3)}``; a preset name may come first (``"paper k3=0.001,1"``), else the
      ranges change the default preset. A range naming a parameter the model does not have is ignored when ``model``
      is one of several models fitted (the caller checks that every name belongs to some model:
      :func:`check_bound_names`).

    ``description`` says it in words (for sidecars and notes). Raises :class:`jaxkin.errors.InputError` (a
    ``ValueError``) starting ``bounds:`` for a bad specification.
    """
    m = get_model(model)
    preset, ranges = _parse_bounds(bounds)
    lo, hi = (list(b) for b in m.bounds(preset))
    changed = []
    for name, (a, b) in ranges.items():
        if name in m.param_names:
            i = m.param_names.index(name)
            lo[i], hi[i] = a, b
            changed.append(f"{name}={a:g},{b:g}")
    for name, a, b in zip(m.param_names, lo, hi):
        if not a <= b:
            raise InputError(f"bounds: {name} of {model}: lower {a:g} > upper {b:g}")
    held = [c for c in changed if _is_fixed(ranges[c.partition("=")[0]])]
    changed = [c for c in changed if c not in held]
    description = preset + (f" with {' '.join(changed)}" if changed else "")
    if held:
        description += "; fixed " + " ".join(f"{c.partition('=')[0]}={ranges[c.partition('=')[0]][0]:g}"
                                             for c in held)
    return tuple(float(v) for v in lo), tuple(float(v) for v in hi), description


def check_bound_names(bounds, models) -> None:
    """InputError unless every parameter named in the bounds specification ``bounds`` is one of ``models``'."""
    _, ranges = _parse_bounds(bounds)
    known = {n for model in models for n in get_model(model).param_names}
    unknown = [n for n in ranges if n not in known]
    if unknown:
        raise InputError(f"bounds: {', '.join(unknown)} is not a parameter of {', '.join(models)} "
                         f"(parameters: {', '.join(sorted(known))})")


def _parse_bounds(bounds) -> tuple[str, dict]:
    """``(preset, {name: (lower, upper)})`` of a bounds specification (see :func:`resolve_bounds`)."""
    if bounds is None:
        return DEFAULT_BOUNDS, {}
    if isinstance(bounds, dict):
        try:
            return DEFAULT_BOUNDS, {str(k): (float(v[0]), float(v[1])) for k, v in bounds.items()}
        except (TypeError, ValueError, IndexError):
            raise InputError(f"bounds: expected {{name: (lower, upper)}}, got {bounds!r}") from None
    tokens = bounds.split() if isinstance(bounds, str) else [str(t) for t in bounds]
    preset = DEFAULT_BOUNDS
    if tokens and "=" not in tokens[0]:
        preset = tokens.pop(0)
        if preset not in BOUNDS_PRESETS:
            raise InputError(f"bounds: unknown preset {preset!r}; choose {' or '.join(BOUNDS_PRESETS)}, or give "
                             "ranges such as K1=0,3 k3=0,1")
    ranges = {}
    for token in tokens:
        name, _, values = token.partition("=")
        try:
            a, b = (float(v) for v in values.split(","))
        except ValueError:
            raise InputError(f"bounds: {token!r} is not NAME=LOWER,UPPER (e.g. k3=0,1)") from None
        if not (np.isfinite(a) and np.isfinite(b)) or a > b:
            raise InputError(f"bounds: {token!r}: need finite LOWER <= UPPER")
        if name in ranges:
            raise InputError(f"bounds: {name} is given twice")
        ranges[name] = (a, b)
    return preset, ranges


def _is_fixed(pair) -> bool:
    return pair[0] == pair[1]


def parse_fixed(fixed) -> dict[str, float]:
    """``{name: value}`` of fixed parameters given as ``None``, a dict ``{"vB": 0.02}``, a string ``"vB=0.02,k4=0"``
    or a list of such tokens (``["vB=0.02", "k4=0"]``, as a command line splits them). A value must be finite and
    non-negative (vB at most 1). Raises :class:`jaxkin.errors.InputError` starting ``fix:``."""
    if fixed is None:
        return {}
    if isinstance(fixed, dict):
        items = list(fixed.items())
    else:
        tokens = [fixed] if isinstance(fixed, str) else [str(t) for t in fixed]
        items = []
        for token in (piece for t in tokens for piece in t.replace(",", " ").split()):
            name, eq, value = token.partition("=")
            if not eq or not name:
                raise InputError(f"fix: {token!r} is not NAME=VALUE (e.g. vB=0.02)")
            items.append((name, value))
    out: dict[str, float] = {}
    for name, value in items:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise InputError(f"fix: {name}={value!r} is not NAME=VALUE with a number (e.g. vB=0.02)") from None
        if not np.isfinite(v) or v < 0 or (name == "vB" and v > 1):
            raise InputError(f"fix: {name}={value}: need a finite value >= 0{' and <= 1' if name == 'vB' else ''}")
        if name in out:
            raise InputError(f"fix: {name} is given twice")
        out[str(name)] = v
    return out


def with_fixed(bounds, fixed) -> object:
    """The bounds specification ``bounds`` with the parameters of ``fixed`` (see :func:`parse_fixed`) held at their
    values (a range of zero width each), as a tuple of tokens (``bounds`` itself when nothing is fixed). Raises
    :class:`jaxkin.errors.InputError` (``bounds:``/``fix:``) for a bad specification or a parameter given a range
    in ``bounds`` and a value in ``fixed``."""
    held = parse_fixed(fixed)
    preset, ranges = _parse_bounds(bounds)
    if not held:
        return bounds
    both = [name for name in held if name in ranges]
    if both:
        raise InputError(f"fix: {', '.join(both)} also has a range in the bounds; give either (a range of zero "
                         "width, e.g. vB=0.02,0.02, fixes it too)")
    ranges |= {name: (v, v) for name, v in held.items()}
    return (preset, *(f"{name}={a!r},{b!r}" for name, (a, b) in ranges.items()))


def fixed_values(model: str, bounds=None) -> dict[str, float]:
    """``{name: value}`` of the parameters of ``model`` that ``bounds`` fixes (a range of zero width)."""
    lower, upper, _ = resolve_bounds(model, bounds)
    return {n: a for n, a, b in zip(get_model(model).param_names, lower, upper) if a == b}


def bounds_fields(model: str, bounds) -> dict:
    """The sidecar entry that states the bounds of a fit of ``model``: the preset (and changes), ``[lower, upper]``
    per parameter (in the parameters' units) and, when any parameter is held, ``Fixed`` ``{name: value}``."""
    lower, upper, description = resolve_bounds(model, bounds)
    names = get_model(model).param_names
    fields = {"Preset": description, **{n: [lo, hi] for n, lo, hi in zip(names, lower, upper)}}
    fixed = fixed_values(model, bounds)
    return fields | ({"Fixed": fixed} if fixed else {})
