"""Where things are in a BIDS dataset: file names, the PET scans and the files that belong to each, and the
derivatives jaxkin writes. The one module that knows the BIDS layout; pure file-system logic (names and folders: no
image is opened, no JAX).

* :func:`parse_name` splits ``sub-001_ses-quadra_trc-FDG_rec-acdynPSF_pet.nii.gz`` into its entities, suffix and
  extension; a name that is not BIDS gives None (see there).
* :func:`find_pet_scans` lists the scans ``ROOT/sub-*/[ses-*/]pet/*_pet.nii[.gz]`` with, for each, its blood
  recordings (``*_recording-<label>_blood.tsv`` of the same folder) and its label map (``*_dseg.nii[.gz]`` in the
  subject's ``pet/`` or ``anat/`` folder or in ``ROOT/derivatives/<pipeline>/``).
* :func:`derivative_dir`, :func:`write_dataset_description`, :func:`bids_uri` and :func:`check_output_folder`: where
  jaxkin's outputs go and how they point back to the raw data.

Which file belongs to which scan: a file's entities, leaving out the ones that describe the file itself rather than
the acquisition (``recording`` for blood, ``desc``/``space``/... for label maps), must all appear in the PET's name
with the same value. A blood file without ``trc-``/``rec-`` thus belongs to every PET of its session, one with
``run-2`` only to the PET of run 2. Run-like indices compare as numbers (``run-1`` = ``run-01``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from jaxkin._version import __version__
from jaxkin.errors import InputError
from jaxkin.io.files import read_json, write_json

__all__ = ["BidsName", "PetScan", "BIDS_VERSION", "parse_name", "entities_match", "find_pet_scans",
           "check_dataset_description", "scan_folders", "matching_files", "derivative_dir",
           "write_dataset_description", "bids_uri", "check_output_folder", "derivative_blood"]

#: The BIDS version written in derivative dataset descriptions (the phantom's raw dataset declares the same; the
#: features used here, GeneratedBy, DatasetLinks and BIDS URIs, exist since 1.7.0).
BIDS_VERSION = "1.9.0"
#: The pipeline name in ``GeneratedBy`` (and the default folder name under ``derivatives/``).
PIPELINE = "jaxkin"
#: Where jaxkin's source code lives, for ``GeneratedBy[].CodeURL``: None until the project has a public address
#: (the field is then left out rather than guessed).
CODE_URL: str | None = None

#: Entities that name a file's role, not the acquisition: left out when matching a file to a PET scan.
BLOOD_OWN_ENTITIES = ("recording",)
LABEL_OWN_ENTITIES = ("desc", "space", "res", "den", "seg", "label", "atlas")
#: Entities whose values are indices: ``run-1`` and ``run-01`` are the same run.
_INDEX_ENTITIES = ("run", "echo", "flip", "inv", "split", "chunk")

_KEY = re.compile(r"[a-z][a-z0-9]*")
_VALUE = re.compile(r"[A-Za-z0-9]+")
_SUFFIX = re.compile(r"[A-Za-z0-9]+")
_EXTENSION = re.compile(r"(\.[A-Za-z0-9]+)+")
_NIFTI = (".nii.gz", ".nii")


@dataclasses.dataclass(frozen=True)
class BidsName:
    """A BIDS file name: ``entities`` in the order of the name (``{"sub": "001", "ses": "quadra", ...}``),
    ``suffix`` (``"pet"``, ``"blood"``, ``"dseg"``, ``"mimap"``, ...) and ``extension`` (``".nii.gz"``, ``".tsv"``,
    ``".json"``, ...)."""

    entities: dict
    suffix: str
    extension: str

    @property
    def prefix(self) -> str:
        """The entities as written: ``sub-001_ses-quadra_trc-FDG`` (the stem of derived files)."""
        return "_".join(f"{k}-{v}" for k, v in self.entities.items())

    @property
    def name(self) -> str:
        """The file name again: ``prefix_suffix.extension``."""
        return "_".join(([self.prefix] if self.entities else []) + [self.suffix]) + self.extension


def parse_name(path) -> BidsName | None:
    """The entities, suffix and extension of a BIDS file name (the last component of ``path``).

    ``sub-001_ses-quadra_trc-FDG_rec-acdynPSF_pet.nii.gz`` -> entities ``{sub: 001, ses: quadra, trc: FDG,
    rec: acdynPSF}``, suffix ``pet``, extension ``.nii.gz``. A name that is not BIDS gives **None** (no error: a
    dataset may hold other files, and callers skip them): a hidden file, no extension, a part that is not
    ``key-value`` (lowercase key, alphanumeric value), a repeated key, or a suffix that is not alphanumeric. The
    extension is everything from the first dot. Callers that need the file (a PET scan) turn None into an
    :class:`~jaxkin.errors.InputError` naming it.
    """
    name = Path(path).name
    if not name or name.startswith("."):
        return None
    stem, dot, rest = name.partition(".")
    extension = dot + rest
    if not _EXTENSION.fullmatch(extension):
        return None
    *parts, suffix = stem.split("_")
    if not _SUFFIX.fullmatch(suffix):
        return None
    entities: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("-")
        if not sep or not _KEY.fullmatch(key) or not _VALUE.fullmatch(value) or key in entities:
            return None
        entities[key] = value
    return BidsName(entities, suffix, extension)


def _same_value(key: str, a: str, b: str) -> bool:
    if key in _INDEX_ENTITIES and a.isdigit() and b.isdigit():
        return int(a) == int(b)
    return a == b


def entities_match(entities: Mapping, target: Mapping, *, ignore: Iterable[str] = ()) -> bool:
    """True if every entity of ``entities`` but those in ``ignore`` is in ``target`` with the same value."""
    ignore = set(ignore)
    return all(k in target and _same_value(k, v, target[k]) for k, v in entities.items() if k not in ignore)


@dataclasses.dataclass(frozen=True)
class PetScan:
    """One PET scan of a dataset and the files that belong to it.

    ``pet``: the ``*_pet.nii[.gz]``; ``entities``: its name's entities; ``subject``/``session``: the folder names
    (``"sub-001"``, ``"ses-quadra"`` or None); ``blood``: its blood recordings (sorted by name; may be empty);
    ``labels``: its label map ``*_dseg.nii[.gz]`` or None.
    """

    pet: Path
    entities: dict
    subject: str
    session: str | None
    blood: tuple
    labels: Path | None

    @property
    def prefix(self) -> str:
        """The PET file name without ``_pet.nii[.gz]``: ``sub-001_ses-quadra_trc-FDG_rec-acdynPSF``. Unique in a
        dataset; the stem of the scan's derived files."""
        return "_".join(f"{k}-{v}" for k, v in self.entities.items())


def _labelled(prefix: str, label) -> str:
    """``"001"`` or ``"sub-001"`` -> ``"sub-001"`` (InputError for a label that is not alphanumeric)."""
    text = str(label).strip()
    bare = text.removeprefix(prefix + "-")
    if not _VALUE.fullmatch(bare):
        raise InputError(f"{'participant' if prefix == 'sub' else 'session'} label {text!r}: not a BIDS label "
                         "(letters and digits only)")
    return f"{prefix}-{bare}"


def check_dataset_description(root) -> dict:
    """The raw dataset's ``ROOT/dataset_description.json`` (which BIDS requires): InputError if ROOT is not a folder,
    or the file is missing or not a JSON object."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    path = root / "dataset_description.json"
    if not path.is_file():
        raise InputError(f"{root}: not a BIDS dataset (no dataset_description.json; BIDS requires one, with at least "
                         '{"Name": ..., "BIDSVersion": ...})')
    return read_json(path, "dataset_description.json")


def scan_folders(root, subject: str, session: str | None, *, datatypes=("pet",), derivatives: str | None = None,
                 raw: bool = True) -> list[list[Path]]:
    """The folders that may hold files of a scan of ``subject`` (``"sub-X"``) in ``session`` (``"ses-Y"`` or
    None), most specific first: ``[[session level], [subject level]]`` (just the subject level without a session),
    each a list of ``BASE/sub-X[/ses-Y]/<datatype>`` for the bases ``ROOT`` (with ``raw``) and
    ``ROOT/derivatives/<derivatives>`` (a pipeline folder name, or ``"*"`` for every one, sorted; None for none).
    Folders need not exist."""
    root = Path(root)
    bases = [root] if raw else []
    if derivatives is not None:
        deriv = root / "derivatives"
        if derivatives == "*":
            bases += sorted(p for p in deriv.iterdir() if p.is_dir()) if deriv.is_dir() else []
        else:
            bases.append(deriv / derivatives)
    levels = [[subject, session]] if session else []
    levels.append([subject])
    return [[base.joinpath(*parts, dt) for base in bases for dt in datatypes] for parts in levels]


def matching_files(scan_entities: Mapping, levels: list, *, suffix: str, extensions: tuple,
                   ignore: Iterable[str] = ()) -> list[Path]:
    """Files ``*_<suffix><extension>`` in the folders of ``levels`` (lists of folders, most specific first) whose
    entities, but ``ignore``, match ``scan_entities`` (:func:`entities_match`): those of the first level that has
    any, sorted, each path once (files reached twice through links count once). Names that are not BIDS are
    skipped."""
    ignore = tuple(ignore)
    for folders in levels:
        found: dict[Path, Path] = {}
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                name = parse_name(path)
                if (name is None or name.suffix != suffix or name.extension not in extensions
                        or not entities_match(name.entities, scan_entities, ignore=ignore) or not path.is_file()):
                    continue
                found.setdefault(path.resolve(), path)
        if found:
            return sorted(found.values())
    return []


def _label_map(root: Path, scan_entities: Mapping, subject: str, session: str | None, pet: Path) -> Path | None:
    levels = scan_folders(root, subject, session, datatypes=("pet", "anat"), derivatives="*")
    found = matching_files(scan_entities, levels, suffix="dseg", extensions=_NIFTI, ignore=LABEL_OWN_ENTITIES)
    if len(found) > 1:
        listed = ", ".join(str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in found)
        raise InputError(f"{pet}: several label maps match this scan ({listed}); keep one, or give the label "
                         "maps entities that tell them apart (e.g. run-, trc-)")
    return found[0] if found else None


def _scans_in(root: Path, subject: str, session: str | None, pet_dir: Path, with_labels: bool) -> list[PetScan]:
    if not pet_dir.is_dir():
        return []
    paths = sorted(p for p in pet_dir.iterdir() if p.name.endswith(("_pet.nii.gz", "_pet.nii"))
                   and not p.name.startswith("."))
    scans, seen = [], {}
    for path in paths:
        name = parse_name(path)
        if name is None or name.suffix != "pet":
            raise InputError(f"{path}: not a BIDS file name (expected sub-<label>[_ses-<label>][_<key>-<value>...]"
                             "_pet.nii[.gz], letters and digits in labels)")
        where = subject + (f"/{session}" if session else "")
        if name.entities.get("sub") != subject[4:] or name.entities.get("ses") != (session[4:] if session else None):
            said = "_".join(f"{k}-{name.entities[k]}" for k in ("sub", "ses") if k in name.entities) or "no sub-"
            raise InputError(f"{path}: the name says {said} but the file is in {where}/pet")
        if name.prefix in seen:
            raise InputError(f"{pet_dir}: {seen[name.prefix].name} and {path.name} are the same scan; keep one")
        seen[name.prefix] = path
        blood = [p for p in sorted(pet_dir.iterdir()) if p.name.endswith("_blood.tsv") and p.is_file()
                 and (b := parse_name(p)) is not None and b.suffix == "blood"
                 and entities_match(b.entities, name.entities, ignore=BLOOD_OWN_ENTITIES)]
        labels = _label_map(root, name.entities, subject, session, path) if with_labels else None
        scans.append(PetScan(path, dict(name.entities), subject, session, tuple(blood), labels))
    return scans


def find_pet_scans(root, *, participants=None, sessions=None, require_description: bool = True,
                   with_labels: bool = True) -> list[PetScan]:
    """The PET scans ``ROOT/sub-*/[ses-*/]pet/*_pet.nii[.gz]``, sorted by subject, session and name.

    ``participants`` / ``sessions``: labels to keep (``"001"`` or ``"sub-001"``; ``"quadra"`` or ``"ses-quadra"``);
    a participant without a ``sub-`` folder, a selected participant without any PET scan, or a session label that
    matches no ``ses-`` folder of the selected participants is an InputError naming the label and ROOT.

    Each scan's ``blood`` are the ``*_blood.tsv`` of its folder whose entities but ``recording`` match the PET's;
    its ``labels`` (with ``with_labels``) the one ``*_dseg.nii[.gz]`` matching it (entities but
    :data:`LABEL_OWN_ENTITIES`) in ``sub-X/[ses-Y/]{pet,anat}/`` or ``derivatives/<pipeline>/sub-X/[ses-Y/]
    {pet,anat}/``: session folders first, the subject's own folders only if they hold none; several at that level
    are an InputError listing them.

    ``require_description``: ROOT must hold ``dataset_description.json``, as BIDS requires (an InputError says
    so). Training datasets (``participants.tsv`` with a split, :mod:`jaxkin.io.dataset`) pass False: jaxkin never
    required the description there. InputError as well if ROOT is not a folder, a PET file's name is not BIDS or
    disagrees with its folders, or no scan is found.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    if require_description:
        check_dataset_description(root)
    subjects = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("sub-"))
    if participants is not None:
        participants = [participants] if isinstance(participants, str) else list(participants)
        wanted = list(dict.fromkeys(_labelled("sub", p) for p in participants))
        missing = [w for w in wanted if w not in subjects]
        if missing:
            shown = ", ".join(subjects[:5]) + (", ..." if len(subjects) > 5 else "") if subjects else "none"
            raise InputError(f"{root}: participant label {missing[0].removeprefix('sub-')!r} matches no subject "
                             f"folder {missing[0]} (subjects: {shown})")
        subjects = sorted(wanted)
    ses_wanted = None
    if sessions is not None:
        sessions = [sessions] if isinstance(sessions, str) else list(sessions)
        ses_wanted = list(dict.fromkeys(_labelled("ses", s) for s in sessions))
    scans, ses_seen = [], set()
    for subject in subjects:
        sub_dir = root / subject
        ses_dirs = sorted(d for d in sub_dir.iterdir() if d.is_dir() and d.name.startswith("ses-"))
        ses_seen |= {d.name for d in ses_dirs}
        levels = [(None, sub_dir)] + [(d.name, d) for d in ses_dirs]
        if ses_wanted is not None:
            levels = [(s, d) for s, d in levels if s in ses_wanted]
        found = [scan for ses, d in levels for scan in _scans_in(root, subject, ses, d / "pet", with_labels)]
        if participants is not None and ses_wanted is None and not found:
            where = f"{sub_dir}: no ses-*/pet/*_pet.nii[.gz]" if ses_dirs else f"{sub_dir / 'pet'}: no *_pet.nii[.gz]"
            raise InputError(f"{where} found")
        scans += found
    if ses_wanted is not None:
        missing = [s for s in ses_wanted if s not in ses_seen]
        if missing:
            raise InputError(f"{root}: session label {missing[0].removeprefix('ses-')!r} matches no session folder "
                             f"{missing[0]} of " + ("the selected participants" if participants is not None
                                                    else "any subject") + f" (sessions: "
                             f"{', '.join(sorted(ses_seen)) or 'none'})")
    if not scans:
        raise InputError(f"{root}: no PET scan found (sub-*/[ses-*/]pet/*_pet.nii[.gz])"
                         + (" for the selected participants/sessions" if participants or ses_wanted else ""))
    return scans


# --------------------------------------------------------------------------------------------------
# Derivatives
# --------------------------------------------------------------------------------------------------


def derivative_dir(out, scan: PetScan) -> Path:
    """Where a scan's derivatives go in the derivative dataset ``out``: ``out/sub-X/[ses-Y/]pet``."""
    return Path(out).joinpath(scan.subject, *([scan.session] if scan.session else []), "pet")


def derivative_blood(deriv_root, scan: PetScan) -> tuple[Path, ...]:
    """The blood recordings of ``scan`` in the derivative dataset ``deriv_root`` (e.g. the image-derived inputs
    ``jaxkin idif`` wrote for a dataset): ``deriv_root/sub-X/[ses-Y/]pet/*_blood.tsv`` whose entities but
    ``recording`` match the scan's."""
    levels = [[derivative_dir(deriv_root, scan)]]
    return tuple(matching_files(scan.entities, levels, suffix="blood", extensions=(".tsv",),
                                ignore=BLOOD_OWN_ENTITIES))


def bids_uri(path, root, dataset: str = "raw") -> str:
    """The BIDS URI of ``path`` in the dataset at ``root``: ``bids:raw:sub-001/ses-quadra/pet/..._pet.nii.gz``
    (``bids:<dataset-name>:<relative-path>``; ``dataset=""`` names the dataset the URI is written in; another name
    must be a key of the writing dataset's ``DatasetLinks``). InputError if ``path`` is not inside ``root``."""
    path, root = Path(path), Path(root)
    if any(c in dataset for c in ":/ "):
        raise InputError(f"bids_uri: dataset name {dataset!r} may not hold ':', '/' or spaces")
    for p, r in ((path.absolute(), root.absolute()), (path.resolve(), root.resolve())):
        if p.is_relative_to(r) and p != r:
            return f"bids:{dataset}:{p.relative_to(r).as_posix()}"
    raise InputError(f"{path}: not inside the dataset {root} (no BIDS URI)")


def _uri(root: Path) -> str:
    return root.resolve().as_uri()


def write_dataset_description(out, *, source_root, name: str, pipeline_description: str | None = None,
                              links: dict | None = None) -> Path:
    """Write (or update) the derivative dataset's ``out/dataset_description.json`` atomically; returns its path.

    Written: ``Name``, ``BIDSVersion`` (:data:`BIDS_VERSION`), ``DatasetType: "derivative"``, ``GeneratedBy``
    (``{"Name": "jaxkin", "Version": <jaxkin version>[, "CodeURL"], "Description": pipeline_description or name}``:
    the kind of derivative),
    ``SourceDatasets: [{"URL": <file URI of source_root>}]`` and ``DatasetLinks: {"raw": <same URI>}``, so that
    sidecars can point at their inputs with ``bids:raw:...`` (:func:`bids_uri`); ``links`` (``{name: folder}``) adds
    other datasets read (e.g. ``{"blood": <an image-derived input dataset>}``) to both.

    An existing description written by jaxkin (every ``GeneratedBy`` entry named jaxkin) with the same ``Name`` (the
    kind of derivative: ``jaxkin fit``, ``jaxkin idif``, ...) is updated: the keys above are set, other keys
    (``License``, ``Authors``, ...) kept, and a ``GeneratedBy`` entry for this jaxkin version is appended if it is not
    there yet. InputError, leaving the file as it is, if it was written by another pipeline (or is a raw dataset's,
    or the phantom's ground truth), by another jaxkin command, or names another raw dataset: one pipeline per
    derivatives folder, and derivatives of two datasets do not mix either.
    """
    out, source = Path(out), Path(source_root)
    path = out / "dataset_description.json"
    entry = {"Name": PIPELINE, "Version": __version__}
    if CODE_URL:
        entry["CodeURL"] = CODE_URL
    entry["Description"] = pipeline_description or name  # the kind of derivative (see _check_description)
    uri = _uri(source)
    extra = {key: _uri(Path(folder)) for key, folder in (links or {}).items()}
    description = {"Name": name, "BIDSVersion": BIDS_VERSION, "DatasetType": "derivative", "GeneratedBy": [entry],
                   "SourceDatasets": [{"URL": uri}] + [{"URL": u} for u in extra.values()],
                   "DatasetLinks": {"raw": uri, **extra}}
    if path.exists():
        old = _check_description(path, entry["Description"], uri, source)
        generated = old["GeneratedBy"]
        versions = [g for g in generated if g.get("Version") == __version__
                    and g.get("Description") in (None, entry["Description"])]
        kept = {k: v for k, v in old.items() if k not in description}
        description = description | kept | {"Name": old.get("Name", name),
                                             "GeneratedBy": generated + ([] if versions else [entry])}
    write_json(path, description)
    return path


def _check_description(path: Path, kind: str, uri: str, source: Path) -> dict:
    """The existing description ``path`` of a derivative dataset jaxkin may write into: written by jaxkin (every
    ``GeneratedBy`` entry), of the same ``kind`` (the entries' ``Description``, e.g. ``jaxkin fit``; the dataset's
    ``Name`` where no entry has one, as jaxkin 0.1 wrote it) and of the same raw dataset (``uri``); InputError
    otherwise (another pipeline's, the phantom's ground truth, another command's outputs)."""
    old = read_json(path, "dataset_description.json")
    generated = old.get("GeneratedBy")
    names = [g.get("Name") if isinstance(g, dict) else None for g in generated] \
        if isinstance(generated, list) and generated else []
    if old.get("DatasetType") != "derivative" or not names or any(n != PIPELINE for n in names):
        who = ", ".join(str(n) for n in names) if names else "no GeneratedBy; a raw dataset?"
        raise InputError(f"{path}: written by another pipeline ({who}), not jaxkin: write jaxkin's derivatives "
                         "into a folder of their own (e.g. derivatives/jaxkin)")
    kinds = {g.get("Description") for g in generated if g.get("Description")} or {old.get("Name")}
    if kinds != {kind}:
        theirs = ", ".join(repr(k) for k in sorted(map(str, kinds)))
        raise InputError(f"{path}: a derivative dataset of another kind ({theirs}, not {kind!r}); write these outputs "
                         "into a folder of their own")
    linked = (old.get("DatasetLinks") or {}).get("raw") if isinstance(old.get("DatasetLinks"), dict) else None
    if linked is not None and linked != uri:
        raise InputError(f"{path}: holds derivatives of another dataset ({linked}), not of {source}; choose "
                         "another output folder")
    return old


def check_output_folder(out, root, name: str | None = None) -> None:
    """InputError if the output folder ``out`` would write into the raw dataset ``root``: ``out`` is ``root``, lies
    inside it but not inside ``ROOT/derivatives/<name>/``, or contains ``root``. (Paths are compared resolved.)
    With ``name`` (the derivative dataset's, e.g. ``jaxkin fit``): also if ``out`` is a file, or a folder that holds
    files but is not a derivative dataset jaxkin wrote with that name from ``root`` (see
    :func:`write_dataset_description`). Nothing is created."""
    out_r, root_r = Path(out).resolve(), Path(root).resolve()
    if out_r == root_r:
        raise InputError(f"output folder {out}: is the input dataset {root}; write derivatives to "
                         f"{root}/derivatives/{PIPELINE} or a folder outside it")
    if root_r.is_relative_to(out_r):
        raise InputError(f"output folder {out}: contains the input dataset {root}; choose a folder beside it or "
                         f"{root}/derivatives/{PIPELINE}")
    if out_r.is_relative_to(root_r):
        deriv = root_r / "derivatives"
        if not out_r.is_relative_to(deriv):
            raise InputError(f"output folder {out}: inside the raw dataset {root}; jaxkin writes derivatives only "
                             f"under {root}/derivatives/ (e.g. {root}/derivatives/{PIPELINE})")
        if out_r == deriv:
            raise InputError(f"output folder {out}: is the derivatives folder itself; use a pipeline folder in it, "
                             f"e.g. {root}/derivatives/{PIPELINE}")
    if name is None or not Path(out).exists():
        return
    out = Path(out)
    if not out.is_dir():
        raise InputError(f"output folder {out}: is a file")
    description = out / "dataset_description.json"
    if description.exists():
        _check_description(description, name, _uri(Path(root)), Path(root))
    elif any(not p.name.startswith(".") for p in out.iterdir()):
        raise InputError(f"output folder {out}: holds files but no dataset_description.json, so jaxkin did not make "
                         "it; choose an empty or new folder")
