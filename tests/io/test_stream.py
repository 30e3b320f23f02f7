"""Frames read in file order (.nii at offsets, .nii.gz decompressed once, int16 with scl_slope/inter) equal
nibabel's in-memory read bit for bit."""

import json

import nibabel as nib
import numpy as np
import pytest

from jaxkin.io.pet import frame_reads, load_pet, picked_pieces

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
def test_streamed_reads_equal_nibabel(tmp_path, name, kind, monkeypatch):
    from jaxkin.io import stream

    monkeypatch.setattr(stream, "READ_BYTES", 1)  # the voxels taken from a frame: read a slice at a time
    path = _write(tmp_path, name, kind)
    pet = load_pet(path)
    ref = np.asarray(nib.load(str(path)).dataobj)  # nibabel's own scaling, in memory
    expected = ref.astype(np.float32) * (pet.scale_to_kbq * pet.decay_factors).astype(np.float32)
    np.testing.assert_array_equal(pet.read(), expected)
    np.testing.assert_array_equal(pet.read(slice(1, 3)), expected[:, :, 1:3])
    frames = np.stack([v for _, v in frame_reads(pet, slice(1, 3))], axis=-1)
    np.testing.assert_array_equal(frames, expected[:, :, 1:3])
    for take in (np.array([0, 5, 7, 33, 59]), np.array([33, 0, 59, 7, 5, 31])):  # in file order or not
        taken = np.stack([v for _, v in frame_reads(pet, slice(1, 3), np.float64, take=take)], axis=-1)
        np.testing.assert_array_equal(taken, pet.read(slice(1, 3), np.float64).reshape(-1, 3, order="F")[take])


@pytest.mark.parametrize("name, kind", [("a_pet.nii", "float32"), ("b_pet.nii.gz", "float32"),
                                        ("c_pet.nii", "int16")])
def test_picked_pieces_cover_the_taken_voxels_once_with_the_values_of_a_frame(tmp_path, name, kind, monkeypatch):
    """Pieces of at most ``most`` values, a slice of the file at a time: together, each frame's values of ``take``
    exactly once, equal to the whole frame's; the same for an array; ``take`` out of order is refused."""
    from jaxkin.io import stream

    monkeypatch.setattr(stream, "READ_BYTES", 1)  # a slice of the file at a time
    path = _write(tmp_path, name, kind)
    pet = load_pet(path)
    take = np.array([0, 5, 6, 7, 29, 30, 31, 33, 59])
    for volume in (pet, pet.read()):
        read = volume.read(slice(1, 3), np.float64) if volume is pet else volume[:, :, 1:3].astype(np.float64)
        expected = read.reshape(-1, 3, order="F")[take]
        got = np.full((take.size, 3), -1.0)
        seen = np.zeros((take.size, 3), int)
        for f, lo, hi, values in picked_pieces(volume, slice(1, 3), take, np.float64, most=2):
            assert values.dtype == np.float64 and 0 < hi - lo <= 2 and values.shape == (hi - lo,)
            got[lo:hi, f] = values
            seen[lo:hi, f] += 1
        assert np.all(seen == 1)
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(Exception, match="ascending"):
        list(picked_pieces(pet, slice(1, 3), take[::-1], np.float64))


def test_a_file_larger_than_half_the_memory_is_read_past_the_cache_with_the_same_values(tmp_path, monkeypatch):
    """An uncompressed image larger than half the memory this process may use is read through a file that drops
    its pages from the cache once read: the values are the same; a smaller one, and a .nii.gz, are read as before."""
    from jaxkin.io import memory, stream

    path = _write(tmp_path, "a_pet.nii", "int16")
    pet = load_pet(path)
    expected = pet.read()
    frames = np.stack([v for _, v in frame_reads(pet)], axis=-1)
    with stream._open(path) as f:
        assert not isinstance(f, stream._Uncached)
    monkeypatch.setattr(memory, "memory_limit", lambda: memory.MemoryLimit(2 * path.stat().st_size - 2, "test"))
    with stream._open(path) as f:
        assert isinstance(f, stream._Uncached)
    np.testing.assert_array_equal(pet.read(), expected)
    np.testing.assert_array_equal(np.stack([v for _, v in frame_reads(pet)], axis=-1), frames)
    take = np.array([3, 4, 40, 77])
    picked = np.zeros((take.size, 3))
    for f, lo, hi, values in picked_pieces(pet, slice(0, 4), take, np.float64):
        picked[lo:hi, f] = values
    np.testing.assert_array_equal(picked, pet.read(dtype=np.float64).reshape(-1, 3, order="F")[take])
    with stream._open(_write(tmp_path, "b_pet.nii.gz", "float32")) as f:
        assert not isinstance(f, stream._Uncached)


def test_prefetched_items_come_in_order_errors_in_the_callers_thread():
    """Items made in a background thread arrive in order and equal the source's; an error making one is raised
    where it is asked for; a caller that stops early closes the source."""
    import threading

    from jaxkin.io.stream import prefetched

    made = []

    def source(n, fail_at=None):
        try:
            for i in range(n):
                if i == fail_at:
                    raise OSError("disk gone")
                made.append(threading.current_thread().name)
                yield np.full(3, i)
        finally:
            made.append("closed")

    got = list(prefetched(source(5)))
    assert [int(g[0]) for g in got] == list(range(5)) and all(n.startswith("jaxkin-read") for n in made[:-1])
    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetched(source(5, fail_at=3)):
            seen.append(int(item[0]))
    assert seen == [0, 1, 2]
    made.clear()
    for item in prefetched(source(100)):
        if item[0] == 1:
            break
    assert made[-1] == "closed" and len(made) <= 4  # at most the item handed out and the next one made
