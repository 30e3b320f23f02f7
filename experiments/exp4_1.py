"""Table 1, Exp 4.1: convolution space + time, pooling 3D, final activation Multi-clamp.

Paper (real patient data): CS 0.78 ± 0.05, MAE 3.28 ± 2.03.
The paper's selected configuration (used for the rest of its experiments).

Run (simulates the 'paper' phantom into the workdir on first use; 500 epochs are meant for a GPU)::

    python -m jaxkin.train --config experiments/exp4_1.py --workdir runs/exp4_1
"""

from base import table1


def get_config() -> dict:
    return table1(conv="space_time", pooling="3d", final_activation="multi_clamp")
