"""Bounds presets (jaxkin.kinetics.bounds): ``physiological`` (the default) contains the phantom's liver and spleen,
``paper`` does not (and biases their fits), and the bounds specifications (presets, ranges) resolve as documented."""

import numpy as np
import pytest

import jaxkin
from jaxkin.phantom.anatomy import LABELS, ORGAN_PARAMETERS
from jaxkin.phantom.simulate import simulate_subject
from jaxkin.errors import InputError
from jaxkin.kinetics import BOUNDS_PRESETS, DEFAULT_BOUNDS, MODELS, check_bound_names, resolve_bounds


def test_physiological_bounds_contain_every_phantom_organ_with_its_variation():
    """Each organ's mean parameters times 1.76^{+-1} (4 SDs of the per-subject and intra-organ log-normal variation
    combined) lie inside the physiological bounds of the FDG model; not all inside the paper's."""
    lo, hi, _ = resolve_bounds("2tcmirr", "physiological")
    factor = np.exp(4 * np.hypot(0.10, 0.10))
    outside_paper = []
    p_lo, p_hi, _ = resolve_bounds("2tcmirr", "paper")
    for name, params in ORGAN_PARAMETERS.items():
        if name in ("blood_pool", "aorta"):
            continue
        p = np.asarray(params)
        for v in (p / factor, np.minimum(p * factor, [np.inf, np.inf, np.inf, 1.0])):
            assert np.all(v >= lo) and np.all(v <= hi), (name, v)
            if np.any(v < p_lo) or np.any(v > p_hi):
                outside_paper.append(name)
    assert {"liver", "spleen"} <= set(outside_paper)


def test_bounds_specifications():
    assert resolve_bounds("2tcmirr")[:2] == MODELS["2tcmirr"].bounds("physiological")
    assert resolve_bounds("2tcmirr", "paper")[:2] == (MODELS["2tcmirr"].lower, MODELS["2tcmirr"].upper)
    lo, hi, text = resolve_bounds("2tcmirr", "K1=0,3 k3=0.001,0.5")
    assert lo == (0.0, 0.001, 0.001, 0.0) and hi == (3.0, 6.0, 0.5, 1.0) and text == "physiological with K1=0,3 k3=0.001,0.5"
    lo, hi, text = resolve_bounds("2tcm", ["paper", "k4=0,0.1"])
    assert lo[3] == 0.0 and hi[3] == 0.1 and lo[0] == 0.01 and text.startswith("paper")
    assert resolve_bounds("1tcm", {"k3": (0, 1)})[:2] == MODELS["1tcm"].bounds("physiological")  # not its parameter
    for bad in ("loose", "K1=3,0", "K1=0", "K1=a,b", "K1=0,1 K1=0,2", {"K1": 3}):
        with pytest.raises(InputError, match="^bounds: ") as error:
            resolve_bounds("2tcmirr", bad)
        assert "--" not in str(error.value)  # the library names the parameter, not a command-line flag
    with pytest.raises(InputError, match="^bounds: k5 is not a parameter"):
        check_bound_names("k5=0,1", ["2tcmirr", "1tcm"])
    check_bound_names("k4=0,1", ["2tcmirr", "2tcm"])


def test_every_preset_has_bounds_for_every_model():
    assert DEFAULT_BOUNDS in BOUNDS_PRESETS
    for preset in BOUNDS_PRESETS:
        for name, m in MODELS.items():
            lo, hi, text = resolve_bounds(name, preset)
            assert (lo, hi) == m.bounds(preset) and text == preset


@pytest.fixture(scope="module")
def liver_spleen():
    """Noiseless, unblurred phantom voxels of the liver (k3 ~0.003) and spleen (k2 up to ~3.7) of subject 0."""
    s = simulate_subject(0, preset="small", noise_scale=0.0, fwhm_mm=0.0)
    kin = jaxkin.prepare(s.input_function, s.frames)
    picks = {}
    rng = np.random.default_rng(0)
    for organ in ("liver", "spleen"):
        index = next(i for i, n in LABELS.items() if n == organ)
        where = np.flatnonzero(s.labels.reshape(-1) == index)
        where = rng.choice(where, size=min(100, where.size), replace=False)
        picks[organ] = (s.pet.reshape(-1, s.frames.n_frames)[where], s.truth.reshape(-1, 4)[where])
    return kin, picks


@pytest.mark.slow
def test_liver_and_spleen_are_recovered_with_physiological_bounds_not_with_the_papers(liver_spleen):
    kin, picks = liver_spleen
    tacs = np.concatenate([t for t, _ in picks.values()])
    truth = np.concatenate([p for _, p in picks.values()])
    organ = np.repeat(list(picks), [len(t) for t, _ in picks.values()])
    assert truth[organ == "liver", 2].max() < 0.01 and truth[organ == "spleen", 1].max() > 3.0  # outside the paper's
    ki = truth[:, 0] * truth[:, 2] / (truth[:, 1] + truth[:, 2])
    phys = jaxkin.fit_tacs(tacs, kin, chunk_size=256).to_numpy()  # physiological: the default
    paper = jaxkin.fit_tacs(tacs, kin, bounds="paper", chunk_size=256).to_numpy()
    for name in ("liver", "spleen"):
        sel = organ == name
        rel = phys.macro[sel] / ki[sel] - 1
        assert abs(rel.mean()) < 0.002 and np.abs(rel).max() < 0.01, (name, rel.mean(), np.abs(rel).max())
        assert np.abs(phys.params[sel, 0] / truth[sel, 0] - 1).max() < 0.01
        bias = np.mean(paper.macro[sel] / ki[sel] - 1)
        assert abs(bias) > 0.2, (name, bias)  # liver Ki +200%, spleen Ki +30% with the paper's bounds


def test_fixed_parameters_are_ranges_of_zero_width():
    from jaxkin.kinetics import bounds_fields, fixed_values, parse_fixed, with_fixed

    assert parse_fixed("vB=0.02,k4=0") == parse_fixed(["vB=0.02", "k4=0"]) == {"vB": 0.02, "k4": 0.0}
    assert parse_fixed({"vB": "0.05"}) == {"vB": 0.05} and parse_fixed(None) == {}
    spec = with_fixed("paper k3=0.001,1", {"vB": 0.02})
    lo, hi, text = resolve_bounds("2tcmirr", spec)
    assert lo == (0.01, 0.01, 0.001, 0.02) and hi == (2.0, 3.0, 1.0, 0.02)
    assert text == "paper with k3=0.001,1; fixed vB=0.02"
    # a bound of zero width is the same thing
    assert resolve_bounds("2tcmirr", "paper k3=0.001,1 vB=0.02,0.02")[:2] == (lo, hi)
    assert fixed_values("2tcmirr", "vB=0.02,0.02") == {"vB": 0.02} and fixed_values("2tcmirr") == {}
    assert bounds_fields("2tcm", with_fixed(None, "k4=0"))["Fixed"] == {"k4": 0.0}
    assert "Fixed" not in bounds_fields("2tcmirr", None) and with_fixed("paper", None) == "paper"
    for bad in ("vB", "vB=x", "vB=1.5", "k3=-0.1", "k3=nan", "vB=0.1,vB=0.2", "=1"):
        with pytest.raises(InputError, match="^fix: "):
            parse_fixed(bad)
    with pytest.raises(InputError, match="^fix: vB also has a range"):
        with_fixed("vB=0,0.1", "vB=0.02")
