"""Label maps (jaxkin.io.labels) in every form on the PET's grid: BIDS dseg with its table, TotalSegmentator
multilabel files and mask folders on a CT grid (resampled by nearest neighbour), partial-volume fractions, names,
numbers and groups, and the checks."""

import numpy as np
import pytest

from _label_forms import IDS, SHAPE, make_scan
from _pet_files import NAMES, small_labels
from jaxkin import InputError
from jaxkin.io.labels import TOTALSEGMENTATOR_TOTAL, parse_groups, read_labels, write_labels
from jaxkin.io.pet import load_pet
from jaxkin.regions.tacs import regional_tacs


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    return make_scan(tmp_path_factory.mktemp("label_forms"))


def test_labels_round_trip_and_checks(tmp_path, pet_path):
    pet = load_pet(pet_path)
    lab = small_labels()
    path = write_labels(tmp_path / "sub-01_dseg.nii.gz", lab, NAMES, pet.affine)
    labels = read_labels(path, pet=pet, default_groups=False, resample=False)
    np.testing.assert_array_equal(labels.data, lab)
    assert labels.names == NAMES
    np.testing.assert_array_equal(labels.mask("aorta"), lab == 2)
    np.testing.assert_array_equal(labels.mask("aorta", "liver"), lab > 0)
    with pytest.raises(InputError, match="no label named 'spleen'"):
        labels.mask("spleen")

    wrong_shape = write_labels(tmp_path / "a_dseg.nii.gz", small_labels((6, 5, 3)), NAMES, pet.affine)
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


def test_partial_volume_fractions(scan):
    pet = load_pet(scan["pet"])
    on_pet = read_labels(scan["dseg"], pet=pet)
    aligned = read_labels(scan["aligned"], pet=pet)
    # An aligned grid twice as fine: every fraction is 0 or 1, so the weighted TACs are the plain ones.
    for name in ("aorta", "liver", "kidneys"):
        np.testing.assert_array_equal(aligned.fractions(name), on_pet.mask(name).astype(np.float32))
    np.testing.assert_allclose(regional_tacs(pet, aligned, ["aorta", "liver"], fractions=True).values,
                               regional_tacs(pet, on_pet, ["aorta", "liver"]).values, rtol=1e-10)
    # Shifted: border voxels are shared, the fractions of a voxel sum to at most 1 and each structure keeps its
    # volume (8 CT voxels per PET voxel).
    shifted = read_labels(scan["ml"], pet=pet)
    total = np.zeros(SHAPE, np.float32)
    for name, i in IDS.items():
        f = shifted.fractions(name)
        assert np.any((f > 0) & (f < 1))
        assert f.sum() == pytest.approx(np.count_nonzero(scan["ct"] == i) / 8, rel=1e-6)
        total += f
    assert total.max() <= 1 + 1e-6
    pv = regional_tacs(pet, shifted, ["liver"], fractions=True)
    assert pv.voxels[0] == pytest.approx(np.count_nonzero(scan["ct"] == IDS["liver"]) / 8, rel=1e-6)


def test_names_tables_and_groups(scan):
    pet = load_pet(scan["pet"])
    labels = read_labels(scan["folder"], pet=pet, groups=["organs=liver,5"])  # a mask folder: 5 is the 5th name
    assert labels.groups["organs"] == ("liver", "spleen") and labels.groups["kidneys"] == ("kidney_left", "kidney_right")
    assert TOTALSEGMENTATOR_TOTAL[52] == "aorta" and len(TOTALSEGMENTATOR_TOTAL) == 117
    assert read_labels(scan["bare"], pet=pet, table="totalsegmentator").names[IDS["aorta"]] == "aorta"
    with pytest.raises(InputError, match="ct_bare.nii.gz: no label names .* give a label table: a TSV"):
        read_labels(scan["bare"], pet=pet)
    with pytest.raises(InputError, match=r"group 'organs': expected NAME=LABEL,LABEL"):
        parse_groups(["organs"])
    with pytest.raises(InputError, match="group 'a=y': group 'a' given twice"):
        parse_groups(["a=x", "a=y"])
    with pytest.raises(InputError, match="group liver: a label is already called 'liver'"):
        read_labels(scan["folder"], pet=pet, groups={"liver": ("spleen",)})
    with pytest.raises(InputError, match="group organs: .* has no label 'heart'"):
        read_labels(scan["folder"], pet=pet, groups={"organs": ("heart",)})
    assert SHAPE == labels.data.shape
