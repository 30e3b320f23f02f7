"""Whole-body prediction time and peak memory: 400 axial slices of 112 x 112 x 62 frames with the exp4_1 network.

    python benchmarks/predict_speed.py [--slices 400] [--timed-slices 400] [--batch 8] [--devices N]

A random-weight exp4_1 network (the time does not depend on the weights) predicts K1, k2, k3, vB for
``--timed-slices`` slices of a ``--slices``-slice volume held in memory (float32, kBq/ml), through
:meth:`jaxkin.network.Predictor.predict_volume` (fixed batches, last one padded). If ``--timed-slices`` is smaller
than ``--slices``, the whole volume is still allocated (so peak memory counts it) and the time is extrapolated
linearly to the whole volume; the output says so. Peak memory = the process's maximum resident set size.
Devices: as ``jaxkin predict`` (the CPU split into 2 XLA devices unless ``XLA_FLAGS`` sets a count or
``JAXKIN_CPU_DEVICES`` says otherwise), or ``--devices N``; each batch is split over them.
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
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from jaxkin import distributed as dist  # noqa: E402
from jaxkin import network as N  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "experiments" / "exp4_1.py"))
    ap.add_argument("--slices", type=int, default=400)
    ap.add_argument("--timed-slices", type=int, default=None, help="default: all of --slices")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--devices", type=int, default=None, help="CPU devices (default: as jaxkin predict)")
    args = ap.parse_args()
    dist.split_cpu_devices(args.devices)  # before JAX starts its backends
    timed = args.timed_slices or args.slices
    cfg = N.resolve_time_steps(N.load_config(args.config, [f"predict_batch_size={args.batch}"]), 62)
    graphdef, params = nnx.split(N.make_model(cfg))
    predictor = N.Predictor(graphdef, params, cfg, 62)
    rng = np.random.default_rng(0)
    volume = np.empty((args.size, args.size, args.slices, 62), np.float32)  # filled slab by slab (no float64 copy)
    for z in range(0, args.slices, 50):
        volume[:, :, z : z + 50] = rng.gamma(2.0, 5.0, size=volume[:, :, z : z + 50].shape)
    t0 = time.perf_counter()
    predictor.predict_volume(volume[:, :, : args.batch])  # compile + first batch
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = predictor.predict_volume(volume[:, :, :timed], progress=True)
    elapsed = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__}, "
          f"{jax.device_count()} {jax.devices()[0].platform} device(s); XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"volume {args.size} x {args.size} x {args.slices} slices x 62 frames ({volume.nbytes / 1e9:.2f} GB float32), "
          f"batch {args.batch}; compile + first batch {t_first:.1f} s")
    per_slice = elapsed / timed
    print(f"predicted {timed} slices in {elapsed:.1f} s = {per_slice:.3f} s/slice; output {out.shape}")
    if timed < args.slices:
        print(f"EXTRAPOLATED to {args.slices} slices: {per_slice * args.slices:.0f} s")
    else:
        print(f"whole volume ({args.slices} slices): {elapsed:.1f} s")
    print(f"peak memory (max RSS): {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
