"""Whole-body run times in one run: the network's prediction, jaxkin's LM fit and scipy curve_fit (the paper's method).

    python benchmarks/dnn_vs_fit.py [--preset paper] [--slices N] [--checkpoint RUN_DIR]
                                    [--config experiments/exp4_1.py] [--curve-fit-sample 300] [--repeats 2]
                                    [--devices N] [--seed 0]
    # the recommended network against jaxkin LM on a 400-slice whole body, side by side, without curve_fit:
    python benchmarks/dnn_vs_fit.py --config experiments/recommended.py --slices 400 --curve-fit-sample 0

One simulated whole-body volume (subject 0 of the phantom preset; ``paper`` = 112 x 112 x 80 voxels x 62 frames;
``--slices N`` stacks that body along z, repeated and cut, to N slices: 400 slices of 112 x 112 are a whole body
of the paper's size, about 2.2 M body voxels). Timed on the same volume, in this one process and on the same devices
(``--devices``: the CPU split into that many XLA devices, default 1; ``jaxkin predict`` splits it into 2,
``jaxkin fit`` does not; both the network's batches and the fit's voxels are split over them):

* network: ``Predictor.predict_volume`` on every axial slice (the paper's "DNN" time), with the trained network of
  ``--checkpoint`` or, without one, the untrained network of ``--config`` (prediction time does not depend on the
  weights' values); the first call (compilation included) and the best of ``--repeats`` later calls. A network that
  takes the input function as an input (``condition_on_input``, ``input_normalization="input"``) is given the
  scan's, and then also computes the TAC metrics over its mask, as ``jaxkin predict`` with an input function does;
* jaxkin LM: ``fit_volume`` of every body voxel (label > 0), default settings, paper bounds; one call, compilation
  included, then a second call (warm);
* scipy curve_fit: ``jaxkin.fitting.baseline.curve_fit_tacs`` (trf, the paper's p0 and diff_step 1e-3, exact float64 NumPy
  model) on a random sample of ``--curve-fit-sample`` body voxels; the time per voxel is **scaled** to all body voxels
  (and to one 112 x 112 slice's body voxels, the paper's "8.7 min per slice"); ``--curve-fit-sample 0`` skips it.

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


def _body(subject, n_slices: int):
    """``(volume [X, Y, Z, F], body mask [X, Y, Z])`` of the phantom ``subject``, stacked along z to ``n_slices``
    slices (0: as simulated)."""
    volume, body = subject.pet, subject.labels > 0
    if n_slices <= 0:
        return volume, body
    reps = -(-n_slices // volume.shape[2])
    return (np.concatenate([volume] * reps, axis=2)[:, :, :n_slices],
            np.concatenate([body] * reps, axis=2)[:, :, :n_slices])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper", choices=("small", "paper"))
    parser.add_argument("--slices", type=int, default=0, help="stack the body to this many slices (0: as simulated)")
    parser.add_argument("--checkpoint", default=None, help="training workdir of a trained network")
    parser.add_argument("--config", default="experiments/exp4_1.py", help="network config when no checkpoint")
    parser.add_argument("--curve-fit-sample", type=int, default=300, help="body voxels fitted by curve_fit (0: none)")
    parser.add_argument("--repeats", type=int, default=2, help="timed network calls after the first (best is kept)")
    parser.add_argument("--devices", type=int, default=1, help="split the CPU into this many XLA devices")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from jaxkin import distributed

    distributed.split_cpu_devices(args.devices)  # before JAX starts
    import jax

    import jaxkin
    from jaxkin.fitting import LM, fit_volume
    from jaxkin.phantom.simulate import simulate_subject

    print(f"jax {jax.__version__}, devices {jax.devices()}, cpu count {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    subject = simulate_subject(0, seed=args.seed, preset=args.preset)
    volume, body = _body(subject, args.slices)  # [X, Y, Z, F] kBq/ml
    n_body = int(body.sum())
    n_z, n_frames = volume.shape[2:]
    print(f"volume {volume.shape} ({args.preset} preset{', stacked' if args.slices > 0 else ''}), {n_body} body "
          f"voxels ({n_body / n_z:.0f} per slice on average)")
    kin = jaxkin.prepare(subject.input_function, subject.frames)

    # network
    predictor, what = _network(args, n_frames)
    given = kin if predictor.cfg.model.needs_input_function else None  # and then the TAC metrics, as jaxkin predict
    t0 = time.perf_counter()
    predictor.predict_volume(volume, kin=given)
    net_first = time.perf_counter() - t0
    net_times = []
    for _ in range(max(args.repeats, 1)):
        t0 = time.perf_counter()
        out = predictor.predict_volume(volume, kin=given)
        net_times.append(time.perf_counter() - t0)
    net = min(net_times)
    params = out if given is None else out[0]
    assert np.all(np.isfinite(params))
    print(f"network ({what}{'; input function given, TAC metrics computed' if given is not None else ''}): "
          f"{net_first:.2f} s first call (compilation included), {net:.2f} s per volume (best of {len(net_times)}) = "
          f"{net / n_z * 1e3:.1f} ms per slice, batch {predictor.batch_size}")

    # jaxkin LM
    t0 = time.perf_counter()
    fit_volume(volume, kin, LM(bounds="paper"), mask=body, progress=False)
    lm_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = fit_volume(volume, kin, LM(bounds="paper"), mask=body, progress=False)
    lm = time.perf_counter() - t0
    print(f"jaxkin LM: {lm_first:.1f} s first call (compilation included), {lm:.1f} s warm for {fit.n_fitted} voxels "
          f"= {fit.n_fitted / lm:.0f} voxels/s; {fit.n_not_converged} flagged not converged")
    print(f"  jaxkin LM / network = {lm / net:,.2f}x   (above 1: the network predicts the body faster than LM fits it)")
    if args.curve_fit_sample > 0:
        _curve_fit(args, subject, volume[body], n_body / n_z, net, lm)


def _curve_fit(args, subject, tacs, per_slice: float, net: float, lm: float) -> None:
    """scipy curve_fit on a random sample of the body's TACs, its time scaled to the body, and the ratios."""
    from jaxkin.fitting import baseline

    rng = np.random.default_rng(args.seed)
    n_body = tacs.shape[0]
    pick = rng.choice(n_body, size=min(args.curve_fit_sample, n_body), replace=False)
    model = baseline.NumpyModel(subject.input_function, subject.frames, "2tcmirr")
    t0 = time.perf_counter()
    baseline.curve_fit_tacs(tacs[pick].astype(np.float64), model)
    cf_sample = time.perf_counter() - t0
    cf_per_voxel = cf_sample / len(pick)
    cf_volume = cf_per_voxel * n_body
    cf_slice = cf_per_voxel * per_slice
    print(f"scipy curve_fit: {cf_sample:.1f} s for {len(pick)} random body voxels = {1 / cf_per_voxel:.1f} voxels/s; "
          f"SCALED to the volume: {cf_volume:.0f} s ({cf_volume / 60:.1f} min), to one slice: {cf_slice:.1f} s")
    print("ratios (curve_fit scaled / other):")
    print(f"  curve_fit / network = {cf_volume / net:,.0f}x   (paper: ~3,500x, GPU network vs CPU curve_fit)")
    print(f"  curve_fit / jaxkin LM = {cf_volume / lm:,.0f}x")


if __name__ == "__main__":
    main()
