"""Test-wide settings: the command line's on-disk compilation cache is off (JAXKIN_CACHE_DIR=off), so that tests
compile what they test and leave nothing in the user's cache folder; the commands keep one CPU device
(JAXKIN_CPU_DEVICES=1); XLA compiles at LLVM optimisation level 0 (below). Fixtures shared by the network's tests."""

import os

import pytest

os.environ.setdefault("JAXKIN_CACHE_DIR", "off")
# `jaxkin train`/`predict` called in this process must not split the CPU into 2 devices for the tests after them
# (tests that want several devices set XLA_FLAGS in a subprocess; tests/network/test_distributed.py tests the split)
os.environ.setdefault("JAXKIN_CPU_DEVICES", "1")
# The tests compile hundreds of small programs and run most for milliseconds: with LLVM's optimisation level 0 XLA
# compiles for the CPU in about half the time (the fitting and network tests: a quarter to a third less CPU time), and
# the programs compute the same operations (no fast-math at either level; results bitwise equal where compared), only
# less optimised. A run at XLA's default level: XLA_FLAGS=--xla_backend_optimization_level=3. Subprocesses started by
# the tests inherit it (tests that set XLA_FLAGS for a subprocess append their flags to this value).
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()


@pytest.fixture(scope="module")
def kins():
    """Two scans of the 62 Quadra frames with Feng inputs of different shape and dose, stacked (leaves ``[2, ...]``),
    the same two with 3x and 0.5x the dose, and those factors."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxkin

    frames = jaxkin.FrameSchedule.quadra()

    def scan_input(delay: float, dose: float):
        return jaxkin.prepare(jaxkin.feng_input(frames.end[-1], delay=delay).scaled(dose), frames)

    base = [scan_input(0.1, 1.0), scan_input(0.3, 1.6)]
    dosed = [scan_input(0.1, 3.0), scan_input(0.3, 0.8)]
    stack = [jax.tree.map(lambda *x: jnp.stack(x), *k) for k in (base, dosed)]
    return stack[0], stack[1], np.array([3.0, 0.5])


@pytest.fixture(scope="module")
def dkin64():
    """The delayed-input evaluator of the ODE reference's input and frames, in float64."""
    import jax
    import jax.numpy as jnp

    from _reference import FRAMES, INPUT
    from jaxkin.kinetics import prepare_delayed

    with jax.enable_x64(True):
        return prepare_delayed(INPUT, FRAMES, dtype=jnp.float64)
