"""``jaxkin idif``: an image-derived input function (mean TAC inside a label) written as an input-function TSV."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "idif",
        help="write the mean TAC inside a label (e.g. the aorta) as an input-function TSV",
        description="Average the PET's TACs inside one label of a label map (NaN/Inf voxels excluded) and write "
        "the curve as a BIDS blood TSV (time in s relative to TimeZero, whole_blood_radioactivity in kBq/mL, decay "
        "corrected to the injection) with its JSON sidecar (units, PlasmaAvail false, WholeBloodAvail true).",
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
    from jaxkin.cli._scan import say
    from jaxkin.data.blood import scan_provenance, write_blood

    say("idif", pet.notes)
    write_blood(out, whole_blood=idif, units="kBq/mL", injection_start=pet.injection_start,
                description=f"image-derived input: mean of label '{args.label}' of {Path(args.labels).name}",
                extra={"Sources": [pet.path.name, Path(args.labels).name], "Label": args.label,
                       "VoxelsUsed": used, **scan_provenance(pet)})
    print(f"wrote {out}: mean of {used} voxel(s) of '{args.label}' ({int(mask.sum()) - used} with NaN/Inf left out), "
          f"{pet.frames.n_frames} frames, kBq/mL")
    return 0
