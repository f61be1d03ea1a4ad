#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_maintenance
short_description: VACUUM, ANALYZE, REINDEX CONCURRENTLY and index removal of one PostgreSQL database, by policy
version_added: 0.1.0
description:
  - Reads one database (O(login_db)) with the same readers and rules as M(upkeep.runbooks.pg_review_info) and acts
    on what is due, one object at a time, in this order
    (1) drops leftover C(_ccnew)/C(_ccold) copies of an interrupted C(REINDEX CONCURRENTLY) (O(drop_leftovers)),
    (2) rebuilds (or, by O(invalid_index_action), drops) invalid indexes,
    (3) drops unused indexes when O(drop_unused) allows it,
    (4) rebuilds indexes whose bloat is over O(bloat_min_bytes) and O(bloat_percent) with C(REINDEX INDEX CONCURRENTLY),
    (5) runs C(VACUUM (FULL, ANALYZE)) on the tables named in O(vacuum_full_tables) and no other,
    (6) runs C(VACUUM (ANALYZE)) on tables due by autovacuum's formulas, (7) C(ANALYZE) on tables due for it.
  - Every statement runs in autocommit in a session started with O(lock_timeout) and O(statement_timeout), so it never
    queues behind a long lock. A statement that hits its lock timeout is reported with the sessions holding locks on the
    object, and the run goes on with the next object.
  - A REINDEX runs only when the database volume has free space for the new copy and no transaction has been open
    for O(blocking_transaction_seconds) (it would wait for it). When a REINDEX CONCURRENTLY fails, the invalid
    C(_ccnew) copy it left is dropped again; when that is not possible it is named in RV(actions[].left_behind) and
    the next run drops it.
  - A unique index, or one backing a constraint, is never dropped. A leftover C(_ccnew)/C(_ccold) copy is not an
    index of its own (the original still exists and enforces), so it is dropped whatever it copies.
  - Refuses to run on a standby.
  - Every action is a check result in RV(checks) with before/after figures, for M(upkeep.runbooks.report).
  - See C(docs/database-maintenance.md) for the policy, each threshold and what to do about each outcome.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - upkeep.runbooks.postgres
attributes:
  check_mode:
    support: full
    description:
      - Runs nothing against the database except catalog and statistics reads (C(SELECT) only, no C(SET), no
        transaction that could take a lock beyond ACCESS SHARE). Returns the exact statements it would run, the lock
        each takes and why each is due; the preconditions (free space, old transactions) are checked as in a real run.
  diff_mode:
    support: full
    description: Returns dead rows, sizes, relfilenodes and validity of every object acted on, before and after.
options:
  host_label:
    description: Host name put into each check result (normally C(inventory_hostname)).
    type: str
    default: localhost
  vacuum:
    description: Run C(VACUUM (ANALYZE)) on tables autovacuum's formulas (with per-table reloptions) consider due.
    type: bool
    default: true
  analyze:
    description: Run C(ANALYZE) on tables due for it (and not vacuumed in this run).
    type: bool
    default: true
  vacuum_full_tables:
    description:
      - Tables (C(schema.table)) to rewrite with C(VACUUM (FULL, ANALYZE)). It takes an ACCESS EXCLUSIVE lock for the
        whole rewrite and needs room for a full copy. No table is ever rewritten unless it is named here.
    type: list
    elements: str
    default: []
  invalid_index_action:
    description:
      - What to do with an invalid index that is not a leftover copy of a REINDEX. V(reindex) rebuilds it with
        C(REINDEX INDEX CONCURRENTLY), V(drop) drops it (never a unique or constraint-backing one), V(none) only
        reports it.
    type: str
    choices: [reindex, drop, none]
    default: reindex
  drop_leftovers:
    description: Drop invalid C(_ccnew)/C(_ccold) copies left by an interrupted C(REINDEX CONCURRENTLY).
    type: bool
    default: true
  reindex_bloated:
    description:
      - Rebuild B-tree indexes whose estimated bloat is at least O(bloat_min_bytes) and O(bloat_percent). With the
        C(pgstattuple) extension installed, an estimate that C(pgstatindex) does not confirm is skipped.
    type: bool
    default: true
  drop_unused:
    description:
      - Drop unused indexes (not unique, not backing a constraint, no scans here or in O(replica_index_scans), at least
        O(unused_index_min_bytes), statistics at least O(unused_index_min_stats_age_days) old). Off by default; each is
        reported with the statement that would drop it and the one that puts it back.
    type: bool
    default: false
  exclude:
    description:
      - Tables and indexes (C(schema.name)) maintenance leaves alone; an index on an excluded table is left alone too.
    type: list
    elements: str
    default: []
  bloat_min_bytes:
    description: Estimated bloat, in bytes, an index needs before it is rebuilt.
    type: int
    default: 104857600
  bloat_percent:
    description: Estimated bloat, percent of the index's size, an index needs before it is rebuilt.
    type: float
    default: 50
  unused_index_min_bytes:
    description: Indexes smaller than this are never dropped as unused.
    type: int
    default: 1048576
  unused_index_min_stats_age_days:
    description: Days of index statistics needed before any index counts as unused.
    type: float
    default: 14
  replica_index_scans:
    description: Index scans counted on the replicas, by C(schema.index); an index scanned there is not unused.
    type: dict
  lock_timeout:
    description: Seconds any statement (maintenance or read) waits for a lock before it gives up.
    type: float
    default: 5
  statement_timeout:
    description: Seconds any statement may run before it is cancelled.
    type: float
    default: 3600
  blocking_transaction_seconds:
    description:
      - A REINDEX, DROP INDEX CONCURRENTLY or VACUUM FULL is skipped (the holder named) while a transaction in the
        database has been open this long, since it would wait for that transaction.
    type: float
    default: 300
  volume_free_bytes:
    description:
      - Free bytes on the volume holding the database. Without it, and when connected over the local socket, the module
        measures the volume of C(data_directory); when neither is possible no REINDEX runs.
    type: int
  free_space_factor:
    description: A REINDEX needs this many times the index's current size free on the volume.
    type: float
    default: 1.2
notes:
  - The login role must own the tables and indexes (or be superuser) to VACUUM, REINDEX and drop them, and needs
    C(pg_monitor) to see other sessions' transactions and locks.
  - C(REINDEX CONCURRENTLY) needs PostgreSQL 12; the module supports PostgreSQL 13 and later.
  - Bloat figures are estimates from planner statistics; install C(pgstattuple) to have them confirmed before a rebuild.
seealso:
  - module: upkeep.runbooks.pg_review_info
  - name: Routine vacuuming
    description: What VACUUM and ANALYZE do and which locks they take.
    link: https://www.postgresql.org/docs/current/routine-vacuuming.html
  - name: REINDEX CONCURRENTLY
    description: How a concurrent rebuild works and what an interrupted one leaves behind.
    link: https://www.postgresql.org/docs/current/sql-reindex.html#SQL-REINDEX-CONCURRENTLY
"""

EXAMPLES = r"""
- name: Show what the monthly maintenance would do (runs only catalog reads)
  upkeep.runbooks.pg_maintenance:
    login_unix_socket: /var/run/postgresql
    login_db: app
  check_mode: true
  become: true
  become_user: postgres
  register: plan

- name: List the statements it would run
  ansible.builtin.debug:
    var: plan.statements

- name: Run the maintenance, dropping unused indexes too
  upkeep.runbooks.pg_maintenance:
    login_unix_socket: /var/run/postgresql
    login_db: app
    host_label: "{{ inventory_hostname }}"
    drop_unused: true
    vacuum_full_tables: [public.audit_log]
    lock_timeout: 3
  become: true
  become_user: postgres
  register: maintenance
"""

RETURN = r"""
database:
  description: The database maintained.
  returned: always
  type: str
  sample: app
actions:
  description: Every action due by the policy, in the order they ran (or would run).
  returned: always
  type: list
  elements: dict
  contains:
    action:
      description: >-
        drop_leftover, drop_invalid, drop_unused, reindex_invalid, reindex_bloated, vacuum_full, vacuum or analyze.
      type: str
      sample: reindex_bloated
    object:
      description: The index or table (C(schema.name)).
      type: str
      sample: public.orders_customer_idx
    table:
      description: The table the object belongs to (C(schema.name)).
      type: str
    statement:
      description: The exact statement run (or, in check mode, to be run); null when it was not run.
      type: str
      sample: REINDEX INDEX CONCURRENTLY "public"."orders_customer_idx";
    would_be_statement:
      description: The statement the action stands for, also when the policy or a precondition kept it from running.
      type: str
    restore_statement:
      description: For drops, the C(CREATE INDEX CONCURRENTLY) that puts the index back.
      type: str
      returned: for drop_unused and drop_invalid
    lock:
      description: The lock the statement takes and what it blocks.
      type: str
    reasons:
      description: Why the action is due.
      type: list
      elements: str
    allowed:
      description: Whether the policy (and the exclude list) let the action run.
      type: bool
    blocked:
      description: True when a precondition (free space, an old transaction, a missing object) kept it from running.
      type: bool
    skip_reason:
      description: Why it did not run; null when it ran.
      type: str
    outcome:
      description: done, would_run (check mode), skipped, lock_timeout, statement_timeout or failed.
      type: str
      sample: done
    duration_seconds:
      description: How long the statement ran; null when it did not run.
      type: float
    before:
      description:
        - Figures before. Tables, C(dead_rows), C(live_rows), C(size_bytes), C(total_bytes), C(last_vacuum),
          C(last_analyze), C(relfilenode). Indexes, C(oid), C(size_bytes), C(valid), C(relfilenode). Plus C(exists).
      type: dict
    after:
      description: The same figures after the statement (C(exists=false) once an index is dropped); null in check mode.
      type: dict
    holders:
      description:
        - For a lock or statement timeout, the sessions holding locks on the object (or with older transactions); for a
          skip because of an old transaction, those transactions. Each with C(kind), C(pid), C(user),
          C(application_name), C(backend_type), C(state), C(modes), C(xact_seconds), C(query).
      type: list
      elements: dict
    error:
      description: The server's message when the statement failed or timed out.
      type: str
    cleanup:
      description: Statements run after a failed REINDEX to drop the invalid copy it left, with their outcome.
      type: list
      elements: dict
    left_behind:
      description: Invalid copies a failed REINDEX left that could not be dropped, with the statement to drop them.
      type: list
      elements: dict
    message:
      description: One line for the report.
      type: str
    table_oid:
      description: OID of the table acted on (null for a table named in O(vacuum_full_tables) that does not exist).
      type: int
    index_oid:
      description: OID of the index acted on, as read before the action.
      type: int
      returned: for index actions
    size_bytes:
      description: Size of the index as read before the action.
      type: int
      returned: for index actions
    definition:
      description: The index's definition (pg_get_indexdef) as read before the action.
      type: str
      returned: for index actions
    estimated_bloat_bytes:
      description: The bloat estimate that made the index due.
      type: int
      returned: for reindex_bloated
    confirmed:
      description:
        - The C(pgstatindex) measurement (C(avg_leaf_density), C(leaf_fragmentation), C(index_size)); null
          without pgstattuple.
      type: dict
      returned: for reindex_bloated
statements:
  description: The statements run (or, in check mode, that would run), in order.
  returned: always
  type: list
  elements: str
executed:
  description: Every statement other than catalog reads the module sent (empty in check mode), cleanups included.
  returned: always
  type: list
  elements: str
counts:
  description: Actions by outcome (done, would_run, skipped, lock_timeout, statement_timeout, failed).
  returned: always
  type: dict
volume_free_bytes:
  description: Free bytes on the database volume the REINDEX precondition used; null when unknown.
  returned: always
  type: int
free_space_source:
  description: Where RV(volume_free_bytes) came from.
  returned: always
  type: str
checks:
  description:
    - A summary result C(db_maintenance:<database>) and one per action
      C(db_maintenance:<database>:<action>:<object>), C({check, host, status, value, threshold, message}); the value
      holds outcome, statement, duration, before and after.
  returned: always
  type: list
  elements: dict
diff:
  description: Before and after figures by object, in diff mode.
  returned: when diff mode is on
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._pg_maintenance import DEFAULTS, run  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._postgres import (  # noqa: E402
    PostgresError,
    close_quietly,
    connect,
    identifier,
    is_in_recovery,
    postgres_common_argument_spec,
    server_version_num,
    target,
)


def main():
    spec = postgres_common_argument_spec()
    spec.update(
        host_label=dict(type="str", default="localhost"),
        vacuum=dict(type="bool", default=True),
        analyze=dict(type="bool", default=True),
        vacuum_full_tables=dict(type="list", elements="str", default=[]),
        invalid_index_action=dict(type="str", default="reindex", choices=["reindex", "drop", "none"]),
        drop_leftovers=dict(type="bool", default=True),
        reindex_bloated=dict(type="bool", default=True),
        drop_unused=dict(type="bool", default=False),
        exclude=dict(type="list", elements="str", default=[]),
        bloat_min_bytes=dict(type="int", default=DEFAULTS["bloat_min_bytes"]),
        bloat_percent=dict(type="float", default=DEFAULTS["bloat_percent"]),
        unused_index_min_bytes=dict(type="int", default=DEFAULTS["unused_index_min_bytes"]),
        unused_index_min_stats_age_days=dict(type="float", default=DEFAULTS["unused_index_min_stats_age_days"]),
        replica_index_scans=dict(type="dict"),
        lock_timeout=dict(type="float", default=5),
        statement_timeout=dict(type="float", default=3600),
        blocking_transaction_seconds=dict(type="float", default=DEFAULTS["blocking_transaction_seconds"]),
        volume_free_bytes=dict(type="int"),
        free_space_factor=dict(type="float", default=DEFAULTS["free_space_factor"]),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    params = module.params
    for key in ("lock_timeout", "statement_timeout"):
        if params[key] <= 0:
            module.fail_json(msg="Failed to validate %s: must be more than 0 seconds, got %s" % (key, params[key]))
    for key in ("blocking_transaction_seconds", "bloat_percent", "unused_index_min_stats_age_days"):
        if params[key] < 0:
            module.fail_json(msg="Failed to validate %s: must be 0 or more, got %s" % (key, params[key]))
    if params["free_space_factor"] < 1:
        module.fail_json(
            msg="Failed to validate free_space_factor: must be at least 1, got %s" % params["free_space_factor"]
        )
    for key in ("vacuum_full_tables", "exclude"):
        for name in params[key]:
            if "." not in name:
                module.fail_json(msg="Failed to validate %s: '%s' is not schema.name" % (key, name))
    scans = {}
    for name, value in (params["replica_index_scans"] or {}).items():
        try:
            scans[name] = int(value)
        except (TypeError, ValueError):
            module.fail_json(msg="Failed to validate replica_index_scans: '%s' is not a number of scans" % name)

    settings = {
        "lock_timeout": "%dms" % max(1, int(params["lock_timeout"] * 1000)),
        "statement_timeout": "%dms" % max(1, int(params["statement_timeout"] * 1000)),
    }
    conn = connect(module, autocommit=True, settings=settings)
    socket = params.get("login_unix_socket") or params.get("login_host") or ""
    local_socket = not socket or socket.startswith("/")
    opts = dict((key, params[key]) for key in DEFAULTS if key in params)
    opts.update(lock_timeout=params["lock_timeout"], statement_timeout=params["statement_timeout"])
    where = "database '%s' at %s" % (params["login_db"], target(params))
    try:
        if server_version_num(conn) < 130000:
            module.fail_json(msg="Failed to maintain %s: pg_maintenance supports PostgreSQL 13 and later" % where)
        if is_in_recovery(conn):
            module.fail_json(
                msg="Failed to maintain %s: the server is a standby (in recovery); maintenance runs on the primary and "
                "reaches the standbys through replication" % where
            )

        def quote(schema, name):
            return identifier(schema, name).as_string(conn)

        out = run(
            conn,
            opts,
            module.check_mode,
            quote,
            host_label=params["host_label"],
            volume_free_bytes=params["volume_free_bytes"],
            local_socket=local_socket,
            replica_index_scans=scans,
        )
    except PostgresError as exc:
        module.fail_json(msg="Failed to maintain %s: %s" % (where, exc.message))
    finally:
        close_quietly(conn)
    if module._diff:
        out["diff"] = {
            "before": dict((a["object"], a["before"]) for a in out["actions"] if a["before"] is not None),
            "after": dict(
                (a["object"], a["after"] if a["after"] is not None else a["before"])
                for a in out["actions"]
                if a["before"] is not None
            ),
        }
    module.exit_json(**out)  # out["changed"]: an action ran (or, in check mode, would run)


if __name__ == "__main__":
    main()
