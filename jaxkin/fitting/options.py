"""The options of a fit, checked once: which models (:data:`FIT_MODELS`, :func:`check_models`), how they are fitted
and what is written (:class:`FitOptions`). A bad option raises :class:`OptionError`, whose message names the option
as a parameter; a caller that names options otherwise (a command line) rewords it with :meth:`OptionError.worded`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from jaxkin.errors import InputError
from jaxkin.fitting.graphical import GRAPHICAL_METHODS, T_STAR
from jaxkin.fitting.lm import CHUNK_SIZE
from jaxkin.fitting.mask import MIN_SIGNAL
from jaxkin.fitting.methods import METHODS
from jaxkin.fitting.weights import WEIGHTS
from jaxkin.kinetics import (
    DEFAULT_DELAY_RANGE,
    FDG_MODEL,
    MODELS,
    check_bound_names,
    get_model,
    parse_fixed,
    resolve_bounds,
    with_fixed,
)

__all__ = ["OptionError", "FitOptions", "FIT_MODELS", "DELAY_MODES", "check_models", "check_frames", "check_bounds",
           "check_compartment_options"]

#: Every model a fit takes, the default first: the compartment models (:data:`jaxkin.kinetics.MODELS`), then the
#: graphical methods (:data:`jaxkin.fitting.graphical.GRAPHICAL_METHODS`).
FIT_MODELS: tuple[str, ...] = (FDG_MODEL, *(m for m in MODELS if m != FDG_MODEL), *GRAPHICAL_METHODS)

#: The input delay of a fit: none (the input as measured), one global delay for the scan, or one per voxel.
DELAY_MODES = ("none", "global", "voxel")


class OptionError(InputError):
    """A bad option, or combination of options, of a fit.

    ``template`` is the message with each option's name in braces (``"{delay} voxel: fitted by {method} lm only"``);
    the message names each option by its parameter name (``delay voxel: fitted by method lm only``), or by the word
    given in ``words`` (e.g. the path of a table). :meth:`worded` names them as the caller does."""

    def __init__(self, template: str, **words: str):
        self.template, self.words = template, words
        super().__init__(self.worded(lambda name: None))

    def worded(self, word: Callable[[str], str | None]) -> str:
        """The message with each option named ``word(name)`` (when that is None: as in :class:`OptionError`)."""
        own = self.words

        class _Names(dict):
            def __missing__(self, name):
                return word(name) or own.get(name, name)

        return self.template.format_map(_Names())


def _literal(text: str) -> str:
    """``text`` inside an :class:`OptionError` template (its braces are not option names)."""
    return text.replace("{", "{{").replace("}", "}}")


def check_models(models) -> tuple[str, ...]:
    """``models`` (a name, or names to compare) as a tuple; :class:`OptionError` unless each is one of
    :data:`FIT_MODELS`, none is named twice, and several are compartment models only."""
    models = (models,) if isinstance(models, str) else tuple(models)
    unknown = [m for m in models if m not in FIT_MODELS]
    if unknown:
        raise OptionError(f"{{models}}: unknown model {_literal(repr(unknown[0]))}; choose from "
                          f"{', '.join(FIT_MODELS)}")
    if len(set(models)) != len(models):
        raise OptionError("{models}: a model is named twice")
    if not models:
        raise OptionError("{models}: no model given")
    if len(models) > 1 and any(m in GRAPHICAL_METHODS for m in models):
        raise OptionError(f"{{models}}: only compartment models can be compared (not {', '.join(GRAPHICAL_METHODS)})")
    return models


def check_frames(frames, models, source, t_star: float | None = None) -> None:
    """InputError if the frames (a :class:`jaxkin.FrameSchedule`) of ``source`` (a file name) cannot determine each
    of ``models``: a compartment model needs more frames than its parameters (vB included), a graphical method at
    least 3 frames with mid time at or after ``t_star`` (min; must be finite) for a line and its scatter."""
    import math

    import numpy as np

    from jaxkin.kinetics import get_model

    for model in (models,) if isinstance(models, str) else models:
        if model in GRAPHICAL_METHODS:
            t = T_STAR if t_star is None else float(t_star)
            if not math.isfinite(t):
                raise OptionError(f"{{t_star}} {t}: must be a finite time in min")
            used = int(np.count_nonzero(np.asarray(frames.mid) >= t))
            if used < 3:
                raise OptionError(f"{{t_star}} {t:g}: {used} frame(s) of {_literal(str(source))} start at or after "
                                  f"it; {model} needs at least 3 (the scan ends at {float(frames.end[-1]):g} min)")
            continue
        need = get_model(model).n_params + 1
        if frames.n_frames < need:
            raise InputError(f"{source}: {frames.n_frames} frame(s), too few to fit {model} (it needs at least "
                             f"{need}: more frames than fitted parameters)")


def check_compartment_options(models: tuple[str, ...], **options) -> bool:
    """Whether ``models`` is a graphical method; :class:`OptionError` naming the first of ``options`` (name ->
    value) that is given (not None, empty or ``"none"``) for a graphical method, which takes none of them."""
    graphical = [m for m in models if m in GRAPHICAL_METHODS]
    for name, value in options.items():
        if graphical and value and value != "none":
            raise OptionError(f"{{{name}}} applies to compartment models, not {graphical[0]}")
    return bool(graphical)


def check_bounds(models: tuple[str, ...], bounds=None, fixed=None):
    """The bounds specification of a fit of ``models`` with the parameters ``fixed`` held
    (:func:`jaxkin.kinetics.with_fixed`), checked: :class:`OptionError` naming ``{bounds}`` or ``{fixed}`` for a bad
    specification, a parameter no model has, or a model left with nothing to fit. Graphical methods take neither."""
    if check_compartment_options(models, bounds=bounds, fixed=fixed):
        return None
    try:
        merged = with_fixed(bounds, fixed)
        check_bound_names(bounds, models)
    except InputError as err:
        raise _worded(err) from None
    try:
        check_bound_names({name: (0, 0) for name in parse_fixed(fixed)}, models)
    except InputError as err:
        raise OptionError("{fixed}" + _literal(str(err)[len("bounds"):])) from None
    for model in models:
        lower, upper, _ = resolve_bounds(model, merged)
        if not any(a < b for a, b in zip(lower, upper)):
            raise OptionError(f"{{{'fixed' if fixed else 'bounds'}}}: every parameter of {model} is fixed "
                              f"({', '.join(get_model(model).param_names)}); nothing is left to fit")
    return merged


def _worded(err: InputError, default: str = "bounds") -> OptionError:
    """``err`` (a message starting ``bounds:`` or ``fix:``) as an :class:`OptionError` naming that option."""
    text = str(err).lstrip("-")
    for prefix, name in (("bounds", "bounds"), ("fix", "fixed")):
        if text.startswith(prefix + ":"):
            return OptionError("{" + name + "}" + _literal(text[len(prefix):]))
    return OptionError("{" + default + "}" + _literal(f": {text}"))


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """What to fit in every voxel of a scan and how (:func:`jaxkin.fitting.write_fit_maps`), checked when made.

    ``models``: one of :data:`FIT_MODELS`, or several compartment models to fit each and compare (AICc).
    ``method``: how compartment models are fitted, a key of :data:`jaxkin.fitting.methods.METHODS` (``lm``:
    jaxkin's fit, :class:`~jaxkin.fitting.LM`; ``curve_fit``: the scipy baseline, :class:`~jaxkin.fitting.CurveFit`);
    the graphical methods are straight-line regressions. ``weights``: frame weights (:data:`jaxkin.fitting.weights.WEIGHTS`).
    ``bounds``: a preset or ranges (:func:`jaxkin.kinetics.resolve_bounds`; default ``physiological``), for
    compartment models. ``fixed``: parameters held at a value, ``{"vB": 0.02}`` or ``"vB=0.02,k4=0"``
    (:func:`jaxkin.kinetics.parse_fixed`), the others fitted; made part of ``bounds`` (a range of zero width each,
    :func:`check_bounds`), so ``bounds`` holds both once made. ``t_star``: start of the linear part of a graphical method (min). ``uncertainty``: also the
    standard-error maps, R2 and the warning flags (``lm`` only). ``delay``: the input delay, one of
    :data:`DELAY_MODES` (compartment models only; ``voxel`` by ``lm`` only), ``delay_range`` its bounds or search
    range (min). ``min_signal``: the threshold of the automatic body mask (:func:`jaxkin.fitting.body_mask`).
    ``chunk_size``: TACs per compiled chunk. ``progress``: a progress bar per model.
    """

    models: tuple[str, ...] = (FDG_MODEL,)
    method: str = "lm"
    weights: str = "none"
    bounds: object = None
    fixed: object = None
    t_star: float = T_STAR
    uncertainty: bool = False
    delay: str = "none"
    delay_range: tuple[float, float] = DEFAULT_DELAY_RANGE
    min_signal: float = MIN_SIGNAL
    chunk_size: int = CHUNK_SIZE
    progress: bool = False

    def __post_init__(self):
        object.__setattr__(self, "models", check_models(self.models))
        for name, allowed in (("method", tuple(METHODS)), ("weights", WEIGHTS), ("delay", DELAY_MODES)):
            value = getattr(self, name)
            if value not in allowed:
                raise OptionError(f"{{{name}}} {_literal(repr(value))}: choose from {', '.join(allowed)}")
        self._check_combinations()

    @property
    def graphical(self) -> bool:
        """Whether the model is a graphical method."""
        return self.models[0] in GRAPHICAL_METHODS

    @property
    def compare(self) -> bool:
        """Whether several models are fitted and compared."""
        return len(self.models) > 1

    def _check_combinations(self) -> None:
        first = self.models[0]
        if self.uncertainty and self.method == "curve_fit":
            raise OptionError("{uncertainty}: standard-error maps come from jaxkin's fit ({method} lm), not curve_fit")
        if self.chunk_size < 1:
            raise OptionError("{chunk_size} must be positive")
        if self.method == "curve_fit" and self.graphical:
            raise OptionError(f"{{method}} curve_fit applies to compartment models, not {first}")
        object.__setattr__(self, "bounds", check_bounds(self.models, self.bounds, self.fixed))
        object.__setattr__(self, "fixed", None)  # now part of the bounds
        check_compartment_options(self.models, weights=self.weights)
        if self.delay != "none" and self.graphical:
            raise OptionError(f"{{delay}} applies to compartment models, not {first}")
        if self.delay == "voxel" and self.method != "lm":
            raise OptionError("{delay} voxel: fitted by {method} lm only")
