"""``jaxkin regions`` (jaxkin.cli.regions): regional TACs and map statistics written as tables and read back; bad
input of the region commands as one line, exit status 2, nothing written."""

import json

import numpy as np
import pytest

from _label_forms import FRAMES, IDS, PET_AFFINE, SHAPE, make_scan, save_nifti
from jaxkin.cli import main
from jaxkin.io.blood import write_blood
from jaxkin.io.labels import read_labels
from jaxkin.io.maps import write_map
from jaxkin.io.pet import load_pet
from jaxkin.io.tables import read_tacs, write_tacs
from jaxkin.regions.tacs import regional_tacs


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    return make_scan(tmp_path_factory.mktemp("label_forms"))


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_regions_command_and_tables(scan, tmp_path, capsys):
    out = tmp_path / "sub-01_tacs.tsv"
    maps = tmp_path / "maps"
    maps.mkdir()
    pet = load_pet(scan["pet"])
    ki = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    write_map(maps, "sub-01", "2tcmirr", "Ki", ki, reference=pet, units="mL/cm3/min")
    code, stdout, err = _run(["regions", "--pet", str(scan["pet"]), "--labels", str(scan["folder"]), "--out",
                              str(out), "--maps", str(maps), "--group", "organs=liver,spleen"], capsys)
    assert code == 0, err
    tacs = read_tacs(out)
    reference = regional_tacs(pet, read_labels(scan["dseg"], pet=pet))
    assert tacs.names == ("aorta", "kidney_left", "kidney_right", "liver", "spleen", "kidneys", "organs")
    for name in ("aorta", "liver", "kidneys"):
        np.testing.assert_allclose(tacs.column(name), reference.column(name), rtol=1e-7)
    np.testing.assert_allclose(tacs.frames.start, FRAMES.start, atol=1e-9)
    np.testing.assert_allclose(tacs.frames.duration, FRAMES.duration, atol=1e-9)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["frame_start"]["Units"] == "s" and sidecar["Units"] == "kBq/mL"
    assert sidecar["Regions"]["kidneys"]["Voxels"] == 16
    assert sidecar["Regions"]["kidneys"]["VolumeML"] == pytest.approx(16 * 0.064)
    assert len(sidecar["Regions"]["liver"]["SD"]) == FRAMES.n_frames and sidecar["LabelFormat"] == "mask folder"
    np.testing.assert_allclose(tacs.sd[tacs.names.index("liver")],
                               scan["data"][scan["lab"] == 5].std(axis=0, ddof=1), rtol=1e-5)
    rows = [r.split("\t") for r in out.with_name("sub-01_tacs_maps.tsv").read_text().splitlines()]
    assert rows[0] == ["region", "map", "mean", "sd", "median", "voxels"]
    liver = next(r for r in rows if r[0] == "liver")
    values = ki[scan["lab"] == 5]
    assert liver[1] == "model-2tcmirr_meas-Ki"
    np.testing.assert_allclose([float(v) for v in liver[2:5]], [values.mean(), values.std(ddof=1),
                                                                np.median(values)], rtol=1e-6)


@pytest.mark.parametrize("case", ["mixed grids", "no names", "unknown label", "outside", "bad table", "nan region",
                                  "frames vs blood"])
def test_bad_input_one_line_exit_2_nothing_written(scan, tmp_path, capsys, case):
    out = tmp_path / "out" / "x_tacs.tsv"
    out.parent.mkdir()
    pet = ["--pet", str(scan["pet"])]
    if case == "mixed grids":
        folder = tmp_path / "masks"
        folder.mkdir()
        save_nifti(folder / "liver.nii.gz", (scan["ct"] == 5).astype(np.uint8), scan["ct_affine"])
        save_nifti(folder / "aorta.nii.gz", (scan["lab"] == 52).astype(np.uint8), PET_AFFINE)
        argv, message = ["regions", *pet, "--labels", str(folder), "--out", str(out)], "masks on different grids"
    elif case == "no names":
        argv, message = ["regions", *pet, "--labels", str(scan["bare"]), "--out", str(out)], "no label names"
    elif case == "unknown label":
        argv = ["idif", *pet, "--labels", str(scan["ml"]), "--label", "aorta_descending", "--out",
                str(out.with_name("x_blood.tsv"))]
        message = "no label named 'aorta_descending'; the labels are spleen, kidney_right"
    elif case == "outside":
        far = scan["ct_affine"].copy()
        far[:3, 3] += 500.0
        path = save_nifti(tmp_path / "far.nii.gz", scan["ct"].astype(np.uint8), far, {i: n for n, i in IDS.items()})
        argv, message = ["regions", *pet, "--labels", str(path), "--out", str(out)], "do not overlap the field of view"
    elif case == "bad table":
        argv = ["regions", *pet, "--labels", str(scan["bare"]), "--label-table", str(tmp_path / "none.tsv"),
                "--out", str(out)]
        message = "none.tsv: file not found"
    else:
        pet_img = load_pet(scan["pet"])
        tacs = write_tacs(tmp_path / "t.tsv", regional_tacs(pet_img, read_labels(scan["dseg"], pet=pet_img)))
        blood = write_blood(tmp_path / "b_blood.tsv", whole_blood=scan["aif"], units="kBq/mL")
        if case == "nan region":
            lines = tacs.read_text().splitlines()
            lines[2] = lines[2].rsplit("\t", 1)[0] + "\tn/a"
            tacs.write_text("\n".join(lines) + "\n")
            message = "column 'kidneys', line 3: 'n/a'"
        else:  # seconds declared as minutes: the frames run far past the blood, they are not this scan's timing
            lines = tacs.read_text().splitlines()
            lines[0] = lines[0].replace("frame_start\tframe_end", "start[min]\tend[min]")
            tacs.write_text("\n".join(lines) + "\n")
            tacs.with_suffix(".json").unlink()
            argv_extra = ["--tac-units", "kBq/mL"]
            message = "b_blood.tsv"
        argv = ["fit", "--tacs", str(tacs), "--input-function", str(blood), "--out", str(out.with_name("f.tsv"))]
        argv += argv_extra if case == "frames vs blood" else []
    code, stdout, err = _run(argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert message in err, err
    assert not any(out.parent.iterdir())
