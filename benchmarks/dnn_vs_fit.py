"""Whole-body run times in one run: the network's prediction, jaxkin's LM fit and scipy curve_fit (the paper's method).

    python benchmarks/dnn_vs_fit.py [--preset paper] [--checkpoint RUN_DIR] [--config experiments/exp4_1.py]
                                    [--curve-fit-sample 300] [--repeats 2] [--seed 0]

One simulated whole-body volume (subject 0 of the phantom preset; ``paper`` = 112 x 112 x 80 voxels x 62 frames).
Timed on the same volume:

* network: ``Predictor.predict_volume`` on every axial slice (the paper's "DNN" time), with the trained network of
  ``--checkpoint`` or, without one, the untrained network of ``--config`` (prediction time does not depend on the
  weights' values); the first call (compilation included) and the best of ``--repeats`` later calls;
* jaxkin LM: ``fit_volume`` of every body voxel (label > 0), default settings, paper bounds; one call, compilation
  included, then a second call (warm);
* scipy curve_fit: ``jaxkin.fitting.baseline.curve_fit_tacs`` (trf, the paper's p0 and diff_step 1e-3, exact float64 NumPy
  model) on a random sample of ``--curve-fit-sample`` body voxels; the time per voxel is **scaled** to all body voxels
  (and to one 112 x 112 slice's body voxels, the paper's "8.7 min per slice").

Prints the times and the ratios (the paper: DNN ~1 min per ~400-slice whole body vs curve_fit 8.7 min per slice,
~3,500x). Record the output in benchmarks/RESULTS.md with the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _network(args, n_frames: int):
    from flax import nnx

    from jaxkin.network import Predictor, load_config, load_predictor, make_model, resolve_time_steps

    if args.checkpoint:
        return load_predictor(args.checkpoint), f"trained network from {args.checkpoint}"

    cfg = resolve_time_steps(load_config(args.config), n_frames)
    graphdef, params = nnx.split(make_model(cfg))
    return Predictor(graphdef, params, cfg, n_frames), f"untrained network of {args.config} (weights irrelevant to time)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper", choices=("small", "paper"))
    parser.add_argument("--checkpoint", default=None, help="training workdir of a trained network")
    parser.add_argument("--config", default="experiments/exp4_1.py", help="network config when no checkpoint")
    parser.add_argument("--curve-fit-sample", type=int, default=300, help="body voxels fitted by curve_fit")
    parser.add_argument("--repeats", type=int, default=2, help="timed network calls after the first (best is kept)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import jax

    import jaxkin
    from jaxkin.fitting import LM, baseline, fit_volume
    from jaxkin.phantom.simulate import simulate_subject

    print(f"jax {jax.__version__}, devices {jax.devices()}, cpu count {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    subject = simulate_subject(0, seed=args.seed, preset=args.preset)
    volume = subject.pet  # [X, Y, Z, F] kBq/ml
    body = subject.labels > 0
    n_body = int(body.sum())
    x_size, y_size, n_z, n_frames = volume.shape
    per_slice = n_body / n_z
    print(f"volume {volume.shape} ({args.preset} preset), {n_body} body voxels ({per_slice:.0f} per slice on average)")

    # network
    predictor, what = _network(args, n_frames)
    t0 = time.perf_counter()
    predictor.predict_volume(volume)
    net_first = time.perf_counter() - t0
    net_times = []
    for _ in range(max(args.repeats, 1)):
        t0 = time.perf_counter()
        params = predictor.predict_volume(volume)
        net_times.append(time.perf_counter() - t0)
    net = min(net_times)
    assert np.all(np.isfinite(params))
    print(f"network ({what}): {net_first:.2f} s first call (compilation included), {net:.2f} s per volume "
          f"(best of {len(net_times)}) = {net / n_z * 1e3:.1f} ms per slice, batch {predictor.batch_size}")

    # jaxkin LM
    kin = jaxkin.prepare(subject.input_function, subject.frames)
    t0 = time.perf_counter()
    fit_volume(volume, kin, LM(bounds="paper"), mask=body, progress=False)
    lm_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = fit_volume(volume, kin, LM(bounds="paper"), mask=body, progress=False)
    lm = time.perf_counter() - t0
    print(f"jaxkin LM: {lm_first:.1f} s first call (compilation included), {lm:.1f} s warm for {fit.n_fitted} voxels "
          f"= {fit.n_fitted / lm:.0f} voxels/s; {fit.n_not_converged} flagged not converged")

    # scipy curve_fit on a sample, scaled
    rng = np.random.default_rng(args.seed)
    tacs = volume[body].astype(np.float64)
    pick = rng.choice(tacs.shape[0], size=min(args.curve_fit_sample, tacs.shape[0]), replace=False)
    model = baseline.NumpyModel(subject.input_function, subject.frames, "2tcmirr")
    t0 = time.perf_counter()
    baseline.curve_fit_tacs(tacs[pick], model)
    cf_sample = time.perf_counter() - t0
    cf_per_voxel = cf_sample / len(pick)
    cf_volume = cf_per_voxel * n_body
    cf_slice = cf_per_voxel * per_slice
    print(f"scipy curve_fit: {cf_sample:.1f} s for {len(pick)} random body voxels = {1 / cf_per_voxel:.1f} voxels/s; "
          f"SCALED to the volume: {cf_volume:.0f} s ({cf_volume / 60:.1f} min), to one slice: {cf_slice:.1f} s")

    print("ratios (curve_fit scaled / other):")
    print(f"  curve_fit / network = {cf_volume / net:,.0f}x   (paper: ~3,500x, GPU network vs CPU curve_fit)")
    print(f"  curve_fit / jaxkin LM = {cf_volume / lm:,.0f}x")
    print(f"  jaxkin LM / network = {lm / net:,.1f}x")


if __name__ == "__main__":
    main()
