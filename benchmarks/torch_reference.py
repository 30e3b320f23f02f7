"""jaxkin against a PyTorch implementation of the paper's exp4_1 network, train step and prediction, in one run.

    python benchmarks/torch_reference.py [--part both|train|predict] [--rounds 5] [--slices 32] [--threads N]

Needs PyTorch (a CPU build is enough); jaxkin itself never does. The PyTorch network is the one jaxkin builds for
``experiments/exp4_1.py`` (De Benetti et al., MICCAI 2023, Table 1 Exp 4.1), written as the original would be:
``Conv3d`` (1,3,3) spatial and (3,1,1) temporal convolutions (the temporal one shared within a block), ELU,
``MaxPool3d(2)``, ``ConvTranspose3d`` (1,3,3) stride (1,2,2) and (3,1,1) stride (2,1,1) upsampling, skips
``concat(block input, block output)``, a 3x3x3 head and a (T,1,1) convolution collapsing time, then each parameter
clamped to the FDG model's bounds; channels first ``[B, C, T, H, W]``, 860,904 parameters (checked against jaxkin).
Its train step is jaxkin's: forward, the irreversible two-tissue model TACs of each sample's input function (the
same tabulated frame-averaged convolution, cubic Hermite in ``log(rate + offset)``, :mod:`jaxkin.kinetics.tabulated`),
masked MSE, backward, Adam (lr 1e-4). Prediction runs slices in batches of 8 under ``torch.inference_mode``.

jaxkin runs through the code of ``benchmarks/train_speed.py`` (one compiled :func:`jaxkin.network.make_train_step`,
batch 5 of 112 x 112 x 64, one device) and ``benchmarks/predict_speed.py`` (:meth:`jaxkin.network.Predictor.predict_volume`,
batches of 8, the CPU split into ``jaxkin predict``'s devices). The two frameworks alternate over ``--rounds``
rounds (one train step, or ``--slices`` slices, each); the medians and the ratio torch / jaxkin are printed (the
median of the per-round ratios and the ratio of the medians). ``--part both`` (the default) runs the train and the
predict comparison in two child processes, since the device split must be set before JAX starts.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

try:
    import torch
    from torch import nn
except ImportError:
    sys.exit("benchmarks/torch_reference.py needs PyTorch (e.g. pip install torch, a CPU build); "
             "jaxkin and its tests never do")

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

_TINY = 1e-12  # as jaxkin.kinetics.models: keeps k2 = k3 = 0 finite


# --------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------


class Block(nn.Module):
    """(2+1)D block: spatial (1,3,3) -> temporal (3,1,1) -> ELU -> spatial -> the same temporal conv -> ELU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.space_in = nn.Conv3d(c_in, c_out, (1, 3, 3), padding=(0, 1, 1))
        self.space = nn.Conv3d(c_out, c_out, (1, 3, 3), padding=(0, 1, 1))
        self.time = nn.Conv3d(c_out, c_out, (3, 1, 1), padding=(1, 0, 0))
        self.act = nn.ELU()

    def forward(self, x):
        x = self.act(self.time(self.space_in(x)))
        return self.act(self.time(self.space(x)))


class Upsample(nn.Module):
    """Transposed (1,3,3) stride (1,2,2), then transposed (3,1,1) stride (2,1,1): doubles T, H and W."""

    def __init__(self, channels: int):
        super().__init__()
        self.space = nn.ConvTranspose3d(channels, channels, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1),
                                        output_padding=(0, 1, 1))
        self.time = nn.ConvTranspose3d(channels, channels, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0),
                                       output_padding=(1, 0, 0))

    def forward(self, x):
        return self.time(self.space(x))


class Decoder(nn.Module):
    def __init__(self, c_in: int, c_out: int, c_skip: int):
        super().__init__()
        self.up = Upsample(c_in)
        self.block = Block(c_in + c_skip, c_out)

    def forward(self, x, skip):
        return self.block(torch.cat([self.up(x), skip], dim=1))


class TorchUNet(nn.Module):
    """exp4_1 in PyTorch: ``x [B, 1, T, H, W]`` -> parameters ``[B, H, W, P]`` (K1, k2, k3, vB), clamped to
    ``lower``/``upper``. Shapes as :class:`jaxkin.nn.UNet` with ``conv="space_time"``, ``pooling="3d"``."""

    def __init__(self, depth: int, root: int, time_steps: int, lower, upper, in_channels: int = 1,
                 out_channels: int = 4):
        super().__init__()
        features = [root * 2**d for d in range(depth + 1)]
        c, skips, encoders = in_channels, [], []
        for f in features[:-1]:
            encoders.append(Block(c, f))
            skips.append(c + f)
            c = f
        self.encoders = nn.ModuleList(encoders)
        self.bottleneck = Block(c, features[-1])
        self.decoders = nn.ModuleList([Decoder(features[d + 1], features[d], skips[d]) for d in reversed(range(depth))])
        self.pool = nn.MaxPool3d(2)
        self.head = nn.Conv3d(root, out_channels, 3, padding=1)
        self.collapse = nn.Conv3d(out_channels, out_channels, (time_steps, 1, 1))
        self.register_buffer("lower", torch.tensor(lower, dtype=torch.float32).view(1, -1, 1, 1, 1))
        self.register_buffer("upper", torch.tensor(upper, dtype=torch.float32).view(1, -1, 1, 1, 1))

    def logits(self, x):
        """The collapsed outputs ``[B, P, 1, H, W]`` before the clamp."""
        skips = []
        for enc in self.encoders:
            y = enc(x)
            skips.append(torch.cat([x, y], dim=1))
            x = self.pool(y)
        x = self.bottleneck(x)
        for dec, skip in zip(self.decoders, reversed(skips)):
            x = dec(x, skip)
        return self.collapse(self.head(x))

    def forward(self, x):
        return torch.clamp(self.logits(x), self.lower, self.upper)[:, :, 0].permute(0, 2, 3, 1)


def torch_network(model_cfg) -> TorchUNet:
    """The PyTorch twin of a jaxkin :class:`jaxkin.nn.UNetConfig` ((2+1)D, 3D pooling, multi-clamp only)."""
    if (model_cfg.conv, model_cfg.pooling, model_cfg.final_activation) != ("space_time", "3d", "multi_clamp"):
        raise ValueError("the PyTorch reference implements exp4_1 only: space_time, 3d pooling, multi_clamp")
    return TorchUNet(model_cfg.depth, model_cfg.root_features, model_cfg.time_steps, model_cfg.lower,
                     model_cfg.upper, model_cfg.channels, model_cfg.out_channels)


def copy_jaxkin_weights(tmodel: TorchUNet, jmodel) -> None:
    """Copy a jaxkin UNet's weights into ``tmodel`` (kernels ``[kt, kh, kw, Ci, Co]`` -> ``[Co, Ci, kt, kh, kw]``;
    transposed convs ``[Ci, Co, kt, kh, kw]`` with the kernel flipped: jaxkin's is a correlation kernel)."""

    def conv(t, j, transposed=False):
        k = torch.from_numpy(np.array(j.kernel[...]))
        k = k.permute(3, 4, 0, 1, 2).flip((2, 3, 4)) if transposed else k.permute(4, 3, 0, 1, 2)
        with torch.no_grad():
            t.weight.copy_(k)
            t.bias.copy_(torch.from_numpy(np.array(j.bias[...])))

    def block(t, j):
        conv(t.space_in, j.space_in)
        conv(t.space, j.space)
        conv(t.time, j.time)

    for t, j in zip(tmodel.encoders, jmodel.encoders):
        block(t, j)
    block(tmodel.bottleneck, jmodel.bottleneck)
    for t, j in zip(tmodel.decoders, jmodel.decoders):
        conv(t.up.space, j.up.space, transposed=True)
        conv(t.up.time, j.up.time, transposed=True)
        block(t.block, j.block)
    conv(tmodel.head, jmodel.head)
    conv(tmodel.collapse, jmodel.collapse)


def network_input(tac, time_steps: int):
    """TACs ``[B, H, W, F]`` (kBq/ml) -> ``[B, 1, T, H, W]``, time edge-padded (the last frame repeated)."""
    x = tac.permute(0, 3, 1, 2)
    pad = time_steps - x.shape[1]
    if pad:
        x = torch.cat([x, x[:, -1:].expand(-1, pad, -1, -1)], dim=1)
    return x[:, None]


# --------------------------------------------------------------------------------------------------
# The kinetic model and the train step
# --------------------------------------------------------------------------------------------------


def torch_kinetic_input(kin) -> dict:
    """A jaxkin :class:`jaxkin.kinetics.KineticInput` (leaves stacked over subjects) as torch tensors."""
    g = kin.grid
    return {"table": torch.from_numpy(np.array(kin.table)), "slope": torch.from_numpy(np.array(kin.slope)),
            "blood": torch.from_numpy(np.array(kin.blood_frame_means)),
            "grid": (g.offset, g.step, g.size, g.max_rate)}


def model_tacs(params, kin: dict, subject):
    """Frame-averaged irreversible two-tissue TACs ``[B, H, W, F]`` of ``params [B, H, W, 4]`` (K1, k2, k3, vB),
    each sample with its subject's tables: ``K1/(k2+k3) [k3 int C_p + k2 (C_p * e^{-(k2+k3) t})]`` blended with
    the blood by vB, the convolution interpolated as :class:`jaxkin.kinetics.KineticInput` does."""
    k1, k2, k3, vb = params.unbind(-1)
    lam = k2 + k3
    denom = lam + 2 * _TINY
    integral_amp, amp = k1 * (k3 + _TINY) / denom, k1 * (k2 + _TINY) / denom
    offset, step, size, max_rate = kin["grid"]
    table, slope, blood = kin["table"][subject], kin["slope"][subject], kin["blood"][subject]  # [B, G, F], [B, F]
    clamped = torch.clamp(lam, 0.0, max_rate)
    position = torch.log1p(clamped / offset) / step
    index = torch.clamp(torch.floor(position), 0, size - 2).long()  # [B, H, W]
    s = (position - index)[..., None]
    rows = torch.arange(params.shape[0])[:, None, None]
    t0, t1, d0, d1 = table[rows, index], table[rows, index + 1], slope[rows, index], slope[rows, index + 1]
    s2, s3 = s * s, s * s * s
    conv = (2 * s3 - 3 * s2 + 1) * t0 + (3 * s2 - 2 * s3) * t1 + step * ((s3 - 2 * s2 + s) * d0 + (s3 - s2) * d1)
    tissue = amp[..., None] * conv + integral_amp[..., None] * table[:, None, None, 0, :]
    return (1.0 - vb[..., None]) * tissue + vb[..., None] * blood[:, None, None, :]


def masked_mse(tac, model, mask):
    """Mean squared error over masked voxels and all frames ((kBq/ml)^2), as :func:`jaxkin.nn.loss.masked_mse`."""
    m = mask[..., None]
    n = torch.clamp(m.sum() * tac.shape[-1], min=1.0)
    return (m * (tac - model) ** 2).sum() / n


def train_step(model, optimizer, batch: dict, kin: dict, time_steps: int) -> float:
    """One Adam step on the self-supervised loss of ``batch`` (torch tensors ``tac``, ``mask``, ``subject``)."""
    optimizer.zero_grad(set_to_none=True)
    params = model(network_input(batch["tac"], time_steps))
    loss = masked_mse(batch["tac"], model_tacs(params, kin, batch["subject"]), batch["mask"])
    loss.backward()
    optimizer.step()
    return loss.item()


def predict_volume(model, volume: np.ndarray, batch: int, time_steps: int) -> np.ndarray:
    """``volume [X, Y, Z, F]`` -> parameters ``[X, Y, Z, 4]``, ``batch`` slices at a time (last one padded)."""
    x, y, n_z, _ = volume.shape
    out = np.zeros((x, y, n_z, 4), np.float32)
    with torch.inference_mode():
        for z0 in range(0, n_z, batch):
            z1 = min(z0 + batch, n_z)
            tac = np.moveaxis(volume[:, :, z0:z1], 2, 0)
            tac = np.pad(tac, ((0, batch - (z1 - z0)), (0, 0), (0, 0), (0, 0)))
            pred = model(network_input(torch.from_numpy(np.ascontiguousarray(tac)), time_steps)).numpy()
            out[:, :, z0:z1] = np.moveaxis(pred[: z1 - z0], 0, 2)
    return out


# --------------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------------


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _report(what: str, unit: str, torch_times: list[float], jax_times: list[float]) -> None:
    tm, jm = statistics.median(torch_times), statistics.median(jax_times)
    ratios = [t / j for t, j in zip(torch_times, jax_times)]
    print(f"{what}: torch {tm:.3f} {unit}, jaxkin {jm:.3f} {unit} (medians of {len(ratios)} rounds); "
          f"torch / jaxkin = {statistics.median(ratios):.2f}x (median round ratio; ratio of medians {tm / jm:.2f}x, "
          f"rounds {', '.join(f'{r:.2f}' for r in ratios)})")


def _load_cfg(config: str, overrides: list[str]):
    from jaxkin import network as N

    return N.resolve_time_steps(N.load_config(config, overrides), 62)


def _machine_line(torch_threads: int) -> str:
    import jax

    return (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load "
            f"{os.getloadavg()[0]:.1f}; jax {jax.__version__} ({jax.device_count()} {jax.devices()[0].platform} "
            f"device(s)), torch {torch.__version__} ({torch_threads} threads)")


def compare_train(args) -> None:
    """Alternate one jaxkin and one torch train step, ``args.rounds`` times, after one warm-up step each."""
    import jax
    from flax import nnx
    from train_speed import synthetic_batch, timed_steps

    from jaxkin import network as N
    from jaxkin.nn import count_parameters

    cfg = _load_cfg(args.config, [f"batch_size={args.batch}", f"crop={args.size}"])
    batch, kin = synthetic_batch(args.batch, args.size)
    jmodel = N.make_model(cfg)
    tmodel = torch_network(cfg.model)
    copy_jaxkin_weights(tmodel, jmodel)  # same start (the time does not depend on it)
    print(_machine_line(torch.get_num_threads()))
    n_torch = sum(p.numel() for p in tmodel.parameters())
    print(f"parameters: torch {n_torch:,}, jaxkin {count_parameters(jmodel):,}")
    graphdef, params = nnx.split(jmodel)
    optimizer, _ = N.make_optimizer(cfg.optim, 150)
    state = N.TrainState(params, optimizer.init(params))
    step = N.make_train_step(graphdef, optimizer).lower(state, batch, kin).compile()
    t_opt = torch.optim.Adam(tmodel.parameters(), lr=cfg.optim.learning_rate)
    t_batch = {"tac": torch.tensor(np.array(batch["tac"])), "mask": torch.tensor(np.array(batch["mask"])),
               "subject": torch.tensor(np.array(batch["subject"])).long()}
    t_kin, t_steps = torch_kinetic_input(kin), cfg.model.time_steps
    state, m, _ = timed_steps(step, state, batch, kin, 1)  # warm-up
    t_loss = train_step(tmodel, t_opt, t_batch, t_kin, t_steps)
    print(f"first losses: jaxkin {float(m['loss']):.5g}, torch {t_loss:.5g} (same weights, same batch)")
    jax_times, torch_times = [], []
    for _ in range(args.rounds):
        state, m, times = timed_steps(step, state, batch, kin, 1)
        jax_times += times
        torch_times.append(_timed(lambda: train_step(tmodel, t_opt, t_batch, t_kin, t_steps)))
    jax.block_until_ready(m)
    _report(f"train step (batch {args.batch} x {args.size}^2 x {t_steps} time steps)", "s/step", torch_times,
            jax_times)


def compare_predict(args) -> None:
    """Alternate jaxkin's and torch's prediction of ``args.slices`` slices, ``args.rounds`` times."""
    from flax import nnx

    from jaxkin import network as N

    cfg = _load_cfg(args.config, [f"predict_batch_size={args.predict_batch}"])
    jmodel = N.make_model(cfg)
    tmodel = torch_network(cfg.model).eval()
    copy_jaxkin_weights(tmodel, jmodel)
    graphdef, params = nnx.split(jmodel)
    predictor = N.Predictor(graphdef, params, cfg, 62)
    print(_machine_line(torch.get_num_threads()))
    volume = np.random.default_rng(0).gamma(2.0, 5.0, (args.size, args.size, args.slices, 62)).astype(np.float32)
    t_steps = cfg.model.time_steps
    a = predictor.predict_volume(volume[:, :, : args.predict_batch])  # compile + warm-up
    b = predict_volume(tmodel, volume[:, :, : args.predict_batch], args.predict_batch, t_steps)
    print(f"warm-up batch: largest difference of the predicted parameters jaxkin - torch {np.max(np.abs(a - b)):.2e}")
    jax_times, torch_times = [], []
    for _ in range(args.rounds):
        jax_times.append(_timed(lambda: predictor.predict_volume(volume)) / args.slices)
        torch_times.append(_timed(lambda: predict_volume(tmodel, volume, args.predict_batch, t_steps)) / args.slices)
    _report(f"prediction ({args.slices} slices of {args.size}^2 x 62 frames, batch {args.predict_batch})", "s/slice",
            torch_times, jax_times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("both", "train", "predict"), default="both")
    ap.add_argument("--config", default=str(HERE.parent / "experiments" / "exp4_1.py"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=5, help="train batch (default 5)")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--slices", type=int, default=32, help="slices predicted per round (default 32)")
    ap.add_argument("--predict-batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all CPUs)")
    args = ap.parse_args()
    if args.part == "both":
        rest = [a for i, a in enumerate(sys.argv[1:]) if not a.startswith("--part") and sys.argv[i] != "--part"]
        for part in ("train", "predict"):
            subprocess.run([sys.executable, __file__, "--part", part, *rest], check=True)
        return
    torch.set_num_threads(args.threads)
    from jaxkin import distributed as dist

    dist.split_cpu_devices(1 if args.part == "train" else None)  # as train_speed.py and jaxkin predict
    (compare_train if args.part == "train" else compare_predict)(args)


if __name__ == "__main__":
    main()
