# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Trends of the report history: what changed, time series, inline SVG charts, capacity planning.

Pure Python, no Ansible imports, no third-party libraries: the drawing is ~100 lines of SVG
text, which keeps the report one self-contained file and this module importable on any node.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import array
import datetime
import functools
import html
import re
from collections.abc import Mapping

from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import human_bytes

_RANK = {"fail": 0, "warn": 1, "ok": 2}

# (family id, title, unit, metric name pattern, label group); the group names the series.
FAMILIES = (
    ("database_size", "Database size", "bytes", re.compile(r"^database_size:(?P<label>.+)$")),
    ("disk_free", "Disk free", "%", re.compile(r"^disk_free:(?P<label>.+)\.percent_free$")),
    ("backup_bytes", "Backup size", "bytes", re.compile(r"^backup_dump:(?P<label>.+)\.bytes$")),
    ("backup_seconds", "Backup duration", "s", re.compile(r"^backup_dump:(?P<label>.+)\.seconds$")),
    ("restore_seconds", "Restore duration", "s", re.compile(r"^restore_test:(?P<label>.+)\.restore_seconds$")),
    ("replication_lag", "Replication lag", "s",
     re.compile(r"^(?P<label>replication_lag|replica_lag:.+?)(\.lag_seconds)?$")),
    ("slow_queries", "Slow queries", "", re.compile(r"^(?P<label>slow_quer(y|ies)(:.+)?)(\.count)?$")),
    ("connections", "Connections used", "%", re.compile(r"^(?P<label>connections)$")),
    # DR drills (quarterly) and rehearsals (annually) on one chart: each against the earlier ones.
    ("dr_drill", "DR drills: RTO, RPO, user-visible outage", "s",
     re.compile(r"^dr_drill\.(?P<label>rto_seconds|rpo_seconds|user_outage_seconds)$")),
)
# Relative move (percent of the previous value) that "what changed" lists, per family.
DEFAULT_CHANGE_PERCENT = 10.0
# Disk free moves are in percentage points, not percent of percent.
DEFAULT_CHANGE_POINTS = 5.0
# Smaller moves are noise whatever their percentage (a lag of 0.3 s -> 1.2 s is not news).
MIN_CHANGE = {"s": 5.0, "bytes": 1024 ** 2, "": 1}


@functools.lru_cache(maxsize=4096)
def family_of(metric):
    """(family id, title, unit, label) for a metric name, or None when no chart shows it."""
    for fid, title, unit, pattern in FAMILIES:
        match = pattern.match(metric)
        if match:
            return fid, title, unit, match.group("label")
    return None


def parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def fmt(value, unit):
    if value is None:
        return "-"
    if unit == "bytes":
        return human_bytes(value)
    text = f"{value:.1f}" if isinstance(value, float) else str(value)
    return f"{text} {unit}".strip() if unit else text


# --------------------------------------------------------------------------- what changed

def changes(current, previous, percent=DEFAULT_CHANGE_PERCENT, points=DEFAULT_CHANGE_POINTS):
    """What moved between two history entries: {"statuses": [...], "values": [...]}.

    statuses: every (host, check) whose status differs, including checks that appeared or went
    away. values: watched metrics (the chart families) that moved more than ``percent`` of the
    previous value (``points`` percentage points for disk free and connections).
    """
    out = {"statuses": [], "values": []}
    if not previous:
        return out
    cur_checks, old_checks = current.get("checks") or {}, previous.get("checks") or {}
    for host in sorted(set(cur_checks) | set(old_checks)):
        now, before = cur_checks.get(host, {}), old_checks.get(host, {})
        for check in sorted(set(now) | set(before)):
            if now.get(check) != before.get(check):
                out["statuses"].append({"host": host, "check": check, "before": before.get(check),
                                        "after": now.get(check)})
    out["statuses"].sort(key=lambda c: (_RANK.get(c["after"], 3), c["host"], c["check"]))
    cur_m, old_m = current.get("metrics") or {}, previous.get("metrics") or {}
    for host in sorted(cur_m):
        for metric in sorted(cur_m[host]):
            fam = family_of(metric)
            old = (old_m.get(host) or {}).get(metric)
            new = cur_m[host][metric]
            if fam is None or old is None:
                continue
            delta = new - old
            if fam[2] == "%":
                moved = abs(delta) > points
                rel = None
            else:
                rel = (delta / old * 100.0) if old else (100.0 if delta else 0.0)
                moved = abs(rel) > percent and abs(delta) >= MIN_CHANGE.get(fam[2], 0)
            if moved:
                out["values"].append({"host": host, "metric": metric, "title": fam[1], "label": fam[3],
                                      "unit": fam[2], "before": old, "after": new, "delta": delta,
                                      "percent": None if rel is None else round(rel, 1)})
    return out


# --------------------------------------------------------------------------- series

_USED_RE = re.compile(r"^disk_free:(?P<label>.+)\.bytes_free$")
_TOTAL_RE = re.compile(r"^disk_free:(?P<label>.+)\.bytes_total$")
_SEQUENCE_RE = re.compile(r"^(?P<check>(?:.+:)?sequences)\.percent_used$")
_DATABASE_RE = re.compile(r"^database_size:(?P<label>.+)$")
_UTC = datetime.timezone.utc


@functools.lru_cache(maxsize=4096)
def _used_label(metric):
    match = _USED_RE.match(metric)
    return match.group("label") if match else None


@functools.lru_cache(maxsize=8192)
def _role(metric):
    """(chart key (family id, label) or None, True when the capacity plan reads the metric by name)."""
    fam = family_of(metric)
    own = bool(_USED_RE.match(metric) or _TOTAL_RE.match(metric) or _SEQUENCE_RE.match(metric))
    return (fam[0], fam[3]) if fam else None, own


def _limits_used(check):
    """Thresholds the capacity plan reads: disk limits, connections, sequences."""
    return check.startswith("disk_free:") or check == "connections" or check.endswith("sequences")


class _Series:
    """The points of one series, compact: run numbers and values in arrays (12 bytes a point
    instead of a tuple, a datetime and a number object). Whether each value was an int or a
    float is kept, so numbers come back exactly as the history had them (ints up to 2**53)."""

    __slots__ = ("runs", "values", "ints")

    def __init__(self):
        self.runs = array.array("I")
        self.values = array.array("d")
        self.ints = None  # None: empty; True/False: every value an int / a float; array("b") when mixed

    def add(self, run, value):
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if self.ints is None:
            self.ints = is_int
        elif self.ints is not is_int and isinstance(self.ints, bool):
            self.ints = array.array("b", [self.ints] * len(self.values))
        if not isinstance(self.ints, bool):
            self.ints.append(is_int)
        self.runs.append(run)
        self.values.append(value)

    def value(self, index):
        flag = self.ints if isinstance(self.ints, bool) else self.ints[index]
        value = self.values[index]
        return int(value) if flag else value


class Trends(Mapping):
    """What the report needs from the histories, gathered one run at a time (``add``).

    Keeps, per host, the chart series (the families), the series the capacity plan reads
    (volume bytes free and total, sequences) and the newest disk, connection and sequence
    limits; nothing else of a run. Reads like the dict ``series()`` returns,
    ``{host: {family id: {label: [(datetime, value), ...]}, "__used": {...}}}``, built per host
    on demand, so only the hosts a page charts are ever expanded. Points come back in time
    order (runs of the same time in the order they were added), as a sort of all the runs would
    give them.
    """

    def __init__(self):
        self._times = array.array("d")  # UTC epoch of each run added
        self._when = {}
        self._fam = {}  # host -> {(family id, label): _Series}
        self._own = {}  # host -> {metric: _Series}
        self._limits = {}  # host -> {check: (epoch, limits)}

    def add(self, run):
        """Take what is needed from one history entry (a run dict as the history stores it)."""
        index = len(self._times)
        epoch = parse_time(run["generated_at"]).timestamp()
        self._times.append(epoch)
        for host, metrics in (run.get("metrics") or {}).items():
            fam = self._fam.get(host)
            if fam is None:
                fam = self._fam[host] = {}
                self._own[host] = {}
            own = self._own[host]
            for metric, value in metrics.items():
                key, by_name = _role(metric)
                if key is not None:
                    series = fam.get(key)
                    if series is None:
                        series = fam[key] = _Series()
                    series.add(index, value)
                if by_name:
                    series = own.get(metric)
                    if series is None:
                        series = own[metric] = _Series()
                    series.add(index, value)
        for host, per_check in (run.get("thresholds") or {}).items():
            for check, limits in per_check.items():
                if _limits_used(check):
                    slot = self._limits.setdefault(host, {})
                    known = slot.get(check)
                    if known is None or epoch >= known[0]:
                        slot[check] = (epoch, limits)

    def __len__(self):
        return len(self._fam)

    def __iter__(self):
        return iter(self._fam)

    def __contains__(self, host):
        return host in self._fam

    def _at(self, run):
        when = self._when.get(run)
        if when is None:
            when = self._when[run] = datetime.datetime.fromtimestamp(self._times[run], _UTC)
        return when

    def _order(self, series):
        times = self._times
        runs = series.runs
        return sorted(range(len(runs)), key=lambda i: times[runs[i]])

    def _list(self, series):
        return [(self._at(series.runs[i]), series.value(i)) for i in self._order(series)]

    def _points(self, series):
        """{datetime: value} in time order; of two points at the same time the later added wins."""
        return {self._at(series.runs[i]): series.value(i) for i in self._order(series)}

    def __getitem__(self, host):
        fam = self._fam[host]
        out = {}
        own = self._own[host]
        for metric, free in own.items():
            label = _used_label(metric)
            total = own.get(metric[: -len("bytes_free")] + "bytes_total") if label else None
            if total is None:
                continue
            totals = {total.runs[i]: total.value(i) for i in range(len(total.runs))}
            points = [(self._at(free.runs[i]), totals[free.runs[i]] - free.value(i))
                      for i in self._order(free) if free.runs[i] in totals]
            if points:
                out.setdefault("__used", {})[label] = points
        for (fid, label), series in fam.items():
            out.setdefault(fid, {})[label] = self._list(series)
        return out

    def _named(self, host, metric):
        """The series of one metric of a host by its name, or None."""
        series = self._own.get(host, {}).get(metric)
        if series is None:
            key = _role(metric)[0]
            series = self._fam.get(host, {}).get(key) if key else None
        return series

    def capacity(self, now, horizon_days=3650, min_points=3):
        """The capacity plan (see ``capacity()``) from the runs added."""
        volumes, databases, connections, sequences = [], [], [], []
        for host in sorted(set(self._fam) | set(self._limits)):
            limits = {check: known[1] for check, known in self._limits.get(host, {}).items()}
            names = set(self._own.get(host, {}))
            names.update(f"database_size:{label}" for fid, label in self._fam.get(host, {}) if fid == "database_size")
            for metric in sorted(names):
                match = _USED_RE.match(metric)
                if match:
                    total = self._named(host, f"disk_free:{match.group('label')}.bytes_total")
                    volumes.append(_volume(host, match.group("label"), self._points(self._named(host, metric)),
                                           self._points(total) if total else {},
                                           limits.get(f"disk_free:{match.group('label')}", {}), now,
                                           horizon_days, min_points))
                match = _DATABASE_RE.match(metric)
                if match:
                    databases.append(_database(host, match.group("label"), self._points(self._named(host, metric)),
                                               now, min_points))
                match = _SEQUENCE_RE.match(metric)
                if match:
                    sequences.append(_sequence(host, match.group("check"), self._points(self._named(host, metric)),
                                               limits.get(match.group("check"), {}), now, horizon_days, min_points))
            conn = self._fam.get(host, {}).get(("connections", "connections"))
            if conn is not None:
                values = self._points(conn)
                peak_at = max(values, key=lambda w: values[w])
                connections.append({"host": host, "peak_percent": values[peak_at],
                                    "peak_at": peak_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                    "latest_percent": values[max(values)],
                                    "warn_percent": (limits.get("connections") or {}).get("warn"),
                                    "fail_percent": (limits.get("connections") or {}).get("fail")})
        plan = {"volumes": volumes, "databases": databases, "connections": connections, "sequences": sequences}
        plan["verdicts"] = verdicts(plan)
        return plan


def gather(runs):
    """A Trends of runs (any cadences, any order)."""
    trends = Trends()
    for run in runs:
        trends.add(run)
    return trends


def series(runs):
    """{host: {family id: {label: [(datetime, value), ...]}}} from history runs (any cadences)."""
    trends = gather(runs)
    return {host: trends[host] for host in trends}


def for_changes(run):
    """What "what changed" needs of a previous run: its statuses and its watched numbers."""
    metrics = {}
    for host, values in (run.get("metrics") or {}).items():
        metrics[host] = {m: v for m, v in values.items() if family_of(m) is not None}
    return {"generated_at": run["generated_at"], "checks": run.get("checks") or {}, "metrics": metrics}


def family_info(fid):
    for fam in FAMILIES:
        if fam[0] == fid:
            return fam
    raise KeyError(fid)


# --------------------------------------------------------------------------- robust fit

def _median(values):
    values = sorted(values)
    n = len(values)
    if not n:
        raise ValueError("median of nothing")
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2.0


def theil_sen(xs, ys, max_points=400):
    """Theil-Sen line (slope, intercept): the median of all pairwise slopes, then the median
    intercept. Robust: up to ~29 % of the points can be wild without moving it much. None with
    fewer than two distinct x. Longer series are thinned evenly to max_points (O(n^2) pairs);
    the capacity plan uses 48 evenly spaced points (1,128 pairs), which keeps a report of
    hundreds of hosts fast and is still robust to odd days."""
    points = sorted(zip(xs, ys))
    if len(points) > max_points:
        step = len(points) / float(max_points)
        points = [points[int(i * step)] for i in range(max_points)] + [points[-1]]
    slopes = []
    for i, (xi, yi) in enumerate(points):
        slopes.extend([(yj - yi) / (xj - xi) for xj, yj in points[i + 1:] if xj != xi])
    if not slopes:
        return None
    slope = _median(slopes)
    intercept = _median([y - slope * x for x, y in points])
    return slope, intercept


# --------------------------------------------------------------------------- capacity

def _days(when, origin):
    return (when - origin).total_seconds() / 86400.0


def capacity(runs, now, horizon_days=3650, min_points=3):
    """The capacity plan from history runs (any cadences), see docs/report.md "Capacity planning"."""
    return gather(runs).capacity(now, horizon_days, min_points)


FIT_POINTS = 48


def _fit(points, now, min_points):
    if len(points) < min_points:
        return None
    origin = min(points)
    line = theil_sen([_days(w, origin) for w in points], [points[w] for w in points], max_points=FIT_POINTS)
    if line is None:
        return None
    slope, intercept = line
    return {"slope": slope, "intercept": intercept, "origin": origin, "now_x": _days(now, origin)}


def _database(host, name, sizes, now, min_points):
    fit = _fit(sizes, now, min_points)
    latest = sizes[max(sizes)]
    row = {"host": host, "database": name, "latest_bytes": latest, "points": len(sizes),
           "growth_bytes_per_day": None, "days": round(_days(max(sizes), min(sizes)), 1)}
    if fit:
        row["growth_bytes_per_day"] = fit["slope"]
    return row


def _dates_to(targets, latest, fit, now, horizon_days):
    """({name: days}, {name: ISO date}) at which the fitted line reaches each target value:
    0 days (today) for a target already reached, nothing for one beyond the horizon."""
    days_left, dates = {}, {}
    value_now = fit["intercept"] + fit["slope"] * fit["now_x"]
    for name, target in targets.items():
        if latest >= target:
            days_left[name], dates[name] = 0, now.date().isoformat()
        elif fit["slope"] > 0:
            days = max((target - value_now) / fit["slope"], 0.0)
            if days <= horizon_days:
                days_left[name] = int(round(days))
                dates[name] = (now + datetime.timedelta(days=days)).date().isoformat()
    return days_left, dates


def _sequence(host, check, percents, limits, now, horizon_days, min_points):
    """The most used sequence of one database (pg_review_info's ``sequences`` check keeps its
    percent of the column's maximum): Theil-Sen growth in points per day and the dates it
    reaches the check's warn and fail limits and 100 %."""
    latest = percents[max(percents)]
    targets = {"warn": limits.get("warn", 85.0), "fail": limits.get("fail", 95.0), "full": 100.0}
    row = {"host": host, "check": check, "latest_percent": latest, "points": len(percents),
           "growth_percent_per_day": None, "dates": {}, "days_left": {}, "limits_used_percent": targets}
    fit = _fit(percents, now, min_points)
    if fit:
        row["growth_percent_per_day"] = fit["slope"]
        row["days_left"], row["dates"] = _dates_to(targets, latest, fit, now, horizon_days)
    return row


def _volume(host, label, free, total, limits, now, horizon_days, min_points):
    used = {w: total[w] - free[w] for w in free if w in total}
    last = max(free)
    size = total.get(last)
    row = {"host": host, "volume": label, "points": len(used), "bytes_total": size, "bytes_used": used.get(last),
           "growth_bytes_per_day": None, "dates": {}, "days_left": {}, "limits_used_percent": {}}
    warn_free = limits.get("warn_percent_free", 20)
    fail_free = limits.get("fail_percent_free", 10)
    targets = {"warn": 100.0 - warn_free, "fail": 100.0 - fail_free, "full": 100.0}
    row["limits_used_percent"] = targets
    fit = _fit(used, now, min_points)
    if not fit or not size:
        return row
    row["growth_bytes_per_day"] = fit["slope"]
    row["fit"] = {"slope": fit["slope"], "intercept": fit["intercept"],
                  "origin": fit["origin"].strftime("%Y-%m-%dT%H:%M:%SZ")}
    row["days_left"], row["dates"] = _dates_to({name: size * percent / 100.0 for name, percent in targets.items()},
                                               used.get(last, 0), fit, now, horizon_days)
    return row


def verdicts(plan):
    """Sentences an operator can act on, the most urgent first."""
    lines = []
    for vol in plan["volumes"]:
        who = f"{vol['host']}'s {vol['volume']} volume"
        if vol["growth_bytes_per_day"] is None:
            lines.append((9e9, "info", f"{who}: not enough history for a forecast ({vol['points']} runs)."))
            continue
        days = vol["days_left"]
        growth = human_bytes(abs(vol["growth_bytes_per_day"]))
        if "fail" in days and days["fail"] <= 90:
            level = "fail"
        elif "warn" in days and days["warn"] <= 180:
            level = "warn"
        else:
            level = "ok"
        if vol["growth_bytes_per_day"] <= 0:
            lines.append((9e8, "ok", f"{who} is not growing ({growth}/day shrinking or flat)."))
            continue
        parts = []
        for name, word in (("warn", "the warn limit"), ("fail", "the fail limit"), ("full", "100 %")):
            if name in days:
                pct = vol["limits_used_percent"][name]
                shown = f"{pct:g} % used ({word})" if name != "full" else "100 %"
                when = "now" if days[name] == 0 else f"in {days[name]} days ({vol['dates'][name]})"
                parts.append(f"{shown} {when}")
        if not parts:
            text = f"{who} grows {growth}/day and reaches no limit within ten years."
        else:
            text = f"{who} grows {growth}/day and reaches " + ", ".join(parts) + "."
        lines.append((min(days.values()) if days else 9e7, level, text))
    for seq in plan.get("sequences", []):
        who = f"{seq['host']}: the most used sequence of {seq['check'].rsplit(':', 1)[0]}"
        days = seq["days_left"]
        if seq["growth_percent_per_day"] is None or not days:
            if seq["latest_percent"] >= seq["limits_used_percent"]["warn"]:
                lines.append((1, "warn", f"{who} is at {seq['latest_percent']:g} % of its column's maximum."))
            continue
        level = "fail" if days.get("full", 9e9) <= 180 else "warn" if days.get("warn", 9e9) <= 365 else "ok"
        parts = [f"{'100 %' if name == 'full' else str(seq['limits_used_percent'][name]) + ' %'} "
                 + ("now" if days[name] == 0 else f"in {days[name]} days ({seq['dates'][name]})")
                 for name in ("warn", "fail", "full") if name in days]
        lines.append((min(days.values()), level,
                      f"{who} is at {seq['latest_percent']:g} % of its column's maximum and reaches "
                      + ", ".join(parts) + " (widen the column to bigint before then)."))
    for con in plan["connections"]:
        warn = con.get("warn_percent")
        if warn is not None and con["peak_percent"] >= warn:
            lines.append((0, "warn", f"{con['host']}: connections peaked at {con['peak_percent']:g} % of "
                                     f"max_connections ({con['peak_at']}); raise max_connections or add a pooler."))
    lines.sort(key=lambda item: (item[0], item[2]))
    return [{"level": level, "text": text} for _order, level, text in lines]


# --------------------------------------------------------------------------- SVG

_MARKERS = ("circle", "square", "triangle", "diamond", "cross")
_DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 4")
_COLOURS = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00")
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 640, 240, 64, 96, 16, 34


def _marker(kind, x, y, colour, title):
    tip = f"<title>{html.escape(title)}</title>"
    if kind == "circle":
        shape = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"'
    elif kind == "square":
        shape = f'<rect x="{x - 3:.1f}" y="{y - 3:.1f}" width="6" height="6"'
    elif kind == "triangle":
        shape = f'<path d="M{x:.1f} {y - 3.5:.1f}L{x + 3.5:.1f} {y + 3:.1f}L{x - 3.5:.1f} {y + 3:.1f}Z"'
    elif kind == "diamond":
        shape = f'<path d="M{x:.1f} {y - 4:.1f}L{x + 4:.1f} {y:.1f}L{x:.1f} {y + 4:.1f}L{x - 4:.1f} {y:.1f}Z"'
    else:
        shape = (f'<path d="M{x - 3:.1f} {y - 3:.1f}L{x + 3:.1f} {y + 3:.1f}'
                 f'M{x - 3:.1f} {y + 3:.1f}L{x + 3:.1f} {y - 3:.1f}"')
    return f'{shape} class="pt" fill="{colour}" stroke="{colour}">{tip}</{shape.split()[0][1:]}>'


def chart(title, unit, lines, projections=None, ident="chart"):
    """An inline SVG line chart plus a data table, as one HTML fragment.

    lines: {label: [(datetime, value), ...]}; projections: {label: [(datetime, value), ...]} drawn
    dashed grey (a forecast). Each series has its own marker shape and dash pattern and is
    labelled at its end, so the chart reads without colour.
    """
    projections = projections or {}
    labels = sorted(lines)
    everything = [p for lab in labels for p in lines[lab]] + [p for pts in projections.values() for p in pts]
    if not everything:
        return ""
    t0 = min(p[0] for p in everything)
    t1 = max(p[0] for p in everything)
    v0 = min(0.0, *(p[1] for p in everything))
    v1 = max(p[1] for p in everything) or 1.0
    span_t = (t1 - t0).total_seconds() or 1.0
    span_v = (v1 - v0) or 1.0
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def xy(point):
        return (PAD_L + (point[0] - t0).total_seconds() / span_t * pw,
                PAD_T + ph - (point[1] - v0) / span_v * ph)

    out = [f'<figure class="chart" id="{html.escape(ident)}"><figcaption>{html.escape(title)}</figcaption>',
           f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="{html.escape(title)}" '
           f'xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">']
    for i in range(5):
        val = v0 + span_v * i / 4
        y = PAD_T + ph - ph * i / 4
        out.append(f'<line x1="{PAD_L}" x2="{PAD_L + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dde3ea"/>'
                   f'<text x="{PAD_L - 4}" y="{y + 4:.1f}" text-anchor="end">{html.escape(fmt(val, unit))}</text>')
    for when, anchor in ((t0, "start"), (t1, "end")):
        x = PAD_L if anchor == "start" else PAD_L + pw
        out.append(f'<text x="{x}" y="{H - 10}" text-anchor="{anchor}">{when.date().isoformat()}</text>')
    for index, label in enumerate(labels):
        colour, dash, kind = (_COLOURS[index % 5], _DASHES[index % 5], _MARKERS[index % 5])
        pts = sorted(lines[label])
        coords = [xy(p) for p in pts]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<g class="series" data-series="{html.escape(label)}" data-points="{len(pts)}">')
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"{dash_attr}/>')
        step = max(1, len(pts) // 60)
        for n, (p, (x, y)) in enumerate(zip(pts, coords)):
            if n % step == 0 or n == len(pts) - 1:
                out.append(_marker(kind, x, y, colour, f"{label} {p[0].date().isoformat()}: {fmt(p[1], unit)}"))
        x, y = coords[-1]
        out.append(f'<text x="{min(x + 6, W - 2):.1f}" y="{y + 4:.1f}">{html.escape(label[:14])}</text></g>')
        if label in projections:
            proj = [xy(p) for p in sorted(projections[label])]
            ppath = " ".join(f"{x:.1f},{y:.1f}" for x, y in proj)
            out.append(f'<polyline class="projection" points="{ppath}" fill="none" stroke="#5f6b7a" '
                       f'stroke-width="1.4" stroke-dasharray="3 3"/>')
    out.append("</svg>")
    rows = []
    stamps = sorted({p[0] for lab in labels for p in lines[lab]})
    index = {lab: dict(lines[lab]) for lab in labels}
    for when in stamps:
        cells = "".join(f"<td>{html.escape(fmt(index[lab].get(when), unit))}</td>" for lab in labels)
        rows.append(f"<tr><td>{when.strftime('%Y-%m-%d %H:%M')}</td>{cells}</tr>")
    head = "".join(f"<th>{html.escape(lab)}</th>" for lab in labels)
    out.append(f'<details><summary>Data ({len(stamps)} runs)</summary><div class="scroll"><table class="data">'
               f"<thead><tr><th>UTC</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></details>")
    out.append("</figure>")
    return "".join(out)
