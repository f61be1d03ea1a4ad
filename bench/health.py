#!/usr/bin/env python3
"""What the daily PostgreSQL health read costs.

Baseline: the cheapest possible probe, a Python process that connects with psycopg and
runs `SELECT 1`. Measured: `upkeep.runbooks.pg_health_info` run as Ansible runs it (a
Python process, arguments on stdin). Both against the same throwaway cluster holding a
primary with a streaming replica and a few databases, so every query of the module has
rows to read. Prints the median wall time of each, their ratio, and the module's peak RSS.
"""

import os
import resource
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [TOP, os.path.join(TOP, ".collections")]

from tests.fixtures.postgres import PgCluster, find_bindir  # noqa: E402
from tests.integration.module_runner import run_module  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))

PROBE = """
import os, psycopg
with psycopg.connect(host=os.environ["H"], port=int(os.environ["P"]), user=os.environ["U"],
                     password=os.environ["W"], dbname="postgres") as conn:
    conn.execute("SELECT 1").fetchone()
"""


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    primary = PgCluster(find_bindir(), name="bench_primary")
    replica = None
    try:
        primary.initdb()
        primary.start()
        for i in range(5):
            primary.execute("CREATE DATABASE bench_%d" % i)
        replica = primary.make_replica(name="bench_replica")
        args = primary.module_args()
        env = dict(os.environ, H=primary.host, P=str(primary.port), U=primary.superuser, W=primary.password)

        def probe():
            subprocess.run([sys.executable, "-c", PROBE], env=env, check=True)

        def module():
            result = run_module("pg_health_info", args)
            if not result.get("reachable"):
                raise SystemExit("pg_health_info failed: %s" % result)

        probe(), module()  # warm the page cache and the server
        base = statistics.median(timed(probe) for _ in range(ROUNDS))
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        mod = statistics.median(timed(module) for _ in range(ROUNDS))
        rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print("baseline  python+psycopg connect and SELECT 1   median %.3f s  (%d rounds)" % (base, ROUNDS))
        print("measured  pg_health_info (primary + 1 replica)  median %.3f s" % mod)
        print("ratio     pg_health_info / baseline            %.2fx" % (mod / base))
        print("peak RSS  of a child process                   %.1f MiB%s" % (
            rss_kib / 1024.0, "" if rss_kib > before else " (the baseline's peak; the module's was not higher)"))
    finally:
        if replica is not None:
            replica.destroy()
        primary.destroy()


if __name__ == "__main__":
    main()
