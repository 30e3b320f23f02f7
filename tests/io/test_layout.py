"""The BIDS layout (jaxkin.io.layout): file names, PET scans with their blood recordings and label maps in
real-looking trees (Biograph Vision Quadra style: ses-, trc-, rec-, run-, two blood recordings, segmentations in
derivatives), participant and session selection, derivative dataset descriptions, BIDS URIs, output folders."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

import jaxkin
from jaxkin.io import layout
from jaxkin.errors import InputError

QUADRA_PET = "sub-001_ses-quadra_trc-FDG_rec-acdynPSF_pet.nii.gz"


def _touch(root: Path, *names: str) -> list[Path]:
    """Empty files at ``root/name`` (folders made); most layout logic needs names only."""
    paths = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        paths.append(path)
    return paths


def _raw(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "test", "BIDSVersion": "1.9.0"}))
    return root


def _quadra(root: Path, subjects=("001", "002")) -> Path:
    """A hedyPET-like raw dataset: one Quadra session per subject, a PET and two blood recordings (+ sidecars)."""
    _raw(root)
    for s in subjects:
        p = f"sub-{s}/ses-quadra/pet/sub-{s}_ses-quadra"
        _touch(root, f"{p}_trc-FDG_rec-acdynPSF_pet.nii.gz", f"{p}_trc-FDG_rec-acdynPSF_pet.json",
               f"{p}_recording-manual_blood.tsv", f"{p}_recording-manual_blood.json",
               f"{p}_recording-autosampler_blood.tsv", f"{p}_recording-autosampler_blood.json")
    return root


# --------------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------------


def test_parse_name_real_names():
    name = layout.parse_name(Path("/data") / QUADRA_PET)
    assert name.entities == {"sub": "001", "ses": "quadra", "trc": "FDG", "rec": "acdynPSF"}
    assert list(name.entities) == ["sub", "ses", "trc", "rec"]  # the name's order
    assert (name.suffix, name.extension, name.name) == ("pet", ".nii.gz", QUADRA_PET)
    assert name.prefix == "sub-001_ses-quadra_trc-FDG_rec-acdynPSF"
    blood = layout.parse_name("sub-001_ses-quadra_recording-autosampler_blood.tsv")
    assert blood.entities["recording"] == "autosampler" and (blood.suffix, blood.extension) == ("blood", ".tsv")
    truth = layout.parse_name("sub-01_model-2tcmirr_meas-K1_mimap.nii.gz")
    assert truth.entities == {"sub": "01", "model": "2tcmirr", "meas": "K1"} and truth.suffix == "mimap"
    assert layout.parse_name("sub-01_dseg.tsv") == layout.BidsName({"sub": "01"}, "dseg", ".tsv")
    assert layout.parse_name("participants.tsv") == layout.BidsName({}, "participants", ".tsv")
    assert layout.parse_name("sub-01_pet.nii").extension == ".nii"


@pytest.mark.parametrize("name", [
    "README",                          # no extension
    ".sub-01_pet.nii.gz",              # hidden (e.g. a temporary file of an atomic write)
    "sub-01_ses_pet.nii.gz",           # a part that is not key-value
    "sub-01_sub-02_pet.nii.gz",        # a repeated key
    "sub-0 1_pet.nii.gz",              # a space in a label
    "sub-01_rec-ac-dyn_pet.nii.gz",    # a hyphen in a label
    "sub-01_Rec-x_pet.nii.gz",         # keys are lowercase
    "sub-01_pet-v2.nii.gz",            # the suffix is not alphanumeric
    "sub-01_pet.nii.",                 # an empty extension part
])
def test_parse_name_rejects_non_bids_names(name):
    assert layout.parse_name(name) is None


def test_entities_match_ignores_own_entities_and_compares_runs_as_numbers():
    pet = {"sub": "01", "ses": "a", "trc": "FDG", "run": "2"}
    assert layout.entities_match({"sub": "01", "recording": "manual"}, pet, ignore=("recording",))
    assert layout.entities_match({"sub": "01", "run": "02"}, pet)
    assert not layout.entities_match({"sub": "01", "run": "1"}, pet)
    assert not layout.entities_match({"sub": "01", "rec": "OSEM"}, pet)  # an entity the PET lacks
    assert not layout.entities_match({"sub": "01", "trc": "fdg"}, pet)  # labels are case-sensitive


# --------------------------------------------------------------------------------------------------
# Finding PET scans and their blood recordings
# --------------------------------------------------------------------------------------------------


def test_quadra_layout(tmp_path):
    root = _quadra(tmp_path / "raw")
    scans = layout.find_pet_scans(root)
    assert [(s.subject, s.session) for s in scans] == [("sub-001", "ses-quadra"), ("sub-002", "ses-quadra")]
    first = scans[0]
    assert first.pet == root / "sub-001/ses-quadra/pet" / QUADRA_PET
    assert first.entities == {"sub": "001", "ses": "quadra", "trc": "FDG", "rec": "acdynPSF"}
    assert first.prefix == "sub-001_ses-quadra_trc-FDG_rec-acdynPSF"
    # both recordings, sorted; the JSON sidecars are not recordings; the other subject's are not this scan's
    assert [p.name for p in first.blood] == ["sub-001_ses-quadra_recording-autosampler_blood.tsv",
                                             "sub-001_ses-quadra_recording-manual_blood.tsv"]
    assert first.labels is None
    assert layout.derivative_dir(tmp_path / "out", first) == tmp_path / "out/sub-001/ses-quadra/pet"


def test_blood_matches_by_entities(tmp_path):
    """Two runs of FDG and an FLT scan in one session; a recording for all, one for run 2 only (written run-02),
    one for the FLT scan only, and a stray non-BIDS file."""
    root = _raw(tmp_path / "raw")
    d = "sub-01/ses-a/pet/sub-01_ses-a"
    _touch(root, f"{d}_trc-FDG_run-1_pet.nii.gz", f"{d}_trc-FDG_run-2_pet.nii.gz", f"{d}_trc-FLT_pet.nii",
           f"{d}_recording-manual_blood.tsv", f"{d}_trc-FDG_run-02_recording-autosampler_blood.tsv",
           f"{d}_trc-FLT_recording-autosampler_blood.tsv", f"{d}_recording-manual copy_blood.tsv",
           f"{d}_rec-OSEM_recording-manual_blood.tsv")  # rec-OSEM: no PET of this session has it
    blood = {s.prefix: [p.name.removeprefix("sub-01_ses-a_") for p in s.blood] for s in layout.find_pet_scans(root)}
    assert blood == {
        "sub-01_ses-a_trc-FDG_run-1": ["recording-manual_blood.tsv"],
        "sub-01_ses-a_trc-FDG_run-2": ["recording-manual_blood.tsv", "trc-FDG_run-02_recording-autosampler_blood.tsv"],
        "sub-01_ses-a_trc-FLT": ["recording-manual_blood.tsv", "trc-FLT_recording-autosampler_blood.tsv"],
    }


def test_sessions_and_subject_level_pet_folders(tmp_path):
    root = _raw(tmp_path / "raw")
    _touch(root, "sub-01/ses-a/pet/sub-01_ses-a_pet.nii.gz", "sub-01/ses-b/pet/sub-01_ses-b_pet.nii.gz",
           "sub-01/ses-b/pet/sub-01_ses-b_recording-AIF_blood.tsv", "sub-02/pet/sub-02_pet.nii.gz",
           "sub-03/anat/sub-03_T1w.nii.gz")  # a subject without PET is no scan (and no error)
    scans = layout.find_pet_scans(root)
    assert [s.prefix for s in scans] == ["sub-01_ses-a", "sub-01_ses-b", "sub-02"]
    assert [len(s.blood) for s in scans] == [0, 1, 0]
    assert scans[2].session is None
    assert layout.derivative_dir("out", scans[2]) == Path("out/sub-02/pet")


def test_participant_and_session_selection(tmp_path):
    root = _quadra(tmp_path / "raw", subjects=("001", "002", "003"))
    _touch(root, "sub-002/ses-retest/pet/sub-002_ses-retest_trc-FDG_pet.nii.gz")
    assert [s.subject for s in layout.find_pet_scans(root, participants=["001", "sub-003"])] == ["sub-001", "sub-003"]
    assert [s.subject for s in layout.find_pet_scans(root, participants="002", sessions="quadra")] == ["sub-002"]
    assert [s.prefix for s in layout.find_pet_scans(root, sessions=["ses-retest"])] == ["sub-002_ses-retest_trc-FDG"]
    assert len(layout.find_pet_scans(root, participants=["002"])) == 2  # both sessions
    with pytest.raises(InputError, match=f"{root}: participant label '004' matches no subject folder sub-004"):
        layout.find_pet_scans(root, participants=["001", "sub-004"])
    with pytest.raises(InputError, match=f"{root}: session label 'retest' matches no session folder ses-retest of "
                                         "the selected participants"):
        layout.find_pet_scans(root, participants=["001"], sessions=["retest"])
    with pytest.raises(InputError, match="session label 'baseline' matches no session folder ses-baseline of any"):
        layout.find_pet_scans(root, sessions="baseline")
    with pytest.raises(InputError, match="participant label '0 1': not a BIDS label"):
        layout.find_pet_scans(root, participants=["0 1"])


def test_a_selected_participant_without_pet_is_an_error(tmp_path):
    root = _quadra(tmp_path / "raw", subjects=("001",))
    _touch(root, "sub-002/ses-quadra/anat/sub-002_ses-quadra_T1w.nii.gz")
    with pytest.raises(InputError, match=r"sub-002: no ses-\*/pet/\*_pet.nii\[.gz\] found"):
        layout.find_pet_scans(root, participants=["002"])
    empty = _raw(tmp_path / "empty")
    (empty / "sub-01").mkdir()
    with pytest.raises(InputError, match=r"no PET scan found \(sub-\*/\[ses-\*/\]pet/\*_pet.nii\[.gz\]\)"):
        layout.find_pet_scans(empty)


def test_dataset_root_and_description(tmp_path):
    with pytest.raises(InputError, match="nowhere: dataset folder not found"):
        layout.find_pet_scans(tmp_path / "nowhere")
    root = tmp_path / "raw"
    _touch(root, "sub-01/pet/sub-01_pet.nii.gz")
    with pytest.raises(InputError, match="not a BIDS dataset \\(no dataset_description.json; BIDS requires one"):
        layout.find_pet_scans(root)
    assert [s.prefix for s in layout.find_pet_scans(root, require_description=False)] == ["sub-01"]
    (root / "dataset_description.json").write_text("{not json")
    with pytest.raises(InputError, match="dataset_description.json: cannot read JSON"):
        layout.find_pet_scans(root)


@pytest.mark.parametrize("name,message", [
    ("sub-02_pet.nii.gz", "the name says sub-02 but the file is in sub-01/pet"),
    ("sub-01_ses-a_pet.nii.gz", "the name says sub-01_ses-a but the file is in sub-01/pet"),
    ("sub-01_rec-ac-dyn_pet.nii.gz", "not a BIDS file name"),
])
def test_pet_names_must_be_bids_and_agree_with_their_folders(tmp_path, name, message):
    root = _raw(tmp_path / "raw")
    _touch(root, f"sub-01/pet/{name}")
    with pytest.raises(InputError, match=message):
        layout.find_pet_scans(root)


def test_one_scan_in_two_formats_is_an_error(tmp_path):
    root = _raw(tmp_path / "raw")
    _touch(root, "sub-01/pet/sub-01_pet.nii", "sub-01/pet/sub-01_pet.nii.gz")
    with pytest.raises(InputError, match="sub-01_pet.nii and sub-01_pet.nii.gz are the same scan"):
        layout.find_pet_scans(root)


# --------------------------------------------------------------------------------------------------
# Label maps
# --------------------------------------------------------------------------------------------------


def test_label_map_in_derivatives_per_session(tmp_path):
    root = _quadra(tmp_path / "raw", subjects=("001",))
    _touch(root, "sub-001/ses-retest/pet/sub-001_ses-retest_trc-FDG_pet.nii.gz",
           "derivatives/totalsegmentator/sub-001/ses-quadra/anat/sub-001_ses-quadra_space-PET_desc-total_dseg.nii.gz",
           "derivatives/totalsegmentator/sub-001/ses-quadra/anat/sub-001_ses-quadra_space-PET_desc-total_dseg.tsv",
           "derivatives/totalsegmentator/dataset_description.json")
    quadra, retest = layout.find_pet_scans(root)
    assert quadra.labels == root / ("derivatives/totalsegmentator/sub-001/ses-quadra/anat/"
                                    "sub-001_ses-quadra_space-PET_desc-total_dseg.nii.gz")
    assert retest.labels is None  # another session's label map is not this scan's
    # a subject-level label map serves every session that has none of its own
    _touch(root, "derivatives/totalsegmentator/sub-001/anat/sub-001_desc-total_dseg.nii.gz")
    quadra, retest = layout.find_pet_scans(root)
    assert quadra.labels.parent.parent.name == "ses-quadra"
    assert retest.labels == root / "derivatives/totalsegmentator/sub-001/anat/sub-001_desc-total_dseg.nii.gz"
    assert layout.find_pet_scans(root, with_labels=False)[0].labels is None


def test_label_map_of_the_phantom_before_and_after_the_move(tmp_path):
    """The phantom's label map: in sub-<id>/pet/ (before) or derivatives/groundtruth/sub-<id>/anat/ (after)."""
    old = _raw(tmp_path / "old")
    _touch(old, "sub-01/pet/sub-01_pet.nii.gz", "sub-01/pet/sub-01_dseg.nii.gz", "sub-01/pet/sub-01_dseg.tsv")
    assert layout.find_pet_scans(old)[0].labels == old / "sub-01/pet/sub-01_dseg.nii.gz"
    new = _raw(tmp_path / "new")
    _touch(new, "sub-01/pet/sub-01_pet.nii.gz", "derivatives/groundtruth/sub-01/anat/sub-01_dseg.nii.gz",
           "derivatives/groundtruth/sub-01/pet/sub-01_model-2tcmirr_meas-K1_mimap.nii.gz")
    assert layout.find_pet_scans(new)[0].labels == new / "derivatives/groundtruth/sub-01/anat/sub-01_dseg.nii.gz"


def test_several_label_maps_are_an_error_unless_one_file(tmp_path):
    root = _raw(tmp_path / "raw")
    _touch(root, "sub-01/pet/sub-01_run-1_pet.nii.gz", "sub-01/pet/sub-01_run-2_pet.nii.gz",
           "sub-01/anat/sub-01_run-2_dseg.nii.gz")  # run 2's own label map
    run1, run2 = layout.find_pet_scans(root)
    assert run1.labels is None and run2.labels.name == "sub-01_run-2_dseg.nii.gz"
    # the same file reached through a second pipeline folder (a link) counts once
    linked = _raw(tmp_path / "linked")
    _touch(linked, "sub-01/pet/sub-01_pet.nii.gz", "derivatives/seg/sub-01/anat/sub-01_desc-organs_dseg.nii.gz")
    os.symlink(linked / "derivatives/seg", linked / "derivatives/seg-link")
    assert layout.find_pet_scans(linked)[0].labels.name == "sub-01_desc-organs_dseg.nii.gz"
    _touch(root, "derivatives/seg/sub-01/anat/sub-01_desc-organs_dseg.nii.gz")
    # two different files for run 2: InputError listing them
    with pytest.raises(InputError, match=r"sub-01_run-2_pet.nii.gz: several label maps match this scan "
                                         r"\(derivatives/seg/sub-01/anat/sub-01_desc-organs_dseg.nii.gz, "
                                         r"sub-01/anat/sub-01_run-2_dseg.nii.gz\); keep one"):
        layout.find_pet_scans(root)


# --------------------------------------------------------------------------------------------------
# Derivatives: dataset_description.json, BIDS URIs, output folders
# --------------------------------------------------------------------------------------------------


def test_dataset_description_of_a_derivative(tmp_path):
    raw = _quadra(tmp_path / "raw")
    out = raw / "derivatives" / "jaxkin"
    path = layout.write_dataset_description(out, source_root=raw, name="jaxkin kinetic maps",
                                            pipeline_description="jaxkin fit --model 2tcmirr")
    assert path == out / "dataset_description.json"
    description = json.loads(path.read_text())  # valid JSON
    assert description["Name"] == "jaxkin kinetic maps"
    assert description["DatasetType"] == "derivative"
    assert description["BIDSVersion"] == layout.BIDS_VERSION
    assert description["GeneratedBy"] == [{"Name": "jaxkin", "Version": jaxkin.__version__,
                                           "Description": "jaxkin fit --model 2tcmirr"}]
    assert description["SourceDatasets"] == [{"URL": raw.resolve().as_uri()}]
    assert description["DatasetLinks"] == {"raw": raw.resolve().as_uri()}
    assert description["DatasetLinks"]["raw"].startswith("file:///")
    assert not [p for p in out.iterdir() if p.name != "dataset_description.json"]  # no temporary left


def test_dataset_description_update_and_refusals(tmp_path, monkeypatch):
    raw = _raw(tmp_path / "raw")
    out = tmp_path / "maps"
    path = layout.write_dataset_description(out, source_root=raw, name="first name")
    edited = json.loads(path.read_text()) | {"License": "CC0", "Authors": ["A. B."]}
    path.write_text(json.dumps(edited))
    layout.write_dataset_description(out, source_root=raw, name="first name")  # jaxkin's own: updated
    again = json.loads(path.read_text())
    assert again["License"] == "CC0" and again["Authors"] == ["A. B."] and again["Name"] == "first name"
    assert again["GeneratedBy"] == [{"Name": "jaxkin", "Version": jaxkin.__version__, "Description": "first name"}]
    # another kind of derivative (another command's outputs): refused, file unchanged
    with pytest.raises(InputError, match="another kind"):
        layout.write_dataset_description(out, source_root=raw, name="second name")
    # a later jaxkin version adds itself to GeneratedBy
    monkeypatch.setattr("jaxkin.io.layout.__version__", "99.0")
    layout.write_dataset_description(out, source_root=raw, name="first name")
    assert [g["Version"] for g in json.loads(path.read_text())["GeneratedBy"]] == [jaxkin.__version__, "99.0"]
    monkeypatch.undo()
    # derivatives of another raw dataset: refused, file unchanged
    before = path.read_text()
    with pytest.raises(InputError, match="holds derivatives of another dataset"):
        layout.write_dataset_description(out, source_root=_raw(tmp_path / "other"), name="first name")
    assert path.read_text() == before
    # another pipeline's folder, or a raw dataset: refused, file unchanged
    fmriprep = tmp_path / "fmriprep"
    fmriprep.mkdir()
    theirs = json.dumps({"Name": "fMRIPrep", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
                         "GeneratedBy": [{"Name": "fMRIPrep", "Version": "24.1.0"}]})
    (fmriprep / "dataset_description.json").write_text(theirs)
    with pytest.raises(InputError, match=r"written by another pipeline \(fMRIPrep\), not jaxkin"):
        layout.write_dataset_description(fmriprep, source_root=raw, name="x")
    assert (fmriprep / "dataset_description.json").read_text() == theirs
    with pytest.raises(InputError, match="written by another pipeline"):
        layout.write_dataset_description(raw, source_root=raw, name="x")


def test_bids_uri(tmp_path):
    raw = tmp_path / "raw"
    pet = raw / "sub-001/ses-quadra/pet" / QUADRA_PET
    assert layout.bids_uri(pet, raw) == f"bids:raw:sub-001/ses-quadra/pet/{QUADRA_PET}"
    assert layout.bids_uri(pet, raw, dataset="") == f"bids::sub-001/ses-quadra/pet/{QUADRA_PET}"
    with pytest.raises(InputError, match="not inside the dataset"):
        layout.bids_uri(tmp_path / "elsewhere" / QUADRA_PET, raw)


def test_check_output_folder(tmp_path):
    raw = _raw(tmp_path / "raw")
    layout.check_output_folder(raw / "derivatives" / "jaxkin", raw)  # fine
    layout.check_output_folder(tmp_path / "maps", raw)  # beside the dataset: fine
    layout.check_output_folder(raw / "derivatives" / "jaxkin" / "run1", raw)
    for out, message in [(raw, "is the input dataset"), (raw / "sub-01" / "maps", "inside the raw dataset"),
                         (raw / "derivatives", "is the derivatives folder itself"), (tmp_path, "contains the input"),
                         (raw / "." / "sub-01" / "..", "is the input dataset")]:
        with pytest.raises(InputError, match=message):
            layout.check_output_folder(out, raw)


def test_layout_imports_no_jax():
    """Pure file-system logic: the module imports the standard library and jaxkin's errors/files/version only."""
    tree = ast.parse(Path(layout.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not [m for m in imported if m.split(".")[0] in ("jax", "jaxlib", "flax", "numpy", "nibabel")]
    assert {m for m in imported if m.startswith("jaxkin")} <= {"jaxkin.errors", "jaxkin.io.files", "jaxkin._version"}


# --------------------------------------------------------------------------------------------------
# The dataset API on top: one SubjectFiles per scan
# --------------------------------------------------------------------------------------------------
