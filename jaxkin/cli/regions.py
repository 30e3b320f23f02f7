"""``jaxkin regions``: regional TACs (and regional statistics of parametric maps) from a PET image and its labels."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "regions",
        help="regional TACs of a PET image from its labels (dseg, TotalSegmentator multilabel or mask folder)",
        description="Average the PET's TACs inside each region of a label map (BIDS dseg + dseg.tsv, a TotalSegmentator "
        "multilabel file, or a folder of per-structure masks; on the CT's grid they are resampled to the PET's by "
        "nearest neighbour) and write OUT (TSV: frame_start, frame_end in s relative to TimeZero, one column per "
        "region in kBq/mL, decay corrected to the injection) with a JSON sidecar (units, voxel counts, volumes, SD per "
        "frame). With --maps DIR, also OUT_STEM_maps.tsv: mean, SD and median of each parametric map per region.",
    )
    parser.add_argument("--pet", required=True, help="4D *_pet.nii.gz with its *_pet.json sidecar")
    from jaxkin.cli._scan import add_label_arguments

    add_label_arguments(parser, labels_help="label map (*_dseg.nii.gz, TotalSegmentator multilabel .nii.gz) or a "
                        "folder of masks (TotalSegmentator's segmentations/)", region=True)
    parser.add_argument("--pv", action="store_true",
                        help="weight each voxel by its partial-volume fraction (from labels on a finer grid) instead "
                        "of nearest-neighbour labels")
    parser.add_argument("--out", required=True, help="output TSV, e.g. sub-01_tacs.tsv")
    parser.add_argument("--maps", metavar="DIR",
                        help="a folder of parametric maps *_mimap.nii.gz on the PET's grid (e.g. jaxkin fit's --out)")
    from jaxkin.cli._scan import add_memory_argument

    add_memory_argument(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    import numpy as np

    from jaxkin.cli._scan import memory_budget, open_labels, say, tsv_output, within_memory
    from jaxkin.io.pet import load_pet
    from jaxkin.io.maps import read_volume
    from jaxkin.io.blood import scan_provenance
    from jaxkin.io.files import check_not_inputs, check_replaceable, nifti_stem, output_set, sidecar_of
    from jaxkin.regions.tacs import map_statistics, memory_needed, regional_tacs
    from jaxkin.io.tables import write_tacs
    from jaxkin.errors import InputError

    if not args.labels:
        raise InputError("--labels is required")
    out = tsv_output(args.out)
    table = out.with_name(out.stem + "_maps.tsv")
    inputs = [Path(args.pet), Path(args.labels), Path(args.label_table) if args.label_table else None]
    check_not_inputs([out, sidecar_of(out), table], inputs, label="--out")
    check_replaceable(out, ("Regions", "PartialVolumeFractions"), "a table of regional TACs")
    pet = load_pet(args.pet)
    labels = open_labels(args, args.labels, pet)
    maps = {}
    if args.maps:
        folder = Path(args.maps)
        if not folder.is_dir():
            raise InputError(f"--maps {folder}: folder not found")
        files = sorted(folder.glob(f"{pet.prefix}_*_mimap.nii.gz")) or sorted(folder.glob("*_mimap.nii.gz"))
        if not files:
            raise InputError(f"--maps {folder}: no *_mimap.nii.gz maps")
        check_not_inputs([out, sidecar_of(out), table], files, label="--out")
        for f in files:
            _same_scan(f, pet)
            name = nifti_stem(f).removesuffix("_mimap")
            maps[name.removeprefix(pet.prefix + "_")] = read_volume(f, pet)
    budget, said = memory_budget(args, "regions")
    within_memory(memory_needed(pet, int(np.count_nonzero(labels.data)), labels.data.itemsize), budget,
                  f"regional TACs of {pet.path}")
    print(said, file=sys.stderr)
    tacs = regional_tacs(pet, labels, args.region, fractions=args.pv)
    rows = map_statistics(maps, labels, args.region, fractions=args.pv) if maps else []
    notes = list(pet.notes) + list(tacs.notes)
    say("regions", notes)
    provenance = scan_provenance(pet)
    provenance["Assumptions"] = list(dict.fromkeys(provenance.get("Assumptions", []) + list(tacs.notes)))
    extra = {"Sources": [pet.path.name, Path(args.labels).name], **labels.describe(),
             "PartialVolumeFractions": bool(args.pv), "SD": "over the region's voxels, per frame"
             + (" (weighted by the partial-volume fractions)" if args.pv else " (sample SD)"), **provenance}
    with output_set(out.parent) as staged:  # the table, its sidecar and the maps' table as a set
        write_tacs(staged.path(out.name), tacs, extra=extra)
        if rows:
            lines = ["region\tmap\tmean\tsd\tmedian\tvoxels"]
            lines += [f"{r['region']}\t{r['map']}\t{r['mean']:.7g}\t{r['sd']:.7g}\t{r['median']:.7g}\t"
                      f"{r['voxels']:.6g}" for r in rows]
            staged.path(table.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(tacs.names)} region(s), {pet.frames.n_frames} frames, "
          f"{'kBq/mL' if tacs.value_kind == 'activity' else tacs.units}"
          + (" (partial-volume weighted)" if args.pv else ""))
    if rows:
        print(f"wrote {table}: {len(maps)} map(s) x {len(tacs.names)} region(s)")
    return 0


def _same_scan(path, pet) -> None:
    """InputError if the map ``path`` names another subject or session (``sub-``, ``ses-``) than the PET image, or
    if its sidecar says jaxkin made it from another PET image (``Sources``)."""
    import json

    from jaxkin.errors import InputError
    from jaxkin.io.files import sidecar_of
    from jaxkin.io.layout import parse_name

    mine, theirs = parse_name(pet.path), parse_name(path)
    if mine is not None and theirs is not None:
        for key in ("sub", "ses"):
            if key in theirs.entities and theirs.entities[key] != mine.entities.get(key):
                raise InputError(f"--maps {path}: a map of {key}-{theirs.entities[key]}, not of the PET image "
                                 f"{pet.path.name}")
    try:
        sidecar = json.loads(sidecar_of(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return
    sources = sidecar.get("Sources") if isinstance(sidecar, dict) and sidecar.get("SoftwareName") == "jaxkin" else None
    if isinstance(sources, list) and sources and not any(str(s).endswith(pet.path.name) for s in sources):
        raise InputError(f"--maps {path}: made from {sources[0]}, not from the PET image {pet.path.name}")
