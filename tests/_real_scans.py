"""One scan in the forms real datasets carry it, and its canonical form: what the kinetic models compute in (time
since injection, the parent plasma as the input, the whole blood for the vB term, activities decay corrected to the
injection, kBq/mL). Tests write one real form (late start with negative blood times, decay correction to the scan
start, an uncorrected image, plasma + parent fraction + whole blood, two recordings, BQML units, ...), read it back
the way ``jaxkin fit`` does (:func:`fit`) and compare the maps with the canonical fit (:func:`canonical_maps`).
Shared by tests/io/test_pet.py, test_blood.py and test_blood_recordings.py."""

import json
import math

import numpy as np

from jaxkin import FrameSchedule, InputFunction
from jaxkin.decay import F18_HALF_LIFE_MIN
from jaxkin.fitting import LM, fit_volume
from jaxkin.input_function import feng
from jaxkin.io.blood import load_blood
from jaxkin.io.pet import load_pet, write_pet
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


def canonical_curves():
    """The input (parent plasma) and whole blood on the knots the combination rule keeps: the autosampler's over its
    range, the manual samples after it; the parent fraction interpolated linearly from (0, 1) through the manual
    samples (what BIDS blood data give: samples, not a model)."""
    knots = np.concatenate([AUTO_T, MANUAL_T[MANUAL_T > AUTO_T[-1]]])
    wb = wb_true(knots)
    pf = np.interp(knots, np.concatenate([[0.0], MANUAL_T]), np.concatenate([[1.0], pf_true(MANUAL_T)]))
    return InputFunction(knots, RATIO * wb * pf), InputFunction(knots, wb)


INPUT, WHOLE_BLOOD = canonical_curves()


def random_params(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(0.1, 1.0, n), rng.uniform(0.2, 1.5, n), rng.uniform(0.02, 0.3, n),
                     rng.uniform(0.01, 0.2, n)], axis=1)


def canonical_maps():
    """Noisy TACs [X, Y, Z, F] (kBq/mL, decay corrected to the injection) and their canonical fitted maps."""
    kin = prepare(INPUT, FRAMES, WHOLE_BLOOD)
    n = int(np.prod(SHAPE))
    tacs = tacs_in_chunks(random_params(n), kin).astype(np.float64)
    rng = np.random.default_rng(1)
    tacs = tacs * (1 + 0.03 * rng.standard_normal(tacs.shape))
    data = tacs.reshape(*SHAPE, FRAMES.n_frames).astype(np.float32)
    fit = fit_volume(data, kin, LM(n_iter=N_ITER), mask=np.ones(SHAPE, bool), chunk_size=64, progress=False)
    return data, fit.maps


def pet_sidecar(**changes):
    meta = {"TracerName": "FDG", "TracerRadionuclide": "F18", "Units": "kBq/mL", "TimeZero": "10:00:00",
            "InjectionStart": INJ * 60, "ScanStart": 0, "ImageDecayCorrected": True,
            "ImageDecayCorrectionTime": INJ * 60}
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not None}


def write_pet_file(path, data, sidecar):
    return write_pet(path, data, FRAMES_TZ, np.diag([2.0, 2.0, 2.0, 1.0]), units=sidecar["Units"],
                          sidecar=sidecar)


def write_recording(path, columns: dict, units: dict | None = None, flags: dict | None = None):
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


def recordings(folder, *, scale=1.0, units="kBq/mL", decay=lambda t: 1.0, pf_percent=False, prefix="sub-01"):
    """The autosampler (whole blood) and manual (plasma, whole blood, parent fraction) recordings, times relative
    to TimeZero (negative before it)."""
    tz = lambda t: (t + INJ) * 60.0  # noqa: E731  min since injection -> s relative to TimeZero
    auto = write_recording(folder / f"{prefix}_recording-autosampler_blood.tsv",
                      {"time": tz(AUTO_T), "whole_blood_radioactivity": wb_true(AUTO_T) * decay(AUTO_T) / scale},
                      {"time": "s", "whole_blood_radioactivity": units},
                      {"PlasmaAvail": False, "WholeBloodAvail": True, "MetaboliteAvail": False,
                       "DispersionCorrected": True})
    wb = wb_true(MANUAL_T) * decay(MANUAL_T) / scale
    pf = pf_true(MANUAL_T) * (100.0 if pf_percent else 1.0)
    manual = write_recording(folder / f"{prefix}_recording-manual_blood.tsv",
                        {"time": tz(MANUAL_T), "plasma_radioactivity": RATIO * wb, "whole_blood_radioactivity": wb,
                         "metabolite_parent_fraction": pf},
                        {"time": "s", "plasma_radioactivity": units, "whole_blood_radioactivity": units,
                         **({} if pf_percent else {"metabolite_parent_fraction": "unitless"})},
                        {"PlasmaAvail": True, "WholeBloodAvail": True, "MetaboliteAvail": True})
    return [auto, manual]


def fit(pet_path, blood_paths, **blood_options):
    pet = load_pet(pet_path)
    blood = load_blood(blood_paths, pet=pet, **blood_options)
    kin = prepare(blood.input, pet.frames, blood.whole_blood)
    fit = fit_volume(pet, kin, LM(n_iter=N_ITER), mask=np.ones(SHAPE, bool), chunk_size=64, progress=False)
    return fit.maps, pet, blood


def assert_same_maps(maps, reference, *, same_bits=True):
    """Maps agree to 1e-4 when the image holds the canonical float32 values. When a unit or decay factor multiplies
    the stored float32 values, the data read back differ in the last bits (checked to 1e-6 by the callers) and the
    float32 LM resolves parameters only to a few 1e-4 (perturbing the data by 1e-7 moves k2 by 8e-4): 3e-3 then."""
    rtol = 1e-4 if same_bits else 3e-3
    for name in ("K1", "k2", "k3", "vB", "Ki"):
        np.testing.assert_allclose(maps[name], reference[name], rtol=rtol, atol=1e-6, err_msg=name)
