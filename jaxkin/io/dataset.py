"""Datasets of subjects in BIDS-PET layout: the train/val/test split and the files of each subject's PET scans.

Works for the simulated phantom (:func:`jaxkin.phantom.writer.simulate_dataset`) and for your own data laid out as
``sub-<id>/[ses-<id>/]pet/sub-<id>[_ses-<id>][_...]_pet.nii.gz`` (+ ``.json``), blood recordings
``*_recording-<label>_blood.tsv`` beside it, an optional label map ``*_dseg.nii.gz`` (+ ``*_dseg.tsv``) in ``pet/``
or ``anat/`` or under ``derivatives/<pipeline>/``, and an optional ``split`` column (train/val/test) in
``participants.tsv``. A subject may have several scans (sessions, runs, tracers): :func:`scan_files` lists them;
the split is by subject, so one subject's scans never straddle splits. Which file belongs to which scan is
:mod:`jaxkin.io.layout`'s business.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxkin.errors import InputError
from jaxkin.io import layout
from jaxkin.io.files import nifti_stem, read_tsv
from jaxkin.io.labels import label_table_path

__all__ = ["SubjectFiles", "SPLITS", "TRUTH_PIPELINE", "truth_root", "list_subjects", "dataset_split", "scan_files",
           "subject_files", "load_organ_truth", "read_organ_truth"]

#: The values of the ``split`` column of ``participants.tsv``.
SPLITS = ("train", "val", "test")
#: The pipeline folder of the simulated phantom's ground truth: ``derivatives/groundtruth/sub-<id>/[ses-<id>/]pet/``
#: (label maps in ``anat/``).
TRUTH_PIPELINE = "groundtruth"
#: Entities of a truth file's name that describe the file, not the scan.
_TRUTH_OWN_ENTITIES = ("model", "meas", "desc", "space")


@dataclasses.dataclass(frozen=True)
class SubjectFiles:
    """Paths of one PET scan of a subject.

    ``scan_id``: the PET file name without ``_pet.nii[.gz]`` (``sub-01``, ``sub-01_ses-a_trc-FDG``; taken from
    ``pet`` when not given): unique in the dataset, the prefix of the scan's maps and its key in reports. ``session``: ``"ses-a"`` or None. ``blood``: the
    scan's blood recordings (sorted; may be empty). ``labels`` and ``label_table`` are None when absent; ``truth``
    maps a parameter name (K1, k2, k3, vB, Ki) to its ground-truth map and ``organ_truth`` is the organ-mean table
    ``*_desc-organs_parameters.tsv`` (simulated data only; ``{}`` / None otherwise).
    """

    subject: str
    pet: Path
    blood: tuple
    labels: Path | None
    label_table: Path | None
    truth: dict
    session: str | None = None
    scan_id: str = ""
    organ_truth: Path | None = None

    def __post_init__(self):
        if not self.scan_id:  # built by hand: the PET's prefix
            object.__setattr__(self, "scan_id", nifti_stem(Path(self.pet)).removesuffix("_pet"))


def truth_root(dataset_dir) -> Path:
    """The ground-truth derivative of a simulated dataset: ``dataset_dir/derivatives/groundtruth``."""
    return Path(dataset_dir) / "derivatives" / TRUTH_PIPELINE


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


def _truth_files(root: Path, scan: layout.PetScan) -> tuple[dict, Path | None]:
    """A simulated scan's truth maps ``{param: path}`` and organ table (``derivatives/groundtruth``)."""
    levels = layout.scan_folders(root, scan.subject, scan.session, derivatives=TRUTH_PIPELINE, raw=False)
    truth = {}
    for path in layout.matching_files(scan.entities, levels, suffix="mimap", extensions=(".nii.gz",),
                                      ignore=_TRUTH_OWN_ENTITIES):
        param = layout.parse_name(path).entities.get("meas")
        if param:
            truth[param] = path
    organs = [p for p in layout.matching_files(scan.entities, levels, suffix="parameters", extensions=(".tsv",),
                                               ignore=_TRUTH_OWN_ENTITIES)
              if layout.parse_name(p).entities.get("desc") == "organs"]
    return truth, (organs[0] if len(organs) == 1 else None)


def _files(root: Path, scan: layout.PetScan) -> SubjectFiles:
    label_table = label_table_path(scan.labels) if scan.labels is not None else None
    truth, organs = _truth_files(root, scan)
    return SubjectFiles(scan.subject, scan.pet, scan.blood, scan.labels, label_table, truth, session=scan.session,
                        scan_id=scan.prefix, organ_truth=organs)


def scan_files(dataset_dir, subject: str) -> list[SubjectFiles]:
    """The files of every PET scan of ``subject`` (``"sub-01"`` or ``"01"``) in ``dataset_dir``, sorted by session
    and name (see :func:`jaxkin.io.layout.find_pet_scans`; ``dataset_description.json`` is not required here).
    InputError if the subject has no folder or no PET scan."""
    root = Path(dataset_dir)
    scans = layout.find_pet_scans(root, participants=[_subject_id(subject)], require_description=False)
    return [_files(root, scan) for scan in scans]


def subject_files(dataset_dir, subject: str) -> SubjectFiles:
    """The files of ``subject``'s one PET scan (``subject``: ``"sub-01"`` or ``"01"``); InputError if it has
    several (sessions, runs): use :func:`scan_files`."""
    scans = scan_files(dataset_dir, subject)
    if len(scans) > 1:
        raise InputError(f"{Path(dataset_dir) / _subject_id(subject)}: {len(scans)} PET scans "
                         f"({', '.join(s.scan_id for s in scans)}); use jaxkin.io.dataset.scan_files for all of them")
    return scans[0]


def read_organ_truth(path) -> dict[str, dict[str, float]]:
    """An organ-mean ground-truth table (``*_desc-organs_parameters.tsv``: ``name``, K1, k2, k3, vB, Ki) as
    ``{organ: {"K1":…, "k2":…, "k3":…, "vB":…, "Ki":…}}``."""
    header, rows = read_tsv(Path(path))
    keys = [k for k in ("K1", "k2", "k3", "vB", "Ki") if k in header]
    return {row[header.index("name")]: {k: float(row[header.index(k)]) for k in keys} for row in rows}


def load_organ_truth(dataset_dir, subject: str) -> dict[str, dict[str, float]]:
    """A simulated subject's organ-mean ground truth: ``{organ: {"K1":…, "k2":…, "k3":…, "vB":…, "Ki":…}}``
    (the subject's ``derivatives/groundtruth/sub-<id>/pet/sub-<id>_desc-organs_parameters.tsv``; for a scan of a
    subject with sessions, :func:`read_organ_truth` of its ``SubjectFiles.organ_truth``)."""
    sid = _subject_id(subject)
    return read_organ_truth(truth_root(dataset_dir) / sid / "pet" / f"{sid}_desc-organs_parameters.tsv")
