"""Model TACs in fixed-size chunks (jaxkin.kinetics.chunked) equal the model's TACs, across padded chunks."""

import jax.numpy as jnp
import numpy as np
import pytest
from _reference import FRAMES, INPUT

import jaxkin
from jaxkin.kinetics import tacs_in_chunks


@pytest.mark.slow
def test_chunks_equal_the_model_for_any_count_and_model():
    kin = jaxkin.prepare(INPUT, FRAMES)
    rng = np.random.default_rng(2)
    for model in ("2tcmirr", "1tcm"):
        m = jaxkin.get_model(model)
        params = rng.uniform(m.lower, m.upper, (5, m.n_params)).astype(np.float32)
        out = tacs_in_chunks(params, kin, model, chunk=2)  # three chunks, the last one padded
        assert out.shape == (5, FRAMES.n_frames) and out.dtype == np.float32
        np.testing.assert_allclose(out, np.asarray(m.tac(jnp.asarray(params), kin)), rtol=1e-6, atol=1e-6)
    assert tacs_in_chunks(np.zeros((0, 4)), kin).shape == (0, FRAMES.n_frames)
