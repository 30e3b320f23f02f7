"""The memory this process may use: cgroup v2 and v1 limits (of the process's own group and those above), no limit,
MemAvailable, on a fake file system root."""

from jaxkin.io.memory import DEFAULT_SHARE, default_budget, memory_limit


def _root(tmp_path, files):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


MEMINFO = {"proc/meminfo": "MemTotal: 24000000 kB\nMemAvailable: 16000000 kB\n"}


def test_cgroup_v2_limit_of_the_own_group_and_above(tmp_path):
    root = _root(tmp_path, MEMINFO | {"proc/self/cgroup": "0::/slurm/job_7/step_0\n",
                                      "sys/fs/cgroup/memory.max": "max\n",
                                      "sys/fs/cgroup/slurm/job_7/memory.max": "4000000000\n",
                                      "sys/fs/cgroup/slurm/job_7/step_0/memory.max": "max\n"})
    limit = memory_limit(root)
    assert limit.bytes == 4_000_000_000 and "job_7/memory.max" in limit.source
    assert default_budget(root).bytes == int(4_000_000_000 * DEFAULT_SHARE)


def test_cgroup_v1_limit(tmp_path):
    root = _root(tmp_path, MEMINFO | {"proc/self/cgroup": "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n",
                                      "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "2147483648\n"})
    assert memory_limit(root).bytes == 2147483648


def test_unlimited_cgroup_falls_back_to_memavailable(tmp_path):
    root = _root(tmp_path, MEMINFO | {"proc/self/cgroup": "4:memory:/\n",
                                      "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
                                      "sys/fs/cgroup/memory.max": "max\n"})
    limit = memory_limit(root)
    assert limit.bytes == 16_000_000 * 1024 and "MemAvailable" in limit.source


def test_nothing_readable_is_the_physical_memory(tmp_path):
    assert memory_limit(tmp_path).bytes > 0
