"""Tables of regional TACs (jaxkin.io.tables): jaxkin's own, PMOD's and kinfitr's layouts, units, frames and the
checks, each naming the file, the line and the column."""

import numpy as np
import pytest

from _label_forms import FRAMES, make_scan
from jaxkin import InputError
from jaxkin.io.labels import read_labels
from jaxkin.io.pet import load_pet
from jaxkin.io.tables import read_tacs, write_tacs
from jaxkin.regions.tacs import regional_tacs


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    return make_scan(tmp_path_factory.mktemp("label_forms"))


def test_pmod_and_kinfitr_tables(scan, tmp_path):
    pet = load_pet(scan["pet"])
    tacs = regional_tacs(pet, read_labels(scan["dseg"], pet=pet), ["liver", "spleen"])
    own = write_tacs(tmp_path / "own.tsv", tacs)
    s, e = FRAMES.start * 60, FRAMES.end * 60
    lines = ["start[seconds]\tend[kBq/cc]\tliver\tspleen"]  # PMOD: the activity unit sits on the end column
    lines += [f"{s[f]:g}\t{e[f]:g}\t{tacs.values[0, f] * 1000:.9g}\t{tacs.values[1, f] * 1000:.9g}"
              for f in range(FRAMES.n_frames)]
    (tmp_path / "pmod.tac").write_text("\n".join(lines).replace("kBq/cc", "Bq/cc") + "\n")
    mid = FRAMES.mid
    csv = ["Times,Duration,Weights,liver,spleen"] + [
        f"{mid[f]:.9g},{FRAMES.duration[f]:.9g},1,{tacs.values[0, f]:.9g},{tacs.values[1, f]:.9g}"
        for f in range(FRAMES.n_frames)]
    (tmp_path / "kinfitr.csv").write_text("\n".join(csv) + "\n")
    read = {"own": read_tacs(own), "pmod": read_tacs(tmp_path / "pmod.tac"),
            "kinfitr": read_tacs(tmp_path / "kinfitr.csv", time_unit="min", units="kBq/mL")}
    for name, t in read.items():
        assert t.names == ("liver", "spleen"), name
        np.testing.assert_allclose(t.values, tacs.values, rtol=1e-7, err_msg=name)
        np.testing.assert_allclose(t.frames.start, FRAMES.start, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(t.frames.duration, FRAMES.duration, atol=1e-7, err_msg=name)
    assert read["own"].sd is not None and read["pmod"].sd is None
    with pytest.raises(InputError, match="do not state their unit"):
        read_tacs(tmp_path / "kinfitr.csv", units="kBq/mL")
    with pytest.raises(InputError, match="activity unit is not stated"):
        read_tacs(tmp_path / "kinfitr.csv", time_unit="min")
    (tmp_path / "mid.tsv").write_text("mid[min]\tliver\n1\t2\n3\t4\n")
    with pytest.raises(InputError, match="only frame mid times"):
        read_tacs(tmp_path / "mid.tsv", units="kBq/mL")
    bad = own.read_text().splitlines()
    cells = bad[3].split("\t")
    cells[2] = "nan"
    bad[3] = "\t".join(cells)
    (tmp_path / "nan.tsv").write_text("\n".join(bad) + "\n")
    (tmp_path / "nan.json").write_text(own.with_suffix(".json").read_text())
    with pytest.raises(InputError, match=r"nan\.tsv: column 'liver', line 4: 'nan'"):
        read_tacs(tmp_path / "nan.tsv")


@pytest.mark.parametrize("rows,message", [
    ([[0, 10, 1], [10, 10, 2]], r"frame 1 \(line 3\) has a duration of 0 s"),
    ([[0, 10, 1], [0, 20, 2]], r"frame starts must increase; frame 1 \(line 3\) does not"),
    ([[0, 10, 1], [9.99, 20, 2]], r"frames overlap: frame 1 \(line 3\) starts before frame 0 ends"),
])
def test_bad_frames_name_the_line(tmp_path, rows, message):
    path = tmp_path / "t.tsv"
    path.write_text("start[s]\tend[s]\tliver[kBq/mL]\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    with pytest.raises(InputError, match=r"t\.tsv: " + message):
        read_tacs(path)


def test_frames_overlapping_by_rounding_are_accepted_and_units_spelled_out(tmp_path):
    """The one frame check (jaxkin.frames.frame_problem): 1 ms of rounding allowed; "secs" is seconds."""
    path = tmp_path / "t.tsv"
    path.write_text("start[secs]\tend[secs]\tliver\n0\t10.0005\t1\n10\t20\t2\n")
    tacs = read_tacs(path, units="kBq/mL", injection_start=0)
    np.testing.assert_allclose(tacs.frames.start, [0, 10 / 60])
    with pytest.raises(InputError, match="time unit 'h' is neither seconds nor minutes"):
        read_tacs(_renamed(path, "t2.tsv", None), time_unit="h", units="kBq/mL")
    with pytest.raises(InputError, match="do not state their unit .* or give time_unit"):
        read_tacs(_renamed(path, "t3.tsv", None), units="kBq/mL")


def _renamed(path, name, unit):
    """The table at ``path`` with its time brackets replaced by ``[unit]`` (none when None), as ``name``."""
    text = path.read_text().replace("[secs]", f"[{unit}]" if unit else "")
    out = path.with_name(name)
    out.write_text(text)
    return out


def test_per_column_units_of_the_sidecar(tmp_path):
    """The BIDS way: each column's ``Units`` in the sidecar (the PBR28 tables state no top-level unit)."""
    import json

    path = tmp_path / "pbr28_tacs.tsv"
    path.write_text("frame_start\tframe_end\tliver\tcortex\n0\t60\t1000\t2\n60\t180\t1500\t3\n")
    side = {"frame_start": {"Units": "s"}, "frame_end": {"Units": "s"}, "liver": {"Units": "Bq/mL"},
            "cortex": {"Units": "kBq/mL"}}
    path.with_suffix(".json").write_text(json.dumps(side))
    tacs = read_tacs(path)
    np.testing.assert_allclose(tacs.values, [[1.0, 1.5], [2.0, 3.0]])
    side["cortex"] = {"Description": "no unit"}
    path.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(InputError, match=r"pbr28_tacs\.tsv: the activity unit is not stated .*\"cortex\": "):
        read_tacs(path)
    side["cortex"] = {"Units": "SUV"}
    path.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(InputError, match=r"pbr28_tacs\.tsv: regions in units that cannot be reconciled "
                                         r"\(SUV, activity\)"):
        read_tacs(path)
