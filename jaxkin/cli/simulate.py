"""``jaxkin simulate``: write a simulated whole-body dynamic FDG PET dataset (BIDS) with ground truth."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="write a simulated dynamic FDG PET dataset (BIDS) with ground-truth parameter maps",
        description="Simulate the jaxkin whole-body FDG phantom and write it as a BIDS dataset: 4D PET + sidecar, "
        "input function TSV, label map, ground-truth K1/k2/k3/vB/Ki maps under derivatives/groundtruth, "
        "and the train/val/test split in participants.tsv.",
    )
    parser.add_argument("--out", required=True, help="output folder (must not exist, or be empty)")
    parser.add_argument("--subjects", type=int, default=None,
                        help="number of subjects (default: 3 for small, 23 for paper)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--preset", default="small", choices=("small", "paper"),
                        help="small: 32x32x24 voxels for tests and the quickstart; paper: 112x112x80 at "
                             "2.5x2.5x6 mm (default small)")
    parser.add_argument("--noise-scale", type=float, default=1.0,
                        help="multiplies the noise variance (1 = realistic, about 3.6%% SD in late liver "
                             "frames; 0 = noiseless)")
    parser.add_argument("--fwhm-mm", type=float, default=None, help="Gaussian PSF FWHM in mm (default 4; 0 = none)")
    parser.add_argument("--organ-delays", action="store_true",
                        help="each organ sees the input delayed as in a patient (lungs and heart a few seconds early, "
                        "the lower body and bladder late; jaxkin.phantom.anatomy.ORGAN_DELAY_S); default: no delays")
    parser.add_argument("--frames", default="quadra62", choices=("quadra62", "quadra69"),
                        help="frame schedule: quadra62 (the paper's 62 frames, 65 min; default) or quadra69 (the 69 "
                        "frames, 70 min, of public Quadra datasets: 20x2 s, 10x5 s, 15x10 s, 6x60 s, 10x120 s, 8x300 s)")
    parser.add_argument("--units", default="kBq/mL", help="units of the written images (Bq/mL, kBq/mL, MBq/mL)")
    parser.add_argument("--workers", type=int, default=None, help="threads (default: up to 2)")
    parser.set_defaults(run=run)


#: The parameters of :func:`jaxkin.phantom.writer.simulate_dataset` that name themselves in its errors, and their flags.
FLAGS = {"subjects": "--subjects", "noise_scale": "--noise-scale", "fwhm_mm": "--fwhm-mm", "units": "--units",
         "frames": "--frames", "preset": "--preset"}


def run(args) -> int:
    import sys
    import time

    from jaxkin.cli._flags import flag_named
    from jaxkin.errors import InputError
    from jaxkin.phantom.anatomy import get_preset
    from jaxkin.phantom.writer import simulate_dataset

    preset = get_preset(args.preset)
    n = preset.subjects if args.subjects is None else args.subjects
    start = time.perf_counter()

    def progress(subject_id):
        print(f"  {subject_id} written ({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)

    try:
        out = simulate_dataset(args.out, subjects=args.subjects, seed=args.seed, preset=args.preset,
                               noise_scale=args.noise_scale, fwhm_mm=args.fwhm_mm, units=args.units,
                               workers=args.workers, progress=progress, organ_delays=args.organ_delays,
                               frames=args.frames)
    except InputError as err:
        raise flag_named(err, FLAGS) from None
    print(f"wrote {n} subject(s), preset {preset.name}, to {out} in {time.perf_counter() - start:.1f} s")
    return 0
