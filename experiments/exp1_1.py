"""Table 1, Exp 1.1: convolution 3D, pooling 3D, final activation Absolute.

Paper (real patient data): CS 0.74 ± 0.05, MAE 3.55 ± 2.12.
Run (simulates the 'paper' phantom into the workdir on first use; 500 epochs are meant for a GPU)::

    python -m jaxkin.train --config experiments/exp1_1.py --workdir runs/exp1_1
"""

from base import table1


def get_config() -> dict:
    return table1(conv="3d", pooling="3d", final_activation="abs")
