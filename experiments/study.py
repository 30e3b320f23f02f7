"""The network against the truth: train in stages, follow the error against the phantom's ground truth, then
compare the network with jaxkin LM and Patlak organ by organ.

    python experiments/study.py --config experiments/cpu_study.py --workdir runs/cpu_study [--stages 8]

Steps (a rerun continues where an interrupted one stopped; finished stages and fits are reused):

1. ``jaxkin.train`` of the config, ``--stages`` equal parts of its epochs; after each part the latest network
   predicts the **validation** subjects and their organ means are compared with the truth (Spearman over the tissue
   organs for K1 and Ki, median and worst organ |Ki error|): ``curve.tsv`` and ``learning_curves.png`` with the
   train/validation losses of ``metrics.csv``.
2. jaxkin LM (the 2TCM-irr fit with ``jaxkin fit``'s defaults: physiological bounds, no frame weights) and Patlak
   (t* = 20 min) on every **test** subject inside its label map (``fits/``).
3. ``jaxkin evaluate`` of the network's test predictions, LM and Patlak against the truth (``evaluation/``), and
   ``study.md``: per organ the mean Ki and its error for each method, the voxel RMSE of K1, k2, k3, vB and Ki of
   the network and LM (which is lower), and the rank correlations of the organ means.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PARAMS = ("K1", "k2", "k3", "vB", "Ki")


def organ_scores(rows: list[dict]) -> dict:
    """Spearman over tissue organs of K1 and Ki organ means, and the median / largest organ |Ki error| (%)."""
    from jaxkin.network.report import ki_errors, organ_rank_correlation

    errors = sorted(100 * e for e in ki_errors(rows))
    return {"spearman_K1": organ_rank_correlation(rows, "K1"), "spearman_Ki": organ_rank_correlation(rows, "Ki"),
            "median_ki_error_pct": float(np.median(errors)) if errors else math.nan,
            "max_ki_error_pct": max(errors) if errors else math.nan}


def pooled_organ_rows(rows: list[dict]) -> list[dict]:
    """Organ means averaged over subjects: one row per organ (``predicted`` and ``true`` means)."""
    by_organ: dict[str, list[dict]] = {}
    for r in rows:
        by_organ.setdefault(r["organ"], []).append(r)
    return [{"subject": "all", "organ": o,
             "predicted": {p: sum(r["predicted"][p] for r in rs) / len(rs) for p in PARAMS},
             "true": {p: sum(r["true"][p] for r in rs) / len(rs) for p in PARAMS}} for o, rs in by_organ.items()]


def validation_point(workdir: Path, cfg, data_dir: Path) -> dict:
    """Organ scores of the latest checkpoint on the validation subjects (pooled organ means)."""
    from flax import nnx

    from jaxkin.io.dataset import dataset_split
    from jaxkin.kinetics import FDG_MODEL, get_model, prepare
    from jaxkin.network import Predictor, make_model, make_optimizer, model_graph, report, resolve_time_steps
    from jaxkin.network.checkpoint import checkpoint_manager, restore_checkpoint
    from jaxkin.network.data import open_scans

    scans = [scan for subject in dataset_split(data_dir)["val"] for scan in open_scans(data_dir, subject)]
    n_frames = scans[0].pet.frames.n_frames
    cfg = resolve_time_steps(cfg, n_frames)  # time_steps 0: as the run resolved it for its data
    template = nnx.split(make_model(cfg))[1]
    optimizer_template = make_optimizer(cfg.optim, 1)[0].init(template)  # the latest checkpoint holds both
    params, _, meta = restore_checkpoint(checkpoint_manager(workdir / "checkpoints" / "latest"), template,
                                         optimizer_template)
    predictor = Predictor(model_graph(cfg.model), params, cfg, n_frames)
    rows = []
    for scan in scans:
        kin = prepare(scan.blood.input, scan.pet.frames, scan.blood.whole_blood)
        maps, _ = predictor.predict_volume(scan.pet.read(), kin=kin)
        rows += report.organ_comparison(data_dir, scan, get_model(FDG_MODEL).named_maps(maps))
    return {"epoch": int(meta["epoch"])} | organ_scores(pooled_organ_rows(rows))


def train_in_stages(cfg, workdir: Path, stages: int) -> list[dict]:
    """Train ``cfg`` in ``stages`` parts (resuming), a validation point after each; returns the curve rows."""
    from jaxkin.network import train
    from jaxkin.network.report import read_metrics

    curve_path = workdir / "curve.tsv"
    curve = []
    if curve_path.is_file():
        with curve_path.open() as f:
            curve = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f, delimiter="\t")]
    per_stage = math.ceil(cfg.optim.epochs / stages)
    data_dir = workdir / "data"
    while True:
        done = len(read_metrics(workdir)) if (workdir / "metrics.csv").is_file() else 0
        if done >= cfg.optim.epochs:
            break
        t0 = time.perf_counter()
        train(cfg, workdir, resume=done > 0, stop_after_epochs=per_stage, progress=False)
        seconds = time.perf_counter() - t0
        point = validation_point(workdir, cfg, data_dir)
        point["train_seconds"] = sum(r["seconds"] for r in read_metrics(workdir))
        curve.append(point)
        print(f"epoch {point['epoch']}: validation organ means: Spearman K1 {point['spearman_K1']:.2f}, "
              f"Ki {point['spearman_Ki']:.2f}; median |Ki error| {point['median_ki_error_pct']:.0f}% "
              f"(stage {seconds:.0f} s)", file=sys.stderr)
        with curve_path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(curve[0]), delimiter="\t")
            w.writeheader()
            w.writerows(curve)
    return curve


def plot_curves(workdir: Path, curve: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxkin.network.report import read_metrics

    rows = read_metrics(workdir)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ep = [r["epoch"] + 1 for r in rows]
    axes[0].semilogy(ep, [r["train_loss"] for r in rows], label="train (the configured loss)")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("train loss")
    ax2 = axes[0].twinx()
    val = [(e, r["val_loss"]) for e, r in zip(ep, rows) if r["val_loss"] is not None]
    ax2.semilogy(*zip(*val), color="C1", label="validation MSE (kBq/mL)²")
    ax2.set_ylabel("validation MSE (kBq/mL)²")
    axes[0].legend(loc="upper right", fontsize=8)
    ax2.legend(loc="lower left", fontsize=8)
    axes[0].set_title("losses")
    e = [c["epoch"] for c in curve]
    axes[1].plot(e, [c["spearman_K1"] for c in curve], "o-", label="K1")
    axes[1].plot(e, [c["spearman_Ki"] for c in curve], "s-", label="Ki")
    axes[1].axhline(0.95, color="gray", ls=":")
    axes[1].set_ylim(-1, 1.05)
    axes[1].set_xlabel("epoch")
    axes[1].set_title("validation: Spearman of organ means vs truth")
    axes[1].legend()
    axes[2].semilogy(e, [c["median_ki_error_pct"] for c in curve], "o-", label="median organ")
    axes[2].semilogy(e, [c["max_ki_error_pct"] for c in curve], "s-", label="worst organ")
    axes[2].axhline(15, color="gray", ls=":")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("|organ-mean Ki error| (%)")
    axes[2].set_title("validation: Ki against the truth")
    axes[2].legend()
    fig.tight_layout()
    path = workdir / "learning_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def study_table(evaluation: Path, workdir: Path, curve: list[dict], wall: dict) -> str:
    """study.md's text from the evaluation's TSV tables."""
    from scipy.stats import spearmanr

    def read(name):
        with (evaluation / name).open() as f:
            return list(csv.DictReader(f, delimiter="\t"))

    means = {(r["method"], r["organ"], r["param"]): float(r["mean"]) for r in read("organ_parameters.tsv")}
    errors = {(r["method"], r["organ"], r["param"]): r for r in read("organ_errors.tsv")}
    organs = [o for (m, o, p) in means if m == "truth" and p == "Ki"]
    tissue = [o for o in organs if means[("truth", o, "vB")] < 1.0]
    methods = ["network", "LM", "Patlak"]
    lines = ["## Organ-mean Ki of the test subjects (pooled) against the truth", "",
             "| organ | voxels | truth Ki | " + " | ".join(f"{m} Ki (error)" for m in methods) + " |",
             "|---|---:|---|" + "---|" * len(methods)]
    within = {m: [] for m in methods}
    for o in organs:
        t = means[("truth", o, "Ki")]
        cells = []
        for m in methods:
            v = means.get((m, o, "Ki"))
            if v is None:
                cells.append("—")
                continue
            err = (v / t - 1) * 100 if t > 0 else math.nan
            if o in tissue:
                within[m].append(abs(err) <= 15)
            cells.append(f"{v:.4f} ({err:+.0f}%)" if t > 0 else f"{v:.4f}")
        n = errors.get(("network", o, "Ki"), {}).get("n", "")
        lines.append(f"| {o} | {n} | {t:.4f} | " + " | ".join(cells) + " |")
    lines += ["", "Tissue organs with the mean Ki within 15% of the truth: " + "; ".join(
        f"{m} {sum(w)}/{len(w)}" for m, w in within.items()) + ".", ""]
    lines += ["## Rank correlation of the organ means with the truth (tissue organs)", "",
              "| method | " + " | ".join(PARAMS) + " |", "|---|" + "---|" * len(PARAMS)]
    for m in methods:
        cells = []
        for p in PARAMS:
            pairs = [(means[(m, o, p)], means[("truth", o, p)]) for o in tissue if (m, o, p) in means]
            cells.append(f"{spearmanr(*zip(*pairs))[0]:.2f}" if len(pairs) >= 3 else "—")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "## Voxel RMSE against the truth: network vs LM", "",
              "RMSE over each organ's voxels (all test subjects); **bold** = the lower of the two.", "",
              "| organ | " + " | ".join(f"{p} net / LM" for p in PARAMS) + " |", "|---|" + "---|" * len(PARAMS)]
    wins = {p: 0 for p in PARAMS}
    for o in organs:
        cells = []
        for p in PARAMS:
            a, b = errors.get(("network", o, p)), errors.get(("LM", o, p))
            if a is None or b is None:
                cells.append("—")
                continue
            x, y = float(a["rmse"]), float(b["rmse"])
            wins[p] += x < y
            cells.append(f"**{x:.3g}** / {y:.3g}" if x < y else f"{x:.3g} / **{y:.3g}**")
        lines.append(f"| {o} | " + " | ".join(cells) + " |")
    lines += ["", "Organs where the network's voxel RMSE is lower than LM's: " + ", ".join(
        f"{p} {wins[p]}/{len(organs)}" for p in PARAMS) + ".", ""]
    last = curve[-1] if curve else {}
    lines += ["## Run", "", f"Training: {last.get('epoch', 0)} epochs, {last.get('train_seconds', 0) / 60:.1f} min "
              f"of training steps and validation; whole study wall time {wall['total'] / 60:.1f} min; fits: " +
              ", ".join(f"{k} {v:.1f} s" for k, v in wall.get("fits", {}).items()) + ".",
              "Learning curves: `learning_curves.png`; validation points: `curve.tsv`; full evaluation: "
              "`evaluation/report.md`.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--stages", type=int, default=8, help="validation points against the truth (default 8)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args(argv)

    from compare_methods import fit_test_subjects  # experiments/, the script's folder
    from jaxkin.errors import InputError
    from jaxkin.evaluation import evaluate
    from jaxkin.network import load_config

    t0 = time.perf_counter()
    workdir = Path(args.workdir)
    try:
        cfg = load_config(args.config, args.set)
        curve = train_in_stages(cfg, workdir, max(args.stages, 1))
        print(f"wrote {plot_curves(workdir, curve)}", file=sys.stderr)
        fits = fit_test_subjects(workdir / "data", workdir / "fits",  # jaxkin fit's defaults: physiological bounds
                                 [("lm", {"models": ("2tcmirr",), "method": "lm"}), ("patlak", {"models": ("patlak",)})])
        preds = [f"network={workdir / 'predictions'}", f"LM={workdir / 'fits' / 'lm'}",
                 f"Patlak={workdir / 'fits' / 'patlak'}"]
        evaluation = evaluate(workdir / "data", preds, workdir / "evaluation", split="test")
    except InputError as err:
        print(f"study: error: {err}", file=sys.stderr)
        return 2
    text = study_table(evaluation, workdir, curve, {"total": time.perf_counter() - t0, "fits": fits})
    command = " ".join(["python experiments/study.py", "--config", args.config, "--workdir", args.workdir,
                        "--stages", str(args.stages), *(f"--set {s}" for s in args.set)])
    (workdir / "study.md").write_text(f"# Network study\n\nCommand: `{command}`\n\n{text}", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
