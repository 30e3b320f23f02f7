"""The base configuration shared by every experiment: the paper's training setup (Sections 2.2 and 2.4).

Adam, learning rate 1e-4 halved every 25 epochs, up to 500 epochs, batch 5; 75 axial slices per subject from the
lungs to the bladder, cropped to 112 x 112; frames edge-padded to 64 time steps; depth 4, 8 root features, ELU,
no batch norm. Each ``expN_M.py`` changes the three switches of the paper's Table 1 (convolution, pooling,
final activation). Keys and their meaning: :class:`jaxkin.network.TrainConfig` (flat keys here; nested
``{"optim": {...}}`` or dotted ``"optim.epochs"`` keys work too). The parameter bounds of the multi-clamp and sigmoid
activations are the FDG model's (``jaxkin models``), so they are not set here.
"""


def base_config() -> dict:
    return {
        "depth": 4,
        "root_features": 8,
        "time_steps": 64,
        "input_scale": 1.0,
        "input_normalization": "none",  # the paper feeds kBq/ml (the quickstart: "slice")
        "init_params": (),  # the paper: every layer initialised at random (the quickstart: plausible parameters)
        "learning_rate": 1e-4,
        "lr_halving_epochs": 25,
        "epochs": 500,
        "batch_size": 5,
        "seed": 0,
        "eval_every": 1,
        "slices_per_subject": 75,
        "crop": 112,
        "mask_threshold": 1.0,
        "predict_batch_size": 8,
        "predict_test": True,
        "phantom_preset": "paper",
    }


def table1(conv: str, pooling: str, final_activation: str) -> dict:
    """The base config with one row of Table 1: conv "3d" or "space_time", pooling "3d" or "space",
    final activation "abs", "clamp" or "multi_clamp"."""
    return base_config() | {"conv": conv, "pooling": pooling, "final_activation": final_activation}
