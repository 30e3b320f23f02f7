"""Any frame schedule (time_steps = 0 follows the data; the 69-frame Quadra schedule), the frame-schedule check of
prediction, test-time adaptation (``jaxkin predict --adapt-steps``) and the LM polish of the network's maps
(``--refine-lm``).

One tiny run on the small phantom simulated with the 69 frames of public Quadra datasets (32 x 32 slices, depth 2,
4 root features: time_steps resolves to 72; one train step), shared by the tests of this file. References are
independent of the code under test: model TACs from :func:`kinetics.two_tissue_irreversible` and masks and losses in
NumPy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import nibabel as nib
import numpy as np
import pytest

import jaxkin
from jaxkin import kinetics
from jaxkin import network as N
from jaxkin.cli import main
from jaxkin.errors import InputError
from jaxkin.network.train import check_resume

RUN = {"phantom_preset": "small", "phantom_frames": "quadra69", "crop": 32, "depth": 2, "root_features": 4,
       "time_steps": 0, "slices_per_subject": 2, "batch_size": 2, "predict_batch_size": 8, "epochs": 1,
       "predict_test": False, "final_activation": "sigmoid", "init_params": (0.1, 0.5, 0.05, 0.05),
       "input_normalization": "slice", "learning_rate": 2e-3}
PARAMS = ("K1", "k2", "k3", "vB")


def test_quadra_69_schedule():
    frames = jaxkin.FrameSchedule.quadra_69()
    assert frames.n_frames == 69 and frames.end[-1] == pytest.approx(70.0)
    expected = [2.0] * 20 + [5.0] * 10 + [10.0] * 15 + [60.0] * 6 + [120.0] * 10 + [300.0] * 8
    np.testing.assert_allclose(frames.duration_seconds, expected)
    np.testing.assert_allclose(frames.start[1:], frames.end[:-1])
    assert frames.first_difference(frames) is None and frames.first_difference(jaxkin.FrameSchedule.quadra()) == 0


@pytest.fixture(scope="module")
def run69(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run69")
    N.train(N.config_from_dict(RUN), workdir, progress=False)
    return workdir


def _scan(workdir: Path, sid: str = "sub-03"):
    pet_dir = workdir / "data" / sid / "pet"
    return pet_dir / f"{sid}_pet.nii.gz", pet_dir / f"{sid}_recording-AIF_blood.tsv"


def _kin(pet, blood_path):
    from jaxkin.io.blood import load_blood

    blood = load_blood([blood_path], pet=pet)
    return jaxkin.prepare(blood.input, pet.frames, blood.whole_blood)


def _mask(volume, frames, threshold):
    """Time-averaged activity above ``threshold`` (kBq/ml), in NumPy."""
    return (volume @ (frames.duration / frames.duration.sum())) > threshold


@pytest.mark.slow
def test_a_69_frame_run_resolves_time_steps_and_resumes_from_its_config(run69):
    info = json.loads((run69 / "model.json").read_text())
    assert info["n_frames"] == 69 and info["config"]["model"]["time_steps"] == 72  # 69 up to a multiple of 2**2
    assert json.loads((run69 / "config.json").read_text())["model"]["time_steps"] == 72
    assert len(info["frame_start_min"]) == 69 and info["frame_tolerance_s"] == 1.0
    assert len(N.read_metrics(run69)) == 1
    predictor = N.load_predictor(run69)
    assert predictor.cfg.model.time_steps == 72 and predictor.frames == jaxkin.FrameSchedule.quadra_69()
    check_resume(N.config_from_dict(RUN | {"epochs": 2}), run69, resume=True)  # time_steps 0 matches the stored 72
    with pytest.raises(InputError, match="differs from the run .* in time_steps"):
        check_resume(N.config_from_dict(RUN | {"time_steps": 80}), run69, resume=True)


@pytest.mark.slow
def test_predict_69_frames_with_lm_refinement_never_worse_than_the_network(run69, tmp_path):
    from jaxkin.io.pet import load_pet

    pet_path, blood_path = _scan(run69)
    args = ["predict", "--checkpoint", str(run69), "--pet", str(pet_path), "--input-function", str(blood_path)]
    assert main(args + ["--out", str(tmp_path / "net")]) == 0
    assert main(args + ["--out", str(tmp_path / "lm"), "--refine-lm", "3"]) == 0
    pet = load_pet(pet_path)
    volume = np.nan_to_num(pet.read()).astype(np.float64)
    kin = _kin(pet, blood_path)

    def maps(folder):
        return np.stack([nib.load(folder / f"sub-03_model-2tcmirr_meas-{p}_mimap.nii.gz").get_fdata() for p in PARAMS],
                        -1)

    net, lm = maps(tmp_path / "net"), maps(tmp_path / "lm")
    mask = _mask(volume, pet.frames, N.load_predictor(run69).cfg.data.mask_threshold)
    assert mask.sum() > 100

    def sse(params):
        model = np.asarray(kinetics.two_tissue_irreversible(jnp.asarray(params[mask], jnp.float32), kin), np.float64)
        return np.sum((model - volume[mask]) ** 2, axis=-1)

    before, after = sse(net), sse(lm)
    assert np.all(after <= before * (1 + 1e-4) + 1e-3)  # every voxel (up to float32 rounding of the maps)
    assert np.median(after) < 0.5 * np.median(before)  # and a real improvement
    np.testing.assert_array_equal(net[~mask], lm[~mask])  # outside the mask: the network's values
    side = json.loads((tmp_path / "lm" / "sub-03_model-2tcmirr_meas-Ki_mimap.json").read_text())
    assert side["RefineLMIterations"] == 3 and side["RefineLMVoxels"] == int(mask.sum())
    lower, upper = N.load_predictor(run69).cfg.model.lower, N.load_predictor(run69).cfg.model.upper
    assert side["RefineLMBounds"]["K1"] == [lower[0], upper[0]]
    assert np.all((lm[mask] >= np.array(lower) - 1e-6) & (lm[mask] <= np.array(upper) + 1e-6))


@pytest.mark.slow
def test_adaptation_lowers_the_loss_on_a_held_out_subject(run69):
    from jaxkin.io.pet import load_pet

    trained = N.load_predictor(run69)
    pet_path, blood_path = _scan(run69)  # sub-03: the test subject, never trained on
    pet = load_pet(pet_path)
    volume = pet.read()
    kin = _kin(pet, blood_path)
    maps_before = trained.predict_volume(volume)
    adapted = N.adapt(trained, volume, kin, steps=6, learning_rate=2e-3, seed=0)
    mask = _mask(np.nan_to_num(volume).astype(np.float64), pet.frames, trained.cfg.data.mask_threshold)

    def loss(predictor):  # the masked MSE over the scan, from the predicted maps
        model = np.asarray(kinetics.two_tissue_irreversible(jnp.asarray(predictor.predict_volume(volume)[mask]), kin))
        return float(np.mean((model.astype(np.float64) - volume[mask]) ** 2))

    assert adapted.loss_before == pytest.approx(loss(trained), rel=1e-3)
    assert adapted.loss_after == pytest.approx(loss(adapted.predictor), rel=1e-3)
    assert adapted.loss_after < 0.998 * adapted.loss_before  # 6 small steps from a one-step network: -0.4%
    assert adapted.steps == 6 and adapted.slices == int(mask.any(axis=(0, 1)).sum())
    np.testing.assert_array_equal(trained.predict_volume(volume), maps_before)  # the trained weights are kept


@pytest.mark.slow
def test_predict_cli_adapts_and_writes_what_it_did(run69, tmp_path):
    pet_path, blood_path = _scan(run69)
    rc = main(["predict", "--checkpoint", str(run69), "--pet", str(pet_path), "--input-function", str(blood_path),
               "--out", str(tmp_path), "--adapt-steps", "2", "--adapt-lr", "1e-3"])
    assert rc == 0
    side = json.loads((tmp_path / "sub-03_model-2tcmirr_meas-K1_mimap.json").read_text())
    assert side["AdaptSteps"] == 2 and side["AdaptLearningRate"] == 1e-3
    assert side["AdaptLossBefore"] > 0 and side["AdaptLossAfter"] > 0
    from jaxkin.nn.loss import loss_unit

    unit = loss_unit(N.load_predictor(run69).cfg.optim.loss_scale)  # (kBq/mL)^2 only for the unscaled MSE
    assert side["AdaptLossUnits"].startswith(unit + " ")


@pytest.mark.slow
def test_a_scan_with_another_frame_schedule_is_refused(run69, tmp_path, capsys):
    pet_path, blood_path = _scan(run69)
    moved = tmp_path / "pet"
    moved.mkdir()
    shutil.copy(pet_path, moved / pet_path.name)
    sidecar = json.loads(pet_path.with_name("sub-03_pet.json").read_text())
    sidecar["FrameTimesStart"] = [t + (3.0 if i >= 30 else 0.0) for i, t in enumerate(sidecar["FrameTimesStart"])]
    (moved / "sub-03_pet.json").write_text(json.dumps(sidecar))
    capsys.readouterr()
    rc = main(["predict", "--checkpoint", str(run69), "--pet", str(moved / pet_path.name), "--out",
               str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "sub-03_pet.nii.gz" in err and "frame 30 " in err
    assert not (tmp_path / "out").exists()
    # 0.5 s off is within the tolerance
    sidecar["FrameTimesStart"] = [t - (2.5 if i >= 30 else 0.0) for i, t in enumerate(sidecar["FrameTimesStart"])]
    (moved / "sub-03_pet.json").write_text(json.dumps(sidecar))
    assert main(["predict", "--checkpoint", str(run69), "--pet", str(moved / pet_path.name), "--out",
                 str(tmp_path / "out")]) == 0


@pytest.mark.parametrize("extra,message", [
    (["--adapt-steps", "3"], "--adapt-steps: needs the scan's input function"),
    (["--refine-lm", "3"], "--refine-lm: needs the scan's input function"),
    (["--adapt-lr", "0.01"], "--adapt-lr: only with --adapt-steps"),
    (["--adapt-steps", "-1"], "--adapt-steps: must be 0 or positive"),
    (["--bounds", "paper"], "--bounds: only with --refine-lm"),
    (["--refine-lm", "2", "--bounds", "Q1=0,1", "--input-function", "b.tsv"], "--bounds: Q1 is not a parameter"),
    (["--blood-to-plasma", "1.1"], "--blood-to-plasma: only with --input-function"),
    (["--blood-decay", "none"], "--blood-decay: only with --input-function"),
])
def test_adapt_and_refine_options_fail_with_one_line(tmp_path, capsys, extra, message):
    rc = main(["predict", "--checkpoint", str(tmp_path), "--pet", str(tmp_path / "x_pet.nii.gz"), "--out",
               str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and message in err, err
    assert not (tmp_path / "out").exists()
