# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Report history: the one owner of ``<dest>/<cadence>/history.json`` (docs/report.md, "History").

Every real run of a cadence appends one entry: the status of each check and the numbers the
results carry (database size, backup size and duration, restore duration, replication lag,
disk free, connections ...). The report reads it back for "what changed", charts and capacity
planning.

Schema 2 is JSON Lines: a header line ``{"schema_version": 2, "cadence": ..., ...}``, then one
line per run, oldest first. A reader parses one line at a time (``Scan.runs()``), so reading
costs one run's worth of memory whatever the length of the history. Schema 1 (one JSON document
``{"schema_version": 1, "runs": [...]}``) is still read, whole, and rewritten as schema 2 by the
next write.

* Writers take an exclusive ``flock`` on ``history.lock`` beside the file, read, append, prune
  and write the whole file anew atomically (temp file, fsync, rename): two runs that finish at
  once both land, and readers without the lock always see a whole file.
* Damage is reported with its position and never silently dropped: a damaged run line is named
  (file, line number, why); the next write keeps the file as it was under
  ``history.json.damaged-<UTC stamp>`` (a hard link to the old file) and carries every readable
  run over. A file whose header cannot be read is renamed aside the same way and a new history
  starts. One with a newer ``schema_version`` is left untouched and nothing is appended.
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
import shutil

from ansible_collections.upkeep.runbooks.plugins.module_utils._files import write_atomic

SCHEMA_VERSION = 2
FORMAT = "upkeep.runbooks report history"
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
_MAX_NAMED = 5  # damaged lines named one by one in a message; the rest are counted


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


def _iso(when):
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_number(value):
    kind = type(value)
    return kind is int or (kind is float and math.isfinite(value))


def run_problem(run):
    """Why one run entry is unusable, or None. Checks every field the report reads, so a
    damaged entry is reported here instead of breaking the report later."""
    if not isinstance(run, dict):
        return f"is a {type(run).__name__}, not an object"
    try:
        _parse_time(run.get("generated_at"))
    except (TypeError, ValueError):
        return "has no valid generated_at"
    checks, metrics = run.get("checks"), run.get("metrics")
    if not isinstance(checks, dict):
        return "checks is not an object"
    for host, statuses in checks.items():
        if not isinstance(statuses, dict):
            return f"checks of {host!r} is not an object"
        for check, status in statuses.items():
            if status is not None and not isinstance(status, str):
                return f"the status of {host!r}/{check!r} is not text"
    if not isinstance(metrics, dict):
        return "metrics is not an object"
    for host, values in metrics.items():
        if not isinstance(values, dict):
            return f"metrics of {host!r} is not an object"
        for name, value in values.items():
            if not _is_number(value):
                return f"metric {host!r}/{name!r} is not a finite number"
    thresholds = run.get("thresholds", {})
    if not isinstance(thresholds, dict):
        return "thresholds is not an object"
    for host, per_check in thresholds.items():
        if not isinstance(per_check, dict) or any(not isinstance(limits, dict) for limits in per_check.values()):
            return f"thresholds of {host!r} is not an object of objects"
        for check, limits in per_check.items():
            if not all(_is_number(v) for v in limits.values()):
                return f"a threshold of {host!r}/{check!r} is not a finite number"
    if not isinstance(run.get("compacted", False), bool):
        return "compacted is not true or false"
    return None


def validate(doc, cadence=None):
    """Problems of a loaded schema-1 history document ([] when it is usable)."""
    if not isinstance(doc, dict):
        return [f"is a {type(doc).__name__}, not an object"]
    problems = []
    if doc.get("schema_version") != 1:
        problems.append(f"schema_version is {doc.get('schema_version')!r}, expected 1")
    if cadence is not None and doc.get("cadence") != cadence:
        problems.append(f"cadence is {doc.get('cadence')!r}, expected {cadence!r}")
    runs = doc.get("runs")
    if not isinstance(runs, list):
        return problems + ["runs is not a list"]
    for index, run in enumerate(runs):
        why = run_problem(run)
        if why:
            problems.append(f"run #{index + 1} {why}")
            break
    return problems


def history_path(dest, cadence):
    return os.path.join(dest, cadence, FILE_NAME)


def header(cadence, now):
    return {"schema_version": SCHEMA_VERSION, "cadence": cadence, "format": FORMAT, "updated_at": _iso(now)}


_FIRST_KEYS = ("generated_at", "status", "compacted")


def _compact_json(value, sort_keys=True):
    return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys)


def dump_line(obj):
    """One line of the file: compact JSON, ASCII only (so never a raw newline). A run starts with
    generated_at, status and compacted (readable with ``head -c``), then its other keys sorted."""
    if "generated_at" not in obj:
        return (_compact_json(obj, sort_keys=False) + "\n").encode("ascii")
    keys = [k for k in _FIRST_KEYS if k in obj] + sorted(k for k in obj if k not in _FIRST_KEYS)
    return ("{" + ",".join(f"{_compact_json(k)}:{_compact_json(obj[k])}" for k in keys) + "}\n").encode("ascii")


def _json_error(exc):
    return f"{exc.msg} at character {exc.pos + 1}" if isinstance(exc, json.JSONDecodeError) else str(exc)


class _Item:
    """Where one readable run is: its line (schema 2) or its entry (schema 1, or the new run)."""

    __slots__ = ("generated_at", "compacted", "offset", "length", "entry")

    def __init__(self, generated_at, compacted, offset=None, length=None, entry=None):
        self.generated_at = generated_at
        self.compacted = compacted
        self.offset = offset
        self.length = length
        self.entry = entry


class Scan:
    """One pass over a history file.

    ``runs()`` yields the readable runs one at a time (file order) and records, as it goes,
    where each run is (for the writer), which lines are damaged and why. After the pass:

    * ``problem``: why the file as a whole cannot be used (None when it can),
    * ``newer``: True when it was written by a newer collection (left alone),
    * ``damaged``: [(line number, why)] of run lines that cannot be read,
    * ``schema``: 1, 2, or None (no file),
    * ``count``: readable runs.
    """

    def __init__(self, path, cadence=None):
        self.path = path
        self.cadence = cadence
        self.schema = None
        self.problem = None
        self.newer = False
        self.damaged = []
        self.items = []
        self.identity = None
        self.done = False
        self.set_aside = None

    @property
    def count(self):
        return len(self.items)

    def message(self):
        """The problem in words (after ``history <path>``), or None."""
        if self.problem:
            return self.problem
        if not self.damaged:
            return None
        named = "; ".join(f"line {line}: {why}" for line, why in self.damaged[:_MAX_NAMED])
        more = len(self.damaged) - _MAX_NAMED
        noun = "line" if len(self.damaged) == 1 else "lines"
        return (f"has {len(self.damaged)} damaged {noun} ({named}{f'; and {more} more' if more > 0 else ''}); "
                f"{self.count} readable runs")

    def fresh(self):
        """True when the file is still the one this scan read (same inode, size and mtime)."""
        return self.done and self.identity == _identity(self.path)

    def consume(self):
        for _run in self.runs():
            pass
        return self

    def runs(self):
        """Yield the readable runs; fills in the scan's findings."""
        self.items, self.damaged, self.problem, self.newer, self.schema = [], [], None, False, None
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            self.identity, self.done = None, True
            return
        except OSError as exc:
            self.problem = f"cannot be read: {exc.strerror or exc}"
            self.done = True
            return
        with handle:
            stat = os.fstat(handle.fileno())
            self.identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
            first = handle.readline()
            head = self._header(first)
            if head == 2:
                self.schema = 2
                yield from self._lines(handle, len(first))
            elif head == 1 or head is None:
                rest = handle.read()
                yield from self._schema1(first + rest, one_line=head == 1)
        self.done = True

    def _header(self, line):
        """2 for a schema-2 header, 1 for a one-line schema-1 document, None to try the file whole,
        0 when the file is unusable or newer (problem set)."""
        try:
            head = json.loads(line)
        except ValueError:
            return None
        if not isinstance(head, dict) or not isinstance(head.get("schema_version"), int):
            self.problem = "is damaged: line 1 is not a history header (an object with schema_version)"
            return 0
        version = head["schema_version"]
        if version > SCHEMA_VERSION:
            self.newer, self.schema = True, version
            self.problem = (f"has schema_version {version}, newer than this collection knows "
                            f"({SCHEMA_VERSION})")
            return 0
        if version == 1:
            return 1
        if version != SCHEMA_VERSION:
            self.problem = f"is damaged: line 1 has schema_version {version!r}"
            return 0
        if "runs" in head:
            self.problem = ("is damaged: line 1 is a whole history document with schema_version 2; schema 2 is "
                            "JSON Lines (a header line, then one line per run)")
            return 0
        if self.cadence is not None and head.get("cadence") != self.cadence:
            self.problem = f"is damaged: line 1 names cadence {head.get('cadence')!r}, expected {self.cadence!r}"
            return 0
        return 2

    def _lines(self, handle, offset):
        number = 1
        for raw in handle:
            number += 1
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            if not raw.endswith(b"\n"):
                why_cut = " (the line does not end: the file was cut short)"
            else:
                why_cut = ""
            try:
                run = json.loads(raw)
            except ValueError as exc:
                self.damaged.append((number, f"not valid JSON ({_json_error(exc)}){why_cut}"))
                continue
            why = run_problem(run)
            if why:
                self.damaged.append((number, f"the run {why}"))
                continue
            self.items.append(_Item(run["generated_at"], run.get("compacted", False), start, len(raw)))
            yield run

    def _schema1(self, data, one_line):
        self.schema = 1
        try:
            doc = json.loads(data)
        except ValueError as exc:
            if one_line:
                self.problem = f"is not valid JSON ({exc})"
            else:
                self.problem = (f"is damaged: line 1 is neither a history header nor the start of a schema-1 "
                                f"history ({_json_error(exc)})")
            return
        del data
        if isinstance(doc, dict) and isinstance(doc.get("schema_version"), int) and doc["schema_version"] > 1:
            if doc["schema_version"] > SCHEMA_VERSION:
                self.newer, self.schema = True, doc["schema_version"]
                self.problem = (f"has schema_version {doc['schema_version']}, newer than this collection knows "
                                f"({SCHEMA_VERSION})")
            else:
                self.problem = "is damaged: a schema-2 history must start with its header line"
            return
        problems = validate(doc, self.cadence)
        if problems:
            self.problem = "is damaged: " + "; ".join(problems[:5])
            return
        runs = sorted(doc["runs"], key=lambda r: r["generated_at"])
        del doc
        for run in runs:
            self.items.append(_Item(run["generated_at"], run.get("compacted", False), entry=run))
            yield run

    def preserve(self, now):
        """Before a write replaces a file with problems: keep it as it was under a damaged-<stamp>
        name (renamed when it cannot be used at all, hard-linked when only lines are damaged).
        Returns that name, or None when there was nothing to keep."""
        if self.set_aside or self.newer or not (self.problem or self.damaged) or self.identity is None:
            return self.set_aside
        if self.problem:
            self.set_aside = set_aside(self.path, now)
            self.items = []
            self.identity = None
        else:
            self.set_aside = _keep_copy(self.path, now)
        return self.set_aside


def _identity(path):
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _damaged_name(path, now):
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    for n in range(1, 1000):
        target = f"{path}.damaged-{stamp}" + ("" if n == 1 else f"-{n}")
        if not os.path.lexists(target):
            return target
    raise HistoryError(f"{path}: too many damaged copies for {stamp}")


def set_aside(path, now):
    """Rename a damaged history out of the way; returns the new name (never overwrites one)."""
    target = _damaged_name(path, now)
    os.rename(path, target)
    return target


def _keep_copy(path, now):
    """A second name for the file as it is now (the next write replaces ``path`` with a new file)."""
    target = _damaged_name(path, now)
    try:
        os.link(path, target)
    except OSError:  # a file system without hard links: copy it
        shutil.copy2(path, target)
    return target


def read_runs(path, cadence=None):
    """The runs of a history, oldest first (read-only, no lock; for tests and small histories:
    it holds every run). Raises HistoryError when the history has a problem."""
    scan = Scan(path, cadence)
    runs = list(scan.runs())
    if scan.message():
        raise HistoryError(f"the history {path} {scan.message()}")
    return sorted(runs, key=lambda r: r["generated_at"])


def _bucket(generated_at, index, now, policy):
    when = _parse_time(generated_at)
    age = (now - when).total_seconds() / 86400.0
    if age <= policy["full_days"]:
        return ("run", generated_at, index)
    if age <= policy["daily_days"]:
        return ("day", when.date().isoformat())
    if age <= policy["weekly_days"]:
        return ("week",) + tuple(when.isocalendar()[:2])
    return None


def _select(items, now, policy=None):
    """[(item, compact)] that the retention policy keeps, oldest first (see the module docstring).

    items are anything with ``generated_at`` and ``compacted``; the last run of a bucket wins.
    """
    policy = dict(DEFAULT_POLICY, **(policy or {}))
    order = sorted(range(len(items)), key=lambda i: items[i].generated_at)
    kept_by_bucket = {}
    for index in order:
        bucket = _bucket(items[index].generated_at, index, now, policy)
        if bucket is not None:
            kept_by_bucket[bucket] = index
    kept = [(items[index], bucket[0] != "run" and not items[index].compacted)
            for bucket, index in kept_by_bucket.items()]
    kept.sort(key=lambda pair: pair[0].generated_at)
    if policy["max_runs"] and len(kept) > policy["max_runs"]:
        kept = kept[-policy["max_runs"]:]
    return kept


def compact(run):
    return dict(run, compacted=True, checks={})


def prune(runs, now, policy=None):
    """Apply the retention policy to a list of runs; returns the kept runs, oldest first."""
    items = [_Item(run["generated_at"], run.get("compacted", False), entry=run) for run in runs]
    return [compact(item.entry) if squeeze else item.entry for item, squeeze in _select(items, now, policy)]


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


def _lines_of(path, cadence, kept, now, source):
    """The new file, line by line: the header, then each kept run (copied byte for byte unless the
    policy compacts it now)."""
    yield dump_line(header(cadence, now))
    for item, squeeze in kept:
        if item.entry is not None:
            yield dump_line(compact(item.entry) if squeeze else item.entry)
            continue
        source.seek(item.offset)
        raw = source.read(item.length)
        if squeeze:
            yield dump_line(compact(json.loads(raw)))
        else:
            yield raw if raw.endswith(b"\n") else raw + b"\n"


def write_history(path, cadence, runs, now=None):
    """Write a whole schema-2 history from an iterable of runs (oldest first), atomically.
    For seeding (tests, benchmarks): no lock, no policy."""
    now = now or datetime.datetime.now(datetime.timezone.utc)

    def lines():
        yield dump_line(header(cadence, now))
        for run in runs:
            yield dump_line(run)

    write_atomic(path, lines(), mode=FILE_MODE, strict_dir_sync=False)


def append(path, cadence, entry, now=None, policy=None, scan=None):
    """Append entry under the lock; returns {"runs", "problem", "set_aside", "appended", "migrated"}.

    The caller holds the lock (``Locked``) so that what it read for the report and what it
    writes are the same history; ``scan`` is that read (``Scan`` after its ``runs()`` were
    consumed) and saves reading the file again. A damaged file or damaged lines are kept under
    a ``damaged-<stamp>`` name first (``Scan.preserve``); the readable runs are carried over.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if scan is None or not (scan.fresh() or scan.set_aside):
        scan = Scan(path, cadence).consume()
    problem = scan.message()
    if scan.newer:
        return {"runs": None, "problem": problem, "set_aside": None, "appended": False, "migrated": False}
    aside = scan.preserve(now)
    migrated = scan.schema == 1 and not scan.problem
    items = list(scan.items) + [_Item(entry["generated_at"], entry.get("compacted", False), entry=entry)]
    kept = _select(items, now, policy)
    source = open(path, "rb") if any(item.entry is None for item, _squeeze in kept) else None
    try:
        write_atomic(path, _lines_of(path, cadence, kept, now, source), mode=FILE_MODE, strict_dir_sync=False)
    finally:
        if source is not None:
            source.close()
    return {"runs": len(kept), "problem": problem, "set_aside": aside, "appended": True, "migrated": migrated}
