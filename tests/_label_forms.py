"""One small scan with labels in every form users bring (BIDS dseg on the PET's grid; a TotalSegmentator multilabel
file with its header extension, the same without names, a folder of masks, all on a CT grid twice as fine as the
PET's and shifted by a fraction of a voxel). Shared by tests/io/test_labels.py, test_tables.py, tests/regions and the
``regions``/``idif`` command tests."""

import nibabel as nib
import numpy as np

import jaxkin
from jaxkin import kinetics
from jaxkin.io.labels import write_labels
from jaxkin.io.pet import write_pet

SHAPE = (10, 9, 8)
PET_AFFINE = np.array([[-4.0, 0, 0, 60.0], [0, 4.0, 0, -30.0], [0, 0, 4.0, -100.0], [0, 0, 0, 1]])
FRAMES = jaxkin.FrameSchedule.from_seconds([0, 10, 20, 30, 60, 120, 300, 600, 1200, 2400],
                                           [10, 10, 10, 30, 60, 180, 300, 600, 1200, 1200])
# TotalSegmentator v2 'total' ids
IDS = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "liver": 5, "aorta": 52}
PARAMS = {"spleen": (1.5, 2.6, 0.01, 0.04), "kidney_right": (0.8, 0.7, 0.01, 0.08),
          "kidney_left": (0.75, 0.7, 0.012, 0.08), "liver": (0.65, 0.7, 0.01, 0.01)}


def pet_labels() -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    lab[4:6, 4:6, 1:7] = IDS["aorta"]           # a vessel along z
    lab[0:3, 0:4, 2:6] = IDS["liver"]
    lab[7:9, 0:2, 2:4] = IDS["kidney_right"]
    lab[7:9, 6:8, 2:4] = IDS["kidney_left"]
    lab[0:2, 6:9, 4:7] = IDS["spleen"]
    return lab


def on_ct_grid(lab: np.ndarray, shift) -> tuple[np.ndarray, np.ndarray]:
    """The labels on a grid twice as fine, whose voxels are shifted by ``shift`` PET voxels (|shift| < 0.25 keeps
    every CT voxel inside the PET voxel it came from)."""
    ct = lab.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    to_pet = np.diag([0.5, 0.5, 0.5, 1.0])
    to_pet[:3, 3] = -0.25 + np.asarray(shift)
    return ct, PET_AFFINE @ to_pet


def save_nifti(path, data, affine, names=None):
    image = nib.Nifti1Image(np.asarray(data), affine)
    if names is not None:  # a TotalSegmentator-like XML label table in the header extension
        body = "".join(f'<Label Key="{k}" Red="1" Green="0" Blue="0" Alpha="1"><![CDATA[{v}]]></Label>\n'
                       for k, v in names.items())
        xml = ('<?xml version="1.0" encoding="UTF-8"?> <CaretExtension><VolumeInformation Index="0"><LabelTable>'
               f"\n{body}</LabelTable><VolumeType><![CDATA[Label]]></VolumeType></VolumeInformation>"
               "</CaretExtension>\n  ")
        image.header.extensions.append(nib.nifti1.Nifti1Extension(0, xml.encode()))
    nib.save(image, str(path))
    return path


def make_scan(root):
    """Write the scan into the folder ``root``: ``pet`` (``*_pet.nii.gz``, kBq/mL), its labels as ``dseg`` (on the PET's
    grid), ``ml`` (TotalSegmentator multilabel with names in its header extension, on the shifted CT grid), ``bare``
    (the same without names), ``folder`` (a mask folder, with an empty mask), ``aligned`` (a CT grid aligned with the
    PET's); returns their paths with ``data`` (the PET's values), ``lab`` (labels on the PET's grid), ``ct`` and
    ``ct_affine`` (the labels on the CT grid) and ``aif`` (the input)."""
    rng = np.random.default_rng(7)
    aif = jaxkin.feng_input(FRAMES.end[-1], delay=0.1)
    kin = jaxkin.prepare(aif, FRAMES)
    lab = pet_labels()
    data = np.zeros((*SHAPE, FRAMES.n_frames), np.float32)
    body = np.asarray(kinetics.two_tissue_irreversible(np.array([[0.05, 0.35, 0.02, 0.02]]), kin))[0]
    data[:] = body
    for name, p in PARAMS.items():
        tac = np.asarray(kinetics.two_tissue_irreversible(np.array([p]), kin))[0]
        sel = lab == IDS[name]
        data[sel] = tac * (1 + 0.05 * rng.standard_normal((int(sel.sum()), 1)))
    blood = (aif.integral(FRAMES.end) - aif.integral(FRAMES.start)) / FRAMES.duration
    sel = lab == IDS["aorta"]
    data[sel] = blood * (1 + 0.03 * rng.standard_normal((int(sel.sum()), 1)))
    pet_path = write_pet(root / "sub-01_pet.nii.gz", data, FRAMES, PET_AFFINE, units="kBq/mL",
                              sidecar={"InjectionStart": 0, "ImageDecayCorrectionTime": 0,
                                       "TracerRadionuclide": "F18"})
    names = {i: n for n, i in IDS.items()}
    dseg = write_labels(root / "sub-01_dseg.nii.gz", lab, names, PET_AFFINE)
    ct, ct_affine = on_ct_grid(lab, (0.15, -0.1, 0.2))
    ml = save_nifti(root / "ct_multilabel.nii.gz", ct.astype(np.uint8), ct_affine, names)
    bare = save_nifti(root / "ct_bare.nii.gz", ct.astype(np.uint8), ct_affine)
    folder = root / "segmentations"
    folder.mkdir()
    for name, i in IDS.items():
        save_nifti(folder / f"{name}.nii.gz", (ct == i).astype(np.uint8), ct_affine)
    save_nifti(folder / "stomach.nii.gz", np.zeros_like(ct, np.uint8), ct_affine)  # TotalSegmentator writes empty ones
    aligned, aligned_affine = on_ct_grid(lab, (0.0, 0.0, 0.0))
    aligned_ml = save_nifti(root / "ct_aligned.nii.gz", aligned.astype(np.uint8), aligned_affine, names)
    return {"root": root, "pet": pet_path, "data": data, "lab": lab, "dseg": dseg, "ml": ml, "bare": bare,
            "folder": folder, "aligned": aligned_ml, "ct": ct, "ct_affine": ct_affine, "aif": aif}


def reference_means(scan, ids):
    sel = np.isin(scan["lab"], ids)
    return scan["data"][sel].astype(np.float64).mean(axis=0), int(sel.sum())
