"""Labels in every form (BIDS dseg, TotalSegmentator multilabel with its header extension or the class table, a mask
folder) on a CT grid twice as fine as the PET and shifted by a fraction of a voxel give the regional TACs and the IDIF
of the same labels on the PET's grid; partial-volume fractions; regional TAC tables in and out; bad input."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

import jaxkin
from jaxkin import kinetics
from jaxkin.cli import main
from jaxkin.io.pet import load_pet, write_pet
from jaxkin.io.blood import write_blood
from jaxkin.io.labels import write_labels
from jaxkin.io.maps import write_map
from jaxkin.io.labels import TOTALSEGMENTATOR_TOTAL, read_labels
from jaxkin.io.tables import read_tacs, write_tacs
from jaxkin.regions.tacs import regional_tacs
from jaxkin.errors import InputError

SHAPE = (10, 9, 8)
PET_AFFINE = np.array([[-4.0, 0, 0, 60.0], [0, 4.0, 0, -30.0], [0, 0, 4.0, -100.0], [0, 0, 0, 1]])
FRAMES = jaxkin.FrameSchedule.from_seconds([0, 10, 20, 30, 60, 120, 300, 600, 1200, 2400],
                                           [10, 10, 10, 30, 60, 180, 300, 600, 1200, 1200])
# TotalSegmentator v2 'total' ids
IDS = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "liver": 5, "aorta": 52}
PARAMS = {"spleen": (1.5, 2.6, 0.01, 0.04), "kidney_right": (0.8, 0.7, 0.01, 0.08),
          "kidney_left": (0.75, 0.7, 0.012, 0.08), "liver": (0.65, 0.7, 0.01, 0.01)}


def _pet_labels() -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    lab[4:6, 4:6, 1:7] = IDS["aorta"]           # a vessel along z
    lab[0:3, 0:4, 2:6] = IDS["liver"]
    lab[7:9, 0:2, 2:4] = IDS["kidney_right"]
    lab[7:9, 6:8, 2:4] = IDS["kidney_left"]
    lab[0:2, 6:9, 4:7] = IDS["spleen"]
    return lab


def _ct(lab: np.ndarray, shift) -> tuple[np.ndarray, np.ndarray]:
    """The labels on a grid twice as fine, whose voxels are shifted by ``shift`` PET voxels (|shift| < 0.25 keeps
    every CT voxel inside the PET voxel it came from)."""
    ct = lab.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    to_pet = np.diag([0.5, 0.5, 0.5, 1.0])
    to_pet[:3, 3] = -0.25 + np.asarray(shift)
    return ct, PET_AFFINE @ to_pet


def _save(path, data, affine, names=None):
    image = nib.Nifti1Image(np.asarray(data), affine)
    if names is not None:  # a TotalSegmentator-like XML label table in the header extension
        body = "".join(f'<Label Key="{k}" Red="1" Green="0" Blue="0" Alpha="1"><![CDATA[{v}]]></Label>\n'
                       for k, v in names.items())
        xml = ('<?xml version="1.0" encoding="UTF-8"?> <CaretExtension><VolumeInformation Index="0"><LabelTable>'
               f"\n{body}</LabelTable><VolumeType><![CDATA[Label]]></VolumeType></VolumeInformation>"
               "</CaretExtension>\n  ")
        image.header.extensions.append(nib.nifti1.Nifti1Extension(0, xml.encode()))
    nib.save(image, str(path))
    return path


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    root = tmp_path_factory.mktemp("regions")
    rng = np.random.default_rng(7)
    aif = jaxkin.feng_input(FRAMES.end[-1], delay=0.1)
    kin = jaxkin.prepare(aif, FRAMES)
    lab = _pet_labels()
    data = np.zeros((*SHAPE, FRAMES.n_frames), np.float32)
    body = np.asarray(kinetics.two_tissue_irreversible(np.array([[0.05, 0.35, 0.02, 0.02]]), kin))[0]
    data[:] = body
    for name, p in PARAMS.items():
        tac = np.asarray(kinetics.two_tissue_irreversible(np.array([p]), kin))[0]
        sel = lab == IDS[name]
        data[sel] = tac * (1 + 0.05 * rng.standard_normal((int(sel.sum()), 1)))
    blood = (aif.integral(FRAMES.end) - aif.integral(FRAMES.start)) / FRAMES.duration
    sel = lab == IDS["aorta"]
    data[sel] = blood * (1 + 0.03 * rng.standard_normal((int(sel.sum()), 1)))
    pet_path = write_pet(root / "sub-01_pet.nii.gz", data, FRAMES, PET_AFFINE, units="kBq/mL",
                              sidecar={"InjectionStart": 0, "ImageDecayCorrectionTime": 0,
                                       "TracerRadionuclide": "F18"})
    names = {i: n for n, i in IDS.items()}
    dseg = write_labels(root / "sub-01_dseg.nii.gz", lab, names, PET_AFFINE)
    ct, ct_affine = _ct(lab, (0.15, -0.1, 0.2))
    ml = _save(root / "ct_multilabel.nii.gz", ct.astype(np.uint8), ct_affine, names)
    bare = _save(root / "ct_bare.nii.gz", ct.astype(np.uint8), ct_affine)
    folder = root / "segmentations"
    folder.mkdir()
    for name, i in IDS.items():
        _save(folder / f"{name}.nii.gz", (ct == i).astype(np.uint8), ct_affine)
    _save(folder / "stomach.nii.gz", np.zeros_like(ct, np.uint8), ct_affine)  # TotalSegmentator writes empty ones
    aligned, aligned_affine = _ct(lab, (0.0, 0.0, 0.0))
    aligned_ml = _save(root / "ct_aligned.nii.gz", aligned.astype(np.uint8), aligned_affine, names)
    return {"root": root, "pet": pet_path, "data": data, "lab": lab, "dseg": dseg, "ml": ml, "bare": bare,
            "folder": folder, "aligned": aligned_ml, "ct": ct, "ct_affine": ct_affine, "aif": aif}


def _reference_means(scan, ids):
    sel = np.isin(scan["lab"], ids)
    return scan["data"][sel].astype(np.float64).mean(axis=0), int(sel.sum())


def test_every_label_form_on_the_ct_grid_gives_the_pet_grid_tacs(scan):
    pet = load_pet(scan["pet"])
    on_pet = read_labels(scan["dseg"], pet=pet)
    assert on_pet.source is None and on_pet.kind == "dseg"
    forms = {"multilabel": read_labels(scan["ml"], pet=pet),
             "class table": read_labels(scan["bare"], pet=pet, table="totalsegmentator"),
             "mask folder": read_labels(scan["folder"], pet=pet)}
    assert forms["multilabel"].table == "NIfTI header extension"
    regions = ["aorta", "liver", "spleen", "kidneys", "kidney_left"]
    reference = regional_tacs(pet, on_pet, regions)
    assert reference.names == tuple(regions)
    for name in regions:  # against a plain NumPy mean over the PET-grid labels
        ids = [IDS["kidney_left"], IDS["kidney_right"]] if name == "kidneys" else [IDS[name]]
        mean, n = _reference_means(scan, ids)
        np.testing.assert_allclose(reference.column(name), mean, rtol=1e-6)
        assert reference.voxels[regions.index(name)] == n
    np.testing.assert_allclose(reference.volume_ml, reference.voxels * 64 / 1000)
    for form, labels in forms.items():
        assert labels.source is not None, form  # resampled from the CT grid ...
        np.testing.assert_array_equal(labels.mask("aorta"), scan["lab"] == IDS["aorta"])  # ... to the same voxels
        assert any("nearest neighbour" in n for n in labels.notes)
        tacs = regional_tacs(pet, labels, regions)
        np.testing.assert_allclose(tacs.values, reference.values, rtol=1e-12, err_msg=form)
        np.testing.assert_allclose(tacs.sd, reference.sd, rtol=1e-10, err_msg=form)
        np.testing.assert_array_equal(tacs.voxels, reference.voxels)
    # names and numbers; the default groups; the folder's empty mask is not a region
    folder = forms["mask folder"]
    assert folder.ids("kidneys") == (folder.index("kidney_left"), folder.index("kidney_right"))
    assert "stomach" in folder.names.values() and "stomach" not in folder.region_names()
    assert forms["multilabel"].ids("52") == (52,) and forms["multilabel"].name_of("52") == "aorta"
    assert TOTALSEGMENTATOR_TOTAL[52] == "aorta" and len(TOTALSEGMENTATOR_TOTAL) == 117


def test_partial_volume_fractions(scan):
    pet = load_pet(scan["pet"])
    on_pet = read_labels(scan["dseg"], pet=pet)
    aligned = read_labels(scan["aligned"], pet=pet)
    # An aligned grid twice as fine: every fraction is 0 or 1, so the weighted TACs are the plain ones.
    for name in ("aorta", "liver", "kidneys"):
        np.testing.assert_array_equal(aligned.fractions(name), on_pet.mask(name).astype(np.float32))
    np.testing.assert_allclose(regional_tacs(pet, aligned, ["aorta", "liver"], fractions=True).values,
                               regional_tacs(pet, on_pet, ["aorta", "liver"]).values, rtol=1e-10)
    # Shifted: border voxels are shared, the fractions of a voxel sum to at most 1 and each structure keeps its
    # volume (8 CT voxels per PET voxel).
    shifted = read_labels(scan["ml"], pet=pet)
    total = np.zeros(SHAPE, np.float32)
    for name, i in IDS.items():
        f = shifted.fractions(name)
        assert np.any((f > 0) & (f < 1))
        assert f.sum() == pytest.approx(np.count_nonzero(scan["ct"] == i) / 8, rel=1e-6)
        total += f
    assert total.max() <= 1 + 1e-6
    pv = regional_tacs(pet, shifted, ["liver"], fractions=True)
    assert pv.voxels[0] == pytest.approx(np.count_nonzero(scan["ct"] == IDS["liver"]) / 8, rel=1e-6)


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


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


def test_idif_erosion_segment_and_core(scan):
    from jaxkin.regions.idif import idif_mask

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


def test_pmod_and_kinfitr_tables(scan, tmp_path):
    pet = load_pet(scan["pet"])
    tacs = regional_tacs(pet, read_labels(scan["dseg"], pet=pet), ["liver", "spleen"])
    own = write_tacs(tmp_path / "own.tsv", tacs)
    s, e = FRAMES.start * 60, FRAMES.end * 60
    lines = ["start[seconds]\tend[kBq/cc]\tliver\tspleen"]  # PMOD: the activity unit sits on the end column
    lines += [f"{s[f]:g}\t{e[f]:g}\t{tacs.values[0, f] * 1000:.9g}\t{tacs.values[1, f] * 1000:.9g}"
              for f in range(FRAMES.n_frames)]
    (tmp_path / "pmod.tac").write_text("\n".join(lines).replace("kBq/cc", "Bq/cc") + "\n")
    mid = FRAMES.mid
    csv = ["Times,Duration,Weights,liver,spleen"] + [
        f"{mid[f]:.9g},{FRAMES.duration[f]:.9g},1,{tacs.values[0, f]:.9g},{tacs.values[1, f]:.9g}"
        for f in range(FRAMES.n_frames)]
    (tmp_path / "kinfitr.csv").write_text("\n".join(csv) + "\n")
    read = {"own": read_tacs(own), "pmod": read_tacs(tmp_path / "pmod.tac"),
            "kinfitr": read_tacs(tmp_path / "kinfitr.csv", time_unit="min", units="kBq/mL")}
    for name, t in read.items():
        assert t.names == ("liver", "spleen"), name
        np.testing.assert_allclose(t.values, tacs.values, rtol=1e-7, err_msg=name)
        np.testing.assert_allclose(t.frames.start, FRAMES.start, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(t.frames.duration, FRAMES.duration, atol=1e-7, err_msg=name)
    assert read["own"].sd is not None and read["pmod"].sd is None
    with pytest.raises(InputError, match="do not state their unit"):
        read_tacs(tmp_path / "kinfitr.csv", units="kBq/mL")
    with pytest.raises(InputError, match="activity unit is not stated"):
        read_tacs(tmp_path / "kinfitr.csv", time_unit="min")
    (tmp_path / "mid.tsv").write_text("mid[min]\tliver\n1\t2\n3\t4\n")
    with pytest.raises(InputError, match="only frame mid times"):
        read_tacs(tmp_path / "mid.tsv", units="kBq/mL")
    bad = own.read_text().splitlines()
    cells = bad[3].split("\t")
    cells[2] = "nan"
    bad[3] = "\t".join(cells)
    (tmp_path / "nan.tsv").write_text("\n".join(bad) + "\n")
    (tmp_path / "nan.json").write_text(own.with_suffix(".json").read_text())
    with pytest.raises(InputError, match=r"nan\.tsv: column 'liver', line 4: 'nan'"):
        read_tacs(tmp_path / "nan.tsv")


@pytest.mark.parametrize("case", ["mixed grids", "no names", "unknown label", "outside", "bad table", "nan region",
                                  "frames vs blood"])
def test_bad_input_one_line_exit_2_nothing_written(scan, tmp_path, capsys, case):
    out = tmp_path / "out" / "x_tacs.tsv"
    out.parent.mkdir()
    pet = ["--pet", str(scan["pet"])]
    if case == "mixed grids":
        folder = tmp_path / "masks"
        folder.mkdir()
        _save(folder / "liver.nii.gz", (scan["ct"] == 5).astype(np.uint8), scan["ct_affine"])
        _save(folder / "aorta.nii.gz", (scan["lab"] == 52).astype(np.uint8), PET_AFFINE)
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
        path = _save(tmp_path / "far.nii.gz", scan["ct"].astype(np.uint8), far, {i: n for n, i in IDS.items()})
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
