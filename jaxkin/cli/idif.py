"""``jaxkin idif``: an image-derived input function (mean TAC inside a label) written as a BIDS blood recording."""

from __future__ import annotations

#: The recording label of an image-derived input (``<PET prefix>_recording-IDIF_blood.tsv``).
RECORDING = "IDIF"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "idif",
        help="write the mean TAC inside a label (e.g. the aorta) as a BIDS blood recording",
        description="Average the PET's TACs inside one label of a label map (NaN/Inf voxels excluded) and write "
        "the curve as a BIDS blood TSV (time in s relative to TimeZero, whole_blood_radioactivity in kBq/mL, decay "
        "corrected to the injection) with its JSON sidecar (units, PlasmaAvail false, WholeBloodAvail true). With "
        "--bids ROOT: every PET scan with its label map (found in the scan's folders or ROOT/derivatives/*), "
        f"written as a derivatives dataset DIR/sub-<label>/[ses-<label>/]pet/<PET prefix>_recording-{RECORDING}_"
        "blood.tsv, which jaxkin fit --bids ROOT --blood-dataset DIR then uses.",
    )
    parser.add_argument("--pet", help="4D *_pet.nii.gz with its *_pet.json sidecar")
    parser.add_argument("--labels", help="label map *_dseg.nii.gz on the PET grid (+ *_dseg.tsv)")
    parser.add_argument("--label", default="aorta", help="label name in the table (default aorta)")
    parser.add_argument("--out", required=True,
                        help=f"output TSV, e.g. sub-01_recording-{RECORDING}_blood.tsv; with --bids, the derivatives "
                        "dataset")
    from jaxkin.cli._scan import add_bids_arguments

    add_bids_arguments(parser, blood=False)
    parser.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from jaxkin.cli._scan import bids_jobs, check_modes, replaced, say
    from jaxkin.data import bids
    from jaxkin.data.blood import scan_provenance, write_blood
    from jaxkin.data.layout import bids_uri
    from jaxkin.errors import InputError

    check_modes(args, ("pet", "labels"))
    if args.bids:
        jobs = bids_jobs(args, command="idif", need_blood=False)
        missing = [job.scan.pet for job in jobs if job.scan.labels is None]
        if missing:
            raise InputError(f"{missing[0]}: no label map (*_dseg.nii[.gz]) for this scan in its folders or in "
                             f"{Path(args.bids) / 'derivatives'}/*/")
        todo = [(job.pet, job.scan.labels, job.out_dir / f"{job.scan.prefix}_recording-{RECORDING}_blood.tsv",
                 job.sources + [bids_uri(job.scan.labels, args.bids)], job.scan.prefix) for job in jobs]
    else:
        if not args.labels:
            raise InputError("--labels is required with --pet")
        out = Path(args.out)
        if out.suffix != ".tsv":
            raise InputError(f"--out: {out} must end in .tsv")
        pet = bids.load_pet(args.pet)
        todo = [(pet, Path(args.labels), out, [pet.path.name, Path(args.labels).name], None)]
    opened = [(pet, bids.load_labels(labels, pet=pet), labels, out, sources, name)
              for pet, labels, out, sources, name in todo]  # every label map checked before anything is written
    for pet, labels, labels_path, out, sources, name in opened:
        say("idif", [f"{name}: {n}" if name else n for n in pet.notes])
        mask = labels.mask(args.label)
        tac, used = bids.label_mean_tac(pet, mask)
        idif = bids.input_from_frame_means(pet.frames, tac)
        before = replaced(out.parent, out.name)
        write_blood(out, whole_blood=idif, units="kBq/mL", injection_start=pet.injection_start,
                    description=f"image-derived input: mean of label '{args.label}' of {labels_path.name}",
                    extra={"Sources": sources, "Label": args.label, "VoxelsUsed": used, **scan_provenance(pet)})
        print(f"wrote {out}: mean of {used} voxel(s) of '{args.label}' ({int(mask.sum()) - used} with NaN/Inf left "
              f"out), {pet.frames.n_frames} frames, kBq/mL" + (" (replacing an earlier run's)" if before else ""))
    return 0
