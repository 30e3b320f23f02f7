"""Label maps in every form users bring, on the PET's grid: BIDS ``dseg``, TotalSegmentator multilabel files and
folders of per-structure masks.

* :func:`read_labels` opens any of them and returns :class:`Labels` on the PET's grid:

  - a BIDS label map ``*_dseg.nii[.gz]`` with its table ``*_dseg.tsv`` (``index``, ``name``);
  - a TotalSegmentator multilabel file (TotalSegmentator's multilabel output, its ``ml`` option): the names come from its NIfTI header extension
    (a CARET/GIFTI-style XML ``LabelTable`` of ``<Label Key="52">aorta</Label>`` entries, written by TotalSegmentator
    since release 1.5.2), or from a table given with ``table=`` — a TSV, or ``"totalsegmentator"`` for the
    published class table of the ``total`` task (:data:`TOTALSEGMENTATOR_TOTAL`). A file without names and without
    a table is refused: label ids depend on TotalSegmentator's task and version (``aorta`` is 52 in v2's ``total``,
    7 in v1 and with its ``v1_order`` option), so jaxkin does not guess them;
  - a folder of masks as TotalSegmentator writes by default (``segmentations/liver.nii.gz``, ...): each file is one
    structure named after the file; all masks must share one grid.

  Labels on another grid (the CT's) are resampled to the PET's grid by nearest neighbour with
  ``nibabel.processing.resample_from_to`` (said in :attr:`Labels.notes`). :meth:`Labels.fractions` gives
  partial-volume fractions instead (the fraction of each PET voxel's volume inside a structure, from the labels on
  their own grid).
* Names: :meth:`Labels.ids` takes a label name, a label number or a group name. Groups merge structures
  (``kidneys=kidney_left,kidney_right``, :func:`parse_groups`); :data:`DEFAULT_GROUPS` gives the organs of the
  paper's figures from TotalSegmentator's structures (added when their members are present and no label has the
  group's name).

Every problem raises :class:`jaxkin.errors.InputError`, one line naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from jaxkin.errors import InputError
from jaxkin.io.files import (
    AFFINE_ATOL,
    atomic_write,
    nifti_stem,
    one_line,
    open_nifti,
    read_tsv,
)

__all__ = [
    "Labels",
    "LabelSource",
    "read_labels",
    "write_labels",
    "label_table_path",
    "parse_groups",
    "header_label_names",
    "TOTALSEGMENTATOR_TOTAL",
    "TOTALSEGMENTATOR_SOURCE",
    "BUILTIN_TABLES",
    "DEFAULT_GROUPS",
]

#: Where :data:`TOTALSEGMENTATOR_TOTAL` comes from.
TOTALSEGMENTATOR_SOURCE = (
    "TotalSegmentator >= 2.2.1, task 'total' (117 classes): class_map['total'] of totalsegmentator/map_to_binary.py, "
    "github.com/wasserth/TotalSegmentator at commit 0275d3046117a9615a9876e6e4eefd5156843f1c. Releases 2.0.0-2.1.0 "
    "numbered the ribs (ids 92-115) in another order (fixed in 2.2.1: 'rib labels were in wrong order'); v1 and "
    "its v1_order option use another table (aorta = 7)"
)


def _totalsegmentator_total() -> dict[int, str]:
    vertebrae = ["S1"] + [f"L{i}" for i in range(5, 0, -1)] + [f"T{i}" for i in range(12, 0, -1)] + \
        [f"C{i}" for i in range(7, 0, -1)]
    names = [
        "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas",
        "adrenal_gland_right", "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left",
        "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right", "esophagus", "trachea",
        "thyroid_gland", "small_bowel", "duodenum", "colon", "urinary_bladder", "prostate", "kidney_cyst_left",
        "kidney_cyst_right", "sacrum",
        *[f"vertebrae_{v}" for v in vertebrae],                                           # 26-50
        "heart", "aorta", "pulmonary_vein", "brachiocephalic_trunk", "subclavian_artery_right",
        "subclavian_artery_left", "common_carotid_artery_right", "common_carotid_artery_left",
        "brachiocephalic_vein_left", "brachiocephalic_vein_right", "atrial_appendage_left", "superior_vena_cava",
        "inferior_vena_cava", "portal_vein_and_splenic_vein", "iliac_artery_left", "iliac_artery_right",
        "iliac_vena_left", "iliac_vena_right", "humerus_left", "humerus_right", "scapula_left", "scapula_right",
        "clavicula_left", "clavicula_right", "femur_left", "femur_right", "hip_left", "hip_right", "spinal_cord",
        "gluteus_maximus_left", "gluteus_maximus_right", "gluteus_medius_left", "gluteus_medius_right",
        "gluteus_minimus_left", "gluteus_minimus_right", "autochthon_left", "autochthon_right", "iliopsoas_left",
        "iliopsoas_right", "brain", "skull",
        *[f"rib_left_{i}" for i in range(1, 13)], *[f"rib_right_{i}" for i in range(1, 13)],   # 92-115
        "sternum", "costal_cartilages",
    ]
    return {i + 1: n for i, n in enumerate(names)}


#: TotalSegmentator's class table of the ``total`` task (id -> name); see :data:`TOTALSEGMENTATOR_SOURCE`.
TOTALSEGMENTATOR_TOTAL: dict[int, str] = _totalsegmentator_total()

#: Built-in label tables, by the name :func:`read_labels`'s ``table`` takes.
BUILTIN_TABLES: dict[str, tuple[dict, str]] = {"totalsegmentator": (TOTALSEGMENTATOR_TOTAL, TOTALSEGMENTATOR_SOURCE)}

_BONES = tuple(n for n in TOTALSEGMENTATOR_TOTAL.values()
               if n.startswith(("vertebrae_", "rib_", "humerus_", "scapula_", "clavicula_", "femur_", "hip_"))
               or n in ("sacrum", "sternum", "skull"))

#: Groups for the organs of the paper's figures, from TotalSegmentator's structures: added by :func:`read_labels`
#: when at least one member is present and no label already has the group's name (the phantom's label map has
#: ``kidneys`` and ``lungs`` itself). TotalSegmentator's ``total`` task has ``heart`` (no myocardium) and ``liver``,
#: ``spleen`` as they are.
DEFAULT_GROUPS: dict[str, tuple[str, ...]] = {
    "kidneys": ("kidney_left", "kidney_right"),
    "lungs": ("lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_middle_lobe_right",
              "lung_lower_lobe_right"),
    "bone": _BONES,
}


@dataclasses.dataclass(frozen=True, eq=False)
class LabelSource:
    """Labels on their own grid (e.g. the CT's) before resampling: ``data int [X', Y', Z']`` and its ``affine``."""

    data: np.ndarray
    affine: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class Labels:
    """A label map ``data int [X, Y, Z]`` on the PET's grid and its table ``names`` (index -> name; 0 is background).

    ``groups``: group name -> member label names. ``notes``: what was assumed or done while reading (resampling),
    one sentence each. ``source``: the labels on their own grid when they were resampled (for :meth:`fractions`).
    ``kind``: ``dseg``, ``multilabel`` or ``mask folder``; ``table``: where the names come from.
    """

    data: np.ndarray
    names: dict
    affine: np.ndarray | None = None
    path: Path | None = None
    groups: dict = dataclasses.field(default_factory=dict)
    notes: tuple = ()
    source: LabelSource | None = None
    kind: str = "dseg"
    table: str | None = None

    def _where(self) -> str:
        return str(self.path) if self.path is not None else "labels"

    def _listing(self) -> str:
        text = "the labels are " + ", ".join(self.names.values())
        if self.groups:
            text += "; the groups " + ", ".join(self.groups)
        return text

    def index(self, name: str) -> int:
        """The index of the label called ``name`` (a label, not a group)."""
        for i, n in self.names.items():
            if n == name:
                return int(i)
        raise InputError(f"{self._where()}: no label named {name!r}; {self._listing()}")

    def ids(self, spec) -> tuple[int, ...]:
        """The label indices of ``spec``: a label name, a group name or a label number (``"52"`` or 52)."""
        text = str(spec).strip()
        for i, n in self.names.items():
            if n == text:
                return (int(i),)
        if text in self.groups:
            return tuple(self.index(m) for m in self.groups[text])
        if text.isdigit() and int(text) in self.names:
            return (int(text),)
        raise InputError(f"{self._where()}: no label named {text!r}; {self._listing()}")

    def name_of(self, spec) -> str:
        """The name of ``spec`` (a number becomes its label's name)."""
        text = str(spec).strip()
        if text.isdigit() and int(text) in self.names and text not in self.groups:
            return self.names[int(text)]
        return text

    def mask(self, *specs) -> np.ndarray:
        """``bool [X, Y, Z]``: voxels carrying any of the labels or groups ``specs`` (nearest neighbour)."""
        return np.isin(self.data, [i for s in specs for i in self.ids(s)])

    def region_names(self) -> list[str]:
        """The labels with at least one voxel on the PET's grid (in index order), then the groups with one."""
        present = set(np.unique(self.data).tolist()) - {0}
        out = [n for i, n in sorted(self.names.items()) if i in present]
        return out + [g for g in self.groups if any(self.index(m) in present for m in self.groups[g])]

    def fractions(self, spec, *, oversample: int | None = None) -> np.ndarray:
        """``float32 [X, Y, Z]``: the fraction of each PET voxel's volume inside ``spec`` (label, group or number).

        Labels read on the PET's grid give 0 or 1. Labels resampled from another grid are sampled on their own grid
        at ``oversample ** 3`` points spread evenly over each PET voxel (nearest neighbour at each point; default: twice
        the ratio of the voxel sizes, rounded up, at least 2, at most 8), so a voxel on a structure's border gets the
        share of its volume inside it. The fractions of all labels of a voxel sum to at most 1.
        """
        ids = self.ids(spec)
        if self.source is None:
            return np.isin(self.data, ids).astype(np.float32)
        src = self.source
        inside = np.isin(src.data, ids)
        out = np.zeros(self.data.shape, np.float32)
        where = np.argwhere(inside)
        if where.size == 0:
            return out
        to_src = np.linalg.inv(src.affine) @ self.affine  # PET voxel -> source voxel
        pet_sizes = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        src_sizes = np.sqrt((src.affine[:3, :3] ** 2).sum(axis=0))
        if oversample is None:
            oversample = int(min(8, max(2, 2 * math.ceil(float(np.max(pet_sizes / src_sizes)) - 1e-6))))
        # the PET voxels that can touch the structure: its source bounding box (+- half a voxel) in PET voxels
        lo, hi = where.min(axis=0) - 0.5, where.max(axis=0) + 0.5
        corners = np.array([[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        pet_corners = (np.linalg.inv(to_src) @ corners.T)[:3].T
        start = np.clip(np.floor(pet_corners.min(axis=0) - 1).astype(int), 0, np.array(self.data.shape))
        stop = np.clip(np.ceil(pet_corners.max(axis=0) + 2).astype(int), 0, np.array(self.data.shape))
        if np.any(stop <= start):
            return out
        grid = np.stack(np.meshgrid(*[np.arange(a, b, dtype=np.float64) for a, b in zip(start, stop)],
                                    indexing="ij"), axis=-1)  # [x, y, z, 3] PET voxel indices
        offsets = (np.arange(oversample) + 0.5) / oversample - 0.5
        acc = np.zeros(grid.shape[:3], np.float32)
        shape = np.array(src.data.shape)
        for dx in offsets:
            for dy in offsets:
                for dz in offsets:
                    pts = grid + np.array([dx, dy, dz])
                    idx = np.rint(pts @ to_src[:3, :3].T + to_src[:3, 3]).astype(np.int64)
                    ok = np.all((idx >= 0) & (idx < shape), axis=-1)
                    idx = np.where(ok[..., None], idx, 0)
                    acc += (ok & inside[idx[..., 0], idx[..., 1], idx[..., 2]]).astype(np.float32)
        out[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]] = acc / oversample ** 3
        return out

    def describe(self) -> dict:
        """Fields for an output sidecar: where the labels come from and how they reached the PET's grid."""
        out = {"LabelSource": self.path.name if self.path is not None else None, "LabelFormat": self.kind,
               "LabelNames": self.table, "LabelResampling": "nearest neighbour (nibabel resample_from_to, order 0)"
               if self.source is not None else "none (on the PET's grid)"}
        if self.groups:
            out["LabelGroups"] = {g: list(m) for g, m in self.groups.items()}
        return out


def label_table_path(path) -> Path:
    """The label table beside a label map: ``x_dseg.nii.gz`` -> ``x_dseg.tsv``."""
    path = Path(path)
    return path.with_name(nifti_stem(path) + ".tsv")


def parse_groups(specs) -> dict[str, tuple[str, ...]]:
    """``["kidneys=kidney_left,kidney_right", ...]`` -> ``{"kidneys": ("kidney_left", "kidney_right")}``."""
    groups: dict[str, tuple[str, ...]] = {}
    for spec in specs or ():
        name, sep, members = str(spec).partition("=")
        name = name.strip()
        parts = tuple(m.strip() for m in members.split(",") if m.strip())
        if not sep or not name or not parts:
            raise InputError(f"group {spec!r}: expected NAME=LABEL,LABEL,... (e.g. kidneys=kidney_left,kidney_right)")
        if name in groups:
            raise InputError(f"group {spec!r}: group {name!r} given twice")
        groups[name] = parts
    return groups


def header_label_names(image) -> dict[int, str] | None:
    """Label names from a NIfTI header extension holding an XML ``LabelTable`` (as TotalSegmentator's multilabel
    files and CARET/Connectome Workbench label volumes do): ``{key: name}``, or None when there is none."""
    for ext in getattr(image.header, "extensions", ()):
        try:
            content = ext.get_content()
        except Exception:
            continue
        if isinstance(content, bytes):
            content = content.decode("utf-8", errors="replace")
        if not isinstance(content, str) or "LabelTable" not in content:
            continue
        try:
            root = ET.fromstring(content.strip().rstrip("\x00").strip())
        except ET.ParseError:
            continue
        names = {}
        for label in root.iter("Label"):
            key = label.get("Key")
            if key is not None and key.strip().lstrip("-").isdigit() and (label.text or "").strip():
                names[int(key)] = label.text.strip()
        if names:
            return names
    return None


def _read_table(table: Path) -> dict[int, str]:
    header, rows = read_tsv(table)
    for key in ("index", "name"):
        if key not in header:
            raise InputError(f"{table}: missing column {key!r}")
    names: dict[int, str] = {}
    ji, jn = header.index("index"), header.index("name")
    for i, row in enumerate(rows, start=2):
        try:
            idx = int(row[ji])
        except ValueError:
            raise InputError(f"{table}: column 'index', line {i}: {row[ji]!r} is not an integer") from None
        if idx in names:
            raise InputError(f"{table}: column 'index', line {i}: index {idx} listed twice")
        names[idx] = row[jn].strip()
    return names


def _read_data(path: Path, image) -> np.ndarray:
    shape = tuple(int(s) for s in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(f"{path}: expected a 3D label map, got shape {shape}")
    try:
        raw = np.asarray(image.dataobj).reshape(shape)
    except Exception as err:
        raise InputError(f"{path}: cannot read image data ({one_line(err)})") from None
    if raw.dtype.kind == "u" and raw.dtype.itemsize <= 2:  # uint8, uint16: kept (1-2 bytes a voxel)
        return raw
    bad = raw.dtype.kind != "i" and (not np.all(np.isfinite(raw)) or bool(np.any(raw != np.round(raw))))
    if bad or np.any(raw < 0):
        raise InputError(f"{path}: label values must be non-negative integers")
    top = raw.max(initial=0)
    return raw.astype(np.uint8 if top <= 255 else np.int16 if top <= 32767 else np.int32, copy=False)


def _mask_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, dict[int, str], list[str]]:
    """A folder of per-structure masks -> ``(label data, affine, names, notes)``; ids follow the sorted names."""
    files = sorted(p for p in folder.iterdir() if p.name.endswith((".nii.gz", ".nii")) and p.is_file())
    if not files:
        raise InputError(f"{folder}: no masks (*.nii.gz) in the folder")
    first = open_nifti(files[0])
    shape, affine = tuple(int(s) for s in first.shape[:3]), np.array(first.affine, np.float64)
    names: dict[int, str] = {}
    data = np.zeros(shape, np.int16 if len(files) < 32767 else np.int32)
    overlap = 0
    for i, f in enumerate(files, start=1):
        image = first if i == 1 else open_nifti(f)
        s = tuple(int(v) for v in image.shape[:3])
        if s != shape or len(image.shape) > 3 and int(np.prod(image.shape[3:])) != 1:
            raise InputError(f"{folder}: masks on different grids: {f.name} has shape {tuple(image.shape)}, "
                             f"{files[0].name} {shape}")
        if not np.allclose(image.affine, affine, atol=AFFINE_ATOL, rtol=0):
            raise InputError(f"{folder}: masks on different grids: the affine of {f.name} differs from "
                             f"{files[0].name}'s (max {np.abs(image.affine - affine).max():.4g} mm)")
        try:
            inside = np.asarray(image.dataobj).reshape(shape) != 0
        except Exception as err:
            raise InputError(f"{f}: cannot read image data ({one_line(err)})") from None
        overlap += int(np.count_nonzero(inside & (data != 0)))
        data[inside] = i
        names[i] = nifti_stem(f)
    notes = [f"{folder.name}: {len(files)} masks read as labels 1-{len(files)} in the order of their file names"]
    if overlap:
        notes.append(f"{folder.name}: {overlap} voxel(s) lie in several masks; each takes the last mask's label")
    return data, affine, names, notes


def _resample(data: np.ndarray, affine: np.ndarray, pet) -> np.ndarray:
    import nibabel as nib
    from nibabel.processing import resample_from_to

    image = nib.Nifti1Image(data, affine)
    out = resample_from_to(image, (tuple(int(s) for s in pet.shape[:3]), np.asarray(pet.affine, np.float64)),
                           order=0, mode="constant", cval=0)
    return np.asarray(out.dataobj).astype(data.dtype, copy=False)


def _label_names(path: Path, image, data: np.ndarray, table) -> tuple[dict[int, str], str, str, list[str]]:
    """``(names, where they come from, kind, notes)`` of the label file ``path``: the built-in table or TSV
    ``table``, else the ``*_dseg.tsv`` beside it, else its header extension. InputError when there are none or a
    value of ``data`` is not in them."""
    notes = []
    if table is not None and str(table) in BUILTIN_TABLES:
        names, source_table = dict(BUILTIN_TABLES[str(table)][0]), BUILTIN_TABLES[str(table)][1]
        table_where, kind = f"built-in label table {str(table)!r}", "multilabel"
        notes.append(f"{path.name}: label names from the built-in table {table!r} ({source_table})")
    elif table is not None or label_table_path(path).is_file():
        table_where = Path(table) if table is not None else label_table_path(path)
        names, source_table, kind = _read_table(table_where), table_where.name, "dseg"
    else:
        names = header_label_names(image)
        if names is None:
            raise InputError(
                f"{path}: no label names (no {label_table_path(path).name} beside it, no label table in its NIfTI "
                "header extension); give a label table: a TSV (index, name), or 'totalsegmentator' for "
                "TotalSegmentator's v2 'total' class table, if that is what made the file")
        source_table, kind = "NIfTI header extension", "multilabel"
        table_where = f"{path} (header extension)"
    unknown = sorted(set(np.unique(data).tolist()) - set(names) - {0})
    if unknown:
        raise InputError(f"{table_where}: label values {unknown[:10]} of {path.name} are not in the table")
    return names, source_table, kind, notes


def _on_pet_grid(path: Path, data: np.ndarray, affine: np.ndarray, names: dict, pet, resample: bool,
                 notes: list[str]) -> tuple[np.ndarray, LabelSource | None]:
    """``data`` on the grid of ``pet`` (resampled by nearest neighbour when ``resample``, noted) and the labels on
    their own grid when they were resampled (None otherwise)."""
    pet_shape = tuple(int(s) for s in pet.shape[:3])
    same = data.shape == pet_shape and np.allclose(affine, pet.affine, atol=AFFINE_ATOL, rtol=0)
    if same:
        return data, None
    if not resample:
        if data.shape != pet_shape:
            raise InputError(f"{path}: shape {data.shape} differs from the PET image {pet.path.name} {pet_shape}")
        raise InputError(f"{path}: affine differs from the PET image {pet.path.name} (max difference "
                         f"{np.abs(affine - pet.affine).max():.4g} mm); resample the labels to the PET grid")
    before = set(np.unique(data).tolist()) - {0}
    source = LabelSource(data=data, affine=affine)
    sizes = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    data = _resample(data, affine, pet)
    after = set(np.unique(data).tolist()) - {0}
    if before and not after:
        raise InputError(f"{path}: the labels do not overlap the field of view of the PET image "
                         f"{pet.path.name} (no labelled voxel falls inside it after resampling)")
    notes.append(f"{path.name}: labels on a grid of {source.data.shape} voxels of "
                 f"{' x '.join(f'{s:.3g}' for s in sizes)} mm resampled to the PET's grid by nearest neighbour")
    lost = sorted(before - after)
    if lost:
        notes.append(f"{path.name}: {len(lost)} label(s) have no voxel on the PET's grid (outside its field "
                     f"of view or too small): {', '.join(names[i] for i in lost[:10])}"
                     + (" ..." if len(lost) > 10 else ""))
    return data, source


def _all_groups(path: Path, names: dict, groups, default_groups: bool) -> dict[str, tuple[str, ...]]:
    """The :data:`DEFAULT_GROUPS` whose members are present (with ``default_groups``), then ``groups`` with their
    members resolved to label names; InputError for a group named like a label or a member that is no label."""
    out = {}
    label_names = set(names.values())
    if default_groups:
        for g, members in DEFAULT_GROUPS.items():
            present = tuple(m for m in members if m in label_names)
            if present and g not in label_names:
                out[g] = present
    given = parse_groups(groups) if isinstance(groups, (list, tuple)) else dict(groups or {})
    for g, members in given.items():
        if g in label_names:
            raise InputError(f"group {g}: a label is already called {g!r}")
        resolved = []
        for m in members:
            if m in label_names:
                resolved.append(m)
            elif m.isdigit() and int(m) in names:
                resolved.append(names[int(m)])
            else:
                raise InputError(f"group {g}: {path} has no label {m!r}; the labels are " + ", ".join(names.values()))
        out[g] = tuple(resolved)
    return out


def read_labels(path, *, pet=None, table=None, groups=None, default_groups: bool = True,
                resample: bool = True) -> Labels:
    """Labels of any form (see the module docstring) on the grid of ``pet`` (a :class:`~jaxkin.io.pet.PetImage`).

    ``table``: a TSV (``index``, ``name``) or a name of :data:`BUILTIN_TABLES` (``"totalsegmentator"``); default
    the ``*_dseg.tsv`` beside the file, else the names in its header extension. ``groups``: ``{name: members}`` or
    ``["name=a,b", ...]``; ``default_groups`` adds :data:`DEFAULT_GROUPS`. ``resample=False`` refuses labels on another
    grid (as BIDS label maps of a PET must not need it). Without ``pet`` the labels stay on their own grid.
    """
    path = Path(path)
    if path.is_dir():
        data, affine, names, notes = _mask_folder(path)
        kind, source_table = "mask folder", "mask file names"
    else:
        image = open_nifti(path)
        affine = np.array(image.affine, np.float64)
        data = _read_data(path, image)
        names, source_table, kind, notes = _label_names(path, image, data, table)
    source = None
    if pet is not None:
        data, source = _on_pet_grid(path, data, affine, names, pet, resample, notes)
        affine = np.array(pet.affine, np.float64)
        if not np.any(data):
            raise InputError(f"{path}: the label map is empty on the PET's grid")
    return Labels(data=data, names=names, affine=affine, path=path, groups=_all_groups(path, names, groups,
                  default_groups), notes=tuple(notes), source=source, kind=kind, table=source_table)


def write_labels(path, data, names: dict, affine) -> Path:
    """Write a label map ``data int [X, Y, Z]`` (uint8/int16) and its table ``*_dseg.tsv``, atomically."""
    import nibabel as nib

    path = Path(path)
    data = np.asarray(data)
    dtype = np.uint8 if data.max(initial=0) < 256 else np.int16
    image = nib.Nifti1Image(data.astype(dtype), np.asarray(affine, dtype=np.float64))
    image.header.set_xyzt_units("mm")
    image.header.set_qform(image.affine, code=1)
    image.header.set_sform(image.affine, code=1)
    with atomic_write(path) as tmp:
        nib.save(image, str(tmp))
    table = label_table_path(path)
    with atomic_write(table) as tmp:
        tmp.write_text("index\tname\n" + "".join(f"{i}\t{n}\n" for i, n in sorted(names.items())), encoding="utf-8")
    return path
