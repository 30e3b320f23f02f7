"""File primitives at jaxkin's edges: NIfTI opening with an integrity check (complete, CRC-32, usable affine), JSON
and TSV reading, atomic writes (a temporary name in the same folder, then a rename) and sets of outputs written as a
set (:func:`output_set`), so that no command leaves half a file, folder or set; signals that wait for a set to be
moved in place (:func:`uninterrupted`); checks that an output never replaces an input (:func:`check_not_inputs`,
:func:`check_replaceable`).

Every problem with a file raises :class:`jaxkin.errors.InputError`: one line naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np

from jaxkin.errors import InputError

__all__ = ["AFFINE_ATOL", "nifti_stem", "open_nifti", "one_line", "read_json", "write_json", "read_tsv", "write_tsv",
           "atomic_write", "atomic_directory", "output_set", "OutputSet", "Interrupted", "interrupt",
           "uninterrupted", "clean_stale", "check_affine", "check_not_inputs", "check_replaceable", "sidecar_of",
           "TEMP_PREFIX"]

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
    """``nibabel.load`` with errors turned into InputError, and checks that the file is complete and undamaged
    (:func:`_check_complete`) and that its affine is usable (:func:`check_affine`)."""
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
    check_affine(path, image.affine)
    return image


def _check_complete(path: Path, expected: int) -> None:
    """Raise InputError if the file holds fewer than ``expected`` (uncompressed) bytes, or (``.nii.gz``) if its gzip
    data are damaged.

    Plain ``.nii``: the file size. ``.nii.gz``: the whole stream is decompressed once (every gzip member), which
    checks each member's CRC-32 and length: a damaged or truncated file fails here with an InputError, before any
    value reaches a computation. The result is remembered per file (path, size, modification time), so a file read
    twice in a run is checked once.
    """
    stat = path.stat()
    size = stat.st_size
    if not path.name.endswith(".gz"):
        if size < expected:
            raise InputError(f"{path}: truncated NIfTI: {size} bytes, the header needs {expected}")
        return
    key = (str(path.resolve()), stat.st_ino, size, stat.st_mtime_ns)
    if _CHECKED.get(key, -1) >= expected:
        return
    total = _gzip_length(path)
    if total < expected:
        raise InputError(
            f"{path}: truncated or unreadable NIfTI: {total} bytes of image data, the header needs {expected}"
        )
    _CHECKED[key] = total


#: ``{(resolved path, inode, size, mtime ns): uncompressed bytes}`` of the gzip files whose CRCs were checked.
_CHECKED: dict = {}


def _gzip_length(path: Path) -> int:
    """The uncompressed length of a gzip file, every member's CRC-32 and length checked (InputError if damaged)."""
    total = 0
    with open(path, "rb") as f:
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
            total += len(decomp.flush())
        except zlib.error as err:
            raise InputError(f"{path}: damaged gzip data ({one_line(err)})") from None
    if not decomp.eof:
        raise InputError(f"{path}: truncated gzip data ({total} bytes decompressed, the end of the stream missing)")
    return total


def check_affine(path, affine) -> None:
    """InputError unless ``affine`` (4 x 4, of the image ``path``) is finite and invertible: voxels of non-zero size
    along independent axes (a singular affine maps the grid onto a plane, and no resampling can use it)."""
    a = np.asarray(affine, np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise InputError(f"{path}: the affine (voxel to mm) is not finite")
    sizes = np.sqrt((a[:3, :3] ** 2).sum(axis=0))
    if not (sizes > 0).all() or abs(np.linalg.det(a[:3, :3])) <= 1e-6 * float(np.prod(sizes)):
        raise InputError(f"{path}: the affine (voxel to mm) is singular (voxel axes {np.round(a[:3, :3], 4).tolist()});"
                         " the image has no usable geometry")


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


#: Every temporary file or folder jaxkin writes is named ``.jaxkin-<host>-<process id>-<random>.tmp[<extension>]``
#: (``<host>``: 4 hex digits of the machine's name): hidden, at most 48 bytes (a legal final name is never too long
#: for its temporary one), and recognisable, so a later run on the same machine can clean what a killed one left
#: (:func:`clean_stale`).
TEMP_PREFIX = ".jaxkin-"


def _host_tag() -> str:
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:4]


_HOST = _host_tag()


def _temp_prefix(pid: int | None = None) -> str:
    return f"{TEMP_PREFIX}{_HOST}-{os.getpid() if pid is None else pid}-"


def _atomic_target(path: Path) -> Path:
    """A temporary name in the same directory that keeps the file's extension (nibabel picks gzip by it)."""
    ext = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix[:12]
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(), suffix=".tmp" + ext, dir=path.parent)
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
        clean_stale(path.parent)
        tmp = _atomic_target(path)
    except OSError as err:
        raise InputError(f"{path}: cannot write ({one_line(err)})") from None
    try:
        yield tmp
        with uninterrupted():
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
        clean_stale(out.parent)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(), suffix=".tmp", dir=out.parent))
    except OSError as err:
        raise InputError(f"{label}: cannot create {what} folder ({one_line(err)})") from None
    try:
        yield tmp
        with uninterrupted():
            if out.exists():
                out.rmdir()  # empty, checked by the caller
            os.rename(tmp, out)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"{label}: cannot write {what} ({one_line(err)})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------------------------------
# Interruptions: a signal (SIGINT, SIGTERM) raises Interrupted, except inside uninterrupted(), where it waits
# --------------------------------------------------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    """The process was asked to stop (``signum``: SIGINT, SIGTERM); raised like Ctrl-C's KeyboardInterrupt, so every
    writer removes its temporary files on the way out."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_CRITICAL = {"depth": 0, "pending": None}


def interrupt(signum: int) -> None:
    """What a signal handler calls: raise :class:`Interrupted`, or, inside :func:`uninterrupted`, remember the
    signal and raise it when the section ends."""
    if _CRITICAL["depth"]:
        _CRITICAL["pending"] = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def uninterrupted():
    """A section that a signal does not cut short (the renames that put a set of outputs in place): a signal that
    arrives inside is raised as :class:`Interrupted` when it ends."""
    _CRITICAL["depth"] += 1
    try:
        yield
    finally:
        _CRITICAL["depth"] -= 1
        pending = _CRITICAL["pending"]
        if not _CRITICAL["depth"] and pending is not None:
            _CRITICAL["pending"] = None
            raise Interrupted(pending)


# --------------------------------------------------------------------------------------------------
# A set of outputs, written as a set
# --------------------------------------------------------------------------------------------------

_JOURNAL = ".commit.json"


def _existing_ancestor(folder: Path) -> Path:
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process
    return True


def clean_stale(folder: Path) -> list[str]:
    """Remove the temporary files and folders that a killed jaxkin process of this machine left in ``folder`` (names
    starting with :data:`TEMP_PREFIX` whose process is gone); a set of outputs killed while being moved in place is
    moved in first (its journal lists what belongs to it). Returns the names handled."""
    import shutil

    folder = Path(folder)
    done: list[str] = []
    if not folder.is_dir():
        return done
    for entry in folder.iterdir():
        host, _, rest = entry.name[len(TEMP_PREFIX):].partition("-")
        pid = rest.split("-", 1)[0]
        if not entry.name.startswith(TEMP_PREFIX) or host != _HOST or not pid.isdigit() or _alive(int(pid)):
            continue  # not ours, another machine's (a shared file system), or its process still runs
        if entry.is_dir() and (entry / _JOURNAL).is_file():
            with contextlib.suppress(OSError, ValueError):
                _finish(entry, json.loads((entry / _JOURNAL).read_text(encoding="utf-8")))
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        done.append(entry.name)
    return done


def _finish(stage: Path, journal: dict) -> None:
    """Move the files of a staged set into its folder and remove the earlier run's files it replaces."""
    target = Path(journal["folder"])
    target.mkdir(parents=True, exist_ok=True)
    for name in journal["files"]:
        if (stage / name).exists():
            os.replace(stage / name, target / name)
    for name in journal["remove"]:
        (target / name).unlink(missing_ok=True)


class OutputSet:
    """The staging folder of a set of outputs (see :func:`output_set`): write each file at ``stage / name``."""

    def __init__(self, folder: Path, stage: Path):
        self.folder, self.stage = folder, stage
        self.removed: list[str] = []

    def path(self, name: str) -> Path:
        """Where to write the output ``name`` (a plain file name) of the set."""
        return self.stage / name


@contextlib.contextmanager
def output_set(folder, *, replaces: tuple[str, ...] = (), before_commit=None, software: str | None = None):
    """Write a set of files into ``folder`` as a set: yield an :class:`OutputSet` whose files are written into a
    hidden temporary folder beside the target (in ``folder`` if it exists, else in its nearest existing parent,
    so on the same file system), with their final names. When the block ends without an error:
    ``before_commit()`` (if given) is called, then, without being cut short by a signal, the folder is created, the
    files are moved in place, and the files of an earlier run that match a glob pattern of ``replaces`` but are not
    in the new set are removed (their names in ``OutputSet.removed``; with ``software``, only those whose JSON
    sidecar names it as ``SoftwareName``: another program's files are kept). On an error or an interruption the
    temporary folder is removed and ``folder`` is as it was (cut short while moving, the move is finished first). A journal in the temporary folder lets a later run finish (or
    drop) a set whose process was killed (:func:`clean_stale`). OSError becomes an InputError naming ``folder``.
    """
    import shutil

    folder = Path(folder)
    anchor = _existing_ancestor(folder)
    try:
        clean_stale(anchor)
        if anchor != folder.absolute():
            clean_stale(folder)
        stage = Path(tempfile.mkdtemp(prefix=_temp_prefix(), suffix=".tmp", dir=anchor))
    except OSError as err:
        raise InputError(f"{folder}: cannot write ({one_line(err)})") from None
    written = OutputSet(folder, stage)
    journal, moving = None, False
    try:
        yield written
        names = sorted(p.name for p in stage.iterdir())
        new = set(names)
        old = sorted({p.name for pattern in replaces for p in folder.glob(pattern)
                      if software is None or _written_by(p, software)} - new) if folder.is_dir() else []
        journal = {"folder": str(folder.absolute()), "files": names, "remove": old}
        with open(stage / _JOURNAL, "w", encoding="utf-8") as f:
            json.dump(journal, f)
        if before_commit is not None:
            before_commit()
        with uninterrupted():
            moving = True
            _finish(stage, journal)
            written.removed = old
            shutil.rmtree(stage, ignore_errors=True)
    except BaseException as err:
        if moving:  # cut short while moving the set in place (a library caller's Ctrl-C): finish it
            with contextlib.suppress(OSError):
                _finish(stage, journal)
        shutil.rmtree(stage, ignore_errors=True)
        if isinstance(err, OSError):
            raise InputError(f"{folder}: cannot write ({one_line(err)})") from None
        raise


def _written_by(path: Path, software: str) -> bool:
    """True if the JSON sidecar of ``path`` (or ``path`` itself, a ``.json``) names ``software`` as SoftwareName."""
    try:
        data = json.loads(sidecar_of(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and data.get("SoftwareName") == software


# --------------------------------------------------------------------------------------------------
# Outputs that would land on inputs
# --------------------------------------------------------------------------------------------------


def sidecar_of(path: Path) -> Path:
    """The JSON sidecar of a data file: ``x.nii.gz``, ``x.nii``, ``x.tsv`` -> ``x.json``."""
    path = Path(path)
    for ext in (".nii.gz", ".nii", ".tsv.gz", ".tsv"):
        if path.name.endswith(ext):
            return path.with_name(path.name[: -len(ext)] + ".json")
    return path.with_suffix(".json")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_not_inputs(outputs, inputs, *, label: str = "output") -> None:
    """InputError if any path of ``outputs`` is one of ``inputs`` or a sidecar of one (``x.json`` of ``x.nii.gz``,
    ``x.tsv``): an output never replaces an input. ``label`` starts the message."""
    given = [Path(p) for p in inputs if p is not None]
    protected = given + [sidecar_of(p) for p in given if not p.is_dir()]
    for out in (Path(p) for p in outputs):
        for p in protected:
            if _same_file(out, p):
                raise InputError(f"{label} {out}: is the input {p}; write the output to another file")


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


def check_replaceable(path, keys: tuple[str, ...], what: str) -> None:
    """InputError unless the output ``path`` and its sidecar (:func:`sidecar_of`) are both new, or are ``what`` that
    jaxkin wrote earlier (the sidecar holds every one of ``keys``), so a rerun replaces its own output but never a
    user's file, e.g. a measured blood recording or the sidecar of a PET image that shares the output's stem."""
    path = Path(path)
    side = sidecar_of(path)
    if not path.exists() and not side.exists():
        return
    if path.exists() and not path.is_file():
        raise InputError(f"{path}: exists and is not a file")
    try:
        data = json.loads(side.read_text(encoding="utf-8")) if side.is_file() else None
    except (OSError, UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict) or any(k not in data for k in keys):
        found = path if path.exists() else side
        raise InputError(f"{found}: exists and is not {what} jaxkin wrote; it is kept (write the output to another "
                         "file)")
