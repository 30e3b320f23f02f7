"""Table 1, Exp 4.2: convolution space + time, pooling space, final activation Multi-clamp.

Paper (real patient data): CS 0.77 ± 0.05, MAE 3.27 ± 2.01.
Run (simulates the 'paper' phantom into the workdir on first use; 500 epochs are meant for a GPU)::

    python -m jaxkin.train --config experiments/exp4_2.py --workdir runs/exp4_2
"""

from base import table1


def get_config() -> dict:
    return table1(conv="space_time", pooling="space", final_activation="multi_clamp")
