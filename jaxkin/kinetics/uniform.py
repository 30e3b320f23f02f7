"""The paper-style evaluator: ``jnp.convolve`` on a uniform fine grid with rectangle-rule quadrature.

First-order accurate in the grid step; for cross-checks of the exact and tabulated evaluators only.
Units: time in minutes, rates in 1/min, activity in kBq/ml.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxkin.frames import FrameSchedule
from jaxkin.input_function import InputFunction
from jaxkin.kinetics.exact import PerRateEvaluator, blood_frame_means

__all__ = ["UniformGrid", "prepare_convolve"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class UniformGrid(PerRateEvaluator):
    """Paper-style evaluator: ``jnp.convolve`` on a uniform grid of step ``dt`` minutes. For cross-checks.

    Leaves: ``values [M]`` (input on the grid ``t_m = m dt``), ``frame_weights [F, M]`` (averaging
    matrix of each frame over the grid points inside it), ``blood_frame_means [F]``; static ``dt``.
    Converges to the exact model at first order in ``dt``.
    """

    values: jax.Array
    frame_weights: jax.Array
    blood_frame_means: jax.Array
    dt: float = dataclasses.field(metadata=dict(static=True), default=1.0 / 60.0)

    def _frame_conv_one(self, rate):
        """:meth:`frame_conv` of one rate (scalar) -> ``[F]``."""
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
        blood_frame_means=jnp.asarray(blood_frame_means(input_function, frames), dtype),
        dt=float(dt),
    )
