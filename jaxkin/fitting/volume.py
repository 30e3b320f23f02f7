"""Whole-volume fitting: stream masked voxels through fixed-size chunks, sharded over all local devices.

:func:`fit_volume` takes a 4D image (a NumPy array ``[X, Y, Z, F]`` in kBq/ml or a lazily read
:class:`jaxkin.io.pet.PetImage`), reads it a few axial slices at a time, gathers the voxels inside the mask
into chunks of ``chunk_size`` TACs (the last one padded, so there is one compilation), and fits each chunk with
the compartment model (:func:`jaxkin.fitting.fit_chunk`), a graphical method (:mod:`jaxkin.fitting.graphical`) or the
curve_fit baseline. Each chunk is split along the voxel axis over ``jax.local_devices()`` with
``jax.sharding.NamedSharding`` (every voxel is independent; the input function tables are replicated), and the next
chunk is gathered on the host while the devices work on the current one. Memory is bounded by the slab, two chunks
and the output maps. With several processes (:func:`jaxkin.distributed.initialize`) each process reads and fits its
own slab of axial slices (:func:`jaxkin.distributed.share`) on its own devices; the mask statistics and the maps are
assembled on every process (:func:`jaxkin.distributed.gather_slabs`).

The mask: the one given, or else the body (:func:`body_mask`, from the voxels' time integrals ``sum_f C_f Δt_f``
in a first pass over the image): every voxel inside the patient, only the air around it left out. Voxels with
NaN/Inf are left out and counted. Maps are 0 outside the mask.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxkin.io.pet import slabs
from jaxkin.fitting.graphical import GRAPHICAL_METHODS
from jaxkin.fitting.lm import CHUNK_SIZE, chunk_length, fit_chunk, weighted_r2
from jaxkin.fitting.result import FLAG_NOT_CONVERGED, FitSettings, aicc
from jaxkin.fitting.weights import frame_weights
from jaxkin.kinetics import DEFAULT_DELAY_RANGE, UNITS, DelayedInput, KineticInput, get_model, resolve_bounds

__all__ = ["VolumeFit", "fit_volume", "write_fit_maps", "body_mask", "body_mask_from_integrals", "output_maps"]

#: The automatic mask: components smaller than this fraction of the largest one are noise in the air, not body.
MIN_COMPONENT_FRACTION = 1e-3

#: Units of the per-voxel fit diagnostics.
DIAGNOSTIC_UNITS = {"SSE": "(kBq/mL)^2", "R2": "1", "flags": "1", "AICc": "1"}

#: How the AICc maps are computed (written into their sidecars); see :func:`jaxkin.fitting.result.aicc`.
AICC_FORMULA = ("AICc = n ln(SSE'/n) + 2k + 2k(k+1)/(n-k-1); n = frames, k = fitted parameters (vB included), "
                "SSE' = max(SSE, 1e-10 sum_f w_f y_f^2) with SSE the weighted sum of squared residuals of the fit "
                "and w_f the frame weights (the floor keeps exact fits finite: below it fits count as equal)")


#: The suffix of a standard-error map's name: ``meas-KiSE`` is the standard error of ``meas-Ki``.
SE_SUFFIX = "SE"


def output_maps(model: str, *, diagnostics: bool = False, delay: bool = False,
                uncertainty: bool = False) -> dict[str, str]:
    """``{map name: unit}`` of what a fit of ``model`` estimates, in order: a compartment model's parameters,
    macro-parameters (the input ``delay`` with a per-voxel delay) and SSE, or a graphical method's slope and
    intercept. ``diagnostics`` adds R2 (and, for compartment models, the warning ``flags`` and the ``AICc``): every map
    :func:`fit_volume` returns. ``uncertainty`` adds the standard error of every parameter and macro-parameter of a
    compartment model (``<name>SE``, e.g. ``KiSE``, in the parameter's unit; ``delaySE`` with a per-voxel delay), R2
    and the flags: what ``jaxkin fit --uncertainty`` writes."""
    if model in GRAPHICAL_METHODS:
        g = GRAPHICAL_METHODS[model]
        maps = {g.slope: g.slope_unit, "intercept": g.intercept_unit}
        return maps | ({"R2": DIAGNOSTIC_UNITS["R2"]} if diagnostics or uncertainty else {})
    units = get_model(model).units | ({"delay": UNITS["delay"]} if delay else {})
    maps = units | {"SSE": DIAGNOSTIC_UNITS["SSE"]}
    if uncertainty:
        maps |= {f"{name}{SE_SUFFIX}": unit for name, unit in units.items()}
    extra = ("R2", "flags", "AICc") if diagnostics else ("R2", "flags") if uncertainty else ()
    return maps | {name: DIAGNOSTIC_UNITS[name] for name in extra}


@dataclasses.dataclass(frozen=True)
class VolumeFit:
    """Maps ``[X, Y, Z]`` (float32; ``flags`` int32) by name, the mask used (finite voxels only), the number of
    voxels fitted, of voxels in the image with NaN/Inf (never fitted) and of fits flagged not converged."""

    maps: dict
    mask: np.ndarray
    n_fitted: int
    n_nonfinite: int
    n_not_converged: int


def _integrals(pet, frame_duration, z: slice, slab: int):
    """``(auc float32, finite bool) [X, Y, len(z)]``: time integrals ``sum_f C_f Δt_f`` (0 where not finite)."""
    shape = (*pet.shape[:2], z.stop - z.start)
    auc = np.zeros(shape, np.float32)
    finite = np.zeros(shape, bool)
    dur = np.asarray(frame_duration, np.float32)
    for zs, data in slabs(pet, slab, z):
        ok = np.all(np.isfinite(data), axis=-1)
        finite[:, :, zs] = ok
        auc[:, :, zs] = np.where(ok, np.nan_to_num(data) @ dur, 0.0)
    return auc, finite


def _otsu_log(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``log(values)`` (``values`` > 0, any shape), returned on the linear scale: the split of
    the histogram of the logs into two classes with the largest between-class variance. ``values.min()`` when all
    values are (nearly) equal, so everything is one class."""
    logs = np.log(values.astype(np.float64).ravel())
    lo, hi = float(logs.min()), float(logs.max())
    if hi - lo < 1e-9:
        return float(values.min())
    counts, edges = np.histogram(logs, bins=bins, range=(lo, hi))
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(counts)[:-1].astype(np.float64)  # class 0 = bins 0..k, class 1 = bins k+1..
    w1 = counts.sum() - w0
    s0 = np.cumsum(counts * centres)[:-1]
    mean0 = s0 / np.maximum(w0, 1)
    mean1 = (np.sum(counts * centres) - s0) / np.maximum(w1, 1)
    between = np.where((w0 > 0) & (w1 > 0), w0 * w1 * (mean0 - mean1) ** 2, -1.0)
    return float(np.exp(edges[int(np.argmax(between)) + 1]))


def body_mask_from_integrals(auc, finite, min_signal: float = 0.05) -> np.ndarray:
    """The body: ``bool [X, Y, Z]`` from the time integrals ``auc float [X, Y, Z]`` (kBq/ml*min; any consistent unit)
    of the voxels and ``finite bool [X, Y, Z]`` (False where a frame is NaN/Inf; those voxels are never in the mask).

    1. *Where is the body?* Otsu's threshold on the log of the positive integrals separates the air around the
       patient (noise, blur tails, many decades below tissue) from the body (the log scale puts lungs, fat and
       muscle in one mode and the background in the other). Its only use is the body's *level*: the median integral
       of the voxels above it. A median over the body is set by the soft tissue that fills most of it, not by the
       hottest organs (bladder, brain, heart: 20-50x muscle but a few per cent of the volume), so unlike a
       percentile of the whole image it does not move when the bladder fills. If the image holds no air (cropped to
       the body), Otsu splits the body instead and the level is still of the order of the soft tissue.
    2. Keep every voxel whose integral is at least ``min_signal`` (default 0.05) times that level: far below lung,
       fat and muscle (in FDG, 30-50% of the body's median or more), above the air.
    3. Fill holes in every axial slice (``scipy.ndimage.binary_fill_holes`` in-plane): the body contour encloses
       lungs, bowel gas and cold lesions in axial slices, whatever their activity.
    4. Drop connected components (26-connected, in 3D) smaller than ``MIN_COMPONENT_FRACTION`` of the largest:
       isolated noise in the air. Larger ones stay, so a body split into several pieces (arms beside the torso,
       legs) is kept whole.

    Then the voxels that are not finite are left out. Returns an all-False mask when no integral is positive.
    """
    from scipy import ndimage

    auc = np.asarray(auc)
    finite = np.asarray(finite, bool)
    positive = auc[finite & (auc > 0)]
    if positive.size == 0:
        return np.zeros(auc.shape, bool)
    split = _otsu_log(positive)
    level = float(np.median(positive[positive >= split]))
    mask = finite & (auc >= min_signal * level) & (auc > 0)
    in_plane = ndimage.generate_binary_structure(2, 1)[:, :, None]  # no connection across slices: per-slice fill
    mask = ndimage.binary_fill_holes(mask, structure=in_plane)
    parts, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n > 1:
        sizes = np.bincount(parts.ravel())
        sizes[0] = 0
        keep = sizes >= MIN_COMPONENT_FRACTION * sizes.max()
        keep[0] = False
        mask = keep[parts]
    return mask & finite


def body_mask(pet, frame_duration, *, min_signal: float = 0.05, slab: int = 8):
    """``(mask, finite) bool [X, Y, Z]`` of ``pet`` (``[X, Y, Z, F]`` array or PetImage, kBq/ml; ``frame_duration``
    ``[F]`` in min): the body (:func:`body_mask_from_integrals`) and the finite voxels."""
    auc, finite = _integrals(pet, frame_duration, slice(0, pet.shape[2]), slab)
    return body_mask_from_integrals(auc, finite, min_signal), finite


#: A PET image whose slices (float32) take at most this many bytes is read into memory in one pass (see :func:`preload`).
PRELOAD_BYTES = 4 << 30


class _Loaded:
    """Axial slices ``z`` of a PET image read once into memory; ``read(z)`` serves slices of them (absolute indices),
    so :func:`jaxkin.io.pet.slabs` and the mask pass read from memory."""

    def __init__(self, pet, z: slice):
        self.shape, self.z, self.data = tuple(pet.shape), z, pet.read(z)

    def read(self, z: slice):
        return self.data[:, :, z.start - self.z.start : z.stop - self.z.start]


def preload(pet, z: slice | None = None, max_bytes: int | None = None):
    """``pet`` with its axial slices ``z`` (default all) read into memory in one pass, when it is a lazily read image
    (:class:`jaxkin.io.pet.PetImage`) and they fit in ``max_bytes`` (default :data:`PRELOAD_BYTES`) as float32;
    else ``pet`` itself (streamed slab by slab, memory bounded).

    Why: a ``.nii.gz`` is one gzip stream with the frames one after the other, so reading a slab of slices (a
    segment of every frame) seeks back to the stream's start and decompresses the whole file again: streamed slab by
    slab, the mask pass and the fit pass decompressed the image once per slab each. One read of the slices decompresses
    it once (the ``jaxkin fit`` profile: reading was ~45% of a warm 100,000-voxel fit, see benchmarks/RESULTS.md)."""
    if not hasattr(pet, "read") or isinstance(pet, _Loaded):
        return pet
    z = z if z is not None else slice(0, pet.shape[2])
    nbytes = 4 * pet.shape[0] * pet.shape[1] * (z.stop - z.start) * int(np.prod(pet.shape[3:]))
    return _Loaded(pet, z) if nbytes <= (PRELOAD_BYTES if max_bytes is None else max_bytes) else pet


def bounds_sidecar(model: str, bounds) -> dict:
    """The sidecar entry that states the bounds of a fit: the preset (and changes) and ``[lower, upper]`` per
    parameter, in the parameters' units."""
    lower, upper, description = resolve_bounds(model, bounds)
    names = get_model(model).param_names
    return {"Preset": description, **{n: [lo, hi] for n, lo, hi in zip(names, lower, upper)}}


def fit_volume(pet, kin: KineticInput, *, model: str = "2tcmirr", method: str = "lm", mask=None,
               weights: str = "none", chunk_size: int = CHUNK_SIZE, slab: int = 8, min_signal: float = 0.05,
               t_star: float = 20.0, plot_input=None, numpy_model=None, progress: bool = True,
               decay_corrected: bool = True, half_life: float | None = None, n_iter: int = 16,
               bounds=None, delay_range=DEFAULT_DELAY_RANGE, uncertainty: bool = False) -> VolumeFit:
    """Fit every voxel of ``pet`` (``[X, Y, Z, F]`` array or PetImage, kBq/ml) inside the mask; see the module.

    ``model``: ``2tcmirr``, ``1tcm``, ``2tcm`` (compartment fit by ``method`` ``lm`` or ``curve_fit``) or
    ``patlak``/``logan`` (needs ``plot_input``, a :class:`jaxkin.fitting.PlotInput`). ``curve_fit`` needs
    ``numpy_model`` (:class:`jaxkin.fitting.NumpyModel`). Without ``mask``, the body is fitted
    (:func:`body_mask_from_integrals`; ``min_signal``: its threshold, a fraction of the body's median time integral,
    default 0.05). ``bounds``: a preset or ranges (:func:`jaxkin.kinetics.resolve_bounds`; default
    ``physiological``), for ``lm`` and ``curve_fit``. With ``kin`` a :class:`jaxkin.kinetics.DelayedInput` the input
    delay of every voxel is fitted too (``lm`` only; bounds ``delay_range``, min) and mapped as ``delay`` (min).
    Returns :class:`VolumeFit`.
    After :func:`jaxkin.distributed.initialize` this is a collective: every process calls it (each fits a slab).
    """
    from jaxkin import distributed as dist

    shape = tuple(pet.shape[:3])
    n_z = shape[2]
    mine = dist.share(n_z)  # this process's axial slices (all of them for one process)
    pet = preload(pet, mine)  # read once for the mask pass and the fit pass (when it fits in memory)
    auc, finite = _integrals(pet, kin.frame_duration, mine, slab)
    finite = dist.gather_slabs(finite, n_z)
    if mask is None:
        mask = body_mask_from_integrals(dist.gather_slabs(auc, n_z), finite, min_signal)
    else:
        mask = np.asarray(mask, bool)
        if mask.shape != shape:
            raise ValueError(f"mask shape {mask.shape} differs from the image's {shape}")
    del auc
    n_nonfinite = int(np.count_nonzero(~finite))  # reported, never fitted
    mask = mask & finite
    full_mask = mask
    mask = mask[:, :, mine]
    delayed = isinstance(kin, DelayedInput)
    if delayed and (method != "lm" or model in GRAPHICAL_METHODS):
        raise ValueError("a per-voxel delay is fitted by the LM of a compartment model only")
    names = list(output_maps(model, diagnostics=True, delay=delayed, uncertainty=uncertainty and method == "lm"))
    maps = {n: np.zeros(mask.shape, np.int32 if n == "flags" else np.float32) for n in names}
    total = int(np.count_nonzero(mask))

    parallel = dist.DataParallel(dist.local_mesh())  # voxels split over this process's devices
    rows, replicated = parallel.batch_sharding, parallel.replicated
    chunk = chunk_length(total, chunk_size, parallel.size, model, delayed)
    settings = None
    if model not in GRAPHICAL_METHODS:
        lower, upper, _ = resolve_bounds(model, bounds)
        if delayed:
            lower, upper = lower + (float(delay_range[0]),), upper + (float(delay_range[1]),)
        settings = FitSettings(model=model, n_iter=n_iter, lower=lower, upper=upper, delay=delayed)
    kin_dev = jax.device_put(kin, replicated)
    plot_dev = jax.device_put(plot_input, replicated) if plot_input is not None else None
    w_kw = {} if half_life is None else {"half_life": half_life}

    def launch(tacs):
        """Start the fit of one padded chunk ``[chunk, F]`` (asynchronous)."""
        if model in GRAPHICAL_METHODS:
            return GRAPHICAL_METHODS[model].fn(jax.device_put(tacs, rows), plot_dev, t_star)
        if method == "curve_fit":
            return None
        w = frame_weights(weights, kin, tacs, decay_corrected=decay_corrected, **w_kw)
        w = jax.device_put(np.asarray(w), rows if np.ndim(w) == 2 else replicated)
        return fit_chunk(jax.device_put(tacs, rows), w, kin_dev, settings)

    def collect(result, tacs, index, n):
        """Write the first ``n`` results of a chunk into the maps at ``index`` (flat voxel indices)."""
        if model in GRAPHICAL_METHODS:
            values = {names[0]: result.slope, "intercept": result.intercept, "R2": result.r2}
        elif method == "curve_fit":
            from jaxkin.fitting import baseline

            w = None
            if weights != "none":
                w = np.asarray(frame_weights(weights, kin, tacs[:n], decay_corrected=decay_corrected, **w_kw))
            params, sse, ok = baseline.curve_fit_tacs(tacs[:n], numpy_model, weights=w, lower=settings.lower,
                                                      upper=settings.upper)
            values = get_model(model).named_maps(params)
            values["SSE"] = sse
            y = tacs[:n].astype(np.float64)
            w_full = np.ones(y.shape[-1]) if w is None else w
            with jax.enable_x64(True):
                values["R2"] = np.asarray(weighted_r2(y, sse, w_full))
                values["AICc"] = np.asarray(aicc(sse, np.sum(w_full * y * y, axis=-1), y.shape[-1], params.shape[-1]))
            values["flags"] = np.where(ok, 0, FLAG_NOT_CONVERGED)
        else:
            r = result.to_numpy()
            m = get_model(model)
            values = {name: r.params[:, i] for i, name in enumerate(m.param_names + ("delay",) * delayed)}
            values[r.macro_name] = r.macro
            values.update(SSE=r.sse, R2=r.r2, flags=r.flags, AICc=r.aicc)
            if f"{r.macro_name}{SE_SUFFIX}" in maps:
                values |= {f"{name}{SE_SUFFIX}": r.stderr[:, i]
                           for i, name in enumerate(m.param_names + ("delay",) * delayed)}
                values[f"{r.macro_name}{SE_SUFFIX}"] = r.macro_stderr
        for name, v in values.items():
            maps[name].reshape(-1)[index] = np.asarray(v)[:n]

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"fit {model}", unit="voxel", disable=not dist.is_main_process())
    flat_index = np.arange(mask.size).reshape(mask.shape)
    buf_tacs, buf_index = [], []
    pending = None
    n_frames = int(kin.frame_duration.shape[0])

    def flush(tacs_list, index_list):
        nonlocal pending
        tacs = np.concatenate(tacs_list)
        index = np.concatenate(index_list)
        n = tacs.shape[0]
        padded = np.zeros((chunk, n_frames), np.float32)
        padded[:n] = tacs
        result = launch(padded)
        if pending is not None:
            collect(*pending)
            if bar is not None:
                bar.update(pending[3])
        pending = (result, padded, index, n)

    for zs, data in slabs(pet, slab, mine):
        sel = mask[:, :, zs]
        if not sel.any():
            continue
        buf_tacs.append(data[sel].astype(np.float32))
        buf_index.append(flat_index[:, :, zs][sel])
        while sum(len(t) for t in buf_tacs) >= chunk:
            tacs = np.concatenate(buf_tacs)
            index = np.concatenate(buf_index)
            flush([tacs[:chunk]], [index[:chunk]])
            buf_tacs, buf_index = [tacs[chunk:]], [index[chunk:]]
    if sum(len(t) for t in buf_tacs):
        flush(buf_tacs, buf_index)
    if pending is not None:
        collect(*pending)
        if bar is not None:
            bar.update(pending[3])
    if bar is not None:
        bar.close()
    maps = {name: dist.gather_slabs(values, n_z) for name, values in maps.items()}
    n_not_converged = 0
    if "flags" in maps:
        n_not_converged = int(np.count_nonzero((maps["flags"][full_mask] & FLAG_NOT_CONVERGED) != 0))
    return VolumeFit(maps=maps, mask=full_mask, n_fitted=int(np.count_nonzero(full_mask)), n_nonfinite=n_nonfinite,
                     n_not_converged=n_not_converged)


def write_fit_maps(pet, input_function, out_dir, *, model="2tcmirr", method: str = "lm", mask=None,
                   weights: str = "none", half_life: float | None = None, chunk_size: int = CHUNK_SIZE,
                   min_signal: float = 0.05, t_star: float = 20.0, progress: bool = False,
                   command_line: str | None = None, extra: dict | None = None,
                   whole_blood=None, bounds=None, delay: str = "none", delay_range=DEFAULT_DELAY_RANGE,
                   delay_mask=None, uncertainty: bool = False) -> dict:
    """Fit every voxel of a BIDS PET image and write :func:`output_maps` of ``model`` into ``out_dir``.

    ``pet``: a :class:`jaxkin.io.pet.PetImage`; ``input_function``: its :class:`jaxkin.InputFunction` (min since
    injection, kBq/ml), or a :class:`jaxkin.io.blood.Blood` (its input, its whole blood for the vB term, and its
    provenance in the sidecars); ``whole_blood``: the vB curve when ``input_function`` is a curve (default: the
    input); ``mask``: bool ``[X, Y, Z]`` or None (the automatic body mask, :func:`body_mask`, whose threshold is
    ``min_signal`` times the body's median time integral). The maps are
    ``<prefix>_model-<model>_meas-<name>_mimap.nii.gz`` on the PET's grid with JSON sidecars (the fit method, the
    weights, the voxels fitted, ``extra``); Poisson weights use ``half_life`` (min), by default that of the sidecar's
    ``TracerRadionuclide`` (F-18 when absent); ``bounds``: a preset or ranges (:func:`jaxkin.kinetics.resolve_bounds`,
    default ``physiological``), written into the sidecars. ``uncertainty`` (``lm`` only) adds the standard-error maps
    ``meas-<name>SE`` of every parameter and of Ki/VT (delta method), R2 and the warning flags (:func:`output_maps`).

    **Model comparison**: ``model`` a sequence of compartment models (``("2tcmirr", "2tcm", "1tcm")``) fits each in
    the same mask and writes each model's maps, each model's ``meas-AICc`` map (:data:`AICC_FORMULA`) and
    ``<prefix>_model-comparison_meas-preferred_mimap.nii.gz``: the model with the smallest AICc per voxel as an
    integer, 1 for the first model given, 2 for the second, ... (0 outside the mask; the names in its sidecar's
    ``Levels``).

    **Input delay** (positive = the input arrives later at the tissue than where it was measured): ``delay="none"``
    (default), ``"global"``: one delay for the scan, estimated from the mean TAC of ``delay_mask`` (bool
    ``[X, Y, Z]``; default the fit's mask, i.e. the whole body) by :func:`jaxkin.fitting.delay.estimate_delay`
    within ``delay_range`` (min; default -10 s ... +30 s) on a 1 s grid and refined, then every voxel fitted with the
    shifted input; ``"voxel"``: a delay per voxel (``lm`` only), bounded by ``delay_range``, written as the map
    ``meas-delay`` (min). The sidecars say which (``InputDelay``).

    After :func:`jaxkin.distributed.initialize` this is a collective: every process fits a slab, process 0 writes.
    Returns ``{"paths": {name: path}, "result": VolumeFit, "seconds": fit time, "notes": [assumptions made],
    "delay": (delay, standard error) in min for a global delay}`` (with several models the paths are named
    ``"<model> <map>"``, ``"result"`` is the first model's and ``"results"`` maps each model to its
    :class:`VolumeFit`).
    """
    import time

    from jaxkin import distributed as dist
    from jaxkin.io.pet import tracer_half_life
    from jaxkin.io.maps import map_path, write_map
    from jaxkin.decay import F18_HALF_LIFE_MIN
    from jaxkin.fitting.baseline import NumpyModel
    from jaxkin.fitting.graphical import PlotInput
    from jaxkin.kinetics import prepare

    models = (model,) if isinstance(model, str) else tuple(model)
    compare = len(models) > 1
    if not models or len(set(models)) != len(models):
        raise ValueError(f"model: give one model or several different ones, got {models}")
    if compare and any(m in GRAPHICAL_METHODS for m in models):
        raise ValueError("a model comparison takes compartment models only, not " +
                         ", ".join(m for m in models if m in GRAPHICAL_METHODS))
    graphical = models[0] in GRAPHICAL_METHODS
    if method == "curve_fit" and graphical:
        raise ValueError(f"method curve_fit applies to compartment models, not {models[0]}")
    if weights == "poisson" and half_life is None:
        half_life = tracer_half_life(pet.sidecar, pet.sidecar_path, default=F18_HALF_LIFE_MIN)
    from jaxkin.io.blood import Blood, scan_provenance

    if delay not in ("none", "global", "voxel"):
        raise ValueError(f"delay must be none, global or voxel, got {delay!r}")
    if delay != "none" and graphical:
        raise ValueError(f"an input delay is fitted with compartment models, not {models[0]}")
    if delay == "voxel" and method != "lm":
        raise ValueError("a per-voxel delay is fitted by method lm only")
    blood = input_function if isinstance(input_function, Blood) else None
    if blood is not None:
        input_function, whole_blood = blood.input, blood.whole_blood
    whole_blood = whole_blood if whole_blood is not None else input_function
    start = time.perf_counter()
    source = preload(pet) if jax.process_count() == 1 else pet  # read once for every pass below (if it fits)
    notes, delay_info, estimate = [], {"Mode": delay}, None
    d_lo, d_hi = (float(v) for v in delay_range)
    if delay == "global":
        from jaxkin.fitting.delay import estimate_delay, mean_tac, shifted_inputs

        if mask is None:
            mask, _ = body_mask(source, pet.frames.duration, min_signal=min_signal)
        region = mask if delay_mask is None else np.asarray(delay_mask, bool)
        estimate = estimate_delay(mean_tac(source, region), input_function, pet.frames, whole_blood, model=models[0],
                                  delay_range=delay_range, weights=weights, bounds=bounds, half_life=half_life)
        covered = min(input_function.end, whole_blood.end)
        input_function, whole_blood = shifted_inputs(estimate[0], pet.frames, input_function, whole_blood)
        delay_info |= {"DelaySeconds": round(estimate[0] * 60, 3), "StandardErrorSeconds": round(estimate[1] * 60, 3),
                       "EstimatedFrom": f"mean TAC of {'the delay mask' if delay_mask is not None else 'the fit mask'}"
                                        f" ({int(np.count_nonzero(region))} voxels), model {models[0]}",
                       "SearchSeconds": [d_lo * 60, d_hi * 60], "SearchStepSeconds": 1.0}
        if abs(estimate[0] - d_lo) < 1e-6 or abs(estimate[0] - d_hi) < 1e-6:
            notes.append(f"the global input delay {estimate[0] * 60:.1f} s is at the end of the search range "
                         f"{d_lo * 60:g} ... {d_hi * 60:g} s")
        if covered < pet.frames.end[-1] - estimate[0] - 1e-9:
            notes.append(f"the input ends at {covered * 60:.1f} s; shifted by the delay it is held at its last value "
                         f"up to the end of the scan")
    if delay == "voxel":
        from jaxkin.kinetics import prepare_delayed

        kin = prepare_delayed(input_function, pet.frames, whole_blood, max_advance=max(-d_lo, 0.0),
                              max_delay=d_hi)
        if kin.note:
            notes.append(kin.note)
        delay_info |= {"BoundsSeconds": [d_lo * 60, d_hi * 60], "Map": "meas-delay (min)"}
    else:
        kin = prepare(input_function, pet.frames, whole_blood)
    results = {}
    for m in models:
        fit_mask = mask if not results else next(iter(results.values())).mask  # later models: the first's mask
        results[m] = fit_volume(
            source, kin, model=m, method=method, mask=fit_mask, weights=weights, chunk_size=chunk_size,
            min_signal=min_signal, t_star=t_star, progress=progress, half_life=half_life, bounds=bounds,
            delay_range=delay_range, uncertainty=uncertainty,
            plot_input=PlotInput.from_input(input_function, pet.frames) if graphical else None,
            numpy_model=NumpyModel(input_function, pet.frames, m, blood=whole_blood) if method == "curve_fit" else None)
    seconds = time.perf_counter() - start
    result = results[models[0]]
    base = {"FitMethod": "linear regression" if graphical else method, "Weights": weights,
            "VoxelsFitted": result.n_fitted, **scan_provenance(pet, blood), **(extra or {})}
    if compare:
        base["ModelsCompared"] = list(models)
    if not graphical:
        base["InputDelay"] = delay_info
    if notes:
        base["Assumptions"] = list(base.get("Assumptions", [])) + notes
    writes = []  # (model entity, map name, values, unit, sidecar)
    for m, res in results.items():
        sidecar = dict(base)
        if graphical:
            sidecar["TStarMinutes"] = t_star
        else:
            sidecar["Bounds"] = bounds_sidecar(m, bounds)
        units = output_maps(m, delay=delay == "voxel", uncertainty=uncertainty and method == "lm") | (
            {"AICc": DIAGNOSTIC_UNITS["AICc"]} if compare else {})
        for name, unit in units.items():
            side = sidecar | ({"AICcFormula": AICC_FORMULA} if name == "AICc" else {})
            if name.endswith(SE_SUFFIX) and name[: -len(SE_SUFFIX)] in units:
                side = side | {"Description": f"standard error of {name[: -len(SE_SUFFIX)]}"
                               + (" (delta method)" if name[: -len(SE_SUFFIX)] in ("Ki", "VT") else "")}
            elif name == "flags":
                from jaxkin.fitting.result import FLAG_NAMES

                side = side | {"Description": "warning flags of the fit (bit field)",
                               "Levels": {str(b): t for b, t in FLAG_NAMES.items()}}
            writes.append((m, name, res.maps[name], unit, side))
    if compare:
        criteria = np.stack([results[m].maps["AICc"] for m in models])
        preferred = np.where(result.mask, np.argmin(criteria, axis=0) + 1, 0).astype(np.float32)
        side = base | {"Description": "the model with the smallest AICc in each voxel (an integer: see Levels)",
                       "Levels": {"0": "not fitted (outside the mask)",
                                  **{str(i + 1): m for i, m in enumerate(models)}},
                       "AICcFormula": AICC_FORMULA}
        writes.append(("comparison", "preferred", preferred, "1", side))
    paths = {(f"{m} {name}" if compare else name): map_path(out_dir, pet.prefix, m, name)
             for m, name, *_ in writes}
    if dist.is_main_process():
        for m, name, values, unit, side in writes:
            write_map(out_dir, pet.prefix, m, name, values, reference=pet, units=unit,
                           command_line=command_line, extra=side)
    dist.sync("jaxkin-fit-written")  # every process returns when process 0 has written the maps
    out = {"paths": paths, "result": result, "seconds": seconds, "notes": notes, "delay": estimate}
    if compare:
        out["results"] = results
    return out
