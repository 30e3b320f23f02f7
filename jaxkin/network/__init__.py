"""The self-supervised kinetic UNet: configuration, training data, pure steps, checkpoints, the training loop,
prediction and the run's report. Data flow one way::

    config -> data -> steps -> checkpoint -> report -> predict -> train, adapt

Command line: ``jaxkin train`` / ``python -m jaxkin.train`` and ``jaxkin predict`` (:mod:`jaxkin.cli`).
"""

from jaxkin.network.checkpoint import checkpoint_manager, restore_checkpoint, save_checkpoint
from jaxkin.network.config import (
    DataConfig,
    OptimConfig,
    TrainConfig,
    auto_time_steps,
    config_from_dict,
    load_config,
    resolve_time_steps,
)
from jaxkin.network.data import ShardedSlices, SliceData, load_sharded, load_slices, stack_kinetic_inputs, voxel_mask
from jaxkin.network.predict import Predictor, load_predictor, refine_with_lm, write_parameter_maps
from jaxkin.network.report import organ_rank_correlation, read_metrics
from jaxkin.network.steps import (
    TrainState,
    compiled_steps,
    evaluate,
    forward,
    make_eval_step,
    make_model,
    make_optimizer,
    make_train_step,
    model_graph,
)
from jaxkin.network.train import train
from jaxkin.network.adapt import Adapted, adapt
from jaxkin.nn.unet import UNetConfig

__all__ = [
    "TrainConfig",
    "UNetConfig",
    "DataConfig",
    "OptimConfig",
    "load_config",
    "config_from_dict",
    "auto_time_steps",
    "resolve_time_steps",
    "SliceData",
    "ShardedSlices",
    "load_slices",
    "load_sharded",
    "stack_kinetic_inputs",
    "voxel_mask",
    "TrainState",
    "make_model",
    "model_graph",
    "make_optimizer",
    "forward",
    "make_train_step",
    "make_eval_step",
    "compiled_steps",
    "evaluate",
    "checkpoint_manager",
    "save_checkpoint",
    "restore_checkpoint",
    "train",
    "read_metrics",
    "organ_rank_correlation",
    "Predictor",
    "load_predictor",
    "write_parameter_maps",
    "refine_with_lm",
    "adapt",
    "Adapted",
]
