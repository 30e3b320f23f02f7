"""Input functions: the arterial (or image-derived) tracer concentration that drives the kinetic models.

An :class:`InputFunction` is the piecewise-linear interpolant of samples ``(times, values)``, times in
**minutes** and values in **kBq/ml**. Conventions, used everywhere in jaxkin:

* The curve starts at the injection: if the first sample lies after it (t > 0), a knot ``(0, 0)`` is added, so
  the curve ramps linearly from zero at injection to the first sample. Before its first knot (the injection, or an
  earlier first sample) the input is zero.
* The tissue compartments are empty at the first knot (injection, or earlier samples if given).
* A positive ``delay`` shifts the curve later in time: ``C_delayed(t) = C(t - delay)``.
* The curve must extend to the end of the scan; the kinetic models refuse to extrapolate. A curve that ends
  before the scan is extended by :func:`extend_tail` (one definition, used for blood samples and image-derived
  inputs alike): a mono-exponential fitted to its last :data:`TAIL_SAMPLES` samples.
* Values measured as frame means (an image-derived input) are read by :func:`from_frame_means`: the curve through
  the frame mid times whose mean over every frame is the value given.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxkin.frames import FrameSchedule

__all__ = ["InputFunction", "merged_knots", "FengParameters", "feng", "feng_input", "MINUTES_PER_TIME_UNIT",
           "TAIL_SAMPLES", "Tail", "extend_tail", "from_frame_means"]

#: Minutes per unit of time, by the spellings files and callers use (lower case): seconds and minutes.
MINUTES_PER_TIME_UNIT: dict[str, float] = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0 / 60.0),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), 1.0),
}


@dataclasses.dataclass(frozen=True, eq=False)
class InputFunction:
    """A piecewise-linear input function; ``times`` in minutes (strictly increasing), ``values`` in kBq/ml.

    Build one with :meth:`from_samples` (which takes the time unit explicitly) or :func:`feng_input`.
    """

    times: np.ndarray
    values: np.ndarray

    def __post_init__(self):
        times = np.array(self.times, dtype=np.float64).reshape(-1)
        values = np.array(self.values, dtype=np.float64).reshape(-1)
        if times.shape != values.shape:
            raise ValueError(
                f"input function: {times.shape[0]} sample times but {values.shape[0]} values"
            )
        if times.shape[0] < 2:
            raise ValueError("input function: at least two samples are needed")
        if not np.all(np.isfinite(times)):
            raise ValueError("input function: sample times contain NaN or Inf")
        if not np.all(np.isfinite(values)):
            i = int(np.argmax(~np.isfinite(values)))
            raise ValueError(f"input function: value {i} (t = {times[i]:g} min) is NaN or Inf")
        if np.any(np.diff(times) <= 0):
            i = int(np.argmax(np.diff(times) <= 0)) + 1
            raise ValueError(
                f"input function: sample times must be strictly increasing; sample {i} "
                f"(t = {times[i]:g} min) is not after sample {i - 1} (t = {times[i - 1]:g} min)"
            )
        if times[0] > 0:
            times = np.concatenate([[0.0], times])
            values = np.concatenate([[0.0], values])
        times.flags.writeable = False
        values.flags.writeable = False
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "values", values)

    @classmethod
    def from_samples(cls, times, values, *, time_unit: str) -> "InputFunction":
        """An input function from samples; ``time_unit`` is ``"s"`` or ``"min"`` (no default, on purpose; any
        spelling of :data:`MINUTES_PER_TIME_UNIT`)."""
        try:
            scale = MINUTES_PER_TIME_UNIT[time_unit]
        except KeyError:
            raise ValueError(f"input function: unknown time unit {time_unit!r}; use 's' or 'min'") from None
        return cls(np.asarray(times, dtype=np.float64) * scale, values)

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        """Time of the last sample in minutes: the curve is defined up to here."""
        return float(self.times[-1])

    def __call__(self, t) -> np.ndarray:
        """Values at times ``t`` (minutes): linear interpolation, zero before the first knot."""
        t = np.asarray(t, dtype=np.float64)
        return np.interp(t, self.times, self.values, left=0.0, right=np.nan)

    def integral(self, t) -> np.ndarray:
        """Exact running integral ``int_{-inf}^t C(s) ds`` in kBq/ml*min at times ``t`` (minutes)."""
        t = np.asarray(t, dtype=np.float64)
        knots, vals = self.times, self.values
        cum = np.concatenate([[0.0], np.cumsum(0.5 * np.diff(knots) * (vals[1:] + vals[:-1]))])
        j = np.clip(np.searchsorted(knots, t, side="right") - 1, 0, len(knots) - 2)
        dt = np.clip(t - knots[j], 0.0, None)
        h = knots[j + 1] - knots[j]
        slope = (vals[j + 1] - vals[j]) / h
        out = cum[j] + vals[j] * dt + 0.5 * slope * dt**2
        out = np.where(t < knots[0], 0.0, out)
        return np.where(t > knots[-1], np.nan, out)

    def delayed(self, delay: float) -> "InputFunction":
        """The same curve shifted by ``delay`` minutes; positive = later (arrives after the original)."""
        return InputFunction(self.times + float(delay), self.values)

    def held_to(self, end: float) -> "InputFunction":
        """The curve with its last value held up to ``end`` minutes (itself if it reaches ``end`` already)."""
        if self.end >= end:
            return self
        return InputFunction(np.append(self.times, float(end)), np.append(self.values, self.values[-1]))

    def scaled(self, factor: float) -> "InputFunction":
        """The curve multiplied by ``factor`` (e.g. a unit conversion or a per-subject dose scale)."""
        return InputFunction(self.times, self.values * float(factor))

    def __repr__(self) -> str:
        return (
            f"InputFunction({len(self.times)} knots, {self.times[0]:.4g}-{self.times[-1]:.4g} min, "
            f"peak {self.values.max():.4g} kBq/ml)"
        )


def merged_knots(input_function: InputFunction, frames: FrameSchedule) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The knots of ``input_function`` with every frame boundary added, and the frame of each knot interval.

    Returns ``times [K]`` (min), ``values [K]`` (kBq/ml, the input at those times) and ``interval_frame [K-1]``
    (int32: the frame each knot interval lies in, ``frames.n_frames`` for an interval in no frame). Frames may start
    before an input whose first value is zero (a scan started before the injection): the input is zero there.
    Raises ``ValueError`` when the input does not cover the scan."""
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


#: Samples used by :func:`extend_tail` for the mono-exponential extension of a curve that ends before the scan.
TAIL_SAMPLES = 5


@dataclasses.dataclass(frozen=True)
class Tail:
    """An extension of a curve past its last sample: knots ``times [K]`` (min, after the last sample, the last at
    the end asked for) and ``values [K]`` (kBq/ml); ``amplitude`` and ``rate`` (1/min) of ``A exp(-k t)`` fitted to
    the last ``samples`` samples, ``rate`` 0 where they do not decrease (the last value is held: ``amplitude`` is
    it)."""

    times: np.ndarray
    values: np.ndarray
    amplitude: float
    rate: float
    samples: int


def extend_tail(times, values, end: float) -> Tail:
    """The extension of samples ``(times [N], values [N])`` (min, kBq/ml) from their last time to ``end`` (min): a
    mono-exponential ``A exp(-k t)`` fitted (least squares on the log) to the positive values among the last
    :data:`TAIL_SAMPLES`, evaluated at every whole minute after the last sample and at ``end``; the last value held
    where fewer than two are positive or they do not decrease."""
    t = np.asarray(times, np.float64)
    v = np.asarray(values, np.float64)
    tt, vv = t[-TAIL_SAMPLES:], v[-TAIL_SAMPLES:]
    ok = vv > 0
    k, amplitude = 0.0, float(max(vv[-1], 0.0))
    if ok.sum() >= 2:
        slope, intercept = np.polyfit(tt[ok], np.log(vv[ok]), 1)
        if slope < 0:
            k, amplitude = -float(slope), float(np.exp(intercept))
    new_t = np.union1d(np.arange(np.ceil(t[-1]), end), [end])
    new_t = new_t[new_t > t[-1] + 1e-6]
    new_v = amplitude * np.exp(-k * new_t) if k > 0 else np.full(new_t.shape, float(vv[-1]))
    return Tail(times=new_t, values=new_v, amplitude=amplitude, rate=k, samples=int(tt.size))


def from_frame_means(frames: FrameSchedule, means) -> InputFunction:
    """The input whose mean over each frame of ``frames`` is ``means [F]`` (kBq/ml): piecewise linear through knots
    at the frame mid times (values solved so that every frame mean is exact, hence so is the integral to every frame
    boundary), zero at the first frame's start, and past the last mid time the :func:`extend_tail` of the means at
    the mid times to the last frame's end. Reading frame means as samples at the mid times instead averages them
    again over each frame: the peak is lowered and its frames' integrals are wrong."""
    means = np.asarray(means, np.float64)
    mid = frames.mid
    tail = extend_tail(mid, means, float(frames.end[-1]))
    head = [float(frames.start[0])] if frames.start[0] < mid[0] else []
    knots = np.concatenate([head, mid, tail.times])
    known = np.concatenate([np.zeros(len(head)), np.full(mid.size, np.nan), tail.values])
    unknown = np.isnan(known)
    basis = np.empty((frames.n_frames, knots.size))
    for j in range(knots.size):
        hat = InputFunction(knots, np.eye(knots.size)[j])
        basis[:, j] = (hat.integral(frames.end) - hat.integral(frames.start)) / frames.duration
    rhs = means - basis[:, ~unknown] @ known[~unknown]
    values = known.copy()
    values[unknown] = np.linalg.solve(basis[:, unknown], rhs)
    return InputFunction(knots, values)


@dataclasses.dataclass(frozen=True)
class FengParameters:
    """Feng's FDG plasma input model (Feng et al. 1993); amplitudes in kBq/ml(/min), rates in 1/min.

    ``C(t) = (a1 t - a2 - a3) e^{l1 t} + a2 e^{l2 t} + a3 e^{l3 t}`` for ``t >= 0``, zero before.
    The defaults are Feng's published values (peak 103.5 kBq/ml at 0.29 min).
    """

    a1: float = 851.1225
    a2: float = 21.8798
    a3: float = 20.8113
    l1: float = -4.1339
    l2: float = -0.0104
    l3: float = -0.1191


def feng(t, params: FengParameters = FengParameters(), *, delay: float = 0.0, scale: float = 1.0):
    """Feng's analytic input function at times ``t`` (minutes), in kBq/ml; zero before ``delay``."""
    p = params
    t = np.asarray(t, dtype=np.float64) - delay
    tp = np.maximum(t, 0.0)
    c = (p.a1 * tp - p.a2 - p.a3) * np.exp(p.l1 * tp) + p.a2 * np.exp(p.l2 * tp) + p.a3 * np.exp(p.l3 * tp)
    return scale * np.where(t > 0, c, 0.0)


def feng_input(
    end: float,
    params: FengParameters = FengParameters(),
    *,
    delay: float = 0.0,
    scale: float = 1.0,
    step: float = 1.0 / 60.0,
    peak_step: float = 0.2 / 60.0,
    peak_window: float = 3.0,
) -> InputFunction:
    """Feng's model sampled from 0 to ``end`` minutes as a piecewise-linear :class:`InputFunction`.

    Samples every ``step`` minutes (default 1 s), and every ``peak_step`` (0.2 s) during the first
    ``peak_window`` minutes after the onset, where the bolus curves sharply; a knot sits exactly at the onset.
    The kinetic models treat the result as exactly piecewise linear; it differs from the analytic curve by
    less than 0.1% of the peak (see the tests).
    """
    if end <= 0 or step <= 0 or peak_step <= 0:
        raise ValueError("feng_input: end, step and peak_step must be positive")
    n = int(np.ceil(end / step - 1e-9))
    t = np.arange(n + 1) * step
    peak_end = min(delay + peak_window, end)
    if peak_end > max(delay, 0.0):
        t = np.union1d(t, np.arange(max(delay, 0.0), peak_end, peak_step))
    if 0 < delay < end:
        t = np.union1d(t, [delay])
    t = np.unique(np.round(t, 9))  # merge coincident knots of the two grids
    return InputFunction(t, feng(t, params, delay=delay, scale=scale))
