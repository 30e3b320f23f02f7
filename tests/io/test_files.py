"""File primitives (jaxkin.io.files): NIfTI integrity (truncated, unreadable, multi-member gzip), TSV writing."""

import gzip

import numpy as np
import pytest

from _pet_files import SHAPE, random_pet_data, sidecar, write_raw_pet
from jaxkin import InputError
from jaxkin.io.files import open_nifti, read_tsv, write_tsv


@pytest.fixture(scope="module")
def pet_data():
    return random_pet_data()


@pytest.mark.parametrize("name", ["sub-01_pet.nii.gz", "sub-01_pet.nii"])
def test_truncated_nifti(tmp_path, name):
    data = np.random.default_rng(1).normal(size=SHAPE).astype(np.float32)  # incompressible: truncation cuts data
    path = write_raw_pet(tmp_path, data, sidecar(), name=name)
    open_nifti(path)  # intact: fine
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=rf"{name}: truncated"):
        open_nifti(path)


def test_unreadable_nifti(tmp_path):
    path = tmp_path / "sub-01_pet.nii.gz"
    path.write_bytes(gzip.compress(b"this is not a NIfTI header" * 20))
    with pytest.raises(InputError, match=r"sub-01_pet\.nii\.gz: cannot read NIfTI header"):
        open_nifti(path)


def test_multi_member_gzip_is_accepted(tmp_path, pet_data):
    """A valid file whose gzip trailer does not hold the total size (two members) passes the integrity check."""
    path = write_raw_pet(tmp_path, pet_data, sidecar())
    raw = gzip.decompress(path.read_bytes())
    half = len(raw) // 2
    path.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]))
    np.testing.assert_array_equal(np.asarray(open_nifti(path).dataobj), pet_data)


def test_write_tsv_round_trip(tmp_path):
    path = tmp_path / "t.tsv"
    write_tsv(path, ["name", "value"], [["liver", "0.5"], ["aorta", 2]])
    assert path.read_text() == "name\tvalue\nliver\t0.5\naorta\t2\n"
    assert read_tsv(path) == (["name", "value"], [["liver", "0.5"], ["aorta", "2"]])
    assert [p.name for p in tmp_path.iterdir()] == ["t.tsv"]  # no temporary file left
