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


#: Voxels of the rows whose values are held at once by :func:`region_sums` (bounds its temporaries: ~40 bytes each).
BLOCK_VOXELS = 1 << 20


def region_sums(pet, rows, n_rows: int, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(sum [R, F], sum of squares [R, F], count [R], voxels left out)`` (float64, kBq/ml) of the voxels of each
    row ``r`` of ``rows`` (int ``[X, Y, Z]``, 0 .. ``n_rows``; R = ``n_rows + 1``, row 0 unused) in ``pet``
    (PetImage or ``[X, Y, Z, F]`` array), each voxel weighted by ``weights`` (``[X, Y, Z]``, default 1). Voxels with
    NaN/Inf in any frame are left out (counted once each).

    ``rows`` may also be a list of ``(row, weights [X, Y, Z])`` for regions that overlap (each voxel counts in every
    row whose weight is positive). The image is read a frame at a time in file order, only the axial slices that
    hold a voxel (a second pass only when a voxel holds NaN/Inf), and of a frame only a piece of the file and the
    values of :data:`BLOCK_VOXELS` voxels of the rows are held (:func:`jaxkin.io.pet.picked_pieces`): the memory is
    ~6 bytes per voxel of the rows (14 with weights) plus a piece of the file (:func:`memory_needed`), never a frame
    or the 4D image."""
    where, row, w, z = _entries(rows, weights, tuple(pet.shape[:3]), n_rows)
    bad = np.zeros(where.size, bool)
    sums = _frame_sums(pet, z, where, row, w, n_rows + 1, bad)
    nonfinite = int(np.unique(where[bad]).size)
    if nonfinite:
        keep = ~bad
        where, row, w = where[keep], row[keep], (None if w is None else w[keep])
        sums = _frame_sums(pet, z, where, row, w, n_rows + 1, np.zeros(where.size, bool))
    count = np.bincount(row, weights=w, minlength=n_rows + 1)[: n_rows + 1].astype(np.float64)
    return (*sums, count, nonfinite)


def _row_dtype(n_rows: int) -> type:
    """The smallest unsigned integer type that holds the rows ``0 .. n_rows``."""
    return np.uint8 if n_rows < 256 else np.uint16 if n_rows < 65536 else np.uint32


def _entries(rows, weights, shape, n_rows: int):
    """``(indices in the slices z flattened in Fortran order (ascending), row, weight or None, z)`` of every voxel of
    ``rows`` (an array, read a block of slices at a time into arrays counted first; or ``(row, weights)`` pairs made
    one at a time, then put in the order of the file)."""
    index = np.int32 if int(np.prod(shape)) < 2**31 else np.int64  # 4 bytes a voxel where they suffice
    plane = shape[0] * shape[1]
    step = max(1, BLOCK_VOXELS // max(plane, 1))
    if isinstance(rows, np.ndarray):
        r = rows
        total = sum(int(np.count_nonzero(r[:, :, a : a + step] > 0)) for a in range(0, shape[2], step))
        where, row = np.empty(total, index), np.empty(total, _row_dtype(n_rows))
        w = None if weights is None else np.empty(total, np.float64)
        done = 0
        for a in range(0, shape[2], step):
            flat = r[:, :, a : a + step].ravel(order="F")
            sel = np.flatnonzero(flat > 0)
            where[done : done + sel.size] = sel + a * plane
            row[done : done + sel.size] = flat[sel]
            if w is not None:
                w[done : done + sel.size] = np.asarray(weights[:, :, a : a + step]).ravel(order="F")[sel]
            done += sel.size
            del flat, sel
    else:
        wheres, row_parts, w_parts = [], [], []
        for label, weight in rows:
            flat = np.asarray(weight).ravel(order="F")
            sel = np.flatnonzero(flat > 0).astype(index)
            wheres.append(sel)
            row_parts.append(np.full(sel.size, label, _row_dtype(n_rows)))
            w_parts.append(flat[sel].astype(np.float64))
            del flat
        where = np.concatenate(wheres) if wheres else np.zeros(0, index)
        row = np.concatenate(row_parts) if row_parts else np.zeros(0, _row_dtype(n_rows))
        w = np.concatenate(w_parts) if w_parts else None
        if len(wheres) > 1:  # overlapping regions: in the order of the file
            order = np.argsort(where, kind="stable")
            where, row, w = where[order], row[order], w[order]
            del order
    z = slice(int(where.min()) // plane, int(where.max()) // plane + 1) if where.size else slice(0, 0)
    where -= where.dtype.type(z.start * plane)
    return where, row, w, z


def _frame_sums(pet, z, where, row, w, n, bad):
    """Per-frame weighted sums and sums of squares by row (see :func:`region_sums`); marks ``bad`` entries."""
    from jaxkin.io.pet import picked_pieces

    n_frames = int(pet.shape[3])
    s1, s2 = np.zeros((n, n_frames)), np.zeros((n, n_frames))
    if where.size == 0:
        return s1, s2
    for f, lo, hi, v in picked_pieces(pet, z, where, np.float64, BLOCK_VOXELS):
        blk = slice(lo, hi)
        ok = np.isfinite(v)
        bad[blk] |= ~ok
        v = np.where(ok, v, 0.0)
        wv = v if w is None else w[blk] * v
        s1[:, f] += np.bincount(row[blk], weights=wv, minlength=n)[:n]
        s2[:, f] += np.bincount(row[blk], weights=wv * v, minlength=n)[:n]
    return s1, s2


def memory_needed(pet, n_voxels: int, label_bytes: int = 4) -> int:
    """Peak bytes of :func:`region_sums` (and of the image-derived input) on ``pet`` for ``n_voxels`` labelled voxels
    of a label image of ``label_bytes`` a voxel: ``RUNTIME + N l + 6 L + 40 min(L, BLOCK_VOXELS) + 2 READ_BYTES``
    with ``N = X Y Z``, ``l = label_bytes``, ``L = n_voxels``: the label image; per labelled voxel its index (4
    bytes), row (1) and finite flag (1); the values and temporaries of a block of voxels; a piece of the frame read
    from the file (:data:`jaxkin.io.stream.READ_BYTES`) and the one before it, not yet freed. ``RUNTIME`` = 256 MiB
    (Python, NumPy, SciPy, JAX)."""
    from jaxkin.io.stream import READ_BYTES

    n = int(np.prod(pet.shape[:3]))
    return int((256 << 20) + n * label_bytes + 6 * n_voxels + 40 * min(n_voxels, BLOCK_VOXELS) + 2 * READ_BYTES)


def regional_tacs(pet, labels, regions=None, *, fractions: bool = False, slab: int = 16) -> RegionalTacs:
    """Mean TAC, SD over the voxels, voxel count and volume of each region of ``labels`` in ``pet``.

    ``pet``: a :class:`~jaxkin.io.pet.PetImage` (read a frame at a time, see :func:`region_sums`); ``labels``:
    :class:`~jaxkin.io.labels.Labels` on its grid; ``regions``: names, numbers or groups (default: every label
    with a voxel on the PET's grid, then the groups). Voxels with NaN/Inf in any frame are left out (said in the
    notes). With ``fractions``, each voxel is weighted by its partial-volume fraction (the SD is the weighted SD).
    A region without a voxel on the PET's grid is an InputError. ``slab`` is not used (kept for callers).
    """
    todo = _region_ids(labels, regions)
    n_reg = len(todo)
    if not fractions:
        max_id = int(max(labels.names, default=0))
        per1, per2, pern, nonfinite = region_sums(pet, labels.data, max_id)
        s1 = np.stack([per1[list(ids)].sum(axis=0) for _, ids in todo])
        s2 = np.stack([per2[list(ids)].sum(axis=0) for _, ids in todo])
        count = np.array([pern[list(ids)].sum() for _, ids in todo])
    else:
        parts = ((r + 1, labels.fractions(name)) for r, (name, _) in enumerate(todo))  # one at a time
        per1, per2, count, nonfinite = region_sums(pet, parts, n_reg)
        s1, s2, count = per1[1:], per2[1:], count[1:]
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
