"""What a training run writes besides checkpoints: ``metrics.csv``, ``test_metrics.json``, ``report.md`` and the
organ means of predicted maps against a simulated ground truth.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from jaxkin.io.files import write_json
from jaxkin.errors import InputError
from jaxkin.kinetics import FDG_MODEL, get_model
from jaxkin.network.config import TrainConfig

__all__ = ["METRICS_COLUMNS", "truncate_metrics", "append_metrics", "read_metrics",
           "write_test_metrics", "organ_comparison", "organ_rank_correlation", "ki_errors", "write_report"]

#: The columns of ``metrics.csv``, one row per epoch (losses in (kBq/ml)^2, MAE in kBq/ml, seconds of wall time).
METRICS_COLUMNS = ("epoch", "step", "learning_rate", "train_loss", "val_loss", "val_mae", "val_mae_sd", "val_cs",
                   "val_cs_sd", "seconds")
#: The maps compared organ by organ: the FDG model's parameters and Ki.
ORGAN_MAPS = get_model(FDG_MODEL).map_names


def truncate_metrics(workdir: Path, before_epoch: int) -> None:
    """Keep the rows of ``metrics.csv`` of epochs < ``before_epoch`` (rows written after the last checkpoint go)."""
    path = Path(workdir) / "metrics.csv"
    if not path.is_file():
        return
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < before_epoch]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRICS_COLUMNS)
        w.writeheader()
        w.writerows(rows)


def append_metrics(workdir: Path, row: dict) -> None:
    """Append one epoch's ``row`` to ``metrics.csv`` (missing columns empty)."""
    path = Path(workdir) / "metrics.csv"
    new = not path.is_file()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRICS_COLUMNS)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in METRICS_COLUMNS})


def read_metrics(workdir) -> list[dict]:
    """The rows of ``WORKDIR/metrics.csv`` as dicts of floats (empty strings -> None)."""
    with (Path(workdir) / "metrics.csv").open() as f:
        return [{k: (float(v) if v != "" else None) for k, v in r.items()} for r in csv.DictReader(f)]


def write_test_metrics(workdir: Path, summary: dict, test_subjects: list[str]) -> None:
    """``test_metrics.json``: the best checkpoint's validation and test metrics (see :func:`network.evaluate`)."""
    write_json(Path(workdir) / "test_metrics.json",
               {"validation": summary["best_val"], "test": summary["test"], "test_subjects": test_subjects})


def organ_comparison(data_dir: Path, scan, maps: dict) -> list[dict]:
    """Organ means of the predicted ``maps`` (``{name: [X, Y, Z]}``) of ``scan`` (a
    :class:`jaxkin.network.data.SubjectScan`) and the ground truth, for simulated datasets only (otherwise ``[]``):
    ``[{"subject", "organ", "predicted": {K1, k2, k3, vB, Ki}, "true": {...}}]`` (``subject``: the scan's id, the
    subject id when it has one scan)."""
    from jaxkin.io.dataset import load_organ_truth, read_organ_truth

    if scan.labels is None or (scan.files is not None and scan.files.organ_truth is None):
        return []
    try:
        if scan.files is None:
            truth = load_organ_truth(data_dir, scan.subject)
        else:
            truth = read_organ_truth(scan.files.organ_truth)
    except InputError:
        return []  # not a simulated dataset
    rows = []
    for organ, true in truth.items():
        if organ not in scan.labels.names.values():
            continue
        inside = scan.labels.mask(organ)
        if inside.any():
            rows.append({"subject": scan.scan_id, "organ": organ,
                         "predicted": {p: float(np.mean(maps[p][inside])) for p in ORGAN_MAPS},
                         "true": {p: float(true[p]) for p in ORGAN_MAPS}})
    return rows


def organ_rank_correlation(rows: list[dict], parameter: str) -> float:
    """Spearman rank correlation, over the tissue organs of ``rows`` (pure blood, true vB = 1, left out), between
    the organ means of the predicted ``parameter`` and the ground truth; NaN with fewer than 3 organs."""
    from scipy.stats import spearmanr

    tissue = [r for r in rows if r["true"]["vB"] < 1.0]
    if len(tissue) < 3:
        return math.nan
    return float(spearmanr([r["predicted"][parameter] for r in tissue], [r["true"][parameter] for r in tissue])[0])


def ki_errors(rows: list[dict]) -> list[float]:
    """``abs(predicted / true - 1)`` of the organ-mean Ki of the tissue organs of ``rows`` (blood and Ki = 0 left out)."""
    return [abs(r["predicted"]["Ki"] / r["true"]["Ki"] - 1.0) for r in rows if r["true"]["vB"] < 1.0 and
            r["true"]["Ki"] > 0]


def _subject_scores(rows: list[dict]) -> list[list[str]]:
    out = []
    for subject in dict.fromkeys(r["subject"] for r in rows):
        mine = [r for r in rows if r["subject"] == subject]
        err = ki_errors(mine)
        out.append([subject, f"{organ_rank_correlation(mine, 'K1'):.2f}", f"{organ_rank_correlation(mine, 'Ki'):.2f}",
                    f"{100 * float(np.median(err)):.0f}%" if err else "-",
                    f"{100 * max(err):.0f}%" if err else "-"])
    return out


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def write_report(workdir: Path, cfg: TrainConfig, summary: dict, split: dict, organ_rows=()) -> None:
    """``report.md``: the run's settings, the best checkpoint's validation and test metrics and, for simulated
    data, the organ means against the ground truth with their rank correlation."""
    m, o = cfg.model, cfg.optim
    metrics = [[name, f"{r['cs']:.3f} ± {r['cs_sd']:.3f}", f"{r['mae']:.3f} ± {r['mae_sd']:.3f}", f"{r['loss']:.4g}",
                str(r["voxels"])]
               for name, r in (("validation (best checkpoint)", summary.get("best_val")), ("test", summary.get("test")))
               if r]
    shape = (f"temporal encoder ({m.temporal_features} features) + 2D UNet (depth {m.depth}, {m.root_features} root "
             "features)" if m.architecture == "encoder_unet" else f"conv {m.conv}, pooling {m.pooling}")
    lines = [
        "# jaxkin training report", "",
        f"Network: {shape}, final activation {m.final_activation}; "
        f"{o.epochs} epochs, batch {o.batch_size}, lr {o.learning_rate:g} halved every {o.lr_halving_epochs} epochs.",
        f"Subjects: train {', '.join(split['train'])}; val {', '.join(split['val']) or '-'}; "
        f"test {', '.join(split['test']) or '-'}.", "",
        *_table(["set", "CS (mean ± SD over voxels)", "MAE kBq/mL (mean ± SD)", "MSE", "voxels"], metrics),
    ]
    if organ_rows:
        cells = [[r["subject"], r["organ"], *(f"{r['predicted'][p]:.3f} / {r['true'][p]:.3f}" for p in ORGAN_MAPS)]
                 for r in organ_rows]
        rho = {p: organ_rank_correlation(organ_rows, p) for p in ORGAN_MAPS}
        lines += ["", "Organ means of the predicted maps against the simulated ground truth (predicted / true):", "",
                  *_table(["subject", "organ", *ORGAN_MAPS], cells), "",
                  "Spearman rank correlation of the organ means with the truth over the tissue organs (blood left "
                  "out), all test subjects pooled: " + ", ".join(f"{p} {rho[p]:.2f}" for p in ORGAN_MAPS) + ".", "",
                  *_table(["subject", "Spearman K1", "Spearman Ki", "median organ Ki error (absolute)",
                           "largest organ Ki error (absolute)"], _subject_scores(organ_rows))]
    lines += ["", "Metrics per epoch: metrics.csv. Checkpoints: checkpoints/best, checkpoints/latest."]
    if cfg.predict_test and split["test"]:
        lines.append(f"Parametric maps ({', '.join(ORGAN_MAPS)}) of the test subjects: predictions/<subject>/.")
    (Path(workdir) / "report.md").write_text("\n".join(lines) + "\n")
