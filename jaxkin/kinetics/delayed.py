"""A delayed input: frame-averaged convolutions of the input shifted by a delay per voxel.

A positive delay d shifts the input (and the whole blood) later: ``C_d(t) = C(t - d)``. Since a convolution commutes
with a shift, ``(C_d * e^{-lam .})(t) = I_lam(t - d)`` with ``I_lam = C * e^{-lam .}``, and the whole model curve is
the undelayed one shifted by d. So the frame mean of the delayed model over ``[a, b]`` is::

    ( J_lam(b - d) - J_lam(a - d) ) / (b - a),      J_lam(t) = int_{-inf}^t I_lam(s) ds,

the running integral of the undelayed convolution at the frame boundaries moved by -d: the knots are shifted,
nothing is resampled. On a knot interval ``[t_j, t_{j+1}]`` of the (piecewise-linear) input,
``C(t_j + tau) = c_j + s_j tau``, and with ``x = lam tau`` and the ``phi_k`` of the exponential integrals
(``phi_k' = k phi_{k+1} - phi_k``), exactly::

    I_lam(t_j + tau) = (1 - x phi_1) I_j + c_j tau phi_1 + s_j tau^2 phi_2                  (= dJ/dt)
    J_lam(t_j + tau) = J_j + I_j tau phi_1 + c_j tau^2 phi_2 + s_j tau^3 phi_3
    dJ/dlam          = J_j' + I_j' tau phi_1 + I_j tau^2 (phi_2 - phi_1) + c_j tau^3 (2 phi_3 - phi_2)
                       + s_j tau^4 (3 phi_4 - phi_3)

with ``I_j = I_lam(t_j)``, ``J_j = J_lam(t_j)`` the state at the knot and ``' = d/dlam`` (lam = 0: J is the double
integral, ``J_j + I_j tau + c_j tau^2/2 + s_j tau^3/6``). The knot states ``I_j``, ``J_j`` and their lam derivatives
are tabulated once per scan at every knot for the rates of a :class:`~jaxkin.kinetics.rate_grid.RateGrid` (float64:
the exact knot recurrence, differentiated by ``jax.jvp``); a voxel's rate gets its knot states by cubic Hermite
interpolation in ``u = log(lam + offset)`` (as :class:`~jaxkin.kinetics.tabulated.KineticInput` interpolates its frame
means: ~1e-8 relative) and the time evolution inside the knot interval is then the exact closed form above at the
voxel's own rate. The rate-0 term and the blood term are exact. The derivatives in the rate and the delay are
analytic (d/d delay = -d/dt), also as the JVP of the evaluators, so forward-mode autodiff through them is cheap.
Evaluation is O(frame boundaries) per voxel: two gathers of 4 table entries each.

Units: time and delays in minutes, rates in 1/min, activity in kBq/ml.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxkin.frames import FrameSchedule
from jaxkin.input_function import InputFunction
from jaxkin.kinetics._expint import knot_recurrence, phi_functions
from jaxkin.kinetics.rate_grid import RateGrid, hermite_basis, hermite_basis_slopes

__all__ = ["DelayedInput", "prepare_delayed", "DELAY_TABLE_STEP"]

#: Delay spacing (min) of :attr:`DelayedInput.delay_table`: 0.5 s (interpolation error ~3e-6 of a TAC's maximum);
#: :attr:`DelayedInput.delay_table_1d` (the rate-0 term and the blood, only C1 in the delay) is ``_FINE`` times finer.
DELAY_TABLE_STEP = 0.5 / 60.0
_FINE = 16


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DelayedInput:
    """Evaluator of frame-averaged convolutions of a **delayed** input, the delay per voxel. Build with
    :func:`prepare_delayed`.

    The evaluators' interface, each with an optional ``delay`` (min, broadcastable; default 0: the undelayed input):
    :meth:`frame_conv`, :meth:`integral_mean`, :meth:`blood_mean`.

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
    ``delay_table [G * D, 4 * F]`` (row ``rate index * D + delay index``): the frame means of the convolution at every
    grid rate and every delay of a grid ``delay_step`` apart from ``-max_advance`` to ``max_delay`` (static), with
    their derivatives in the delay and in ``u`` and the mixed one (``conv, d/dd, d/du, d2/dudd``);
    ``delay_table_1d [D_fine, 4 * F]`` those of the rate-0 term and the blood (``integral, d/dd, blood, d/dd``) on a
    grid :attr:`fine_delay_step` apart: the fits' Levenberg–Marquardt iterations interpolate them (cubic Hermite in
    ``u`` and in the delay) for the Jacobian of the FDG model.
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

    @property
    def fine_delay_step(self) -> float:
        """The delay spacing (min) of :attr:`delay_table_1d`."""
        return self.delay_step / _FINE

    def frame_conv(self, rate, delay=0.0):
        """Frame means of ``(C_p(. - delay) * e^{-rate t})``: ``rate``, ``delay`` broadcastable ``[...]`` (1/min, min)
        -> ``[..., F]`` (kBq/ml*min). Differentiable (analytic JVP)."""
        return _delayed_conv(self, rate, delay)

    def frame_conv_and_derivatives(self, rate, delay):
        """``frame_conv(rate, delay)`` and its derivatives in ``rate`` and ``delay``: three ``[..., F]`` arrays."""
        rate, delay = jnp.broadcast_arrays(jnp.asarray(rate, self.knots.dtype), jnp.asarray(delay, self.knots.dtype))
        return tuple(self._means(x) for x in self._running(rate, delay, True))

    def integral_mean(self, delay=0.0):
        """Frame means of ``int_0^t C_p(s - delay) ds`` (the rate-0 term), ``delay [...]`` (min) -> ``[..., F]``."""
        return _delayed_integral(self, delay)

    def integral_mean_and_derivative(self, delay):
        """``integral_mean(delay)`` and its derivative in ``delay``, two ``[..., F]`` arrays."""
        j, tau, row = self._knot_interval(delay)
        c0, slope, state, running = row[..., 1], row[..., 2], row[..., 6], row[..., 7]
        value = running + tau * (state + tau * (c0 / 2 + slope * tau / 6))
        return self._means(value), -self._means(state + tau * (c0 + slope * tau / 2))

    def blood_mean(self, delay=0.0):
        """Frame means of the delayed whole blood ``C_b(t - delay)``, ``delay [...]`` (min) -> ``[..., F]``."""
        return _delayed_blood(self, delay)

    def blood_mean_and_derivative(self, delay):
        """``blood_mean(delay)`` and its derivative in ``delay``, two ``[..., F]`` arrays."""
        j, tau, row = self._knot_interval(delay)
        cb, slope = row[..., 3], row[..., 4]
        value = row[..., 5] + tau * (cb + slope * tau / 2)
        return self._means(value), -self._means(cb + slope * tau)

    def _knot_interval(self, delay):
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

    def _running(self, rate, delay, derivatives: bool):
        """``J`` at the moved boundaries ``[..., B]`` (and ``dJ/drate``, ``dJ/ddelay``) for ``rate``, ``delay [...]``."""
        step = self.grid.step
        at = self.grid.locate(jnp.asarray(rate, self.knots.dtype))
        s = at.fraction[..., None]
        j, tau, row = self._knot_interval(delay)
        c0, slope = row[..., 1], row[..., 2]
        a = self.tables[at.index[..., None], j]  # [..., B, 4] at the lower grid rate
        b = self.tables[at.index[..., None] + 1, j]
        h00, h01, h10, h11 = hermite_basis(s)
        h10, h11 = step * h10, step * h11
        i_j = h00 * a[..., 0] + h01 * b[..., 0] + h10 * a[..., 1] + h11 * b[..., 1]
        j_j = h00 * a[..., 2] + h01 * b[..., 2] + h10 * a[..., 3] + h11 * b[..., 3]
        x = at.clamped[..., None] * tau
        p1, p2, p3, p4 = phi_functions(x, 4)
        t2 = tau * tau
        running = j_j + i_j * tau * p1 + t2 * (c0 * p2 + slope * tau * p3)
        if not derivatives:
            return running
        # d/drate: the Hermite interpolant's derivative (per u, then per rate) and the closed form's
        e00, e01, e10, e11 = hermite_basis_slopes(s)
        e10, e11 = step * e10, step * e11
        du = at.d_fraction[..., None]
        i_d = (e00 * a[..., 0] + e01 * b[..., 0] + e10 * a[..., 1] + e11 * b[..., 1]) * du
        j_d = (e00 * a[..., 2] + e01 * b[..., 2] + e10 * a[..., 3] + e11 * b[..., 3]) * du
        inside = du > 0
        d_rate = j_d + i_d * tau * p1 + jnp.where(
            inside, i_j * t2 * (p2 - p1) + t2 * tau * (c0 * (2 * p3 - p2) + slope * tau * (3 * p4 - p3)), 0.0)
        d_delay = -((1.0 - x * p1) * i_j + c0 * tau * p1 + slope * t2 * p2)  # -dJ/dt = -I(t - delay)
        return running, d_rate, d_delay


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


# --------------------------------------------------------------------------------------------------
# Preparation: the tables of one scan, in float64 on the host
# --------------------------------------------------------------------------------------------------


def _knot_states(times, values, rate):
    """``I_rate`` and ``J_rate`` at every knot of a piecewise-linear input (``times``, ``values [K]``) -> two ``[K]``."""
    i_end, interval_integral = knot_recurrence(times, values, rate)
    zero = jnp.zeros((1,), i_end.dtype)
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


def _sampled_knots(input_function: InputFunction, blood: InputFunction, frames: FrameSchedule, max_advance: float):
    """The knots the delayed curves need, up to ``max_advance`` after the last frame: ``times [K]`` (min), the input's
    and the whole blood's ``values [K]`` (kBq/ml) there, and the note of what was assumed (or "")."""
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
    return times, values, blood_values, note


def _frame_matrix(frames: FrameSchedule):
    """The distinct frame boundaries ``[B]`` (min) and the matrix ``[B, F]`` of the frame means of a running integral
    given at them."""
    boundaries = np.union1d(frames.start, frames.end)
    frame_matrix = np.zeros((boundaries.shape[0], frames.n_frames))
    frame_matrix[np.searchsorted(boundaries, frames.end), np.arange(frames.n_frames)] = 1.0 / frames.duration
    frame_matrix[np.searchsorted(boundaries, frames.start), np.arange(frames.n_frames)] = -1.0 / frames.duration
    return boundaries, frame_matrix


def _knot_lookup(times):
    """The uniform time grid that locates a knot interval: its step (min; the smallest knot spacing, at most 2^20 steps,
    so that a grid step holds few knots), the knot interval at each grid time, and the steps forward to search."""
    spacing = max(float(np.min(np.diff(times))), (times[-1] - times[0]) / (1 << 20))
    grid_times = times[0] + spacing * np.arange(int(np.ceil((times[-1] - times[0]) / spacing)) + 2)
    bucket = np.clip(np.searchsorted(times, grid_times, side="right") - 1, 0, len(times) - 2)
    per_step = int(np.max(np.searchsorted(times, grid_times + 2 * spacing, side="right")
                          - np.searchsorted(times, grid_times, side="right")))
    return spacing, bucket, per_step + 1


def _knot_tables(times, values, blood_values, grid: RateGrid):
    """The knot states at the grid rates ``[G, K, 4]`` and :attr:`DelayedInput.knot_table` ``[K, 8]`` (float64)."""
    blood_running = np.concatenate([[0.0], np.cumsum(0.5 * np.diff(times) * (blood_values[1:] + blood_values[:-1]))])
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
    return tables, knot_table


def _delay_tables(exact: DelayedInput, max_delay: float):
    """:attr:`DelayedInput.delay_table` and :attr:`DelayedInput.delay_table_1d` from the exact evaluator ``exact``
    (float64) for delays from ``-exact.max_advance`` to at least ``max_delay`` (min), and the largest delay reached."""
    grid, max_advance = exact.grid, exact.max_advance
    n_delays = int(np.ceil((max_delay + max_advance) / DELAY_TABLE_STEP - 1e-6)) + 1
    with jax.enable_x64(True):
        delays = -max_advance + DELAY_TABLE_STEP * np.arange(n_delays)
        fine = -max_advance + DELAY_TABLE_STEP / _FINE * np.arange((n_delays - 1) * _FINE + 1)
        conv, conv_rate, conv_delay, one_d = (np.asarray(a) for a in _tabulate_delays(
            exact, jnp.asarray(grid.rates), jnp.asarray(delays), jnp.asarray(fine)))
        conv_u = conv_rate * (grid.rates + grid.offset)[:, None, None]
        conv_ud = np.gradient(conv_delay, grid.step, axis=0, edge_order=2)  # uniform in u
    delay_table = np.stack([conv, conv_delay, conv_u, conv_ud], axis=-2).reshape(grid.size * n_delays, -1)
    delay_table_1d = one_d.reshape(fine.shape[0], -1)
    return delay_table, delay_table_1d, float(delays[-1])


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
    ``max_delay`` (min): the largest delay of the tables over rates and delays (:attr:`DelayedInput.delay_table`).
    """
    blood = blood if blood is not None else input_function
    times, values, blood_values, note = _sampled_knots(input_function, blood, frames, max_advance)
    boundaries, frame_matrix = _frame_matrix(frames)
    spacing, bucket, bucket_steps = _knot_lookup(times)
    tables, knot_table = _knot_tables(times, values, blood_values, grid)
    max_advance, max_delay = float(max_advance), max(float(max_delay), -float(max_advance) + DELAY_TABLE_STEP)
    fields = dict(
        knots=times, knot_table=knot_table, tables=tables, boundaries=boundaries, bucket_origin=times[0],
        bucket_scale=1.0 / spacing, frame_matrix=frame_matrix, frame_start=frames.start,
        frame_duration=frames.duration)
    with jax.enable_x64(True):  # the tables over rates and delays, from the exact evaluator in float64
        exact = DelayedInput(**{k: jnp.asarray(v, jnp.float64) for k, v in fields.items()},
                             bucket=jnp.asarray(bucket, jnp.int32), delay_table=jnp.zeros(()),
                             delay_table_1d=jnp.zeros(()), bucket_steps=bucket_steps, grid=grid,
                             max_advance=max_advance)
        delay_table, delay_table_1d, max_delay = _delay_tables(exact, max_delay)
    dtype = dtype or jnp.zeros(()).dtype
    as_dtype = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    return DelayedInput(
        **{k: as_dtype(v) for k, v in fields.items()}, bucket=jnp.asarray(bucket, jnp.int32),
        bucket_steps=bucket_steps, delay_table=as_dtype(delay_table), delay_table_1d=as_dtype(delay_table_1d),
        grid=grid, max_advance=max_advance, note=note, max_delay=max_delay, delay_step=DELAY_TABLE_STEP,
    )
