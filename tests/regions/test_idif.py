"""The image-derived input (jaxkin.regions.idif): its voxels (a label, an axial segment, eroded, the hottest core), its
curve from frame means, NaN/Inf voxels left out, and the phantom's aorta giving the true input's frame means."""

import numpy as np
import pytest

from _label_forms import IDS, SHAPE, make_scan
from _pet_files import FRAMES, NAMES, random_pet_data, sidecar, small_labels, write_raw_pet
from jaxkin import InputError, phantom
from jaxkin.io.blood import load_blood, write_blood
from jaxkin.io.labels import Labels, read_labels
from jaxkin.io.pet import load_pet
from jaxkin.regions.idif import idif_mask, image_derived_input


@pytest.fixture(scope="module")
def pet_data():
    return random_pet_data()


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    return make_scan(tmp_path_factory.mktemp("label_forms"))


@pytest.fixture(scope="module")
def clean():
    """Noiseless, unblurred subject 0 of the small phantom."""
    return phantom.simulate_subject(0, seed=7, preset="small", noise_scale=0.0, fwhm_mm=0.0)


@pytest.fixture(scope="module")
def written(clean, tmp_path_factory):
    """Its files (``pet``, ``blood``, ``labels``, ...) in a dataset folder."""
    return phantom.write_subject(tmp_path_factory.mktemp("phantom"), clean)


def test_idif_erosion_segment_and_core(scan):
    pet = load_pet(scan["pet"])
    aorta = scan["lab"] == IDS["aorta"]
    mask, how = idif_mask(pet, aorta, segment=(2, 5))
    assert mask.sum() == 4 * 3 and not mask[:, :, :2].any() and how == ["axial slices 2 to 4 only"]
    core, how = idif_mask(pet, aorta, core=1)
    assert core.sum() == 6 and np.all(core.sum(axis=(0, 1))[1:7] == 1)
    peak = int(np.argmax(scan["data"][aorta].mean(axis=0)))
    for z in range(1, 7):  # the hottest aorta voxel of each slice at the bolus peak
        values = np.where(aorta[:, :, z], scan["data"][:, :, z, peak], -np.inf)
        assert core[:, :, z].reshape(-1)[np.argmax(values)]
    thick = np.zeros(SHAPE, bool)
    thick[2:7, 2:7, 1:7] = True
    eroded, _ = idif_mask(pet, thick, erode=1)
    assert eroded.sum() == 3 * 3 * 4
    with pytest.raises(InputError, match="nothing is left"):
        idif_mask(pet, aorta, erode=1)


def test_bad_selections_name_the_parameter(scan):
    pet = load_pet(scan["pet"])
    aorta = scan["lab"] == IDS["aorta"]
    with pytest.raises(InputError, match=r"^segment 2:99: the PET has axial slices 0 to 8$"):
        idif_mask(pet, aorta, segment=(2, 99))
    with pytest.raises(InputError, match=r"^segment 7:8: the label has no voxel in these slices$"):
        idif_mask(pet, aorta, segment=(7, 8))
    with pytest.raises(InputError, match=r"^erode 1: nothing is left of the label \(24 voxels\); erode less$"):
        idif_mask(pet, aorta, erode=1)
    with pytest.raises(InputError, match="^erode must be 0 or more$"):
        idif_mask(pet, aorta, erode=-1)
    with pytest.raises(InputError, match="^core must be a positive number of voxels per slice$"):
        idif_mask(pet, aorta, core=-2)
    with pytest.raises(InputError, match="^core must be a positive number"):  # not "every voxel" in silence
        idif_mask(pet, aorta, core=0)


def test_idif_leaves_out_nonfinite_voxels(tmp_path, pet_data):
    data = pet_data.copy()
    data[4, 3, 1, 2] = np.nan  # an aorta voxel
    path = write_raw_pet(tmp_path, data, sidecar())
    pet = load_pet(path)
    labels = Labels(small_labels(), NAMES)
    idif = image_derived_input(pet, labels, "aorta")
    # The aorta holds voxels (4,3,1) [NaN, excluded] and (4,3,2): the IDIF's frame means are that voxel's TAC.
    means = (idif.integral(FRAMES.end) - idif.integral(FRAMES.start)) / FRAMES.duration
    np.testing.assert_allclose(means, data[4, 3, 2] / 1000.0, rtol=1e-6)
    assert idif.times[0] == 0.0 and idif.values[0] == 0.0 and idif.end == pytest.approx(FRAMES.end[-1])
    # Written and read back as the TSV of the input function.
    tsv = write_blood(tmp_path / "sub-01_desc-IDIF_blood.tsv", whole_blood=idif, units=pet.units)
    np.testing.assert_allclose(load_blood(tsv, pet=pet).input.values, idif.values, rtol=1e-12)


def test_image_derived_input_from_the_aorta(written, clean):
    pet = load_pet(written["pet"])
    idif = image_derived_input(pet, read_labels(written["labels"], pet=pet, default_groups=False, resample=False),
                               "aorta")
    f = pet.frames
    means = (clean.input_function.integral(f.end) - clean.input_function.integral(f.start)) / f.duration
    # Read as frame means: every frame's mean, hence the integral to every frame end, is the true input's.
    np.testing.assert_allclose((idif.integral(f.end) - idif.integral(f.start)) / f.duration, means, rtol=1e-5)
    np.testing.assert_allclose(idif.integral(f.end), clean.input_function.integral(f.end), rtol=1e-5)
