"""Regional fits: equal to scipy curve_fit on the phantom's organ TACs, standard errors of Ki that match the spread of
Ki over noise realisations, Patlak's slope error against scipy's linregress."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxkin
from jaxkin import phantom
from jaxkin.fitting import baseline
from jaxkin.fitting.graphical import PlotInput
from jaxkin.fitting.regional import fit_regions
from _organ_tacs import organ_tacs

FRAMES = jaxkin.FrameSchedule.quadra()
AIF = jaxkin.feng_input(FRAMES.end[-1], delay=0.2)
ORGANS = [o for o in phantom.ORGAN_PARAMETERS if o not in phantom.BLOOD_LABELS]




@pytest.mark.slow
def test_regional_fit_equals_curve_fit_on_the_phantom_organs():
    clean = organ_tacs(ORGANS)
    rng = np.random.default_rng(0)
    tacs = clean + rng.standard_normal(clean.shape) * phantom.noise_sd(clean, FRAMES, 1.0) / np.sqrt(50)
    paper = jaxkin.get_model("2tcmirr")  # curve_fit_tacs keeps the paper's bounds: compare within the same bounds
    fit = fit_regions(ORGANS, tacs, AIF, FRAMES, lower=paper.lower, upper=paper.upper)
    params, sse, ok = baseline.curve_fit_tacs(tacs, baseline.NumpyModel(AIF, FRAMES))
    assert ok.all()
    assert np.all(fit.columns["SSE"] <= sse * (1 + 1e-6)), (fit.columns["SSE"], sse)  # no worse on every region
    ki = params[:, 0] * params[:, 2] / (params[:, 1] + params[:, 2])
    np.testing.assert_allclose(fit.columns["Ki"], ki, rtol=2e-3)
    np.testing.assert_allclose(fit.columns["K1"], params[:, 0], rtol=2e-3)
    # AIC / AICc from the SSE, F frames and P = 4 parameters
    f, p = FRAMES.n_frames, 4
    np.testing.assert_allclose(fit.columns["AIC"], f * np.log(fit.columns["SSE"] / f) + 2 * p, rtol=1e-9)
    np.testing.assert_allclose(fit.columns["AICc"] - fit.columns["AIC"], 2 * p * (p + 1) / (f - p - 1))
    assert list(fit.columns)[:3] == ["region", "K1", "K1_se"] and "Ki_se" in fit.columns


@pytest.mark.slow
def test_standard_error_of_ki_matches_its_spread_over_noise_realisations():
    organs, n = ["myocardium", "bone", "lesion", "lungs"], 250
    clean = organ_tacs(organs)
    sd = np.maximum(phantom.noise_sd(clean, FRAMES, 1.0) / 2.0, 1e-6)  # a 4-voxel region of the phantom
    rng = np.random.default_rng(1)
    tacs = np.repeat(clean, n, 0) + rng.standard_normal((len(organs) * n, FRAMES.n_frames)) * np.repeat(sd, n, 0)
    fit = fit_regions([f"{o}-{i}" for o in organs for i in range(n)], tacs, AIF, FRAMES,
                      weights=1.0 / np.repeat(sd, n, 0) ** 2)  # the noise's inverse variance
    ki = fit.columns["Ki"].reshape(len(organs), n)
    se = fit.columns["Ki_se"].reshape(len(organs), n)
    for i, organ in enumerate(organs):
        spread = ki[i].std(ddof=1)
        predicted = np.sqrt(np.mean(se[i] ** 2))
        assert predicted == pytest.approx(spread, rel=0.2), organ
    # the delta method against a finite-difference gradient of Ki with the parameters' covariance is implied by
    # the agreement above; the parameter errors themselves must be positive and finite
    assert np.all(np.isfinite(fit.columns["K1_se"])) and np.all(fit.columns["K1_se"] > 0)


@pytest.mark.slow
def test_patlak_slope_error_is_the_regression_error():
    clean = organ_tacs(["myocardium", "lesion"])
    rng = np.random.default_rng(2)
    tacs = clean * (1 + 0.02 * rng.standard_normal(clean.shape))
    fit = fit_regions(["a", "b"], tacs, AIF, FRAMES, model="patlak", t_star=20.0)
    with jax.enable_x64(True):
        plot = PlotInput.from_input(AIF, FRAMES, dtype=jnp.float64)
        x = np.asarray(plot.cp_integral_mean / plot.cp_mean)
        use = np.asarray(plot.mid) >= 20.0
    for r in range(2):
        ref = stats.linregress(x[use], tacs[r][use] / np.asarray(plot.cp_mean)[use])
        assert fit.columns["Ki"][r] == pytest.approx(ref.slope, rel=1e-9)
        assert fit.columns["Ki_se"][r] == pytest.approx(ref.stderr, rel=1e-6)
        assert fit.columns["n_frames"][r] == use.sum()


@pytest.mark.slow
def test_fixed_vb_equals_curve_fit_of_the_free_parameters():
    """vB held at 0.03 (and a range of zero width alike): the free parameters and their standard errors equal scipy's
    curve_fit of K1, k2, k3 with vB closed over (same model, same paper bounds); vB's standard error is 0 and the
    AIC counts 3 parameters."""
    from scipy.optimize import curve_fit

    organs = ["myocardium", "lesion"]
    clean = organ_tacs(organs)
    rng = np.random.default_rng(2)
    tacs = clean + rng.standard_normal(clean.shape) * phantom.noise_sd(clean, FRAMES, 1.0) / np.sqrt(50)
    fit = fit_regions(organs, tacs, AIF, FRAMES, bounds=jaxkin.kinetics.with_fixed("paper", {"vB": 0.03}))
    model = baseline.NumpyModel(AIF, FRAMES)
    paper = jaxkin.get_model("2tcmirr")
    for i in range(len(organs)):
        q, cov = curve_fit(lambda _x, k1, k2, k3: model((k1, k2, k3, 0.03)), np.arange(FRAMES.n_frames), tacs[i],
                           p0=(0.1, 0.1, 0.01), bounds=(paper.lower[:3], paper.upper[:3]), method="trf",
                           xtol=1e-14, ftol=1e-14, gtol=1e-14)
        held, _, _ = baseline.curve_fit_tac(tacs[i], model, lower=(*paper.lower[:3], 0.03),
                                            upper=(*paper.upper[:3], 0.03))  # the baseline, vB held alike
        np.testing.assert_allclose(held, (*q, 0.03), rtol=1e-3)
        for j, name in enumerate(("K1", "k2", "k3")):
            assert fit.columns[name][i] == pytest.approx(q[j], rel=1e-5), name
            assert fit.columns[f"{name}_se"][i] == pytest.approx(np.sqrt(cov[j, j]), rel=1e-3), name
    assert np.all(fit.columns["vB"] == 0.03) and np.all(fit.columns["vB_se"] == 0.0)
    assert np.all(fit.columns["n_params"] == 3) and np.all(fit.columns["flags"] == 0)
    f = FRAMES.n_frames
    np.testing.assert_allclose(fit.columns["AIC"], f * np.log(fit.columns["SSE"] / f) + 6, rtol=1e-9)
    same = fit_regions(organs, tacs, AIF, FRAMES, bounds="paper vB=0.03,0.03")
    np.testing.assert_array_equal(same.columns["Ki_se"], fit.columns["Ki_se"])
