# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Grandfather-father-son retention: which backups to keep, and why. Pure logic, no I/O.

A backup is kept when it is the newest backup of its day, ISO week, month or year, for the
N most recent such periods that hold a backup (periods without any backup do not use up a
slot, so a pause in the schedule never wipes the history). On top of that the newest backup
is always kept, and when the periods keep fewer than ``min_keep`` backups the newest of the
others are kept until ``min_keep`` is reached. Everything else is ``expired``.

Periods are taken in UTC, from the time in the backup id (``<label>-YYYYmmddTHHMMSSZ``).
backup_retention applies this per database to local directories and to S3 prefixes alike.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

KINDS = ("daily", "weekly", "monthly", "yearly")
DEFAULTS = {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12, "keep_yearly": 3, "min_keep": 3}


def period(kind, when):
    """The period label a time falls in: ``2026-11-23``, ``2026-W47``, ``2026-11`` or ``2026``."""
    if when.tzinfo is not None:
        when = when.astimezone(datetime.timezone.utc)
    if kind == "daily":
        return when.strftime("%Y-%m-%d")
    if kind == "weekly":
        iso = when.isocalendar()
        return "%04d-W%02d" % (iso[0], iso[1])
    if kind == "monthly":
        return when.strftime("%Y-%m")
    if kind == "yearly":
        return when.strftime("%Y")
    raise ValueError("unknown retention period %r (expected one of %s)" % (kind, ", ".join(KINDS)))


def _count(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("%s must be a whole number >= 0, got %r" % (name, value))
    return value


def select(backups, keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=3, min_keep=3):
    """Split ``backups`` into ``(kept, deleted)``, both newest first.

    ``backups`` are dicts with at least ``backup_id`` and ``time`` (an aware datetime); they are
    returned as shallow copies with ``reasons`` (list) and ``reason`` (the reasons joined with
    ``", "``) added. Reasons of a kept backup: ``newest``, ``daily 2026-11-23``,
    ``weekly 2026-W47``, ``monthly 2026-11``, ``yearly 2026``, ``min_keep``; a deleted backup's
    reason is ``expired``. Ties in time are broken by backup id so the result is deterministic.
    """
    limits = {
        "daily": _count("keep_daily", keep_daily),
        "weekly": _count("keep_weekly", keep_weekly),
        "monthly": _count("keep_monthly", keep_monthly),
        "yearly": _count("keep_yearly", keep_yearly),
    }
    min_keep = _count("min_keep", min_keep)
    ordered = sorted(backups, key=lambda item: (item["time"], item["backup_id"]), reverse=True)
    reasons = [[] for _item in ordered]
    if ordered:
        reasons[0].append("newest")
    for kind in KINDS:
        limit = limits[kind]
        seen = set()
        for index, item in enumerate(ordered):
            if len(seen) >= limit:
                break
            label = period(kind, item["time"])
            if label in seen:
                continue
            seen.add(label)
            reasons[index].append("%s %s" % (kind, label))
    kept_count = sum(1 for entry in reasons if entry)
    for index in range(len(ordered)):
        if kept_count >= min_keep:
            break
        if not reasons[index]:
            reasons[index].append("min_keep")
            kept_count += 1
    kept, deleted = [], []
    for item, why in zip(ordered, reasons):
        out = dict(item)
        if why:
            out["reasons"] = why
            kept.append(out)
        else:
            out["reasons"] = ["expired"]
            deleted.append(out)
        out["reason"] = ", ".join(out["reasons"])
    return kept, deleted
