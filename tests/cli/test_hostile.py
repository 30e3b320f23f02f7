"""A hostile user's catalogue: every command given inputs and outputs that could lose data or give a silent,
plausible answer. The promise checked, not the wording: exit status 2 with one line on stderr and no traceback, the
inputs byte-identical, nothing left in the output location; interrupted runs (Ctrl-C, SIGTERM at a chosen map) leave
the earlier outputs as they were; a set of maps is written as a set.

The voxel fit itself is replaced by a stand-in (constant maps) where the test is about files, not about fitting, so
the file stays fast; the fits are tested in tests/fitting and tests/cli/test_fit.py."""

import hashlib
import json
import os
import signal
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from _pet_files import (
    AFFINE,
    FRAMES,
    SHAPE,
    random_pet_data,
    sidecar,
    small_labels,
    write_raw_pet,
    write_rows,
)

import jaxkin
from jaxkin import cli
from jaxkin.fitting.volume import VolumeFit
from jaxkin.io import files
from jaxkin.io.blood import write_blood
from jaxkin.io.files import TEMP_PREFIX

PREFIX = "sub-01"
CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "exp4_1.py"
BLOOD_CURVE = jaxkin.feng_input(FRAMES.end[-1], delay=0.1)


def _fake_fit_volume(pet, kin, method, *, mask=None, **_):
    """Constant maps in place of a voxel fit (the files around it are what these tests are about)."""
    shape = tuple(pet.shape[:3])
    names = method.maps(False)
    maps = {n: np.full(shape, 1 if n == "flags" else 0.5, np.int32 if n == "flags" else np.float32) for n in names}
    inside = np.ones(shape, bool) if mask is None else np.asarray(getattr(mask, "mask", mask), bool)
    return VolumeFit(maps, inside, int(inside.sum()), 0, 0)


@pytest.fixture(autouse=True)
def _no_fitting(monkeypatch):
    monkeypatch.setattr("jaxkin.fitting.maps.fit_volume", _fake_fit_volume)
    monkeypatch.setattr("jaxkin.fitting.maps.prepare", lambda *_a, **_k: None)  # the kinetic input: not needed
    monkeypatch.setenv("JAXKIN_CACHE_DIR", "off")


@pytest.fixture
def ds(tmp_path):
    """A raw BIDS dataset of one scan (PET, sidecar, measured blood, a label map) with the phantom's ground truth
    and another pipeline's derivatives; the folder ``tmp_path/work`` for outputs."""
    root = tmp_path / "raw"
    pet_dir = root / "sub-01" / "pet"
    pet_dir.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "test", "BIDSVersion": "1.9.0"}))
    write_raw_pet(pet_dir, random_pet_data(), sidecar(), name=f"{PREFIX}_pet.nii.gz")
    write_blood(pet_dir / f"{PREFIX}_recording-AIF_blood.tsv", whole_blood=BLOOD_CURVE)
    nib.save(nib.Nifti1Image(small_labels(), AFFINE), str(pet_dir / f"{PREFIX}_dseg.nii.gz"))
    (pet_dir / f"{PREFIX}_dseg.tsv").write_text("index\tname\n1\tliver\n2\taorta\n")
    truth = root / "derivatives" / "groundtruth"
    (truth / "sub-01" / "pet").mkdir(parents=True)
    (truth / "dataset_description.json").write_text(json.dumps({
        "Name": "ground truth of the jaxkin phantom", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "jaxkin", "Version": jaxkin.__version__}]}))
    (truth / "sub-01" / "pet" / f"{PREFIX}_model-2tcmirr_meas-Ki_mimap.nii.gz").write_bytes(b"truth")
    other = root / "derivatives" / "fmriprep"
    other.mkdir()
    (other / "dataset_description.json").write_text(json.dumps({
        "Name": "fMRIPrep", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "fMRIPrep", "Version": "24.1.0"}]}))
    (tmp_path / "work").mkdir()
    return root


def _paths(root):
    d = root / "sub-01" / "pet"
    return {"pet": d / f"{PREFIX}_pet.nii.gz", "blood": d / f"{PREFIX}_recording-AIF_blood.tsv",
            "labels": d / f"{PREFIX}_dseg.nii.gz", "work": root.parent / "work"}


def _snapshot(*trees) -> dict:
    """Every file and folder under ``trees`` (hidden ones too) with a hash of its bytes."""
    out = {}
    for tree in trees:
        for p in sorted(Path(tree).rglob("*")):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def _run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(err: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if ": note: " not in line]
    assert len(lines) == 1 and lines[0].startswith("jaxkin "), err


def _refused(argv, capsys, tmp_path):
    """Run ``argv``: exit 2, one line, no traceback, nothing under ``tmp_path`` changed or added."""
    before = _snapshot(tmp_path)
    code, _, err = _run(argv, capsys)
    assert code == 2, err
    _one_line_error(err)
    assert _snapshot(tmp_path) == before


def _fit(p, out, *extra):
    return ["fit", "--pet", p["pet"], "--input-function", p["blood"], "--out", out, "--no-progress", *extra]


def _tacs_table(path: Path, rows=None) -> Path:
    """A regional TAC table in kBq/mL (frame times in s), from the frames of the tiny scan."""
    rows = rows if rows is not None else [[s, e, 1.0 + i] for i, (s, e) in enumerate(
        zip(FRAMES.start_seconds, FRAMES.start_seconds + FRAMES.duration_seconds))]
    return write_rows(path, ["frame_start[s]", "frame_end[s]", "liver[kBq/mL]"], rows)


# --------------------------------------------------------------------------------------------------
# An output never lands on an input (or on a file the user owns)
# --------------------------------------------------------------------------------------------------

COLLISIONS = {
    # regions' sidecar would replace the PET's own sidecar
    "regions-sidecar-onto-pet-json": lambda p: ["regions", "--pet", p["pet"], "--labels", p["labels"], "--out",
                                                p["pet"].with_name(f"{PREFIX}_pet.tsv")],
    "regions-onto-label-table": lambda p: ["regions", "--pet", p["pet"], "--labels", p["labels"], "--out",
                                           p["labels"].with_name(f"{PREFIX}_dseg.tsv")],
    "regions-onto-measured-blood": lambda p: ["regions", "--pet", p["pet"], "--labels", p["labels"], "--out",
                                              p["blood"]],
    "idif-onto-measured-blood": lambda p: ["idif", "--pet", p["pet"], "--labels", p["labels"], "--out", p["blood"]],
    "idif-sidecar-onto-pet-json": lambda p: ["idif", "--pet", p["pet"], "--labels", p["labels"], "--out",
                                             p["pet"].with_name(f"{PREFIX}_pet.tsv")],
    "fit-pet-out-is-a-file": lambda p: _fit(p, p["blood"]),
    "fit-bids-into-ground-truth": lambda p: ["fit", "--bids", p["pet"].parents[2], "--out",
                                             p["pet"].parents[2] / "derivatives" / "groundtruth", "--no-progress"],
    "fit-bids-into-another-pipeline": lambda p: ["fit", "--bids", p["pet"].parents[2], "--out",
                                                 p["pet"].parents[2] / "derivatives" / "fmriprep", "--no-progress"],
    "fit-bids-into-the-raw-dataset": lambda p: ["fit", "--bids", p["pet"].parents[2], "--out", p["pet"].parents[2],
                                                "--no-progress"],
    "fit-bids-into-a-subject-folder": lambda p: ["fit", "--bids", p["pet"].parents[2], "--out", p["pet"].parents[1],
                                                 "--no-progress"],
    "fit-bids-into-a-folder-of-other-files": lambda p: ((p["work"] / "notes.txt").write_text("mine"),
                                                        ["fit", "--bids", p["pet"].parents[2], "--out", p["work"],
                                                         "--no-progress"])[1],
    "simulate-over-a-dataset": lambda p: ["simulate", "--out", p["pet"].parents[2], "--subjects", "1"],
    "evaluate-into-a-dataset": lambda p: ["evaluate", "--dataset", p["pet"].parents[2], "--pred",
                                          p["pet"].parents[2], "--out", p["pet"].parents[2]],
    "evaluate-the-truth-against-itself": lambda p: ["evaluate", "--dataset", p["pet"].parents[2], "--pred",
                                                    p["pet"].parents[2] / "derivatives" / "groundtruth", "--out",
                                                    p["work"] / "report"],
    "train-into-its-dataset": lambda p: ["train", "--config", CONFIG, "--data", p["pet"].parents[2], "--workdir",
                                         p["pet"].parents[2] / "runs"],
    "train-into-a-folder-of-other-files": lambda p: ((p["work"] / "notes.txt").write_text("mine"),
                                                     ["train", "--config", CONFIG, "--workdir", p["work"]])[1],
    "idif-bids-into-ground-truth": lambda p: ["idif", "--bids", p["pet"].parents[2], "--out",
                                              p["pet"].parents[2] / "derivatives" / "groundtruth"],
}


@pytest.mark.parametrize("case", sorted(COLLISIONS))
def test_an_output_never_replaces_an_input(ds, tmp_path, capsys, case):
    _refused(COLLISIONS[case](_paths(ds)), capsys, tmp_path)


def test_fit_tacs_out_onto_its_table_or_blood(ds, tmp_path, capsys):
    p = _paths(ds)
    table = _tacs_table(p["work"] / "tacs.tsv")
    for out in (table, p["blood"]):
        _refused(["fit", "--tacs", table, "--input-function", p["blood"], "--out", out], capsys, tmp_path)


def test_regions_refuses_a_table_it_did_not_write(ds, tmp_path, capsys):
    p = _paths(ds)
    mine = write_rows(p["work"] / "notes.tsv", ["a", "b"], [[1, 2]])
    _refused(["regions", "--pet", p["pet"], "--labels", p["labels"], "--out", mine], capsys, tmp_path)


def test_fit_bids_into_an_idif_derivative_folder(ds, tmp_path, capsys):
    p = _paths(ds)
    idif = p["work"] / "idif"
    code, _, err = _run(["idif", "--bids", ds, "--out", idif], capsys)
    assert code == 0, err
    _refused(["fit", "--bids", ds, "--out", idif, "--no-progress"], capsys, tmp_path)


def test_predict_out_naming_a_file_is_refused_before_predicting(ds, tmp_path, capsys, monkeypatch):
    def never(*_a, **_k):
        raise AssertionError("the network was loaded before --out was checked")

    monkeypatch.setattr("jaxkin.network.load_predictor", never)
    p = _paths(ds)
    _refused(["predict", "--checkpoint", p["work"], "--pet", p["pet"], "--out", p["blood"]], capsys, tmp_path)
    _pet_variant(p, np.zeros(SHAPE, np.float32))  # nothing to predict from: refused, not maps of the network's bias
    _refused(["predict", "--checkpoint", p["work"], "--pet", p["pet"], "--out", p["work"] / "maps"], capsys,
             tmp_path)


def test_regions_maps_of_another_subject(ds, tmp_path, capsys):
    p = _paths(ds)
    other = p["work"] / "sub-02"
    other.mkdir()
    nib.save(nib.Nifti1Image(np.ones(SHAPE[:3], np.float32), AFFINE),
             str(other / "sub-02_model-2tcmirr_meas-Ki_mimap.nii.gz"))
    _refused(["regions", "--pet", p["pet"], "--labels", p["labels"], "--out", p["work"] / "tacs.tsv", "--maps",
              other], capsys, tmp_path)
    unnamed = p["work"] / "unnamed"  # no sub- in the names, but jaxkin's sidecar names the PET it came from
    unnamed.mkdir()
    nib.save(nib.Nifti1Image(np.ones(SHAPE[:3], np.float32), AFFINE), str(unnamed / "model-x_meas-Ki_mimap.nii.gz"))
    sidecar = {"SoftwareName": "jaxkin", "Sources": ["bids:raw:sub-02/pet/sub-02_pet.nii.gz"]}
    (unnamed / "model-x_meas-Ki_mimap.json").write_text(json.dumps(sidecar))
    _refused(["regions", "--pet", p["pet"], "--labels", p["labels"], "--out", p["work"] / "tacs.tsv", "--maps",
              unnamed], capsys, tmp_path)


# --------------------------------------------------------------------------------------------------
# Damaged or degenerate data: refused
# --------------------------------------------------------------------------------------------------


def _damage(path: Path) -> None:
    """Flip bytes in the middle of the compressed stream: the gzip CRC-32 fails, the length may not."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _pet_variant(p, data=None, meta=None, name="sub-01_pet.nii.gz"):
    """Replace the dataset's PET (and sidecar) with ``data`` / ``meta``."""
    write_raw_pet(p["pet"].parent, random_pet_data() if data is None else data, sidecar() if meta is None else meta,
                  name=name)


def _sign_flipped():
    data = -random_pet_data()
    data[0, 0, 0] = 50.0  # a few positive voxels of noise in the "air"
    return data


DEGENERATE = {
    "damaged-gzip-crc": lambda p: (_damage(p["pet"]), _fit(p, p["work"] / "maps"))[1],
    "truncated-gzip": lambda p: (p["pet"].write_bytes(p["pet"].read_bytes()[:-40]),
                                 _fit(p, p["work"] / "maps"))[1],
    "all-zero-image": lambda p: (_pet_variant(p, np.zeros(SHAPE, np.float32)), _fit(p, p["work"] / "maps"))[1],
    "sign-flipped-image": lambda p: (_pet_variant(p, _sign_flipped()), _fit(p, p["work"] / "maps"))[1],
    "all-nan-image": lambda p: (_pet_variant(p, np.full(SHAPE, np.nan, np.float32)), _fit(p, p["work"] / "maps"))[1],
    "all-zero-mask": lambda p: (nib.save(nib.Nifti1Image(np.zeros(SHAPE[:3], np.uint8), AFFINE),
                                         str(p["work"] / "mask.nii.gz")),
                                _fit(p, p["work"] / "maps", "--mask", p["work"] / "mask.nii.gz"))[1],
    "single-frame-scan": lambda p: (_pet_variant(p, random_pet_data()[..., :1],
                                                 sidecar(FrameTimesStart=[0.0], FrameDuration=[600.0])),
                                    _fit(p, p["work"] / "maps"))[1],
    "too-few-frames-for-2tcm": lambda p: (_pet_variant(p, random_pet_data()[..., :5], sidecar(
        FrameTimesStart=[float(s) for s in FRAMES.start_seconds[:5]], FrameDuration=[10.0, 10.0, 30.0, 60.0, 120.0])),
        _fit(p, p["work"] / "maps", "--model", "2tcm"))[1],
    "patlak-t-star-after-the-scan": lambda p: _fit(p, p["work"] / "maps", "--model", "patlak", "--t-star", "1e9"),
    "injection-start-n/a": lambda p: (_pet_variant(p, meta=sidecar(InjectionStart="n/a")),
                                      ["regions", "--pet", p["pet"], "--labels", p["labels"], "--out",
                                       p["work"] / "tacs.tsv"])[1],
    "singular-label-affine": lambda p: (_singular_labels(p["work"] / "flat_dseg.nii.gz"),
                                        ["regions", "--pet", p["pet"], "--labels", p["work"] / "flat_dseg.nii.gz",
                                         "--out", p["work"] / "tacs.tsv"])[1],
    "singular-pet-affine": lambda p: (_singular_pet(p), _fit(p, p["work"] / "maps"))[1],
    "idif-core-on-an-all-nan-aorta": lambda p: (_pet_variant(p, _nan_aorta()),
                                                ["idif", "--pet", p["pet"], "--labels", p["labels"], "--core", "5",
                                                 "--out", p["work"] / "idif_blood.tsv"])[1],
    "idif-core-zero": lambda p: ["idif", "--pet", p["pet"], "--labels", p["labels"], "--core", "0", "--out",
                                 p["work"] / "idif_blood.tsv"],
    "tac-table-without-rows": lambda p: ["fit", "--tacs", _tacs_table(p["work"] / "t.tsv", rows=[]),
                                         "--input-function", p["blood"], "--out", p["work"] / "fits.tsv"],
    "one-frame-tac-table": lambda p: ["fit", "--tacs", _tacs_table(p["work"] / "t.tsv", rows=[[0, 600, 5.0]]),
                                      "--input-function", p["blood"], "--out", p["work"] / "fits.tsv"],
    "tac-table-injection-start-nan": lambda p: ["fit", "--tacs", _tacs_table(p["work"] / "t.tsv"),
                                                "--input-function", p["blood"], "--out", p["work"] / "fits.tsv",
                                                "--injection-start", "nan"],
    "blood-mostly-negative": lambda p: (write_blood(p["work"] / "neg_blood.tsv", whole_blood=BLOOD_CURVE.scaled(-1.0)),
                                        ["fit", "--pet", p["pet"], "--input-function", p["work"] / "neg_blood.tsv",
                                         "--out", p["work"] / "maps", "--no-progress"])[1],
    "blood-is-an-image": lambda p: ["fit", "--pet", p["pet"], "--input-function", p["pet"], "--out",
                                    p["work"] / "maps"],
}


def _singular_labels(path: Path) -> None:
    flat = AFFINE.copy()
    flat[:3, 2] = 0.0
    image = nib.Nifti1Image(small_labels(), AFFINE)
    image.set_qform(None, code=0)
    image.set_sform(flat, code=2)
    nib.save(image, str(path))


def _singular_pet(p) -> None:
    flat = AFFINE.copy()
    flat[:3, 0] = 0.0
    image = nib.Nifti1Image(random_pet_data(), AFFINE)
    image.set_qform(None, code=0)
    image.set_sform(flat, code=2)
    nib.save(image, str(p["pet"]))


def _nan_aorta():
    data = random_pet_data()
    data[small_labels() == 2] = np.nan
    return data


@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_damaged_or_degenerate_data_is_refused(ds, tmp_path, capsys, case):
    argv = DEGENERATE[case](_paths(ds))  # writes the damaged input first
    _refused(argv, capsys, tmp_path)


def test_a_few_negative_blood_samples_are_noted(ds, tmp_path, capsys):
    p = _paths(ds)
    t = np.linspace(0.0, float(BLOOD_CURVE.times[-1]), 60)
    values = np.asarray(BLOOD_CURVE(t), np.float64)
    values[1:3] = -0.01  # noise around zero before the bolus
    blood = write_blood(p["work"] / "noisy_blood.tsv", whole_blood=jaxkin.InputFunction(t, values))
    code, _, err = _run(["fit", "--pet", p["pet"], "--input-function", blood, "--out", p["work"] / "maps",
                         "--no-progress"], capsys)
    assert code == 0, err
    assert "negative" in err
    ki = json.loads((p["work"] / "maps" / f"{PREFIX}_model-2tcmirr_meas-Ki_mimap.json").read_text())
    assert any("negative" in a for a in ki["Assumptions"])


# --------------------------------------------------------------------------------------------------
# A set of maps is written as a set; interruptions leave nothing behind
# --------------------------------------------------------------------------------------------------


def _hidden(*folders):
    return [p for f in folders if f.is_dir() for p in f.iterdir() if p.name.startswith(TEMP_PREFIX)]


def _stop_after(monkeypatch, n: int, stop):
    """Call ``stop()`` once the fit has written ``n`` maps."""
    from jaxkin.fitting import maps as fitting_maps

    real, count = fitting_maps.write_map, [0]

    def write_map(*args, **kwargs):
        path = real(*args, **kwargs)
        count[0] += 1
        if count[0] == n:
            stop()
        return path

    monkeypatch.setattr(fitting_maps, "write_map", write_map)


def _sigterm():
    os.kill(os.getpid(), signal.SIGTERM)


def _ctrl_c():
    raise KeyboardInterrupt


@pytest.mark.parametrize(("stop", "status"), [(_ctrl_c, 130), (_sigterm, 143)], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_rerun_leaves_the_earlier_maps(ds, capsys, monkeypatch, stop, status):
    p = _paths(ds)
    out = p["work"] / "maps"
    code, _, err = _run(_fit(p, out), capsys)
    assert code == 0, err
    before = _snapshot(p["work"])
    _stop_after(monkeypatch, 3, stop)
    code, _, err = _run(_fit(p, out, "--uncertainty"), capsys)
    assert code == status
    _one_line_error(err)
    assert _snapshot(p["work"]) == before  # the earlier maps as they were, nothing added
    assert signal.getsignal(signal.SIGTERM) is not None  # the handlers are given back


@pytest.mark.parametrize(("stop", "status"), [(_ctrl_c, 130), (_sigterm, 143)], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_slab_by_slab_write_leaves_the_earlier_maps(ds, capsys, monkeypatch, stop, status):
    """Maps too large for the memory budget are written slab by slab while the fit goes on; stopped after the
    first slab of the second model, the earlier run's maps are as they were and nothing half-written is left."""
    from jaxkin.fitting import maps as fitting_maps

    p = _paths(ds)
    out = p["work"] / "maps"
    code, _, err = _run(_fit(p, out), capsys)
    assert code == 0, err
    before = _snapshot(p["work"])
    fitted = []

    def slab_by_slab(pet, kin, method, *, mask=None, write=None, **_):
        assert write is not None  # the maps of the volume are never held
        inside = mask.mask
        for a in range(inside.shape[2]):
            if len(fitted) == 1 and a == 1:
                stop()
            for name in method.maps(False):
                write(slice(a, a + 1), name, np.full((*inside.shape[:2], 1), 0.5, np.float32))
        fitted.append(method.model)
        return VolumeFit({}, inside, int(inside.sum()), 0, 0)

    monkeypatch.setattr(fitting_maps, "fit_volume", slab_by_slab)
    monkeypatch.setattr(fitting_maps, "maps_fit_in", lambda *_a, **_k: False)
    code, _, err = _run(_fit(p, out, "--model", "2tcmirr,1tcm", "--uncertainty"), capsys)
    assert code == status and fitted == ["2tcmirr"]
    _one_line_error(err)
    assert _snapshot(p["work"]) == before  # the earlier maps as they were, nothing added, no temporary left


def test_a_signal_while_the_set_is_moved_in_waits_for_the_set(ds, capsys, monkeypatch):
    from jaxkin.io import files

    p = _paths(ds)
    out = p["work"] / "maps"
    real = files._finish

    def finish(stage, journal):
        _sigterm()  # arrives while the maps are being moved in place
        real(stage, journal)

    monkeypatch.setattr(files, "_finish", finish)
    code, _, err = _run(_fit(p, out), capsys)
    assert code == 143
    _one_line_error(err)
    written = sorted(q.name for q in out.iterdir())
    assert len(written) == 12 and not _hidden(out, p["work"])  # the whole set: 6 maps and their sidecars


def test_an_interrupted_bids_run_leaves_no_dataset_skeleton(ds, tmp_path, capsys, monkeypatch):
    p = _paths(ds)
    _stop_after(monkeypatch, 2, _sigterm)
    before = _snapshot(tmp_path)
    code, _, err = _run(["fit", "--bids", ds, "--out", p["work"] / "deriv", "--no-progress"], capsys)
    assert code == 143
    _one_line_error(err)
    assert _snapshot(tmp_path) == before  # no dataset_description.json, no empty subject folders


def test_a_rerun_removes_the_maps_it_does_not_replace(ds, capsys):
    p = _paths(ds)
    out = p["work"] / "maps"
    code, _, err = _run(_fit(p, out, "--uncertainty"), capsys)
    assert code == 0, err
    assert len(list(out.iterdir())) == 26  # 13 maps and their sidecars
    theirs = out / f"{PREFIX}_model-2tcmirr_meas-VT_mimap"  # another program's map, named alike: kept
    theirs.with_suffix(".nii.gz").write_bytes(b"theirs")
    theirs.with_suffix(".json").write_text(json.dumps({"SoftwareName": "PMOD"}))
    code, _, err = _run(_fit(p, out), capsys)
    assert code == 0, err
    names = {q.name for q in out.iterdir()}
    maps = ("K1", "k2", "k3", "vB", "Ki", "SSE", "VT")  # the standard errors, R2 and flags of the earlier run: gone
    assert names == {f"{PREFIX}_model-2tcmirr_meas-{m}_mimap{ext}" for m in maps for ext in (".nii.gz", ".json")}
    assert ": note: " in err  # said on stderr


def test_what_a_killed_run_left_is_cleaned_by_the_next(ds, capsys):
    p = _paths(ds)
    out = p["work"] / "maps"
    out.mkdir()
    dead = 2**22 + 12345  # above Linux's largest process id: no such process
    stale = out / f"{files._temp_prefix(dead)}abcd.tmp"  # a staged set killed before it was complete
    stale.mkdir()
    (stale / f"{PREFIX}_model-2tcmirr_meas-K1_mimap.nii.gz").write_bytes(b"half")
    (out / f"{files._temp_prefix(dead)}efgh.tmp.json").write_text("{")  # a half-written sidecar
    code, _, err = _run(_fit(p, out), capsys)
    assert code == 0, err
    assert not _hidden(out, p["work"])
    assert len(list(out.iterdir())) == 12


def test_a_210_byte_pet_name_is_written(ds, capsys):
    p = _paths(ds)
    stem = f"{PREFIX}_desc-" + "a" * (210 - len(f"{PREFIX}_desc-_pet.nii.gz"))
    name = f"{stem}_pet.nii.gz"
    assert len(name.encode()) == 210
    _pet_variant(p, name=name)
    out = p["work"] / "maps"
    code, _, err = _run(["fit", "--pet", p["pet"].with_name(name), "--input-function", p["blood"], "--out", out,
                         "--no-progress", "--uncertainty"], capsys)
    assert code == 0, err
    assert (out / f"{stem}_model-2tcmirr_meas-K1SE_mimap.nii.gz").is_file()
    assert not _hidden(out, p["work"])



_KILLED_RUN = """
import os, signal, sys
import numpy as np
from jaxkin import cli
from jaxkin.fitting import maps
from jaxkin.fitting.volume import VolumeFit

def fake_fit_volume(pet, kin, method, *, mask=None, **_):
    shape = tuple(pet.shape[:3])
    inside = np.ones(shape, bool)
    return VolumeFit({n: np.full(shape, 0.5, np.float32) for n in method.maps(False)}, inside, inside.size, 0, 0)

real, count = maps.write_map, [0]

def write_map(*args, **kwargs):
    count[0] += 1
    if count[0] == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 while the first scan's maps are written
    return real(*args, **kwargs)

maps.fit_volume, maps.prepare, maps.write_map = fake_fit_volume, lambda *a, **k: None, write_map
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow  # a fresh Python process (JAX start-up)
def test_kill_9_leaves_at_worst_a_hidden_temporary_the_next_run_removes(ds, capsys):
    import subprocess
    import sys

    p = _paths(ds)
    out = p["work"] / "deriv"
    argv = ["fit", "--bids", str(ds), "--out", str(out), "--no-progress"]
    env = dict(os.environ, JAXKIN_CACHE_DIR="off", PYTHONPATH=str(Path(jaxkin.__file__).parents[1]))
    proc = subprocess.run([sys.executable, "-c", _KILLED_RUN, *argv], env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = list(p["work"].rglob("*"))
    assert left and all(q.relative_to(p["work"]).parts[0].startswith(TEMP_PREFIX) for q in left)  # hidden only
    assert not out.exists()  # no dataset skeleton
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert not _hidden(p["work"], out) and (out / "dataset_description.json").is_file()
