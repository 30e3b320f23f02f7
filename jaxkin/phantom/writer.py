"""The phantom as a BIDS dataset: raw PET and blood, the ground truth as a derivative, the split in participants.tsv.
Every file is written through :mod:`jaxkin.io`."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import numpy as np

from jaxkin._version import __version__
from jaxkin.decay import F18_HALF_LIFE_MIN, decay_factors
from jaxkin.errors import InputError
from jaxkin.frames import FrameSchedule
from jaxkin.input_function import FengParameters, feng
from jaxkin.io.blood import write_blood
from jaxkin.io.dataset import truth_root
from jaxkin.io.files import atomic_directory, atomic_write, write_json, write_tsv
from jaxkin.io.labels import write_labels
from jaxkin.io.layout import BIDS_VERSION
from jaxkin.io.maps import write_map
from jaxkin.io.pet import load_pet, write_pet
from jaxkin.io.units import units_to_kbq
from jaxkin.kinetics import FDG_MODEL, get_model
from jaxkin.phantom.anatomy import (
    LABELS,
    NOISE_S,
    Preset,
    Subject,
    get_preset,
    split_counts,
)
from jaxkin.phantom.simulate import simulate_subject

def subject_paths(root, subject_id: str) -> dict:
    """Where a phantom subject's files live inside a dataset ``root`` (see :func:`simulate_dataset`).

    The label map is ground truth, not raw data (raw BIDS has no ``dseg`` in ``pet/``): it lives in the
    ground-truth derivative, ``derivatives/groundtruth/sub-<id>/anat/sub-<id>_dseg.nii.gz`` (+ ``_dseg.tsv``)."""

    pet_dir = Path(root) / subject_id / "pet"
    truth_dir = truth_root(root) / subject_id / "pet"
    return {
        "pet": pet_dir / f"{subject_id}_pet.nii.gz",
        "blood": pet_dir / f"{subject_id}_recording-AIF_blood.tsv",
        "labels": truth_root(root) / subject_id / "anat" / f"{subject_id}_dseg.nii.gz",
        "truth_dir": truth_dir,
        "organs": truth_dir / f"{subject_id}_desc-organs_parameters.tsv",
    }


#: The nominal patient behind ``InjectedRadioactivity``: a body weight (kg) and the whole blood's SUV at 60 min.
#: With them the phantom's unscaled Feng input (11.7 kBq/mL at 60 min) means about 440 MBq (5.9 MBq/kg), and the
#: organs read realistic SUVs late in the scan: blood 2.0, liver ~2, body ~0.75, bladder ~30, myocardium ~10.
NOMINAL_WEIGHT_KG = 75.0
#: The nominal whole blood's SUV at 60 min (see :data:`NOMINAL_WEIGHT_KG`).
NOMINAL_BLOOD_SUV_60_MIN = 2.0


def injected_radioactivity(subject: Subject) -> float:
    """The nominal injected radioactivity (MBq) of a subject: the dose that makes its whole blood (the input
    function, kBq/mL) read SUV ``NOMINAL_BLOOD_SUV_60_MIN`` at 60 min in a ``NOMINAL_WEIGHT_KG`` patient, so it
    scales with the subject's input scale. SUV = C / (dose / weight) with 1 g = 1 mL."""
    blood_60 = float(feng(np.array([60.0]), FengParameters(), delay=subject.input_delay, scale=subject.input_scale)[0])
    return blood_60 * NOMINAL_WEIGHT_KG * 1000.0 / NOMINAL_BLOOD_SUV_60_MIN / 1000.0  # kBq/mL * mL -> kBq -> MBq


def _pet_sidecar(subject: Subject, preset: Preset, units: str) -> dict:
    """The ``*_pet.json`` fields: every field BIDS-PET REQUIRES (the ones not known for a simulation, such as FDG's
    injected mass, are ``"n/a"`` where BIDS allows it) and the simulation's parameters. ``write_pet`` adds
    ``FrameTimesStart``, ``FrameDuration`` and ``Modality``."""
    filtered = subject.fwhm_mm > 0
    return {
        "Manufacturer": "jaxkin (simulated)",
        "SoftwareVersions": f"jaxkin {__version__}",
        "ManufacturersModelName": "Biograph Vision Quadra (simulated frame schedule)",
        "Units": units,
        "TracerName": "FDG",
        "TracerRadionuclide": "F18",
        "InjectedRadioactivity": round(injected_radioactivity(subject), 1),
        "InjectedRadioactivityUnits": "MBq",
        "InjectedMass": "n/a",
        "InjectedMassUnits": "n/a",
        "SpecificRadioactivity": "n/a",
        "SpecificRadioactivityUnits": "n/a",
        "ModeOfAdministration": "bolus",
        "TimeZero": "00:00:00",
        "ScanStart": 0,
        "InjectionStart": 0,
        "AcquisitionMode": "list mode (simulated: frame means of the kinetic model)",
        "ImageDecayCorrected": True,
        "ImageDecayCorrectionTime": 0,
        "DecayCorrectionFactor": [round(float(f), 9) for f in decay_factors(subject.frames, F18_HALF_LIFE_MIN)],
        "ReconMethodName": "none: analytic simulation (jaxkin phantom), no reconstruction",
        "ReconMethodParameterLabels": ["none"],
        "ReconMethodParameterUnits": ["none"],
        "ReconMethodParameterValues": [0],
        "ReconFilterType": "Gaussian" if filtered else "none",
        "ReconFilterSize": subject.fwhm_mm,
        "AttenuationCorrection": "none (analytic simulation: no attenuation to correct)",
        "SimulationParameters": {
            "Software": "jaxkin.phantom",
            "Preset": preset.name,
            "Grid": f"{preset.shape} voxels of {preset.voxel_mm} mm",
            "GridNote": preset.note,
            "Seed": subject.seed,
            "SubjectIndex": subject.index,
            "NoiseScale": subject.noise_scale,
            "NoiseModel": "Gaussian, Var = NoiseScale * NoiseS * max(C,0) * exp(ln2 * t_mid / "
                          f"{F18_HALF_LIFE_MIN:g} min) / duration, C in kBq/mL, times in min (white noise, applied "
                          "after the PSF)",
            "NoiseS": NOISE_S,
            "PsfFwhmMm": subject.fwhm_mm,
            "InputFunction": "Feng FDG model (whole blood = plasma), scaled and delayed per subject",
            "InputScale": subject.input_scale,
            "InputDelayMin": subject.input_delay,
            **({"OrganDelaysSeconds": subject.organ_delays} if subject.organ_delays else {}),
            "KineticModel": FDG_MODEL,
            "InjectedRadioactivityBasis": f"nominal: whole blood at SUV {NOMINAL_BLOOD_SUV_60_MIN:g} at 60 min in a "
                                          f"{NOMINAL_WEIGHT_KG:g} kg patient",
            "DecayCorrectionFactorNote": "the factors a scanner applies to correct each frame to TimeZero (F18); "
                                         "the simulated frames are decay-corrected by construction",
        },
    }


def _write_truth(paths: dict, subject: Subject, preset: Preset) -> None:
    """The ground truth of a written subject: the parameter maps on its PET's grid and the organ-mean table."""
    reference = load_pet(paths["pet"])
    model = get_model(FDG_MODEL)
    extra = {"Description": "ground truth of the simulated phantom (unblurred, at voxel centres)",
             "Sources": [paths["pet"].name, paths["labels"].name]}
    cmd = f"jaxkin simulate (jaxkin {__version__}, preset {preset.name}, seed {subject.seed})"
    for name, values in model.named_maps(subject.truth).items():
        write_map(paths["truth_dir"], subject.subject_id, FDG_MODEL, name, values, reference=reference,
                  units=model.units[name], command_line=cmd, extra=extra)
    rows = []
    for index, name in LABELS.items():
        k1, k2, k3, vb = subject.organ_params[name]
        with jax.enable_x64(True):
            organ_ki = float(model.macro_parameters(np.array([k1, k2, k3, vb]))["Ki"])
        n = int(np.count_nonzero(subject.labels == index))
        rows.append([name, index, f"{k1:.6g}", f"{k2:.6g}", f"{k3:.6g}", f"{vb:.6g}", f"{organ_ki:.6g}", n])
    write_tsv(paths["organs"], ["name", "index", "K1", "k2", "k3", "vB", "Ki", "voxels"], rows)


def write_subject(root, subject: Subject, *, units: str = "kBq/mL") -> dict:
    """Write one simulated subject into the dataset ``root``; returns its paths (see :func:`subject_paths`)."""
    preset = get_preset(subject.preset)
    paths = subject_paths(root, subject.subject_id)
    scale = units_to_kbq(units, where="units")
    data = subject.pet if scale == 1.0 else subject.pet / np.float32(scale)
    write_pet(paths["pet"], data, subject.frames, subject.affine, units=units,
              sidecar=_pet_sidecar(subject, preset, units), voxel_size=subject.voxel_mm)
    write_blood(paths["blood"], plasma=subject.input_function, whole_blood=subject.input_function,
                units=units, description="arterial input of the simulation (Feng FDG model; whole blood = plasma)")
    write_labels(paths["labels"], subject.labels, subject.label_names, subject.affine)
    _write_truth(paths, subject, preset)
    return paths


def _schedule(frames: str | FrameSchedule) -> FrameSchedule:
    if not isinstance(frames, str):
        return frames
    try:
        return FrameSchedule.named(frames)
    except ValueError as err:
        raise InputError(f"frames: {err}") from None


def _check_output(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists and is not an empty folder; choose a new output folder")


def _simulate_all(root: Path, n: int, workers: int | None, progress, units: str, **simulation) -> list[tuple]:
    """Simulate and write subjects 0 .. n-1 into ``root`` on ``workers`` threads (default: up to 2); returns
    ``(subject_id, input_scale, input_delay)`` per subject, in order."""

    def one(i):
        subject = simulate_subject(i, **simulation)
        write_subject(root, subject, units=units)
        if progress is not None:
            progress(subject.subject_id)
        return subject.subject_id, subject.input_scale, subject.input_delay

    rows = [one(0)]  # alone first: the kinetic model compiles once, before the threads start
    if n > 1:
        pool = ThreadPoolExecutor(max_workers=max(1, workers or min(2, os.cpu_count() or 1)))
        try:
            rows += list(pool.map(one, range(1, n)))
        finally:  # on an interrupt or error: drop the subjects not started, wait for those being written (so the
            pool.shutdown(wait=True, cancel_futures=True)  # temporary folder is removed whole), and not the others
    return rows


#: How fast the phantom is written, bytes of images per second on a 2-core CPU (the ``paper`` preset wrote 2.5 GB in
#: 150 s): the basis of :func:`dataset_estimate`'s time.
WRITE_BYTES_PER_S = 2.5e9 / 150.0


def dataset_estimate(preset: str = "small", subjects: int | None = None,
                     frames: str | FrameSchedule = "quadra62") -> tuple[float, float]:
    """``(bytes, seconds)``: about how much disk :func:`simulate_dataset` fills and how long it takes on a 2-core CPU
    (:data:`WRITE_BYTES_PER_S`) for ``subjects`` of ``preset`` with ``frames``: the 4D images as float32 (gzip saves
    little on noisy images); the labels and the ground-truth maps add a few percent."""
    p = get_preset(preset)
    n = p.subjects if subjects is None else int(subjects)
    size = float(n) * np.prod(p.shape) * _schedule(frames).n_frames * 4.0
    return float(size), float(size / WRITE_BYTES_PER_S)


def _write_dataset_files(root: Path, preset: Preset, rows: list[tuple], settings: dict) -> None:
    """The dataset-level files: the raw and ground-truth ``dataset_description.json``, ``participants.tsv`` (with
    the split) and its ``participants.json``, and the ``README``."""
    n_train, n_val, n_test = split_counts(len(rows))
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    write_json(root / "dataset_description.json", {
        "Name": f"jaxkin simulated whole-body dynamic FDG PET phantom ({preset.name} preset)",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "raw",
        "License": "CC0",
        "GeneratedBy": [{"Name": "jaxkin", "Version": __version__,
                         "Description": "jaxkin simulate: analytic torso phantom, irreversible 2TC kinetics, "
                                        "Feng input, Quadra frames, Gaussian PSF and noise"}],
        "SimulationParameters": {**settings, "Grid": list(preset.shape), "VoxelSizeMm": list(preset.voxel_mm),
                                 "GridNote": preset.note, "Split": {"train": n_train, "val": n_val, "test": n_test}},
    })
    write_tsv(root / "participants.tsv", ["participant_id", "split", "input_scale", "input_delay_min"],
              [[sid, split, f"{scale:.6g}", f"{delay:.6g}"] for (sid, scale, delay), split in zip(rows, splits)])
    write_json(root / "participants.json", {
        "split": {"Description": "data split of this subject (the paper's patient-wise 10/4/9 split)",
                  "Levels": {"train": "training", "val": "validation", "test": "test"}},
        "input_scale": {"Description": "factor on Feng's input function"},
        "input_delay_min": {"Description": "delay of the input function", "Units": "min"},
    })
    write_json(truth_root(root) / "dataset_description.json", {
        "Name": "ground truth of the jaxkin phantom", "BIDSVersion": BIDS_VERSION, "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "jaxkin", "Version": __version__}],
    })
    with atomic_write(root / "README") as tmp:
        tmp.write_text("Simulated dynamic FDG PET (jaxkin phantom). Ground-truth parameter maps are under "
                       "derivatives/groundtruth; the split is in participants.tsv. " + preset.note + "\n",
                       encoding="utf-8")


def simulate_dataset(out_dir, *, subjects: int | None = None, seed: int = 0, preset: str = "small",
                     noise_scale: float = 1.0, fwhm_mm: float | None = None, units: str = "kBq/mL",
                     workers: int | None = None, progress=None, organ_delays: bool = False,
                     frames: str | FrameSchedule = "quadra62"):
    """Simulate ``subjects`` phantom subjects and write them as a BIDS dataset at ``out_dir``; returns its path.

    Layout::

        dataset_description.json  participants.tsv (participant_id, split, ...)  participants.json  README
        sub-01/pet/sub-01_pet.nii.gz + .json           4D PET in ``units`` (default kBq/mL), ``frames``; the JSON
                                                       has every field BIDS-PET requires
        sub-01/pet/sub-01_recording-AIF_blood.tsv + .json   arterial plasma = whole blood (time in s, ``units``)
        derivatives/groundtruth/dataset_description.json    (DatasetType derivative)
        derivatives/groundtruth/sub-01/anat/sub-01_dseg.nii.gz + sub-01_dseg.tsv   label map and table (index, name)
        derivatives/groundtruth/sub-01/pet/sub-01_model-2tcmirr_meas-<K1|k2|k3|vB|Ki>_mimap.nii.gz + .json
        derivatives/groundtruth/sub-01/pet/sub-01_desc-organs_parameters.tsv   organ-mean parameters

    The train/val/test split (the paper's 10/4/9 for 23 subjects, scaled otherwise) is the ``split`` column of
    participants.tsv. Everything is written into a temporary folder beside ``out_dir`` and renamed at the end,
    so an error or an interrupt leaves no partial dataset. ``out_dir`` must not exist or be empty.
    Subjects are simulated and written by ``workers`` threads (default: up to 2). ``organ_delays``: see
    :func:`simulate_subject`. ``frames``: the frame schedule, a :class:`jaxkin.FrameSchedule` or a name of
    :data:`jaxkin.frames.FRAME_SCHEDULES` (``quadra62``, the paper's, by default; ``quadra69``: the 69 frames of
    public Quadra datasets). InputError naming the parameter for a bad one (``subjects``, ``noise_scale``,
    ``fwhm_mm``, ``units``, ``preset``, ``frames``), and naming ``out_dir`` when it is not empty.
    """
    p = get_preset(preset)
    n = p.subjects if subjects is None else int(subjects)
    fwhm = p.fwhm_mm if fwhm_mm is None else float(fwhm_mm)
    if n < 1:
        raise InputError(f"subjects: must be at least 1, got {n}")
    if not np.isfinite(noise_scale) or noise_scale < 0:
        raise InputError(f"noise_scale: must be >= 0, got {noise_scale}")
    if not np.isfinite(fwhm) or fwhm < 0:
        raise InputError(f"fwhm_mm: must be >= 0, got {fwhm}")
    units_to_kbq(units, where="units")
    frames = _schedule(frames)
    out = Path(out_dir)
    _check_output(out)
    with atomic_directory(out, label=str(out), what="the dataset") as tmp:
        rows = _simulate_all(tmp, n, workers, progress, units, seed=seed, preset=p.name, noise_scale=noise_scale,
                             fwhm_mm=fwhm, organ_delays=organ_delays, frames=frames)
        settings = {"Preset": p.name, "Subjects": n, "Seed": seed, "NoiseScale": noise_scale,
                    "OrganDelays": bool(organ_delays), "Frames": frames.n_frames, "PsfFwhmMm": fwhm, "Units": units}
        _write_dataset_files(tmp, p, rows, settings)
    return out
