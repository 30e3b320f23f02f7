"""BIDS-PET images (jaxkin.io.pet): reading lazily with timing, units, geometry and decay correction in every form
real scans carry, writing, the sidecar's validation, NaN/Inf voxels."""

import json
import math

import numpy as np
import pytest

import _real_scans as real
from _pet_files import AFFINE, DURATIONS_S, FRAMES, SHAPE, sidecar, write_raw_pet
from jaxkin import InputError
from jaxkin.decay import F18_HALF_LIFE_MIN, decay_factors
from jaxkin.io.pet import finite_voxel_mask, load_pet, nonfinite_message, write_pet


# ------------------------------------------------------------------------------------------ reading and writing

def test_load_pet_reads_units_timing_geometry_and_slices(pet_path, pet_data):
    pet = load_pet(pet_path)
    assert pet.shape == SHAPE and pet.prefix == "sub-01"
    assert pet.frames == FRAMES and pet.units == "Bq/mL" and pet.scale_to_kbq == 1e-3
    assert pet.decay_corrected is True
    np.testing.assert_allclose(pet.affine, AFFINE, atol=1e-5)
    np.testing.assert_allclose(pet.read(), pet_data / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(pet.read(slice(1, 3)), pet_data[:, :, 1:3] / 1000.0, rtol=1e-6)
    assert pet.read(slice(1, 3)).dtype == np.float32
    assert not pet.image.in_memory  # lazy: reads go through the proxy


def test_images_without_decay_correction_are_corrected_on_read(tmp_path, pet_data):
    """Undo decay by hand (frame mean of exp(-lam t)) and check that read() restores the corrected values."""
    lam = np.log(2) / 109.77
    t = np.linspace(FRAMES.start, FRAMES.end, 2001)  # [2001, F], minutes
    y = np.exp(-lam * t)
    mean_decay = (0.5 * (y[1:] + y[:-1]) * np.diff(t, axis=0)).sum(axis=0) / FRAMES.duration  # trapezoid rule
    raw = pet_data * mean_decay.astype(np.float32)
    path = write_raw_pet(tmp_path, raw, sidecar(ImageDecayCorrected=False, TracerRadionuclide="18F"))
    pet = load_pet(path)
    assert pet.decay_corrected is False
    np.testing.assert_allclose(pet.read(), pet_data / 1000.0, rtol=1e-5)
    bad = write_raw_pet(tmp_path, raw, sidecar(ImageDecayCorrected=False), name="sub-02_pet.nii.gz")
    with pytest.raises(InputError, match=r"sub-02_pet\.json: field 'TracerRadionuclide' is None"):
        load_pet(bad)


def test_write_pet_round_trip(tmp_path, pet_data):
    data_kbq = pet_data / 1000.0
    path = write_pet(tmp_path / "sub-02_pet.nii.gz", data_kbq, FRAMES, AFFINE, units="kBq/mL",
                          sidecar={"TracerName": "FDG"})
    pet = load_pet(path)
    assert pet.frames == FRAMES  # timing identical after seconds -> JSON -> minutes
    np.testing.assert_array_equal(pet.read(), data_kbq)  # kBq/mL: values bit-identical
    np.testing.assert_allclose(pet.affine, AFFINE, atol=1e-5)
    assert pet.sidecar["TracerName"] == "FDG"


def test_nonfinite_voxels_are_found(tmp_path, pet_data):
    data = pet_data.copy()
    data[4, 3, 1, 2] = np.nan  # an aorta voxel
    data[0, 0, 0, 5] = np.inf
    data[5, 4, 3, :] = -np.inf
    path = write_raw_pet(tmp_path, data, sidecar())
    pet = load_pet(path)
    mask = finite_voxel_mask(pet, slab=3)
    expected = np.ones(SHAPE[:3], bool)
    expected[4, 3, 1] = expected[0, 0, 0] = expected[5, 4, 3] = False
    np.testing.assert_array_equal(mask, expected)
    assert nonfinite_message(pet, mask) == f"{path}: 3 voxel(s) with NaN or Inf values excluded"
    assert nonfinite_message(pet, np.ones_like(mask)) is None


# ------------------------------------------------------------------------------------------ the forms of real scans

@pytest.mark.slow
def test_late_start_negative_blood_times_two_recordings(tmp_path, canonical):
    data, reference = canonical
    pet_path = real.write_pet_file(tmp_path / "sub-01_pet.nii.gz", data, real.pet_sidecar())
    maps, pet, blood = real.fit(pet_path, real.recordings(tmp_path))
    assert pet.frames.start[0] == pytest.approx(0.5) and pet.decay_factors is None
    assert blood.input.times[0] == 0.0  # samples before TimeZero are used, shifted to time since injection
    real.assert_same_maps(maps, reference)


@pytest.mark.slow
def test_decay_corrected_to_scan_start_with_and_without_decay_factor(tmp_path, canonical):
    data, reference = canonical
    to_scan_start = data * np.float32(math.exp(-real.LAM * -real.INJ))  # reference 0.5 min after injection
    path = real.write_pet_file(tmp_path / "sub-01_pet.nii.gz", to_scan_start, real.pet_sidecar(ImageDecayCorrectionTime=0))
    maps, pet, _ = real.fit(path, real.recordings(tmp_path))
    np.testing.assert_allclose(pet.read(), data, rtol=1e-6)
    real.assert_same_maps(maps, reference, same_bits=False)
    # A Siemens-style DecayFactor (what the scanner applied to each frame, to the scan start) gives the same maps.
    applied = decay_factors(real.FRAMES, F18_HALF_LIFE_MIN) * math.exp(-real.LAM * -real.INJ)
    folder = tmp_path / "dcf"
    folder.mkdir()
    path = real.write_pet_file(folder / "sub-01_pet.nii.gz", to_scan_start,
                      real.pet_sidecar(ImageDecayCorrectionTime=0, DecayFactor=[float(f) for f in applied]))
    maps, pet, _ = real.fit(path, real.recordings(folder))
    assert not pet.notes  # consistent with ImageDecayCorrectionTime: nothing to say
    np.testing.assert_allclose(pet.read(), data, rtol=1e-6)
    real.assert_same_maps(maps, reference, same_bits=False)


@pytest.mark.slow
def test_decay_factor_disagreeing_with_the_correction_time_is_said(tmp_path, canonical):
    data, reference = canonical
    applied = decay_factors(real.FRAMES, F18_HALF_LIFE_MIN)  # to the injection, while the time field says scan start
    path = real.write_pet_file(tmp_path / "sub-01_pet.nii.gz", data,
                      real.pet_sidecar(ImageDecayCorrectionTime=0, DecayCorrectionFactor=[float(f) for f in applied]))
    maps, pet, _ = real.fit(path, real.recordings(tmp_path))
    assert any("DecayCorrectionFactor differs" in n and "implies 0 s after the injection" in n for n in pet.notes)
    np.testing.assert_allclose(pet.read(), data, rtol=1e-6)  # the factor actually applied wins
    real.assert_same_maps(maps, reference, same_bits=False)


@pytest.mark.slow
def test_uncorrected_image(tmp_path, canonical):
    data, reference = canonical
    raw = data / decay_factors(real.FRAMES, F18_HALF_LIFE_MIN).astype(np.float32)
    path = real.write_pet_file(tmp_path / "sub-01_pet.nii.gz", raw, real.pet_sidecar(ImageDecayCorrected=False))
    maps, pet, _ = real.fit(path, real.recordings(tmp_path))
    np.testing.assert_allclose(pet.read(), data, rtol=1e-6)
    real.assert_same_maps(maps, reference, same_bits=False)


def test_bqml_is_bq_per_ml(tmp_path):
    """dcm2niix's BQML and Bq/cc read as Bq/mL: the same file bits give the same kBq/mL."""
    data = np.random.default_rng(2).uniform(0, 5e4, (*real.SHAPE, real.FRAMES.n_frames)).astype(np.float32)
    reads = []
    for units in ("Bq/mL", "BQML", "Bq/cc"):
        folder = tmp_path / units.replace("/", "_")
        folder.mkdir()
        reads.append(load_pet(real.write_pet_file(folder / "sub-01_pet.nii.gz", data, real.pet_sidecar(Units="Bq/mL")
                                              | {"Units": units})).read())
    np.testing.assert_array_equal(reads[0], reads[1])
    np.testing.assert_array_equal(reads[0], reads[2])


# ------------------------------------------------------------------------------------------ validation

_BAD_SIDECARS = [
    ("missing FrameTimesStart", dict(FrameTimesStart=None), "missing required field 'FrameTimesStart'"),
    ("missing FrameDuration", dict(FrameDuration=None), "missing required field 'FrameDuration'"),
    ("missing Units", dict(Units=None), "missing required field 'Units'"),
    ("missing ImageDecayCorrected", dict(ImageDecayCorrected=None), "missing required field 'ImageDecayCorrected'"),
    ("frame count", dict(FrameTimesStart=list(FRAMES.start_seconds[:6]), FrameDuration=DURATIONS_S[:6]),
     "'FrameTimesStart' lists 6 frames but sub-01_pet.nii.gz has 7 frames"),
    ("lengths differ", dict(FrameDuration=DURATIONS_S[:6]), "'FrameTimesStart' has 7 entries but 'FrameDuration' has 6"),
    ("non-increasing", dict(FrameTimesStart=[0, 10, 10, 50, 110, 230, 530]), "'FrameTimesStart' must be strictly increasing"),
    ("overlap", dict(FrameTimesStart=[0, 10, 15, 50, 110, 230, 530]), "frames overlap"),
    ("zero duration", dict(FrameDuration=[10, 10, 30, 0, 120, 300, 300]), "'FrameDuration' must be positive; frame 3"),
    ("negative duration", dict(FrameDuration=[10, -10, 30, 60, 120, 300, 300]), "'FrameDuration' must be positive"),
    ("unknown units", dict(Units="cps"), "field 'Units': unknown units 'cps'"),
    ("non-numeric", dict(FrameDuration=[10, "a", 30, 60, 120, 300, 300]), "'FrameDuration' must be a list of numbers"),
    ("decay flag", dict(ImageDecayCorrected="yes"), "'ImageDecayCorrected' must be true or false"),
]


@pytest.mark.parametrize("changes,message", [c[1:] for c in _BAD_SIDECARS], ids=[c[0] for c in _BAD_SIDECARS])
def test_bad_sidecar_names_file_and_field(tmp_path, pet_data, changes, message):
    path = write_raw_pet(tmp_path, pet_data, sidecar(**changes))
    with pytest.raises(InputError) as err:
        load_pet(path)
    text = str(err.value)
    assert "sub-01_pet.json" in text and message in text and "\n" not in text


def test_missing_sidecar(tmp_path, pet_data):
    path = write_raw_pet(tmp_path, pet_data, None)
    with pytest.raises(InputError, match=r"sub-01_pet\.nii\.gz: missing BIDS sidecar sub-01_pet\.json"):
        load_pet(path)


def test_3d_image_rejected(tmp_path, pet_data):
    path = write_raw_pet(tmp_path, pet_data[..., 0], sidecar())
    with pytest.raises(InputError, match=r"sub-01_pet\.nii\.gz: expected a 4D image"):
        load_pet(path)


def _bad_pet(tmp_path, **changes):
    path = real.write_pet_file(tmp_path / "sub-01_pet.nii.gz", np.ones((*real.SHAPE, real.FRAMES.n_frames), np.float32), real.pet_sidecar())
    sidecar = path.with_name("sub-01_pet.json")
    meta = {k: v for k, v in {**json.loads(sidecar.read_text()), **changes}.items() if v is not None}
    sidecar.write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize("field,value", [("InjectionStart", "10:00:00"), ("ImageDecayCorrectionTime", "start"),
                                         ("ScanStart", True)])
def test_timing_fields_must_be_numbers(tmp_path, field, value):
    path = _bad_pet(tmp_path, **{field: value})
    with pytest.raises(InputError, match=rf"sub-01_pet\.json: field '{field}' must be a number of seconds"):
        load_pet(path)


def test_missing_injection_start_is_assumed_and_said(tmp_path):
    pet = load_pet(_bad_pet(tmp_path, InjectionStart=None, ImageDecayCorrectionTime=0))
    assert pet.injection_start == 0.0 and pet.frames.start[0] == 0.0
    assert any("InjectionStart missing" in n for n in pet.notes)
    assert "InjectionStart missing" in " ".join(pet.provenance()["Assumptions"])


def test_suv_image_converted_with_the_dose_or_kept(tmp_path, pet_data):
    """An image in SUV: kBq/mL = SUV x injected activity / body weight when the sidecar gives both; kept otherwise."""
    dose = {"InjectedRadioactivity": 300.0, "InjectedRadioactivityUnits": "MBq", "BodyWeight": 60.0}
    converted = load_pet(write_raw_pet(tmp_path, pet_data, sidecar(Units="SUV", **dose)))
    assert converted.value_kind == "activity" and converted.scale_to_kbq == pytest.approx(300e3 / 60e3)
    assert any("SUV converted to kBq/mL (x injected 300 MBq / body weight 60 kg" in n for n in converted.notes)
    (tmp_path / "kept").mkdir()
    kept = load_pet(write_raw_pet(tmp_path / "kept", pet_data, sidecar(Units="SUV")))
    assert kept.value_kind == "SUV" and kept.scale_to_kbq == 1.0


@pytest.mark.parametrize("units", ["counts", "Bq", "propCps"])
def test_unknown_units_name_the_field(tmp_path, units):
    path = _bad_pet(tmp_path, Units=units)
    with pytest.raises(InputError, match=rf"sub-01_pet\.json: field 'Units': unknown units '{units}'"):
        load_pet(path)
