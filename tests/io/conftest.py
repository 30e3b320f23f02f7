"""Fixtures of the file tests: a small random PET written as BIDS, and the canonical maps of real scan forms."""

import pytest

import _real_scans as real
from _pet_files import random_pet_data, sidecar, write_raw_pet


@pytest.fixture(scope="module")
def pet_data():
    """A small random 4D PET image (Bq/mL) of the test frames."""
    return random_pet_data()


@pytest.fixture
def pet_path(tmp_path, pet_data):
    """``pet_data`` written as a BIDS-PET file with its sidecar."""
    return write_raw_pet(tmp_path, pet_data, sidecar())


@pytest.fixture(scope="module")
def canonical():
    """The maps of the canonical form of the real scan forms (for comparison)."""
    return real.canonical_maps()
