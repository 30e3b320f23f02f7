"""File primitives (jaxkin.io.files): NIfTI integrity (truncated, unreadable, multi-member gzip, damaged data, a
singular affine), TSV writing, a set of outputs written as a set, outputs that would replace inputs."""

import gzip
import json
import os

import numpy as np
import pytest

from _pet_files import SHAPE, random_pet_data, sidecar, write_raw_pet
from jaxkin import InputError
from jaxkin.io import files
from jaxkin.io.files import (TEMP_PREFIX, check_affine, check_not_inputs, check_replaceable, clean_stale, open_nifti,
                             output_set, read_tsv, write_tsv)


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


def test_damaged_gzip_data_fail_when_opened(tmp_path, pet_data):
    """One byte changed in the compressed stream: the trailer's length still matches, the CRC-32 does not."""
    path = write_raw_pet(tmp_path, pet_data, sidecar())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="sub-01_pet.nii.gz: "):
        open_nifti(path)


def test_singular_affine():
    check_affine("x.nii.gz", np.diag([2.0, 2.0, 3.0, 1.0]))
    flat = np.diag([2.0, 2.0, 0.0, 1.0])
    with pytest.raises(InputError, match="x.nii.gz: .*singular"):
        check_affine("x.nii.gz", flat)
    with pytest.raises(InputError, match="not finite"):
        check_affine("x.nii.gz", np.full((4, 4), np.nan))


def _entries(folder):
    return sorted(p.name for p in folder.iterdir())


def test_output_set_moves_a_set_in_place_and_removes_what_it_replaces(tmp_path):
    out = tmp_path / "a" / "b"
    with output_set(out) as staged:
        for name in ("x_1.txt", "x_2.txt", "y.txt"):
            staged.path(name).write_text(name)
        assert not out.exists()  # nothing in place before the set is complete
    assert _entries(out) == ["x_1.txt", "x_2.txt", "y.txt"]
    assert not [p for p in tmp_path.rglob(f"{TEMP_PREFIX}*")]
    with output_set(out, replaces=("x_*.txt",)) as staged:
        staged.path("x_1.txt").write_text("new")
    assert _entries(out) == ["x_1.txt", "y.txt"] and staged.removed == ["x_2.txt"]
    assert (out / "x_1.txt").read_text() == "new"
    (out / "y.json").write_text(json.dumps({"SoftwareName": "other"}))  # with software: only its own files go
    with output_set(out, replaces=("y.*",), software="jaxkin") as staged:
        staged.path("x_1.txt").write_text("newer")
    assert _entries(out) == ["x_1.txt", "y.json", "y.txt"] and staged.removed == []


@pytest.mark.parametrize("error", [KeyboardInterrupt, ValueError, files.Interrupted])
def test_output_set_interrupted_leaves_the_folder_as_it_was(tmp_path, error):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x_1.txt").write_text("old")
    with pytest.raises(error), output_set(out, replaces=("x_*.txt",)) as staged:
        staged.path("x_1.txt").write_text("new")
        staged.path("x_2.txt").write_text("new")
        raise error(15) if error is files.Interrupted else error()
    assert _entries(out) == ["x_1.txt"] and (out / "x_1.txt").read_text() == "old"
    assert _entries(tmp_path) == ["out"]


def test_a_signal_inside_uninterrupted_waits(tmp_path):
    with pytest.raises(files.Interrupted) as caught, files.uninterrupted():
        files.interrupt(15)  # as a signal handler would
        (tmp_path / "done").write_text("")
    assert caught.value.signum == 15 and (tmp_path / "done").exists()
    with pytest.raises(files.Interrupted):
        files.interrupt(2)  # outside: at once


def test_clean_stale_finishes_a_journaled_set_and_drops_the_rest(tmp_path):
    dead = 2**22 + 4321  # above Linux's largest process id
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    committed = out / f"{files._temp_prefix(dead)}a.tmp"  # killed while being moved in place: finished
    committed.mkdir()
    (committed / "new.txt").write_text("new")
    (committed / ".commit.json").write_text(json.dumps({"folder": str(out), "files": ["new.txt", "gone.txt"],
                                                        "remove": ["old.txt"]}))
    (out / f"{files._temp_prefix(dead)}b.tmp").mkdir()  # killed while being written: dropped
    (out / f"{files._temp_prefix(dead)}c.tmp.json").write_text("{")
    mine = out / f"{files._temp_prefix()}d.tmp"  # a live process's: kept
    mine.mkdir()
    theirs = out / f"{TEMP_PREFIX}zzzz-{dead}-e.tmp"  # another machine's (a shared file system): kept
    theirs.mkdir()
    assert len(clean_stale(out)) == 3
    assert _entries(out) == sorted([mine.name, theirs.name, "new.txt"])


def test_outputs_onto_inputs(tmp_path):
    pet, table = tmp_path / "sub-01_pet.nii.gz", tmp_path / "t.tsv"
    for path in (pet, table):
        path.write_text("")
    (tmp_path / "sub-01_pet.json").write_text("{}")
    check_not_inputs([tmp_path / "out.tsv", tmp_path / "out.json"], [pet, table])
    for out in (table, tmp_path / "sub-01_pet.json", tmp_path / "sub-01_pet.nii.gz"):
        with pytest.raises(InputError, match="is the input"):
            check_not_inputs([out], [pet, table])
    check_replaceable(tmp_path / "new.tsv", ("Regions",), "a table")
    (tmp_path / "mine.json").write_text(json.dumps({"Regions": {}}))
    (tmp_path / "mine.tsv").write_text("")
    check_replaceable(tmp_path / "mine.tsv", ("Regions",), "a table")  # jaxkin's own: may be replaced
    with pytest.raises(InputError, match="exists and is not a table"):
        check_replaceable(table, ("Regions",), "a table")  # no sidecar: the user's
    with pytest.raises(InputError, match="exists and is not a table"):
        check_replaceable(tmp_path / "sub-01_pet.tsv", ("Regions",), "a table")  # its sidecar would be the PET's


def test_output_set_cut_short_while_moving_is_finished(tmp_path, monkeypatch):
    """A Ctrl-C between two renames (a library caller, no signal handler): the set is moved in whole, not split."""
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), output_set(out) as staged:
        for name in ("a.txt", "b.txt", "c.txt"):
            staged.path(name).write_text(name)
    assert _entries(out) == ["a.txt", "b.txt", "c.txt"] and _entries(tmp_path) == ["out"]
