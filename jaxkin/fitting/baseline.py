"""The paper's conventional baseline: scipy ``curve_fit`` on an exact NumPy implementation of the same models.

:class:`NumpyModel` evaluates the exact frame-averaged model (piecewise-linear input, exact integrals of the
exponential convolution over every knot interval, frame boundaries on knots) in float64 NumPy, independently of
the JAX evaluators: its own closed-form recurrence over the knots of :func:`jaxkin.input_function.merged_knots`; only
the model's description (parameter names, bounds) comes from :func:`jaxkin.kinetics.get_model`. :func:`curve_fit_tac` fits one TAC with the paper's settings (``method="trf"``, the model's bounds,
``p0 = [0.1, 0.1, 0.01, 0.01]`` for the FDG model, ``diff_step = 1e-3``); :func:`curve_fit_tacs` loops it over
``[N, F]`` TACs (a Python loop per voxel: this is the baseline jaxkin is measured against, not a fast path).
Units: minutes, 1/min, kBq/ml.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from jaxkin.frames import FrameSchedule
from jaxkin.input_function import InputFunction, merged_knots
from jaxkin.kinetics import get_model

__all__ = ["NumpyModel", "PAPER_P0", "curve_fit_tac", "curve_fit_tacs"]

#: The paper's starting point for (K1, k2, k3, vB).
PAPER_P0 = {"2tcmirr": (0.1, 0.1, 0.01, 0.01), "1tcm": (0.1, 0.1, 0.01), "2tcm": (0.1, 0.1, 0.01, 0.01, 0.01)}

_TERMS = 14
_PHI1 = np.array([1.0 / math.factorial(k + 1) for k in range(_TERMS)])
_PHI2 = np.array([1.0 / math.factorial(k + 2) for k in range(_TERMS)])
_ALPHA = np.array([(k + 1) / math.factorial(k + 2) for k in range(_TERMS)])
_PSI3 = np.array([1.0 / (math.factorial(k + 1) * (k + 3)) for k in range(_TERMS)])


def _series(x, coefficients):
    acc = np.full_like(x, coefficients[-1])
    for c in coefficients[-2::-1]:
        acc = acc * -x + c
    return acc


def _interval_coefficients(x):
    """``E, phi1, alpha, phi2, psi3`` of ``x = rate * h`` (see :mod:`jaxkin.kinetics._expint` for the definitions)."""
    small = x < 1.0
    xs = np.where(small, 1.0, x)
    e = np.exp(-x)
    es = np.exp(-xs)
    ome = -np.expm1(-xs)
    phi1 = np.where(small, _series(x, _PHI1), ome / xs)
    phi2 = np.where(small, _series(x, _PHI2), (xs - ome) / xs**2)
    alpha = np.where(small, _series(x, _ALPHA), (ome - xs * es) / xs**2)
    psi3 = np.where(small, _series(x, _PSI3), (0.5 * xs**2 - ome + xs * es) / xs**3)
    return e, phi1, alpha, phi2, psi3


class NumpyModel:
    """Exact frame-averaged compartment model in float64 NumPy for one scan (input function + frames).

    ``model(params [P]) -> [F]`` kBq/ml. The convolution with ``e^{-rate t}`` over the knots of the input (frame
    boundaries added) is ``I(t_{j+1}) = E_j I(t_j) + b_j``, solved in closed form as
    ``e^{-rate t_{j+1}} cumsum(b_k e^{rate t_{k+1}})`` (valid while ``rate * scan length < 700``).
    """

    def __init__(self, input_function: InputFunction, frames: FrameSchedule, model: str = "2tcmirr",
                 blood: InputFunction | None = None):
        self.model = get_model(model)
        times, values, frame = merged_knots(input_function, frames)
        self._t = times - times[0]
        self._h = np.diff(times)
        self._c0, self._c1 = values[:-1], values[1:]
        self._frame = frame
        self._n_frames = frames.n_frames
        self._duration = frames.duration
        b = blood if blood is not None else input_function
        self.blood_mean = (b.integral(frames.end) - b.integral(frames.start)) / frames.duration
        self.integral_mean = self.frame_conv(0.0)

    def frame_conv(self, rate: float) -> np.ndarray:
        """Frame means of ``C_p * e^{-rate t}`` ``[F]`` (kBq/ml·min); ``rate`` in 1/min, >= 0."""
        rate = float(max(rate, 0.0))
        if rate * self._t[-1] > 700.0:
            raise ValueError(f"rate {rate:g} /min is too fast for the closed-form recurrence over this scan")
        h, c0, c1 = self._h, self._c0, self._c1
        e, phi1, alpha, phi2, psi3 = _interval_coefficients(rate * h)
        b = h * (c0 * alpha + c1 * phi2)
        grow = np.exp(rate * self._t[1:])
        i_end = np.cumsum(b * grow) / grow
        i_start = np.concatenate([[0.0], i_end[:-1]])
        interval = i_start * h * phi1 + h**2 * (c0 * psi3 + c1 * (phi2 - psi3))
        sums = np.bincount(self._frame, weights=interval, minlength=self._n_frames + 1)[: self._n_frames]
        return sums / self._duration

    def __call__(self, params) -> np.ndarray:
        p = np.asarray(params, np.float64)
        name = self.model.name
        if name == "2tcmirr":
            k1, k2, k3, vb = p
            lam = k2 + k3
            if lam <= 0:
                tissue = k1 * self.integral_mean
            else:
                tissue = k1 / lam * (k3 * self.integral_mean + k2 * self.frame_conv(lam))
        elif name == "1tcm":
            k1, k2, vb = p
            tissue = k1 * self.frame_conv(k2)
        else:
            k1, k2, k3, k4, vb = p
            s = k2 + k3 + k4
            split = math.sqrt(max(s * s - 4 * k2 * k4, 1e-8))
            a1, a2 = 0.5 * (s - split), 0.5 * (s + split)
            tissue = k1 / split * ((k3 + k4 - a1) * self.frame_conv(a1) + (a2 - k3 - k4) * self.frame_conv(a2))
        return (1.0 - vb) * tissue + vb * self.blood_mean


def curve_fit_tac(tac, model: NumpyModel, *, weights=None, p0=None, lower=None, upper=None,
                  diff_step: float = 1e-3, max_nfev: int | None = None):
    """Fit one TAC ``[F]`` with ``scipy.optimize.curve_fit`` (trf, bounds, the paper's p0 and diff_step).

    ``weights [F]`` (optional) enter as ``sigma = 1/sqrt(w)``. A parameter with ``lower == upper`` is held at that
    value and the others fitted (curve_fit of the free parameters alone). Returns ``(params [P], sse, ok)`` where
    ``sse`` is the weighted SSE of the returned parameters and ``ok`` is False when curve_fit raised (the start is
    returned).
    """
    from scipy.optimize import curve_fit

    m = model.model
    lo = np.array(lower if lower is not None else m.lower, np.float64)
    hi = np.array(upper if upper is not None else m.upper, np.float64)
    start = np.clip(np.array(p0 if p0 is not None else PAPER_P0[m.name], np.float64), lo, hi)
    y = np.asarray(tac, np.float64)
    w = np.ones_like(y) if weights is None else np.asarray(weights, np.float64)
    sigma = 1.0 / np.sqrt(np.maximum(w, 1e-300))
    free = lo < hi

    def full(q):
        p = start.copy()
        p[free] = q
        return p

    ok, params = True, start
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q, _ = curve_fit(lambda _x, *q: model(full(q)), np.arange(y.shape[0], dtype=np.float64), y,
                             p0=start[free], sigma=sigma, bounds=(lo[free], hi[free]), method="trf",
                             diff_step=diff_step, max_nfev=max_nfev)
        params = full(q)
    except (RuntimeError, ValueError):
        ok = False
    sse = float(np.sum(w * (model(params) - y) ** 2))
    return params, sse, ok


def curve_fit_tacs(tacs, model: NumpyModel, *, weights=None, progress: bool = False, **kwargs):
    """:func:`curve_fit_tac` over ``tacs [N, F]`` (``weights [F]`` or ``[N, F]``) -> ``(params [N, P], sse [N], ok [N])``."""
    tacs = np.asarray(tacs, np.float64)
    n = tacs.shape[0]
    params = np.zeros((n, model.model.n_params))
    sse = np.zeros(n)
    ok = np.zeros(n, bool)
    w = None if weights is None else np.broadcast_to(np.asarray(weights, np.float64), tacs.shape)
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="curve_fit", unit="TAC")
    for i in it:
        params[i], sse[i], ok[i] = curve_fit_tac(tacs[i], model, weights=None if w is None else w[i], **kwargs)
    return params, sse, ok
