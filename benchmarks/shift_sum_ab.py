"""Prediction forward with and without the shifted-sum convs, alternating in one process.

    python benchmarks/shift_sum_ab.py [--rounds 10] [--batch 8] [--devices 2]

Compiles the exp4_1 forward (random weights, ``--batch`` slices of 112 x 112 x 62 frames split over ``--devices`` CPU
devices) twice: "old" with ``convs=XLA_CONVS`` (every conv is XLA's, the code before the change) and "new"
with ``convs=SHIFT_SUM_CONVS`` (prediction's), then times them alternately (order swapped every round) so that a changing load
hits both alike. Prints the largest output difference, each round's times and the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from jaxkin import distributed as dist  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--devices", type=int, default=2)
    args = ap.parse_args()
    dist.split_cpu_devices(args.devices)
    import jax
    import numpy as np
    from flax import nnx

    from jaxkin import network as N
    from jaxkin.network.steps import forward
    from jaxkin.nn import unet as U

    config = Path(__file__).resolve().parents[1] / "experiments" / "exp4_1.py"
    cfg = N.resolve_time_steps(N.load_config(config, []), 62)
    graphdef, params = nnx.split(N.make_model(cfg))
    par = dist.DataParallel(dist.local_mesh())
    params = par.replicate(params)
    tac = np.random.default_rng(0).gamma(2.0, 5.0, (args.batch, 112, 112, 62)).astype(np.float32)
    tac = jax.device_put(tac, par.batch_sharding)
    fns = {}
    for name, convs in (("old", U.XLA_CONVS), ("new", U.SHIFT_SUM_CONVS)):
        f = jax.jit(lambda p, t, convs=convs: forward(graphdef, p, t, convs=convs),
                    in_shardings=(par.replicated, par.batch_sharding), out_shardings=par.batch_sharding)
        fns[name] = f.lower(params, tac).compile()
    outs = {k: np.asarray(f(params, tac)) for k, f in fns.items()}
    print(f"{jax.device_count()} devices, batch {args.batch}; largest |new - old| = "
          f"{float(np.abs(outs['new'] - outs['old']).max()):.3g}")
    times: dict[str, list[float]] = {"old": [], "new": []}
    for r in range(args.rounds):
        for k in ("old", "new") if r % 2 == 0 else ("new", "old"):
            t0 = time.perf_counter()
            fns[k](params, tac).block_until_ready()
            times[k].append(time.perf_counter() - t0)
        print(f"round {r}: old {times['old'][-1]:.2f} s, new {times['new'][-1]:.2f} s, "
              f"ratio {times['new'][-1] / times['old'][-1]:.3f}", flush=True)
    ratios = sorted(n / o for n, o in zip(times["new"], times["old"]))
    print(f"min old {min(times['old']):.2f} s, min new {min(times['new']):.2f} s (ratio "
          f"{min(times['new']) / min(times['old']):.3f}); median of the round ratios {ratios[len(ratios) // 2]:.3f}")


if __name__ == "__main__":
    main()
