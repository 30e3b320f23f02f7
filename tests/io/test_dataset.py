"""Datasets of subjects (jaxkin.io.dataset): the train/val/test split, the files of each subject's scans with sessions,
the ground truth of a simulated dataset."""

from pathlib import Path

import pytest

from jaxkin.errors import InputError
from jaxkin.io import dataset


def _touch(root: Path, *names: str) -> list[Path]:
    """Empty files at ``root/name`` (folders made); the dataset logic needs names only."""
    paths = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        paths.append(path)
    return paths


def test_scan_files_of_a_subject_with_sessions(tmp_path):
    root = tmp_path / "ds"  # a training dataset: no dataset_description.json needed
    for ses in ("a", "b"):
        _touch(root, f"sub-01/ses-{ses}/pet/sub-01_ses-{ses}_pet.nii.gz",
               f"sub-01/ses-{ses}/pet/sub-01_ses-{ses}_recording-AIF_blood.tsv",
               f"derivatives/groundtruth/sub-01/ses-{ses}/pet/sub-01_ses-{ses}_model-2tcmirr_meas-K1_mimap.nii.gz",
               f"derivatives/groundtruth/sub-01/ses-{ses}/pet/sub-01_ses-{ses}_desc-organs_parameters.tsv")
    _touch(root, "derivatives/groundtruth/sub-01/anat/sub-01_dseg.nii.gz", "sub-02/pet/sub-02_pet.nii.gz",
           "sub-02/pet/sub-02_recording-manual_blood.tsv", "sub-02/pet/sub-02_recording-autosampler_blood.tsv")
    a, b = dataset.scan_files(root, "01")
    assert (a.subject, a.session, a.scan_id) == ("sub-01", "ses-a", "sub-01_ses-a")
    assert b.scan_id == "sub-01_ses-b" and b.blood == (root / "sub-01/ses-b/pet/sub-01_ses-b_recording-AIF_blood.tsv",)
    assert a.labels == b.labels == root / "derivatives/groundtruth/sub-01/anat/sub-01_dseg.nii.gz"
    assert a.label_table == root / "derivatives/groundtruth/sub-01/anat/sub-01_dseg.tsv"
    assert a.truth == {"K1": root / ("derivatives/groundtruth/sub-01/ses-a/pet/"
                                     "sub-01_ses-a_model-2tcmirr_meas-K1_mimap.nii.gz")}
    assert b.organ_truth.name == "sub-01_ses-b_desc-organs_parameters.tsv"
    with pytest.raises(InputError, match=r"sub-01: 2 PET scans \(sub-01_ses-a, sub-01_ses-b\); use .*scan_files"):
        dataset.subject_files(root, "sub-01")
    one = dataset.subject_files(root, "sub-02")
    assert one.scan_id == "sub-02" and len(one.blood) == 2 and one.labels is None and one.truth == {}


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


def test_the_ground_truth_folder(tmp_path):
    assert dataset.truth_root(tmp_path) == tmp_path / "derivatives" / dataset.TRUTH_PIPELINE
    table = dataset.truth_root(tmp_path) / "sub-01" / "pet" / "sub-01_desc-organs_parameters.tsv"
    table.parent.mkdir(parents=True)
    table.write_text("name\tindex\tK1\tk2\tk3\tvB\tKi\tvoxels\nliver\t3\t0.5\t0.6\t0.01\t0.02\t0.008\t12\n")
    assert dataset.load_organ_truth(tmp_path, "01") == {"liver": {"K1": 0.5, "k2": 0.6, "k3": 0.01, "vB": 0.02,
                                                                  "Ki": 0.008}}
