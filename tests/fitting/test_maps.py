"""One request, one result: write_fit_maps writes the maps of a scan with their sidecars and says what it wrote;
the comparison's preferred model, the Poisson half-life, the sidecar fields of one map."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

import jaxkin
from jaxkin import kinetics
from jaxkin.io.pet import load_pet, write_pet
from jaxkin.io.maps import read_volume
from jaxkin.decay import F18_HALF_LIFE_MIN
from jaxkin.fitting import FitMaps, FitOptions, FitRequest, VolumeFit, write_fit_maps
from jaxkin.fitting.maps import AICC_FORMULA, _map_fields, bounds_sidecar, poisson_half_life

from _reference import FRAMES, INPUT


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A 4x3x2 PET file of noiseless 2TC-irr TACs (kBq/mL) and its input."""
    rng = np.random.default_rng(5)
    m = jaxkin.get_model("2tcmirr")
    params = rng.uniform(m.lower, m.upper, (4, 3, 2, 4)).astype(np.float32)
    tacs = np.asarray(kinetics.two_tissue_irreversible(jnp.asarray(params), jaxkin.prepare(INPUT, FRAMES)))
    path = write_pet(tmp_path_factory.mktemp("pet") / "sub-07_pet.nii.gz", tacs, FRAMES, np.eye(4),
                          units="kBq/mL", sidecar={"TracerRadionuclide": "C11"})
    return load_pet(path), tacs


@pytest.mark.slow
def test_a_request_writes_the_maps_and_says_what_it_wrote(scan, tmp_path):
    pet, tacs = scan
    mask = np.zeros(pet.shape[:3], bool)
    mask[1:3] = True
    request = FitRequest(pet, INPUT, str(tmp_path / "maps"), FitOptions(models=("patlak",), t_star=15.0,
                                                                        uncertainty=True),
                         mask=mask, command_line="fit it", extra={"Sources": ["sub-07_pet.nii.gz"]})
    written = write_fit_maps(request)
    assert isinstance(written, FitMaps) and written.delay is None and written.seconds > 0
    assert list(written.paths) == ["Ki", "intercept", "R2"]  # uncertainty gives a plot its R2
    assert written.result is written.results["patlak"] and written.result.n_fitted == 12
    ki = read_volume(written.paths["Ki"], pet)
    plot = jaxkin.fitting.PlotInput.from_input(INPUT, FRAMES)
    np.testing.assert_allclose(ki[mask], np.asarray(jaxkin.patlak(tacs[mask], plot, 15.0).slope), rtol=1e-5)
    assert not ki[~mask].any()
    sidecar = json.loads(written.paths["Ki"].with_suffix("").with_suffix(".json").read_text())
    assert sidecar["FitMethod"] == "linear regression" and sidecar["TStarMinutes"] == 15.0
    assert sidecar["VoxelsFitted"] == 12 and sidecar["CommandLine"] == "fit it"
    assert sidecar["Sources"] == ["sub-07_pet.nii.gz"] and "InputDelay" not in sidecar and "Bounds" not in sidecar


def test_the_preferred_model_share():
    mask = np.array([True, True, True, False])
    aicc = {"a": np.array([1.0, 5.0, 2.0, 0.0]), "b": np.array([2.0, 4.0, 3.0, -9.0])}
    results = {m: VolumeFit(maps={"AICc": v}, mask=mask, n_fitted=3, n_nonfinite=0, n_not_converged=0)
               for m, v in aicc.items()}
    share = FitMaps(paths={}, results=results, seconds=0.0).preferred_share()
    assert share == pytest.approx({"a": 2 / 3, "b": 1 / 3})


def test_poisson_half_life_comes_from_the_radionuclide(scan):
    pet, _ = scan
    assert poisson_half_life(pet, "none") is None
    assert poisson_half_life(pet, "poisson") == pytest.approx(20.36, rel=1e-3)  # C-11
    no_tracer = type("Pet", (), {"sidecar": {}, "sidecar_path": "x.json"})()
    assert poisson_half_life(no_tracer, "poisson") == F18_HALF_LIFE_MIN


def test_the_sidecar_fields_of_one_map():
    assert bounds_sidecar("1tcm", "paper") == {"Preset": "paper", "K1": [0.01, 2.0], "k2": [0.01, 3.0],
                                               "vB": [0.0, 1.0]}
    units = {"K1": "", "Ki": "", "K1SE": "", "KiSE": "", "SSE": "", "flags": "", "AICc": ""}
    assert _map_fields("2tcmirr", "KiSE", units) == {"Description": "standard error of Ki (delta method)"}
    assert _map_fields("2tcmirr", "K1SE", units) == {"Description": "standard error of K1"}
    assert _map_fields("2tcmirr", "SSE", units) == {}
    assert _map_fields("2tcmirr", "AICc", units) == {"AICcFormula": AICC_FORMULA}
    assert _map_fields("2tcmirr", "flags", units)["Levels"]["1"].startswith("not converged")
