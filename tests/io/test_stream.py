"""Frames read in file order (.nii at offsets, .nii.gz decompressed once, int16 with scl_slope/inter) equal
nibabel's in-memory read bit for bit."""

import json

import nibabel as nib
import numpy as np
import pytest

from jaxkin.io.pet import frame_reads, load_pet

META = {"FrameTimesStart": [0, 60, 120], "FrameDuration": [60, 60, 60], "Units": "Bq/mL",
        "ImageDecayCorrected": False, "TracerRadionuclide": "F18"}


def _write(tmp_path, name, kind):
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 2000, (6, 5, 4, 3)).astype(np.float32)
    if kind == "int16":
        image = nib.Nifti1Image(np.round(data).astype(np.int16), np.eye(4))
        image.header.set_slope_inter(0.37, 2.5)
    else:
        data[1, 1, 1, 2] = np.nan
        image = nib.Nifti1Image(data, np.eye(4))
    nib.save(image, str(tmp_path / name))
    (tmp_path / (name.split(".nii")[0] + ".json")).write_text(json.dumps(META))
    return tmp_path / name


@pytest.mark.parametrize("name, kind", [("a_pet.nii", "float32"), ("b_pet.nii.gz", "float32"),
                                        ("c_pet.nii", "int16")])
def test_streamed_reads_equal_nibabel(tmp_path, name, kind):
    path = _write(tmp_path, name, kind)
    pet = load_pet(path)
    ref = np.asarray(nib.load(str(path)).dataobj)  # nibabel's own scaling, in memory
    expected = ref.astype(np.float32) * (pet.scale_to_kbq * pet.decay_factors).astype(np.float32)
    np.testing.assert_array_equal(pet.read(), expected)
    np.testing.assert_array_equal(pet.read(slice(1, 3)), expected[:, :, 1:3])
    frames = np.stack([v for _, v in frame_reads(pet, slice(1, 3))], axis=-1)
    np.testing.assert_array_equal(frames, expected[:, :, 1:3])
    take = np.array([0, 5, 7, 33, 59])
    taken = np.stack([v for _, v in frame_reads(pet, slice(1, 3), np.float64, take=take)], axis=-1)
    np.testing.assert_array_equal(taken, pet.read(slice(1, 3), np.float64).reshape(-1, 3, order="F")[take])
