"""Datasets of subjects in BIDS-PET layout: the train/val/test split and each subject's files.

Works for the simulated phantom (:func:`jaxkin.data.phantom.simulate_dataset`) and for your own data laid out as
``sub-<id>/pet/sub-<id>[_...]_pet.nii.gz`` (+ ``.json``), an input function ``*_blood.tsv`` beside it, an optional
label map ``*_dseg.nii.gz`` (+ ``*_dseg.tsv``) in ``pet/`` or ``anat/``, and an optional ``split`` column
(train/val/test) in ``participants.tsv``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxkin.data.files import read_tsv
from jaxkin.errors import InputError

__all__ = ["SubjectFiles", "SPLITS", "list_subjects", "dataset_split", "subject_files", "load_organ_truth"]

SPLITS = ("train", "val", "test")
_TRUTH_DIR = ("derivatives", "groundtruth")


@dataclasses.dataclass(frozen=True)
class SubjectFiles:
    """Paths of one subject. ``input_function``, ``labels`` and ``label_table`` are None when absent;
    ``truth`` maps a parameter name (K1, k2, k3, vB, Ki) to its ground-truth map (simulated data only)."""

    subject: str
    pet: Path
    input_function: Path | None
    labels: Path | None
    label_table: Path | None
    truth: dict


def _subject_id(subject: str) -> str:
    subject = str(subject)
    return subject if subject.startswith("sub-") else f"sub-{subject}"


def list_subjects(dataset_dir) -> list[str]:
    """The ``sub-*`` folders of a dataset, sorted."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("sub-"))


def dataset_split(dataset_dir) -> dict[str, list[str]]:
    """``{"train": [...], "val": [...], "test": [...]}`` subject ids from the ``split`` column of participants.tsv."""
    root = Path(dataset_dir)
    path = root / "participants.tsv"
    if not path.is_file():
        raise InputError(f"{path}: file not found (it holds the train/val/test split)")
    header, rows = read_tsv(path)
    for key in ("participant_id", "split"):
        if key not in header:
            raise InputError(f"{path}: missing column {key!r}")
    ji, js = header.index("participant_id"), header.index("split")
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    present = set(list_subjects(root))
    for line, row in enumerate(rows, start=2):
        sid, split = _subject_id(row[ji].strip()), row[js].strip()
        if split not in out:
            raise InputError(f"{path}: column 'split', line {line}: {split!r} is not one of {', '.join(SPLITS)}")
        if sid not in present:
            raise InputError(f"{path}: line {line}: {sid} has no folder in {root}")
        out[split].append(sid)
    return out


def _one(paths: list[Path], what: str, where: Path, required: bool) -> Path | None:
    if len(paths) == 1:
        return paths[0]
    if not paths:
        if required:
            raise InputError(f"{where}: no {what} found")
        return None
    raise InputError(f"{where}: several {what} files ({', '.join(p.name for p in paths)}); keep one")


def subject_files(dataset_dir, subject: str) -> SubjectFiles:
    """The files of ``subject`` (``"sub-01"`` or ``"01"``) in the dataset ``dataset_dir``."""
    root = Path(dataset_dir)
    sid = _subject_id(subject)
    pet_dir = root / sid / "pet"
    if not pet_dir.is_dir():
        raise InputError(f"{pet_dir}: subject folder not found")
    pet = _one(sorted(pet_dir.glob("*_pet.nii.gz")) + sorted(pet_dir.glob("*_pet.nii")), "*_pet.nii[.gz]", pet_dir,
               True)
    input_function = _one(sorted(pet_dir.glob("*_blood.tsv")) or sorted(pet_dir.glob("*_inputfunction.tsv")),
                          "*_blood.tsv input function", pet_dir, False)
    dsegs = sorted(pet_dir.glob("*_dseg.nii*")) or sorted((root / sid / "anat").glob("*_dseg.nii*"))
    labels = _one(dsegs, "*_dseg.nii[.gz] label map", pet_dir, False)
    label_table = None
    if labels is not None:
        from jaxkin.data.bids import label_table_path

        label_table = label_table_path(labels)
    truth = {}
    truth_dir = root.joinpath(*_TRUTH_DIR, sid, "pet")
    if truth_dir.is_dir():
        for path in sorted(truth_dir.glob("*_mimap.nii.gz")):
            param = path.name.split("_meas-", 1)[1].split("_", 1)[0] if "_meas-" in path.name else None
            if param:
                truth[param] = path
    return SubjectFiles(sid, pet, input_function, labels, label_table, truth)


def load_organ_truth(dataset_dir, subject: str) -> dict[str, dict[str, float]]:
    """A simulated subject's organ-mean ground truth: ``{organ: {"K1":…, "k2":…, "k3":…, "vB":…, "Ki":…}}``."""
    sid = _subject_id(subject)
    path = Path(dataset_dir).joinpath(*_TRUTH_DIR, sid, "pet", f"{sid}_desc-organs_parameters.tsv")
    header, rows = read_tsv(path)
    keys = [k for k in ("K1", "k2", "k3", "vB", "Ki") if k in header]
    return {row[header.index("name")]: {k: float(row[header.index(k)]) for k in keys} for row in rows}
