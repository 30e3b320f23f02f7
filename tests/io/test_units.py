"""Units at the file boundary (jaxkin.io.units): activity concentrations to kBq/ml, times to minutes, fractions."""

import pytest

from jaxkin import InputError
from jaxkin.input_function import MINUTES_PER_TIME_UNIT
from jaxkin.io.units import fraction_scale, time_units_to_min, units_to_kbq


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
