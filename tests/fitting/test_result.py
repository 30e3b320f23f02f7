"""Model comparison by AICc: the formula, and the generating model picked on noiseless ODE-reference TACs of each
of the three compartment models."""

import numpy as np
import pytest

import jaxkin
from jaxkin.fitting.result import AICC_SSE_FLOOR, aicc

from _reference import FRAMES, INPUT, ode_frame_means

MODELS = ("2tcmirr", "1tcm", "2tcm")


def test_aicc_formula():
    n, k, sse, scale = 62, 4, np.array([2.5, 0.0]), np.array([1e3, 1e3])
    ref = n * np.log(np.array([2.5, AICC_SSE_FLOOR * 1e3]) / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)
    np.testing.assert_allclose(np.asarray(aicc(sse, scale, n, k)), ref, rtol=1e-6)


def _draw(model, n, rng):
    """Parameters typical of each model inside the physiological bounds: K1, k2 0.05-1.5, k3 0.02-0.5, k4 0.01-0.1,
    vB 0-0.3."""
    k1, k2, vb = rng.uniform(0.05, 1.5, n), rng.uniform(0.05, 1.5, n), rng.uniform(0.0, 0.3, n)
    k3, k4 = rng.uniform(0.02, 0.5, n), rng.uniform(0.01, 0.1, n)
    return {"1tcm": np.stack([k1, k2, vb], -1), "2tcmirr": np.stack([k1, k2, k3, vb], -1),
            "2tcm": np.stack([k1, k2, k3, k4, vb], -1)}[model]


@pytest.mark.slow
@pytest.mark.parametrize("generating", MODELS)
def test_aicc_picks_the_generating_model_on_noiseless_tacs(generating):
    """Noiseless TACs (no added noise: the SSE floor of :func:`aicc` makes exact fits tie, and the penalty then
    prefers the smaller of two models that both fit exactly, e.g. 1TCM data fitted by 2TCM-irr with k3 = 0)."""
    rng = np.random.default_rng(MODELS.index(generating) + 30)
    params = _draw(generating, 40, rng)
    tacs = ode_frame_means(generating, params, INPUT, FRAMES)
    kin = jaxkin.prepare(INPUT, FRAMES)
    criteria = np.stack([jaxkin.fit_tacs(tacs, kin, model=m, chunk_size=256).to_numpy().aicc for m in MODELS], -1)
    picked = np.array(MODELS)[criteria.argmin(-1)]
    assert np.mean(picked == generating) >= 0.95, dict(zip(*np.unique(picked, return_counts=True)))
