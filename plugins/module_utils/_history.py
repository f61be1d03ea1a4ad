# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Report history: the one owner of ``<dest>/<cadence>/history.json`` (docs/report.md, "History").

Every real run of a cadence appends one entry: the status of each check and the numbers the
results carry (database size, backup size and duration, restore duration, replication lag,
disk free, connections ...). The report reads it back for "what changed", charts and capacity
planning.

* Writers take an exclusive ``flock`` on ``history.lock`` beside the file, read, append, prune
  and write atomically (temp file, fsync, rename): two runs that finish at once both land.
* A history that cannot be read (bad JSON, wrong shape) is renamed aside to
  ``history.json.damaged-<UTC stamp>`` and reported; a new history starts. One with a newer
  ``schema_version`` is left untouched and nothing is appended. It is never silently reset.
* Growth is bounded: every run of the last ``full_days``; then the last run of each UTC day up
  to ``daily_days`` (check statuses dropped, numbers kept); then the last run of each ISO week
  up to ``weekly_days``; older runs are dropped; at most ``max_runs`` entries.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import fcntl
import json
import math
import os

from ansible_collections.upkeep.runbooks.plugins.module_utils._files import write_atomic

SCHEMA_VERSION = 1
FILE_NAME = "history.json"
LOCK_NAME = "history.lock"
FILE_MODE = 0o640
DEFAULT_POLICY = {"full_days": 35, "daily_days": 800, "weekly_days": 1900, "max_runs": 5000}
# Numeric fields of a result's value dict that are worth a time series (see docs/report.md).
METRIC_FIELDS = (
    "bytes", "seconds", "restore_seconds", "percent_free", "bytes_free", "bytes_total", "lag_seconds",
    "percent_used", "size_bytes", "calls", "mean_ms", "total_ms", "count", "last_value", "max_value",
    "rto_seconds", "rpo_seconds", "user_outage_seconds",
)


class HistoryError(Exception):
    """The history could not be read or written; the message is fit for a user."""


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metrics_of(result):
    """{metric name: number} for one check result: a numeric value is the check's own metric,
    a dict contributes its known numeric fields as ``<check>.<field>``."""
    value = result.get("value")
    out = {}
    if _number(value) is not None:
        out[result["check"]] = value
    elif isinstance(value, dict):
        for field in METRIC_FIELDS:
            number = _number(value.get(field))
            if number is not None:
                out[f"{result['check']}.{field}"] = number
    return out


def entry_of(report):
    """The history entry of a built report (see docs/report.md for every field)."""
    checks, metrics, thresholds = {}, {}, {}
    for item in report["results"]:
        checks.setdefault(item["host"], {})[item["check"]] = item["status"]
        found = metrics_of(item)
        if found:
            metrics.setdefault(item["host"], {}).update(found)
        threshold = item.get("threshold")
        if isinstance(threshold, dict) and found:
            limits = {k: v for k, v in threshold.items() if _number(v) is not None}
            if limits:
                thresholds.setdefault(item["host"], {})[item["check"]] = limits
    return {
        "generated_at": report["generated_at"],
        "status": report["summary"]["status"],
        "compacted": False,
        "checks": checks,
        "metrics": metrics,
        "thresholds": thresholds,
    }


def _parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def validate(doc, cadence=None):
    """Problems of a loaded history document ([] when it is usable)."""
    if not isinstance(doc, dict):
        return [f"is a {type(doc).__name__}, not an object"]
    problems = []
    if doc.get("schema_version") != SCHEMA_VERSION:
        problems.append(f"schema_version is {doc.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    if cadence is not None and doc.get("cadence") != cadence:
        problems.append(f"cadence is {doc.get('cadence')!r}, expected {cadence!r}")
    runs = doc.get("runs")
    if not isinstance(runs, list):
        return problems + ["runs is not a list"]
    for index, run in enumerate(runs):
        if not isinstance(run, dict):
            problems.append(f"run #{index + 1} is not an object")
            continue
        try:
            _parse_time(run.get("generated_at"))
        except (TypeError, ValueError):
            problems.append(f"run #{index + 1} has no valid generated_at")
        for key in ("checks", "metrics"):
            if not isinstance(run.get(key), dict):
                problems.append(f"run #{index + 1}: {key} is not an object")
        if problems:
            break
    return problems


def new_history(cadence):
    return {"schema_version": SCHEMA_VERSION, "cadence": cadence, "runs": []}


def history_path(dest, cadence):
    return os.path.join(dest, cadence, FILE_NAME)


def load(path, cadence=None):
    """(document, problem): the history at path, a new one when missing, or (None, why) when unusable."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return new_history(cadence), None
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror or exc}"
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return None, f"is not valid JSON ({exc})"
    if isinstance(doc, dict) and isinstance(doc.get("schema_version"), int) and doc["schema_version"] > SCHEMA_VERSION:
        return None, f"has schema_version {doc['schema_version']}, newer than this collection knows ({SCHEMA_VERSION})"
    problems = validate(doc, cadence)
    if problems:
        return None, "is damaged: " + "; ".join(problems[:5])
    return doc, None


def read_runs(path, cadence=None):
    """The runs of a history, oldest first; [] when it is missing or unusable (read-only, no lock)."""
    doc, problem = load(path, cadence)
    if problem:
        return []
    return sorted(doc["runs"], key=lambda r: r["generated_at"])


def prune(runs, now, policy=None):
    """Apply the retention policy (see module docstring); returns the kept runs, oldest first."""
    policy = dict(DEFAULT_POLICY, **(policy or {}))
    runs = sorted(runs, key=lambda r: r["generated_at"])
    kept_by_bucket = {}
    for run in runs:
        when = _parse_time(run["generated_at"])
        age = (now - when).total_seconds() / 86400.0
        if age <= policy["full_days"]:
            bucket = ("run", run["generated_at"], id(run))
        elif age <= policy["daily_days"]:
            bucket = ("day", when.date().isoformat())
        elif age <= policy["weekly_days"]:
            bucket = ("week",) + tuple(when.isocalendar()[:2])
        else:
            continue
        kept_by_bucket[bucket] = run  # the last run of a bucket wins
    kept = []
    for bucket, run in kept_by_bucket.items():
        compact = bucket[0] != "run" and not run.get("compacted")
        kept.append(dict(run, compacted=True, checks={}) if compact else run)
    kept.sort(key=lambda r: r["generated_at"])
    if policy["max_runs"] and len(kept) > policy["max_runs"]:
        kept = kept[-policy["max_runs"]:]
    return kept


class Locked:
    """Exclusive flock on <cadence dir>/history.lock for the time of a read-append-write."""

    def __init__(self, cadence_dir):
        self.path = os.path.join(cadence_dir, LOCK_NAME)
        self.handle = None

    def __enter__(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        self.handle = os.fdopen(fd, "r+")
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        self.handle.close()
        return False


def set_aside(path, now):
    """Rename a damaged history out of the way; returns the new name (never overwrites one)."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    for n in range(1, 1000):
        target = f"{path}.damaged-{stamp}" + ("" if n == 1 else f"-{n}")
        if not os.path.lexists(target):
            os.rename(path, target)
            return target
    raise HistoryError(f"{path}: too many damaged copies for {stamp}")


def append(path, cadence, entry, now=None, policy=None):
    """Append entry under the lock; returns {"runs": n, "problem": text or None, "set_aside": path or None}.

    The caller holds the lock (``Locked``) so that what it read for the report and what it
    writes are the same history.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    doc, problem = load(path, cadence)
    aside = None
    if problem:
        if "newer than" in problem:
            return {"runs": None, "problem": problem, "set_aside": None, "appended": False}
        aside = set_aside(path, now)
        doc = new_history(cadence)
    runs = list(doc["runs"]) + [entry]
    doc["runs"] = prune(runs, now, policy)
    doc["updated_at"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    write_atomic(path, json.dumps(doc, separators=(",", ":"), sort_keys=True) + "\n", mode=FILE_MODE,
                 strict_dir_sync=False)
    return {"runs": len(doc["runs"]), "problem": problem, "set_aside": aside, "appended": True}
