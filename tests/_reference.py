"""Independent references shared by the tests: an ODE solution of the compartment models (scipy ``solve_ivp``)."""

import numpy as np
from scipy.integrate import solve_ivp

import jaxkin
from jaxkin import input_function
from jaxkin import FrameSchedule, InputFunction

FRAMES = FrameSchedule.quadra()


def ode_input() -> InputFunction:
    """A Feng input (0.15 min delay) sampled like a measured curve: 1 s to 3 min, 10 s to 10 min, 30 s after."""
    t = np.unique(np.round(np.concatenate([
        np.arange(0, 3, 1 / 60), np.arange(3, 10, 1 / 6), np.arange(10, 65.01, 0.5), [0.15]]), 9))
    return InputFunction(t, input_function.feng(t, delay=0.15))


INPUT = ode_input()


def param_sets(model: str, n_random: int, seed: int) -> np.ndarray:
    """Corners and edges of the default bounds plus uniform random draws inside them."""
    m = jaxkin.get_model(model)
    lo, hi = np.array(m.lower), np.array(m.upper)
    rng = np.random.default_rng(seed)
    corners = [lo, hi, 0.5 * (lo + hi)]
    for i in range(len(lo)):  # one parameter at each end, the others random
        for v in (lo[i], hi[i]):
            p = rng.uniform(lo, hi)
            p[i] = v
            corners.append(p)
    return np.concatenate([np.array(corners), rng.uniform(lo, hi, (n_random, len(lo)))])


def ode_frame_means(model: str, params: np.ndarray, inp: InputFunction, frames: FrameSchedule) -> np.ndarray:
    """Frame-averaged TACs of ``params [N, P]`` by integrating the compartment ODEs with scipy (float64).

    State per parameter set: free F, bound B, and the running integrals of the tissue and of the blood, so the
    frame means come from differences of integrals at the frame boundaries. All sets are solved at once.
    """
    n = params.shape[0]
    if model == "1tcm":
        k1, k2, vb = params.T
        k3 = k4 = np.zeros(n)
    elif model == "2tcmirr":
        k1, k2, k3, vb = params.T
        k4 = np.zeros(n)
    else:
        k1, k2, k3, k4, vb = params.T

    def rhs(t, y):
        f, b = y[:n], y[n : 2 * n]
        cp = np.interp(t, inp.times, inp.values)
        df = k1 * cp - (k2 + k3) * f + k4 * b
        db = k3 * f - k4 * b
        return np.concatenate([df, db, f + b, [cp]])

    bounds = np.union1d(frames.start, frames.end)
    # Integrate knot interval by knot interval (the input has a kink at every knot).
    knots = np.union1d(inp.times[inp.times <= bounds[-1]], bounds)
    y = np.zeros(3 * n + 1)
    at = {knots[0]: y.copy()}
    for a, b in zip(knots[:-1], knots[1:]):
        sol = solve_ivp(rhs, (a, b), y, method="DOP853", rtol=1e-12, atol=1e-14)
        y = sol.y[:, -1]
        at[b] = y
    q_start = np.array([at[s][2 * n : 3 * n] for s in frames.start])
    q_end = np.array([at[e][2 * n : 3 * n] for e in frames.end])
    qb = np.array([at[e][-1] - at[s][-1] for s, e in zip(frames.start, frames.end)])
    tissue = (q_end - q_start).T / frames.duration
    blood = qb / frames.duration
    return (1 - vb[:, None]) * tissue + vb[:, None] * blood[None, :]


def ode_delayed_frame_means(model: str, params: np.ndarray, delays: np.ndarray) -> np.ndarray:
    """ODE-reference TACs ``[N, F]`` of :data:`INPUT` on :data:`FRAMES`, each with the input (and whole blood)
    shifted by its own delay ``delays [N]`` (min)."""
    return np.stack([ode_frame_means(model, params[i : i + 1], INPUT.delayed(float(d)), FRAMES)[0]
                     for i, d in enumerate(delays)])
