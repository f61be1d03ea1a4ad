# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nginx access logs: the lines written since the last run, and what they say.

The log format is nginx's ``combined`` followed by ``$request_time`` (and optionally
``$upstream_response_time``), see docs/http-error-rate.md::

    log_format upkeep '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" "$http_user_agent" '
                      '$request_time $upstream_response_time';

The position is a small JSON state file (schema 1): the inode of the log file read last,
the byte offset after the last complete line, and the time of the run. On the next run:

- the same inode at ``path``, at least as large: read from the offset;
- the same inode at ``path`` but smaller (copytruncate): read ``path`` from the start;
- another inode at ``path``: the old file was rotated. The rotated file with the saved
  inode (``path.1`` unless told otherwise) is read from the offset to its end first, then
  ``path`` from the start. When no rotated file has the inode, what was written to it after
  the offset is lost and the result says so.

Only complete lines (ending in a newline) are counted; a line nginx is still writing is
left for the next run. Nothing here writes anything but the state file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import json
import math
import os
import re

from ansible_collections.upkeep.runbooks.plugins.module_utils import _files

STATE_SCHEMA = 1

LOG_FORMAT = (
    "log_format upkeep '$remote_addr - $remote_user [$time_local] \"$request\" '\n"
    "                  '$status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" '\n"
    "                  '$request_time $upstream_response_time';"
)

# combined, then $request_time, then anything (upstream times, further fields).
LINE_RE = re.compile(
    r'^(?P<addr>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] '
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<bytes>\d+|-) '
    r'"(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*" (?P<rt>\d+(?:\.\d+)?)(?: |$)'
)

ID_SEGMENT = re.compile(
    r"/(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?=/|$)")

DEFAULT_HEALTH_CHECK_PATHS = [r"^/healthz/?$", r"^/health/?$", r"^/ping/?$", r"^/nginx_status$"]
DEFAULT_STATIC_PATHS = [r"^/static/", r"^/media/", r"^/favicon\.ico$", r"^/robots\.txt$"]


class HttpLogError(Exception):
    """A log or state file could not be read or written; the message is for the operator."""


def percentile(sorted_values, pct):
    """Nearest-rank percentile of an ascending list: the value at rank ceil(pct/100 * n).

    Exact and reproducible (no interpolation): it is always one of the measured values.
    """
    if not sorted_values:
        return None
    rank = max(1, int(math.ceil(pct / 100.0 * len(sorted_values))))
    return sorted_values[rank - 1]


class Histogram(object):
    """Request times counted per millisecond (nginx logs $request_time with millisecond resolution).

    Nearest-rank percentiles from it are exactly those of the full list of times, while memory
    grows with the number of distinct milliseconds seen, not with the number of requests.
    """

    def __init__(self):
        self.counts = {}
        self.total = 0

    def add(self, seconds):
        ms = int(round(seconds * 1000))
        self.counts[ms] = self.counts.get(ms, 0) + 1
        self.total += 1

    def percentile(self, pct):
        if not self.total:
            return None
        rank = max(1, int(math.ceil(pct / 100.0 * self.total)))
        seen = 0
        for ms in sorted(self.counts):
            seen += self.counts[ms]
            if seen >= rank:
                return ms / 1000.0
        return None  # pragma: no cover - seen reaches total

    def max(self):
        return max(self.counts) / 1000.0 if self.counts else None

    def sum(self):
        return sum(ms * n for ms, n in self.counts.items()) / 1000.0


def compile_patterns(patterns, what):
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise HttpLogError("Failed to compile the %s pattern %r: %s" % (what, pattern, exc)) from exc
    return compiled


def parse_line(line):
    """One log line -> (method, path, status, request_time) or None when it is not in the format."""
    match = LINE_RE.match(line)
    if not match:
        return None
    parts = match.group("request").split(" ")
    if len(parts) >= 2:
        method, target = parts[0], parts[1]
    else:  # "-" or a garbage request line (a 400 from nginx)
        method, target = "-", match.group("request") or "-"
    path = target.split("?", 1)[0]
    return method, path, int(match.group("status")), float(match.group("rt"))


def normalize_path(path):
    """/orders/123/lines/9 -> /orders/{id}/lines/{id}: one entry per route, not per object."""
    return ID_SEGMENT.sub("/{id}", path)


class Tally(object):
    """Counts over the lines of the period."""

    def __init__(self, health_patterns, static_patterns, normalize=True):
        self.health = health_patterns
        self.static = static_patterns
        self.normalize = normalize
        self.times = Histogram()
        self.status_classes = {"1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
        self.excluded_health = 0
        self.excluded_static = 0
        self.unparsed = 0
        self.unparsed_sample = None
        self.per_path = {}
        self.lines = 0

    def add(self, line):
        self.lines += 1
        parsed = parse_line(line)
        if parsed is None:
            self.unparsed += 1
            if self.unparsed_sample is None:
                self.unparsed_sample = line[:300]
            return
        _method, path, status, seconds = parsed
        if any(p.search(path) for p in self.health):
            self.excluded_health += 1
            return
        if any(p.search(path) for p in self.static):
            self.excluded_static += 1
            return
        self.times.add(seconds)
        key = "%dxx" % (status // 100)
        if key in self.status_classes:
            self.status_classes[key] += 1
        route = normalize_path(path) if self.normalize else path
        entry = self.per_path.setdefault(route, {"times": Histogram(), "errors": 0})
        entry["times"].add(seconds)
        if status >= 500:
            entry["errors"] += 1

    def summary(self, slowest_count):
        times = self.times
        requests = times.total
        errors = self.status_classes["5xx"]
        paths = []
        for route, entry in self.per_path.items():
            values = entry["times"]
            paths.append({
                "path": route,
                "requests": values.total,
                "errors_5xx": entry["errors"],
                "p95_seconds": values.percentile(95),
                "max_seconds": values.max(),
                "total_seconds": round(values.sum(), 3),
            })
        paths.sort(key=lambda item: (-item["p95_seconds"], -item["requests"], item["path"]))
        return {
            "requests": requests,
            "errors_5xx": errors,
            "error_rate_percent": (round(100.0 * errors / requests, 3) if requests else None),
            "status_classes": self.status_classes,
            "p50_seconds": times.percentile(50),
            "p95_seconds": times.percentile(95),
            "p99_seconds": times.percentile(99),
            "max_seconds": times.max(),
            "slowest_paths": paths[:slowest_count],
            "excluded": {"health_checks": self.excluded_health, "static": self.excluded_static},
            "unparsed_lines": self.unparsed,
            "unparsed_sample": self.unparsed_sample,
            "lines_read": self.lines,
        }


def read_state(path):
    """The saved position, or None when there is none yet."""
    try:
        with open(path, "r") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise HttpLogError("Failed to read the state file %s: %s" % (path, exc)) from exc
    if not isinstance(data, dict) or data.get("schema") != STATE_SCHEMA:
        raise HttpLogError("Failed to read the state file %s: not a schema %d position file (remove it to start"
                           " over from the current log)" % (path, STATE_SCHEMA))
    return data


def write_state(path, state):
    directory = os.path.dirname(os.path.abspath(path))
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        _files.write_atomic(path, json.dumps(state, sort_keys=True) + "\n", mode=0o600)
    except OSError as exc:
        raise HttpLogError("Failed to write the state file %s: %s" % (path, exc)) from exc


def _feed(handle, offset, tally):
    """Feed the complete lines of an open file from ``offset``; return the offset after the last one."""
    handle.seek(offset)
    position = offset
    for raw in handle:
        if not raw.endswith(b"\n"):
            break  # nginx is still writing it: next run
        position += len(raw)
        tally.add(raw.decode("utf-8", "replace").rstrip("\r\n"))
    return position


def _read_complete_lines(path, offset, tally):
    try:
        with open(path, "rb") as handle:
            return _feed(handle, offset, tally)
    except OSError as exc:
        raise HttpLogError("Failed to read the access log %s: %s" % (path, exc)) from exc


def _find_rotated(inode, device, rotated_globs):
    for pattern in rotated_globs:
        for candidate in sorted(glob.glob(pattern)):
            try:
                st = os.stat(candidate)
            except OSError:
                continue
            if st.st_ino == inode and st.st_dev == device:
                return candidate
    return None


def collect(path, state, rotated_globs, tally):
    """Read what was written since ``state``; return (new_position, sources, notes).

    The current file is opened first and its inode taken from the open handle, so a rotation
    while this runs cannot make the saved position point into the wrong file.
    """
    notes, sources = [], []
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise HttpLogError("Failed to read the access log %s: %s" % (path, exc)) from exc
    try:
        st = os.fstat(handle.fileno())
        start = 0
        if state is None:
            notes.append("No saved position: read %s from its start" % path)
        elif state.get("path") != path:
            notes.append("The saved position is for %s, not %s: read %s from its start"
                         % (state.get("path"), path, path))
        elif state["inode"] == st.st_ino and state.get("device", st.st_dev) == st.st_dev:
            if st.st_size >= state["offset"]:
                start = state["offset"]
            else:
                notes.append("%s is shorter than at the last run (truncated, e.g. copytruncate): read from its start"
                             % path)
        else:
            rotated = _find_rotated(state["inode"], state.get("device", st.st_dev), rotated_globs)
            if rotated is None:
                notes.append("%s was rotated and no rotated file (%s) has the previous inode: lines written to it"
                             " after the last run were not read" % (path, ", ".join(rotated_globs)))
            else:
                end = _read_complete_lines(rotated, state["offset"], tally)
                sources.append({"path": rotated, "from": state["offset"], "to": end})
                notes.append("%s was rotated since the last run: read the rest of %s first" % (path, rotated))
        try:
            end = _feed(handle, start, tally)
        except OSError as exc:
            raise HttpLogError("Failed to read the access log %s: %s" % (path, exc)) from exc
    finally:
        handle.close()
    sources.append({"path": path, "from": start, "to": end})
    position = {"schema": STATE_SCHEMA, "path": path, "inode": st.st_ino, "device": st.st_dev, "offset": end}
    return position, sources, notes
