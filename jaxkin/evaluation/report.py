"""The evaluation report: compare methods' parametric maps with the measured TACs and, on simulated data, the truth.

A *method* is a folder of maps ``<prefix>_model-2tcmirr_meas-<K1|k2|k3|vB|Ki>_mimap.nii.gz`` (written by
``jaxkin fit`` or ``jaxkin predict``; directly in the folder, in a subfolder per subject, ``sub-01/``, or in a
derivative dataset's ``sub-01/[ses-a/]pet/``) or ``<prefix>_model-patlak_meas-Ki_mimap.nii.gz`` (Patlak: Ki only,
no TAC metrics), for the PET scans of the dataset's subjects (``<prefix>`` is the PET file's, e.g. ``sub-01`` or
``sub-01_ses-a``: every session and run of a subject is evaluated, and named by it in the tables, under
``subject``). A method without a Ki map gets the model's Ki (:meth:`jaxkin.kinetics.KineticModel.macro_parameters`).

Voxels evaluated: those of the subject's label map (label > 0) whose TAC and maps are finite; without a label map,
every voxel with finite values and a nonzero K1 (or Ki) in every method. Model TACs come from jaxkin's kinetic core
(:func:`jaxkin.kinetics.tacs_in_chunks`) with the subject's input function. The 4D image is never held: it is read
a frame at a time, the evaluated voxels' TACs in pieces of axial slices (:func:`evaluate_subject` states the memory).

:func:`evaluate` runs it all and writes, through a temporary folder renamed at the end, report.md, the TSV tables
(tac_metrics, slice_metrics, organ_parameters, organ_errors) and ``figures/*.png``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxkin.io.pet import finite_voxel_mask, frame_reads, load_pet
from jaxkin.io.maps import map_path, read_volume
from jaxkin.io.blood import load_blood
from jaxkin.io.dataset import dataset_split, list_subjects, scan_files, truth_root
from jaxkin.io.files import atomic_directory
from jaxkin.io.labels import read_labels
from jaxkin.errors import InputError
from jaxkin.evaluation import metrics
from jaxkin.evaluation.figures import draw_figures, shown_params
from jaxkin.evaluation.metrics import PARAMS
from jaxkin.kinetics import FDG_MODEL, get_model, prepare, tacs_in_chunks

__all__ = ["Method", "parse_methods", "method_files", "evaluate_subject", "summarise", "write_report", "left_out_scans",
           "evaluate"]

MODEL = FDG_MODEL
#: Organs whose sample TACs are drawn first (those present in the label map or its groups); other regions, in label
#: order, fill up to :data:`N_TAC_SAMPLES`.
TAC_ORGANS = ("liver", "myocardium", "kidneys", "lesion", "lungs", "bone")
N_TAC_SAMPLES = 6
#: The most bytes of measured TACs (float32 ``[V, F]``) of masked voxels read in one piece of axial slices (1 GiB:
#: 4.3 M voxels of 62 frames); a piece holds more only when one axial slice does.
PIECE_BYTES = 1 << 30
#: Voxels whose MAE and CS are computed at once (float64 temporaries ``[V, F]``: 32 MiB of 62 frames each).
METRIC_VOXELS = 1 << 16


@dataclasses.dataclass(frozen=True)
class Method:
    """A method's name in the report and its folder of maps."""

    name: str
    folder: Path


def parse_methods(specs: list[str]) -> list[Method]:
    """``["DIR", "NAME=DIR", ...]`` -> methods; InputError for a missing folder or a repeated name."""
    methods = []
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep:
            folder, name = spec, Path(spec.rstrip("/")).name
        path = Path(folder)
        if not path.is_dir():
            raise InputError(f"maps {spec}: folder {path} not found")
        if not name or name == "truth":
            raise InputError(f"maps {spec}: give the method a name other than {name!r} (NAME=DIR)")
        if any(m.name == name for m in methods):
            raise InputError(f"maps {spec}: two methods named {name!r}; use NAME=DIR")
        methods.append(Method(name, path))
    return methods


def method_files(method: Method, prefix: str) -> tuple[str | None, dict]:
    """``(kind, {param: path})``: kind ``"2tcmirr"`` (K1, k2, k3, vB and optionally Ki), ``"patlak"`` (Ki) or None.

    Maps are looked for in the method's folder, then in its subfolder named after the subject (``sub-01/``, as
    ``jaxkin train`` writes ``predictions/<subject>/``), then in a derivative dataset's ``sub-01/[ses-a/]pet/``.
    """
    subject, *rest = prefix.split("_")
    session = next((part for part in rest if part.startswith("ses-")), None)
    folders = [method.folder, method.folder / subject]
    folders += [method.folder / subject / session / "pet"] if session else [method.folder / subject / "pet"]
    for folder in folders:
        full = {p: map_path(folder, prefix, MODEL, p) for p in PARAMS}
        present = {p: f for p, f in full.items() if f.is_file()}
        if all(p in present for p in get_model(MODEL).param_names):
            return MODEL, present
        patlak = map_path(folder, prefix, "patlak", "Ki")
        if patlak.is_file():
            return "patlak", {"Ki": patlak}
    return None, {}


def _select_subjects(dataset: Path, split: str | None, subjects: list[str] | None, methods: list[Method]) -> list:
    """The :class:`~jaxkin.io.dataset.SubjectFiles` of the scans to evaluate: every PET scan of the subjects of
    ``split`` / ``subjects`` (default: all) with maps in every method's folder, and the scans left out for lacking
    them (``"sub-02 (no maps in lm)"``); InputError if a named subject's scan lacks some."""
    candidates = list_subjects(dataset)
    if not candidates:
        raise InputError(f"{dataset}: no sub-* folders")
    if split is not None:
        candidates = dataset_split(dataset)[split]
    if subjects:
        wanted = [s if s.startswith("sub-") else f"sub-{s}" for s in subjects]
        missing = [s for s in wanted if s not in candidates]
        if missing:
            raise InputError(f"subjects: {', '.join(missing)} not in {dataset}"
                             + (f" ({split} split)" if split else ""))
        candidates = wanted
    chosen, left_out = [], []
    for sid in candidates:
        for files in scan_files(dataset, sid):
            kinds = [method_files(m, files.scan_id)[0] for m in methods]
            lacking = [m.name for m, k in zip(methods, kinds) if not k]
            if all(kinds):
                chosen.append(files)
            elif not subjects:
                left_out.append(f"{files.scan_id} (no maps in {', '.join(lacking)})")
            else:
                raise InputError(f"{files.scan_id}: no maps {files.scan_id}_model-{MODEL}_meas-<param>_mimap.nii.gz "
                                 f"in the maps of {', '.join(lacking)}")
    if not chosen:
        raise InputError(
            f"no subject of {dataset} has maps in every method's folder (expected "
            f"<prefix>_model-{MODEL}_meas-K1_mimap.nii.gz ... or _model-patlak_meas-Ki_mimap.nii.gz, e.g. "
            f"{', '.join(str(m.folder) for m in methods)})")
    return chosen, left_out


def left_out_scans(dataset, preds: list[str], *, split=None, subjects=None) -> list[str]:
    """The scans of ``dataset`` that :func:`evaluate` leaves out because some method of ``preds`` has no maps of
    them, each as ``"sub-02 (no maps in lm)"`` (said in the report too)."""
    return _select_subjects(Path(dataset), split, subjects, parse_methods(preds))[1]


def _with_macros(maps: dict) -> dict:
    """A 2TC method's maps ``{param: [X, Y, Z]}`` plus the model's macro-parameters (Ki) it lacks."""
    model = get_model(MODEL)
    if all(name in maps for name in model.macros):
        return maps
    params = np.stack([maps[p] for p in model.param_names], axis=-1)  # [X, Y, Z, P]
    macros = model.macro_parameters(params)
    return maps | {name: np.asarray(v, np.float32) for name, v in macros.items() if name not in maps}


def _sample_voxels(lab, mask) -> dict:
    """``{organ: (x, y, z)}``: the masked voxel nearest each organ's centroid (organs of :data:`TAC_ORGANS` present
    in the labels ``lab``, then other regions, up to :data:`N_TAC_SAMPLES`; none for an organ without masked voxels)."""
    samples = {}
    present = [r for r in lab.region_names() if r not in ("body", "background")]
    organs = [o for o in TAC_ORGANS if o in present]
    organs += [r for r in present if r not in organs][: max(N_TAC_SAMPLES - len(organs), 0)]
    for organ in organs:
        sel = np.argwhere(lab.mask(organ) & mask)
        if len(sel):
            samples[organ] = tuple(int(i) for i in sel[np.argmin(((sel - sel.mean(axis=0)) ** 2).sum(axis=1))])
    return samples


def _axial_pieces(mask, limit: int) -> list[tuple[int, int]]:
    """Ranges ``[a, b)`` of the axial slices of ``mask`` (bool ``[X, Y, Z]``) with masked voxels, in order, each
    with at most ``limit`` of them (or one slice, when a slice alone has more)."""
    counts = mask.sum(axis=(0, 1))
    pieces, start, voxels = [], 0, 0
    for z, count in enumerate(counts.tolist()):
        if z > start and voxels + count > limit:
            pieces.append((start, z))
            start, voxels = z, 0
        voxels += count
    pieces.append((start, mask.shape[2]))
    return [(a, b) for a, b in pieces if counts[a:b].any()]


def _masked_tacs(pet, mask, limit: int):
    """Iterate ``(x, y, z, tacs float32 [V, F])`` (kBq/ml) over the pieces (:func:`_axial_pieces`) of the voxels of
    ``mask``: each piece's voxels in C order, their TACs read a frame at a time (only those voxels are held)."""
    nx, ny = mask.shape[:2]
    for a, b in _axial_pieces(mask, limit):
        x, y, z = np.nonzero(mask[:, :, a:b])
        tacs = np.empty((x.size, int(pet.shape[3])), np.float32)
        for f, values in frame_reads(pet, slice(a, b), take=x + nx * (y + ny * z)):  # Fortran order in the frame
            tacs[:, f] = values
        yield x, y, z + a, tacs


def _tac_metrics(pet, kin, maps: dict, mask, sample_voxels: dict) -> tuple[dict, dict]:
    """``(tac, samples)``: :func:`~jaxkin.evaluation.metrics.tac_summary` of each 2TC method of ``maps``
    (``{method: {param: [X, Y, Z]}}``) over the voxels of ``mask``, in the order of ``tac[mask]``, and the measured
    and model TACs ``[F]`` at the voxels ``sample_voxels`` (``{organ: {"measured": ..., method: ...}}``).

    The image is never held: the masked voxels' TACs are read in pieces of axial slices of at most
    :data:`PIECE_BYTES` (float32), and each method's model TACs of a piece (as many bytes) are computed at once, then
    compared :data:`METRIC_VOXELS` voxels at a time."""
    names = get_model(MODEL).param_names
    flat = np.flatnonzero(mask)  # C order: the order of tac[mask]
    mae = {m: np.empty(flat.size) for m in maps}
    cs = {m: np.empty(flat.size) for m in maps}
    samples = {organ: {} for organ in sample_voxels}
    wanted = {organ: np.ravel_multi_index(v, mask.shape) for organ, v in sample_voxels.items()}
    for x, y, z, tacs in _masked_tacs(pet, mask, max(1, PIECE_BYTES // (4 * int(pet.shape[3])))):
        index = np.ravel_multi_index((x, y, z), mask.shape)  # increasing: C order
        rows = np.searchsorted(flat, index)
        here = {o: int(np.searchsorted(index, i)) for o, i in wanted.items() if index[0] <= i <= index[-1]}
        here = {o: k for o, k in here.items() if index[k] == wanted[o]}
        for organ, k in here.items():
            samples[organ]["measured"] = tacs[k].copy()
        for name, per in maps.items():
            model = tacs_in_chunks(np.stack([per[p][x, y, z] for p in names], axis=-1), kin, MODEL)
            for i in range(0, len(rows), METRIC_VOXELS):
                part = slice(i, i + METRIC_VOXELS)
                mae[name][rows[part]] = metrics.voxel_mae(tacs[part], model[part])
                cs[name][rows[part]] = metrics.voxel_cosine(tacs[part], model[part])
            for organ, k in here.items():
                samples[organ][name] = model[k].copy()
            del model
    z = flat % mask.shape[2]
    return {m: metrics.tac_summary(mae[m], cs[m], z, mask.shape[2]) for m in maps}, samples


def _evaluated(pet, maps: dict, labels) -> np.ndarray:
    """``bool [X, Y, Z]``: the voxels evaluated (see the module docstring): finite in every frame of ``pet`` (read a
    frame at a time) and in every map of ``maps`` (``{method: {param: [X, Y, Z]}}``), and labelled (``labels > 0``)
    or, without ``labels``, with a nonzero K1 (or Ki) in every method."""
    mask = finite_voxel_mask(pet)
    for per in maps.values():
        for v in per.values():
            mask &= np.isfinite(v)
    if labels is not None:
        mask &= labels > 0
    else:
        for per in maps.values():
            mask &= (per["K1"] if "K1" in per else per["Ki"]) != 0
    if not mask.any():
        raise InputError(f"{pet.path}: no voxel to evaluate (empty label map or every map NaN/0)")
    return mask


def evaluate_subject(files, methods: list[Method], *, groups=None, default_groups: bool = True) -> dict:
    """All metrics of one PET scan (see the module docstring) and the arrays the figures need.

    ``files``: the scan's :class:`~jaxkin.io.dataset.SubjectFiles`; ``groups`` (``{name: members}`` or
    ``["name=a,b"]``) and ``default_groups`` add regions merging labels (:func:`jaxkin.io.labels.read_labels`; any
    label names work, e.g. TotalSegmentator's, resampled to the PET's grid if needed). Returns a dict with ``subject`` (the scan's
    id: the subject id when it has one scan), ``prefix``, ``n_frames``; ``tac``
    ``{method: metrics.tac_summary(...)}`` (2TC methods only; the dict of
    :func:`~jaxkin.evaluation.metrics.tac_metrics`); ``organ_values`` ``{method: {organ: {param: 1D}}}`` and
    ``truth_values`` (empty without a label map / truth); ``maps``
    ``{method: {param: [X, Y, Z]}}``, ``truth`` ``{param: [X, Y, Z]}``, ``labels int [X, Y, Z]`` and ``names``
    (None without a label map), ``mask bool [X, Y, Z]``; ``samples`` (sample TACs), ``times`` (frame mid times
    ``[F]``, min), ``voxel_mm`` and ``z_mm [Z]`` (each axial slice's scanner z, mm).

    Memory: the 3D volumes (the maps of every method and the truth, float32; the labels; the masks) and, never the
    4D image, the TACs of one piece of axial slices (measured and model, float32 ``[V, F]`` of at most
    :data:`PIECE_BYTES` each) plus, per evaluated voxel, 16 bytes (its position and slice) and 16 per 2TC method (its
    MAE and CS). The image is read a frame at a time: once for the voxels finite in every frame, then once per piece
    (a ``.nii.gz`` is decompressed each time; at 62 frames a piece holds 4.3 M voxels).
    """
    pet = load_pet(files.pet)
    if not files.blood:
        raise InputError(f"{files.pet.parent}: no input function *_blood.tsv for {files.scan_id}")
    blood = load_blood(files.blood, pet=pet)  # every recording of the scan, combined
    shape = tuple(pet.shape[:3])
    labels = names = lab = None
    if files.labels is not None:
        lab = read_labels(files.labels, pet=pet, groups=groups, default_groups=default_groups)
        labels, names = lab.data, lab.names
    maps, kinds = {}, {}
    for m in methods:
        kind, paths = method_files(m, pet.prefix)
        kinds[m.name] = kind
        maps[m.name] = {p: read_volume(f, pet) for p, f in paths.items()}
        if kind == MODEL:
            maps[m.name] = _with_macros(maps[m.name])
    truth = {p: read_volume(f, pet) for p, f in files.truth.items() if p in PARAMS}
    mask = _evaluated(pet, maps, labels)
    kin = prepare(blood.input, pet.frames, blood.whole_blood)
    fitted = {name: per for name, per in maps.items() if kinds[name] == MODEL}
    tac_results, samples = {}, {}
    if fitted:
        tac_results, samples = _tac_metrics(pet, kin, fitted, mask, _sample_voxels(lab, mask) if names else {})
    present = set(np.unique(labels).tolist()) if names else set()
    names = {i: n for i, n in names.items() if i in present} if names else names  # labels with voxels only
    group_ids = {g: lab.ids(g) for g in lab.groups} if lab is not None else {}
    group_ids = {g: ids for g, ids in group_ids.items() if present & set(ids)}
    organ_vals = ({name: metrics.organ_values(per, labels, names, mask, group_ids) for name, per in maps.items()}
                  if names else {})
    truth_vals = metrics.organ_values(truth, labels, names, mask, group_ids) if names and truth else {}
    return {"subject": files.scan_id, "prefix": pet.prefix, "n_frames": pet.frames.n_frames, "tac": tac_results,
            "organ_values": organ_vals, "truth_values": truth_vals, "maps": maps, "truth": truth, "labels": labels,
            "names": names, "mask": mask, "samples": samples, "times": pet.frames.mid, "voxel_mm": pet.voxel_size,
            "z_mm": (pet.affine @ np.c_[np.zeros((shape[2], 2)), np.arange(shape[2]), np.ones(shape[2])].T)[2]}


def _pool(per_subject: list[dict]) -> dict:
    """Concatenate ``{organ: {param: values}}`` over subjects."""
    out: dict = {}
    for d in per_subject:
        for organ, per in d.items():
            for p, v in per.items():
                out.setdefault(organ, {}).setdefault(p, []).append(v)
    return {o: {p: np.concatenate(v) for p, v in per.items()} for o, per in out.items()}


def summarise(results: list[dict], methods: list[Method]) -> dict:
    """Tables over the evaluated subjects (:func:`evaluate_subject` results): ``tac`` (rows per method and subject),
    ``organ_stats`` ``{method or "truth": {organ: {param: (mean, SD, n)}}}`` and ``errors`` (rows per method,
    organ and parameter: :func:`~jaxkin.evaluation.metrics.error_statistics` against the truth)."""
    tac_rows = []
    for r in results:
        for name, t in r["tac"].items():
            tac_rows.append({"method": name, "subject": r["subject"], "voxels": t["voxels"], "cs": t["cs"],
                             "cs_sd": t["cs_sd"], "mae": t["mae"], "mae_sd": t["mae_sd"]})
    organ_stats, error_rows = {}, []
    truth_pooled = _pool([r["truth_values"] for r in results]) if all(r["truth_values"] for r in results) else {}
    if truth_pooled:
        organ_stats["truth"] = metrics.organ_statistics(truth_pooled)
    for m in methods:
        pooled = _pool([r["organ_values"][m.name] for r in results if r["organ_values"]])
        if not pooled:
            continue
        organ_stats[m.name] = metrics.organ_statistics(pooled)
        for organ, per in pooled.items():
            for p, values in per.items():
                if truth_pooled and p in truth_pooled.get(organ, {}):
                    s = metrics.error_statistics(values, truth_pooled[organ][p])
                    error_rows.append({"method": m.name, "organ": organ, "param": p} | s)
    return {"tac": tac_rows, "organ_stats": organ_stats, "errors": error_rows}


def _fmt(x, digits=4) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def _tsv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    lines = ["\t".join(keys)] + ["\t".join(_fmt(r[k], 6) if isinstance(r[k], float) else str(r[k]) for k in keys)
                                 for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _tac_lines(results: list[dict], rows: list[dict]) -> list[str]:
    lines = ["## TAC fit (per subject and pooled over all voxels of all subjects)", "",
             "| method | subject | voxels | CS | MAE (kBq/mL) |", "|---|---|---:|---|---|"]
    for row in rows:
        lines.append(f"| {row['method']} | {row['subject']} | {row['voxels']} | {row['cs']:.4f} ± {row['cs_sd']:.4f}"
                     f" | {row['mae']:.4g} ± {row['mae_sd']:.4g} |")
    for name in dict.fromkeys(row["method"] for row in rows):
        cs_all = np.concatenate([r["tac"][name]["voxel_cs"] for r in results if name in r["tac"]])
        mae_all = np.concatenate([r["tac"][name]["voxel_mae"] for r in results if name in r["tac"]])
        cs_m, cs_s = metrics.mean_sd(cs_all)
        mae_m, mae_s = metrics.mean_sd(mae_all)
        lines.append(f"| {name} | **all** | {cs_all.size} | {cs_m:.4f} ± {cs_s:.4f} | {mae_m:.4g} ± {mae_s:.4g} |")
    return lines + [""]


def _organ_lines(stats: dict) -> list[str]:
    organs, params = list(next(iter(stats.values()))), shown_params(stats)
    lines = ["## Organ parameters (mean ± SD over the organ's voxels, all subjects pooled)", "",
             "| organ | parameter | " + " | ".join(stats) + " |", "|---|---|" + "---|" * len(stats)]
    for o in organs:
        for p in params:
            cells = []
            for st in stats.values():
                v = st.get(o, {}).get(p)
                cells.append("—" if v is None else f"{_fmt(v[0])} ± {_fmt(v[1], 3)}")
            lines.append(f"| {o} | {p} | " + " | ".join(cells) + " |")
    return lines + [""]


def _error_lines(errors: list[dict]) -> list[str]:
    lines = ["## Against ground truth (estimate − truth over each organ's voxels)", "",
             ("Bias = mean error, SD = SD of the error, RMSE = sqrt(bias² + SD²), r = Pearson correlation of "
              "estimate and truth over the organ's voxels (n/a where the truth is constant)."), "",
             "| method | organ | parameter | bias | SD | RMSE | r | voxels |", "|---|---|---|---|---|---|---|---:|"]
    for e in errors:
        lines.append(f"| {e['method']} | {e['organ']} | {e['param']} | {_fmt(e['bias'])} | {_fmt(e['sd'])} | "
                     f"{_fmt(e['rmse'])} | {_fmt(e['r'], 3)} | {e['n']} |")
    return lines + [""]


def write_report(out: Path, dataset: Path, methods: list[Method], results: list[dict], summary: dict,
                 figures: bool, command: str, left_out: list[str] = ()) -> None:
    """Write report.md, tac_metrics.tsv, slice_metrics.tsv, organ_parameters.tsv, organ_errors.tsv and (with
    ``figures``) ``figures/*.png`` into the existing folder ``out``; ``command`` is quoted in the report, and the
    scans ``left_out`` (without maps of every method) are named."""
    (out / "figures").mkdir(parents=True, exist_ok=True)
    _tsv(out / "tac_metrics.tsv", summary["tac"])
    _tsv(out / "slice_metrics.tsv", [
        {"method": n, "subject": r["subject"], "slice": int(z), "z_mm": float(r["z_mm"][z]),
         "voxels": int(t["slice_voxels"][z]), "cs": float(t["slice_cs"][z]), "mae": float(t["slice_mae"][z])}
        for r in results for n, t in r["tac"].items() for z in range(len(t["slice_cs"]))])
    organ_rows = [{"method": meth, "organ": o, "param": p, "mean": v[0], "sd": v[1], "voxels": v[2]}
                  for meth, st in summary["organ_stats"].items() for o, per in st.items() for p, v in per.items()]
    _tsv(out / "organ_parameters.tsv", organ_rows)
    _tsv(out / "organ_errors.tsv", summary["errors"])

    frames = " or ".join(str(n) for n in sorted({r["n_frames"] for r in results}))
    lines = ["# jaxkin evaluation report", "",
             f"Command: `{command}`", "",
             f"Dataset: `{dataset}`; subjects: {', '.join(r['subject'] for r in results)}.", "",
             "Methods: " + "; ".join(f"**{m.name}** (`{m.folder}`)" for m in methods) + ".", "",
             *([f"Left out (no maps of every method): {'; '.join(left_out)}.", ""] if left_out else []),
             ("Voxels evaluated: inside the label map (label > 0), finite TAC and maps. MAE = mean over frames of "
              f"|measured − model TAC| (kBq/mL); CS = cosine similarity of the measured and model TACs ({frames} "
              "frames); mean ± SD over voxels (the paper's definitions). Model TACs: jaxkin's exact irreversible 2TC "
              "model with the subject's input function."), ""]
    if summary["tac"]:
        lines += _tac_lines(results, summary["tac"])
    if summary["organ_stats"]:
        lines += _organ_lines(summary["organ_stats"])
    if summary["errors"]:
        lines += _error_lines(summary["errors"])
    if figures:
        lines += ["## Figures", ""] + [f"![{cap}](figures/{name})\n\n*{cap}*\n" for name, cap in
                                       draw_figures(out / "figures", results, summary)]
    lines += ["Tables: `tac_metrics.tsv`, `slice_metrics.tsv`, `organ_parameters.tsv`, `organ_errors.tsv`.", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")


def evaluate(dataset, preds: list[str], out, *, split=None, subjects=None, figures: bool = True,
             command: str | None = None, groups=None, default_groups: bool = True) -> Path:
    """Evaluate the methods ``preds`` (``["DIR" or "NAME=DIR", ...]``) on the subjects of ``dataset`` (those of
    ``split`` / ``subjects``, by default all with maps in every folder; the others are named in the report, see
    :func:`left_out_scans`) and write the report folder ``out``
    atomically (it must not exist, or be empty); returns ``out``. ``command`` (default: this Python call) is quoted in
    report.md. ``groups`` / ``default_groups``: regions
    merging labels (see :func:`evaluate_subject`)."""
    command = command or (f"jaxkin.evaluation.evaluate({str(dataset)!r}, {list(preds)!r}, {str(out)!r}, split={split!r}, "
                          f"subjects={subjects!r}, figures={figures}, groups={groups!r}, "
                          f"default_groups={default_groups})")
    dataset, out = Path(dataset), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists and is not an empty folder")
    methods = parse_methods(preds)
    truth = truth_root(dataset).resolve()
    for m in methods:  # the truth scored against itself would be a perfect, meaningless report
        if m.folder.resolve().is_relative_to(truth):
            raise InputError(f"maps {m.name}: {m.folder} is the ground truth of {dataset}; give a method's maps")
    chosen, left_out = _select_subjects(dataset, split, subjects, methods)
    results = [evaluate_subject(files, methods, groups=groups, default_groups=default_groups) for files in chosen]
    summary = summarise(results, methods)
    with atomic_directory(out, label=str(out), what="the report") as tmp:
        write_report(tmp, dataset, methods, results, summary, figures, command, left_out)
    return out
