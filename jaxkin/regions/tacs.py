"""Regional time-activity curves of a PET image and regional statistics of parametric maps.

* :func:`regional_tacs` averages the PET inside each region (a label or a group of :class:`~jaxkin.io.labels.Labels`)
  frame by frame: the mean, the SD over the voxels, the number of voxels and the volume; with ``fractions=True``
  each voxel counts with its partial-volume fraction (:meth:`~jaxkin.io.labels.Labels.fractions`).
* :func:`map_statistics`: mean, SD and median of parametric maps per region.
"""

from __future__ import annotations

import numpy as np

from jaxkin.errors import InputError
from jaxkin.io.tables import RegionalTacs
from jaxkin.io.units import ACTIVITY


def _region_ids(labels, regions) -> list[tuple[str, tuple[int, ...]]]:
    regions = labels.region_names() if regions is None else [labels.name_of(r) for r in regions]
    if not regions:
        raise InputError(f"{labels.path or 'labels'}: no labelled voxel on the PET's grid")
    if len(set(regions)) != len(regions):
        raise InputError(f"regions {regions}: a region is named twice")
    return [(r, labels.ids(r)) for r in regions]


def _voxel_ml(affine) -> float:
    return float(abs(np.linalg.det(np.asarray(affine, np.float64)[:3, :3]))) / 1000.0


def regional_tacs(pet, labels, regions=None, *, fractions: bool = False, slab: int = 16) -> RegionalTacs:
    """Mean TAC, SD over the voxels, voxel count and volume of each region of ``labels`` in ``pet``.

    ``pet``: a :class:`~jaxkin.io.pet.PetImage` (read a slab of axial slices at a time) ; ``labels``:
    :class:`~jaxkin.io.labels.Labels` on its grid; ``regions``: names, numbers or groups (default: every label
    with a voxel on the PET's grid, then the groups). Voxels with NaN/Inf in any frame are left out (said in the
    notes). With ``fractions``, each voxel is weighted by its partial-volume fraction (the SD is the weighted SD).
    A region without a voxel on the PET's grid is an InputError.
    """
    todo = _region_ids(labels, regions)
    n_frames = pet.frames.n_frames
    n_reg = len(todo)
    s1 = np.zeros((n_reg, n_frames))
    s2 = np.zeros((n_reg, n_frames))
    count = np.zeros(n_reg)
    nonfinite = 0
    if not fractions:
        max_id = int(max(labels.names, default=0))
        per_id1 = np.zeros((max_id + 1, n_frames))
        per_id2 = np.zeros((max_id + 1, n_frames))
        per_idn = np.zeros(max_id + 1)
        data_labels = labels.data
        zs_any = np.flatnonzero(data_labels.any(axis=(0, 1)))
        z = slice(int(zs_any[0]), int(zs_any[-1]) + 1) if zs_any.size else slice(0, 0)
        for z0 in range(z.start, z.stop, slab):
            zs = slice(z0, min(z0 + slab, z.stop))
            lab = data_labels[:, :, zs]
            sel = lab > 0
            if not sel.any():
                continue
            values = pet.read(zs, dtype=np.float64)[sel]  # [V, F]
            ids = lab[sel].astype(np.int64)
            ok = np.all(np.isfinite(values), axis=1)
            nonfinite += int(np.count_nonzero(~ok))
            values, ids = values[ok], ids[ok]
            order = np.argsort(ids, kind="stable")
            ids, values = ids[order], values[order]
            starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if ids.size else np.zeros(0, int)
            if starts.size == 0:
                continue
            uid = ids[starts]
            per_id1[uid] += np.add.reduceat(values, starts, axis=0)
            per_id2[uid] += np.add.reduceat(values * values, starts, axis=0)
            per_idn[uid] += np.diff(np.r_[starts, ids.size])
        for r, (_, ids) in enumerate(todo):
            s1[r] = per_id1[list(ids)].sum(axis=0)
            s2[r] = per_id2[list(ids)].sum(axis=0)
            count[r] = per_idn[list(ids)].sum()
    else:
        for r, (name, _) in enumerate(todo):
            f = labels.fractions(name)
            zs_any = np.flatnonzero(f.any(axis=(0, 1)))
            if zs_any.size == 0:
                continue
            zs = slice(int(zs_any[0]), int(zs_any[-1]) + 1)
            w = f[:, :, zs]
            sel = w > 0
            values = pet.read(zs, dtype=np.float64)[sel]
            w = w[sel].astype(np.float64)
            ok = np.all(np.isfinite(values), axis=1)
            nonfinite += int(np.count_nonzero(~ok))
            values, w = values[ok], w[ok]
            s1[r] = w @ values
            s2[r] = w @ (values * values)
            count[r] = w.sum()
    empty = [name for (name, _), n in zip(todo, count) if n <= 0]
    if empty:
        raise InputError(f"{labels.path or 'labels'}: region(s) {', '.join(empty)} have no voxel with finite values "
                         f"inside the field of view of {pet.path.name}")
    mean = s1 / count[:, None]
    var = np.maximum(s2 / count[:, None] - mean * mean, 0.0)
    if not fractions:  # the sample SD over the voxels
        var = var * np.where(count > 1, count / np.maximum(count - 1, 1), 0.0)[:, None]
    notes = list(labels.notes)
    if nonfinite:
        notes.append(f"{pet.path.name}: {nonfinite} labelled voxel(s) with NaN or Inf values left out of the regions")
    return RegionalTacs(names=tuple(n for n, _ in todo), frames=pet.frames, values=mean, sd=np.sqrt(var),
                        voxels=count, volume_ml=count * _voxel_ml(pet.affine), labels=tuple(i for _, i in todo),
                        injection_start=pet.injection_start, half_life=pet.half_life, notes=tuple(notes),
                        **_relative_units(pet))


def _relative_units(pet) -> dict:
    """The unit of a PET image whose values are not activities (SUV kept for want of a dose), for its TACs."""
    kind = getattr(pet, "value_kind", ACTIVITY)
    return {} if kind == ACTIVITY else {"units": pet.units, "value_kind": kind, "dose": pet.dose}


def map_statistics(maps: dict, labels, regions=None, *, fractions: bool = False) -> list[dict]:
    """Rows ``{region, map, mean, sd, median, voxels}`` of each map ``{name: [X, Y, Z]}`` over each region's
    voxels with finite values. With ``fractions``: weighted mean and SD, and the median of the voxels at least half
    inside the region."""
    rows = []
    for name, _ in _region_ids(labels, regions):
        weight = labels.fractions(name) if fractions else labels.mask(name).astype(np.float32)
        for map_name, values in maps.items():
            v = np.asarray(values, np.float64)
            sel = (weight > 0) & np.isfinite(v)
            w = weight[sel].astype(np.float64)
            x = v[sel]
            if w.sum() <= 0:
                rows.append({"region": name, "map": map_name, "mean": np.nan, "sd": np.nan, "median": np.nan,
                             "voxels": 0.0})
                continue
            mean = float(w @ x / w.sum())
            if fractions:
                sd = float(np.sqrt(max(w @ (x - mean) ** 2 / w.sum(), 0.0)))
                core = x[w >= 0.5]
                median = float(np.median(core)) if core.size else np.nan
            else:
                sd = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
                median = float(np.median(x))
            rows.append({"region": name, "map": map_name, "mean": mean, "sd": sd, "median": median,
                         "voxels": float(w.sum())})
    return rows
