"""``jaxkin predict``: parametric maps (K1, k2, k3, vB, Ki) of a dynamic PET volume with a trained network."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="predict K1, k2, k3, vB, Ki maps with a trained network")
    parser.add_argument("--checkpoint", required=True, help="training workdir (or its checkpoints/best folder)")
    parser.add_argument("--pet", required=True, help="4D PET *_pet.nii.gz with its JSON sidecar")
    from jaxkin.cli._scan import add_blood_arguments

    add_blood_arguments(parser, required=False)  # optional: adds TAC cosine similarity and MAE to the sidecars
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--batch-size", type=int, default=None, help="slices per batch (default: from the config)")
    from jaxkin.distributed import add_arguments

    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    import dataclasses
    import time

    from jaxkin import distributed
    from jaxkin.cli._scan import load_blood_for, say
    from jaxkin.data.bids import load_pet
    from jaxkin.data.blood import scan_notes
    from jaxkin.errors import InputError
    from jaxkin.network import Predictor, load_predictor, write_parameter_maps

    pet = load_pet(args.pet)
    inp = load_blood_for(args, pet) if args.input_function else None
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size: must be positive, got {args.batch_size}")
    distributed.initialize_from_args(args, "jaxkin predict")  # each process predicts a slab of slices; process 0 writes
    predictor = load_predictor(args.checkpoint)
    if args.batch_size is not None:
        cfg = dataclasses.replace(predictor.cfg, predict_batch_size=args.batch_size)
        predictor = Predictor(predictor.graphdef, predictor.params, cfg, predictor.n_frames)
    if distributed.is_main_process():
        say("predict", scan_notes(pet, inp))
    t0 = time.perf_counter()
    result = write_parameter_maps(predictor, pet, args.out, input_function=inp, progress=True)
    distributed.sync("jaxkin-predict-written")  # every process ends when process 0 has written the maps
    if not distributed.is_main_process():
        return 0
    for name, path in result["paths"].items():
        print(path)
    m = result["metrics"]
    if m:
        print(f"TAC fit over {m['voxels']} voxels: cosine similarity {m['cs']:.3f}, MAE {m['mae']:.3f} kBq/mL")
    print(f"{pet.shape[2]} slices in {time.perf_counter() - t0:.1f} s")
    return 0
