"""Regional TACs and map statistics (jaxkin.regions.tacs): the same TACs from labels in every form, against plain NumPy
means over the PET's grid; statistics of parametric maps per region."""

import numpy as np
import pytest

from _label_forms import IDS, make_scan, reference_means
from jaxkin.io.labels import read_labels
from jaxkin.io.pet import load_pet
from jaxkin.regions.tacs import map_statistics, regional_tacs


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    return make_scan(tmp_path_factory.mktemp("label_forms"))


def test_every_label_form_on_the_ct_grid_gives_the_pet_grid_tacs(scan):
    pet = load_pet(scan["pet"])
    on_pet = read_labels(scan["dseg"], pet=pet)
    assert on_pet.source is None and on_pet.kind == "dseg"
    forms = {"multilabel": read_labels(scan["ml"], pet=pet),
             "class table": read_labels(scan["bare"], pet=pet, table="totalsegmentator"),
             "mask folder": read_labels(scan["folder"], pet=pet)}
    assert forms["multilabel"].table == "NIfTI header extension"
    regions = ["aorta", "liver", "spleen", "kidneys", "kidney_left"]
    reference = regional_tacs(pet, on_pet, regions)
    assert reference.names == tuple(regions)
    for name in regions:  # against a plain NumPy mean over the PET-grid labels
        ids = [IDS["kidney_left"], IDS["kidney_right"]] if name == "kidneys" else [IDS[name]]
        mean, n = reference_means(scan, ids)
        np.testing.assert_allclose(reference.column(name), mean, rtol=1e-6)
        assert reference.voxels[regions.index(name)] == n
    np.testing.assert_allclose(reference.volume_ml, reference.voxels * 64 / 1000)
    for form, labels in forms.items():
        assert labels.source is not None, form  # resampled from the CT grid ...
        np.testing.assert_array_equal(labels.mask("aorta"), scan["lab"] == IDS["aorta"])  # ... to the same voxels
        assert any("nearest neighbour" in n for n in labels.notes)
        tacs = regional_tacs(pet, labels, regions)
        np.testing.assert_allclose(tacs.values, reference.values, rtol=1e-12, err_msg=form)
        np.testing.assert_allclose(tacs.sd, reference.sd, rtol=1e-10, err_msg=form)
        np.testing.assert_array_equal(tacs.voxels, reference.voxels)
    # names and numbers; the default groups; the folder's empty mask is not a region
    folder = forms["mask folder"]
    assert folder.ids("kidneys") == (folder.index("kidney_left"), folder.index("kidney_right"))
    assert "stomach" in folder.names.values() and "stomach" not in folder.region_names()
    assert forms["multilabel"].ids("52") == (52,) and forms["multilabel"].name_of("52") == "aorta"


def test_map_statistics_per_region(scan):
    pet = load_pet(scan["pet"])
    labels = read_labels(scan["dseg"], pet=pet)
    ki = np.arange(np.prod(pet.shape[:3]), dtype=np.float32).reshape(pet.shape[:3])
    rows = map_statistics({"Ki": ki}, labels, ["liver", "kidneys"])
    liver = next(r for r in rows if r["region"] == "liver" and r["map"] == "Ki")
    values = ki[scan["lab"] == IDS["liver"]]
    np.testing.assert_allclose([liver["mean"], liver["sd"], liver["median"]],
                               [values.mean(), values.std(ddof=1), np.median(values)], rtol=1e-6)
    assert liver["voxels"] == values.size and {r["region"] for r in rows} == {"liver", "kidneys"}


def test_tacs_of_an_suv_image_stay_in_suv(tmp_path):
    """An image in SUV without its dose: its regional TACs are in SUV, written and read back as SUV (never kBq/mL)."""
    from _pet_files import NAMES, random_pet_data, sidecar, small_labels, write_raw_pet

    from jaxkin.io.labels import Labels
    from jaxkin.io.tables import read_tacs, write_tacs

    data = random_pet_data()
    pet = load_pet(write_raw_pet(tmp_path, data, sidecar(Units="SUV")))
    tacs = regional_tacs(pet, Labels(small_labels(), NAMES), ["liver"])
    assert (tacs.units, tacs.value_kind) == ("SUV", "SUV")
    np.testing.assert_allclose(tacs.values[0], data[small_labels() == 1].mean(axis=0), rtol=1e-5)
    back = read_tacs(write_tacs(tmp_path / "tacs.tsv", tacs))
    assert back.value_kind == "SUV" and back.units == "SUV"
    np.testing.assert_allclose(back.values, tacs.values, rtol=1e-7)


def test_region_sums_of_overlapping_weighted_regions_leave_out_nonfinite_voxels(tmp_path, monkeypatch):
    """Sums, sums of squares and counts of overlapping fractional regions, read from the file a slice and a few voxels
    at a time, equal plain NumPy sums over the voxels finite in every frame; a voxel with NaN in one frame is left
    out of every frame and counted once."""
    import json

    import nibabel as nib

    from jaxkin.io import stream
    from jaxkin.regions import tacs

    monkeypatch.setattr(stream, "READ_BYTES", 1)
    monkeypatch.setattr(tacs, "BLOCK_VOXELS", 3)
    rng = np.random.default_rng(3)
    data = rng.uniform(0.5, 9.0, (5, 4, 6, 3)).astype(np.float32)
    data[2, 1, 3, 1] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "sub-01_pet.nii"))
    (tmp_path / "sub-01_pet.json").write_text(json.dumps(
        {"FrameTimesStart": [0, 60, 120], "FrameDuration": [60, 60, 60], "Units": "kBq/mL",
         "ImageDecayCorrected": True, "TracerRadionuclide": "F18"}))
    pet = load_pet(tmp_path / "sub-01_pet.nii")
    a = np.zeros(data.shape[:3])
    a[1:4, :, 2:5] = rng.uniform(0.1, 1.0, (3, 4, 3))
    b = np.zeros(data.shape[:3])
    b[2:, 1:3, 1:6] = rng.uniform(0.1, 1.0, (3, 2, 5))  # overlaps a, holds the NaN voxel
    s1, s2, count, left_out = tacs.region_sums(pet, [(1, a), (2, b)], 2)
    finite = np.all(np.isfinite(data), axis=-1)
    values = pet.read(dtype=np.float64)
    for r, w in ((1, a), (2, b)):
        w = np.where(finite, w, 0.0)[..., None]
        np.testing.assert_allclose(s1[r], np.sum(w * np.nan_to_num(values), axis=(0, 1, 2)), rtol=1e-12)
        np.testing.assert_allclose(s2[r], np.sum(w * np.nan_to_num(values) ** 2, axis=(0, 1, 2)), rtol=1e-12)
        np.testing.assert_allclose(count[r], w.sum(), rtol=1e-12)
    assert left_out == 1
