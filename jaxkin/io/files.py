"""File primitives at jaxkin's edges: NIfTI opening with an integrity check, JSON and TSV reading, and atomic
writes (a temporary name in the same folder, then a rename), so that no command leaves half a file or folder.

Every problem with a file raises :class:`jaxkin.errors.InputError`: one line naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from jaxkin.errors import InputError

__all__ = ["AFFINE_ATOL", "nifti_stem", "open_nifti", "one_line", "read_json", "write_json", "read_tsv", "write_tsv",
           "atomic_write", "atomic_directory"]

#: Geometry tolerance (mm) for "the same grid": affines may differ by float32 rounding of the header.
AFFINE_ATOL = 1e-3


def nifti_stem(path: Path) -> str:
    """The file name without ``.nii.gz`` or ``.nii``."""
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    raise InputError(f"{path}: not a NIfTI file (expected a name ending in .nii.gz or .nii)")


def open_nifti(path: Path):
    """``nibabel.load`` with errors turned into InputError, and a check that the file is not truncated."""
    import nibabel as nib

    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        image = nib.load(str(path), mmap=False)
    except Exception as err:  # nibabel raises many types for a broken header
        raise InputError(f"{path}: cannot read NIfTI header ({one_line(err)})") from None
    header = image.header
    expected = int(header.get_data_offset()) + int(np.prod(image.shape)) * header.get_data_dtype().itemsize
    _check_complete(path, expected)
    return image


def _check_complete(path: Path, expected: int) -> None:
    """Raise InputError if the file holds fewer than ``expected`` (uncompressed) bytes.

    Plain ``.nii``: the file size. ``.nii.gz``: the gzip trailer stores the uncompressed size (mod 2^32); only if
    it disagrees (a truncated file, or a multi-member gzip) is the stream decompressed to count the bytes. A damaged
    file that slips through (chance ~1e-5) still fails with an InputError when its data are read.
    """
    size = path.stat().st_size
    if not path.name.endswith(".gz"):
        if size < expected:
            raise InputError(f"{path}: truncated NIfTI: {size} bytes, the header needs {expected}")
        return
    with open(path, "rb") as f:
        if size >= 18:
            f.seek(-4, os.SEEK_END)
            (isize,) = struct.unpack("<I", f.read(4))
            # nibabel may write a few bytes past the image data: accept up to 64 KiB of them.
            if (isize - expected) % 2**32 < 65536:
                return
        f.seek(0)
        total = 0
        complete = False
        try:
            decomp = zlib.decompressobj(wbits=31)
            while True:
                chunk = f.read(1 << 22)
                if not chunk:
                    break
                total += len(decomp.decompress(chunk))
                while decomp.eof and decomp.unused_data:  # next gzip member
                    rest = decomp.unused_data
                    decomp = zlib.decompressobj(wbits=31)
                    total += len(decomp.decompress(rest))
            complete = decomp.eof
        except zlib.error as err:
            raise InputError(f"{path}: corrupt gzip data ({one_line(err)})") from None
    if not complete or total < expected:
        raise InputError(
            f"{path}: truncated or unreadable NIfTI: {total} bytes of image data, the header needs {expected}"
        )


def one_line(err: BaseException) -> str:
    """An exception's message on one line (for InputError messages)."""
    return " ".join(str(err).split()) or type(err).__name__


def read_json(path: Path, what: str = "JSON file") -> dict:
    """A JSON object from ``path``; InputError naming ``what`` if it is missing, unreadable or not an object."""
    if not path.is_file():
        raise InputError(f"{path}: missing {what}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: cannot read JSON ({one_line(err)})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


def _atomic_target(path: Path) -> Path:
    """A temporary name in the same directory that keeps the file's extension (nibabel picks gzip by it)."""
    ext = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + ext, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _FILE_MODE)
    return Path(tmp)


@contextlib.contextmanager
def atomic_write(path: Path):
    """Yield a temporary path; on success rename it to ``path``, on failure remove it.

    An OSError (no permission, disk full, ...) becomes an InputError naming ``path``.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _atomic_target(path)
    except OSError as err:
        raise InputError(f"{path}: cannot write ({one_line(err)})") from None
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write ({one_line(err)})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(out: Path, *, label: str, what: str):
    """Yield an empty temporary folder beside ``out``; on success rename it to ``out``, on failure remove it.

    ``out`` must not exist or be an empty folder (callers check that before any heavy work). An OSError becomes an
    InputError ``"{label}: cannot create {what} folder (...)"`` or ``"{label}: cannot write {what} (...)"``, so a
    command never leaves a half-written folder behind.
    """
    import shutil

    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as err:
        raise InputError(f"{label}: cannot create {what} folder ({one_line(err)})") from None
    try:
        yield tmp
        if out.exists():
            out.rmdir()  # empty, checked by the caller
        os.rename(tmp, out)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"{label}: cannot write {what} ({one_line(err)})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path, data) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    with atomic_write(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_tsv(path, header, rows) -> None:
    """Write a tab-separated file atomically: the ``header`` row, then ``rows`` (cells as strings, already
    formatted)."""
    lines = ["\t".join(header)] + ["\t".join(str(c) for c in row) for row in rows]
    with atomic_write(Path(path)) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)`` of a tab-separated file (blank lines skipped); every row must have the header's length."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [row for row in csv.reader(f, delimiter="\t") if row and any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: cannot read TSV ({one_line(err)})") from None
    if not rows:
        raise InputError(f"{path}: empty TSV (a header row is needed)")
    header = [h.strip() for h in rows[0]]
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise InputError(f"{path}: line {i} has {len(row)} columns, the header has {len(header)}")
    return header, rows[1:]
