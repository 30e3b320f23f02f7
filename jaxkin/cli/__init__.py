"""The ``jaxkin`` command line: ``jaxkin <command> [options]``.

Each command lives in its own module here (``jaxkin/cli/<command>.py``) that defines ``register(subparsers)``; the
parser it adds sets ``run(args) -> int``. A command parses its options, calls the library once and prints; the
library never imports from here. Bad input raises :class:`jaxkin.errors.InputError`, printed here as one line on
stderr with exit status 2 (no traceback). To add a command: a new module with ``register`` and ``run``, and its
name in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from jaxkin._version import __version__
from jaxkin.errors import InputError

# Modules that provide a subcommand, in the order ``jaxkin --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = tuple(
    f"jaxkin.cli.{name}" for name in ("models", "simulate", "idif", "regions", "fit", "train", "predict", "evaluate")
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxkin",
        description="Kinetic modelling of dynamic PET in JAX: exact compartment models, fast voxel-wise "
        "fitting and a self-supervised (2+1)D UNet.",
    )
    parser.add_argument("--version", action="version", version=f"jaxkin {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def enable_compilation_cache() -> str | None:
    """Keep XLA's compiled programs on disk, so that the next command with the same shapes skips compiling (a
    second ``jaxkin fit`` of a small scan: 14 s -> 4 s on a 2-core CPU). The folder is ``$JAXKIN_CACHE_DIR``, by
    default ``$XDG_CACHE_HOME/jaxkin/xla`` (``~/.cache/jaxkin/xla``); ``JAXKIN_CACHE_DIR=off`` turns it off, and a
    cache already configured for JAX (``JAX_COMPILATION_CACHE_DIR``) is left as it is. Returns the folder used."""
    import os
    from pathlib import Path

    value = os.environ.get("JAXKIN_CACHE_DIR", "").strip()
    if value.lower() in ("off", "0", "no", "none", "false"):
        return None
    import jax

    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    path = Path(value) if value else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jaxkin" / "xla"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a cache is an optimisation: without a writable folder, compile as before
    if not os.access(path, os.W_OK):
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    enable_compilation_cache()
    if args.command in ("train", "predict", "fit"):  # batches and voxel chunks run data-parallel over CPU devices
        from jaxkin.distributed import split_cpu_devices

        split_cpu_devices()
    previous = _handle_signals()
    try:
        return int(args.run(args) or 0)
    except InputError as err:
        print(f"jaxkin {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM (a scheduler's time limit): the writers have cleaned up
        signum = getattr(err, "signum", signal.SIGINT)
        print(f"jaxkin {args.command}: interrupted ({signal.Signals(signum).name}); nothing half-written was left",
              file=sys.stderr)
        return 128 + int(signum)
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)


def _handle_signals() -> dict:
    """SIGINT and SIGTERM raise :class:`jaxkin.io.files.Interrupted` (a KeyboardInterrupt), so that an interrupted
    command cleans up as after Ctrl-C and exits with 128 + the signal's number (130, 143); returns the handlers it
    replaced. Only in the main thread (Python delivers signals there)."""
    import threading

    from jaxkin.io.files import interrupt

    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, lambda s, _frame: interrupt(s))
    return previous


if __name__ == "__main__":
    sys.exit(main())
