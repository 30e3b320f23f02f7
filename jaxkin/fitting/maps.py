"""The parametric maps of a scan written as BIDS derivatives: one :class:`FitRequest` (the scan, where its maps go and
the :class:`~jaxkin.fitting.FitOptions`) -> :func:`write_fit_maps` -> :class:`FitMaps`.

The maps (:func:`jaxkin.fitting.output_maps` of the model) are ``<prefix>_model-<model>_meas-<name>_mimap.nii.gz``
on the PET's grid, with JSON sidecars: the fit method, the weights, the voxels fitted, the bounds (compartment
models) or t* (graphical methods), the input delay, the scan's provenance and the assumptions made. Poisson weights
use the half-life of the PET sidecar's ``TracerRadionuclide`` (F-18 when absent; :func:`poisson_half_life`).

**Model comparison**: with several compartment models (``FitOptions(models=("2tcmirr", "2tcm", "1tcm"))``) each is
fitted in the same mask and writes its maps and its ``meas-AICc`` map (:data:`AICC_FORMULA`), and
``<prefix>_model-comparison_meas-preferred_mimap.nii.gz`` holds the model with the smallest AICc per voxel as an
integer, 1 for the first model given, 2 for the second, ... (0 outside the mask; the names in its sidecar's
``Levels``).

**Input delay** (positive = the input arrives later at the tissue than where it was measured): ``delay="none"``
(default); ``"global"``: one delay for the scan, estimated from the mean TAC of the request's ``delay_mask``
(default the fit's mask, i.e. the whole body) by :func:`jaxkin.fitting.delay.estimate_delay` within
``delay_range`` (min; default -10 s ... +30 s) on a 1 s grid and refined, then every voxel fitted with the shifted
input; ``"voxel"``: a delay per voxel (``lm`` only), bounded by ``delay_range``, written as the map ``meas-delay``
(min). The sidecars say which (``InputDelay``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from jaxkin.io.pet import tracer_half_life
from jaxkin.io.files import output_set, sidecar_of, write_json
from jaxkin.io.maps import map_path, map_sidecar, map_streams, write_map
from jaxkin.io.blood import Blood, scan_provenance
from jaxkin.decay import F18_HALF_LIFE_MIN
from jaxkin.fitting.baseline import NumpyModel
from jaxkin.fitting.delay import GLOBAL_DELAY_STEP, estimate_delay, mean_tac, shifted_inputs
from jaxkin.fitting.graphical import GRAPHICAL_METHODS, PlotInput
from jaxkin.fitting.mask import FitMask, fit_mask
from jaxkin.fitting.methods import DIAGNOSTIC_UNITS, LM, SE_SUFFIX, CurveFit, FitMethod, Graphical, output_maps
from jaxkin.fitting.options import FitOptions, check_frames
from jaxkin.fitting.result import FLAG_NAMES
from jaxkin.fitting.volume import VolumeFit, fit_volume, maps_fit_in, preload
from jaxkin.input_function import InputFunction
from jaxkin.kinetics import bounds_fields, get_model, prepare, prepare_delayed

__all__ = ["FitRequest", "FitMaps", "write_fit_maps", "poisson_half_life", "bounds_sidecar", "AICC_FORMULA"]

#: How the AICc maps are computed (written into their sidecars); see :func:`jaxkin.fitting.result.aicc`.
AICC_FORMULA = ("AICc = n ln(SSE'/n) + 2k + 2k(k+1)/(n-k-1); n = frames, k = fitted parameters (vB included; a fixed parameter not), "
                "SSE' = max(SSE, 1e-10 sum_f w_f y_f^2) with SSE the weighted sum of squared residuals of the fit "
                "and w_f the frame weights (the floor keeps exact fits finite: below it fits count as equal)")


@dataclasses.dataclass(frozen=True, eq=False)
class FitRequest:
    """The maps of one scan: ``pet`` (a :class:`jaxkin.io.pet.PetImage`) fitted as ``options`` say, with
    ``input_function`` (the scan's :class:`jaxkin.InputFunction`, min since injection, kBq/ml; or its
    :class:`jaxkin.io.blood.Blood`: the input, the whole blood of the vB term, and their provenance in the
    sidecars), written into ``out_dir``.

    ``mask``: bool ``[X, Y, Z]``, or None for the body (:func:`jaxkin.fitting.body_mask`); ``delay_mask``: bool
    ``[X, Y, Z]``, the region whose mean TAC gives a global delay (default the fit's mask); ``whole_blood``: the vB
    curve when ``input_function`` is a curve (default the input); ``half_life``: of Poisson weights, min (default
    :func:`poisson_half_life`); ``command_line`` and ``extra`` (fields) go into every sidecar; ``max_memory``: the
    memory budget in bytes (:func:`jaxkin.fitting.fit_volume`); ``before_commit``: called once the maps are written,
    just before they are moved into ``out_dir`` (e.g. to write the derivative dataset's description), see
    :func:`jaxkin.io.files.output_set`."""

    pet: object
    input_function: InputFunction | Blood
    out_dir: Path
    options: FitOptions = FitOptions()
    mask: np.ndarray | None = None
    delay_mask: np.ndarray | None = None
    whole_blood: InputFunction | None = None
    half_life: float | None = None
    command_line: str | None = None
    extra: dict = dataclasses.field(default_factory=dict)
    max_memory: int | None = None
    before_commit: Callable[[], None] | None = None

    def __post_init__(self):
        object.__setattr__(self, "out_dir", Path(self.out_dir))


@dataclasses.dataclass(frozen=True)
class FitMaps:
    """What :func:`write_fit_maps` wrote: ``paths`` ``{name: path}`` of the maps (``"<model> <name>"`` when models
    are compared), the :class:`~jaxkin.fitting.VolumeFit` of each model (``results``, in the order given), the fit
    time ``seconds``, the ``notes`` (assumptions made, one sentence each), ``delay``, ``(delay, standard error)``
    in min of a global delay (else None), and ``removed``: the file names of an earlier run's maps of the same
    scan and models that this run did not write, removed (e.g. standard-error maps of a run with uncertainty);
    ``shares``: :meth:`preferred_share` of maps written slab by slab (their ``results`` hold no maps)."""

    paths: dict
    results: dict
    seconds: float
    notes: tuple[str, ...] = ()
    delay: tuple[float, float] | None = None
    removed: tuple[str, ...] = ()
    shares: dict | None = None

    @property
    def result(self) -> VolumeFit:
        """The fit of the first model."""
        return next(iter(self.results.values()))

    def preferred_share(self) -> dict[str, float]:
        """``{model: fraction of the fitted voxels where it has the smallest AICc}`` of compared models."""
        if self.shares is not None:  # maps written slab by slab: the shares counted as they were
            return dict(self.shares)
        preferred = np.stack([r.maps["AICc"][r.mask] for r in self.results.values()]).argmin(axis=0)
        return {model: float(np.mean(preferred == i)) for i, model in enumerate(self.results)}


def poisson_half_life(pet, weights: str) -> float | None:
    """The half-life (min) Poisson ``weights`` use for ``pet``: its sidecar's ``TracerRadionuclide``, F-18 when it
    names none; None for other weights."""
    if weights != "poisson":
        return None
    return tracer_half_life(pet.sidecar, pet.sidecar_path, default=F18_HALF_LIFE_MIN)


#: The sidecar entry that states the bounds of a fit (and the parameters held fixed).
bounds_sidecar = bounds_fields


def write_fit_maps(request: FitRequest) -> FitMaps:
    """Fit every voxel of ``request.pet`` and write the maps into ``request.out_dir`` (see the module).

    After :func:`jaxkin.distributed.initialize` this is a collective: every process fits a slab, process 0 writes.
    """
    import time

    from jaxkin import distributed as dist

    half_life = request.half_life
    if half_life is None:
        half_life = poisson_half_life(request.pet, request.options.weights)
    start = time.perf_counter()
    scan = _prepare(request, half_life)
    if _streamed(request, scan):
        return _write_streamed(request, scan, half_life, start)
    results = {model: _fit(request, scan, model, half_life) for model in request.options.models}
    seconds = time.perf_counter() - start
    writes = _map_writes(request, scan, results)
    paths = _paths(request, writes)
    removed: list[str] = []
    if dist.is_main_process():  # the maps as a set: staged, then moved in place (the earlier run's removed)
        with _staged(request, writes) as staged:
            _write_all(staged.stage, request, writes)
        removed = staged.removed
    dist.sync("jaxkin-fit-written")  # every process returns when process 0 has written the maps
    return FitMaps(paths=paths, results=results, seconds=seconds, notes=scan.notes, delay=scan.estimate,
                   removed=tuple(removed))


#: Maps written at once (gzip compression releases the GIL: two of them keep two cores busy).
WRITERS = 2


def _write_all(folder: Path, request: FitRequest, writes) -> None:
    """Write the maps ``writes`` into ``folder``, :data:`WRITERS` at a time; on an error or an interruption the
    maps not started are dropped and those being written are finished first (the set is removed by the caller)."""
    from concurrent.futures import ThreadPoolExecutor

    pet = request.pet
    pool = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="jaxkin-write")
    try:
        futures = [pool.submit(write_map, folder, pet.prefix, w.model, w.name, w.values, reference=pet, units=w.unit,
                               command_line=request.command_line, extra=w.sidecar) for w in writes]
        for future in futures:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _paths(request: FitRequest, writes) -> dict:
    compare, pet = request.options.compare, request.pet
    return {(f"{w.model} {w.name}" if compare else w.name): map_path(request.out_dir, pet.prefix, w.model, w.name)
            for w in writes}


def _staged(request: FitRequest, writes):
    """The output set of the maps ``writes`` (replacing the earlier run's maps of the same models)."""
    entities = {w.model for w in writes}
    replaces = tuple(f"{request.pet.prefix}_model-{m}_meas-*_mimap.{ext}" for m in entities
                     for ext in ("nii.gz", "json"))
    return output_set(request.out_dir, replaces=replaces, before_commit=request.before_commit, software="jaxkin")


def _streamed(request: FitRequest, scan) -> bool:
    """Whether the maps of the volume do not fit in the memory budget (one process): then they are written slab by
    slab as the fit goes (:func:`_write_streamed`)."""
    if jax.process_count() > 1:
        return False
    n_maps = max(len(_method(request, scan, model, None).maps(request.options.delay == "voxel"))
                 for model in request.options.models)
    return not maps_fit_in(scan.source, scan.found.mask, n_maps, request.max_memory)


def _write_streamed(request: FitRequest, scan, half_life, start: float) -> FitMaps:
    """Fit and write the maps slab by slab into the output set (never the maps of the whole volume in memory): each
    model's fit hands its slabs to the maps' gzip streams; compared models keep their AICc of the masked voxels for
    the map of the preferred model."""
    import time

    options, pet = request.options, request.pet
    writes = _map_writes(request, scan, None)
    wanted = {(w.model, w.name) for w in writes}
    kept: dict = {}  # model -> [AICc of the masked voxels of each slab, z-major]
    mask = scan.found.mask
    results = {}
    with _staged(request, writes) as staged:
        with map_streams(staged.stage, pet.prefix, [(w.model, w.name) for w in writes], reference=pet) as stream:
            for model in options.models:
                def write(z, name, values, model=model):
                    if (model, name) in wanted:
                        stream(model, name, z, values)
                    if options.compare and name == "AICc":
                        kept.setdefault(model, []).append(_z_major(values, mask[:, :, z]))

                results[model] = _fit(request, scan, model, half_life, write)
            if options.compare:
                criteria = np.stack([np.concatenate(kept.pop(m)) for m in options.models])
                preferred = (np.argmin(criteria, axis=0) + 1).astype(np.float32)
                del criteria
                _stream_voxels(stream, "comparison", "preferred", preferred, mask)
        seconds = time.perf_counter() - start
        for w in writes:
            write_json(sidecar_of(map_path(staged.stage, pet.prefix, w.model, w.name)),
                       map_sidecar(pet, w.model, w.name, units=w.unit, command_line=request.command_line,
                                   extra=w.sidecar))
    shares = None
    if options.compare:
        shares = {m: float(np.mean(preferred == i + 1)) for i, m in enumerate(options.models)}
    return FitMaps(paths=_paths(request, writes), results=results, seconds=seconds, notes=scan.notes,
                   delay=scan.estimate, removed=tuple(staged.removed), shares=shares)


def _z_major(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The values ``[X, Y, k]`` of the voxels of ``mask`` (bool ``[X, Y, k]``) ordered by slice, then x, then y
    (the same order whatever slabs the volume is cut into)."""
    return values.transpose(2, 0, 1)[mask.transpose(2, 0, 1)]


def _stream_voxels(stream, model: str, name: str, values: np.ndarray, mask: np.ndarray, slab: int = 8) -> None:
    """Write the map whose masked voxels have ``values`` (in :func:`_z_major` order; 0 elsewhere) slab by slab."""
    done = 0
    for a in range(0, mask.shape[2], slab):
        z = slice(a, min(a + slab, mask.shape[2]))
        inside = mask[:, :, z].transpose(2, 0, 1)
        out = np.zeros(inside.shape, np.float32)
        n = int(np.count_nonzero(inside))
        out[inside] = values[done : done + n]
        done += n
        stream(model, name, z, out.transpose(1, 2, 0))


@dataclasses.dataclass(frozen=True)
class _Scan:
    """A scan ready to fit: the image (read once when it fits in memory), its blood (or None), its input and whole
    blood (shifted by a global delay), its kinetic input, the fit mask (found in one pass over the image), the
    sidecars' ``InputDelay``, the notes and the global delay ``(delay, standard error)`` in min."""

    source: object
    blood: Blood | None
    input_function: InputFunction
    whole_blood: InputFunction
    kin: object
    found: FitMask
    delay_info: dict
    notes: tuple[str, ...]
    estimate: tuple[float, float] | None


def _prepare(request: FitRequest, half_life: float | None) -> _Scan:
    options, frames = request.options, request.pet.frames
    blood = request.input_function if isinstance(request.input_function, Blood) else None
    aif, whole_blood = (blood.input, blood.whole_blood) if blood is not None else (request.input_function,
                                                                                  request.whole_blood)
    whole_blood = whole_blood if whole_blood is not None else aif
    source = preload(request.pet, max_memory=request.max_memory) if jax.process_count() == 1 else request.pet
    name = getattr(request.pet, "path", None) or "the image"
    check_frames(frames, options.models, name, options.t_star)  # refuse what a fit could not mean, before fitting
    found = fit_mask(source, frames.duration, request.mask, min_signal=options.min_signal, source=name)
    notes, info, estimate = [], {"Mode": options.delay}, None
    d_lo, d_hi = (float(v) for v in options.delay_range)
    if options.delay == "global":  # from the mean TAC of the fit mask (the given one, or the body) or the delay mask
        estimate, aif, whole_blood, fields, said = _global_delay(request, source, found.mask, aif, whole_blood,
                                                                 half_life)
        info |= fields
        notes += said
    if options.delay == "voxel":
        kin = prepare_delayed(aif, frames, whole_blood, max_advance=max(-d_lo, 0.0), max_delay=d_hi)
        if kin.note:
            notes.append(kin.note)
        info |= {"BoundsSeconds": [d_lo * 60, d_hi * 60], "Map": "meas-delay (min)"}
    else:
        kin = prepare(aif, frames, whole_blood)
    return _Scan(source, blood, aif, whole_blood, kin, found, info, tuple(notes), estimate)


def _global_delay(request: FitRequest, source, mask, aif, whole_blood, half_life):
    """One input delay for the scan from the mean TAC of the delay mask (default ``mask``): ``(estimate, input and
    whole blood shifted by it, InputDelay fields, notes)``."""
    options, frames = request.options, request.pet.frames
    d_lo, d_hi = (float(v) for v in options.delay_range)
    region = mask if request.delay_mask is None else np.asarray(request.delay_mask, bool)
    estimate = estimate_delay(mean_tac(source, region), aif, frames, whole_blood, model=options.models[0],
                              delay_range=options.delay_range, weights=options.weights, bounds=options.bounds,
                              half_life=half_life)
    covered = min(aif.end, whole_blood.end)
    aif, whole_blood = shifted_inputs(estimate[0], frames, aif, whole_blood)
    info = {"DelaySeconds": round(estimate[0] * 60, 3), "StandardErrorSeconds": round(estimate[1] * 60, 3),
            "EstimatedFrom": f"mean TAC of {'the delay mask' if request.delay_mask is not None else 'the fit mask'}"
                             f" ({int(np.count_nonzero(region))} voxels), model {options.models[0]}",
            "SearchSeconds": [d_lo * 60, d_hi * 60], "SearchStepSeconds": GLOBAL_DELAY_STEP * 60}
    notes = []
    if abs(estimate[0] - d_lo) < 1e-6 or abs(estimate[0] - d_hi) < 1e-6:
        notes.append(f"the global input delay {estimate[0] * 60:.1f} s is at the end of the search range "
                     f"{d_lo * 60:g} ... {d_hi * 60:g} s")
    if covered < frames.end[-1] - estimate[0] - 1e-9:
        notes.append(f"the input ends at {covered * 60:.1f} s; shifted by the delay it is held at its last value "
                     f"up to the end of the scan")
    return estimate, aif, whole_blood, info, notes


def _method(request: FitRequest, scan: _Scan, model: str, half_life: float | None) -> FitMethod:
    """The fitting method of ``model`` that the options name."""
    options, frames = request.options, request.pet.frames
    if model in GRAPHICAL_METHODS:
        return Graphical(model, PlotInput.from_input(scan.input_function, frames), t_star=options.t_star)
    common = dict(bounds=options.bounds, weights=options.weights)
    common |= {} if half_life is None else {"half_life": half_life}
    if options.method == "curve_fit":
        return CurveFit(NumpyModel(scan.input_function, frames, model, blood=scan.whole_blood), **common)
    return LM(model, uncertainty=options.uncertainty, delay_range=options.delay_range, **common)


def _fit(request: FitRequest, scan: _Scan, model: str, half_life: float | None, write=None) -> VolumeFit:
    """The voxel fit of ``model`` in the scan's fit mask (its maps handed to ``write`` slab by slab, if given)."""
    options = request.options
    return fit_volume(scan.source, scan.kin, _method(request, scan, model, half_life), mask=scan.found,
                      chunk_size=options.chunk_size, min_signal=options.min_signal, progress=options.progress,
                      max_memory=request.max_memory, write=write)


class _Write(NamedTuple):
    """One map to write: its model entity and name, values ``[X, Y, Z]``, unit and sidecar fields."""

    model: str
    name: str
    values: np.ndarray
    unit: str
    sidecar: dict


def _map_writes(request: FitRequest, scan: _Scan, results: dict | None) -> list[_Write]:
    """Every map of ``results`` (and of their comparison) with its sidecar; with ``results`` None, the maps to
    write (their values None)."""
    options = request.options
    base = {"FitMethod": "linear regression" if options.graphical else options.method, "Weights": options.weights,
            "VoxelsFitted": int(np.count_nonzero(scan.found.mask)), **scan_provenance(request.pet, scan.blood),
            **(request.extra or {})}
    if options.compare:
        base["ModelsCompared"] = list(options.models)
    if not options.graphical:
        base["InputDelay"] = scan.delay_info
    if scan.notes:
        base["Assumptions"] = list(base.get("Assumptions", [])) + list(scan.notes)
    writes = []
    for model in options.models:
        sidecar = base | ({"TStarMinutes": options.t_star} if options.graphical
                          else {"Bounds": bounds_sidecar(model, options.bounds)})
        units = output_maps(model, delay=options.delay == "voxel",
                            uncertainty=options.uncertainty and options.method == "lm")
        units |= {"AICc": DIAGNOSTIC_UNITS["AICc"]} if options.compare else {}
        for name, unit in units.items():
            values = None if results is None else results[model].maps[name]
            writes.append(_Write(model, name, values, unit, sidecar | _map_fields(model, name, units)))
    if options.compare:
        preferred = None
        if results is not None:
            criteria = np.stack([results[m].maps["AICc"] for m in options.models])
            preferred = np.where(scan.found.mask, np.argmin(criteria, axis=0) + 1, 0).astype(np.float32)
        sidecar = base | {"Description": "the model with the smallest AICc in each voxel (an integer: see Levels)",
                          "Levels": {"0": "not fitted (outside the mask)",
                                     **{str(i + 1): m for i, m in enumerate(options.models)}},
                          "AICcFormula": AICC_FORMULA}
        writes.append(_Write("comparison", "preferred", preferred, "1", sidecar))
    return writes


def _map_fields(model: str, name: str, units: dict) -> dict:
    """The sidecar fields of the map ``name`` of ``model`` alone: how an AICc is computed, what a standard error or
    the flags are."""
    fields = {"AICcFormula": AICC_FORMULA} if name == "AICc" else {}
    of = name[: -len(SE_SUFFIX)]
    if name.endswith(SE_SUFFIX) and of in units:
        macro = of in get_model(model).macros
        fields |= {"Description": f"standard error of {of}" + (" (delta method)" if macro else "")}
    elif name == "flags":
        fields |= {"Description": "warning flags of the fit (bit field)",
                   "Levels": {str(b): t for b, t in FLAG_NAMES.items()}}
    return fields
