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

from jaxkin.errors import InputError
from jaxkin.frames import FrameSchedule
from jaxkin.input_function import InputFunction
from jaxkin.kinetics import FDG_MODEL, get_model

#: The label map's table: index -> organ (0 is outside the body).
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
#: The labels that are pure blood (vB = 1): their TAC is the input function's frame means.
BLOOD_LABELS = ("blood_pool", "aorta")

#: Per-subject variation: each organ parameter is multiplied by a log-normal factor of this SD (log scale).
SUBJECT_SD = 0.10
#: Intra-organ heterogeneity: a smooth log-normal field of this SD (log scale), mean 1, correlation ~HETEROGENEITY_MM.
HETEROGENEITY_SD = 0.10
#: The heterogeneity's correlation length (mm).
HETEROGENEITY_MM = 20.0
#: Arrival of the input at each organ relative to the measured input (the descending aorta), in seconds (positive =
#: later), applied with ``organ_delays=True``: the bolus passes the right heart and the lungs, then the left ventricle,
#: before the descending aorta; it reaches the abdominal organs, the pelvis and the bladder wall later (the torso has no
#: legs; "body", muscle and fat down to the pelvis, stands for the late periphery). Our choices of a few seconds,
#: inside the -10 ... +30 s that the delay fit (:mod:`jaxkin.fitting.delay`) searches; lesions take the delay of the liver (their usual host).
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
#: The range of the input's per-subject delay (min), drawn uniformly.
INPUT_DELAY_MIN = (0.1, 0.3)

#: Noise constant s at noise_scale = 1 (kBq/ml*min): about 3.6% SD in a late (300 s) liver frame voxel.
NOISE_S = 0.06

#: The ground truth's parameters (K1, k2, k3, vB) and maps (those and Ki), from the kinetic model.
PARAM_NAMES = get_model(FDG_MODEL).param_names
#: The ground truth's maps: the parameters and Ki.
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
        raise InputError(f"preset: unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


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


def draw_anatomy(rng: np.random.Generator, preset: Preset) -> np.ndarray:
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
        host_index = label_index(host)
        candidates = np.argwhere(lab == host_index)
        if candidates.size == 0:
            continue
        centre = candidates[rng.integers(len(candidates))]
        radius = max(rng.uniform(6.0, 14.0), 0.6 * vox.max())
        grid = np.ogrid[: preset.shape[0], : preset.shape[1], : preset.shape[2]]
        dist2 = sum(((g - c) * v) ** 2 for g, c, v in zip(grid, centre, vox))
        lab[(dist2 <= radius**2) & (lab == host_index)] = 11
    return lab


def label_index(name: str) -> int:
    """The index of the label called ``name`` in :data:`LABELS`."""
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


def draw_parameter_maps(rng: np.random.Generator, preset: Preset, labels: np.ndarray):
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
    blood = np.isin(labels, [label_index(n) for n in BLOOD_LABELS])
    hetero[blood] = 1.0
    truth *= hetero
    np.clip(truth[..., 3], 0.0, 1.0, out=truth[..., 3])
    return truth, organ_params
