"""Table 1, Exp 1.2: convolution 3D, pooling space, final activation Absolute.

Paper (real patient data): CS 0.74 ± 0.05, MAE 3.64 ± 2.21.
Run (simulates the 'paper' phantom into the workdir on first use; 500 epochs are meant for a GPU)::

    python -m jaxkin.train --config experiments/exp1_2.py --workdir runs/exp1_2
"""

from base import table1


def get_config() -> dict:
    return table1(conv="3d", pooling="space", final_activation="abs")
