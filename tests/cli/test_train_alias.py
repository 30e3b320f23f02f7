"""``python -m jaxkin.train`` is the ``jaxkin train`` command: same options, same one-line errors."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "jaxkin.train", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_help_lists_the_train_options():
    proc = _run("--help")
    assert proc.returncode == 0, proc.stderr
    assert "--config" in proc.stdout and "--resume" in proc.stdout and "--coordinator" in proc.stdout


def test_a_missing_config_is_one_line_and_exit_status_2(tmp_path):
    proc = _run("--config", str(tmp_path / "nope.py"), "--workdir", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"jaxkin train: error: {tmp_path / 'nope.py'}: config file not found"
    assert not (tmp_path / "run").exists()
