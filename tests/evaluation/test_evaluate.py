"""Evaluation: metric functions against hand/NumPy/scipy references, units of the figures from the kinetics, and
`jaxkin evaluate` on a noiseless phantom (ground truth as a perfect method, a copy with a known bias, jaxkin LM maps,
Patlak maps), report and bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats

from jaxkin import evaluation as ev
from jaxkin import kinetics
from jaxkin.cli import main

# --------------------------------------------------------------------------------------------------
# Pure metrics
# --------------------------------------------------------------------------------------------------


def test_voxel_metrics_match_scipy_and_hand():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 62)), rng.normal(size=(7, 62))
    cs = ev.voxel_cosine(a, b)
    ref = np.array([1.0 - scipy.spatial.distance.cosine(x, y) for x, y in zip(a, b)])
    np.testing.assert_allclose(cs, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ev.voxel_mae(a, b), [np.abs(x - y).sum() / 62 for x, y in zip(a, b)], rtol=1e-12)
    assert ev.voxel_cosine(np.zeros(5), np.ones(5)) == 0.0  # a zero TAC has no direction: 0, not NaN
    np.testing.assert_allclose(ev.voxel_cosine(a, 3.0 * a), 1.0, rtol=1e-12)  # scale-invariant


def test_tac_metrics_per_slice_and_subject():
    rng = np.random.default_rng(1)
    tac = rng.uniform(0, 10, size=(4, 5, 3, 6))
    model = tac + rng.normal(size=tac.shape)
    mask = rng.uniform(size=(4, 5, 3)) < 0.6
    mask[:, :, 2] = False  # an empty slice
    m = ev.tac_metrics(tac, model, mask)
    maes, css = [], []
    for z in range(3):
        vals_mae = [np.mean(np.abs(tac[x, y, z] - model[x, y, z])) for x in range(4) for y in range(5) if mask[x, y, z]]
        vals_cs = [1 - scipy.spatial.distance.cosine(tac[x, y, z], model[x, y, z])
                   for x in range(4) for y in range(5) if mask[x, y, z]]
        maes += vals_mae
        css += vals_cs
        if vals_mae:
            assert m["slice_mae"][z] == pytest.approx(np.mean(vals_mae), rel=1e-12)
            assert m["slice_cs"][z] == pytest.approx(np.mean(vals_cs), rel=1e-12)
            assert m["slice_voxels"][z] == len(vals_mae)
        else:
            assert np.isnan(m["slice_cs"][z]) and m["slice_voxels"][z] == 0
    assert m["voxels"] == mask.sum()
    assert m["mae"] == pytest.approx(np.mean(maes), rel=1e-12)
    assert m["mae_sd"] == pytest.approx(np.std(maes), rel=1e-12)
    assert m["cs"] == pytest.approx(np.mean(css), rel=1e-12)
    assert m["cs_sd"] == pytest.approx(np.std(css), rel=1e-12)


def test_error_statistics_against_scipy():
    rng = np.random.default_rng(2)
    truth = rng.uniform(0.5, 1.0, 200)
    est = 0.9 * truth + 0.05 + rng.normal(0, 0.02, 200)
    s = ev.error_statistics(est, truth)
    d = est - truth
    assert s["bias"] == pytest.approx(d.mean(), rel=1e-12)
    assert s["sd"] == pytest.approx(d.std(), rel=1e-12)
    assert s["rmse"] == pytest.approx(np.sqrt(np.mean(d ** 2)), rel=1e-12)
    assert s["rmse"] ** 2 == pytest.approx(s["bias"] ** 2 + s["sd"] ** 2, rel=1e-10)
    assert s["r"] == pytest.approx(scipy.stats.pearsonr(est, truth)[0], rel=1e-10)
    shifted = ev.error_statistics(truth + 0.1, truth)  # a pure bias
    assert shifted["bias"] == pytest.approx(0.1) and shifted["sd"] == pytest.approx(0.0, abs=1e-12)
    assert shifted["r"] == pytest.approx(1.0)
    assert np.isnan(ev.error_statistics(est, np.full(200, 0.7))["r"])  # constant truth: r undefined


def test_organ_values_and_statistics():
    labels = np.array([[[0, 1], [1, 2]], [[2, 2], [0, 1]]])
    k1 = np.arange(8, dtype=float).reshape(2, 2, 2)
    vals = ev.organ_values({"K1": k1}, labels, {0: "bg", 1: "liver", 2: "spleen"})
    assert set(vals) == {"liver", "spleen"}
    np.testing.assert_array_equal(np.sort(vals["liver"]["K1"]), [1.0, 2.0, 7.0])
    stats = ev.organ_statistics(vals)
    assert stats["spleen"]["K1"] == pytest.approx((np.mean([3, 4, 5]), np.std([3, 4, 5]), 3))
    grouped = ev.organ_values({"K1": k1}, labels, {1: "liver", 2: "spleen"}, groups={"both": (1, 2)})
    np.testing.assert_array_equal(np.sort(grouped["both"]["K1"]), [1.0, 2.0, 3.0, 4.0, 5.0, 7.0])


def test_model_tacs_equal_the_kinetic_core():
    """The report's model TACs (kinetics.tacs_in_chunks) are the kinetic core's, also across padded chunks."""
    import jaxkin

    frames = jaxkin.FrameSchedule.quadra()
    t = np.array([0.0, 0.3, 0.6, 1.0, 2.0, 5.0, 10.0, 30.0, 70.0])
    kin = jaxkin.prepare(jaxkin.InputFunction(t, np.array([0.0, 200.0, 60.0, 30.0, 20.0, 12.0, 9.0, 6.0, 4.0])), frames)
    params = np.array([[0.6, 1.2, 0.1, 0.05], [0.667, 0.695, 0.003, 0.01], [0.1, 0.5, 0.02, 0.03]], np.float32)
    out = kinetics.tacs_in_chunks(params, kin, kinetics.FDG_MODEL, chunk=2)  # two chunks, the second padded
    np.testing.assert_allclose(out, np.asarray(kinetics.two_tissue_irreversible(params, kin)), rtol=1e-6)


def test_evaluated_parameters_and_units_come_from_kinetics(tmp_path, monkeypatch):
    from jaxkin.evaluation import plots

    assert ev.PARAMS == kinetics.get_model(kinetics.FDG_MODEL).map_names
    for p in ev.PARAMS:
        unit = kinetics.UNITS[p]
        assert (plots.unit_label(p) == "unitless") if unit == "1" else (plots.unit_label(p).replace("³", "3") == unit)
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    monkeypatch.setitem(kinetics.UNITS, "K1", "mL/cm3/s")  # a changed unit reaches the figures
    stats = {"truth": {"liver": {p: (1.0, 0.1, 3) for p in ev.PARAMS}}}
    plots.organ_bars(stats, ["liver"], list(ev.PARAMS), tmp_path / "bars.png")
    labels = [ax.get_ylabel() for ax in figures[0].axes]
    assert labels == [f"{p} ({plots.unit_label(p)})" for p in ev.PARAMS] and labels[0] == "K1 (mL/cm³/s)"
    volume = np.ones((4, 4, 3))
    plots.parametric_images({"truth": {p: volume for p in ev.PARAMS}}, list(ev.PARAMS), volume.astype(int),
                            {1: "liver"}, (1.0, 1.0, 1.0), "coronal", 1, tmp_path / "maps.png")
    bars = {ax.get_xlabel() for ax in figures[1].axes} - {""}
    assert bars == {plots.unit_label(p) for p in ev.PARAMS} and "mL/cm³/s" in bars


# --------------------------------------------------------------------------------------------------
# The image streamed: the TAC metrics and samples of the whole image held in memory
# --------------------------------------------------------------------------------------------------


def test_evaluate_subject_streams_the_image(noiseless_dataset, tmp_path, monkeypatch):
    """evaluate_subject never reads the 4D image whole: its TAC metrics and sample TACs, the image read in several
    pieces of axial slices, equal those of the whole image in memory (plain NumPy, as before), with a voxel NaN in
    one frame of the PET and one NaN in a map."""
    import nibabel as nib

    from jaxkin.evaluation import report as rp
    from jaxkin.io.blood import load_blood
    from jaxkin.io.dataset import subject_files
    from jaxkin.io.labels import read_labels
    from jaxkin.io.maps import write_map
    from jaxkin.io.pet import PetImage, load_pet

    ds = tmp_path / "ds"
    shutil.copytree(noiseless_dataset, ds)
    files = subject_files(ds, "sub-01")
    image = nib.load(str(files.pet))
    data = np.asarray(image.dataobj)
    labelled = np.argwhere(np.asarray(nib.load(str(files.labels)).dataobj) > 0)
    data[tuple(labelled[len(labelled) // 3]) + (7,)] = np.nan  # left out by the finite mask
    nib.save(nib.Nifti1Image(data, image.affine, image.header), str(files.pet))
    pet = load_pet(files.pet)
    rng = np.random.default_rng(3)
    truth = {p: np.asarray(nib.load(str(f)).dataobj, np.float32) for p, f in files.truth.items()}
    maps = {}
    for name, scale in (("a", 0.3), ("b", 0.1)):
        maps[name] = {p: (truth[p] * rng.uniform(1 - scale, 1 + scale, truth[p].shape)).astype(np.float32)
                      for p in ("K1", "k2", "k3", "vB")}
        for p, v in maps[name].items():
            write_map(tmp_path / name, "sub-01", "2tcmirr", p, v, reference=pet, units="x")
    maps["b"]["vB"][tuple(labelled[2 * len(labelled) // 3])] = np.nan
    write_map(tmp_path / "b", "sub-01", "2tcmirr", "vB", maps["b"]["vB"], reference=pet, units="x")

    # the reference: the whole image in memory, model TACs of every evaluated voxel at once
    measured = pet.read()
    labels = read_labels(files.labels, pet=pet)
    mask = np.all(np.isfinite(measured), axis=-1) & (labels.data > 0)
    for per in maps.values():
        for v in per.values():
            mask &= np.isfinite(v)
    blood = load_blood(files.blood, pet=pet)
    kin = kinetics.prepare(blood.input, pet.frames, blood.whole_blood)
    tac = measured[mask].astype(np.float64)

    counts = mask.sum(axis=(0, 1))
    per_piece = int(counts[counts > 0].min()) * 2 + 1  # pieces of one, two or more slices
    monkeypatch.setattr(rp, "PIECE_BYTES", per_piece * 4 * pet.frames.n_frames)
    monkeypatch.setattr(rp, "METRIC_VOXELS", 100)
    pieces = []
    real_pieces = rp._axial_pieces
    monkeypatch.setattr(rp, "_axial_pieces", lambda m, limit: pieces.extend(real_pieces(m, limit)) or list(pieces))

    def whole(*args, **kwargs):
        raise AssertionError("the 4D image was read whole")

    monkeypatch.setattr(PetImage, "read", whole)
    result = rp.evaluate_subject(files, [rp.Method(n, tmp_path / n) for n in ("a", "b")])
    assert len(pieces) >= 4 and any(b - a > 1 for a, b in pieces)
    np.testing.assert_array_equal(result["mask"], mask)

    model = {}
    for name, per in maps.items():
        params = np.stack([per[p][mask] for p in ("K1", "k2", "k3", "vB")], axis=-1)
        model[name] = kinetics.tacs_in_chunks(params, kin, kinetics.FDG_MODEL).astype(np.float64)
        got = result["tac"][name]
        mae = np.abs(tac - model[name]).mean(axis=1)
        cs = (tac * model[name]).sum(axis=1) / np.sqrt((tac ** 2).sum(axis=1) * (model[name] ** 2).sum(axis=1))
        assert got["voxels"] == mask.sum() == len(got["voxel_mae"])
        np.testing.assert_allclose(got["voxel_mae"], mae, rtol=1e-5)
        np.testing.assert_allclose(got["voxel_cs"], cs, rtol=1e-7)
        for key, ref in (("mae", mae.mean()), ("mae_sd", mae.std()), ("cs", cs.mean()), ("cs_sd", cs.std())):
            assert got[key] == pytest.approx(ref, rel=1e-5), key
        z = np.nonzero(mask)[2]
        np.testing.assert_array_equal(got["slice_voxels"], counts)
        with np.errstate(invalid="ignore"):
            np.testing.assert_allclose(got["slice_mae"], [mae[z == k].mean() for k in range(mask.shape[2])], rtol=1e-5)
            np.testing.assert_allclose(got["slice_cs"], [cs[z == k].mean() for k in range(mask.shape[2])], rtol=1e-7)

    assert len(result["samples"]) == rp.N_TAC_SAMPLES and "liver" in result["samples"]
    rows = np.cumsum(mask.ravel()).reshape(mask.shape) - 1  # each evaluated voxel's row in tac, model
    for organ, sample in result["samples"].items():
        sel = np.argwhere(labels.mask(organ) & mask)
        v = tuple(sel[np.argmin(((sel - sel.mean(axis=0)) ** 2).sum(axis=1))])  # nearest the organ's centroid
        assert list(sample) == ["measured", "a", "b"]
        np.testing.assert_array_equal(sample["measured"], measured[v])
        for name in ("a", "b"):
            np.testing.assert_allclose(sample[name], model[name][rows[v]], rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# `jaxkin evaluate` on a noiseless phantom
# --------------------------------------------------------------------------------------------------

BLOOD = ("blood_pool", "aorta")  # vB = 1: no tissue signal, K1, k2, k3 unidentifiable


@pytest.fixture(scope="module")
def phantom(tmp_path_factory, noiseless_dataset):
    """One noiseless, unblurred small-phantom subject; method folders: truth copy, truth + bias, LM, Patlak."""
    import jaxkin
    from jaxkin.io.blood import load_blood
    from jaxkin.io.labels import read_labels
    from jaxkin.io.pet import load_pet
    from jaxkin.io.maps import write_map
    from jaxkin.io.dataset import subject_files
    from jaxkin.fitting import PlotInput, fit_tacs, patlak

    root, ds = tmp_path_factory.mktemp("evaluate"), noiseless_dataset
    files = subject_files(ds, "sub-01")
    pet = load_pet(files.pet)
    inp = load_blood(files.blood[0], pet=pet).input
    labels = read_labels(files.labels, pet=pet, default_groups=False, resample=False)
    perfect, biased = root / "perfect", root / "biased"
    perfect.mkdir()
    biased.mkdir()
    for p, path in files.truth.items():
        shutil.copy(path, perfect / path.name)
        data = np.asarray(__import__("nibabel").load(str(path)).dataobj)
        write_map(biased, "sub-01", "2tcmirr", p, data + (0.01 if p == "K1" else 0.0), reference=pet,
                       units="x")
    # jaxkin LM on every labelled voxel, with bounds widened from the paper's because the phantom's truth lies
    # outside them in two organs: liver k3 = 0.003 < 0.01 and spleen k2 = 2.7 x subject/voxel variation > 3
    mask = labels.data > 0
    tacs = pet.read()[mask]
    kin = jaxkin.prepare(inp, pet.frames)
    res = fit_tacs(tacs, kin, lower=(0.01, 0.01, 0.001, 0.0), upper=(3.0, 6.0, 1.0, 1.0), chunk_size=4096).to_numpy()
    for i, p in enumerate(("K1", "k2", "k3", "vB")):
        volume = np.zeros(mask.shape, np.float32)
        volume[mask] = res.params[:, i]
        write_map(root / "lm", "sub-01", "2tcmirr", p, volume, reference=pet, units="x")
    plot = patlak(tacs, PlotInput.from_input(inp, pet.frames), t_star=20.0)
    volume = np.zeros(mask.shape, np.float32)
    volume[mask] = np.asarray(plot.slope)
    write_map(root / "patlak", "sub-01", "patlak", "Ki", volume, reference=pet, units="mL/cm3/min")
    return {"root": root, "ds": ds}


@pytest.fixture(scope="module")
def report(phantom):
    root = phantom["root"]
    out = root / "report"
    code = main(["evaluate", "--dataset", str(phantom["ds"]), "--pred", f"truth-copy={root / 'perfect'}",
                 "--pred", str(root / "biased"), "--pred", f"LM={root / 'lm'}", "--pred", str(root / "patlak"),
                 "--out", str(out)])
    assert code == 0
    return out


def _table(path):
    lines = path.read_text().splitlines()
    keys = lines[0].split("\t")
    return [dict(zip(keys, line.split("\t"))) for line in lines[1:]]


@pytest.mark.slow
def test_perfect_and_biased_methods(report):
    tac = {r["method"]: r for r in _table(report / "tac_metrics.tsv")}
    # the truth's model TACs are the noiseless data themselves (float32 rounding only)
    assert float(tac["truth-copy"]["cs"]) > 1 - 1e-6 and float(tac["truth-copy"]["mae"]) < 1e-3
    assert float(tac["biased"]["cs"]) < float(tac["truth-copy"]["cs"])
    assert "patlak" not in tac  # Ki only: no model TACs
    errors = _table(report / "organ_errors.tsv")
    for e in errors:
        if e["method"] == "truth-copy":
            assert abs(float(e["bias"])) < 1e-6 and float(e["rmse"]) < 1e-6, e
        if e["method"] == "biased" and e["param"] == "K1":
            assert float(e["bias"]) == pytest.approx(0.01, rel=1e-3) and float(e["rmse"]) == pytest.approx(0.01, rel=1e-3)
            assert float(e["sd"]) < 1e-5
        if e["method"] == "biased" and e["param"] in ("k2", "k3", "vB"):
            assert float(e["rmse"]) < 1e-6
    text = (report / "report.md").read_text()
    for fig in ("organ_bars.png", "sub-01_slice_cs.png", "sub-01_coronal_maps.png", "sub-01_axial_maps.png",
                "sub-01_tac_fits.png", "sub-01_coronal_errors.png"):
        assert (report / "figures" / fig).stat().st_size > 10000
        assert f"figures/{fig}" in text
    assert "| truth-copy | sub-01 |" in text and "Pearson" in text


@pytest.mark.slow
def test_lm_matches_truth_on_noiseless_phantom(report):
    """The fitting issue's tolerances: K1 and Ki within 0.1 % relative, vB within 0.001 (organ-level bias here)."""
    errors = [e for e in _table(report / "organ_errors.tsv") if e["method"] == "LM"]
    truth = {(r["organ"], r["param"]): float(r["mean"]) for r in _table(report / "organ_parameters.tsv")
             if r["method"] == "truth"}
    organs = {e["organ"] for e in errors} - set(BLOOD)
    assert {"liver", "myocardium", "lungs", "kidneys", "spleen", "bone", "lesion"} <= organs
    for e in errors:
        organ, p, bias = e["organ"], e["param"], float(e["bias"])
        if organ in BLOOD:
            if p == "vB":
                assert abs(bias) < 1e-3, e
            continue
        if p in ("K1", "Ki"):
            assert abs(bias) <= 1e-3 * truth[(organ, p)], e
            assert float(e["r"]) > 0.999, e
        elif p == "vB":
            assert abs(bias) <= 1e-3, e
    tac = {r["method"]: r for r in _table(report / "tac_metrics.tsv")}
    assert float(tac["LM"]["cs"]) > 1 - 1e-5


@pytest.mark.slow
def test_patlak_ki_close_to_truth_but_not_exact(report):
    """Patlak's Ki on the noiseless irreversible model is biased low by the neglected k2 washout (a known,
    independent effect): between 0 and 25 % low in the organs with a clear irreversible uptake."""
    errors = {(e["organ"], e["param"]): e for e in _table(report / "organ_errors.tsv") if e["method"] == "patlak"}
    truth = {(r["organ"], r["param"]): float(r["mean"]) for r in _table(report / "organ_parameters.tsv")
             if r["method"] == "truth"}
    assert {p for _, p in errors} == {"Ki"}
    for organ in ("myocardium", "lesion"):
        rel = float(errors[(organ, "Ki")]["bias"]) / truth[(organ, "Ki")]
        assert -0.25 < rel < 0.0, (organ, rel)


@pytest.mark.slow
def test_bad_input_is_one_error_and_no_output(phantom, tmp_path, capsys):
    root = phantom["root"]
    out = tmp_path / "rep"
    assert main(["evaluate", "--dataset", str(phantom["ds"]), "--pred", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err and not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", "--dataset", str(phantom["ds"]), "--pred", str(empty), "--out", str(out)]) == 2
    assert "no subject" in capsys.readouterr().err and not out.exists()
    broken = tmp_path / "broken"
    shutil.copytree(root / "lm", broken)
    k1 = broken / "sub-01_model-2tcmirr_meas-K1_mimap.nii.gz"
    k1.write_bytes(k1.read_bytes()[:200])
    assert main(["evaluate", "--dataset", str(phantom["ds"]), "--pred", str(broken), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "K1_mimap.nii.gz" in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob(".rep.*"))


@pytest.mark.slow
def test_report_states_the_frame_count(phantom, tmp_path):
    """A dataset whose scan has 40 frames, not the phantom's 62: the report says so."""
    import json

    import nibabel as nib

    ds = tmp_path / "ds"
    shutil.copytree(phantom["ds"], ds)
    pet = ds / "sub-01" / "pet" / "sub-01_pet.nii.gz"
    image = nib.load(str(pet))
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[..., :40], image.affine, image.header), str(pet))
    sidecar = json.loads(pet.with_name("sub-01_pet.json").read_text())
    for key in ("FrameTimesStart", "FrameDuration", "DecayCorrectionFactor"):
        sidecar[key] = sidecar[key][:40]
    pet.with_name("sub-01_pet.json").write_text(json.dumps(sidecar))
    out = ev.evaluate(ds, [str(phantom["root"] / "perfect")], tmp_path / "rep", figures=False)
    text = (out / "report.md").read_text()
    assert "(40 frames)" in text and "(62 frames)" not in text


@pytest.mark.slow
def test_any_label_names_and_groups(phantom, tmp_path):
    """Organ names come from the label table (none hard-coded): renamed labels and --group regions are reported,
    a group with the voxels of its members."""
    from jaxkin.io.dataset import subject_files

    ds = tmp_path / "ds"
    shutil.copytree(phantom["ds"], ds)
    table = subject_files(ds, "sub-01").labels.with_name("sub-01_dseg.tsv")
    table.write_text(table.read_text().replace("\tliver\n", "\thepar\n").replace("\tspleen\n", "\tlien\n"))
    out = tmp_path / "report"
    root = phantom["root"]
    assert main(["evaluate", "--dataset", str(ds), "--pred", f"truth-copy={root / 'perfect'}", "--out", str(out),
                 "--no-figures", "--group", "hepar_lien=hepar,lien"]) == 0
    rows = [r for r in _table(out / "organ_parameters.tsv") if r["method"] == "truth-copy" and r["param"] == "K1"]
    by_organ = {r["organ"]: r for r in rows}
    assert "hepar" in by_organ and "lien" in by_organ and "liver" not in by_organ
    n = int(by_organ["hepar"]["voxels"]) + int(by_organ["lien"]["voxels"])
    assert int(by_organ["hepar_lien"]["voxels"]) == n
    mean = (float(by_organ["hepar"]["mean"]) * int(by_organ["hepar"]["voxels"])
            + float(by_organ["lien"]["mean"]) * int(by_organ["lien"]["voxels"])) / n
    assert float(by_organ["hepar_lien"]["mean"]) == pytest.approx(mean, rel=1e-4)
    assert "--group hepar_lien=hepar,lien" in (out / "report.md").read_text()
