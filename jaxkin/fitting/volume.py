"""Whole-volume fitting: stream masked voxels through fixed-size chunks, sharded over all local devices.

:func:`fit_volume` takes a 4D image (a NumPy array ``[X, Y, Z, F]`` in kBq/ml or a lazily read
:class:`jaxkin.io.pet.PetImage`), reads it a few axial slices at a time, gathers the voxels inside the mask
into chunks of ``chunk_size`` TACs (the last one padded, so there is one compilation), and fits each chunk with a
fitting method (:mod:`jaxkin.fitting.methods`: the compartment model's :class:`~jaxkin.fitting.LM`, a
:class:`~jaxkin.fitting.Graphical` plot or the :class:`~jaxkin.fitting.CurveFit` baseline). Each chunk is split along
the voxel axis over ``jax.local_devices()`` with ``jax.sharding.NamedSharding`` (every voxel is independent; the
input function tables are replicated), and the next chunk is gathered on the host while the devices work on the
current one. The image is read a frame at a time in file order (:func:`jaxkin.io.pet.frame_reads`: a ``.nii.gz``
is decompressed once per pass, never held whole): a first pass for the mask, then the masked voxels are gathered
(float32 ``[V, F]``) and fitted. Memory is bounded by :func:`memory_needed`, within the budget ``max_memory``: when
the masked voxels do not fit in it, they are gathered and fitted in slabs of axial slices, one pass over the file
per slab (the maps are the same). With several processes
(:func:`jaxkin.distributed.initialize`) each process reads and fits its own slab of axial slices
(:func:`jaxkin.distributed.share`) on its own devices; the mask statistics and the maps are assembled on every
process (:func:`jaxkin.distributed.gather_slabs`).

The mask: the one given, or else the body (:func:`jaxkin.fitting.mask.body_mask_from_integrals`, from the voxels'
time integrals ``sum_f C_f Δt_f`` in a first pass over the image): every voxel inside the patient, only the air
around it left out. Voxels with NaN/Inf are left out and counted. Maps are 0 outside the mask.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterator, NamedTuple

import numpy as np

from jaxkin.io.pet import array_frames, frame_reads
from jaxkin.fitting.lm import CHUNK_SIZE, chunk_length
from jaxkin.fitting.mask import MIN_SIGNAL, body_mask_from_integrals, time_integrals
from jaxkin.fitting.methods import LM, FitMethod, Placement
from jaxkin.fitting.result import FLAG_NOT_CONVERGED
from jaxkin.kinetics import DelayedInput, KineticInput

__all__ = ["VolumeFit", "fit_volume", "preload", "memory_needed", "PRELOAD_BYTES", "RUNTIME_BYTES"]


@dataclasses.dataclass(frozen=True)
class VolumeFit:
    """Maps ``[X, Y, Z]`` (float32; ``flags`` int32) by name, the mask used (finite voxels only), the number of
    voxels fitted, of voxels in the image with NaN/Inf (never fitted) and of fits flagged not converged."""

    maps: dict
    mask: np.ndarray
    n_fitted: int
    n_nonfinite: int
    n_not_converged: int


#: A PET image whose slices (float32) take at most this many bytes is read into memory in one pass
#: (see :func:`preload`).
PRELOAD_BYTES = 4 << 30


class _Loaded:
    """Axial slices ``z`` of a PET image read once into memory; ``read(z)`` serves slices of them (absolute indices),
    so :func:`jaxkin.io.pet.slabs` and the mask pass read from memory."""

    def __init__(self, pet, z: slice):
        self.shape, self.z, self.data = tuple(pet.shape), z, pet.read(z)

    def read(self, z: slice):
        return self.data[:, :, z.start - self.z.start : z.stop - self.z.start]

    def frame_reads(self, z: slice | None = None, dtype=np.float32, take=None):
        yield from array_frames(self.read(self.z if z is None else z), None, dtype, take)


def preload(pet, z: slice | None = None, max_bytes: int | None = None, *, max_memory: int | None = None):
    """``pet`` with its axial slices ``z`` (default all) read into memory in one pass, when it is a lazily read
    compressed image (:class:`jaxkin.io.pet.PetImage` of a ``.nii.gz``) and they fit in ``max_bytes`` (default :data:`PRELOAD_BYTES`, and at most a
    third of the memory budget ``max_memory``, bytes, default :func:`jaxkin.io.memory.default_budget`) as float32;
    else ``pet`` itself (read a frame at a time, memory bounded).

    Why: several passes (the mask, the delay, a fit per model) over one read are faster than as many reads of the
    file (a ``.nii.gz`` is decompressed once per pass; the ``jaxkin fit`` profile: reading was ~45% of a warm
    100,000-voxel fit, see benchmarks/RESULTS.md)."""
    if not hasattr(pet, "read") or isinstance(pet, _Loaded) or not str(getattr(pet, "path", ".gz")).endswith(".gz"):
        return pet  # an uncompressed file is read at offsets in every pass: nothing to gain
    z = z if z is not None else slice(0, pet.shape[2])
    nbytes = 4 * pet.shape[0] * pet.shape[1] * (z.stop - z.start) * int(np.prod(pet.shape[3:]))
    limit = min(PRELOAD_BYTES if max_bytes is None else max_bytes, _budget(max_memory) // 3)
    return _Loaded(pet, z) if nbytes <= limit else pet


def _budget(max_memory: int | None) -> int:
    from jaxkin.io.memory import default_budget

    return int(max_memory) if max_memory is not None else default_budget().bytes


#: Bytes of the process's fixed overhead in :func:`memory_needed`: the Python and JAX runtime, the compiled fit and
#: its chunks on the devices.
RUNTIME_BYTES = 768 << 20


def memory_needed(shape, n_maps: int, n_voxels: int = 0, held: int = 0, n_masked: int | None = None) -> int:
    """Peak bytes of :func:`fit_volume` on an image of ``shape`` ``(X, Y, Z, F)`` writing ``n_maps`` maps when it
    gathers ``n_voxels`` masked voxels at once (all of them, or those of one slab) of ``n_masked`` (default
    ``n_voxels``); ``held``: bytes of the image already in memory (:func:`preload`).

    ``RUNTIME_BYTES + held + max(18 N, (4 M + 2) N + 4 M V, 6 N + 4 M V + (4 F + 8) v)`` with ``N = X Y Z``, ``M``
    maps, ``V`` masked voxels and ``v`` of them gathered at once: the body mask (time integrals, one frame, the
    labels of its components), the maps of the volume at the end (float32 or int32) and, while fitting, the masks,
    one frame of the file, the maps of the masked voxels and the gathered TACs (float32) with their indices."""
    n, f = int(np.prod(shape[:3])), int(shape[3])
    v_all = n_voxels if n_masked is None else n_masked
    phases = (18 * n, (4 * n_maps + 2) * n + 4 * n_maps * v_all,
              6 * n + 4 * n_maps * v_all + (4 * f + 8) * n_voxels)
    return int(RUNTIME_BYTES + held + max(phases))


def fit_volume(pet, kin: KineticInput, method: FitMethod = LM(), *, mask=None, chunk_size: int = CHUNK_SIZE,
               slab: int = 8, min_signal: float = MIN_SIGNAL, progress: bool = True,
               max_memory: int | None = None) -> VolumeFit:
    """Fit every voxel of ``pet`` (``[X, Y, Z, F]`` array or PetImage, kBq/ml) inside the mask with ``method``
    (default :class:`~jaxkin.fitting.LM` of ``2tcmirr``); see the module. Returns :class:`VolumeFit` with the maps
    of ``method.maps()``.

    ``kin``: the scan's kinetic input (:func:`jaxkin.prepare`); a :class:`jaxkin.kinetics.DelayedInput`
    (:func:`jaxkin.prepare_delayed`) fits the input delay of every voxel too (methods with ``fits_delay`` only: the
    LM), mapped as ``delay`` (min). ``mask``: bool ``[X, Y, Z]``; without it the body is fitted
    (:func:`jaxkin.fitting.mask.body_mask_from_integrals`; ``min_signal``: its threshold, a fraction of the body's
    median time integral). ``chunk_size``: TACs per compiled chunk (:func:`jaxkin.fitting.lm.chunk_length`);
    ``slab``: axial slices gathered in one piece (slabs of the memory budget are made of these);
    ``progress``: a progress bar; ``max_memory``: the memory budget in bytes (default
    :func:`jaxkin.io.memory.default_budget`): the masked voxels are gathered in as few slabs of axial slices as fit
    in it (:func:`memory_needed`; one pass over the file per slab), and InputError when even one ``slab`` does not.
    After :func:`jaxkin.distributed.initialize` this is a collective: every process calls it (each fits a slab).
    """
    from jaxkin import distributed as dist

    delay = isinstance(kin, DelayedInput)
    if delay and not method.fits_delay:
        raise ValueError("kin: a per-voxel delay is fitted by the LM of a compartment model only")
    n_z = pet.shape[2]
    mine = dist.share(n_z)  # this process's axial slices (all of them for one process)
    budget = _budget(max_memory)
    names = method.maps(delay)
    held = pet.data.nbytes if isinstance(pet, _Loaded) else 0
    _within(pet, budget, memory_needed(pet.shape, len(names), 0, held))  # before anything is read
    full_mask, n_nonfinite = _fit_mask(pet, kin.frame_duration, mask, mine, slab, min_signal)
    local = full_mask[:, :, mine]
    groups = dist.check_everywhere(_slab_groups, pet, local, slab, budget, len(names), held)  # every process refuses
    total = int(np.count_nonzero(local))
    maps = {n: np.zeros(total, np.int32 if n == "flags" else np.float32) for n in names}  # in the order gathered
    parallel = dist.DataParallel(dist.local_mesh())  # voxels split over this process's devices
    chunk = chunk_length(total, chunk_size, parallel.size, method.model, delay)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"fit {method.model}", unit="voxel", disable=not dist.is_main_process())
    chunks = _chunks(_gathered(pet, local, mine, slab, groups), chunk, int(kin.frame_duration.shape[0]))
    _fit_chunks(chunks, method, Placement.over(kin, parallel), maps, bar)
    if bar is not None:
        bar.close()
    maps = _scattered(maps, local, slab)
    maps = {name: dist.gather_slabs(values, n_z) for name, values in maps.items()}
    n_not_converged = 0
    if "flags" in maps:
        n_not_converged = int(np.count_nonzero((maps["flags"][full_mask] & FLAG_NOT_CONVERGED) != 0))
    return VolumeFit(maps=maps, mask=full_mask, n_fitted=int(np.count_nonzero(full_mask)), n_nonfinite=n_nonfinite,
                     n_not_converged=n_not_converged)


def _within(pet, budget: int, need: int, what: str = "") -> None:
    """InputError (one line: how much is needed) when ``need`` bytes exceed the memory ``budget``."""
    if need > budget:
        from jaxkin.errors import InputError
        from jaxkin.io.memory import GB

        where = getattr(pet, "path", None) or "the image"
        raise InputError(f"{where}: fitting {what}needs at least {need / GB:.2f} GB of memory, more than the memory "
                         f"budget of {budget / GB:.2f} GB; give it more memory or fit within a mask")


def _slab_groups(pet, mask, slab: int, budget: int, n_maps: int, held: int) -> list[tuple[int, int]]:
    """Axial ranges ``[a, b)`` of ``mask`` (bool ``[X, Y, Zl]``), made of whole pieces of ``slab`` slices, each with
    as many masked voxels as the memory ``budget`` allows (one range when they all fit)."""
    counts = mask.sum(axis=(0, 1))
    need = functools.partial(memory_needed, pet.shape, n_maps, held=held, n_masked=int(counts.sum()))
    _within(pet, budget, need(0), f"the {int(counts.sum())} masked voxels ")
    groups, start, voxels = [], 0, 0
    for a in range(0, mask.shape[2], slab):
        v = int(counts[a : a + slab].sum())
        _within(pet, budget, need(v), f"the {v} masked voxels of {slab} slices ")
        if need(voxels + v) > budget:
            groups.append((start, a))
            start, voxels = a, 0
        voxels += v
    groups.append((start, mask.shape[2]))
    return [g for g in groups if g[1] > g[0]]


def _fit_mask(pet, frame_duration, mask, mine: slice, slab: int, min_signal: float) -> tuple[np.ndarray, int]:
    """``(mask bool [X, Y, Z], voxels with NaN/Inf)``: ``mask`` (or the body) without the voxels that are not finite,
    from a first pass over this process's slices ``mine``, assembled over the processes."""
    from jaxkin import distributed as dist

    shape, n_z = tuple(pet.shape[:3]), pet.shape[2]
    auc, finite = time_integrals(pet, frame_duration, mine, slab)
    finite = dist.gather_slabs(finite, n_z)
    if mask is None:
        mask = body_mask_from_integrals(dist.gather_slabs(auc, n_z), finite, min_signal)
    else:
        mask = np.asarray(mask, bool)
        if mask.shape != shape:
            raise ValueError(f"mask shape {mask.shape} differs from the image's {shape}")
    del auc
    return mask & finite, int(np.count_nonzero(~finite))  # voxels with NaN/Inf are reported, never fitted


def _order(mask: np.ndarray, slab: int) -> np.ndarray:
    """Flat (C-order) indices in ``mask`` of its voxels in the order :func:`_gathered` gathers them."""
    parts = []
    for s in range(0, mask.shape[2], slab):
        x, y, z = np.nonzero(mask[:, :, s : s + slab])
        parts.append(np.ravel_multi_index((x, y, z + s), mask.shape))
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _scattered(maps: dict, mask: np.ndarray, slab: int) -> dict:
    """Maps of the masked voxels ``{name: [V]}`` (gathering order) as volumes ``[X, Y, Z]`` (0 outside ``mask``), one
    at a time so that only one map is held twice."""
    index = _order(mask, slab)
    out = {}
    for name in list(maps):
        values = maps.pop(name)
        out[name] = np.zeros(mask.shape, values.dtype)
        out[name].reshape(-1)[index] = values
        del values
    return out


class _Chunk(NamedTuple):
    """A padded chunk: ``tacs [C, F]`` float32 (rows ``n`` and on zero), the rows ``[n]`` of its voxels in the maps
    of the masked voxels."""

    tacs: np.ndarray
    index: np.ndarray
    n: int


def _gathered(pet, mask, z: slice, slab: int, groups) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(tacs float32 [V, F], rows [V])`` of the voxels of ``mask`` (bool ``[X, Y, len(z)]``, the
    slices ``z`` of ``pet``) in each range of ``groups``, read in one pass over the frames per range; ``rows``
    counts the voxels gathered so far. The order (:func:`_order`): the pieces of ``slab`` slices in turn, each in C
    order (as chunks have always been made)."""
    nx, ny = mask.shape[:2]
    done = 0
    for a, b in groups:
        xs, ys, zs = [], [], []
        for s in range(a, b, slab):
            x, y, zz = np.nonzero(mask[:, :, s : min(s + slab, b)])
            xs.append(x), ys.append(y), zs.append(zz + (s - a))
        x, y, zz = (np.concatenate(v) for v in (xs, ys, zs))
        del xs, ys, zs
        index = np.arange(done, done + x.size)  # the voxels' rows in the maps of the masked voxels
        done += x.size
        in_frame = x + nx * (y + ny * zz)  # Fortran order: the order of a frame read from the file
        del x, y, zz
        if in_frame.size == 0:
            continue
        tacs = np.empty((in_frame.size, int(pet.shape[3])), np.float32)
        for f, values in frame_reads(pet, slice(z.start + a, z.start + b), take=in_frame):
            tacs[:, f] = values
        del in_frame
        yield tacs, index
        del tacs, index


def _chunks(groups: Iterator[tuple[np.ndarray, np.ndarray]], chunk: int, n_frames: int) -> Iterator[_Chunk]:
    """The rows of ``groups`` (``(tacs [V, F], index [V])`` in turn) in chunks of ``chunk`` TACs, in order, a chunk
    across two groups where one ends; the last chunk padded with zeros. One group is held at a time."""

    def padded(tacs, index):
        out = np.zeros((chunk, n_frames), np.float32)
        out[: tacs.shape[0]] = tacs
        return _Chunk(out, index, tacs.shape[0])

    carry = None
    while (group := next(groups, None)) is not None:
        tacs, index = group
        del group
        start = 0
        if carry is not None:
            start = min(chunk - len(carry[0]), len(tacs))
            carry = (np.concatenate([carry[0], tacs[:start]]), np.concatenate([carry[1], index[:start]]))
            if len(carry[0]) == chunk:
                yield padded(*carry)
                carry = None
        while len(tacs) - start >= chunk:
            yield padded(tacs[start : start + chunk], index[start : start + chunk])
            start += chunk
        if start < len(tacs):
            carry = (tacs[start:].copy(), index[start:].copy())
        del tacs, index
    if carry is not None:
        yield padded(*carry)


def _fit_chunks(chunks: Iterator[_Chunk], method: FitMethod, at: Placement, maps: dict, bar) -> None:
    """Fit every chunk with ``method`` and write its results into ``maps`` (``[X, Y, len(z)]`` each, by name): each
    chunk is launched on the devices before the previous one's results are collected, so the next chunk is read and
    gathered on the host while the devices work."""
    pending = None

    def store(handle, chunk: _Chunk):
        for name, v in method.collect(handle, chunk.tacs, chunk.n, at).items():
            maps[name][chunk.index] = np.asarray(v)[: chunk.n]
        if bar is not None:
            bar.update(chunk.n)

    for chunk in chunks:
        handle = method.launch(chunk.tacs, at)
        if pending is not None:
            store(*pending)
        pending = (handle, chunk)
    if pending is not None:
        store(*pending)
