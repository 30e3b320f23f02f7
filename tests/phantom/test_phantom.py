"""The simulated phantom: kinetics against the exact evaluator, ground truth, noise statistics, PSF, datasets, CLI."""

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import jaxkin
from jaxkin import kinetics
from jaxkin import InputError, cli
from jaxkin.regions.idif import image_derived_input
from jaxkin.io.blood import load_blood
from jaxkin.io.labels import read_labels
from jaxkin.io.pet import load_pet
from jaxkin.io import dataset
from jaxkin import phantom
from jaxkin.phantom import simulate as phantom_simulate
from jaxkin.phantom import writer as phantom_writer

SEED = 7


@pytest.fixture(scope="module")
def clean():
    """Noiseless, unblurred subject 0 of the small preset."""
    return phantom.simulate_subject(0, seed=SEED, preset="small", noise_scale=0.0, fwhm_mm=0.0)


@pytest.fixture(scope="module")
def noisy():
    """The same subject with noise (no blur): the same anatomy and ground truth, another random stream."""
    return phantom.simulate_subject(0, seed=SEED, preset="small", noise_scale=1.0, fwhm_mm=0.0)


def _index(name):
    return next(i for i, n in phantom.LABELS.items() if n == name)


def test_all_organs_present_and_placed(clean):
    counts = {name: int(np.count_nonzero(clean.labels == i)) for i, name in phantom.LABELS.items()}
    assert all(c > 0 for c in counts.values()), counts
    assert clean.pet.shape == (32, 32, 24, 62) and clean.truth.shape == (32, 32, 24, 4)

    def centre(name):  # world coordinates (mm) of an organ's centre of mass
        ijk = np.argwhere(clean.labels == _index(name)).mean(axis=0)
        return clean.affine[:3, :3] @ ijk + clean.affine[:3, 3]

    assert centre("liver")[0] > 0 > centre("spleen")[0]  # RAS+: liver on the patient's right
    assert centre("lungs")[2] > centre("liver")[2] > centre("kidneys")[2] > centre("bladder")[2]
    assert centre("myocardium")[1] > centre("aorta")[1]  # heart anterior of the descending aorta


def _reference_tacs(params, inp, frames):
    """Frame-averaged irreversible 2TC TACs of ``params [N, 4]`` in NumPy float64, independent of jaxkin.kinetics.

    The input is piecewise linear on its knots (frame boundaries added), so I(t) = (C_p * e^{-lam t})(t) follows
    exactly from I(t+h) = E I(t) + c0 (1-E)/lam + (c1-c0)/h (x - (1-E))/lam^2 (x = lam h, E = e^{-x}), and its frame
    mean from dI/dt = C_p - lam I. The running integral P of C_p is piecewise quadratic.
    """
    t = np.union1d(inp.times, np.concatenate([frames.start, frames.end]))
    c = inp(t)
    k1, k2, k3, vb = params.T
    lam = np.maximum(k2 + k3, 1e-9)
    i_t = np.zeros((len(t), len(params)))
    for j in range(len(t) - 1):
        h = t[j + 1] - t[j]
        x = lam * h
        one_minus_e = -np.expm1(-x)
        i_t[j + 1] = np.exp(-x) * i_t[j] + c[j] * one_minus_e / lam + (c[j + 1] - c[j]) / h * (x - one_minus_e) / lam**2
    p_t = inp.integral(t)
    h = np.diff(t)
    p_area = np.concatenate([[0.0], np.cumsum(p_t[:-1] * h + c[:-1] * h**2 / 2 + (c[1:] - c[:-1]) * h**2 / 6)])
    a, b = np.searchsorted(t, frames.start), np.searchsorted(t, frames.end)
    d = frames.duration
    mean_p = (p_area[b] - p_area[a]) / d  # frame means of int C_p
    mean_c = (p_t[b] - p_t[a]) / d  # frame means of C_p
    mean_i = ((p_t[b] - p_t[a])[None, :] - (i_t[b] - i_t[a]).T) / (lam[:, None] * d)
    tissue = (k1 / lam)[:, None] * (k3[:, None] * mean_p + k2[:, None] * mean_i)
    return (1 - vb)[:, None] * tissue + vb[:, None] * mean_c


def test_noiseless_voxels_match_the_kinetic_model(clean):
    """Noiseless, unblurred phantom voxels against the kinetic core and an independent float64 reference."""
    rng = np.random.default_rng(0)
    picks = []
    for i in phantom.LABELS:
        vox = np.argwhere(clean.labels == i)
        picks.append(vox[rng.choice(len(vox), size=min(5, len(vox)), replace=False)])
    picks = np.concatenate(picks)
    params = clean.truth[tuple(picks.T)].astype(np.float64)
    measured = clean.pet[tuple(picks.T)]
    kin = jaxkin.prepare(clean.input_function, clean.frames)
    core = np.asarray(kinetics.two_tissue_irreversible(params.astype(np.float32), kin))
    np.testing.assert_allclose(measured, core, rtol=1e-6, atol=1e-6)
    reference = _reference_tacs(params, clean.input_function, clean.frames)
    np.testing.assert_allclose(measured, reference, rtol=1e-4, atol=1e-5 * reference.max())
    # Blood pool and aorta: vB = 1, so their TAC is the input function's frame means (closed form).
    f = clean.frames
    blood_means = (clean.input_function.integral(f.end) - clean.input_function.integral(f.start)) / f.duration
    blood = clean.pet[clean.labels == _index("aorta")]
    np.testing.assert_allclose(blood, np.broadcast_to(blood_means, blood.shape), rtol=1e-5, atol=1e-5)
    assert np.all(clean.pet[clean.labels == 0] == 0)


def test_ground_truth_matches_the_organ_table(clean):
    for name, table in phantom.ORGAN_PARAMETERS.items():
        mask = clean.labels == _index(name)
        subject = clean.organ_params[name]
        organ_mean = clean.truth[mask].mean(axis=0)
        if name in phantom.BLOOD_LABELS:
            np.testing.assert_array_equal(clean.truth[mask], np.broadcast_to([0, 0, 0, 1], (mask.sum(), 4)))
            continue
        # The subject's organ values vary around the table with the stated log-SD; the organ means of the map
        # around the subject's values with the heterogeneity's log-SD (a smooth field: few independent samples).
        nz = np.asarray(table) > 0
        assert np.all(subject[~nz] == 0) and np.all(organ_mean[~nz] == 0)
        assert np.all(np.abs(np.log(subject[nz] / np.asarray(table)[nz])) < 4 * phantom.SUBJECT_SD), (name, subject)
        assert np.all(np.abs(np.log(organ_mean[nz] / subject[nz])) < 3 * phantom.HETEROGENEITY_SD), (name, organ_mean)
    # Voxel-level spread inside large organs is the designed heterogeneity.
    for name in ("body", "lungs"):
        mask = clean.labels == _index(name)
        spread = np.log(clean.truth[mask][:, :3] / clean.organ_params[name][:3]).std(axis=0)
        assert np.all(np.abs(spread / phantom.HETEROGENEITY_SD - 1) < 0.3), (name, spread)
    assert clean.truth[..., 3].max() <= 1.0 and clean.truth.min() >= 0.0


def test_noise_has_the_designed_mean_and_variance(clean, noisy):
    np.testing.assert_array_equal(noisy.truth, clean.truth)  # noise does not touch the ground truth
    np.testing.assert_array_equal(noisy.labels, clean.labels)
    sd = phantom.noise_sd(clean.pet, clean.frames, 1.0)
    # The formula itself, by hand for one frame: s * C * exp(ln2 t_mid / 109.77) / duration.
    f = 50
    c = clean.pet[clean.labels == _index("liver")][:, f]
    by_hand = np.sqrt(phantom.NOISE_S * c * 2 ** (clean.frames.mid[f] / 109.77) / clean.frames.duration[f])
    np.testing.assert_allclose(sd[clean.labels == _index("liver")][:, f], by_hand, rtol=1e-5)
    inside = clean.pet > 0
    z = (noisy.pet - clean.pet)[inside] / sd[inside]
    frame_of = np.broadcast_to(np.arange(62), clean.pet.shape)[inside]
    n = np.bincount(frame_of)
    mean = np.bincount(frame_of, z) / n
    var = np.bincount(frame_of, z * z) / n - mean**2
    assert np.all(np.abs(mean) < 5 / np.sqrt(n)), mean  # per frame, ~10^4 voxels each
    assert np.all(np.abs(var - 1) < 6 * np.sqrt(2 / n)), var
    assert abs(z.mean()) < 5 / np.sqrt(z.size) and abs(z.var() - 1) < 0.01
    assert np.all(noisy.pet[~inside] == 0)  # no activity, no noise
    # Late liver frames: a few per cent noise at the default scale.
    rel = sd[clean.labels == _index("liver")][:, -1] / c.mean()
    assert 0.02 < rel.mean() < 0.08


def test_noise_is_seeded_per_subject():
    a = phantom.simulate_subject(1, seed=3, preset="small", fwhm_mm=0.0)
    b = phantom.simulate_subject(1, seed=3, preset="small", fwhm_mm=0.0)
    c = phantom.simulate_subject(2, seed=3, preset="small", fwhm_mm=0.0)
    np.testing.assert_array_equal(a.pet, b.pet)
    assert not np.array_equal(a.labels, c.labels) and a.input_delay != c.input_delay


def test_psf_width_and_conservation():
    vol = np.zeros((41, 41, 41, 1), np.float32)
    vol[20, 20, 20] = 1.0
    out = phantom_simulate._blur(vol, 10.0, (2.0, 2.5, 4.0))[..., 0]
    assert out.sum() == pytest.approx(1.0, rel=1e-5)
    grid = np.indices(out.shape) - 20
    for axis, v in enumerate((2.0, 2.5, 4.0)):
        sigma_mm = np.sqrt((out * grid[axis] ** 2).sum()) * v
        assert sigma_mm == pytest.approx(10.0 / 2.3548, rel=0.03)
    assert phantom_simulate._blur(vol, 0.0, (2.0, 2.5, 4.0)) is vol


def test_split_counts():
    assert phantom.split_counts(23) == (10, 4, 9)
    assert phantom.split_counts(3) == (1, 1, 1)
    assert phantom.split_counts(1) == (1, 0, 0)
    assert all(sum(phantom.split_counts(n)) == n for n in range(1, 40))


# ------------------------------------------------------------------------------------------ datasets


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "phantom"
    phantom.simulate_dataset(out, subjects=2, seed=SEED, preset="small", noise_scale=0.0, fwhm_mm=0.0, workers=2)
    return out


def test_dataset_round_trip(small_dataset, clean):
    assert dataset.list_subjects(small_dataset) == ["sub-01", "sub-02"]
    assert dataset.dataset_split(small_dataset) == {"train": ["sub-01"], "val": ["sub-02"], "test": []}
    files = dataset.subject_files(small_dataset, "01")
    pet = load_pet(files.pet)
    assert pet.frames == jaxkin.FrameSchedule.quadra() and pet.units == "kBq/mL" and pet.prefix == "sub-01"
    np.testing.assert_array_equal(pet.read(), clean.pet)  # identical values
    np.testing.assert_allclose(pet.affine, clean.affine, atol=1e-6)
    np.testing.assert_allclose(pet.voxel_size, clean.voxel_mm)
    inp = load_blood(files.blood[0], pet=pet).input
    np.testing.assert_allclose(inp.times, clean.input_function.times, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(inp.values, clean.input_function.values, rtol=1e-13, atol=1e-15)
    labels = read_labels(files.labels, pet=pet, default_groups=False, resample=False)
    np.testing.assert_array_equal(labels.data, clean.labels)
    assert labels.names == phantom.LABELS
    assert sorted(files.truth) == ["K1", "Ki", "k2", "k3", "vB"]
    for i, name in enumerate(phantom.PARAM_NAMES):
        np.testing.assert_array_equal(np.asarray(nib.load(str(files.truth[name])).dataobj), clean.truth[..., i])
    meta = json.loads(files.truth["K1"].with_name("sub-01_model-2tcmirr_meas-K1_mimap.json").read_text())
    assert meta["ModelName"] == "2tcmirr" and meta["Units"] == "mL/cm3/min" and meta["SoftwareName"] == "jaxkin"
    organs = dataset.load_organ_truth(small_dataset, "sub-01")
    assert organs["liver"]["K1"] == pytest.approx(clean.organ_params["liver"][0], rel=1e-5)
    description = json.loads((small_dataset / "dataset_description.json").read_text())
    assert description["SimulationParameters"]["Split"] == {"train": 1, "val": 1, "test": 0}
    assert not [p for p in small_dataset.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    # sub-02 was simulated in a worker thread: the same as in the main thread.
    second = phantom.simulate_subject(1, seed=SEED, preset="small", noise_scale=0.0, fwhm_mm=0.0)
    np.testing.assert_array_equal(load_pet(dataset.subject_files(small_dataset, "sub-02").pet).read(), second.pet)


#: BIDS-PET's REQUIRED ``*_pet.json`` fields and their types (bids-specification src/schema/rules/sidecars/pet.yaml,
#: src/schema/objects/metadata.yaml): "num" a JSON number, "num|n/a" a number or "n/a", lists of str or numbers.
REQUIRED_PET_FIELDS = {
    "Manufacturer": "str", "ManufacturersModelName": "str", "Units": "str",
    "TracerName": "str", "TracerRadionuclide": "str", "InjectedRadioactivity": "num",
    "InjectedRadioactivityUnits": "str", "InjectedMass": "num|n/a", "InjectedMassUnits": "str",
    "SpecificRadioactivity": "num|n/a", "SpecificRadioactivityUnits": "str", "ModeOfAdministration": "str",
    "TimeZero": "time", "ScanStart": "num", "InjectionStart": "num", "FrameTimesStart": "[num]",
    "FrameDuration": "[num]", "AcquisitionMode": "str", "ImageDecayCorrected": "bool",
    "ImageDecayCorrectionTime": "num", "ReconMethodName": "str", "ReconMethodParameterLabels": "[str]",
    "ReconMethodParameterUnits": "[str]", "ReconMethodParameterValues": "[num]", "ReconFilterType": "str|[str]",
    "ReconFilterSize": "num|[num]", "AttenuationCorrection": "str",
}


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is(value, kind):
    import re

    num = _number
    return {
        "str": lambda v: isinstance(v, str) and v != "",
        "num": num,
        "num|n/a": lambda v: num(v) or v == "n/a",
        "bool": lambda v: isinstance(v, bool),
        "time": lambda v: isinstance(v, str) and re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?", v),
        "[num]": lambda v: isinstance(v, list) and len(v) > 0 and all(num(x) for x in v),
        "[str]": lambda v: isinstance(v, list) and len(v) > 0 and all(isinstance(x, str) for x in v),
        "str|[str]": lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
        "num|[num]": lambda v: num(v) or (isinstance(v, list) and all(num(x) for x in v)),
    }[kind](value)


def test_simulated_dataset_is_valid_bids(small_dataset):
    """Every REQUIRED pet.json field, typed; the dataset descriptions; the label map in the ground-truth derivative."""
    f = jaxkin.FrameSchedule.quadra()
    for sid in ("sub-01", "sub-02"):
        meta = json.loads((small_dataset / sid / "pet" / f"{sid}_pet.json").read_text())
        for field, kind in REQUIRED_PET_FIELDS.items():
            assert field in meta and _is(meta[field], kind), (sid, field, meta.get(field))
        assert meta["ModeOfAdministration"] in ("bolus", "infusion", "bolus-infusion")
        assert meta["InjectedMassUnits"] == meta["SpecificRadioactivityUnits"] == "n/a"  # FDG: not available
        assert len(meta["FrameTimesStart"]) == len(meta["FrameDuration"]) == 62
        n = len(meta["ReconMethodParameterLabels"])
        assert len(meta["ReconMethodParameterUnits"]) == len(meta["ReconMethodParameterValues"]) == n
        assert meta["ReconFilterType"] == "none"  # the fixture has no PSF
        # Injected radioactivity: the nominal patient's dose for this subject's input (the TSV at 60 min).
        table = np.loadtxt(small_dataset / sid / "pet" / f"{sid}_recording-AIF_blood.tsv", skiprows=1)
        blood_60 = float(table[np.argmin(np.abs(table[:, 0] - 3600.0)), 1])  # kBq/mL, a knot at 3600 s
        dose = blood_60 * phantom.NOMINAL_WEIGHT_KG / phantom.NOMINAL_BLOOD_SUV_60_MIN  # kBq/mL * 1000 mL / 1000
        assert meta["InjectedRadioactivity"] == pytest.approx(dose, rel=1e-3) and 200 < dose < 900
        # Decay correction to TimeZero: frame duration over the frame's integral of exp(-lam t) (quadrature).
        lam = np.log(2.0) / 109.77
        t = np.linspace(f.start, f.end, 2001)  # [2001, F] min
        integral = np.trapezoid(np.exp(-lam * t), t, axis=0)
        np.testing.assert_allclose(meta["DecayCorrectionFactor"], f.duration / integral, rtol=1e-6)
        assert not list((small_dataset / sid / "pet").glob("*_dseg*"))  # raw BIDS has no dseg in pet/
        anat = small_dataset / "derivatives" / "groundtruth" / sid / "anat"
        assert (anat / f"{sid}_dseg.nii.gz").is_file() and (anat / f"{sid}_dseg.tsv").is_file()
        assert phantom.subject_paths(small_dataset, sid)["labels"] == anat / f"{sid}_dseg.nii.gz"
    raw = json.loads((small_dataset / "dataset_description.json").read_text())
    truth = json.loads((small_dataset / "derivatives" / "groundtruth" / "dataset_description.json").read_text())
    for description, kind in ((raw, "raw"), (truth, "derivative")):
        assert _is(description["Name"], "str") and _is(description["BIDSVersion"], "str")
        assert description["DatasetType"] == kind
        assert description["GeneratedBy"] and all(_is(g["Name"], "str") for g in description["GeneratedBy"])


def test_image_derived_input_from_the_aorta(small_dataset, clean):
    files = dataset.subject_files(small_dataset, "sub-01")
    pet = load_pet(files.pet)
    idif = image_derived_input(pet, read_labels(files.labels, pet=pet, default_groups=False, resample=False), "aorta")
    f = pet.frames
    means = (clean.input_function.integral(f.end) - clean.input_function.integral(f.start)) / f.duration
    np.testing.assert_allclose(idif(f.mid), means, rtol=1e-5)


def test_idif_command(small_dataset, tmp_path, capsys):
    files = dataset.subject_files(small_dataset, "sub-01")
    out = tmp_path / "sub-01_recording-IDIF_blood.tsv"
    assert cli.main(["idif", "--pet", str(files.pet), "--labels", str(files.labels), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    pet = load_pet(files.pet)
    expected = image_derived_input(pet, read_labels(files.labels, pet=pet, default_groups=False, resample=False), "aorta")
    back = load_blood(out, pet=pet).input
    np.testing.assert_allclose(back.values, expected.values, rtol=1e-12)
    # A broken sidecar: exit 2, one line naming the file and the field, no output.
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad_pet = bad_dir / "sub-01_pet.nii.gz"
    bad_pet.write_bytes(files.pet.read_bytes())
    meta = json.loads(files.pet.with_name("sub-01_pet.json").read_text())
    del meta["FrameDuration"]
    (bad_dir / "sub-01_pet.json").write_text(json.dumps(meta))
    out2 = tmp_path / "x_blood.tsv"
    assert cli.main(["idif", "--pet", str(bad_pet), "--labels", str(files.labels), "--out", str(out2)]) == 2
    err = capsys.readouterr().err
    assert err == f"jaxkin idif: error: {bad_dir / 'sub-01_pet.json'}: missing required field 'FrameDuration'\n"
    assert not out2.exists()
    assert cli.main(["idif", "--pet", str(files.pet), "--labels", str(files.labels), "--label", "heart",
                     "--out", str(out2)]) == 2
    assert "no label named 'heart'" in capsys.readouterr().err and not out2.exists()


def test_dataset_split_errors(tmp_path):
    (tmp_path / "sub-01" / "pet").mkdir(parents=True)
    with pytest.raises(InputError, match="participants.tsv: file not found"):
        dataset.dataset_split(tmp_path)
    (tmp_path / "participants.tsv").write_text("participant_id\tage\nsub-01\t40\n")
    with pytest.raises(InputError, match="participants.tsv: missing column 'split'"):
        dataset.dataset_split(tmp_path)
    (tmp_path / "participants.tsv").write_text("participant_id\tsplit\nsub-01\ttraining\n")
    with pytest.raises(InputError, match="column 'split', line 2: 'training' is not one of train, val, test"):
        dataset.dataset_split(tmp_path)
    with pytest.raises(InputError, match=r"sub-01/pet: no \*_pet.nii\[.gz\] found"):
        dataset.subject_files(tmp_path, "sub-01")


# ------------------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize("args,message", [
    (["--subjects", "0"], "--subjects: must be at least 1"),
    (["--noise-scale", "-1"], "--noise-scale: must be >= 0"),
    (["--fwhm-mm", "-2"], "--fwhm-mm: must be >= 0"),
    (["--units", "SUV"], "--units: unknown units 'SUV'"),
])
def test_cli_bad_options(tmp_path, capsys, args, message):
    out = tmp_path / "ds"
    assert cli.main(["simulate", "--out", str(out)] + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxkin simulate: error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary folder left


def test_cli_refuses_a_non_empty_output(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert cli.main(["simulate", "--out", str(tmp_path)]) == 2
    assert "already exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_cli_unwritable_output(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert cli.main(["simulate", "--out", str(tmp_path / "file" / "ds")]) == 2
    assert "cannot create the dataset folder" in capsys.readouterr().err


def test_failure_midway_leaves_no_partial_output(tmp_path, monkeypatch):
    calls = []

    def failing_write(root, subject, **kw):
        calls.append(subject.subject_id)
        if len(calls) == 2:
            raise InputError("disk full (simulated)")
        return original(root, subject, **kw)

    original = phantom_writer.write_subject
    monkeypatch.setattr(phantom_writer, "write_subject", failing_write)
    with pytest.raises(InputError, match="disk full"):
        phantom.simulate_dataset(tmp_path / "ds", subjects=2, seed=1, workers=1)
    assert calls == ["sub-01", "sub-02"] and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_exit_status_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jaxkin", "simulate", "--out", str(tmp_path / "x"), "--subjects",
                           "-3"], capture_output=True, text=True, cwd=Path(__file__).parents[2],
                          env={"PYTHONPATH": str(Path(__file__).parents[2]), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "jaxkin simulate: error: --subjects: must be at least 1, got -3"
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()
