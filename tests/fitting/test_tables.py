"""Regional fits written as tables: one request, the table and its sidecar as fit_regions gives them, the notes,
the weights it refuses, and how the cells are written."""

import json

import numpy as np
import pytest

import jaxkin
from jaxkin import kinetics
from jaxkin.io.blood import Blood
from jaxkin.io.tables import RegionalTacs
from jaxkin.fitting import OptionError, RegionalRequest, fit_regions, write_regional_fits
from jaxkin.fitting.tables import AIC_FORMULA, _cell

from _reference import FRAMES, INPUT


def _tacs(path=None, sd=None):
    params = np.array([[0.6, 0.9, 0.1, 0.05], [0.3, 0.5, 0.05, 0.1]])
    values = np.asarray(kinetics.two_tissue_irreversible(params, jaxkin.prepare(INPUT, FRAMES)), np.float64)
    return RegionalTacs(names=("liver", "lesion"), frames=FRAMES, values=values, sd=sd, path=path,
                        notes=("the table's note",), extra={"Assumptions": ["an earlier assumption"]})


def test_a_request_writes_the_table_and_its_sidecar(tmp_path):
    tacs = _tacs(path=tmp_path / "sub-01_tacs.tsv")
    blood = Blood(input=INPUT, sources=(tmp_path / "sub-01_blood.tsv",), notes=("the blood's note",))
    request = RegionalRequest(tacs, blood, str(tmp_path / "fits.tsv"), models="patlak", t_star=15.0,
                              command_line="jaxkin fit ...")
    written = write_regional_fits(request)
    assert written.paths == {"patlak": tmp_path / "fits.tsv"} and written.comparison is None
    header, *rows = [line.split("\t") for line in (tmp_path / "fits.tsv").read_text().splitlines()]
    expected = fit_regions(tacs.names, tacs.values, INPUT, FRAMES, model="patlak", t_star=15.0)
    assert header == list(expected.columns) and [r[0] for r in rows] == ["liver", "lesion"]
    np.testing.assert_allclose([float(r[1]) for r in rows], expected.columns["Ki"], rtol=1e-6)
    sidecar = json.loads((tmp_path / "fits.json").read_text())
    assert sidecar["ModelName"] == "patlak" and sidecar["TStarMinutes"] == 15.0 and sidecar["Ki"]["Units"]
    assert sidecar["Sources"] == ["sub-01_tacs.tsv", "sub-01_blood.tsv"] and sidecar["CommandLine"] == "jaxkin fit ..."
    assert sidecar["Assumptions"] == ["an earlier assumption", "the table's note", "the blood's note"]
    assert "AIC" not in sidecar and AIC_FORMULA.startswith("F ln(SSE/F)")


def test_the_notes_and_the_weights_a_request_refuses(tmp_path):
    tacs, blood = _tacs(path=tmp_path / "t.tsv"), Blood(input=INPUT)
    notes = RegionalRequest(tacs, blood, tmp_path / "f.tsv", weights="poisson").notes
    assert notes[0] == "the table's note" and "half-life of F-18" in notes[-1]
    with pytest.raises(OptionError) as err:
        RegionalRequest(tacs, blood, tmp_path / "f.tsv", weights="sd")
    assert str(err.value).startswith(f"weights sd: {tmp_path / 't.tsv'} has no regional SD per frame")
    assert RegionalRequest(_tacs(sd=np.ones((2, FRAMES.n_frames))), blood, tmp_path / "f.tsv", weights="sd")
    with pytest.raises(OptionError, match="only compartment models can be compared"):
        RegionalRequest(tacs, blood, tmp_path / "f.tsv", models=("2tcmirr", "patlak"))


def test_cells():
    assert [_cell(v) for v in (True, np.bool_(False), np.int64(3), 0.1234567891, np.float32(np.inf), "liver")] == [
        "true", "false", "3", "0.1234568", "n/a", "liver"]
