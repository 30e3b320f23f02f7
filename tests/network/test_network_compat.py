"""Runs written by jaxkin 0.1.0 (flat config.json and model.json, the original checkpoint layout) still resume and
predict.

``tests/fixtures/run-v0.1.0`` is such a workdir: ``experiments/quickstart.py`` with the flags of :data:`TINY` and
``epochs=3``, its phantom data left out (a resumed run re-simulates them; the simulation is seeded). jaxkin 0.1.0
trained the same run for 4 epochs to an epoch-4 train loss of 84.23505783081055 on the phantom of its time; the
resumed run reproduced that number until the phantom's bladder was made brighter and its lungs kept inside the rib
cage (commit "phantom: a bladder as bright as in patients..."; with the earlier phantom.py it still does). The
re-simulated epoch-4 data now differ, so the reference is this code's loss on the current phantom.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from jaxkin import network as N
from jaxkin.cli import main
from jaxkin.errors import InputError
from jaxkin.network.train import check_resume

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "run-v0.1.0"
# the quickstart of jaxkin 0.1.0 (today's quickstart conditions on the input function, weighs relative errors, ...)
QUICKSTART_0_1 = ["phantom_subjects=0", "lower=0.01,0.01,0.01,0", "upper=2,3,1,1", "input_normalization=slice",
                  "condition_on_input=false", "loss_scale=none", "grad_clip_norm=0", "learning_rate=2e-3",
                  "lr_halving_epochs=6", "lm_guidance=0"]
TINY = ["depth=2", "root_features=2", "slices_per_subject=2", "predict_test=false", *QUICKSTART_0_1]
EPOCH_4_LOSS = 247.47268772125244  # the old checkpoint resumed for a 4th epoch on the current phantom (0.1.0: 84.24)


@pytest.fixture
def old_run(tmp_path) -> Path:
    workdir = tmp_path / "run"
    shutil.copytree(FIXTURE, workdir)
    return workdir


@pytest.mark.slow
def test_an_old_run_resumes_and_gives_the_old_codes_losses(old_run):
    flags = [arg for value in TINY + ["epochs=4"] for arg in ("--set", value)]
    rc = main(["train", "--config", str(ROOT / "experiments" / "quickstart.py"), "--workdir", str(old_run),
               "--no-progress", "--resume", *flags])
    assert rc == 0
    rows = N.read_metrics(old_run)
    old = N.read_metrics(FIXTURE)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert [r["train_loss"] for r in rows[:3]] == [r["train_loss"] for r in old]  # kept as they were
    assert rows[3]["train_loss"] == pytest.approx(EPOCH_4_LOSS, rel=1e-5)


def test_an_old_config_with_missing_keys_counts_them_as_defaults(old_run):
    cfg = N.load_config(ROOT / "experiments" / "quickstart.py", TINY)
    check_resume(cfg, old_run, resume=True)
    config = json.loads((old_run / "config.json").read_text())
    for key in ("eval_every", "predict_batch_size", "phantom_noise_scale"):  # defaults 1, 8, 1.0: not 0
        del config[key]
    (old_run / "config.json").write_text(json.dumps(config))
    check_resume(N.load_config(ROOT / "experiments" / "quickstart.py", TINY + ["epochs=9"]), old_run, resume=True)
    with pytest.raises(InputError, match="differs from the run .* in eval_every"):
        check_resume(N.load_config(ROOT / "experiments" / "quickstart.py", TINY + ["eval_every=2"]), old_run,
                     resume=True)


@pytest.mark.slow
def test_an_old_run_predicts(old_run):
    predictor = N.load_predictor(old_run)
    assert predictor.cfg == N.resolve_time_steps(N.load_config(ROOT / "experiments" / "quickstart.py",
                                                                TINY + ["epochs=3"]), 62)
    assert predictor.n_frames == 62
    volume = np.random.default_rng(0).gamma(2.0, 5.0, size=(30, 32, 3, 62)).astype(np.float32)
    maps = predictor.predict_volume(volume)
    assert maps.shape == (30, 32, 3, 4) and np.all(np.isfinite(maps))
    lower, upper = predictor.cfg.model.lower, predictor.cfg.model.upper
    assert np.all((maps >= lower) & (maps <= upper))  # the sigmoid keeps every parameter inside its bounds
