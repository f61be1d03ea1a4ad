"""Unit tests for module_utils/_host_load.sample with ``scope: cgroup``: the arithmetic on a clock the test controls.

The cgroup files are real (tests/fixtures/cgroup.py); the clock and the sleep between readings are the test's, and
each sleep moves the group's CPU counter, so every figure is exact.
"""

from __future__ import annotations

import pytest
from ansible_collections.upkeep.runbooks.plugins.module_utils import _host_load

from tests.fixtures.cgroup import CgroupDir

MEMINFO = "MemTotal:        8000000 kB\nMemFree:         1000000 kB\nMemAvailable:    4000000 kB\n"


class Clock:
    """A monotonic clock and a sleep that advances it, with the group using ``rates[i]`` CPUs in sleep i."""

    def __init__(self, cgroup, rates):
        self.cgroup, self.rates, self.now, self.used, self.sleeps = cgroup, list(rates), 100.0, 0.0, 0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.used += self.rates[self.sleeps] * seconds
        self.sleeps += 1
        self.now += seconds
        self.cgroup.set_cpu_seconds(self.used)


@pytest.fixture
def proc(tmp_path, monkeypatch):
    # four CPUs to run on, whatever this machine has: the quota is what limits the group
    monkeypatch.setattr(_host_load.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    path = tmp_path / "proc"
    path.mkdir()
    (path / "meminfo").write_text(MEMINFO)
    return path


@pytest.mark.parametrize("version", [1, 2])
def test_cpu_is_a_share_of_the_quota_and_memory_of_the_limit(tmp_path, proc, version):
    group = tmp_path / "cg"
    group.mkdir()
    cgroup_dir = CgroupDir(group, version, quota=200000, limit=2**30)
    clock = Clock(cgroup_dir, [1.5, 1.5, 1.5, 1.5])
    res = _host_load.sample(proc_path=str(proc), window=1.2, interval=0.3, sleep=clock.sleep, clock=clock.clock,
                            cgroup=_host_load.Cgroup(str(group)))
    assert res["scope"] == "cgroup" and res["samples"] == 5 and res["window_seconds"] == 1.2
    assert res["cpu"] == {"iowait_percent": None, "steal_percent": None, "cpus": 2.0, "percent": 75.0,
                          "max_interval_percent": 75.0}
    # (600 - 100 inactive file) MiB of the 1 GiB limit
    assert res["memory"]["source"] == "cgroup" and res["memory"]["percent"] == 48.83
    assert res["memory"]["total_bytes"] == 2**30 and res["memory"]["available_bytes"] == 2**30 - 500 * 2**20


def test_a_busy_interval_shows_in_the_maximum_and_a_capped_share(tmp_path, proc):
    group = tmp_path / "cg"
    group.mkdir()
    cgroup_dir = CgroupDir(group, 2, quota=50000)  # half a CPU
    clock = Clock(cgroup_dir, [0.1, 0.9, 0.1, 0.1])
    res = _host_load.sample(proc_path=str(proc), window=4, interval=1, sleep=clock.sleep, clock=clock.clock,
                            cgroup=_host_load.Cgroup(str(group)))
    assert res["cpu"]["cpus"] == 0.5
    # 1.2 CPU-seconds in 4 s of a 0.5 CPU quota; the second second used more than the quota allows (a burst
    # the kernel's accounting can show), which is capped at 100 %
    assert res["cpu"]["percent"] == 60.0 and res["cpu"]["max_interval_percent"] == 100.0
    # no memory limit below the machine's memory: the machine's figures
    assert res["memory"]["source"] == "host" and res["memory"]["total_bytes"] == 8000000 * 1024


def test_a_counter_that_goes_back_is_not_a_figure(tmp_path, proc):
    group = tmp_path / "cg"
    group.mkdir()
    cgroup_dir = CgroupDir(group, 2, quota=100000)
    cgroup_dir.set_cpu_seconds(50.0)
    clock = Clock(cgroup_dir, [1.0])
    res = _host_load.sample(proc_path=str(proc), window=1, interval=1, sleep=clock.sleep, clock=clock.clock,
                            cgroup=_host_load.Cgroup(str(group)))
    assert res["cpu"]["percent"] is None and res["cpu"]["max_interval_percent"] is None
