"""Training runs on a tiny BIDS dataset (16 x 18 voxels, 12 frames padded to 16 time steps): what a run writes,
a run guided by the voxel fit, kill and resume, prediction from the run's workdir, the guidance schedule and the
organ statistics of the run's report."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from jaxkin import network as N
from jaxkin.errors import InputError
from jaxkin.network.train import guidance_weight

from _tiny_scans import TINY, write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("bids"))


def _run_cfg(**kw):
    return N.config_from_dict(TINY | {"epochs": 3, "lr_halving_epochs": 2, "input_scale": 0.05} | kw)


@pytest.fixture(scope="module")
def full_run(dataset, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full")
    summary = N.train(_run_cfg(), workdir, dataset, progress=False)
    return workdir, summary


@pytest.mark.slow
def test_uninterrupted_run_writes_everything(full_run):
    workdir, summary = full_run
    rows = N.read_metrics(workdir)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert all(np.isfinite(r["train_loss"]) and r["val_loss"] > 0 for r in rows)
    assert rows[0]["learning_rate"] == pytest.approx(1e-3) and rows[2]["learning_rate"] == pytest.approx(5e-4)
    assert summary["test"]["voxels"] > 0 and 0 < summary["test"]["cs"] <= 1
    for name in ("config.json", "model.json", "test_metrics.json", "report.md"):
        assert (workdir / name).is_file()
    assert len(list((workdir / "predictions" / "sub-03").glob("*_mimap.nii.gz"))) == 5


@pytest.mark.slow
def test_a_run_guided_by_the_voxel_fit_fits_its_training_slices_and_trains(dataset, tmp_path, capsys):
    summary = N.train(_run_cfg(epochs=1, lm_guidance=1.0, predict_test=False), tmp_path, dataset, progress=False)
    err = capsys.readouterr().err
    assert "voxels of sub-01 for lm_guidance" in err and "sub-02 for lm_guidance" not in err  # train subjects only
    rows = N.read_metrics(tmp_path)
    assert [r["epoch"] for r in rows] == [0] and np.isfinite(rows[0]["train_loss"])
    assert summary["test"]["voxels"] > 0


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_losses(full_run, dataset, tmp_path):
    workdir, _ = full_run
    part = N.train(_run_cfg(), tmp_path, dataset, progress=False, stop_after_epochs=1)
    assert not part["finished"]
    with pytest.raises(InputError, match="already holds a run; resume it or choose another workdir"):
        N.train(_run_cfg(), tmp_path, dataset, progress=False)
    with pytest.raises(InputError, match="differs from the run .* in learning_rate"):
        N.train(_run_cfg(learning_rate=2e-3), tmp_path, dataset, progress=False, resume=True)
    N.train(_run_cfg(), tmp_path, dataset, progress=False, resume=True)
    a, b = N.read_metrics(workdir), N.read_metrics(tmp_path)
    assert len(a) == len(b) == 3
    for ra, rb in zip(a, b):
        for key in ("train_loss", "val_loss", "val_cs", "learning_rate"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-6, abs=1e-9), (key, ra, rb)


@pytest.mark.slow
def test_predict_cli_writes_maps_with_the_input_geometry(full_run, dataset, tmp_path):
    import nibabel as nib

    from jaxkin.cli import main
    from jaxkin.io.pet import load_pet

    workdir, _ = full_run
    pet_path = dataset / "sub-03" / "pet" / "sub-03_pet.nii.gz"
    rc = main(["predict", "--checkpoint", str(workdir), "--pet", str(pet_path), "--input-function",
               str(dataset / "sub-03" / "pet" / "sub-03_recording-AIF_blood.tsv"), "--out", str(tmp_path)])
    assert rc == 0
    pet = load_pet(pet_path)
    k1 = nib.load(tmp_path / "sub-03_model-2tcmirr_meas-K1_mimap.nii.gz")
    assert k1.shape == pet.shape[:3]
    np.testing.assert_allclose(k1.affine, pet.affine)
    # the batched, padded volume path equals the network on each (zero-padded) slice
    predictor = N.load_predictor(workdir)
    volume = pet.read()
    maps = predictor.predict_volume(volume)
    np.testing.assert_allclose(np.asarray(k1.dataobj), maps[..., 0], rtol=1e-6)
    z = 4
    py = -volume.shape[1] % 2**predictor.cfg.model.depth  # 18 -> 20 (depth 2): one zero column each side
    assert py == 2
    tac = np.pad(volume[:, :, z][None], ((0, 0), (0, 0), (1, 1), (0, 0)))
    direct = np.asarray(N.forward(predictor.graphdef, predictor.params, tac))[0, :, 1:19]
    np.testing.assert_allclose(maps[:, :, z], direct, rtol=1e-4, atol=1e-5)
    ki = nib.load(tmp_path / "sub-03_model-2tcmirr_meas-Ki_mimap.nii.gz").get_fdata()
    np.testing.assert_allclose(ki, maps[..., 0] * maps[..., 2] / (maps[..., 1] + maps[..., 2]), rtol=1e-4)


def test_guidance_weight_follows_the_epochs():
    every = N.config_from_dict({"lm_guidance": 0.5})
    first = N.config_from_dict({"lm_guidance": 0.5, "lm_guidance_epochs": 2})
    assert [guidance_weight(every, e) for e in range(4)] == [0.5] * 4
    assert [guidance_weight(first, e) for e in range(4)] == [0.5, 0.5, 0.0, 0.0]
    assert guidance_weight(N.config_from_dict({}), 0) == 0.0


def test_organ_rank_correlation_leaves_blood_out():
    def row(organ, ki_pred, ki_true, vb=0.05):
        return {"organ": organ, "predicted": {"Ki": ki_pred}, "true": {"Ki": ki_true, "vB": vb}}

    rows = [row("body", 0.01, 0.003), row("liver", 0.02, 0.004), row("myocardium", 0.03, 0.04),
            row("aorta", 0.5, 0.0, vb=1.0)]
    assert N.organ_rank_correlation(rows, "Ki") == pytest.approx(1.0)  # with the aorta: -0.2
    rows[0]["predicted"]["Ki"] = 0.05
    assert N.organ_rank_correlation(rows, "Ki") == pytest.approx(-0.5)
    assert np.isnan(N.organ_rank_correlation(rows[:2], "Ki"))


@pytest.mark.slow
def test_an_encoder_unet_run_predicts_from_its_model_json(dataset, tmp_path):
    """A guided run of the time-first network: model.json rebuilds it for ``jaxkin predict``, whose maps are the
    run's own predictions of the test subject."""
    import nibabel as nib

    from jaxkin.cli import main
    from jaxkin.nn.encoder_unet import EncoderUNet

    cfg = _run_cfg(epochs=1, architecture="encoder_unet", root_features=4, temporal_features=8, time_steps=0,
                   condition_on_input=True, input_normalization="input", final_activation="sigmoid",
                   init_params=(0.1, 0.5, 0.05, 0.05), loss_scale="voxel", lm_guidance=1.0)
    workdir = tmp_path / "run"
    N.train(cfg, workdir, dataset, progress=False)
    predictor = N.load_predictor(workdir)
    assert predictor.cfg.model.architecture == "encoder_unet" and predictor.cfg.model.time_steps == 12
    assert isinstance(nnx.merge(predictor.graphdef, predictor.params), EncoderUNet)
    pet = dataset / "sub-03" / "pet"
    rc = main(["predict", "--checkpoint", str(workdir), "--pet", str(pet / "sub-03_pet.nii.gz"), "--input-function",
               str(pet / "sub-03_recording-AIF_blood.tsv"), "--out", str(tmp_path / "maps")])
    assert rc == 0
    name = "sub-03_model-2tcmirr_meas-K1_mimap.nii.gz"
    ours = np.asarray(nib.load(tmp_path / "maps" / name).dataobj)
    np.testing.assert_allclose(ours, np.asarray(nib.load(next((workdir / "predictions").rglob(name))).dataobj),
                               rtol=1e-6)
    assert np.all(ours >= cfg.model.lower[0]) and np.all(ours <= cfg.model.upper[0]) and ours.std() > 0
