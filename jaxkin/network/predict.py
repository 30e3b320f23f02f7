"""Prediction with a trained kinetic UNet: every axial slice of a volume, in fixed-size batches.

Python API::

    predictor = load_predictor("runs/exp4_1")                 # a workdir (or its checkpoints/best folder)
    params = predictor.predict_volume(volume)                 # [X, Y, Z, F] kBq/ml -> [X, Y, Z, 4] (K1, k2, k3, vB)
    params, tac_metrics = predictor.predict_volume(volume, kin=kin)   # with the scan's KineticInput: needed by a
                                                              # network that takes the input function as an input
    paths = write_parameter_maps(predictor, load_pet(pet_path), out_dir, input_function=load_blood(tsv).input)

Slices are padded (zeros, centred) to multiples of ``2**depth`` in-plane and cropped back; the last batch is padded
so one compiled program serves the whole volume. Time is edge-padded to the network's time steps as in training.
Each batch of slices is split over this process's devices (the batch size rounded up to a multiple of their
number). With several processes (:mod:`jaxkin.distributed`), :func:`write_parameter_maps` gives each process a slab
of slices and process 0 assembles and writes the maps.
"""

from __future__ import annotations

import functools
import typing
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxkin import distributed as dist
from jaxkin.io.files import read_json
from jaxkin.errors import InputError
from jaxkin.kinetics import FDG_MODEL, get_model, two_tissue_irreversible
from jaxkin.network.checkpoint import checkpoint_manager, restore_checkpoint
from jaxkin.network.config import TrainConfig, config_from_dict
from jaxkin.network.grid import SlabReader, TrainingGrid, grid_plan, resample, streams
from jaxkin.network.data import voxel_mask
from jaxkin.network.steps import forward, make_model, model_graph
from jaxkin.nn.loss import METRIC_SUMS, metric_sums
from jaxkin.nn.unet import SHIFT_SUM_CONVS

__all__ = ["Predictor", "load_predictor", "write_parameter_maps", "refine_with_lm", "scan_kinetic_input"]



@functools.lru_cache(maxsize=8)
def _compiled_forward(graphdef, parallel):
    """Jitted ``forward(params, tac, kin)`` and ``forward_metrics(params, tac, valid, kin, threshold)`` (the metrics
    over :func:`jaxkin.network.data.voxel_mask` of the slices whose ``valid`` is 1), built once per network,
    the slices split over ``parallel``'s mesh (:class:`jaxkin.distributed.DataParallel`); ``kin`` is the scan's
    :class:`jaxkin.kinetics.KineticInput` (or None for ``forward`` when the network does not need it)."""
    rep, rows = parallel.replicated, parallel.batch_sharding

    def per_slice(kin, n):
        return None if kin is None else jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (n, *leaf.shape)), kin)

    @functools.partial(jax.jit, in_shardings=(rep, rows, rep), out_shardings=rows)
    def predict(params, tac, kin):
        return forward(graphdef, params, tac, per_slice(kin, tac.shape[0]), convs=SHIFT_SUM_CONVS)

    @functools.partial(jax.jit, in_shardings=(rep, rows, rows, rep, rep), out_shardings=(rows, rep))
    def predict_with_metrics(params, tac, valid, kin, threshold):
        predicted = forward(graphdef, params, tac, per_slice(kin, tac.shape[0]), convs=SHIFT_SUM_CONVS)
        mask = voxel_mask(tac, kin.frame_duration, threshold) * valid[:, None, None]  # on the device: a fused read
        return predicted, metric_sums(tac, two_tissue_irreversible(predicted, kin), mask)

    return predict, predict_with_metrics


class Predictor:
    """A trained network ready to predict: ``predict_volume`` (optionally with TAC metrics), on this process's
    devices. ``params``: the model's parameter state (arrays on one device, or replicated); ``cfg`` the run's
    config (its ``model``, ``predict_batch_size`` and ``data.mask_threshold`` are used); ``n_frames`` the frame
    count the network was trained on; ``frames`` (a :class:`jaxkin.FrameSchedule`, or None when unknown, as in
    older runs) the schedule it was trained on, which every scan must match within ``frame_tolerance_s`` seconds
    (:meth:`check_schedule`); ``grid`` the voxel size and field of view it was trained on
    (:class:`jaxkin.network.grid.TrainingGrid`, or None when not recorded): a scan on another grid is resampled to it
    (:func:`jaxkin.network.grid.grid_plan`)."""

    def __init__(self, graphdef, params, cfg: TrainConfig, n_frames: int, *, frames=None,
                 frame_tolerance_s: float = 1.0, grid=None):
        self.graphdef, self.cfg, self.n_frames = graphdef, cfg, int(n_frames)
        self.frames, self.frame_tolerance_s, self.grid = frames, float(frame_tolerance_s), grid
        self.parallel = dist.DataParallel(dist.local_mesh())
        self.params = self.parallel.replicate(params)
        n_dev = self.parallel.size
        self.batch_size = -(-cfg.predict_batch_size // n_dev) * n_dev
        self._forward, self._forward_metrics = _compiled_forward(graphdef, self.parallel)

    def replace(self, *, params=None, cfg: TrainConfig | None = None) -> "Predictor":
        """A predictor of the same network and schedule with other ``params`` (e.g. adapted) or ``cfg``."""
        return Predictor(self.graphdef, self.params if params is None else params, cfg or self.cfg, self.n_frames,
                         frames=self.frames, frame_tolerance_s=self.frame_tolerance_s, grid=self.grid)

    def check_frames(self, n_frames: int, where: str) -> None:
        """InputError naming ``where`` unless a scan of ``n_frames`` frames fits the network."""
        if n_frames != self.n_frames:
            raise InputError(f"{where}: {n_frames} frames, but the network was trained on {self.n_frames}")

    def check_schedule(self, frames, where: str) -> None:
        """InputError (one line, naming ``where`` and the first frame that differs) unless the scan's frames
        (a :class:`jaxkin.FrameSchedule`) are the network's: the count, and, when the run recorded its schedule,
        every frame's start and duration within ``frame_tolerance_s`` (default 1 s)."""
        self.check_frames(frames.n_frames, where)
        if self.frames is None:
            return
        i = frames.first_difference(self.frames, self.frame_tolerance_s / 60.0)
        if i is not None:
            raise InputError(
                f"{where}: frame {i} (0-based) starts at {frames.start_seconds[i]:.1f} s and lasts "
                f"{frames.duration_seconds[i]:.1f} s, but the network was trained on frames whose frame {i} starts at "
                f"{self.frames.start_seconds[i]:.1f} s and lasts {self.frames.duration_seconds[i]:.1f} s (tolerance "
                f"{self.frame_tolerance_s:g} s); its weights fit that schedule only")

    def predict_volume(self, volume, *, kin=None, progress: bool = False):
        """``volume [X, Y, Z, F]`` (kBq/ml) -> parameters ``[X, Y, Z, 4]`` (float32); with ``kin`` (the scan's
        :class:`jaxkin.kinetics.KineticInput`) also TAC metrics over voxels above the config's mask threshold
        (``{"voxels", "mae", "cs", "mse"}``)."""
        out, totals = self._predict(volume, kin, progress)
        return out if kin is None else (out, _metrics(totals, volume.shape[-1]))

    def _predict(self, volume, kin=None, progress: bool = False):
        """``(parameters [X, Y, Z, 4], metric sums)`` of ``volume``; the sums are empty without ``kin``."""
        from tqdm import tqdm

        volume = volume if isinstance(volume, SlabReader) else np.asarray(volume)
        x_size, y_size, n_z, n_frames = volume.shape
        self.check_frames(n_frames, "volume")
        if kin is None and self.cfg.model.needs_input_function:
            raise InputError("this network was trained with the input function as an input (condition_on_input or "
                             "input_normalization=input): give the scan's input function (kin)")
        m = self.cfg.model.size_multiple
        px, py = -x_size % m, -y_size % m
        pad = ((0, 0), (px // 2, px - px // 2), (py // 2, py - py // 2), (0, 0))
        out = np.zeros((x_size, y_size, n_z, self.cfg.model.out_channels), np.float32)
        totals: dict[str, float] = {}
        threshold = np.float32(self.cfg.data.mask_threshold)
        kin = None if kin is None else self.parallel.replicate(kin)
        rows = self.parallel.batch_sharding  # slices split over this process's devices
        b = self.batch_size
        for z0 in tqdm(range(0, n_z, b), disable=not progress, desc="slices", unit_scale=b, leave=False):
            z1 = min(z0 + b, n_z)
            tac = np.zeros((b, x_size + px, y_size + py, n_frames), np.float32)  # one copy: padded, contiguous
            tac[: z1 - z0, pad[1][0] : pad[1][0] + x_size, pad[2][0] : pad[2][0] + y_size] = np.moveaxis(
                volume[:, :, z0:z1, :], 2, 0)
            np.nan_to_num(tac, copy=False)
            if kin is None:
                pred = self._forward(self.params, jax.device_put(tac, rows), None)
            else:
                valid = (np.arange(b) < z1 - z0).astype(np.float32)  # the padding slices count nowhere
                pred, sums = self._forward_metrics(self.params, jax.device_put(tac, rows), jax.device_put(valid, rows),
                                                   kin, threshold)
                for k, v in jax.device_get(sums).items():
                    totals[k] = totals.get(k, 0.0) + float(v)
            pred = np.asarray(pred)[: z1 - z0, pad[1][0] : pad[1][0] + x_size, pad[2][0] : pad[2][0] + y_size]
            out[:, :, z0:z1] = np.moveaxis(pred, 0, 2)
        return out, totals


def _metrics(totals: dict, n_frames: int) -> dict:
    n = max(totals.get("n", 0.0), 1.0)
    return {"voxels": int(totals.get("n", 0.0)), "mae": totals.get("mae", 0.0) / n,
            "cs": totals.get("cs", 0.0) / n, "mse": totals.get("se", 0.0) / (n * n_frames)}


def _find_run_dir(checkpoint: Path) -> Path:
    for d in (checkpoint, *checkpoint.parents):
        if (d / "model.json").is_file():
            return d
    raise InputError(f"{checkpoint}: no model.json found in it or its parent folders (is it a training "
                     "workdir?)")


def load_predictor(checkpoint) -> Predictor:
    """The best checkpoint of a training workdir (``checkpoint`` = the workdir, or a checkpoint folder inside it);
    runs of jaxkin 0.1.0 (flat ``model.json``) load too."""
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise InputError(f"{checkpoint}: checkpoint not found")
    run_dir = _find_run_dir(checkpoint)
    info = read_json(run_dir / "model.json", "model.json")
    cfg = config_from_dict(info["config"], str(run_dir / "model.json"))
    ckpt = checkpoint if checkpoint.name in ("best", "latest") else run_dir / "checkpoints" / "best"
    params, _, _ = restore_checkpoint(checkpoint_manager(ckpt), nnx.split(make_model(cfg))[1])
    frames = None
    if "frame_start_min" in info and "frame_duration_min" in info:  # older runs: the frame count only
        from jaxkin.frames import FrameSchedule

        frames = FrameSchedule.from_minutes(info["frame_start_min"], info["frame_duration_min"])
    return Predictor(model_graph(cfg.model), params, cfg, info["n_frames"], frames=frames,
                     frame_tolerance_s=info.get("frame_tolerance_s", 1.0), grid=TrainingGrid.from_record(info))


def scan_kinetic_input(pet, input_function):
    """The :class:`jaxkin.kinetics.KineticInput` of ``pet``'s frames from an :class:`jaxkin.InputFunction` or a
    :class:`jaxkin.io.blood.Blood` (whose whole blood then drives the vB term); None without one."""
    from jaxkin.io.blood import Blood
    from jaxkin.kinetics import prepare

    if isinstance(input_function, Blood):
        return prepare(input_function.input, pet.frames, input_function.whole_blood)
    return None if input_function is None else prepare(input_function, pet.frames)


@functools.lru_cache(maxsize=4)
def _compiled_metric_sums(parallel):
    """Jitted ``(params [N, P], tac [N, F], mask [N], kin) -> metric sums`` of the FDG model's TACs."""
    rep, rows = parallel.replicated, parallel.batch_sharding

    @functools.partial(jax.jit, in_shardings=(rows, rows, rows, rep), out_shardings=rep)
    def sums(params, tac, mask, kin):
        return metric_sums(tac, two_tissue_irreversible(params, kin), mask)

    return sums


def refine_with_lm(params, volume, kin, *, n_iter: int, threshold: float, lower, upper, chunk_size: int = 16384):
    """Polish a network's ``params [X, Y, Z, 4]`` (a slab) with ``n_iter`` Levenberg-Marquardt iterations per voxel
    (:func:`jaxkin.fitting.lm.refine_tacs`, unweighted SSE as in the network's loss, bounds ``lower``/``upper``)
    inside the network's loss mask (:func:`jaxkin.network.data.voxel_mask` of ``volume [X, Y, Z, F]`` kBq/ml with
    ``threshold``); voxels outside keep the network's values. Every refined voxel's SSE is at most the network's.
    Returns ``(params, metric sums over the mask, {"voxels", "sse_network", "sse_refined"})`` (SSE summed over the
    mask, (kBq/ml)^2)."""
    from jaxkin.fitting.lm import refine_tacs

    volume = np.nan_to_num(np.asarray(volume, np.float32))
    duration = np.asarray(kin.frame_duration, np.float64)
    mask = voxel_mask(volume, duration, threshold) > 0
    tacs = volume[mask]
    refined, sse0, sse1 = refine_tacs(params[mask], tacs, kin, n_iter=n_iter, lower=lower, upper=upper,
                                      chunk_size=chunk_size)
    params = params.copy()
    params[mask] = refined
    totals: dict[str, float] = {}
    parallel = dist.DataParallel(dist.local_mesh())
    chunk = -(-min(max(len(tacs), 1), 65536) // parallel.size) * parallel.size
    sums = _compiled_metric_sums(parallel)
    kin_dev = parallel.replicate(kin)
    for start in range(0, len(tacs), chunk):
        stop = min(start + chunk, len(tacs))
        pad = ((0, chunk - (stop - start)), (0, 0))
        valid = np.pad(np.ones(stop - start, np.float32), pad[:1])
        part = sums(jax.device_put(np.pad(refined[start:stop], pad), parallel.batch_sharding),
                    jax.device_put(np.pad(tacs[start:stop], pad), parallel.batch_sharding),
                    jax.device_put(valid, parallel.batch_sharding), kin_dev)
        for k, v in jax.device_get(part).items():
            totals[k] = totals.get(k, 0.0) + float(v)
    info = {"voxels": int(mask.sum()), "sse_network": float(np.sum(sse0, dtype=np.float64)),
            "sse_refined": float(np.sum(sse1, dtype=np.float64))}
    return params, totals, info


def write_parameter_maps(predictor: Predictor, pet, out_dir, *, input_function=None, command_line: str | None = None,
                         progress: bool = False, extra: dict | None = None, refine_lm: int = 0,
                         refine_bounds=None, before_commit=None) -> dict:
    """Predict every slice of ``pet`` (a :class:`jaxkin.io.pet.PetImage`) and write the maps of the FDG model's
    parameters and macro-parameters (K1, k2, k3, vB, Ki: ``<prefix>_model-2tcmirr_meas-<name>_mimap.nii.gz`` + JSON)
    into ``out_dir``, the PET's geometry kept, as a set (:func:`jaxkin.io.files.output_set`; ``before_commit`` is
    called just before the maps are moved in place).

    ``extra`` is added to the sidecars (e.g. ``Sources``). With ``input_function`` (an
    :class:`jaxkin.InputFunction`, or a :class:`jaxkin.io.blood.Blood` whose whole blood then drives the vB term)
    the sidecars also carry the mean TAC cosine similarity and MAE over the mask. The sidecars state the time
    origin, decay reference and assumptions of the scan (and of the blood data).
    **Refinement** (``refine_lm`` = K > 0, needs ``input_function``): every voxel of the network's loss mask (time-
    averaged activity above the run's ``mask_threshold``) is polished with K Levenberg-Marquardt iterations started
    from the network's parameters (:func:`refine_with_lm`), within ``refine_bounds`` (a bounds specification of
    :func:`jaxkin.kinetics.resolve_bounds`; default the network's own ``lower``/``upper``); the maps and the
    TAC metrics are then the refined ones and the sidecars carry ``RefineLMIterations`` and what was refined.
    Returns ``{"paths": {name: path}, "metrics": {...} or None, "maps": {name: [X, Y, Z] array}}`` (with refinement
    also ``"refine": {"voxels", "sse_network", "sse_refined"}``).
    After :func:`jaxkin.distributed.initialize` this is a collective: every process calls it (each predicts a slab).
    """
    predictor.check_schedule(pet.frames, str(pet.path))
    kin = scan_kinetic_input(pet, input_function)
    if refine_lm and kin is None:
        raise InputError(f"{pet.path}: refining with LM needs the scan's input function")
    refine = _refine_settings(predictor, refine_lm, refine_bounds) if refine_lm else None
    plan = grid_plan(predictor.grid, pet)
    if plan.resampled and dist.process_count() > 1:
        raise InputError(f"{pet.path}: {plan.note}; resampling needs the whole scan: predict it on one process")
    n_z = pet.shape[2]
    params, totals, refined = _predict_slab(predictor, pet, kin, refine, progress and dist.is_main_process(), plan)
    params = dist.gather_slabs(params, n_z, axis=2)
    metrics = None
    if kin is not None:  # fixed keys: a process with no slices has no sums
        summed = dist.gather_arrays(np.array([totals.get(k, 0.0) for k in METRIC_SUMS], np.float64)).sum(axis=0)
        metrics = _metrics(dict(zip(METRIC_SUMS, summed.tolist())), pet.frames.n_frames)
    maps = get_model(FDG_MODEL).named_maps(params)
    sidecar = _sidecar(predictor.cfg.model, pet, input_function, refine, refined, metrics, extra) | {
        "Grid": plan.sidecar}
    if plan.note:
        sidecar["Assumptions"] = list(sidecar.get("Assumptions", [])) + [plan.note]
    paths = _write_maps(maps, pet, Path(out_dir), sidecar, command_line, before_commit)
    out = {"paths": paths, "metrics": metrics, "maps": maps}
    if refined is not None:
        out["refine"] = refined
    return out


class _Refinement(typing.NamedTuple):
    """The LM polish of :func:`write_parameter_maps`: ``iterations``, the bounds ``lower``/``upper`` and what the
    sidecars say about it."""

    iterations: int
    lower: tuple
    upper: tuple
    sidecar: dict


def _refine_settings(predictor: Predictor, refine_lm: int, refine_bounds) -> _Refinement:
    """The refinement's bounds: ``refine_bounds`` (:func:`jaxkin.kinetics.resolve_bounds`) or the network's own."""
    from jaxkin.fitting.maps import bounds_sidecar
    from jaxkin.kinetics import resolve_bounds

    cfg = predictor.cfg
    if refine_bounds is None:
        lower, upper = cfg.model.lower, cfg.model.upper
        names = get_model(FDG_MODEL).param_names
        bounds = {"Preset": "the network's (lower/upper of its config)",
                  **{n: [lo, hi] for n, lo, hi in zip(names, lower, upper)}}
    else:
        lower, upper, _ = resolve_bounds(FDG_MODEL, refine_bounds)
        bounds = bounds_sidecar(FDG_MODEL, refine_bounds)
    sidecar = {"RefineLMIterations": int(refine_lm), "RefineLMBounds": bounds, "RefineLMWeights": "none",
               "RefineLMMask": f"voxels whose time-averaged activity exceeds {cfg.data.mask_threshold:g} kBq/mL "
                               "(the network's loss mask)"}
    return _Refinement(int(refine_lm), lower, upper, sidecar)


def _predict_slab(predictor: Predictor, pet, kin, refine: _Refinement | None, progress: bool, plan):
    """This process's slab of ``pet`` predicted (and refined): ``(parameters [X, Y, Z_slab, 4], metric sums,
    {"voxels", "sse_network", "sse_refined"} summed over every process, or None without refinement)``. With a
    resampling ``plan`` (one process), the network sees the scan on the training grid and its maps come back to the
    scan's (the refinement is on the scan's grid)."""
    mine = dist.share(pet.shape[2])
    if refine is None and not plan.resampled and streams(pet):  # slices read as the batches need them
        return (*predictor._predict(SlabReader(pet, mine), kin, progress=progress), None)
    volume = pet.read(mine)  # the whole volume for one process
    if plan.resampled:
        params, totals = predictor._predict(resample(volume, plan.shape), kin, progress=progress)
        params = resample(params, volume.shape[:3])
    else:
        params, totals = predictor._predict(volume, kin, progress=progress)
    if refine is None:
        return params, totals, None
    params, totals, info = refine_with_lm(params, volume, kin, n_iter=refine.iterations, lower=refine.lower,
                                          upper=refine.upper, threshold=predictor.cfg.data.mask_threshold)
    summed = dist.gather_arrays(np.array([info[k] for k in ("voxels", "sse_network", "sse_refined")],
                                         np.float64)).sum(axis=0)
    return params, totals, {"voxels": int(summed[0]), "sse_network": float(summed[1]), "sse_refined": float(summed[2])}


def _sidecar(model, pet, input_function, refine: _Refinement | None, refined: dict | None, metrics: dict | None,
             extra: dict | None) -> dict:
    """The maps' sidecar entries: the method, the scan's (and blood's) provenance, the refinement, the TAC
    metrics and ``extra``."""
    from jaxkin.io.blood import Blood, scan_provenance

    blood = input_function if isinstance(input_function, Blood) else None
    method = ("self-supervised per-voxel temporal encoder + 2D UNet" if model.architecture == "encoder_unet"
              else "self-supervised (2+1)D UNet (De Benetti et al. 2023)" if model.conv == "space_time"
              else "self-supervised 3D UNet")
    if refine is not None:
        method += f" + {refine.iterations} Levenberg-Marquardt iterations per voxel"
    sidecar = {"Method": method, "FinalActivation": model.final_activation, **scan_provenance(pet, blood)}
    if refine is not None:
        sidecar.update(refine.sidecar, RefineLMVoxels=refined["voxels"])
    if metrics is not None:
        sidecar["TACMetrics"] = metrics
    sidecar.update(extra or {})
    return sidecar


def _write_maps(maps: dict, pet, out_dir: Path, sidecar: dict, command_line: str | None, before_commit) -> dict:
    """Process 0 writes the maps with their sidecars as a set; every process returns ``{name: path}``."""
    from jaxkin.io.files import output_set
    from jaxkin.io.maps import map_path, write_map

    paths = {name: map_path(out_dir, pet.prefix, FDG_MODEL, name) for name in maps}
    if not dist.is_main_process():
        return paths
    units = get_model(FDG_MODEL).units
    with output_set(out_dir, before_commit=before_commit) as staged:
        for name, values in maps.items():
            write_map(staged.stage, pet.prefix, FDG_MODEL, name, values, reference=pet, units=units[name],
                      command_line=command_line, extra=sidecar)
    return paths
