"""Small synthetic BIDS-PET files written independently of jaxkin's writers (nibabel and json directly): a 4D image
in Bq/mL on an oblique grid with its sidecar, label maps on its grid, blood TSVs. Shared by tests/io and
tests/regions."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from jaxkin import FrameSchedule

SHAPE = (6, 5, 4, 7)
DURATIONS_S = [10.0, 10.0, 30.0, 60.0, 120.0, 300.0, 300.0]
FRAMES = FrameSchedule.from_durations(DURATIONS_S)
# An oblique affine with 2.5 x 2 x 3 mm voxels: checks that geometry is kept, not rebuilt.
_ROT = np.array([[np.cos(0.2), -np.sin(0.2), 0], [np.sin(0.2), np.cos(0.2), 0], [0, 0, 1.0]])
AFFINE = np.eye(4)
AFFINE[:3, :3] = _ROT @ np.diag([2.5, 2.0, 3.0])
AFFINE[:3, 3] = [-7.5, 12.0, -100.0]
#: The label table of :func:`small_labels`.
NAMES = {1: "liver", 2: "aorta"}


def random_pet_data() -> np.ndarray:
    """``float32 SHAPE`` activities in Bq/mL."""
    return np.random.default_rng(3).uniform(0, 20000, SHAPE).astype(np.float32)


def sidecar(**changes) -> dict:
    """The ``*_pet.json`` of the image; ``changes`` replace fields (None removes one)."""
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


def write_raw_pet(directory: Path, data, meta, name="sub-01_pet.nii.gz", affine=AFFINE) -> Path:
    """A PET file written with nibabel directly (independent of jaxkin's writer) plus its sidecar ``meta``."""
    path = directory / name
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), str(path))
    if meta is not None:
        stem = name.split(".nii")[0]
        (directory / f"{stem}.json").write_text(json.dumps(meta))
    return path


def small_labels(shape=SHAPE[:3]) -> np.ndarray:
    """A label map with :data:`NAMES`: a liver block and two aorta voxels at (4, 3, 1) and (4, 3, 2)."""
    lab = np.zeros(shape, np.uint8)
    lab[1:3, 1:3, :] = 1
    lab[4, 3, 1:3] = 2
    return lab


def write_rows(path: Path, header, rows) -> Path:
    """A TSV of ``header`` and ``rows`` as written (no sidecar)."""
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path
