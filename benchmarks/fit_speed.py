"""Voxel-wise fitting speed and quality: scipy curve_fit (the paper's method) vs jaxkin's basis + LM, same TACs;
and ``jaxkin fit`` end to end on whole volumes.

    python benchmarks/fit_speed.py [--n 2000] [--chunk 4096] [--big 65536] [--delay-big 16384]
    python benchmarks/fit_speed.py --end-to-end [--sizes 20000 220000] [--repeats 2] [--fit-args "--delay voxel"]

Noisy TACs of the phantom (jaxkin.phantom, subject 0 of the "small" preset: body voxels, 4 mm PSF, the
design's noise model) with the phantom's input function (10 s samples, 1 s over the bolus). Both methods fit the
irreversible two-tissue model with the paper's bounds and no weights. curve_fit: method trf, p0 = [0.1, 0.1,
0.01, 0.01], diff_step = 1e-3, on the exact float64 NumPy model (jaxkin.fitting.baseline). jaxkin: float32, default
settings. Prints TACs per second for each (jaxkin after compilation, best of 3), the ratio, and the fraction of
TACs where jaxkin's SSE <= 1.001 x curve_fit's (both SSEs evaluated with the same float64 NumPy model). Also
(``--delay-big``, 0 to skip) jaxkin with a per-voxel input delay (``jaxkin.prepare_delayed``, physiological bounds)
on noiseless phantom TACs whose organs see the input at different times (``organ_delays``), with the fraction whose
delay is within 0.5 s of the truth.

``--end-to-end``: ``jaxkin fit`` as a user runs it, in a fresh process per run, on whole volumes written as
``*_pet.nii.gz`` (the ``paper`` phantom, noisy, cut to axial slabs whose automatic body masks hold about ``--sizes``
voxels; written once into ``--data``). Prints per run the wall time of the command and the fit phase it reports,
and the **marginal** rate between the smallest and the largest volume, (voxels_large - voxels_small) /
(wall_large - wall_small): start-up and compilation cancel out (the same chunk shapes compile the same programs).
``--fit-args`` adds options to every ``jaxkin fit`` (e.g. ``"--delay voxel"``, ``"--bounds paper"``). The
command's on-disk compilation cache is off (``JAXKIN_CACHE_DIR=off``) unless ``--keep-cache``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="TACs fitted by both methods")
    parser.add_argument("--chunk", type=int, default=4096, help="jaxkin chunk size (jaxkin's default)")
    parser.add_argument("--big", type=int, default=65536, help="TACs for jaxkin's steady-state throughput")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--delay-big", type=int, default=16384,
                        help="TACs for jaxkin's throughput with a per-voxel delay (0: skip)")
    parser.add_argument("--end-to-end", action="store_true", help="time `jaxkin fit` on whole volumes instead")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 220000],
                        help="--end-to-end: approximate voxels in the automatic mask of each volume")
    parser.add_argument("--repeats", type=int, default=2, help="--end-to-end: runs per volume (best kept)")
    parser.add_argument("--fit-args", default="", help="--end-to-end: extra options of jaxkin fit")
    parser.add_argument("--data", default=None, help="--end-to-end: folder of the volumes (default: a temp folder)")
    parser.add_argument("--keep-cache", action="store_true", help="--end-to-end: keep jaxkin's compilation cache")
    args = parser.parse_args()
    if args.end_to_end:
        return end_to_end(args)

    import jax

    import jaxkin
    from jaxkin import fitting
    from jaxkin.fitting import baseline
    from jaxkin.phantom.simulate import simulate_subject

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

    if args.delay_big > 0:
        from jaxkin.phantom.simulate import simulate_subject as simulate

        s = simulate(0, seed=args.seed, preset="small", noise_scale=0.0, fwhm_mm=0.0, organ_delays=True)
        body = s.labels > 0
        pick = rng.choice(int(body.sum()), size=args.delay_big)
        x, true_delay = s.pet[body][pick], s.delay_map()[body][pick]
        dkin = jaxkin.prepare_delayed(s.input_function, s.frames)
        run = lambda: jax.block_until_ready(fitting.fit_tacs(x, dkin, chunk_size=args.chunk))  # noqa: E731
        run()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - t0)
        err = np.abs(np.asarray(out.params)[:, -1] - true_delay) * 60
        print(f"jaxkin --delay voxel (N={args.delay_big}, noiseless phantom with organ delays, physiological "
              f"bounds, standard errors): {args.delay_big / min(times):10.0f} TACs/s; delay within 0.5 s on "
              f"{np.mean(err < 0.5):.2%}; load average now {os.getloadavg()[0]:.2f}")


def _volumes(args):
    """``{target: (pet path, blood path)}``: the noisy ``paper`` phantom subject 0 cut to axial slabs whose body
    masks hold about ``target`` voxels each (written once)."""
    import tempfile
    from pathlib import Path

    from jaxkin.io.pet import write_pet
    from jaxkin.io.blood import write_blood
    from jaxkin.phantom.simulate import simulate_subject
    from jaxkin.fitting import body_mask

    root = Path(args.data) if args.data else Path(tempfile.gettempdir()) / "jaxkin-fit-speed-e2e"
    root.mkdir(parents=True, exist_ok=True)
    wanted = {n: (root / f"sub-{n}_pet.nii.gz", root / f"sub-{n}_recording-AIF_blood.tsv") for n in args.sizes}
    if all(pet.is_file() for pet, _ in wanted.values()):
        return wanted
    subject = simulate_subject(0, seed=args.seed, preset="paper")
    mask, _ = body_mask(subject.pet, subject.frames.duration)
    per_slice = np.cumsum(mask.sum(axis=(0, 1)))
    for n, (pet, blood) in wanted.items():
        z = int(np.searchsorted(per_slice, n)) + 1
        if per_slice[-1] < n:
            raise SystemExit(f"--sizes {n}: the paper phantom's body holds only {per_slice[-1]} voxels")
        write_pet(pet, subject.pet[:, :, :z], subject.frames, subject.affine, units="kBq/mL",
                       voxel_size=subject.voxel_mm, sidecar={"TracerRadionuclide": "F18"})
        write_blood(blood, plasma=subject.input_function, whole_blood=subject.input_function, units="kBq/mL",
                    description="phantom input")
        print(f"wrote {pet.name}: {z} axial slices, about {per_slice[z - 1]} body voxels", flush=True)
    return wanted


def end_to_end(args) -> None:
    """Time ``jaxkin fit`` on whole volumes in fresh processes (see the module docstring)."""
    import re
    import shlex
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import jax

    volumes = _volumes(args)
    env = dict(os.environ)
    if not args.keep_cache:
        env["JAXKIN_CACHE_DIR"] = "off"
    print(f"jax {jax.__version__}, cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}; "
          f"jaxkin fit {args.fit_args or '(defaults)'}")
    print("| mask voxels | wall time (s, best of %d) | fit phase (s) | voxels/s (fit phase) |" % args.repeats)
    print("|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, (pet, blood) in sorted(volumes.items()):
            best = None
            for r in range(args.repeats):
                cmd = [sys.executable, "-m", "jaxkin", "fit", "--pet", str(pet), "--input-function", str(blood),
                       "--out", str(Path(tmp) / f"maps-{n}-{r}"), "--no-progress", *shlex.split(args.fit_args)]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if proc.returncode:
                    raise SystemExit(f"jaxkin fit failed:\n{proc.stderr[-3000:]}")
                found = re.search(r"fitted (\d+) voxels .* in ([\d.]+) s", proc.stdout)
                voxels, fit_s = int(found[1]), float(found[2])
                if best is None or wall < best[1]:
                    best = (voxels, wall, fit_s)
            rows.append(best)
            print(f"| {best[0]} | {best[1]:.1f} | {best[2]:.1f} | {best[0] / best[2]:,.0f} |", flush=True)
    (n0, w0, _), (n1, w1, _) = rows[0], rows[-1]
    if n1 > n0:
        print(f"marginal rate end to end: {(n1 - n0) / (w1 - w0):,.0f} TACs/s "
              f"(({n1} - {n0}) voxels / ({w1:.1f} - {w0:.1f}) s); load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
