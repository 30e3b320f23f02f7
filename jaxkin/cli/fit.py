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
        "mask, and voxels with NaN/Inf, are 0. With --bids ROOT: every PET scan of the dataset (or of "
        "--participant-label/--session) with the blood recordings of its session, written as a BIDS derivatives "
        "dataset DIR/sub-<label>/[ses-<label>/]pet/...; a rerun replaces the maps, each file atomically.",
    )
    parser.add_argument("--pet", help="4D *_pet.nii.gz with its *_pet.json sidecar")
    parser.add_argument("--tacs", metavar="TSV",
                        help="regional mode: fit the regional TACs of this table (jaxkin regions' tacs.tsv, or a "
                        "PMOD/kinfitr wide table: frame start/end or mid+duration, one column per region) and write "
                        "--out as a TSV of parameters, Ki/VT, their standard errors, SSE, R2, AIC, AICc, flags")
    from jaxkin.cli._scan import add_bids_arguments, add_blood_arguments

    add_blood_arguments(parser, required=False)
    parser.add_argument("--out", required=True,
                        help="output directory (created if needed); with --bids, the derivatives dataset")
    parser.add_argument("--model", default="2tcmirr", metavar="|".join(MODELS),
                        help="kinetic model (default 2tcmirr, the paper's irreversible two-tissue model); several "
                        "compartment models separated by commas (--model 2tcmirr,2tcm,1tcm) are each fitted and "
                        "compared: AICc maps per model and a map of the preferred model")
    parser.add_argument("--method", choices=("lm", "curve_fit"), default="lm",
                        help="lm: jaxkin's basis + Levenberg-Marquardt (default); curve_fit: the scipy baseline")
    parser.add_argument("--mask", help="3D mask on the PET grid (nonzero = fit); default: voxels with signal")
    parser.add_argument("--weights", choices=("none", "duration", "poisson", "sd"), default="none",
                        help="frame weights (default none); sd (--tacs only): 1/SD^2 from the regional SD per frame "
                        "in the table's JSON sidecar")
    parser.add_argument("--uncertainty", action="store_true",
                        help="also write standard-error maps of every parameter and of Ki/VT (meas-<param>SE), R2 and "
                        "the warning flags (meas-R2, meas-flags)")
    group = parser.add_argument_group("regional TACs (--tacs)")
    group.add_argument("--tac-time-unit", choices=("s", "min"),
                       help="unit of the table's frame times when its header or sidecar does not say")
    group.add_argument("--tac-units", metavar="UNITS",
                       help="activity unit of the table when its header or sidecar does not say, e.g. kBq/mL")
    group.add_argument("--injection-start", type=float, metavar="S",
                       help="the injection in s on the table's (and blood's) time axis when the sidecar has no "
                       "InjectionStart (default 0: times since injection)")
    parser.add_argument("--bounds", nargs="+", metavar="PRESET|NAME=LO,HI", default=None,
                        help="parameter bounds: physiological (default: contains healthy organs such as liver "
                        "k3 ~0.003 and spleen k2 > 3), paper (the paper's: K1 0.01-2, k2 0.01-3, k3 0.01-1, vB 0-1), "
                        "or ranges that change a preset, e.g. --bounds K1=0,3 k3=0,1 or --bounds paper k3=0.001,1 "
                        "(jaxkin models lists both presets)")
    parser.add_argument("--delay", choices=("none", "global", "voxel"), default="none",
                        help="input delay (positive = the input arrives later than where it was measured): none "
                        "(default); global: one delay for the scan from the mean TAC of the fit mask (or "
                        "--delay-mask), searched on a 1 s grid over --delay-range and refined; voxel: a delay per "
                        "voxel, fitted with the other parameters and written as the map meas-delay (min)")
    parser.add_argument("--delay-range", nargs=2, type=float, default=(-10.0, 30.0), metavar=("LO", "HI"),
                        help="delays searched (global) or allowed (voxel), in seconds (default -10 30)")
    parser.add_argument("--delay-mask", metavar="MASK",
                        help="--delay global: estimate the delay from the mean TAC of this region (3D mask on the "
                        "PET grid; default: the fit mask)")
    parser.add_argument("--t-star", type=float, default=20.0, help="start of the linear part, min (patlak, logan)")
    parser.add_argument("--min-signal", type=float, default=0.05,
                        help="automatic body mask: keep voxels whose time integral is >= this x the body's median "
                        "integral (the body found by Otsu's threshold on the log integrals), then fill holes per "
                        "axial slice and drop specks in the air (default 0.05)")
    parser.add_argument("--chunk-size", type=int, default=4096,
                        help="voxels per compiled chunk (default 4096; with --delay voxel at most 2048)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from jaxkin.cli._distributed import add_arguments

    add_arguments(parser)
    add_bids_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    import os
    import shlex
    import sys
    from pathlib import Path

    import numpy as np

    from jaxkin import distributed
    from jaxkin.cli._distributed import initialize_from_args
    from jaxkin.cli._scan import bids_jobs, check_modes, load_blood_for, replaced, say, start_derivatives
    from jaxkin.io.pet import load_pet, tracer_half_life
    from jaxkin.io.maps import read_volume
    from jaxkin.io.blood import scan_notes
    from jaxkin.decay import F18_HALF_LIFE_MIN
    from jaxkin.errors import InputError

    models = [m.strip() for m in args.model.split(",")]
    unknown = [m for m in models if m not in MODELS]
    if unknown or len(set(models)) != len(models):
        raise InputError(f"--model {args.model}: " + (f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}"
                                                       if unknown else "a model is named twice"))
    if len(models) > 1 and any(m in GRAPHICAL for m in models):
        raise InputError(f"--model {args.model}: only compartment models can be compared (not patlak, logan)")
    args.model = models[0] if len(models) == 1 else tuple(models)
    if args.tacs:
        if args.delay != "none":
            raise InputError("--delay: not with --tacs (regional fits use the input as measured)")
        return _run_regional(args)
    for name in ("tac_time_unit", "tac_units", "injection_start"):
        if getattr(args, name) is not None:
            raise InputError(f"--{name.replace('_', '-')}: only with --tacs")
    if args.weights == "sd":
        raise InputError("--weights sd: only with --tacs (the regional SD per frame)")
    if not args.bids and not args.pet:
        raise InputError("--pet, --tacs or --bids ROOT is required")
    if args.uncertainty and args.method == "curve_fit":
        raise InputError("--uncertainty: standard-error maps come from jaxkin's fit (--method lm), not curve_fit")
    check_modes(args, ("pet", "input_function", "mask", "delay_mask"))
    if not args.bids and not args.input_function:
        raise InputError("--input-function is required with --pet")
    if args.chunk_size < 1:
        raise InputError("--chunk-size must be positive")
    if args.method == "curve_fit" and models[0] in GRAPHICAL:
        raise InputError(f"--method curve_fit applies to compartment models, not {models[0]}")
    if models[0] not in GRAPHICAL:
        from jaxkin.kinetics import check_bound_names, resolve_bounds

        try:  # a bad --bounds stops here, before any work; the library's message starts "bounds: "
            check_bound_names(args.bounds, models)
            for m in models:
                resolve_bounds(m, args.bounds)
        except InputError as error:
            raise InputError(f"--{error}") from None
    elif args.bounds:
        raise InputError(f"--bounds applies to compartment models, not {models[0]}")
    delay_range = tuple(float(v) / 60.0 for v in args.delay_range)
    if not (np.all(np.isfinite(delay_range)) and delay_range[0] < delay_range[1]):
        raise InputError(f"--delay-range {args.delay_range[0]:g} {args.delay_range[1]:g}: expected LO HI in seconds "
                         "with LO < HI")
    if args.delay != "none" and models[0] in GRAPHICAL:
        raise InputError(f"--delay applies to compartment models, not {models[0]}")
    if args.delay == "voxel" and args.method != "lm":
        raise InputError("--delay voxel: fitted by --method lm only")
    if args.delay_mask and args.delay != "global":
        raise InputError("--delay-mask: only with --delay global")
    out = Path(args.out)
    if args.bids:
        jobs = [(job.pet, job.blood, job.out_dir, {"Sources": job.sources}, job.scan.prefix)
                for job in bids_jobs(args, command="fit", need_blood=True)]
        mask = delay_mask = None
    else:
        pet = load_pet(args.pet)
        jobs = [(pet, load_blood_for(args, pet), out, {}, None)]
        mask = np.nan_to_num(read_volume(args.mask, pet)) != 0 if args.mask else None
        delay_mask = np.nan_to_num(read_volume(args.delay_mask, pet)) != 0 if args.delay_mask else None
        if delay_mask is not None and not delay_mask.any():
            raise InputError(f"--delay-mask {args.delay_mask}: no voxel in the mask")
    half_lives = [(tracer_half_life(pet.sidecar, pet.sidecar_path, default=F18_HALF_LIFE_MIN)
                   if args.weights == "poisson" else None) for pet, *_ in jobs]  # a bad radionuclide stops here
    for _, _, folder, _, _ in jobs:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"--out: cannot create {folder} ({err.strerror})") from None
        if not os.access(folder, os.W_OK):
            raise InputError(f"--out: {folder} is not writable")
    if args.bids and distributed.is_main_process():
        start_derivatives(args, command="fit")
    initialize_from_args(args, "jaxkin fit")  # each process fits its slab of slices; process 0 writes

    from jaxkin.fitting import write_fit_maps

    command_line = shlex.join(["jaxkin"] + sys.argv[1:]) if sys.argv and sys.argv[0] else None
    for (pet, blood, folder, extra, name), half_life in zip(jobs, half_lives):
        main = distributed.is_main_process()
        if main:
            say("fit", [f"{name}: {n}" if name else n for n in scan_notes(pet, blood)])
        before = sum(replaced(folder, f"{pet.prefix}_model-{m}_meas-*_mimap.nii.gz")
                     for m in models + (["comparison"] if len(models) > 1 else []))
        written = write_fit_maps(pet, blood, folder, model=args.model, method=args.method, mask=mask,
                                 weights=args.weights, half_life=half_life, chunk_size=args.chunk_size,
                                 min_signal=args.min_signal, t_star=args.t_star, progress=not args.no_progress,
                                 command_line=command_line, extra=extra, bounds=args.bounds, delay=args.delay,
                                 delay_range=delay_range, delay_mask=delay_mask, uncertainty=args.uncertainty)
        if not main:
            continue
        result = written["result"]
        say("fit", written["notes"])
        if written["delay"] is not None:
            d, se = written["delay"]
            print(f"{name + ': ' if name else ''}global input delay {d * 60:.2f} s (standard error {se * 60:.2f} s)")
        how = "graphical" if models[0] in GRAPHICAL else args.method
        if len(models) > 1:
            preferred = np.stack([r.maps["AICc"][r.mask] for r in written["results"].values()]).argmin(axis=0)
            share = ", ".join(f"{m} {np.mean(preferred == i):.1%}" for i, m in enumerate(models))
            print(f"{name + ': ' if name else ''}preferred model (smallest AICc) in the voxels: {share}")
        print(f"{name + ': ' if name else ''}fitted {result.n_fitted} voxels with {','.join(models)} ({how}) in "
              f"{written['seconds']:.1f} s; {result.n_nonfinite} voxel(s) with NaN/Inf left out; "
              f"{result.n_not_converged} flagged not converged")
        print(f"wrote {len(written['paths'])} maps to {folder}: {', '.join(written['paths'])}"
              + (f" (replacing {before} maps of an earlier run)" if before else ""))
    return 0


def _run_regional(args) -> int:
    """``jaxkin fit --tacs TSV --input-function BLOOD --out fits.tsv``: one fit per region (pure library call)."""
    import shlex
    import sys
    from pathlib import Path

    import numpy as np

    from jaxkin._version import __version__
    from jaxkin.cli._scan import say, tsv_output
    from jaxkin.io.blood import load_blood
    from jaxkin.io.files import atomic_write, write_json
    from jaxkin.io.tables import read_tacs
    from jaxkin.errors import InputError

    for name in ("pet", "bids", "mask", "participant_label", "session", "blood_dataset"):
        if getattr(args, name, None):
            raise InputError(f"--{name.replace('_', '-')}: not with --tacs (the table holds the regional TACs)")
    if not args.input_function:
        raise InputError("--input-function is required with --tacs")
    if args.method == "curve_fit":
        raise InputError("--method curve_fit: not with --tacs (regional fits use jaxkin's fit in float64)")
    out = tsv_output(args.out, " with --tacs")
    tacs = read_tacs(args.tacs, time_unit=args.tac_time_unit, units=args.tac_units,
                     injection_start=args.injection_start)
    if args.weights == "sd" and tacs.sd is None:
        raise InputError(f"--weights sd: {args.tacs} has no regional SD per frame (a JSON sidecar with Regions/SD, "
                         "as jaxkin regions writes)")
    blood = load_blood(args.input_function, pet=tacs, blood_to_plasma=args.blood_to_plasma,
                       blood_decay=args.blood_decay)
    notes = list(tacs.notes) + list(blood.notes)
    if args.weights == "poisson":
        notes.append("poisson weights use the half-life of F-18 (a TACs table does not name the radionuclide)")
    say("fit", notes)

    from jaxkin.fitting import FLAG_NAMES
    from jaxkin.fitting.regional import compare_regional_fits, fit_regions

    models = [args.model] if isinstance(args.model, str) else list(args.model)
    fits = [fit_regions(tacs.names, tacs.values, blood.input, tacs.frames, whole_blood=blood.whole_blood, model=m,
                        weights=args.weights, sd=tacs.sd, t_star=args.t_star) for m in models]

    def cell(v):
        if isinstance(v, (bool, np.bool_)):
            return "true" if v else "false"
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if isinstance(v, (float, np.floating)):
            return "n/a" if not np.isfinite(v) else f"{float(v):.7g}"
        return str(v)

    common = {
        "Weights": fits[0].weights, "SoftwareName": "jaxkin", "SoftwareVersion": __version__,
        "CommandLine": shlex.join(["jaxkin"] + sys.argv[1:]) if sys.argv and sys.argv[0] else None,
        "Sources": [Path(args.tacs).name] + [Path(p).name for p in args.input_function],
        "Assumptions": list(dict.fromkeys(list(tacs.extra.get("Assumptions", [])) + notes)),
        **blood.sidecar(),
    }
    aic_text = "F ln(SSE/F) + 2P; AICc = AIC + 2P(P+1)/(F-P-1) (F frames, P parameters, weighted SSE)"
    tables = []  # (path, fit, sidecar): every table is written only once all are fitted
    for model, fit in zip(models, fits):
        sidecar = {n: {"Units": u} for n, u in fit.units.items() if u is not None} | {"ModelName": model} | common
        if model in GRAPHICAL:
            sidecar |= {"StandardErrors": "of the slope, from the straight-line regression", "TStarMinutes": args.t_star}
        else:
            sidecar |= {"StandardErrors": "sqrt(diag((J^T W J)^-1) SSE/(F-P)) at the solution; Ki/VT by the delta "
                        "method", "AIC": aic_text,
                        "flags": {"Description": "bit field", "Levels": {str(b): t for b, t in FLAG_NAMES.items()}}}
        path = out if len(models) == 1 else out.with_name(f"{out.stem}_model-{model}.tsv")
        tables.append((path, fit, sidecar))
    if len(models) > 1:
        comparison = compare_regional_fits(fits)
        sidecar = {n: {"Units": u} for n, u in comparison.units.items() if u is not None} | {
            "ModelName": "comparison of " + ", ".join(models), "AIC": aic_text,
            "Description": "per region: AICc of each model, its difference to the smallest, the Akaike weights "
            "exp(-dAICc/2) normalised over the models, the preferred model (smallest AICc); the fits of each model: "
            + ", ".join(p.name for p, _, _ in tables)} | common
        tables.insert(0, (out, comparison, sidecar))
    for path, fit, sidecar in tables:
        names = list(fit.columns)
        lines = ["\t".join(names)] + ["\t".join(cell(row[n]) for n in names) for row in fit.rows()]
        with atomic_write(path) as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        write_json(path.with_suffix(".json"), sidecar)
    for model, fit in zip(models, fits):
        path = next(p for p, f, _ in tables if f is fit)
        if model in GRAPHICAL:
            print(f"fitted {len(tacs.names)} region(s) with {model} (t* = {args.t_star:g} min); wrote {path}")
        else:
            bad = int(np.count_nonzero(~fit.columns["converged"]))
            print(f"fitted {len(tacs.names)} region(s) with {model} (weights {fit.weights}); {bad} flagged not "
                  f"converged; wrote {path}")
    if len(models) > 1:
        counts = {m: int(np.count_nonzero(comparison.columns["preferred"] == m)) for m in models}
        print("preferred by AICc: " + ", ".join(f"{m} in {n} region(s)" for m, n in counts.items()) + f"; wrote {out}")
    return 0
