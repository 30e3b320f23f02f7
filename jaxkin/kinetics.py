"""Exact, frame-averaged compartment models as pure JAX functions.

Every model's tissue curve is a sum of exponential convolutions of the plasma input ``C_p``,

    C_T(t) = sum_k a_k (C_p * e^{-b_k t})(t),        C(t) = (1 - vB) C_T(t) + vB C_b(t),

with amplitudes ``a_k`` and rates ``b_k`` that depend on the micro-parameters (a rate of 0 is the running
integral of ``C_p``). ``C_b`` is the whole-blood curve, by default the input itself (an image-derived
input). Model values are **frame averages** over ``[start, start + duration]``.

Three interchangeable evaluators of the frame-averaged convolution ``conv(b)[f]`` share the models:

* :class:`KineticInput` (:func:`prepare`, the default): the exact convolution is tabulated once per scan,
  in float64, on a grid of rates together with its analytic rate derivative, and any rate is evaluated by
  cubic Hermite interpolation: O(frames) per voxel, differentiable, and accurate to ~1e-8 relative.
* :class:`KnotGrid` (:func:`prepare_exact`): the exact recurrence over every knot of the input (a
  parallel scan), O(knots) per voxel; it is the reference and is differentiable in the input too.
* :class:`UniformGrid` (:func:`prepare_convolve`): the paper's style, a ``jnp.convolve`` on a uniform
  fine grid with rectangle-rule quadrature; first-order accurate, for cross-checks only.

Units: time in minutes, K1 in ml/cm^3/min, rates in 1/min, activity in kBq/ml, vB dimensionless.
Parameter order is ``K1, k2, k3, vB`` (``K1, k2, k3, k4, vB`` for the reversible model).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxkin._expint import interval_coefficients, phi_functions
from jaxkin.frames import FrameSchedule
from jaxkin.input_function import InputFunction

__all__ = [
    "KineticInput",
    "KnotGrid",
    "RateGrid",
    "UniformGrid",
    "prepare",
    "prepare_exact",
    "prepare_convolve",
    "DelayedInput",
    "prepare_delayed",
    "tac_with_delay",
    "KineticModel",
    "MODELS",
    "BOUNDS_PRESETS",
    "DEFAULT_BOUNDS",
    "DEFAULT_DELAY_RANGE",
    "resolve_bounds",
    "check_bound_names",
    "UNITS",
    "FDG_MODEL",
    "tacs_in_chunks",
    "get_model",
    "one_tissue",
    "two_tissue_irreversible",
    "two_tissue",
]

# --------------------------------------------------------------------------------------------------
# Evaluators of the frame-averaged exponential convolution
# --------------------------------------------------------------------------------------------------


def merged_knots(input_function: InputFunction, frames: FrameSchedule):
    """Knots of the input with every frame boundary added, and the frame of each knot interval.

    Frames may start before an input that starts at zero (a scan started before the injection): the input and the
    tissue are zero there."""
    if frames.start[0] < input_function.start - 1e-9:
        if input_function.values[0] != 0.0:
            raise ValueError(
                f"the scan starts at {frames.start[0]:g} min, before the input function "
                f"(first sample at {input_function.start:g} min, not zero)"
            )
        input_function = InputFunction(np.concatenate([[frames.start[0]], input_function.times]),
                                       np.concatenate([[0.0], input_function.values]))
    if frames.end[-1] > input_function.end + 1e-9:
        raise ValueError(
            f"the input function does not cover the scan: it ends at {input_function.end:g} min "
            f"but the last frame ends at {frames.end[-1]:g} min"
        )
    times = np.union1d(input_function.times, np.concatenate([frames.start, frames.end]))
    times = times[(times >= input_function.start) & (times <= input_function.end)]
    values = input_function(times)
    mid = 0.5 * (times[1:] + times[:-1])
    frame = np.searchsorted(frames.start, mid, side="right") - 1
    inside = (frame >= 0) & (mid < frames.end[np.clip(frame, 0, None)])
    frame = np.where(inside, frame, frames.n_frames)  # n_frames = "in no frame", dropped
    return times, values, frame.astype(np.int32)


def _blood_frame_means(blood: InputFunction, frames: FrameSchedule) -> np.ndarray:
    """Exact frame means of a piecewise-linear curve."""
    return (blood.integral(frames.end) - blood.integral(frames.start)) / frames.duration


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KnotGrid:
    """Exact evaluator: the input on its knots (frame boundaries included). Build with :func:`prepare_exact`.

    Leaves: ``times [N]`` (min), ``values [N]`` (kBq/ml), ``interval_frame [N-1]`` (frame index of each knot
    interval, ``F`` for none), ``frame_duration [F]`` (min), ``blood_mean [F]`` (kBq/ml).
    """

    times: jax.Array
    values: jax.Array
    interval_frame: jax.Array
    frame_duration: jax.Array
    blood_mean: jax.Array

    @property
    def integral_mean(self):
        """Frame means of the running integral ``int_0^t C_p``, ``[F]``."""
        return self.frame_conv(0.0)

    def frame_conv(self, rate):
        """Frame means of ``(C_p * e^{-rate t})``; ``rate`` scalar (1/min, >= 0) -> ``[F]`` (kBq/ml*min)."""
        rate = jnp.asarray(rate, self.values.dtype)
        h = jnp.diff(self.times)
        c0, c1 = self.values[:-1], self.values[1:]
        e, phi1, alpha, phi2, psi3 = interval_coefficients(rate * h)
        # I(t_{j+1}) = E_j I(t_j) + b_j: a linear recurrence, solved by an associative scan.
        b = h * (c0 * alpha + c1 * phi2)

        def compose(left, right):
            return left[0] * right[0], right[0] * left[1] + right[1]

        _, i_end = jax.lax.associative_scan(compose, (e, b))
        i_start = jnp.concatenate([jnp.zeros((1,), b.dtype), i_end[:-1]])
        interval_integral = i_start * h * phi1 + h**2 * (c0 * psi3 + c1 * (phi2 - psi3))
        n_frames = self.frame_duration.shape[0]
        sums = jax.ops.segment_sum(interval_integral, self.interval_frame, num_segments=n_frames + 1)
        return sums[:n_frames] / self.frame_duration


def prepare_exact(
    input_function: InputFunction,
    frames: FrameSchedule,
    blood: InputFunction | None = None,
    dtype=None,
    pad_to: int = 1,
) -> KnotGrid:
    """The exact knot-recurrence evaluator for one scan (see :class:`KnotGrid`).

    ``blood`` is the whole-blood curve for the vB term; by default the input function itself.
    ``pad_to`` rounds the knot count up to a multiple (zero-length intervals, which contribute nothing),
    so that scans with slightly different sampling share one compiled program.
    """
    times, values, interval_frame = merged_knots(input_function, frames)
    n_pad = -len(times) % pad_to
    times = np.concatenate([times, np.full(n_pad, times[-1])])
    values = np.concatenate([values, np.full(n_pad, values[-1])])
    interval_frame = np.concatenate([interval_frame, np.full(n_pad, frames.n_frames, np.int32)])
    blood_mean = _blood_frame_means(blood if blood is not None else input_function, frames)
    dtype = dtype or jnp.zeros(()).dtype
    return KnotGrid(
        times=jnp.asarray(times, dtype),
        values=jnp.asarray(values, dtype),
        interval_frame=jnp.asarray(interval_frame),
        frame_duration=jnp.asarray(frames.duration, dtype),
        blood_mean=jnp.asarray(blood_mean, dtype),
    )


@jax.jit
def _tabulate(exact: KnotGrid, rates):
    """Values and rate derivatives of ``exact.frame_conv`` at ``rates [G]`` -> two ``[G, F]`` arrays."""
    return jax.vmap(lambda r: jax.jvp(exact.frame_conv, (r,), (jnp.ones_like(r),)))(rates)


@dataclasses.dataclass(frozen=True)
class RateGrid:
    """The rate grid of a :class:`KineticInput`: ``lam_i = offset * (exp(i * step) - 1)``, i = 0..size-1.

    Uniform in ``log(lam + offset)``: dense near 0 (spacing ``offset * step``), geometric at large rates
    (relative spacing ``step``). Rates outside ``[0, lam_i[-1]]`` are clamped to the grid.
    """

    offset: float = 0.05
    step: float = 0.025
    size: int = 214  # reaches 10.2 1/min

    @property
    def rates(self) -> np.ndarray:
        return self.offset * np.expm1(self.step * np.arange(self.size))

    @property
    def max_rate(self) -> float:
        return float(self.rates[-1])

    @classmethod
    def up_to(cls, max_rate: float, offset: float = 0.05, step: float = 0.025) -> "RateGrid":
        size = int(np.ceil(np.log1p(max_rate / offset) / step)) + 1
        return cls(offset=offset, step=step, size=max(size, 2))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KineticInput:
    """Fast evaluator: per-scan tables of the exact frame-averaged convolution. Build with :func:`prepare`.

    Leaves: ``table [G, F]`` (kBq/ml*min) and ``slope [G, F]`` (its derivative in ``u = log(rate + offset)``)
    on the rates of ``grid``; ``blood_mean [F]`` (kBq/ml); ``frame_start``, ``frame_duration [F]`` (min).
    Instances for several scans with the same frame count and grid stack along a leading axis (``jax.vmap``
    over the leaves), so a training batch can carry each sample's own input function.
    """

    table: jax.Array
    slope: jax.Array
    blood_mean: jax.Array
    frame_start: jax.Array
    frame_duration: jax.Array
    grid: RateGrid = dataclasses.field(metadata=dict(static=True), default=RateGrid())

    @property
    def integral_mean(self):
        """Frame means of the running integral ``int_0^t C_p`` (the rate-0 convolution), ``[F]``."""
        return self.table[..., 0, :]

    def frame_conv(self, rate):
        """Frame means of ``(C_p * e^{-rate t})``; ``rate`` any shape ``[...]`` (1/min) -> ``[..., F]``."""
        return self._hermite(rate, derivative=False)

    def frame_conv_and_derivative(self, rate):
        """``frame_conv(rate)`` and its derivative in ``rate``, two ``[..., F]`` arrays, from one table lookup.

        The derivative is 0 outside the grid's range of rates, where :meth:`frame_conv` is clamped."""
        return self._hermite(rate, derivative=True)

    def _hermite(self, rate, derivative: bool):
        """Cubic Hermite interpolation of the table in ``u = log(rate + offset)`` (and optionally d/drate)."""
        g = self.grid
        rate = jnp.asarray(rate, self.table.dtype)
        clipped = jnp.clip(rate, 0.0, g.max_rate)
        pos = jnp.log1p(clipped / g.offset) / g.step
        i = jnp.clip(jnp.floor(pos), 0, g.size - 2).astype(jnp.int32)
        s = (pos - i)[..., None]
        s2, s3 = s * s, s * s * s
        t0, t1, d0, d1 = self.table[i], self.table[i + 1], self.slope[i], self.slope[i + 1]
        value = (2 * s3 - 3 * s2 + 1) * t0 + (3 * s2 - 2 * s3) * t1 + g.step * ((s3 - 2 * s2 + s) * d0 + (s3 - s2) * d1)
        if not derivative:
            return value
        d_pos = (6 * s2 - 6 * s) * (t0 - t1) + g.step * ((3 * s2 - 4 * s + 1) * d0 + (3 * s2 - 2 * s) * d1)
        inside = (rate >= 0.0) & (rate <= g.max_rate)
        return value, d_pos * jnp.where(inside, 1.0 / ((clipped + g.offset) * g.step), 0.0)[..., None]


def prepare(
    input_function: InputFunction,
    frames: FrameSchedule,
    blood: InputFunction | None = None,
    *,
    grid: RateGrid = RateGrid(),
    dtype=None,
) -> KineticInput:
    """Tabulate the frame-averaged convolution of ``input_function`` for ``frames`` (done once per scan).

    The table and its rate derivative are computed exactly (the knot recurrence, differentiated with
    ``jax.jvp``) in float64 on the host, then stored in ``dtype`` (default: JAX's default float).
    ``blood`` is the whole-blood curve for the vB term; by default the input function itself.
    The default grid covers rates 0 to 10.2 1/min with an interpolation error below 1e-7 relative.
    """
    dtype = dtype or jnp.zeros(()).dtype
    with jax.enable_x64(True):
        exact = prepare_exact(input_function, frames, blood, dtype=jnp.float64, pad_to=1024)
        rates = jnp.asarray(grid.rates, jnp.float64)
        table, d_rate = _tabulate(exact, rates)
        slope = d_rate * (rates + grid.offset)[:, None]  # d/du = d/drate * (rate + offset)
        table, slope = np.asarray(table), np.asarray(slope)
    return KineticInput(
        table=jnp.asarray(table, dtype),
        slope=jnp.asarray(slope, dtype),
        blood_mean=jnp.asarray(exact.blood_mean, dtype),
        frame_start=jnp.asarray(frames.start, dtype),
        frame_duration=jnp.asarray(frames.duration, dtype),
        grid=grid,
    )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class UniformGrid:
    """Paper-style evaluator: ``jnp.convolve`` on a uniform grid of step ``dt`` minutes. For cross-checks.

    Leaves: ``values [M]`` (input on the grid ``t_m = m dt``), ``frame_weights [F, M]`` (averaging
    matrix of each frame over the grid points inside it), ``blood_mean [F]``; static ``dt``.
    Converges to the exact model at first order in ``dt``.
    """

    values: jax.Array
    frame_weights: jax.Array
    blood_mean: jax.Array
    dt: float = dataclasses.field(metadata=dict(static=True), default=1.0 / 60.0)

    @property
    def integral_mean(self):
        """Frame means of the running integral ``int_0^t C_p`` on the grid, ``[F]``."""
        return self.frame_conv(0.0)

    def frame_conv(self, rate):
        """Frame means of ``(C_p * e^{-rate t})`` on the grid; ``rate`` scalar -> ``[F]``."""
        t = jnp.arange(self.values.shape[0], dtype=self.values.dtype) * self.dt
        kernel = jnp.exp(-jnp.asarray(rate, self.values.dtype) * t)
        conv = jnp.convolve(self.values, kernel)[: self.values.shape[0]] * self.dt
        return self.frame_weights @ conv


def prepare_convolve(
    input_function: InputFunction, frames: FrameSchedule, dt: float = 1.0 / 60.0, dtype=None
) -> UniformGrid:
    """The uniform-grid ``jnp.convolve`` evaluator with step ``dt`` minutes (see :class:`UniformGrid`)."""
    if input_function.start < 0:
        raise ValueError("prepare_convolve: the uniform grid starts at t = 0; input samples before 0 are not supported")
    dtype = dtype or jnp.zeros(()).dtype
    n = int(np.ceil(frames.end[-1] / dt)) + 1
    t = np.arange(n) * dt
    values = input_function(np.minimum(t, input_function.end))
    # Midpoint-rule frame means: grid points with start <= t_m < end, each weighted 1/count.
    inside = (t[None, :] >= frames.start[:, None] - 1e-12) & (t[None, :] < frames.end[:, None] - 1e-12)
    weights = inside / np.maximum(inside.sum(axis=1, keepdims=True), 1)
    return UniformGrid(
        values=jnp.asarray(values, dtype),
        frame_weights=jnp.asarray(weights, dtype),
        blood_mean=jnp.asarray(_blood_frame_means(input_function, frames), dtype),
        dt=float(dt),
    )


# --------------------------------------------------------------------------------------------------
# A delayed input: the convolution at any time, exactly in time and by Hermite interpolation in the rate
# --------------------------------------------------------------------------------------------------
#
# A positive delay d shifts the input (and the whole blood) later: C_d(t) = C(t - d). Since a convolution commutes
# with a shift, (C_d * e^{-lam .})(t) = I_lam(t - d) with I_lam = C * e^{-lam .}, and the whole model curve is the
# undelayed one shifted by d. So the frame mean of the delayed model over [a, b] is
#
#     ( J_lam(b - d) - J_lam(a - d) ) / (b - a),      J_lam(t) = int_{-inf}^t I_lam(s) ds,
#
# the running integral of the undelayed convolution at the frame boundaries moved by -d: the knots are shifted,
# nothing is resampled. On a knot interval [t_j, t_{j+1}] of the (piecewise-linear) input, C(t_j + tau) = c_j + s_j tau,
# and with x = lam tau and phi_k of :func:`jaxkin._expint.phi_functions` (phi_k' = k phi_{k+1} - phi_k), exactly
#
#     I_lam(t_j + tau) = (1 - x phi_1) I_j + c_j tau phi_1 + s_j tau^2 phi_2                  (= dJ/dt)
#     J_lam(t_j + tau) = J_j + I_j tau phi_1 + c_j tau^2 phi_2 + s_j tau^3 phi_3
#     dJ/dlam          = J_j' + I_j' tau phi_1 + I_j tau^2 (phi_2 - phi_1) + c_j tau^3 (2 phi_3 - phi_2)
#                        + s_j tau^4 (3 phi_4 - phi_3)
#
# with I_j = I_lam(t_j), J_j = J_lam(t_j) the state at the knot and ' = d/dlam (lam = 0: J is the double integral,
# J_j + I_j tau + c_j tau^2/2 + s_j tau^3/6). The knot states I_j, J_j and their lam derivatives are tabulated once
# per scan at every knot for the rates of a RateGrid (float64: the knot recurrence of KnotGrid, differentiated by
# jax.jvp); a voxel's rate gets its knot states by cubic Hermite interpolation in u = log(lam + offset) (as
# KineticInput interpolates its frame means: ~1e-8 relative) and the time evolution inside the knot interval is then
# the exact closed form above at the voxel's own rate. The rate-0 term and the blood term are exact. The derivatives
# in the rate and the delay are analytic (d/d delay = -d/dt), also as the JVP of the evaluators, so forward-mode
# autodiff through them is cheap. Evaluation is O(frame boundaries) per voxel: two gathers of 4 table entries each.


#: Delay spacing (min) of :attr:`DelayedInput.delay_table`: 0.5 s (interpolation error ~3e-6 of a TAC's maximum);
#: :attr:`DelayedInput.delay_table_1d` (the rate-0 term and the blood, only C1 in the delay) is ``_FINE`` times finer.
DELAY_TABLE_STEP = 0.5 / 60.0
_FINE = 16


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DelayedInput:
    """Evaluator of frame-averaged convolutions of a **delayed** input, the delay per voxel. Build with
    :func:`prepare_delayed`.

    Leaves: ``knots [K]`` (min; the input's and the whole blood's knots), ``knot_table [K, 8]``: per knot interval j
    (the last row repeats the one before) ``t_j`` (min), the input's ``c_j`` and slope ``s_j`` (kBq/ml(/min)), the
    whole blood's value and slope, ``int C_b`` (kBq/ml*min), and the rate-0 knot states ``I_0 = int C_p``,
    ``J_0 = int int C_p`` (one gather per boundary fetches them all), ``tables [G, K, 4]``: for the grid rates, at every
    knot, ``I_lam``, ``dI_lam/du``, ``J_lam``, ``dJ_lam/du`` (``u = log(lam + offset)``), ``boundaries [B]`` (the
    distinct frame boundaries, min), ``frame_matrix [B, F]`` (frame f's mean of a running integral X is
    ``(X(end_f) - X(start_f)) / duration_f = (X @ frame_matrix)_f``), ``frame_start``,
    ``frame_duration [F]`` (min); static ``grid``, ``max_advance`` (the most negative delay it serves, as a positive
    number of minutes) and ``note`` (what was assumed: the input's last value held past its end, or ""); ``bucket``
    (int, the knot interval at each time of a uniform grid from ``bucket_origin`` with ``1/bucket_scale`` minutes
    steps) and static ``bucket_steps`` locate a time's knot interval without a binary search.
    ``delay_table [G * D, 4 * F]``: the frame means of the convolution at every grid rate and every delay of a grid
    ``delay_step`` apart from ``-max_advance`` to ``max_delay`` (static), with their derivatives in ``u`` and in the
    delay and the mixed one (``conv, d/dd, d/du, d2/dudd``); ``delay_table_1d [D, 4 * F]`` those of the rate-0 term
    and the blood (``integral, d/dd, blood, d/dd``): :meth:`fdg_terms_tabulated` interpolates them (cubic Hermite in
    ``u`` and in the delay), the fast path of the fits' Levenberg–Marquardt iterations.
    Delays are in minutes (positive = the input arrives later).
    """

    knots: jax.Array
    knot_table: jax.Array
    tables: jax.Array
    bucket: jax.Array
    bucket_origin: jax.Array
    bucket_scale: jax.Array
    boundaries: jax.Array
    frame_matrix: jax.Array
    frame_start: jax.Array
    frame_duration: jax.Array
    delay_table: jax.Array
    delay_table_1d: jax.Array
    grid: RateGrid = dataclasses.field(metadata=dict(static=True), default=RateGrid())
    max_advance: float = dataclasses.field(metadata=dict(static=True), default=10.0 / 60.0)
    note: str = dataclasses.field(metadata=dict(static=True), default="")
    bucket_steps: int = dataclasses.field(metadata=dict(static=True), default=2)
    max_delay: float = dataclasses.field(metadata=dict(static=True), default=30.0 / 60.0)
    delay_step: float = dataclasses.field(metadata=dict(static=True), default=DELAY_TABLE_STEP)

    def fdg_terms_tabulated(self, rate, delay):
        """:meth:`fdg_terms` from the tables of frame means over rates and delays (:attr:`delay_table`), cubic
        Hermite in ``u = log(rate + offset)`` and in the delay: four rows of one table and two of the other per TAC
        instead of locating 2x63 moved boundaries. ``rate``, ``delay [N]``; delays outside ``[-max_advance,
        max_delay]`` are clamped (derivative 0). Agrees with :meth:`fdg_terms` to ~1e-5 of the TAC's maximum."""
        g = self.grid
        dtype = self.delay_table.dtype
        n_delays = self.delay_table.shape[0] // g.size
        n_fine = self.delay_table_1d.shape[0]
        n_frames = self.delay_table.shape[-1] // 4
        rate = jnp.asarray(rate, dtype)
        delay = jnp.asarray(delay, dtype)
        clipped = jnp.clip(rate, 0.0, g.max_rate)
        pos = jnp.log1p(clipped / g.offset) / g.step
        i = jnp.clip(jnp.floor(pos), 0, g.size - 2).astype(jnp.int32)
        s = pos - i
        q = (delay + self.max_advance) / self.delay_step
        k = jnp.clip(jnp.floor(q), 0, n_delays - 2).astype(jnp.int32)
        t = jnp.clip(q - k, 0.0, 1.0)
        in_rate = ((rate >= 0.0) & (rate <= g.max_rate)).astype(dtype)
        in_delay = ((q >= 0.0) & (q <= n_delays - 1)).astype(dtype)

        def weights(x, step):  # Hermite weights of (node 0, node 1) x (value, derivative) and of their d/dx * step
            x2, x3 = x * x, x * x * x
            w = jnp.stack([jnp.stack([2 * x3 - 3 * x2 + 1, step * (x3 - 2 * x2 + x)], -1),
                           jnp.stack([3 * x2 - 2 * x3, step * (x3 - x2)], -1)], -2)  # [N, node, value|derivative]
            e = 6 * x2 - 6 * x
            dw = jnp.stack([jnp.stack([e, step * (3 * x2 - 4 * x + 1)], -1),
                            jnp.stack([-e, step * (3 * x2 - 2 * x)], -1)], -2)
            return w, dw

        def linear(x):  # the delay derivative: the tabulated derivatives interpolated linearly (no float32
            zero = jnp.zeros_like(x)  # cancellation of value differences over a short step)
            return jnp.stack([jnp.stack([zero, 1.0 - x], -1), jnp.stack([zero, x], -1)], -2)

        ws, dws = weights(s, g.step)
        wt, dwt = weights(t, self.delay_step)
        dwt = dwt * (in_delay / self.delay_step)[:, None, None]
        dws = dws * (in_rate / ((clipped + g.offset) * g.step))[:, None, None]
        # rows (rate node r, delay node d), each [a = value|d/du][b = value|d/ddelay] x F
        base = i * n_delays + k
        rows = self.delay_table[jnp.stack([base, base + 1, base + n_delays, base + n_delays + 1], -1)]
        rows = rows.reshape(rows.shape[0], 2, 2, 2, 2, n_frames)  # [N, r, d, a, b, F]
        w = jnp.stack([jnp.einsum("nra,ndb->nrdab", ws, wt), jnp.einsum("nra,ndb->nrdab", dws, wt),
                       jnp.einsum("nra,ndb->nrdab", ws, dwt)], 1).reshape(-1, 3, 16)
        conv, conv_rate, conv_delay = jnp.moveaxis(
            jnp.einsum("nkq,nqf->nkf", w, rows.reshape(-1, 16, n_frames)), 1, 0)
        # the rate-0 term and the blood (only C1 in the delay: a grid _FINE times finer)
        fine = self.delay_step / _FINE
        q1 = (delay + self.max_advance) / fine
        k1 = jnp.clip(jnp.floor(q1), 0, n_fine - 2).astype(jnp.int32)
        t1 = jnp.clip(q1 - k1, 0.0, 1.0)
        wt1, _ = weights(t1, fine)
        dwt1 = linear(t1) * ((q1 >= 0.0) & (q1 <= n_fine - 1)).astype(dtype)[:, None, None]
        rows1 = self.delay_table_1d[jnp.stack([k1, k1 + 1], -1)].reshape(-1, 2, 2, 2, n_frames)  # [N, d, c, b, F]
        w1 = jnp.stack([wt1, dwt1], 1).reshape(-1, 2, 4)  # [N, value|d/ddelay, (d, b)]
        x1 = jnp.einsum("nkq,nqcf->nkcf", w1, rows1.transpose(0, 1, 3, 2, 4).reshape(-1, 4, 2, n_frames))
        integral, integral_d = x1[:, 0, 0], x1[:, 1, 0]
        blood, blood_d = x1[:, 0, 1], x1[:, 1, 1]
        return conv, conv_rate, conv_delay, integral, integral_d, blood, blood_d

    def _locate(self, delay):
        """Knot interval ``j`` and offset ``tau >= 0`` of every boundary moved by ``-delay [...]`` -> ``[..., B]``, and
        the row of :attr:`knot_table` ``[..., B, 8]``."""
        t = self.boundaries - jnp.asarray(delay, self.knots.dtype)[..., None]
        # The knot interval by a lookup on a uniform grid of times (``bucket``: the last knot at or before each grid
        # time, one grid step back for rounding) and at most ``bucket_steps`` steps forward: much faster than a
        # binary search (jnp.searchsorted) on a CPU.
        m = jnp.floor((t - self.bucket_origin) * self.bucket_scale).astype(jnp.int32) - 1
        j = self.bucket[jnp.clip(m, 0, self.bucket.shape[0] - 1)]
        last = self.knots.shape[0] - 2
        for _ in range(self.bucket_steps):
            j = jnp.where((j < last) & (self.knots[jnp.minimum(j + 1, last + 1)] <= t), j + 1, j)
        j = jnp.clip(j, 0, last)
        row = self.knot_table[j]
        tau = jnp.maximum(t - row[..., 0], 0.0)  # before the first knot: tau = 0 at knot 0, where all is 0
        return j, tau, row

    def _means(self, running):
        """Frame means ``[..., F]`` from a running integral at the boundaries ``[..., B]`` (a matmul with
        :attr:`frame_matrix`: much faster on a CPU than two gathers along the last axis)."""
        return running @ self.frame_matrix

    def _running(self, rate, delay, derivatives: bool, located=None):
        """``J`` at the moved boundaries ``[..., B]`` (and ``dJ/drate``, ``dJ/ddelay``) for ``rate``, ``delay [...]``
        (``located``: :meth:`_locate` of ``delay``, if done already)."""
        g = self.grid
        rate = jnp.asarray(rate, self.knots.dtype)
        clipped = jnp.clip(rate, 0.0, g.max_rate)
        pos = jnp.log1p(clipped / g.offset) / g.step
        i = jnp.clip(jnp.floor(pos), 0, g.size - 2).astype(jnp.int32)
        s = (pos - i)[..., None]
        j, tau, row = located if located is not None else self._locate(delay)
        c0, slope = row[..., 1], row[..., 2]
        a = self.tables[i[..., None], j]  # [..., B, 4] at the lower grid rate
        b = self.tables[i[..., None] + 1, j]
        s2, s3 = s * s, s * s * s
        h00, h01 = 2 * s3 - 3 * s2 + 1, 3 * s2 - 2 * s3
        h10, h11 = g.step * (s3 - 2 * s2 + s), g.step * (s3 - s2)
        i_j = h00 * a[..., 0] + h01 * b[..., 0] + h10 * a[..., 1] + h11 * b[..., 1]
        j_j = h00 * a[..., 2] + h01 * b[..., 2] + h10 * a[..., 3] + h11 * b[..., 3]
        x = clipped[..., None] * tau
        p1, p2, p3, p4 = phi_functions(x, 4)
        t2 = tau * tau
        running = j_j + i_j * tau * p1 + t2 * (c0 * p2 + slope * tau * p3)
        if not derivatives:
            return running
        # d/drate: the Hermite interpolant's derivative (per u, then per rate) and the closed form's
        e00, e01 = 6 * s2 - 6 * s, 6 * s - 6 * s2
        e10, e11 = g.step * (3 * s2 - 4 * s + 1), g.step * (3 * s2 - 2 * s)
        du = jnp.where((rate >= 0.0) & (rate <= g.max_rate), 1.0 / ((clipped + g.offset) * g.step), 0.0)[..., None]
        i_d = (e00 * a[..., 0] + e01 * b[..., 0] + e10 * a[..., 1] + e11 * b[..., 1]) * du
        j_d = (e00 * a[..., 2] + e01 * b[..., 2] + e10 * a[..., 3] + e11 * b[..., 3]) * du
        inside = du > 0
        d_rate = j_d + i_d * tau * p1 + jnp.where(
            inside, i_j * t2 * (p2 - p1) + t2 * tau * (c0 * (2 * p3 - p2) + slope * tau * (3 * p4 - p3)), 0.0)
        d_delay = -((1.0 - x * p1) * i_j + c0 * tau * p1 + slope * t2 * p2)  # -dJ/dt = -I(t - delay)
        return running, d_rate, d_delay

    def frame_conv(self, rate, delay):
        """Frame means of ``(C_p(. - delay) * e^{-rate t})``: ``rate``, ``delay`` broadcastable ``[...]`` (1/min, min)
        -> ``[..., F]`` (kBq/ml*min). Differentiable (analytic JVP)."""
        return _delayed_conv(self, rate, delay)

    def frame_conv_and_derivatives(self, rate, delay):
        """``frame_conv(rate, delay)`` and its derivatives in ``rate`` and ``delay``: three ``[..., F]`` arrays."""
        rate, delay = jnp.broadcast_arrays(jnp.asarray(rate, self.knots.dtype), jnp.asarray(delay, self.knots.dtype))
        return tuple(self._means(x) for x in self._running(rate, delay, True))

    def fdg_terms(self, rate, delay):
        """Everything the irreversible two-tissue model and its Jacobian need, for ``rate``, ``delay [N]``, from one
        :meth:`_locate`: ``(conv, conv_rate, conv_delay, integral, integral_delay, blood, blood_delay)``, each
        ``[N, F]`` (the convolution, the rate-0 term and the blood term, with their derivatives)."""
        j, tau, row = located = self._locate(delay)
        conv = self._running(rate, delay, True, located)
        c0, slope, state, running = row[..., 1], row[..., 2], row[..., 6], row[..., 7]
        cb, slope_b = row[..., 3], row[..., 4]
        integral = running + tau * (state + tau * (c0 / 2 + slope * tau / 6))
        integral_d = -(state + tau * (c0 + slope * tau / 2))
        blood = row[..., 5] + tau * (cb + slope_b * tau / 2)
        blood_d = -(cb + slope_b * tau)
        stacked = jnp.stack(conv + (integral, integral_d, blood, blood_d), axis=-2)  # [N, 7, B]
        return tuple(jnp.moveaxis(self._means(stacked), -2, 0))

    def integral_mean(self, delay):
        """Frame means of ``int_0^t C_p(s - delay) ds`` (the rate-0 term), ``delay [...]`` (min) -> ``[..., F]``."""
        return _delayed_integral(self, delay)

    def integral_mean_and_derivative(self, delay, located=None):
        """``integral_mean(delay)`` and its derivative in ``delay``, two ``[..., F]`` arrays."""
        j, tau, row = located if located is not None else self._locate(delay)
        c0, slope, state, running = row[..., 1], row[..., 2], row[..., 6], row[..., 7]
        value = running + tau * (state + tau * (c0 / 2 + slope * tau / 6))
        return self._means(value), -self._means(state + tau * (c0 + slope * tau / 2))

    def blood_mean(self, delay):
        """Frame means of the delayed whole blood ``C_b(t - delay)``, ``delay [...]`` (min) -> ``[..., F]``."""
        return _delayed_blood(self, delay)

    def blood_mean_and_derivative(self, delay, located=None):
        """``blood_mean(delay)`` and its derivative in ``delay``, two ``[..., F]`` arrays."""
        j, tau, row = located if located is not None else self._locate(delay)
        cb, slope = row[..., 3], row[..., 4]
        value = row[..., 5] + tau * (cb + slope * tau / 2)
        return self._means(value), -self._means(cb + slope * tau)


@jax.custom_jvp
def _delayed_conv(dkin, rate, delay):
    rate, delay = jnp.broadcast_arrays(jnp.asarray(rate, dkin.knots.dtype), jnp.asarray(delay, dkin.knots.dtype))
    return dkin._means(dkin._running(rate, delay, False))


@_delayed_conv.defjvp
def _delayed_conv_jvp(primals, tangents):  # the tables are constants: their tangents are ignored
    dkin, rate, delay = primals
    _, d_rate, d_delay = tangents
    value, v_rate, v_delay = dkin.frame_conv_and_derivatives(rate, delay)
    return value, v_rate * jnp.asarray(d_rate)[..., None] + v_delay * jnp.asarray(d_delay)[..., None]


@jax.custom_jvp
def _delayed_integral(dkin, delay):
    return dkin.integral_mean_and_derivative(delay)[0]


@_delayed_integral.defjvp
def _delayed_integral_jvp(primals, tangents):
    dkin, delay = primals
    value, d = dkin.integral_mean_and_derivative(delay)
    return value, d * jnp.asarray(tangents[1])[..., None]


@jax.custom_jvp
def _delayed_blood(dkin, delay):
    return dkin.blood_mean_and_derivative(delay)[0]


@_delayed_blood.defjvp
def _delayed_blood_jvp(primals, tangents):
    dkin, delay = primals
    value, d = dkin.blood_mean_and_derivative(delay)
    return value, d * jnp.asarray(tangents[1])[..., None]


def _knot_states(times, values, rate):
    """``I_rate`` and ``J_rate`` at every knot of a piecewise-linear input (``times``, ``values [K]``) -> two ``[K]``."""
    h = jnp.diff(times)
    c0, c1 = values[:-1], values[1:]
    e, phi1, alpha, phi2, psi3 = interval_coefficients(rate * h)
    b = h * (c0 * alpha + c1 * phi2)

    def compose(left, right):
        return left[0] * right[0], right[0] * left[1] + right[1]

    _, i_end = jax.lax.associative_scan(compose, (e, b))
    i_start = jnp.concatenate([jnp.zeros((1,), b.dtype), i_end[:-1]])
    interval_integral = i_start * h * phi1 + h**2 * (c0 * psi3 + c1 * (phi2 - psi3))
    zero = jnp.zeros((1,), b.dtype)
    return jnp.concatenate([zero, i_end]), jnp.concatenate([zero, jnp.cumsum(interval_integral)])


@jax.jit
def _tabulate_states(times, values, rates):
    """``(I, dI/drate, J, dJ/drate)``, each ``[G, K]``, for ``rates [G]``."""
    def one(r):
        (i, j), (di, dj) = jax.jvp(lambda q: _knot_states(times, values, q), (r,), (jnp.ones_like(r),))
        return i, di, j, dj

    return jax.vmap(one)(rates)


@jax.jit
def _tabulate_delays(exact, rates, delays, fine):
    """The convolution's frame means and derivatives ``[G, D, F]`` at ``rates [G]`` x ``delays [D]``, and those of
    the rate-0 term and the blood ``[D_fine, 4, F]`` at ``fine``."""
    conv = exact.frame_conv_and_derivatives(rates[:, None], delays[None, :])
    one_d = jnp.stack([*exact.integral_mean_and_derivative(fine), *exact.blood_mean_and_derivative(fine)], -2)
    return (*conv, one_d)


def prepare_delayed(
    input_function: InputFunction,
    frames: FrameSchedule,
    blood: InputFunction | None = None,
    *,
    max_advance: float = 10.0 / 60.0,
    max_delay: float = 30.0 / 60.0,
    grid: RateGrid = RateGrid(),
    dtype=None,
) -> DelayedInput:
    """The :class:`DelayedInput` of a scan, for delays from ``-max_advance`` (min; the input arriving earlier) up.

    A negative delay reads the input up to ``max_advance`` after the last frame's end: where the input ends before
    that, its last value is held (said in the evaluator's ``note``). ``blood``: the whole-blood curve of the vB term
    (default: the input); it is delayed together with the input. Tables in float64 on the host, stored in ``dtype``.
    ``max_delay`` (min): the largest delay of the tabulated fast path (:meth:`DelayedInput.fdg_terms_tabulated`).
    """
    blood = blood if blood is not None else input_function
    need = float(frames.end[-1]) + max(float(max_advance), 0.0)
    times = np.union1d(input_function.times, blood.times)
    times = times[times <= need]
    note = ""
    if times[-1] < need - 1e-9:
        covered = min(input_function.end, blood.end)
        if covered < need - 1e-9:
            note = (f"the input ends at {covered * 60:.1f} s; for delays down to {-max_advance * 60:g} s its last value "
                    f"is held up to {need * 60:.1f} s")
        times = np.append(times, need)

    def sample(curve):
        return curve(np.clip(times, None, curve.end))

    values, blood_values = sample(input_function), sample(blood)
    if frames.start[0] < times[0] - 1e-9:  # the scan starts before the input: zero there
        times = np.concatenate([[frames.start[0] - 1.0], times])
        values, blood_values = np.concatenate([[0.0], values]), np.concatenate([[0.0], blood_values])
    blood_running = np.concatenate([[0.0], np.cumsum(0.5 * np.diff(times) * (blood_values[1:] + blood_values[:-1]))])
    boundaries = np.union1d(frames.start, frames.end)
    frame_matrix = np.zeros((boundaries.shape[0], frames.n_frames))
    frame_matrix[np.searchsorted(boundaries, frames.end), np.arange(frames.n_frames)] = 1.0 / frames.duration
    frame_matrix[np.searchsorted(boundaries, frames.start), np.arange(frames.n_frames)] = -1.0 / frames.duration
    dtype = dtype or jnp.zeros(()).dtype
    # the knot lookup grid: steps of the smallest knot spacing (at most 2^20 steps), so that a grid step holds few knots
    spacing = max(float(np.min(np.diff(times))), (times[-1] - times[0]) / (1 << 20))
    grid_times = times[0] + spacing * np.arange(int(np.ceil((times[-1] - times[0]) / spacing)) + 2)
    bucket = np.clip(np.searchsorted(times, grid_times, side="right") - 1, 0, len(times) - 2)
    per_step = int(np.max(np.searchsorted(times, grid_times + 2 * spacing, side="right")
                          - np.searchsorted(times, grid_times, side="right")))
    with jax.enable_x64(True):
        state, state_d, running, running_d = (np.asarray(a) for a in _tabulate_states(
            jnp.asarray(times, jnp.float64), jnp.asarray(values, jnp.float64), jnp.asarray(grid.rates, jnp.float64)))
    du = (grid.rates + grid.offset)[:, None]  # d/du = d/drate * (rate + offset)
    tables = np.stack([state, state_d * du, running, running_d * du], axis=-1)

    def slopes(v):
        d = np.diff(v) / np.diff(times)
        return np.append(d, d[-1])

    knot_table = np.stack([times, values, slopes(values), blood_values, slopes(blood_values), blood_running,
                           state[0], running[0]], axis=-1)
    as_dtype = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    max_advance, max_delay = float(max_advance), max(float(max_delay), -float(max_advance) + DELAY_TABLE_STEP)
    n_delays = int(np.ceil((max_delay + max_advance) / DELAY_TABLE_STEP - 1e-6)) + 1
    fields = dict(
        knots=times, knot_table=knot_table, tables=tables, boundaries=boundaries, bucket_origin=times[0],
        bucket_scale=1.0 / spacing, frame_matrix=frame_matrix, frame_start=frames.start,
        frame_duration=frames.duration)
    with jax.enable_x64(True):  # the tables over rates and delays, from the exact evaluator in float64
        exact = DelayedInput(**{k: jnp.asarray(v, jnp.float64) for k, v in fields.items()},
                             bucket=jnp.asarray(bucket, jnp.int32), delay_table=jnp.zeros(()),
                             delay_table_1d=jnp.zeros(()), bucket_steps=per_step + 1, grid=grid,
                             max_advance=max_advance)
        delays = -max_advance + DELAY_TABLE_STEP * np.arange(n_delays)
        fine = -max_advance + DELAY_TABLE_STEP / _FINE * np.arange((n_delays - 1) * _FINE + 1)
        conv, conv_rate, conv_delay, one_d = (np.asarray(a) for a in _tabulate_delays(
            exact, jnp.asarray(grid.rates), jnp.asarray(delays), jnp.asarray(fine)))
        conv_u = conv_rate * (grid.rates + grid.offset)[:, None, None]
        conv_ud = np.gradient(conv_delay, grid.step, axis=0, edge_order=2)  # uniform in u
    delay_table = np.stack([conv, conv_delay, conv_u, conv_ud], axis=-2).reshape(grid.size * n_delays, -1)
    delay_table_1d = one_d.reshape(fine.shape[0], -1)
    return DelayedInput(
        **{k: as_dtype(v) for k, v in fields.items()}, bucket=jnp.asarray(bucket, jnp.int32),
        bucket_steps=per_step + 1, delay_table=as_dtype(delay_table), delay_table_1d=as_dtype(delay_table_1d),
        grid=grid, max_advance=max_advance, note=note, max_delay=float(delays[-1]), delay_step=DELAY_TABLE_STEP,
    )


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------

_TINY = 1e-12


# Each model's ``_components_*(params)`` returns ``(integral_amplitude, amplitudes [..., K], rates [..., K], vB)``:
# C_T = integral_amplitude * int C_p + sum_k amplitudes_k (C_p * e^{-rates_k t}). ``integral_amplitude`` is None
# for models without an irreversible (rate-0) term, so that no work is spent on it.


def _components_1tcm(p):
    k1, k2, vb = p[..., 0], p[..., 1], p[..., 2]
    return None, k1[..., None], k2[..., None], vb


def _components_2tcmirr(p):
    k1, k2, k3, vb = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    lam = k2 + k3
    # K1/lam * [k3 * int C_p + k2 * (C_p * e^{-lam t})]; the _TINY terms keep k2 = k3 = 0 finite (-> K1 int C_p).
    denom = lam + 2 * _TINY
    return k1 * (k3 + _TINY) / denom, (k1 * (k2 + _TINY) / denom)[..., None], lam[..., None], vb


_MIN_SPLIT = 1e-4  # smallest separation of the two rates of the reversible model (1/min)


def _components_2tcm(p):
    k1, k2, k3, k4, vb = p[..., 0], p[..., 1], p[..., 2], p[..., 3], p[..., 4]
    s = k2 + k3 + k4
    # alpha_{1,2} = (s -/+ sqrt(s^2 - 4 k2 k4)) / 2. The split is kept >= _MIN_SPLIT so that the
    # (removable) singularity at alpha1 = alpha2 stays finite; it is only reached outside the bounds.
    split = jnp.sqrt(jnp.maximum(s * s - 4 * k2 * k4, _MIN_SPLIT**2))
    a1, a2 = 0.5 * (s - split), 0.5 * (s + split)
    amplitudes = jnp.stack([k1 * (k3 + k4 - a1) / split, k1 * (a2 - k3 - k4) / split], axis=-1)
    return None, amplitudes, jnp.stack([a1, a2], axis=-1), vb


def _model_tac(components, params, kin):
    integral_amplitude, amplitudes, rates, vb = components(jnp.asarray(params))
    conv = _frame_conv(kin, rates)  # [..., K, F]
    tissue = jnp.sum(amplitudes[..., None] * conv, axis=-2)
    if integral_amplitude is not None:
        tissue = tissue + integral_amplitude[..., None] * kin.integral_mean
    return (1.0 - vb[..., None]) * tissue + vb[..., None] * kin.blood_mean


def _frame_conv(kin, rates):
    if isinstance(kin, KineticInput):
        return kin.frame_conv(rates)
    fn = kin.frame_conv
    for _ in range(rates.ndim):
        fn = jax.vmap(fn)
    return fn(rates)


def one_tissue(params, kin):
    """One-tissue model, ``params [..., 3] = K1, k2, vB`` -> frame-averaged TACs ``[..., F]`` (kBq/ml)."""
    return _model_tac(_components_1tcm, params, kin)


def two_tissue_irreversible(params, kin):
    """Irreversible two-tissue (FDG) model, ``params [..., 4] = K1, k2, k3, vB`` -> TACs ``[..., F]`` (kBq/ml).

    ``C_T = K1/(k2+k3) [k3 int C_p + k2 C_p * e^{-(k2+k3) t}]`` (the paper's Eq. 2).
    """
    return _model_tac(_components_2tcmirr, params, kin)


def two_tissue(params, kin):
    """Reversible two-tissue model, ``params [..., 5] = K1, k2, k3, k4, vB`` -> TACs ``[..., F]`` (kBq/ml)."""
    return _model_tac(_components_2tcm, params, kin)


_COMPONENTS = {"1tcm": _components_1tcm, "2tcmirr": _components_2tcmirr, "2tcm": _components_2tcm}


def tac_with_delay(model: str, params, dkin: DelayedInput):
    """Frame-averaged TACs ``[..., F]`` (kBq/ml) of ``model`` with a delayed input: ``params [..., P + 1]`` are the
    model's parameters and the delay last (min; positive = the input and the whole blood arrive later)."""
    params = jnp.asarray(params)
    p, delay = params[..., :-1], params[..., -1]
    integral_amplitude, amplitudes, rates, vb = _COMPONENTS[model](p)
    conv = dkin.frame_conv(rates, delay[..., None])  # [..., K, F]
    tissue = jnp.sum(amplitudes[..., None] * conv, axis=-2)
    if integral_amplitude is not None:
        tissue = tissue + integral_amplitude[..., None] * dkin.integral_mean(delay)
    return (1.0 - vb[..., None]) * tissue + vb[..., None] * dkin.blood_mean(delay)


def _ki(p):
    return p[..., 0] * p[..., 2] / jnp.maximum(p[..., 1] + p[..., 2], _TINY)


def _vt_1tcm(p):
    return p[..., 0] / jnp.maximum(p[..., 1], _TINY)


def _vt_2tcm(p):
    return p[..., 0] / jnp.maximum(p[..., 1], _TINY) * (1.0 + p[..., 2] / jnp.maximum(p[..., 3], _TINY))


@dataclasses.dataclass(frozen=True)
class KineticModel:
    """A compartment model: its parameters, their units and bounds, the TAC and macro-parameters.

    ``tac(params [..., P], kin) -> [..., F]`` works with any evaluator (:class:`KineticInput`,
    :class:`KnotGrid`, :class:`UniformGrid`). ``macros`` maps a macro-parameter name to a function of the
    parameters (``Ki`` in ml/cm^3/min, ``VT`` in ml/cm^3).

    Bounds: ``lower``/``upper`` are the **paper's** bounds (what the paper's network, its curve_fit baseline and
    the Table 1 experiments use; the ``paper`` preset); ``physiological_lower``/``physiological_upper`` are the
    ``physiological`` preset, the fits' default (see :data:`BOUNDS_PRESETS`). :meth:`bounds` returns either.
    """

    name: str
    description: str
    param_names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    tac: Callable
    macros: dict = dataclasses.field(default_factory=dict)
    physiological_lower: tuple[float, ...] = ()
    physiological_upper: tuple[float, ...] = ()

    def bounds(self, preset: str = "physiological") -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(lower, upper)`` of the bounds preset ``preset`` (``physiological`` or ``paper``)."""
        if preset == "paper":
            return self.lower, self.upper
        if preset == "physiological":
            return self.physiological_lower, self.physiological_upper
        raise ValueError(f"unknown bounds preset {preset!r}; choose one of {', '.join(BOUNDS_PRESETS)}")

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    @property
    def map_names(self) -> tuple[str, ...]:
        """The parameters, then the macro-parameters: the maps a fit or a network writes (``K1 k2 k3 vB Ki``)."""
        return self.param_names + tuple(self.macros)

    @property
    def units(self) -> dict:
        """``{name: unit}`` of every parameter and macro-parameter (from :data:`UNITS`)."""
        return {name: UNITS[name] for name in self.map_names}

    def macro_parameters(self, params) -> dict:
        """All macro-parameters of ``params [..., P]`` as a dict of arrays ``[...]``."""
        return {name: fn(jnp.asarray(params)) for name, fn in self.macros.items()}

    def named_maps(self, params) -> dict:
        """``{name: [...]}`` for every name of :attr:`map_names`: the parameters of ``params [..., P]`` (slices of
        it) and the macro-parameters computed from them (NumPy arrays of the parameters' dtype)."""
        maps = {name: params[..., i] for i, name in enumerate(self.param_names)}
        return maps | {name: np.asarray(v, params.dtype) for name, v in self.macro_parameters(params).items()}


#: Units of every kinetic parameter and macro-parameter jaxkin writes (BIDS-style strings; "1" = dimensionless).
UNITS: dict[str, str] = {"K1": "mL/cm3/min", "k2": "1/min", "k3": "1/min", "k4": "1/min", "vB": "1",
                         "Ki": "mL/cm3/min", "VT": "mL/cm3", "delay": "min"}

#: The bounds presets: name -> what they are. Every fit states the preset and the bounds it used (sidecars).
#:
#: * ``paper``: the paper's bounds, K1 in [0.01, 2], k2 in [0.01, 3], k3 in [0.01, 1], vB in [0, 1] (k4 in
#:   [0.001, 1]): what the paper's network, its curve_fit baseline and the Table 1 experiments use. They cut off
#:   healthy organs: liver k3 is about 0.003-0.01/min and spleen k2 can exceed 3/min (REAL_DATA.md), so every method
#:   is biased there with them.
#: * ``physiological`` (the fits' default): K1 in [0.001, 3] mL/cm3/min, k2 in [0.001, 6]/min, k3 in [0, 1]/min,
#:   k4 in [0.0001, 1]/min, vB in [0, 1]. Where the numbers come from: they contain every organ of the phantom
#:   (:data:`jaxkin.phantom.anatomy.ORGAN_PARAMETERS`, whose values the phantom takes from the literature the paper
#:   follows) with its per-subject and intra-organ variation (log-normal, SD 0.10 each: at 4 combined SDs a factor
#:   1.76 either way, so spleen k2 2.697 -> 4.75, spleen K1 1.535 -> 2.70, bladder k3 0.3 -> 0.53, liver k3 0.003
#:   -> 0.0017, muscle K1 0.05 -> 0.028), and the facts of REAL_DATA.md (liver k3 0.003-0.01, spleen k2 above 3),
#:   with margin. k3 = 0 (no trapping) and vB = 0 or 1 are physically possible, so they are allowed. The rates stay
#:   inside the default rate grid of :func:`prepare` (10.2/min). For the organ values of FDG in healthy subjects
#:   measured by total-body dynamic PET see Liu G. et al., "Kinetic metrics of 18F-FDG in normal human organs
#:   identified by systematic dynamic total-body positron emission tomography", Eur J Nucl Med Mol Imaging
#:   48(8):2363-2372 (2021); the bounds above were not taken from its tables.
BOUNDS_PRESETS: dict[str, str] = {
    "physiological": "contains every organ of the jaxkin phantom with its variation and the healthy-organ facts of "
                     "REAL_DATA.md (liver k3 0.003-0.01/min, spleen k2 above 3/min), with margin",
    "paper": "the paper's bounds (its network, its curve_fit baseline, Table 1)",
}
#: The bounds preset of the fits when none is given.
DEFAULT_BOUNDS = "physiological"

#: Bounds of a fitted input delay (min): -10 s (the input arrives earlier at the tissue than where it was measured,
#: e.g. lungs and heart before the descending aorta) to +30 s (later: legs, bladder). TPCCLIB's fitdelay scans
#: -10 ... +50 s (REAL_DATA.md).
DEFAULT_DELAY_RANGE = (-10.0 / 60.0, 30.0 / 60.0)

#: The compartment models by name (``1tcm``, ``2tcmirr``, ``2tcm``): parameters, units, default bounds, TAC function.
MODELS: dict[str, KineticModel] = {
    "1tcm": KineticModel(
        name="1tcm",
        description="one-tissue compartment model",
        param_names=("K1", "k2", "vB"),
        lower=(0.01, 0.01, 0.0),
        upper=(2.0, 3.0, 1.0),
        tac=one_tissue,
        macros={"VT": _vt_1tcm},
        physiological_lower=(0.001, 0.001, 0.0),
        physiological_upper=(3.0, 6.0, 1.0),
    ),
    "2tcmirr": KineticModel(
        name="2tcmirr",
        description="irreversible two-tissue compartment model (FDG; the paper's model)",
        param_names=("K1", "k2", "k3", "vB"),
        lower=(0.01, 0.01, 0.01, 0.0),
        upper=(2.0, 3.0, 1.0, 1.0),
        tac=two_tissue_irreversible,
        macros={"Ki": _ki},
        physiological_lower=(0.001, 0.001, 0.0, 0.0),
        physiological_upper=(3.0, 6.0, 1.0, 1.0),
    ),
    "2tcm": KineticModel(
        name="2tcm",
        description="reversible two-tissue compartment model",
        param_names=("K1", "k2", "k3", "k4", "vB"),
        lower=(0.01, 0.01, 0.01, 0.001, 0.0),
        upper=(2.0, 3.0, 1.0, 1.0, 1.0),
        tac=two_tissue,
        macros={"VT": _vt_2tcm},
        physiological_lower=(0.001, 0.001, 0.0, 0.0001, 0.0),
        physiological_upper=(3.0, 6.0, 1.0, 1.0, 1.0),
    ),
}


def resolve_bounds(model: str, bounds=None) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    """``(lower, upper, description)`` of ``model``'s bounds from a bounds specification:

    * ``None``: the default preset (:data:`DEFAULT_BOUNDS`, ``physiological``);
    * a preset name (``"physiological"``, ``"paper"``);
    * explicit ranges, as a string ``"K1=0,3 k3=0,1"``, a list of such tokens (the command line's
      ``--bounds K1=0,3 k3=0,1``) or a dict ``{"K1": (0, 3)}``; a preset name may come first
      (``"paper k3=0.001,1"``), else the ranges change the default preset. A range naming a parameter the model does
      not have is ignored when ``model`` is one of several models fitted (the caller checks that every name belongs to
      some model: :func:`check_bound_names`).

    ``description`` says it in words (for sidecars and notes). Raises :class:`jaxkin.errors.InputError` (a
    ``ValueError``) naming ``--bounds`` for a bad specification.
    """
    from jaxkin.errors import InputError

    m = get_model(model)
    preset, ranges = _parse_bounds(bounds)
    lo, hi = (list(b) for b in m.bounds(preset))
    changed = []
    for name, (a, b) in ranges.items():
        if name in m.param_names:
            i = m.param_names.index(name)
            lo[i], hi[i] = a, b
            changed.append(f"{name}={a:g},{b:g}")
    for name, a, b in zip(m.param_names, lo, hi):
        if not a <= b:
            raise InputError(f"--bounds: {name} of {model}: lower {a:g} > upper {b:g}")
    description = preset + (f" with {' '.join(changed)}" if changed else "")
    return tuple(float(v) for v in lo), tuple(float(v) for v in hi), description


def check_bound_names(bounds, models) -> None:
    """InputError unless every parameter named in the bounds specification ``bounds`` is one of ``models``'."""
    from jaxkin.errors import InputError

    _, ranges = _parse_bounds(bounds)
    known = {n for model in models for n in get_model(model).param_names}
    unknown = [n for n in ranges if n not in known]
    if unknown:
        raise InputError(f"--bounds: {', '.join(unknown)} is not a parameter of {', '.join(models)} "
                         f"(parameters: {', '.join(sorted(known))})")


def _parse_bounds(bounds) -> tuple[str, dict]:
    """``(preset, {name: (lower, upper)})`` of a bounds specification (see :func:`resolve_bounds`)."""
    from jaxkin.errors import InputError

    if bounds is None:
        return DEFAULT_BOUNDS, {}
    if isinstance(bounds, dict):
        items, preset = list(bounds.items()), DEFAULT_BOUNDS
        try:
            return preset, {str(k): (float(v[0]), float(v[1])) for k, v in items}
        except (TypeError, ValueError, IndexError):
            raise InputError(f"--bounds: expected {{name: (lower, upper)}}, got {bounds!r}") from None
    tokens = bounds.split() if isinstance(bounds, str) else [str(t) for t in bounds]
    preset = DEFAULT_BOUNDS
    if tokens and "=" not in tokens[0]:
        preset = tokens.pop(0)
        if preset not in BOUNDS_PRESETS:
            raise InputError(f"--bounds: unknown preset {preset!r}; choose {' or '.join(BOUNDS_PRESETS)}, or give "
                             "ranges such as K1=0,3 k3=0,1")
    ranges = {}
    for token in tokens:
        name, _, values = token.partition("=")
        parts = values.split(",")
        try:
            a, b = (float(v) for v in parts)
        except ValueError:
            raise InputError(f"--bounds: {token!r} is not NAME=LOWER,UPPER (e.g. k3=0,1)") from None
        if not (np.isfinite(a) and np.isfinite(b)) or a > b:
            raise InputError(f"--bounds: {token!r}: need finite LOWER <= UPPER")
        if name in ranges:
            raise InputError(f"--bounds: {name} is given twice")
        ranges[name] = (a, b)
    return preset, ranges


def get_model(name: str) -> KineticModel:
    """The registered model called ``name`` (``1tcm``, ``2tcmirr`` or ``2tcm``)."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown kinetic model {name!r}; choose one of {', '.join(MODELS)}") from None


#: The name of the paper's model (irreversible two-tissue, FDG): the network's and the phantom's.
FDG_MODEL = "2tcmirr"

_JITTED: dict = {}


def tacs_in_chunks(params, kin, model: str = FDG_MODEL, *, chunk: int = 32768) -> np.ndarray:
    """Model TACs ``[N, F]`` (kBq/ml, float32 NumPy) of ``params [N, P]`` for the scan ``kin``, evaluated on the
    host's default device in fixed-size padded chunks (one compilation per chunk size), for any number of voxels."""
    m = get_model(model)
    if model not in _JITTED:
        _JITTED[model] = jax.jit(m.tac)
    fn = _JITTED[model]
    params = np.asarray(params, np.float32).reshape(-1, m.n_params)
    n = params.shape[0]
    out = np.empty((n, int(np.asarray(kin.frame_duration).shape[0])), np.float32)
    size = min(chunk, max(1, 1 << (max(n, 1) - 1).bit_length()))
    for i in range(0, n, size):
        part = params[i : i + size]
        padded = np.zeros((size, m.n_params), np.float32)
        padded[: part.shape[0]] = part
        out[i : i + part.shape[0]] = np.asarray(jax.device_get(fn(padded, kin)))[: part.shape[0]]
    return out
