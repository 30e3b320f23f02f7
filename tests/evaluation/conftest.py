"""Fixtures of the evaluation tests: one noiseless, unblurred small-phantom subject (its truth known), simulated once
for every test file here (read only: a test that changes it works on a copy)."""

import pytest


@pytest.fixture(scope="package")
def noiseless_dataset(tmp_path_factory):
    """A BIDS dataset of one small-phantom subject, ``sub-01``, without noise or blur, with its ground truth."""
    from jaxkin.phantom.writer import simulate_dataset

    return simulate_dataset(tmp_path_factory.mktemp("noiseless") / "ds", subjects=1, noise_scale=0.0, fwhm_mm=0.0)
