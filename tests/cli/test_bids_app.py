"""BIDS-App mode: ``jaxkin fit|idif|predict --bids`` on a two-subject, two-session dataset laid out like the public
Quadra datasets -> BIDS derivatives datasets; reruns, selection and bad input."""

import json

import nibabel as nib
import numpy as np
import pytest

import jaxkin
from jaxkin import cli
from jaxkin.io.pet import load_pet, write_pet
from jaxkin.io.labels import write_labels
from jaxkin.io.blood import write_blood
from jaxkin.kinetics import tacs_in_chunks

from _reference import INPUT

SHAPE = (3, 2, 2)
INJ_S = -20.0  # injection 20 s before TimeZero
FRAMES_INJ = jaxkin.FrameSchedule.from_durations([10.0] * 4 + [60.0] * 4 + [300.0] * 10, start_s=20.0)
FRAMES_TZ = jaxkin.FrameSchedule.from_seconds(FRAMES_INJ.start_seconds + INJ_S, FRAMES_INJ.duration_seconds)
ENTITIES = "trc-FDG_rec-acdynPSF"


def _scan(root, sub, ses, seed):
    """One scan (Bq/mL, decay corrected to the injection, 20 s before TimeZero) and an autosampler and a manual
    recording whose times are relative to TimeZero; returns the true parameters [12, 4]."""
    pet_dir = root / f"sub-{sub}" / f"ses-{ses}" / "pet"
    pet_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    params = np.stack([rng.uniform(0.2, 1.0, 12), rng.uniform(0.2, 1.0, 12), rng.uniform(0.02, 0.3, 12),
                       rng.uniform(0.01, 0.1, 12)], -1)
    scale = 1.0 + 0.1 * seed  # each scan its own input amplitude
    inp = INPUT.scaled(scale)
    tacs = tacs_in_chunks(params, jaxkin.prepare(inp, FRAMES_INJ)).reshape(*SHAPE, -1)
    stem = f"sub-{sub}_ses-{ses}"
    write_pet(pet_dir / f"{stem}_{ENTITIES}_pet.nii.gz", tacs * 1000.0, FRAMES_TZ, np.diag([2.0, 2, 2, 1]),
                   units="Bq/mL", sidecar={"TracerRadionuclide": "F18", "InjectionStart": INJ_S, "ScanStart": 0,
                                           "ImageDecayCorrectionTime": INJ_S})
    early = inp.times <= 2.0
    write_blood(pet_dir / f"{stem}_recording-autosampler_blood.tsv", whole_blood=jaxkin.InputFunction(
        inp.times[early], inp.values[early]), injection_start=INJ_S / 60)
    write_blood(pet_dir / f"{stem}_recording-manual_blood.tsv", plasma=jaxkin.InputFunction(
        inp.times[~early], inp.values[~early]), whole_blood=jaxkin.InputFunction(inp.times[~early],
                                                                                inp.values[~early]),
        injection_start=INJ_S / 60)
    return params


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("quadra")
    (root / "dataset_description.json").write_text(json.dumps({"Name": "test", "BIDSVersion": "1.9.0"}))
    truth = {}
    for i, (sub, ses) in enumerate([("001", "a"), ("001", "b"), ("002", "a"), ("002", "b")]):
        truth[(sub, ses)] = _scan(root, sub, ses, i)
        # a segmentation in a derivatives dataset, as TotalSegmentator outputs are kept: voxel (0, 0, 0) is "aorta"
        seg = root / "derivatives" / "seg" / f"sub-{sub}" / f"ses-{ses}" / "anat"
        labels = np.zeros(SHAPE, np.uint8)
        labels[0, 0, 0] = labels[1, 0, 0] = 1
        write_labels(seg / f"sub-{sub}_ses-{ses}_dseg.nii.gz", labels, {1: "aorta"}, np.diag([2.0, 2, 2, 1]))
    return root, truth


def _run(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _ki(path):
    return np.asarray(nib.load(path).dataobj).reshape(-1)


@pytest.mark.slow
def test_fit_bids_writes_a_derivatives_dataset(dataset, capsys):
    root, truth = dataset
    out = root / "derivatives" / "jaxkin"
    argv = ["fit", "--bids", str(root), "--out", str(out), "--no-progress", "--chunk-size", "64",
            "--min-signal", "0.001"]
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "jaxkin"
    assert description["GeneratedBy"][0]["Version"] == jaxkin.__version__
    assert description["DatasetLinks"]["raw"] == root.resolve().as_uri()
    for (sub, ses), params in truth.items():
        folder = out / f"sub-{sub}" / f"ses-{ses}" / "pet"
        stem = f"sub-{sub}_ses-{ses}_{ENTITIES}_model-2tcmirr_meas-"
        ki = _ki(folder / f"{stem}Ki_mimap.nii.gz")
        true_ki = params[:, 0] * params[:, 2] / (params[:, 1] + params[:, 2])
        np.testing.assert_allclose(ki, true_ki, rtol=2e-3)  # each scan with its own blood, in time since injection
        sidecar = json.loads((folder / f"{stem}Ki_mimap.json").read_text())
        base = f"bids:raw:sub-{sub}/ses-{ses}/pet/sub-{sub}_ses-{ses}"
        assert sidecar["Sources"] == [f"{base}_{ENTITIES}_pet.nii.gz", f"{base}_recording-autosampler_blood.tsv",
                                      f"{base}_recording-manual_blood.tsv"]
        assert sidecar["SoftwareVersion"] == jaxkin.__version__ and sidecar["InjectionStart"] == INJ_S
    assert stdout.count("fitted 12 voxels") == 4
    assert "jaxkin fit: note: sub-001_ses-a_trc-FDG_rec-acdynPSF: blood activities are assumed decay corrected" in err

    # The ses-/trc-/rec- layout gives the maps of the single-scan form of the same files, to the bit.
    pet_dir = root / "sub-001" / "ses-b" / "pet"
    single = root.parent / (root.name + "-single")
    code, _, err = _run(["fit", "--pet", str(pet_dir / f"sub-001_ses-b_{ENTITIES}_pet.nii.gz"), "--input-function",
                         str(pet_dir / "sub-001_ses-b_recording-autosampler_blood.tsv"),
                         str(pet_dir / "sub-001_ses-b_recording-manual_blood.tsv"), "--out", str(single),
                         "--no-progress", "--chunk-size", "64", "--min-signal", "0.001"], capsys)
    assert code == 0, err
    for name in ("K1", "k2", "k3", "vB", "Ki"):
        a = _ki(single / f"sub-001_ses-b_{ENTITIES}_model-2tcmirr_meas-{name}_mimap.nii.gz")
        b = _ki(out / "sub-001" / "ses-b" / "pet" / f"sub-001_ses-b_{ENTITIES}_model-2tcmirr_meas-{name}_mimap.nii.gz")
        np.testing.assert_array_equal(a, b)

    # A second run with the same arguments replaces every map, says so, and gives the same maps.
    first = _ki(out / "sub-002" / "ses-b" / "pet" / f"sub-002_ses-b_{ENTITIES}_model-2tcmirr_meas-Ki_mimap.nii.gz")
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    assert stdout.count("(replacing 6 maps of an earlier run)") == 4
    again = _ki(out / "sub-002" / "ses-b" / "pet" / f"sub-002_ses-b_{ENTITIES}_model-2tcmirr_meas-Ki_mimap.nii.gz")
    np.testing.assert_array_equal(first, again)


@pytest.mark.slow
def test_fit_bids_skip_existing_and_memory_budget(dataset, tmp_path, capsys):
    """--skip-existing skips the scans whose maps are complete and made with the same options, fits again those made
    with other options or incomplete; --max-memory is said on stderr and a budget too small is refused up front."""
    root, _ = dataset
    out = tmp_path / "out"
    argv = ["fit", "--bids", str(root), "--participant-label", "001", "--session", "a", "--out", str(out),
            "--no-progress", "--chunk-size", "64", "--min-signal", "0.001", "--skip-existing", "--max-memory", "4"]
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    assert "jaxkin fit: note: memory budget 4 GB (--max-memory)" in err and stdout.count("fitted 12 voxels") == 1
    code, stdout, err = _run(argv, capsys)
    assert code == 0 and "skipped, its 6 maps are there, made with the same options" in stdout
    assert "fitted" not in stdout
    code, stdout, err = _run(argv + ["--bounds", "paper"], capsys)  # other options: fitted again
    assert code == 0 and "made with other options: done again" in stdout and "fitted 12 voxels" in stdout
    next(out.rglob("*meas-k3_mimap.nii.gz")).unlink()  # incomplete: fitted again
    code, stdout, err = _run(argv + ["--bounds", "paper"], capsys)
    assert code == 0 and "fitted 12 voxels" in stdout
    code, stdout, err = _run(argv[:-1] + ["0.1"], capsys)
    assert code == 2 and "needs at least" in err and "more than the budget of 0.10 GB (--max-memory)" in err
    assert len(err.strip().splitlines()) == 1  # refused up front: one line, nothing else


@pytest.mark.slow
def test_fit_bids_selects_participants_and_sessions(dataset, tmp_path, capsys):
    root, _ = dataset
    out = tmp_path / "deriv"
    code, stdout, err = _run(["fit", "--bids", str(root), "--out", str(out), "--participant-label", "002",
                              "--session", "b", "--no-progress", "--chunk-size", "64", "--min-signal", "0.001"],
                             capsys)
    assert code == 0, err
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*_mimap.nii.gz"))
    assert len(written) == 6 and all(p.startswith("sub-002/ses-b/pet/") for p in written)


@pytest.mark.slow
@pytest.mark.parametrize("extra,message", [
    (["--participant-label", "009"], "participant label '009' matches no subject folder sub-009"),
    (["--session", "c"], "session label 'c' matches no session folder ses-c"),
    (["--pet", "x_pet.nii.gz"], "--pet: not with --bids"),
])
def test_fit_bids_bad_selection_writes_nothing(dataset, tmp_path, capsys, extra, message):
    root, _ = dataset
    out = tmp_path / "deriv"
    code, _, err = _run(["fit", "--bids", str(root), "--out", str(out), *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_fit_bids_refuses_to_write_into_the_raw_dataset(dataset, capsys):
    root, _ = dataset
    for out, message in ((root, "is the input dataset"), (root / "sub-001", "inside the raw dataset")):
        code, _, err = _run(["fit", "--bids", str(root), "--out", str(out)], capsys)
        assert code == 2 and message in err


@pytest.mark.slow
def test_fit_bids_scan_without_blood_stops_before_any_work(dataset, tmp_path, capsys):
    root, _ = dataset
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("derivatives"))
    for path in (copy / "sub-002" / "ses-a" / "pet").glob("*_blood.*"):
        path.unlink()
    out = tmp_path / "deriv"
    code, _, err = _run(["fit", "--bids", str(copy), "--out", str(out)], capsys)
    assert code == 2 and "sub-002_ses-a_trc-FDG_rec-acdynPSF_pet.nii.gz: no blood recording" in err
    assert not out.exists()


@pytest.mark.slow
def test_idif_bids_then_fit_with_the_image_derived_input(dataset, tmp_path, capsys):
    root, _ = dataset
    idif_out = tmp_path / "idif"
    code, stdout, err = _run(["idif", "--bids", str(root), "--out", str(idif_out), "--label", "aorta",
                              "--participant-label", "001"], capsys)
    assert code == 0, err
    tsv = idif_out / "sub-001" / "ses-b" / "pet" / f"sub-001_ses-b_{ENTITIES}_recording-IDIF_blood.tsv"
    meta = json.loads(tsv.with_suffix(".json").read_text())
    assert meta["WholeBloodAvail"] is True and meta["PlasmaAvail"] is False and meta["MetaboliteAvail"] is False
    assert meta["Sources"][-1] == "bids:raw:derivatives/seg/sub-001/ses-b/anat/sub-001_ses-b_dseg.nii.gz"
    pet = load_pet(root / "sub-001" / "ses-b" / "pet" / f"sub-001_ses-b_{ENTITIES}_pet.nii.gz")
    from jaxkin.io.blood import load_blood

    curve = load_blood(tsv, pet=pet).input  # read as frame means: its mean over each frame is the aorta's
    mean_tac = pet.read()[:2, 0, 0].mean(axis=0)  # the two aorta voxels
    f = pet.frames
    np.testing.assert_allclose((curve.integral(f.end) - curve.integral(f.start)) / f.duration, mean_tac, rtol=1e-5)
    assert stdout.count("wrote ") == 2  # sub-001, both sessions

    out = tmp_path / "maps"
    code, stdout, err = _run(["fit", "--bids", str(root), "--out", str(out), "--participant-label", "001",
                              "--blood-dataset", str(idif_out), "--no-progress", "--chunk-size", "64",
                              "--min-signal", "0.001"], capsys)
    assert code == 0, err
    sidecar = json.loads((out / "sub-001" / "ses-a" / "pet" /
                          f"sub-001_ses-a_{ENTITIES}_model-2tcmirr_meas-Ki_mimap.json").read_text())
    assert sidecar["Sources"][1] == f"bids:blood:sub-001/ses-a/pet/sub-001_ses-a_{ENTITIES}_recording-IDIF_blood.tsv"
    assert "no plasma data: the input is the whole blood" in err
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetLinks"]["blood"] == idif_out.resolve().as_uri()


@pytest.mark.slow
def test_predict_bids_with_a_trained_network(tmp_path, capsys):
    """The tiny run of tests/fixtures predicts every scan of a two-session dataset into a derivatives dataset."""
    from pathlib import Path

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "run-v0.1.0"
    root = tmp_path / "raw"
    frames = jaxkin.FrameSchedule.quadra()
    rng = np.random.default_rng(0)
    for ses in ("a", "b"):
        pet_dir = root / "sub-01" / f"ses-{ses}" / "pet"
        write_pet(pet_dir / f"sub-01_ses-{ses}_pet.nii.gz", rng.uniform(0, 5, (8, 6, 2, frames.n_frames)),
                       frames, np.diag([2.0, 2, 2, 1]), sidecar={"InjectionStart": 0, "ImageDecayCorrectionTime": 0})
    (root / "dataset_description.json").write_text(json.dumps({"Name": "raw", "BIDSVersion": "1.9.0"}))
    out = tmp_path / "pred"
    code, stdout, err = _run(["predict", "--checkpoint", str(fixture), "--bids", str(root), "--out", str(out)],
                             capsys)
    assert code == 0, err
    for ses in ("a", "b"):
        ki = out / "sub-01" / f"ses-{ses}" / "pet" / f"sub-01_ses-{ses}_model-2tcmirr_meas-Ki_mimap.nii.gz"
        assert nib.load(ki).shape == (8, 6, 2)
        sidecar = json.loads(ki.with_name(ki.name.replace(".nii.gz", ".json")).read_text())
        assert sidecar["Sources"] == [f"bids:raw:sub-01/ses-{ses}/pet/sub-01_ses-{ses}_pet.nii.gz"]
    (out / "sub-01" / "ses-b" / "pet" / "sub-01_ses-b_model-2tcmirr_meas-k3_mimap.json").unlink()
    code, stdout, err = _run(["predict", "--checkpoint", str(fixture), "--bids", str(root), "--out", str(out),
                              "--skip-existing"], capsys)  # ses-a complete: skipped; ses-b incomplete: again
    assert code == 0, err
    assert "sub-01_ses-a: skipped, its 5 maps are there" in stdout and "sub-01_ses-b: maps there are incomplete" in stdout
    assert stdout.count("slices in") == 1
    short = root / "sub-01" / "ses-b" / "pet" / "sub-01_ses-b_pet.json"
    meta = json.loads(short.read_text())
    meta["FrameTimesStart"], meta["FrameDuration"] = meta["FrameTimesStart"][:-1], meta["FrameDuration"][:-1]
    short.write_text(json.dumps(meta))
    code, _, err = _run(["predict", "--checkpoint", str(fixture), "--bids", str(root), "--out", str(out)], capsys)
    assert code == 2 and "FrameTimesStart' lists 61 frames" in err


@pytest.mark.slow
def test_idif_bids_bad_label_writes_nothing(dataset, tmp_path, capsys):
    """A label that no scan's label map has stops the run before anything is written."""
    root, _ = dataset
    out = tmp_path / "idif"
    code, _, err = _run(["idif", "--bids", str(root), "--out", str(out), "--label", "liver"], capsys)
    assert code == 2 and "'liver'" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()  # not even dataset_description.json
