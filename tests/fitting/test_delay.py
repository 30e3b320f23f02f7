"""Input delay in the fits: the FDG model's tabulated terms (the Levenberg–Marquardt fast path) against the delayed
evaluator, the basis start, and per-voxel delay fits of noiseless ODE-reference TACs (delay, K1 and Ki recovered;
without the delay they are biased). The delayed evaluator itself: tests/kinetics/test_delayed.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxkin
from jaxkin.fitting._delay_table import fdg_terms_tabulated
from jaxkin.kinetics import prepare_delayed

from _reference import FRAMES, INPUT, ode_delayed_frame_means


@pytest.mark.slow
def test_tabulated_terms_match_the_exact_evaluator(dkin64):
    """The LM's fast path (tables over rates and delays, cubic Hermite) against the delayed evaluator's own values and
    analytic derivatives at every rate and delay (tested against the ODE and finite differences in
    tests/kinetics/test_delayed.py): values within 2e-5 of each term's maximum, derivatives (only the Jacobian's
    direction) within 1%."""
    rng = np.random.default_rng(11)
    rate = np.exp(rng.uniform(np.log(0.01), np.log(5.0), 500))
    delay = rng.uniform(-10.0, 30.0, 500) / 60.0
    with jax.enable_x64(True):
        exact = [np.asarray(a) for a in (*dkin64.frame_conv_and_derivatives(rate, delay),
                                         *dkin64.integral_mean_and_derivative(delay),
                                         *dkin64.blood_mean_and_derivative(delay))]
        table = [np.asarray(a) for a in fdg_terms_tabulated(dkin64, rate, delay)]
    for name, e, t in zip(["conv", "conv_rate", "conv_delay", "integral", "integral_delay", "blood", "blood_delay"],
                          exact, table):
        tol = 2e-5 if name in ("conv", "integral", "blood") else 1e-2
        assert np.abs(t - e).max() <= tol * np.abs(e).max(), (name, np.abs(t - e).max() / np.abs(e).max())


@pytest.mark.slow
def test_delay_range_beyond_the_tables_is_refused(dkin64):
    with pytest.raises(ValueError, match="max_delay"):
        jaxkin.fit_tacs(np.ones((2, FRAMES.n_frames)), dkin64, delay_range=(0.0, 40.0 / 60.0))


@pytest.mark.slow
@pytest.mark.parametrize("model,delayed", [("2tcmirr", True), ("1tcm", True), ("2tcmirr", False), ("2tcm", False)])
def test_shared_weight_start_equals_the_per_voxel_solver(model, delayed, dkin64):
    """The shared-weight basis start (shared inverses, candidates scored from the projections XᵀWy) picks the same
    grid point and coefficients as the per-voxel path (Cholesky solves per voxel and grid point), float64."""
    from jaxkin.fitting.basis import basis_start
    from jaxkin.fitting.result import FitSettings

    rng = np.random.default_rng(11)
    n = 48
    m = jaxkin.get_model(model)
    lo, hi = (np.array(b) for b in m.bounds("physiological"))
    params = rng.uniform(lo, 0.4 * hi, (n, lo.size))
    with jax.enable_x64(True):
        if delayed:
            kin = dkin64
            params = np.concatenate([params, rng.uniform(-8.0, 25.0, (n, 1)) / 60.0], -1)
            clean = np.asarray(m.tac(jnp.asarray(params), kin))
            lo, hi = np.append(lo, -10.0 / 60.0), np.append(hi, 0.5)
        else:
            kin = jaxkin.prepare(INPUT, FRAMES, dtype=jnp.float64)
            clean = np.asarray(m.tac(jnp.asarray(params), kin))
        tacs = jnp.asarray(clean + rng.normal(scale=0.02, size=clean.shape) * np.abs(clean).max(-1, keepdims=True))
        settings = FitSettings(model=model, lower=tuple(lo), upper=tuple(hi), grid_size=12, delay=delayed,
                               delay_step=6.0 / 60.0)
        w = jnp.asarray(rng.uniform(0.5, 2.0, FRAMES.n_frames))
        start = jax.jit(basis_start, static_argnames="settings")
        shared = np.asarray(start(tacs, w, kin, settings))
        per_voxel = np.asarray(start(tacs, jnp.broadcast_to(w, tacs.shape), kin, settings))
    assert np.all(np.isfinite(shared)) and np.all((shared >= lo) & (shared <= hi))
    np.testing.assert_allclose(shared, per_voxel, rtol=1e-7, atol=1e-9)


@pytest.fixture(scope="module")
def delayed_case():
    """24 noiseless 2TCM-irr TACs, each with its own input delay in -5 ... +20 s (ODE reference, one solve per TAC)."""
    rng = np.random.default_rng(5)
    n = 24
    params = np.stack([rng.uniform(0.1, 1.2, n), rng.uniform(0.1, 1.5, n), rng.uniform(0.02, 0.3, n),
                       rng.uniform(0.0, 0.2, n)], -1)
    delays = rng.uniform(-5.0, 20.0, n) / 60.0
    return params, delays, ode_delayed_frame_means("2tcmirr", params, delays)


@pytest.mark.slow
def test_voxel_delay_recovers_delay_k1_and_ki(delayed_case):
    params, delays, tacs = delayed_case
    res = jaxkin.fit_tacs(tacs, prepare_delayed(INPUT, FRAMES), chunk_size=256).to_numpy()  # float32
    ki = params[:, 0] * params[:, 2] / (params[:, 1] + params[:, 2])
    assert res.params.shape == (24, 5) and res.stderr.shape == (24, 5)
    assert np.abs(res.params[:, 4] - delays).max() * 60 < 0.5
    assert np.abs(res.params[:, 0] / params[:, 0] - 1).max() < 0.01
    assert np.abs(res.macro / ki - 1).max() < 0.01
    assert np.all(np.isfinite(res.stderr)) and np.all(res.stderr[:, 4] * 60 < 0.5)  # noiseless: tiny SE
    # without the delay the same TACs give biased K1 and Ki (the bias the option removes)
    plain = jaxkin.fit_tacs(tacs, jaxkin.prepare(INPUT, FRAMES), chunk_size=256).to_numpy()
    late = delays * 60 > 10
    k1_err = np.abs(plain.params[:, 0] / params[:, 0] - 1)
    ki_err = np.abs(plain.macro / ki - 1)
    assert np.median(k1_err[late]) > 0.03 and np.median(ki_err[late]) > 0.02, (np.median(k1_err[late]),
                                                                               np.median(ki_err[late]))
    assert plain.sse.mean() > 100 * res.sse.mean()


@pytest.mark.slow
def test_voxel_delay_with_a_forward_mode_model():
    """1TCM with a fitted delay (forward-mode Jacobian through the evaluator's analytic JVP)."""
    rng = np.random.default_rng(8)
    params = np.stack([rng.uniform(0.1, 1.0, 8), rng.uniform(0.1, 1.0, 8), rng.uniform(0.0, 0.2, 8)], -1)
    delays = rng.uniform(-5.0, 20.0, 8) / 60.0
    tacs = ode_delayed_frame_means("1tcm", params, delays)
    res = jaxkin.fit_tacs(tacs, prepare_delayed(INPUT, FRAMES), model="1tcm", chunk_size=256).to_numpy()
    assert np.abs(res.params[:, 3] - delays).max() * 60 < 0.5
    assert np.abs(res.params[:, 0] / params[:, 0] - 1).max() < 0.01


@pytest.mark.slow
def test_phantom_with_organ_delays_is_recovered_with_voxel_delays_and_physiological_bounds():
    """Noiseless, unblurred phantom (small preset, subject 0) whose organs see the input at different times
    (lungs and heart early, lower body and bladder late): with --bounds physiological --delay voxel the Ki of every
    organ with >= 50 voxels has a mean bias <= 2%; without the delay some organs are biased by more."""
    from jaxkin.phantom.anatomy import LABELS
    from jaxkin.phantom.simulate import simulate_subject

    tacs, truth, labels, delays, kins = [], [], [], [], []
    for index in (0,):
        s = simulate_subject(index, preset="small", noise_scale=0.0, fwhm_mm=0.0, organ_delays=True)
        body = s.labels > 0
        tacs.append(s.pet[body])
        truth.append(s.truth[body])
        labels.append(s.labels[body] + 100 * index)  # organs per subject
        delays.append(s.delay_map()[body])
        kins.append((s.input_function, s.frames))
    assert len({d for subject in delays for d in np.unique(subject)}) >= 6
    ki_fit, ki_plain = [], []
    for x, (inp, frames) in zip(tacs, kins):
        ki_fit.append(jaxkin.fit_tacs(x, prepare_delayed(inp, frames), bounds="physiological",
                                      chunk_size=8192).to_numpy().macro)
        ki_plain.append(jaxkin.fit_tacs(x, jaxkin.prepare(inp, frames), chunk_size=8192).to_numpy().macro)
    truth, labels = np.concatenate(truth), np.concatenate(labels)
    ki_fit, ki_plain = np.concatenate(ki_fit), np.concatenate(ki_plain)
    ki = truth[:, 0] * truth[:, 2] / np.maximum(truth[:, 1] + truth[:, 2], 1e-12)
    checked, plain_bias = [], []
    for organ in np.unique(labels):
        sel = labels == organ
        if sel.sum() < 50 or ki[sel].mean() == 0:  # blood pool and aorta: pure blood, Ki = 0
            continue
        checked.append(LABELS[organ % 100])
        assert abs(ki_fit[sel].mean() / ki[sel].mean() - 1) <= 0.02, (LABELS[organ % 100], ki_fit[sel].mean(),
                                                                       ki[sel].mean())
        plain_bias.append(abs(ki_plain[sel].mean() / ki[sel].mean() - 1))
    assert {"liver", "lungs", "myocardium", "spleen", "kidneys", "bladder", "body"} <= set(checked)
    assert max(plain_bias) > 0.05  # e.g. the liver's Ki without the delay
