"""``jaxkin fit``: voxel-wise parametric maps of a dynamic PET scan (compartment fit or graphical method)."""

from __future__ import annotations

MODELS = ("2tcmirr", "1tcm", "2tcm", "patlak", "logan")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "fit",
        help="fit a kinetic model voxel by voxel and write parametric maps",
        description="Fit every voxel of a 4D BIDS PET image (inside --mask, or every voxel with enough signal) "
        "and write DIR/<prefix>_model-<model>_meas-<param>_mimap.nii.gz with JSON sidecars. Voxels outside the "
        "mask, and voxels with NaN/Inf, are 0.",
    )
    parser.add_argument("--pet", required=True, help="4D *_pet.nii.gz with its *_pet.json sidecar")
    parser.add_argument("--input-function", required=True, help="input-function TSV (time in s, AIF)")
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


def _load_mask(path, pet):
    import numpy as np

    from jaxkin.data import bids
    from jaxkin.errors import InputError

    image = bids._open_nifti(__import__("pathlib").Path(path))
    shape = tuple(int(s) for s in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if shape != tuple(pet.shape[:3]):
        raise InputError(f"{path}: mask shape {shape} differs from the PET image {pet.path.name} {pet.shape[:3]}")
    if not np.allclose(image.affine, pet.affine, atol=1e-3, rtol=0):
        raise InputError(f"{path}: affine differs from the PET image {pet.path.name}; resample the mask")
    try:
        data = np.asarray(image.dataobj).reshape(shape)
    except Exception as err:
        raise InputError(f"{path}: cannot read image data ({err})") from None
    return np.nan_to_num(data) != 0


def _half_life(pet) -> float:
    from jaxkin.data import bids
    from jaxkin.fitting import F18_HALF_LIFE_MIN

    if pet.sidecar.get("TracerRadionuclide") is None:
        return F18_HALF_LIFE_MIN
    return bids._half_life(pet.sidecar, pet.sidecar_path)


def run(args) -> int:
    import os
    import shlex
    import sys
    import time
    from pathlib import Path

    from jaxkin import distributed
    from jaxkin.data import bids
    from jaxkin.errors import InputError

    if args.chunk_size < 1:
        raise InputError("--chunk-size must be positive")
    if args.method == "curve_fit" and args.model in ("patlak", "logan"):
        raise InputError(f"--method curve_fit applies to compartment models, not {args.model}")
    pet = bids.load_pet(args.pet)
    input_function = bids.load_input_function(args.input_function, pet=pet)
    mask = _load_mask(args.mask, pet) if args.mask else None
    half_life = _half_life(pet) if args.weights == "poisson" else None
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"--out: cannot create {out} ({err.strerror})") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"--out: {out} is not writable")
    distributed.initialize_from_args(args, "jaxkin fit")  # each process fits its slab of slices; process 0 writes

    import jaxkin
    from jaxkin.fit_volume import MAP_UNITS, fit_volume

    kin = jaxkin.prepare(input_function, pet.frames)
    plot = numpy_model = None
    if args.model in ("patlak", "logan"):
        from jaxkin.graphical import PlotInput

        plot = PlotInput.from_input(input_function, pet.frames)
    elif args.method == "curve_fit":
        from jaxkin.baseline import NumpyModel

        numpy_model = NumpyModel(input_function, pet.frames, args.model)

    start = time.perf_counter()
    result = fit_volume(pet, kin, model=args.model, method=args.method, mask=mask, weights=args.weights,
                        chunk_size=args.chunk_size, min_signal=args.min_signal, t_star=args.t_star,
                        plot_input=plot, numpy_model=numpy_model, progress=not args.no_progress,
                        half_life=half_life)
    seconds = time.perf_counter() - start
    if args.model in ("patlak", "logan"):
        names = ["Ki" if args.model == "patlak" else "VT", "intercept"]
    else:
        m = jaxkin.get_model(args.model)
        names = list(m.param_names) + list(m.macros) + ["SSE"]
    command_line = shlex.join(["jaxkin"] + sys.argv[1:]) if sys.argv and sys.argv[0] else None
    extra = {"FitMethod": args.method if args.model not in ("patlak", "logan") else "linear regression",
             "Weights": args.weights, "VoxelsFitted": result.n_fitted,
             "InputFunction": Path(args.input_function).name}
    if args.model in ("patlak", "logan"):
        extra["TStarMinutes"] = args.t_star
    if not distributed.is_main_process():
        distributed.sync("jaxkin-fit-written")  # exit only when process 0 has written the maps
        return 0
    written = [bids.write_map(out, pet.prefix, args.model, name, result.maps[name], reference=pet,
                              units="min" if (args.model, name) == ("logan", "intercept") else MAP_UNITS[name], command_line=command_line, extra=extra) for name in names]
    print(f"fitted {result.n_fitted} voxels with {args.model} ({args.method if plot is None else 'graphical'}) "
          f"in {seconds:.1f} s; {result.n_nonfinite} voxel(s) with NaN/Inf left out; "
          f"{result.n_not_converged} flagged not converged")
    print(f"wrote {len(written)} maps to {out}: {', '.join(names)}")
    distributed.sync("jaxkin-fit-written")
    return 0
