"""`jaxkin evaluate` on a subject with two sessions (a noiseless phantom subject copied into ses-a and ses-b, the
second with its PET and input function doubled): each scan is evaluated with its own input function and reported
under its own name; maps are found in a derivative dataset's sub-XX/ses-YY/pet/."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from jaxkin import evaluation as ev
from jaxkin.io import layout


def _scaled_copy(src: Path, dst: Path, factor: float) -> None:
    """Copy a PET (``factor`` x its values) or a blood TSV (``factor`` x every column but time)."""
    if src.name.endswith(".nii.gz"):
        import nibabel as nib

        image = nib.load(str(src))
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj) * np.float32(factor), image.affine, image.header), str(dst))
        return
    header, *rows = src.read_text().splitlines()
    out = [header] + ["\t".join([r.split("\t")[0]] + [repr(float(v) * factor) for v in r.split("\t")[1:]])
                      for r in rows]
    dst.write_text("\n".join(out) + "\n")


@pytest.fixture(scope="module")
def two_sessions(tmp_path_factory, noiseless_dataset):
    root, flat = tmp_path_factory.mktemp("sessions"), noiseless_dataset
    (scan,) = layout.find_pet_scans(flat)
    ds = root / "ds"
    ds.mkdir()
    shutil.copy(flat / "participants.tsv", ds / "participants.tsv")
    shutil.copy(flat / "dataset_description.json", ds / "dataset_description.json")
    anat = ds / "derivatives" / "groundtruth" / "sub-01" / "anat"  # one label map for both sessions
    anat.mkdir(parents=True)
    for path in (scan.labels, scan.labels.with_name(scan.labels.name.replace(".nii.gz", ".tsv"))):
        shutil.copy(path, anat / path.name)
    truth_dir = flat / "derivatives" / "groundtruth" / "sub-01" / "pet"
    for ses, factor in (("ses-a", 1.0), ("ses-b", 2.0)):
        pet_dir = ds / "sub-01" / ses / "pet"
        pet_dir.mkdir(parents=True)
        sidecars = [p.with_suffix(".json") for p in scan.blood if p.with_suffix(".json").is_file()]
        for path in [scan.pet, scan.pet.with_name("sub-01_pet.json"), *scan.blood, *sidecars]:
            target = pet_dir / path.name.replace("sub-01_", f"sub-01_{ses}_")
            if path.name.endswith(("_pet.nii.gz", "_blood.tsv")):
                _scaled_copy(path, target, factor)
            else:
                shutil.copy(path, target)
        # the truth (the same parameters: doubling the input doubles the TACs) as the session's ground truth and as
        # a "perfect" method's maps, laid out as a derivative dataset
        for folder in (ds / "derivatives" / "groundtruth" / "sub-01" / ses / "pet",
                       root / "perfect" / "sub-01" / ses / "pet"):
            folder.mkdir(parents=True)
            for path in truth_dir.iterdir():
                shutil.copy(path, folder / path.name.replace("sub-01_", f"sub-01_{ses}_"))
    return root, ds


def _table(path):
    lines = path.read_text().splitlines()
    keys = lines[0].split("\t")
    return [dict(zip(keys, line.split("\t"))) for line in lines[1:]]


def test_each_session_is_evaluated_with_its_own_input(two_sessions):
    root, ds = two_sessions
    out = ev.evaluate(ds, [f"perfect={root / 'perfect'}"], root / "report", figures=False)
    rows = {r["subject"]: r for r in _table(out / "tac_metrics.tsv")}
    assert sorted(rows) == ["sub-01_ses-a", "sub-01_ses-b"]
    assert rows["sub-01_ses-a"]["voxels"] == rows["sub-01_ses-b"]["voxels"]
    for r in rows.values():
        assert float(r["cs"]) > 0.99999
    # float32 rounding only; with ses-a's input, ses-b's model TACs would be half its (doubled) data: MAE of kBq/mL
    assert float(rows["sub-01_ses-a"]["mae"]) < 1e-3 and float(rows["sub-01_ses-b"]["mae"]) < 2e-3
    errors = _table(out / "organ_errors.tsv")
    assert errors and all(abs(float(e["bias"])) < 1e-5 for e in errors)  # both sessions' truth found and matched
    assert "subjects: sub-01_ses-a, sub-01_ses-b." in (out / "report.md").read_text()
    only = ev.evaluate(ds, [f"perfect={root / 'perfect'}"], root / "report-sub01", subjects=["01"], figures=False)
    assert len(_table(only / "tac_metrics.tsv")) == 2


def test_a_scan_without_maps_of_every_method_is_named_not_dropped_silently(two_sessions, capsys):
    from jaxkin import cli

    root, ds = two_sessions
    half = root / "half" / "sub-01" / "ses-a"
    shutil.copytree(root / "perfect" / "sub-01" / "ses-a", half)  # maps of ses-a only
    preds = [f"perfect={root / 'perfect'}", f"half={root / 'half'}"]
    assert ev.left_out_scans(ds, preds) == ["sub-01_ses-b (no maps in half)"]
    assert cli.main(["evaluate", "--dataset", str(ds), *[a for p in preds for a in ("--pred", p)], "--out",
                     str(root / "report-half"), "--no-figures"]) == 0
    err = capsys.readouterr().err
    assert "note: left out sub-01_ses-b (no maps in half)" in err
    report = (root / "report-half" / "report.md").read_text()
    assert "subjects: sub-01_ses-a." in report and "Left out (no maps of every method): sub-01_ses-b" in report
