"""Real scans as datasets carry them give the same maps as the canonical form.

The canonical form is what the kinetic models compute in: time since injection, the parent plasma as the input, the
whole blood for the vB term, activities decay corrected to the injection, kBq/mL. Each test writes one real form of
the same scan into a temporary folder (late start with negative blood times, decay correction to the scan start,
an uncorrected image, plasma + parent fraction + whole blood, two recordings, BQML units, ...), reads it back the way
``jaxkin fit`` does and checks the fitted maps against the canonical fit to 1e-4.
"""

import json
import math

import numpy as np
import pytest

from jaxkin import FrameSchedule, InputError, InputFunction
from jaxkin.input_function import feng
from jaxkin.io.pet import load_pet, write_pet
from jaxkin.io.blood import load_blood
from jaxkin.decay import F18_HALF_LIFE_MIN, decay_factors
from jaxkin.fitting import fit_volume
from jaxkin.kinetics import prepare, tacs_in_chunks

LAM = math.log(2.0) / F18_HALF_LIFE_MIN
INJ = -0.5  # min: the injection 30 s before TimeZero (the scan start)
DURATIONS_S = [10.0] * 6 + [30.0] * 4 + [60.0] * 5 + [300.0] * 9
FRAMES_TZ = FrameSchedule.from_durations(DURATIONS_S)  # relative to TimeZero, as FrameTimesStart
FRAMES = FrameSchedule.from_seconds(FRAMES_TZ.start_seconds - INJ * 60, FRAMES_TZ.duration_seconds)  # since inj.
SCAN_END = float(FRAMES.end[-1])  # min since injection
SHAPE = (4, 3, 2)
RATIO = 1.1  # plasma / whole blood
N_ITER = 64  # LM iterations: converged well below the 1e-4 compared (float32 data differ in the last bit)

# Blood truth, in time since injection (min): an autosampler (whole blood, every 2 s for 5 min) and manual samples.
AUTO_T = np.arange(0.0, 5.0 + 1e-9, 2.0 / 60.0)
MANUAL_T = np.array([3.0, 5.0, 10.0, 15.0, 25.0, 40.0, 50.0, SCAN_END + 0.5])


def wb_true(t):
    return 0.9 * feng(t, delay=0.1)


def pf_true(t):
    return 1.0 - 0.3 * (1.0 - np.exp(-np.asarray(t) / 20.0))


def _canonical_curves():
    """The input (parent plasma) and whole blood on the knots the combination rule keeps: the autosampler's over its
    range, the manual samples after it; the parent fraction interpolated linearly from (0, 1) through the manual
    samples (what BIDS blood data give: samples, not a model)."""
    knots = np.concatenate([AUTO_T, MANUAL_T[MANUAL_T > AUTO_T[-1]]])
    wb = wb_true(knots)
    pf = np.interp(knots, np.concatenate([[0.0], MANUAL_T]), np.concatenate([[1.0], pf_true(MANUAL_T)]))
    return InputFunction(knots, RATIO * wb * pf), InputFunction(knots, wb)


INPUT, WHOLE_BLOOD = _canonical_curves()


def _params(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(0.1, 1.0, n), rng.uniform(0.2, 1.5, n), rng.uniform(0.02, 0.3, n),
                     rng.uniform(0.01, 0.2, n)], axis=1)


@pytest.fixture(scope="module")
def canonical():
    """Noisy TACs [X, Y, Z, F] (kBq/mL, decay corrected to the injection) and their canonical fitted maps."""
    kin = prepare(INPUT, FRAMES, WHOLE_BLOOD)
    n = int(np.prod(SHAPE))
    tacs = tacs_in_chunks(_params(n), kin).astype(np.float64)
    rng = np.random.default_rng(1)
    tacs = tacs * (1 + 0.03 * rng.standard_normal(tacs.shape))
    data = tacs.reshape(*SHAPE, FRAMES.n_frames).astype(np.float32)
    fit = fit_volume(data, kin, mask=np.ones(SHAPE, bool), chunk_size=64, progress=False, n_iter=N_ITER)
    return data, fit.maps


def _pet_sidecar(**changes):
    meta = {"TracerName": "FDG", "TracerRadionuclide": "F18", "Units": "kBq/mL", "TimeZero": "10:00:00",
            "InjectionStart": INJ * 60, "ScanStart": 0, "ImageDecayCorrected": True,
            "ImageDecayCorrectionTime": INJ * 60}
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not None}


def _write_pet(path, data, sidecar):
    return write_pet(path, data, FRAMES_TZ, np.diag([2.0, 2.0, 2.0, 1.0]), units=sidecar["Units"],
                          sidecar=sidecar)


def _write_tsv(path, columns: dict, units: dict | None = None, flags: dict | None = None):
    names = list(columns)
    n = len(columns[names[0]])
    lines = ["\t".join(names)]
    for i in range(n):
        lines.append("\t".join("n/a" if (isinstance(v := columns[c][i], float) and np.isnan(v)) else repr(float(v))
                               for c in names))
    path.write_text("\n".join(lines) + "\n")
    meta = {c: {"Units": u} for c, u in (units or {}).items()}
    meta.update(flags or {})
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def _recordings(folder, *, scale=1.0, units="kBq/mL", decay=lambda t: 1.0, pf_percent=False, prefix="sub-01"):
    """The autosampler (whole blood) and manual (plasma, whole blood, parent fraction) recordings, times relative
    to TimeZero (negative before it)."""
    tz = lambda t: (t + INJ) * 60.0  # noqa: E731  min since injection -> s relative to TimeZero
    auto = _write_tsv(folder / f"{prefix}_recording-autosampler_blood.tsv",
                      {"time": tz(AUTO_T), "whole_blood_radioactivity": wb_true(AUTO_T) * decay(AUTO_T) / scale},
                      {"time": "s", "whole_blood_radioactivity": units},
                      {"PlasmaAvail": False, "WholeBloodAvail": True, "MetaboliteAvail": False,
                       "DispersionCorrected": True})
    wb = wb_true(MANUAL_T) * decay(MANUAL_T) / scale
    pf = pf_true(MANUAL_T) * (100.0 if pf_percent else 1.0)
    manual = _write_tsv(folder / f"{prefix}_recording-manual_blood.tsv",
                        {"time": tz(MANUAL_T), "plasma_radioactivity": RATIO * wb, "whole_blood_radioactivity": wb,
                         "metabolite_parent_fraction": pf},
                        {"time": "s", "plasma_radioactivity": units, "whole_blood_radioactivity": units,
                         **({} if pf_percent else {"metabolite_parent_fraction": "unitless"})},
                        {"PlasmaAvail": True, "WholeBloodAvail": True, "MetaboliteAvail": True})
    return [auto, manual]


def _fit(pet_path, blood_paths, **blood_options):
    pet = load_pet(pet_path)
    blood = load_blood(blood_paths, pet=pet, **blood_options)
    kin = prepare(blood.input, pet.frames, blood.whole_blood)
    fit = fit_volume(pet, kin, mask=np.ones(SHAPE, bool), chunk_size=64, progress=False, n_iter=N_ITER)
    return fit.maps, pet, blood


def _assert_same_maps(maps, reference, *, same_bits=True):
    """Maps agree to 1e-4 when the image holds the canonical float32 values. When a unit or decay factor multiplies
    the stored float32 values, the data read back differ in the last bits (checked to 1e-6 by the callers) and the
    float32 LM resolves parameters only to a few 1e-4 (perturbing the data by 1e-7 moves k2 by 8e-4): 3e-3 then."""
    rtol = 1e-4 if same_bits else 3e-3
    for name in ("K1", "k2", "k3", "vB", "Ki"):
        np.testing.assert_allclose(maps[name], reference[name], rtol=rtol, atol=1e-6, err_msg=name)


def test_blood_combination_reproduces_the_canonical_curves(tmp_path):
    blood = load_blood(_recordings(tmp_path), injection_start=INJ)
    np.testing.assert_allclose(blood.input.times, INPUT.times, atol=1e-9)
    np.testing.assert_allclose(blood.input.values, INPUT.values, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(blood.whole_blood(WHOLE_BLOOD.times), WHOLE_BLOOD.values, rtol=1e-9, atol=1e-9)
    notes = " ".join(blood.notes)
    assert "plasma/whole-blood ratio of" in notes and "parent fraction taken as 1 at the injection" in notes
    assert blood.description["InputFunctionSource"].startswith("plasma_radioactivity x metabolite_parent_fraction")


def test_late_start_negative_blood_times_two_recordings(tmp_path, canonical):
    data, reference = canonical
    pet_path = _write_pet(tmp_path / "sub-01_pet.nii.gz", data, _pet_sidecar())
    maps, pet, blood = _fit(pet_path, _recordings(tmp_path))
    assert pet.frames.start[0] == pytest.approx(0.5) and pet.decay_factors is None
    assert blood.input.times[0] == 0.0  # samples before TimeZero are used, shifted to time since injection
    _assert_same_maps(maps, reference)


def test_decay_corrected_to_scan_start_with_and_without_decay_factor(tmp_path, canonical):
    data, reference = canonical
    to_scan_start = data * np.float32(math.exp(-LAM * -INJ))  # reference 0.5 min after injection
    path = _write_pet(tmp_path / "sub-01_pet.nii.gz", to_scan_start, _pet_sidecar(ImageDecayCorrectionTime=0))
    maps, pet, _ = _fit(path, _recordings(tmp_path))
    np.testing.assert_allclose(pet.read(), data, rtol=1e-6)
    _assert_same_maps(maps, reference, same_bits=False)
    # A Siemens-style DecayFactor (what the scanner applied to each frame, to the scan start) gives the same maps.
    applied = decay_factors(FRAMES, F18_HALF_LIFE_MIN) * math.exp(-LAM * -INJ)
    folder = tmp_path / "dcf"
    folder.mkdir()
    path = _write_pet(folder / "sub-01_pet.nii.gz", to_scan_start,
                      _pet_sidecar(ImageDecayCorrectionTime=0, DecayFactor=[float(f) for f in applied]))
    maps, pet, _ = _fit(path, _recordings(folder))
    assert not pet.notes  # consistent with ImageDecayCorrectionTime: nothing to say
    np.testing.assert_allclose(pet.read(), data, rtol=1e-6)
    _assert_same_maps(maps, reference, same_bits=False)


def test_decay_factor_disagreeing_with_the_correction_time_is_said(tmp_path, canonical):
    data, reference = canonical
    applied = decay_factors(FRAMES, F18_HALF_LIFE_MIN)  # to the injection, while the time field says scan start
    path = _write_pet(tmp_path / "sub-01_pet.nii.gz", data,
                      _pet_sidecar(ImageDecayCorrectionTime=0, DecayCorrectionFactor=[float(f) for f in applied]))
    maps, pet, _ = _fit(path, _recordings(tmp_path))
    assert any("DecayCorrectionFactor differs" in n and "implies 0 s after the injection" in n for n in pet.notes)
    np.testing.assert_allclose(pet.read(), data, rtol=1e-6)  # the factor actually applied wins
    _assert_same_maps(maps, reference, same_bits=False)


def test_uncorrected_image(tmp_path, canonical):
    data, reference = canonical
    raw = data / decay_factors(FRAMES, F18_HALF_LIFE_MIN).astype(np.float32)
    path = _write_pet(tmp_path / "sub-01_pet.nii.gz", raw, _pet_sidecar(ImageDecayCorrected=False))
    maps, pet, _ = _fit(path, _recordings(tmp_path))
    np.testing.assert_allclose(pet.read(), data, rtol=1e-6)
    _assert_same_maps(maps, reference, same_bits=False)


def test_bqml_is_bq_per_ml(tmp_path):
    """dcm2niix's BQML and Bq/cc read as Bq/mL: the same file bits give the same kBq/mL."""
    data = np.random.default_rng(2).uniform(0, 5e4, (*SHAPE, FRAMES.n_frames)).astype(np.float32)
    reads = []
    for units in ("Bq/mL", "BQML", "Bq/cc"):
        folder = tmp_path / units.replace("/", "_")
        folder.mkdir()
        reads.append(load_pet(_write_pet(folder / "sub-01_pet.nii.gz", data, _pet_sidecar(Units="Bq/mL")
                                              | {"Units": units})).read())
    np.testing.assert_array_equal(reads[0], reads[1])
    np.testing.assert_array_equal(reads[0], reads[2])


@pytest.mark.parametrize("units,scale", [("BQML", 1e-3), ("nCi/mL", 0.037), ("uCi/mL", 37.0)])
def test_units_of_image_and_blood(tmp_path, canonical, units, scale):
    data, reference = canonical
    path = _write_pet(tmp_path / "sub-01_pet.nii.gz", data / np.float32(scale), _pet_sidecar(Units=units))
    maps, pet, blood = _fit(path, _recordings(tmp_path, scale=scale, units=units))
    np.testing.assert_allclose(pet.read(), data, rtol=1e-6)
    np.testing.assert_allclose(blood.input.values, INPUT.values, rtol=1e-9, atol=1e-12)
    _assert_same_maps(maps, reference, same_bits=False)


def test_blood_decay_references_and_percent_parent_fraction(tmp_path, canonical):
    data, reference = canonical
    path = _write_pet(tmp_path / "sub-01_pet.nii.gz", data, _pet_sidecar())
    uncorrected = _recordings(tmp_path, decay=lambda t: np.exp(-LAM * t), pf_percent=True)
    maps, _, blood = _fit(path, uncorrected, blood_decay="none")
    assert any("read as percent" in n for n in blood.notes)
    _assert_same_maps(maps, reference)
    folder = tmp_path / "tz"
    folder.mkdir()
    to_timezero = _recordings(folder, decay=lambda t: np.full_like(t, math.exp(-LAM * -INJ)))
    _assert_same_maps(_fit(path, to_timezero, blood_decay="timezero")[0], reference)


def test_single_plasma_file_with_parent_fraction_and_whole_blood(tmp_path, canonical):
    """One manual-style file holding the canonical curves' samples: plasma, parent fraction, whole blood."""
    data, reference = canonical
    path = _write_pet(tmp_path / "sub-01_pet.nii.gz", data, _pet_sidecar())
    t = INPUT.times
    pf = np.interp(t, np.concatenate([[0.0], MANUAL_T]), np.concatenate([[1.0], pf_true(MANUAL_T)]))
    blood = _write_tsv(tmp_path / "sub-01_recording-manual_blood.tsv",
                       {"time": (t + INJ) * 60, "plasma_radioactivity": INPUT.values / pf,
                        "whole_blood_radioactivity": WHOLE_BLOOD(t), "metabolite_parent_fraction": pf},
                       {"time": "s", "plasma_radioactivity": "kBq/mL", "whole_blood_radioactivity": "kBq/mL",
                        "metabolite_parent_fraction": "unitless"})
    maps, _, loaded = _fit(path, [blood])
    _assert_same_maps(maps, reference)
    # Without the whole blood, the vB term falls back on the input and the maps move (vB most): said, and visible.
    only_plasma = _write_tsv(tmp_path / "sub-02_recording-manual_blood.tsv",
                             {"time": (t + INJ) * 60, "plasma_radioactivity": INPUT.values / pf,
                              "metabolite_parent_fraction": pf},
                             {"time": "s", "plasma_radioactivity": "kBq/mL", "metabolite_parent_fraction": "unitless"})
    maps, _, loaded = _fit(path, [only_plasma])
    assert any("vB term uses the input curve" in n for n in loaded.notes)
    assert np.max(np.abs(maps["vB"] - reference["vB"])) > 1e-3


def test_blood_ending_early_is_extended_by_a_fitted_exponential(tmp_path):
    pet_path = _write_pet(tmp_path / "sub-01_pet.nii.gz", np.ones((*SHAPE, FRAMES.n_frames), np.float32),
                          _pet_sidecar())
    t = np.concatenate([np.arange(0, 5, 0.1), np.arange(5, SCAN_END - 3.0, 1.0)])
    c = lambda t: 50 * np.exp(-0.8 * t) + 6.0 * np.exp(-0.02 * t)  # noqa: E731  mono-exponential tail
    path = _write_tsv(tmp_path / "sub-01_recording-manual_blood.tsv", {"time": (t + INJ) * 60,
                      "plasma_radioactivity": c(t)}, {"time": "s", "plasma_radioactivity": "kBq/mL"})
    blood = load_blood(path, pet=load_pet(pet_path))
    assert blood.input.end == pytest.approx(SCAN_END)
    assert blood.input(SCAN_END) == pytest.approx(c(SCAN_END), rel=2e-3)
    ext = blood.description["InputExtrapolation"]
    assert ext["k_per_min"] == pytest.approx(0.02, rel=0.05) and ext["Samples"] == 5
    assert any("extended to" in n for n in blood.notes)


# ------------------------------------------------------------------------------------------ bad input


def _bad_pet(tmp_path, **changes):
    path = _write_pet(tmp_path / "sub-01_pet.nii.gz", np.ones((*SHAPE, FRAMES.n_frames), np.float32), _pet_sidecar())
    sidecar = path.with_name("sub-01_pet.json")
    meta = {k: v for k, v in {**json.loads(sidecar.read_text()), **changes}.items() if v is not None}
    sidecar.write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize("field,value", [("InjectionStart", "10:00:00"), ("ImageDecayCorrectionTime", "start"),
                                         ("ScanStart", True)])
def test_timing_fields_must_be_numbers(tmp_path, field, value):
    path = _bad_pet(tmp_path, **{field: value})
    with pytest.raises(InputError, match=rf"sub-01_pet\.json: field '{field}' must be a number of seconds"):
        load_pet(path)


def test_missing_injection_start_is_assumed_and_said(tmp_path):
    pet = load_pet(_bad_pet(tmp_path, InjectionStart=None, ImageDecayCorrectionTime=0))
    assert pet.injection_start == 0.0 and pet.frames.start[0] == 0.0
    assert any("InjectionStart missing" in n for n in pet.notes)
    assert "InjectionStart missing" in " ".join(pet.provenance()["Assumptions"])


@pytest.mark.parametrize("units", ["counts", "Bq", "propCps"])
def test_unknown_units_name_the_field(tmp_path, units):
    path = _bad_pet(tmp_path, Units=units)
    with pytest.raises(InputError, match=rf"sub-01_pet\.json: field 'Units': unknown units '{units}'"):
        load_pet(path)


def _one_file(tmp_path, columns, units=None):
    return _write_tsv(tmp_path / "sub-01_recording-manual_blood.tsv", columns, units)


@pytest.mark.parametrize("columns,units,message", [
    ({"time": [0.0, 60.0], "plasma_radioactivity": [1.0, 2.0], "metabolite_parent_fraction": [1.0, 1.2]},
     {"metabolite_parent_fraction": "unitless"}, r"'metabolite_parent_fraction', line 3: 1.2 is outside \[0, 1\]"),
    ({"time": [0.0, 60.0], "plasma_radioactivity": [1.0, 2.0], "metabolite_parent_fraction": [100.0, -3.0]},
     None, r"'metabolite_parent_fraction', line 3: -3 is outside \[0, 100\] \(percent\)"),
    ({"time": [0.0, 60.0], "plasma_radioactivity": [1.0, "x"]}, None, r"'plasma_radioactivity', line 3: 'x' is not"),
])
def test_bad_blood_values(tmp_path, columns, units, message):
    units = {"time": "s", "plasma_radioactivity": "kBq/mL", **(units or {})}
    path = tmp_path / "sub-01_recording-manual_blood.tsv"
    lines = ["\t".join(columns)] + ["\t".join(str(columns[c][i]) for c in columns) for i in range(2)]
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps({c: {"Units": u} for c, u in units.items()}))
    with pytest.raises(InputError, match=r"sub-01_recording-manual_blood\.tsv: column " + message):
        load_blood(path)


def test_ragged_blood_rows_are_refused(tmp_path):
    path = tmp_path / "sub-01_recording-manual_blood.tsv"
    path.write_text("time\tplasma_radioactivity\n0\t1\n60\n")
    with pytest.raises(InputError, match=r"blood\.tsv: line 3 has 1 columns, the header has 2"):
        load_blood(path)


def test_recordings_that_disagree_are_refused(tmp_path):
    auto, manual = _recordings(tmp_path)
    text = manual.read_text().splitlines()
    header = text[0].split("\t")
    j = header.index("whole_blood_radioactivity")
    rows = [r.split("\t") for r in text[1:]]
    for r in rows[:2]:  # the samples at 3 and 5 min, inside the autosampler's range, in Bq/mL by mistake
        r[j] = repr(float(r[j]) * 1000)
    manual.write_text("\n".join([text[0]] + ["\t".join(r) for r in rows]) + "\n")
    with pytest.raises(InputError, match=r"manual_blood\.tsv: column 'whole_blood_radioactivity': "
                                         r"recording-autosampler and recording-manual disagree by a median"):
        load_blood([auto, manual], injection_start=INJ)


def test_flags_that_contradict_the_columns_are_refused(tmp_path):
    path = _one_file(tmp_path, {"time": [0.0, 60.0], "plasma_radioactivity": [1.0, 2.0]},
                     {"time": "s", "plasma_radioactivity": "kBq/mL"})
    meta = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**meta, "WholeBloodAvail": True}))
    with pytest.raises(InputError, match=r"blood\.json: field 'WholeBloodAvail' is true but .* has no "
                                         r"'whole_blood_radioactivity' values"):
        load_blood(path)
