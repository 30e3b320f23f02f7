"""Wall time of ``jaxkin simulate`` for the small and paper presets, each in a fresh process (compilation included).

    python benchmarks/simulate_speed.py [--presets small paper] [--out-dir /tmp] [--keep]

Prints, per preset: subjects, wall time, CPU time of the child process (user + sys), dataset size on disk, and the
1-minute load average before and after (the machine may be shared: wall time > CPU time / cores means contention).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "paper"])
    parser.add_argument("--out-dir", default=tempfile.gettempdir())
    parser.add_argument("--keep", action="store_true", help="keep the written datasets")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               JAXKIN_CACHE_DIR="off")  # time a first run: compilation included, as recorded in RESULTS.md
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    for preset in args.presets:
        out = Path(tempfile.mkdtemp(prefix=f"jaxkin-sim-{preset}-", dir=args.out_dir)) / "ds"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "jaxkin", "simulate", "--out", str(out), "--preset", preset],
                              env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"jaxkin simulate --preset {preset} failed with status {proc.returncode}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        subjects = len([p for p in out.iterdir() if p.name.startswith("sub-")])
        print(f"{preset:>6}: {subjects} subjects in {wall:7.1f} s wall, {cpu:7.1f} s CPU, "
              f"{_size(out) / 1e6:8.1f} MB, load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
        if not args.keep:
            shutil.rmtree(out.parent)


if __name__ == "__main__":
    main()
