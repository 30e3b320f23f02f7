"""The compartment models (jaxkin.kinetics.models) against an independent ODE solution, finite differences and each
other, with the default and the exact evaluator; one TAC function for every evaluator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxkin
from jaxkin import kinetics
from jaxkin import InputFunction
from jaxkin.kinetics import MODELS, get_model

from _reference import FRAMES, INPUT
from _reference import ode_frame_means as _ode_frame_means
from _reference import param_sets as _param_sets


MODEL_FNS = {"1tcm": kinetics.one_tissue, "2tcmirr": kinetics.two_tissue_irreversible, "2tcm": kinetics.two_tissue}


@pytest.fixture(scope="module", params=["1tcm", "2tcmirr", "2tcm"])
def ode_case(request):
    model = request.param
    params = _param_sets(model, n_random=12, seed=1)
    assert params.shape[0] >= 20
    return model, params, _ode_frame_means(model, params, INPUT, FRAMES)


def _relative_error_on_signal(approx, ref):
    """Max relative error over frames whose reference value is above 1% of that TAC's peak."""
    approx, ref = np.asarray(approx, np.float64), np.asarray(ref, np.float64)
    significant = np.abs(ref) > 0.01 * np.abs(ref).max(axis=1, keepdims=True)
    return np.max(np.abs(approx - ref)[significant] / np.abs(ref)[significant])


@pytest.mark.slow
def test_float64_models_match_the_ode(ode_case):
    model, params, ref = ode_case
    fn = MODEL_FNS[model]
    with jax.enable_x64(True):
        table = jaxkin.prepare(INPUT, FRAMES, dtype=jnp.float64)
        exact = kinetics.prepare_exact(INPUT, FRAMES, dtype=jnp.float64)
        p = jnp.asarray(params, jnp.float64)
        err_table = _relative_error_on_signal(fn(p, table), ref)
        err_exact = _relative_error_on_signal(fn(p, exact), ref)
    assert err_exact <= 1e-6, err_exact
    assert err_table <= 1e-6, err_table


@pytest.mark.slow
def test_float32_models_match_the_ode(ode_case):
    model, params, ref = ode_case
    fn = MODEL_FNS[model]
    table = jaxkin.prepare(INPUT, FRAMES)
    exact = kinetics.prepare_exact(INPUT, FRAMES)
    assert table.table.dtype == jnp.float32
    p = jnp.asarray(params, jnp.float32)
    assert _relative_error_on_signal(fn(p, table), ref) <= 2e-4
    assert _relative_error_on_signal(fn(p, exact), ref) <= 2e-4


@pytest.mark.slow
def test_one_tac_function_for_every_model():
    """``KineticModel.tac`` is the model's function, for parameters of any leading shape (with a DelayedInput, the
    delay is the last parameter: tests/kinetics/test_delayed.py)."""
    kin = jaxkin.prepare(INPUT, FRAMES)
    for name, fn in MODEL_FNS.items():
        m = get_model(name)
        params = jnp.asarray(_param_sets(name, n_random=2, seed=3)[:6].reshape(2, 3, -1), jnp.float32)
        expected = np.asarray(jax.jit(fn)(params, kin))  # jitted: one program per shape, not one per operation
        assert expected.shape == (2, 3, FRAMES.n_frames)
        np.testing.assert_array_equal(np.asarray(jax.jit(m.tac)(params, kin)), expected)
        np.testing.assert_array_equal(np.asarray(jax.jit(fn)(params[1, 2], kin)), expected[1, 2])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["1tcm", "2tcmirr", "2tcm"])
def test_gradients_match_finite_differences(model):
    fn = MODEL_FNS[model]
    params = _param_sets(model, n_random=3, seed=7)[[2, -1, -2, -3]]  # mid-bounds and random sets
    jacfwd, jacrev, tac = jax.jit(jax.jacfwd(fn)), jax.jit(jax.jacrev(fn)), jax.jit(fn)  # one program each
    with jax.enable_x64(True):
        kin = jaxkin.prepare(INPUT, FRAMES, dtype=jnp.float64)
        for p in params:
            p = jnp.asarray(p)
            jac = np.asarray(jacfwd(p, kin))
            jac_rev = np.asarray(jacrev(p, kin))
            assert np.all(np.isfinite(jac))
            np.testing.assert_allclose(jac_rev, jac, rtol=1e-9, atol=1e-9)
            for i in range(p.shape[0]):
                h = 1e-6 * max(1.0, float(p[i]))
                fd = (tac(p.at[i].add(h), kin) - tac(p.at[i].add(-h), kin)) / (2 * h)
                scale = np.abs(fd).max() + 1e-12
                assert np.max(np.abs(jac[:, i] - np.asarray(fd))) <= 1e-5 * scale, (model, i)


def test_vmap_over_10000_parameter_sets_equals_per_voxel():
    kin = jaxkin.prepare(INPUT, FRAMES)
    m = jaxkin.get_model("2tcmirr")
    params = jax.random.uniform(jax.random.key(0), (10_000, 4), minval=jnp.array(m.lower), maxval=jnp.array(m.upper))
    batched = jax.jit(kinetics.two_tissue_irreversible)(params, kin)
    one = jax.jit(lambda p: kinetics.two_tissue_irreversible(p, kin))
    per_voxel = jax.lax.map(one, params)
    assert batched.shape == (10_000, 62)
    np.testing.assert_allclose(np.asarray(batched), np.asarray(per_voxel), rtol=1e-6, atol=1e-6)
    idx = np.random.default_rng(0).choice(10_000, 20, replace=False)
    for i in idx:  # and a few genuinely separate calls
        np.testing.assert_allclose(np.asarray(one(params[i])), np.asarray(batched[i]), rtol=1e-6, atol=1e-6)


def test_models_are_jittable_with_stacked_inputs():
    """A batch can carry each sample's own input function (stacked KineticInputs, vmapped)."""
    kins = [jaxkin.prepare(jaxkin.feng_input(65.0, delay=d, scale=s), FRAMES) for d, s in [(0.1, 1.0), (0.4, 0.7)]]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *kins)
    params = jnp.array([[0.6, 1.2, 0.1, 0.05], [0.6, 1.2, 0.1, 0.05]])
    out = jax.jit(jax.vmap(kinetics.two_tissue_irreversible))(params, stacked)
    for i, kin in enumerate(kins):
        np.testing.assert_allclose(np.asarray(out[i]), np.asarray(kinetics.two_tissue_irreversible(params[i], kin)), rtol=1e-6)
    assert not np.allclose(out[0], out[1])


@pytest.mark.slow
def test_float32_is_safe_at_the_edges():
    kin = jaxkin.prepare(INPUT, FRAMES)
    zero_kin = jaxkin.prepare(InputFunction.from_samples([0, 70], [0.0, 0.0], time_unit="min"), FRAMES)
    edge = jnp.array([
        [0.01, 0.01, 0.01, 0.0],   # k2 + k3 small
        [2.0, 3.0, 0.01, 1.0],     # k3 at its minimum, vB = 1
        [2.0, 3.0, 1.0, 0.0],      # largest rate
        [0.5, 0.0, 0.0, 0.5],      # k2 = k3 = 0 (outside the bounds): C_T = K1 * int C_p
        [0.0, 0.0, 0.0, 0.0],
        [1.0, 50.0, 1.0, 0.2],     # rate beyond the table: clamped, still finite
    ])
    irr = jax.jit(kinetics.two_tissue_irreversible)  # one program for every call below
    irr_grad = jax.jit(jax.jacfwd(lambda p, k: kinetics.two_tissue_irreversible(p, k).sum()))
    for k in (kin, zero_kin):
        tac = irr(edge, k)
        grad = irr_grad(edge, k)
        assert np.all(np.isfinite(tac)) and np.all(np.isfinite(grad))
    assert np.all(irr(edge, zero_kin) == 0)
    # k2 = k3 = 0: tissue = K1 * running integral, frame-averaged
    ref = 0.5 * 0.5 * np.array([np.mean(INPUT.integral(np.linspace(s, e, 2001))) for s, e in zip(FRAMES.start, FRAMES.end)])
    ref += 0.5 * np.asarray(kin.blood_mean())
    np.testing.assert_allclose(np.asarray(irr(edge, kin))[3], ref, rtol=1e-4)
    rev = jnp.array([[0.5, 0.4, 0.0, 0.4, 0.1], [0.5, 0.4, 1e-9, 0.4, 0.0]])  # equal rates (degenerate)
    assert np.all(np.isfinite(jax.jit(kinetics.two_tissue)(rev, kin)))
    assert np.all(np.isfinite(jax.jit(jax.jacfwd(lambda p, k: kinetics.two_tissue(p, k).sum()))(rev, kin)))


def test_macro_parameters():
    p = jnp.array([0.6, 1.2, 0.1, 0.05])
    np.testing.assert_allclose(jaxkin.get_model("2tcmirr").macro_parameters(p)["Ki"], 0.6 * 0.1 / 1.3, rtol=1e-6)
    np.testing.assert_allclose(jaxkin.get_model("1tcm").macro_parameters(jnp.array([0.5, 0.25, 0.0]))["VT"], 2.0)
    vt = jaxkin.get_model("2tcm").macro_parameters(jnp.array([0.5, 0.25, 0.1, 0.05, 0.0]))["VT"]
    np.testing.assert_allclose(vt, 0.5 / 0.25 * (1 + 0.1 / 0.05), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown kinetic model 'x'"):
        jaxkin.get_model("x")


def test_bounds_of_each_preset():
    for m in MODELS.values():
        assert m.bounds("paper") == (m.lower, m.upper)
        assert m.bounds("physiological") == (m.physiological_lower, m.physiological_upper)
        for lo, hi in (m.bounds("paper"), m.bounds("physiological")):
            assert len(lo) == len(hi) == m.n_params and all(a < b for a, b in zip(lo, hi))
    with pytest.raises(ValueError, match="unknown bounds preset 'loose'"):
        MODELS["2tcmirr"].bounds("loose")


@pytest.mark.slow
def test_reversible_model_reduces_to_irreversible_and_one_tissue():
    with jax.enable_x64(True):
        kin = jaxkin.prepare(INPUT, FRAMES, dtype=jnp.float64)
        irr = kinetics.two_tissue_irreversible(jnp.array([0.6, 1.2, 0.1, 0.05]), kin)
        rev = kinetics.two_tissue(jnp.array([0.6, 1.2, 0.1, 0.0, 0.05]), kin)
        one = kinetics.one_tissue(jnp.array([0.6, 1.2, 0.05]), kin)
        rev_no_k3 = kinetics.two_tissue(jnp.array([0.6, 1.2, 0.0, 0.3, 0.05]), kin)
    np.testing.assert_allclose(rev, irr, rtol=1e-7)
    np.testing.assert_allclose(rev_no_k3, one, rtol=1e-7)


def test_delay_shifts_the_response_later():
    kin = jaxkin.prepare(INPUT, FRAMES)
    late = jaxkin.prepare(INPUT.delayed(0.5), FRAMES)
    p = jnp.array([0.6, 1.2, 0.1, 0.05])
    a, b = kinetics.two_tissue_irreversible(p, kin), kinetics.two_tissue_irreversible(p, late)
    first = int(np.argmax(np.asarray(a) > 0.01 * float(a.max())))
    assert float(b[first]) < float(a[first])  # activity arrives later
    np.testing.assert_allclose(float(b[-1]), float(a[-1]), rtol=0.05)  # late frames barely change


def test_named_maps_are_the_parameters_and_the_closed_form_macros():
    rng = np.random.default_rng(7)
    params = rng.uniform([0.05, 0.1, 0.01, 0.0], [1.5, 2.5, 0.5, 0.3], size=(5, 4)).astype(np.float32)
    maps = jaxkin.get_model("2tcmirr").named_maps(params)
    assert list(maps) == ["K1", "k2", "k3", "vB", "Ki"]
    for i, name in enumerate(("K1", "k2", "k3", "vB")):
        np.testing.assert_array_equal(maps[name], params[:, i])
    k1, k2, k3 = params[:, 0].astype(np.float64), params[:, 1].astype(np.float64), params[:, 2].astype(np.float64)
    np.testing.assert_allclose(maps["Ki"], k1 * k3 / (k2 + k3), rtol=1e-6)
    assert maps["Ki"].dtype == np.float32
    vt = jaxkin.get_model("1tcm").named_maps(params[:, [0, 1, 3]].astype(np.float64))["VT"]
    np.testing.assert_allclose(vt, k1 / k2, rtol=1e-6)
