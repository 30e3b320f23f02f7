"""Running on several devices and hosts with JAX's own machinery (``jax.distributed``, ``jax.sharding``).

One process per host (or per GPU) runs the same command; :func:`initialize` connects them through
``jax.distributed.initialize`` (an explicit coordinator address, number of processes and process id, or ``auto`` to
let JAX detect Slurm, Open MPI, Kubernetes or a TPU VM). After that:

- :func:`data_mesh` is a 1-D mesh over every device of every process (axis ``"data"``); :class:`DataParallel`
  shards a batch along it and replicates parameters, so one jit-compiled step trains on all devices;
- :func:`share` is a process's contiguous part of ``n`` items (axial slices of a volume);
- :func:`gather_slabs` assembles per-process slabs of a volume into the whole volume, :func:`gather_arrays` stacks
  small arrays over processes (both collectives of JAX, gloo on CPU, NCCL on GPU);
- :func:`is_main_process` decides who writes files and prints.

Without initialisation every function works for the one local process, so the same code runs everywhere.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import threading

import numpy as np

from jaxkin.errors import InputError

__all__ = ["initialize", "is_main_process", "process_index", "process_count", "share", "gather_arrays", "gather_slabs",
           "check_everywhere", "sync", "data_mesh", "local_mesh", "DataParallel", "local_copy", "split_cpu_devices",
           "cpu_split_by_jaxkin"]

DEFAULT_TIMEOUT_S = 300.0

_HOST_DEVICE_FLAG = "--xla_force_host_platform_device_count"
_split_by_jaxkin = False


def split_cpu_devices(count: int | None = None) -> int:
    """Let XLA present this machine's CPU as ``count`` devices (``XLA_FLAGS=--xla_force_host_platform_device_count``)
    so that the network's train and predict steps split each batch, and the voxel fit each chunk, over them,
    data-parallel.

    On the project's 2-core CPU, two CPU devices (each running its share of the batch) are about 1.4-1.6x faster
    than one device whose operations try to use both cores (XLA's intra-op threading leaves much of the second core
    idle in the small-channel convolutions); see benchmarks/RESULTS.md. ``count`` defaults to ``$JAXKIN_CPU_DEVICES``
    or else to 2 when at least 2 cores are usable (no more: larger splits were not measured). Nothing is changed
    when the count is 1 or less, when ``XLA_FLAGS`` already sets a host device count (the user's choice wins), or when
    JAX has already started its backends (too late: the flag is read once). Only the CPU platform is affected; a GPU
    or TPU stays the default device. Returns the count set, or 0 when nothing was changed. Called by the
    ``jaxkin train``, ``jaxkin predict`` and ``jaxkin fit`` commands, not by ``import jaxkin``."""
    global _split_by_jaxkin
    if count is None:
        value = os.environ.get("JAXKIN_CPU_DEVICES", "").strip()
        try:
            count = int(value) if value else min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                                 else (os.cpu_count() or 1))
        except ValueError:
            raise InputError(f"JAXKIN_CPU_DEVICES must be a whole number, got {value!r}") from None
    flags = os.environ.get("XLA_FLAGS", "")
    if count <= 1 or _HOST_DEVICE_FLAG in flags or _backends_started():
        return 0
    os.environ["XLA_FLAGS"] = f"{flags} {_HOST_DEVICE_FLAG}={count}".strip()
    _split_by_jaxkin = True
    return count


def cpu_split_by_jaxkin() -> bool:
    """Whether :func:`split_cpu_devices` chose this process's CPU devices (rather than the user's ``XLA_FLAGS``)."""
    return _split_by_jaxkin


def _backends_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # a JAX without this private helper: assume started, change nothing
        return True


def _parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"coordinator {address!r}: expected HOST:PORT, e.g. 10.0.0.1:1234")
    return host.strip("[]"), int(port)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return True
    except OSError:
        return False


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               *, auto: bool = False, timeout: float = DEFAULT_TIMEOUT_S, prog: str = "jaxkin") -> None:
    """Connect this process to the others (``jax.distributed.initialize``); a no-op without settings.

    ``coordinator`` (``HOST:PORT`` of process 0), ``num_processes`` and ``process_id`` (0 .. N-1) go together;
    ``auto`` instead lets JAX detect the cluster (Slurm, Open MPI, Kubernetes, TPU VM).

    Must run before anything touches a JAX device. Bad settings raise :class:`InputError`. If not every process
    has connected within ``timeout`` seconds, this process prints one line naming the coordinator and exits with
    status 2 (XLA would otherwise abort with a stack trace); ``prog`` starts that line.
    """
    import jax

    explicit = [coordinator is not None, num_processes is not None, process_id is not None]
    if not any(explicit) and not auto:
        return
    if jax.distributed.is_initialized():  # a second command in the same processes (e.g. train, then fit)
        return
    if auto and any(explicit):
        raise InputError("detecting the cluster (auto) does not combine with coordinator, num_processes or "
                         "process_id")
    if not auto and not all(explicit):
        raise InputError("coordinator, num_processes and process_id go together (or let JAX detect the cluster)")
    if not timeout > 0:
        raise InputError(f"timeout must be positive, got {timeout:g}")
    if not auto:
        host, port = _parse_address(coordinator)
        if num_processes < 1:
            raise InputError(f"num_processes must be at least 1, got {num_processes}")
        if not 0 <= process_id < num_processes:
            raise InputError(f"process_id must be in 0 .. {num_processes - 1}, got {process_id}")
        if process_id == 0:
            try:  # the coordinator service will listen here: fail clearly if the port is taken
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("", port))
            except OSError as err:
                raise InputError(f"coordinator {coordinator}: cannot listen on port {port} ({err.strerror})") from None
    done = threading.Event()
    who = "" if auto else f"process {process_id} of {num_processes}, "

    def watchdog():
        if done.wait(timeout):
            return
        if auto:
            problem = "the processes of the detected cluster did not all connect"
        elif process_id != 0 and not _reachable(host, port):
            problem = f"no coordinator answers at {coordinator}; start process 0 there, check the address and port"
        else:
            problem = (f"not all {num_processes} processes connected to {coordinator}; start every process with "
                       "the same coordinator and number of processes and a distinct process id")
        sys.stderr.write(f"{prog}: error: {problem} ({who}waited {timeout:g} s)\n")
        sys.stderr.flush()
        os._exit(2)

    threading.Thread(target=watchdog, name="jaxkin-init-watchdog", daemon=True).start()
    try:
        if auto:
            jax.distributed.initialize(initialization_timeout=int(timeout) + 60)
        else:
            jax.distributed.initialize(coordinator, num_processes, process_id,
                                       initialization_timeout=int(timeout) + 60)
    except (ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
        if auto:
            raise InputError(f"no cluster detected ({first}); give coordinator, num_processes and process_id "
                             "instead") from None
        raise InputError(f"coordinator {coordinator}: {first}") from None
    finally:
        done.set()


def process_index() -> int:
    """This process's index among the processes of a run (0 when there is one; ``jax.process_index()``)."""
    import jax

    return jax.process_index()


def process_count() -> int:
    """The number of processes of the run (1 unless :func:`initialize` joined several; ``jax.process_count()``)."""
    import jax

    return jax.process_count()


def is_main_process() -> bool:
    """True on process 0, the one that writes shared files and prints."""
    return process_index() == 0


def share(n: int, index: int | None = None, count: int | None = None) -> slice:
    """The contiguous part of ``range(n)`` of process ``index`` of ``count`` (default: this one), as balanced as
    possible (the first ``n % count`` processes get one more)."""
    index = process_index() if index is None else index
    count = process_count() if count is None else count
    base, extra = divmod(n, count)
    start = index * base + min(index, extra)
    return slice(start, start + base + (1 if index < extra else 0))


def gather_arrays(x) -> np.ndarray:
    """``x`` (same shape and dtype on every process) stacked over processes: ``[P, *x.shape]`` on every process.

    The bytes are exchanged, so every dtype (float64 and int64 included, which JAX would narrow) arrives exact."""
    x = np.ascontiguousarray(x)
    if process_count() == 1:
        return x[None]
    from jax.experimental import multihost_utils

    raw = np.asarray(multihost_utils.process_allgather(x.reshape(-1).view(np.uint8), tiled=False))
    return raw.view(x.dtype).reshape(raw.shape[0], *x.shape)


def check_everywhere(fn, *args, **kwargs):
    """Run ``fn`` here and learn whether it raised :class:`InputError` on any process: every process then raises
    the same one-line error (naming the first process that failed), instead of some processes waiting forever in
    the next collective. Returns ``fn``'s result. A collective with several processes."""
    try:
        result, message = fn(*args, **kwargs), ""
    except InputError as err:
        result, message = None, str(err)
    if process_count() == 1:
        if message:
            raise InputError(message)
        return result
    size = 1024
    encoded = message.encode()[:size]
    buffer = np.zeros(size + 1, np.uint8)
    buffer[0] = bool(message)
    buffer[1 : 1 + len(encoded)] = np.frombuffer(encoded, np.uint8)
    gathered = gather_arrays(buffer)
    for p, row in enumerate(gathered):
        if row[0]:
            text = bytes(row[1:]).rstrip(b"\0").decode(errors="replace")
            raise InputError(text if p == process_index() else f"process {p}: {text}")
    return result


def gather_slabs(local, n: int, axis: int = 2) -> np.ndarray:
    """The whole array, on every process, from each process's :func:`share` of ``n`` items along ``axis``."""
    local = np.asarray(local)
    count = process_count()
    if count == 1:
        return local
    parts = [share(n, p, count) for p in range(count)]
    longest = max(p.stop - p.start for p in parts)
    pad = [(0, 0)] * local.ndim
    pad[axis] = (0, longest - local.shape[axis])
    stacked = gather_arrays(np.pad(local, pad))  # [P, ...]
    return np.concatenate([np.take(stacked[p], np.arange(s.stop - s.start), axis=axis)
                           for p, s in enumerate(parts)], axis=axis)


def sync(name: str) -> None:
    """Wait until every process has reached this point (nothing to do for one process)."""
    if process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def data_mesh(count: int = 0):
    """A 1-D mesh, axis ``"data"``, over every device of every process (process 0's devices first), or over
    ``count`` devices: the first ``count / P`` of each of the ``P`` processes."""
    import jax

    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    if count:
        per_process = count // jax.process_count()
        devices = [d for p in range(jax.process_count()) for d in [d for d in devices if d.process_index == p][:per_process]]
    return jax.sharding.Mesh(np.array(devices), ("data",))


def local_mesh():
    """A 1-D mesh over this process's devices, axis ``"data"``: per-process work (prediction of a slab)."""
    import jax

    return jax.sharding.Mesh(np.array(jax.local_devices()), ("data",))


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """Data parallelism over ``mesh``: batches split along the mesh's ``data`` axis, everything else replicated.

    ``batch(local)`` turns this process's rows (a dict of arrays with the batch first) into global arrays whose
    rows are process 0's, then process 1's, ...; ``replicate(tree)`` puts a pytree that is identical on every
    process on every device.
    """

    mesh: object

    @property
    def batch_sharding(self):
        import jax

        return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec("data"))

    @property
    def replicated(self):
        import jax

        return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())

    @property
    def size(self) -> int:
        return int(self.mesh.devices.size)

    def batch(self, local: dict) -> dict:
        import jax

        sharding = self.batch_sharding
        return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}

    def replicate(self, tree):
        import jax

        return jax.device_put(jax.tree.map(np.asarray, tree), self.replicated)


def local_copy(tree):
    """A pytree of (replicated) global arrays as arrays on this process's first device."""
    import jax

    return jax.tree.map(lambda a: a.addressable_data(0) if isinstance(a, jax.Array) else a, tree)
