"""The automatic mask of ``jaxkin fit``: the body, not the bright organs (Otsu on log integrals, a fraction of the
body's median, holes filled per axial slice, small components dropped), on toy volumes and on the phantom."""

import numpy as np
import pytest
from scipy import ndimage

from jaxkin import phantom
from jaxkin.fitting import body_mask
from jaxkin.fitting.mask import MIN_COMPONENT_FRACTION, _otsu_log, body_mask_from_integrals


def _otsu_brute_force(values):
    """Otsu's split of ``log(values)`` by trying every split of the sorted values (no histogram)."""
    x = np.sort(np.log(values))
    n = x.size
    k = np.arange(1, n)
    c = np.cumsum(x)
    mean0, mean1 = c[:-1] / k, (c[-1] - c[:-1]) / (n - k)
    best = int(np.argmax(k * (n - k) * (mean0 - mean1) ** 2))
    return np.exp(0.5 * (x[best] + x[best + 1])), (x[-1] - x[0]) / 256


@pytest.mark.parametrize("seed,fractions", [(0, (0.6, 0.4)), (1, (0.85, 0.15)), (2, (0.3, 0.7))])
def test_otsu_on_logs_matches_brute_force(seed, fractions):
    rng = np.random.default_rng(seed)
    n = 20000
    a = int(n * fractions[0])
    logs = np.concatenate([rng.normal(-4.0, 1.2, a), rng.normal(1.0, 0.6, n - a)])  # air-like and body-like modes
    values = np.exp(logs)
    reference, bin_width = _otsu_brute_force(values)
    assert abs(np.log(_otsu_log(values)) - np.log(reference)) < 2 * bin_width
    assert -3.0 < np.log(reference) < 0.5  # between the modes
    assert _otsu_log(np.full(10, 3.0)) == 3.0  # one class: everything is "body"


def test_holes_filled_per_axial_slice_components_and_nan():
    """A hollow tube through every slice (its cold inside open to the z faces, so a 3D fill would not close it),
    a separate 'arm', an isolated noise speck in the air, a NaN voxel inside the body."""
    shape = (30, 30, 6)
    auc = np.zeros(shape)
    x, y = np.meshgrid(np.arange(30), np.arange(30), indexing="ij")
    r = np.hypot(x - 12, y - 14)
    auc[(r <= 9)] = 100.0  # torso
    auc[(r <= 5)] = 1.0  # cold "lungs": 1% of the body, below the threshold
    auc[26:29, 10:18, :] = 80.0  # an arm, a separate component (3 x 8 x 6 = 144 voxels)
    auc[27, 2, 3] = 300.0  # a hot noise speck in the air
    finite = np.ones(shape, bool)
    finite[12, 14, 2] = False  # a NaN voxel inside the lungs
    auc[~finite] = 0.0
    mask = body_mask_from_integrals(auc, finite)
    torso = np.broadcast_to((r <= 9)[:, :, None], shape)
    assert np.all(mask[torso & finite]) and not mask[12, 14, 2]
    assert np.all(mask[26:29, 10:18, :])
    assert not mask[27, 2, 3]
    assert mask.sum() == np.count_nonzero(torso) - 1 + 144
    # the per-slice fill is what keeps the cold inside: a 3D fill leaves the tube open at the volume's ends
    assert not ndimage.binary_fill_holes(auc >= 5.0)[12, 14, 0]
    # a component smaller than MIN_COMPONENT_FRACTION of the largest is dropped, a larger one kept
    big = np.zeros((100, 40, 40))
    big[2:38, 2:38, 2:38] = 50.0  # 46,656 voxels
    n_small = int(np.ceil(MIN_COMPONENT_FRACTION * 46656))  # 47
    big[40:40 + n_small - 1, 0, 0] = 50.0  # a line one voxel too short
    big[40:40 + n_small, 39, 39] = 50.0  # just long enough
    kept = body_mask_from_integrals(big, np.ones(big.shape, bool))
    assert not kept[:, 0, 0].any() and kept[40:40 + n_small, 39, 39].all() and kept[2:38, 2:38, 2:38].all()
    assert not body_mask_from_integrals(np.zeros(shape), finite).any()


# ------------------------------------------------------------------------------------------ the phantom

SEED = 7


@pytest.fixture(scope="module")
def subject():
    """Small-preset subject 0 with the preset's PSF and noise: a bright bladder, a hot myocardium."""
    return phantom.simulate_subject(0, seed=SEED, preset="small", noise_scale=1.0)


def _index(name):
    return next(i for i, n in phantom.LABELS.items() if n == name)


def _late(s, name):
    """Mean activity (kBq/ml) of an organ over the last three frames (50-65 min)."""
    return float(s.pet[s.labels == _index(name)][:, -3:].mean())


def test_bladder_is_as_bright_as_in_patients_and_the_old_threshold_dropped_lung(subject):
    s = subject
    for tissue in ("body", "lungs"):  # urine reads 20-50x muscle, fat and lung late in an FDG scan
        assert 20.0 < _late(s, "bladder") / _late(s, tissue) < 50.0, tissue
    assert 8.0 < _late(s, "myocardium") / _late(s, "body") < 20.0  # the brain-like hot organ
    # The mask jaxkin used before (time integral >= 5% of the 99th percentile of the positive integrals) sits in
    # the bladder's range and drops most of the living tissue: the failure mode the body mask fixes.
    auc = s.pet @ s.frames.duration
    old = auc >= 0.05 * np.quantile(auc[auc > 0], 0.99)
    assert old[s.labels == _index("lungs")].mean() < 0.5 and old[s.labels == _index("body")].mean() < 0.5
    mask, finite = body_mask(s.pet, s.frames.duration)
    assert finite.all() and mask[s.labels > 0].all()


def test_body_mask_keeps_every_tissue_and_drops_the_air(subject):
    """The phantom plus an air signal like a reconstruction's (positive bias 1% and per-frame noise 5% of the body's
    activity) and 20 hot specks (50% of the body) two voxels or more away from the body."""
    s = subject
    air = s.labels == 0
    rng = np.random.default_rng(1)
    body_tac = s.pet[s.labels == _index("body")].mean(axis=0)  # [F] kBq/ml
    pet = s.pet.copy()
    pet[air] += (rng.normal(0.01, 0.05, (int(air.sum()), body_tac.size)) * body_tac).astype(np.float32)
    far = np.argwhere(air & ~ndimage.binary_dilation(~air, iterations=2))
    specks = far[rng.choice(len(far), 20, replace=False)]
    pet[tuple(specks.T)] += 0.5 * body_tac
    mask, _ = body_mask(pet, s.frames.duration)
    for index, name in phantom.LABELS.items():
        assert mask[s.labels == index].mean() >= 0.999, name
    assert not mask[tuple(specks.T)].any()
    assert 1.0 - mask[air].mean() >= 0.99  # measured: all 13,224 air voxels dropped
    # Cold lungs (3% of their activity, as if full of air): below the threshold, kept because the chest wall
    # encloses them in every axial slice.
    lungs = s.labels == _index("lungs")
    cold = s.pet.copy()
    cold[lungs] *= 0.03
    auc = cold @ s.frames.duration
    assert np.median(auc[lungs]) < 0.05 * np.median(auc[s.labels > 0])
    mask, _ = body_mask(cold, s.frames.duration)
    assert mask[lungs].all() and mask[s.labels > 0].all()


def test_check_signal_refuses_what_no_fit_could_mean():
    from jaxkin.errors import InputError
    from jaxkin.fitting.mask import check_signal

    duration = np.array([1.0, 2.0, 4.0])
    body = np.zeros((8, 8, 3, 3), np.float32)
    body[2:6, 2:6] = 10.0
    check_signal(body, duration)  # a body: fine
    flipped = -body
    flipped[0, 0, 0] = 1.0  # a positive speck of noise
    for data, mask in ((np.zeros_like(body), None), (np.full_like(body, np.nan), None), (flipped, None),
                       (body, np.zeros(body.shape[:3], bool))):
        with pytest.raises(InputError, match="scan.nii.gz: "):
            check_signal(data, duration, mask, source="scan.nii.gz")


def test_time_integrals_equal_a_plain_sum_in_blocks_and_frame_orders(monkeypatch):
    """Sums over the frames of C ``[X, Y, Z]``·Δt in blocks smaller than a frame, from C- and Fortran-ordered frames,
    equal NumPy's sum in frame order; a voxel with NaN or Inf in any frame is not finite and sums to 0."""
    from jaxkin.fitting import mask as mask_module

    monkeypatch.setattr(mask_module, "BLOCK", 7)
    rng = np.random.default_rng(5)
    data = rng.uniform(0, 5, (4, 3, 5, 6)).astype(np.float32)
    data[1, 2, 3, 4] = np.nan
    data[0, 0, 1, 0] = -np.inf
    dur = np.array([0.5, 0.5, 1, 2, 5, 10], np.float32)
    expected = np.zeros(data.shape[:3], np.float32)
    for f in range(data.shape[3]):
        expected += data[..., f] * dur[f]
    bad = ~np.all(np.isfinite(data), axis=-1)
    expected[bad] = 0.0
    for volume in (data, np.asfortranarray(data)):
        auc, finite = mask_module.time_integrals(volume, dur, slice(1, 4))
        np.testing.assert_array_equal(finite, ~bad[:, :, 1:4])
        np.testing.assert_array_equal(auc, expected[:, :, 1:4])
