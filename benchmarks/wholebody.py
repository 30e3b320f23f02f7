"""Whole-body scans at the scanner's resolution: wall time and peak memory of ``jaxkin fit``, ``fit --max-memory``,
``regions`` and ``idif`` on a synthetic full-resolution scan.

    python benchmarks/wholebody.py --workdir /scratch/wb                       # 440 x 440 x 645 x 62 (~31 GB .nii)
    python benchmarks/wholebody.py --workdir /tmp/wb --grid 40 40 30 --frames 12 --gz-grid 24 24 16   # a check
    python benchmarks/wholebody.py --workdir /scratch/wb --keep --reuse        # the scans of an earlier --keep run

Writes (streaming, a frame at a time; never the 4D image in memory) a float32 ``.nii`` of ``--grid`` x ``--frames``
(default the Biograph Vision Quadra's 440 x 440 x 645 voxels of 1.65 mm, 62 frames) whose body (an elliptic
cylinder, ~24% of the voxels: ~30 M at full size) holds five tissues of 2TCM-irreversible kinetics with 5% noise,
its sidecar, a Feng input function, and a label map (tissues + an aorta); and a ``.nii.gz`` of ``--gz-grid``. Then
runs each command as a subprocess and records its wall time and peak resident memory (``os.wait4``'s rusage of that
child, the scan written by another child so that this process stays small), prints a table (copy it into benchmarks/RESULTS.md) and removes the files (``--keep`` keeps them).

Needs disk space for the scan (~31 GB at full size), and hours on 2 cores: never run it in CI (it refuses when the
``CI`` environment variable is set). Timings are only meaningful on an idle machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: 2TCM-irreversible parameters (K1, k2, k3, vB) of the synthetic tissues: label -> (name, parameters).
TISSUES = {1: ("muscle", (0.05, 0.4, 0.02, 0.02)), 2: ("liver", (0.9, 1.2, 0.005, 0.05)),
           3: ("brain", (0.11, 0.25, 0.08, 0.04)), 4: ("kidney", (0.6, 1.0, 0.05, 0.2)),
           5: ("tumour", (0.3, 0.5, 0.15, 0.05)), 6: ("aorta", (0.01, 0.5, 0.0, 0.95))}


def _labels(shape) -> np.ndarray:
    """uint8 ``shape``: an elliptic cylinder of muscle along z (~24% of the voxels) with organs and an aorta."""
    nx, ny, nz = shape
    x = (np.arange(nx) - nx / 2 + 0.5)[:, None] / (0.36 * nx)
    y = (np.arange(ny) - ny / 2 + 0.5)[None, :] / (0.22 * ny)
    body = (x * x + y * y) <= 1.0
    lab = np.zeros(shape, np.uint8)
    lab[body] = 1
    organ = lambda cx, cy, r: ((x - cx) ** 2 + (y - cy) ** 2) <= r * r
    z = lambda a, b: slice(int(a * nz), max(int(b * nz), int(a * nz) + 1))
    lab[:, :, z(0.35, 0.5)][organ(0.3, 0.1, 0.35)] = 2
    lab[:, :, z(0.85, 0.97)][organ(0.0, 0.0, 0.3)] = 3
    lab[:, :, z(0.3, 0.4)][organ(-0.5, -0.3, 0.12)] = 4
    lab[:, :, z(0.5, 0.55)][organ(-0.2, 0.4, 0.08)] = 5
    lab[:, :, z(0.2, 0.8)][organ(0.05, -0.5, 0.04)] = 6
    return lab


def write_scan(folder: Path, shape, n_frames: int, voxel_mm: float, compressed: bool, seed: int = 0) -> dict:
    """Write ``sub-01_pet.nii[.gz]`` + sidecar, the blood TSV and the labels into ``folder``, a frame at a time."""
    import nibabel as nib

    import jaxkin
    from jaxkin.io.blood import write_blood
    from jaxkin.io.labels import write_labels
    from jaxkin.kinetics import two_tissue_irreversible

    folder.mkdir(parents=True, exist_ok=True)
    head = [10.0] * 12 + [30.0] * 8 + [60.0] * 10 + [120.0] * 10
    durations = (head + [300.0] * max(n_frames - len(head), 0))[:n_frames]
    frames = jaxkin.FrameSchedule.from_durations(durations)
    aif = jaxkin.feng_input(frames.end[-1] + 1.0, delay=0.2)
    kin = jaxkin.prepare(aif, frames)
    table = np.zeros((7, n_frames), np.float32)
    table[1:] = np.asarray(two_tissue_irreversible(np.array([p for _, p in TISSUES.values()]), kin))
    lab = _labels(shape)
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    ext = ".nii.gz" if compressed else ".nii"
    pet = folder / f"sub-01_pet{ext}"
    header = nib.Nifti1Header()
    header.set_data_shape((*shape, n_frames))
    header.set_data_dtype(np.float32)
    header.set_zooms((voxel_mm,) * 3 + (1.0,))
    header.set_xyzt_units("mm", "sec")
    header.set_qform(affine, 1)
    header.set_sform(affine, 1)
    header.set_data_offset(352)
    rng = np.random.default_rng(seed)
    with (gzip.open(pet, "wb", compresslevel=1) if compressed else open(pet, "wb")) as f:
        f.write(header.binaryblock + b"\0" * (352 - len(header.binaryblock)))
        for k in range(n_frames):
            frame = table[lab, k]
            frame *= 1.0 + 0.05 * rng.standard_normal(shape, dtype=np.float32)
            f.write(np.asfortranarray(frame).tobytes(order="F"))
            del frame
    sidecar = {"FrameTimesStart": [float(s) for s in frames.start_seconds], "FrameDuration": durations,
               "Units": "kBq/mL", "ImageDecayCorrected": True, "TracerRadionuclide": "F18", "InjectionStart": 0}
    (folder / "sub-01_pet.json").write_text(json.dumps(sidecar))
    write_blood(folder / "sub-01_recording-AIF_blood.tsv", plasma=aif, whole_blood=aif)
    write_labels(folder / "sub-01_dseg.nii.gz", lab, {i: n for i, (n, _) in TISSUES.items()}, affine)
    return {"pet": pet, "blood": folder / "sub-01_recording-AIF_blood.tsv", "labels": folder / "sub-01_dseg.nii.gz",
            "voxels": int(np.count_nonzero(lab)), "bytes": pet.stat().st_size}


def timed(argv: list[str], log: Path) -> tuple[float, float, str]:
    """``(wall s, peak resident memory GB, stdout)`` of ``python -m jaxkin argv`` (this child's own rusage); its
    output goes to ``log``."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "jaxkin", *argv], stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    text = log.read_text()
    if proc.returncode != 0:
        print(f"jaxkin {' '.join(argv)} failed ({proc.returncode}):\n{text[-2000:]}", file=sys.stderr)
    return wall, usage.ru_maxrss * 1024 / 1e9, text


def bench(scan: dict, out: Path, label: str, max_memory: float | None) -> list[tuple]:
    """The commands on one scan: ``(name, wall s, peak GB, voxels/s or '')`` each."""
    rows = []
    out.mkdir(parents=True, exist_ok=True)
    fit = ["fit", "--pet", str(scan["pet"]), "--input-function", str(scan["blood"]), "--no-progress"]
    commands = [("fit 2tcmirr", fit + ["--out", str(out / "fit")])]
    if max_memory is not None:
        commands.append((f"fit --max-memory {max_memory:g}", fit + ["--out", str(out / "fit_budget"),
                                                                    "--max-memory", f"{max_memory:g}"]))
    commands += [("regions", ["regions", "--pet", str(scan["pet"]), "--labels", str(scan["labels"]), "--out",
                              str(out / "tacs.tsv")]),
                 ("idif", ["idif", "--pet", str(scan["pet"]), "--labels", str(scan["labels"]), "--label", "aorta",
                           "--out", str(out / "idif_blood.tsv")])]
    for name, argv in commands:
        wall, peak, stdout = timed(argv, out / f"{name.split()[0]}-{len(rows)}.log")
        fitted = re.search(r"fitted (\d+) voxels", stdout)
        rate = f"{int(fitted.group(1)) / wall:,.0f}" if fitted else ""
        rows.append((f"{label}: {name}", wall, peak, rate))
        print(f"{rows[-1][0]}: {wall:.1f} s, peak {peak:.2f} GB {rate}", flush=True)
    return rows


def _write_in_child(folder: Path, grid, n_frames: int, voxel_mm: float, compressed: bool) -> dict:
    """:func:`write_scan` in a child process: this process stays small, so the peak memory measured of the commands
    (which starts from this process's size at the fork) is theirs."""
    argv = [sys.executable, __file__, "_write", str(folder), *map(str, grid), str(n_frames), str(voxel_mm),
            str(int(compressed))]
    scan = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
    return scan | {k: Path(scan[k]) for k in ("pet", "blood", "labels")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="where the scans are written (needs ~31 GB at full size)")
    parser.add_argument("--grid", nargs=3, type=int, default=(440, 440, 645), metavar=("X", "Y", "Z"))
    parser.add_argument("--frames", type=int, default=62)
    parser.add_argument("--gz-grid", nargs=3, type=int, default=(220, 220, 320), metavar=("X", "Y", "Z"),
                        help="grid of the .nii.gz variant (default 220 220 320); 0 0 0: none")
    parser.add_argument("--voxel-mm", type=float, default=1.65)
    parser.add_argument("--max-memory", type=float, default=4.0, help="GB of the budgeted fit (default 4)")
    parser.add_argument("--keep", action="store_true", help="keep the scans and outputs")
    parser.add_argument("--reuse", action="store_true", help="use the scans a run with --keep left in --workdir "
                        "(of the same grids), instead of writing them again")
    args = parser.parse_args(argv)
    if os.environ.get("CI"):
        print("wholebody.py: not in CI (it writes tens of GB and runs for hours)", file=sys.stderr)
        return 2
    work = Path(args.workdir)
    rows = []
    try:
        for label, grid, compressed in (("nii", tuple(args.grid), False), ("nii.gz", tuple(args.gz_grid), True)):
            if not all(grid):
                continue
            t0 = time.perf_counter()
            record = work / label / "scan.json"
            reused = args.reuse and record.is_file() and json.loads(record.read_text())["grid"] == [*grid, args.frames]
            if reused:
                scan = json.loads(record.read_text())
                scan |= {k: Path(scan[k]) for k in ("pet", "blood", "labels")}
            else:
                scan = _write_in_child(work / label, grid, args.frames, args.voxel_mm, compressed)
                record.write_text(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in scan.items()}
                                             | {"grid": [*grid, args.frames]}))
            print(f"{label}: {'reused' if reused else 'wrote'} {'x'.join(map(str, grid))} x {args.frames} "
                  f"({scan['bytes'] / 1e9:.2f} GB, "
                  f"{scan['voxels']:,} body voxels) in {time.perf_counter() - t0:.0f} s", flush=True)
            rows += bench(scan, work / label / "out", f"{label} {'x'.join(map(str, grid))}x{args.frames}",
                          args.max_memory)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("\n| scan: command | wall (s) | peak RSS (GB) | voxels/s |\n|---|---:|---:|---:|")
    for name, wall, peak, rate in rows:
        print(f"| {name} | {wall:.1f} | {peak:.2f} | {rate} |")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["_write"]:
        folder, x, y, z, f, mm, gz = sys.argv[2:9]
        written = write_scan(Path(folder), (int(x), int(y), int(z)), int(f), float(mm), bool(int(gz)))
        print(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in written.items()}))
        sys.exit(0)
    sys.exit(main())
