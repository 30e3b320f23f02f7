"""Test-time adaptation: fine-tune a trained network on the one scan it is about to predict.

The self-supervised loss needs no labels, only the scan and its input function, so the network can take a few
optimiser steps on the scan itself before it predicts it (``jaxkin predict`` offers it for every scan)::

    adapted = adapt(predictor, volume, kin, steps=20)   # volume [X, Y, Z, F] kBq/ml, kin: the scan's KineticInput
    params, tac_metrics = adapted.predictor.predict_volume(volume, kin=kin)
    adapted.loss_before, adapted.loss_after             # the scan's loss (the run's)

The steps are the run's own train step (:func:`jaxkin.network.steps.make_train_step`, the run's loss
:func:`jaxkin.network.steps.batch_loss` with its weights) with a fresh Adam state at a constant learning rate.
Batches are axial slices of the scan (those with at least one voxel in the loss mask,
:func:`jaxkin.network.data.voxel_mask` with the run's ``mask_threshold``), each zero-padded in-plane to a multiple of ``2**depth`` as in prediction, in a seeded order
(one permutation per pass over the slices, the last batch of a pass padded with empty-mask copies), always the same
batch shape, so one compiled program serves every step and every scan of that shape. The trained predictor is not
changed (its parameters are copied): each scan adapts from the trained weights.
"""

from __future__ import annotations

import functools
import math
import typing

import jax
import numpy as np
import optax

from jaxkin.network.data import SliceData, voxel_mask
from jaxkin.network.predict import Predictor
from jaxkin.network.steps import TrainState, batch_loss, make_train_step

__all__ = ["Adapted", "adapt", "final_learning_rate", "scan_slices", "scan_loss"]


class Adapted(typing.NamedTuple):
    """The result of :func:`adapt`: the adapted ``predictor``, the scan's loss (the run's: masked MSE, (kBq/ml)^2, or weighted) before and
    after, and what was done (``steps``, ``learning_rate`` (constant), ``seed``, ``batch_size`` slices per step,
    ``slices`` of the scan used)."""

    predictor: Predictor
    loss_before: float
    loss_after: float
    steps: int
    learning_rate: float
    seed: int
    batch_size: int
    slices: int


def scan_slices(predictor: Predictor, volume, duration) -> SliceData:
    """The axial slices of ``volume [X, Y, Z, F]`` (kBq/ml) that hold at least one voxel of the loss mask (time-
    averaged activity above the run's ``mask_threshold``; ``duration [F]`` in min), as :class:`SliceData`
    ``tac [N, H, W, F]`` with ``H``, ``W`` zero-padded (centred) to multiples of ``2**depth``; ``subject`` all 0."""
    volume = np.asarray(volume)
    predictor.check_frames(volume.shape[-1], "volume")
    m = predictor.cfg.model.size_multiple
    px, py = -volume.shape[0] % m, -volume.shape[1] % m
    tac = np.moveaxis(np.nan_to_num(volume.astype(np.float32)), 2, 0)  # [Z, X, Y, F]
    tac = np.pad(tac, ((0, 0), (px // 2, px - px // 2), (py // 2, py - py // 2), (0, 0)))
    mask = voxel_mask(tac, np.asarray(duration, np.float64), predictor.cfg.data.mask_threshold)
    z = np.nonzero(mask.any(axis=(1, 2)))[0]
    return SliceData(np.ascontiguousarray(tac[z]), mask[z], np.zeros(len(z), np.int32), z)


def _batch_rows(predictor: Predictor, batch_size: int | None) -> int:
    rows = batch_size or predictor.cfg.optim.batch_size
    return -(-rows // predictor.parallel.size) * predictor.parallel.size


@functools.lru_cache(maxsize=8)
def _compiled(graphdef, parallel, frames: str = "none", scale: str = "none"):
    """``(optimizer, train step, loss)`` for adaptation, built once per network and loss weighting (the run's
    ``loss_frames`` and ``loss_scale``): Adam whose learning rate is a value in its state
    (``optax.inject_hyperparams``), so any learning rate reuses the compiled step."""
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=0.0)
    rep, rows = parallel.replicated, parallel.batch_sharding
    loss = jax.jit(functools.partial(batch_loss, graphdef, frames=frames, scale=scale), in_shardings=(rep, rows, rep),
                   out_shardings=rep)
    return optimizer, make_train_step(graphdef, optimizer, parallel, frames, scale), loss


def _compiled_for(predictor: Predictor):
    optim = predictor.cfg.optim
    return _compiled(predictor.graphdef, predictor.parallel, optim.loss_frames, optim.loss_scale)


def _one_scan(kin):
    """The scan's kinetic input as a stack of one (what the loss indexes with ``subject``)."""
    return jax.tree.map(lambda leaf: np.asarray(leaf)[None], kin)


def scan_loss(predictor: Predictor, slices: SliceData, kin, batch_size: int | None = None, params=None) -> float:
    """The run's loss (masked MSE, (kBq/ml)^2, or weighted as the run's) over every masked voxel of ``slices`` (from :func:`scan_slices`)
    with ``params`` (default the predictor's): the batches' losses weighted by their masked voxels."""
    _, _, loss = _compiled_for(predictor)
    rows = _batch_rows(predictor, batch_size)
    kin = predictor.parallel.replicate(_one_scan(kin))
    params = predictor.params if params is None else params
    total = weight = 0.0
    for start in range(0, len(slices), rows):
        index = np.full(rows, -1, np.int64)
        index[: min(rows, len(slices) - start)] = np.arange(start, min(start + rows, len(slices)))
        batch = slices.batch(index)
        n = float(batch["mask"].sum())
        if n:
            total += n * float(loss(params, predictor.parallel.batch(batch), kin))
            weight += n
    return total / weight if weight else float("nan")


def final_learning_rate(optim) -> float:
    """The learning rate of a run's last epoch: ``learning_rate / 2**((epochs - 1) // lr_halving_epochs)``."""
    return optim.learning_rate * 0.5 ** ((optim.epochs - 1) // optim.lr_halving_epochs)


def adapt(predictor: Predictor, volume, kin, *, steps: int, learning_rate: float | None = None, seed: int = 0,
          batch_size: int | None = None) -> Adapted:
    """Fine-tune ``predictor`` on one scan: ``steps`` Adam steps at the constant ``learning_rate`` (default the
    learning rate the run ended with, :func:`final_learning_rate`: a fresh Adam at the run's initial rate moved a
    trained network away from its optimum) on batches of ``batch_size`` (default the run's ``batch_size``, rounded up to a multiple
    of the devices) axial slices of ``volume [X, Y, Z, F]`` (kBq/ml) in the order seeded by ``seed``; ``kin``: the
    scan's :class:`jaxkin.kinetics.KineticInput`. Returns :class:`Adapted` (the predictor given is unchanged). One process
    (the whole volume in memory); ValueError for a scan without masked voxels or a bad number."""
    steps = int(steps)
    lr = float(final_learning_rate(predictor.cfg.optim) if learning_rate is None else learning_rate)
    if steps < 0 or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"adapt: steps must be >= 0 and the learning rate positive, got {steps} and {lr}")
    slices = scan_slices(predictor, volume, kin.frame_duration)
    if not len(slices):
        raise ValueError(f"adapt: no voxel above the mask threshold ({predictor.cfg.data.mask_threshold:g} kBq/ml)")
    parallel = predictor.parallel
    optimizer, train_step, _ = _compiled_for(predictor)
    rows = _batch_rows(predictor, batch_size)
    before = scan_loss(predictor, slices, kin, rows)
    params = parallel.replicate(jax.device_get(predictor.params))  # a copy: the train step donates its state
    opt_state = optimizer.init(params)
    opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams,
                                                "learning_rate": np.asarray(lr, np.float32)})
    state = TrainState(params, parallel.replicate(opt_state))
    kin_stack = parallel.replicate(_one_scan(kin))
    rng = np.random.default_rng(seed)
    per_pass = -(-len(slices) // rows)
    order = np.zeros((0, rows), np.int64)
    while len(order) < steps:  # passes over the slices, each in its own seeded order, the last batch padded
        column = np.full(per_pass * rows, -1, np.int64)
        column[: len(slices)] = rng.permutation(len(slices))
        order = np.concatenate([order, column.reshape(per_pass, rows)])
    for index in order[:steps]:
        state, _ = train_step(state, parallel.batch(slices.batch(index)), kin_stack)
    adapted = predictor.replace(params=state.params)
    after = scan_loss(adapted, slices, kin, rows)
    return Adapted(adapted, before, after, steps, lr, int(seed), rows, len(slices))
