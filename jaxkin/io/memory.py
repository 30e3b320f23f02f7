"""How much memory this process may use, and the share of it a command takes by default.

Under a batch scheduler (Slurm) or in a container the limit is the control group's, not the machine's RAM: cgroup v2
``memory.max`` (of the process's own group, read from ``/proc/self/cgroup``, and of every group above it), or cgroup
v1 ``memory.limit_in_bytes``. Without a limit, the memory available now (``MemAvailable`` of ``/proc/meminfo``), or
else the physical memory. Bytes throughout.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

__all__ = ["DEFAULT_SHARE", "GB", "MemoryLimit", "default_budget", "memory_limit"]

#: The share of the memory this process may use that a command takes when no budget is given.
DEFAULT_SHARE = 0.75

#: Bytes in a gigabyte as budgets are given and said (10^9).
GB = 1e9

#: cgroup v1 reports "no limit" as a huge number (PAGE_COUNTER_MAX pages): anything above this is no limit.
_UNLIMITED = 1 << 60


@dataclasses.dataclass(frozen=True)
class MemoryLimit:
    """``bytes`` this process may use and where that comes from (``source``, words for a message)."""

    bytes: int
    source: str


def _read_number(path: Path) -> int | None:
    """The integer in ``path`` (cgroup files), None when absent, unreadable, ``max`` or too large to be a limit."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    value = int(text)
    return value if value < _UNLIMITED else None


def _own_groups(root: Path) -> dict[str, str]:
    """``{controller or "" (v2): path}`` of this process's control groups (``/proc/self/cgroup``)."""
    groups = {}
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return groups
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                groups[controller] = parts[2]
    return groups


def _cgroup_limit(root: Path) -> MemoryLimit | None:
    """The smallest memory limit of this process's cgroup (v2, or v1's memory controller) and the groups above."""
    groups = _own_groups(root)
    found = []
    for base, name, own in ((root / "sys/fs/cgroup", "memory.max", groups.get("", "/")),
                            (root / "sys/fs/cgroup/memory", "memory.limit_in_bytes", groups.get("memory", "/"))):
        rel = Path(own.lstrip("/"))
        for folder in [rel, *rel.parents]:
            value = _read_number(base / folder / name)
            if value is not None:
                found.append(MemoryLimit(value, f"the cgroup limit ({base / folder / name})"))
    return min(found, key=lambda m: m.bytes) if found else None


def _meminfo_available(root: Path) -> int | None:
    try:
        for line in (root / "proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_limit(root="/") -> MemoryLimit:
    """The memory this process may use: the cgroup limit when there is one, else the memory available now, else
    the physical memory. ``root``: the file system root to read ``/sys/fs/cgroup`` and ``/proc`` from."""
    root = Path(root)
    limit = _cgroup_limit(root)
    available = _meminfo_available(root)
    if limit is not None:
        return limit
    if available is not None:
        return MemoryLimit(available, "the memory available (MemAvailable of /proc/meminfo)")
    try:
        return MemoryLimit(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "the physical memory")
    except (ValueError, OSError, AttributeError):
        return MemoryLimit(8 << 30, "an assumed 8 GiB (the memory could not be read)")


def default_budget(root="/") -> MemoryLimit:
    """:data:`DEFAULT_SHARE` of :func:`memory_limit`: the budget of a command when none is given."""
    limit = memory_limit(root)
    return MemoryLimit(int(limit.bytes * DEFAULT_SHARE), f"{DEFAULT_SHARE:.0%} of {limit.source}")
