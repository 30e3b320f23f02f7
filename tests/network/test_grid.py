"""The training grid: recorded voxel size and field of view, a scan on the same grid predicted as it is, on another
resampled (linear) and said, on a grid too far apart refused; old runs without the record load and say so."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from jaxkin.errors import InputError
from jaxkin.network.grid import (
    MAX_GRID_RATIO,
    TrainingGrid,
    grid_plan,
    resample,
    training_grid,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run-v0.1.0"
GRID = TrainingGrid((4.0, 4.0, 2.0), (400.0, 400.0, 300.0))


def _scan(voxel, shape=(20, 10, 6, 3)):
    return SimpleNamespace(voxel_size=voxel, shape=shape, path=Path("sub-01_pet.nii.gz"))


def test_grid_plans():
    same = grid_plan(GRID, _scan((4.1, 3.9, 2.0)))  # within 5%: the scan's own grid
    assert not same.resampled and same.note is None and same.shape == (20, 10, 6)
    finer = grid_plan(GRID, _scan((2.0, 2.0, 2.0)))  # half the voxel size: half the voxels per axis
    assert finer.resampled and finer.shape == (10, 5, 6) and "resampled to the training voxel size" in finer.note
    assert finer.sidecar["TrainingVoxelSizeMM"] == [4.0, 4.0, 2.0] and finer.sidecar["Resampled"]
    with pytest.raises(InputError, match=f"more than {MAX_GRID_RATIO:g}x apart"):
        grid_plan(GRID, _scan((1.65, 1.65, 2.0)))
    unknown = grid_plan(None, _scan((1.65, 1.65, 2.0)))
    assert not unknown.resampled and "not recorded" in unknown.note


def test_record_round_trip_and_training_grid():
    grid = training_grid(_scan((2.0, 2.5, 3.0), (10, 8, 4, 5)))
    assert grid == TrainingGrid((2.0, 2.5, 3.0), (20.0, 20.0, 12.0))
    assert TrainingGrid.from_record(json.loads(json.dumps(grid.record()))) == grid
    assert TrainingGrid.from_record({"n_frames": 3}) is None


def test_resample_is_linear_interpolation():
    x, y, z = np.meshgrid(np.arange(9.0), np.arange(5.0), np.arange(3.0), indexing="ij")
    ramp = (2.0 * x + 3.0 * y - z)[..., None]
    out = resample(ramp, (5, 3, 3))  # corners aligned: new x = 2 * old x, y = 2 y
    xs, ys, zs = np.meshgrid(np.arange(5.0) * 2, np.arange(3.0) * 2, np.arange(3.0), indexing="ij")
    np.testing.assert_allclose(out[..., 0], 2.0 * xs + 3.0 * ys - zs, atol=1e-5)
    back = resample(out, (9, 5, 3))
    np.testing.assert_allclose(back, ramp, atol=1e-4)  # a linear function survives the round trip


def test_an_old_run_has_no_recorded_grid():
    info = json.loads((FIXTURE / "model.json").read_text())
    assert TrainingGrid.from_record(info) is None


@pytest.mark.slow
def test_predict_resamples_to_the_training_grid_and_back(tmp_path):
    import jaxkin
    from jaxkin import network as N
    from jaxkin.io.pet import load_pet, write_pet

    predictor = N.load_predictor(FIXTURE).replace()
    predictor.grid = TrainingGrid((3.0, 3.0, 2.0), (90.0, 96.0, 6.0))
    frames = jaxkin.FrameSchedule.quadra()
    volume = np.random.default_rng(0).gamma(2.0, 5.0, size=(30, 32, 3, frames.n_frames)).astype(np.float32)
    path = write_pet(tmp_path / "sub-01_pet.nii.gz", volume, frames, np.diag([2.0, 2.0, 2.0, 1.0]))
    result = N.write_parameter_maps(predictor, load_pet(path), tmp_path / "out")
    assert result["maps"]["K1"].shape == (30, 32, 3)  # back on the scan's grid
    sidecar = json.loads(result["paths"]["K1"].with_name(result["paths"]["K1"].name.replace(".nii.gz", ".json"))
                         .read_text())
    assert sidecar["Grid"]["Resampled"] and sidecar["Grid"]["ResampledShape"] == [20, 21, 3]
    assert any("resampled to the training voxel size" in a for a in sidecar["Assumptions"])
    # an uncompressed .nii on the training grid is read a batch of slices at a time: the maps of the whole volume
    predictor.grid = TrainingGrid((2.0, 2.0, 2.0), (60.0, 64.0, 6.0))
    plain = load_pet(write_pet(tmp_path / "sub-02_pet.nii", volume, frames, np.diag([2.0, 2.0, 2.0, 1.0])))
    streamed = N.write_parameter_maps(predictor, plain, tmp_path / "out2")["maps"]
    whole = predictor.predict_volume(plain.read())
    for i, name in enumerate(("K1", "k2", "k3", "vB")):
        np.testing.assert_array_equal(streamed[name], whole[..., i])
