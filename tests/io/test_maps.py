"""Parametric maps (jaxkin.io.maps): BIDS names, the written image keeps the PET's geometry, the sidecar, atomic
writes."""

import json

import nibabel as nib
import numpy as np
import pytest

from _pet_files import AFFINE, FRAMES, SHAPE
from jaxkin import InputError
from jaxkin.io.maps import map_path, write_map
from jaxkin.io.pet import load_pet, write_pet


def test_write_map_round_trip(tmp_path, pet_data):
    pet = load_pet(write_pet(tmp_path / "sub-02_pet.nii.gz", pet_data / 1000.0, FRAMES, AFFINE, units="kBq/mL"))
    k1 = np.random.default_rng(0).uniform(0, 1, SHAPE[:3]).astype(np.float32)
    out = tmp_path / "maps"
    written = write_map(out, pet.prefix, "2tcmirr", "K1", k1, reference=pet, units="mL/cm3/min",
                             command_line="jaxkin fit x", extra={"Note": 1})
    assert written == out / "sub-02_model-2tcmirr_meas-K1_mimap.nii.gz" == map_path(out, "sub-02", "2tcmirr", "K1")
    back = nib.load(str(written))
    np.testing.assert_array_equal(np.asarray(back.dataobj), k1)
    np.testing.assert_array_equal(back.affine, pet.image.affine)
    np.testing.assert_allclose(back.header.get_zooms(), pet.image.header.get_zooms()[:3])
    assert back.header["sform_code"] == pet.image.header["sform_code"]
    meta = json.loads((out / "sub-02_model-2tcmirr_meas-K1_mimap.json").read_text())
    assert meta["ModelName"] == "2tcmirr" and meta["Parameter"] == "K1" and meta["Units"] == "mL/cm3/min"
    assert meta["SoftwareName"] == "jaxkin" and meta["CommandLine"] == "jaxkin fit x" and meta["Note"] == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "sub-02_model-2tcmirr_meas-K1_mimap.json", "sub-02_model-2tcmirr_meas-K1_mimap.nii.gz"]  # no temp files
    with pytest.raises(ValueError, match="spatial shape"):
        write_map(out, pet.prefix, "2tcmirr", "K1", k1[:-1], reference=pet, units="1")


def test_unwritable_output_is_an_input_error(tmp_path, pet_path):
    pet = load_pet(pet_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the output folder should be
    with pytest.raises(InputError, match=r"file/sub-01_model-2tcmirr_meas-K1_mimap\.nii\.gz: cannot write"):
        write_map(blocker, "sub-01", "2tcmirr", "K1", np.zeros(SHAPE[:3]), reference=pet, units="1")


def test_map_streams_write_what_write_map_writes_and_nothing_when_cut_short(tmp_path, pet_data):
    """Maps written slab by slab (gzip streams in slice order) read back as write_map's, header and values; an
    error before the last slice, or slices out of order, leave no file."""
    from jaxkin.io.maps import map_streams

    pet = load_pet(write_pet(tmp_path / "sub-02_pet.nii.gz", pet_data / 1000.0, FRAMES, AFFINE, units="kBq/mL"))
    k1 = np.random.default_rng(1).uniform(0, 1, SHAPE[:3]).astype(np.float32)
    whole = write_map(tmp_path / "whole", pet.prefix, "2tcmirr", "K1", k1, reference=pet, units="1")
    out = tmp_path / "slabs"
    with map_streams(out, pet.prefix, [("2tcmirr", "K1"), ("2tcmirr", "k2")], reference=pet) as write:
        for a in range(0, SHAPE[2], 2):
            z = slice(a, min(a + 2, SHAPE[2]))
            write("2tcmirr", "K1", z, k1[:, :, z])
            write("2tcmirr", "k2", z, 2 * k1[:, :, z])
    back, ref = nib.load(str(out / whole.name)), nib.load(str(whole))
    np.testing.assert_array_equal(np.asarray(back.dataobj), k1)
    np.testing.assert_array_equal(np.asarray(nib.load(str(map_path(out, "sub-02", "2tcmirr", "k2"))).dataobj), 2 * k1)
    assert back.header.binaryblock == ref.header.binaryblock
    cut = tmp_path / "cut"
    cut.mkdir()
    with pytest.raises(KeyboardInterrupt), map_streams(cut, pet.prefix, [("2tcmirr", "K1")], reference=pet) as write:
        write("2tcmirr", "K1", slice(0, 1), k1[:, :, :1])
        raise KeyboardInterrupt
    with pytest.raises(ValueError, match="out of order"), \
            map_streams(cut, pet.prefix, [("2tcmirr", "K1")], reference=pet) as write:
        write("2tcmirr", "K1", slice(1, 2), k1[:, :, 1:2])
    with pytest.raises(RuntimeError, match="last slice"), \
            map_streams(cut, pet.prefix, [("2tcmirr", "K1")], reference=pet) as write:
        write("2tcmirr", "K1", slice(0, 1), k1[:, :, :1])
    assert list(cut.iterdir()) == []
