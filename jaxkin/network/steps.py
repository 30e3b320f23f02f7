"""The model, the optimiser and the pure, jit-compiled steps of training and evaluation.

The network is split once (``nnx.split``) into its static graph and its parameters; every step merges them again
inside the compiled function, so the steps are pure functions of arrays:

* :func:`make_train_step`: ``(state, batch, kin) -> (state, {"loss"})``, the :class:`TrainState` donated;
* :func:`make_eval_step`: ``(params, batch, kin) -> metric sums``.

``batch``: ``tac [B, H, W, F]`` (kBq/ml), ``mask [B, H, W]`` (float32), ``subject [B]`` (int32, the sample's index in
``kin``), and in runs guided by the voxel fit ``target [B, H, W, 4]`` (its K1, k2, k3, vB) and ``guidance [B]`` (the
weight of :func:`jaxkin.nn.loss.guidance_loss` this epoch); ``kin``: one :class:`jaxkin.kinetics.KineticInput` with leaves
stacked over subjects.
"""

from __future__ import annotations

import functools
import math
import typing

import jax
import optax
from flax import nnx

from jaxkin.network.config import OptimConfig, TrainConfig
from jaxkin.network.data import ShardedSlices
from jaxkin.kinetics import two_tissue_irreversible
from jaxkin.nn.loss import guidance_loss, loss_weights, masked_mse, metric_sums, per_sample_input
from jaxkin.nn.encoder_unet import EncoderUNet
from jaxkin.nn.inputs import network_input, voxel_input
from jaxkin.nn.unet import XLA_CONVS, ConvOps, UNet, UNetConfig

__all__ = ["TrainState", "CompiledSteps", "make_model", "model_graph", "make_optimizer", "forward",
           "batch_loss", "make_train_step", "make_eval_step", "compiled_steps", "evaluate"]


class TrainState(typing.NamedTuple):
    """What a train step updates: the network's parameters (``nnx.State``) and the optimiser's state."""

    params: typing.Any
    opt_state: typing.Any


def _check_resolved(model: UNetConfig) -> None:
    if model.time_steps == 0:
        raise ValueError("time_steps = 0 (auto) must be resolved for the data's frame count before the network is "
                         "built: jaxkin.network.resolve_time_steps(cfg, n_frames)")


def _network_class(model: UNetConfig):
    """The module class of ``model.architecture``: the paper's :class:`jaxkin.nn.unet.UNet` or
    :class:`jaxkin.nn.encoder_unet.EncoderUNet`."""
    return EncoderUNet if model.architecture == "encoder_unet" else UNet


def make_model(cfg: TrainConfig) -> nnx.Module:
    """The network of ``cfg.model`` (its ``architecture``), initialised from ``cfg.seed`` (``time_steps`` resolved:
    not 0)."""
    _check_resolved(cfg.model)
    return _network_class(cfg.model)(cfg.model, rngs=nnx.Rngs(cfg.seed))


@functools.lru_cache(maxsize=8)
def model_graph(model: UNetConfig):
    """The static graph (``nnx.GraphDef``) of the UNet of ``model``, built once without computing any weights;
    pair it with ``nnx.split(make_model(cfg))[1]``. One object per config, so compiled programs keyed on it are
    reused."""
    _check_resolved(model)
    return nnx.split(nnx.eval_shape(lambda: _network_class(model)(model, rngs=nnx.Rngs(0))))[0]


def make_optimizer(optim: OptimConfig, steps_per_epoch: int):
    """``(optimizer, schedule)``: Adam with the learning rate halved every ``lr_halving_epochs`` epochs (a
    staircase), after clipping the gradient's global norm to ``grad_clip_norm`` when that is positive;
    ``schedule(step)`` is the learning rate of a step."""
    schedule = optax.exponential_decay(optim.learning_rate,
                                       transition_steps=optim.lr_halving_epochs * max(steps_per_epoch, 1),
                                       decay_rate=0.5, staircase=True)
    adam = optax.adam(schedule)
    if optim.grad_clip_norm > 0:
        adam = optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), adam)
    return adam, schedule


def forward(graphdef, params, tac, kin=None, *, convs: ConvOps = XLA_CONVS):
    """Parameters ``[B, H, W, 4]`` (K1, k2, k3, vB) that the network predicts from TACs ``tac [B, H, W, F]``
    (kBq/ml; normalised, scaled and time-padded as its config says). ``kin``: each sample's
    :class:`jaxkin.kinetics.KineticInput` (leaves ``[B, ...]``), needed when the network's input depends on the input
    function (``UNetConfig.needs_input_function``), ignored otherwise. ``convs``: how the network evaluates its
    convolutions (:class:`jaxkin.nn.unet.ConvOps`): XLA's (training), or the faster forward of
    :data:`jaxkin.nn.unet.SHIFT_SUM_CONVS` when the output is not differentiated (prediction)."""
    model = nnx.merge(graphdef, params)
    cfg = model.cfg
    kin = kin if cfg.needs_input_function else None
    if cfg.architecture == "encoder_unet":  # time last, the input function once per sample
        return model(*voxel_input(tac, cfg.time_steps, cfg.input_scale, cfg.input_normalization, kin,
                                  cfg.condition_on_input))
    return model(network_input(tac, cfg.time_steps, cfg.input_scale, cfg.input_normalization, kin,
                               cfg.condition_on_input), convs=convs)


def _model_tacs_of_batch(graphdef, params, batch, kin):
    """``(model TACs [B, H, W, F] of the predicted parameters, each sample's kinetic input, the parameters)``;
    ``kin``: the stacked kinetic inputs (leaves ``[S, ...]``), picked per sample by ``batch["subject"]``."""
    sample_kin = per_sample_input(kin, batch["subject"])
    predicted = forward(graphdef, params, batch["tac"], sample_kin)
    return jax.vmap(two_tissue_irreversible)(predicted, sample_kin), sample_kin, predicted


def batch_loss(graphdef, params, batch, kin, frames: str = "none", scale: str = "none"):
    """The loss of a batch: the self-supervised masked MSE ((kBq/ml)^2, or weighted: see
    :func:`jaxkin.nn.loss.loss_weights` with ``frames`` and ``scale``) between the measured TACs and the model TACs
    of the predicted parameters, plus, when the batch carries the voxel fit's ``target`` maps and their ``guidance``
    weights (and ``guidance_ki``, Ki's: ``lm_guidance_ki``), :func:`jaxkin.nn.loss.guidance_loss`. ``kin``: the
    stacked kinetic inputs (leaves ``[S, ...]``), picked per sample by ``batch["subject"]``."""
    model, sample_kin, predicted = _model_tacs_of_batch(graphdef, params, batch, kin)
    loss = masked_mse(batch["tac"], model, batch["mask"], loss_weights(sample_kin, batch["tac"], frames, scale))
    if "target" in batch:
        loss = loss + guidance_loss(predicted, batch["target"], batch["mask"], batch["guidance"],
                                    batch.get("guidance_ki"))
    return loss


def make_train_step(graphdef, optimizer, parallel=None, frames: str = "none", scale: str = "none"):
    """A jit-compiled pure step ``(state, batch, kin) -> (state, {"loss": scalar})`` (one Adam update on the
    gradient of the batch's loss, :func:`batch_loss` with ``frames`` and ``scale``). ``state`` (a
    :class:`TrainState`) is donated: its buffers are reused for the new state, so do not use it after the call.

    With ``parallel`` (:class:`jaxkin.distributed.DataParallel`) the batch is split over the devices of its mesh and
    the state and metrics are replicated: the same computation, data-parallel (XLA inserts the gradient all-reduce).
    """

    def step(state: TrainState, batch, kin):
        loss, grads = jax.value_and_grad(functools.partial(batch_loss, graphdef, frames=frames, scale=scale))(
            state.params, batch, kin)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state), {"loss": loss}

    if parallel is None:
        return jax.jit(step, donate_argnums=0)
    rep, rows = parallel.replicated, parallel.batch_sharding
    return jax.jit(step, donate_argnums=0, in_shardings=(rep, rows, rep), out_shardings=(rep, rep))


def make_eval_step(graphdef, parallel=None):
    """A jit-compiled ``(params, batch, kin) -> metric sums`` (see :func:`jaxkin.nn.loss.metric_sums`); ``parallel``
    as in :func:`make_train_step`."""

    def step(params, batch, kin):
        return metric_sums(batch["tac"], _model_tacs_of_batch(graphdef, params, batch, kin)[0], batch["mask"])

    if parallel is None:
        return jax.jit(step)
    rep, rows = parallel.replicated, parallel.batch_sharding
    return jax.jit(step, in_shardings=(rep, rows, rep), out_shardings=rep)


class CompiledSteps(typing.NamedTuple):
    graphdef: typing.Any
    optimizer: typing.Any
    schedule: typing.Callable
    train_step: typing.Callable
    eval_step: typing.Callable


@functools.lru_cache(maxsize=8)
def compiled_steps(model: UNetConfig, optim: OptimConfig, steps_per_epoch: int, parallel=None) -> CompiledSteps:
    """The graph, optimiser, schedule and jitted steps of a run, built once per process, so repeated runs (resume,
    tests, notebooks) reuse the compiled programs."""
    graphdef = model_graph(model)
    optimizer, schedule = make_optimizer(optim, steps_per_epoch)
    return CompiledSteps(graphdef, optimizer, schedule, make_train_step(graphdef, optimizer, parallel, optim.loss_frames,
                                                                             optim.loss_scale),
                         make_eval_step(graphdef, parallel))


def evaluate(eval_step, params, sliced: ShardedSlices, kin, batch_size: int, parallel) -> dict:
    """Dataset-level metrics over masked voxels of every shard: ``loss`` (MSE, (kBq/ml)^2), ``mae``/``mae_sd`` and
    ``cs``/``cs_sd`` (mean and SD over voxels of the per-voxel MAE (kBq/ml) and cosine similarity), ``voxels``.
    ``batch_size`` is global; ``parallel`` places the batches (:class:`jaxkin.distributed.DataParallel`)."""
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
