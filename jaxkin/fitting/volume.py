"""Whole-volume fitting: stream masked voxels through fixed-size chunks, sharded over all local devices.

:func:`fit_volume` takes a 4D image (a NumPy array ``[X, Y, Z, F]`` in kBq/ml or a lazily read
:class:`jaxkin.io.pet.PetImage`), reads it a few axial slices at a time, gathers the voxels inside the mask
into chunks of ``chunk_size`` TACs (the last one padded, so there is one compilation), and fits each chunk with a
fitting method (:mod:`jaxkin.fitting.methods`: the compartment model's :class:`~jaxkin.fitting.LM`, a
:class:`~jaxkin.fitting.Graphical` plot or the :class:`~jaxkin.fitting.CurveFit` baseline). Each chunk is split along
the voxel axis over ``jax.local_devices()`` with ``jax.sharding.NamedSharding`` (every voxel is independent; the
input function tables are replicated), and the next chunk is gathered on the host while the devices work on the
current one. The image is read a frame at a time in file order (:func:`jaxkin.io.pet.frame_reads`: a ``.nii.gz``
is decompressed once per pass, never held whole): a first pass for the mask (unless a
:class:`jaxkin.fitting.mask.FitMask` found earlier is given), then the masked voxels are gathered (float32
``[V, F]``) in pieces of axial slices, each piece read in a background thread while the devices fit the one before
(:func:`jaxkin.io.stream.prefetched`), and fitted. Memory is bounded by :func:`memory_needed`, within the budget
``max_memory``: the pieces are as large as it allows (and at most :data:`GROUP_VOXELS`, except for a ``.nii.gz``
read from its file), one pass over their slices of the file each (the maps are the same). The maps are returned
as volumes, or handed to ``write`` slab by slab as the pieces are fitted, never held whole. With several processes
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
from jaxkin.fitting.mask import MIN_SIGNAL, FitMask, body_mask_from_integrals, time_integrals
from jaxkin.fitting.methods import LM, FitMethod, Placement
from jaxkin.fitting.result import FLAG_NOT_CONVERGED
from jaxkin.kinetics import DelayedInput, KineticInput

__all__ = ["VolumeFit", "fit_volume", "preload", "memory_needed", "maps_fit_in", "PRELOAD_BYTES", "RUNTIME_BYTES",
           "GROUP_VOXELS"]


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

#: Masked voxels gathered in one piece at most (whole pieces of ``slab`` slices), so that the next piece is read
#: while the devices fit this one (:func:`jaxkin.io.stream.prefetched`); not for a ``.nii.gz`` read from the file,
#: which is decompressed from its start for every piece (its pieces are as large as the memory budget allows).
GROUP_VOXELS = 1 << 20


def memory_needed(shape, n_maps: int, n_voxels: int = 0, held: int = 0, *, slices: int = 0,
                  maps_held: bool = False) -> int:
    """Peak bytes of :func:`fit_volume` on an image of ``shape`` ``(X, Y, Z, F)`` writing ``n_maps`` maps when it
    gathers at most ``n_voxels`` masked voxels from at most ``slices`` axial slices at once (one piece);
    ``held``: bytes of the image already in memory (:func:`preload`); ``maps_held``: the maps of the whole volume are
    held in memory (else each slab's maps are handed on as they are done).

    ``RUNTIME_BYTES + held + max(18 N, 2 N + 4 M N [maps held] + 2 ((4 F + 4 M + 24) v + 8 X Y s))`` with
    ``N = X Y Z``, ``M`` maps and ``v`` masked voxels of ``s`` slices gathered at once: the body mask (time
    integrals, one frame, the labels of its components), then, while fitting, the fit mask, the maps of the volume
    (float32 or int32) when held, and two pieces (the one fitted, the next one read meanwhile): their TACs (float32)
    and maps and the voxels' indices, one frame of their slices and one map of their slices."""
    n, f = int(np.prod(shape[:3])), int(shape[3])
    piece = (4 * f + 4 * n_maps + 24) * int(n_voxels) + 8 * int(shape[0]) * int(shape[1]) * int(slices)
    fitting = 2 * n + (4 * n_maps * n if maps_held else 0) + 2 * piece
    return int(RUNTIME_BYTES + held + max(18 * n, fitting))


def maps_fit_in(pet, mask: np.ndarray, n_maps: int, max_memory: int | None = None, slab: int = 8) -> bool:
    """Whether the maps of the whole volume of ``pet`` can be held in the memory budget ``max_memory`` (bytes,
    default :func:`jaxkin.io.memory.default_budget`) while the voxels of ``mask`` (bool ``[X, Y, Z]``) are fitted
    in pieces of ``slab`` slices; if not, :func:`fit_volume` should hand each slab's maps on (``write``)."""
    held = pet.data.nbytes if isinstance(pet, _Loaded) else 0
    counts = mask.sum(axis=(0, 1))
    v = max((int(counts[a : a + slab].sum()) for a in range(0, mask.shape[2], slab)), default=0)
    need = memory_needed(pet.shape, n_maps, v, held, slices=min(slab, mask.shape[2]), maps_held=True)
    return need <= _budget(max_memory)


def fit_volume(pet, kin: KineticInput, method: FitMethod = LM(), *, mask=None, chunk_size: int = CHUNK_SIZE,
               slab: int = 8, min_signal: float = MIN_SIGNAL, progress: bool = True,
               max_memory: int | None = None, write=None) -> VolumeFit:
    """Fit every voxel of ``pet`` (``[X, Y, Z, F]`` array or PetImage, kBq/ml) inside the mask with ``method``
    (default :class:`~jaxkin.fitting.LM` of ``2tcmirr``); see the module. Returns :class:`VolumeFit` with the maps
    of ``method.maps()``.

    ``kin``: the scan's kinetic input (:func:`jaxkin.prepare`); a :class:`jaxkin.kinetics.DelayedInput`
    (:func:`jaxkin.prepare_delayed`) fits the input delay of every voxel too (methods with ``fits_delay`` only: the
    LM), mapped as ``delay`` (min). ``mask``: bool ``[X, Y, Z]``, or a :class:`jaxkin.fitting.mask.FitMask` found
    earlier (no pass over the image for it); without it the body is fitted
    (:func:`jaxkin.fitting.mask.body_mask_from_integrals`; ``min_signal``: its threshold, a fraction of the body's
    median time integral). ``chunk_size``: TACs per compiled chunk (:func:`jaxkin.fitting.lm.chunk_length`);
    ``slab``: axial slices gathered in one piece (pieces of the memory budget are made of these);
    ``progress``: a progress bar; ``max_memory``: the memory budget in bytes (default
    :func:`jaxkin.io.memory.default_budget`): the masked voxels are gathered in as few pieces of axial slices as fit
    in it (:func:`memory_needed`; one pass over the file per piece), and InputError when even one ``slab`` does not.
    ``write``: None (the maps of the volume are returned), or ``write(z, name, values)``, called for each map of
    each slab of axial slices ``z`` (a slice, in order from the first slice to the last) with its values
    ``[X, Y, len(z)]`` as soon as the slab is fitted; the maps of the volume are then never held and
    ``VolumeFit.maps`` is empty (one process only).
    After :func:`jaxkin.distributed.initialize` this is a collective: every process calls it (each fits a slab).
    """
    from jaxkin import distributed as dist
    from jaxkin.io.stream import prefetched

    delay = isinstance(kin, DelayedInput)
    if delay and not method.fits_delay:
        raise ValueError("kin: a per-voxel delay is fitted by the LM of a compartment model only")
    if write is not None and dist.process_count() > 1:
        raise ValueError("write: the maps are handed on slab by slab in one process only")
    n_z = pet.shape[2]
    mine = dist.share(n_z)  # this process's axial slices (all of them for one process)
    budget = _budget(max_memory)
    names = method.maps(delay)
    held = pet.data.nbytes if isinstance(pet, _Loaded) else 0
    _within(pet, budget, memory_needed(pet.shape, len(names), 0, held))  # before anything is read
    if isinstance(mask, FitMask):
        full_mask, n_nonfinite = mask.mask, mask.n_nonfinite
    else:
        full_mask, n_nonfinite = _fit_mask(pet, kin.frame_duration, mask, mine, slab, min_signal)
    local = full_mask[:, :, mine]
    groups = dist.check_everywhere(_slab_groups, pet, local, slab, budget, len(names), held, write is None)
    total = int(np.count_nonzero(local))
    volumes = None
    if write is None:
        volumes = {n: np.zeros(local.shape, np.int32 if n == "flags" else np.float32, order="F") for n in names}
        write = functools.partial(_into, volumes)
    results = _Results(names, local.shape[:2], write)
    parallel = dist.DataParallel(dist.local_mesh())  # voxels split over this process's devices
    chunk = chunk_length(total, chunk_size, parallel.size, method.model, delay)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"fit {method.model}", unit="voxel", disable=not dist.is_main_process())
    pieces = prefetched(_gathered(pet, local, mine, groups))
    chunks = _chunks(pieces, chunk, int(kin.frame_duration.shape[0]), results)
    _fit_chunks(chunks, method, Placement.over(kin, parallel), results, bar)
    if bar is not None:
        bar.close()
    results.finish()
    maps = {} if volumes is None else {name: dist.gather_slabs(v, n_z) for name, v in volumes.items()}
    n_not_converged = int(dist.gather_arrays(np.array([results.not_converged], np.int64)).sum())
    return VolumeFit(maps=maps, mask=full_mask, n_fitted=int(np.count_nonzero(full_mask)), n_nonfinite=n_nonfinite,
                     n_not_converged=n_not_converged)


def _into(volumes: dict, z: slice, name: str, values: np.ndarray) -> None:
    """Where :func:`fit_volume` puts the maps of a slab when it returns the maps of the volume."""
    volumes[name][:, :, z] = values


def _within(pet, budget: int, need: int, what: str = "") -> None:
    """InputError (one line: how much is needed) when ``need`` bytes exceed the memory ``budget``."""
    if need > budget:
        from jaxkin.errors import InputError
        from jaxkin.io.memory import GB

        where = getattr(pet, "path", None) or "the image"
        raise InputError(f"{where}: fitting {what}needs at least {need / GB:.2f} GB of memory, more than the memory "
                         f"budget of {budget / GB:.2f} GB; give it more memory or fit within a mask")


def _slab_groups(pet, mask, slab: int, budget: int, n_maps: int, held: int,
                 maps_held: bool) -> list[tuple[int, int]]:
    """Axial ranges ``[a, b)`` of ``mask`` (bool ``[X, Y, Zl]``), made of whole pieces of ``slab`` slices, each with
    as many masked voxels as the memory ``budget`` allows and at most :data:`GROUP_VOXELS` of them (unless the image
    is a ``.nii.gz`` read from its file: one range when they all fit)."""
    counts = mask.sum(axis=(0, 1))
    total = int(counts.sum())
    cap = total if _rereads(pet) else GROUP_VOXELS

    def need(v, s):
        return memory_needed(pet.shape, n_maps, v, held, slices=s, maps_held=maps_held)

    _within(pet, budget, need(0, 0), f"the {total} masked voxels ")
    groups, start, voxels = [], 0, 0
    for a in range(0, mask.shape[2], slab):
        v = int(counts[a : a + slab].sum())
        s = min(slab, mask.shape[2] - a)
        _within(pet, budget, need(v, s), f"the {v} masked voxels of {slab} slices ")
        if a > start and (need(voxels + v, a + s - start) > budget or voxels + v > cap):
            groups.append((start, a))
            start, voxels = a, 0
        voxels += v
    groups.append((start, mask.shape[2]))
    return [g for g in groups if g[1] > g[0]]


def _rereads(pet) -> bool:
    """Whether every piece read from ``pet`` costs a pass over its file from the start (a ``.nii.gz``)."""
    return not isinstance(pet, _Loaded) and str(getattr(pet, "path", "")).endswith(".gz")


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


class _Chunk(NamedTuple):
    """A padded chunk: ``tacs [C, F]`` float32 (rows ``n`` and on zero), the rows ``[n]`` of its voxels in the maps
    of the masked voxels."""

    tacs: np.ndarray
    index: np.ndarray
    n: int


class _Piece(NamedTuple):
    """Masked voxels gathered in one piece: ``tacs [V, F]`` float32, ``z`` the axial slices (of this process's) they
    come from, ``first`` the row of the first one among all the masked voxels, ``where`` their flat indices in the
    slab ``[X, Y, len(z)]`` in Fortran order (ascending)."""

    tacs: np.ndarray
    z: slice
    first: int
    where: np.ndarray


def _gathered(pet, mask, z: slice, groups) -> Iterator[_Piece]:
    """A :class:`_Piece` of the voxels of ``mask`` (bool ``[X, Y, len(z)]``, the slices ``z`` of ``pet``) in each
    range of ``groups``, read in one pass over the frames per range (a range without voxels too, empty), the voxels of
    a range in the order of the file (Fortran: ``x`` fastest), so that the reads take them in order and the maps of a
    slab are filled in order."""
    done = 0
    for a, b in groups:
        where = np.flatnonzero(mask[:, :, a:b].ravel(order="F"))  # ascending: the order of a frame in the file
        tacs = np.empty((where.size, int(pet.shape[3])), np.float32)
        if where.size:
            for f, values in frame_reads(pet, slice(z.start + a, z.start + b), take=where):
                tacs[:, f] = values
        yield _Piece(tacs, slice(a, b), done, where)
        done += where.size
        del tacs, where


class _Results:
    """The maps of the masked voxels of the pieces being fitted (the chunks' results in any piece, by row); each
    piece, once all its rows are in and those of the pieces before it, is scattered into its slab and handed to
    ``write(z, name, values [X, Y, len(z)])`` map by map (0 outside the mask), then dropped. ``not_converged``:
    the voxels flagged not converged so far."""

    def __init__(self, names, plane: tuple[int, int], write):
        self.names, self.plane, self.write = tuple(names), plane, write
        self.open: list[list] = []  # [piece (no TACs), maps {name: [V]}, rows filled]
        self.not_converged = 0

    def add(self, piece: _Piece) -> None:
        n = piece.where.size
        maps = {name: np.zeros(n, np.int32 if name == "flags" else np.float32) for name in self.names}
        self.open.append([piece._replace(tacs=None), maps, 0])
        self._flush()

    def store(self, rows: np.ndarray, values: dict) -> None:
        """``values`` ``{name: [len(rows)]}`` of the masked voxels ``rows`` (ascending, consecutive)."""
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        for entry in self.open:
            piece, maps = entry[0], entry[1]
            a, b = max(lo, piece.first), min(hi, piece.first + piece.where.size)
            if a < b:
                for name, v in values.items():
                    maps[name][a - piece.first : b - piece.first] = v[a - lo : b - lo]
                entry[2] += b - a
        self._flush()

    def _flush(self) -> None:
        while self.open and self.open[0][2] == self.open[0][0].where.size:
            piece, maps, _ = self.open.pop(0)
            if "flags" in maps:
                self.not_converged += int(np.count_nonzero((maps["flags"] & FLAG_NOT_CONVERGED) != 0))
            for name in self.names:
                values = maps.pop(name)
                slab = np.zeros((*self.plane, piece.z.stop - piece.z.start), values.dtype, order="F")
                slab.reshape(-1, order="F")[piece.where] = values  # a view: the slab's voxels in the file's order
                del values
                self.write(piece.z, name, slab)
                del slab

    def finish(self) -> None:
        if self.open:
            raise RuntimeError("fit_volume: voxels left without a result")


def _chunks(pieces: Iterator[_Piece], chunk: int, n_frames: int, results: _Results) -> Iterator[_Chunk]:
    """The rows of ``pieces`` in chunks of ``chunk`` TACs, in order, a chunk across two pieces where one ends; the
    last chunk padded with zeros. One piece is held at a time; each is registered with ``results`` as it comes."""

    def padded(tacs, index):
        out = np.zeros((chunk, n_frames), np.float32)
        out[: tacs.shape[0]] = tacs
        return _Chunk(out, index, tacs.shape[0])

    carry = None
    while (piece := next(pieces, None)) is not None:
        results.add(piece)
        tacs = piece.tacs
        index = np.arange(piece.first, piece.first + len(tacs))  # the voxels' rows among the masked voxels
        del piece
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


def _fit_chunks(chunks: Iterator[_Chunk], method: FitMethod, at: Placement, results: _Results, bar) -> None:
    """Fit every chunk with ``method`` and hand its results to ``results``: each chunk is launched on the devices
    from a worker thread before the previous one's results are collected, so the host collects, stores and pads
    while the devices work (a jitted call on the CPU returns only when its computation is done: launched from this
    thread, the devices would wait for the host between chunks; 105k -> 116k voxels/s on 2 CPU devices)."""
    from concurrent.futures import ThreadPoolExecutor

    pending = None

    def store(launched, chunk: _Chunk):
        found = method.collect(launched.result(), chunk.tacs, chunk.n, at)
        results.store(chunk.index, {name: np.asarray(v)[: chunk.n] for name, v in found.items()})
        if bar is not None:
            bar.update(chunk.n)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxkin-fit") as pool:
        for chunk in chunks:
            launched = pool.submit(method.launch, chunk.tacs, at)
            if pending is not None:
                store(*pending)
            pending = (launched, chunk)
        if pending is not None:
            store(*pending)
