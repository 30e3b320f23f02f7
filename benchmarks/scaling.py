"""Scaling out, measured: data-parallel train steps on D devices, and ``jaxkin fit`` of one volume by P processes.

    python benchmarks/scaling.py train [--devices 1 2] [--batch 4] [--size 112] [--steps 2]
    python benchmarks/scaling.py fit [--processes 1 2] [--devices-per-process 1] [--data DIR]

``train``: for each D, a fresh process with D devices (CPU: forced with ``XLA_FLAGS``; GPU: the first D of
``CUDA_VISIBLE_DEVICES``) runs the exp4_1 train step with the batch split over all D devices
(:class:`jaxkin.distributed.DataParallel`) and prints the time per step after one warm-up step.
``fit``: simulates one subject of the ``paper`` phantom (112 x 112 x 80 voxels, 62 frames) once, then runs
``jaxkin fit`` with P processes connected on 127.0.0.1 and prints the wall time and process 0's fit time
(reading, mask, fit, assembling the slabs; not writing). On a CPU the devices and processes share the same cores:
these numbers show the overhead of the distributed path there, not a speed-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env(devices: int, gpu: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAXKIN_CACHE_DIR="off")  # every run compiles: comparable times
    if gpu:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(devices))
    else:
        env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    return env


def _train_worker(args) -> None:
    import numpy as np
    from flax import nnx

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from train_speed import synthetic_batch, timed_steps

    from jaxkin import distributed as dist
    from jaxkin import network as N

    cfg = N.load_config(ROOT / "experiments" / "exp4_1.py", [f"batch_size={args.batch}", f"crop={args.size}"])
    parallel = dist.DataParallel(dist.data_mesh())
    batch, kin = synthetic_batch(args.batch, args.size)
    graphdef, params = nnx.split(N.make_model(cfg))
    optimizer, _ = N.make_optimizer(cfg.optim, 150)
    params = parallel.replicate(params)
    state, kin = N.TrainState(params, parallel.replicate(optimizer.init(params))), parallel.replicate(kin)
    step = N.make_train_step(graphdef, optimizer, parallel)
    batch = parallel.batch(batch)
    state, m, (first,) = timed_steps(step, state, batch, kin, 1)  # compile + first step
    state, m, times = timed_steps(step, state, batch, kin, args.steps)
    print(f"RESULT devices={parallel.size} compile+first={first:.1f} step={np.mean(times):.2f} "
          f"min={min(times):.2f} loss={float(m['loss']):.6g}")


def _train(args, gpu: bool) -> None:
    print(f"train step, exp4_1, batch {args.batch} x {args.size} x {args.size}, {args.steps} timed steps")
    print("| devices | compile + first step (s) | s / step | slices / s | loss after the steps |")
    print("|---|---|---|---|---|")
    for d in args.devices:
        if args.batch % d:
            print(f"| {d} | batch {args.batch} not divisible by {d}: skipped | | | |")
            continue
        cmd = [sys.executable, __file__, "_train_worker", "--batch", str(args.batch), "--size", str(args.size),
               "--steps", str(args.steps)]
        proc = subprocess.run(cmd, env=_env(d, gpu), capture_output=True, text=True)
        found = re.search(r"RESULT devices=(\d+) compile\+first=([\d.]+) step=([\d.]+) min=[\d.]+ loss=(\S+)",
                          proc.stdout)
        if proc.returncode or not found:
            raise SystemExit(f"worker with {d} devices failed:\n{proc.stderr[-3000:]}")
        step = float(found[3])
        print(f"| {found[1]} | {found[2]} | {step:.2f} | {args.batch / step:.2f} | {found[4]} |", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fit(args, gpu: bool) -> None:
    data = Path(args.data) if args.data else Path(tempfile.gettempdir()) / "jaxkin-scaling-paper-1"
    if not (data / "participants.tsv").is_file():
        from jaxkin.phantom.writer import simulate_dataset

        print(f"simulating one paper-preset subject into {data} ...", flush=True)
        simulate_dataset(data, subjects=1, preset="paper")
    pet_dir = data / "sub-01" / "pet"
    files = ["--pet", str(pet_dir / "sub-01_pet.nii.gz"), "--input-function",
             str(pet_dir / "sub-01_recording-AIF_blood.tsv"), "--no-progress"]
    print(f"jaxkin fit (2tcmirr, LM) of {pet_dir / 'sub-01_pet.nii.gz'}, {args.devices_per_process} device(s) per process")
    print("| processes | wall time (s) | fit time, process 0 (s) | voxels | voxels / s (fit time) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.processes:
            port = _free_port()
            out = Path(tmp) / f"maps-{n}"
            procs = []
            t0 = time.perf_counter()
            for pid in range(n):
                flags = [] if n == 1 else ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n),
                                           "--process-id", str(pid)]
                procs.append(subprocess.Popen([sys.executable, "-m", "jaxkin", "fit", *files, "--out", str(out), *flags],
                                              env=_env(args.devices_per_process, gpu), stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True))
            outputs = [p.communicate() for p in procs]
            wall = time.perf_counter() - t0
            if any(p.returncode for p in procs):
                raise SystemExit(f"jaxkin fit with {n} processes failed:\n{outputs[0][1][-3000:]}")
            found = re.search(r"fitted (\d+) voxels .* in ([\d.]+) s", outputs[0][0])
            voxels, seconds = int(found[1]), float(found[2])
            print(f"| {n} | {wall:.1f} | {seconds:.1f} | {voxels} | {voxels / seconds:,.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train")
    w = sub.add_parser("_train_worker")
    for p in (t, w):
        p.add_argument("--batch", type=int, default=4)
        p.add_argument("--size", type=int, default=112)
        p.add_argument("--steps", type=int, default=2)
    t.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    f = sub.add_parser("fit")
    f.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    f.add_argument("--devices-per-process", type=int, default=1)
    f.add_argument("--data", default=None, help="a dataset with sub-01 (default: simulate one paper-preset subject)")
    args = ap.parse_args()
    if args.what == "_train_worker":
        return _train_worker(args)
    import jax

    gpu = jax.default_backend() == "gpu"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__}, "
          f"backend {jax.default_backend()} ({jax.device_count()} device(s) visible)")
    (_train if args.what == "train" else _fit)(args, gpu)


if __name__ == "__main__":
    main()
