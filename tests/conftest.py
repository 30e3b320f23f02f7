"""Test-wide settings: the command line's on-disk compilation cache is off (JAXKIN_CACHE_DIR=off), so that tests
compile what they test and leave nothing in the user's cache folder; the commands keep one CPU device
(JAXKIN_CPU_DEVICES=1)."""

import os

os.environ.setdefault("JAXKIN_CACHE_DIR", "off")
# `jaxkin train`/`predict` called in this process must not split the CPU into 2 devices for the tests after them
# (tests that want several devices set XLA_FLAGS in a subprocess; tests/network/test_distributed.py tests the split)
os.environ.setdefault("JAXKIN_CPU_DEVICES", "1")
