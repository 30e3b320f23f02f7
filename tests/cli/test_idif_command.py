"""``jaxkin idif`` (jaxkin.cli.idif): the same curve from every label form, written as a BIDS blood recording and
read back; bad input as one line naming the file or the flag, exit status 2, nothing written."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from _label_forms import IDS, make_scan
from jaxkin import cli, phantom
from jaxkin.io.blood import load_blood
from jaxkin.io.labels import read_labels
from jaxkin.io.pet import load_pet
from jaxkin.regions.idif import image_derived_input


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    return make_scan(tmp_path_factory.mktemp("label_forms"))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The files (``pet``, ``blood``, ``labels``, ...) of the noiseless, unblurred subject 0 of the small phantom."""
    clean = phantom.simulate_subject(0, seed=7, preset="small", noise_scale=0.0, fwhm_mm=0.0)
    return phantom.write_subject(tmp_path_factory.mktemp("phantom"), clean)


def _run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_idif_from_every_label_form_is_the_same(scan, tmp_path, capsys):
    curves = {}
    for form in ("dseg", "ml", "folder"):
        out = tmp_path / f"{form}_recording-IDIF_blood.tsv"
        code, stdout, err = _run(["idif", "--pet", str(scan["pet"]), "--labels", str(scan[form]), "--label",
                                  "aorta", "--out", str(out)], capsys)
        assert code == 0, err
        header, *rows = out.read_text().splitlines()
        curves[form] = np.array([[float(c) for c in r.split("\t")] for r in rows])
        sidecar = json.loads(out.with_suffix(".json").read_text())
        assert sidecar["WholeBloodAvail"] is True and sidecar["PlasmaAvail"] is False
        assert sidecar["VoxelsUsed"] == int((scan["lab"] == IDS["aorta"]).sum())
    np.testing.assert_allclose(curves["ml"], curves["dseg"], rtol=1e-7)
    np.testing.assert_allclose(curves["folder"], curves["dseg"], rtol=1e-7)
    assert "resampled to the PET's grid by nearest neighbour" in err


def test_idif_command(written, tmp_path, capsys):
    files = SimpleNamespace(**written)
    out = tmp_path / "sub-01_recording-IDIF_blood.tsv"
    assert cli.main(["idif", "--pet", str(files.pet), "--labels", str(files.labels), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    pet = load_pet(files.pet)
    expected = image_derived_input(pet, read_labels(files.labels, pet=pet, default_groups=False, resample=False), "aorta")
    blood = load_blood(out, pet=pet)  # the sidecar marks the values as frame means: read as such, said once
    np.testing.assert_allclose(blood.input.values, expected.values, rtol=1e-9)
    assert json.loads(out.with_suffix(".json").read_text())["ValuesAreFrameMeans"] is True
    assert any("read as frame means (its sidecar's ValuesAreFrameMeans)" in n for n in blood.notes)
    # A broken sidecar: exit 2, one line naming the file and the field, no output.
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad_pet = bad_dir / "sub-01_pet.nii.gz"
    bad_pet.write_bytes(files.pet.read_bytes())
    meta = json.loads(files.pet.with_name("sub-01_pet.json").read_text())
    del meta["FrameDuration"]
    (bad_dir / "sub-01_pet.json").write_text(json.dumps(meta))
    out2 = tmp_path / "x_blood.tsv"
    assert cli.main(["idif", "--pet", str(bad_pet), "--labels", str(files.labels), "--out", str(out2)]) == 2
    err = capsys.readouterr().err
    assert err == f"jaxkin idif: error: {bad_dir / 'sub-01_pet.json'}: missing required field 'FrameDuration'\n"
    assert not out2.exists()
    assert cli.main(["idif", "--pet", str(files.pet), "--labels", str(files.labels), "--label", "heart",
                     "--out", str(out2)]) == 2
    assert "no label named 'heart'" in capsys.readouterr().err and not out2.exists()


@pytest.mark.slow
@pytest.mark.parametrize("options,message", [
    (["--segment", "2:99"], "--segment 2:99: the PET has axial slices 0 to 8"),
    (["--segment", "7:8"], "--segment 7:8: the label has no voxel in these slices"),
    (["--segment", "7"], "--segment '7': expected A:B, axial slice numbers"),
    (["--erode", "1"], "--erode 1: nothing is left of the label (24 voxels); erode less"),
    (["--erode", "-1"], "--erode must be 0 or more"),
    (["--core", "-2"], "--core must be a positive number of voxels per slice"),
])
def test_bad_selection_names_the_flag(scan, tmp_path, capsys, options, message):
    out = tmp_path / "x_blood.tsv"
    code, _, err = _run(["idif", "--pet", str(scan["pet"]), "--labels", str(scan["dseg"]), "--out", str(out),
                         *options], capsys)
    assert code == 2 and err == f"jaxkin idif: error: {message}\n" and not out.exists()
