"""A/B check of ``jaxkin fit --delay voxel`` between two checkouts: speed and accuracy.

    PYTHONPATH=/path/to/old python benchmarks/delay_ab.py run old    # writes /tmp/delay_ab_old.npz
    PYTHONPATH=/path/to/new python benchmarks/delay_ab.py run new
    python benchmarks/delay_ab.py compare old new

``run``: 16,384 TACs of the ``small`` phantom (subject 0, organ delays, unblurred; the TACs of ``fit_speed.py``'s
``--delay voxel`` part) fitted noiseless in the checkout's default chunks (timed, best of 2 after a warm-up) and with the phantom's noise (seed 0).
``compare``: the fraction of noisy TACs whose weighted SSE is no worse than the old code's (exactly, within 1e-4
relative, within 0.1%), the fraction of noiseless TACs whose delay is within 0.5 s of the truth, and Ki. Alternate
``run old`` and ``run new`` for timings on a shared machine.
"""

import json
import os
import sys
import time

import numpy as np


def run(tag, kw):
    import jax

    import jaxkin
    from jaxkin.phantom.simulate import simulate_subject

    n = 16384
    rng = np.random.default_rng(0)
    s = simulate_subject(0, seed=0, preset="small", noise_scale=0.0, fwhm_mm=0.0, organ_delays=True)
    body = s.labels > 0
    pick = rng.choice(int(body.sum()), size=n)
    x, true_delay = s.pet[body][pick], s.delay_map()[body][pick]
    truth = s.truth[body][pick]
    noisy = simulate_subject(0, seed=0, preset="small", fwhm_mm=0.0, organ_delays=True).pet[body][pick]
    t0 = time.perf_counter()
    dkin = jaxkin.prepare_delayed(s.input_function, s.frames)
    t_prepare = time.perf_counter() - t0
    fit = lambda d: jax.block_until_ready(jaxkin.fit_tacs(d, dkin, **kw))  # noqa: E731
    rn = fit(noisy).to_numpy()
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        r = fit(x)
        times.append(time.perf_counter() - t0)
    r = r.to_numpy()
    np.savez(f"/tmp/delay_ab_{tag}.npz", params=r.params, ki=r.macro, sse=r.sse, noisy_params=rn.params,
             noisy_ki=rn.macro, noisy_sse=rn.sse, true_delay=true_delay, truth=truth)
    print(json.dumps(dict(tag=tag, tacs_per_s=n / min(times), prepare_s=t_prepare, load=os.getloadavg()[0],
                          jaxkin=jaxkin.__file__)))


def compare(old, new):
    o, n = np.load(f"/tmp/delay_ab_{old}.npz"), np.load(f"/tmp/delay_ab_{new}.npz")
    ratio = n["noisy_sse"] / np.maximum(o["noisy_sse"], 1e-30)
    t = o["truth"]
    ki = t[:, 0] * t[:, 2] / np.maximum(t[:, 1] + t[:, 2], 1e-12)
    for tag, r in ((old, o), (new, n)):
        err = np.abs(r["params"][:, -1] - r["true_delay"]) * 60
        print(f"{tag}: noiseless delay within 0.5 s {np.mean(err < 0.5):.4%}; mean Ki / true {r['ki'].mean() / ki.mean():.5f}")
    print(f"noisy SSE_{new} <= SSE_{old}: exactly {np.mean(ratio <= 1):.2%}, within 1e-4 {np.mean(ratio <= 1 + 1e-4):.2%}, "
          f"within 0.1% {np.mean(ratio <= 1.001):.2%}; ratio quantiles 99% {np.quantile(ratio, 0.99):.6f}, "
          f"max {ratio.max():.4f}")


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(sys.argv[2], eval(sys.argv[3]) if len(sys.argv) > 3 else {})  # e.g. '{"grid_size": 16}'
    else:
        compare(sys.argv[2], sys.argv[3])
