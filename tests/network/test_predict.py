"""Prediction of a network whose input includes the input function (62 Quadra frames, 8 x 8 slices)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

import jaxkin
from jaxkin import network as N
from jaxkin.errors import InputError

FRAMES = jaxkin.FrameSchedule.quadra()



def test_a_network_fed_the_input_function_refuses_a_volume_without_it(kins):
    cfg = N.config_from_dict({"depth": 2, "root_features": 2, "time_steps": 64, "condition_on_input": True,
                              "input_normalization": "input", "predict_batch_size": 2})
    predictor = N.Predictor(N.model_graph(cfg.model), nnx.split(N.make_model(cfg))[1], cfg, FRAMES.n_frames)
    volume = np.random.default_rng(3).gamma(2.0, 5.0, (8, 8, 3, FRAMES.n_frames)).astype(np.float32)
    with pytest.raises(InputError, match="input function"):
        predictor.predict_volume(volume)
    kin = jax.tree.map(lambda leaf: leaf[0], kins[0])
    maps, metrics = predictor.predict_volume(volume, kin=kin)
    assert maps.shape == (8, 8, 3, 4) and np.all(np.isfinite(maps)) and metrics["voxels"] > 0
