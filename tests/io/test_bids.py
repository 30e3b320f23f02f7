"""BIDS-PET reading and writing: round trips, validation errors, NaN handling, image-derived input."""

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from jaxkin import FrameSchedule, InputError, InputFunction
from jaxkin.io.labels import Labels, read_labels, write_labels
from jaxkin.io.pet import finite_voxel_mask, load_pet, nonfinite_message, write_pet
from jaxkin.regions.idif import image_derived_input
from jaxkin.io.blood import load_blood, write_blood
from jaxkin.io.maps import map_path, write_map
from jaxkin.io.units import units_to_kbq

SHAPE = (6, 5, 4, 7)
DURATIONS_S = [10.0, 10.0, 30.0, 60.0, 120.0, 300.0, 300.0]
FRAMES = FrameSchedule.from_durations(DURATIONS_S)
# An oblique affine with 2.5 x 2 x 3 mm voxels: checks that geometry is kept, not rebuilt.
_ROT = np.array([[np.cos(0.2), -np.sin(0.2), 0], [np.sin(0.2), np.cos(0.2), 0], [0, 0, 1.0]])
AFFINE = np.eye(4)
AFFINE[:3, :3] = _ROT @ np.diag([2.5, 2.0, 3.0])
AFFINE[:3, 3] = [-7.5, 12.0, -100.0]


def _sidecar(**changes):
    meta = {
        "FrameTimesStart": [float(s) for s in FRAMES.start_seconds],
        "FrameDuration": list(DURATIONS_S),
        "Units": "Bq/mL",
        "ImageDecayCorrected": True,
        "TracerName": "FDG",
    }
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    return meta


def _write_raw_pet(directory: Path, data, meta, name="sub-01_pet.nii.gz", affine=AFFINE) -> Path:
    """A PET file written with nibabel directly (independent of jaxkin's writer) plus its sidecar."""
    path = directory / name
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), str(path))
    if meta is not None:
        stem = name.split(".nii")[0]
        (directory / f"{stem}.json").write_text(json.dumps(meta))
    return path


@pytest.fixture(scope="module")
def pet_data():
    rng = np.random.default_rng(3)
    return rng.uniform(0, 20000, SHAPE).astype(np.float32)  # Bq/mL


@pytest.fixture
def pet_path(tmp_path, pet_data):
    return _write_raw_pet(tmp_path, pet_data, _sidecar())


# ------------------------------------------------------------------------------------------ round trips


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
    path = _write_raw_pet(tmp_path, raw, _sidecar(ImageDecayCorrected=False, TracerRadionuclide="18F"))
    pet = load_pet(path)
    assert pet.decay_corrected is False
    np.testing.assert_allclose(pet.read(), pet_data / 1000.0, rtol=1e-5)
    bad = _write_raw_pet(tmp_path, raw, _sidecar(ImageDecayCorrected=False), name="sub-02_pet.nii.gz")
    with pytest.raises(InputError, match=r"sub-02_pet\.json: field 'TracerRadionuclide' is None"):
        load_pet(bad)


def test_write_pet_and_write_map_round_trip(tmp_path, pet_data):
    data_kbq = pet_data / 1000.0
    path = write_pet(tmp_path / "sub-02_pet.nii.gz", data_kbq, FRAMES, AFFINE, units="kBq/mL",
                          sidecar={"TracerName": "FDG"})
    pet = load_pet(path)
    assert pet.frames == FRAMES  # timing identical after seconds -> JSON -> minutes
    np.testing.assert_array_equal(pet.read(), data_kbq)  # kBq/mL: values bit-identical
    np.testing.assert_allclose(pet.affine, AFFINE, atol=1e-5)
    assert pet.sidecar["TracerName"] == "FDG"

    k1 = np.random.default_rng(0).uniform(0, 1, SHAPE[:3]).astype(np.float32)
    out = tmp_path / "maps"
    written = write_map(out, pet.prefix, "2tcmirr", "K1", k1, reference=pet, units="mL/cm3/min",
                             command_line="jaxkin fit x", extra={"Note": 1})
    assert written == out / "sub-02_model-2tcmirr_meas-K1_mimap.nii.gz" == map_path(out, "sub-02", "2tcmirr", "K1")
    back = nib.load(str(written))
    np.testing.assert_array_equal(np.asarray(back.dataobj), k1)
    np.testing.assert_array_equal(back.affine, pet.image.affine)
    np.testing.assert_allclose(back.header.get_zooms(), pet.image.header.get_zooms()[:3])
    assert back.header["sform_code"] == pet.image.header["sform_code"]
    meta = json.loads((out / "sub-02_model-2tcmirr_meas-K1_mimap.json").read_text())
    assert meta["ModelName"] == "2tcmirr" and meta["Parameter"] == "K1" and meta["Units"] == "mL/cm3/min"
    assert meta["SoftwareName"] == "jaxkin" and meta["CommandLine"] == "jaxkin fit x" and meta["Note"] == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "sub-02_model-2tcmirr_meas-K1_mimap.json", "sub-02_model-2tcmirr_meas-K1_mimap.nii.gz"]  # no temp files
    with pytest.raises(ValueError, match="spatial shape"):
        write_map(out, pet.prefix, "2tcmirr", "K1", k1[:-1], reference=pet, units="1")


def test_unwritable_output_is_an_input_error(tmp_path, pet_path):
    pet = load_pet(pet_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the output folder should be
    with pytest.raises(InputError, match=r"file/sub-01_model-2tcmirr_meas-K1_mimap\.nii\.gz: cannot write"):
        write_map(blocker, "sub-01", "2tcmirr", "K1", np.zeros(SHAPE[:3]), reference=pet, units="1")


def test_input_function_round_trip_with_units(tmp_path, pet_path):
    pet = load_pet(pet_path)
    t = np.linspace(0, FRAMES.end[-1] + 0.5, 50)
    inp = InputFunction(t, 100 * np.exp(-t / 7.0) * t)
    path = write_blood(tmp_path / "sub-01_blood.tsv", plasma=inp, units="Bq/mL")
    assert path.read_text().splitlines()[0] == "time\tplasma_radioactivity"
    back = load_blood(path, pet=pet).input  # units from the TSV's sidecar, not the PET
    np.testing.assert_allclose(back.times, inp.times, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(back.values, inp.values, rtol=1e-14)
    # No sidecar: the PET's units (Bq/mL here) apply; without a PET that is an error.
    path.with_suffix(".json").unlink()
    np.testing.assert_allclose(load_blood(path, pet=pet).input.values, inp.values, rtol=1e-14)
    with pytest.raises(InputError, match=r"sub-01_blood\.tsv: units of column 'plasma_radioactivity' unknown"):
        load_blood(path).input


@pytest.mark.parametrize("units,scale", [("Bq/mL", 1e-3), ("Bq/ml", 1e-3), ("kBq/mL", 1.0), ("KBQ/ML", 1.0),
                                         ("MBq/mL", 1e3), ("kBq/cc", 1.0)])
def test_units_accepted(units, scale):
    assert units_to_kbq(units) == scale


# ------------------------------------------------------------------------------------------ PET validation

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
    ("unknown units", dict(Units="SUV"), "field 'Units': unknown units 'SUV'"),
    ("non-numeric", dict(FrameDuration=[10, "a", 30, 60, 120, 300, 300]), "'FrameDuration' must be a list of numbers"),
    ("decay flag", dict(ImageDecayCorrected="yes"), "'ImageDecayCorrected' must be true or false"),
]


@pytest.mark.parametrize("changes,message", [c[1:] for c in _BAD_SIDECARS], ids=[c[0] for c in _BAD_SIDECARS])
def test_bad_sidecar_names_file_and_field(tmp_path, pet_data, changes, message):
    path = _write_raw_pet(tmp_path, pet_data, _sidecar(**changes))
    with pytest.raises(InputError) as err:
        load_pet(path)
    text = str(err.value)
    assert "sub-01_pet.json" in text and message in text and "\n" not in text


def test_missing_sidecar(tmp_path, pet_data):
    path = _write_raw_pet(tmp_path, pet_data, None)
    with pytest.raises(InputError, match=r"sub-01_pet\.nii\.gz: missing BIDS sidecar sub-01_pet\.json"):
        load_pet(path)


def test_3d_image_rejected(tmp_path, pet_data):
    path = _write_raw_pet(tmp_path, pet_data[..., 0], _sidecar())
    with pytest.raises(InputError, match=r"sub-01_pet\.nii\.gz: expected a 4D image"):
        load_pet(path)


@pytest.mark.parametrize("name", ["sub-01_pet.nii.gz", "sub-01_pet.nii"])
def test_truncated_nifti(tmp_path, name):
    data = np.random.default_rng(1).normal(size=SHAPE).astype(np.float32)  # incompressible: truncation cuts data
    path = _write_raw_pet(tmp_path, data, _sidecar(), name=name)
    load_pet(path)  # intact: fine
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=rf"{name}: truncated"):
        load_pet(path)


def test_unreadable_nifti(tmp_path):
    path = tmp_path / "sub-01_pet.nii.gz"
    path.write_bytes(gzip.compress(b"this is not a NIfTI header" * 20))
    (tmp_path / "sub-01_pet.json").write_text(json.dumps(_sidecar()))
    with pytest.raises(InputError, match=r"sub-01_pet\.nii\.gz: cannot read NIfTI header"):
        load_pet(path)


def test_multi_member_gzip_is_accepted(tmp_path, pet_data):
    """A valid file whose gzip trailer does not hold the total size (two members) passes the integrity check."""
    path = _write_raw_pet(tmp_path, pet_data, _sidecar())
    raw = gzip.decompress(path.read_bytes())
    half = len(raw) // 2
    path.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]))
    np.testing.assert_allclose(load_pet(path).read(), pet_data / 1000, rtol=1e-6)


# ------------------------------------------------------------------------------------------ input function validation


def _write_tsv(path: Path, header, rows):
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


def test_input_function_must_cover_the_scan(tmp_path, pet_path):
    pet = load_pet(pet_path)
    end_s = FRAMES.end[-1] * 60
    short = _write_tsv(tmp_path / "short.tsv", ["time", "AIF"], [[0, 0], [60, 5000], [float(end_s) - 300, 100]])
    with pytest.raises(InputError, match=r"short\.tsv: column 'time': the input ends at 530 s since injection but "
                                         r"the scan ends at 830 s; jaxkin extends it by at most 20% of the scan"):
        load_blood(short, pet=pet).input
    late = _write_tsv(tmp_path / "late.tsv", ["time", "AIF"], [[-5, 0], [60, 5000], [float(end_s) + 1, 100]])
    load_blood(late, pet=pet).input  # starts before the scan: fine
    # A first sample after t = 0 is ramped from (0, 0), so it covers a scan starting at 0.
    ramp = _write_tsv(tmp_path / "ramp.tsv", ["time", "AIF"], [[5, 1000], [float(end_s) + 1, 100]])
    assert load_blood(ramp, pet=pet).input.times[0] == 0.0


@pytest.mark.parametrize("header,rows,message", [
    (["t", "AIF"], [[0, 1], [1, 2]], "missing column 'time'"),
    (["time", "blood"], [[0, 1], [1, 2]], "no blood column; expected some of plasma_radioactivity"),
    (["time", "AIF"], [[0, 1], [1, "x"]], "column 'AIF', line 3: 'x' is not a number"),
    (["time", "AIF"], [[0, 1], [1, "nan"]], "column 'AIF', line 3: 'nan' is not a finite number; write n/a"),
    (["time", "AIF"], [[0, 1], [0, 2], [5, 1]], "column 'time' must be strictly increasing"),
    (["time", "AIF"], [[0, 1]], "at least two samples at or after the injection"),
])
def test_bad_input_function_tsv(tmp_path, pet_path, header, rows, message):
    pet = load_pet(pet_path)
    path = _write_tsv(tmp_path / "if.tsv", header, rows)
    with pytest.raises(InputError, match="if.tsv: " + message.replace("(", r"\(")):
        load_blood(path, pet=pet).input


def test_input_function_column_choice_and_sidecar_units(tmp_path):
    path = _write_tsv(tmp_path / "b.tsv", ["time", "whole_blood_radioactivity", "plasma_radioactivity"],
                      [[0, 1, 2], [60, 3, 4]])
    (tmp_path / "b.json").write_text(json.dumps({"time": {"Units": "s"}, "plasma_radioactivity": {"Units": "MBq/mL"},
                                                 "whole_blood_radioactivity": {"Units": "Bq/mL"}}))
    np.testing.assert_allclose(load_blood(path).input.values, [2000, 4000])  # plasma preferred
    blood = load_blood(path, column="whole_blood_radioactivity").input
    np.testing.assert_allclose(blood.values, [1e-3, 3e-3])
    np.testing.assert_allclose(blood.times, [0, 1])  # minutes
    (tmp_path / "b.json").write_text(json.dumps({"plasma_radioactivity": {"Units": "counts"}}))
    with pytest.raises(InputError, match=r"b\.json: field 'plasma_radioactivity.Units': unknown units 'counts'"):
        load_blood(path).input


# ------------------------------------------------------------------------------------------ labels


NAMES = {1: "liver", 2: "aorta"}


def _labels(shape=SHAPE[:3]):
    lab = np.zeros(shape, np.uint8)
    lab[1:3, 1:3, :] = 1
    lab[4, 3, 1:3] = 2
    return lab


def test_labels_round_trip_and_checks(tmp_path, pet_path):
    pet = load_pet(pet_path)
    lab = _labels()
    path = write_labels(tmp_path / "sub-01_dseg.nii.gz", lab, NAMES, pet.affine)
    labels = read_labels(path, pet=pet, default_groups=False, resample=False)
    np.testing.assert_array_equal(labels.data, lab)
    assert labels.names == NAMES
    np.testing.assert_array_equal(labels.mask("aorta"), lab == 2)
    np.testing.assert_array_equal(labels.mask("aorta", "liver"), lab > 0)
    with pytest.raises(InputError, match="no label named 'spleen'"):
        labels.mask("spleen")

    wrong_shape = write_labels(tmp_path / "a_dseg.nii.gz", _labels((6, 5, 3)), NAMES, pet.affine)
    with pytest.raises(InputError, match=r"a_dseg\.nii\.gz: shape \(6, 5, 3\) differs from the PET image sub-01_pet"):
        read_labels(wrong_shape, pet=pet, default_groups=False, resample=False)
    shifted = pet.affine.copy()
    shifted[0, 3] += 2.5
    wrong_affine = write_labels(tmp_path / "b_dseg.nii.gz", lab, NAMES, shifted)
    with pytest.raises(InputError, match=r"b_dseg\.nii\.gz: affine differs from the PET image"):
        read_labels(wrong_affine, pet=pet, default_groups=False, resample=False)
    (tmp_path / "sub-01_dseg.tsv").write_text("index\tname\n1\tliver\n")
    with pytest.raises(InputError, match=r"sub-01_dseg\.tsv: label values \[2\] .* not in the table"):
        read_labels(path, pet=pet, default_groups=False, resample=False)
    (tmp_path / "sub-01_dseg.tsv").write_text("idx\tname\n1\tliver\n")
    with pytest.raises(InputError, match=r"sub-01_dseg\.tsv: missing column 'index'"):
        read_labels(path, pet=pet, default_groups=False, resample=False)


# ------------------------------------------------------------------------------------------ NaN/Inf and IDIF


def test_nonfinite_voxels_are_found_and_excluded_from_idif(tmp_path, pet_data):
    data = pet_data.copy()
    data[4, 3, 1, 2] = np.nan  # an aorta voxel
    data[0, 0, 0, 5] = np.inf
    data[5, 4, 3, :] = -np.inf
    path = _write_raw_pet(tmp_path, data, _sidecar())
    pet = load_pet(path)
    mask = finite_voxel_mask(pet, slab=3)
    expected = np.ones(SHAPE[:3], bool)
    expected[4, 3, 1] = expected[0, 0, 0] = expected[5, 4, 3] = False
    np.testing.assert_array_equal(mask, expected)
    assert nonfinite_message(pet, mask) == f"{path}: 3 voxel(s) with NaN or Inf values excluded"
    assert nonfinite_message(pet, np.ones_like(mask)) is None

    labels = Labels(_labels(), NAMES)
    idif = image_derived_input(pet, labels, "aorta")
    # The aorta holds voxels (4,3,1) [NaN, excluded] and (4,3,2): the IDIF samples are that one voxel's TAC.
    np.testing.assert_allclose(idif(FRAMES.mid), data[4, 3, 2] / 1000.0, rtol=1e-6)
    assert idif.times[0] == 0.0 and idif.values[0] == 0.0 and idif.end == pytest.approx(FRAMES.end[-1])
    # Written and read back as the TSV of the input function.
    tsv = write_blood(tmp_path / "sub-01_desc-IDIF_blood.tsv", whole_blood=idif, units=pet.units)
    np.testing.assert_allclose(load_blood(tsv, pet=pet).input.values, idif.values, rtol=1e-12)
