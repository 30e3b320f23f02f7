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
    from jaxkin.distributed import add_arguments

    add_arguments(parser)
    add_bids_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    import dataclasses
    import time
    from pathlib import Path

    from jaxkin import distributed
    from jaxkin.cli._scan import bids_jobs, check_modes, load_blood_for, replaced, say, start_derivatives
    from jaxkin.data.bids import load_pet
    from jaxkin.data.blood import scan_notes
    from jaxkin.errors import InputError
    from jaxkin.network import Predictor, load_predictor, write_parameter_maps

    check_modes(args, ("pet", "input_function"))
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size: must be positive, got {args.batch_size}")
    if args.bids:  # the blood of a scan, when the dataset has it, adds the TAC metrics
        jobs = [(job.pet, job.blood, job.out_dir, {"Sources": job.sources}, job.scan.prefix)
                for job in bids_jobs(args, command="predict", need_blood=False)]
    else:
        pet = load_pet(args.pet)
        jobs = [(pet, load_blood_for(args, pet) if args.input_function else None, Path(args.out), None, None)]
    distributed.initialize_from_args(args, "jaxkin predict")  # each process predicts a slab of slices; process 0 writes
    predictor = load_predictor(args.checkpoint)
    for pet, blood, *_ in jobs:  # every scan checked against the network before any is predicted
        predictor.check_frames(pet.frames.n_frames, str(pet.path))
        if blood is None and predictor.cfg.model.needs_input_function:
            raise InputError(f"{pet.path}: no input function, and this network takes it as an input (it was trained "
                             "with condition_on_input or input_normalization=input); give --input-function")
    if args.bids and distributed.is_main_process():
        start_derivatives(args, command="predict")
    if args.batch_size is not None:
        cfg = dataclasses.replace(predictor.cfg, predict_batch_size=args.batch_size)
        predictor = Predictor(predictor.graphdef, predictor.params, cfg, predictor.n_frames)
    for pet, blood, out, extra, name in jobs:
        main = distributed.is_main_process()
        if main:
            say("predict", [f"{name}: {n}" if name else n for n in scan_notes(pet, blood)])
        before = replaced(out, f"{pet.prefix}_model-*_meas-*_mimap.nii.gz")
        t0 = time.perf_counter()
        result = write_parameter_maps(predictor, pet, out, input_function=blood, progress=name is None, extra=extra)
        distributed.sync("jaxkin-predict-written")  # every process goes on when process 0 has written the maps
        if not main:
            continue
        for path in result["paths"].values():
            print(path)
        m = result["metrics"]
        if m:
            print(f"TAC fit over {m['voxels']} voxels: cosine similarity {m['cs']:.3f}, MAE {m['mae']:.3f} kBq/mL")
        print(f"{name + ': ' if name else ''}{pet.shape[2]} slices in {time.perf_counter() - t0:.1f} s"
              + (f" (replacing {before} maps of an earlier run)" if before else ""))
    return 0
