"""The rate grid of the tabulated evaluators, and cubic Hermite interpolation on it.

:class:`~jaxkin.kinetics.tabulated.KineticInput` and :class:`~jaxkin.kinetics.delayed.DelayedInput` tabulate exact
values on the rates of a :class:`RateGrid` together with their derivatives in ``u = log(rate + offset)``, and
evaluate any rate by cubic Hermite interpolation in ``u``: :meth:`RateGrid.locate` places a rate between two grid
nodes, :func:`hermite_basis` weighs the nodes' values and derivatives, :func:`hermite_basis_slopes` gives the
weights' derivatives. Rates in 1/min.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["RateGrid", "GridPosition", "hermite_basis", "hermite_basis_slopes"]


class GridPosition(NamedTuple):
    """Where rates ``[...]`` lie on a :class:`RateGrid` (:meth:`RateGrid.locate`), each field ``[...]``."""

    index: jax.Array  #: the lower grid node (int32, ``0 .. size - 2``)
    fraction: jax.Array  #: the position between the lower and the upper node, 0 to 1
    clamped: jax.Array  #: the rate clamped to the grid's range ``[0, max_rate]`` (1/min)
    d_fraction: jax.Array  #: d fraction / d rate (min); 0 outside the grid's range, where the rate is clamped


@dataclasses.dataclass(frozen=True)
class RateGrid:
    """The rate grid of a tabulated evaluator: ``lam_i = offset * (exp(i * step) - 1)``, i = 0..size-1 (1/min).

    Uniform in ``u = log(lam + offset)``: dense near 0 (spacing ``offset * step``), geometric at large rates
    (relative spacing ``step``). Rates outside ``[0, lam_i[-1]]`` are clamped to the grid.
    """

    offset: float = 0.05
    step: float = 0.025
    size: int = 214  # reaches 10.2 1/min

    @property
    def rates(self) -> np.ndarray:
        """The grid's rates ``[size]`` (1/min)."""
        return self.offset * np.expm1(self.step * np.arange(self.size))

    @property
    def max_rate(self) -> float:
        """The largest rate of the grid (1/min)."""
        return float(self.rates[-1])

    @classmethod
    def up_to(cls, max_rate: float, offset: float = 0.05, step: float = 0.025) -> "RateGrid":
        """The smallest grid with ``offset`` and ``step`` that reaches ``max_rate`` (1/min)."""
        size = int(np.ceil(np.log1p(max_rate / offset) / step)) + 1
        return cls(offset=offset, step=step, size=max(size, 2))

    def locate(self, rate) -> GridPosition:
        """The :class:`GridPosition` of ``rate [...]`` (1/min, an array of the evaluator's dtype)."""
        clamped = jnp.clip(rate, 0.0, self.max_rate)
        position = jnp.log1p(clamped / self.offset) / self.step
        index = jnp.clip(jnp.floor(position), 0, self.size - 2).astype(jnp.int32)
        inside = (rate >= 0.0) & (rate <= self.max_rate)
        d_fraction = jnp.where(inside, 1.0 / ((clamped + self.offset) * self.step), 0.0)
        return GridPosition(index, position - index, clamped, d_fraction)


def hermite_basis(s):
    """The cubic Hermite basis at ``s`` in [0, 1] (any shape): ``(h00, h01, h10, h11)``, the weights of the lower
    node's value, the upper node's value, and the lower and upper node's derivative times the node spacing."""
    s2, s3 = s * s, s * s * s
    return 2 * s3 - 3 * s2 + 1, 3 * s2 - 2 * s3, s3 - 2 * s2 + s, s3 - s2


def hermite_basis_slopes(s):
    """The derivatives in ``s`` of :func:`hermite_basis`: ``(h00', h01', h10', h11')`` (``h01' = -h00'``)."""
    s2 = s * s
    return 6 * s2 - 6 * s, 6 * s - 6 * s2, 3 * s2 - 4 * s + 1, 3 * s2 - 2 * s
