"""Model TAC evaluations per second: float32, vmapped, 1M TACs in fixed-size chunks.

    python benchmarks/kinetics_speed.py [--tacs 1048576] [--chunk 65536] [--repeats 3]

Prints, for the irreversible two-tissue model on the 62-frame Quadra schedule with a Feng input:
the table evaluator (the default), the table evaluator with its Jacobian (forward mode, as a fit uses it),
and the exact knot recurrence (on fewer TACs; it is O(input samples) per TAC).
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxkin
from jaxkin import kinetics


def _throughput(fn, params, chunk: int, repeats: int) -> float:
    """TACs per second of ``fn`` over ``params [N, P]`` evaluated ``chunk`` at a time (one compilation)."""
    n = params.shape[0]
    chunks = params.reshape(n // chunk, chunk, -1)
    run = jax.jit(lambda c: fn(c).sum())  # reduce on device so the timing does not include host copies
    jax.block_until_ready(run(chunks[0]))
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = [run(c) for c in chunks]
        jax.block_until_ready(out)
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tacs", type=int, default=2**20)
    parser.add_argument("--chunk", type=int, default=2**16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    frames = jaxkin.FrameSchedule.quadra()
    aif = jaxkin.feng_input(frames.end[-1], delay=0.2)
    kin = jaxkin.prepare(aif, frames)
    exact = kinetics.prepare_exact(aif, frames)
    model = jaxkin.get_model("2tcmirr")
    params = jax.random.uniform(
        jax.random.key(0), (args.tacs, 4), minval=jnp.array(model.lower), maxval=jnp.array(model.upper)
    )

    print(f"jaxkin {jaxkin.__version__}, jax {jax.__version__}, {jax.devices()[0].platform}, "
          f"{platform.processor() or platform.machine()}, float32, {frames.n_frames} frames, "
          f"{len(aif.times)} input samples")
    table = _throughput(lambda p: model.tac(p, kin), params, args.chunk, args.repeats)
    print(f"table evaluator:           {table:14,.0f} TACs/s  ({args.tacs:,} TACs, chunks of {args.chunk:,})")

    def with_jacobian(p):
        return jax.vmap(jax.jacfwd(lambda q: model.tac(q, kin)))(p)

    jac = _throughput(with_jacobian, params, args.chunk, args.repeats)
    print(f"table + Jacobian (jacfwd): {jac:14,.0f} TACs/s")

    n_exact = min(args.tacs, 4096)
    exact_rate = _throughput(
        lambda p: jax.vmap(lambda q: model.tac(q, exact))(p), params[:n_exact], min(1024, n_exact), 1
    )
    print(f"exact knot recurrence:     {exact_rate:14,.0f} TACs/s  ({n_exact:,} TACs)")


if __name__ == "__main__":
    main()
