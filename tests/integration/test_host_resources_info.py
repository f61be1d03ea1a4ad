"""host_resources_info on this machine's /proc, and on a procfs stand-in whose counters move.

The stand-in is a directory with ``stat`` and ``meminfo`` that a thread keeps advancing while
the module samples it: every tick adds 9 busy and 1 idle jiffies per CPU, so any two readings
the module takes differ by a multiple of that and CPU use is exactly 90 % whenever they are taken.
"""

import os
import threading
import time

import pytest

from tests.fixtures.cgroup import CgroupDir
from tests.integration.module_runner import run_module

pytestmark = pytest.mark.integration

MEMINFO = ("MemTotal:        1000000 kB\nMemFree:           50000 kB\nMemAvailable:      {avail} kB\n"
           "Buffers:            1000 kB\nSwapTotal:        200000 kB\nSwapFree:         150000 kB\n")


class Moving:
    """Runs ``self.run`` on a thread while in a ``with`` block; ``self.stop`` ends it."""

    def __init__(self):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        raise NotImplementedError

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


class FakeProc(Moving):
    def __init__(self, path, avail=100000):
        super().__init__()
        self.path = path
        self.ticks = 0
        self.write()
        (path / "meminfo").write_text(MEMINFO.format(avail=avail))

    def write(self):
        # user nice system idle iowait irq softirq steal guest guest_nice
        n = self.ticks
        user, system, idle = 1000 + 6 * n, 500 + 3 * n, 4000 + n  # per tick: 9 busy, 1 idle
        lines = [f"cpu  {user * 2} 0 {system * 2} {idle * 2} 0 0 0 0 0 0"]
        lines += [f"cpu{i} {user} 0 {system} {idle} 0 0 0 0 0 0" for i in range(2)]
        lines += ["intr 0", "ctxt 0", "btime 0"]
        tmp = self.path / ".stat.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.path / "stat")

    def run(self):
        while not self.stop.wait(0.01):
            self.ticks += 1
            self.write()



def by_check(res):
    return dict((c["check"], c) for c in res["checks"])


def test_exact_values_from_moving_counters(tmp_path):
    """A procfs stand-in given as proc_path is read as a host even where auto would choose the cgroup."""
    with FakeProc(tmp_path):
        res = run_module("host_resources_info", {"proc_path": str(tmp_path), "window": 0.6, "interval": 0.2,
                                                 "host_label": "app1"})
    assert not res.failed, res
    assert res["samples"] == 4
    assert res["cpu"]["percent"] == 90.0
    assert res["cpu"]["max_interval_percent"] == 90.0
    assert res["cpu"]["iowait_percent"] == 0.0
    assert res["cpu"]["cpus"] == 2
    assert res["memory"]["percent"] == 90.0
    assert res["memory"]["total_bytes"] == 1000000 * 1024
    assert res["memory"]["swap_used_percent"] == 25.0
    checks = by_check(res)
    assert checks["host_cpu"]["status"] == "warn"
    assert checks["host_cpu"]["value"] == 90.0
    assert checks["host_cpu"]["threshold"] == {"warn": 80.0, "fail": 95.0, "unit": "%"}
    assert checks["host_memory"]["status"] == "warn"
    assert "memory use is 90.0%, at or above the warn limit of 85.0%" in checks["host_memory"]["message"]

    res = run_module("host_resources_info", {"proc_path": str(tmp_path), "window": 0.2, "interval": 0.1,
                                             "memory_warn_percent": 95, "memory_fail_percent": 99})
    # The counters stand still now: no CPU time passed, which is no value (a failed check), never 0 %.
    assert res["cpu"]["percent"] is None
    assert by_check(res)["host_cpu"]["status"] == "fail"
    assert by_check(res)["host_memory"]["status"] == "ok"


def test_real_proc_of_this_machine():
    res = run_module("host_resources_info", {"window": 1, "interval": 0.5}, check_mode=True)
    assert not res.failed, res
    # CI and this machine may themselves be containers: auto measures the container then.
    contained = os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")
    assert res["scope"] == ("cgroup" if contained else "host")
    res = run_module("host_resources_info", {"window": 1, "interval": 0.5, "scope": "host"}, check_mode=True)
    assert not res.failed and res["scope"] == "host", res
    assert res["samples"] == 3
    assert res["cpu"]["cpus"] == os.cpu_count()
    assert 0 <= res["cpu"]["percent"] <= 100
    with open("/proc/meminfo", encoding="ascii") as handle:
        total_kb = int(next(line for line in handle if line.startswith("MemTotal:")).split()[1])
    assert res["memory"]["total_bytes"] == total_kb * 1024
    assert 0 < res["memory"]["percent"] < 100
    assert {c["check"] for c in res["checks"]} == {"host_cpu", "host_memory"}


def test_bad_input(tmp_path):
    res = run_module("host_resources_info", {"cpu_warn_percent": 90, "cpu_fail_percent": 80})
    assert res.failed
    assert res["msg"] == "Failed to validate cpu_warn_percent and cpu_fail_percent: 0 <= warn <= fail <= 100"
    res = run_module("host_resources_info", {"proc_path": str(tmp_path), "window": 0.1, "interval": 0.1})
    assert res.failed
    assert res["msg"].startswith("Failed to read CPU and memory use: cannot read %s/stat" % tmp_path)


class FakeCgroup(Moving):
    """A cgroup stand-in whose CPU counter a thread advances at ``rate`` CPUs' worth of time per second of wall
    time (1.5: a container busy on one and a half cores)."""

    def __init__(self, path, version, rate=1.5, **layout):
        super().__init__()
        self.rate = rate
        self.dir = CgroupDir(path, version, **layout)

    def run(self):
        start = time.monotonic()
        while not self.stop.wait(0.005):
            self.dir.set_cpu_seconds(self.rate * (time.monotonic() - start))


@pytest.mark.parametrize("version", [1, 2])
def test_cgroup_scope_counts_the_container_only(tmp_path, version):
    """0.375 CPUs of time per second over a quota of half a CPU is about 75 % (the exact arithmetic, on a clock
    the test controls, is in tests/unit/test_host_load.py); memory is usage less inactive file pages of the
    group's 1 GiB limit: (600 - 100) / 1024 MiB."""
    with FakeCgroup(tmp_path, version, rate=0.375, quota=50000, limit=2**30):
        res = run_module("host_resources_info", {"scope": "cgroup", "cgroup_path": str(tmp_path), "window": 1.2,
                                                 "interval": 0.3, "host_label": "db1",
                                                 "cpu_warn_percent": 98, "cpu_fail_percent": 99})
    assert not res.failed, res
    assert res["scope"] == "cgroup" and res["cpu"]["cpus"] == 0.5
    # The counter's thread and the module keep their own clocks; on a loaded machine the thread falls behind
    # or catches up between two readings, so only the scale is checked here: a share of the quota (75 %), not
    # of one CPU (37.5 %) nor of the machine's CPUs (at most 37.5 %).
    assert 50 <= res["cpu"]["percent"] <= 97, res["cpu"]
    assert res["cpu"]["iowait_percent"] is None and res["cpu"]["steal_percent"] is None
    assert res["memory"]["source"] == "cgroup" and res["memory"]["percent"] == 48.83
    assert res["memory"]["total_bytes"] == 2**30 and res["memory"]["available_bytes"] == 2**30 - 500 * 2**20
    checks = by_check(res)
    assert checks["host_cpu"]["status"] == "ok" and "the container's CPU use" in checks["host_cpu"]["message"]
    assert "of 0.5 CPUs" in checks["host_cpu"]["message"]
    assert "memory use of the container's limit is 48.83%" in checks["host_memory"]["message"]


def test_cgroup_without_limits_uses_the_cpus_it_may_run_on_and_the_machines_memory(tmp_path):
    with FakeCgroup(tmp_path, 1):
        res = run_module("host_resources_info", {"scope": "cgroup", "cgroup_path": str(tmp_path), "window": 0.4,
                                                 "interval": 0.2, "cpu_warn_percent": 50})
    assert not res.failed, res
    assert res["cpu"]["cpus"] == float(len(os.sched_getaffinity(0)))
    assert res["memory"]["source"] == "host"
    with open("/proc/meminfo", encoding="ascii") as handle:
        total_kb = int(next(line for line in handle if line.startswith("MemTotal:")).split()[1])
    assert res["memory"]["total_bytes"] == total_kb * 1024


def test_cgroup_scope_that_cannot_be_read(tmp_path):
    res = run_module("host_resources_info", {"scope": "cgroup", "cgroup_path": str(tmp_path), "window": 0.2,
                                             "interval": 0.1})
    assert res.failed
    assert res["msg"].startswith("Failed to read the container's CPU and memory use: no readable cgroup CPU "
                                 "counter at %s/" % tmp_path), res["msg"]
