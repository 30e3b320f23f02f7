"""The rate grid and its cubic Hermite interpolation (jaxkin.kinetics.rate_grid)."""

import jax.numpy as jnp
import numpy as np

from jaxkin.kinetics.rate_grid import RateGrid, hermite_basis, hermite_basis_slopes


def test_grid_rates_and_reach():
    grid = RateGrid()
    assert grid.rates[0] == 0.0 and np.all(np.diff(grid.rates) > 0)
    assert 10.0 < grid.max_rate < 10.5
    assert RateGrid.up_to(3.0).max_rate >= 3.0 > RateGrid.up_to(3.0).rates[-2]


def test_locate_places_rates_between_nodes_and_clamps():
    grid = RateGrid()
    rates = jnp.asarray(np.concatenate([grid.rates[[0, 5, 100]] * 1.0, [0.01, 0.7, 4.2]]))
    at = grid.locate(rates)
    lower, upper = grid.rates[np.asarray(at.index)], grid.rates[np.asarray(at.index) + 1]
    assert np.all((lower <= rates) & (rates <= upper))
    u = np.log(np.asarray(rates) + grid.offset)
    np.testing.assert_allclose(at.fraction, (u - np.log(lower + grid.offset)) / grid.step, atol=1e-5)
    np.testing.assert_allclose(at.d_fraction, 1.0 / ((np.asarray(rates) + grid.offset) * grid.step), rtol=1e-6)
    outside = grid.locate(jnp.array([-1.0, 50.0]))
    np.testing.assert_array_equal(outside.clamped, [0.0, np.float32(grid.max_rate)])
    np.testing.assert_array_equal(outside.d_fraction, [0.0, 0.0])
    assert outside.index[1] == grid.size - 2 and outside.fraction[1] == 1.0


def test_hermite_basis_reproduces_a_cubic_and_its_slope():
    step = 0.3
    p = np.polynomial.Polynomial([0.4, -1.2, 2.0, 0.7])  # on [0, step]
    dp = p.deriv()
    s = np.linspace(0.0, 1.0, 11)
    h00, h01, h10, h11 = hermite_basis(s)
    value = h00 * p(0.0) + h01 * p(step) + step * (h10 * dp(0.0) + h11 * dp(step))
    np.testing.assert_allclose(value, p(s * step), rtol=1e-12, atol=1e-12)
    e00, e01, e10, e11 = hermite_basis_slopes(s)
    np.testing.assert_array_equal(e01, -e00)
    slope = (e00 * p(0.0) + e01 * p(step) + step * (e10 * dp(0.0) + e11 * dp(step))) / step
    np.testing.assert_allclose(slope, dp(s * step), rtol=1e-12, atol=1e-12)
