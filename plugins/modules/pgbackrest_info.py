#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pgbackrest_info
short_description: Read the continuous-archiving and physical-backup state of a pgBackRest stanza
version_added: 0.2.0
description:
  - Reads one pgBackRest stanza (C(pgbackrest info --output=json), the WAL listing of its archive) and, on
    the primary, PostgreSQL's C(pg_stat_archiver), and returns the facts and the check results the daily
    report shows.
  - The checks are the age of the newest backup of each type (full, differential, incremental), errors of
    the repository, the WAL continuity of the newest backup (every segment from its start to the newest
    archived one is in the repository, so it can be restored to the latest point), archive failures, and
    the RPO exposure right now (how old the oldest WAL not yet in the repository may be).
  - Read-only. It runs only C(pgbackrest info), C(pgbackrest repo-ls), C(pgbackrest version) and
    C(SELECT) statements.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - upkeep.runbooks.pgbackrest
  - upkeep.runbooks.postgres
attributes:
  check_mode:
    support: full
    details:
      - Read-only; runs unchanged in check mode and returns the same facts and checks.
  diff_mode:
    support: none
    details:
      - Reads state only, there is nothing to diff.
  platform:
    platforms: posix
options:
  check_archiver:
    description:
      - Connect to PostgreSQL (the connection options) and read C(pg_stat_archiver) and the current WAL
        position, for the archive failure and RPO exposure checks.
      - Set to V(false) on a host without the database (a backup host); those two checks are then left out.
      - A connection failure is reported as a failed check, not a task failure.
    type: bool
    default: true
  report_host:
    description:
      - Host name the check results carry (the report groups by it), usually C(inventory_hostname).
    type: str
    default: localhost
  backup_max_age_hours:
    description:
      - The newest backup of any type older than this fails RV(checks) C(pgbackrest_backup_age).
    type: float
    default: 26
  full_max_age_hours:
    description:
      - The newest full backup older than this fails C(pgbackrest_full_backup_age).
    type: float
    default: 192
  diff_max_age_hours:
    description:
      - When set, the newest differential backup older than this (or none at all) fails
        C(pgbackrest_diff_backup_age).
    type: float
  incr_max_age_hours:
    description:
      - When set, the newest incremental backup older than this (or none at all) fails
        C(pgbackrest_incr_backup_age).
    type: float
  rpo_warn_seconds:
    description:
      - RPO exposure at or above this warns (C(wal_archive_rpo_exposure)). Keep it above C(archive_timeout).
    type: float
    default: 300
  rpo_fail_seconds:
    description:
      - RPO exposure at or above this fails C(wal_archive_rpo_exposure).
    type: float
    default: 900
  archive_failure_window_hours:
    description:
      - An archive failure more recent than this, since recovered, warns (C(wal_archive_failures)); a failure
        newer than the last success fails it.
    type: float
    default: 24
notes:
  - The login role needs C(pg_monitor) (or superuser) for C(pg_stat_archiver) and C(pg_current_wal_lsn()).
  - On a standby (C(pg_is_in_recovery())) the archiver facts are left out; archiving is judged on the primary.
  - The RPO exposure is an upper bound, zero when every WAL byte written is in the repository and otherwise
    the seconds since PostgreSQL last archived a segment (older writes are safe, newer ones are not yet).
  - WAL continuity counts a segment as present on any timeline at or above the backup's, so a history that
    continues on a new timeline after a promotion is not reported as a gap.
  - pgBackRest 2.45 (Debian bookworm) is what this module is tested against.
seealso:
  - module: upkeep.runbooks.pitr_restore
  - name: pgBackRest info command
    description: The JSON this module reads.
    link: https://pgbackrest.org/command.html#command-info
  - name: The cumulative statistics system (pg_stat_archiver)
    link: https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-ARCHIVER-VIEW
"""

EXAMPLES = r"""
- name: Daily check of continuous archiving and the physical backups
  upkeep.runbooks.pgbackrest_info:
    stanza: main
    login_unix_socket: /var/run/postgresql
    report_host: "{{ inventory_hostname }}"
  become: true
  become_user: postgres
  register: pgbackrest

- name: Add the check results to the daily report
  ansible.builtin.set_fact:
    pitr_results: "{{ pitr_results | default([]) + pgbackrest.checks }}"

- name: Check the repository from the backup host (no database there)
  upkeep.runbooks.pgbackrest_info:
    stanza: main
    config: /etc/pgbackrest/pgbackrest.conf
    check_archiver: false
    diff_max_age_hours: 26
"""

RETURN = r"""
pgbackrest_version:
  description: Version of pgBackRest that answered.
  returned: always
  type: str
  sample: "2.45"
stanza:
  description: The stanza read.
  returned: always
  type: str
  sample: main
status:
  description: The stanza's status from C(pgbackrest info) (code 0 is ok).
  returned: always
  type: dict
  sample: {"code": 0, "message": "ok"}
problems:
  description: Readable repository problems (stanza status codes, per-repository errors); empty when healthy.
  returned: always
  type: list
  elements: str
  sample: []
system_identifiers:
  description: PostgreSQL system identifiers the stanza has held, oldest first (as strings).
  returned: always
  type: list
  elements: str
  sample: ["7714627179209796676"]
backup_count:
  description: Number of backups in the repository (all types).
  returned: always
  type: int
  sample: 9
newest_backups:
  description:
    - The newest backup of each type (C(full), C(diff), C(incr)) and of any type (C(any)); a type without a
      backup is null.
  returned: always
  type: dict
  contains:
    any:
      description: Newest backup of any type, with the keys below (the same for full, diff, incr).
      type: dict
      contains:
        label:
          description: pgBackRest backup label.
          type: str
          sample: 20240501-010002F_20240502-010001D
        type:
          description: C(full), C(diff) or C(incr).
          type: str
          sample: diff
        started:
          description: Start time (UTC, ISO 8601).
          type: str
          sample: "2024-05-02T01:00:01Z"
        stopped:
          description: Stop time (UTC, ISO 8601); the earliest point it can be restored to.
          type: str
          sample: "2024-05-02T01:00:09Z"
        age_seconds:
          description: Seconds since the backup stopped.
          type: float
          sample: 3600.2
        wal_start:
          description: First WAL segment the backup needs.
          type: str
          sample: "000000010000000000000006"
        wal_stop:
          description: Last WAL segment the backup needs to be consistent.
          type: str
          sample: "000000010000000000000007"
        lsn_start:
          description: WAL position at the start of the backup.
          type: str
          sample: 0/6000028
        lsn_stop:
          description: WAL position at the end of the backup.
          type: str
          sample: 0/7000050
        size_bytes:
          description: Size of the database the backup restores.
          type: int
          sample: 22996765
        repository_size_bytes:
          description: Size in the repository of the backup and the backups it references (compressed).
          type: int
          sample: 3043067
        prior:
          description: Label of the backup this one depends on; null for a full backup.
          type: str
          sample: 20240501-010002F
        repo:
          description: Repository number holding the backup.
          type: int
          sample: 1
        error:
          description: Whether pgBackRest found page checksum errors in the backup.
          type: bool
          sample: false
    full:
      description: Newest full backup.
      type: dict
    diff:
      description: Newest differential backup.
      type: dict
    incr:
      description: Newest incremental backup.
      type: dict
archive:
  description: The WAL archive of the current database (pgBackRest's C(archive) entry).
  returned: always
  type: dict
  sample: {"id": "15-1", "min": "000000010000000000000001", "max": "000000010000000000000007"}
wal_segment_size:
  description: WAL segment size in bytes (from PostgreSQL, else derived from the backups' WAL positions).
  returned: always
  type: int
  sample: 16777216
wal_continuity:
  description:
    - Whether every WAL segment from the newest backup's first segment to the newest archived one is in the
      repository. Null when there is no backup.
  returned: always
  type: dict
  contains:
    backup:
      description: Label of the backup checked.
      type: str
      sample: 20240501-010002F
    checked_from:
      description: First segment checked (the backup's C(wal_start)).
      type: str
      sample: "000000010000000000000002"
    checked_to:
      description: Last segment checked (the archive's newest).
      type: str
      sample: "000000010000000000000009"
    segments_checked:
      description: Number of segment positions checked.
      type: int
      sample: 8
    missing_count:
      description: How many segments are missing.
      type: int
      sample: 0
    missing:
      description: The missing segment names (at most 100).
      type: list
      elements: str
      sample: []
    backup_consistent:
      description:
        - Whether the segments the backup needs to become consistent (C(wal_start) to C(wal_stop)) are all there.
      type: bool
      sample: true
archiver:
  description:
    - PostgreSQL's archiver state and the RPO exposure. Null with O(check_archiver=false) or on a standby;
      with only C(error) set when PostgreSQL could not be read.
  returned: always
  type: dict
  contains:
    archive_mode:
      description: The C(archive_mode) setting.
      type: str
      sample: "on"
    archive_timeout_seconds:
      description: The C(archive_timeout) setting in seconds (0 is off).
      type: int
      sample: 60
    archived_count:
      description: Segments archived since the statistics were reset.
      type: int
      sample: 1432
    last_archived_wal:
      description: Name of the last file archived successfully.
      type: str
      sample: "000000010000000000000009"
    last_archived_time:
      description: When it was archived (ISO 8601).
      type: str
      sample: "2024-05-02T09:15:01.123456+00:00"
    last_archived_age_seconds:
      description: Seconds since then, by the database server's clock.
      type: float
      sample: 12.5
    failed_count:
      description: Failed archive attempts since the statistics were reset.
      type: int
      sample: 0
    last_failed_wal:
      description: Name of the file whose archiving failed last.
      type: str
      sample: null
    last_failed_time:
      description: When that happened (ISO 8601).
      type: str
      sample: null
    failing:
      description: Whether the most recent archive attempt failed (a failure newer than the last success).
      type: bool
      sample: false
    current_lsn:
      description: PostgreSQL's current WAL write position.
      type: str
      sample: 0/A000060
    unarchived_bytes:
      description: WAL written after the end of the newest segment in the repository (0 or more).
      type: int
      sample: 96
    rpo_exposure_seconds:
      description: 0 when RV(archiver.unarchived_bytes) is 0, else RV(archiver.last_archived_age_seconds).
      type: float
      sample: 12.5
    error:
      description: Why PostgreSQL could not be read (the other keys are then absent).
      type: str
      sample: null
checks:
  description:
    - Check results for the report (C(check), C(host), C(status) ok/warn/fail, C(value), C(threshold),
      C(message)) named C(pgbackrest_repository), C(pgbackrest_backup_age), C(pgbackrest_full_backup_age),
      C(pgbackrest_diff_backup_age) and C(pgbackrest_incr_backup_age) (when their limits are set),
      C(wal_continuity), C(wal_archive_failures) and C(wal_archive_rpo_exposure) (with O(check_archiver)).
  returned: always
  type: list
  elements: dict
  sample:
    - {"check": "wal_archive_rpo_exposure", "host": "db1", "status": "ok", "value": 12.5,
       "threshold": {"warn": 300, "fail": 900}, "message": "WAL archive RPO exposure is 12.5 s"}
"""

import datetime  # noqa: E402 - Ansible modules import after their documentation
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import (  # noqa: E402
    evaluate,
    result,
)
from ansible_collections.upkeep.runbooks.plugins.module_utils._pgbackrest import (  # noqa: E402
    PgBackRest,
    PgBackRestError,
    archive_for_backup,
    backup_summary,
    newest_backups,
    parse_lsn,
    pgbackrest_argument_spec,
    segment_number,
    segment_size_from_backups,
    stanza_problems,
    system_identifiers,
    wal_gaps,
)
from ansible_collections.upkeep.runbooks.plugins.module_utils._postgres import (  # noqa: E402
    PostgresError,
    close_quietly,
    open_connection,
    postgres_common_argument_spec,
    psycopg,
    query_one,
    target,
)

SQL_ARCHIVER = """
SELECT pg_is_in_recovery() AS in_recovery,
       current_setting('archive_mode') AS archive_mode,
       (SELECT setting::int FROM pg_settings WHERE name = 'archive_timeout') AS archive_timeout_seconds,
       (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size') AS wal_segment_size,
       a.archived_count, a.last_archived_wal, a.last_archived_time,
       extract(epoch FROM clock_timestamp() - a.last_archived_time)::float8 AS last_archived_age_seconds,
       a.failed_count, a.last_failed_wal, a.last_failed_time,
       extract(epoch FROM clock_timestamp() - a.last_failed_time)::float8 AS last_failed_age_seconds,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn
FROM pg_stat_archiver AS a
"""


def _iso(value):
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


def read_archiver(params):
    """pg_stat_archiver and settings as a dict, or {'error': ...} when PostgreSQL cannot be read."""
    if psycopg is None:
        return {"error": "Failed to read pg_stat_archiver: the Python library psycopg (>= 3.1) is not installed"}
    try:
        conn = open_connection(params)
    except PostgresError as exc:
        return {"error": exc.message}
    try:
        row = dict(query_one(conn, SQL_ARCHIVER))
    except PostgresError as exc:
        return {"error": "Failed to read pg_stat_archiver at %s: %s" % (target(params), exc.message)}
    finally:
        close_quietly(conn)
    for key in ("last_archived_time", "last_failed_time"):
        row[key] = _iso(row[key])
    return row


def archiver_facts(row, archive_max, segment_size):
    """Add failing/unarchived_bytes/rpo_exposure_seconds to a pg_stat_archiver row."""
    facts = dict(row)
    facts.pop("in_recovery", None)
    facts.pop("wal_segment_size", None)
    failed_age = facts.pop("last_failed_age_seconds", None)
    archived_age = facts.get("last_archived_age_seconds")
    facts["failing"] = bool(
        facts.get("last_failed_wal")
        and (archived_age is None or (failed_age is not None and failed_age < archived_age))
    )
    facts["_last_failed_age_seconds"] = failed_age
    unarchived = None
    if facts.get("current_lsn") and archive_max:
        archived_end = (segment_number(archive_max, segment_size) + 1) * segment_size
        unarchived = max(parse_lsn(facts["current_lsn"]) - archived_end, 0)
    elif facts.get("current_lsn"):
        unarchived = parse_lsn(facts["current_lsn"])  # nothing archived yet: everything is exposed
    facts["unarchived_bytes"] = unarchived
    if unarchived == 0:
        facts["rpo_exposure_seconds"] = 0.0
    elif archived_age is not None:
        facts["rpo_exposure_seconds"] = round(archived_age, 1)
    else:
        facts["rpo_exposure_seconds"] = None
    return facts


def continuity(backrest, info, newest, segment_size):
    backup = newest.get("any")
    if not backup:
        return None
    archive = archive_for_backup(info, backup)
    start = (backup.get("archive") or {}).get("start")
    stop = (backup.get("archive") or {}).get("stop")
    if not archive or not archive.get("max") or not start:
        return {"backup": backup.get("label"), "checked_from": start, "checked_to": None, "segments_checked": 0,
                "missing_count": None, "missing": [], "backup_consistent": False}
    names = backrest.list_archive(archive["id"])
    timeline = int(start[:8], 16)
    gaps = wal_gaps(names, start, archive["max"], segment_size, min_timeline=timeline)
    needed = wal_gaps(names, start, stop or start, segment_size, min_timeline=timeline)
    gaps["backup"] = backup.get("label")
    gaps["backup_consistent"] = needed["missing_count"] == 0
    return gaps


def build_checks(params, facts):
    host = params["report_host"]
    checks = []
    problems = facts["problems"]
    if problems:
        checks.append(result("pgbackrest_repository", host, "fail", facts["status"].get("code"), None,
                             "pgBackRest stanza '%s': %s" % (facts["stanza"], "; ".join(problems))))
    else:
        checks.append(result("pgbackrest_repository", host, "ok", 0, None,
                             "pgBackRest stanza '%s' is ok in the repository" % facts["stanza"]))
    limits = [
        ("pgbackrest_backup_age", "any", params["backup_max_age_hours"], "newest backup"),
        ("pgbackrest_full_backup_age", "full", params["full_max_age_hours"], "newest full backup"),
        ("pgbackrest_diff_backup_age", "diff", params["diff_max_age_hours"], "newest differential backup"),
        ("pgbackrest_incr_backup_age", "incr", params["incr_max_age_hours"], "newest incremental backup"),
    ]
    for name, kind, limit, what in limits:
        if limit is None:
            continue
        backup = facts["newest_backups"].get(kind)
        if not backup:
            checks.append(result(name, host, "fail", None, {"warn": None, "fail": limit},
                                 "there is no %s in the repository" % what.replace("newest ", "")))
            continue
        hours = round(backup["age_seconds"] / 3600.0, 2)
        check = evaluate(name, host, hours, fail=limit, unit="h", what="%s %s age" % (what, backup["label"]))
        checks.append(check)
    wal = facts["wal_continuity"]
    if wal is None:
        checks.append(result("wal_continuity", host, "fail", None, None, "no backup whose WAL could be checked"))
    elif wal["missing_count"] is None:
        checks.append(result("wal_continuity", host, "fail", None, None,
                             "the archive holds no WAL for backup %s" % wal["backup"]))
    elif wal["missing_count"]:
        checks.append(result(
            "wal_continuity", host, "fail", wal["missing_count"], 0,
            "%d WAL segment(s) missing from the archive between %s and %s (first: %s): backup %s %s"
            % (wal["missing_count"], wal["checked_from"], wal["checked_to"], ", ".join(wal["missing"][:3]),
               wal["backup"], "can be restored only up to the gap" if wal["backup_consistent"]
               else "cannot be restored at all"),
        ))
    else:
        checks.append(result(
            "wal_continuity", host, "ok", 0, 0,
            "all %d WAL segments from backup %s (%s) to %s are in the archive"
            % (wal["segments_checked"], wal["backup"], wal["checked_from"], wal["checked_to"]),
        ))
    archiver = facts["archiver"]
    if archiver is not None:
        checks.extend(archiver_checks(params, host, archiver))
    return checks


def archiver_checks(params, host, archiver):
    if archiver.get("error"):
        return [result("wal_archive_failures", host, "fail", None, None, archiver["error"]),
                result("wal_archive_rpo_exposure", host, "fail", None, None, archiver["error"])]
    checks = []
    window = params["archive_failure_window_hours"] * 3600.0
    failed_age = archiver.get("_last_failed_age_seconds")
    if archiver.get("archive_mode") == "off":
        checks.append(result("wal_archive_failures", host, "fail", None, None,
                             "archive_mode is off: no WAL is archived"))
    elif archiver["failing"]:
        checks.append(result(
            "wal_archive_failures", host, "fail", archiver["failed_count"], None,
            "archiving is failing: %s failed at %s and nothing has been archived since (last success: %s)"
            % (archiver["last_failed_wal"], archiver["last_failed_time"], archiver["last_archived_wal"] or "never"),
        ))
    elif failed_age is not None and failed_age < window:
        checks.append(result(
            "wal_archive_failures", host, "warn", archiver["failed_count"], None,
            "archiving failed for %s at %s and has recovered since (last archived: %s)"
            % (archiver["last_failed_wal"], archiver["last_failed_time"], archiver["last_archived_wal"]),
        ))
    else:
        checks.append(result("wal_archive_failures", host, "ok", archiver["failed_count"], None,
                             "no archive failure in the last %s hours" % params["archive_failure_window_hours"]))
    checks.append(evaluate("wal_archive_rpo_exposure", host, archiver["rpo_exposure_seconds"],
                           warn=params["rpo_warn_seconds"], fail=params["rpo_fail_seconds"], unit="s",
                           what="WAL archive RPO exposure"))
    return checks


def collect(module, backrest):
    params = module.params
    now = time.time()
    facts = {"stanza": params["stanza"], "pgbackrest_version": backrest.version()}
    info = backrest.info()
    facts["status"] = {"code": (info.get("status") or {}).get("code"),
                       "message": (info.get("status") or {}).get("message")}
    facts["problems"] = stanza_problems(info)
    facts["system_identifiers"] = system_identifiers(info)
    facts["backup_count"] = len(info.get("backup") or [])
    newest = newest_backups(info)
    facts["newest_backups"] = dict((kind, backup_summary(newest.get(kind), now))
                                   for kind in ("any", "full", "diff", "incr"))
    archives = info.get("archive") or []
    current = archive_for_backup(info, newest.get("any")) if newest.get("any") else (archives[-1] if archives else None)
    facts["archive"] = ({"id": current.get("id"), "min": current.get("min"), "max": current.get("max")}
                        if current else None)

    row = read_archiver(params) if params["check_archiver"] else None
    segment_size = None
    if row and not row.get("error"):
        segment_size = row.get("wal_segment_size")
    segment_size = segment_size or segment_size_from_backups(info.get("backup"))
    facts["wal_segment_size"] = segment_size
    facts["wal_continuity"] = continuity(backrest, info, newest, segment_size)

    archiver = None
    if row is not None:
        if row.get("error"):
            archiver = row
        elif row.get("in_recovery"):
            module.warn("PostgreSQL is a standby: archiving is judged on the primary, archiver facts left out")
        else:
            archiver = archiver_facts(row, facts["archive"] and facts["archive"]["max"], segment_size)
    facts["archiver"] = archiver
    facts["checks"] = build_checks(params, facts)
    if archiver is not None:
        archiver.pop("_last_failed_age_seconds", None)
    return facts


def main():
    argument_spec = pgbackrest_argument_spec()
    argument_spec.update(postgres_common_argument_spec())
    argument_spec.update(
        check_archiver=dict(type="bool", default=True),
        report_host=dict(type="str", default="localhost"),
        backup_max_age_hours=dict(type="float", default=26),
        full_max_age_hours=dict(type="float", default=192),
        diff_max_age_hours=dict(type="float"),
        incr_max_age_hours=dict(type="float"),
        rpo_warn_seconds=dict(type="float", default=300),
        rpo_fail_seconds=dict(type="float", default=900),
        archive_failure_window_hours=dict(type="float", default=24),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        backrest = PgBackRest.from_params(module.params)
        facts = collect(module, backrest)
    except PgBackRestError as exc:
        module.fail_json(msg="Failed to read pgBackRest stanza '%s': %s" % (module.params["stanza"], exc.message),
                         stanza=module.params["stanza"])
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
