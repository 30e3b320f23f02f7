"""``jaxkin simulate`` (jaxkin.cli.simulate): bad options as one line naming the flag, exit status 2, nothing written."""

import subprocess
import sys
from pathlib import Path

import pytest

from jaxkin import cli


@pytest.mark.parametrize("args,message", [
    (["--subjects", "0"], "--subjects: must be at least 1"),
    (["--noise-scale", "-1"], "--noise-scale: must be >= 0"),
    (["--fwhm-mm", "-2"], "--fwhm-mm: must be >= 0"),
    (["--units", "SUV"], "--units: unknown units 'SUV'"),
    (["--fwhm-mm", "nan"], "--fwhm-mm: must be >= 0, got nan"),
])
def test_cli_bad_options(tmp_path, capsys, args, message):
    out = tmp_path / "ds"
    assert cli.main(["simulate", "--out", str(out)] + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxkin simulate: error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary folder left


def test_cli_refuses_a_non_empty_output(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert cli.main(["simulate", "--out", str(tmp_path)]) == 2
    assert "already exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_cli_unwritable_output(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert cli.main(["simulate", "--out", str(tmp_path / "file" / "ds")]) == 2
    assert "cannot create the dataset folder" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_exit_status_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jaxkin", "simulate", "--out", str(tmp_path / "x"), "--subjects",
                           "-3"], capture_output=True, text=True, cwd=Path(__file__).parents[2],
                          env={"PYTHONPATH": str(Path(__file__).parents[2]), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "jaxkin simulate: error: --subjects: must be at least 1, got -3"
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()
