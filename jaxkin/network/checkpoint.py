"""Checkpoints (orbax): a run's parameters and optimiser state with its progress.

On disk (the format of jaxkin 0.1.0, kept so older runs restore): one orbax ``StandardSave`` tree
``{"params": {keystr: array}, "opt_state": {keystr: array}, "meta": {"epoch", "best_val"}}``, where the pytrees are
flattened to dicts keyed by :func:`jax.tree_util.keystr` of each leaf's path (``opt_state`` absent in ``best``).
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxkin.io.files import one_line
from jaxkin.errors import InputError

__all__ = ["checkpoint_manager", "save_checkpoint", "restore_checkpoint"]


def _flat(tree) -> dict:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def _unflat(template, flat: dict):
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    return jax.tree_util.tree_unflatten(treedef, [flat[jax.tree_util.keystr(p)] for p, _ in leaves])


def checkpoint_manager(directory) -> ocp.CheckpointManager:
    """A manager of ``directory`` that keeps the last checkpoint only."""
    return ocp.CheckpointManager(Path(directory).absolute(), options=ocp.CheckpointManagerOptions(max_to_keep=1))


def save_checkpoint(manager, step: int, params, opt_state, meta: dict) -> None:
    """Save ``params``, ``opt_state`` (None: not saved) and ``meta`` (``epoch``, ``best_val``) at ``step`` and wait
    for the asynchronous write to finish."""
    tree = {"params": _flat(params), "meta": {k: np.asarray(v) for k, v in meta.items()}}
    if opt_state is not None:
        tree["opt_state"] = _flat(opt_state)
    manager.save(step, args=ocp.args.StandardSave(tree), force=True)
    manager.wait_until_finished()


def restore_checkpoint(manager, params_template, opt_state_template=None, step: int | None = None):
    """``(params, opt_state, meta)`` of the checkpoint at ``step`` (default: the latest), restored into the shapes,
    dtypes and shardings of the templates (``opt_state`` None without its template)."""
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
        raise InputError(f"{manager.directory}: checkpoint {step} does not fit this network "
                         f"({one_line(err)[:200]})") from None
    params = _unflat(params_template, restored["params"])
    opt_state = _unflat(opt_state_template, restored["opt_state"]) if opt_state_template is not None else None
    meta = {k: np.asarray(v).item() for k, v in restored["meta"].items()}
    return params, opt_state, meta
