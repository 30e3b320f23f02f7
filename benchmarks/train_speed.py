"""Training steps per second of the kinetic UNet: exp4_1 ((2+1)D, 3D pooling, multi-clamp), batch 5, 112 x 112.

    python benchmarks/train_speed.py [--config experiments/exp4_1.py] [--steps 3] [--batch 5] [--size 112] [--devices N]

One compiled pure train step (:func:`jaxkin.network.make_train_step`: forward, kinetic-model loss, backward, Adam) on noiseless TACs of smooth random
parameter maps with the 62 Quadra frames (padded to 64) and two subjects' Feng inputs. Prints the compile time and
the mean time per step after compilation. ``--devices N`` splits the CPU into N XLA devices
(``--xla_force_host_platform_device_count``, unless ``XLA_FLAGS`` already sets it) and splits the batch over them
(data-parallel, as ``jaxkin train`` does; the batch must divide); the default is one device. Peak memory = the
process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import jaxkin  # noqa: E402
from jaxkin import distributed as dist  # noqa: E402
from jaxkin import network as N  # noqa: E402
from jaxkin.nn.loss import model_tacs  # noqa: E402


def synthetic_batch(batch: int, size: int, seed: int = 0):
    """TACs ``[batch, size, size, 62]`` of smooth random parameter maps, two subjects' Feng inputs."""
    frames = jaxkin.FrameSchedule.quadra()
    kins = [jaxkin.prepare(jaxkin.feng_input(frames.end[-1], delay=d).scaled(s), frames) for d, s in ((0.1, 1.0), (0.3, 1.2))]
    kin = jax.tree.map(lambda *x: jnp.stack(x), *kins)
    rng = np.random.default_rng(seed)
    lo, hi = np.array([0.05, 0.2, 0.01, 0.0]), np.array([1.2, 2.0, 0.3, 0.2])
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    params = np.empty((batch, size, size, 4), np.float32)
    for b in range(batch):
        for p in range(4):
            c = rng.uniform(-0.6, 0.6, 2)
            params[b, ..., p] = lo[p] + (hi[p] - lo[p]) * np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / 0.3)
    subject = (np.arange(batch) % 2).astype(np.int32)
    tac = np.asarray(model_tacs(jnp.asarray(params), kin, jnp.asarray(subject)))
    return {"tac": tac, "mask": np.ones((batch, size, size), np.float32), "subject": subject}, kin


def timed_steps(step, state, batch, kin, n: int):
    """Run ``step`` ``n`` times, waiting for each result: ``(state, metrics, seconds per step)``."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        state, m = step(state, batch, kin)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    return state, m, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "experiments" / "exp4_1.py"))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--devices", type=int, default=1, help="CPU devices to split the batch over (default 1)")
    args = ap.parse_args()
    dist.split_cpu_devices(args.devices)  # before JAX starts its backends
    cfg = N.resolve_time_steps(N.load_config(args.config, [f"batch_size={args.batch}", f"crop={args.size}"]), 62)
    batch, kin = synthetic_batch(args.batch, args.size)
    graphdef, params = nnx.split(N.make_model(cfg))
    optimizer, _ = N.make_optimizer(cfg.optim, 150)
    state = N.TrainState(params, optimizer.init(params))
    parallel = None
    if jax.device_count() > 1:
        parallel = dist.DataParallel(dist.data_mesh())
        state, batch, kin = parallel.replicate(state), parallel.batch(batch), parallel.replicate(kin)
    step = N.make_train_step(graphdef, optimizer, parallel)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch, kin).compile()
    t_compile = time.perf_counter() - t0
    state, m, _ = timed_steps(compiled, state, batch, kin, 1)  # warm-up
    state, m, times = timed_steps(compiled, state, batch, kin, args.steps)
    per_step = float(np.mean(times))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__}, "
          f"{jax.device_count()} {jax.devices()[0].platform} device(s); XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"config {Path(args.config).name}: conv {cfg.model.conv}, pooling {cfg.model.pooling}, "
          f"{cfg.model.final_activation}; batch {args.batch} x {args.size} x {args.size} x {cfg.model.time_steps} time steps")
    print(f"compile: {t_compile:.1f} s")
    print(f"train step: {per_step:.2f} s (min {min(times):.2f}, max {max(times):.2f}, {args.steps} steps) "
          f"= {1 / per_step:.3f} steps/s; loss {float(m['loss']):.4g}")
    print(f"peak memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GB")


if __name__ == "__main__":
    main()
