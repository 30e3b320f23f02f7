"""``jaxkin fit``: voxel-wise parametric maps of a dynamic PET scan (compartment fit or graphical method)."""

from __future__ import annotations

#: The --model choices: kinetics.MODELS and fitting.GRAPHICAL_METHODS, named here so that building the parser stays
#: light (no JAX import); tests/test_architecture.py checks that they agree.
GRAPHICAL = ("patlak", "logan")
MODELS = ("2tcmirr", "1tcm", "2tcm", *GRAPHICAL)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "fit",
        help="fit a kinetic model voxel by voxel and write parametric maps",
        description="Fit every voxel of a 4D BIDS PET image (inside --mask, or every voxel with enough signal) "
        "and write DIR/<prefix>_model-<model>_meas-<param>_mimap.nii.gz with JSON sidecars. Voxels outside the "
        "mask, and voxels with NaN/Inf, are 0.",
    )
    parser.add_argument("--pet", required=True, help="4D *_pet.nii.gz with its *_pet.json sidecar")
    from jaxkin.cli._scan import add_blood_arguments

    add_blood_arguments(parser, required=True)
    parser.add_argument("--out", required=True, help="output directory (created if needed)")
    parser.add_argument("--model", choices=MODELS, default="2tcmirr",
                        help="kinetic model (default 2tcmirr, the paper's irreversible two-tissue model)")
    parser.add_argument("--method", choices=("lm", "curve_fit"), default="lm",
                        help="lm: jaxkin's basis + Levenberg-Marquardt (default); curve_fit: the scipy baseline")
    parser.add_argument("--mask", help="3D mask on the PET grid (nonzero = fit); default: voxels with signal")
    parser.add_argument("--weights", choices=("none", "duration", "poisson"), default="none",
                        help="frame weights (default none)")
    parser.add_argument("--t-star", type=float, default=20.0, help="start of the linear part, min (patlak, logan)")
    parser.add_argument("--min-signal", type=float, default=0.05,
                        help="automatic mask: time integral >= this x the 99th percentile (default 0.05)")
    parser.add_argument("--chunk-size", type=int, default=16384, help="voxels per compiled chunk")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from jaxkin.distributed import add_arguments

    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    import os
    import shlex
    import sys
    from pathlib import Path

    import numpy as np

    from jaxkin import distributed
    from jaxkin.data import bids
    from jaxkin.decay import F18_HALF_LIFE_MIN
    from jaxkin.errors import InputError

    if args.chunk_size < 1:
        raise InputError("--chunk-size must be positive")
    if args.method == "curve_fit" and args.model in GRAPHICAL:
        raise InputError(f"--method curve_fit applies to compartment models, not {args.model}")
    from jaxkin.cli._scan import load_blood_for, say

    pet = bids.load_pet(args.pet)
    blood = load_blood_for(args, pet)
    mask = np.nan_to_num(bids.read_volume(args.mask, pet)) != 0 if args.mask else None
    half_life = (bids.tracer_half_life(pet.sidecar, pet.sidecar_path, default=F18_HALF_LIFE_MIN)
                 if args.weights == "poisson" else None)  # a bad TracerRadionuclide stops here, before any work
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"--out: cannot create {out} ({err.strerror})") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"--out: {out} is not writable")
    distributed.initialize_from_args(args, "jaxkin fit")  # each process fits its slab of slices; process 0 writes

    from jaxkin.data.blood import scan_notes
    from jaxkin.fitting import write_fit_maps

    if distributed.is_main_process():
        say("fit", scan_notes(pet, blood))
    written = write_fit_maps(pet, blood, out, model=args.model, method=args.method, mask=mask,
                             weights=args.weights, half_life=half_life, chunk_size=args.chunk_size, min_signal=args.min_signal,
                             t_star=args.t_star, progress=not args.no_progress,
                             command_line=shlex.join(["jaxkin"] + sys.argv[1:]) if sys.argv and sys.argv[0] else None)
    if not distributed.is_main_process():
        return 0
    result = written["result"]
    how = "graphical" if args.model in GRAPHICAL else args.method
    print(f"fitted {result.n_fitted} voxels with {args.model} ({how}) in {written['seconds']:.1f} s; "
          f"{result.n_nonfinite} voxel(s) with NaN/Inf left out; {result.n_not_converged} flagged not converged")
    print(f"wrote {len(written['paths'])} maps to {out}: {', '.join(written['paths'])}")
    return 0
