"""Self-supervised training of the kinetic UNet: configs, data pipeline, pure train step, loop, checkpoints.

Command line::

    python -m jaxkin.train --config experiments/exp4_1.py [--set key=value ...] [--workdir DIR] [--data DIR] [--resume]
        [--coordinator HOST:PORT --num-processes N --process-id I | --distributed]

A config file defines ``get_config() -> dict`` with keys of :class:`TrainConfig`; ``--set`` overrides them.
Without ``--data`` the phantom dataset is simulated into ``WORKDIR/data`` (once; later runs reuse it).

What a run writes in the workdir: ``config.json`` (the resolved config), ``model.json`` (what prediction needs:
network config, input scaling, the training frame schedule), ``checkpoints/latest`` and ``checkpoints/best``
(orbax), ``metrics.csv`` (one row per epoch), ``test_metrics.json``, ``report.md`` and, with
``predict_test``, parametric maps of the test subjects in ``predictions/``.

The functional core: :func:`make_train_step` returns a jit-compiled pure function
``(params, opt_state, batch, kin) -> (params, opt_state, metrics)``; the loop around it is the imperative shell.
Training is data-parallel over every device (and, after ``--coordinator`` or ``--distributed``, every process):
see :mod:`jaxkin.distributed`. Data order is a function of ``(seed, epoch, data_shards)``, so ``--resume`` from the latest checkpoint (saved every epoch)
reproduces the losses of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import importlib.util
import json
import math
import sys
import time
import typing
from pathlib import Path

import numpy as np

from jaxkin.errors import InputError

__all__ = [
    "TrainConfig",
    "load_config",
    "config_from_dict",
    "SliceData",
    "load_slices",
    "ShardedSlices",
    "load_sharded",
    "stack_kinetic_inputs",
    "make_model",
    "make_optimizer",
    "make_train_step",
    "make_eval_step",
    "evaluate",
    "train",
    "main",
]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (units: kBq/ml for activities, epochs for schedules)."""

    # network (the rows of the paper's Table 1 differ in conv, pooling and final_activation)
    conv: str = "space_time"  # "space_time" ((2+1)D) or "3d"
    pooling: str = "3d"  # "3d" (2,2,2) or "space" (1,2,2)
    final_activation: str = "multi_clamp"  # "abs", "clamp", "multi_clamp" or "sigmoid"
    depth: int = 4
    root_features: int = 8
    time_steps: int = 64  # frames are edge-padded to this many time steps
    input_scale: float = 1.0  # network input = TAC (kBq/ml) * input_scale (after input_normalization)
    input_normalization: str = "none"  # "none" (the paper) or "slice": each slice / its 99th percentile
    init_params: tuple = ()  # () (the paper: random init) or K1, k2, k3, vB that the untrained net predicts
    lower: tuple = (0.01, 0.01, 0.01, 0.0)  # K1, k2, k3, vB bounds (multi_clamp, sigmoid)
    upper: tuple = (2.0, 3.0, 1.0, 1.0)
    # optimisation
    learning_rate: float = 1e-4
    lr_halving_epochs: int = 25
    epochs: int = 500
    batch_size: int = 5  # global: split over all devices of all processes (must be divisible by their number)
    seed: int = 0
    data_shards: int = 0  # training subjects are dealt into this many shards, each giving batch_size/data_shards
    # slices to every batch; a process holds only its shards' subjects. 0: one shard per process
    devices: int = 0  # devices to train on: 0 = all of them; N = the first N / P devices of each of the P processes
    eval_every: int = 1  # validate every N epochs (and after the last)
    # data
    slices_per_subject: int = 75  # train/val slices per subject, evenly spaced from the lungs to the bladder
    crop: int = 112  # centre crop (or zero pad) of each axial slice to crop x crop voxels
    mask_threshold: float = 1.0  # loss/metric mask: time-averaged activity above this (kBq/ml)
    predict_batch_size: int = 8
    predict_test: bool = True  # after training, write parametric maps of every test subject
    # the simulated phantom (used when no --data is given)
    phantom_preset: str = "paper"
    phantom_subjects: int = 0  # 0: the preset's default
    phantom_seed: int = 0
    phantom_noise_scale: float = 1.0

    def unet_config(self):
        from jaxkin.nn.unet import UNetConfig

        return UNetConfig(
            conv=self.conv,
            pooling=self.pooling,
            final_activation=self.final_activation,
            depth=self.depth,
            root_features=self.root_features,
            time_steps=self.time_steps,
            lower=tuple(float(v) for v in self.lower),
            upper=tuple(float(v) for v in self.upper),
            init_params=tuple(float(v) for v in self.init_params),
        )


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_CHOICES = {
    "conv": ("space_time", "3d"),
    "pooling": ("3d", "space"),
    "final_activation": ("abs", "clamp", "multi_clamp", "sigmoid"),
    "phantom_preset": ("small", "paper"),
    "input_normalization": ("none", "slice"),
}
_POSITIVE = ("depth", "root_features", "time_steps", "epochs", "batch_size", "eval_every", "crop",
             "lr_halving_epochs", "predict_batch_size", "learning_rate", "input_scale")


def _field_type(name: str):
    return typing.get_type_hints(TrainConfig)[name]


def _check_value(name: str, value, where: str):
    kind = _field_type(name)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, (int, np.integer)) and not isinstance(value, bool),
        float: isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool),
        str: isinstance(value, str),
        tuple: isinstance(value, (tuple, list))
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value),
    }[kind]
    if not ok:
        raise InputError(f"{where}: {name} must be {kind.__name__}, got {value!r} ({type(value).__name__})")
    value = kind(value)
    if name in _CHOICES and value not in _CHOICES[name]:
        raise InputError(f"{where}: {name} must be one of {', '.join(_CHOICES[name])}, got {value!r}")
    if name in _POSITIVE and not value > 0:
        raise InputError(f"{where}: {name} must be positive, got {value!r}")
    return value


def config_from_dict(values: dict, where: str = "config") -> TrainConfig:
    """Validate ``values`` (unknown keys, types, choices) and build the config; InputError on a problem."""
    if not isinstance(values, dict):
        raise InputError(f"{where}: get_config() must return a dict, got {type(values).__name__}")
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(_FIELDS)}")
    checked = {k: _check_value(k, v, where) for k, v in values.items()}
    cfg = TrainConfig(**checked)
    n = 2**cfg.depth
    if cfg.crop % n:
        raise InputError(f"{where}: crop ({cfg.crop}) must be a multiple of 2**depth = {n}")
    if cfg.pooling == "3d" and cfg.time_steps % n:
        raise InputError(f"{where}: time_steps ({cfg.time_steps}) must be a multiple of 2**depth = {n} with 3d pooling")
    if cfg.devices < 0:
        raise InputError(f"{where}: devices must be 0 (all) or positive, got {cfg.devices}")
    if cfg.data_shards < 0:
        raise InputError(f"{where}: data_shards must be 0 (one per process) or positive, got {cfg.data_shards}")
    if cfg.data_shards and cfg.batch_size % cfg.data_shards:
        raise InputError(f"{where}: batch_size ({cfg.batch_size}) must be a multiple of data_shards ({cfg.data_shards})")
    if len(cfg.lower) != 4 or len(cfg.upper) != 4 or any(lo >= hi for lo, hi in zip(cfg.lower, cfg.upper)):
        raise InputError(f"{where}: lower and upper need 4 values each (K1, k2, k3, vB) with lower < upper")
    if cfg.init_params and (len(cfg.init_params) != 4 or not all(
            lo < v < hi for v, lo, hi in zip(cfg.init_params, cfg.lower, cfg.upper))):
        raise InputError(f"{where}: init_params must be empty or 4 values (K1, k2, k3, vB) strictly between lower "
                         f"and upper, got {cfg.init_params!r}")
    return cfg


def _parse_override(text: str, where: str) -> tuple[str, object]:
    if "=" not in text:
        raise InputError(f"{where}: expected key=value, got {text!r}")
    key, raw = (s.strip() for s in text.split("=", 1))
    if key not in _FIELDS:
        raise InputError(f"{where}: unknown key {key!r}; known keys: {', '.join(_FIELDS)}")
    kind = _field_type(key)
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return key, raw.lower() in ("true", "1", "yes")
        if kind is tuple:
            return key, tuple(float(v) for v in raw.strip("()[] ").split(",") if v.strip())
        if kind is int:
            return key, int(raw)
        return key, kind(raw)
    except ValueError:
        raise InputError(f"{where}: {key} must be {kind.__name__}, got {raw!r}") from None


def load_config(path, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Load a config file (a Python file defining ``get_config() -> dict``) and apply ``key=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    spec = importlib.util.spec_from_file_location(f"_jaxkin_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # so a config can import its base
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise InputError(f"{path}: cannot load config ({type(err).__name__}: {err})") from None
    finally:
        sys.path.remove(str(path.parent))
    if not callable(getattr(module, "get_config", None)):
        raise InputError(f"{path}: defines no get_config() function")
    values = dict(module.get_config())
    for text in overrides:
        key, value = _parse_override(text, "--set")
        values[key] = value
    return config_from_dict(values, str(path))


# --------------------------------------------------------------------------------------------------
# Data: axial slices of a BIDS dataset
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SliceData:
    """Axial slices of several subjects, cropped: ``tac [N, H, W, F]`` (kBq/ml), ``mask [N, H, W]`` (float32),
    ``subject [N]`` (index into the stacked kinetic inputs), ``z [N]`` (slice index in its volume)."""

    tac: np.ndarray
    mask: np.ndarray
    subject: np.ndarray
    z: np.ndarray

    def __len__(self) -> int:
        return int(self.tac.shape[0])

    def batch(self, index: np.ndarray) -> dict:
        """Samples ``index`` (``-1`` = padding: a copy of sample 0 with an empty mask) as a batch dict."""
        real = index >= 0
        i = np.where(real, index, 0)
        if not len(self):  # nothing here (a process whose shards hold no slices of this split): all padding
            return {"tac": np.zeros((len(index), *self.tac.shape[1:]), np.float32),
                    "mask": np.zeros((len(index), *self.mask.shape[1:]), np.float32),
                    "subject": np.zeros(len(index), np.int32)}
        return {
            "tac": self.tac[i],
            "mask": self.mask[i] * real[:, None, None].astype(np.float32),
            "subject": self.subject[i].astype(np.int32),
        }


def select_slices(labels, n_z: int, count: int) -> np.ndarray:
    """``count`` axial slice indices evenly spaced from the lungs to the bladder (included).

    The range comes from the label map (labels named ``lungs`` and ``bladder``; otherwise all labelled slices;
    without labels, the whole volume). ``count <= 0`` or a range with fewer slices selects every slice of it.
    """
    lo, hi = 0, n_z - 1
    if labels is not None:
        names = set(labels.names.values())
        wanted = [n for n in ("lungs", "bladder") if n in names]
        inside = labels.mask(*wanted) if len(wanted) == 2 else labels.data > 0
        zs = np.nonzero(inside.any(axis=(0, 1)))[0]
        if zs.size:
            lo, hi = int(zs.min()), int(zs.max())
    if count <= 0 or count >= hi - lo + 1:
        return np.arange(lo, hi + 1)
    return np.unique(np.round(np.linspace(lo, hi, count)).astype(int))


def crop_slices(x: np.ndarray, size: int) -> np.ndarray:
    """Centre crop (or zero pad) axes 0 and 1 of ``x [X, Y, ...]`` to ``size``."""
    for axis in (0, 1):
        n = x.shape[axis]
        if n >= size:
            start = (n - size) // 2
            x = np.take(x, np.arange(start, start + size), axis=axis)
        else:
            pad = [(0, 0)] * x.ndim
            pad[axis] = ((size - n) // 2, size - n - (size - n) // 2)
            x = np.pad(x, pad)
    return x


def voxel_mask(tac: np.ndarray, duration: np.ndarray, threshold: float) -> np.ndarray:
    """Voxels whose time-averaged activity (AUC / scan length, kBq/ml) exceeds ``threshold``: float32 ``[...]``."""
    mean = np.tensordot(np.nan_to_num(tac), duration / duration.sum(), axes=([-1], [0]))
    return (mean > threshold).astype(np.float32)


@dataclasses.dataclass
class SubjectScan:
    """One subject's opened files: the PET image, its input function, its label map (or None)."""

    subject: str
    pet: object
    input_function: object
    labels: object


def open_subject(dataset_dir, subject: str) -> SubjectScan:
    from jaxkin.data.bids import load_input_function, load_labels, load_pet
    from jaxkin.data.dataset import subject_files

    files = subject_files(dataset_dir, subject)
    pet = load_pet(files.pet)
    if files.input_function is None:
        raise InputError(f"{files.pet.parent}: no input function (*_blood.tsv) for {subject}")
    inp = load_input_function(files.input_function, pet=pet)
    labels = load_labels(files.labels, pet=pet) if files.labels is not None else None
    return SubjectScan(subject, pet, inp, labels)


def load_slices(scans: list[SubjectScan], indices: list[int], cfg: TrainConfig, *, all_slices: bool = False,
                n_frames: int = 1) -> SliceData:
    """The selected axial slices of ``scans`` (``indices`` = their positions in the kinetic stack); ``n_frames``
    sizes the empty result when ``scans`` is empty."""
    tacs, masks, subj, zs = [], [], [], []
    for scan, index in zip(scans, indices):
        z = select_slices(scan.labels, scan.pet.shape[2], 0 if all_slices else cfg.slices_per_subject)
        volume = scan.pet.read()[:, :, z, :]  # [X, Y, Zsel, F]
        volume = crop_slices(np.nan_to_num(volume), cfg.crop)
        tac = np.ascontiguousarray(np.moveaxis(volume, 2, 0))  # [Zsel, H, W, F]
        tacs.append(tac)
        masks.append(voxel_mask(tac, scan.pet.frames.duration, cfg.mask_threshold))
        subj.append(np.full(len(z), index, np.int32))
        zs.append(z)
    if not tacs:
        return SliceData(np.zeros((0, cfg.crop, cfg.crop, n_frames), np.float32),
                         np.zeros((0, cfg.crop, cfg.crop), np.float32),
                         np.zeros(0, np.int32), np.zeros(0, int))
    return SliceData(np.concatenate(tacs), np.concatenate(masks), np.concatenate(subj), np.concatenate(zs))


@dataclasses.dataclass
class ShardedSlices:
    """This process's slices of one split (train, val or test), grouped in data shards.

    The split's subjects are dealt into ``len(sizes)`` shards (subject ``j`` into shard ``j % shards``); every batch
    takes ``rows`` slices from each shard, so its content does not depend on how many processes share the work.
    ``data`` holds the slices of the shards this process owns (``owned``, contiguous), one shard after the other;
    ``sizes [shards]`` counts the slices of every shard (of all processes).
    """

    data: SliceData
    sizes: np.ndarray
    owned: range

    def steps(self, rows: int) -> int:
        """Batches needed to see every slice of the largest shard."""
        return max((math.ceil(int(n) / rows) for n in self.sizes), default=0)

    def index_batches(self, rows: int, key: tuple | None = None) -> np.ndarray:
        """``[steps, rows * len(owned)]`` indices into ``data`` (``-1`` = padding): each owned shard in order, or
        shuffled by ``np.random.default_rng((*key, shard))``; shards that run out are padded."""
        steps = self.steps(rows)
        columns, offset = [], 0
        for shard in self.owned:
            n = int(self.sizes[shard])
            order = np.arange(n) if key is None else np.random.default_rng((*key, shard)).permutation(n)
            column = np.full(steps * rows, -1, np.int64)
            column[:n] = order + offset
            columns.append(column.reshape(steps, rows))
            offset += n
        return np.concatenate(columns, axis=1) if columns else np.zeros((steps, 0), np.int64)


def load_sharded(scans: list[SubjectScan], indices: list[int], cfg: TrainConfig, shards: int, *,
                 all_slices: bool = False, n_frames: int = 1) -> ShardedSlices:
    """The slices of this process's shards of ``scans`` (see :class:`ShardedSlices`); a collective when several
    processes run (they exchange their shard sizes)."""
    from jaxkin import distributed as dist

    per_process = shards // dist.process_count()
    owned = range(dist.process_index() * per_process, (dist.process_index() + 1) * per_process)

    def read_own_shards():
        dealt = [range(shard, len(scans), shards) for shard in owned]  # subject j goes to shard j % shards
        return [load_slices([scans[j] for j in mine], [indices[j] for j in mine], cfg, all_slices=all_slices,
                            n_frames=n_frames) for mine in dealt]

    parts = dist.check_everywhere(read_own_shards)  # a damaged file on one process stops every process
    sizes = np.zeros(shards, np.int64)
    for shard, part in zip(owned, parts):
        sizes[shard] = len(part)
    parts = [p for p in parts if len(p)] or [load_slices([], [], cfg, n_frames=n_frames)]
    data = SliceData(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(SliceData)))
    return ShardedSlices(data, dist.gather_arrays(sizes).sum(axis=0), owned)


def stack_kinetic_inputs(scans: list[SubjectScan]):
    """One :class:`jaxkin.KineticInput` with leaves stacked over subjects (``table [S, G, F]``, ...)."""
    import jax
    import jax.numpy as jnp

    from jaxkin.kinetics import prepare

    n_frames = {s.pet.frames.n_frames for s in scans}
    if len(n_frames) > 1:
        raise InputError(f"the subjects have different frame counts ({sorted(n_frames)}); one network needs one")
    kins = [prepare(s.input_function, s.pet.frames) for s in scans]
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *kins)


# --------------------------------------------------------------------------------------------------
# Model, optimiser and the pure steps
# --------------------------------------------------------------------------------------------------


def make_model(cfg: TrainConfig):
    """The UNet of ``cfg``, initialised from ``cfg.seed``."""
    from flax import nnx

    from jaxkin.nn.unet import UNet

    return UNet(cfg.unet_config(), rngs=nnx.Rngs(cfg.seed))


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int):
    """Adam with the learning rate halved every ``lr_halving_epochs`` epochs (a staircase)."""
    import optax

    schedule = optax.exponential_decay(
        cfg.learning_rate, transition_steps=cfg.lr_halving_epochs * max(steps_per_epoch, 1), decay_rate=0.5,
        staircase=True,
    )
    return optax.adam(schedule), schedule


def _forward(graphdef, params, tac, cfg: TrainConfig):
    from flax import nnx

    from jaxkin.nn.unet import network_input

    model = nnx.merge(graphdef, params)
    return model(network_input(tac, cfg.time_steps, cfg.input_scale, cfg.input_normalization))


def _jit(fn, parallel, n_replicated_before: int, n_replicated_after: int, n_out: int):
    """``jax.jit(fn)``, with ``parallel`` (a :class:`jaxkin.distributed.DataParallel`): the batch argument split
    over its mesh, the other arguments and every output replicated."""
    import jax

    if parallel is None:
        return jax.jit(fn)
    rep, batch = parallel.replicated, parallel.batch_sharding
    return jax.jit(fn, in_shardings=(rep,) * n_replicated_before + (batch,) + (rep,) * n_replicated_after,
                   out_shardings=(rep,) * n_out if n_out > 1 else rep)


def make_train_step(graphdef, optimizer, cfg: TrainConfig, parallel=None):
    """A jit-compiled pure step ``(params, opt_state, batch, kin) -> (params, opt_state, {"loss": ...})``.

    ``params``: the model's ``nnx.State`` of parameters; ``batch``: ``tac [B, H, W, F]`` (kBq/ml), ``mask [B, H, W]``,
    ``subject [B]``; ``kin``: the stacked :class:`jaxkin.KineticInput` of all subjects. The loss is the masked MSE
    between the measured TACs and the model TACs of the predicted parameters, over the whole batch.

    With ``parallel`` (:class:`jaxkin.distributed.DataParallel`) the batch is split over the devices of its mesh and
    parameters, optimiser state and metrics are replicated: the same computation, data-parallel (XLA inserts the
    gradient all-reduce).
    """
    import jax
    import optax

    from jaxkin.nn.loss import masked_mse, model_tacs

    def loss_fn(params, batch, kin):
        predicted = _forward(graphdef, params, batch["tac"], cfg)
        return masked_mse(batch["tac"], model_tacs(predicted, kin, batch["subject"]), batch["mask"])

    def step(params, opt_state, batch, kin):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, kin)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": loss}

    return _jit(step, parallel, 2, 1, 3)


def make_eval_step(graphdef, cfg: TrainConfig, parallel=None):
    """A jit-compiled ``(params, batch, kin) -> metric sums`` (see :func:`jaxkin.nn.loss.metric_sums`); ``parallel``
    as in :func:`make_train_step`."""
    from jaxkin.nn.loss import metric_sums, model_tacs

    def step(params, batch, kin):
        predicted = _forward(graphdef, params, batch["tac"], cfg)
        return metric_sums(batch["tac"], model_tacs(predicted, kin, batch["subject"]), batch["mask"])

    return _jit(step, parallel, 1, 1, 1)


@functools.lru_cache(maxsize=8)
def compiled_steps(cfg: TrainConfig, steps_per_epoch: int, parallel=None):
    """``(graphdef, optimizer, schedule, train_step, eval_step)`` for ``cfg``, built once per process, so repeated
    runs (resume, tests, notebooks) reuse the compiled programs. Pair them with ``nnx.split(make_model(cfg))[1]``."""
    from flax import nnx

    graphdef = nnx.split(nnx.eval_shape(lambda: make_model(cfg)))[0]
    optimizer, schedule = make_optimizer(cfg, steps_per_epoch)
    return (graphdef, optimizer, schedule, make_train_step(graphdef, optimizer, cfg, parallel),
            make_eval_step(graphdef, cfg, parallel))


def evaluate(eval_step, params, sliced: ShardedSlices, kin, batch_size: int, parallel) -> dict:
    """Dataset-level metrics over masked voxels of every shard: ``loss`` (MSE), ``mae``/``mae_sd`` and
    ``cs``/``cs_sd`` (mean and SD over voxels of the per-voxel MAE (kBq/ml) and cosine similarity), ``voxels``.
    ``batch_size`` is global; ``parallel`` places the batches (:class:`jaxkin.distributed.DataParallel`)."""
    import jax

    total: dict[str, float] = {}
    for index in sliced.index_batches(batch_size // len(sliced.sizes)):
        sums = jax.device_get(eval_step(params, parallel.batch(sliced.data.batch(index)), kin))
        for k, v in sums.items():
            total[k] = total.get(k, 0.0) + float(v)
    n = max(total.get("n", 0.0), 1.0)
    n_frames = sliced.data.tac.shape[-1]

    def sd(s, s2):
        return math.sqrt(max(s2 / n - (s / n) ** 2, 0.0))

    return {
        "loss": total.get("se", 0.0) / (n * n_frames),
        "mae": total.get("mae", 0.0) / n,
        "mae_sd": sd(total.get("mae", 0.0), total.get("mae2", 0.0)),
        "cs": total.get("cs", 0.0) / n,
        "cs_sd": sd(total.get("cs", 0.0), total.get("cs2", 0.0)),
        "voxels": int(total.get("n", 0.0)),
    }


# --------------------------------------------------------------------------------------------------
# Checkpoints (orbax): params and optimiser state as one flat dict of arrays, plus run metadata
# --------------------------------------------------------------------------------------------------


def _flat(tree) -> dict:
    import jax

    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def _unflat(template, flat: dict):
    import jax

    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    return jax.tree_util.tree_unflatten(treedef, [flat[jax.tree_util.keystr(p)] for p, _ in leaves])


def checkpoint_manager(directory: Path):
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(Path(directory).absolute(), options=ocp.CheckpointManagerOptions(max_to_keep=1))


def save_checkpoint(manager, step: int, params, opt_state, meta: dict) -> None:
    """Save ``params``, ``opt_state`` and ``meta`` (numbers) at ``step`` and wait for the async write."""
    import orbax.checkpoint as ocp

    tree = {"params": _flat(params), "meta": {k: np.asarray(v) for k, v in meta.items()}}
    if opt_state is not None:
        tree["opt_state"] = _flat(opt_state)
    manager.save(step, args=ocp.args.StandardSave(tree), force=True)
    manager.wait_until_finished()


def restore_checkpoint(manager, params_template, opt_state_template=None, step: int | None = None):
    """Restore ``(params, opt_state, meta)`` (``opt_state`` None without a template) from ``manager``."""
    import jax
    import orbax.checkpoint as ocp

    step = manager.latest_step() if step is None else step
    if step is None:
        raise InputError(f"{manager.directory}: no checkpoint found")
    target = {"params": jax.tree.map(ocp.utils.to_shape_dtype_struct, _flat(params_template)),
              "meta": {"epoch": np.zeros((), np.int64), "best_val": np.zeros((), np.float64)}}
    if opt_state_template is not None:
        target["opt_state"] = jax.tree.map(ocp.utils.to_shape_dtype_struct, _flat(opt_state_template))
    try:
        restored = manager.restore(step, args=ocp.args.StandardRestore(target))
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise InputError(f"{manager.directory}: checkpoint {step} does not fit this network ({str(err).splitlines()[0][:200]})") from None
    params = _unflat(params_template, restored["params"])
    opt_state = _unflat(opt_state_template, restored["opt_state"]) if opt_state_template is not None else None
    meta = {k: np.asarray(v).item() for k, v in restored["meta"].items()}
    return params, opt_state, meta


# --------------------------------------------------------------------------------------------------
# The imperative shell
# --------------------------------------------------------------------------------------------------

_CSV_COLUMNS = ("epoch", "step", "learning_rate", "train_loss", "val_loss", "val_mae", "val_mae_sd", "val_cs",
                "val_cs_sd", "seconds")


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _prepare_dataset(cfg: TrainConfig, workdir: Path, data_dir) -> Path:
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not (data_dir / "participants.tsv").is_file():
            raise InputError(f"--data {data_dir}: not a dataset (no participants.tsv with the train/val/test split)")
        return data_dir
    data_dir = workdir / "data"
    if not (data_dir / "participants.tsv").is_file():
        from jaxkin.data.phantom import simulate_dataset

        print(f"simulating the {cfg.phantom_preset!r} phantom dataset into {data_dir} ...", file=sys.stderr)
        simulate_dataset(data_dir, subjects=cfg.phantom_subjects or None, seed=cfg.phantom_seed,
                         preset=cfg.phantom_preset, noise_scale=cfg.phantom_noise_scale)
    return data_dir


def _truncate_csv(path: Path, before_epoch: int) -> None:
    """Keep the CSV rows of epochs < ``before_epoch`` (rows written after the last checkpoint are dropped)."""
    if not path.is_file():
        return
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < before_epoch]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)


def _append_csv(path: Path, row: dict) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_CSV_COLUMNS)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in _CSV_COLUMNS})


def read_metrics(workdir) -> list[dict]:
    """The rows of ``WORKDIR/metrics.csv`` as dicts of floats (empty strings -> None)."""
    with (Path(workdir) / "metrics.csv").open() as f:
        return [{k: (float(v) if v != "" else None) for k, v in r.items()} for r in csv.DictReader(f)]


def train(cfg: TrainConfig, workdir, data_dir=None, *, resume: bool = False, stop_after_epochs: int | None = None,
          progress: bool = True) -> dict:
    """Train (or resume) a run in ``workdir``; returns a summary dict (see module docstring for what is written).

    Runs data-parallel over every device of every process (:func:`jaxkin.distributed.data_mesh`); after
    :func:`jaxkin.distributed.initialize`, every process calls this with the same arguments: each loads only the
    subjects of its data shards, all save the checkpoints together, process 0 writes the other files and prints.
    ``stop_after_epochs`` stops after that many epochs of this call (the run can be resumed later); used to test
    kill-and-resume.
    """
    import jax
    from flax import nnx
    from tqdm import tqdm

    from jaxkin import distributed as dist

    main = dist.is_main_process()
    progress = progress and main
    workdir = Path(workdir)
    ckpt_dir = workdir / "checkpoints"
    saved_cfg = workdir / "config.json"
    if resume:
        if not saved_cfg.is_file():
            raise InputError(f"--resume: {workdir} has no config.json; nothing to resume")
        old = json.loads(saved_cfg.read_text())
        new = json.loads(json.dumps(dataclasses.asdict(cfg)))
        diff = sorted(k for k in set(old) | set(new)
                      if k not in ("epochs", "devices") and old.get(k, 0) != new.get(k))
        if diff:
            raise InputError(f"--resume: the config differs from the run in {workdir} in {', '.join(diff)}")
    elif (ckpt_dir / "latest").is_dir() and any((ckpt_dir / "latest").iterdir()):
        raise InputError(f"--workdir {workdir}: already holds a run; pass --resume or choose another --workdir")

    n_processes, shards = dist.process_count(), cfg.data_shards or dist.process_count()
    if shards % n_processes:
        raise InputError(f"data_shards ({shards}) must be a multiple of the number of processes ({n_processes})")
    if cfg.devices and (cfg.devices % n_processes or cfg.devices // n_processes > jax.local_device_count()):
        raise InputError(f"devices ({cfg.devices}) must be a multiple of the number of processes ({n_processes}) and "
                         f"at most the {jax.device_count()} devices there are")
    parallel = dist.DataParallel(dist.data_mesh(cfg.devices))
    if cfg.batch_size % parallel.size:
        fit = math.lcm(parallel.size, shards)
        usable = max(d for d in range(n_processes, jax.device_count() + 1, n_processes) if cfg.batch_size % d == 0) \
            if cfg.batch_size % n_processes == 0 else None
        fewer = f" or train on fewer: --set devices={usable}" if usable else ""
        raise InputError(f"batch_size ({cfg.batch_size}) must be divisible by the number of devices "
                         f"({parallel.size} = {n_processes} process(es) x {parallel.size // n_processes}); "
                         f"e.g. --set batch_size={-(-cfg.batch_size // fit) * fit}{fewer}")
    if cfg.batch_size % shards:
        raise InputError(f"batch_size ({cfg.batch_size}) must be a multiple of the number of data shards ({shards})")
    workdir.mkdir(parents=True, exist_ok=True)

    if resume:
        info = workdir / "model.json"
        used = json.loads(info.read_text()).get("data_shards", 1) if info.is_file() else shards
        if used != shards:
            raise InputError(f"--resume: the run used {used} data shard(s), now {shards} (data_shards="
                             f"{cfg.data_shards} on {n_processes} process(es)); the batches would change: run with "
                             f"--set data_shards={used} on a number of processes that divides it")

    if data_dir is None:  # process 0 simulates the phantom into the workdir, the others wait for it
        dist.check_everywhere(lambda: _prepare_dataset(cfg, workdir, None) if main else None)
        data_dir = workdir / "data"

    def open_dataset():
        """Every process checks the dataset and reads the headers and input functions of every subject (cheap)."""
        from jaxkin.data.dataset import dataset_split

        _prepare_dataset(cfg, workdir, data_dir)
        split = dataset_split(data_dir)
        if not split["train"]:
            raise InputError(f"--data {data_dir}: no training subjects in participants.tsv")
        if len(split["train"]) < shards:
            raise InputError(f"--data {data_dir}: {len(split['train'])} training subject(s) cannot fill {shards} "
                             "data shards; lower data_shards or use fewer processes")
        scans = [open_subject(data_dir, s) for s in split["train"] + split["val"] + split["test"]]
        n_frames = scans[0].pet.frames.n_frames
        if n_frames > cfg.time_steps:
            raise InputError(f"--data {data_dir}: {n_frames} frames do not fit time_steps = {cfg.time_steps}")
        return split, scans

    split, scans = dist.check_everywhere(open_dataset)
    n_frames = scans[0].pet.frames.n_frames
    kin = parallel.replicate(stack_kinetic_inputs(scans))
    ranges = {}
    start = 0
    for name in ("train", "val", "test"):
        ranges[name] = list(range(start, start + len(split[name])))
        start += len(split[name])

    def sliced(name, all_slices=False):  # this process's shards of a split: the only image data it reads
        return load_sharded([scans[i] for i in ranges[name]], ranges[name], cfg, shards, all_slices=all_slices,
                            n_frames=n_frames)

    train_data, val_data = sliced("train"), sliced("val")
    rows = cfg.batch_size // shards  # slices per shard in every batch
    steps_per_epoch = train_data.steps(rows)
    graphdef, optimizer, schedule, train_step, eval_step = compiled_steps(cfg, steps_per_epoch, parallel)
    params = parallel.replicate(nnx.split(make_model(cfg))[1])
    opt_state = parallel.replicate(optimizer.init(params))

    latest, best = checkpoint_manager(ckpt_dir / "latest"), checkpoint_manager(ckpt_dir / "best")
    first_epoch, best_val = 0, math.inf
    if resume:
        params, opt_state, meta = restore_checkpoint(latest, params, opt_state)
        first_epoch, best_val = int(meta["epoch"]), float(meta["best_val"])
        if main:
            print(f"resumed from {ckpt_dir / 'latest'} after epoch {first_epoch}", file=sys.stderr)
    frames = scans[0].pet.frames
    if main:
        if resume:
            _truncate_csv(workdir / "metrics.csv", first_epoch)
        else:
            (workdir / "metrics.csv").unlink(missing_ok=True)
        _write_json(saved_cfg, dataclasses.asdict(cfg))
        _write_json(workdir / "model.json", {
            "config": dataclasses.asdict(cfg), "model": "2tcmirr", "n_frames": n_frames, "data_shards": shards,
            "frame_start_min": frames.start.tolist(), "frame_duration_min": frames.duration.tolist(),
        })

    last_epoch = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, first_epoch + stop_after_epochs)
    has_val = bool(val_data.sizes.sum())
    val_metrics = None
    for epoch in range(first_epoch, last_epoch):
        t0 = time.perf_counter()
        losses = []
        bar = tqdm(train_data.index_batches(rows, (cfg.seed, epoch)), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not progress, leave=False, file=sys.stderr)
        for index in bar:
            params, opt_state, metrics = train_step(params, opt_state, parallel.batch(train_data.data.batch(index)), kin)
            losses.append(float(metrics["loss"]))
            bar.set_postfix(loss=f"{losses[-1]:.4g}")
        row = {"epoch": epoch, "step": (epoch + 1) * steps_per_epoch,
               "learning_rate": float(schedule(epoch * steps_per_epoch)), "train_loss": float(np.mean(losses))}
        if has_val and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            val_metrics = evaluate(eval_step, params, val_data, kin, cfg.batch_size, parallel)
            row.update({f"val_{k}": v for k, v in val_metrics.items() if k != "voxels"})
            # process 0 decides (every copy of the replicated loss should agree; saving is a collective)
            if dist.gather_arrays(np.array(val_metrics["loss"] < best_val))[0]:
                best_val = val_metrics["loss"]
                save_checkpoint(best, epoch + 1, params, None, {"epoch": epoch + 1, "best_val": best_val})
        elif not has_val:  # no validation subjects: the latest is the best
            save_checkpoint(best, epoch + 1, params, None, {"epoch": epoch + 1, "best_val": row["train_loss"]})
        save_checkpoint(latest, epoch + 1, params, opt_state, {"epoch": epoch + 1, "best_val": best_val})
        row["seconds"] = time.perf_counter() - t0
        if main:
            _append_csv(workdir / "metrics.csv", row)
        if progress:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "step") and v != "")
            print(f"epoch {epoch + 1}/{cfg.epochs}: {shown}", file=sys.stderr)

    summary = {"workdir": str(workdir), "epochs_done": last_epoch, "finished": last_epoch >= cfg.epochs,
               "val": val_metrics}
    if last_epoch < cfg.epochs:
        return summary
    # final evaluation with the best parameters
    best_params, _, _ = restore_checkpoint(best, params)
    test_data = sliced("test", all_slices=True)
    summary["best_val"] = evaluate(eval_step, best_params, val_data, kin, cfg.batch_size, parallel) if has_val else None
    summary["test"] = (evaluate(eval_step, best_params, test_data, kin, cfg.batch_size, parallel)
                       if test_data.sizes.sum() else None)
    if main:
        _write_json(workdir / "test_metrics.json", {"validation": summary["best_val"], "test": summary["test"],
                                                    "test_subjects": split["test"]})
    organ_rows = []
    test_scans = [scans[i] for i in ranges["test"]]
    if cfg.predict_test and test_scans:
        from jaxkin.predict import Predictor, write_parameter_maps

        # every process predicts its slab of each test volume; process 0 writes the maps
        predictor = Predictor(graphdef, dist.local_copy(best_params), cfg, n_frames)
        for scan in test_scans:
            out = workdir / "predictions" / scan.subject
            result = write_parameter_maps(predictor, scan.pet, out, input_function=scan.input_function)
            organ_rows += _organ_comparison(data_dir, scan, result["maps"])
    summary["organ_means"] = organ_rows
    if main:
        _write_report(workdir, cfg, summary, split, organ_rows)
    dist.sync("jaxkin-train-end")
    return summary


def _organ_comparison(data_dir: Path, scan: SubjectScan, maps: dict) -> list[dict]:
    """Organ means of the predicted maps and the ground truth (simulated datasets only):
    ``[{"subject", "organ", "predicted": {K1, k2, k3, vB, Ki}, "true": {...}}]``."""
    from jaxkin.data.dataset import load_organ_truth

    if scan.labels is None:
        return []
    try:
        truth = load_organ_truth(data_dir, scan.subject)
    except InputError:
        return []  # not a simulated dataset
    rows = []
    for organ, true in truth.items():
        if organ not in scan.labels.names.values():
            continue
        inside = scan.labels.mask(organ)
        if not inside.any():
            continue
        predicted = {p: float(np.mean(maps[p][inside])) for p in ORGAN_PARAMETERS}
        rows.append({"subject": scan.subject, "organ": organ, "predicted": predicted,
                     "true": {p: float(true[p]) for p in ORGAN_PARAMETERS}})
    return rows


ORGAN_PARAMETERS = ("K1", "k2", "k3", "vB", "Ki")


def organ_rank_correlation(rows: list[dict], parameter: str) -> float:
    """Spearman rank correlation, over the tissue organs of ``rows`` (pure blood, true vB = 1, left out), between
    the organ means of the predicted ``parameter`` and the ground truth; NaN with fewer than 3 organs."""
    from scipy.stats import spearmanr

    tissue = [r for r in rows if r["true"]["vB"] < 1.0]
    if len(tissue) < 3:
        return math.nan
    return float(spearmanr([r["predicted"][parameter] for r in tissue], [r["true"][parameter] for r in tissue])[0])


def _write_report(workdir: Path, cfg: TrainConfig, summary: dict, split: dict, organ_rows=()) -> None:
    lines = [
        "# jaxkin training report", "",
        f"Network: conv {cfg.conv}, pooling {cfg.pooling}, final activation {cfg.final_activation}; "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.learning_rate:g} halved every {cfg.lr_halving_epochs} epochs.",
        f"Subjects: train {', '.join(split['train'])}; val {', '.join(split['val']) or '-'}; "
        f"test {', '.join(split['test']) or '-'}.", "",
        "| set | CS (mean ± SD over voxels) | MAE kBq/mL (mean ± SD) | MSE | voxels |", "|---|---|---|---|---|",
    ]
    for name, m in (("validation (best checkpoint)", summary.get("best_val")), ("test", summary.get("test"))):
        if m:
            lines.append(f"| {name} | {m['cs']:.3f} ± {m['cs_sd']:.3f} | {m['mae']:.3f} ± {m['mae_sd']:.3f} | "
                         f"{m['loss']:.4g} | {m['voxels']} |")
    if organ_rows:
        cells = [f"| {r['subject']} | {r['organ']} | " + " | ".join(
            f"{r['predicted'][p]:.3f} / {r['true'][p]:.3f}" for p in ORGAN_PARAMETERS) + " |" for r in organ_rows]
        rho = {p: organ_rank_correlation(organ_rows, p) for p in ORGAN_PARAMETERS}
        lines += ["", "Organ means of the predicted maps against the simulated ground truth (predicted / true):", "",
                  "| subject | organ | " + " | ".join(ORGAN_PARAMETERS) + " |", "|---|---|---|---|---|---|---|",
                  *cells, "",
                  "Spearman rank correlation of the organ means with the truth over the tissue organs (blood left "
                  "out): " + ", ".join(f"{p} {rho[p]:.2f}" for p in ORGAN_PARAMETERS) + "."]
    lines += ["", "Metrics per epoch: metrics.csv. Checkpoints: checkpoints/best, checkpoints/latest."]
    if cfg.predict_test and split["test"]:
        lines.append("Parametric maps (K1, k2, k3, vB, Ki) of the test subjects: predictions/<subject>/.")
    (workdir / "report.md").write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config file defining get_config(), e.g. experiments/exp4_1.py")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--workdir", default=None, help="output folder (default: runs/<config name>)")
    parser.add_argument("--data", default=None, help="BIDS dataset with a train/val/test split (default: simulate the phantom)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --workdir from its latest checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    from jaxkin.distributed import add_arguments as add_distributed_arguments

    add_distributed_arguments(parser)


def run(args) -> int:
    from jaxkin import distributed

    cfg = load_config(args.config, args.set)
    distributed.initialize_from_args(args, "jaxkin train")
    workdir = Path(args.workdir) if args.workdir else Path("runs") / Path(args.config).stem
    summary = train(cfg, workdir, args.data, resume=args.resume, progress=not args.no_progress)
    if not distributed.is_main_process():
        return 0
    if summary.get("test"):
        t = summary["test"]
        print(f"test: CS {t['cs']:.3f} ± {t['cs_sd']:.3f}, MAE {t['mae']:.3f} ± {t['mae_sd']:.3f} kBq/mL")
    print(f"wrote {workdir}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxkin.train", description="Train the self-supervised kinetic UNet.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    from jaxkin.cli import enable_compilation_cache

    enable_compilation_cache()
    try:
        return run(args)
    except InputError as err:
        print(f"jaxkin train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run the imported module's main, so that jaxkin.train is one module (one set of classes and compile caches).
    from jaxkin.train import main as _main

    sys.exit(_main())
