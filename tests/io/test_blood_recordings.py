"""BIDS blood recordings read into samples (jaxkin.io.blood_recordings): times to minutes since injection, units and
decay to kBq/ml at the injection, parent fractions, the availability flags, continuous recordings, bad values."""

import json
import math

import numpy as np
import pytest

import _real_scans as real
from jaxkin import InputError
from jaxkin.io.blood_recordings import read_recordings

#: Reading as load_blood does without a scan: the injection at TimeZero, activities decay corrected to it.
OPTIONS = {"injection_start": 0.0, "half_life": None, "blood_decay": "injection"}


def test_series_in_minutes_since_injection_and_kbq_at_the_injection(tmp_path):
    auto, manual = real.recordings(tmp_path, scale=1e-3, units="Bq/mL", decay=lambda t: np.exp(-real.LAM * t),
                                   pf_percent=True)
    found = read_recordings([auto, manual], injection_start=real.INJ, half_life=real.F18_HALF_LIFE_MIN, blood_decay="none")
    (wb_auto, wb_manual) = found.series["whole_blood_radioactivity"]
    assert wb_auto.continuous and not wb_manual.continuous and wb_auto.label == "autosampler"
    np.testing.assert_allclose(wb_auto.t, real.AUTO_T, atol=1e-12)
    np.testing.assert_allclose(wb_auto.v, real.wb_true(real.AUTO_T), rtol=1e-9)
    (fraction,) = found.series["metabolite_parent_fraction"]
    np.testing.assert_allclose(fraction.v, real.pf_true(real.MANUAL_T), rtol=1e-12)
    assert any("read as percent" in n for n in found.notes)
    assert found.series["AIF"] == [] and found.not_dispersion_corrected == []
    to_timezero = read_recordings([auto], injection_start=real.INJ, half_life=real.F18_HALF_LIFE_MIN, blood_decay="timezero")
    factor = math.exp(real.LAM * -real.INJ)
    np.testing.assert_allclose(to_timezero.series["whole_blood_radioactivity"][0].v,
                               real.wb_true(real.AUTO_T) * np.exp(-real.LAM * real.AUTO_T) * factor, rtol=1e-9)


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
        read_recordings([path], **OPTIONS)


def test_ragged_blood_rows_are_refused(tmp_path):
    path = tmp_path / "sub-01_recording-manual_blood.tsv"
    path.write_text("time\tplasma_radioactivity\n0\t1\n60\n")
    with pytest.raises(InputError, match=r"blood\.tsv: line 3 has 1 columns, the header has 2"):
        read_recordings([path], **OPTIONS)


def test_flags_that_contradict_the_columns_are_refused(tmp_path):
    path = real.write_recording(tmp_path / "sub-01_recording-manual_blood.tsv",
                                {"time": [0.0, 60.0], "plasma_radioactivity": [1.0, 2.0]},
                                {"time": "s", "plasma_radioactivity": "kBq/mL"})
    meta = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**meta, "WholeBloodAvail": True}))
    with pytest.raises(InputError, match=r"blood\.json: field 'WholeBloodAvail' is true but .* has no "
                                         r"'whole_blood_radioactivity' values"):
        read_recordings([path], **OPTIONS)
