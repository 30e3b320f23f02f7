"""Checkpoints: parameters, optimiser state and metadata round-trip."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxkin import network as N

from _tiny_scans import TINY


def test_checkpoint_round_trip(tmp_path):
    cfg = N.config_from_dict(TINY | {"epochs": 3})
    graphdef, params = nnx.split(N.make_model(cfg))
    opt, _ = N.make_optimizer(cfg.optim, 3)
    state = opt.init(params)
    state = jax.tree.map(lambda x: x + 1 if jnp.issubdtype(x.dtype, jnp.floating) else x + 2, state)
    mgr = N.checkpoint_manager(tmp_path / "ck")
    N.save_checkpoint(mgr, 4, params, state, {"epoch": 4, "best_val": 1.5})
    fresh = nnx.split(N.make_model(dataclasses.replace(cfg, seed=1)))[1]
    p2, s2, meta = N.restore_checkpoint(N.checkpoint_manager(tmp_path / "ck"), fresh, opt.init(fresh))
    assert meta == {"epoch": 4, "best_val": 1.5}
    for x, y in zip(jax.tree.leaves((params, state)), jax.tree.leaves((p2, s2))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
