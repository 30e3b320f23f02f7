"""Regional fits: equal to scipy curve_fit on the phantom's organ TACs, standard errors of Ki that match the spread of
Ki over noise realisations, Patlak's slope error against scipy's linregress, and ``jaxkin fit --tacs`` /
``--uncertainty`` end to end."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxkin
from jaxkin import kinetics
from jaxkin.cli import main
from jaxkin.io.pet import load_pet, write_pet
from jaxkin.io.maps import read_volume
from jaxkin.io.blood import write_blood
from jaxkin import phantom
from jaxkin.io.tables import RegionalTacs, read_tacs, write_tacs
from jaxkin.fitting import baseline
from jaxkin.fitting.graphical import PlotInput
from jaxkin.fitting.regional import fit_regions

FRAMES = jaxkin.FrameSchedule.quadra()
AIF = jaxkin.feng_input(FRAMES.end[-1], delay=0.2)
ORGANS = [o for o in phantom.ORGAN_PARAMETERS if o not in phantom.BLOOD_LABELS]


def _clean(organs):
    params = np.array([phantom.ORGAN_PARAMETERS[o] for o in organs])
    with jax.enable_x64(True):
        kin = jaxkin.prepare(AIF, FRAMES, dtype=jnp.float64)
        return np.asarray(kinetics.two_tissue_irreversible(jnp.asarray(params), kin))


def test_regional_fit_equals_curve_fit_on_the_phantom_organs():
    clean = _clean(ORGANS)
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


def test_standard_error_of_ki_matches_its_spread_over_noise_realisations():
    organs, n = ["myocardium", "bone", "lesion", "lungs"], 250
    clean = _clean(organs)
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


def test_patlak_slope_error_is_the_regression_error():
    clean = _clean(["myocardium", "lesion"])
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


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_tacs_command(tmp_path, capsys):
    organs = ["myocardium", "liver", "lesion"]
    clean = _clean(organs)
    rng = np.random.default_rng(3)
    sd = phantom.noise_sd(clean, FRAMES, 1.0) / 5.0
    values = clean + rng.standard_normal(clean.shape) * sd
    table = write_tacs(tmp_path / "sub-01_tacs.tsv", RegionalTacs(names=tuple(organs), frames=FRAMES, values=values,
                                                                   sd=sd * 5.0, voxels=np.full(3, 25.0)))
    blood = write_blood(tmp_path / "sub-01_recording-AIF_blood.tsv", whole_blood=AIF, units="kBq/mL")
    for weights in ("none", "sd"):
        out = tmp_path / f"fits_{weights}.tsv"
        code, stdout, err = _run(["fit", "--tacs", str(table), "--input-function", str(blood), "--out", str(out),
                                  "--weights", weights], capsys)
        assert code == 0, err
        header, *rows = [r.split("\t") for r in out.read_text().splitlines()]
        got = {row[0]: dict(zip(header, row)) for row in rows}
        expected = fit_regions(organs, read_tacs(table).values, AIF, FRAMES,
                               weights="sd" if weights == "sd" else "none", sd=read_tacs(table).sd)
        for i, organ in enumerate(organs):
            assert float(got[organ]["Ki"]) == pytest.approx(expected.columns["Ki"][i], rel=1e-6)
            assert float(got[organ]["Ki_se"]) == pytest.approx(expected.columns["Ki_se"][i], rel=1e-6)
            assert got[organ]["converged"] in ("true", "false")
        sidecar = json.loads(out.with_suffix(".json").read_text())
        assert sidecar["Ki"]["Units"] == "mL/cm3/min" and sidecar["Weights"] == weights
        assert "delta method" in sidecar["StandardErrors"]
    truth = phantom.ORGAN_PARAMETERS["myocardium"]
    assert float(got["myocardium"]["Ki"]) == pytest.approx(truth[0] * truth[2] / (truth[1] + truth[2]), rel=0.05)
    code, stdout, err = _run(["fit", "--tacs", str(table), "--input-function", str(blood), "--out",
                              str(tmp_path / "patlak.tsv"), "--model", "patlak"], capsys)
    assert code == 0, err
    assert (tmp_path / "patlak.tsv").read_text().splitlines()[0].split("\t")[:3] == ["region", "Ki", "Ki_se"]


def test_uncertainty_maps(tmp_path, capsys):
    """--uncertainty writes meas-<param>SE maps (and R2, flags) equal to fit_tacs' standard errors per voxel."""
    clean = _clean(["myocardium", "liver", "lesion", "bone"])
    rng = np.random.default_rng(4)
    data = np.repeat(clean, 6, 0) * (1 + 0.05 * rng.standard_normal((24, FRAMES.n_frames)))
    data = data.reshape(4, 3, 2, FRAMES.n_frames).astype(np.float32)
    pet = write_pet(tmp_path / "sub-01_pet.nii.gz", data, FRAMES, np.diag([4.0, 4, 4, 1]), units="kBq/mL",
                         sidecar={"InjectionStart": 0, "ImageDecayCorrectionTime": 0})
    blood = write_blood(tmp_path / "sub-01_recording-AIF_blood.tsv", whole_blood=AIF, units="kBq/mL")
    mask = tmp_path / "mask.nii.gz"
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ones(data.shape[:3], np.uint8), np.diag([4.0, 4, 4, 1])), str(mask))
    out = tmp_path / "maps"
    code, stdout, err = _run(["fit", "--pet", str(pet), "--input-function", str(blood), "--out", str(out),
                              "--mask", str(mask), "--uncertainty", "--no-progress", "--chunk-size", "256"], capsys)
    assert code == 0, err
    names = sorted(p.name.split("_meas-")[1].split("_")[0] for p in out.glob("*_mimap.nii.gz"))
    assert names == sorted(["K1", "k2", "k3", "vB", "Ki", "SSE", "K1SE", "k2SE", "k3SE", "vBSE", "KiSE", "R2",
                            "flags"])
    image = load_pet(pet)
    res = jaxkin.fit_tacs(data.reshape(-1, FRAMES.n_frames), jaxkin.prepare(AIF, FRAMES))
    ki_se = read_volume(out / "sub-01_model-2tcmirr_meas-KiSE_mimap.nii.gz", image).reshape(-1)
    k1_se = read_volume(out / "sub-01_model-2tcmirr_meas-K1SE_mimap.nii.gz", image).reshape(-1)
    np.testing.assert_allclose(ki_se, np.asarray(res.macro_stderr), rtol=1e-3)
    np.testing.assert_allclose(k1_se, np.asarray(res.stderr[:, 0]), rtol=1e-3)
    sidecar = json.loads((out / "sub-01_model-2tcmirr_meas-KiSE_mimap.json").read_text())
    assert sidecar["Units"] == "mL/cm3/min" and sidecar["Description"] == "standard error of Ki (delta method)"


def test_regional_model_comparison(tmp_path, capsys):
    """--tacs with --model 2tcmirr,2tcm,1tcm: per region the AICc of each model (as each model's own fit gives it),
    Akaike weights summing to 1, and the generating model preferred on noiseless TACs simulated from each model (ODE
    reference; with noise AICc may rightly prefer another model: a 2TCM-irr fit with k3 ~ 0 of one realisation of
    1TCM data fitted its noise better than the penalty)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from _reference import ode_frame_means

    models = ("2tcmirr", "2tcm", "1tcm")
    truth = {"1tcm": [[0.6, 0.4, 0.05], [0.2, 0.8, 0.1]], "2tcmirr": [[0.6, 0.9, 0.1, 0.05], [0.3, 0.5, 0.05, 0.1]],
             "2tcm": [[0.4, 0.5, 0.3, 0.08, 0.04], [0.8, 1.0, 0.2, 0.05, 0.02]]}
    names, values = [], []
    for m in models:
        for i, clean in enumerate(ode_frame_means(m, np.array(truth[m]), AIF, FRAMES)):
            names.append(f"{m}-{i}")
            values.append(clean)
    table = write_tacs(tmp_path / "tacs.tsv", RegionalTacs(names=tuple(names), frames=FRAMES, values=np.array(values)))
    blood = write_blood(tmp_path / "sub-01_recording-AIF_blood.tsv", whole_blood=AIF, units="kBq/mL")
    out = tmp_path / "fits.tsv"
    code, stdout, err = _run(["fit", "--tacs", str(table), "--input-function", str(blood), "--out", str(out),
                              "--model", ",".join(models)], capsys)
    assert code == 0, err
    assert "preferred by AICc" in stdout
    header, *rows = [r.split("\t") for r in out.read_text().splitlines()]
    got = {row[0]: dict(zip(header, row)) for row in rows}
    for name in names:
        assert got[name]["preferred"] == name.split("-")[0], got[name]
        weights = [float(got[name][f"weight_{m}"]) for m in models]
        assert sum(weights) == pytest.approx(1.0, abs=1e-6) and max(weights) == float(
            got[name][f"weight_{got[name]['preferred']}"])
    for m in models:  # each model's full table, and its AICc is the comparison's
        own = {r[0]: r for r in [line.split("\t") for line in (tmp_path / f"fits_model-{m}.tsv").read_text()
                                 .splitlines()]}
        col = own["region"].index("AICc")
        for name in names:
            assert float(own[name][col]) == pytest.approx(float(got[name][f"AICc_{m}"]), rel=1e-6)
    assert json.loads(out.with_suffix(".json").read_text())["ModelName"] == "comparison of " + ", ".join(models)
    code, _, err = _run(["fit", "--tacs", str(table), "--input-function", str(blood), "--out", str(out),
                         "--model", "2tcmirr,patlak"], capsys)
    assert code == 2 and "only compartment models" in err
