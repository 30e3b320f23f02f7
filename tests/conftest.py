"""Test-wide settings: the command line's on-disk compilation cache is off (JAXKIN_CACHE_DIR=off), so that tests
compile what they test and leave nothing in the user's cache folder."""

import os

os.environ.setdefault("JAXKIN_CACHE_DIR", "off")
