#!/usr/bin/env python3
"""What writing a large run report costs, with and without its history.

500 hosts, 10,000 results (the shapes the roles produce, 20 per host) and a history of 90
daily runs of those hosts. Baseline: the report without history (``history: false``).
Measured: the report with history, "What changed", trend charts and the full capacity plan
(the annually report, check mode), and a daily report that also appends its run to the
history (the writer's pass). Each is run in its own Python process; prints the median wall
time, the ratio to the baseline, and each process's peak RSS. BENCH_SCHEMA=1 seeds the history
in the old one-document format (read whole, as before schema 2); BENCH_TRACE=1 prints where the
Python allocations are (tracemalloc) to stderr.
"""

import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [TOP, os.path.join(TOP, ".collections")]

from ansible_collections.upkeep.runbooks.plugins.module_utils import _history  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import result  # noqa: E402

HOSTS = int(os.environ.get("BENCH_HOSTS", "500"))
PER_HOST = 20
DAYS = int(os.environ.get("BENCH_DAYS", "90"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SCHEMA = int(os.environ.get("BENCH_SCHEMA", "2"))
START = datetime.datetime(2026, 1, 1, 2, 30, tzinfo=datetime.timezone.utc)
GIB = 1024 ** 3


def host_results(host, day, rng):
    used = (80 + 0.2 * day) * GIB * (1 + rng.uniform(-0.01, 0.01))
    out = [
        result("disk_free:database", host, "ok", {"path": "/var/lib/postgresql", "mount": "/", "percent_free":
               round(100 - used / (200 * GIB) * 100, 1), "bytes_free": int(200 * GIB - used),
               "bytes_total": 200 * GIB}, {"warn_percent_free": 20, "fail_percent_free": 10}, "disk"),
        result("connections", host, "ok", 20 + rng.uniform(0, 30), {"warn": 80, "fail": 95, "unit": "%"}, "c"),
        result("replication_lag", host, "ok", rng.uniform(0, 3), {"warn": 30, "fail": 300, "unit": "s"}, "lag"),
    ]
    for n in range(4):
        out.append(result(f"database_size:db{n}", host, "ok", int((5 + n + 0.01 * day) * GIB), {"unit": "bytes"}, "s"))
        out.append(result(f"backup_dump:db{n}", host, "ok", {"bytes": int((1 + n) * GIB), "seconds": 30.0 + n},
                          None, "dump"))
    while len(out) < PER_HOST:
        out.append(result(f"misc_{len(out)}", host, "warn" if rng.random() < 0.02 else "ok", True, None, "fine"))
    return out


def all_results(day):
    rng = random.Random(day)
    return [r for h in range(HOSTS) for r in host_results(f"db{h:03d}", day, rng)]


def stamp(day):
    return (START + datetime.timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ")


def seed(dest, schema=2):
    """The daily history of DAYS runs, written as the report writes it (schema 2, JSON Lines) or
    as the collection wrote it before (schema 1, one document: BENCH_SCHEMA=1)."""
    from ansible_collections.upkeep.runbooks.plugins.module_utils._report import build_report
    path = os.path.join(dest, "daily", "history.json")
    os.makedirs(os.path.dirname(path))
    runs = (_history.entry_of(build_report(all_results(d), "daily", timestamp=stamp(d))) for d in range(DAYS))
    if schema == 1:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"schema_version": 1, "cadence": "daily", "runs": list(runs)}, handle, separators=(",", ":"))
    else:
        _history.write_history(path, "daily", runs)
    return os.path.getsize(path)


CHILD = """
import sys, json
sys.path[:0] = {paths!r}
from report import all_results, stamp, DAYS
from ansible_collections.upkeep.runbooks.plugins.module_utils._report import run_report
results = all_results(DAYS)
import os, time, tracemalloc
if os.environ.get("BENCH_TRACE"):
    tracemalloc.start(12)
t = time.perf_counter()
report, paths, info = run_report(results, {cadence!r}, {dest!r}, timestamp=stamp(DAYS),
                                 history={history!r}, capacity={capacity!r}, record={record!r})
elapsed = time.perf_counter() - t
if os.environ.get("BENCH_TRACE"):
    # where the peak of Python allocations is: BENCH_TRACE=1 prints the top lines to stderr
    _cur, peak = tracemalloc.get_traced_memory()
    print(f"tracemalloc peak {{peak / 2**20:.1f}} MiB; held at the end by:", file=sys.stderr)
    for stat in tracemalloc.take_snapshot().statistics("lineno")[:12]:
        print("  ", stat, file=sys.stderr)
# VmHWM, not getrusage's ru_maxrss: Linux carries the maximum RSS over exec, so ru_maxrss
# would include the size of the forked copy of this benchmark (with its seeded history).
with open("/proc/self/status") as status:
    hwm = int(next(line for line in status if line.startswith("VmHWM:")).split()[1])
print(json.dumps({{"seconds": elapsed, "rss_kib": hwm,
                   "html_bytes": os.path.getsize(paths["html_path"]), "results": len(report["results"])}}))
"""


def measure(dest, cadence, history, capacity, record=False):
    paths = [os.path.join(TOP, "bench"), TOP, os.path.join(TOP, ".collections")]
    runs = []
    for _ in range(ROUNDS):
        where = dest
        if record:  # every round appends to its own copy of the seeded history
            where = tempfile.mkdtemp(dir=dest)
            shutil.copytree(os.path.join(dest, "daily"), os.path.join(where, "daily"))
        code = CHILD.format(paths=paths, cadence=cadence, dest=where, history=history, capacity=capacity,
                            record=record)
        proc = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        if proc.stderr.strip():
            print(proc.stderr.rstrip(), file=sys.stderr)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return runs


def main():
    with tempfile.TemporaryDirectory() as dest:
        start = time.perf_counter()
        size = seed(dest, SCHEMA)
        print(f"history: {HOSTS} hosts x {DAYS} daily runs, schema {SCHEMA}, {size / 1e6:.1f} MB, seeded in "
              f"{time.perf_counter() - start:.1f} s")
        base = measure(dest, "weekly", False, "none")
        full = measure(dest, "annually", True, "full")
        daily = measure(dest, "daily", True, "none", record=True)
        b = statistics.median(r["seconds"] for r in base)
        f = statistics.median(r["seconds"] for r in full)
        base_rss = max(r["rss_kib"] for r in base) / 1024
        print(f"baseline  report without history: {b:.2f} s, peak RSS {base_rss:.0f} MiB, "
              f"HTML {base[0]['html_bytes'] / 1e6:.1f} MB, {base[0]['results']} results")
        print(f"measured  annually with history, charts, capacity: {f:.2f} s, peak RSS "
              f"{max(r['rss_kib'] for r in full) / 1024:.0f} MiB, HTML {full[0]['html_bytes'] / 1e6:.1f} MB")
        print(f"ratio     {f / b:.2f}x the baseline")
        d = statistics.median(r["seconds"] for r in daily)
        print(f"recorded  daily with history, what changed, charts, appending the run: {d:.2f} s, peak RSS "
              f"{max(r['rss_kib'] for r in daily) / 1024:.0f} MiB, {d / b:.2f}x the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
