"""Blood data as the model's input (jaxkin.io.blood): recordings combined by time into the parent plasma and the whole
blood, decay references, extension to the scan's end, the scan's timing (a PET image or regional TACs), writing a
recording; against canonical curves and the maps they give."""

import json
import math

import numpy as np
import pytest

import _real_scans as real
from _pet_files import FRAMES, write_rows
from jaxkin import InputError, InputFunction
from jaxkin.io.blood import load_blood, write_blood
from jaxkin.io.pet import load_pet
from jaxkin.io.tables import RegionalTacs


# ------------------------------------------------------------------------------------------ the scan's blood in every form

def test_blood_combination_reproduces_the_canonical_curves(tmp_path):
    blood = load_blood(real.recordings(tmp_path), injection_start=real.INJ)
    np.testing.assert_allclose(blood.input.times, real.INPUT.times, atol=1e-9)
    np.testing.assert_allclose(blood.input.values, real.INPUT.values, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(blood.whole_blood(real.WHOLE_BLOOD.times), real.WHOLE_BLOOD.values, rtol=1e-9, atol=1e-9)
    notes = " ".join(blood.notes)
    assert "plasma/whole-blood ratio of" in notes and "parent fraction taken as 1 at the injection" in notes
    assert blood.description["InputFunctionSource"].startswith("plasma_radioactivity x metabolite_parent_fraction")


@pytest.mark.slow
@pytest.mark.parametrize("units,scale", [("BQML", 1e-3), ("nCi/mL", 0.037), ("uCi/mL", 37.0)])
def test_units_of_image_and_blood(tmp_path, canonical, units, scale):
    data, reference = canonical
    path = real.write_pet_file(tmp_path / "sub-01_pet.nii.gz", data / np.float32(scale), real.pet_sidecar(Units=units))
    maps, pet, blood = real.fit(path, real.recordings(tmp_path, scale=scale, units=units))
    np.testing.assert_allclose(pet.read(), data, rtol=1e-6)
    np.testing.assert_allclose(blood.input.values, real.INPUT.values, rtol=1e-9, atol=1e-12)
    real.assert_same_maps(maps, reference, same_bits=False)


@pytest.mark.slow
def test_blood_decay_references_and_percent_parent_fraction(tmp_path, canonical):
    data, reference = canonical
    path = real.write_pet_file(tmp_path / "sub-01_pet.nii.gz", data, real.pet_sidecar())
    uncorrected = real.recordings(tmp_path, decay=lambda t: np.exp(-real.LAM * t), pf_percent=True)
    maps, _, blood = real.fit(path, uncorrected, blood_decay="none")
    assert any("read as percent" in n for n in blood.notes)
    real.assert_same_maps(maps, reference)
    folder = tmp_path / "tz"
    folder.mkdir()
    to_timezero = real.recordings(folder, decay=lambda t: np.full_like(t, math.exp(-real.LAM * -real.INJ)))
    real.assert_same_maps(real.fit(path, to_timezero, blood_decay="timezero")[0], reference)


@pytest.mark.slow
def test_single_plasma_file_with_parent_fraction_and_whole_blood(tmp_path, canonical):
    """One manual-style file holding the canonical curves' samples: plasma, parent fraction, whole blood."""
    data, reference = canonical
    path = real.write_pet_file(tmp_path / "sub-01_pet.nii.gz", data, real.pet_sidecar())
    t = real.INPUT.times
    pf = np.interp(t, np.concatenate([[0.0], real.MANUAL_T]), np.concatenate([[1.0], real.pf_true(real.MANUAL_T)]))
    blood = real.write_recording(tmp_path / "sub-01_recording-manual_blood.tsv",
                       {"time": (t + real.INJ) * 60, "plasma_radioactivity": real.INPUT.values / pf,
                        "whole_blood_radioactivity": real.WHOLE_BLOOD(t), "metabolite_parent_fraction": pf},
                       {"time": "s", "plasma_radioactivity": "kBq/mL", "whole_blood_radioactivity": "kBq/mL",
                        "metabolite_parent_fraction": "unitless"})
    maps, _, loaded = real.fit(path, [blood])
    real.assert_same_maps(maps, reference)
    # Without the whole blood, the vB term falls back on the input and the maps move (vB most): said, and visible.
    only_plasma = real.write_recording(tmp_path / "sub-02_recording-manual_blood.tsv",
                             {"time": (t + real.INJ) * 60, "plasma_radioactivity": real.INPUT.values / pf,
                              "metabolite_parent_fraction": pf},
                             {"time": "s", "plasma_radioactivity": "kBq/mL", "metabolite_parent_fraction": "unitless"})
    maps, _, loaded = real.fit(path, [only_plasma])
    assert any("vB term uses the input curve" in n for n in loaded.notes)
    assert np.max(np.abs(maps["vB"] - reference["vB"])) > 1e-3


def test_blood_ending_early_is_extended_by_a_fitted_exponential(tmp_path):
    pet_path = real.write_pet_file(tmp_path / "sub-01_pet.nii.gz", np.ones((*real.SHAPE, real.FRAMES.n_frames), np.float32),
                          real.pet_sidecar())
    t = np.concatenate([np.arange(0, 5, 0.1), np.arange(5, real.SCAN_END - 3.0, 1.0)])
    c = lambda t: 50 * np.exp(-0.8 * t) + 6.0 * np.exp(-0.02 * t)  # noqa: E731  mono-exponential tail
    path = real.write_recording(tmp_path / "sub-01_recording-manual_blood.tsv", {"time": (t + real.INJ) * 60,
                      "plasma_radioactivity": c(t)}, {"time": "s", "plasma_radioactivity": "kBq/mL"})
    blood = load_blood(path, pet=load_pet(pet_path))
    assert blood.input.end == pytest.approx(real.SCAN_END)
    assert blood.input(real.SCAN_END) == pytest.approx(c(real.SCAN_END), rel=2e-3)
    ext = blood.description["InputExtrapolation"]
    assert ext["k_per_min"] == pytest.approx(0.02, rel=0.05) and ext["Samples"] == 5
    assert any("extended to" in n for n in blood.notes)


def test_recordings_that_disagree_are_refused(tmp_path):
    auto, manual = real.recordings(tmp_path)
    text = manual.read_text().splitlines()
    header = text[0].split("\t")
    j = header.index("whole_blood_radioactivity")
    rows = [r.split("\t") for r in text[1:]]
    for r in rows[:2]:  # the samples at 3 and 5 min, inside the autosampler's range, in Bq/mL by mistake
        r[j] = repr(float(r[j]) * 1000)
    manual.write_text("\n".join([text[0]] + ["\t".join(r) for r in rows]) + "\n")
    with pytest.raises(InputError, match=r"manual_blood\.tsv: column 'whole_blood_radioactivity': "
                                         r"recording-autosampler and recording-manual disagree by a median"):
        load_blood([auto, manual], injection_start=real.INJ)


def test_the_scan_is_a_pet_image_or_its_regional_tacs(tmp_path):
    """load_blood takes the scan's timing from either: the same time origin, half-life, fallback units and end."""
    pet = load_pet(real.write_pet_file(tmp_path / "sub-01_pet.nii.gz",
                                       np.ones((*real.SHAPE, real.FRAMES.n_frames), np.float32), real.pet_sidecar()))
    tacs = RegionalTacs(names=("liver",), frames=pet.frames, values=np.ones((1, pet.frames.n_frames)),
                        injection_start=pet.injection_start, half_life=pet.half_life, units=pet.units,
                        scale_to_kbq=pet.scale_to_kbq)
    paths = real.recordings(tmp_path, decay=lambda t: np.exp(-real.LAM * t))
    from_pet = load_blood(paths, pet=pet, blood_decay="none")
    from_tacs = load_blood(paths, pet=tacs, blood_decay="none")
    np.testing.assert_array_equal(from_pet.input.values, from_tacs.input.values)
    np.testing.assert_array_equal(from_pet.whole_blood.values, from_tacs.whole_blood.values)
    assert from_pet.notes == from_tacs.notes and from_pet.description == from_tacs.description


# ------------------------------------------------------------------------------------------ writing and reading one recording

def test_input_function_round_trip_with_units(tmp_path, pet_path):
    pet = load_pet(pet_path)
    t = np.linspace(0, FRAMES.end[-1] + 0.5, 50)
    inp = InputFunction(t, 100 * np.exp(-t / 7.0) * t)
    path = write_blood(tmp_path / "sub-01_blood.tsv", plasma=inp, units="Bq/mL")
    assert path.read_text().splitlines()[0] == "time\tplasma_radioactivity"
    back = load_blood(path, pet=pet).input  # units from the TSV's sidecar, not the PET
    np.testing.assert_allclose(back.times, inp.times, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(back.values, inp.values, rtol=1e-14)
    # No sidecar: the PET's units (Bq/mL here) apply; without a PET that is an error.
    path.with_suffix(".json").unlink()
    np.testing.assert_allclose(load_blood(path, pet=pet).input.values, inp.values, rtol=1e-14)
    with pytest.raises(InputError, match=r"sub-01_blood\.tsv: units of column 'plasma_radioactivity' unknown"):
        load_blood(path).input


def test_input_function_must_cover_the_scan(tmp_path, pet_path):
    pet = load_pet(pet_path)
    end_s = FRAMES.end[-1] * 60
    short = write_rows(tmp_path / "short.tsv", ["time", "AIF"], [[0, 0], [60, 5000], [float(end_s) - 300, 100]])
    with pytest.raises(InputError, match=r"short\.tsv: column 'time': the input ends at 530 s since injection but "
                                         r"the scan ends at 830 s; jaxkin extends it by at most 20% of the scan"):
        load_blood(short, pet=pet).input
    late = write_rows(tmp_path / "late.tsv", ["time", "AIF"], [[-5, 0], [60, 5000], [float(end_s) + 1, 100]])
    load_blood(late, pet=pet).input  # starts before the scan: fine
    # A first sample after t = 0 is ramped from (0, 0), so it covers a scan starting at 0.
    ramp = write_rows(tmp_path / "ramp.tsv", ["time", "AIF"], [[5, 1000], [float(end_s) + 1, 100]])
    assert load_blood(ramp, pet=pet).input.times[0] == 0.0


@pytest.mark.parametrize("header,rows,message", [
    (["t", "AIF"], [[0, 1], [1, 2]], "missing column 'time'"),
    (["time", "blood"], [[0, 1], [1, 2]], "no blood column; expected some of plasma_radioactivity"),
    (["time", "AIF"], [[0, 1], [1, "x"]], "column 'AIF', line 3: 'x' is not a number"),
    (["time", "AIF"], [[0, 1], [1, "nan"]], "column 'AIF', line 3: 'nan' is not a finite number; write n/a"),
    (["time", "AIF"], [[0, 1], [0, 2], [5, 1]], "column 'time' must be strictly increasing"),
    (["time", "AIF"], [[0, 1]], "at least two samples at or after the injection"),
])
def test_bad_input_function_tsv(tmp_path, pet_path, header, rows, message):
    pet = load_pet(pet_path)
    path = write_rows(tmp_path / "if.tsv", header, rows)
    with pytest.raises(InputError, match="if.tsv: " + message.replace("(", r"\(")):
        load_blood(path, pet=pet).input


def test_input_function_column_choice_and_sidecar_units(tmp_path):
    path = write_rows(tmp_path / "b.tsv", ["time", "whole_blood_radioactivity", "plasma_radioactivity"],
                      [[0, 1, 2], [60, 3, 4]])
    (tmp_path / "b.json").write_text(json.dumps({"time": {"Units": "s"}, "plasma_radioactivity": {"Units": "MBq/mL"},
                                                 "whole_blood_radioactivity": {"Units": "Bq/mL"}}))
    np.testing.assert_allclose(load_blood(path).input.values, [2000, 4000])  # plasma preferred
    blood = load_blood(path, column="whole_blood_radioactivity").input
    np.testing.assert_allclose(blood.values, [1e-3, 3e-3])
    np.testing.assert_allclose(blood.times, [0, 1])  # minutes
    (tmp_path / "b.json").write_text(json.dumps({"plasma_radioactivity": {"Units": "counts"}}))
    with pytest.raises(InputError, match=r"b\.json: field 'plasma_radioactivity.Units': unknown units 'counts'"):
        load_blood(path).input


def test_bad_options_name_the_parameter(tmp_path):
    path = write_rows(tmp_path / "b.tsv", ["time", "AIF"], [[0, 1], [60, 2]])
    path.with_suffix(".json").write_text(json.dumps({"AIF": {"Units": "kBq/mL"}}))
    with pytest.raises(InputError, match="blood_to_plasma: must be a positive number, not -1"):
        load_blood(path, blood_to_plasma=-1.0)
    with pytest.raises(InputError, match="blood decay reference 'scan': use one of injection, timezero, none"):
        load_blood(path, blood_decay="scan")
    with pytest.raises(InputError, match="blood decay reference 'timezero' needs the radionuclide's half-life"):
        load_blood(path, blood_decay="timezero")
    notes = load_blood(path).notes
    assert any("give the blood decay reference (timezero, or none" in n for n in notes)
    assert not any("--" in n for n in notes)


def test_negative_blood_samples_noted_or_refused(tmp_path):
    t = np.linspace(0.0, 60.0, 61)
    values = 10.0 * t * np.exp(-t / 2.0)
    values[1:3] = -0.05  # noise around zero: noted, kept
    noisy = write_blood(tmp_path / "noisy_blood.tsv", whole_blood=InputFunction(t, values))
    notes = load_blood(noisy).notes
    assert any("2 of 61 samples negative" in n for n in notes)
    flipped = write_blood(tmp_path / "flipped_blood.tsv", whole_blood=InputFunction(t, -values))
    with pytest.raises(InputError, match="flipped_blood.tsv: "):
        load_blood(flipped)

# ------------------------------------------------------------------------------------------ an SUV study


def _suv_study(tmp_path, tac_sidecar: dict, blood_units: str):
    """A TAC table and an arterial blood recording of one irreversible region, C(t) = Ki * int_0^t Cp, both in SUV
    (the blood in ``blood_units``); returns the paths and the true Ki."""
    import json

    from scipy.integrate import quad

    ki = 0.025
    frames = FRAMES
    times = np.array([0.0, 0.5, 1.0, 2.0, 5.0, 10.0, float(frames.end[-1])])
    suv = np.array([0.0, 12.0, 8.0, 5.0, 3.0, 2.2, 1.9])
    cp = InputFunction(times, suv)
    tissue = [ki * quad(lambda t: float(cp.integral(t)), a, b, limit=200)[0] / (b - a)
              for a, b in zip(frames.start, frames.end)]
    table = tmp_path / "tacs.tsv"
    write_rows(table, ["frame_start", "frame_end", "tumour"],
               [[a * 60, b * 60, v] for a, b, v in zip(frames.start, frames.end, tissue)])
    table.with_suffix(".json").write_text(json.dumps({"Units": "SUV", "InjectionStart": 0, **tac_sidecar}))
    blood = write_rows(tmp_path / "sub-01_recording-manual_blood.tsv", ["time", "plasma_radioactivity"],
                       [[t * 60, v] for t, v in zip(times[1:], suv[1:])])
    blood.with_suffix(".json").write_text(json.dumps({"time": {"Units": "s"},
                                                      "plasma_radioactivity": {"Units": blood_units}}))
    return table, blood, ki, cp


def test_suv_study_kept_converted_or_refused(tmp_path):
    from jaxkin.fitting import fit_regions
    from jaxkin.io.tables import read_tacs

    dose = {"BodyWeight": 80, "InjectedRadioactivity": 400, "InjectedRadioactivityUnits": "MBq"}
    kis = {}
    for name, side in (("kept", {}), ("converted", dose)):
        folder = tmp_path / name
        folder.mkdir()
        table, recording, ki, cp = _suv_study(folder, side, "g/mL")
        tacs = read_tacs(table)
        blood = load_blood(recording, pet=tacs)
        factor = 1.0 if name == "kept" else 400e3 / 80e3  # kBq/mL per SUV: injected / body weight
        assert tacs.value_kind == ("SUV" if name == "kept" else "activity")
        np.testing.assert_allclose(blood.input(cp.times), cp.values * factor, rtol=1e-12)
        notes = " ".join(tacs.notes + blood.notes)
        if name == "kept":
            assert notes.count("tissue and input are both in SUV: fitted as they are") == 1
        else:
            assert "tacs.tsv: SUV converted to kBq/mL (x injected 400 MBq / body weight 80 kg" in notes
            assert "plasma_radioactivity: g/mL converted to kBq/mL" in notes
        fit = fit_regions(tacs.names, tacs.values, blood.input, tacs.frames, model="patlak", t_star=1.0)
        kis[name] = float(fit.columns["Ki"][0])
    assert kis["kept"] == pytest.approx(ki, rel=1e-6) and kis["converted"] == pytest.approx(ki, rel=1e-6)
    folder = tmp_path / "mix"
    folder.mkdir()
    table, recording, *_ = _suv_study(folder, {}, "kBq/mL")
    with pytest.raises(InputError, match=r"sub-01_recording-manual_blood\.tsv: the blood is in activity but the "
                                         r"tissue in SUV: they cannot be reconciled"):
        load_blood(recording, pet=read_tacs(table))


# ------------------------------------------------------------------------------------------ an IDIF at mid times


def test_a_table_at_the_scans_mid_times_is_read_as_frame_means(tmp_path):
    """An image-derived input written as a plain blood table at the frame mid times (as a cohort publishes it): read
    as frame means (said once), so that every frame's mean is the measured value; ``samples`` overrides it."""
    import json

    from jaxkin.input_function import feng_input, from_frame_means

    frames = FRAMES
    truth = feng_input(float(frames.end[-1]) + 1.0)
    means = (truth.integral(frames.end) - truth.integral(frames.start)) / frames.duration
    path = write_rows(tmp_path / "sub-01_recording-IDIF_blood.tsv", ["time", "whole_blood_radioactivity"],
                      [[m * 60, v] for m, v in zip(frames.mid, means)])
    path.with_suffix(".json").write_text(json.dumps({"whole_blood_radioactivity": {"Units": "kBq/mL"}}))
    scan = RegionalTacs(names=("liver",), frames=frames, values=np.ones((1, frames.n_frames)))
    blood = load_blood(path, pet=scan)
    got = (blood.input.integral(frames.end) - blood.input.integral(frames.start)) / frames.duration
    np.testing.assert_allclose(got, means, rtol=1e-10)
    np.testing.assert_allclose(blood.input.values, from_frame_means(frames, means).values, rtol=1e-12)
    notes = " ".join(blood.notes)
    assert notes.count("values read as frame means (its times are the scan's frame mid times") == 1
    assert blood.sidecar()["FrameMeans"] == [path.name]
    # The whole blood is the input: one note says so, none calls it the total plasma.
    assert "no plasma data: the input is the whole blood" in notes and "total plasma" not in notes
    samples = load_blood(path, pet=scan, input_values="samples")
    np.testing.assert_allclose(samples.input(frames.mid), means, rtol=1e-12)
    assert "frame means" not in " ".join(samples.notes)
    late = write_rows(tmp_path / "late_blood.tsv", ["time", "whole_blood_radioactivity"],
                      [[m * 60 + 5, v] for m, v in zip(frames.mid, means)])
    late.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    assert "frame means" not in " ".join(load_blood(late, pet=scan).notes)  # not at the mid times: samples
    with pytest.raises(InputError, match=r"late_blood\.tsv: column 'time': the samples are not at the mid times of "
                                         r"the scan's frames, so they cannot be read as frame means"):
        load_blood(late, pet=scan, input_values="frame-means")
