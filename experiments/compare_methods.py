"""One command from a training run to the evaluation report: fit the test subjects and compare every method.

    python -m jaxkin.train --config experiments/quickstart.py --workdir runs/quickstart    # once
    python experiments/compare_methods.py --run runs/quickstart [--curve-fit] [--out runs/quickstart/evaluation]

For each test subject of the run's dataset (``RUN/data``, or ``--dataset``): fits (:func:`jaxkin.fitting.write_fit_maps`,
what ``jaxkin fit`` runs) with jaxkin LM and with Patlak (t* = 20 min) inside the subject's label map
(``RUN/fits/lm``, ``RUN/fits/patlak``), with ``--curve-fit`` also scipy curve_fit (``RUN/fits/curve_fit``; slow on a CPU: ~10 TACs/s per core), then ``jaxkin evaluate`` of the network's
predictions (``RUN/predictions``) against these methods and the ground truth (:func:`jaxkin.evaluation.evaluate`)
into ``--out`` (default ``RUN/evaluation``): report.md, TSV tables and figures. Existing fits are reused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def fit_test_subjects(dataset: Path, fits: Path, methods) -> dict:
    """Fit every test subject of ``dataset`` inside its label map with each ``(name, FitOptions fields)`` of
    ``methods`` into ``fits/<name>/<subject>`` (existing maps are reused); ``{name: seconds of the new fits}``."""
    from jaxkin.io.labels import read_labels
    from jaxkin.io.pet import load_pet
    from jaxkin.io.blood import load_blood
    from jaxkin.io.dataset import dataset_split, subject_files
    from jaxkin.fitting import FitOptions, FitRequest, write_fit_maps

    seconds = {}
    for sid in dataset_split(dataset)["test"]:
        files = subject_files(dataset, sid)
        pet = load_pet(files.pet)
        blood = load_blood(files.blood, pet=pet)  # every recording of the scan, combined
        mask = read_labels(files.labels, pet=pet, default_groups=False, resample=False).data > 0  # the subject's label map
        for name, options in methods:
            folder = fits / name / sid
            if folder.is_dir() and any(folder.glob("*_mimap.nii.gz")):
                continue
            done = write_fit_maps(FitRequest(pet, blood, folder, FitOptions(**options), mask=mask))
            seconds[name] = seconds.get(name, 0.0) + done.seconds
            print(f"{sid} {name}: {done.result.n_fitted} voxels in {done.seconds:.1f} s -> {folder}")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="training workdir (with predictions/ of the test subjects)")
    parser.add_argument("--dataset", default=None, help="dataset (default RUN/data)")
    parser.add_argument("--out", default=None, help="report folder (default RUN/evaluation)")
    parser.add_argument("--curve-fit", action="store_true", help="also fit with scipy curve_fit (slow)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from jaxkin.errors import InputError
    from jaxkin.evaluation import evaluate

    run = Path(args.run)
    dataset = Path(args.dataset) if args.dataset else run / "data"
    out = Path(args.out) if args.out else run / "evaluation"
    if not (run / "predictions").is_dir():
        print(f"{run}: no predictions/ folder (train with predict_test = True)", file=sys.stderr)
        return 2
    # LM and curve_fit with the paper's bounds, as in the paper's comparison (jaxkin fit's default is physiological)
    methods = [("lm", {"models": ("2tcmirr",), "method": "lm", "bounds": "paper"}), ("patlak", {"models": ("patlak",)})]
    if args.curve_fit:
        methods.append(("curve_fit", {"models": ("2tcmirr",), "method": "curve_fit", "bounds": "paper"}))
    try:
        fit_test_subjects(dataset, run / "fits", methods)
    except InputError as err:
        print(f"compare_methods: error: {err}", file=sys.stderr)
        return 2
    preds = ["network=" + str(run / "predictions"), "LM=" + str(run / "fits" / "lm")]
    if args.curve_fit:
        preds.append("curve_fit=" + str(run / "fits" / "curve_fit"))
    preds.append("Patlak=" + str(run / "fits" / "patlak"))
    try:
        print(f"wrote {evaluate(dataset, preds, out, split='test') / 'report.md'}")
    except InputError as err:
        print(f"compare_methods: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
