"""Units at the file boundary (jaxkin.io.units): activity concentrations to kBq/ml, times to minutes, fractions."""

import pytest

from jaxkin import InputError
from jaxkin.input_function import MINUTES_PER_TIME_UNIT
from jaxkin.io.units import (
    ACTIVITY,
    dose_from_sidecar,
    fraction_scale,
    read_value_units,
    time_units_to_min,
    unit_kind,
    units_to_kbq,
)


@pytest.mark.parametrize("units,scale", [("Bq/mL", 1e-3), ("Bq/ml", 1e-3), ("kBq/mL", 1.0), ("KBQ/ML", 1.0),
                                         ("MBq/mL", 1e3), ("kBq/cc", 1.0)])
def test_units_accepted(units, scale):
    assert units_to_kbq(units) == scale


@pytest.mark.parametrize("units,minutes", [("s", 1 / 60), ("Seconds", 1 / 60), (" secs ", 1 / 60), ("min", 1.0),
                                           ("MINUTES", 1.0), ("mins", 1.0)])
def test_time_units_are_the_one_table(units, minutes):
    assert time_units_to_min(units) == minutes == MINUTES_PER_TIME_UNIT[units.strip().lower()]
    with pytest.raises(InputError, match=r"blood\.json: field 'time\.Units': unknown time unit 'h'; use s or min"):
        time_units_to_min("h", where="blood.json: field 'time.Units'")


def test_fraction_units():
    assert fraction_scale(None, where="x") is None
    assert fraction_scale("unitless", where="x") == fraction_scale("", where="x") == 1.0
    assert fraction_scale("%", where="x") == fraction_scale("percent", where="x") == 0.01
    with pytest.raises(InputError, match="f.json: unknown units 'ppm' for a fraction"):
        fraction_scale("ppm", where="f.json")


# ------------------------------------------------------------------------------------------ SUV, %ID/g, arbitrary units


def test_relative_units_kinds():
    assert unit_kind("kBq/cc") == ACTIVITY
    assert unit_kind("SUV") == unit_kind("g/mL") == unit_kind("suvbw") == "SUV"
    assert unit_kind("%ID/g") == unit_kind("%ID/cc") == "%ID/g"
    assert unit_kind("a.u.") == unit_kind("arbitrary") == "arbitrary"
    with pytest.raises(InputError):
        unit_kind("cps")


def test_suv_converted_with_the_dose_in_closed_form():
    """SUV = C / (injected activity / body weight): C [kBq/mL] = SUV x injected [kBq] / weight [g]."""
    dose = dose_from_sidecar({"InjectedRadioactivity": 370, "InjectedRadioactivityUnits": "MBq", "BodyWeight": 74},
                             "sub-01_pet.json")
    assert dose.injected_kbq == 370e3 and dose.body_weight_g == 74e3
    read = read_value_units("SUV", where="tacs.tsv", dose=dose)
    assert read.kind == ACTIVITY and read.scale == pytest.approx(370e3 / 74e3)
    assert "SUV converted to kBq/mL (x injected 370 MBq / body weight 74 kg, from sub-01_pet.json)" == read.note
    assert read_value_units("%ID/g", where="x", dose=dose).scale == pytest.approx(370e3 / 100)
    mci = dose_from_sidecar({"InjectedRadioactivity": 10, "InjectedRadioactivityUnits": "mCi"}, "x.json")
    assert mci.injected_kbq == pytest.approx(370e3) and mci.body_weight_g is None


def test_relative_units_kept_or_refused():
    kept = read_value_units("SUV", where="blood.json", want="SUV")
    assert (kept.kind, kept.scale, kept.note) == ("SUV", 1.0, None)
    assert read_value_units("SUV", where="x").kind == "SUV"  # nothing to convert with, nothing to match: kept
    no_weight = dose_from_sidecar({"InjectedRadioactivity": 5, "InjectedRadioactivityUnits": "mCi"}, "b.json")
    with pytest.raises(InputError, match=r"^blood\.json: values in SUV cannot be reconciled with tissue in kBq/mL "
                                         r"\(activity\): give both in the same unit, or BodyWeight"):
        read_value_units("SUV", where="blood.json", dose=no_weight, want=ACTIVITY)
    with pytest.raises(InputError, match=r"^p\.json: field 'InjectedRadioactivityUnits': 'MBq/mL'"):
        dose_from_sidecar({"InjectedRadioactivity": 5, "InjectedRadioactivityUnits": "MBq/mL"}, "p.json")
    with pytest.raises(InputError, match=r"^p\.json: field 'BodyWeight': -70 is not a positive number"):
        dose_from_sidecar({"InjectedRadioactivity": 5, "InjectedRadioactivityUnits": "MBq", "BodyWeight": -70},
                          "p.json")
