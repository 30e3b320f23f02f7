"""The simulated whole-body dynamic FDG PET phantom with known ground truth.

* :mod:`.anatomy`: the organs, their kinetic parameters and variation, the presets (arrays, no files);
* :mod:`.simulate`: one subject as arrays: anatomy, parameter maps, TACs, PSF and counting noise;
* :mod:`.writer`: a BIDS dataset of subjects with the ground truth as a derivative (through :mod:`jaxkin.io`).
"""

from jaxkin.phantom.anatomy import (
    BLOOD_LABELS,
    HETEROGENEITY_MM,
    HETEROGENEITY_SD,
    INPUT_DELAY_MIN,
    INPUT_SCALE_SD,
    LABELS,
    MAP_NAMES,
    NOISE_S,
    ORGAN_DELAY_S,
    ORGAN_PARAMETERS,
    PARAM_NAMES,
    PRESETS,
    SUBJECT_SD,
    Preset,
    Subject,
    affine_of,
    get_preset,
    split_counts,
)
from jaxkin.phantom.simulate import noise_sd, simulate_subject
from jaxkin.phantom.writer import (
    NOMINAL_BLOOD_SUV_60_MIN,
    NOMINAL_WEIGHT_KG,
    injected_radioactivity,
    simulate_dataset,
    subject_paths,
    write_subject,
)

__all__ = [
    "LABELS", "BLOOD_LABELS", "ORGAN_PARAMETERS", "ORGAN_DELAY_S", "PARAM_NAMES", "MAP_NAMES", "PRESETS", "NOISE_S",
    "SUBJECT_SD", "HETEROGENEITY_SD", "HETEROGENEITY_MM", "INPUT_SCALE_SD", "INPUT_DELAY_MIN",
    "NOMINAL_WEIGHT_KG", "NOMINAL_BLOOD_SUV_60_MIN",
    "Preset", "Subject", "affine_of", "get_preset", "split_counts", "noise_sd", "simulate_subject",
    "simulate_dataset", "write_subject", "subject_paths", "injected_radioactivity",
]
