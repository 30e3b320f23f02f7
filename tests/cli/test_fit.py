"""``jaxkin fit`` on a tiny BIDS dataset written in the test: maps, sidecars, masks and bad input; regional TACs
(``--tacs``) and ``--uncertainty`` end to end."""

import contextlib
import json

import jax.numpy as jnp
import nibabel as nib
import numpy as np
import pytest

import jaxkin
from jaxkin import kinetics
from jaxkin import cli
from jaxkin.io.pet import load_pet, write_pet
from jaxkin.io.maps import map_path, read_volume
from jaxkin.io.blood import write_blood
from jaxkin import phantom
from jaxkin.io.tables import RegionalTacs, read_tacs, write_tacs
from jaxkin.fitting.regional import fit_regions

from _reference import FRAMES, INPUT
from _organ_tacs import organ_tacs

#: The input of the regional and uncertainty tests: a Feng input 0.2 min late.
AIF = jaxkin.feng_input(FRAMES.end[-1], delay=0.2)

SHAPE = (5, 4, 3)
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Noiseless 2TC-irr TACs (Bq/mL in the file) of known parameters; one corner voxel empty."""
    root = tmp_path_factory.mktemp("bids")
    rng = np.random.default_rng(3)
    params = np.stack([rng.uniform(0.2, 1.5, SHAPE), rng.uniform(0.2, 1.5, SHAPE), rng.uniform(0.02, 0.5, SHAPE),
                       rng.uniform(0.0, 0.2, SHAPE)], -1).astype(np.float32)
    kin = jaxkin.prepare(INPUT, FRAMES)
    tacs = np.array(kinetics.two_tissue_irreversible(jnp.asarray(params), kin))
    tacs[0, 0, 0] = 0.0
    pet = root / "sub-01_pet.nii.gz"
    write_pet(pet, tacs * 1000.0, FRAMES, AFFINE, units="Bq/mL")
    aif = root / "sub-01_blood.tsv"
    write_blood(aif, whole_blood=INPUT, units="kBq/mL")
    return root, pet, aif, params


def _run(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_fit_writes_the_maps(dataset, tmp_path, capsys):
    root, pet, aif, params = dataset
    out = tmp_path / "maps"
    code, stdout, err = _run(["fit", "--pet", str(pet), "--input-function", str(aif), "--out", str(out),
                              "--no-progress", "--chunk-size", "64", "--min-signal", "0.001"], capsys)
    assert code == 0, err
    for name in ("K1", "k2", "k3", "vB", "Ki", "SSE"):
        path = map_path(out, "sub-01", "2tcmirr", name)
        assert path.is_file() and path.with_name(path.name.replace(".nii.gz", ".json")).is_file()
    ki = np.asarray(nib.load(map_path(out, "sub-01", "2tcmirr", "Ki")).dataobj)
    true_ki = params[..., 0] * params[..., 2] / (params[..., 1] + params[..., 2])
    inside = np.ones(SHAPE, bool)
    inside[0, 0, 0] = False
    assert ki[0, 0, 0] == 0.0  # no signal: outside the automatic mask
    np.testing.assert_allclose(ki[inside], true_ki[inside], rtol=2e-3)
    sidecar = json.loads((out / "sub-01_model-2tcmirr_meas-Ki_mimap.json").read_text())
    assert sidecar["ModelName"] == "2tcmirr" and sidecar["Units"] == "mL/cm3/min"
    assert sidecar["Bounds"] == {"Preset": "physiological", "K1": [0.001, 3.0], "k2": [0.001, 6.0], "k3": [0.0, 1.0],
                                 "vB": [0.0, 1.0]}
    assert "fitted 59 voxels" in stdout


@pytest.mark.slow
def test_model_comparison_writes_aicc_and_the_preferred_model(dataset, tmp_path, capsys):
    root, pet, aif, params = dataset
    out = tmp_path / "cmp"
    code, stdout, err = _run(["fit", "--pet", str(pet), "--input-function", str(aif), "--out", str(out),
                              "--model", "2tcmirr,1tcm", "--no-progress", "--chunk-size", "64", "--min-signal",
                              "0.001"], capsys)
    assert code == 0, err
    for model in ("2tcmirr", "1tcm"):
        for name in jaxkin.get_model(model).map_names + ("SSE", "AICc"):
            assert map_path(out, "sub-01", model, name).is_file(), (model, name)
    preferred = np.asarray(nib.load(map_path(out, "sub-01", "comparison", "preferred")).dataobj)
    inside = np.ones(SHAPE, bool)
    inside[0, 0, 0] = False
    assert preferred[0, 0, 0] == 0 and np.all(preferred[inside] == 1)  # the data are 2TCM-irr TACs
    sidecar = json.loads((out / "sub-01_model-comparison_meas-preferred_mimap.json").read_text())
    assert sidecar["Levels"] == {"0": "not fitted (outside the mask)", "1": "2tcmirr", "2": "1tcm"}
    assert "AICc = n ln(SSE'/n)" in sidecar["AICcFormula"]
    assert "2tcmirr 100.0%" in stdout
    code, _, err = _run(["fit", "--pet", str(pet), "--input-function", str(aif), "--out", str(tmp_path / "x"),
                         "--model", "2tcmirr,patlak"], capsys)
    assert code == 2 and "--model" in err


@pytest.mark.slow
def test_fit_with_a_global_and_a_voxel_delay(tmp_path, capsys):
    """Every voxel sees the input 8 s late: --delay global finds 8 s from the mean TAC of a homogeneous region (the
    first 4 voxels share their parameters), and within 1 s from the mean TAC of all voxels (a mixture of kinetics is
    not a model TAC); --delay voxel maps 8 s; Ki is recovered."""
    from jaxkin.kinetics import tacs_in_chunks

    rng = np.random.default_rng(6)
    params = np.stack([rng.uniform(0.2, 1.0, 12), rng.uniform(0.2, 1.0, 12), rng.uniform(0.02, 0.3, 12),
                       rng.uniform(0.02, 0.1, 12)], -1)
    params[1:4] = params[0]
    region = np.zeros((3, 2, 2), np.uint8)
    region.reshape(-1)[:4] = 1
    region_path = tmp_path / "region.nii.gz"
    nib.save(nib.Nifti1Image(region, AFFINE), str(region_path))
    late = INPUT.held_to(FRAMES.end[-1]).delayed(8.0 / 60.0)
    tacs = tacs_in_chunks(params, jaxkin.prepare(late, FRAMES)).reshape(3, 2, 2, -1)
    pet = write_pet(tmp_path / "sub-02_pet.nii.gz", tacs, FRAMES, AFFINE, units="kBq/mL")
    aif = tmp_path / "sub-02_blood.tsv"
    write_blood(aif, whole_blood=INPUT, units="kBq/mL")
    true_ki = params[:, 0] * params[:, 2] / (params[:, 1] + params[:, 2])
    common = ["fit", "--pet", str(pet), "--input-function", str(aif), "--no-progress", "--min-signal", "0.001"]
    code, stdout, err = _run(common + ["--out", str(tmp_path / "all"), "--delay", "global"], capsys)
    assert code == 0, err
    whole = json.loads((tmp_path / "all" / "sub-02_model-2tcmirr_meas-Ki_mimap.json").read_text())["InputDelay"]
    assert abs(whole["DelaySeconds"] - 8.0) < 1.0 and "fit mask (12 voxels)" in whole["EstimatedFrom"]
    code, stdout, err = _run(common + ["--out", str(tmp_path / "g"), "--delay", "global", "--delay-mask",
                                       str(region_path)], capsys)
    assert code == 0, err
    assert "global input delay 8.0" in stdout
    sidecar = json.loads((tmp_path / "g" / "sub-02_model-2tcmirr_meas-Ki_mimap.json").read_text())
    assert sidecar["InputDelay"]["Mode"] == "global" and abs(sidecar["InputDelay"]["DelaySeconds"] - 8.0) < 0.1
    ki = np.asarray(nib.load(map_path(tmp_path / "g", "sub-02", "2tcmirr", "Ki")).dataobj).reshape(-1)
    np.testing.assert_allclose(ki[:4], true_ki[:4], rtol=5e-3)
    code, _, err = _run(common + ["--out", str(tmp_path / "v"), "--delay", "voxel", "--delay-range", "-5", "20"],
                        capsys)
    assert code == 0, err
    delay = np.asarray(nib.load(map_path(tmp_path / "v", "sub-02", "2tcmirr", "delay")).dataobj).reshape(-1)
    np.testing.assert_allclose(delay * 60, 8.0, atol=0.5)
    ki = np.asarray(nib.load(map_path(tmp_path / "v", "sub-02", "2tcmirr", "Ki")).dataobj).reshape(-1)
    np.testing.assert_allclose(ki, true_ki, rtol=1e-2)
    sidecar = json.loads((tmp_path / "v" / "sub-02_model-2tcmirr_meas-delay_mimap.json").read_text())
    assert sidecar["Units"] == "min" and sidecar["InputDelay"]["BoundsSeconds"] == [-5.0, 20.0]
    for bad in (["--delay", "voxel", "--method", "curve_fit"], ["--delay-range", "30", "-10"],
                ["--delay", "global", "--model", "patlak"], ["--delay-mask", str(pet)]):
        code, _, err = _run(common + ["--out", str(tmp_path / "bad")] + bad, capsys)
        assert code == 2 and "--delay" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_fit_with_mask_patlak_and_curve_fit(dataset, tmp_path, capsys):
    root, pet, aif, params = dataset
    mask = np.zeros(SHAPE, np.uint8)
    mask[1, 1, :2] = 1
    mask_path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(mask, AFFINE), str(mask_path))
    out = tmp_path / "cf"
    code, _, err = _run(["fit", "--pet", str(pet), "--input-function", str(aif), "--out", str(out), "--mask",
                         str(mask_path), "--method", "curve_fit", "--no-progress"], capsys)
    assert code == 0, err
    ki = np.asarray(nib.load(map_path(out, "sub-01", "2tcmirr", "Ki")).dataobj)
    true_ki = params[..., 0] * params[..., 2] / (params[..., 1] + params[..., 2])
    assert np.count_nonzero(ki) == 2
    np.testing.assert_allclose(ki[1, 1, :2], true_ki[1, 1, :2], rtol=1e-2)
    out = tmp_path / "patlak"
    code, _, err = _run(["fit", "--pet", str(pet), "--input-function", str(aif), "--out", str(out), "--model",
                         "patlak", "--no-progress"], capsys)
    assert code == 0, err
    assert map_path(out, "sub-01", "patlak", "Ki").is_file()
    assert map_path(out, "sub-01", "patlak", "intercept").is_file()


@pytest.mark.slow
def test_bad_input_is_one_line_exit_2_and_writes_nothing(dataset, tmp_path, capsys):
    root, pet, aif, _ = dataset
    out = tmp_path / "bad"
    short = tmp_path / "short_blood.tsv"
    write_blood(short, whole_blood=jaxkin.InputFunction.from_samples([0, 600], [0.0, 5.0], time_unit="s"))
    wrong = tmp_path / "wrong.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((2, 2, 2), np.uint8), AFFINE), str(wrong))
    cases = [
        (["--pet", str(root / "missing_pet.nii.gz"), "--input-function", str(aif)], "missing_pet.nii.gz"),
        (["--pet", str(pet), "--input-function", str(tmp_path / "nope.tsv")], "nope.tsv"),
        (["--pet", str(pet), "--input-function", str(short)], "short_blood.tsv"),
        (["--pet", str(pet), "--input-function", str(aif), "--mask", str(wrong)], "wrong.nii.gz"),
        (["--pet", str(pet), "--input-function", str(aif), "--bounds", "k5=0,1"], "--bounds"),
        (["--pet", str(pet), "--input-function", str(aif), "--bounds", "tight"], "--bounds"),
    ]
    for argv, name in cases:
        code, _, err = _run(["fit"] + argv + ["--out", str(out), "--no-progress"], capsys)
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and "Traceback" not in err
        assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_the_command_line_keeps_compiled_programs_on_disk(dataset, tmp_path, monkeypatch):
    """``JAXKIN_CACHE_DIR``: the first ``jaxkin fit`` stores its compiled fit, a second one gives the same maps
    (from the stored programs); ``off`` stores nothing (the setting every in-process command of the tests runs with:
    tests/conftest.py)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root, pet, aif, _ = dataset
    repo = Path(__file__).resolve().parents[2]

    def fit(out, cache):
        env = dict(os.environ, JAXKIN_CACHE_DIR=str(cache), JAX_PLATFORMS="cpu", PYTHONPATH=str(repo))
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        proc = subprocess.run([sys.executable, "-m", "jaxkin", "fit", "--pet", str(pet), "--input-function", str(aif),
                               "--out", str(out), "--no-progress", "--chunk-size", "64"], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return np.asarray(nib.load(map_path(out, "sub-01", "2tcmirr", "Ki")).dataobj)

    cache = tmp_path / "cache"
    first = fit(tmp_path / "a", cache)
    assert any(p.name.startswith("jit_fit_chunk") for p in cache.iterdir())  # the LM fit of a chunk was stored
    np.testing.assert_array_equal(fit(tmp_path / "b", cache), first)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JAXKIN_CACHE_DIR", "off")
    assert cli.enable_compilation_cache() is None
    assert not (tmp_path / "off").exists()


@pytest.mark.slow
def test_fit_reads_a_real_form_and_says_its_assumptions(tmp_path, capsys):
    """Injection 30 s before TimeZero, image decay corrected to the scan start, BQML, an autosampler and a manual
    recording: the maps equal those of the canonical form (time since injection, kBq/mL, corrected to injection),
    and every assumption is said on stderr and in the sidecars."""
    import math

    from jaxkin.decay import F18_HALF_LIFE_MIN
    from jaxkin.kinetics import tacs_in_chunks

    inj = -0.5  # min
    frames_inj = jaxkin.FrameSchedule.from_seconds(FRAMES.start_seconds[2:], FRAMES.duration_seconds[2:])
    frames_tz = jaxkin.FrameSchedule.from_seconds(frames_inj.start_seconds + inj * 60, frames_inj.duration_seconds)
    rng = np.random.default_rng(4)
    params = np.stack([rng.uniform(0.2, 1.0, 8), rng.uniform(0.2, 1.0, 8), rng.uniform(0.02, 0.3, 8),
                       rng.uniform(0.01, 0.1, 8)], -1)
    whole_blood = INPUT.scaled(0.9)
    tacs = tacs_in_chunks(params, jaxkin.prepare(INPUT, frames_inj, whole_blood)).reshape(2, 2, 2, -1)
    corrected_to_scan_start = tacs * math.exp(-math.log(2) / F18_HALF_LIFE_MIN * -inj) * 1000.0  # Bq/mL
    pet = write_pet(tmp_path / "sub-01_pet.nii.gz", corrected_to_scan_start, frames_tz, AFFINE, units="BQML",
                         sidecar={"TracerRadionuclide": "F18", "InjectionStart": inj * 60, "ScanStart": 0,
                                  "ImageDecayCorrectionTime": 0})
    early = INPUT.times <= 3.0
    auto = tmp_path / "sub-01_recording-autosampler_blood.tsv"
    manual = tmp_path / "sub-01_recording-manual_blood.tsv"
    for path, t, columns in ((auto, INPUT.times[early], ("whole_blood_radioactivity",)),
                             (manual, INPUT.times[~early], ("plasma_radioactivity", "whole_blood_radioactivity"))):
        values = {"plasma_radioactivity": INPUT(t), "whole_blood_radioactivity": whole_blood(t)}
        rows = ["\t".join(("time", *columns))] + [
            "\t".join([repr(float((ti + inj) * 60))] + [repr(float(values[c][i] * 1000)) for c in columns])
            for i, ti in enumerate(t)]
        path.write_text("\n".join(rows) + "\n")
        path.with_suffix(".json").write_text(json.dumps({"time": {"Units": "s"},
                                                         **{c: {"Units": "Bq/mL"} for c in columns}}))
    out = tmp_path / "maps"
    code, _, err = _run(["fit", "--pet", str(pet), "--input-function", str(auto), str(manual), "--out", str(out),
                         "--no-progress", "--chunk-size", "64", "--min-signal", "0.001"], capsys)
    assert code == 0, err
    assert "jaxkin fit: note: blood activities are assumed decay corrected to the injection" in err
    assert "plasma over 0-180 s is the whole blood of recording-autosampler" in err
    sidecar = json.loads((out / "sub-01_model-2tcmirr_meas-Ki_mimap.json").read_text())
    assert sidecar["InjectionStart"] == -30.0 and sidecar["BloodSources"] == [auto.name, manual.name]
    assert any("assumed decay corrected to the injection" in a for a in sidecar["Assumptions"])
    assert sidecar["InputFunctionSource"] == "plasma_radioactivity" and "WholeBloodSource" in sidecar
    ki = np.asarray(nib.load(map_path(out, "sub-01", "2tcmirr", "Ki")).dataobj).reshape(-1)
    vb = np.asarray(nib.load(map_path(out, "sub-01", "2tcmirr", "vB")).dataobj).reshape(-1)
    true_ki = params[:, 0] * params[:, 2] / (params[:, 1] + params[:, 2])
    np.testing.assert_allclose(ki, true_ki, rtol=2e-3)
    np.testing.assert_allclose(vb, params[:, 3], rtol=1e-2, atol=1e-4)


@pytest.mark.slow
def test_fit_tacs_command(tmp_path, capsys):
    organs = ["myocardium", "liver", "lesion"]
    clean = organ_tacs(organs)
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


@pytest.mark.slow
def test_uncertainty_maps(tmp_path, capsys):
    """--uncertainty writes meas-<param>SE maps (and R2, flags) equal to fit_tacs' standard errors per voxel."""
    clean = organ_tacs(["myocardium", "liver", "lesion", "bone"])
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


@pytest.mark.slow
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


def test_fit_a_pmod_voistat_with_a_pmod_bld(tmp_path, capsys):
    """``jaxkin fit --tacs study.voistat --input plasma.bld``: PMOD's long export (mid times only: frames contiguous
    from 0, said) and its plasma curve, fitted as the same data in jaxkin's own table."""
    mid_s = FRAMES.mid * 60
    assert np.allclose(FRAMES.start[0], 0) and np.allclose(FRAMES.start[1:], FRAMES.end[:-1])
    liver = [0.0, *(1.0 + np.log1p(FRAMES.mid[1:]))]
    head = ["# PMOD_VOI_STATISTICS", "# DATA",
            ("// Component [string]\tVoiName(Region) [string]\tTime [seconds]\tAveraged [kBq/cc]\tVolume [ccm]")]
    rows = [f"pet.dcm\tliver\t{m:.9g}\t{v!r}\t1500" for m, v in zip(mid_s, map(float, liver))]
    (tmp_path / "study.voistat").write_text("\n".join(head + rows) + "\n")
    t = np.union1d(INPUT.times[INPUT.times <= FRAMES.end[-1]], [FRAMES.end[-1]])
    (tmp_path / "plasma.bld").write_text("sample-time[minutes]\tplasma[kBq/cc]\n"
                                        + "".join(f"{float(a)!r}\t{float(b)!r}\n" for a, b in zip(t, INPUT(t))))
    out = tmp_path / "fits.tsv"
    assert cli.main(["fit", "--tacs", str(tmp_path / "study.voistat"), "--input", str(tmp_path / "plasma.bld"),
                     "--model", "patlak", "--t-star", "5", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "study.voistat: read as PMOD .voistat" in err and "frames taken contiguous from 0 s" in err
    assert "plasma.bld: column 'plasma' is the input, used as given" in err
    ki = float(out.read_text().splitlines()[1].split("\t")[1])
    expected = fit_regions(["liver"], np.array([liver]), INPUT, FRAMES, model="patlak", t_star=5.0).columns["Ki"][0]
    assert ki == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
def test_maps_written_slab_by_slab_equal_the_maps_held_in_memory(tmp_path, capsys, monkeypatch):
    """With a memory budget too small for the maps of the volume, fit writes them slab by slab (several slabs) as
    it fits: the maps (standard errors and the comparison of two models included) and their sidecars equal those of
    the fit that holds them in memory, for a .nii and a .nii.gz scan."""
    from jaxkin.fitting import LM
    from jaxkin.fitting import maps as fitting_maps
    from jaxkin.fitting.volume import memory_needed

    rng = np.random.default_rng(0)
    shape = (4, 3, 20)  # 3 pieces of 8 slices (the fit's default)
    params = np.stack([rng.uniform(0.2, 1.5, shape), rng.uniform(0.2, 1.5, shape), rng.uniform(0.02, 0.5, shape),
                       rng.uniform(0.0, 0.2, shape)], -1).astype(np.float32)
    tacs = np.array(kinetics.two_tissue_irreversible(jnp.asarray(params), jaxkin.prepare(INPUT, FRAMES)))
    tacs *= 1 + 0.02 * rng.standard_normal(tacs.shape).astype(np.float32)
    tacs[:, :, 9:11] = 0.0  # two slices without signal
    blood = write_blood(tmp_path / "blood.tsv", whole_blood=INPUT, units="kBq/mL")
    slabs = []
    real_streams = fitting_maps.map_streams

    def counted(*args, **kwargs):
        with real_streams(*args, **kwargs) as write:
            def spy(model, name, z, values):
                slabs.append((model, name, z.start))
                write(model, name, z, values)
            yield spy

    monkeypatch.setattr(fitting_maps, "map_streams", contextlib.contextmanager(counted))
    n_maps = len(LM(uncertainty=True).maps())
    for ext in ("nii", "nii.gz"):
        pet = write_pet(tmp_path / f"sub-01_pet.{ext}", tacs, FRAMES, np.eye(4), units="kBq/mL")
        held = 4 * tacs.size if ext == "nii.gz" else 0  # a small .nii.gz is read into memory once
        budget = memory_needed((*shape, FRAMES.n_frames), n_maps, 4 * 3 * 8, held, slices=8) + 16
        outs = []
        for extra in ([], ["--max-memory", f"{budget / 1e9:.12f}"]):
            outs.append(tmp_path / f"{ext}-{len(extra)}")
            code, _, err = _run(["fit", "--pet", str(pet), "--input-function", str(blood), "--out", str(outs[-1]),
                                 "--no-progress", "--uncertainty", "--model", "2tcmirr,1tcm", "--min-signal", "0.001",
                                 *extra], capsys)
            assert code == 0, err
        names = sorted(p.name for p in outs[0].iterdir())
        assert names == sorted(p.name for p in outs[1].iterdir()) and len(names) == 54
        for name in names:
            a, b = outs[0] / name, outs[1] / name
            if name.endswith(".json"):
                a, b = json.loads(a.read_text()), json.loads(b.read_text())
                a.pop("CommandLine"), b.pop("CommandLine")
                assert a == b, name
            else:
                np.testing.assert_array_equal(np.asarray(nib.load(b).dataobj), np.asarray(nib.load(a).dataobj), name)
        assert {s[2] for s in slabs if s[:2] == ("2tcmirr", "Ki")} == {0, 8, 16}  # written in 3 slabs
        slabs.clear()
