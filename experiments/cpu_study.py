"""The CPU study: does the network learn the kinetics? 18 small-phantom subjects (8 train, 3 validation, 7 test),
32 x 32 slices, the quickstart's network and loss, trained long enough to converge on a 2-core CPU::

    python experiments/study.py --config experiments/cpu_study.py --workdir runs/cpu_study

The study script trains in stages, follows the validation subjects' organ means against the ground truth, then
compares the network's test maps with jaxkin LM and Patlak (bias and voxel RMSE per organ): ``study.md``,
``learning_curves.png``. Budget: 40 epochs of 176 steps (batch 1), about 7,000 steps; the measured wall time is
in benchmarks/RESULTS.md. The options beyond the paper (input function as input channels, input-level
normalisation, relative errors in the loss, physiological bounds, gradient clipping, guidance by the voxel fit) are
explained in experiments/quickstart.py; ``--set lm_guidance=0`` runs the purely self-supervised network.
"""

from quickstart import get_config as quickstart


def get_config() -> dict:
    return quickstart() | {
        "phantom_subjects": 18,  # 8 train, 3 validation, 7 test
        "epochs": 40,
        "lr_halving_epochs": 10,
        "eval_every": 5,
    }
