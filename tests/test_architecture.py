"""The layout's rules, checked on the source: data flows one way between the packages, no module imports one that
imports it back, the library never imports the command line, and each shared fact has one definition."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import jaxkin
from jaxkin import kinetics
from jaxkin.cli import fit as fit_cli
from jaxkin.fitting import GRAPHICAL_METHODS, output_maps

PACKAGE = Path(jaxkin.__file__).parent

#: Layers, lowest first: a module may import modules of its own layer or below, never above.
LAYERS = [
    {"jaxkin._version", "jaxkin.errors", "jaxkin.frames", "jaxkin.input_function", "jaxkin.decay"},
    {"jaxkin.kinetics", "jaxkin.distributed"},
    {"jaxkin.io"},
    {"jaxkin.regions", "jaxkin.phantom"},
    {"jaxkin.fitting", "jaxkin.nn"},
    {"jaxkin.evaluation"},
    {"jaxkin.network"},
    {"jaxkin.cli", "jaxkin.train", "jaxkin.__main__", "jaxkin"},
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if module in layer or any(module.startswith(unit + ".") for unit in layer if unit != "jaxkin"):
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py; add it")


def _imports(path: Path) -> set[str]:
    """Every jaxkin module ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("jaxkin")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxkin") and not node.level:
            for alias in node.names:  # `from jaxkin.x import y`: y is a submodule, or a name defined by jaxkin.x
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in _ALL_MODULES else node.module)
    return found


SOURCES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
_ALL_MODULES = set(SOURCES)
GRAPH = {name: {m for m in _imports(path) if m in SOURCES and m != name} for name, path in SOURCES.items()}


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_imports_go_down_the_layers(module):
    upward = [m for m in GRAPH[module] if _layer(m) > _layer(module)]
    assert not upward, f"{module} (layer {_layer(module)}) imports {upward} from a higher layer"


def test_no_import_cycles():
    """No module reaches itself through the modules it imports (package __init__ files re-export, so edges into
    a package's own __init__ from inside the package are not followed)."""

    def follow(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in GRAPH[todo.pop()]:
                if nxt not in seen and not start.startswith(nxt + "."):
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = [m for m in GRAPH if m in follow(m) and not SOURCES[m].name == "__init__.py"]
    assert not cycles, f"import cycles through {cycles}"


def test_library_never_imports_the_command_line():
    library = [m for m in GRAPH if _layer(m) < _layer("jaxkin.cli")]
    assert not [m for m in library if any(d.startswith("jaxkin.cli") for d in GRAPH[m])]


def test_fit_command_offers_every_model_and_graphical_method():
    """The command line takes the models it offers from the library: one list, FIT_MODELS, no copy."""
    from jaxkin.cli import build_parser
    from jaxkin.fitting import FIT_MODELS

    assert sorted(FIT_MODELS) == sorted(set(kinetics.MODELS) | set(GRAPHICAL_METHODS))
    subparsers = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    model = next(a for a in subparsers.choices["fit"]._actions if a.dest == "model")
    assert model.metavar == "|".join(FIT_MODELS) and model.default == FIT_MODELS[0]
    assert not any(isinstance(v, tuple) and "patlak" in v for v in vars(fit_cli).values())


def test_units_have_one_definition():
    for model in kinetics.MODELS.values():
        assert model.units == {n: kinetics.UNITS[n] for n in model.map_names}
        written = output_maps(model.name)
        assert all(written[n] == kinetics.UNITS[n] for n in model.map_names)
    assert output_maps("logan")["intercept"] == "min" and output_maps("logan")["VT"] == kinetics.UNITS["VT"]
    assert output_maps("patlak")["Ki"] == kinetics.UNITS["Ki"]


def test_bounds_and_half_life_have_one_definition():
    """The literal values live in kinetics.models and decay only; every other module refers to them."""
    bounds = ("(0.01, 0.01, 0.01, 0.0)", "(2.0, 3.0, 1.0, 1.0)")
    for name, path in SOURCES.items():
        text = path.read_text()
        if name != "jaxkin.kinetics.models":
            assert not any(b in text for b in bounds), f"{name} repeats the FDG bounds"
        if name != "jaxkin.decay":
            assert "109.77 " not in text.replace("109.77 min", ""), f"{name} repeats the F-18 half-life"


def test_every_public_name_resolves():
    """``jaxkin.__all__`` (the network half imported on first use) and each subpackage's ``__all__``."""
    import importlib

    for module in ("jaxkin", "jaxkin.fitting", "jaxkin.io", "jaxkin.regions", "jaxkin.phantom", "jaxkin.nn", "jaxkin.network", "jaxkin.evaluation"):
        mod = importlib.import_module(module)
        missing = [name for name in mod.__all__ if not hasattr(mod, name)]
        assert not missing, f"{module}.__all__ names {missing}, which do not exist"


# --------------------------------------------------------------------------------------------------
# Size, the command line's vocabulary, one definition per fact
# --------------------------------------------------------------------------------------------------

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
LIBRARY = {name: path for name, path in SOURCES.items() if not name.startswith("jaxkin.cli")
           and name not in ("jaxkin.__main__", "jaxkin.train")}


def test_no_module_is_too_long():
    long = {name: n for name, path in SOURCES.items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_too_long():
    long = []
    for name, path in SOURCES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


#: A command-line flag of jaxkin (XLA's own options, ``--xla_...`` in ``XLA_FLAGS``, are not jaxkin's).
_FLAG = re.compile(r"(?<![\w-])--(?!xla_)[a-z][a-z0-9-]*")


@pytest.mark.parametrize("module", sorted(LIBRARY))
def test_library_does_not_speak_in_flags(module):
    """Only the command line knows its options: library messages and docstrings name parameters and files."""
    text = LIBRARY[module].read_text()
    flags = sorted(set(_FLAG.findall(text)))
    assert not flags, f"{module} mentions the command-line flags {flags}"
    imported = {a.name for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module for node in ast.walk(ast.parse(text)) if isinstance(node, ast.ImportFrom)}
    assert "argparse" not in imported, f"{module} imports argparse"


def test_flag_pattern_finds_flags():
    assert _FLAG.findall('raise InputError(f"--bounds: {x}")  # see --delay voxel') == ["--bounds", "--delay"]
    assert not _FLAG.findall("x = a--b  # ------- a -1 --> 2; XLA_FLAGS=--xla_force_host_platform_device_count=2")


#: Facts that must have exactly one definition in the library: (what, pattern of its definition).
ONE_DEFINITION = {
    "the affine tolerance of 'the same grid'": r"^\s*_?AFFINE_ATOL\s*=",
    "the BIDS version jaxkin writes": r"\"1\.\d+\.\d+\"",
    "the ground-truth derivative's folder": r"[\"']groundtruth[\"']",
    "the table of time units": r"[\"']secs[\"']",
    "the voxel MAE": r"^def voxel_mae\b",
    "the voxel cosine similarity": r"^def voxel_cosine\b",
    "the FDG model's name": r"^\s*FDG_MODEL\s*=",
    "the knot recurrence": r"i_next = e_j \* i_start \+ b_j",
    "the cubic Hermite basis": r"2 \* s3 - 3 \* s2 \+ 1",
    "the frames' overlap tolerance": r"^FRAME_OVERLAP_TOLERANCE\s*=",
    "the check of a frame schedule": r"^def frame_problem\(",
    "the merging of input knots with frame boundaries": r"^def merged_knots\(",
}


@pytest.mark.parametrize("fact", sorted(ONE_DEFINITION))
def test_each_fact_has_one_definition(fact):
    pattern = re.compile(ONE_DEFINITION[fact], re.M)
    where = [name for name, path in LIBRARY.items() if pattern.search(path.read_text())]
    assert len(where) == 1, f"{fact}: defined in {where or 'no module'}"
    assert len(pattern.findall(LIBRARY[where[0]].read_text())) == 1, f"{fact}: defined twice in {where[0]}"
