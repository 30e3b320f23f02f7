"""Evaluation metrics as pure functions on arrays: TAC-fit quality (the paper's MAE and cosine similarity), organ
statistics of parametric maps, and errors against ground truth.

Shapes and units: TACs ``[..., F]`` in kBq/ml; masks and label maps ``[X, Y, Z]`` (bool / int); parameter maps
``[X, Y, Z]`` in their own units (:data:`jaxkin.kinetics.UNITS`).

Definitions (the paper, Section 2.2):

* per voxel ``MAE = mean_f |TAC_f - model_f|`` (kBq/ml) and ``CS = <TAC, model> / (|TAC| |model|)`` over the F frames;
  a slice's / subject's value is the mean (and SD) of the per-voxel values over its masked voxels;
* organ statistics: mean and SD of a map over the organ's voxels;
* against truth (estimate ``e``, truth ``t`` over an organ's voxels): ``bias = mean(e - t)``, ``SD = std(e - t)``
  (population SD), ``RMSE = sqrt(mean((e - t)^2))`` (so ``RMSE^2 = bias^2 + SD^2``) and Pearson's r of ``e`` and ``t``
  (NaN when either is constant).

Model TACs for these metrics come from :func:`jaxkin.kinetics.tacs_in_chunks`.
"""

from __future__ import annotations

import numpy as np

from jaxkin.kinetics import FDG_MODEL, get_model
from jaxkin.nn.loss import voxel_cosine, voxel_mae  # one definition for the network's metrics and these

__all__ = [
    "PARAMS",
    "voxel_mae",
    "voxel_cosine",
    "tac_metrics",
    "tac_summary",
    "mean_sd",
    "organ_values",
    "organ_statistics",
    "error_statistics",
]

#: Parameters evaluated, in report order: the FDG model's maps (``K1 k2 k3 vB`` and the macro-parameter ``Ki``).
PARAMS: tuple[str, ...] = get_model(FDG_MODEL).map_names


def mean_sd(values) -> tuple[float, float]:
    """Mean and population SD of ``values`` (NaN, NaN when empty)."""
    v = np.asarray(values, np.float64).ravel()
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std())


def tac_metrics(tac, model_tac, mask) -> dict:
    """The paper's TAC-fit metrics of a volume over the voxels of ``mask``.

    ``tac``, ``model_tac [X, Y, Z, F]`` (kBq/ml); ``mask bool [X, Y, Z]``. Returns :func:`tac_summary` of the masked
    voxels' MAE and CS (in the order of ``tac[mask]``).
    """
    mask = np.asarray(mask, bool)
    mae = voxel_mae(np.asarray(tac)[mask], np.asarray(model_tac)[mask])  # [N], masked voxels only
    cs = voxel_cosine(np.asarray(tac)[mask], np.asarray(model_tac)[mask])
    return tac_summary(mae, cs, np.nonzero(mask)[2], mask.shape[2])


def tac_summary(mae, cs, z, n_z: int) -> dict:
    """The TAC-fit metrics of a volume of ``n_z`` axial slices from its evaluated voxels' values: ``mae``, ``cs``
    ``[N]`` (:func:`voxel_mae`, :func:`voxel_cosine`) and each voxel's axial slice ``z int [N]``.

    Returns ``voxels`` (N); ``mae``, ``mae_sd``, ``cs``, ``cs_sd`` (mean and SD over the voxels); ``voxel_mae``,
    ``voxel_cs`` (``mae`` and ``cs`` as given, for pooling over subjects); per axial slice ``slice_voxels int [n_z]``,
    ``slice_mae [n_z]`` and ``slice_cs [n_z]`` (means over the slice's voxels, NaN for slices without any).
    """
    mae, cs, z = np.asarray(mae), np.asarray(cs), np.asarray(z)
    counts = np.bincount(z, minlength=n_z)
    with np.errstate(invalid="ignore", divide="ignore"):
        slice_mae = np.where(counts > 0, np.bincount(z, mae, minlength=n_z) / counts, np.nan)
        slice_cs = np.where(counts > 0, np.bincount(z, cs, minlength=n_z) / counts, np.nan)
    mae_mean, mae_sd = mean_sd(mae)
    cs_mean, cs_sd = mean_sd(cs)
    return {"voxels": int(mae.size), "mae": mae_mean, "mae_sd": mae_sd, "cs": cs_mean, "cs_sd": cs_sd,
            "voxel_mae": mae, "voxel_cs": cs,
            "slice_voxels": counts.astype(int), "slice_mae": slice_mae, "slice_cs": slice_cs}


def organ_values(maps: dict, labels, names: dict, mask=None, groups: dict | None = None) -> dict:
    """Voxel values of each map inside each organ: ``{organ: {param: 1D array}}``.

    ``maps``: ``{param: [X, Y, Z]}``; ``labels int [X, Y, Z]``; ``names``: ``{index: organ name}`` (0, background, is
    skipped); ``mask`` (optional bool ``[X, Y, Z]``) further restricts the voxels; ``groups``: ``{name: indices}``,
    regions made of several labels (e.g. ``kidneys`` of ``kidney_left`` and ``kidney_right``), after the labels.
    """
    labels = np.asarray(labels)
    out = {}
    regions = [(organ, (int(index),)) for index, organ in names.items() if int(index) != 0]
    regions += [(name, tuple(int(i) for i in ids)) for name, ids in (groups or {}).items()]
    for organ, ids in regions:
        sel = np.isin(labels, ids)
        if mask is not None:
            sel &= np.asarray(mask, bool)
        out[organ] = {p: np.asarray(m)[sel].astype(np.float64) for p, m in maps.items()}
    return out


def organ_statistics(values: dict) -> dict:
    """``{organ: {param: (mean, SD, n)}}`` from :func:`organ_values` output (values pooled over subjects)."""
    return {organ: {p: (*mean_sd(v), int(np.asarray(v).size)) for p, v in per.items()} for organ, per in values.items()}


def error_statistics(estimate, truth) -> dict:
    """Errors of ``estimate`` against ``truth`` (same-shape arrays, any units): ``bias``, ``sd``, ``rmse``, ``r``, ``n``.

    ``r`` is Pearson's correlation coefficient (NaN if fewer than 2 values or either array is constant).
    """
    e = np.asarray(estimate, np.float64).ravel()
    t = np.asarray(truth, np.float64).ravel()
    if e.shape != t.shape:
        raise ValueError(f"error_statistics: estimate {e.shape} and truth {t.shape} differ in size")
    if e.size == 0:
        nan = float("nan")
        return {"bias": nan, "sd": nan, "rmse": nan, "r": nan, "n": 0}
    d = e - t
    r = float("nan")
    if e.size >= 2:
        de, dt = e - e.mean(), t - t.mean()
        denom = np.sqrt(np.sum(de * de) * np.sum(dt * dt))
        # constant arrays (up to float rounding of their mean) have no defined correlation
        scale = max(np.abs(e).max(), np.abs(t).max(), 1e-300)
        if denom > (1e-12 * scale) ** 2 * e.size:
            r = float(np.clip(np.sum(de * dt) / denom, -1.0, 1.0))
    return {"bias": float(d.mean()), "sd": float(d.std()), "rmse": float(np.sqrt(np.mean(d * d))), "r": r,
            "n": int(e.size)}
