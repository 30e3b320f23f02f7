"""Regional fits written as tables: one :class:`RegionalRequest` (the regional TACs, their blood, the models, where
the table goes) -> :func:`write_regional_fits` -> :class:`RegionalTables`.

Each model's fit (:func:`jaxkin.fitting.fit_regions`) is a TSV, one row per region, with a JSON sidecar: the unit
of each column, the model, the weights, how the standard errors and AIC are computed, the sources and the
assumptions made. With several compartment models each model's table is ``<stem>_model-<model>.tsv`` beside
``out``, and ``out`` holds their comparison (:func:`jaxkin.fitting.compare_regional_fits`). Every table is written
once all are fitted, each file atomically. Cells: ``true``/``false``, integers, floats with 7 significant digits,
``n/a`` for a number that is not finite.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxkin._version import __version__
from jaxkin.io.blood import Blood
from jaxkin.io.files import atomic_write, write_json
from jaxkin.io.tables import RegionalTacs
from jaxkin.fitting.graphical import GRAPHICAL_METHODS, T_STAR
from jaxkin.fitting.options import (
    OptionError,
    check_bounds,
    check_compartment_options,
    check_frames,
    check_models,
)
from jaxkin.io.files import output_set
from jaxkin.fitting.regional import RegionalFit, compare_regional_fits, fit_regions
from jaxkin.fitting.result import FLAG_NAMES
from jaxkin.kinetics import FDG_MODEL, bounds_fields

__all__ = ["RegionalRequest", "RegionalTables", "write_regional_fits", "AIC_FORMULA"]

#: How the AIC and AICc columns are computed (written into the sidecars).
AIC_FORMULA = "F ln(SSE/F) + 2P; AICc = AIC + 2P(P+1)/(F-P-1) (F frames, P parameters, weighted SSE)"

#: How the standard errors are computed, for compartment models and for graphical methods (written into the sidecars).
STANDARD_ERRORS = {"compartment": "sqrt(diag((J^T W J)^-1) SSE/(F-P)) at the solution over the fitted parameters (P of "
                                  "them; a fixed parameter's standard error is 0); Ki/VT by the delta method",
                   "graphical": "of the slope, from the straight-line regression"}


@dataclasses.dataclass(frozen=True, eq=False)
class RegionalRequest:
    """The regional fits of one table: ``tacs`` (:class:`jaxkin.io.tables.RegionalTacs`) fitted with the input
    and whole blood of ``blood`` (:class:`jaxkin.io.blood.Blood`) by each of ``models`` (one of
    :data:`jaxkin.fitting.options.FIT_MODELS`, or several compartment models to compare), with frame ``weights``
    (a name of :data:`jaxkin.fitting.regional.REGIONAL_WEIGHTS`; ``sd`` needs the regional SD of ``tacs``), for
    compartment models the ``bounds`` and the parameters held ``fixed`` (as in :class:`jaxkin.fitting.FitOptions`:
    ``fixed`` becomes part of ``bounds``) and, for graphical methods, ``t_star`` (min); written as the table ``out``
    (``.tsv``). ``command_line`` goes into the sidecars. Checked when made (:class:`jaxkin.fitting.OptionError`)."""

    tacs: RegionalTacs
    blood: Blood
    out: Path
    models: tuple[str, ...] = (FDG_MODEL,)
    weights: str = "none"
    t_star: float = T_STAR
    command_line: str | None = None
    bounds: object = None
    fixed: object = None

    def __post_init__(self):
        object.__setattr__(self, "models", check_models(self.models))
        object.__setattr__(self, "bounds", check_bounds(self.models, self.bounds, self.fixed))
        object.__setattr__(self, "fixed", None)  # now part of the bounds
        check_compartment_options(self.models, weights=self.weights)
        object.__setattr__(self, "out", Path(self.out))
        check_frames(self.tacs.frames, self.models, self.tacs.path or "the table", self.t_star)
        if self.weights == "sd" and self.tacs.sd is None:
            raise OptionError("{weights} sd: {tacs} has no regional SD per frame (a JSON sidecar with Regions/SD, "
                              "as jaxkin regions writes)", tacs=str(self.tacs.path or "the table"))

    @property
    def notes(self) -> tuple[str, ...]:
        """The assumptions made, one sentence each: reading the table, the blood, and the weights."""
        notes = list(self.tacs.notes) + list(self.blood.notes)
        if self.weights == "poisson":
            notes.append("poisson weights use the half-life of F-18 (a TACs table does not name the radionuclide)")
        return tuple(notes)


@dataclasses.dataclass(frozen=True)
class RegionalTables:
    """What :func:`write_regional_fits` wrote: each model's :class:`~jaxkin.fitting.RegionalFit` (``fits``) and the
    path of its table (``paths``), in the order given; with several models their ``comparison`` (at the request's
    ``out``)."""

    fits: dict
    paths: dict
    comparison: RegionalFit | None = None

    def preferred_counts(self) -> dict[str, int]:
        """``{model: regions where it has the smallest AICc}`` of compared models."""
        preferred = self.comparison.columns["preferred"]
        return {model: int(np.count_nonzero(preferred == model)) for model in self.fits}


def write_regional_fits(request: RegionalRequest) -> RegionalTables:
    """Fit every region of ``request.tacs`` with each model and write the tables (see the module)."""
    tacs, blood, out = request.tacs, request.blood, request.out
    fits = {model: fit_regions(tacs.names, tacs.values, blood.input, tacs.frames, whole_blood=blood.whole_blood,
                               model=model, weights=request.weights, sd=tacs.sd, t_star=request.t_star,
                               **({} if model in GRAPHICAL_METHODS else {"bounds": request.bounds}))
            for model in request.models}
    common = _common_sidecar(request, next(iter(fits.values())).weights)
    paths = {model: out if len(fits) == 1 else out.with_name(f"{out.stem}_model-{model}.tsv") for model in fits}
    tables = [(paths[model], fit, _units(fit) | {"ModelName": model} | common
               | _method_fields(fit, request.t_star, request.bounds)) for model, fit in fits.items()]
    comparison = None
    if len(fits) > 1:
        comparison = compare_regional_fits(list(fits.values()))
        sidecar = _units(comparison) | {
            "ModelName": "comparison of " + ", ".join(fits), "AIC": AIC_FORMULA,
            "Description": "per region: AICc of each model, its difference to the smallest, the Akaike weights "
            "exp(-dAICc/2) normalised over the models, the preferred model (smallest AICc); the fits of each model: "
            + ", ".join(p.name for p in paths.values())} | common
        tables.insert(0, (out, comparison, sidecar))
    with output_set(out.parent) as staged:  # the tables as a set: all of them or none
        for path, fit, sidecar in tables:
            _write_table(staged.path(path.name), fit, sidecar)
    return RegionalTables(fits=fits, paths=paths, comparison=comparison)


def _units(fit: RegionalFit) -> dict:
    return {name: {"Units": unit} for name, unit in fit.units.items() if unit is not None}


def _common_sidecar(request: RegionalRequest, weights: str) -> dict:
    """The sidecar fields of every table of ``request``: weights, software, sources, assumptions, blood."""
    sources = [p for p in (request.tacs.path, *request.blood.sources) if p is not None]
    return {
        "Weights": weights, "SoftwareName": "jaxkin", "SoftwareVersion": __version__,
        "CommandLine": request.command_line,
        "Sources": [Path(p).name for p in sources],
        "Assumptions": list(dict.fromkeys(list(request.tacs.extra.get("Assumptions", [])) + list(request.notes))),
        **request.blood.sidecar(),
    }


def _method_fields(fit: RegionalFit, t_star: float, bounds) -> dict:
    """The sidecar fields of one model's table that say how it was fitted: standard errors, t* or the bounds (and
    fixed parameters), AIC and flags."""
    if fit.model in GRAPHICAL_METHODS:
        return {"StandardErrors": STANDARD_ERRORS["graphical"], "TStarMinutes": t_star}
    return {"StandardErrors": STANDARD_ERRORS["compartment"], "Bounds": bounds_fields(fit.model, bounds),
            "AIC": AIC_FORMULA,
            "flags": {"Description": "bit field", "Levels": {str(b): t for b, t in FLAG_NAMES.items()}}}


def _cell(value) -> str:
    """One cell of a table (see the module)."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "n/a" if not np.isfinite(value) else f"{float(value):.7g}"
    return str(value)


def _write_table(path: Path, fit: RegionalFit, sidecar: dict) -> None:
    """``fit`` as the TSV ``path`` (a row per region) and ``sidecar`` as the JSON beside it, each atomically."""
    names = list(fit.columns)
    lines = ["\t".join(names)] + ["\t".join(_cell(row[n]) for n in names) for row in fit.rows()]
    with atomic_write(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json(path.with_suffix(".json"), sidecar)
