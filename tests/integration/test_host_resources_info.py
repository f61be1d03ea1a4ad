"""host_resources_info on this machine's /proc, and on a procfs stand-in whose counters move.

The stand-in is a directory with ``stat`` and ``meminfo`` that a thread keeps advancing while
the module samples it: every tick adds 9 busy and 1 idle jiffies per CPU, so any two readings
the module takes differ by a multiple of that and CPU use is exactly 90 % whenever they are taken.
"""

import os
import threading

import pytest

from tests.integration.module_runner import run_module

pytestmark = pytest.mark.integration

MEMINFO = ("MemTotal:        1000000 kB\nMemFree:           50000 kB\nMemAvailable:      {avail} kB\n"
           "Buffers:            1000 kB\nSwapTotal:        200000 kB\nSwapFree:         150000 kB\n")


class FakeProc:
    def __init__(self, path, avail=100000):
        self.path = path
        self.ticks = 0
        self.stop = threading.Event()
        self.write()
        (path / "meminfo").write_text(MEMINFO.format(avail=avail))
        self.thread = threading.Thread(target=self.run, daemon=True)

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

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def by_check(res):
    return dict((c["check"], c) for c in res["checks"])


def test_exact_values_from_moving_counters(tmp_path):
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
