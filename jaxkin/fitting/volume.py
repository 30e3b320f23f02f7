"""Whole-volume fitting: stream masked voxels through fixed-size chunks, sharded over all local devices.

:func:`fit_volume` takes a 4D image (a NumPy array ``[X, Y, Z, F]`` in kBq/ml or a lazily read
:class:`jaxkin.io.pet.PetImage`), reads it a few axial slices at a time, gathers the voxels inside the mask
into chunks of ``chunk_size`` TACs (the last one padded, so there is one compilation), and fits each chunk with a
fitting method (:mod:`jaxkin.fitting.methods`: the compartment model's :class:`~jaxkin.fitting.LM`, a
:class:`~jaxkin.fitting.Graphical` plot or the :class:`~jaxkin.fitting.CurveFit` baseline). Each chunk is split along
the voxel axis over ``jax.local_devices()`` with ``jax.sharding.NamedSharding`` (every voxel is independent; the
input function tables are replicated), and the next chunk is gathered on the host while the devices work on the
current one. Memory is bounded by the slab, two chunks and the output maps. With several processes
(:func:`jaxkin.distributed.initialize`) each process reads and fits its own slab of axial slices
(:func:`jaxkin.distributed.share`) on its own devices; the mask statistics and the maps are assembled on every
process (:func:`jaxkin.distributed.gather_slabs`).

The mask: the one given, or else the body (:func:`jaxkin.fitting.mask.body_mask_from_integrals`, from the voxels'
time integrals ``sum_f C_f Δt_f`` in a first pass over the image): every voxel inside the patient, only the air
around it left out. Voxels with NaN/Inf are left out and counted. Maps are 0 outside the mask.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, NamedTuple

import numpy as np

from jaxkin.io.pet import slabs
from jaxkin.fitting.lm import CHUNK_SIZE, chunk_length
from jaxkin.fitting.mask import MIN_SIGNAL, body_mask_from_integrals, time_integrals
from jaxkin.fitting.methods import LM, FitMethod, Placement
from jaxkin.fitting.result import FLAG_NOT_CONVERGED
from jaxkin.kinetics import DelayedInput, KineticInput

__all__ = ["VolumeFit", "fit_volume", "preload", "PRELOAD_BYTES"]


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


def preload(pet, z: slice | None = None, max_bytes: int | None = None):
    """``pet`` with its axial slices ``z`` (default all) read into memory in one pass, when it is a lazily read image
    (:class:`jaxkin.io.pet.PetImage`) and they fit in ``max_bytes`` (default :data:`PRELOAD_BYTES`) as float32;
    else ``pet`` itself (streamed slab by slab, memory bounded).

    Why: a ``.nii.gz`` is one gzip stream with the frames one after the other, so reading a slab of slices (a
    segment of every frame) seeks back to the stream's start and decompresses the whole file again: streamed slab by
    slab, the mask pass and the fit pass decompressed the image once per slab each. One read of the slices decompresses
    it once (the ``jaxkin fit`` profile: reading was ~45% of a warm 100,000-voxel fit, see benchmarks/RESULTS.md)."""
    if not hasattr(pet, "read") or isinstance(pet, _Loaded):
        return pet
    z = z if z is not None else slice(0, pet.shape[2])
    nbytes = 4 * pet.shape[0] * pet.shape[1] * (z.stop - z.start) * int(np.prod(pet.shape[3:]))
    return _Loaded(pet, z) if nbytes <= (PRELOAD_BYTES if max_bytes is None else max_bytes) else pet


def fit_volume(pet, kin: KineticInput, method: FitMethod = LM(), *, mask=None, chunk_size: int = CHUNK_SIZE,
               slab: int = 8, min_signal: float = MIN_SIGNAL, progress: bool = True) -> VolumeFit:
    """Fit every voxel of ``pet`` (``[X, Y, Z, F]`` array or PetImage, kBq/ml) inside the mask with ``method``
    (default :class:`~jaxkin.fitting.LM` of ``2tcmirr``); see the module. Returns :class:`VolumeFit` with the maps
    of ``method.maps()``.

    ``kin``: the scan's kinetic input (:func:`jaxkin.prepare`); a :class:`jaxkin.kinetics.DelayedInput`
    (:func:`jaxkin.prepare_delayed`) fits the input delay of every voxel too (methods with ``fits_delay`` only: the
    LM), mapped as ``delay`` (min). ``mask``: bool ``[X, Y, Z]``; without it the body is fitted
    (:func:`jaxkin.fitting.mask.body_mask_from_integrals`; ``min_signal``: its threshold, a fraction of the body's
    median time integral). ``chunk_size``: TACs per compiled chunk (:func:`jaxkin.fitting.lm.chunk_length`);
    ``slab``: axial slices read at a time; ``progress``: a progress bar.
    After :func:`jaxkin.distributed.initialize` this is a collective: every process calls it (each fits a slab).
    """
    from jaxkin import distributed as dist

    delay = isinstance(kin, DelayedInput)
    if delay and not method.fits_delay:
        raise ValueError("kin: a per-voxel delay is fitted by the LM of a compartment model only")
    n_z = pet.shape[2]
    mine = dist.share(n_z)  # this process's axial slices (all of them for one process)
    pet = preload(pet, mine)  # read once for the mask pass and the fit pass (when it fits in memory)
    full_mask, n_nonfinite = _fit_mask(pet, kin.frame_duration, mask, mine, slab, min_signal)
    local = full_mask[:, :, mine]
    maps = {n: np.zeros(local.shape, np.int32 if n == "flags" else np.float32) for n in method.maps(delay)}
    total = int(np.count_nonzero(local))
    parallel = dist.DataParallel(dist.local_mesh())  # voxels split over this process's devices
    chunk = chunk_length(total, chunk_size, parallel.size, method.model, delay)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"fit {method.model}", unit="voxel", disable=not dist.is_main_process())
    chunks = _chunks(pet, local, mine, slab, chunk, int(kin.frame_duration.shape[0]))
    _fit_chunks(chunks, method, Placement.over(kin, parallel), maps, bar)
    if bar is not None:
        bar.close()
    maps = {name: dist.gather_slabs(values, n_z) for name, values in maps.items()}
    n_not_converged = 0
    if "flags" in maps:
        n_not_converged = int(np.count_nonzero((maps["flags"][full_mask] & FLAG_NOT_CONVERGED) != 0))
    return VolumeFit(maps=maps, mask=full_mask, n_fitted=int(np.count_nonzero(full_mask)), n_nonfinite=n_nonfinite,
                     n_not_converged=n_not_converged)


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
    return mask & finite, int(np.count_nonzero(~finite))  # voxels with NaN/Inf are reported, never fitted


class _Chunk(NamedTuple):
    """A padded chunk: ``tacs [C, F]`` float32 (rows ``n`` and on zero), the flat indices ``[n]`` of its voxels."""

    tacs: np.ndarray
    index: np.ndarray
    n: int


def _chunks(pet, mask, z: slice, slab: int, chunk: int, n_frames: int) -> Iterator[_Chunk]:
    """The voxels of ``mask`` (bool ``[X, Y, len(z)]``, the slices ``z`` of ``pet``) in chunks of ``chunk`` TACs, in
    order, ``slab`` slices read at a time; the last chunk padded with zeros."""
    flat_index = np.arange(mask.size).reshape(mask.shape)
    buf_tacs, buf_index = [], []

    def padded(tacs, index):
        out = np.zeros((chunk, n_frames), np.float32)
        out[: tacs.shape[0]] = tacs
        return _Chunk(out, index, tacs.shape[0])

    for zs, data in slabs(pet, slab, z):
        sel = mask[:, :, zs]
        if not sel.any():
            continue
        buf_tacs.append(data[sel].astype(np.float32))
        buf_index.append(flat_index[:, :, zs][sel])
        while sum(len(t) for t in buf_tacs) >= chunk:
            tacs = np.concatenate(buf_tacs)
            index = np.concatenate(buf_index)
            yield padded(tacs[:chunk], index[:chunk])
            buf_tacs, buf_index = [tacs[chunk:]], [index[chunk:]]
    if sum(len(t) for t in buf_tacs):
        yield padded(np.concatenate(buf_tacs), np.concatenate(buf_index))


def _fit_chunks(chunks: Iterator[_Chunk], method: FitMethod, at: Placement, maps: dict, bar) -> None:
    """Fit every chunk with ``method`` and write its results into ``maps`` (``[X, Y, len(z)]`` each, by name): each
    chunk is launched on the devices before the previous one's results are collected, so the next chunk is read and
    gathered on the host while the devices work."""
    pending = None

    def store(handle, chunk: _Chunk):
        for name, v in method.collect(handle, chunk.tacs, chunk.n, at).items():
            maps[name].reshape(-1)[chunk.index] = np.asarray(v)[: chunk.n]
        if bar is not None:
            bar.update(chunk.n)

    for chunk in chunks:
        handle = method.launch(chunk.tacs, at)
        if pending is not None:
            store(*pending)
        pending = (handle, chunk)
    if pending is not None:
        store(*pending)
