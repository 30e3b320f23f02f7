"""Network, network + test-time adaptation, network + LM polish and LM alone on the test subjects of a training run.

    python -m jaxkin.train --config experiments/quickstart.py --workdir runs/quickstart    # once
    python experiments/adaptation.py --run runs/quickstart [--adapt-steps 20] [--adapt-lr LR] [--refine-lm 8]

For each test subject of the run's dataset (``RUN/data``, or ``--dataset``), four ways to its parametric maps:

* ``network``: the trained network (:meth:`jaxkin.network.Predictor.predict_volume`);
* ``network + adapt N``: the network fine-tuned on the subject's own scan first (:func:`jaxkin.network.adapt`, what
  ``jaxkin predict --adapt-steps N`` runs);
* ``network + LM K``: K Levenberg-Marquardt iterations per voxel started from the network's maps
  (:func:`jaxkin.network.refine_with_lm`, ``jaxkin predict --refine-lm K``; the network's loss mask, its bounds);
* ``LM``: the voxel-wise fit of ``jaxkin fit`` (basis-function start + 16 LM iterations, physiological bounds,
  :func:`jaxkin.fitting.fit_volume`) inside the subject's label map.

Each is scored inside the subject's label map (every labelled voxel): the TAC fit (mean over voxels of the cosine
similarity and of the MAE, kBq/mL, :mod:`jaxkin.evaluation.metrics`), on simulated data the error against the truth
(voxel RMSE of K1, k2, k3, vB and Ki, and the bias of the organ means of Ki: mean and mean |.| over the organs of
(organ mean of the estimate - organ mean of the truth)), and the wall time (s; each method is run once before it is
timed, so compilation is not counted, unless ``--no-warmup``). Printed as a table per subject and written to
``--out`` (default ``RUN/adaptation``): ``adaptation.md`` and ``adaptation.tsv``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

COLUMNS = ("cs", "mae", "rmse_K1", "rmse_k2", "rmse_k3", "rmse_vB", "rmse_Ki", "ki_bias", "ki_abs_bias", "seconds")


def _scores(params, volume, kin, mask, labels, names, truth) -> dict:
    """The TAC fit and truth errors of ``params [X, Y, Z, 4]`` inside ``mask``."""
    import numpy as np

    from jaxkin.evaluation import error_statistics, organ_values, voxel_cosine, voxel_mae
    from jaxkin.kinetics import FDG_MODEL, get_model, tacs_in_chunks

    model_tac = np.asarray(tacs_in_chunks(np.asarray(params[mask], np.float32), kin, FDG_MODEL))
    tac = np.nan_to_num(volume[mask])
    row = {"cs": float(np.mean(voxel_cosine(tac, model_tac))), "mae": float(np.mean(voxel_mae(tac, model_tac)))}
    maps = get_model(FDG_MODEL).named_maps(params)
    for p in ("K1", "k2", "k3", "vB", "Ki"):
        row[f"rmse_{p}"] = error_statistics(maps[p][mask], truth[p][mask])["rmse"] if p in truth else float("nan")
    if "Ki" in truth and names:
        est = organ_values({"Ki": maps["Ki"]}, labels, names, mask)
        ref = organ_values({"Ki": truth["Ki"]}, labels, names, mask)
        bias = [est[o]["Ki"].mean() - ref[o]["Ki"].mean() for o in est if est[o]["Ki"].size]
        row["ki_bias"], row["ki_abs_bias"] = float(np.mean(bias)), float(np.mean(np.abs(bias)))
    else:
        row["ki_bias"] = row["ki_abs_bias"] = float("nan")
    return row


def _timed(fn, warmup: bool):
    if warmup:
        fn()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _table(rows: list[dict]) -> list[str]:
    head = ["method", "CS", "MAE kBq/mL", "RMSE K1", "RMSE k2", "RMSE k3", "RMSE vB", "RMSE Ki", "Ki organ bias",
            "Ki organ abs bias", "time s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r["method"]] + [f"{r[c]:.4g}" for c in COLUMNS]) + " |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="training workdir (checkpoints/best, model.json)")
    parser.add_argument("--dataset", default=None, help="dataset (default RUN/data)")
    parser.add_argument("--out", default=None, help="report folder (default RUN/adaptation)")
    parser.add_argument("--adapt-steps", type=int, default=20, help="adaptation steps (default 20)")
    parser.add_argument("--adapt-lr", type=float, default=None, help="adaptation learning rate "
                        "(default: the rate the run ended with)")
    parser.add_argument("--refine-lm", type=int, default=8, help="LM iterations after the network (default 8)")
    parser.add_argument("--no-warmup", action="store_true", help="time the first (compiling) call of each method")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import numpy as np

    from jaxkin.io.labels import read_labels
    from jaxkin.io.pet import load_pet
    from jaxkin.io.maps import read_volume
    from jaxkin.io.blood import load_blood
    from jaxkin.io.dataset import dataset_split, scan_files
    from jaxkin.errors import InputError
    from jaxkin.fitting import fit_volume
    from jaxkin.kinetics import FDG_MODEL, get_model
    from jaxkin.network import adapt, load_predictor, refine_with_lm
    from jaxkin.network.predict import scan_kinetic_input

    run = Path(args.run)
    dataset = Path(args.dataset) if args.dataset else run / "data"
    out = Path(args.out) if args.out else run / "adaptation"
    warmup = not args.no_warmup
    names_fdg = get_model(FDG_MODEL).param_names
    all_rows, report = [], ["# Network, adaptation and LM polish", "",
                            f"Run `{run}`; adaptation {args.adapt_steps} steps (lr "
                            f"{args.adapt_lr if args.adapt_lr is not None else 'the last of the run'}), LM polish "
                            f"{args.refine_lm} iterations; scores inside each subject's label map; times "
                            f"{'without' if warmup else 'with'} compilation.", ""]
    try:
        trained = load_predictor(run)
        cfg = trained.cfg
        for sid in dataset_split(dataset)["test"]:
            for files in scan_files(dataset, sid):
                pet = load_pet(files.pet)
                trained.check_schedule(pet.frames, str(pet.path))
                blood = load_blood(files.blood, pet=pet)
                kin = scan_kinetic_input(pet, blood)
                volume = np.nan_to_num(pet.read())
                labels = read_labels(files.labels, pet=pet, default_groups=False, resample=False) if files.labels is not None else None
                mask = labels.data > 0 if labels is not None else np.ones(volume.shape[:3], bool)
                names = labels.names if labels is not None else {}
                truth = {p: read_volume(f, pet) for p, f in files.truth.items()}

                def network(predictor):  # the scan's input function: a network may take it as an input
                    return predictor.predict_volume(volume, kin=kin)[0]

                def refined():
                    p = network(trained)
                    return refine_with_lm(p, volume, kin, n_iter=args.refine_lm, threshold=cfg.data.mask_threshold,
                                          lower=cfg.model.lower, upper=cfg.model.upper)[0]

                def adapted():
                    a = adapt(trained, volume, kin, steps=args.adapt_steps, learning_rate=args.adapt_lr,
                              seed=cfg.seed)
                    return network(a.predictor)

                def lm_alone():
                    fit = fit_volume(volume, kin, mask=mask, progress=False)
                    return np.stack([fit.maps[n] for n in names_fdg], -1)

                methods = [("network", lambda: network(trained)),
                           (f"network + adapt {args.adapt_steps}", adapted),
                           (f"network + LM {args.refine_lm}", refined),
                           ("LM (jaxkin fit)", lm_alone)]
                rows = []
                for method, fn in methods:
                    params, seconds = _timed(fn, warmup)
                    rows.append({"scan": files.scan_id, "method": method,
                                 **_scores(params, volume, kin, mask, labels.data if labels is not None else None,
                                           names, truth), "seconds": seconds})
                print(f"\n{files.scan_id} ({int(mask.sum())} voxels):")
                print("\n".join(_table(rows)))
                report += [f"## {files.scan_id} ({int(mask.sum())} voxels)", "", *_table(rows), ""]
                all_rows += rows
    except InputError as err:
        print(f"adaptation: error: {err}", file=sys.stderr)
        return 2
    if not all_rows:
        print(f"adaptation: error: {dataset}: no test subjects", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    report += ["RMSE in the parameters' units (K1, Ki: mL/cm³/min; k2, k3: 1/min; vB: 1); Ki organ bias: mean over "
               "organs of (organ mean of the estimate − organ mean of the truth), and of its absolute value.", ""]
    (out / "adaptation.md").write_text("\n".join(report))
    lines = ["\t".join(("scan", "method") + COLUMNS)]
    lines += ["\t".join([r["scan"], r["method"]] + [f"{r[c]:.6g}" for c in COLUMNS]) for r in all_rows]
    (out / "adaptation.tsv").write_text("\n".join(lines) + "\n")
    print(f"\nwrote {out / 'adaptation.md'} and {out / 'adaptation.tsv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
