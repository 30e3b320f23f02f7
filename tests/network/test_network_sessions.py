"""`jaxkin train` on a dataset whose subjects have several PET scans (sessions): every scan is a training unit with
its own input function, and the train/val/test split stays by subject."""

from __future__ import annotations

import importlib
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxkin
from jaxkin import kinetics
from jaxkin import network as N

T = importlib.import_module("jaxkin.network.train")  # the module (jaxkin.network.train is also the function)

FRAMES = jaxkin.FrameSchedule.from_durations([10, 10, 20, 20, 30, 60, 60, 120, 180, 300, 300, 600])
TINY = {"depth": 2, "time_steps": 16, "crop": 16, "batch_size": 2, "predict_batch_size": 3, "slices_per_subject": 3,
        "mask_threshold": 0.5, "learning_rate": 1e-3, "input_scale": 0.05}
SCANS = {"sub-01": ("ses-a", "ses-b"), "sub-02": (None,), "sub-03": ("ses-a", "ses-b")}
SPLIT = {"sub-01": "train", "sub-02": "val", "sub-03": "test"}


def _write_dataset(root: Path) -> dict:
    """Noisy 2TC TACs in a 12 x 12 body of 16 x 18 x 5 voxels per scan, each scan with its own Feng input
    (another delay and scale); sub-01 and sub-03 have two sessions and one label map for both in
    derivatives/<pipeline>/sub-XX/anat/, sub-02 one scan with its label map beside the PET. Returns the inputs by
    scan id."""
    from jaxkin.io.blood import write_blood
    from jaxkin.io.labels import write_labels
    from jaxkin.io.pet import write_pet

    rng = np.random.default_rng(3)
    affine = np.diag([2.5, 2.5, 6.0, 1.0])
    body = np.zeros((16, 18, 5), bool)
    body[2:14, 3:15] = True
    inputs = {}
    for k, (sid, sessions) in enumerate(SCANS.items()):
        for j, ses in enumerate(sessions):
            prefix = f"{sid}_{ses}" if ses else sid
            folder = root / sid / (ses or "") / "pet"
            inp = jaxkin.feng_input(FRAMES.end[-1], delay=0.05 * (k + 1) + 0.1 * j).scaled(1.0 + 0.1 * k + 0.5 * j)
            params = np.stack([np.full(body.shape, v, np.float32) for v in (0.6, 1.0, 0.1, 0.05)], axis=-1)
            params *= rng.uniform(0.8, 1.2, size=params.shape).astype(np.float32)
            tac = np.asarray(kinetics.two_tissue_irreversible(params, jaxkin.prepare(inp, FRAMES)))
            tac = tac * body[..., None] + rng.normal(scale=0.05, size=tac.shape)
            write_pet(folder / f"{prefix}_pet.nii.gz", tac, FRAMES, affine)
            write_blood(folder / f"{prefix}_recording-AIF_blood.tsv", whole_blood=inp)
            inputs[prefix] = inp
        labels = body.astype(np.int32)
        if sessions == (None,):
            write_labels(root / sid / "pet" / f"{sid}_dseg.nii.gz", labels, {1: "body"}, affine)
        else:
            write_labels(root / "derivatives" / "seg" / sid / "anat" / f"{sid}_dseg.nii.gz", labels, {1: "body"}, affine)
    lines = ["participant_id\tsplit"] + [f"{sid}\t{split}" for sid, split in SPLIT.items()]
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")
    return inputs


@pytest.fixture(scope="module")
def sessions_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("sessions")
    return root, _write_dataset(root)


@pytest.mark.slow
def test_training_data_has_one_unit_per_scan_and_splits_by_subject(sessions_dataset, tmp_path):
    root, inputs = sessions_dataset
    cfg = N.config_from_dict(TINY)
    parallel, shards = T._data_parallel(cfg)
    data = T._open_dataset(cfg, tmp_path, root, shards, parallel)
    ids = ["sub-01_ses-a", "sub-01_ses-b", "sub-02", "sub-03_ses-a", "sub-03_ses-b"]
    assert [s.scan_id for s in data.scans] == ids
    assert data.split == {"train": ["sub-01"], "val": ["sub-02"], "test": ["sub-03"]}
    assert [list(data.subjects(name)) for name in ("train", "val", "test")] == [[0, 1], [2], [3, 4]]
    # the kinetic stack holds each scan's own input function, in scan order
    for i, scan_id in enumerate(ids):
        own = jaxkin.prepare(inputs[scan_id], FRAMES)
        for got, want in zip(jax.tree.leaves(data.kin), jax.tree.leaves(own)):
            np.testing.assert_allclose(np.asarray(got)[i], np.asarray(want), rtol=1e-6, atol=1e-9)
    # both sessions of the training subject give slices (3 each), tagged with their scan's index; val has sub-02's
    assert int(data.train.sizes.sum()) == 6 and sorted(set(data.train.data.subject.tolist())) == [0, 1]
    assert set(data.val.data.subject.tolist()) == {2}
    # the slices are each session's own data (session b's input is larger, so are its TACs)
    mean = {i: data.train.data.tac[data.train.data.subject == i].mean() for i in (0, 1)}
    assert mean[1] > 1.3 * mean[0]
    # both sessions found the subject-level label map in derivatives
    assert data.scans[0].labels is not None and data.scans[0].files.labels == data.scans[1].files.labels


@pytest.mark.slow
def test_a_run_predicts_every_session_of_the_test_subject(sessions_dataset, tmp_path):
    root, _ = sessions_dataset
    summary = N.train(N.config_from_dict(TINY | {"epochs": 1}), tmp_path, root, progress=False)
    assert summary["test"]["voxels"] > 0
    for ses in ("ses-a", "ses-b"):
        maps = sorted((tmp_path / "predictions" / "sub-03").glob(f"sub-03_{ses}_model-2tcmirr_meas-*_mimap.nii.gz"))
        assert len(maps) == 5, maps
    report = (tmp_path / "report.md").read_text()
    assert "test sub-03." in report
