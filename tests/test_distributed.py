"""Scaling out: data-parallel training on 4 devices and on 2 processes x 2 devices, slab-split fitting and
prediction, against the same run on one device; bad multi-host settings.

Several CPU devices are forced with ``XLA_FLAGS=--xla_force_host_platform_device_count``; processes connect over
127.0.0.1 and use gloo collectives. Every subprocess is killed if it outlives its deadline.

Tolerance: a data-parallel step computes the same sums in a different order (per-device partial sums, then an
all-reduce), so float32 losses agree to about 1e-7 relative; the tests allow 1e-5 (losses) and 1e-4 (maps).
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from jaxkin import distributed as dist
from jaxkin import network as N
from jaxkin.errors import InputError

from _tiny_scans import write_dataset

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"depth": 2, "time_steps": 16, "crop": 16, "batch_size": 4, "predict_batch_size": 3, "slices_per_subject": 2,
          "mask_threshold": 0.5, "learning_rate": 1e-3, "epochs": 3, "lr_halving_epochs": 2, "input_scale": 0.05,
          "data_shards": 2}
SUBJECT = "sub-04"  # the test subject: predicted after training, and fitted


def _env(devices: int) -> dict:
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    return dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu",
                PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_all(scripts: list[str], env, timeout: float = 240) -> list[subprocess.CompletedProcess]:
    """Run ``python -c script`` for every script at once (``env``: one for all or one each); kill them all at the
    deadline (or on failure)."""
    envs = env if isinstance(env, list) else [env] * len(scripts)
    procs = [subprocess.Popen([sys.executable, "-c", s], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for s, e in zip(scripts, envs)]
    deadline = time.monotonic() + timeout
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(deadline - time.monotonic(), 1))
            results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def _cli(args: list) -> str:
    """A script that runs ``jaxkin <args>`` for each argument list in turn and stops at the first failure."""
    return ("import sys\nfrom jaxkin.cli import main\n"
            f"for argv in {[list(map(str, a)) for a in args]!r}:\n"
            "    rc = main(argv)\n"
            "    if rc:\n"
            "        sys.exit(rc)\n")


#: The words of gloo's connection messages ("[Gloo] Rank 1 is connected to 1 peer ranks. Expected number of connected
#: peer ranks is : 1"), which its threads may split over lines (a line "1" or "Rank" alone was seen).
_GLOO_WORDS = {"[Gloo]", "Rank", "is", "connected", "to", "peer", "ranks.", "ranks", "Expected", "number", "of", ":"}


def _ours(stdout: str) -> list[str]:
    """The lines of ``stdout`` that are not gloo's (its C++ library prints how its ranks connect, from several
    threads, so its lines can be split or run together: a line made only of its words and numbers is gloo's)."""
    return [line for line in stdout.splitlines()
            if line.strip() and "[Gloo]" not in line and "peer ranks" not in line
            and not all(word in _GLOO_WORDS or word.isdigit() for word in line.split())]


def _losses(workdir: Path) -> np.ndarray:
    with (workdir / "metrics.csv").open() as f:
        return np.array([[float(r["train_loss"]), float(r["val_loss"])] for r in csv.DictReader(f)])


def _map(folder: Path, param: str, model: str = "2tcmirr") -> np.ndarray:
    return np.asarray(nib.load(folder / f"{SUBJECT}_model-{model}_meas-{param}_mimap.nii.gz").dataobj)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The dataset (2 train, 1 val, 1 test subjects), the config file, and the reference: training and a fit on one
    device in this process."""
    root = tmp_path_factory.mktemp("distributed")
    data = write_dataset(root / "data", ("train", "train", "val", "test"))
    config = root / "tiny.py"
    config.write_text(f"def get_config():\n    return {CONFIG!r}\n")
    N.train(N.load_config(config), root / "one", data, progress=False)
    pet_dir = data / SUBJECT / "pet"
    files = ["--pet", pet_dir / f"{SUBJECT}_pet.nii.gz", "--input-function",
             pet_dir / f"{SUBJECT}_recording-AIF_blood.tsv", "--chunk-size", "256", "--no-progress"]
    from jaxkin.cli import main

    assert main(["fit", *map(str, files), "--out", str(root / "fit-one")]) == 0
    return {"root": root, "data": data, "config": config, "fit_args": files}


@pytest.mark.slow
def test_four_devices_train_like_one(setup, tmp_path):
    root, data, config = setup["root"], setup["data"], setup["config"]
    train = ["train", "--config", config, "--data", data, "--no-progress"]
    # a batch of 6 does not split over 4 devices: one line, nothing written; then the same on 2 of the 4 devices
    bad_then_two = ("import sys\nfrom jaxkin.cli import main\n"
                    f"assert main({list(map(str, train + ['--workdir', tmp_path / 'bad', '--set', 'batch_size=6']))!r}) == 2\n"
                    f"sys.exit(main({list(map(str, train + ['--workdir', tmp_path / 'two', '--set', 'devices=2']))!r}))\n")
    two, good = _run_all([bad_then_two, _cli([train + ["--workdir", tmp_path / "four"]])], _env(4))
    assert ("batch_size (6) must be divisible by the number of devices (4 = 1 process(es) x 4); e.g. "
            "batch_size=8 or train on fewer: devices=3") in two.stderr
    assert "Traceback" not in two.stderr and not (tmp_path / "bad").exists()
    assert two.returncode == 0 and good.returncode == 0, (two.stderr[-3000:], good.stderr[-3000:])
    one, four = _losses(root / "one"), _losses(tmp_path / "four")
    assert one.shape == four.shape == (3, 2)
    np.testing.assert_allclose(four, one, rtol=1e-5)
    np.testing.assert_allclose(_losses(tmp_path / "two"), one, rtol=1e-5)
    np.testing.assert_allclose(_map(tmp_path / "four" / "predictions" / SUBJECT, "Ki"),
                               _map(root / "one" / "predictions" / SUBJECT, "Ki"), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_two_processes_train_and_fit_like_one_process(setup, tmp_path):
    root, data, config = setup["root"], setup["data"], setup["config"]
    port = _free_port()
    scripts = []
    for pid in (0, 1):
        flags = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", pid,
                 "--init-timeout", "120"]
        scripts.append(_cli([
            # data_shards=0: one shard per process, here 2 as in the reference
            ["train", "--config", config, "--data", data, "--workdir", tmp_path / "run", "--no-progress",
             "--set", "data_shards=0", *flags],
            ["fit", *setup["fit_args"], "--out", tmp_path / "fit", *flags],
        ]))
    results = _run_all(scripts, _env(2))
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    main, other = results
    assert "wrote" in main.stdout and "fitted" in main.stdout  # process 0 reports ...
    assert _ours(other.stdout) == []  # ... the other one prints nothing of its own
    np.testing.assert_allclose(_losses(tmp_path / "run"), _losses(root / "one"), rtol=1e-5)
    # maps of the test subject, predicted in two slabs and assembled by process 0
    ki = _map(tmp_path / "run" / "predictions" / SUBJECT, "Ki")
    np.testing.assert_allclose(ki, _map(root / "one" / "predictions" / SUBJECT, "Ki"), rtol=1e-4, atol=1e-6)
    # the checkpoint both processes wrote restores here and reproduces those maps
    from jaxkin.io.pet import load_pet

    predictor = N.load_predictor(tmp_path / "run")
    params = predictor.predict_volume(load_pet(data / SUBJECT / "pet" / f"{SUBJECT}_pet.nii.gz").read())
    np.testing.assert_allclose(params[..., 0], _map(tmp_path / "run" / "predictions" / SUBJECT, "K1"), rtol=1e-5)
    # the fit: each process fitted its slab of slices; the assembled maps equal the one-process fit
    for name in ("Ki", "SSE", "K1"):
        np.testing.assert_allclose(_map(tmp_path / "fit", name), _map(root / "fit-one", name), rtol=1e-4, atol=1e-7)
    assert np.count_nonzero(_map(tmp_path / "fit", "Ki")) > 100


def _slurm_port() -> tuple[int, int]:
    """A Slurm job id whose coordinator port (JAX: 61440 + id % 4096) is free here, and that port."""
    for job in np.random.default_rng().integers(10_000, 1_000_000, 50):
        port = 61440 + int(job) % 4096
        try:
            with socket.socket() as s:
                s.bind(("", port))
            return int(job), port
        except OSError:
            continue
    pytest.skip("no free port in JAX's Slurm port range")


@pytest.mark.slow
def test_slurm_is_detected_and_predict_and_fit_split_the_volume(setup, tmp_path):
    """``--distributed`` under (a simulated) ``srun -n 2``: JAX reads the SLURM_* variables; each process predicts
    and fits its slab of slices on its one device and process 0 writes the maps once."""
    root, data = setup["root"], setup["data"]
    job, _ = _slurm_port()
    pet_dir = data / SUBJECT / "pet"
    results = []
    scripts, envs = [], []
    for pid in (0, 1):
        scripts.append(_cli([
            ["predict", "--checkpoint", root / "one", "--pet", pet_dir / f"{SUBJECT}_pet.nii.gz", "--input-function",
             pet_dir / f"{SUBJECT}_recording-AIF_blood.tsv", "--out", tmp_path / "predict", "--distributed",
             "--init-timeout", "120"],
            ["fit", *setup["fit_args"], "--out", tmp_path / "fit", "--distributed"],
        ]))
        envs.append(_env(1) | {"SLURM_JOB_ID": str(job), "SLURM_STEP_NODELIST": "localhost", "SLURM_NTASKS": "2",
                               "SLURM_PROCID": str(pid), "SLURM_LOCALID": str(pid)})
    results = _run_all(scripts, envs)
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    assert "slices in" in results[0].stdout and "fitted" in results[0].stdout
    assert _ours(results[1].stdout) == []  # process 1 prints nothing of its own
    for name in ("K1", "Ki"):
        np.testing.assert_allclose(_map(tmp_path / "predict", name), _map(root / "one" / "predictions" / SUBJECT, name),
                                   rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(_map(tmp_path / "fit", "Ki"), _map(root / "fit-one", "Ki"), rtol=1e-4, atol=1e-7)
    meta = (tmp_path / "predict" / f"{SUBJECT}_model-2tcmirr_meas-K1_mimap.json").read_text()
    reference = (root / "one" / "predictions" / SUBJECT / f"{SUBJECT}_model-2tcmirr_meas-K1_mimap.json").read_text()
    # the TAC metrics sum over both slabs: the voxel count equals the one-process prediction's
    import json

    assert json.loads(meta)["TACMetrics"]["voxels"] == json.loads(reference)["TACMetrics"]["voxels"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("process_id,message", [
    (1, "no coordinator answers at 127.0.0.1:{port}"),
    (0, "not all 2 processes connected to 127.0.0.1:{port}"),
])
def test_missing_coordinator_or_processes_end_with_one_line(setup, tmp_path, process_id, message):
    port = _free_port()
    argv = ["fit", *setup["fit_args"], "--out", tmp_path / "out", "--coordinator", f"127.0.0.1:{port}",
            "--num-processes", "2", "--process-id", process_id, "--init-timeout", "3"]
    (r,) = _run_all([_cli([argv])], _env(1), timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("jaxkin fit: error: " + message.format(port=port)), r.stderr[-2000:]
    assert "waited 3 s" in lines[-1] and "Traceback" not in r.stderr
    assert not any((tmp_path / "out").glob("*"))


_CHECK = """
import sys
import time
import numpy as np
from jaxkin import distributed as dist
from jaxkin.errors import InputError

dist.initialize("127.0.0.1:{port}", 2, {pid}, timeout=120)
pid = dist.process_index()
# bytes travel: float64 and int64 arrive exact (JAX alone would narrow them to 32 bits)
values = dist.gather_arrays(np.array([1 + 1e-12 * pid], np.float64))
counts = dist.gather_arrays(np.array([2**40 + pid], np.int64))
assert values.dtype == np.float64 and values[1, 0] == 1 + 1e-12, values
assert counts.dtype == np.int64 and counts.ravel().tolist() == [2**40, 2**40 + 1], counts


def read():
    if pid == 1:
        raise InputError("sub-09_pet.nii.gz: truncated file")
    return "fine"


try:
    dist.check_everywhere(read)
except InputError as err:
    print(err)
    sys.exit(2)
"""


@pytest.mark.slow
def test_an_input_error_on_one_process_stops_every_process():
    port = _free_port()
    results = _run_all([_CHECK.format(port=port, pid=pid) for pid in (0, 1)], _env(1), timeout=120)
    assert [r.returncode for r in results] == [2, 2], [r.stderr[-2000:] for r in results]
    assert _ours(results[0].stdout) == ["process 1: sub-09_pet.nii.gz: truncated file"]
    assert _ours(results[1].stdout) == ["sub-09_pet.nii.gz: truncated file"]


@pytest.mark.slow
def test_resume_on_a_different_number_of_shards_is_refused(setup, tmp_path):
    import dataclasses
    import json

    cfg = N.config_from_dict({**CONFIG, "data_shards": 0})  # one shard per process: 1 here
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(cfg)))
    (tmp_path / "model.json").write_text(json.dumps({"data_shards": 2}))  # as a run on 2 processes wrote it
    with pytest.raises(InputError, match=r"cannot resume: the run used 2 data shard\(s\), now 1 .*run with data_shards=2"):
        N.train(cfg, tmp_path, setup["data"], resume=True, progress=False)
    with pytest.raises(InputError, match=r"devices \(2\) must be .* at most the 1 devices there are"):
        N.train(N.config_from_dict({**CONFIG, "devices": 2}), tmp_path / "new", setup["data"], progress=False)


def test_bad_multi_host_settings_name_the_parameter():
    with pytest.raises(InputError, match="^coordinator, num_processes and process_id go together"):
        dist.initialize("127.0.0.1:1234")
    with pytest.raises(InputError, match="expected HOST:PORT"):
        dist.initialize("127.0.0.1", 2, 0)
    with pytest.raises(InputError, match=r"^process_id must be in 0 \.\. 1, got 2$"):
        dist.initialize("127.0.0.1:1234", 2, 2)
    with pytest.raises(InputError, match="does not combine"):
        dist.initialize("127.0.0.1:1234", 2, 0, auto=True)
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(InputError, match=f"cannot listen on port {port}"):
            dist.initialize(f"127.0.0.1:{port}", 2, 0)
    dist.initialize()  # no settings: one process, nothing to do


def test_shares_cover_every_item_once():
    for n in (0, 1, 5, 80, 81):
        for count in (1, 2, 3, 7):
            parts = [dist.share(n, p, count) for p in range(count)]
            assert [i for s in parts for i in range(s.start, s.stop)] == list(range(n))
            assert max(s.stop - s.start for s in parts) - min(s.stop - s.start for s in parts) <= 1
    x = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(dist.gather_slabs(x, 4), x)  # one process: already whole
    np.testing.assert_array_equal(dist.gather_arrays(x), x[None])


def test_batches_do_not_depend_on_how_many_processes_hold_the_shards():
    """The global batches of 3 shards (sizes 5, 3, 4; 2 rows each) are the same whether one process holds all shards
    or each shard sits on its own process, with the rows of each shard at the same place."""
    sizes = np.array([5, 3, 4])
    empty = N.SliceData(np.zeros((12, 1, 1, 1)), np.zeros((12, 1, 1)), np.zeros(12, np.int32), np.zeros(12))
    together = N.ShardedSlices(empty, sizes, range(0, 3)).index_batches(2, (0, 7))
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    apart = []
    for shard in range(3):
        own = N.ShardedSlices(empty, sizes, range(shard, shard + 1)).index_batches(2, (0, 7))
        apart.append(np.where(own >= 0, own + offsets[shard], -1))  # local index -> index in the joint data
    np.testing.assert_array_equal(together, np.concatenate(apart, axis=1))
    assert together.shape == (3, 6)  # the largest shard (5 slices) needs 3 batches of 2
    for shard in range(3):  # every slice of every shard exactly once, the rest padding
        column = together[:, 2 * shard: 2 * shard + 2].ravel()
        assert sorted(column[column >= 0]) == list(range(offsets[shard], offsets[shard] + sizes[shard]))


@pytest.mark.slow
def test_commands_split_the_cpu_into_two_devices_unless_told_otherwise():
    """``split_cpu_devices`` (run by ``jaxkin train``/``predict``): 2 CPU devices, the user's XLA_FLAGS win; a
    training batch that does not divide over the devices jaxkin made trains on as many as divide it."""
    script = ("import os\nfrom jaxkin import distributed as dist\nfrom jaxkin import network as N\n"
              "from jaxkin.network.train import _data_parallel\n"
              "n = dist.split_cpu_devices()\nimport jax\n"
              "sizes = [_data_parallel(N.config_from_dict({'batch_size': b}))[0].size for b in (4, 5)] "
              "if n else []\n"
              "print(n, jax.device_count(), dist.cpu_split_by_jaxkin(), sizes, dist.split_cpu_devices())\n")
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXKIN_CPU_DEVICES")}
    envs = [dict(base, JAXKIN_CPU_DEVICES="2", JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT)),
            dict(base, JAXKIN_CPU_DEVICES="2", XLA_FLAGS="--xla_force_host_platform_device_count=3",
                 JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT)),
            dict(base, JAXKIN_CPU_DEVICES="1", JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))]
    split, user, off = _run_all([script] * 3, envs)
    assert split.returncode == user.returncode == off.returncode == 0, (split.stderr[-2000:], user.stderr[-2000:])
    assert split.stdout.strip().endswith("2 2 True [2, 1] 0")
    assert user.stdout.strip().endswith("0 3 False [] 0")
    assert off.stdout.strip().endswith("0 1 False [] 0")
