# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check results: the one shape every runbook step reports in.

A result is ``{check, host, status, value, threshold, message}`` with status one of
ok | warn | fail. Roles build them through the filters in plugins/filter; the report
module reads them. Keeping the shape and the threshold logic here means a check's
status is decided in exactly one place.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

STATUSES = ("ok", "warn", "fail")
_RANK = {"ok": 0, "warn": 1, "fail": 2}


def result(check, host, status, value=None, threshold=None, message=""):
    """Return one check result; rejects an unknown status instead of reporting it."""
    if status not in _RANK:
        raise ValueError("unknown check status %r (expected one of %s)" % (status, ", ".join(STATUSES)))
    return {
        "check": check,
        "host": host,
        "status": status,
        "value": value,
        "threshold": threshold,
        "message": message,
    }


def worst(statuses):
    """The most severe of a list of statuses; ok for an empty list."""
    best = "ok"
    for status in statuses:
        if _RANK[status] > _RANK[best]:
            best = status
    return best


def classify(value, warn=None, fail=None, higher_is_worse=True):
    """ok/warn/fail for a numeric value against optional warn and fail limits.

    With ``higher_is_worse`` a value at or above a limit trips it (lag, age, usage);
    without, a value at or below it does (free space, days to expiry).
    """
    if value is None:
        return "fail"
    for status, limit in (("fail", fail), ("warn", warn)):
        if limit is None:
            continue
        if (value >= limit) if higher_is_worse else (value <= limit):
            return status
    return "ok"


def evaluate(check, host, value, warn=None, fail=None, higher_is_worse=True, unit="", what=None):
    """A result for a measured value, with a message that states value and limit."""
    status = classify(value, warn, fail, higher_is_worse)
    what = what or check.replace("_", " ")
    shown = _fmt(value, unit)
    if value is None:
        message = "%s: no value could be measured" % what
    elif status == "ok":
        message = "%s is %s" % (what, shown)
    else:
        limit = fail if status == "fail" else warn
        relation = "at or above" if higher_is_worse else "at or below"
        message = "%s is %s, %s the %s limit of %s" % (what, shown, relation, status, _fmt(limit, unit))
    return result(check, host, status, value, {"warn": warn, "fail": fail}, message)


def _fmt(value, unit):
    if value is None:
        return "unknown"
    if unit == "bytes":
        return human_bytes(value)
    if isinstance(value, float):
        value = round(value, 2)
    return "%s%s" % (value, (" " + unit) if unit and unit != "%" else unit)


def plain_number(value):
    """24.0 -> '24', 0.5 -> '0.5': a limit as an operator wrote it."""
    return ("%d" % value) if float(value).is_integer() else ("%s" % value)


def human_bytes(num):
    """1536 -> '1.5 KiB'; exact below 1 KiB."""
    num = float(num)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(num) < 1024 or unit == "TiB":
            return ("%d %s" % (num, unit)) if unit == "B" else ("%.1f %s" % (num, unit))
        num /= 1024.0
    return "%.1f PiB" % num  # pragma: no cover - unreachable, keeps linters quiet
