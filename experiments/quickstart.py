"""Quickstart: the paper's (2+1)D UNet (exp 4.1's convolutions and pooling) on the small phantom, on a CPU.

Simulates the 'small' phantom (8 subjects of 32 x 32 x 24 voxels, 62 frames: 4 train, 1 validation, 3 test) into
the workdir, trains 10 epochs (880 steps of one slice), evaluates the test subjects, predicts their parametric
maps and writes report.md (with organ means of the maps against the ground truth)::

    python -m jaxkin.train --config experiments/quickstart.py --workdir runs/quickstart

The network (depth 4, 8 root features) and the self-supervised loss (model TACs of the predicted parameters against
the measured TACs) are the paper's. What differs from exp4_1.py, so that minutes of CPU learn the kinetics (each
change measured in benchmarks/RESULTS.md, "What makes the network learn the kinetics"):

* data: the small phantom, every slice from the lungs to the bladder, 32 x 32; ``time_steps = 0``: the frames
  padded to a multiple of 16 (64 for the 62 frames), whatever the schedule;
* ``condition_on_input``: the scan's input function (blood frame means and its running integral) as two more input
  channels, and ``input_normalization="input"``: TACs and curves divided by the scan's time-averaged blood
  activity, so the network sees tissue relative to blood, which is what the kinetic parameters describe (the
  paper's network never sees the input function). Prediction then needs the input function;
* ``loss_scale="voxel"``: relative errors (each voxel's squared error divided by the square of its time-averaged
  activity), so cold voxels count as much as the bladder and the heart;
* physiological bounds (``lower``/``upper`` of the sigmoid: K1 <= 3, k2 <= 6, k3 >= 0; the paper's k3 >= 0.01 and
  k2 <= 3 exclude liver, spleen and kidney values);
* ``final_activation="sigmoid"`` (smooth between the bounds) instead of the multi-clamp, whose zero gradient outside
  the bounds left K1 and k2 stuck at 0.01; ``init_params``: the untrained network predicts K1 0.1, k2 0.5, k3
  0.05, vB 0.05 everywhere (the last layer starts with a zero kernel and the matching bias);
* batch 1, Adam lr 1e-3 halved every 4 epochs with the gradient's norm clipped at 1, 10 epochs (the paper: batch 5,
  lr 1e-4 halved every 25 epochs, 500 epochs).
* ``lm_guidance=1``: before training, jaxkin LM fits every voxel of the training slices (seconds), and the loss adds
  the log-ratio distance of the network's parameters from those maps to the self-supervised loss (no ground truth:
  the targets come from the same scans). Without it the network's liver Ki stays 2-3x too high and the organs'
  Ki rank misses the truth's (Spearman 0.85-0.88); ``--set lm_guidance=0`` gives the purely self-supervised
  network.

Measured time and organ means: the README and benchmarks/RESULTS.md.
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
        "lm_guidance": 1.0,
    }
