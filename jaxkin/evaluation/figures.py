"""The figures of the evaluation report: which ones, of which subject and slices, with which captions (the drawing
itself is :mod:`jaxkin.evaluation.plots`). Input: the per-subject results and the summary of
:mod:`jaxkin.evaluation.report`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxkin.evaluation import plots
from jaxkin.evaluation.metrics import PARAMS

__all__ = ["draw_figures", "shown_params"]


def shown_params(stats: dict) -> list[str]:
    """The parameters (in :data:`PARAMS` order) that some method of ``stats`` estimates."""
    return [p for p in PARAMS if any(p in per for st in stats.values() for per in st.values())]


def _slice_regions(r: dict) -> dict:
    """``{name: bool [Z]}``: the axial slices with lungs only, lungs and heart, and liver (for Fig. 3a)."""
    if not r["names"]:
        return {}
    present = {n: np.any(r["labels"] == i, axis=(0, 1)) for i, n in r["names"].items()}
    lungs = present.get("lungs", np.zeros(0, bool))
    heart = present.get("myocardium", np.zeros_like(lungs))
    liver = present.get("liver", np.zeros_like(lungs))
    if not lungs.size:
        return {}
    return {"lungs": lungs & ~heart & ~liver, "lungs + heart": lungs & heart & ~liver, "liver": liver}


def _view_indices(r: dict) -> tuple[int, int]:
    """Coronal (y) and axial (z) slice indices through the liver's centroid (else the mask's)."""
    sel = r["mask"]
    if r["names"]:
        idx = [i for i, n in r["names"].items() if n == "liver"]
        if idx and np.any(r["labels"] == idx[0]):
            sel = r["labels"] == idx[0]
    c = np.argwhere(sel).mean(axis=0)
    return int(round(c[1])), int(round(c[2]))


def draw_figures(folder: Path, results: list[dict], summary: dict) -> list[tuple[str, str]]:
    """Draw the report's figures into ``folder``; returns ``[(file name, caption)]``."""
    made = []
    stats = summary["organ_stats"]
    if stats:
        plots.organ_bars(stats, list(next(iter(stats.values()))), shown_params(stats), folder / "organ_bars.png")
        made.append(("organ_bars.png", "Organ mean ± SD of each parameter per method (cf. the paper's Fig. 2)"))
    r = results[-1]  # the last subject evaluated (the paper shows one test patient)
    sid = r["subject"]
    if r["tac"]:
        plots.slice_cosine({n: t["slice_cs"] for n, t in r["tac"].items()}, r["z_mm"], _slice_regions(r),
                           folder / f"{sid}_slice_cs.png", subject=f"({sid})")
        made.append((f"{sid}_slice_cs.png", f"Mean TAC cosine similarity per axial slice, {sid} (cf. Fig. 3a)"))
    shown = ({"truth": r["truth"]} if r["truth"] else {}) | r["maps"]
    params = [p for p in PARAMS if any(p in m for m in shown.values())]
    y_index, z_index = _view_indices(r)
    limits = {}
    for p in params:
        ref = r["truth"].get(p) if r["truth"] else None
        vals = (ref if ref is not None else next(m[p] for m in shown.values() if p in m))[r["mask"]]
        limits[p] = (0.0, float(np.percentile(vals, 99)) or 1e-6)
    for view, index in (("coronal", y_index), ("axial", z_index)):
        name = f"{sid}_{view}_maps.png"
        plots.parametric_images(shown, params, r["labels"] if r["labels"] is not None else r["mask"].astype(int),
                                r["names"] or {}, r["voxel_mm"], view, index, folder / name,
                                title=f"Parametric images, {sid}", limits=limits)
        made.append((name, f"Parametric images, {view} slice of {sid}, organ contours (cf. Fig. 3b-e and Fig. 4)"))
    if r["samples"]:
        plots.tac_fits(r["times"], r["samples"], folder / f"{sid}_tac_fits.png", subject=f"({sid})")
        made.append((f"{sid}_tac_fits.png", f"Measured TAC and model fits at one voxel per organ, {sid}"))
    if r["truth"]:
        errors = {n: {p: np.where(r["mask"], m[p] - r["truth"][p], np.nan) for p in params if p in m and p in r["truth"]}
                  for n, m in r["maps"].items()}
        name = f"{sid}_coronal_errors.png"
        plots.error_maps(errors, params, r["voxel_mm"], "coronal", y_index, folder / name,
                         title=f"Error against ground truth, {sid}")
        made.append((name, f"Estimate − truth, coronal slice of {sid}"))
    return made
