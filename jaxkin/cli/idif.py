"""``jaxkin idif``: an image-derived input function (mean TAC inside a label) written as an input-function TSV."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "idif",
        help="write the mean TAC inside a label (e.g. the aorta) as an input-function TSV",
        description="Average the PET's TACs inside one label of a label map (NaN/Inf voxels excluded) and write "
        "the curve as a TSV (time in s, AIF in the PET's units) with a JSON sidecar of units.",
    )
    parser.add_argument("--pet", required=True, help="4D *_pet.nii.gz with its *_pet.json sidecar")
    parser.add_argument("--labels", required=True, help="label map *_dseg.nii.gz on the PET grid (+ *_dseg.tsv)")
    parser.add_argument("--label", default="aorta", help="label name in the table (default aorta)")
    parser.add_argument("--out", required=True, help="output TSV, e.g. sub-01_recording-IDIF_blood.tsv")
    parser.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from jaxkin.data import bids
    from jaxkin.errors import InputError

    out = Path(args.out)
    if out.suffix != ".tsv":
        raise InputError(f"--out: {out} must end in .tsv")
    pet = bids.load_pet(args.pet)
    labels = bids.load_labels(args.labels, pet=pet)
    mask = labels.mask(args.label)
    tac, used = bids.label_mean_tac(pet, mask)
    idif = bids.input_from_frame_means(pet.frames, tac)
    bids.write_input_function(out, idif, units="kBq/mL", column="whole_blood_radioactivity",
                              injection_start=pet.injection_start,
                              description=f"image-derived input: mean of label '{args.label}' of {Path(args.labels).name}")
    print(f"wrote {out}: mean of {used} voxel(s) of '{args.label}' ({int(mask.sum()) - used} with NaN/Inf left out), "
          f"{pet.frames.n_frames} frames, {pet.units}")
    return 0
