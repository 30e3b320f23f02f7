"""Configs: bare, dotted and nested keys, their checks (one clear line each), the defaults of the paper's Table 1
configs, and the time steps that follow the data's frames."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import jaxkin
from jaxkin import network as N
from jaxkin.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "experiments").glob("exp*_*.py"))


@pytest.mark.parametrize("override,message", [
    ("colour=red", "unknown key 'colour'"),
    ("epochs=ten", "epochs must be int"),
    ("conv=4d", "conv must be one of space_time, 3d"),
    ("model.conv=4d", "conv must be one of space_time, 3d"),
    ("optim.depth=3", "unknown key 'optim.depth'"),
    ("crop=100", "crop (100) must be a multiple of 2**depth = 16"),
    ("batch_size=0", "batch_size must be positive"),
])
def test_bad_config_values_fail_with_one_line(override, message):
    with pytest.raises(InputError) as err:
        N.load_config(ROOT / "experiments" / "exp4_1.py", [override])
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("values,message", [
    ({"init_params": (0.1, 0.5, 0.05)}, "init_params"),
    ({"init_params": (0.1, 0.5, 0.05, 1.0)}, "init_params"),  # vB on its upper bound
    ({"init_params": "0.1"}, "init_params must be tuple"),
    ({"input_normalization": "subject"}, "input_normalization must be one of"),
    ({"input_normalization": 1}, "input_normalization must be str"),
])
def test_new_options_are_validated(values, message):
    with pytest.raises(InputError, match=message):
        N.config_from_dict(values)


@pytest.mark.parametrize("values,message", [
    ({"loss_frames": "poisson"}, "loss_frames must be one of"),
    ({"loss_scale": "organ"}, "loss_scale must be one of"),
    ({"grad_clip_norm": -1.0}, "grad_clip_norm must be 0 or positive"),
    ({"condition_on_input": "yes"}, "condition_on_input must be bool"),
    ({"input_normalization": "blood"}, "input_normalization must be one of"),
    ({"architecture": "transformer"}, "architecture must be one of spacetime_unet, encoder_unet"),
    ({"temporal_features": 0}, "temporal_features must be positive"),
])
def test_the_options_are_validated(values, message):
    with pytest.raises(InputError, match=message):
        N.config_from_dict(values)


@pytest.mark.parametrize("key", ["lm_guidance", "lm_guidance_epochs", "lm_guidance_ki"])
def test_negative_guidance_settings_are_refused(key):
    with pytest.raises(InputError, match=f"{key} must be 0 or positive"):
        N.config_from_dict({key: -1})


def test_bad_config_file_and_missing_data_on_the_command_line(tmp_path, capsys):
    from jaxkin.cli import main

    bad = tmp_path / "bad.py"
    bad.write_text("def get_config():\n    return {'learning_rate': 'fast'}\n")
    assert main(["train", "--config", str(bad), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "learning_rate must be float" in err
    assert main(["train", "--config", str(ROOT / "experiments" / "exp4_1.py"), "--workdir", str(tmp_path / "w"),
                   "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nowhere" in err and "participants.tsv" in err


def test_bare_dotted_and_nested_keys_give_the_same_config(tmp_path):
    flat = N.config_from_dict({"epochs": 7, "crop": 32, "conv": "3d", "seed": 2})
    assert flat == N.config_from_dict({"optim.epochs": 7, "data.crop": 32, "model.conv": "3d", "seed": 2})
    assert flat == N.config_from_dict({"optim": {"epochs": 7}, "data": {"crop": 32}, "model": {"conv": "3d"},
                                       "seed": 2})
    assert (flat.optim.epochs, flat.data.crop, flat.model.conv) == (7, 32, "3d")
    # the resolved config round-trips through its nested JSON form (config.json, model.json)
    import json

    assert N.config_from_dict(json.loads(json.dumps(dataclasses.asdict(flat)))) == flat
    nested = tmp_path / "nested.py"
    nested.write_text("def get_config():\n    return {'optim': {'epochs': 7}, 'data': {'crop': 32}}\n")
    cfg = N.load_config(nested, ["optim.epochs=9", "model.conv=3d", "seed=2"])
    assert cfg == dataclasses.replace(flat, optim=dataclasses.replace(flat.optim, epochs=9))


def test_table1_configs_keep_the_papers_behaviour():
    for path in EXPERIMENTS:
        cfg = N.load_config(path).model
        assert cfg.init_params == () and cfg.input_normalization == "none" and cfg.input_scale == 1.0, path


def test_network_bounds_are_the_kinetic_models():
    fdg = jaxkin.get_model("2tcmirr")
    cfg = N.load_config(EXPERIMENTS[0])
    assert cfg.model.lower == fdg.lower and cfg.model.upper == fdg.upper


def test_auto_time_steps_follow_the_frames():
    cfg = N.config_from_dict({})
    assert cfg.model.time_steps == 0  # the default: follow the data
    assert N.resolve_time_steps(cfg, 69).model.time_steps == 80  # depth 4, 3d pooling: a multiple of 16
    assert N.resolve_time_steps(cfg, 62).model.time_steps == 64
    space = N.config_from_dict({"pooling": "space"})
    assert N.resolve_time_steps(space, 69).model.time_steps == 69
    encoder = N.config_from_dict({"architecture": "encoder_unet"})  # no pooling in time: the frames as they are
    assert N.resolve_time_steps(encoder, 69).model.time_steps == 69
    paper = N.load_config(ROOT / "experiments" / "exp4_1.py")
    assert paper.model.time_steps == 64 and N.resolve_time_steps(paper, 62) == paper
    with pytest.raises(InputError, match="69 frames do not fit time_steps = 64"):
        N.resolve_time_steps(paper, 69)
    assert N.load_config(ROOT / "experiments" / "quickstart.py").model.time_steps == 0
    with pytest.raises(ValueError, match="resolved"):
        N.make_model(cfg)
