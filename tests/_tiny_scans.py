"""Tiny scans for the network's tests: a 12-frame schedule (30 min), its kinetic inputs, smooth random parameter
maps and a small BIDS dataset of such scans (16 x 18 voxels per slice)."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

import jaxkin
from jaxkin import kinetics

# 12 frames over 30 min, padded to 16 time steps
FRAMES = jaxkin.FrameSchedule.from_durations([10, 10, 20, 20, 30, 60, 60, 120, 180, 300, 300, 600])


def scan_kin(delay=0.1, scale=1.0):
    """The kinetic input of a Feng input function (``delay`` min, times ``scale``) on :data:`FRAMES`."""
    return jaxkin.prepare(jaxkin.feng_input(FRAMES.end[-1], delay=delay).scaled(scale), FRAMES)


def smooth_params(rng, shape):
    """Smooth random parameter maps ``shape + (4,)`` inside the paper's bounds (a few Gaussian blobs)."""
    lo, hi = np.array([0.05, 0.2, 0.01, 0.01]), np.array([1.2, 2.0, 0.3, 0.2])
    yy, xx = np.meshgrid(np.linspace(-1, 1, shape[-2]), np.linspace(-1, 1, shape[-1]), indexing="ij")
    out = np.empty(shape + (4,), np.float32)
    for idx in np.ndindex(*shape[:-2]):
        for p in range(4):
            c = rng.uniform(-0.6, 0.6, 2)
            blob = np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / rng.uniform(0.1, 0.4))
            out[idx + (Ellipsis, p)] = lo[p] + (hi[p] - lo[p]) * (0.3 + 0.7 * blob)
    return out


def write_dataset(root: Path, splits=("train", "val", "test"), n_z: int = 5) -> Path:
    """A BIDS dataset of ``len(splits)`` subjects (``sub-01`` ...) in these splits: noisy 2TC TACs in a 12 x 12
    body of 16 x 18 x ``n_z`` voxels, a Feng input function each, a one-label ``body`` segmentation."""
    from jaxkin.io.blood import write_blood
    from jaxkin.io.labels import write_labels
    from jaxkin.io.pet import write_pet

    rng = np.random.default_rng(7)
    affine = np.diag([2.5, 2.5, 6.0, 1.0])
    lines = ["participant_id\tsplit"]
    for s, split in enumerate(splits, start=1):
        sid = f"sub-{s:02d}"
        pet_dir = root / sid / "pet"
        pet_dir.mkdir(parents=True)
        inp = jaxkin.feng_input(FRAMES.end[-1], delay=0.05 * s).scaled(1.0 + 0.1 * s)
        params = smooth_params(rng, (n_z, 16, 18))  # 18: prediction pads it to 20 and crops back
        tac = np.asarray(kinetics.two_tissue_irreversible(jnp.asarray(params), jaxkin.prepare(inp, FRAMES)))
        body = np.zeros((n_z, 16, 18), bool)
        body[:, 2:14, 3:15] = True
        tac = tac * body[..., None] + rng.normal(scale=0.05, size=tac.shape)
        write_pet(pet_dir / f"{sid}_pet.nii.gz", np.moveaxis(tac, 0, 2), FRAMES, affine)
        write_blood(pet_dir / f"{sid}_recording-AIF_blood.tsv", whole_blood=inp)
        labels = np.moveaxis(body.astype(np.int32), 0, 2)
        write_labels(pet_dir / f"{sid}_dseg.nii.gz", labels, {1: "body"}, affine)
        lines.append(f"{sid}\t{split}")
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")
    return root


#: The settings of a tiny network and run on these scans: 16 x 16 slices, depth 2, 16 time steps.
TINY = {"depth": 2, "time_steps": 16, "crop": 16, "batch_size": 2, "predict_batch_size": 3, "slices_per_subject": 3,
        "mask_threshold": 0.5, "learning_rate": 1e-3}
