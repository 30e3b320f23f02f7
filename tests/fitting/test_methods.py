"""The fitting methods of a chunk: any object with the interface is streamed by fit_volume over every masked voxel
once (chunks padded), CurveFit equals the scipy baseline, a per-voxel delay needs a method that fits it, and the
maps each method gives."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

import jaxkin
from jaxkin import kinetics
from jaxkin.fitting import LM, CurveFit, Graphical, NumpyModel, PlotInput, curve_fit_tacs, fit_volume, output_maps
from jaxkin.kinetics import UNITS, resolve_bounds

from _reference import FRAMES, INPUT


def _volume(shape=(5, 4, 3), seed=0):
    """Noiseless 2TC-irr TACs of random parameters ``[*shape, F]`` (kBq/ml) and the kinetic input."""
    rng = np.random.default_rng(seed)
    m = jaxkin.get_model("2tcmirr")
    params = rng.uniform(m.lower, m.upper, shape + (4,)).astype(np.float32)
    params[..., 3] *= 0.3
    kin = jaxkin.prepare(INPUT, FRAMES)
    return np.asarray(kinetics.two_tissue_irreversible(jnp.asarray(params), kin)), kin


@dataclasses.dataclass(frozen=True)
class _MeanActivity:
    """A method that maps each voxel's mean activity, on the host: the interface and nothing else."""

    model: str = "mean"
    fits_delay = False

    def maps(self, delay=False):
        return {"mean": "kBq/mL"}

    def launch(self, tacs, at):
        return tacs.mean(axis=-1)

    def collect(self, handle, tacs, n, at):
        assert tacs.shape[0] >= n and not tacs[n:].any()  # a padded chunk: zero rows after the first n
        return {"mean": handle}


def test_any_object_with_the_interface_is_streamed_over_every_voxel_once():
    pet, kin = _volume()
    mask = np.zeros(pet.shape[:3], bool)
    mask.reshape(-1)[::3] = True  # 20 voxels
    fit = fit_volume(pet, kin, _MeanActivity(), mask=mask, chunk_size=8, slab=1, progress=False)  # chunks of 256
    np.testing.assert_allclose(fit.maps["mean"][mask], pet[mask].mean(axis=-1), rtol=1e-6)
    assert not fit.maps["mean"][~mask].any() and fit.n_fitted == 20 and list(fit.maps) == ["mean"]


def test_curve_fit_method_equals_the_scipy_baseline():
    pet, kin = _volume(seed=1)
    mask = np.zeros(pet.shape[:3], bool)
    mask[1, 1, :] = True
    numpy_model = NumpyModel(INPUT, FRAMES)
    fit = fit_volume(pet, kin, CurveFit(numpy_model, bounds="paper"), mask=mask, progress=False)
    lower, upper, _ = resolve_bounds("2tcmirr", "paper")
    params, sse, ok = curve_fit_tacs(pet[mask], numpy_model, lower=lower, upper=upper)
    assert set(fit.maps) == set(output_maps("2tcmirr", diagnostics=True))
    np.testing.assert_allclose(fit.maps["K1"][mask], params[:, 0], rtol=1e-5)
    np.testing.assert_allclose(fit.maps["SSE"][mask], sse, rtol=1e-4, atol=1e-9)
    assert np.all(fit.maps["flags"][mask] == np.where(ok, 0, 1)) and np.all(fit.maps["R2"][mask] > 0.99)


def test_a_per_voxel_delay_needs_a_method_that_fits_it():
    pet, _ = _volume()
    delayed = jaxkin.prepare_delayed(INPUT, FRAMES)
    plot = PlotInput.from_input(INPUT, FRAMES)
    for method in (Graphical("patlak", plot), CurveFit(NumpyModel(INPUT, FRAMES))):
        with pytest.raises(ValueError, match="kin: a per-voxel delay"):
            fit_volume(pet, delayed, method, progress=False)
    assert LM.fits_delay and "delay" in LM().maps(delay=True)


def test_graphical_takes_a_graphical_method_only():
    with pytest.raises(ValueError, match="model: '2tcmirr' is not a graphical method"):
        Graphical("2tcmirr", PlotInput.from_input(INPUT, FRAMES))


def test_the_maps_of_each_method():
    plot = PlotInput.from_input(INPUT, FRAMES)
    assert list(LM("1tcm").maps()) == ["K1", "k2", "vB", "VT", "SSE", "R2", "flags", "AICc"]
    with_se = LM(uncertainty=True).maps(delay=True)
    assert [n for n in with_se if n.endswith("SE") and n != "SSE"] == ["K1SE", "k2SE", "k3SE", "vBSE", "KiSE",
                                                                         "delaySE"]
    assert with_se["delaySE"] == UNITS["delay"] and with_se["KiSE"] == UNITS["Ki"]
    assert list(Graphical("logan", plot).maps()) == ["VT", "intercept", "R2"]
    assert list(CurveFit(NumpyModel(INPUT, FRAMES, "2tcm")).maps()) == list(output_maps("2tcm", diagnostics=True))
    # what write_fit_maps writes: without diagnostics, uncertainty adds the errors, R2 and the flags
    assert list(output_maps("2tcmirr")) == ["K1", "k2", "k3", "vB", "Ki", "SSE"]
    assert list(output_maps("patlak", uncertainty=True)) == ["Ki", "intercept", "R2"]
    assert output_maps("2tcmirr", uncertainty=True)["flags"] == "1"
