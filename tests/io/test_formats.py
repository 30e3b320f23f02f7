"""Files of PMOD and the Turku PET Centre (jaxkin.io._formats, through jaxkin.io.tables.read_tacs and
jaxkin.io.blood.load_blood): a .voistat, a .tac and a .bld as PMOD writes them, DFT and plain files as the Turku
PET Centre's programs write them, each read back to the values and frames they were written from; what is
ambiguous is refused with one line naming the file."""

import numpy as np
import pytest

from jaxkin import FrameSchedule, InputError
from jaxkin.input_function import feng
from jaxkin.io.blood import load_blood
from jaxkin.io.tables import read_tacs

#: A short FDG-like protocol, contiguous from 0 (s).
DURATIONS = np.array([15.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0])
FRAMES = FrameSchedule.from_durations(DURATIONS)
#: Known regional means (kBq/mL) per frame, and a plasma curve (kBq/mL) at its sample times (min).
LIVER = 5.0 + np.arange(FRAMES.n_frames)
CORTEX = 2.0 * LIVER
SAMPLE_MIN = np.array([0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 19.0, 20.0])
PLASMA = feng(SAMPLE_MIN)


def _voistat(path, mids_s, pvc=True):
    """The long export of PMOD's VOI statistics: six '#' lines, the '//' column line, one row per region and frame."""
    cols = ["Component [string]", "File [string]", "PatientName [string]", "PatientID [string]",
            "StudyDate [date_time]", "Color [0xARGB]", "VoiName(Region) [string]", "Time [seconds]",
            "Averaged [kBq/cc]", *(["PVC [kBq/cc]"] if pvc else []), "Volume [ccm]"]
    lines = ["# PMOD_VOI_STATISTICS", "# FORMAT[UNI]", "# DATE_TIME[2024.01.31_10:00:00]", "# VERSION[4.1]",
             "# AXIS[Experiment][VOI][TAC][]", "# DATA", "// " + "\t".join(cols)]
    for name, tac, vol in (("liver", LIVER, 1500.0), ("cortex", CORTEX, 420.5)):
        for m, v in zip(mids_s, tac):
            lines.append("\t".join(["/data/pet.dcm", "pet", "anon", "01", "20240131_100000", "ff1ca7ff", name,
                                    f"{m:g}", repr(float(v)), *([repr(1.2 * float(v))] if pvc else []), f"{vol}"]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_voistat_mid_times_give_contiguous_frames(tmp_path):
    tacs = read_tacs(_voistat(tmp_path / "study.voistat", FRAMES.mid * 60))
    assert tacs.names == ("liver", "cortex")
    np.testing.assert_allclose(tacs.values, [LIVER, CORTEX], rtol=1e-12)
    np.testing.assert_allclose(tacs.frames.start, FRAMES.start, atol=1e-12)
    np.testing.assert_allclose(tacs.frames.duration, FRAMES.duration, atol=1e-12)
    notes = " ".join(tacs.notes)
    assert "read as PMOD .voistat" in notes and "frames taken contiguous from 0 s" in notes and "PVC" in notes


def test_voistat_with_acqtimes_and_gaps(tmp_path):
    start = np.array([0.0, 20.0, 30.0])  # a gap after the first frame: contiguous frames cannot have these mids
    end = np.array([10.0, 30.0, 32.0])
    mids = 0.5 * (start + end)
    path = _voistat(tmp_path / "gap.voistat", mids, pvc=False)
    with pytest.raises(InputError, match=r"gap\.voistat: only frame mid times, and no contiguous frames from 0 have "
                                         r"them \(frame 2 at 31 s\); give the frames in a PMOD gap\.acqtimes"):
        read_tacs(path)
    (tmp_path / "gap.acqtimes").write_text("# Acquisition times (start end)in seconds\n3 # Number of acquisitions\n"
                                           + "".join(f"{a:g}\t{b:g}\n" for a, b in zip(start, end)))
    tacs = read_tacs(path)
    np.testing.assert_allclose(tacs.frames.start * 60, start)
    np.testing.assert_allclose(tacs.frames.end * 60, end)
    assert "frames from gap.acqtimes" in " ".join(tacs.notes)


def test_voistat_of_several_images_is_refused(tmp_path):
    path = _voistat(tmp_path / "two.voistat", FRAMES.mid * 60)
    lines = path.read_text().splitlines()
    lines[-1] = lines[-1].replace("/data/pet.dcm", "/data/other.dcm")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"two\.voistat: PMOD \.voistat with several components"):
        read_tacs(path)


def _dft(path, *, times="Times", unit="kBq/mL", time_unit="(min)"):
    """A DFT file as the Turku PET Centre's dftWrite writes it: four title lines, then the frames."""
    s, e = FRAMES.start, FRAMES.end
    title = ["DFT1\tliver\tcortex", "s01\tdx\t.", f"{unit}\t.\tfrontal", f"{times} {time_unit}\t1.5e+03\t4.2e+02"]
    rows = [(f"{s[f]:.5f}\t{e[f]:.5f}" if times == "Times" else f"{FRAMES.mid[f]:.5f}")
            + f"\t{LIVER[f]:.6e}\t{CORTEX[f]:.6e}" for f in range(FRAMES.n_frames)]
    path.write_text("\n".join(title + rows) + "\n# comment := at the end\n")
    return path


def test_dft_regional_tacs(tmp_path):
    tacs = read_tacs(_dft(tmp_path / "s01.dft"))
    assert tacs.names == ("liver dx", "cortex frontal")
    np.testing.assert_allclose(tacs.values, [LIVER, CORTEX], rtol=1e-6)
    np.testing.assert_allclose(tacs.frames.start, FRAMES.start, atol=1e-5)
    mid = read_tacs(_dft(tmp_path / "s01.tac", times="Time", unit="Bq/cc", time_unit="(min)"))
    np.testing.assert_allclose(mid.values, [LIVER / 1000, CORTEX / 1000], rtol=1e-6)
    np.testing.assert_allclose(mid.frames.duration, FRAMES.duration, atol=1e-4)  # contiguous frames from 0, said
    assert "frames taken contiguous from 0 s" in " ".join(mid.notes)


@pytest.mark.parametrize("change,message", [
    ({"time_unit": "(h)"}, r"s01\.dft: DFT time unit '\(h\)'; jaxkin reads \(sec\) or \(min\)"),
    ({"times": "Start"}, r"s01\.dft: DFT 4th title line starts with 'Start'"),
    ({"unit": "."}, r"s01\.dft: the activity unit is not stated"),
    ({"unit": "cps"}, r"s01\.dft: column 'liver dx': unknown units 'cps'"),
])
def test_dft_ambiguities_are_refused(tmp_path, change, message):
    with pytest.raises(InputError, match=message):
        read_tacs(_dft(tmp_path / "s01.dft", **change))


def test_pmod_bld_and_tpc_plain_blood(tmp_path):
    tacs = read_tacs(_dft(tmp_path / "s01.dft"))
    bld = tmp_path / "plasma.bld"  # PMOD: the time and its unit, then the curve and its unit
    bld.write_text("sample-time[minutes]\tplasma[kBq/cc]\n"
                   + "".join(f"{t:g}\t{float(v)!r}\n" for t, v in zip(SAMPLE_MIN, PLASMA)))
    kbq = tmp_path / "s01ap.kbq"  # Turku PET Centre plain data: numbers, the units in comment lines
    kbq.write_text("# unit := Bq/cc\n# timeunit := sec\n"
                   + "".join(f"{t * 60:.3f}\t{v * 1000:.6e}\n" for t, v in zip(SAMPLE_MIN, PLASMA)))
    for path in (bld, kbq):
        blood = load_blood(path, pet=tacs)
        np.testing.assert_allclose(blood.input(SAMPLE_MIN), PLASMA, rtol=1e-6, err_msg=path.name)
        assert blood.description["InputFunctionSource"].startswith("AIF") and blood.whole_blood is None
        assert f"{path.name}: read as" in " ".join(blood.notes)


@pytest.mark.parametrize("text,message", [
    ("0.5\t10\n1\t20\n", r"s01ap\.kbq: a plain data file that does not state its time unit"),
    ("time[seconds]\tcurve1[kBq/cc]\tcurve2[kBq/cc]\n30\t1\t2\n60\t2\t3\n",
     r"s01ap\.kbq: 2 value columns \(curve1, curve2\); jaxkin reads one curve"),
    ("time[seconds]\tplasma[kBq/cc]\tblood[Bq/cc]\n30\t1\t2\n60\t2\t3\n",
     r"s01ap\.kbq: value columns in different units"),
])
def test_ambiguous_blood_files_are_refused(tmp_path, text, message):
    path = tmp_path / "s01ap.kbq"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_blood(path)
