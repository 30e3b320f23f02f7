"""``jaxkin predict``: parametric maps (K1, k2, k3, vB, Ki) of a dynamic PET volume with a trained network."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="predict K1, k2, k3, vB, Ki maps with a trained network")
    parser.add_argument("--checkpoint", required=True, help="training workdir (or its checkpoints/best folder)")
    parser.add_argument("--pet", help="4D PET *_pet.nii.gz with its JSON sidecar")
    from jaxkin.cli._scan import add_bids_arguments, add_blood_arguments

    add_blood_arguments(parser, required=False)  # optional: adds TAC cosine similarity and MAE to the sidecars
    parser.add_argument("--out", required=True, help="output folder; with --bids, the derivatives dataset")
    parser.add_argument("--batch-size", type=int, default=None, help="slices per batch (default: from the config)")
    group = parser.add_argument_group("adaptation and refinement (need the input function)")
    group.add_argument("--adapt-steps", type=int, default=0, metavar="N",
                       help="fine-tune the network on each scan before predicting it: N Adam steps of the run's "
                       "self-supervised loss on batches of the scan's axial slices (each scan from the trained "
                       "weights; default 0 = none)")
    group.add_argument("--adapt-lr", type=float, default=None, metavar="LR",
                       help="constant learning rate of --adapt-steps (default: the learning rate the run ended "
                       "with)")
    group.add_argument("--refine-lm", type=int, default=0, metavar="K",
                       help="polish every voxel of the network's loss mask (time-averaged activity above the run's "
                       "mask_threshold) with K Levenberg-Marquardt iterations started from the network's "
                       "parameters; no voxel's SSE gets worse (default 0 = none)")
    group.add_argument("--bounds", nargs="+", metavar="PRESET|NAME=LO,HI", default=None,
                       help="bounds of --refine-lm, as in jaxkin fit (e.g. physiological, paper, K1=0,3); "
                       "default: the network's own (lower/upper of its config)")
    from jaxkin.cli._distributed import add_arguments

    add_arguments(parser)
    add_bids_arguments(parser)
    _add_memory(parser)
    from jaxkin.cli._scan import add_skip_existing

    add_skip_existing(parser, "predicted")
    parser.set_defaults(run=run)


def run(args) -> int:
    import dataclasses
    import sys
    import time
    from pathlib import Path

    from jaxkin import distributed
    from jaxkin.cli._distributed import initialize_from_args
    from jaxkin.cli._scan import (bids_jobs, check_modes, load_blood_for, replaced, say, start_derivatives,
                                  writable_folder)
    from jaxkin.io.pet import load_pet
    from jaxkin.io.blood import scan_notes
    from jaxkin.errors import InputError
    from jaxkin.network import load_predictor, write_parameter_maps

    check_modes(args, ("pet", "input_function"))
    if args.skip_existing and not args.bids:
        raise InputError("--skip-existing: only with --bids")
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size: must be positive, got {args.batch_size}")
    _check_adapt_options(args)
    need_blood = bool(args.adapt_steps or args.refine_lm)
    if args.bids:  # the blood of a scan, when the dataset has it, adds the TAC metrics
        record = _options_record(args)
        jobs = [(job.pet, job.blood, job.out_dir, {"Sources": job.sources, "PredictOptions": record}, job.scan.prefix)
                for job in bids_jobs(args, command="predict", need_blood=need_blood)]
    else:
        pet = load_pet(args.pet)
        jobs = [(pet, load_blood_for(args, pet) if args.input_function else None, Path(args.out), None, None)]
    from jaxkin.fitting.mask import check_signal

    for pet, _blood, out, _extra, _name in jobs:  # a bad --out or an empty image stops here, before any prediction
        writable_folder(out)
        check_signal(pet, pet.frames.duration, source=pet.path)
    initialize_from_args(args, "jaxkin predict")  # each process predicts a slab of slices; process 0 writes
    if args.adapt_steps and distributed.process_count() > 1:
        raise InputError("--adapt-steps: runs on one process (it trains on the whole scan); start jaxkin predict "
                         "without --coordinator/--distributed")
    trained = load_predictor(args.checkpoint)
    said, notes = _check_scans(args, trained, jobs)  # every scan checked before any is predicted
    if distributed.is_main_process():
        print(said, file=sys.stderr)
        say("predict", notes)
    started = []  # the derivative dataset's description: written with the first scan's maps, not before

    def start():
        if args.bids and not started:
            start_derivatives(args, command="predict")
            started.append(True)

    if args.batch_size is not None:
        trained = trained.replace(cfg=dataclasses.replace(trained.cfg, predict_batch_size=args.batch_size))
    for pet, blood, out, extra, name in jobs:
        main = distributed.is_main_process()
        if main:
            say("predict", [f"{name}: {n}" if name else n for n in scan_notes(pet, blood)])
        if args.skip_existing and _complete(pet, out, extra, name):
            continue
        before = replaced(out, f"{pet.prefix}_model-*_meas-*_mimap.nii.gz")
        t0 = time.perf_counter()
        predictor = trained  # each scan starts from the trained weights
        if args.adapt_steps:
            predictor, extra = _adapt(args, trained, pet, blood, name, extra)
        result = write_parameter_maps(predictor, pet, out, input_function=blood, progress=name is None, extra=extra,
                                      refine_lm=args.refine_lm, refine_bounds=args.bounds, before_commit=start)
        distributed.sync("jaxkin-predict-written")  # every process goes on when process 0 has written the maps
        if not main:
            continue
        for path in result["paths"].values():
            print(path)
        if "refine" in result:
            r = result["refine"]
            print(f"refined {r['voxels']} voxels with {args.refine_lm} LM iterations: SSE {r['sse_network']:.4g} -> "
                  f"{r['sse_refined']:.4g} (kBq/mL)^2 in all")
        m = result["metrics"]
        if m:
            print(f"TAC fit over {m['voxels']} voxels: cosine similarity {m['cs']:.3f}, MAE {m['mae']:.3f} kBq/mL")
        print(f"{name + ': ' if name else ''}{pet.shape[2]} slices in {time.perf_counter() - t0:.1f} s"
              + (f" (replacing {before} maps of an earlier run)" if before else ""))
    return 0


def _check_scans(args, trained, jobs) -> tuple[str, list[str]]:
    """Every scan checked against the network (frames, grid, input) and the memory budget before any is predicted:
    ``(the line saying the budget, the notes on the grids)``."""
    from jaxkin.cli._scan import memory_budget, within_memory
    from jaxkin.errors import InputError
    from jaxkin.network.grid import grid_plan, predict_memory

    budget, said = memory_budget(args, "predict")
    notes = []
    for pet, blood, *_ in jobs:
        trained.check_schedule(pet.frames, str(pet.path))
        plan = grid_plan(trained.grid, pet)  # a scale too far from the training grid is refused here
        within_memory(predict_memory(pet, plan, bool(args.refine_lm or args.adapt_steps)), budget,
                      f"predicting {pet.path}")
        notes += [f"{pet.prefix}: {plan.note}"] if plan.note else []
        if blood is None and trained.cfg.model.needs_input_function:
            raise InputError(f"{pet.path}: no input function, and this network takes it as an input (it was trained "
                             "with condition_on_input or input_normalization=input); give --input-function")
    return said, notes


def _options_record(args) -> dict:
    """What makes a scan's maps (the sidecars' ``PredictOptions``, compared by ``--skip-existing``)."""
    from pathlib import Path

    return {"Checkpoint": str(Path(args.checkpoint).resolve()), "AdaptSteps": args.adapt_steps,
            "AdaptLearningRate": args.adapt_lr, "RefineLM": args.refine_lm, "Bounds": args.bounds,
            "BloodDataset": args.blood_dataset}


def _complete(pet, out, extra: dict, name: str | None) -> bool:
    from jaxkin.cli._scan import maps_complete
    from jaxkin.kinetics import FDG_MODEL, get_model

    wanted = [(FDG_MODEL, n) for n in get_model(FDG_MODEL).map_names]
    return maps_complete(out, pet.prefix, wanted, {k: extra.get(k) for k in ("Sources", "PredictOptions")}, name)


def _add_memory(parser) -> None:
    from jaxkin.cli._scan import add_memory_argument

    add_memory_argument(parser)


def _adapt(args, trained, pet, blood, name, extra):
    """``(the predictor adapted to the scan, extra sidecar entries saying what was done)``; a line on stderr."""
    import sys

    from jaxkin.errors import InputError
    from jaxkin.network.adapt import adapt
    from jaxkin.network.predict import scan_kinetic_input
    from jaxkin.nn.loss import loss_unit

    try:
        adapted = adapt(trained, pet.read(), scan_kinetic_input(pet, blood), steps=args.adapt_steps,
                        learning_rate=args.adapt_lr, seed=trained.cfg.seed)
    except ValueError as err:  # e.g. a scan without a voxel above the mask threshold
        raise InputError(f"{pet.path}: {err}") from None
    unit = loss_unit(trained.cfg.optim.loss_scale)
    what = "masked MSE" if unit != "1" else f"masked MSE scaled by the {trained.cfg.optim.loss_scale} activity"
    extra = (extra or {}) | {
        "AdaptSteps": adapted.steps, "AdaptLearningRate": adapted.learning_rate, "AdaptSeed": adapted.seed,
        "AdaptBatchSize": adapted.batch_size, "AdaptSlices": adapted.slices,
        "AdaptLossBefore": adapted.loss_before, "AdaptLossAfter": adapted.loss_after,
        "AdaptLossUnits": f"{unit} (the run's {what} over the scan's masked voxels)"}
    unit = "" if unit == "1" else f" {unit}"
    print(f"{name + ': ' if name else ''}adapted {adapted.steps} steps (lr {adapted.learning_rate:g}, "
          f"{adapted.slices} slices): loss {adapted.loss_before:.4g} -> {adapted.loss_after:.4g}{unit}",
          file=sys.stderr)
    return adapted.predictor, extra


def _check_adapt_options(args) -> None:
    """One-line errors for the adaptation and refinement options, before any file is read."""
    from jaxkin.errors import InputError

    for name in ("adapt_steps", "refine_lm"):
        if getattr(args, name) < 0:
            raise InputError(f"--{name.replace('_', '-')}: must be 0 or positive, got {getattr(args, name)}")
    if args.adapt_lr is not None and not args.adapt_steps:
        raise InputError("--adapt-lr: only with --adapt-steps N")
    if args.adapt_lr is not None and not (args.adapt_lr > 0 and args.adapt_lr < float("inf")):
        raise InputError(f"--adapt-lr: must be a positive number, got {args.adapt_lr:g}")
    if args.bounds and not args.refine_lm:
        raise InputError("--bounds: only with --refine-lm K (the network's maps have the bounds of its config)")
    if args.bounds:
        from jaxkin.kinetics import FDG_MODEL, check_bound_names, resolve_bounds

        try:  # the library's message starts "bounds: "
            check_bound_names(args.bounds, [FDG_MODEL])
            resolve_bounds(FDG_MODEL, args.bounds)
        except InputError as error:
            raise InputError(f"--{error}") from None
    if not args.bids and not args.input_function:
        if args.blood_to_plasma is not None or args.blood_decay != "injection":
            given = "--blood-to-plasma" if args.blood_to_plasma is not None else "--blood-decay"
            raise InputError(f"{given}: only with --input-function (or --bids), the blood it describes")
        for name in ("adapt_steps", "refine_lm"):
            if getattr(args, name):
                raise InputError(f"--{name.replace('_', '-')}: needs the scan's input function (--input-function "
                                 "BLOOD_TSV): the loss compares the scan's TACs with the model's")
