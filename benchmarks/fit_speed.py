"""Voxel-wise fitting speed and quality: scipy curve_fit (the paper's method) vs jaxkin's basis + LM, same TACs.

    python benchmarks/fit_speed.py [--n 2000] [--chunk 16384] [--big 65536]

Noisy TACs of the phantom (jaxkin.data.phantom, subject 0 of the "small" preset: body voxels, 4 mm PSF, the
design's noise model) with the phantom's input function (10 s samples, 1 s over the bolus). Both methods fit the
irreversible two-tissue model with the paper's bounds and no weights. curve_fit: method trf, p0 = [0.1, 0.1,
0.01, 0.01], diff_step = 1e-3, on the exact float64 NumPy model (jaxkin.fitting.baseline). jaxkin: float32, default
settings. Prints TACs per second for each (jaxkin after compilation, best of 3), the ratio, and the fraction of
TACs where jaxkin's SSE <= 1.001 x curve_fit's (both SSEs evaluated with the same float64 NumPy model).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="TACs fitted by both methods")
    parser.add_argument("--chunk", type=int, default=16384, help="jaxkin chunk size")
    parser.add_argument("--big", type=int, default=65536, help="TACs for jaxkin's steady-state throughput")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import jax

    import jaxkin
    from jaxkin import fitting
    from jaxkin.fitting import baseline
    from jaxkin.data.phantom import simulate_subject

    subject = simulate_subject(0, seed=args.seed, preset="small")
    body = subject.labels > 0
    all_tacs = subject.pet[body].astype(np.float64)  # [V, F] kBq/ml
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(all_tacs.shape[0], size=args.n, replace=args.n > all_tacs.shape[0])
    tacs = all_tacs[pick]
    kin = jaxkin.prepare(subject.input_function, subject.frames)
    model = baseline.NumpyModel(subject.input_function, subject.frames, "2tcmirr")
    print(f"jax {jax.__version__}, devices {jax.devices()}, cpu count {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{args.n} noisy phantom TACs ({body.sum()} body voxels of subject 0), {subject.frames.n_frames} frames, "
          f"input {len(subject.input_function.times)} samples")

    # jaxkin on the same TACs (one chunk; compile first)
    def run_jax(x, chunk):
        res = fitting.fit_tacs(x, kin, chunk_size=chunk, bounds="paper")  # curve_fit's bounds
        jax.block_until_ready(res)
        return res

    t0 = time.perf_counter()
    run_jax(tacs, args.chunk)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        res = run_jax(tacs, args.chunk)
        times.append(time.perf_counter() - t0)
    jax_small = args.n / min(times)
    res = res.to_numpy()

    # jaxkin steady state on a large batch (body TACs resampled)
    big = all_tacs[rng.choice(all_tacs.shape[0], size=args.big)]
    run_jax(big[: args.chunk], args.chunk)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        run_jax(big, args.chunk)
        times.append(time.perf_counter() - t0)
    jax_big = args.big / min(times)

    # scipy curve_fit (one pass; it is ~4-5 orders of magnitude slower)
    t0 = time.perf_counter()
    cf_params, cf_sse, cf_ok = baseline.curve_fit_tacs(tacs, model)
    cf_s = time.perf_counter() - t0
    cf_rate = args.n / cf_s

    jax_sse = np.array([np.sum((model(p) - y) ** 2) for p, y in zip(res.params.astype(np.float64), tacs)])
    ratio = jax_sse / np.maximum(cf_sse, 1e-300)
    within = np.mean(jax_sse <= 1.001 * cf_sse)
    print(f"scipy curve_fit : {cf_rate:10.1f} TACs/s ({cf_s:.1f} s for {args.n}; {np.mean(~cf_ok):.1%} raised)")
    print(f"jaxkin (N={args.n}) : {jax_small:10.0f} TACs/s (compile + first run {compile_s:.1f} s)")
    print(f"jaxkin (N={args.big}, chunks of {args.chunk}) : {jax_big:10.0f} TACs/s")
    print(f"speed-up        : {jax_small / cf_rate:10.0f}x on the same {args.n} TACs, "
          f"{jax_big / cf_rate:.0f}x at steady state")
    print(f"SSE_jaxkin <= 1.001 x SSE_curve_fit on {within:.2%} of TACs; SSE ratio quantiles "
          f"50% {np.quantile(ratio, 0.5):.5f}, 99% {np.quantile(ratio, 0.99):.5f}, max {ratio.max():.4f}, "
          f"min {ratio.min():.4f}; NaN in jaxkin: {int(np.sum(~np.isfinite(res.params)))}")
    print(f"jaxkin converged flag: {np.mean(res.converged):.2%}; load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
