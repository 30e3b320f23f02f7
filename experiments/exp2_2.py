"""Table 1, Exp 2.2: convolution space + time, pooling space, final activation Absolute.

Paper (real patient data): CS 0.75 ± 0.05, MAE 3.67 ± 2.20.
Run (simulates the 'paper' phantom into the workdir on first use; 500 epochs are meant for a GPU)::

    python -m jaxkin.train --config experiments/exp2_2.py --workdir runs/exp2_2
"""

from base import table1


def get_config() -> dict:
    return table1(conv="space_time", pooling="space", final_activation="abs")
