"""One simulated subject (jaxkin.phantom.simulate): noiseless voxels against the kinetic core and an independent
float64 reference, the noise's designed mean and variance, seeding, the PSF."""

import numpy as np
import pytest

import jaxkin
from jaxkin import kinetics, phantom
from jaxkin.phantom.anatomy import label_index
from jaxkin.phantom import simulate as phantom_simulate

SEED = 7


@pytest.fixture(scope="module")
def clean():
    """Noiseless, unblurred subject 0 of the small preset."""
    return phantom.simulate_subject(0, seed=SEED, preset="small", noise_scale=0.0, fwhm_mm=0.0)


@pytest.fixture(scope="module")
def noisy():
    """The same subject with noise (no blur): the same anatomy and ground truth, another random stream."""
    return phantom.simulate_subject(0, seed=SEED, preset="small", noise_scale=1.0, fwhm_mm=0.0)


def _index(name):
    return label_index(name)


def _reference_tacs(params, inp, frames):
    """Frame-averaged irreversible 2TC TACs of ``params [N, 4]`` in NumPy float64, independent of jaxkin.kinetics.

    The input is piecewise linear on its knots (frame boundaries added), so I(t) = (C_p * e^{-lam t})(t) follows
    exactly from I(t+h) = E I(t) + c0 (1-E)/lam + (c1-c0)/h (x - (1-E))/lam^2 (x = lam h, E = e^{-x}), and its frame
    mean from dI/dt = C_p - lam I. The running integral P of C_p is piecewise quadratic.
    """
    t = np.union1d(inp.times, np.concatenate([frames.start, frames.end]))
    c = inp(t)
    k1, k2, k3, vb = params.T
    lam = np.maximum(k2 + k3, 1e-9)
    i_t = np.zeros((len(t), len(params)))
    for j in range(len(t) - 1):
        h = t[j + 1] - t[j]
        x = lam * h
        one_minus_e = -np.expm1(-x)
        i_t[j + 1] = np.exp(-x) * i_t[j] + c[j] * one_minus_e / lam + (c[j + 1] - c[j]) / h * (x - one_minus_e) / lam**2
    p_t = inp.integral(t)
    h = np.diff(t)
    p_area = np.concatenate([[0.0], np.cumsum(p_t[:-1] * h + c[:-1] * h**2 / 2 + (c[1:] - c[:-1]) * h**2 / 6)])
    a, b = np.searchsorted(t, frames.start), np.searchsorted(t, frames.end)
    d = frames.duration
    mean_p = (p_area[b] - p_area[a]) / d  # frame means of int C_p
    mean_c = (p_t[b] - p_t[a]) / d  # frame means of C_p
    mean_i = ((p_t[b] - p_t[a])[None, :] - (i_t[b] - i_t[a]).T) / (lam[:, None] * d)
    tissue = (k1 / lam)[:, None] * (k3[:, None] * mean_p + k2[:, None] * mean_i)
    return (1 - vb)[:, None] * tissue + vb[:, None] * mean_c


def test_noiseless_voxels_match_the_kinetic_model(clean):
    """Noiseless, unblurred phantom voxels against the kinetic core and an independent float64 reference."""
    rng = np.random.default_rng(0)
    picks = []
    for i in phantom.LABELS:
        vox = np.argwhere(clean.labels == i)
        picks.append(vox[rng.choice(len(vox), size=min(5, len(vox)), replace=False)])
    picks = np.concatenate(picks)
    params = clean.truth[tuple(picks.T)].astype(np.float64)
    measured = clean.pet[tuple(picks.T)]
    kin = jaxkin.prepare(clean.input_function, clean.frames)
    core = np.asarray(kinetics.two_tissue_irreversible(params.astype(np.float32), kin))
    np.testing.assert_allclose(measured, core, rtol=1e-6, atol=1e-6)
    reference = _reference_tacs(params, clean.input_function, clean.frames)
    np.testing.assert_allclose(measured, reference, rtol=1e-4, atol=1e-5 * reference.max())
    # Blood pool and aorta: vB = 1, so their TAC is the input function's frame means (closed form).
    f = clean.frames
    blood_means = (clean.input_function.integral(f.end) - clean.input_function.integral(f.start)) / f.duration
    blood = clean.pet[clean.labels == _index("aorta")]
    np.testing.assert_allclose(blood, np.broadcast_to(blood_means, blood.shape), rtol=1e-5, atol=1e-5)
    assert np.all(clean.pet[clean.labels == 0] == 0)


def test_noise_has_the_designed_mean_and_variance(clean, noisy):
    np.testing.assert_array_equal(noisy.truth, clean.truth)  # noise does not touch the ground truth
    np.testing.assert_array_equal(noisy.labels, clean.labels)
    sd = phantom.noise_sd(clean.pet, clean.frames, 1.0)
    # The formula itself, by hand for one frame: s * C * exp(ln2 t_mid / 109.77) / duration.
    f = 50
    c = clean.pet[clean.labels == _index("liver")][:, f]
    by_hand = np.sqrt(phantom.NOISE_S * c * 2 ** (clean.frames.mid[f] / 109.77) / clean.frames.duration[f])
    np.testing.assert_allclose(sd[clean.labels == _index("liver")][:, f], by_hand, rtol=1e-5)
    inside = clean.pet > 0
    z = (noisy.pet - clean.pet)[inside] / sd[inside]
    frame_of = np.broadcast_to(np.arange(62), clean.pet.shape)[inside]
    n = np.bincount(frame_of)
    mean = np.bincount(frame_of, z) / n
    var = np.bincount(frame_of, z * z) / n - mean**2
    assert np.all(np.abs(mean) < 5 / np.sqrt(n)), mean  # per frame, ~10^4 voxels each
    assert np.all(np.abs(var - 1) < 6 * np.sqrt(2 / n)), var
    assert abs(z.mean()) < 5 / np.sqrt(z.size) and abs(z.var() - 1) < 0.01
    assert np.all(noisy.pet[~inside] == 0)  # no activity, no noise
    # Late liver frames: a few per cent noise at the default scale.
    rel = sd[clean.labels == _index("liver")][:, -1] / c.mean()
    assert 0.02 < rel.mean() < 0.08


def test_noise_is_seeded_per_subject():
    a = phantom.simulate_subject(1, seed=3, preset="small", fwhm_mm=0.0)
    b = phantom.simulate_subject(1, seed=3, preset="small", fwhm_mm=0.0)
    c = phantom.simulate_subject(2, seed=3, preset="small", fwhm_mm=0.0)
    np.testing.assert_array_equal(a.pet, b.pet)
    assert not np.array_equal(a.labels, c.labels) and a.input_delay != c.input_delay


def test_psf_width_and_conservation():
    vol = np.zeros((41, 41, 41, 1), np.float32)
    vol[20, 20, 20] = 1.0
    out = phantom_simulate._blur(vol, 10.0, (2.0, 2.5, 4.0))[..., 0]
    assert out.sum() == pytest.approx(1.0, rel=1e-5)
    grid = np.indices(out.shape) - 20
    for axis, v in enumerate((2.0, 2.5, 4.0)):
        sigma_mm = np.sqrt((out * grid[axis] ** 2).sum()) * v
        assert sigma_mm == pytest.approx(10.0 / 2.3548, rel=0.03)
    assert phantom_simulate._blur(vol, 0.0, (2.0, 2.5, 4.0)) is vol
