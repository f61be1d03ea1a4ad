# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the DR drill (role dr_drill): the drill's measured result, and the LSN where a WAL segment ends.

Documentation lives next to this file (dr_drill_result.yml, wal_segment_end_lsn.yml).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import result
from ansible_collections.upkeep.runbooks.plugins.module_utils._pgbackrest import (
    format_lsn,
    segment_number,
)


def _time(value, what):
    if isinstance(value, datetime.datetime):
        parsed = value
    else:
        text = str(value or "").strip().replace(" ", "T", 1)
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        if len(text) >= 3 and text[-3] in "+-" and text[-3:].replace("+", "").replace("-", "").isdigit():
            text += ":00"
        try:
            parsed = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise AnsibleFilterError("dr_drill_result: %s is not a time stamp: %r" % (what, value)) from None
    if parsed.tzinfo is None:
        raise AnsibleFilterError("dr_drill_result: %s has no time zone: %r" % (what, value))
    return parsed


def wal_segment_end_lsn(segment, segment_size=16 * 1024 * 1024):
    """The LSN just past the end of WAL segment ``segment`` ('000000010000000000000005' -> '0/6000000')."""
    try:
        return format_lsn((segment_number(str(segment), int(segment_size)) + 1) * int(segment_size))
    except ValueError as exc:
        raise AnsibleFilterError("wal_segment_end_lsn: %s" % exc) from None


def dr_drill_result(restore, host, declaration, restored_newest, finished_epoch, waited_seconds=0,
                    rto_target=None, rpo_target=None, kind="drill", app=None, outage=None, fail_back=None,
                    source="pgbackrest", rpo_basis="heartbeat"):  # noqa: PLR0913,PLR0917 - filter signature
    """The check result ``dr_drill`` of one drill: RTO and RPO measured, judged against the targets.

    ``app`` (optional) holds the application phases (``phases``: name to seconds) and what the application
    checks saw; with it ``finished_epoch`` is the application's first healthy answer. ``outage`` is what the
    rehearsal's prober saw (``outage_seconds`` the user-visible outage), ``fail_back`` the fail-back steps.

    ``source`` is ``pgbackrest`` (``restore`` is a pitr_restore result) or ``logical`` (``restore`` is the
    drill's own record of a pg_dump backup fetched and restored: phases, backup label, target, and as
    ``recovery_point.last_transaction_time`` the dump's snapshot time). ``rpo_basis`` says what
    ``restored_newest`` is: the newest ``heartbeat`` in the restored database, or the dump's ``snapshot``
    time when the dumped database holds no heartbeat.
    """
    if source not in ("pgbackrest", "logical"):
        raise AnsibleFilterError("dr_drill_result: source must be pgbackrest or logical, not %r" % (source,))
    if rpo_basis not in ("heartbeat", "snapshot"):
        raise AnsibleFilterError("dr_drill_result: rpo_basis must be heartbeat or snapshot, not %r" % (rpo_basis,))
    if not isinstance(restore, Mapping) or "phases" not in restore:
        raise AnsibleFilterError("dr_drill_result: the input must be a pitr_restore result with phases")
    if app is not None and (not isinstance(app, Mapping) or not isinstance(app.get("phases"), Mapping)):
        raise AnsibleFilterError("dr_drill_result: app must be a dict with the application phases")
    if not isinstance(declaration, Mapping):
        raise AnsibleFilterError("dr_drill_result: declaration must be a dict")
    declared_at = _time(declaration.get("declared_at"), "declaration.declared_at")
    last_committed = declaration.get("last_committed")
    rto = round(float(finished_epoch) - float(declaration["declared_epoch"]) - float(waited_seconds or 0), 3)
    rpo = None
    if last_committed is not None and restored_newest is not None:
        last = _time(last_committed, "declaration.last_committed")
        rpo = round(max((last - _time(restored_newest, "restored_newest")).total_seconds(), 0.0), 3)
    point = restore.get("recovery_point") or {}
    cross = None
    if last_committed is not None and point.get("last_transaction_time"):
        last = _time(last_committed, "declaration.last_committed")
        replayed = _time(point["last_transaction_time"], "recovery_point.last_transaction_time")
        cross = round((last - replayed).total_seconds(), 3)
    value = {
        "kind": kind,
        "source": source,
        "rpo_basis": rpo_basis,
        "rto_seconds": rto,
        "rpo_seconds": rpo,
        "rpo_cross_check_seconds": cross,
        "declared_at": declared_at.isoformat(),
        "last_committed_at_declaration": last_committed,
        "newest_restored": restored_newest,
        "waited_for_archive_seconds": round(float(waited_seconds or 0), 3),
        "phases": dict(restore["phases"]),
        "application": None,
        "user_outage_seconds": None,
        "prober": None,
        "fail_back": list(fail_back or []),
        "backup": (restore.get("backup") or {}).get("label"),
        "target": restore.get("target"),
        "recovery_point": point,
    }
    if app is not None:
        for name, seconds in app["phases"].items():
            value["phases"][name] = round(float(seconds), 3)
        value["application"] = {key: item for key, item in app.items() if key != "phases"}
    problems = []
    if outage is not None:
        if not isinstance(outage, Mapping):
            raise AnsibleFilterError("dr_drill_result: outage must be the prober's summary (a dict)")
        value["prober"] = dict(outage)
        value["user_outage_seconds"] = outage.get("outage_seconds")
        if not outage.get("healthy_before"):
            problems.append("the application was not healthy before the disaster")
        if not outage.get("recovered"):
            problems.append("the prober never saw the application healthy again")
    if last_committed is None:
        problems.append("RPO could not be measured: the source had no heartbeat at the declaration")
    elif restored_newest is None:
        problems.append("no heartbeat of the source survived in the restored database" if rpo_basis == "heartbeat"
                        else "the backup's snapshot time is unknown")
    elif rpo_target is not None and rpo > float(rpo_target):
        problems.append("RPO %.1f s is above the target of %s s" % (rpo, rpo_target))
    if rto_target is not None and rto > float(rto_target):
        problems.append("RTO %.1f s is above the target of %s s" % (rto, rto_target))
    status = "fail" if problems else "ok"
    rpo_text = "%.1f s" % rpo if rpo is not None else "unknown"
    if source == "logical":
        message = "DR %s from the logical backup: RTO %.1f s, RPO %s%s (backup %s, fetch %.1f s, restore %.1f s)" % (
            kind, rto, rpo_text, " (the dump's snapshot)" if rpo_basis == "snapshot" else "", value["backup"],
            restore["phases"].get("fetch_seconds", 0), restore["phases"].get("restore_seconds", 0))
    else:
        message = "DR %s: RTO %.1f s, RPO %s (backup %s, restore %.1f s, replay %.1f s, promote %.1f s)" % (
            kind, rto, rpo_text, value["backup"],
            restore["phases"].get("restore_seconds", 0), restore["phases"].get("replay_seconds", 0),
            restore["phases"].get("promote_seconds", 0))
    if app is not None:
        message += "; application healthy after %.1f s of checks and start" % sum(
            value["phases"][name] for name in app["phases"])
    else:
        message += "; application not checked (RTO ends at the %s)" % ("restore" if source == "logical" else "promote")
    if outage is not None:
        message += "; users saw %s s of outage (%s of %s requests failed)" % (
            outage.get("outage_seconds"), outage.get("failed_requests"), outage.get("requests"))
    if problems:
        message += ": " + "; ".join(problems)
    return result("dr_drill", host, status, value, {"rto_seconds": rto_target, "rpo_seconds": rpo_target}, message)


class FilterModule(object):
    def filters(self):
        return {"dr_drill_result": dr_drill_result, "wal_segment_end_lsn": wal_segment_end_lsn}
