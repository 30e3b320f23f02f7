"""The documentation builds in strict mode (every warning an error, every jaxkin reference resolved), documents
every public name, and its guide covers every command."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import jaxkin
from jaxkin.cli import build_parser

pytestmark = pytest.mark.slow  # builds the documentation (about 25 s)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-n", "-E", "-q", "-b", "html", str(DOCS), str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _api_modules():
    """The modules the API pages document (``.. automodule:: X``)."""
    text = "".join(p.read_text() for p in (DOCS / "api").glob("*.md"))
    return re.findall(r"\.\. automodule:: (jaxkin[\w.]*)", text)


@pytest.mark.slow
def test_every_public_name_is_documented(site):
    html = "".join(p.read_text(encoding="utf-8") for p in (site / "api").glob("*.html"))
    modules = [m for m in _api_modules() if m != "jaxkin"]
    assert "jaxkin.fitting.lm" in modules and "jaxkin.io.blood" in modules
    missing = []
    for name in modules:
        module = importlib.import_module(name)
        for member in getattr(module, "__all__", []):
            if f'id="{name}.{member}"' not in html:  # autodoc leaves out a member without a docstring
                missing.append(f"{name}.{member}")
    assert not missing, f"public names without documentation (add a docstring or a #: comment): {missing}"
    names = (site / "api" / "names.html").read_text(encoding="utf-8")
    for member in jaxkin.__all__:
        if not member.startswith("__"):
            assert f"jaxkin.{member}" in names, member


def test_every_command_is_in_the_user_guide_and_the_reference(site):
    guide = "".join(p.read_text() for p in [*(DOCS / "guide").glob("*.md"), DOCS / "quickstart.md"])
    cli = (site / "cli.html").read_text(encoding="utf-8")
    subparsers = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for command in subparsers.choices:
        assert f"jaxkin {command}" in guide, f"jaxkin {command} is not explained in docs/guide"
        assert f"jaxkin {command}" in cli


def test_the_tutorial_and_the_changelog_are_pages(site):
    assert "jaxkin" in (site / "tutorial.html").read_text(encoding="utf-8")
    changelog = (site / "changelog.html").read_text(encoding="utf-8")
    assert jaxkin.__version__ in changelog
