"""Realistic multi-run report history for tests: daily runs with known growth, noise, an odd day, a gap.

Results have the shapes the roles really produce (disk_checks, pg_health_checks' database_size and
connections, backup_dump, restore_test, replication_lag), so the history goes through the real
``build_report`` -> ``_history.entry_of`` path.
"""

import datetime
import random

from ansible_collections.upkeep.runbooks.plugins.module_utils import _history
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import result
from ansible_collections.upkeep.runbooks.plugins.module_utils._report import build_report

GIB = 1024 ** 3
START = datetime.datetime(2026, 1, 1, 2, 30, tzinfo=datetime.timezone.utc)


def day_results(day, host="db1", volume_total=200 * GIB, used0=100 * GIB, growth=0.25 * GIB, db0=40 * GIB,
                db_growth=0.2 * GIB, noise=0.02, rng=None, odd=False):
    """The results of one daily run ``day`` days after START."""
    rng = rng or random.Random(day)
    wobble = 1 + rng.uniform(-noise, noise)
    used = (used0 + growth * day) * wobble
    if odd:  # a day a bulk import filled the disk, cleaned up the next day
        used += 40 * GIB
    used = min(used, volume_total)
    free = volume_total - used
    pct_free = round(free / volume_total * 100, 1)
    disk_status = "fail" if pct_free <= 10 else "warn" if pct_free <= 20 else "ok"
    size = int((db0 + db_growth * day) * (1 + rng.uniform(-noise, noise)))
    backup_bytes = int(size * 0.3)
    return [
        result("disk_free:database", host, disk_status,
               {"path": "/var/lib/postgresql", "mount": "/var/lib/postgresql", "percent_free": pct_free,
                "bytes_free": int(free), "bytes_total": volume_total, "inodes_percent_free": 99.0},
               {"warn_percent_free": 20, "fail_percent_free": 10}, f"{pct_free} % free"),
        result("database_size:app", host, "ok", size, {"unit": "bytes"}, "database app"),
        result("connections", host, "warn" if odd else "ok", 92.0 if odd else 30.0 + rng.uniform(0, 10),
               {"warn": 80, "fail": 95, "unit": "%"}, "connections"),
        result("replication_lag", "db2", "ok", round(rng.uniform(0.1, 2.0), 2), {"warn": 30, "fail": 300, "unit": "s"},
               "lag"),
        result("backup_dump:app", host, "ok", {"backup_id": f"app-{day}", "bytes": backup_bytes,
                                               "seconds": round(backup_bytes / (60 * 1024 ** 2), 1), "tables": 80},
               None, "dump"),
        result("restore_test:app", "dr1", "ok", {"backup_id": f"app-{day}", "restore_seconds": 120.0 + day * 0.5,
                                                 "checks": 12}, None, "restore"),
    ]


def generate_runs(days=90, start=START, odd_days=(45,), gap=None, **kwargs):
    """History entries (oldest first) of ``days`` daily runs; ``gap`` = (first, last) day skipped."""
    runs = []
    for day in range(days):
        if gap and gap[0] <= day <= gap[1]:
            continue
        when = start + datetime.timedelta(days=day)
        report = build_report(day_results(day, odd=day in odd_days, **kwargs), "daily",
                              timestamp=when.strftime("%Y-%m-%dT%H:%M:%SZ"))
        runs.append(_history.entry_of(report))
    return runs


def history_doc(runs, cadence="daily"):
    """A schema-1 history document (the format before JSON Lines), for reading and migration tests."""
    return {"schema_version": 1, "cadence": cadence, "runs": runs}


def write_history(path, runs, cadence="daily"):
    """A schema-2 history file of these runs, written by the real writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _history.write_history(str(path), cadence, runs)
    return path
