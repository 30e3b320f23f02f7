"""Sphinx configuration of the jaxkin documentation: ``sphinx-build -W -n -b html docs docs/_build/html``.

Why Sphinx (and not mkdocs): jaxkin's docstrings are reStructuredText (``:func:``, ``:class:``, double-backtick
literals), which autodoc renders and cross-links natively; ``-n`` (nitpicky) with ``-W`` turns every broken
reference to a jaxkin name into an error. Guide pages are Markdown (MyST), the Colab notebook is rendered by
myst-nb without being executed, and the command-line reference is generated from jaxkin's own argparse parsers
at build time, so it cannot drift from the code.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JAXKIN_CACHE_DIR", "off")

import jaxkin  # noqa: E402

project = "jaxkin"
author = "the jaxkin developers"
copyright = "2026, the jaxkin developers"
release = version = jaxkin.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode", "myst_nb"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "jupyter_execute"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # the tutorial is rendered as written (it trains a network: minutes of CPU)

html_theme = "furo"
html_title = f"jaxkin {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
autoclass_content = "class"

# Nitpicky: every reference must resolve. Only jaxkin's own names are checked; references to other libraries'
# types (numpy, jax, flax, pathlib, typing, ...) are not documented here and are left as plain text.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"^(?!jaxkin\b).*"),  # anything that is not jaxkin's
    (r"py:.*", r"^jaxkin\..*\._[a-z].*"),  # private helpers named in signatures
]
suppress_warnings = ["myst.header"]


def _write_cli_reference(app) -> None:
    """docs/cli.md from the parsers themselves: every command's ``--help``."""
    from jaxkin.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    lines = ["# Command line", "", "Generated from the parsers at build time (`jaxkin <command> --help`).", "",
             "```text", parser.format_help().rstrip(), "```", ""]
    for name, sub in subparsers.choices.items():
        lines += [f"## jaxkin {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
    target = HERE / "cli.md"
    text = "\n".join(lines)
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


def _write_top_level_names(app) -> None:
    """docs/api/names.md: each name of ``jaxkin.__all__`` linked to where it is documented (every link must
    resolve: a top-level name without documentation fails the strict build)."""
    lines = ["# Top-level names", "", "`import jaxkin` gives these names; each links to its documentation.", "",
             "| name | defined in |", "|---|---|"]
    for name in jaxkin.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(jaxkin, name)
        module = getattr(obj, "__module__", None) if callable(obj) else None
        if module is None:  # a constant: documented with its module (``#:`` comment)
            module = next(m for m in ("jaxkin.kinetics.models", "jaxkin.frames", "jaxkin.decay") if hasattr(
                sys.modules[m], name))
        role = "class" if isinstance(obj, type) else ("func" if callable(obj) else "data")
        lines.append(f"| `jaxkin.{name}` | {{py:{role}}}`{module}.{name}` |")
    target = HERE / "api" / "names.md"
    text = "\n".join(lines) + "\n"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


def _copy_notebook(app) -> None:
    """The Colab notebook, rendered as the tutorial page (copied: Sphinx reads only its source folder)."""
    target = HERE / "tutorial.ipynb"
    source = ROOT / "notebooks" / "jaxkin_colab.ipynb"
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)


def _resolve_reexports(app, env, node, contnode):
    """Resolve ``jaxkin.X`` (and ``jaxkin.sub.X``) to where X is documented: the module that defines it. Docstrings
    name objects as users import them; Sphinx documents each once, at its definition."""
    import importlib

    from sphinx.errors import NoUri

    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("jaxkin."):
        return None
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        break
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if module is None and name is None:  # a constant: documented in the deepest module that lists it in __all__
        package, name = ".".join(parts[:i]), parts[-1]
        module = max((m for m, mod in list(sys.modules.items()) if (m == package or m.startswith(package + "."))
                      and name in getattr(mod, "__all__", ()) and getattr(mod, name, None) is obj),
                     key=lambda m: m.count("."), default=None)
    if not module or not name or f"{module}.{name}" == target:
        return None
    domain = env.get_domain("py")
    node["reftarget"] = f"{module}.{name}"
    try:
        return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], f"{module}.{name}", node,
                                   contnode)
    except NoUri:
        return None


def setup(app):
    app.connect("missing-reference", _resolve_reexports)
    app.connect("builder-inited", _write_cli_reference)
    app.connect("builder-inited", _copy_notebook)
    app.connect("builder-inited", _write_top_level_names)
