"""The training loop (the imperative shell around the pure steps of :mod:`jaxkin.network.steps`).

What a run writes in its workdir: ``config.json`` (the resolved config), ``model.json`` (what prediction needs: the
config, the frame count and schedule, the data shards), ``checkpoints/latest`` (every epoch) and
``checkpoints/best`` (orbax), ``metrics.csv`` (one row per epoch), ``test_metrics.json``, ``report.md`` and, with
``predict_test``, parametric maps of the test subjects in ``predictions/``.

Training is data-parallel over every device (and, after :func:`jaxkin.distributed.initialize`, every process).
Data order is a function of ``(seed, epoch, data_shards)``, so resuming from the latest checkpoint reproduces
the losses of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import typing
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from jaxkin import distributed as dist
from jaxkin.io.dataset import SPLITS, dataset_split
from jaxkin.io.files import read_json, write_json
from jaxkin.errors import InputError
from jaxkin.kinetics import FDG_MODEL
from jaxkin.network import report
from jaxkin.network.checkpoint import checkpoint_manager, restore_checkpoint, save_checkpoint
from jaxkin.network.config import TrainConfig, config_from_dict, config_leaves, resolve_time_steps
from jaxkin.network.grid import training_grid
from jaxkin.network.data import ShardedSlices, load_sharded, open_scans, prepare_dataset, stack_kinetic_inputs
from jaxkin.network.steps import CompiledSteps, TrainState, compiled_steps, evaluate, make_model

__all__ = ["train"]

_RESUMABLE = ("epochs", "devices")  # config keys that may change when a run is resumed


def check_resume(cfg: TrainConfig, workdir: Path, resume: bool) -> None:
    """Refuse to resume with a different config (any key but epochs and devices; keys missing from an older run's
    config.json count as their defaults), or to start over a run that has checkpoints."""
    latest = workdir / "checkpoints" / "latest"
    if not resume:
        if latest.is_dir() and any(latest.iterdir()):
            raise InputError(f"workdir {workdir} already holds a run; resume it or choose another workdir")
        return
    if not (workdir / "config.json").is_file():
        raise InputError(f"cannot resume: {workdir} has no config.json")
    old = config_leaves(config_from_dict(read_json(workdir / "config.json", "config"), str(workdir / "config.json")))
    ignore = set(_RESUMABLE)
    if cfg.model.time_steps == 0:  # auto: the run stored the value resolved for its frames (model.json: n_frames)
        info = workdir / "model.json"
        n_frames = read_json(info, "model.json").get("n_frames") if info.is_file() else None
        if n_frames:
            cfg = resolve_time_steps(cfg, n_frames)
        else:
            ignore.add("time_steps")  # checked again once the data are open (train)
    new = config_leaves(cfg)
    diff = [k for k in new if k not in ignore and old[k] != new[k]]
    if diff:
        raise InputError(f"cannot resume: the config differs from the run in {workdir} in {', '.join(diff)}")


def _data_parallel(cfg: TrainConfig) -> tuple[dist.DataParallel, int]:
    """The device mesh and the number of data shards; InputError when the batch does not divide over them."""
    n_processes, shards = dist.process_count(), cfg.data_shards or dist.process_count()
    batch = cfg.optim.batch_size
    if shards % n_processes:
        raise InputError(f"data_shards ({shards}) must be a multiple of the number of processes ({n_processes})")
    if cfg.devices and (cfg.devices % n_processes or cfg.devices // n_processes > jax.local_device_count()):
        raise InputError(f"devices ({cfg.devices}) must be a multiple of the number of processes ({n_processes}) and "
                         f"at most the {jax.device_count()} devices there are")
    count = cfg.devices
    if not count and dist.cpu_split_by_jaxkin() and batch % n_processes == 0:
        # jaxkin split the CPU into devices (not the user): train on as many of them as divide the batch
        count = max(d for d in range(n_processes, jax.device_count() + 1, n_processes) if batch % d == 0)
    parallel = dist.DataParallel(dist.data_mesh(count))
    if batch % parallel.size:
        fit = math.lcm(parallel.size, shards)
        usable = max(d for d in range(n_processes, jax.device_count() + 1, n_processes) if batch % d == 0) \
            if batch % n_processes == 0 else None
        fewer = f" or train on fewer: devices={usable}" if usable else ""
        raise InputError(f"batch_size ({batch}) must be divisible by the number of devices "
                         f"({parallel.size} = {n_processes} process(es) x {parallel.size // n_processes}); "
                         f"e.g. batch_size={-(-batch // fit) * fit}{fewer}")
    if batch % shards:
        raise InputError(f"batch_size ({batch}) must be a multiple of the number of data shards ({shards})")
    return parallel, shards


def _check_resumed_shards(cfg: TrainConfig, workdir: Path, shards: int) -> None:
    info = workdir / "model.json"
    used = read_json(info, "model.json").get("data_shards", 1) if info.is_file() else shards
    if used != shards:
        raise InputError(f"cannot resume: the run used {used} data shard(s), now {shards} (data_shards="
                         f"{cfg.data_shards} on {dist.process_count()} process(es)); the batches would change: run "
                         f"with data_shards={used} on a number of processes that divides it")


class Dataset(typing.NamedTuple):
    """A run's dataset as every process sees it: the split (subject ids), every opened PET scan of those subjects
    (in split order: train, val, test; a subject with several sessions or runs has several, all in its split), the
    kinetic inputs stacked over scans (replicated), and this process's shards of train and val slices."""

    folder: Path
    split: dict
    scans: list
    kin: typing.Any
    train: ShardedSlices
    val: ShardedSlices

    def subjects(self, name: str) -> range:
        """Positions in ``scans`` (and ``kin``) of the scans of split ``name``'s subjects."""
        members = set(self.split[name])
        index = [i for i, scan in enumerate(self.scans) if scan.subject in members]
        return range(index[0], index[-1] + 1) if index else range(0)

    def sliced(self, name: str, cfg: TrainConfig, shards: int, all_slices: bool = False) -> ShardedSlices:
        """This process's shards of split ``name``: the only image data it reads (the training slices with the
        voxel fit's maps when the run is guided by them, ``lm_guidance``)."""
        index = list(self.subjects(name))
        return load_sharded([self.scans[i] for i in index], index, cfg.data, shards, all_slices=all_slices,
                            n_frames=self.scans[0].pet.frames.n_frames,
                            targets=name == "train" and cfg.optim.lm_guidance > 0)


def _open_dataset(cfg: TrainConfig, workdir: Path, data_dir, shards: int, parallel) -> Dataset:
    """Simulate the phantom if needed (process 0), then every process checks the dataset, reads every subject's
    headers and input function (cheap) and its own shards' train and val slices."""
    if data_dir is None:  # process 0 simulates the phantom into the workdir, the others wait for it
        main = dist.is_main_process()
        dist.check_everywhere(lambda: prepare_dataset(cfg.data, workdir, None) if main else None)
    folder = prepare_dataset(cfg.data, workdir, data_dir)

    def open_all():
        split = dataset_split(folder)
        if not split["train"]:
            raise InputError(f"{folder}: no training subjects in participants.tsv")
        scans = [scan for name in SPLITS for s in split[name] for scan in open_scans(folder, s)]
        n_train = sum(scan.subject in split["train"] for scan in scans)
        if n_train < shards:
            raise InputError(f"{folder}: {n_train} training scan(s) cannot fill {shards} "
                             "data shards; lower data_shards or use fewer processes")
        resolve_time_steps(cfg, scans[0].pet.frames.n_frames, str(folder))  # the frames fit the network
        return split, scans

    split, scans = dist.check_everywhere(open_all)
    data = Dataset(folder, split, scans, parallel.replicate(stack_kinetic_inputs(scans)), None, None)
    return data._replace(train=data.sliced("train", cfg, shards), val=data.sliced("val", cfg, shards))


def _write_run_files(cfg: TrainConfig, workdir: Path, data: Dataset, shards: int, first_epoch: int) -> None:
    """``config.json``, ``model.json``, and ``metrics.csv`` cut back to the resumed epoch (or removed)."""
    if first_epoch:
        report.truncate_metrics(workdir, first_epoch)
    else:
        (workdir / "metrics.csv").unlink(missing_ok=True)
    frames = data.scans[0].pet.frames
    write_json(workdir / "config.json", dataclasses.asdict(cfg))
    write_json(workdir / "model.json", {
        "config": dataclasses.asdict(cfg), "model": FDG_MODEL, "n_frames": frames.n_frames, "data_shards": shards,
        "frame_start_min": frames.start.tolist(), "frame_duration_min": frames.duration.tolist(),
        "frame_tolerance_s": frame_tolerance_s(frames, [scan.pet.frames for scan in data.scans]),
        **training_grid(data.scans[0].pet).record()})


def frame_tolerance_s(reference, schedules) -> float:
    """How far (s) a scan's frame starts and durations may be from the ``reference`` schedule that model.json
    records for prediction: 1 s, or the largest difference among the run's own scans (``schedules``) if larger."""
    spread = max((max(np.max(np.abs(f.start - reference.start)), np.max(np.abs(f.duration - reference.duration)))
                  for f in schedules if f.n_frames == reference.n_frames), default=0.0)
    return float(max(1.0, round(60.0 * spread + 1e-3, 3)))


def guidance_weight(cfg: TrainConfig, epoch: int) -> float:
    """The weight of the voxel fit's maps in the loss of ``epoch`` (0-based): ``lm_guidance`` during the first
    ``lm_guidance_epochs`` epochs (every epoch when that is 0), then 0."""
    n = cfg.optim.lm_guidance_epochs
    return cfg.optim.lm_guidance if n == 0 or epoch < n else 0.0


def _train_epoch(steps: CompiledSteps, state: TrainState, data: Dataset, rows: int, key: tuple, parallel,
                 bar_label: str | None, guidance: float = 0.0, guidance_ki: float = 0.0) -> tuple[TrainState, float]:
    """One pass over the training slices in the seeded order of ``key``: ``(state, mean train loss)``. The losses
    stay on the device until the end of the epoch (the progress bar shows the previous step's). ``guidance``: the
    weight of the voxel fit's maps when the slices carry them (the same compiled step whatever its value);
    ``guidance_ki``: the relative weight of Ki in the guidance (``lm_guidance_ki``)."""
    from tqdm import tqdm

    losses = []
    bar = tqdm(data.train.index_batches(rows, key), desc=bar_label, disable=bar_label is None, leave=False,
               file=sys.stderr)
    for index in bar:
        if bar_label is not None and losses:
            bar.set_postfix(loss=f"{float(losses[-1]):.4g}")
        batch = data.train.data.batch(index)
        if "target" in batch:
            batch["guidance"] = np.full(len(index), guidance, np.float32)
            if guidance_ki > 0:
                batch["guidance_ki"] = np.full(len(index), guidance * guidance_ki, np.float32)
        state, metrics = steps.train_step(state, parallel.batch(batch), data.kin)
        losses.append(metrics["loss"])
    return state, float(np.mean(np.asarray(jax.device_get(losses), np.float64)))


def _initial_state(cfg: TrainConfig, steps: CompiledSteps, parallel, latest, resume: bool):
    """``(state, first epoch, best validation loss)``: a fresh network and optimiser, or the latest checkpoint."""
    params = parallel.replicate(nnx.split(make_model(cfg))[1])
    state = TrainState(params, parallel.replicate(steps.optimizer.init(params)))
    if not resume:
        return state, 0, math.inf
    params, opt_state, meta = restore_checkpoint(latest, *state)
    if dist.is_main_process():
        print(f"resumed from {latest.directory} after epoch {meta['epoch']}", file=sys.stderr)
    return TrainState(params, opt_state), int(meta["epoch"]), float(meta["best_val"])


def _validate_and_save(cfg: TrainConfig, steps: CompiledSteps, state: TrainState, data: Dataset, parallel, epoch: int,
                       row: dict, best_val: float, checkpoints: tuple) -> tuple[dict | None, float]:
    """After epoch ``epoch`` (0-based): validate when due (adding ``val_*`` to ``row``), save ``best`` when the
    validation loss improved (every epoch without validation subjects) and ``latest`` always.
    Returns ``(validation metrics or None, best validation loss)``."""
    latest, best = checkpoints
    done, val_metrics = epoch + 1, None
    if not data.val.sizes.sum():  # no validation subjects: the latest is the best
        save_checkpoint(best, done, state.params, None, {"epoch": done, "best_val": row["train_loss"]})
    elif done % cfg.eval_every == 0 or done == cfg.optim.epochs:
        val_metrics = evaluate(steps.eval_step, state.params, data.val, data.kin, cfg.optim.batch_size, parallel)
        row.update({f"val_{k}": v for k, v in val_metrics.items() if k != "voxels"})
        # process 0 decides (every copy of the replicated loss should agree; saving is a collective)
        if dist.gather_arrays(np.array(val_metrics["loss"] < best_val))[0]:
            best_val = val_metrics["loss"]
            save_checkpoint(best, done, state.params, None, {"epoch": done, "best_val": best_val})
    save_checkpoint(latest, done, state.params, state.opt_state, {"epoch": done, "best_val": best_val})
    return val_metrics, best_val


def train(cfg: TrainConfig, workdir, data_dir=None, *, resume: bool = False, stop_after_epochs: int | None = None,
          progress: bool = True) -> dict:
    """Train (or resume) a run in ``workdir``; returns a summary dict (``workdir``, ``epochs_done``, ``finished``,
    ``val``; after the last epoch also ``best_val``, ``test`` and ``organ_means``).

    Runs data-parallel over every device of every process (:func:`jaxkin.distributed.data_mesh`); after
    :func:`jaxkin.distributed.initialize`, every process calls this with the same arguments: each loads only the
    subjects of its data shards, all save the checkpoints together, process 0 writes the other files and prints.
    ``stop_after_epochs`` stops after that many epochs of this call (the run can be resumed later).
    """
    main = dist.is_main_process()
    workdir = Path(workdir)
    check_resume(cfg, workdir, resume)
    parallel, shards = _data_parallel(cfg)
    workdir.mkdir(parents=True, exist_ok=True)
    if resume:
        _check_resumed_shards(cfg, workdir, shards)
    data = _open_dataset(cfg, workdir, data_dir, shards, parallel)
    cfg = resolve_time_steps(cfg, data.scans[0].pet.frames.n_frames, str(data.folder))  # time_steps 0: auto
    check_resume(cfg, workdir, resume)  # again with the resolved time steps
    rows = cfg.optim.batch_size // shards  # slices per shard in every batch
    steps_per_epoch = data.train.steps(rows)
    steps = compiled_steps(cfg.model, cfg.optim, steps_per_epoch, parallel)
    checkpoints = tuple(checkpoint_manager(workdir / "checkpoints" / name) for name in ("latest", "best"))
    state, first_epoch, best_val = _initial_state(cfg, steps, parallel, checkpoints[0], resume)
    if main:
        _write_run_files(cfg, workdir, data, shards, first_epoch)

    epochs = cfg.optim.epochs
    last_epoch = epochs if stop_after_epochs is None else min(epochs, first_epoch + stop_after_epochs)
    val_metrics = None
    for epoch in range(first_epoch, last_epoch):
        t0 = time.perf_counter()
        label = f"epoch {epoch + 1}/{epochs}" if progress and main else None
        state, train_loss = _train_epoch(steps, state, data, rows, (cfg.seed, epoch), parallel, label,
                                         guidance_weight(cfg, epoch), cfg.optim.lm_guidance_ki)
        row = {"epoch": epoch, "step": (epoch + 1) * steps_per_epoch,
               "learning_rate": float(steps.schedule(epoch * steps_per_epoch)), "train_loss": train_loss}
        validated, best_val = _validate_and_save(cfg, steps, state, data, parallel, epoch, row, best_val, checkpoints)
        val_metrics = validated or val_metrics
        row["seconds"] = time.perf_counter() - t0
        if main:
            report.append_metrics(workdir, row)
        if label:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "step"))
            print(f"{label}: {shown}", file=sys.stderr)

    summary = {"workdir": str(workdir), "epochs_done": last_epoch, "finished": last_epoch >= epochs, "val": val_metrics}
    if last_epoch < epochs:
        return summary
    return _finish(cfg, workdir, data, shards, steps, state.params, checkpoints[1], parallel, summary)


def _finish(cfg: TrainConfig, workdir: Path, data: Dataset, shards: int, steps: CompiledSteps, params, best,
            parallel, summary: dict) -> dict:
    """After the last epoch: evaluate the best checkpoint on validation and test, predict the test subjects' maps
    (every process a slab, process 0 writes), write test_metrics.json and report.md."""
    from jaxkin.network.predict import Predictor, write_parameter_maps

    best_params, _, _ = restore_checkpoint(best, params)
    test = data.sliced("test", cfg, shards, all_slices=True)

    def scores(sliced):
        return evaluate(steps.eval_step, best_params, sliced, data.kin, cfg.optim.batch_size, parallel) \
            if sliced.sizes.sum() else None

    summary |= {"best_val": scores(data.val), "test": scores(test)}
    if dist.is_main_process():
        report.write_test_metrics(workdir, summary, data.split["test"])
    organ_rows = []
    if cfg.predict_test and data.split["test"]:
        frames = data.scans[0].pet.frames
        predictor = Predictor(steps.graphdef, dist.local_copy(best_params), cfg, frames.n_frames, frames=frames,
                              frame_tolerance_s=frame_tolerance_s(frames, [scan.pet.frames for scan in data.scans]))
        for scan in (data.scans[i] for i in data.subjects("test")):
            result = write_parameter_maps(predictor, scan.pet, workdir / "predictions" / scan.subject,
                                          input_function=scan.blood)
            organ_rows += report.organ_comparison(data.folder, scan, result["maps"])
    summary["organ_means"] = organ_rows
    if dist.is_main_process():
        report.write_report(workdir, cfg, summary, data.split, organ_rows)
    dist.sync("jaxkin-train-end")
    return summary
