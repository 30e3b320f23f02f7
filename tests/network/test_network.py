"""The kinetic UNet, its loss, the train step, training with checkpoints and resume, configs and prediction.

Small shapes throughout (16 x 16 slices, 12 frames padded to 16 time steps) so the whole file compiles a handful of
programs; the paper's 112 x 112 x 64 shapes are checked with ``jax.eval_shape`` (no compute).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxkin
from jaxkin import kinetics
from jaxkin.errors import InputError
from jaxkin.nn import UNet, UNetConfig, count_parameters
from jaxkin.nn import loss as L
from jaxkin.nn import unet as U
from jaxkin import network as N

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "experiments").glob("exp*_*.py"))
# 12 frames over 30 min, padded to 16 time steps
FRAMES = jaxkin.FrameSchedule.from_durations([10, 10, 20, 20, 30, 60, 60, 120, 180, 300, 300, 600])
TINY = {"depth": 2, "time_steps": 16, "crop": 16, "batch_size": 2, "predict_batch_size": 3, "slices_per_subject": 3,
        "mask_threshold": 0.5, "learning_rate": 1e-3}


def _scan_kin(delay=0.1, scale=1.0):
    return jaxkin.prepare(jaxkin.feng_input(FRAMES.end[-1], delay=delay).scaled(scale), FRAMES)


def _smooth_params(rng, shape):
    """Smooth random parameter maps ``shape + (4,)`` inside the paper's bounds (a few Gaussian blobs)."""
    lo, hi = np.array([0.05, 0.2, 0.01, 0.01]), np.array([1.2, 2.0, 0.3, 0.2])
    yy, xx = np.meshgrid(np.linspace(-1, 1, shape[-2]), np.linspace(-1, 1, shape[-1]), indexing="ij")
    out = np.empty(shape + (4,), np.float32)
    for idx in np.ndindex(*shape[:-2]):
        for p in range(4):
            c = rng.uniform(-0.6, 0.6, 2)
            blob = np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / rng.uniform(0.1, 0.4))
            out[idx + (Ellipsis, p)] = lo[p] + (hi[p] - lo[p]) * (0.3 + 0.7 * blob)
    return out


# --------------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("conv,expected", [("space_time", 860_904), ("3d", 2_133_928)])
def test_parameter_counts_match_the_original_networks(conv, expected):
    model = nnx.eval_shape(lambda: UNet(UNetConfig(conv=conv), rngs=nnx.Rngs(0)))
    n = count_parameters(model)
    assert n == expected  # the original PyTorch nets: 860,904 and 2,133,928


def test_temporal_conv_is_shared_within_a_block():
    model = nnx.eval_shape(lambda: UNet(UNetConfig(), rngs=nnx.Rngs(0)))
    block = model.encoders[0]
    assert block.time.kernel.shape == (3, 1, 1, 8, 8) and not hasattr(block, "time2")


CONV_CASES = [
    ((1, 3, 3, 3, 5), lambda x, k, b: U.spatial_conv(x, k, b), (1, 1, 1)),
    ((1, 3, 3, 3, 5), lambda x, k, b: U.spatial_conv(x, k, b, up=True), (1, 2, 2)),
    ((3, 1, 1, 3, 5), lambda x, k, b: U.temporal_conv(x, k, b), (1, 1, 1)),
    ((3, 1, 1, 3, 5), lambda x, k, b: U.temporal_conv(x, k, b, up=True), (2, 1, 1)),
    ((3, 3, 3, 3, 5), lambda x, k, b: U.full_conv(x, k, b), (1, 1, 1)),
    ((3, 3, 3, 3, 5), lambda x, k, b: U.full_conv(x, k, b, up_time=True, up_space=True), (2, 2, 2)),
    ((3, 3, 3, 3, 5), lambda x, k, b: U.full_conv(x, k, b, up_space=True), (1, 2, 2)),
]


CONV_CASES += [  # few taps x input channels: shifted sums in the forward (U._SHIFT_SUM_MAX_TERMS)
    ((1, 3, 3, 1, 5), lambda x, k, b: U.spatial_conv(x, k, b, shift_sum=True), (1, 1, 1)),
    ((3, 1, 1, 8, 5), lambda x, k, b: U.temporal_conv(x, k, b, shift_sum=True), (1, 1, 1)),
    ((3, 1, 1, 8, 5), lambda x, k, b: U.temporal_conv(x, k, b), (1, 1, 1)),
]


@pytest.mark.parametrize("shape,fn,strides", CONV_CASES)
def test_fast_layout_convolutions_equal_xla_3d_convolutions(shape, fn, strides):
    key = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(key[0], (2, 6, 8, 4, shape[3]))
    k = jax.random.normal(key[1], shape)
    b = jax.random.normal(key[2], (5,))
    ours, ref = fn(x, k, b), U.conv3d_reference(x, k, b, strides=strides)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("shape,fn", [((1, 3, 3, 1, 5), lambda x, k, b, s: U.spatial_conv(x, k, b, shift_sum=s)),
                                        ((3, 1, 1, 8, 5), lambda x, k, b, s: U.temporal_conv(x, k, b, shift_sum=s))])
def test_shift_sum_convolutions_equal_the_conv_forward_and_keep_its_gradients(shape, fn):
    """The shifted-sum forward equals XLA's conv to float rounding; its VJP is the conv's (custom VJP)."""
    key = jax.random.split(jax.random.key(3), 4)
    x = jax.random.normal(key[0], (2, 6, 8, 4, shape[3]))
    k, b = jax.random.normal(key[1], shape), jax.random.normal(key[2], (5,))
    g = jax.random.normal(key[3], (2, 6, 8, 4, 5))
    (y_fast, vjp_fast), (y_conv, vjp_conv) = (jax.vjp(lambda x, k, b: fn(x, k, b, s), x, k, b) for s in (True, False))
    np.testing.assert_allclose(y_fast, y_conv, rtol=1e-5, atol=1e-5)
    for a, r in zip(vjp_fast(g), vjp_conv(g)):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-4)


def test_forward_only_network_equals_the_differentiable_one():
    """Prediction's formulation (shifted sums for the smallest convs) against training's, whole network."""
    cfg = U.UNetConfig(conv="space_time", depth=2, root_features=8, time_steps=16)
    model = U.UNet(cfg, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(5), (2, 16, 8, 8, 1))
    a, b = model.logits(x), model.logits(x, forward_only=True)
    assert float(jnp.max(jnp.abs(a - b))) <= 1e-5 * float(jnp.max(jnp.abs(a)))
    assert not np.array_equal(np.asarray(a), np.asarray(b))  # a different computation, not the same one


def test_head_with_time_collapse_equals_the_3d_conv_then_the_collapsing_conv():
    key = jax.random.split(jax.random.key(1), 5)
    x = jax.random.normal(key[0], (2, 6, 8, 4, 3))
    k, b = jax.random.normal(key[1], (3, 3, 3, 3, 4)), jax.random.normal(key[2], (4,))
    kc, bc = jax.random.normal(key[3], (6, 1, 1, 4, 5)), jax.random.normal(key[4], (5,))
    head = U.conv3d_reference(x, k, b)  # [B, T, H, W, 4]
    ref = jax.lax.conv_general_dilated(head, kc, (1, 1, 1), "VALID", dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
    ours = U.head_collapse(x, k, b, kc, bc)
    assert ours.shape == (2, 8, 4, 5)
    np.testing.assert_allclose(ours, ref[:, 0] + bc, rtol=1e-5, atol=1e-4)


def test_transposed_reference_equals_scattering_definition():
    """conv3d_reference's stride-2 transposed conv against its definition: y[2i + k - 1] += w[k] x[i] (1D)."""
    x = np.random.default_rng(0).normal(size=5).astype(np.float32)
    w = np.array([0.3, -1.2, 2.0], np.float32)
    y = np.zeros(11)
    for i in range(5):
        for k in range(3):
            y[2 * i + k] += w[2 - k] * x[i]  # dilated-conv form = scatter with the flipped kernel
    y = y[1:11]  # padding 1, output padding 1 -> length 10
    ref = U.conv3d_reference(jnp.asarray(x)[None, :, None, None, None], jnp.asarray(w)[:, None, None, None, None],
                             0.0, strides=(2, 1, 1))
    np.testing.assert_allclose(np.asarray(ref).ravel(), y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_table1_configs_give_paper_shapes(path):
    cfg = N.load_config(path)
    out = jax.eval_shape(lambda x: N.make_model(cfg)(x), jax.ShapeDtypeStruct((5, 64, 112, 112, 1), jnp.float32))
    assert out.shape == (5, 112, 112, 4)


def test_quickstart_shapes():
    cfg = N.resolve_time_steps(N.load_config(ROOT / "experiments" / "quickstart.py"), 62)  # time_steps 0: auto
    x = jax.ShapeDtypeStruct((5, 64, cfg.data.crop, cfg.data.crop, cfg.model.channels), jnp.float32)  # TAC + input
    assert cfg.data.crop == 32 and jax.eval_shape(lambda x: N.make_model(cfg)(x), x).shape == (5, 32, 32, 4)


def test_final_activations():
    from jaxkin.nn.activations import final_activation

    lo, hi = (0.01, 0.01, 0.01, 0.0), (2.0, 3.0, 1.0, 1.0)
    z = jnp.array([[-5.0, 0.5, 7.0, 0.3], [1.0, -2.0, 0.2, 5.0]])
    np.testing.assert_allclose(final_activation("abs")(z, lo, hi), np.abs(z))
    np.testing.assert_allclose(final_activation("clamp")(z, lo, hi), np.clip(z, 0.01, 3.0))
    np.testing.assert_allclose(final_activation("multi_clamp")(z, lo, hi), np.clip(z, lo, hi))
    s = final_activation("sigmoid")(z, lo, hi)
    np.testing.assert_allclose(s, np.array(lo) + (np.array(hi) - np.array(lo)) / (1 + np.exp(-np.asarray(z))), rtol=1e-6)
    g_clamp = jax.grad(lambda z: final_activation("multi_clamp")(z, lo, hi).sum())(z)
    g_sig = jax.grad(lambda z: final_activation("sigmoid")(z, lo, hi).sum())(z)
    assert np.sum(np.asarray(g_clamp) == 0) >= 3  # out-of-range entries get no gradient from a hard clamp
    assert np.all(np.asarray(g_sig) > 0)


# --------------------------------------------------------------------------------------------------
# Loss and metrics
# --------------------------------------------------------------------------------------------------


def test_masked_mse_mae_cosine_against_numpy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2, 4, 5, 12)), rng.normal(size=(2, 4, 5, 12))
    mask = rng.uniform(size=(2, 4, 5)) > 0.6
    d = (a - b)[mask]
    assert np.isclose(float(L.masked_mse(jnp.asarray(a), jnp.asarray(b), mask)), np.mean(d**2), rtol=1e-5)
    # the denominator counts masked entries only: not the same as the mean over all entries
    assert not np.isclose(np.mean(d**2), np.mean((a - b) ** 2 * mask[..., None]))
    from scipy.spatial.distance import cosine

    cs = np.array([1 - cosine(x, y) for x, y in zip(a[mask], b[mask])])
    sums = {k: float(v) for k, v in L.metric_sums(jnp.asarray(a), jnp.asarray(b), mask).items()}
    assert sums["n"] == mask.sum()
    np.testing.assert_allclose(sums["cs"] / sums["n"], cs.mean(), rtol=1e-5)
    np.testing.assert_allclose(sums["mae"] / sums["n"], np.abs(d).mean(), rtol=1e-5)


def test_model_tacs_use_each_samples_own_input_function():
    kins = [_scan_kin(0.1, 1.0), _scan_kin(0.4, 1.7)]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *kins)
    params = jnp.asarray(_smooth_params(np.random.default_rng(0), (3, 4, 4)))
    subject = jnp.array([1, 0, 1])
    got = L.model_tacs(params, stacked, subject)
    for i, s in enumerate([1, 0, 1]):
        np.testing.assert_allclose(got[i], kinetics.two_tissue_irreversible(params[i], kins[s]), rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# The pure train step
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_batch():
    """Two 16 x 16 slices of noiseless TACs from smooth random parameter maps, two subjects' input functions."""
    kins = [_scan_kin(0.1, 1.0), _scan_kin(0.3, 1.3)]
    kin = jax.tree.map(lambda *x: jnp.stack(x), *kins)
    params = _smooth_params(np.random.default_rng(1), (2, 16, 16))
    subject = np.array([0, 1], np.int32)
    tac = np.asarray(L.model_tacs(jnp.asarray(params), kin, jnp.asarray(subject)))
    mask = np.ones((2, 16, 16), np.float32)
    mask[:, :2] = 0.0
    return {"tac": tac, "mask": mask, "subject": subject}, kin


# Every Table 1 row runs one real train step at depth 1 (each compile costs ~10 s on the 2-core CPU); all 8 rows are
# also built and run abstractly at 112 x 112 by test_table1_configs_give_paper_shapes.
@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_table1_configs_run_one_train_step(path, synthetic_batch):
    batch, kin = synthetic_batch
    cfg = N.load_config(path, [f"{k}={v}" for k, v in (TINY | {"depth": 1}).items()])  # depth 1: compiles fast
    graphdef, params = nnx.split(N.make_model(cfg))
    before = jax.tree.map(np.array, params)  # a host copy: the step donates (deletes) the state it is given
    opt, _ = N.make_optimizer(cfg.optim, 1)
    new, m = N.make_train_step(graphdef, opt)(N.TrainState(params, opt.init(params)), batch, kin)
    assert np.isfinite(float(m["loss"])) and float(m["loss"]) > 0
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b))), new.params, before))
    assert max(moved) > 0


def test_training_reduces_loss_and_gradient_reaches_every_channel(synthetic_batch):
    batch, kin = synthetic_batch
    cfg = N.config_from_dict(TINY | {"final_activation": "sigmoid", "input_scale": 0.05, "learning_rate": 3e-3})
    graphdef, params = nnx.split(N.make_model(cfg))

    def loss(p):
        pred = N.forward(graphdef, p, batch["tac"])
        return L.masked_mse(batch["tac"], L.model_tacs(pred, kin, batch["subject"]), batch["mask"])

    grads = jax.jit(jax.grad(loss))(params)
    for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
        per_channel = np.abs(np.asarray(g)).reshape(-1, g.shape[-1]).sum(axis=0)
        assert np.all(per_channel > 0), f"no gradient for some output channels of {jax.tree_util.keystr(path)}"
    opt, _ = N.make_optimizer(cfg.optim, 1)
    step = N.make_train_step(graphdef, opt)
    state, losses = N.TrainState(params, opt.init(params)), []
    for _ in range(20):
        state, m = step(state, batch, kin)
        losses.append(m["loss"])
    losses = [float(x) for x in losses]
    assert losses[-1] < 0.5 * losses[0], losses


# --------------------------------------------------------------------------------------------------
# Training runs on a tiny BIDS dataset: checkpoints, resume, prediction
# --------------------------------------------------------------------------------------------------


def _write_dataset(root: Path, splits=("train", "val", "test"), n_z: int = 5) -> Path:
    """A BIDS dataset of ``len(splits)`` subjects (``sub-01`` ...) in these splits: noisy 2TC TACs in a 12 x 12
    body of 16 x 18 x ``n_z`` voxels, a Feng input function each, a one-label ``body`` segmentation."""
    from jaxkin.io.blood import write_blood
    from jaxkin.io.labels import write_labels
    from jaxkin.io.pet import write_pet

    rng = np.random.default_rng(7)
    affine = np.diag([2.5, 2.5, 6.0, 1.0])
    lines = ["participant_id\tsplit"]
    for s, split in enumerate(splits, start=1):
        sid = f"sub-{s:02d}"
        pet_dir = root / sid / "pet"
        pet_dir.mkdir(parents=True)
        inp = jaxkin.feng_input(FRAMES.end[-1], delay=0.05 * s).scaled(1.0 + 0.1 * s)
        params = _smooth_params(rng, (n_z, 16, 18))  # 18: prediction pads it to 20 and crops back
        tac = np.asarray(kinetics.two_tissue_irreversible(jnp.asarray(params), jaxkin.prepare(inp, FRAMES)))
        body = np.zeros((n_z, 16, 18), bool)
        body[:, 2:14, 3:15] = True
        tac = tac * body[..., None] + rng.normal(scale=0.05, size=tac.shape)
        write_pet(pet_dir / f"{sid}_pet.nii.gz", np.moveaxis(tac, 0, 2), FRAMES, affine)
        write_blood(pet_dir / f"{sid}_recording-AIF_blood.tsv", whole_blood=inp)
        labels = np.moveaxis(body.astype(np.int32), 0, 2)
        write_labels(pet_dir / f"{sid}_dseg.nii.gz", labels, {1: "body"}, affine)
        lines.append(f"{sid}\t{split}")
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return _write_dataset(tmp_path_factory.mktemp("bids"))


def _run_cfg(**kw):
    return N.config_from_dict(TINY | {"epochs": 3, "lr_halving_epochs": 2, "input_scale": 0.05} | kw)


@pytest.fixture(scope="module")
def full_run(dataset, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full")
    summary = N.train(_run_cfg(), workdir, dataset, progress=False)
    return workdir, summary


@pytest.mark.slow
def test_uninterrupted_run_writes_everything(full_run):
    workdir, summary = full_run
    rows = N.read_metrics(workdir)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert all(np.isfinite(r["train_loss"]) and r["val_loss"] > 0 for r in rows)
    assert rows[0]["learning_rate"] == pytest.approx(1e-3) and rows[2]["learning_rate"] == pytest.approx(5e-4)
    assert summary["test"]["voxels"] > 0 and 0 < summary["test"]["cs"] <= 1
    for name in ("config.json", "model.json", "test_metrics.json", "report.md"):
        assert (workdir / name).is_file()
    assert len(list((workdir / "predictions" / "sub-03").glob("*_mimap.nii.gz"))) == 5


@pytest.mark.slow
def test_a_run_guided_by_the_voxel_fit_fits_its_training_slices_and_trains(dataset, tmp_path, capsys):
    summary = N.train(_run_cfg(epochs=1, lm_guidance=1.0, predict_test=False), tmp_path, dataset, progress=False)
    err = capsys.readouterr().err
    assert "voxels of sub-01 for lm_guidance" in err and "sub-02 for lm_guidance" not in err  # train subjects only
    rows = N.read_metrics(tmp_path)
    assert [r["epoch"] for r in rows] == [0] and np.isfinite(rows[0]["train_loss"])
    assert summary["test"]["voxels"] > 0


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_losses(full_run, dataset, tmp_path):
    workdir, _ = full_run
    part = N.train(_run_cfg(), tmp_path, dataset, progress=False, stop_after_epochs=1)
    assert not part["finished"]
    with pytest.raises(InputError, match="--resume"):
        N.train(_run_cfg(), tmp_path, dataset, progress=False)
    with pytest.raises(InputError, match="differs from the run .* in learning_rate"):
        N.train(_run_cfg(learning_rate=2e-3), tmp_path, dataset, progress=False, resume=True)
    N.train(_run_cfg(), tmp_path, dataset, progress=False, resume=True)
    a, b = N.read_metrics(workdir), N.read_metrics(tmp_path)
    assert len(a) == len(b) == 3
    for ra, rb in zip(a, b):
        for key in ("train_loss", "val_loss", "val_cs", "learning_rate"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-6, abs=1e-9), (key, ra, rb)


def test_checkpoint_round_trip(tmp_path):
    cfg = _run_cfg()
    graphdef, params = nnx.split(N.make_model(cfg))
    opt, _ = N.make_optimizer(cfg.optim, 3)
    state = opt.init(params)
    state = jax.tree.map(lambda x: x + 1 if jnp.issubdtype(x.dtype, jnp.floating) else x + 2, state)
    mgr = N.checkpoint_manager(tmp_path / "ck")
    N.save_checkpoint(mgr, 4, params, state, {"epoch": 4, "best_val": 1.5})
    fresh = nnx.split(N.make_model(dataclasses.replace(cfg, seed=1)))[1]
    p2, s2, meta = N.restore_checkpoint(N.checkpoint_manager(tmp_path / "ck"), fresh, opt.init(fresh))
    assert meta == {"epoch": 4, "best_val": 1.5}
    for x, y in zip(jax.tree.leaves((params, state)), jax.tree.leaves((p2, s2))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_predict_cli_writes_maps_with_the_input_geometry(full_run, dataset, tmp_path):
    import nibabel as nib

    from jaxkin.cli import main
    from jaxkin.io.pet import load_pet

    workdir, _ = full_run
    pet_path = dataset / "sub-03" / "pet" / "sub-03_pet.nii.gz"
    rc = main(["predict", "--checkpoint", str(workdir), "--pet", str(pet_path), "--input-function",
               str(dataset / "sub-03" / "pet" / "sub-03_recording-AIF_blood.tsv"), "--out", str(tmp_path)])
    assert rc == 0
    pet = load_pet(pet_path)
    k1 = nib.load(tmp_path / "sub-03_model-2tcmirr_meas-K1_mimap.nii.gz")
    assert k1.shape == pet.shape[:3]
    np.testing.assert_allclose(k1.affine, pet.affine)
    # the batched, padded volume path equals the network on each (zero-padded) slice
    predictor = N.load_predictor(workdir)
    volume = pet.read()
    maps = predictor.predict_volume(volume)
    np.testing.assert_allclose(np.asarray(k1.dataobj), maps[..., 0], rtol=1e-6)
    z = 4
    py = -volume.shape[1] % 2**predictor.cfg.model.depth  # 18 -> 20 (depth 2): one zero column each side
    assert py == 2
    tac = np.pad(volume[:, :, z][None], ((0, 0), (0, 0), (1, 1), (0, 0)))
    direct = np.asarray(N.forward(predictor.graphdef, predictor.params, tac))[0, :, 1:19]
    np.testing.assert_allclose(maps[:, :, z], direct, rtol=1e-4, atol=1e-5)
    ki = nib.load(tmp_path / "sub-03_model-2tcmirr_meas-Ki_mimap.nii.gz").get_fdata()
    np.testing.assert_allclose(ki, maps[..., 0] * maps[..., 2] / (maps[..., 1] + maps[..., 2]), rtol=1e-4)


# --------------------------------------------------------------------------------------------------
# Bad configs: one clear line
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("override,message", [
    ("colour=red", "unknown key 'colour'"),
    ("epochs=ten", "epochs must be int"),
    ("conv=4d", "conv must be one of space_time, 3d"),
    ("model.conv=4d", "conv must be one of space_time, 3d"),
    ("optim.depth=3", "unknown key 'optim.depth'"),
    ("crop=100", "crop (100) must be a multiple of 2**depth = 16"),
    ("batch_size=0", "batch_size must be positive"),
])
def test_bad_config_values_fail_with_one_line(override, message):
    with pytest.raises(InputError) as err:
        N.load_config(ROOT / "experiments" / "exp4_1.py", [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_config_file_and_missing_data_on_the_command_line(tmp_path, capsys):
    from jaxkin.cli import main

    bad = tmp_path / "bad.py"
    bad.write_text("def get_config():\n    return {'learning_rate': 'fast'}\n")
    assert main(["train", "--config", str(bad), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "learning_rate must be float" in err
    assert main(["train", "--config", str(ROOT / "experiments" / "exp4_1.py"), "--workdir", str(tmp_path / "w"),
                   "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nowhere" in err and "participants.tsv" in err


def test_bare_dotted_and_nested_keys_give_the_same_config(tmp_path):
    flat = N.config_from_dict({"epochs": 7, "crop": 32, "conv": "3d", "seed": 2})
    assert flat == N.config_from_dict({"optim.epochs": 7, "data.crop": 32, "model.conv": "3d", "seed": 2})
    assert flat == N.config_from_dict({"optim": {"epochs": 7}, "data": {"crop": 32}, "model": {"conv": "3d"},
                                       "seed": 2})
    assert (flat.optim.epochs, flat.data.crop, flat.model.conv) == (7, 32, "3d")
    # the resolved config round-trips through its nested JSON form (config.json, model.json)
    import json

    assert N.config_from_dict(json.loads(json.dumps(dataclasses.asdict(flat)))) == flat
    nested = tmp_path / "nested.py"
    nested.write_text("def get_config():\n    return {'optim': {'epochs': 7}, 'data': {'crop': 32}}\n")
    cfg = N.load_config(nested, ["optim.epochs=9", "model.conv=3d", "seed=2"])
    assert cfg == dataclasses.replace(flat, optim=dataclasses.replace(flat.optim, epochs=9))


def test_network_bounds_are_the_kinetic_models():
    fdg = jaxkin.get_model("2tcmirr")
    cfg = N.load_config(EXPERIMENTS[0])
    assert cfg.model.lower == fdg.lower and cfg.model.upper == fdg.upper
