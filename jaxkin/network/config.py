"""The configuration of a training run: :class:`TrainConfig`, nested as ``model`` (the network,
:class:`jaxkin.nn.unet.UNetConfig`), ``data`` (:class:`DataConfig`), ``optim`` (:class:`OptimConfig`) and run-level
fields.

Every leaf name is unique, so a key can be given by its bare name (``epochs``) or dotted (``optim.epochs``), and a
config dict may be flat, nested (``{"optim": {"epochs": 50}}``) or mixed: config files (``get_config() -> dict``),
``key=value`` overrides (:func:`load_config`) and a run's ``config.json``/``model.json`` (flat in runs of jaxkin
0.1.0, nested since) all load through :func:`config_from_dict`. Keys not given take their defaults. Checks (each
failing with one line, :class:`jaxkin.errors.InputError`): unknown keys (the message lists the known ones), types,
choices, positive values, and the constraints between fields.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import typing
from pathlib import Path

import numpy as np

from jaxkin.phantom.anatomy import PRESETS
from jaxkin.errors import InputError
from jaxkin.frames import FRAME_SCHEDULES
from jaxkin.nn.loss import LOSS_FRAMES, LOSS_SCALES
from jaxkin.nn.unet import ARCHITECTURES, UNetConfig

__all__ = ["DataConfig", "OptimConfig", "TrainConfig", "config_from_dict", "load_config", "config_leaves", "KEYS",
           "auto_time_steps", "resolve_time_steps"]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which slices a run trains on, and the phantom simulated when no dataset is given."""

    slices_per_subject: int = 75  # train/val slices per subject, evenly spaced from the lungs to the bladder; 0: all
    crop: int = 112  # centre crop (or zero pad) of each axial slice to crop x crop voxels
    mask_threshold: float = 1.0  # loss/metric mask: time-averaged activity above this (kBq/ml)
    phantom_preset: str = "paper"  # jaxkin.phantom.anatomy.PRESETS
    phantom_subjects: int = 0  # 0: the preset's default
    phantom_seed: int = 0
    phantom_noise_scale: float = 1.0
    phantom_frames: str = "quadra62"  # the phantom's frame schedule: jaxkin.frames.FRAME_SCHEDULES


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam with a staircase learning rate (halved every ``lr_halving_epochs`` epochs)."""

    learning_rate: float = 1e-4
    lr_halving_epochs: int = 25
    epochs: int = 500
    batch_size: int = 5  # global: split over all devices of all processes (must be divisible by their number)
    loss_frames: str = "none"  # frame weights of the loss: none (the paper) or duration (jaxkin.nn.loss.loss_weights)
    loss_scale: str = "none"  # errors in kBq/ml (none, the paper) or scaled: scan, voxel, counts (loss_weights)
    grad_clip_norm: float = 0.0  # clip the gradient's global norm to this before Adam; 0: no clipping (the paper)
    lm_guidance: float = 0.0  # weight of the voxel fit's maps of the training slices in the loss (0: off, the paper;
    # jaxkin.nn.loss.guidance_loss): a label-free guide computed from the same scans
    lm_guidance_epochs: int = 0  # guide the first N epochs only, then the loss is purely self-supervised; 0: every epoch
    lm_guidance_ki: float = 0.0  # weight of Ki's log-ratio distance (from the voxel fit's K1, k2, k3) beside the four
    # parameters', relative to theirs (jaxkin.nn.loss.guidance_loss); 0: the four parameters alone


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (units: kBq/ml for activities, epochs for schedules)."""

    model: UNetConfig = UNetConfig(time_steps=0)  # time_steps 0: follow the data (resolve_time_steps)
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    seed: int = 0  # network initialisation and data order
    data_shards: int = 0  # training subjects are dealt into this many shards, each giving batch_size/data_shards
    # slices to every batch; a process holds only its shards' subjects. 0: one shard per process
    devices: int = 0  # devices to train on: 0 = all of them; N = the first N / P devices of each of the P processes
    eval_every: int = 1  # validate every N epochs (and after the last)
    predict_batch_size: int = 8
    predict_test: bool = True  # after training, write parametric maps of every test subject


_SECTION_CLASSES = {"model": UNetConfig, "data": DataConfig, "optim": OptimConfig}


def _leaf_types(cls) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: typing.get_origin(hints[f.name]) or hints[f.name] for f in dataclasses.fields(cls)}


#: ``{leaf name: (section or None, type)}`` of every key, in the order of the dataclasses.
KEYS: dict[str, tuple[str | None, type]] = {
    **{name: (section, kind) for section, cls in _SECTION_CLASSES.items() for name, kind in _leaf_types(cls).items()},
    **{name: (None, kind) for name, kind in _leaf_types(TrainConfig).items() if name not in _SECTION_CLASSES},
}
_CHOICES = {"architecture": ARCHITECTURES, "in_channels": (1,), "out_channels": (UNetConfig.out_channels,), "phantom_preset": tuple(PRESETS),
            "loss_frames": LOSS_FRAMES, "loss_scale": LOSS_SCALES, "phantom_frames": tuple(FRAME_SCHEDULES)}
_POSITIVE = ("depth", "root_features", "temporal_features", "input_scale", "epochs", "batch_size", "eval_every", "crop",
             "lr_halving_epochs", "predict_batch_size", "learning_rate")
_NON_NEGATIVE = ("devices", "data_shards", "time_steps", "grad_clip_norm", "lm_guidance", "lm_guidance_epochs",
                 "lm_guidance_ki")


def _dotted(name: str) -> str:
    section = KEYS[name][0]
    return f"{section}.{name}" if section else name


def _leaf_name(key: str, where: str) -> str:
    """The leaf name of ``key`` (bare or dotted)."""
    section, _, name = key.rpartition(".")
    if name in KEYS and section in ("", KEYS[name][0] or ""):
        return name
    raise InputError(f"{where}: unknown key {key!r}; known keys: {', '.join(map(_dotted, KEYS))}")


def _flatten(values: dict, where: str, prefix: str = "") -> dict:
    """``{leaf name: value}`` of a flat, dotted or nested dict (later keys win)."""
    flat = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise InputError(f"{where}: keys must be strings, got {key!r}")
        if prefix + key in _SECTION_CLASSES:
            if not isinstance(value, dict):
                raise InputError(f"{where}: {key} must be a dict of its keys, got {value!r}")
            flat.update(_flatten(value, where, prefix + key + "."))
        else:
            flat[_leaf_name(prefix + key, where)] = value
    return flat


def _check_value(name: str, value, where: str):
    """``value`` as the leaf's type (tuples of floats); InputError on a wrong type, choice or sign."""
    kind = KEYS[name][1]
    integer = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    ok = {
        bool: isinstance(value, bool),
        int: integer,
        float: integer or isinstance(value, (float, np.floating)),
        str: isinstance(value, str),
        tuple: isinstance(value, (tuple, list))
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value),
    }[kind]
    if not ok:
        raise InputError(f"{where}: {name} must be {kind.__name__}, got {value!r} ({type(value).__name__})")
    value = tuple(float(v) for v in value) if kind is tuple else kind(value)
    if name in _CHOICES and value not in _CHOICES[name]:
        raise InputError(f"{where}: {name} must be one of {', '.join(map(str, _CHOICES[name]))}, got {value!r}")
    if name in _POSITIVE and not value > 0:
        raise InputError(f"{where}: {name} must be positive, got {value!r}")
    if name in _NON_NEGATIVE and value < 0:
        raise InputError(f"{where}: {name} must be 0 or positive, got {value!r}")
    return value


def config_from_dict(values: dict, where: str = "config") -> TrainConfig:
    """Validate ``values`` (flat, dotted or nested keys; missing ones take their defaults) and build the config;
    InputError (one line, starting with ``where``) on a problem."""
    if not isinstance(values, dict):
        raise InputError(f"{where}: get_config() must return a dict, got {type(values).__name__}")
    checked = {name: _check_value(name, value, where) for name, value in _flatten(values, where).items()}
    sections = {s: {k: v for k, v in checked.items() if KEYS[k][0] == s} for s in _SECTION_CLASSES}
    try:  # keys not given take TrainConfig's defaults (time_steps: 0 = auto, where UNetConfig alone has 64)
        parts = {s: dataclasses.replace(getattr(TrainConfig(), s), **sections[s]) for s in _SECTION_CLASSES}
    except ValueError as err:
        raise InputError(f"{where}: {err}") from None
    cfg = TrainConfig(**parts, **{k: v for k, v in checked.items() if KEYS[k][0] is None})
    n = cfg.model.size_multiple
    if cfg.data.crop % n:
        raise InputError(f"{where}: crop ({cfg.data.crop}) must be a multiple of 2**depth = {n}")
    if cfg.data_shards and cfg.optim.batch_size % cfg.data_shards:
        raise InputError(f"{where}: batch_size ({cfg.optim.batch_size}) must be a multiple of data_shards "
                         f"({cfg.data_shards})")
    return cfg


def auto_time_steps(model: UNetConfig, n_frames: int) -> int:
    """The network's time steps for scans of ``n_frames`` frames when ``time_steps`` is 0 (auto): the frame count
    rounded up to a multiple of ``2**depth`` for the paper's UNet with 3d pooling (which halves time ``depth``
    times; 62 -> 64 and 69 -> 80 at depth 4), the frame count itself otherwise (space pooling, ``encoder_unet``)."""
    m = model.time_multiple
    return -(-int(n_frames) // m) * m


def resolve_time_steps(cfg: TrainConfig, n_frames: int, where: str = "data") -> TrainConfig:
    """``cfg`` with ``time_steps`` set for scans of ``n_frames`` frames: :func:`auto_time_steps` when it is 0, else
    unchanged (InputError naming ``where`` if the frames do not fit it). The resolved config is what a run stores in
    config.json and model.json, so prediction and a resumed run see the value the network was built with."""
    steps = cfg.model.time_steps
    if steps == 0:
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model,
                                                                  time_steps=auto_time_steps(cfg.model, n_frames)))
    if n_frames > steps:
        raise InputError(f"{where}: {n_frames} frames do not fit time_steps = {steps} (set time_steps = 0 to follow "
                         "the data)")
    return cfg


def config_leaves(cfg: TrainConfig) -> dict:
    """``{leaf name: value}`` of every key of ``cfg`` (the flat view of the nested config)."""
    return {name: getattr(getattr(cfg, section) if section else cfg, name) for name, (section, _) in KEYS.items()}


def _parse_override(text: str, where: str) -> tuple[str, object]:
    """``key=value`` -> ``(leaf name, value of the leaf's type)``."""
    if "=" not in text:
        raise InputError(f"{where}: expected key=value, got {text!r}")
    key, raw = (s.strip() for s in text.split("=", 1))
    name = _leaf_name(key, where)
    kind = KEYS[name][1]
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return name, raw.lower() in ("true", "1", "yes")
        if kind is tuple:
            return name, tuple(float(v) for v in raw.strip("()[] ").split(",") if v.strip())
        return name, kind(raw)
    except ValueError:
        raise InputError(f"{where}: {name} must be {kind.__name__}, got {raw!r}") from None


def load_config(path, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Load a config file (a Python file defining ``get_config() -> dict``) and apply ``key=value`` overrides
    (bare or dotted keys, e.g. ``epochs=50`` or ``optim.epochs=50``)."""
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
    values = module.get_config()
    if not isinstance(values, dict):
        raise InputError(f"{path}: get_config() must return a dict, got {type(values).__name__}")
    values = _flatten(values, str(path))
    values.update(_parse_override(text, f"override {text!r}") for text in overrides)
    return config_from_dict(values, str(path))
