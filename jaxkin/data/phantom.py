"""A simulated whole-body dynamic FDG PET phantom with known ground truth.

One subject = a torso from the lung apices to the bladder, drawn from analytic shapes (ellipsoids, elliptic
cylinders, shells) with per-subject size, position and lesion variation; per-organ irreversible two-tissue
parameters with per-subject variation and smooth intra-organ heterogeneity; a Feng input function with
per-subject scale and delay; the paper's 62 Quadra frames (or another schedule, e.g. the 69 of public Quadra datasets). The TACs come from jaxkin's own kinetic core
(:func:`jaxkin.kinetics.prepare` + :func:`jaxkin.kinetics.two_tissue_irreversible`), evaluated for all voxels at
once in fixed-size chunks. Physics: a Gaussian PSF (``fwhm_mm``) and Gaussian noise whose variance is

    Var[f] = s * max(C_f, 0) * exp(ln2 * t_mid,f / 109.77 min) / duration_f      (C in kBq/ml, times in min)

with ``s = noise_scale * NOISE_S`` kBq/ml*min (``NOISE_S`` below; ``noise_scale = 0`` gives noiseless data):
count statistics of decay-corrected frames. The noise is white (no reconstruction correlations).

Ground truth = the unblurred parameter maps at voxel centres; the label map is the anatomy.
Axes: NIfTI order ``[X, Y, Z, F]``, RAS+ (+x toward the patient's right, so the liver is at x > 0; +y anterior;
+z superior, so the bladder is at low z; see :func:`affine_of`). Units: mm, minutes, kBq/ml.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxkin.data.blood import write_blood
from jaxkin.decay import F18_HALF_LIFE_MIN, decay_factors
from jaxkin.frames import FrameSchedule
from jaxkin.input_function import FengParameters, InputFunction, feng_input
from jaxkin.kinetics import FDG_MODEL, get_model, tacs_in_chunks

__all__ = [
    "LABELS",
    "ORGAN_PARAMETERS",
    "PRESETS",
    "NOISE_S",
    "Preset",
    "Subject",
    "ORGAN_DELAY_S",
    "get_preset",
    "simulate_subject",
    "simulate_dataset",
    "write_subject",
    "subject_paths",
    "noise_sd",
    "split_counts",
]

#: Label index -> name of the phantom's label map (0 = outside the body).
LABELS: dict[int, str] = {
    1: "body",
    2: "lungs",
    3: "myocardium",
    4: "blood_pool",
    5: "aorta",
    6: "liver",
    7: "kidneys",
    8: "spleen",
    9: "bone",
    10: "bladder",
    11: "lesion",
}

#: Mean irreversible 2TC parameters ``(K1, k2, k3, vB)`` per label (K1 in ml/cm^3/min, k2, k3 in 1/min).
#: Organs from the literature the paper follows (Sari et al. 2022 style values); "lesion" is the liver-tumour row. "body" (muscle and
#: fat) and "bladder" are our choices: low uptake for soft tissue; the bladder fills with excreted FDG, which
#: an irreversible uptake with large Ki imitates (its real kinetics is renal excretion, not a compartment model).
#: The bladder is as bright as in real whole-body FDG scans, where urine reads 20-50x muscle, fat and lung late in
#: the scan: Ki 0.15/min gives about 36x "body" and 38x "lungs" in the mean of the last three frames (50-65 min)
#: at the table's values (20-50x over subjects). The hot organ at the top of the torso is the myocardium (Ki
#: 0.046/min, about 12x "body" late, the brightness of the brain, which lies above this torso's field of view).
#: These contrasts are what an automatic mask must survive (:func:`jaxkin.fitting.body_mask`).
#: Blood pool and aorta are pure blood: vB = 1 and no tissue, so their TAC is the input function.
ORGAN_PARAMETERS: dict[str, tuple[float, float, float, float]] = {
    "body": (0.05, 0.35, 0.02, 0.02),
    "lungs": (0.233, 1.536, 0.012, 0.087),
    "myocardium": (0.6, 1.2, 0.1, 0.05),
    "blood_pool": (0.0, 0.0, 0.0, 1.0),
    "aorta": (0.0, 0.0, 0.0, 1.0),
    "liver": (0.667, 0.695, 0.003, 0.01),
    "kidneys": (0.793, 0.672, 0.008, 0.08),
    "spleen": (1.535, 2.697, 0.007, 0.042),
    "bone": (0.108, 0.642, 0.025, 0.03),
    "bladder": (0.35, 0.4, 0.3, 0.0),
    "lesion": (0.243, 0.78, 0.1, 0.02),
}
BLOOD_LABELS = ("blood_pool", "aorta")

#: Per-subject variation: each organ parameter is multiplied by a log-normal factor of this SD (log scale).
SUBJECT_SD = 0.10
#: Intra-organ heterogeneity: a smooth log-normal field of this SD (log scale), mean 1, correlation ~HET_MM.
HETEROGENEITY_SD = 0.10
HETEROGENEITY_MM = 20.0
#: Arrival of the input at each organ relative to the measured input (the descending aorta), in seconds (positive =
#: later), applied with ``organ_delays=True``: the bolus passes the right heart and the lungs, then the left ventricle,
#: before the descending aorta; it reaches the abdominal organs, the pelvis and the bladder wall later (the torso has no
#: legs; "body", muscle and fat down to the pelvis, stands for the late periphery). Our choices of a few seconds,
#: inside the -10 ... +30 s that `jaxkin fit --delay` searches; lesions take the delay of the liver (their usual host).
ORGAN_DELAY_S: dict[str, float] = {
    "body": 6.0,
    "lungs": -4.0,
    "myocardium": -2.0,
    "blood_pool": -3.0,
    "aorta": 0.0,
    "liver": 3.0,
    "kidneys": 2.0,
    "spleen": 2.0,
    "bone": 4.0,
    "bladder": 10.0,
    "lesion": 3.0,
}

#: Input function: Feng's curve times a log-normal scale (SD 0.15) and delayed by U(0.1, 0.3) min.
INPUT_SCALE_SD = 0.15
INPUT_DELAY_MIN = (0.1, 0.3)

#: Noise constant s at noise_scale = 1 (kBq/ml*min): about 3.6% SD in a late (300 s) liver frame voxel.
NOISE_S = 0.06

#: The ground truth's parameters (K1, k2, k3, vB) and maps (those and Ki), from the kinetic model.
PARAM_NAMES = get_model(FDG_MODEL).param_names
MAP_NAMES = get_model(FDG_MODEL).map_names


@dataclasses.dataclass(frozen=True)
class Preset:
    """Grid of a phantom preset: ``shape (X, Y, Z)`` voxels of ``voxel_mm`` (dx, dy, dz); default subject count."""

    name: str
    shape: tuple[int, int, int]
    voxel_mm: tuple[float, float, float]
    subjects: int
    fwhm_mm: float
    note: str

    @property
    def fov_mm(self) -> tuple[float, float, float]:
        return tuple(n * d for n, d in zip(self.shape, self.voxel_mm))


#: The phantom's sizes by name: ``small`` (tests, quickstart) and ``paper`` (the paper's in-plane grid, 23 subjects).
PRESETS: dict[str, Preset] = {
    "small": Preset(
        "small", (32, 32, 24), (8.75, 8.75, 20.0), 3, 4.0,
        "tiny grid for tests and the quickstart: the same 28 x 28 x 48 cm anatomy sampled coarsely",
    ),
    "paper": Preset(
        "paper", (112, 112, 80), (2.5, 2.5, 6.0), 23, 4.0,
        "112 x 112 at 2.5 mm in-plane as in the paper; lungs to bladder (48 cm) in 80 axial slices of 6 mm "
        "(the paper's 2.5 mm axially would need ~190 slices, 2.4x the data, too slow to write 23 subjects "
        "in 5 minutes on a 2-core CPU)",
    ),
}


def get_preset(name: str) -> Preset:
    """The :class:`Preset` called ``name`` (a key of :data:`PRESETS`); InputError naming the choices otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        from jaxkin.errors import InputError

        raise InputError(f"--preset: unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def split_counts(n: int) -> tuple[int, int, int]:
    """``(train, val, test)`` subject counts: the paper's 10/4/9 of 23, scaled to ``n`` (each >= 1 when n >= 3)."""
    if n >= 3:
        test = max(1, round(n * 9 / 23))
        val = max(1, round(n * 4 / 23))
        return n - val - test, val, test
    return (1, 1, 0) if n == 2 else (n, 0, 0)


@dataclasses.dataclass(frozen=True, eq=False)
class Subject:
    """One simulated subject, in memory.

    ``pet [X, Y, Z, F]`` float32 kBq/ml (blurred, noisy); ``truth [X, Y, Z, 4]`` float32 (K1, k2, k3, vB; unblurred);
    ``labels int [X, Y, Z]`` with ``label_names``; ``organ_params`` name -> this subject's organ-mean parameters
    ``[4]``; ``input_function`` (min, kBq/ml, also the whole-blood curve); ``affine [4, 4]`` (mm).
    """

    index: int
    subject_id: str
    pet: np.ndarray
    frames: FrameSchedule
    input_function: InputFunction
    labels: np.ndarray
    label_names: dict
    truth: np.ndarray
    organ_params: dict
    affine: np.ndarray
    voxel_mm: tuple
    preset: str
    seed: int
    noise_scale: float
    fwhm_mm: float
    input_scale: float
    input_delay: float
    organ_delays: dict = dataclasses.field(default_factory=dict)

    def delay_map(self) -> np.ndarray:
        """The input delay of every voxel ``[X, Y, Z]`` in minutes (0 without organ delays and outside the body)."""
        table = np.zeros(max(LABELS) + 1)
        for i, name in LABELS.items():
            table[i] = self.organ_delays.get(name, 0.0) / 60.0
        return table[self.labels]


def affine_of(preset: Preset) -> np.ndarray:
    """RAS+ affine of the preset grid (mm): voxel (i, j, k) -> (x, y, z), centred in-plane, z = 0 at the lung apex."""
    dx, dy, dz = preset.voxel_mm
    nx, ny, nz = preset.shape
    a = np.diag([dx, dy, dz, 1.0])
    a[:3, 3] = [-(nx - 1) / 2 * dx, -(ny - 1) / 2 * dy, _TOP_MARGIN_MM - preset.fov_mm[2] + dz / 2]
    return a


_TOP_MARGIN_MM = 10.0  # FOV starts 10 mm above the lung apex


# --------------------------------------------------------------------------------------------------
# Anatomy
# --------------------------------------------------------------------------------------------------


def _ellipsoid(x, y, s, c, r):
    return ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((s - c[2]) / r[2]) ** 2 <= 1.0


def _anatomy(rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """The label map ``int [X, Y, Z]`` of one subject, sampled at voxel centres.

    Patient coordinates: x toward the patient's right (RAS+; the liver is at x > 0), y anterior, s = depth below
    the lung apex in mm (s = -z). Body size, organ positions and sizes vary per subject.
    """
    aff = affine_of(preset)
    nx, ny, nz = preset.shape
    x = (aff[0, 0] * np.arange(nx) + aff[0, 3])[:, None, None]
    y = (aff[1, 1] * np.arange(ny) + aff[1, 3])[None, :, None]
    s = -(aff[2, 2] * np.arange(nz) + aff[2, 3])[None, None, :]

    width, depth = rng.uniform(0.92, 1.04), rng.uniform(0.92, 1.04)  # body scale in x and y
    length = rng.uniform(0.95, 1.03)  # axial scale
    x, y, s = x / width, y / depth, s / length  # organs are drawn in a standard body

    def jitter(c, r, dc=5.0, dr=0.08):
        c = np.asarray(c, float) + rng.uniform(-dc, dc, 3)
        r = np.asarray(r, float) * rng.uniform(1 - dr, 1 + dr, 3)
        return c, r

    lab = np.zeros(preset.shape, np.int8)
    # Body: an elliptic cylinder, chest 120 x 88 mm semi-axes widening to 128 x 94 in the abdomen and pelvis.
    sa = np.clip(s / 460.0, 0, 1)
    a_body = 120.0 + 8.0 * sa
    b_body = 88.0 + 6.0 * np.sin(np.pi * sa)
    rho = np.sqrt((x / a_body) ** 2 + (y / b_body) ** 2)
    body = (rho <= 1.0) & (s >= -30) & (s <= 480)
    lab[np.broadcast_to(body, lab.shape)] = 1
    # Bone: ribs (bands of a shell in the chest, open at the sternum), spine, iliac wings.
    band = (np.mod(s - 15.0, 26.0) < 9.0) & (s > 10) & (s < 235)
    ribs = (rho > 0.84) & (rho < 0.92) & band & ~((np.abs(x) < 30) & (y > 0))
    spine = (x**2 + (y + 62.0) ** 2 <= 17.0**2) & (s >= -30) & (s <= 440)
    iliac_c, iliac_r = jitter((85.0, -25.0, 390.0), (13.0, 48.0, 45.0))
    pelvis = _ellipsoid(x, y, s, iliac_c, iliac_r) | _ellipsoid(x, y, s, iliac_c * [-1, 1, 1], iliac_r)
    lab[np.broadcast_to(ribs | spine | pelvis, lab.shape) & (lab == 1)] = 9
    # Lungs (two ellipsoids) inside the rib cage (rho < 0.84, the ribs' inner surface), so that a chest wall lies
    # between lung and air in every axial slice as in a patient; then the liver, spleen and kidneys.
    for side in (1, -1):
        c, r = jitter((side * 62.0, -8.0, 118.0), (50.0, 68.0, 118.0))
        lab[_ellipsoid(x, y, s, c, r) & (lab == 1) & (rho < 0.84)] = 2
    c, r = jitter((50.0, 5.0, 250.0), (80.0, 70.0, 70.0))
    lab[_ellipsoid(x, y, s, c, r) & ((lab == 1) | (lab == 9))] = 6
    c, r = jitter((-78.0, -28.0, 245.0), (28.0, 42.0, 48.0))
    lab[_ellipsoid(x, y, s, c, r) & ((lab == 1) | (lab == 2))] = 8
    for side in (1, -1):
        c, r = jitter((side * 62.0, -38.0, 305.0 + 8.0 * side), (24.0, 24.0, 50.0))
        lab[_ellipsoid(x, y, s, c, r) & (lab != 9)] = 7
    # Heart: myocardium shell around the blood pool (left ventricle cavity).
    c, r = jitter((-22.0, 28.0, 160.0), (52.0, 44.0, 56.0))
    lab[_ellipsoid(x, y, s, c, r)] = 3
    lab[_ellipsoid(x, y, s, c, r * 0.62)] = 4
    # Descending aorta: a vertical tube left of the spine, from the arch to the bifurcation.
    ax, ay = -16.0 + rng.uniform(-3, 3), -34.0 + rng.uniform(-3, 3)
    aorta = ((x - ax) ** 2 + (y - ay) ** 2 <= 11.0**2) & (s >= 40) & (s <= 340)
    lab[np.broadcast_to(aorta, lab.shape)] = 5
    # Bladder.
    c, r = jitter((0.0, 32.0, 425.0), (40.0, 32.0, 30.0), dr=0.15)
    lab[_ellipsoid(x, y, s, c, r) & (lab != 9)] = 10
    # Lesions: 2-4 spheres centred on a voxel of a host organ (at least one in the liver).
    hosts = ["liver"] + list(rng.choice(["liver", "lungs", "bone", "body"], size=rng.integers(1, 4)))
    vox = np.asarray(preset.voxel_mm)
    for host in hosts:
        host_index = _index(host)
        candidates = np.argwhere(lab == host_index)
        if candidates.size == 0:
            continue
        centre = candidates[rng.integers(len(candidates))]
        radius = max(rng.uniform(6.0, 14.0), 0.6 * vox.max())
        grid = np.ogrid[: preset.shape[0], : preset.shape[1], : preset.shape[2]]
        dist2 = sum(((g - c) * v) ** 2 for g, c, v in zip(grid, centre, vox))
        lab[(dist2 <= radius**2) & (lab == host_index)] = 11
    return lab


def _index(name: str) -> int:
    return next(i for i, n in LABELS.items() if n == name)


def _smooth_fields(rng: np.random.Generator, preset: Preset, n: int) -> np.ndarray:
    """``n`` smooth Gaussian random fields ``[n, X, Y, Z]`` with unit SD and correlation length ~HETEROGENEITY_MM.

    Drawn on a 10 mm grid over the FOV (independent of the preset's voxels), smoothed, then interpolated
    (trilinear) at the voxel centres.
    """
    from scipy import ndimage

    step = HETEROGENEITY_MM / 2.0
    coarse_shape = tuple(int(np.ceil(f / step)) + 2 for f in preset.fov_mm)
    coords = [(np.arange(m) + 0.5) * v / step + 0.5 for m, v in zip(preset.shape, preset.voxel_mm)]
    out = np.empty((n,) + preset.shape, np.float32)
    for i in range(n):
        field = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), sigma=1.0, mode="wrap")
        field /= field.std()
        # Separable trilinear interpolation on the (regular) voxel-centre grid.
        for axis, c in enumerate(coords):
            lo = np.clip(np.floor(c).astype(int), 0, coarse_shape[axis] - 2)
            w = (c - lo).reshape([-1 if a == axis else 1 for a in range(3)])
            field = np.take(field, lo, axis=axis) * (1 - w) + np.take(field, lo + 1, axis=axis) * w
        out[i] = field
    return out


def _parameter_maps(rng: np.random.Generator, preset: Preset, labels: np.ndarray):
    """Ground-truth ``[X, Y, Z, 4]`` maps and the subject's organ-mean parameters (name -> [4])."""
    organ_params = {}
    for name, base in ORGAN_PARAMETERS.items():
        p = np.asarray(base, float)
        if name in BLOOD_LABELS:
            organ_params[name] = p
            continue
        p = p * np.exp(rng.normal(0.0, SUBJECT_SD, 4) - SUBJECT_SD**2 / 2)
        p[3] = min(p[3], 1.0)
        organ_params[name] = p
    table = np.zeros((max(LABELS) + 1, 4))
    for i, name in LABELS.items():
        table[i] = organ_params[name]
    truth = table[labels].astype(np.float32)  # [X, Y, Z, 4]
    fields = _smooth_fields(rng, preset, 4)
    hetero = np.exp(HETEROGENEITY_SD * np.moveaxis(fields, 0, -1) - HETEROGENEITY_SD**2 / 2)
    blood = np.isin(labels, [_index(n) for n in BLOOD_LABELS])
    hetero[blood] = 1.0
    truth *= hetero
    np.clip(truth[..., 3], 0.0, 1.0, out=truth[..., 3])
    return truth, organ_params


# --------------------------------------------------------------------------------------------------
# Kinetics and physics
# --------------------------------------------------------------------------------------------------

def noise_sd(clean: np.ndarray, frames: FrameSchedule, noise_scale: float) -> np.ndarray:
    """Noise SD (kBq/ml) for a noiseless image ``clean [..., F]`` (kBq/ml): the module's formula with
    ``s = noise_scale * NOISE_S``; decay-aware (F-18, half-life 109.77 min) and inversely proportional to the
    frame duration (min)."""
    return np.sqrt(np.maximum(clean, 0.0) * (noise_scale * NOISE_S * _decay_per_duration(frames)).astype(np.float32))


def _decay_per_duration(frames: FrameSchedule) -> np.ndarray:
    """``exp(ln2 t_mid / T_half) / duration`` per frame, ``[F]`` (1/min)."""
    return np.exp(np.log(2.0) / F18_HALF_LIFE_MIN * frames.mid) / frames.duration


def _blur(volume: np.ndarray, fwhm_mm: float, voxel_mm) -> np.ndarray:
    """Gaussian PSF of ``fwhm_mm`` on every frame of ``volume [X, Y, Z, F]``.

    Edges are mirrored (the body goes on beyond the axial FOV), which keeps each frame's total activity."""
    if fwhm_mm <= 0:
        return volume
    from scipy import ndimage

    sigma = [fwhm_mm / (2 * np.sqrt(2 * np.log(2))) / v for v in voxel_mm] + [0.0]
    return ndimage.gaussian_filter(volume, sigma=sigma, mode="reflect", truncate=3.0)


def _bounding_box(mask: np.ndarray, fwhm_mm: float, voxel_mm) -> tuple:
    """Slices of the bounding box of ``mask``, widened by twice the blur radius (+1) and clipped to the grid."""
    sigma = [fwhm_mm / (2 * np.sqrt(2 * np.log(2))) / v for v in voxel_mm]
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        if idx.size == 0:
            return (slice(0, 0),) * 3
        margin = 2 * int(np.ceil(3.0 * sigma[axis])) + 1
        box.append(slice(max(int(idx[0]) - margin, 0), min(int(idx[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)


def simulate_subject(index: int, *, seed: int = 0, preset: str = "small", noise_scale: float = 1.0,
                     fwhm_mm: float | None = None, frames: FrameSchedule | None = None,
                     organ_delays: bool = False) -> Subject:
    """Simulate subject ``index`` (0-based; id ``sub-{index+1:02d}``) of the phantom, in memory.

    Deterministic in ``(seed, index)``: anatomy, parameters and input come from one random stream and the noise
    from another, so ``noise_scale`` and ``fwhm_mm`` change only the image, not the ground truth.
    ``fwhm_mm`` defaults to the preset's (4 mm); 0 disables the blur; ``noise_scale`` 0 gives noiseless data.
    ``frames`` defaults to the paper's 62 Quadra frames. ``organ_delays``: each organ sees the input (and its blood
    the whole blood) delayed by :data:`ORGAN_DELAY_S` (lungs and heart early, the lower body and bladder late); the
    input function written for the subject stays the measured (aortic) one.
    """
    from jaxkin.kinetics import prepare

    p = get_preset(preset)
    fwhm = p.fwhm_mm if fwhm_mm is None else float(fwhm_mm)
    if noise_scale < 0 or fwhm < 0:
        raise ValueError("noise_scale and fwhm_mm must be >= 0")
    frames = frames or FrameSchedule.quadra()
    anatomy_seq, noise_seq = np.random.SeedSequence([int(seed), int(index)]).spawn(2)
    rng = np.random.default_rng(anatomy_seq)

    input_scale = float(np.exp(rng.normal(0.0, INPUT_SCALE_SD)))
    input_delay = float(rng.uniform(*INPUT_DELAY_MIN))
    # 10 s samples, 1 s over the 3 min of the bolus: the piecewise-linear curve *is* the true input.
    input_function = feng_input(float(frames.end[-1]), FengParameters(), delay=input_delay, scale=input_scale,
                                step=10.0 / 60.0, peak_step=1.0 / 60.0)
    labels = _anatomy(rng, p)
    truth, organ_params = _parameter_maps(rng, p, labels)

    kin = prepare(input_function, frames)
    # The physics runs on the body's bounding box plus a zero margin of twice the PSF radius (so the blur, with
    # mirrored edges, is the same as on the whole grid); outside it there is no activity and hence no noise.
    box = _bounding_box(labels > 0, fwhm, p.voxel_mm)
    sub_labels = labels[box]
    inside = sub_labels > 0
    clean = np.zeros(sub_labels.shape + (frames.n_frames,), np.float32)
    if not organ_delays:
        clean[inside] = tacs_in_chunks(truth[box][inside], kin, FDG_MODEL)
    else:
        sub_truth = truth[box]
        for d in sorted(set(ORGAN_DELAY_S.values())):
            names = [n for n, v in ORGAN_DELAY_S.items() if v == d]
            sel = np.isin(sub_labels, [_index(n) for n in names])
            if not sel.any():
                continue
            end = float(frames.end[-1]) + max(-d / 60.0, 0.0)
            shifted = input_function.held_to(end).delayed(d / 60.0)
            clean[sel] = tacs_in_chunks(sub_truth[sel], prepare(shifted, frames), FDG_MODEL)
    pet = _blur(clean, fwhm, p.voxel_mm)
    del clean
    if noise_scale > 0:
        # noise_sd(pet, frames, noise_scale), computed in place to spare memory traffic.
        sd = np.maximum(pet, 0.0)
        sd *= (noise_scale * NOISE_S * _decay_per_duration(frames)).astype(np.float32)
        np.sqrt(sd, out=sd)
        noise = np.random.default_rng(noise_seq).standard_normal(pet.shape, dtype=np.float32)
        noise *= sd
        del sd
        pet += noise
    full = np.zeros(p.shape + (frames.n_frames,), np.float32)
    full[box] = pet
    return Subject(
        index=int(index),
        subject_id=f"sub-{index + 1:02d}",
        pet=full,
        frames=frames,
        input_function=input_function,
        labels=labels.astype(np.int16),
        label_names=dict(LABELS),
        truth=truth,
        organ_params=organ_params,
        affine=affine_of(p),
        voxel_mm=p.voxel_mm,
        preset=p.name,
        seed=int(seed),
        noise_scale=float(noise_scale),
        fwhm_mm=fwhm,
        input_scale=input_scale,
        input_delay=input_delay,
        organ_delays=dict(ORGAN_DELAY_S) if organ_delays else {},
    )


# --------------------------------------------------------------------------------------------------
# Writing a BIDS dataset
# --------------------------------------------------------------------------------------------------

MODEL_NAME = FDG_MODEL
TRUTH_DIR = ("derivatives", "groundtruth")


def subject_paths(root, subject_id: str) -> dict:
    """Where a phantom subject's files live inside a dataset ``root`` (see :func:`simulate_dataset`).

    The label map is ground truth, not raw data (raw BIDS has no ``dseg`` in ``pet/``): it lives in the
    ground-truth derivative, ``derivatives/groundtruth/sub-<id>/anat/sub-<id>_dseg.nii.gz`` (+ ``_dseg.tsv``)."""
    from pathlib import Path

    pet_dir = Path(root) / subject_id / "pet"
    truth_dir = Path(root).joinpath(*TRUTH_DIR, subject_id, "pet")
    return {
        "pet": pet_dir / f"{subject_id}_pet.nii.gz",
        "input_function": pet_dir / f"{subject_id}_recording-AIF_blood.tsv",
        "labels": Path(root).joinpath(*TRUTH_DIR, subject_id, "anat", f"{subject_id}_dseg.nii.gz"),
        "truth_dir": truth_dir,
        "organs": truth_dir / f"{subject_id}_desc-organs_parameters.tsv",
    }


#: The nominal patient behind ``InjectedRadioactivity``: a body weight (kg) and the whole blood's SUV at 60 min.
#: With them the phantom's unscaled Feng input (11.7 kBq/mL at 60 min) means about 440 MBq (5.9 MBq/kg), and the
#: organs read realistic SUVs late in the scan: blood 2.0, liver ~2, body ~0.75, bladder ~30, myocardium ~10.
NOMINAL_WEIGHT_KG = 75.0
NOMINAL_BLOOD_SUV_60_MIN = 2.0


def injected_radioactivity(subject: Subject) -> float:
    """The nominal injected radioactivity (MBq) of a subject: the dose that makes its whole blood (the input
    function, kBq/mL) read SUV ``NOMINAL_BLOOD_SUV_60_MIN`` at 60 min in a ``NOMINAL_WEIGHT_KG`` patient, so it
    scales with the subject's input scale. SUV = C / (dose / weight) with 1 g = 1 mL."""
    from jaxkin.input_function import feng

    blood_60 = float(feng(np.array([60.0]), FengParameters(), delay=subject.input_delay, scale=subject.input_scale)[0])
    return blood_60 * NOMINAL_WEIGHT_KG * 1000.0 / NOMINAL_BLOOD_SUV_60_MIN / 1000.0  # kBq/mL * mL -> kBq -> MBq


def _pet_sidecar(subject: Subject, preset: Preset, units: str) -> dict:
    """The ``*_pet.json`` fields: every field BIDS-PET REQUIRES (the ones not known for a simulation, such as FDG's
    injected mass, are ``"n/a"`` where BIDS allows it) and the simulation's parameters. ``write_pet`` adds
    ``FrameTimesStart``, ``FrameDuration`` and ``Modality``."""
    from jaxkin._version import __version__

    filtered = subject.fwhm_mm > 0
    return {
        "Manufacturer": "jaxkin (simulated)",
        "SoftwareVersions": f"jaxkin {__version__}",
        "ManufacturersModelName": "Biograph Vision Quadra (simulated frame schedule)",
        "Units": units,
        "TracerName": "FDG",
        "TracerRadionuclide": "F18",
        "InjectedRadioactivity": round(injected_radioactivity(subject), 1),
        "InjectedRadioactivityUnits": "MBq",
        "InjectedMass": "n/a",
        "InjectedMassUnits": "n/a",
        "SpecificRadioactivity": "n/a",
        "SpecificRadioactivityUnits": "n/a",
        "ModeOfAdministration": "bolus",
        "TimeZero": "00:00:00",
        "ScanStart": 0,
        "InjectionStart": 0,
        "AcquisitionMode": "list mode (simulated: frame means of the kinetic model)",
        "ImageDecayCorrected": True,
        "ImageDecayCorrectionTime": 0,
        "DecayCorrectionFactor": [round(float(f), 9) for f in decay_factors(subject.frames, F18_HALF_LIFE_MIN)],
        "ReconMethodName": "none: analytic simulation (jaxkin phantom), no reconstruction",
        "ReconMethodParameterLabels": ["none"],
        "ReconMethodParameterUnits": ["none"],
        "ReconMethodParameterValues": [0],
        "ReconFilterType": "Gaussian" if filtered else "none",
        "ReconFilterSize": subject.fwhm_mm,
        "AttenuationCorrection": "none (analytic simulation: no attenuation to correct)",
        "SimulationParameters": {
            "Software": "jaxkin.data.phantom",
            "Preset": preset.name,
            "Grid": f"{preset.shape} voxels of {preset.voxel_mm} mm",
            "GridNote": preset.note,
            "Seed": subject.seed,
            "SubjectIndex": subject.index,
            "NoiseScale": subject.noise_scale,
            "NoiseModel": "Gaussian, Var = NoiseScale * NoiseS * max(C,0) * exp(ln2 * t_mid / "
                          f"{F18_HALF_LIFE_MIN:g} min) / duration, C in kBq/mL, times in min (white noise, applied "
                          "after the PSF)",
            "NoiseS": NOISE_S,
            "PsfFwhmMm": subject.fwhm_mm,
            "InputFunction": "Feng FDG model (whole blood = plasma), scaled and delayed per subject",
            "InputScale": subject.input_scale,
            "InputDelayMin": subject.input_delay,
            **({"OrganDelaysSeconds": subject.organ_delays} if subject.organ_delays else {}),
            "KineticModel": MODEL_NAME,
            "InjectedRadioactivityBasis": f"nominal: whole blood at SUV {NOMINAL_BLOOD_SUV_60_MIN:g} at 60 min in a "
                                          f"{NOMINAL_WEIGHT_KG:g} kg patient",
            "DecayCorrectionFactorNote": "the factors a scanner applies to correct each frame to TimeZero (F18); "
                                         "the simulated frames are decay-corrected by construction",
        },
    }


def write_subject(root, subject: Subject, *, units: str = "kBq/mL") -> dict:
    """Write one simulated subject into the dataset ``root``; returns its paths (see :func:`subject_paths`)."""
    import jax

    from jaxkin._version import __version__
    from jaxkin.data import bids

    preset = get_preset(subject.preset)
    paths = subject_paths(root, subject.subject_id)
    scale = bids.units_to_kbq(units, where="units")
    data = subject.pet if scale == 1.0 else subject.pet / np.float32(scale)
    bids.write_pet(paths["pet"], data, subject.frames, subject.affine, units=units,
                   sidecar=_pet_sidecar(subject, preset, units), voxel_size=subject.voxel_mm)
    write_blood(paths["input_function"], plasma=subject.input_function, whole_blood=subject.input_function,
                units=units, description="arterial input of the simulation (Feng FDG model; whole blood = plasma)")
    bids.write_labels(paths["labels"], subject.labels, subject.label_names, subject.affine)
    reference = bids.load_pet(paths["pet"])
    model = get_model(MODEL_NAME)
    maps = model.named_maps(subject.truth)
    extra = {"Description": "ground truth of the simulated phantom (unblurred, at voxel centres)",
             "Sources": [paths["pet"].name, paths["labels"].name]}
    cmd = f"jaxkin simulate (jaxkin {__version__}, preset {preset.name}, seed {subject.seed})"
    for name, values in maps.items():
        bids.write_map(paths["truth_dir"], subject.subject_id, MODEL_NAME, name, values, reference=reference,
                       units=model.units[name], command_line=cmd, extra=extra)
    rows = ["name\tindex\tK1\tk2\tk3\tvB\tKi\tvoxels"]
    for index, name in LABELS.items():
        k1, k2, k3, vb = subject.organ_params[name]
        with jax.enable_x64(True):
            organ_ki = float(model.macro_parameters(np.array([k1, k2, k3, vb]))["Ki"])
        n = int(np.count_nonzero(subject.labels == index))
        rows.append(f"{name}\t{index}\t{k1:.6g}\t{k2:.6g}\t{k3:.6g}\t{vb:.6g}\t{organ_ki:.6g}\t{n}")
    paths["organs"].write_text("\n".join(rows) + "\n", encoding="utf-8")
    return paths


def simulate_dataset(out_dir, *, subjects: int | None = None, seed: int = 0, preset: str = "small",
                     noise_scale: float = 1.0, fwhm_mm: float | None = None, units: str = "kBq/mL",
                     workers: int | None = None, progress=None, organ_delays: bool = False,
                     frames: str | FrameSchedule = "quadra62"):
    """Simulate ``subjects`` phantom subjects and write them as a BIDS dataset at ``out_dir``; returns its path.

    Layout::

        dataset_description.json  participants.tsv (participant_id, split, ...)  participants.json  README
        sub-01/pet/sub-01_pet.nii.gz + .json           4D PET in ``units`` (default kBq/mL), ``frames``; the JSON
                                                       has every field BIDS-PET requires
        sub-01/pet/sub-01_recording-AIF_blood.tsv + .json   arterial plasma = whole blood (time in s, ``units``)
        derivatives/groundtruth/dataset_description.json    (DatasetType derivative)
        derivatives/groundtruth/sub-01/anat/sub-01_dseg.nii.gz + sub-01_dseg.tsv   label map and table (index, name)
        derivatives/groundtruth/sub-01/pet/sub-01_model-2tcmirr_meas-<K1|k2|k3|vB|Ki>_mimap.nii.gz + .json
        derivatives/groundtruth/sub-01/pet/sub-01_desc-organs_parameters.tsv   organ-mean parameters

    The train/val/test split (the paper's 10/4/9 for 23 subjects, scaled otherwise) is the ``split`` column of
    participants.tsv. Everything is written into a temporary folder beside ``out_dir`` and renamed at the end,
    so an error or an interrupt leaves no partial dataset. ``out_dir`` must not exist or be empty.
    Subjects are simulated and written by ``workers`` threads (default: up to 2). ``organ_delays``: see
    :func:`simulate_subject`. ``frames``: the frame schedule, a :class:`jaxkin.FrameSchedule` or a name of
    :data:`jaxkin.frames.FRAME_SCHEDULES` (``quadra62``, the paper's, by default; ``quadra69``: the 69 frames of
    public Quadra datasets).
    """
    import json
    import os
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from jaxkin._version import __version__
    from jaxkin.data import bids
    from jaxkin.data.files import atomic_directory
    from jaxkin.errors import InputError

    p = get_preset(preset)
    n = p.subjects if subjects is None else int(subjects)
    fwhm = p.fwhm_mm if fwhm_mm is None else float(fwhm_mm)
    if n < 1:
        raise InputError(f"--subjects: must be at least 1, got {n}")
    if not np.isfinite(noise_scale) or noise_scale < 0:
        raise InputError(f"--noise-scale: must be >= 0, got {noise_scale}")
    if not np.isfinite(fwhm) or fwhm < 0:
        raise InputError(f"--fwhm-mm: must be >= 0, got {fwhm}")
    bids.units_to_kbq(units, where="--units")
    if isinstance(frames, str):
        try:
            frames = FrameSchedule.named(frames)
        except ValueError as err:
            raise InputError(f"--frames: {err}") from None
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists and is not an empty folder; choose a new --out")
    with atomic_directory(out, label=str(out), what="the dataset") as tmp:
        n_train, n_val, n_test = split_counts(n)
        splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test

        def one(i):
            subject = simulate_subject(i, seed=seed, preset=p.name, noise_scale=noise_scale, fwhm_mm=fwhm,
                                       organ_delays=organ_delays, frames=frames)
            write_subject(tmp, subject, units=units)
            if progress is not None:
                progress(subject.subject_id)
            return subject.subject_id, subject.input_scale, subject.input_delay

        if n > 1:  # compile the kinetic model once before the threads start
            rows = [one(0)]
            with ThreadPoolExecutor(max_workers=max(1, workers or min(2, os.cpu_count() or 1))) as pool:
                rows += list(pool.map(one, range(1, n)))
        else:
            rows = [one(0)]

        description = {
            "Name": f"jaxkin simulated whole-body dynamic FDG PET phantom ({p.name} preset)",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "License": "CC0",
            "GeneratedBy": [{"Name": "jaxkin", "Version": __version__,
                             "Description": "jaxkin simulate: analytic torso phantom, irreversible 2TC kinetics, "
                                            "Feng input, Quadra frames, Gaussian PSF and noise"}],
            "SimulationParameters": {"Preset": p.name, "Subjects": n, "Seed": seed, "NoiseScale": noise_scale,
                                     "OrganDelays": bool(organ_delays),
                                     "Frames": frames.n_frames,
                                     "PsfFwhmMm": fwhm, "Units": units, "Grid": list(p.shape),
                                     "VoxelSizeMm": list(p.voxel_mm), "GridNote": p.note,
                                     "Split": {"train": n_train, "val": n_val, "test": n_test}},
        }
        (tmp / "dataset_description.json").write_text(json.dumps(description, indent=2) + "\n")
        lines = ["participant_id\tsplit\tinput_scale\tinput_delay_min"]
        lines += [f"{sid}\t{split}\t{scale:.6g}\t{delay:.6g}" for (sid, scale, delay), split in zip(rows, splits)]
        (tmp / "participants.tsv").write_text("\n".join(lines) + "\n")
        (tmp / "participants.json").write_text(json.dumps({
            "split": {"Description": "data split of this subject (the paper's patient-wise 10/4/9 split)",
                      "Levels": {"train": "training", "val": "validation", "test": "test"}},
            "input_scale": {"Description": "factor on Feng's input function"},
            "input_delay_min": {"Description": "delay of the input function", "Units": "min"},
        }, indent=2) + "\n")
        truth_root = tmp.joinpath(*TRUTH_DIR)
        (truth_root / "dataset_description.json").write_text(json.dumps({
            "Name": "ground truth of the jaxkin phantom", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "jaxkin", "Version": __version__}],
        }, indent=2) + "\n")
        (tmp / "README").write_text(
            "Simulated dynamic FDG PET (jaxkin phantom). Ground-truth parameter maps are under "
            "derivatives/groundtruth; the split is in participants.tsv. " + p.note + "\n")
    return out
