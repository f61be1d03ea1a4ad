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


def sample(proc_path="/proc", window=5.0, interval=1.0, sleep=time.sleep, clock=time.monotonic):
    """Read CPU and memory every ``interval`` seconds for ``window`` seconds (at least two readings)."""
    readings = []
    count = max(int(round(window / interval)), 1) + 1
    start = clock()
    for index in range(count):
        if index:
            sleep(interval)
        readings.append((read_cpu(proc_path), read_memory(proc_path)))
    elapsed = clock() - start
    cpus = [reading[0] for reading in readings]
    mems = [reading[1] for reading in readings]
    steps = [p for p in (cpu_percent(a, b) for a, b in zip(cpus, cpus[1:])) if p is not None]
    mem_percents = [p for p in (memory_percent(m) for m in mems) if p is not None]
    last_mem = mems[-1]
    swap_total = last_mem.get("SwapTotal", 0)
    return {
        "window_seconds": round(elapsed, 2),
        "samples": len(readings),
        "cpu": {
            "percent": cpu_percent(cpus[0], cpus[-1]),
            "max_interval_percent": max(steps) if steps else None,
            "iowait_percent": _share(cpus[0], cpus[-1], "iowait"),
            "steal_percent": _share(cpus[0], cpus[-1], "steal"),
            "cpus": cpus[-1]["cpus"],
        },
        "memory": {
            "percent": round(sum(mem_percents) / len(mem_percents), 2) if mem_percents else None,
            "max_percent": max(mem_percents) if mem_percents else None,
            "total_bytes": last_mem["MemTotal"],
            "available_bytes": last_mem["MemAvailable"],
            "swap_used_percent": (round(100.0 * (swap_total - last_mem.get("SwapFree", 0)) / swap_total, 2)
                                  if swap_total else None),
        },
    }
