"""The paper's ablation study (Table 1): train all eight configurations, write the table and each one's Ki RMSE.

    python experiments/ablation.py --workdir runs/ablation --scale cpu     # reduced scale (states it in the table)
    python experiments/ablation.py --workdir runs/ablation --scale full    # the paper's scale: for a GPU

``--scale full`` runs exp1_1.py ... exp4_2.py as they are (the 'paper' phantom, 23 subjects 10/4/9, 75 slices of
112 x 112 per subject, 500 epochs). ``--scale cpu`` keeps every network setting of the row and changes only the data
and the schedule (see ``CPU_SCALE``): the 'small' phantom (3 subjects: 1 train, 1 validation, 1 test; 32 x 32 x 24
voxels), every slice, and ``--epochs`` epochs (default 2) at the quickstart's learning rate. All eight runs share one
simulated dataset (``WORKDIR/data``). Each run's folder is ``WORKDIR/expN_M``; ``--epochs`` and ``--set KEY=VALUE``
override further.

Output ``WORKDIR/table1.md`` (and ``table1.tsv``): per configuration the test-set CS and MAE (mean ± SD over the
test voxels, as Table 1) and, from the test subjects' predicted maps against the ground truth, each organ's Ki RMSE
(mL/cm^3/min) over its voxels.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXPERIMENTS = ("exp1_1", "exp1_2", "exp2_1", "exp2_2", "exp3_1", "exp3_2", "exp4_1", "exp4_2")
LABELS = {"3d": "3D", "space_time": "space + time", "space": "space", "abs": "Absolute", "clamp": "Clamp",
          "multi_clamp": "Multi-clamp", "sigmoid": "Sigmoid"}
#: Paper values of Table 1 (real patient data), for side-by-side reading.
PAPER = {"exp1_1": ("0.74 ± 0.05", "3.55 ± 2.12"), "exp1_2": ("0.74 ± 0.05", "3.64 ± 2.21"),
         "exp2_1": ("0.75 ± 0.05", "3.59 ± 2.33"), "exp2_2": ("0.75 ± 0.05", "3.67 ± 2.20"),
         "exp3_1": ("0.75 ± 0.05", "3.48 ± 2.04"), "exp3_2": ("0.69 ± 0.05", "3.55 ± 2.07"),
         "exp4_1": ("0.78 ± 0.05", "3.28 ± 2.03"), "exp4_2": ("0.77 ± 0.05", "3.27 ± 2.01")}
#: Overrides of the reduced CPU scale (network settings untouched).
CPU_SCALE = ("phantom_preset=small", "crop=32", "slices_per_subject=0", "learning_rate=0.001", "lr_halving_epochs=3")
KI_ORGANS = ("liver", "myocardium", "kidneys", "spleen", "lungs", "bone", "lesion")


def ki_rmse(dataset: Path, predictions: Path, subjects: list[str]) -> dict:
    """Per-organ Ki RMSE (mL/cm^3/min) of the maps in ``predictions/<subject>/`` against the truth, pooled."""
    from jaxkin.io.dataset import subject_files
    from jaxkin.evaluation import Method, evaluate_subject, summarise

    method = Method("network", predictions)
    results = [evaluate_subject(subject_files(dataset, s), [method]) for s in subjects]
    summary = summarise(results, [method])
    return {e["organ"]: e["rmse"] for e in summary["errors"] if e["param"] == "Ki"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--scale", choices=("cpu", "full"), default="cpu")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per configuration (cpu default 2)")
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, default=list(EXPERIMENTS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE.parent))
    from jaxkin.io.dataset import dataset_split
    from jaxkin.phantom.writer import simulate_dataset
    from jaxkin.evaluation.plots import unit_label
    from jaxkin.network import load_config, train

    workdir = Path(args.workdir)
    overrides = list(CPU_SCALE) if args.scale == "cpu" else []
    epochs = args.epochs if args.epochs is not None else (2 if args.scale == "cpu" else None)
    if epochs is not None:
        overrides.append(f"epochs={epochs}")
    overrides += args.set
    first = load_config(HERE / f"{args.only[0]}.py", overrides)
    data = workdir / "data"
    if not (data / "participants.tsv").is_file():
        simulate_dataset(data, subjects=first.data.phantom_subjects or None, seed=first.data.phantom_seed,
                         preset=first.data.phantom_preset, noise_scale=first.data.phantom_noise_scale)
    test_subjects = dataset_split(data)["test"]
    rows = []
    for name in args.only:
        cfg = load_config(HERE / f"{name}.py", overrides)
        t0 = time.perf_counter()
        summary = train(cfg, workdir / name, data, progress=False)
        seconds = time.perf_counter() - t0
        test = summary["test"]
        rmse = ki_rmse(data, workdir / name / "predictions", test_subjects)
        rows.append({"exp": name, "conv": cfg.model.conv, "pooling": cfg.model.pooling, "act": cfg.model.final_activation,
                     "cs": test["cs"], "cs_sd": test["cs_sd"], "mae": test["mae"], "mae_sd": test["mae_sd"],
                     "voxels": test["voxels"], "ki_rmse": rmse, "seconds": seconds, "epochs": cfg.optim.epochs})
        print(f"{name}: CS {test['cs']:.3f} ± {test['cs_sd']:.3f}, MAE {test['mae']:.3f} ± {test['mae_sd']:.3f} "
              f"({seconds:.0f} s)", flush=True)
        (workdir / "ablation.json").write_text(json.dumps(rows, indent=2) + "\n")

    organs = [o for o in KI_ORGANS if any(o in r["ki_rmse"] for r in rows)]
    scale = ("reduced CPU scale: " + ", ".join(overrides) if args.scale == "cpu" else
             "full scale (the configs as written)" + (": " + ", ".join(overrides) if overrides else ""))
    lines = ["# Table 1 (ablation), reproduced with jaxkin", "",
             f"Command: `python experiments/ablation.py {' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             (f"Scale: {scale}. Data: simulated phantom `{data}`, test subjects {', '.join(test_subjects)}. CS and "
              "MAE (kBq/mL): mean ± SD over the test voxels (the paper's definitions); paper values (real patients, "
              f"500 epochs) for reference. Ki RMSE ({unit_label('Ki')}): predicted vs ground-truth Ki over each "
              "organ's voxels."),
             "", "| Exp | Convolution | Pooling | Final activation | CS ↑ | MAE ↓ | paper CS | paper MAE | "
             + " | ".join(f"Ki RMSE {o}" for o in organs) + " | train s |",
             "|---|---|---|---|---|---|---|---|" + "---|" * len(organs) + "---|"]
    for r in rows:
        paper = PAPER.get(r["exp"], ("", ""))
        lines.append(f"| {r['exp'][3:].replace('_', '.')} | {LABELS[r['conv']]} | {LABELS[r['pooling']]} | "
                     f"{LABELS[r['act']]} | {r['cs']:.3f} ± {r['cs_sd']:.3f} | {r['mae']:.2f} ± {r['mae_sd']:.2f} | "
                     f"{paper[0]} | {paper[1]} | "
                     + " | ".join(f"{r['ki_rmse'].get(o, float('nan')):.4f}" for o in organs) + f" | {r['seconds']:.0f} |")
    (workdir / "table1.md").write_text("\n".join(lines) + "\n")
    tsv = ["exp\tconv\tpooling\tfinal_activation\tcs\tcs_sd\tmae\tmae_sd\t" + "\t".join(f"ki_rmse_{o}" for o in organs)]
    tsv += [f"{r['exp']}\t{r['conv']}\t{r['pooling']}\t{r['act']}\t{r['cs']:.6g}\t{r['cs_sd']:.6g}\t{r['mae']:.6g}\t"
            f"{r['mae_sd']:.6g}\t" + "\t".join(f"{r['ki_rmse'].get(o, float('nan')):.6g}" for o in organs) for r in rows]
    (workdir / "table1.tsv").write_text("\n".join(tsv) + "\n")
    print("\n".join(lines))
    print(f"wrote {workdir / 'table1.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
