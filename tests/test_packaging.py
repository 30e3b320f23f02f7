"""The package is ready to publish: its sdist and wheel build from the sources (``python -m build``, with the
backend of the environment, so no download) and ``twine check --strict`` passes them (metadata, the README as the
long description, the project URLs). ``build`` and ``twine`` come with the ``test`` extra."""

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The version the files are named by (read from the source, without importing jaxkin and JAX).
VERSION = next(line.split("=")[1].strip().strip("\"'") for line in (ROOT / "jaxkin" / "_version.py").read_text()
               .splitlines() if line.startswith("__version__"))

#: The repository's address, as the project URLs, the README and the notebook give it.
REPOSITORY = "https://github.com/jaxkin/jaxkin"


def test_the_project_urls_name_one_repository():
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Repository"] == urls["Homepage"] == REPOSITORY
    assert all(u.startswith(REPOSITORY) for u in urls.values())
    assert REPOSITORY in (ROOT / "notebooks" / "jaxkin_colab.ipynb").read_text()


@pytest.mark.slow
def test_sdist_and_wheel_build_and_pass_twine_check(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "jaxkin", src / "jaxkin", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir",
                            str(dist), str(src)], check=False, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheel = dist / f"jaxkin-{VERSION}-py3-none-any.whl"
    sdist = dist / f"jaxkin-{VERSION}.tar.gz"
    assert wheel.is_file() and sdist.is_file(), sorted(p.name for p in dist.iterdir())
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(f"jaxkin-{VERSION}.dist-info/METADATA").decode()
    assert "jaxkin/cli/fit.py" in names and not any(n.startswith("tests/") for n in names)
    assert f"Project-URL: Repository, {REPOSITORY}" in metadata
    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
                             check=False, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
