"""``jaxkin idif``: an image-derived input function (mean TAC inside a label) written as a BIDS blood recording."""

from __future__ import annotations

#: The recording label of an image-derived input (``<PET prefix>_recording-IDIF_blood.tsv``).
RECORDING = "IDIF"
#: The parameters of :func:`jaxkin.regions.idif.idif_mask` that name themselves in its errors, and their flags.
FLAGS = {"segment": "--segment", "erode": "--erode", "core": "--core"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "idif",
        help="write the mean TAC inside a label (e.g. the aorta) as a BIDS blood recording",
        description="Average the PET's TACs inside one label of a label map (NaN/Inf voxels excluded) and write "
        "the curve as a BIDS blood TSV (time: the frame mid times in s relative to TimeZero; "
        "whole_blood_radioactivity: the frame means in kBq/mL, decay corrected to the injection) with its JSON sidecar "
        "(units, PlasmaAvail false, WholeBloodAvail true, ValuesAreFrameMeans true with the frames, so that jaxkin fit "
        "reads the values as frame means). With "
        "--bids ROOT: every PET scan with its label map (found in the scan's folders or ROOT/derivatives/*), "
        f"written as a derivatives dataset DIR/sub-<label>/[ses-<label>/]pet/<PET prefix>_recording-{RECORDING}_"
        "blood.tsv, which jaxkin fit --bids ROOT --blood-dataset DIR then uses.",
    )
    parser.add_argument("--pet", help="4D *_pet.nii.gz with its *_pet.json sidecar")
    from jaxkin.cli._scan import add_label_arguments

    add_label_arguments(parser, labels_help="label map (*_dseg.nii.gz + *_dseg.tsv, a TotalSegmentator multilabel "
                        "file) or a folder of masks (TotalSegmentator's segmentations/); on another grid (the CT's) "
                        "it is resampled to the PET's by nearest neighbour")
    parser.add_argument("--label", default="aorta", help="label name, number or group (default aorta)")
    parser.add_argument("--segment", metavar="A:B",
                        help="only the PET's axial slices A to B-1 (e.g. the descending aorta)")
    parser.add_argument("--erode", type=int, default=0, metavar="N",
                        help="erode the label N times (6-connected) to keep away from the wall and spill-out")
    parser.add_argument("--core", type=int, default=None, metavar="N",
                        help="keep the N hottest voxels of each axial slice at the bolus peak (the vessel's core)")
    parser.add_argument("--out", required=True,
                        help=f"output TSV, e.g. sub-01_recording-{RECORDING}_blood.tsv; with --bids, the derivatives "
                        "dataset")
    from jaxkin.cli._scan import add_bids_arguments

    add_bids_arguments(parser, blood=False)
    from jaxkin.cli._scan import add_memory_argument

    add_memory_argument(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    from jaxkin.cli._flags import flag_named
    from jaxkin.cli._scan import bids_jobs, check_modes, open_labels, replaced, say, start_derivatives
    from jaxkin.errors import InputError
    from jaxkin.input_function import InputFunction
    from jaxkin.io.blood import scan_provenance, write_blood
    from jaxkin.io.blood_recordings import FRAME_MEANS_FIELD
    from jaxkin.io.files import check_not_inputs, check_replaceable, output_set, sidecar_of
    from jaxkin.io.layout import bids_uri
    from jaxkin.io.pet import load_pet
    from jaxkin.regions.idif import idif_mask, label_mean_tac
    from jaxkin.cli._scan import memory_budget, within_memory
    from jaxkin.regions.tacs import memory_needed

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
        inputs = [Path(args.pet), Path(args.labels), Path(args.label_table) if args.label_table else None]
        check_not_inputs([out, sidecar_of(out)], inputs, label="--out")
        check_replaceable(out, ("VoxelSelection",), "an image-derived input")
        pet = load_pet(args.pet)
        todo = [(pet, Path(args.labels), out, [pet.path.name, Path(args.labels).name], None)]
    segment = _segment(args.segment)
    opened = []
    budget, said = memory_budget(args, "idif")
    for pet, labels_path, out, sources, name in todo:  # every label map and mask checked before anything is written
        labels = open_labels(args, labels_path, pet)
        within_memory(memory_needed(pet, int(labels.mask(args.label).sum())), budget, f"the IDIF of {pet.path}")
        label = labels.name_of(args.label)
        chosen = labels.mask(args.label)
        if not chosen.any():
            raise InputError(f"{labels_path}: label {label!r} has no voxel inside the field of view of {pet.path.name}")
        try:
            mask, how = idif_mask(pet, chosen, erode=args.erode, segment=segment, core=args.core)
        except InputError as err:
            raise flag_named(err, FLAGS) from None
        opened.append((pet, labels, labels_path, out, sources, name, label, mask, how))
    print(said, file=sys.stderr)
    for pet, labels, labels_path, out, sources, name, label, mask, how in opened:
        say("idif", [f"{name}: {n}" if name else n for n in list(pet.notes) + list(labels.notes)])
        tac, used = label_mean_tac(pet, mask)
        idif = InputFunction(pet.frames.mid, tac)  # the frame means at the mid times, as measured
        frames = pet.frames
        timing = {FRAME_MEANS_FIELD: True,
                  "FrameTimesStart": [round(float(t), 6) for t in (frames.start + pet.injection_start) * 60.0],
                  "FrameDuration": [round(float(d), 6) for d in frames.duration * 60.0]}
        before = replaced(out.parent, out.name)
        provenance = scan_provenance(pet)
        provenance["Assumptions"] = list(dict.fromkeys(provenance.get("Assumptions", []) + list(labels.notes)))
        selection = "; ".join(how) if how else "every voxel of the label"
        units = "kBq/mL" if pet.value_kind == "activity" else pet.units  # an SUV image without its dose: SUV
        start = (lambda: start_derivatives(args, command="idif")) if args.bids and out is opened[0][3] else None
        with output_set(out.parent, before_commit=start) as staged:  # the recording and its sidecar as a set
            write_blood(staged.path(out.name), whole_blood=idif, units=units, injection_start=pet.injection_start,
                        description=f"image-derived input: frame means of the mean of label '{label}' of "
                        f"{labels_path.name} ({selection}), at the frame mid times",
                        extra={**timing, "Sources": sources, "Label": label, "VoxelsUsed": used,
                               "VoxelSelection": selection, **labels.describe(), **provenance})
        print(f"wrote {out}: mean of {used} voxel(s) of '{label}' ({int(mask.sum()) - used} with NaN/Inf left "
              f"out; {selection}), {pet.frames.n_frames} frames, {units}"
              + (" (replacing an earlier run's)" if before else ""))
    return 0


def _segment(text: str | None) -> tuple[int, int] | None:
    """``--segment A:B`` as axial slice numbers ``(A, B)``; None when not given."""
    from jaxkin.errors import InputError

    if not text:
        return None
    a, sep, b = text.partition(":")
    try:
        if sep:
            return int(a), int(b)
    except ValueError:
        pass
    raise InputError(f"--segment {text!r}: expected A:B, axial slice numbers")
