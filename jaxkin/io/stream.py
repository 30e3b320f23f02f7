"""Reading a 4D NIfTI image ``[X, Y, Z, F]`` without holding it: axial slices or whole frames, straight from the file.

A NIfTI stores its voxels in Fortran order: ``x`` fastest, then ``y``, ``z`` and the frame last, so each frame is one
contiguous block of the file and the axial slices ``z`` of a frame are a contiguous part of that block.

* Uncompressed ``.nii``: the bytes of the slices asked for are read at their offset (one positioned read per
  frame), nothing else; the pages read are the file system's cache, not this process's memory (a memory map would
  count every page it touched as resident).
* ``.nii.gz``: one gzip stream, which can only be decompressed from its start. :func:`frames` decompresses it once,
  in file order, a frame at a time (the bytes outside the slices asked for are discarded in pieces of
  :data:`DISCARD_BYTES`); :func:`slices` of a ``.nii.gz`` goes through nibabel (every call decompresses the file up
  to the slices: use :func:`frames` for passes over the whole image).

Values are the file's, scaled as nibabel scales them (``scl_slope``/``scl_inter``, e.g. of int16 images), so a frame
read here equals the same frame of ``np.asarray(image.dataobj)`` bit for bit.
"""

from __future__ import annotations

import contextlib
import gzip
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

__all__ = ["DISCARD_BYTES", "READ_BYTES", "frames", "picked_pieces", "prefetched", "slices"]

#: Decompressed bytes of a ``.nii.gz`` that are not asked for are read and discarded in pieces of this size.
DISCARD_BYTES = 64 << 20


def _layout(image) -> tuple[tuple[int, ...], np.dtype, int]:
    header = image.header
    offset = getattr(image.dataobj, "offset", None)  # where the proxy reads (the header may say 0 for a .nii.gz)
    offset = header.get_data_offset() if offset is None else offset
    return tuple(int(s) for s in image.shape), np.dtype(header.get_data_dtype()), int(offset)


def _scaled(raw: np.ndarray, image) -> np.ndarray:
    """``raw`` file values scaled as nibabel's array proxy scales them (same dtypes, same arithmetic)."""
    from nibabel.volumeutils import apply_read_scaling

    proxy = image.dataobj  # nibabel moves the header's scaling into the proxy when it loads an image
    slope, inter = (proxy.slope, proxy.inter) if hasattr(proxy, "slope") else image.header.get_slope_inter()
    slope = np.asanyarray(1.0 if slope is None else slope)
    inter = np.asanyarray(0.0 if inter is None else inter)
    inter = inter.astype(slope.dtype) if np.can_cast(inter, slope.dtype) else inter
    return apply_read_scaling(raw, slope, inter)


def _has_scaling(image) -> bool:
    """Whether nibabel scales the file's values (a slope other than 1 or an intercept other than 0)."""
    proxy = image.dataobj
    slope, inter = (proxy.slope, proxy.inter) if hasattr(proxy, "slope") else image.header.get_slope_inter()
    slope = 1.0 if slope is None or not np.isfinite(slope) else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    return (slope, inter) != (1.0, 0.0)


def _compressed(path: Path) -> bool:
    return path.name.endswith(".gz")


def _open(path: Path):
    """The image file for reading: a gzip stream for a ``.nii.gz``; a plain file otherwise, whose pages are dropped
    from the file system's cache as they are read (:class:`_Uncached`) when it is larger than half the memory this
    process may use (:func:`jaxkin.io.memory.memory_limit`): such a file cannot stay cached for a later pass anyway,
    and filling the cache with it (evicting other pages) cost 2-3 s of system time per GB read, against 0.6 s
    dropped (benchmarks/RESULTS.md)."""
    if _compressed(path):
        return gzip.open(path, "rb")
    f = open(path, "rb")  # noqa: SIM115 (closed by the caller's with)
    if hasattr(os, "posix_fadvise"):
        from jaxkin.io.memory import memory_limit

        if os.fstat(f.fileno()).st_size > memory_limit().bytes // 2:
            return _Uncached(f)
    return f


class _Uncached:
    """A plain file (``readinto``, ``seek``) whose pages are dropped from the cache once read
    (``POSIX_FADV_DONTNEED``)."""

    def __init__(self, f):
        self.f = f

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def readinto(self, view) -> int:
        start = self.f.tell()
        got = self.f.readinto(view)
        if got:
            os.posix_fadvise(self.f.fileno(), start, got, os.POSIX_FADV_DONTNEED)
        return got

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def slices(path, image, z: slice) -> np.ndarray:
    """The axial slices ``z`` of every frame, ``[X, Y, len(z), F]`` as nibabel's ``dataobj[:, :, z, :]`` gives them;
    for a ``.nii`` only their bytes are read (one read per frame)."""
    path = Path(path)
    shape, dtype, offset = _layout(image)
    if _compressed(path) or len(shape) != 4:
        return np.asarray(image.dataobj[:, :, z, :])
    nx, ny, nz, nf = shape
    z0, z1 = max(z.start or 0, 0), min(nz if z.stop is None else z.stop, nz)
    n = nx * ny * max(z1 - z0, 0)
    out = np.empty((nx, ny, max(z1 - z0, 0), nf), dtype, order="F")
    with _open(path) as f:
        for k in range(nf):
            f.seek(offset + (k * nx * ny * nz + nx * ny * z0) * dtype.itemsize)
            out[..., k] = _exactly(f, n, dtype, path).reshape(out.shape[:3], order="F")
    return _scaled(out, image)


def frames(path, image, z: slice | None = None, take: np.ndarray | None = None,
           dtype=None) -> Iterator[tuple[int, np.ndarray]]:
    """``(f, values [X, Y, len(z)])`` for every frame ``f`` of the 4D image in file order, only the axial slices
    ``z`` (default all) held; a ``.nii.gz`` is decompressed once. With ``take`` (indices into the slices flattened
    in Fortran order, the file's order), only those values ``[len(take)]`` are scaled and returned, and the frame is
    read in pieces of at most :data:`READ_BYTES` (never held whole); as ``dtype`` (a float type at least as wide
    as the file's, for an image without scaling: the same values) when given."""
    path = Path(path)
    shape, dtype_file, _ = _layout(image)
    wide = None
    if dtype is not None and take is not None and dtype_file.kind == "f" and not _has_scaling(image):
        wide = np.dtype(dtype) if np.can_cast(dtype_file, dtype, "safe") else None
    dtype = dtype_file
    nx, ny, nz, _ = shape
    z = slice(0, nz) if z is None else z
    picks = None if take is None else _Picks(np.asarray(take), nx * ny, z.stop - z.start)
    for k, f in _at_each_frame(path, image, z):
        if picks is None:
            raw = _exactly(f, nx * ny * (z.stop - z.start), dtype, path).reshape((nx, ny, z.stop - z.start), order="F")
        else:
            raw = picks.read(f, dtype, path, wide)
        yield k, _scaled(raw, image)
        del raw


def _at_each_frame(path: Path, image, z: slice) -> Iterator[tuple[int, object]]:
    """``(k, file)`` for every frame ``k`` of the 4D image in file order, the file (:func:`_open`) at the start of
    the axial slices ``z`` of frame ``k``; the caller reads those slices' bytes (all of them) before asking for the
    next frame, and the rest of the frame is skipped meanwhile."""
    shape, dtype, offset = _layout(image)
    nx, ny, nz, nf = shape
    plane = nx * ny * dtype.itemsize
    before, after = z.start * plane, (nz - z.stop) * plane
    with _open(path) as f:
        _skip(f, offset)
        for k in range(nf):
            if before:
                _skip(f, before)
            yield k, f
            if after:
                _skip(f, after)


#: A frame of which only some voxels are wanted is read in pieces of at most this many bytes (whole slices).
READ_BYTES = 64 << 20


class _Picks:
    """The voxels ``take`` (flat indices in Fortran order into ``n_planes`` slices of ``plane`` voxels) of a frame,
    read a few slices at a time (:data:`READ_BYTES`)."""

    def __init__(self, take: np.ndarray, plane: int, n_planes: int):
        self.order = None if take.size < 2 or bool(np.all(take[1:] >= take[:-1])) else np.argsort(take, kind="stable")
        self.take = take if self.order is None else take[self.order]
        self.plane, self.n_planes = plane, n_planes

    def pieces(self, f, dtype: np.dtype, path: Path, out_dtype: np.dtype | None = None, most: int | None = None):
        """``(lo, hi, values [hi - lo])``: the values of the sorted ``take[lo:hi]`` of the frame at ``f``'s position,
        in order, at most ``most`` at a time (default: those of a piece of the file)."""
        step = max(1, READ_BYTES // (self.plane * dtype.itemsize))
        lo_index = 0
        for p0 in range(0, self.n_planes, step):
            p1 = min(p0 + step, self.n_planes)
            block = _exactly(f, (p1 - p0) * self.plane, dtype, path)
            hi_index = int(np.searchsorted(self.take, p1 * self.plane))
            for a in range(lo_index, hi_index, most or max(hi_index - lo_index, 1)):
                b = hi_index if most is None else min(a + most, hi_index)
                yield a, b, block[self.take[a:b] - p0 * self.plane].astype(out_dtype or dtype, copy=False)
            lo_index = hi_index
            del block

    def read(self, f, dtype: np.dtype, path: Path, out_dtype: np.dtype | None = None) -> np.ndarray:
        out = np.empty(self.take.size, dtype if out_dtype is None else out_dtype)
        for a, b, got in self.pieces(f, dtype, path, out_dtype):
            if self.order is None:
                out[a:b] = got
            else:
                out[self.order[a:b]] = got
            del got
        return out


def picked_pieces(path, image, z: slice, take: np.ndarray, dtype, most: int) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """``(f, lo, hi, values [hi - lo])`` for every frame ``f`` in file order: the values of the voxels
    ``take[lo:hi]`` (``take``: ascending flat indices in Fortran order into the axial slices ``z``) as ``dtype``,
    scaled as :func:`frames` scales them, at most ``most`` at a time. Only a piece of the file and ``most`` values are
    held at once (never a frame, nor a value per voxel of ``take``); a ``.nii.gz`` is decompressed once."""
    path = Path(path)
    (nx, ny, *_), dtype_file, _ = _layout(image)
    picks = _Picks(np.asarray(take), nx * ny, z.stop - z.start)
    if picks.order is not None:
        raise ValueError("picked_pieces: take must be ascending")
    for k, f in _at_each_frame(path, image, z):
        for lo, hi, values in picks.pieces(f, dtype_file, path, most=most):
            yield k, lo, hi, _scaled(values, image).astype(dtype, copy=False)
            del values


def _skip(f, n: int) -> None:
    """Move ``n`` bytes on: a seek in a plain file, read and discard in pieces in a gzip stream."""
    if not isinstance(f, gzip.GzipFile):
        f.seek(n, 1)
        return
    while n > 0:
        got = len(f.read(min(n, DISCARD_BYTES)))
        if got == 0:
            raise EOFError("the file ends before its data")
        n -= got


def _exactly(f, count: int, dtype: np.dtype, path: Path) -> np.ndarray:
    """``count`` values of ``dtype`` read from ``f``; EOFError when the file ends first."""
    out = np.empty(count, dtype)
    view = memoryview(out.view(np.uint8))
    done = 0
    while done < view.nbytes:
        got = f.readinto(view[done:])
        if not got:
            raise EOFError(f"{path.name} ends before its data")
        done += got
    return out


def prefetched(items: Iterable) -> Iterator:
    """The items of ``items`` in order, each next one made in a background thread while the caller works on the
    current one (file reads and NumPy release the GIL, so reading overlaps the caller's computation). At most two
    items exist at once: the one handed out and the one being made. An exception raised while making an item is
    raised here, in the caller's thread; when the caller stops early the item being made is finished first."""
    from concurrent.futures import ThreadPoolExecutor

    source = iter(items)
    end = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxkin-read") as pool:
        pending = pool.submit(next, source, end)
        try:
            while True:
                item = pending.result()
                pending = None
                if item is end:
                    return
                pending = pool.submit(next, source, end)
                yield item
                del item
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):  # the caller's own exception is the one that matters
                    pending.result()  # a read under way: let it end (the generator cannot be closed while it runs)
            close = getattr(source, "close", None)
            if close is not None:
                close()
