"""The exact evaluator: the frame-averaged convolution by the knot recurrence over every knot of the input.

O(knots) per rate (a sequential scan); the reference of the tabulated evaluators, and differentiable in the input too.
Units: time in minutes, rates in 1/min, activity in kBq/ml.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxkin.frames import FrameSchedule
from jaxkin.input_function import InputFunction, merged_knots
from jaxkin.kinetics._expint import knot_recurrence

__all__ = ["KnotGrid", "prepare_exact", "blood_frame_means", "PerRateEvaluator"]


class PerRateEvaluator:
    """The evaluator interface for an evaluator that computes one rate at a time (``_frame_conv_one``: a scalar rate
    -> ``[F]``) on an input sampled as ``values``, with the whole blood's frame means in ``blood_frame_means``."""

    def frame_conv(self, rate):
        """Frame means of ``(C_p * e^{-rate t})``; ``rate`` any shape ``[...]`` (1/min, >= 0) -> ``[..., F]``
        (kBq/ml*min)."""
        rate = jnp.asarray(rate, self.values.dtype)
        flat = jax.vmap(self._frame_conv_one)(rate.reshape(-1))
        return flat.reshape(rate.shape + flat.shape[-1:])

    def integral_mean(self):
        """Frame means of the running integral ``int_0^t C_p`` (the rate-0 convolution), ``[F]`` (kBq/ml*min)."""
        return self._frame_conv_one(0.0)

    def blood_mean(self):
        """Frame means of the whole blood, ``[F]`` (kBq/ml)."""
        return self.blood_frame_means


def blood_frame_means(blood: InputFunction, frames: FrameSchedule) -> np.ndarray:
    """The exact frame means ``[F]`` (kBq/ml) of a piecewise-linear curve (the whole blood of the vB term)."""
    return (blood.integral(frames.end) - blood.integral(frames.start)) / frames.duration


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KnotGrid(PerRateEvaluator):
    """Exact evaluator: the input on its knots (frame boundaries included). Build with :func:`prepare_exact`.

    Leaves: ``times [N]`` (min), ``values [N]`` (kBq/ml), ``interval_frame [N-1]`` (frame index of each knot
    interval, ``F`` for none), ``frame_duration [F]`` (min), ``blood_frame_means [F]`` (kBq/ml).
    """

    times: jax.Array
    values: jax.Array
    interval_frame: jax.Array
    frame_duration: jax.Array
    blood_frame_means: jax.Array

    def _frame_conv_one(self, rate):
        """:meth:`frame_conv` of one rate (scalar) -> ``[F]``."""
        rate = jnp.asarray(rate, self.values.dtype)
        _, interval_integral = knot_recurrence(self.times, self.values, rate)
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
    blood_mean = blood_frame_means(blood if blood is not None else input_function, frames)
    dtype = dtype or jnp.zeros(()).dtype
    return KnotGrid(
        times=jnp.asarray(times, dtype),
        values=jnp.asarray(values, dtype),
        interval_frame=jnp.asarray(interval_frame),
        frame_duration=jnp.asarray(frames.duration, dtype),
        blood_frame_means=jnp.asarray(blood_mean, dtype),
    )
