"""The CPU study's protocol (experiments/cpu_study.py) with the recommended network (experiments/recommended.py):
18 small-phantom subjects (8 train, 3 validation, 7 test), 40 epochs, lr halved every 10, validation every 5::

    python experiments/study.py --config experiments/recommended_study.py --workdir runs/recommended_study

``study.md`` compares the network's test maps with jaxkin LM and Patlak (organ-mean bias, voxel RMSE per organ).
"""

from cpu_study import get_config as cpu_study
from recommended import get_config as recommended


def get_config() -> dict:
    study = cpu_study()
    return recommended() | {key: study[key] for key in ("phantom_subjects", "epochs", "lr_halving_epochs",
                                                        "eval_every")}
