"""Recommended: the quickstart's loss and data with a network built for speed, "time first, then space".

    jaxkin train --config experiments/recommended.py --data DATASET --workdir W
    python -m jaxkin.train --config experiments/recommended.py --workdir W     # the small phantom, as the quickstart

The network (``architecture="encoder_unet"``, :mod:`jaxkin.nn.encoder_unet`) compresses each voxel's TAC to 64
features with a dense encoder over the frames that also reads the scan's input function (once per slice, not as
channels of every voxel), then runs a 2D UNet (depth 3, 16 root features, 3x3 convs) over those features; its head
sees the UNet's output beside each voxel's own features, so small organs keep a per-voxel path. A 112 x 112 slice
costs about 1.65 GFLOP forward against about 14 GFLOP for the paper's (2+1)D UNet, and time needs no padding:
``time_steps = 0`` takes the scans' frame count.

Everything else is the quickstart's (experiments/quickstart.py explains each setting), with Ki added to the guidance
(``lm_guidance_ki=1``): TACs and input function divided by the scan's time-averaged blood activity, relative errors
in the loss (``loss_scale="voxel"``), guidance by jaxkin LM's maps of the training slices (``lm_guidance=1``),
physiological bounds with a sigmoid between them, ``init_params``, Adam lr 1e-3 halved every 4 epochs, gradient norm
clipped at 1, batch 1, 10 epochs on the small phantom's 8 subjects. For a dataset of larger slices set ``crop`` (a
multiple of 8) and, for many subjects, ``slices_per_subject``. Measured quality and speed (the CPU study's protocol:
experiments/recommended_study.py): benchmarks/RESULTS.md.
"""

from quickstart import get_config as quickstart


def get_config() -> dict:
    return quickstart() | {
        "architecture": "encoder_unet",
        "depth": 3,
        "root_features": 16,
        "temporal_features": 64,  # 32: 1.18 GFLOP, but a worse TAC fit and spleen K1 (benchmarks/RESULTS.md)
        "lm_guidance_ki": 1.0,  # Ki's distance from the fit's in the guidance: Ki's voxel error (benchmarks/RESULTS.md)
    }
