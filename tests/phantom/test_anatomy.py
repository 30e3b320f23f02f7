"""The phantom's anatomy (jaxkin.phantom.anatomy): every organ present and in its place, the ground-truth parameters
against the organ table with the designed variation, the train/val/test split."""

import numpy as np
import pytest

from jaxkin import InputError, phantom
from jaxkin.phantom.anatomy import label_index

SEED = 7


@pytest.fixture(scope="module")
def clean():
    """Noiseless, unblurred subject 0 of the small preset."""
    return phantom.simulate_subject(0, seed=SEED, preset="small", noise_scale=0.0, fwhm_mm=0.0)


def _index(name):
    return label_index(name)


def test_all_organs_present_and_placed(clean):
    counts = {name: int(np.count_nonzero(clean.labels == i)) for i, name in phantom.LABELS.items()}
    assert all(c > 0 for c in counts.values()), counts
    assert clean.pet.shape == (32, 32, 24, 62) and clean.truth.shape == (32, 32, 24, 4)

    def centre(name):  # world coordinates (mm) of an organ's centre of mass
        ijk = np.argwhere(clean.labels == _index(name)).mean(axis=0)
        return clean.affine[:3, :3] @ ijk + clean.affine[:3, 3]

    assert centre("liver")[0] > 0 > centre("spleen")[0]  # RAS+: liver on the patient's right
    assert centre("lungs")[2] > centre("liver")[2] > centre("kidneys")[2] > centre("bladder")[2]
    assert centre("myocardium")[1] > centre("aorta")[1]  # heart anterior of the descending aorta


def test_ground_truth_matches_the_organ_table(clean):
    for name, table in phantom.ORGAN_PARAMETERS.items():
        mask = clean.labels == _index(name)
        subject = clean.organ_params[name]
        organ_mean = clean.truth[mask].mean(axis=0)
        if name in phantom.BLOOD_LABELS:
            np.testing.assert_array_equal(clean.truth[mask], np.broadcast_to([0, 0, 0, 1], (mask.sum(), 4)))
            continue
        # The subject's organ values vary around the table with the stated log-SD; the organ means of the map
        # around the subject's values with the heterogeneity's log-SD (a smooth field: few independent samples).
        nz = np.asarray(table) > 0
        assert np.all(subject[~nz] == 0) and np.all(organ_mean[~nz] == 0)
        assert np.all(np.abs(np.log(subject[nz] / np.asarray(table)[nz])) < 4 * phantom.SUBJECT_SD), (name, subject)
        assert np.all(np.abs(np.log(organ_mean[nz] / subject[nz])) < 3 * phantom.HETEROGENEITY_SD), (name, organ_mean)
    # Voxel-level spread inside large organs is the designed heterogeneity.
    for name in ("body", "lungs"):
        mask = clean.labels == _index(name)
        spread = np.log(clean.truth[mask][:, :3] / clean.organ_params[name][:3]).std(axis=0)
        assert np.all(np.abs(spread / phantom.HETEROGENEITY_SD - 1) < 0.3), (name, spread)
    assert clean.truth[..., 3].max() <= 1.0 and clean.truth.min() >= 0.0


def test_split_counts():
    assert phantom.split_counts(23) == (10, 4, 9)
    assert phantom.split_counts(3) == (1, 1, 1)
    assert phantom.split_counts(1) == (1, 0, 0)
    assert all(sum(phantom.split_counts(n)) == n for n in range(1, 40))


def test_unknown_preset_names_the_parameter():
    with pytest.raises(InputError, match="^preset: unknown preset 'huge'; choose one of small, paper$"):
        phantom.get_preset("huge")
