"""The phantom as a BIDS dataset (jaxkin.phantom.writer): read back through jaxkin.io it is the simulated subject;
every REQUIRED BIDS-PET field; the ground truth; no partial output after a failure."""

import json

import nibabel as nib
import numpy as np
import pytest

import jaxkin
from jaxkin import InputError, phantom
from jaxkin.io import dataset
from jaxkin.io.blood import load_blood
from jaxkin.io.labels import read_labels
from jaxkin.io.layout import BIDS_VERSION
from jaxkin.io.pet import load_pet
from jaxkin.phantom import writer as phantom_writer

SEED = 7


@pytest.fixture(scope="module")
def clean():
    """Noiseless, unblurred subject 0 of the small preset."""
    return phantom.simulate_subject(0, seed=SEED, preset="small", noise_scale=0.0, fwhm_mm=0.0)


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
        assert description["BIDSVersion"] == BIDS_VERSION


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


def test_an_interrupt_stops_the_subjects_not_started_and_leaves_nothing(tmp_path, monkeypatch):
    """Ctrl-C while subjects are written on threads: the subjects not started are dropped, the one being written
    finishes, then the temporary folder is removed whole (no hidden ``.ds.*.tmp`` left beside the output)."""
    import time
    from types import SimpleNamespace

    calls = []

    def write(root, subject, **kw):
        calls.append(subject.subject_id)
        (root / f"{subject.subject_id}.bin").write_bytes(b"0" * 1000)
        if subject.subject_id == "sub-02":
            raise KeyboardInterrupt
        time.sleep(0.2)

    monkeypatch.setattr(phantom_writer, "simulate_subject", lambda i, **kw: SimpleNamespace(
        subject_id=f"sub-{i + 1:02d}", input_scale=1.0, input_delay=0.0))
    monkeypatch.setattr(phantom_writer, "write_subject", write)
    with pytest.raises(KeyboardInterrupt):
        phantom.simulate_dataset(tmp_path / "ds", subjects=8, seed=1, workers=1)
    assert "sub-08" not in calls and list(tmp_path.iterdir()) == []


def test_the_size_and_time_estimate():
    size, seconds = phantom_writer.dataset_estimate("paper")
    assert size == 23 * 112 * 112 * 80 * 62 * 4  # float32 images of the 23 subjects, 62 frames
    assert seconds == pytest.approx(size / phantom_writer.WRITE_BYTES_PER_S)
    assert phantom_writer.dataset_estimate("small", 8, "quadra69")[0] == 8 * 32 * 32 * 24 * 69 * 4


@pytest.mark.parametrize("options,message", [
    ({"subjects": 0}, "^subjects: must be at least 1, got 0$"),
    ({"noise_scale": -1.0}, "^noise_scale: must be >= 0, got -1.0$"),
    ({"fwhm_mm": float("nan")}, "^fwhm_mm: must be >= 0, got nan$"),
    ({"units": "SUV"}, "^units: unknown units 'SUV'"),
    ({"frames": "quadra70"}, "^frames: unknown frame schedule 'quadra70'"),
])
def test_bad_options_name_the_parameter(tmp_path, options, message):
    with pytest.raises(InputError, match=message):
        phantom.simulate_dataset(tmp_path / "ds", **options)
    assert list(tmp_path.iterdir()) == []
