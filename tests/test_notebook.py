"""The Colab notebook runs headless on a CPU with the smallest settings (its code cells executed in order)."""

from __future__ import annotations

import pytest
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_colab_notebook_runs_headless(tmp_path, monkeypatch):
    notebook = json.loads((ROOT / "notebooks" / "jaxkin_colab.ipynb").read_text())
    monkeypatch.setenv("JAXKIN_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("JAXKIN_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": "__notebook__"}
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert len(cells) >= 8
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        assert not any(line.lstrip().startswith(("!", "%")) for line in source.splitlines()), "no shell magics"
        exec(compile(source, f"notebook cell {i}", "exec"), namespace)
    report = tmp_path / "run" / "evaluation"
    methods = {line.split("\t")[0] for line in (report / "tac_metrics.tsv").read_text().splitlines()[1:]}
    assert methods == {"network", "LM"}
    assert (report / "figures" / "organ_bars.png").is_file()
    assert namespace["summary"]["test"]["voxels"] > 0
    # the LM fit of the noisy test subject reproduces its TACs far better than chance (cosine similarity of TACs)
    lm = [line.split("\t") for line in (report / "tac_metrics.tsv").read_text().splitlines()[1:] if line.startswith("LM")]
    assert float(lm[0][3]) > 0.9
