"""Whole-volume fitting: chunked streaming equals fit_tacs, masks, NaN voxels, and 1 vs 4 sharded CPU devices."""

import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import jaxkin
from jaxkin import kinetics
from jaxkin import fitting
from jaxkin.fitting import fit_volume, graphical

from _reference import FRAMES, INPUT

ROOT = Path(__file__).resolve().parents[2]


def _volume(seed=0, shape=(7, 6, 5)):
    """A small noisy volume: random in-bounds parameters in a block, zero background, one NaN voxel."""
    rng = np.random.default_rng(seed)
    m = jaxkin.get_model("2tcmirr")
    params = rng.uniform(m.lower, m.upper, shape + (4,)).astype(np.float32)
    params[..., 3] *= 0.3
    kin = jaxkin.prepare(INPUT, FRAMES)
    clean = np.asarray(kinetics.two_tissue_irreversible(jnp.asarray(params), kin))
    pet = clean + rng.normal(size=clean.shape).astype(np.float32) * 0.02 * clean.max(axis=-1, keepdims=True)
    pet[:2] = 0.0  # background
    pet[3, 3, 3, 10] = np.nan
    return pet.astype(np.float32), kin


@pytest.mark.slow
def test_volume_fit_equals_fit_tacs_and_masks():
    pet, kin = _volume()
    res = fit_volume(pet, kin, chunk_size=32, slab=2, progress=False)  # several chunks, the last one padded
    mask = res.mask
    assert not mask[:2].any() and not mask[3, 3, 3]  # no signal / NaN voxels are out
    assert res.n_nonfinite == 1
    finite = np.all(np.isfinite(pet), axis=-1)
    auc = np.where(finite, np.nan_to_num(pet) @ FRAMES.duration, 0.0)
    body = np.zeros(mask.shape, bool)
    body[2:] = True  # the block of tissue; the automatic body mask is tested in test_mask.py
    assert np.all(mask <= (body & finite)) and np.all(mask >= (body & finite & (auc >= 0.05 * auc.max())))
    assert 0.9 * np.count_nonzero(body & finite) < mask.sum() < 5 * 6 * 5
    direct = fitting.fit_tacs(pet[mask], kin, chunk_size=32).to_numpy()
    np.testing.assert_allclose(res.maps["Ki"][mask], direct.macro, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(res.maps["SSE"][mask], direct.sse, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(res.maps["flags"][mask], direct.flags)
    for name in ("K1", "k2", "k3", "vB", "Ki", "SSE", "R2"):
        assert np.all(res.maps[name][~mask] == 0)
    # a given mask is used as given (minus non-finite voxels), and the NaN voxel is reported
    given = np.zeros(pet.shape[:3], bool)
    given[3, 3, 2:4] = True
    res2 = fit_volume(pet, kin, mask=given, chunk_size=32, progress=False)
    assert res2.n_fitted == 1 and res2.n_nonfinite == 1
    one = fitting.fit_tacs(pet[3, 3, 2][None], kin, chunk_size=32).to_numpy()
    assert res2.maps["Ki"][3, 3, 2] == pytest.approx(float(one.macro[0]), rel=1e-5, abs=1e-8)
    assert np.count_nonzero(res2.maps["SSE"]) == 1


@pytest.mark.slow
def test_patlak_volume(tmp_path):
    pet, kin = _volume(seed=1)
    plot = graphical.PlotInput.from_input(INPUT, FRAMES)
    res = fit_volume(pet, kin, fitting.Graphical("patlak", plot), chunk_size=32, progress=False)
    ref = graphical.patlak(pet[res.mask], plot, 20.0)
    np.testing.assert_allclose(res.maps["Ki"][res.mask], ref.slope, rtol=1e-5, atol=1e-8)


_SCRIPT = """
import sys, json, numpy as np, jax
sys.path[:0] = [{here!r}, {tests!r}]
import test_volume as t
from jaxkin.fitting import fit_volume
assert jax.local_device_count() == 4, jax.local_devices()
pet, kin = t._volume(seed=2, shape=(9, 8, 6))
res = fit_volume(pet, kin, chunk_size=32, progress=False)
np.savez({out!r}, Ki=res.maps["Ki"], SSE=res.maps["SSE"], mask=res.mask)
"""


@pytest.mark.slow
def test_four_cpu_devices_agree_with_one(tmp_path):
    out = tmp_path / "four.npz"
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip()  # and the tests' own
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT))
    script = _SCRIPT.format(here=str(Path(__file__).parent), tests=str(ROOT / "tests"), out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    four = np.load(out)
    pet, kin = _volume(seed=2, shape=(9, 8, 6))
    one = fit_volume(pet, kin, chunk_size=32, progress=False)
    np.testing.assert_array_equal(four["mask"], one.mask)
    m = one.mask
    # same algorithm; only XLA's partitioned compilation differs (float32 rounding), so maps agree closely
    ki_err = np.abs(four["Ki"][m] - one.maps["Ki"][m]) / np.maximum(np.abs(one.maps["Ki"][m]), 1e-6)
    sse_err = np.abs(four["SSE"][m] - one.maps["SSE"][m]) / np.maximum(one.maps["SSE"][m], 1e-12)
    assert np.quantile(ki_err, 0.99) < 1e-4 and np.quantile(sse_err, 0.99) < 1e-4, (ki_err.max(), sse_err.max())
    assert np.all(four["SSE"][m] <= one.maps["SSE"][m] * 1.001)
    assert np.all(one.maps["SSE"][m] <= four["SSE"][m] * 1.001)


@pytest.mark.slow
def test_a_pet_file_read_once_gives_the_maps_of_one_streamed_slab_by_slab(tmp_path, monkeypatch):
    """write_fit_maps reads a .nii.gz that fits in memory once (preload); streamed a frame at a time (preload off)
    the maps are the same. An uncompressed .nii is never preloaded (it is read at offsets in every pass)."""
    from jaxkin.io.pet import load_pet, write_pet
    from jaxkin.fitting import volume

    pet, kin = _volume(seed=3)
    path = write_pet(tmp_path / "sub-01_pet.nii.gz", np.nan_to_num(pet), FRAMES, np.eye(4), units="kBq/mL")
    image = load_pet(path)
    assert isinstance(volume.preload(image), volume._Loaded)
    once = fit_volume(volume.preload(image), kin, chunk_size=32, slab=2, progress=False)
    monkeypatch.setattr(volume, "PRELOAD_BYTES", 0)
    assert volume.preload(image) is image
    plain = load_pet(write_pet(tmp_path / "sub-02_pet.nii", np.nan_to_num(pet), FRAMES, np.eye(4), units="kBq/mL"))
    monkeypatch.setattr(volume, "PRELOAD_BYTES", 1 << 30)
    assert volume.preload(plain) is plain
    streamed = fit_volume(image, kin, chunk_size=32, slab=2, progress=False)
    np.testing.assert_array_equal(once.mask, streamed.mask)
    for name in ("Ki", "SSE", "flags"):
        np.testing.assert_array_equal(once.maps[name], streamed.maps[name])


@pytest.mark.slow
def test_streamed_and_slabbed_fits_equal_the_in_memory_fit(tmp_path):
    """A .nii (float32, and int16 with scl_slope/inter) and a .nii.gz read a frame at a time, in one pass or in slabs
    forced by a tiny memory budget, give the maps of the image read into memory, bit for bit; a budget below the
    fixed overhead is refused up front."""
    import json

    import nibabel as nib

    from jaxkin.errors import InputError
    from jaxkin.fitting.volume import RUNTIME_BYTES, memory_needed
    from jaxkin.io.pet import load_pet

    data, kin = _volume(shape=(6, 5, 6))
    meta = {"FrameTimesStart": [float(s) for s in FRAMES.start_seconds],
            "FrameDuration": [float(d) for d in FRAMES.duration_seconds], "Units": "kBq/mL",
            "ImageDecayCorrected": True}
    files = {"a_pet.nii": nib.Nifti1Image(data, np.eye(4)), "b_pet.nii.gz": nib.Nifti1Image(data, np.eye(4))}
    scaled = nib.Nifti1Image(np.round(np.nan_to_num(data) * 100).astype(np.int16), np.eye(4))
    scaled.header.set_slope_inter(0.01, 0.5)
    files["c_pet.nii"] = scaled
    n_maps = len(fitting.LM().maps())
    for name, image in files.items():
        nib.save(image, str(tmp_path / name))
        (tmp_path / (name.split(".nii")[0] + ".json")).write_text(json.dumps(meta))
        pet = load_pet(tmp_path / name)
        ref = fit_volume(pet.read(), kin, chunk_size=32, slab=2, progress=False)
        per_slab = max(int(ref.mask[:, :, s:s + 2].sum()) for s in range(0, 6, 2))
        slabs = memory_needed(pet.shape, n_maps, per_slab, slices=2, maps_held=True)
        for budget in (None, slabs):  # one pass; slabs of 2 slices
            res = fit_volume(pet, kin, chunk_size=32, slab=2, progress=False, max_memory=budget)
            np.testing.assert_array_equal(res.mask, ref.mask)
            for key in ref.maps:
                np.testing.assert_array_equal(res.maps[key], ref.maps[key], err_msg=f"{name} {key} {budget}")
        # the maps handed on slab by slab, in order, never held whole: the same values
        written = {key: [] for key in ref.maps}
        z_next = {key: 0 for key in ref.maps}

        def write(z, key, values, z_next=z_next, written=written, plane=ref.mask.shape[:2]):
            assert z.start == z_next[key] and values.shape == (*plane, z.stop - z.start)
            z_next[key] = z.stop
            written[key].append(values)

        budget = memory_needed(pet.shape, n_maps, per_slab, slices=2)
        res = fit_volume(pet, kin, chunk_size=32, slab=2, progress=False, max_memory=budget, write=write)
        assert res.maps == {} and res.n_fitted == ref.n_fitted and res.n_not_converged == ref.n_not_converged
        for key in ref.maps:
            assert len(written[key]) > 1 and z_next[key] == 6
            np.testing.assert_array_equal(np.concatenate(written[key], axis=2), ref.maps[key], err_msg=name)
    with pytest.raises(InputError, match=r"needs at least [0-9.]+ GB of memory, more than the memory budget"):
        fit_volume(pet, kin, chunk_size=32, slab=2, progress=False, max_memory=RUNTIME_BYTES)
