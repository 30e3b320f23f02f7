"""Table 1, Exp 2.1: convolution space + time, pooling 3D, final activation Absolute.

Paper (real patient data): CS 0.75 ± 0.05, MAE 3.59 ± 2.33.
Run (simulates the 'paper' phantom into the workdir on first use; 500 epochs are meant for a GPU)::

    python -m jaxkin.train --config experiments/exp2_1.py --workdir runs/exp2_1
"""

from base import table1


def get_config() -> dict:
    return table1(conv="space_time", pooling="3d", final_activation="abs")
