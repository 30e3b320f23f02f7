"""Quickstart: the exp 4.1 network ((2+1)D convolutions, 3D pooling, multi-clamp) on the small phantom, on a CPU.

Simulates the 'small' phantom (3 subjects of 32 x 32 x 24 voxels, 62 frames: 1 train, 1 validation, 1 test) into
the workdir, trains a few epochs, evaluates the test subject, predicts its parametric maps and writes report.md::

    python -m jaxkin.train --config experiments/quickstart.py --workdir runs/quickstart

Only the data size and the number of epochs differ from exp4_1.py (and the learning rate, raised so that a few
epochs show learning); the network is the paper's.
"""

from base import table1


def get_config() -> dict:
    return table1(conv="space_time", pooling="3d", final_activation="multi_clamp") | {
        "phantom_preset": "small",
        "crop": 32,
        "slices_per_subject": 0,  # every slice from the lungs to the bladder
        "epochs": 6,
        "learning_rate": 1e-3,
        "lr_halving_epochs": 3,
    }
