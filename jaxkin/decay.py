"""Radioactive decay: half-lives of PET radionuclides and decay-correction factors of frames.

Times in minutes. This is the one place that knows a half-life; everything else asks :func:`half_life`.
"""

from __future__ import annotations

import numpy as np

from jaxkin.frames import FrameSchedule

__all__ = ["HALF_LIVES_MIN", "F18_HALF_LIFE_MIN", "radionuclide_key", "half_life", "decay_factors"]

#: Half-lives in minutes of common PET radionuclides, by normalised name ("F18", "18F" and "F-18" are all F18).
HALF_LIVES_MIN: dict[str, float] = {"F18": 109.77, "C11": 20.364, "O15": 2.037, "N13": 9.965, "GA68": 67.71,
                                    "CU64": 762.0, "ZR89": 4704.6, "RB82": 1.2625}
#: Fluorine-18, the radionuclide of FDG (the default where a file does not say).
F18_HALF_LIFE_MIN: float = HALF_LIVES_MIN["F18"]


def radionuclide_key(name) -> str:
    """The normalised name of a radionuclide: ``"18F"``, ``"F-18"``, ``"f18"`` -> ``"F18"``."""
    key = "".join(ch for ch in str(name).upper() if ch.isalnum())
    if key and key[0].isdigit():  # "18F" -> "F18"
        digits = "".join(ch for ch in key if ch.isdigit())
        key = key[len(digits):] + digits
    return key


def half_life(name) -> float:
    """The half-life in minutes of the radionuclide ``name`` (any spelling :func:`radionuclide_key` accepts);
    ValueError for one jaxkin does not know."""
    key = radionuclide_key(name) if name is not None else ""
    if key not in HALF_LIVES_MIN:
        raise ValueError(f"unknown radionuclide {name!r}; known: {', '.join(HALF_LIVES_MIN)}")
    return HALF_LIVES_MIN[key]


def decay_factors(frames: FrameSchedule, half_life_min: float) -> np.ndarray:
    """Per-frame factors ``[F]`` that decay-correct frame means to t = 0 (minutes in, dimensionless out).

    For a frame ``[a, a + d]``: ``lam d / (exp(-lam a) (1 - exp(-lam d)))`` with ``lam = ln 2 / half_life``.
    """
    lam = np.log(2.0) / half_life_min
    x = lam * frames.duration
    return x / (np.exp(-lam * frames.start) * -np.expm1(-x))
