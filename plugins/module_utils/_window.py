# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Maintenance windows: may a runbook that changes production start a host now? Pure logic, no I/O.

A window is an RFC 5545 recurrence rule (read by python-dateutil's ``rrulestr``) in an IANA
time zone, a duration and a cutoff. An occurrence starting at S is the half-open interval
[S, S + duration); new hosts may start in [S, S + duration - cutoff) (the cutoff leaves time
for the last host to finish); a host that started always finishes, so nothing here ever tells
a running host to stop. Freeze periods forbid starting anything while they last; excluded
dates drop the occurrences that start on that local date.

Time semantics (docs/patching.md explains them to operators):

* Occurrences are generated in the window's local wall time, as RFC 5545 says. A local start
  that does not exist (spring forward) is read with the UTC offset before the gap: 02:30 on
  the day Europe/Berlin jumps from 02:00 to 03:00 starts at 03:30 CEST, 01:30 UTC. A local
  start that exists twice (fall back) is the first one (summer time). zoneinfo's ``fold=0``
  gives exactly this, and dateutil always generates ``fold=0``.
* Durations and cutoffs are real elapsed time: the end is computed in UTC. A 4 h window that
  starts at 01:00 on a fall-back night ends at 04:00 in the (repeated-hour) wall clock, after
  four real hours.
* Every comparison is made in UTC. (Aware datetimes that share a tzinfo compare by wall time
  in Python, which is wrong across a fold.)
* An excluded date is the local date of an occurrence's start (a window from 22:00 to 02:00
  on 24 December is excluded by 2026-12-24, not by 2026-12-25).

Efficiency: dateutil's ``after``/``xafter`` walk a rule from its DTSTART. For rules that
repeat by the hour, day or week and have no COUNT, the DTSTART is moved forward by a whole
number of intervals to just before the time of interest (``_rebased``), which keeps every
later occurrence and makes each search cost a few occurrences, not years of them.

dateutil's rrule keeps its parts only as attributes with a leading underscore (``_dtstart``,
``_until``, ``_freq``, ``_interval``, ``_count``); they have been stable since dateutil 2.7 and
are read here, never written (``replace()`` makes the changed copies).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import result as check_result

try:
    from dateutil import rrule as _rrule
except ImportError:  # pragma: no cover - exercised through ensure_dateutil() tests
    _rrule = None

try:
    import zoneinfo as _zoneinfo
except ImportError:  # pragma: no cover - Python < 3.9
    try:
        from backports import zoneinfo as _zoneinfo
    except ImportError:
        _zoneinfo = None

UTC = datetime.timezone.utc
CHECK = "maintenance_window"
# How far ahead the next opening is searched for. Freezes are jumped over, not walked.
SEARCH_DAYS = 5 * 366
_MAX_STEPS = 100000
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_WINDOW_KEYS = ("name", "rrule", "timezone", "duration", "cutoff", "excluded_dates")
_FREEZE_KEYS = ("name", "start", "end", "reason", "timezone")
_UTC_NAMES = ("UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu", "Z")


class WindowError(Exception):
    """Bad input; the message is the full sentence for the operator."""

    def __init__(self, msg):
        super(WindowError, self).__init__(msg)
        self.msg = msg


def missing_libraries():
    """The missing_required_lib() message when dateutil or zoneinfo is absent, else None."""
    if _rrule is None:
        return missing_required_lib("python-dateutil", reason="to read maintenance window rules")
    if _zoneinfo is None:
        return missing_required_lib("backports.zoneinfo", reason="for time zones on Python < 3.9")
    return None


def ensure_libraries(module):
    """Fail the module clearly when python-dateutil (or zoneinfo) is not importable."""
    msg = missing_libraries()
    if msg:
        module.fail_json(msg=msg)


# ---------------------------------------------------------------- small parsers

_PART = re.compile(r"(\d+)\s*(d|h|m|s)", re.IGNORECASE)
_SHORT = re.compile(r"^(?:\d+\s*[dhms]\s*)+$", re.IGNORECASE)
_ISO_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$", re.IGNORECASE)
_UNIT = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_duration(value, what):
    """'4h', '90m', '1h30m', '1d', 'PT4H', 14400 or '14400' -> seconds (int >= 0).

    Raises ValueError with the cause (the caller names the window).
    """
    example = "a length such as 4h, 90m, 1h30m, PT4H or a number of seconds"
    if isinstance(value, bool) or value is None:
        raise ValueError("%s must be %s, got %r" % (what, example, value))
    if isinstance(value, (int, float)):
        seconds = value
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            raise ValueError("%s must not be negative, got %r" % (what, value))
        if re.match(r"^\d+(\.\d+)?$", text):
            seconds = float(text)
        elif _SHORT.match(text):
            seconds = sum(int(n) * _UNIT[unit.lower()] for n, unit in _PART.findall(text))
        else:
            match = _ISO_DURATION.match(text)
            if not match or text.upper() in ("P", "PT") or text.upper().endswith("T"):
                raise ValueError("%s must be %s, got %r" % (what, example, value))
            days, hours, minutes, secs = (int(g or 0) for g in match.groups())
            seconds = days * 86400 + hours * 3600 + minutes * 60 + secs
    else:
        raise ValueError("%s must be %s, got %r" % (what, example, value))
    if seconds < 0:
        raise ValueError("%s must not be negative, got %r" % (what, value))
    if seconds != int(seconds):
        raise ValueError("%s must be whole seconds, got %r" % (what, value))
    return int(seconds)


def human_duration(seconds):
    """3h 4m -> '3h4m', 3 days 4 hours -> '3d 4h', 45 min -> '45m', 20 s -> '20s'."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return "%dd %dh" % (days, hours) if hours else "%dd" % days
    if hours:
        return "%dh%dm" % (hours, minutes) if minutes else "%dh" % hours
    if minutes:
        return "%dm" % minutes
    return "%ds" % secs


def get_zone(name):
    """ZoneInfo for an IANA name; ValueError with the cause for an unknown one."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("the time zone must be an IANA name such as Europe/Berlin, got %r" % (name,))
    try:
        return _zoneinfo.ZoneInfo(name.strip())
    except (_zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        hint = "" if _zoneinfo.available_timezones() else (
            " (no time zone database was found: install the tzdata package)")
        raise ValueError("unknown time zone %r%s" % (name, hint)) from None


def _zone_name(zone):
    return getattr(zone, "key", None) or ("UTC" if zone is UTC else str(zone))


def parse_instant(value, what):
    """An aware UTC datetime from an ISO 8601 text, a datetime or epoch seconds.

    A time without an offset is UTC (what Jinja's ``now(utc=true)`` gives). Raises WindowError.
    """
    cause = ("expected an ISO 8601 time with an offset such as 2026-12-08T21:00:00Z "
             "(UTC when it has none) or epoch seconds, got %r" % (value,))
    if isinstance(value, bool) or value is None:
        raise WindowError("Failed to read %s: %s" % (what, cause))
    if isinstance(value, (int, float)):
        try:
            return datetime.datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise WindowError("Failed to read %s: %s" % (what, cause)) from None
    if isinstance(value, datetime.datetime):
        when = value
    elif isinstance(value, str):
        text = value.strip()
        if re.match(r"^\d+(\.\d+)?$", text):
            return parse_instant(float(text), what)
        try:
            when = datetime.datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", text))
        except ValueError:
            raise WindowError("Failed to read %s: %s" % (what, cause)) from None
    else:
        raise WindowError("Failed to read %s: %s" % (what, cause))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _parse_local(value, zone, is_end):
    """A freeze bound as an aware UTC datetime: a date (start: its 00:00; end: 00:00 of the next
    day, so the date is included) or a date and time (with an offset, or local to ``zone``).
    ValueError for a bad value; LookupError when it needs a zone and ``zone`` is None."""
    cause = "expected a date (2026-12-18) or a date and time (2026-12-18T18:00:00+01:00), got %r" % (value,)
    if isinstance(value, (datetime.date, datetime.datetime)):
        when = value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            if _DATE.match(text):
                when = datetime.date.fromisoformat(text)
            else:
                when = datetime.datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", text))
        except ValueError:
            raise ValueError(cause) from None
    else:
        raise ValueError(cause)
    if not isinstance(when, datetime.datetime):
        day = when + datetime.timedelta(days=1) if is_end else when
        when = datetime.datetime(day.year, day.month, day.day)
    if when.tzinfo is None:
        if zone is None:
            raise LookupError()
        when = when.replace(tzinfo=zone)
    return when.astimezone(UTC)


def parse_dates(values, what):
    """A set of datetime.date from 'YYYY-MM-DD' texts (or dates); ValueError with the cause."""
    if values is None:
        return frozenset()
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, set, frozenset)):
        raise ValueError("%s must be a list of dates (YYYY-MM-DD), got %r" % (what, values))
    out = set()
    for value in values:
        if isinstance(value, datetime.datetime):
            raise ValueError("%s lists %r, which is a time, not a date (YYYY-MM-DD)" % (what, value.isoformat()))
        if isinstance(value, datetime.date):
            out.add(value)
            continue
        text = value.strip() if isinstance(value, str) else None
        try:
            if text is None or not _DATE.match(text):
                raise ValueError()
            out.add(datetime.date.fromisoformat(text))
        except ValueError:
            raise ValueError("%s lists %r, which is not a date (YYYY-MM-DD)" % (what, value)) from None
    return frozenset(out)


# ---------------------------------------------------------------- rules

_DTSTART_VALUE = re.compile(r"^(\d{8}T\d{6}Z?|\d{8})$")
_FREQS_TOO_FINE = ("MINUTELY", "SECONDLY")


def _lines(text):
    """The rule's content lines split the way rrulestr splits them (on white space)."""
    return text.split()


def _check_lines(text):
    """Only one RRULE and at most one DTSTART.

    Returns (text for rrulestr, has_dtstart, RRULE parts). Property and parameter names are
    case-insensitive (RFC 5545); they are upper-cased here because dateutil only finds an
    upper-case TZID, while the zone name keeps its case. ValueError with the cause.
    """
    dtstart = None
    rules = []
    lines = []
    for line in _lines(text):
        if ":" in line:
            head, value = line.split(":", 1)
        else:
            head, value = "RRULE", line
        name = head.split(";", 1)[0].upper()
        params = []
        for param in head.split(";")[1:]:
            key, _sep, val = param.partition("=")
            params.append("%s=%s" % (key.upper(), val))
        lines.append(";".join([name] + params) + ":" + value)
        if name == "DTSTART":
            if dtstart is not None:
                raise ValueError("the rule has more than one DTSTART")
            if not _DTSTART_VALUE.match(value):
                raise ValueError("DTSTART must look like 20260105T220000 (local to TZID or timezone), "
                                 "20260105T210000Z (UTC) or VALUE=DATE:20260105, got %r" % value)
            dtstart = line
        elif name == "RRULE":
            rules.append(value)
        else:
            raise ValueError("%s lines are not supported: a window's rule is one RRULE with an optional "
                             "DTSTART; put exceptions in excluded_dates or freezes" % name)
    if len(rules) != 1:
        raise ValueError("expected exactly one RRULE, found %d" % len(rules))
    parts = {}
    for pair in rules[0].split(";"):
        if not pair:
            continue
        if "=" not in pair:
            raise ValueError("the RRULE must be NAME=VALUE parts separated by ';' (e.g. FREQ=WEEKLY;BYDAY=TU), "
                             "got %r" % rules[0])
        key, value = pair.split("=", 1)
        parts[key.strip().upper()] = value.strip().upper()
    if "FREQ" not in parts:
        raise ValueError("the RRULE has no FREQ (e.g. FREQ=WEEKLY;BYDAY=TU)")
    if parts["FREQ"] in _FREQS_TOO_FINE:
        raise ValueError("FREQ=%s is too fine for a maintenance window: use HOURLY or coarser" % parts["FREQ"])
    if "COUNT" in parts and "UNTIL" in parts:
        raise ValueError("COUNT and UNTIL must not both be given (RFC 5545)")
    return "\n".join(lines), dtstart is not None, parts


def _check_without_dtstart(parts):
    """A rule without DTSTART must not depend on one (dateutil would take missing parts from it)."""
    freq = parts["FREQ"]
    if "COUNT" in parts:
        raise ValueError("COUNT needs a DTSTART to count from")
    interval = parts.get("INTERVAL", "1")
    if interval.isdigit() and int(interval) > 1:
        raise ValueError("INTERVAL greater than 1 needs a DTSTART to count from")
    if freq in ("DAILY", "WEEKLY", "MONTHLY", "YEARLY") and "BYHOUR" not in parts:
        raise ValueError("a rule without DTSTART must give the start time with BYHOUR (and BYMINUTE), "
                         "e.g. FREQ=WEEKLY;BYDAY=TU;BYHOUR=22;BYMINUTE=0")
    if freq in ("WEEKLY", "MONTHLY", "YEARLY") and not (
            set(parts) & {"BYDAY", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO"}):
        raise ValueError("a FREQ=%s rule without DTSTART must say which days with BYDAY or BYMONTHDAY" % freq)


def _tz_lookup(name):
    try:
        return get_zone(name)
    except ValueError as exc:
        raise _BadZone(str(exc)) from None


class _BadZone(Exception):
    pass


# An anchor for rules without DTSTART. Such a rule may not depend on it (checked above) other
# than for minutes and seconds not given, which are then 0.
_ANCHOR = datetime.datetime(2000, 1, 3)


def parse_rule(text, timezone=None):
    """(dateutil rrule with an aware DTSTART, zone) for a window's rule. ValueError with the cause."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("rrule is required (e.g. 'DTSTART;TZID=Europe/Berlin:20260105T220000\\n"
                         "RRULE:FREQ=WEEKLY;BYDAY=TU,TH')")
    text, has_dtstart, parts = _check_lines(text)
    zone = get_zone(timezone) if timezone is not None else None
    if not has_dtstart:
        if zone is None:
            raise ValueError("no time zone: give timezone, or a DTSTART;TZID=<zone>:... line in the rule")
        _check_without_dtstart(parts)
    try:
        rule = _rrule.rrulestr(text, dtstart=None if has_dtstart else _ANCHOR.replace(tzinfo=zone),
                               tzids=_tz_lookup)
    except _BadZone as exc:
        raise ValueError("TZID: %s" % exc) from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise ValueError("invalid rule: %s" % (exc or type(exc).__name__)) from None
    if not isinstance(rule, _rrule.rrule):  # pragma: no cover - _check_lines allows one RRULE only
        raise ValueError("expected exactly one RRULE")
    dtstart = rule._dtstart
    tzinfo = dtstart.tzinfo
    if tzinfo is None:
        # Floating DTSTART (no TZID, no Z): local time in the window's timezone.
        if zone is None:
            raise ValueError("no time zone: the DTSTART has no TZID, so give timezone")
        until = rule._until
        try:
            rule = rule.replace(dtstart=dtstart.replace(tzinfo=zone),
                                until=until.replace(tzinfo=zone) if until is not None and until.tzinfo is None
                                else until)
        except ValueError as exc:
            raise ValueError("invalid rule: %s" % exc) from None
    elif has_dtstart and tzinfo.utcoffset(dtstart) == datetime.timedelta(0) and not hasattr(tzinfo, "key"):
        # DTSTART:...Z: a rule in UTC.
        if zone is not None and _zone_name(zone) not in _UTC_NAMES:
            raise ValueError("the DTSTART ends in Z (UTC) but timezone is %r: write "
                             "DTSTART;TZID=%s:... without the Z, or leave timezone out" % (timezone, timezone))
        zone = UTC
        rule = rule.replace(dtstart=dtstart.replace(tzinfo=UTC))
    elif has_dtstart:
        if zone is not None and _zone_name(zone) != _zone_name(tzinfo):
            raise ValueError("timezone %r disagrees with the rule's TZID=%s: give one of them"
                             % (timezone, _zone_name(tzinfo)))
        zone = tzinfo
    return rule, zone


def _step(freq):
    """The length of one interval of an HOURLY, DAILY or WEEKLY rule in wall-clock time, else None."""
    return {_rrule.HOURLY: datetime.timedelta(hours=1), _rrule.DAILY: datetime.timedelta(days=1),
            _rrule.WEEKLY: datetime.timedelta(weeks=1)}.get(freq)


def _rebased(rule, when_utc):
    """The same rule from a DTSTART a few intervals before ``when_utc`` (see the module doc).

    Moving DTSTART by whole intervals of an HOURLY, DAILY or WEEKLY rule keeps the weekday, the
    time of day and the phase of INTERVAL that the rule takes from it, so every occurrence after
    the new DTSTART is unchanged. COUNT counts from the original DTSTART: such rules are left alone.
    """
    step = _step(rule._freq)
    if step is None or rule._count is not None:
        return rule
    dtstart = rule._dtstart
    zone = dtstart.tzinfo
    period = step * rule._interval
    start = dtstart.replace(tzinfo=None)
    target = when_utc.astimezone(zone).replace(tzinfo=None)
    periods = (target - start) // period - 2   # two intervals of slack for a DST hour
    if periods <= 0:
        return rule
    return rule.replace(dtstart=(start + period * periods).replace(tzinfo=zone))


# ---------------------------------------------------------------- model

class Window(object):
    """One parsed window: its rule, zone, duration, cutoff and excluded local dates."""

    def __init__(self, name, rule, zone, duration, cutoff, excluded):
        self.name = name
        self.rule = rule
        self.zone = zone
        self.duration = datetime.timedelta(seconds=duration)
        self.cutoff = datetime.timedelta(seconds=cutoff)
        self.excluded = excluded

    def occurrences(self, after_utc):
        """Occurrences starting strictly after ``after_utc``, excluded dates left out, in order."""
        rule = _rebased(self.rule, after_utc)
        for start in rule.xafter(after_utc):
            occurrence = Occurrence(self, start)
            if occurrence.start.date() in self.excluded:
                continue
            yield occurrence

    def containing(self, when):
        """Occurrences whose [start, end) contains ``when`` (several only if they overlap)."""
        found = []
        for occurrence in self.occurrences(when - self.duration):
            if occurrence.start_utc > when:
                break
            found.append(occurrence)
        return found


class Occurrence(object):
    """One occurrence of a window: start, end and cutoff in UTC and local time."""

    def __init__(self, window, start):
        self.window = window
        self.start_utc = start.astimezone(UTC)
        self.end_utc = self.start_utc + window.duration
        self.cutoff_utc = self.end_utc - window.cutoff
        # Local times from UTC: a start in a spring-forward gap shows the real wall time.
        self.start = self.start_utc.astimezone(window.zone)
        self.end = self.end_utc.astimezone(window.zone)
        self.cutoff_at = self.cutoff_utc.astimezone(window.zone)

    def as_dict(self, now=None):
        out = {
            "name": self.window.name,
            "timezone": _zone_name(self.window.zone),
            "start": iso(self.start),
            "end": iso(self.end),
            "cutoff_at": iso(self.cutoff_at),
            "start_utc": iso(self.start_utc),
            "end_utc": iso(self.end_utc),
            "cutoff_at_utc": iso(self.cutoff_utc),
            "duration_seconds": int(self.window.duration.total_seconds()),
            "cutoff_seconds": int(self.window.cutoff.total_seconds()),
        }
        return out


class Freeze(object):
    """A freeze period [start, end) in UTC with the zone its times are shown in."""

    def __init__(self, name, start_utc, end_utc, reason, zone):
        self.name = name
        self.start_utc = start_utc
        self.end_utc = end_utc
        self.reason = reason
        self.zone = zone

    def covers(self, when):
        return self.start_utc <= when < self.end_utc

    def as_dict(self):
        return {
            "name": self.name,
            "reason": self.reason,
            "timezone": _zone_name(self.zone),
            "start": iso(self.start_utc.astimezone(self.zone)),
            "end": iso(self.end_utc.astimezone(self.zone)),
            "start_utc": iso(self.start_utc),
            "end_utc": iso(self.end_utc),
        }


def iso(when):
    """ISO 8601 with the offset, whole seconds; UTC as Z."""
    text = when.replace(microsecond=0).isoformat()
    if when.utcoffset() == datetime.timedelta(0) and when.tzname() == "UTC":
        return text[:-6] + "Z"
    return text


def _clock(when, now):
    """'02:00 CET' within 24 hours of now, else 'Tue 2026-12-08 02:00 CET'."""
    if abs(when - now) < datetime.timedelta(days=1):
        return when.strftime("%H:%M ") + when.tzname()
    return _stamp(when)


def _stamp(when):
    return "%s %s %s" % (_WEEKDAYS[when.weekday()], when.strftime("%Y-%m-%d %H:%M"), when.tzname())


def _short_clock(when, now):
    """_clock() without the zone (for a cutoff shown next to the end it belongs to)."""
    if abs(when - now) < datetime.timedelta(days=1):
        return when.strftime("%H:%M")
    return "%s %s" % (_WEEKDAYS[when.weekday()], when.strftime("%Y-%m-%d %H:%M"))


# ---------------------------------------------------------------- reading the options

def _window_label(item, index):
    name = item.get("name") if isinstance(item, dict) else None
    return ("'%s'" % name) if isinstance(name, str) and name.strip() else "#%d" % (index + 1)


def parse_windows(windows, excluded_dates=None):
    """[Window] from the module's ``windows`` and ``excluded_dates``; raises WindowError."""
    missing = missing_libraries()
    if missing:
        raise WindowError(missing)
    try:
        common = parse_dates(excluded_dates, "excluded_dates")
    except ValueError as exc:
        raise WindowError("Failed to read excluded_dates: %s" % exc) from None
    if not isinstance(windows, (list, tuple)) or not windows:
        raise WindowError("Failed to read maintenance windows: windows must list at least one window "
                          "(name, rrule, timezone, duration, cutoff)")
    parsed = []
    seen = set()
    for index, item in enumerate(windows):
        label = _window_label(item, index)
        try:
            window = _parse_window(item, common)
            if window.name in seen:
                raise ValueError("another window has the same name")
            seen.add(window.name)
        except ValueError as exc:
            raise WindowError("Failed to read maintenance window %s: %s" % (label, exc)) from None
        parsed.append(window)
    return parsed


def _parse_window(item, common):
    if not isinstance(item, dict):
        raise ValueError("expected a dict with name, rrule, timezone, duration and cutoff, got %s"
                         % type(item).__name__)
    unknown = sorted(str(k) for k in item if k not in _WINDOW_KEYS)
    if unknown:
        raise ValueError("unknown key(s) %s (expected %s)" % (", ".join(unknown), ", ".join(_WINDOW_KEYS)))
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name is required")
    if item.get("duration") is None:
        raise ValueError("duration is required (e.g. 4h)")
    duration = parse_duration(item.get("duration"), "duration")
    cutoff_value = item.get("cutoff")
    cutoff = parse_duration(0 if cutoff_value is None else cutoff_value, "cutoff")
    if duration <= 0:
        raise ValueError("duration must be longer than 0, got %r" % (item.get("duration"),))
    if cutoff >= duration:
        raise ValueError("the cutoff (%s) must be shorter than the duration (%s), or no host could ever start"
                         % (human_duration(cutoff), human_duration(duration)))
    rule, zone = parse_rule(item.get("rrule"), item.get("timezone"))
    excluded = parse_dates(item.get("excluded_dates"), "excluded_dates")
    return Window(name.strip(), rule, zone, duration, cutoff, common | excluded)


def parse_freezes(freezes, windows):
    """[Freeze] from the module's ``freezes``; raises WindowError."""
    if freezes is None:
        return []
    if not isinstance(freezes, (list, tuple)):
        raise WindowError("Failed to read freeze periods: freezes must be a list, got %s" % type(freezes).__name__)
    zones = []
    for window in windows:
        if _zone_name(window.zone) not in [_zone_name(z) for z in zones]:
            zones.append(window.zone)
    parsed = []
    for index, item in enumerate(freezes):
        label = _window_label(item, index)
        try:
            parsed.append(_parse_freeze(item, zones))
        except ValueError as exc:
            raise WindowError("Failed to read freeze period %s: %s" % (label, exc)) from None
    return parsed


def _parse_freeze(item, zones):
    if not isinstance(item, dict):
        raise ValueError("expected a dict with name, start, end and reason, got %s" % type(item).__name__)
    unknown = sorted(str(k) for k in item if k not in _FREEZE_KEYS)
    if unknown:
        raise ValueError("unknown key(s) %s (expected %s)" % (", ".join(unknown), ", ".join(_FREEZE_KEYS)))
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name is required")
    if item.get("timezone") is not None:
        zone = get_zone(item["timezone"])
    else:
        zone = zones[0] if len(zones) == 1 else None
    bounds = []
    for key in ("start", "end"):
        if item.get(key) in (None, ""):
            raise ValueError("%s is required" % key)
        try:
            bounds.append(_parse_local(item[key], zone, key == "end"))
        except LookupError:
            raise ValueError("%s %r has no offset and the windows use several time zones (%s): give the "
                             "freeze a timezone" % (key, item[key], ", ".join(_zone_name(z) for z in zones))) from None
        except ValueError as exc:
            raise ValueError("%s: %s" % (key, exc)) from None
    start, end = bounds
    if end <= start:
        raise ValueError("end (%s) is not after start (%s)" % (item["end"], item["start"]))
    reason = item.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValueError("reason must be text")
    return Freeze(name.strip(), start, end, (reason or "").strip(), zone or UTC)


# ---------------------------------------------------------------- the answer

def _freeze_at(freezes, when):
    """The freeze covering ``when`` that ends last, or None."""
    covering = [f for f in freezes if f.covers(when)]
    return max(covering, key=lambda f: f.end_utc) if covering else None


def _after_freezes(when, freezes):
    """The first moment at or after ``when`` that no freeze covers (freezes may chain)."""
    moved = True
    while moved:
        moved = False
        for freeze in freezes:
            if freeze.covers(when):
                when = freeze.end_utc
                moved = True
    return when


def _next_opening(window, now, freezes):
    """(occurrence, opens_at) of the first time after ``now`` at which this window lets a new
    host start: an occurrence's start, or the end of a freeze before its cutoff; None if none
    within SEARCH_DAYS."""
    limit = now + datetime.timedelta(days=SEARCH_DAYS)
    after = now - window.duration
    steps = 0
    while True:
        restart = None
        for occurrence in window.occurrences(after):
            steps += 1
            if occurrence.start_utc > limit or steps > _MAX_STEPS:
                return None
            if occurrence.cutoff_utc <= now:
                continue
            if occurrence.start_utc <= now:
                # The current occurrence opens again only if a freeze is what stops it now.
                if _freeze_at(freezes, now) is None:
                    continue
                begin = now
            else:
                begin = occurrence.start_utc
            opens = _after_freezes(begin, freezes)
            if opens < occurrence.cutoff_utc:
                return occurrence, opens
            if opens > occurrence.end_utc:
                # A freeze covers this and maybe many later occurrences: jump past it.
                restart = opens - window.duration
                break
        if restart is None:
            return None
        after = max(restart, after)


def _pick(occurrences, when):
    """The occurrence that matters at ``when``: one still before its cutoff, the latest ending."""
    if not occurrences:
        return None
    return max(occurrences, key=lambda o: (when < o.cutoff_utc, o.end_utc))


def evaluate(windows, freezes=None, excluded_dates=None, now=None, started_at=None, host="localhost"):
    """The full answer for the module: inside, may_start, window, next_window, ... and a check result.

    ``windows``/``freezes``/``excluded_dates`` are the raw option values; ``now`` and
    ``started_at`` anything parse_instant() reads (``now`` defaults to the current UTC time).
    Raises WindowError for bad input.
    """
    parsed = parse_windows(windows, excluded_dates)
    frozen_periods = parse_freezes(freezes or [], parsed)
    now = parse_instant(now, "now") if now is not None else datetime.datetime.now(UTC)
    started = parse_instant(started_at, "started_at") if started_at is not None else None
    if started is not None and started > now:
        raise WindowError("Failed to read started_at: %s is later than now (%s)" % (iso(started), iso(now)))

    current = _pick([o for w in parsed for o in w.containing(now)], now)
    frozen = _freeze_at(frozen_periods, now)
    inside = current is not None
    may_start = inside and now < current.cutoff_utc and frozen is None

    openings = []
    for index, window in enumerate(parsed):
        found = _next_opening(window, now, frozen_periods)
        if found is not None:
            openings.append((found[1], index, found[0]))
    next_window = None
    if openings:
        opens, _index, occurrence = min(openings, key=lambda item: (item[0], item[1]))
        next_window = occurrence.as_dict()
        next_window.update(opens_at=iso(opens.astimezone(occurrence.window.zone)), opens_at_utc=iso(opens),
                           seconds_until=int((opens - now).total_seconds()))
        next_pair = (occurrence, opens)
    else:
        next_pair = None

    started_in = None
    may_continue = False
    if started is not None:
        started_in = _pick([o for w in parsed for o in w.containing(started)], started)
        may_continue = bool(started_in is not None and started < started_in.cutoff_utc
                            and _freeze_at(frozen_periods, started) is None)

    answer = {
        "now": iso(now),
        "inside": inside,
        "may_start": may_start,
        "may_continue": may_continue,
        "window": current.as_dict() if current else None,
        "next_window": next_window,
        "seconds_left": int((current.end_utc - now).total_seconds()) if current else None,
        "seconds_to_cutoff": max(0, int((current.cutoff_utc - now).total_seconds())) if current else None,
        "frozen": frozen.as_dict() if frozen else None,
    }
    if started is not None:
        answer["started_at"] = iso(started)
        answer["started_window"] = started_in.as_dict() if started_in else None
    answer["reason"] = _reason(now, current, frozen, may_start, next_pair, started, started_in, may_continue)
    answer["result"] = _result(answer, host)
    return answer


def _reason(now, current, frozen, may_start, next_pair, started, started_in, may_continue):
    parts = []
    if frozen is not None:
        until = frozen.end_utc.astimezone(frozen.zone)
        text = "frozen: '%s' until %s %s" % (frozen.name, until.strftime("%Y-%m-%d %H:%M"), until.tzname())
        if frozen.reason:
            text += " (%s)" % frozen.reason
        if current is not None:
            text += "; inside window '%s' until %s, no new host may start" % (
                current.window.name, _clock(current.end, now))
        parts.append(text)
    elif current is not None:
        left = human_duration((current.end_utc - now).total_seconds())
        if may_start:
            parts.append("inside window '%s' until %s (%s left, new hosts until %s)" % (
                current.window.name, _clock(current.end, now), left, _short_clock(current.cutoff_at, now)))
        else:
            parts.append("inside window '%s' until %s (%s left) but past its cutoff at %s: no new host may start"
                         % (current.window.name, _clock(current.end, now), left,
                            _short_clock(current.cutoff_at, now)))
    else:
        parts.append("outside every window")
    if not may_start:
        if may_continue:
            at = started.astimezone(started_in.window.zone)
            parts.append("the rollout that started %s in window '%s' finishes the hosts it started"
                         % (_stamp(at), started_in.window.name))
        elif started is not None:
            parts.append("the rollout that started %s did not start inside an open window"
                         % _stamp(started.astimezone(current.window.zone if current else UTC)))
        if next_pair is not None:
            occurrence, opens = next_pair
            when = opens.astimezone(occurrence.window.zone)
            wait = human_duration((opens - now).total_seconds())
            if opens == occurrence.start_utc:
                parts.append("next '%s' starts %s (in %s)" % (occurrence.window.name, _stamp(when), wait))
            else:
                parts.append("next '%s' (from %s) opens for new hosts at %s (in %s)" % (
                    occurrence.window.name, _stamp(occurrence.start), _stamp(when), wait))
        else:
            parts.append("no window opens in the next %d days" % SEARCH_DAYS)
    return "; ".join(parts)


def _result(answer, host):
    """The report's check result: ok when a new host may start; warn when none may but the
    rollout that started in a window finishes its hosts; fail otherwise."""
    if answer["may_start"]:
        status = "ok"
    elif answer["may_continue"]:
        status = "warn"
    else:
        status = "fail"
    value = {
        "now": answer["now"],
        "inside": answer["inside"],
        "may_start": answer["may_start"],
        "may_continue": answer["may_continue"],
        "window": (answer["window"] or {}).get("name"),
        "frozen": (answer["frozen"] or {}).get("name"),
        "next_window": ({"name": answer["next_window"]["name"], "opens_at": answer["next_window"]["opens_at"]}
                        if answer["next_window"] else None),
    }
    threshold = None
    if answer["window"]:
        threshold = {"cutoff_at": answer["window"]["cutoff_at"], "end": answer["window"]["end"]}
    return check_result(CHECK, host, status, value, threshold, answer["reason"])
