"""``jaxkin fit``: voxel-wise parametric maps of a dynamic PET scan (compartment fit or graphical method), or the fits
of regional TACs.

The command checks its flags, builds the library's request (:class:`jaxkin.fitting.FitRequest` with its
:class:`jaxkin.fitting.FitOptions`, or :class:`jaxkin.fitting.RegionalRequest`), makes one call per scan
(:func:`jaxkin.fitting.write_fit_maps`, :func:`jaxkin.fitting.write_regional_fits`) and prints what was written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


def register(subparsers) -> None:
    from jaxkin.cli._scan import add_bids_arguments, add_blood_arguments
    from jaxkin.cli._distributed import add_arguments
    from jaxkin.fitting import FIT_MODELS, METHODS
    from jaxkin.fitting.regional import REGIONAL_WEIGHTS

    parser = subparsers.add_parser(
        "fit",
        help="fit a kinetic model voxel by voxel and write parametric maps",
        description="Fit every voxel of a 4D BIDS PET image (inside --mask, or every voxel with enough signal) "
        "and write DIR/<prefix>_model-<model>_meas-<param>_mimap.nii.gz with JSON sidecars. Voxels outside the "
        "mask, and voxels with NaN/Inf, are 0. With --bids ROOT: every PET scan of the dataset (or of "
        "--participant-label/--session) with the blood recordings of its session, written as a BIDS derivatives "
        "dataset DIR/sub-<label>/[ses-<label>/]pet/...; a rerun replaces the maps as a set (and removes the earlier "
        "run's maps it does not write).",
    )
    parser.add_argument("--pet", help="4D *_pet.nii.gz with its *_pet.json sidecar")
    parser.add_argument("--tacs", metavar="TSV",
                        help="regional mode: fit the regional TACs of this table (jaxkin regions' tacs.tsv, a "
                        "PMOD/kinfitr wide table: frame start/end or mid+duration, one column per region, a PMOD "
                        ".voistat or .tac, a Turku PET Centre .dft/.tac) and write "
                        "--out as a TSV of parameters, Ki/VT, their standard errors, SSE, R2, AIC, AICc, flags")
    add_blood_arguments(parser, required=False)
    parser.add_argument("--out", required=True,
                        help="output directory (created if needed); with --bids, the derivatives dataset")
    parser.add_argument("--model", default=FIT_MODELS[0], metavar="|".join(FIT_MODELS),
                        help="kinetic model (default 2tcmirr, the paper's irreversible two-tissue model); several "
                        "compartment models separated by commas (--model 2tcmirr,2tcm,1tcm) are each fitted and "
                        "compared: AICc maps per model and a map of the preferred model")
    parser.add_argument("--method", choices=tuple(METHODS), default="lm",
                        help="lm: jaxkin's basis + Levenberg-Marquardt (default); curve_fit: the scipy baseline")
    parser.add_argument("--mask", help="3D mask on the PET grid (nonzero = fit); default: voxels with signal")
    parser.add_argument("--weights", choices=REGIONAL_WEIGHTS, default="none",
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
    _add_fit_arguments(parser)
    add_arguments(parser)
    add_bids_arguments(parser)
    parser.set_defaults(run=run)


def _add_fit_arguments(parser) -> None:
    """The options of how the voxels are fitted: bounds, input delay, t*, the automatic mask, chunks, progress."""
    from jaxkin.fitting import DELAY_MODES, FitOptions

    defaults = FitOptions()
    parser.add_argument("--bounds", nargs="+", metavar="PRESET|NAME=LO,HI", default=None,
                        help="parameter bounds: physiological (default: contains healthy organs such as liver "
                        "k3 ~0.003 and spleen k2 > 3), paper (the paper's: K1 0.01-2, k2 0.01-3, k3 0.01-1, vB 0-1), "
                        "or ranges that change a preset, e.g. --bounds K1=0,3 k3=0,1 or --bounds paper k3=0.001,1 "
                        "(jaxkin models lists both presets); a range of zero width (vB=0.02,0.02) holds the "
                        "parameter fixed, as --fix does")
    parser.add_argument("--fix", nargs="+", action="extend", metavar="NAME=VALUE", default=None,
                        help="hold parameters at a value and fit the others, e.g. --fix vB=0.02, several as --fix "
                        "vB=0.02 k4=0 (or vB=0.02,k4=0, or --fix repeated); compartment models, voxel and regional "
                        "modes. The sidecars state them (Bounds/Fixed); a fixed parameter's standard error is 0 and "
                        "it does not count among the fitted parameters (standard errors, AIC)")
    parser.add_argument("--delay", choices=DELAY_MODES, default=defaults.delay,
                        help="input delay (positive = the input arrives later than where it was measured): none "
                        "(default); global: one delay for the scan from the mean TAC of the fit mask (or "
                        "--delay-mask), searched on a 1 s grid over --delay-range and refined; voxel: a delay per "
                        "voxel, fitted with the other parameters and written as the map meas-delay (min)")
    lo, hi = (v * 60.0 for v in defaults.delay_range)
    parser.add_argument("--delay-range", nargs=2, type=float, default=None, metavar=("LO", "HI"),
                        help=f"delays searched (global) or allowed (voxel), in seconds (default {lo:g} {hi:g})")
    parser.add_argument("--delay-mask", metavar="MASK",
                        help="--delay global: estimate the delay from the mean TAC of this region (3D mask on the "
                        "PET grid; default: the fit mask)")
    parser.add_argument("--t-star", type=float, default=None,
                        help=f"start of the linear part, min (patlak, logan; default {defaults.t_star:g})")
    parser.add_argument("--min-signal", type=float, default=None,
                        help="automatic body mask: keep voxels whose time integral is >= this x the body's median "
                        "integral (the body found by Otsu's threshold on the log integrals), then fill holes per "
                        f"axial slice and drop specks in the air (default {defaults.min_signal:g})")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help=f"voxels per compiled chunk (default {defaults.chunk_size}; with --delay voxel at most "
                        "2048)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from jaxkin.cli._scan import add_memory_argument

    add_memory_argument(parser)
    from jaxkin.cli._scan import add_skip_existing

    add_skip_existing(parser, "fitted")


#: The options of the voxel mode that the regional mode (--tacs) refuses: a table has no voxels and no delay.
_VOXEL_ONLY = ("pet", "bids", "mask", "participant_label", "session", "blood_dataset", "delay_range", "delay_mask",
               "min_signal", "chunk_size", "max_memory")


def run(args) -> int:
    from jaxkin.cli._scan import flag, options_worded
    from jaxkin.errors import InputError
    from jaxkin.fitting import GRAPHICAL_METHODS, FitOptions
    from jaxkin.fitting.options import check_models

    with options_worded(models=f"--model {args.model}"):
        models = check_models([m.strip() for m in args.model.split(",")])
    if args.t_star is not None and models[0] not in GRAPHICAL_METHODS:
        raise InputError(f"--t-star: only with {' or '.join(GRAPHICAL_METHODS)} (not {models[0]})")
    if args.delay_range is not None and args.delay == "none":
        raise InputError("--delay-range: only with --delay global or voxel")
    if args.tacs:
        if args.delay != "none":
            raise InputError("--delay: not with --tacs (regional fits use the input as measured)")
        for name in _VOXEL_ONLY:
            if getattr(args, name, None) is not None:
                raise InputError(f"{flag(name)}: not with --tacs (the table holds the regional TACs)")
        if args.skip_existing:
            raise InputError("--skip-existing: not with --tacs (a table of regional fits is quick to remake)")
    defaults = FitOptions()
    for name in ("t_star", "min_signal", "chunk_size"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(defaults, name))
    if args.delay_range is None:
        args.delay_range = tuple(v * 60.0 for v in defaults.delay_range)
    return _run_regional(args, models) if args.tacs else _run_maps(args, models)


def _run_maps(args, models: tuple[str, ...]) -> int:
    """``jaxkin fit --pet PET --input-function BLOOD --out DIR`` (or ``--bids ROOT``): one request per scan."""
    import sys

    from jaxkin import distributed
    from jaxkin.cli._distributed import initialize_from_args
    from jaxkin.cli._scan import command_line, options_worded, start_derivatives
    from jaxkin.fitting import FitOptions, FitRequest
    from jaxkin.fitting.maps import poisson_half_life

    _check_map_flags(args)
    with options_worded(models=f"--model {args.model}", fixed="--fix"):
        options = FitOptions(models=models, method=args.method, weights=args.weights, bounds=args.bounds,
                             fixed=args.fix, t_star=args.t_star, uncertainty=args.uncertainty, delay=args.delay,
                             delay_range=tuple(float(v) / 60.0 for v in args.delay_range), min_signal=args.min_signal,
                             chunk_size=args.chunk_size, progress=not args.no_progress)
    jobs, mask, delay_mask = _open_scans(args)
    budget, said = _fits_in(args, jobs, options)
    half_lives = [poisson_half_life(job.pet, options.weights) for job in jobs]  # a bad radionuclide stops here
    from jaxkin.cli._scan import writable_folder

    for job in jobs:  # a folder that cannot be made stops here; nothing is created before the maps are written
        writable_folder(job.out_dir)
    started = []  # the derivative dataset's description: written with the first scan's maps, not before

    def start():
        if args.bids and not started:
            start_derivatives(args, command="fit")
            started.append(True)

    initialize_from_args(args, "jaxkin fit")  # each process fits its slab of slices; process 0 writes
    if distributed.is_main_process():
        print(said, file=sys.stderr)
    for job, half_life in zip(jobs, half_lives):
        extra = job.extra | ({"FitOptions": _options_record(options)} if args.bids else {})
        request = FitRequest(pet=job.pet, input_function=job.blood, out_dir=job.out_dir, options=options, mask=mask,
                             delay_mask=delay_mask, half_life=half_life, command_line=command_line(), extra=extra,
                             max_memory=budget, before_commit=start)
        if args.skip_existing and _complete(request, job.name):
            continue
        with options_worded(models=f"--model {args.model}"):
            _fit_scan(request, job.blood, job.name)
    return 0


def _check_map_flags(args) -> None:
    """InputError for flags of the regional mode, a missing scan or input, a bad delay range or delay mask."""
    import math

    from jaxkin.cli._scan import check_modes, flag
    from jaxkin.errors import InputError

    for name in ("tac_time_unit", "tac_units", "injection_start"):
        if getattr(args, name) is not None:
            raise InputError(f"{flag(name)}: only with --tacs")
    if args.weights == "sd":
        raise InputError("--weights sd: only with --tacs (the regional SD per frame)")
    if not args.bids and not args.pet:
        raise InputError("--pet, --tacs or --bids ROOT is required")
    check_modes(args, ("pet", "input_function", "mask", "delay_mask"))
    if not args.bids and not args.input_function:
        raise InputError("--input-function is required with --pet")
    lo, hi = (float(v) / 60.0 for v in args.delay_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InputError(f"--delay-range {args.delay_range[0]:g} {args.delay_range[1]:g}: expected LO HI in seconds "
                         "with LO < HI")
    if args.skip_existing and not args.bids:
        raise InputError("--skip-existing: only with --bids")
    if args.delay_mask and args.delay != "global":
        raise InputError("--delay-mask: only with --delay global")


@dataclasses.dataclass(frozen=True)
class _Job:
    """One scan to fit: its PET image and blood, where its maps go, the extra sidecar fields, its name (BIDS mode)."""

    pet: object
    blood: object
    out_dir: Path
    extra: dict
    name: str | None = None


def _open_scans(args):
    """``(scans, mask, delay mask)``: every scan of ``--bids``, or the one of ``--pet`` with its masks."""
    import numpy as np

    from jaxkin.cli._scan import bids_jobs, load_blood_for
    from jaxkin.io.pet import load_pet
    from jaxkin.io.maps import read_volume
    from jaxkin.errors import InputError

    if args.bids:
        jobs = [_Job(job.pet, job.blood, job.out_dir, {"Sources": job.sources}, job.scan.prefix)
                for job in bids_jobs(args, command="fit", need_blood=True)]
        return jobs, None, None
    pet = load_pet(args.pet)
    jobs = [_Job(pet, load_blood_for(args, pet), Path(args.out), {})]
    mask = np.nan_to_num(read_volume(args.mask, pet)) != 0 if args.mask else None
    delay_mask = np.nan_to_num(read_volume(args.delay_mask, pet)) != 0 if args.delay_mask else None
    if mask is not None and not mask.any():
        raise InputError(f"--mask {args.mask}: no voxel in the mask")
    if delay_mask is not None and not delay_mask.any():
        raise InputError(f"--delay-mask {args.delay_mask}: no voxel in the mask")
    return jobs, mask, delay_mask


def _fit_scan(request, blood, name: str | None) -> None:
    """Fit one scan (every process) and say what was written (process 0)."""
    from jaxkin import distributed
    from jaxkin.cli._scan import replaced, say
    from jaxkin.io.blood import scan_notes
    from jaxkin.fitting import write_fit_maps

    options, pet, folder = request.options, request.pet, request.out_dir
    main = distributed.is_main_process()
    if main:
        say("fit", [f"{name}: {n}" if name else n for n in scan_notes(pet, blood)])
    entities = (*options.models, *(("comparison",) if options.compare else ()))
    before = sum(replaced(folder, f"{pet.prefix}_model-{m}_meas-*_mimap.nii.gz") for m in entities)
    written = write_fit_maps(request)
    if not main:
        return
    result, prefix = written.result, f"{name}: " if name else ""
    say("fit", written.notes)
    gone = [n for n in written.removed if n.endswith(".nii.gz")]
    if gone:
        say("fit", [(f"{prefix}removed {len(gone)} map(s) of an earlier run that this run does not write (and their "
                     f"sidecars): {', '.join(gone)}")])
    before -= len(gone)
    if written.delay is not None:
        d, se = written.delay
        print(f"{prefix}global input delay {d * 60:.2f} s (standard error {se * 60:.2f} s)")
    if options.compare:
        share = ", ".join(f"{m} {s:.1%}" for m, s in written.preferred_share().items())
        print(f"{prefix}preferred model (smallest AICc) in the voxels: {share}")
    how = "graphical" if options.graphical else options.method + _fixed_words(options.models[0], options.bounds)
    print(f"{prefix}fitted {result.n_fitted} voxels with {','.join(options.models)} ({how}) in "
          f"{written.seconds:.1f} s; {result.n_nonfinite} voxel(s) with NaN/Inf left out; "
          f"{result.n_not_converged} flagged not converged")
    print(f"wrote {len(written.paths)} maps to {folder}: {', '.join(written.paths)}"
          + (f" (replacing {before} maps of an earlier run)" if before else ""))


def _check_tables_out(out: Path, models, inputs) -> None:
    """InputError if a table of ``jaxkin fit --tacs`` (or its sidecar) would replace an input or a file that is not
    an earlier table of regional fits."""
    from jaxkin.io.files import check_not_inputs, check_replaceable, sidecar_of

    paths = [out] + ([out.with_name(f"{out.stem}_model-{m}.tsv") for m in models] if len(models) > 1 else [])
    check_not_inputs([q for p in paths for q in (p, sidecar_of(p))], [Path(p) for p in inputs], label="--out")
    for path in paths:
        check_replaceable(path, ("ModelName", "Weights", "SoftwareName"), "a table of regional fits")


def _fits_in(args, jobs, options) -> tuple[int, str]:
    """The memory budget and the line saying it; every scan refused up front (one line) whose fixed memory (the mask
    pass, the maps of the volume) exceeds it, before any is fitted."""
    from jaxkin.cli._scan import memory_budget, within_memory
    from jaxkin.fitting import output_maps
    from jaxkin.fitting.volume import memory_needed

    n_maps = max(len(output_maps(m, diagnostics=True, delay=options.delay == "voxel", uncertainty=options.uncertainty))
                 for m in options.models)
    budget, said = memory_budget(args, "fit")
    for job in jobs:
        within_memory(memory_needed(job.pet.shape, n_maps), budget, f"fitting {job.pet.path}")
    return budget, said


def _options_record(options) -> dict:
    """The options that make the maps, as recorded in their sidecars (``FitOptions``) and compared by
    ``--skip-existing``."""
    import json

    fields = dataclasses.asdict(options)
    fields.pop("progress", None)
    return json.loads(json.dumps(fields, default=str))


def _complete(request, name: str | None) -> bool:
    """True (said) when every map of ``request`` is in its folder, made with the same options and sources."""
    from jaxkin.cli._scan import maps_complete
    from jaxkin.fitting import output_maps

    options = request.options
    wanted = [(m, n) for m in options.models for n in output_maps(m, delay=options.delay == "voxel",
                                                                  uncertainty=options.uncertainty)]
    if options.compare:
        wanted += [(m, "AICc") for m in options.models] + [("comparison", "preferred")]
    record = {k: request.extra.get(k) for k in ("FitOptions", "Sources")}
    return maps_complete(request.out_dir, request.pet.prefix, wanted, record, name)


def _run_regional(args, models: tuple[str, ...]) -> int:
    """``jaxkin fit --tacs TSV --input-function BLOOD --out fits.tsv``: one fit per region and model."""
    import math

    import numpy as np

    from jaxkin.cli._scan import command_line, load_blood_for, options_worded, say, tsv_output
    from jaxkin.io.tables import read_tacs
    from jaxkin.errors import InputError
    from jaxkin.fitting import GRAPHICAL_METHODS, RegionalRequest, write_regional_fits

    if not args.input_function:
        raise InputError("--input-function is required with --tacs")
    if args.injection_start is not None and not math.isfinite(args.injection_start):
        raise InputError(f"--injection-start {args.injection_start}: must be a finite number of seconds")
    if args.method == "curve_fit":
        raise InputError("--method curve_fit: not with --tacs (regional fits use jaxkin's fit in float64)")
    out = tsv_output(args.out, " with --tacs")
    _check_tables_out(out, models, [args.tacs, *args.input_function])
    tacs = read_tacs(args.tacs, time_unit=args.tac_time_unit, units=args.tac_units,
                     injection_start=args.injection_start)
    blood = load_blood_for(args, tacs)
    with options_worded(models=f"--model {args.model}", tacs=args.tacs, fixed="--fix"):
        request = RegionalRequest(tacs, blood, out, models=models, weights=args.weights, t_star=args.t_star,
                                  command_line=command_line(), bounds=args.bounds, fixed=args.fix)
    say("fit", request.notes)
    written = write_regional_fits(request)
    for model, fit in written.fits.items():
        path = written.paths[model]
        if model in GRAPHICAL_METHODS:
            print(f"fitted {len(tacs.names)} region(s) with {model} (t* = {args.t_star:g} min); wrote {path}")
        else:
            bad = int(np.count_nonzero(~fit.columns["converged"]))
            print(f"fitted {len(tacs.names)} region(s) with {model} (weights {fit.weights}"
                  f"{_fixed_words(model, request.bounds)}); {bad} flagged not converged; wrote {path}")
    if written.comparison is not None:
        counts = written.preferred_counts()
        print("preferred by AICc: " + ", ".join(f"{m} in {n} region(s)" for m, n in counts.items()) + f"; wrote {out}")
    return 0


def _fixed_words(model: str, bounds) -> str:
    """``"; fixed vB=0.02"`` for the parameters of ``model`` that ``bounds`` holds fixed, else ``""``."""
    from jaxkin.kinetics import fixed_values

    held = fixed_values(model, bounds)
    return "; fixed " + " ".join(f"{n}={v:g}" for n, v in held.items()) if held else ""
