"""The options of a fit: every model once, each bad option or combination refused when the options are made, the
message naming the parameter (never a command-line flag), reworded by the caller's names."""

import pytest

from jaxkin import kinetics
from jaxkin.errors import InputError
from jaxkin.fitting import FIT_MODELS, GRAPHICAL_METHODS, FitOptions, OptionError
from jaxkin.fitting.options import check_models


def _flags(name):
    return "--" + name.replace("_", "-")


def test_every_model_once_the_default_first():
    assert FIT_MODELS[0] == kinetics.FDG_MODEL == FitOptions().models[0]
    assert sorted(FIT_MODELS) == sorted(set(kinetics.MODELS) | set(GRAPHICAL_METHODS))
    assert check_models("1tcm") == ("1tcm",) and check_models(["2tcm", "1tcm"]) == ("2tcm", "1tcm")


@pytest.mark.parametrize("models,message", [
    (("2tcmirr", "foo"), "models: unknown model 'foo'; choose from 2tcmirr, 1tcm, 2tcm, patlak, logan"),
    (("1tcm", "1tcm"), "models: a model is named twice"),
    (("2tcmirr", "logan"), "models: only compartment models can be compared (not patlak, logan)"),
    ((), "models: no model given"),
])
def test_bad_models(models, message):
    with pytest.raises(OptionError) as err:
        FitOptions(models=models)
    assert str(err.value) == message
    assert err.value.worded(lambda name: "--model X" if name == "models" else None) == message.replace(
        "models", "--model X", 1)


@pytest.mark.parametrize("options,message", [
    (dict(uncertainty=True, method="curve_fit"),
     "uncertainty: standard-error maps come from jaxkin's fit (method lm), not curve_fit"),
    (dict(chunk_size=0), "chunk_size must be positive"),
    (dict(method="curve_fit", models=("patlak",)), "method curve_fit applies to compartment models, not patlak"),
    (dict(bounds=["k5=0,1"]), "bounds: k5 is not a parameter of 2tcmirr (parameters: K1, k2, k3, vB)"),
    (dict(bounds="tight"), "bounds: unknown preset 'tight'"),
    (dict(bounds={"K1": 3}), "bounds: expected {name: (lower, upper)}"),
    (dict(bounds="paper", models=("logan",)), "bounds applies to compartment models, not logan"),
    (dict(delay="global", models=("patlak",)), "delay applies to compartment models, not patlak"),
    (dict(delay="voxel", method="curve_fit"), "delay voxel: fitted by method lm only"),
    (dict(delay="late"), "delay 'late': choose from none, global, voxel"),
    (dict(weights="sd"), "weights 'sd': choose from none, duration, poisson"),
    (dict(method="nelder-mead"), "method 'nelder-mead': choose from lm, curve_fit"),
    ({"fixed": "k4=0"}, "fixed: k4 is not a parameter of 2tcmirr"),
    ({"fixed": "vB=2"}, "fixed: vB=2: need a finite value >= 0 and <= 1"),
    ({"fixed": "vB=0.02", "bounds": "vB=0,0.1"}, "fixed: vB also has a range in the bounds"),
    ({"fixed": "K1=1 k2=1 k3=0 vB=0"}, "fixed: every parameter of 2tcmirr is fixed"),
    ({"bounds": "K1=1,1 k2=1,1 k3=0,0 vB=0,0"}, "bounds: every parameter of 2tcmirr is fixed"),
    ({"fixed": "vB=0", "models": ("patlak",)}, "fixed applies to compartment models, not patlak"),
    ({"weights": "duration", "models": ("logan",)}, "weights applies to compartment models, not logan"),
])
def test_bad_options_name_the_parameter(options, message):
    with pytest.raises(OptionError) as err:
        FitOptions(**options)
    text = str(err.value)
    assert text.startswith(message) and "--" not in text
    assert isinstance(err.value, InputError) and isinstance(err.value, ValueError)
    worded = err.value.worded(_flags)
    first = message.split()[0].rstrip(":")
    assert worded.startswith("--" + first.replace("_", "-")), worded
    if first == "delay" and "method" in message:
        assert worded == "--delay voxel: fitted by --method lm only"


def test_bounds_of_every_compared_model_are_checked():
    assert FitOptions(models=("2tcm", "1tcm"), bounds=["k4=0,1"]).bounds == ["k4=0,1"]  # a parameter of one of them
    with pytest.raises(OptionError, match="^bounds: k4 is not a parameter of 2tcmirr, 1tcm"):
        FitOptions(models=("2tcmirr", "1tcm"), bounds=["k4=0,1"])


def test_a_word_given_by_the_message_and_one_by_the_caller():
    err = OptionError("{weights} sd: {tacs} has no SD", tacs="tacs.tsv")
    assert str(err) == "weights sd: tacs.tsv has no SD"
    assert err.worded({"tacs": "my.tsv"}.get) == "weights sd: my.tsv has no SD"
    assert err.worded(_flags) == "--weights sd: --tacs has no SD"
    assert OptionError("{bounds}: {{K1: (0, 1)}}").worded(_flags) == "--bounds: {K1: (0, 1)}"


def test_check_frames_refuses_fewer_frames_than_parameters():
    import jaxkin
    from jaxkin.fitting.options import check_frames

    frames = jaxkin.FrameSchedule.from_durations([60.0] * 5)  # mid times 0.5 ... 4.5 min
    check_frames(frames, ("2tcmirr", "1tcm"), "t.tsv")  # 4 and 3 parameters: fine
    for models in ("2tcm", ("1tcm", "2tcm")):  # 5 parameters
        with pytest.raises(InputError, match="t.tsv: 5 frame"):
            check_frames(frames, models, "t.tsv")
    check_frames(frames, "patlak", "t.tsv", t_star=2.0)  # 3 frames after t*
    for t_star in (3.0, float("nan")):
        with pytest.raises(OptionError, match="t_star"):
            check_frames(frames, "patlak", "t.tsv", t_star=t_star)


def test_fixed_parameters_become_bounds_of_zero_width():
    options = FitOptions(models=("2tcm", "1tcm"), bounds="paper", fixed={"vB": 0.05, "k4": 0})
    assert options.fixed is None and options.bounds == ("paper", "vB=0.05,0.05", "k4=0.0,0.0")
    assert kinetics.fixed_values("2tcm", options.bounds) == {"k4": 0.0, "vB": 0.05}
    assert kinetics.fixed_values("1tcm", options.bounds) == {"vB": 0.05}  # k4 is not a 1tcm parameter
    assert kinetics.fixed_values("2tcmirr", FitOptions(bounds="vB=0.02,0.02").bounds) == {"vB": 0.02}
