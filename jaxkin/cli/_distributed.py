"""The multi-host options of ``jaxkin train``, ``fit`` and ``predict``, and :func:`jaxkin.distributed.initialize`
from them."""

from __future__ import annotations

from jaxkin.distributed import DEFAULT_TIMEOUT_S, initialize


def add_arguments(parser) -> None:
    """Add the multi-host options to ``parser``."""
    group = parser.add_argument_group("several hosts (see docs/guide/scaling.md)")
    group.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                       help="address of process 0, which every process connects to (with --num-processes, --process-id)")
    group.add_argument("--num-processes", type=int, default=None, metavar="N", help="number of processes")
    group.add_argument("--process-id", type=int, default=None, metavar="I", help="this process, 0 .. N-1")
    group.add_argument("--distributed", action="store_true",
                       help="let JAX detect the cluster (Slurm, Open MPI, Kubernetes, TPU VM) instead")
    group.add_argument("--init-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                       help=f"give up when not every process has connected within this time (default {DEFAULT_TIMEOUT_S:g})")


def initialize_from_args(args, prog: str = "jaxkin") -> None:
    """:func:`jaxkin.distributed.initialize` from the options of :func:`add_arguments` (nothing to do without them);
    ``prog`` starts the line printed when not every process connects in time."""
    initialize(args.coordinator, args.num_processes, args.process_id, auto=args.distributed,
               timeout=args.init_timeout, prog=prog)
