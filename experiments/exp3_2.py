"""Table 1, Exp 3.2: convolution space + time, pooling space, final activation Clamp.

Paper (real patient data): CS 0.69 ± 0.05, MAE 3.55 ± 2.07.
Run (simulates the 'paper' phantom into the workdir on first use; 500 epochs are meant for a GPU)::

    python -m jaxkin.train --config experiments/exp3_2.py --workdir runs/exp3_2
"""

from base import table1


def get_config() -> dict:
    return table1(conv="space_time", pooling="space", final_activation="clamp")
