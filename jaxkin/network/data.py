"""Training data: axial slices of a BIDS dataset, their masks, data shards, and the stacked kinetic inputs.

Arrays are NumPy on the host: slices ``tac [N, H, W, F]`` (kBq/ml), ``mask [N, H, W]`` (float32, 1 inside), with
each slice's scan (its index in the kinetic stack: one entry per PET scan, so a subject with two sessions has two;
the key is called ``subject``) and its ``z`` in the volume; for a run guided by the voxel fit (``lm_guidance``) also
``target [N, H, W, 4]``: the voxel-wise LM fit's K1, k2, k3, vB of every masked voxel (:func:`lm_targets`).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

from jaxkin.errors import InputError
from jaxkin.network.config import DataConfig

__all__ = ["SliceData", "ShardedSlices", "SubjectScan", "prepare_dataset", "open_scans", "open_subject",
           "select_slices", "crop_slices", "voxel_mask", "load_slices", "load_sharded", "stack_kinetic_inputs",
           "scan_kinetic_input", "lm_targets"]


@dataclasses.dataclass
class SliceData:
    """Axial slices of several scans, cropped: ``tac [N, H, W, F]`` (kBq/ml), ``mask [N, H, W]`` (float32),
    ``subject [N]`` (the slice's scan: index into the stacked kinetic inputs), ``z [N]`` (slice index in its
    volume), ``target [N, H, W, 4]`` (float32) or None: the voxel fit's parameters that guide training
    (:func:`lm_targets`; 0 outside the mask)."""

    tac: np.ndarray
    mask: np.ndarray
    subject: np.ndarray
    z: np.ndarray
    target: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.tac.shape[0])

    def batch(self, index: np.ndarray) -> dict:
        """Samples ``index`` (``-1`` = padding: a copy of sample 0 with an empty mask) as a batch dict."""
        real = index >= 0
        i = np.where(real, index, 0)
        if not len(self):  # nothing here (a process whose shards hold no slices of this split): all padding
            out = {"tac": np.zeros((len(index), *self.tac.shape[1:]), np.float32),
                   "mask": np.zeros((len(index), *self.mask.shape[1:]), np.float32),
                   "subject": np.zeros(len(index), np.int32)}
            if self.target is not None:
                out["target"] = np.zeros((len(index), *self.target.shape[1:]), np.float32)
            return out
        out = {
            "tac": self.tac[i],
            "mask": self.mask[i] * real[:, None, None].astype(np.float32),
            "subject": self.subject[i].astype(np.int32),
        }
        if self.target is not None:
            out["target"] = self.target[i]
        return out


def select_slices(labels, n_z: int, count: int) -> np.ndarray:
    """``count`` axial slice indices evenly spaced from the lungs to the bladder (included).

    The range comes from the label map (labels named ``lungs`` and ``bladder``; otherwise all labelled slices;
    without labels, the whole volume). ``count <= 0`` or a range with fewer slices selects every slice of it.
    """
    lo, hi = 0, n_z - 1
    if labels is not None:
        names = set(labels.names.values())
        wanted = [n for n in ("lungs", "bladder") if n in names]
        inside = labels.mask(*wanted) if len(wanted) == 2 else labels.data > 0
        zs = np.nonzero(inside.any(axis=(0, 1)))[0]
        if zs.size:
            lo, hi = int(zs.min()), int(zs.max())
    if count <= 0 or count >= hi - lo + 1:
        return np.arange(lo, hi + 1)
    return np.unique(np.round(np.linspace(lo, hi, count)).astype(int))


def crop_slices(x: np.ndarray, size: int) -> np.ndarray:
    """Centre crop (or zero pad) axes 0 and 1 of ``x [X, Y, ...]`` to ``size``."""
    for axis in (0, 1):
        n = x.shape[axis]
        if n >= size:
            start = (n - size) // 2
            x = np.take(x, np.arange(start, start + size), axis=axis)
        else:
            pad = [(0, 0)] * x.ndim
            pad[axis] = ((size - n) // 2, size - n - (size - n) // 2)
            x = np.pad(x, pad)
    return x


def voxel_mask(tac, duration, threshold: float):
    """Voxels whose time-averaged activity (AUC / scan length, kBq/ml) exceeds ``threshold``: float32 ``[...]`` of
    ``tac [..., F]`` and frame durations ``duration [F]``. Host arrays are averaged in float64 NumPy; a JAX array
    (a traced one too: prediction computes the mask on the device) with ``jax.numpy`` in its own dtype."""
    jax = sys.modules.get("jax")  # not imported: tac cannot be a JAX array
    if jax is not None and isinstance(tac, jax.Array):
        jnp = jax.numpy
        mean = jnp.nan_to_num(tac) @ (duration / jnp.sum(duration)).astype(tac.dtype)
        return (mean > threshold).astype(jnp.float32)
    mean = np.tensordot(np.nan_to_num(tac), duration / duration.sum(), axes=([-1], [0]))
    return (mean > threshold).astype(np.float32)


@dataclasses.dataclass
class SubjectScan:
    """One opened PET scan of a subject: the PET image, its blood data (a :class:`jaxkin.io.blood.Blood`: the input
    and the whole blood of the vB term), its label map (or None), and its files
    (a :class:`jaxkin.io.dataset.SubjectFiles`; ``files.scan_id`` names the scan, e.g. ``sub-01_ses-a``)."""

    subject: str
    pet: object
    blood: object
    labels: object
    files: object = None

    @property
    def scan_id(self) -> str:
        """The PET file's prefix (``sub-01`` for a subject with one scan): the scan's name in reports."""
        return self.files.scan_id if self.files is not None else self.subject


def prepare_dataset(data: DataConfig, workdir: Path, data_dir) -> Path:
    """The dataset folder: ``data_dir`` (checked), or ``WORKDIR/data``, where the phantom of ``data`` is simulated
    the first time."""
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not (data_dir / "participants.tsv").is_file():
            raise InputError(f"{data_dir}: not a dataset (no participants.tsv with the train/val/test split)")
        return data_dir
    data_dir = Path(workdir) / "data"
    if not (data_dir / "participants.tsv").is_file():
        from jaxkin.phantom.writer import dataset_estimate, simulate_dataset

        size, seconds = dataset_estimate(data.phantom_preset, data.phantom_subjects or None, data.phantom_frames)
        print(f"simulating the {data.phantom_preset!r} phantom dataset into {data_dir}: about {size / 1e9:.2g} GB "
              f"and {max(seconds / 60, 0.1):.2g} min on a 2-core CPU (an interrupt removes what was written) ...",
              file=sys.stderr)
        simulate_dataset(data_dir, subjects=data.phantom_subjects or None, seed=data.phantom_seed,
                         preset=data.phantom_preset, noise_scale=data.phantom_noise_scale, frames=data.phantom_frames)
    return data_dir


def _open(files) -> SubjectScan:
    from jaxkin.io.labels import read_labels
    from jaxkin.io.pet import load_pet
    from jaxkin.io.blood import load_blood

    pet = load_pet(files.pet)
    if not files.blood:
        raise InputError(f"{files.pet.parent}: no input function (*_blood.tsv) for {files.scan_id}")
    inp = load_blood(files.blood, pet=pet)  # every recording of the scan, combined
    labels = read_labels(files.labels, pet=pet, default_groups=False, resample=False) if files.labels is not None else None
    return SubjectScan(files.subject, pet, inp, labels, files)


def open_scans(dataset_dir, subject: str) -> list[SubjectScan]:
    """Open every PET scan of ``subject`` in a BIDS dataset (sessions, runs: see
    :func:`jaxkin.io.dataset.scan_files`): headers, input function, labels; the images are read later."""
    from jaxkin.io.dataset import scan_files

    return [_open(files) for files in scan_files(dataset_dir, subject)]


def open_subject(dataset_dir, subject: str) -> SubjectScan:
    """Open the one PET scan of ``subject`` (InputError if it has several: use :func:`open_scans`)."""
    from jaxkin.io.dataset import subject_files

    return _open(subject_files(dataset_dir, subject))


def _selected_slices(pet, z) -> np.ndarray:
    """The axial slices ``z`` (indices) of ``pet`` ``[X, Y, len(z), F]`` (kBq/ml, float32), read a frame at a time
    (only the slices from the first to the last of ``z`` are held)."""
    from jaxkin.io.pet import frame_reads

    z = np.asarray(z, int)
    out = np.empty((*pet.shape[:2], z.size, pet.shape[3]), np.float32)
    if z.size:
        lo = int(z.min())
        for f, frame in frame_reads(pet, slice(lo, int(z.max()) + 1)):
            out[..., f] = frame[:, :, z - lo]
    return out


def load_slices(scans: list[SubjectScan], indices: list[int], cfg: DataConfig, *, all_slices: bool = False,
                n_frames: int = 1, targets: bool = False) -> SliceData:
    """The axial slices of ``scans`` that ``cfg`` selects (every labelled one with ``all_slices``), cropped, with
    their masks; ``indices`` = the scans' positions in the kinetic stack; ``n_frames`` sizes the empty result when
    ``scans`` is empty; ``targets``: also the voxel fit's parameters of the masked voxels (:func:`lm_targets`)."""
    tacs, masks, subj, zs, fits = [], [], [], [], []
    for scan, index in zip(scans, indices):
        z = select_slices(scan.labels, scan.pet.shape[2], 0 if all_slices else cfg.slices_per_subject)
        volume = _selected_slices(scan.pet, z)  # [X, Y, Zsel, F]
        volume = crop_slices(np.nan_to_num(volume), cfg.crop)
        tac = np.ascontiguousarray(np.moveaxis(volume, 2, 0))  # [Zsel, H, W, F]
        tacs.append(tac)
        masks.append(voxel_mask(tac, scan.pet.frames.duration, cfg.mask_threshold))
        subj.append(np.full(len(z), index, np.int32))
        zs.append(z)
        if targets:
            fits.append(lm_targets(tac, masks[-1], scan_kinetic_input(scan), scan.scan_id))
    if not tacs:
        return SliceData(np.zeros((0, cfg.crop, cfg.crop, n_frames), np.float32),
                         np.zeros((0, cfg.crop, cfg.crop), np.float32),
                         np.zeros(0, np.int32), np.zeros(0, int),
                         np.zeros((0, cfg.crop, cfg.crop, 4), np.float32) if targets else None)
    return SliceData(np.concatenate(tacs), np.concatenate(masks), np.concatenate(subj), np.concatenate(zs),
                     np.concatenate(fits) if targets else None)


def lm_targets(tac: np.ndarray, mask: np.ndarray, kin, name: str = "") -> np.ndarray:
    """The voxel-wise fit (:func:`jaxkin.fit_tacs`: irreversible 2TC, unweighted, physiological bounds) of the
    masked voxels of slices ``tac [N, H, W, F]`` (kBq/ml) with the scan's kinetic input ``kin``: parameters
    ``[N, H, W, 4]`` (K1, k2, k3, vB; float32, 0 outside ``mask [N, H, W]``). They guide a network trained with
    ``lm_guidance`` (:func:`jaxkin.nn.loss.guidance_loss`): label-free targets from the same data, unbiased on
    average where the fit is identifiable, which the network averages over neighbouring voxels. ``name`` labels the
    progress line on stderr."""
    from jaxkin.fitting import fit_tacs

    inside = mask > 0
    out = np.zeros((*tac.shape[:-1], 4), np.float32)
    if inside.any():
        print(f"fitting {int(inside.sum())} voxels of {name or 'a scan'} for lm_guidance ...", file=sys.stderr)
        out[inside] = np.asarray(fit_tacs(tac[inside], kin).params, np.float32)
    return out


@dataclasses.dataclass
class ShardedSlices:
    """This process's slices of one split (train, val or test), grouped in data shards.

    The split's scans are dealt into ``len(sizes)`` shards (scan ``j`` into shard ``j % shards``); every batch
    takes ``rows`` slices from each shard, so its content does not depend on how many processes share the work.
    ``data`` holds the slices of the shards this process owns (``owned``, contiguous), one shard after the other;
    ``sizes [shards]`` counts the slices of every shard (of all processes).
    """

    data: SliceData
    sizes: np.ndarray
    owned: range

    def steps(self, rows: int) -> int:
        """Batches needed to see every slice of the largest shard."""
        return max((math.ceil(int(n) / rows) for n in self.sizes), default=0)

    def index_batches(self, rows: int, key: tuple | None = None) -> np.ndarray:
        """``[steps, rows * len(owned)]`` indices into ``data`` (``-1`` = padding): each owned shard in order, or
        shuffled by ``np.random.default_rng((*key, shard))``; shards that run out are padded."""
        steps = self.steps(rows)
        columns, offset = [], 0
        for shard in self.owned:
            n = int(self.sizes[shard])
            order = np.arange(n) if key is None else np.random.default_rng((*key, shard)).permutation(n)
            column = np.full(steps * rows, -1, np.int64)
            column[:n] = order + offset
            columns.append(column.reshape(steps, rows))
            offset += n
        return np.concatenate(columns, axis=1) if columns else np.zeros((steps, 0), np.int64)


def load_sharded(scans: list[SubjectScan], indices: list[int], cfg: DataConfig, shards: int, *,
                 all_slices: bool = False, n_frames: int = 1, targets: bool = False) -> ShardedSlices:
    """The slices of this process's shards of ``scans`` (see :class:`ShardedSlices`; ``targets``: with the voxel
    fit's parameters, :func:`load_slices`); a collective when several processes run (they exchange their shard
    sizes)."""
    from jaxkin import distributed as dist

    per_process = shards // dist.process_count()
    owned = range(dist.process_index() * per_process, (dist.process_index() + 1) * per_process)

    def read_own_shards():
        dealt = [range(shard, len(scans), shards) for shard in owned]  # scan j goes to shard j % shards
        return [load_slices([scans[j] for j in mine], [indices[j] for j in mine], cfg, all_slices=all_slices,
                            n_frames=n_frames, targets=targets) for mine in dealt]

    parts = dist.check_everywhere(read_own_shards)  # a damaged file on one process stops every process
    sizes = np.zeros(shards, np.int64)
    for shard, part in zip(owned, parts):
        sizes[shard] = len(part)
    parts = [p for p in parts if len(p)] or [load_slices([], [], cfg, n_frames=n_frames, targets=targets)]
    data = SliceData(*(None if any(getattr(p, f.name) is None for p in parts) else
                       np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(SliceData)))
    return ShardedSlices(data, dist.gather_arrays(sizes).sum(axis=0), owned)


def scan_kinetic_input(scan: SubjectScan):
    """The :class:`jaxkin.kinetics.KineticInput` of one scan: its input function, frames and whole blood (vB term)."""
    from jaxkin.kinetics import prepare

    return prepare(scan.blood.input, scan.pet.frames, scan.blood.whole_blood)


def stack_kinetic_inputs(scans: list[SubjectScan]):
    """One :class:`jaxkin.kinetics.KineticInput` with leaves stacked over scans (``table [S, G, F]``, ...)."""
    import jax
    import jax.numpy as jnp

    n_frames = {s.pet.frames.n_frames for s in scans}
    if len(n_frames) > 1:
        raise InputError(f"the scans have different frame counts ({sorted(n_frames)}); one network needs one")
    kins = [scan_kinetic_input(s) for s in scans]
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *kins)
