# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CPU and memory use of a Linux host over a short window, from /proc/stat and /proc/meminfo.

One reading is a moment; the daily check wants "is this host busy", so ``sample()`` reads
both files every ``interval`` seconds for ``window`` seconds. CPU use is the share of
non-idle jiffies over the whole window (first to last reading of the aggregate ``cpu``
line; ``idle`` and ``iowait`` count as idle, as top does), with the busiest single
interval beside it. Memory use is ``MemTotal - MemAvailable`` (what the kernel could not
give a new program without swapping), averaged over the readings, with the highest.

In a container that shares the machine's kernel, /proc/stat counts every CPU of the machine:
a busy neighbour reads as a busy host. ``sample(scope="cgroup")`` reads the container's own
control group instead (cgroup v2 ``cpu.stat``/``cpu.max``/``memory.current``/``memory.max``, or
v1 ``cpuacct.usage``/``cpu.cfs_quota_us``/``memory.usage_in_bytes``/``memory.limit_in_bytes``):
CPU use is the group's CPU time over the wall time of the window times the CPUs it may use
(its quota, else the CPUs it may run on), memory its usage less inactive file pages (what the
kernel reclaims first, as ``docker stats`` counts it) over its limit. A group without a memory
limit can use the machine's memory, so memory then comes from /proc/meminfo as on a host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")


class ProcError(Exception):
    def __init__(self, message):
        super(ProcError, self).__init__(message)
        self.message = message


def read_cpu(proc_path="/proc"):
    """The aggregate ``cpu`` line as a dict of jiffies, plus ``cpus`` (the number of cpuN lines)."""
    path = os.path.join(proc_path, "stat")
    try:
        with open(path, "r", encoding="ascii") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise ProcError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
    total = None
    cpus = 0
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "cpu":
            try:
                values = [int(v) for v in parts[1:]]
            except ValueError:
                raise ProcError("%s has a malformed cpu line: %r" % (path, line)) from None
            total = dict(zip(CPU_FIELDS, values + [0] * (len(CPU_FIELDS) - len(values))))
        elif parts[0].startswith("cpu") and parts[0][3:].isdigit():
            cpus += 1
    if total is None:
        raise ProcError("%s has no aggregate cpu line" % path)
    total["cpus"] = cpus
    return total


def read_memory(proc_path="/proc"):
    """MemTotal, MemAvailable, SwapTotal, SwapFree in bytes."""
    path = os.path.join(proc_path, "meminfo")
    values = {}
    try:
        with open(path, "r", encoding="ascii") as handle:
            for line in handle:
                key, _sep, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    factor = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
                    values[key.strip()] = int(parts[0]) * factor
    except OSError as exc:
        raise ProcError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
    if "MemTotal" not in values or "MemAvailable" not in values:
        raise ProcError("%s lacks MemTotal or MemAvailable (Linux 3.14 and later have both)" % path)
    return values


def in_container(root="/"):
    """True when this process runs in a container (podman's and docker's marker files, or PID 1's
    ``container=`` variable, which systemd and LXC set)."""
    for marker in ("run/.containerenv", ".dockerenv"):
        if os.path.exists(os.path.join(root, marker)):
            return True
    try:
        with open(os.path.join(root, "proc/1/environ"), "rb") as handle:
            return b"\0container=" in b"\0" + handle.read()
    except OSError:
        return False


def _read_text(path):
    try:
        with open(path, "r", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError as exc:
        raise ProcError("cannot read %s: %s" % (path, exc.strerror or exc)) from None


def _keyed(text, path):
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            values[parts[0]] = int(parts[1])
    if not values:
        raise ProcError("%s has no 'key value' lines" % path)
    return values


class Cgroup(object):
    """The control group this process is in, mounted at ``root`` (v2 unified, or v1 per controller)."""

    def __init__(self, root="/sys/fs/cgroup"):
        self.root = root
        if os.path.exists(os.path.join(root, "cgroup.controllers")):
            self.version = 2
            self.cpu_path = os.path.join(root, "cpu.stat")
        else:
            self.version = 1
            candidates = [os.path.join(root, d, "cpuacct.usage") for d in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu")]
            self.cpu_path = next((c for c in candidates if os.path.exists(c)), candidates[0])
        if not os.access(self.cpu_path, os.R_OK):
            raise ProcError("no readable cgroup CPU counter at %s (cgroup v%d)" % (self.cpu_path, self.version))

    def _path(self, v2_name, v1_controller, v1_name):
        if self.version == 2:
            return os.path.join(self.root, v2_name)
        return os.path.join(self.root, v1_controller, v1_name)

    def cpu_seconds(self):
        """CPU time the group used so far, in seconds."""
        text = _read_text(self.cpu_path)
        if self.version == 2:
            stat = _keyed(text, self.cpu_path)
            if "usage_usec" not in stat:
                raise ProcError("%s has no usage_usec" % self.cpu_path)
            return stat["usage_usec"] / 1e6
        if not text.isdigit():
            raise ProcError("%s is not a number: %r" % (self.cpu_path, text))
        return int(text) / 1e9

    def cpus(self):
        """CPUs the group may use: its quota where it has one, else the CPUs it may run on."""
        try:
            if self.version == 2:
                quota, _sep, period = _read_text(self._path("cpu.max", "", "")).partition(" ")
                quota = -1 if quota == "max" else int(quota)
                period = int(period or 100000)
            else:
                quota = int(_read_text(self._path("", "cpu", "cpu.cfs_quota_us")))
                period = int(_read_text(self._path("", "cpu", "cpu.cfs_period_us")))
        except (ProcError, ValueError):
            quota, period = -1, 0
        allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if quota > 0 and period > 0:
            return round(min(float(allowed), quota / float(period)), 2)
        return float(allowed)

    def memory(self, machine_total):
        """(used, limit) in bytes, or None when the group has no limit below the machine's memory."""
        try:
            limit_text = _read_text(self._path("memory.max", "memory", "memory.limit_in_bytes"))
        except ProcError:
            return None
        if limit_text == "max" or not limit_text.isdigit() or int(limit_text) >= machine_total:
            return None
        usage_path = self._path("memory.current", "memory", "memory.usage_in_bytes")
        usage = _read_text(usage_path)
        if not usage.isdigit():
            raise ProcError("%s is not a number: %r" % (usage_path, usage))
        stat_path = self._path("memory.stat", "memory", "memory.stat")
        stat = _keyed(_read_text(stat_path), stat_path)
        inactive = stat.get("inactive_file" if self.version == 2 else "total_inactive_file", 0)
        return max(int(usage) - inactive, 0), int(limit_text)


def _busy_idle(cpu):
    # guest and guest_nice are already counted in user and nice.
    idle = cpu["idle"] + cpu["iowait"]
    busy = cpu["user"] + cpu["nice"] + cpu["system"] + cpu["irq"] + cpu["softirq"] + cpu["steal"]
    return busy, idle


def cpu_percent(first, last):
    """Busy share between two readings, or None when no time passed in between."""
    busy0, idle0 = _busy_idle(first)
    busy1, idle1 = _busy_idle(last)
    total = (busy1 - busy0) + (idle1 - idle0)
    if total <= 0:
        return None
    return round(100.0 * (busy1 - busy0) / total, 2)


def _share(first, last, field):
    busy0, idle0 = _busy_idle(first)
    busy1, idle1 = _busy_idle(last)
    total = (busy1 - busy0) + (idle1 - idle0)
    if total <= 0:
        return None
    return round(100.0 * (last[field] - first[field]) / total, 2)


def memory_percent(mem):
    if not mem["MemTotal"]:
        return None
    return round(100.0 * (mem["MemTotal"] - mem["MemAvailable"]) / mem["MemTotal"], 2)


def sample(proc_path="/proc", window=5.0, interval=1.0, sleep=time.sleep, clock=time.monotonic, cgroup=None):
    """Read CPU and memory every ``interval`` seconds for ``window`` seconds (at least two readings).

    With ``cgroup`` (a :class:`Cgroup`) CPU and, where the group has a memory limit, memory are the
    group's; iowait and steal are not counted per group and are null then."""
    readings = []
    count = max(int(round(window / interval)), 1) + 1
    start = clock()
    for index in range(count):
        if index:
            sleep(interval)
        if cgroup is None:
            cpu = read_cpu(proc_path)
        else:
            cpu = (clock(), cgroup.cpu_seconds())
        mem = read_memory(proc_path)
        if cgroup is not None:
            mem["cgroup"] = cgroup.memory(mem["MemTotal"])
        readings.append((cpu, mem))
    elapsed = clock() - start
    cpus = [reading[0] for reading in readings]
    mems = [reading[1] for reading in readings]
    if cgroup is None:
        percent = cpu_percent
        cpu_facts = {"iowait_percent": _share(cpus[0], cpus[-1], "iowait"),
                     "steal_percent": _share(cpus[0], cpus[-1], "steal"), "cpus": cpus[-1]["cpus"]}
    else:
        allowed = cgroup.cpus()

        def percent(first, last):
            wall = (last[0] - first[0]) * allowed
            if wall <= 0 or last[1] < first[1]:
                return None
            return round(min(100.0, 100.0 * (last[1] - first[1]) / wall), 2)

        cpu_facts = {"iowait_percent": None, "steal_percent": None, "cpus": allowed}
    steps = [p for p in (percent(a, b) for a, b in zip(cpus, cpus[1:])) if p is not None]
    limited = all(m.get("cgroup") for m in mems)
    if limited:
        mem_percents = [round(100.0 * m["cgroup"][0] / m["cgroup"][1], 2) for m in mems]
    else:
        mem_percents = [p for p in (memory_percent(m) for m in mems) if p is not None]
    last_mem = mems[-1]
    swap_total = last_mem.get("SwapTotal", 0)
    return {
        "scope": "host" if cgroup is None else "cgroup",
        "window_seconds": round(elapsed, 2),
        "samples": len(readings),
        "cpu": dict(cpu_facts, percent=percent(cpus[0], cpus[-1]),
                    max_interval_percent=max(steps) if steps else None),
        "memory": {
            "percent": round(sum(mem_percents) / len(mem_percents), 2) if mem_percents else None,
            "max_percent": max(mem_percents) if mem_percents else None,
            "source": "cgroup" if limited else "host",
            "total_bytes": last_mem["cgroup"][1] if limited else last_mem["MemTotal"],
            "available_bytes": (last_mem["cgroup"][1] - last_mem["cgroup"][0]) if limited
            else last_mem["MemAvailable"],
            "swap_used_percent": (round(100.0 * (swap_total - last_mem.get("SwapFree", 0)) / swap_total, 2)
                                  if swap_total else None),
        },
    }
