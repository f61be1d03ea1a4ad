#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_review_info
short_description: Weekly review of one PostgreSQL database (slow queries, indexes, bloat, vacuum, sequences)
version_added: 0.1.0
description:
  - Connects to one database (O(login_db)) and reads what a weekly database review judges, namely slow
    queries from C(pg_stat_statements), unused, duplicate and invalid indexes, constraints not
    validated, estimated table and index bloat, tables due for VACUUM or ANALYZE by autovacuum's own
    formulas, what holds the xmin horizon back, sequences near their column's maximum, long-running and
    idle-in-transaction sessions, the cache hit ratio and the database's growth.
  - Read-only. It runs a fixed, small number of C(SELECT) statements whatever the number of tables
    (RV(statements_run)), plus at most O(confirm_limit) C(pgstattuple) calls. It never resets
    C(pg_stat_statements) or any other statistics.
  - Every finding is also a check result in RV(checks) for M(upkeep.runbooks.report).
  - Comparisons with the previous review (new slow queries, mean-time regressions, growth per day,
    projected sequence exhaustion) use O(previous), the RV(snapshot) the previous run returned.
  - See C(docs/database-maintenance.md) for each check, its threshold and its source.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - upkeep.runbooks.postgres
attributes:
  check_mode:
    support: full
    description: Read-only; runs unchanged in check mode and returns the same findings.
  diff_mode:
    support: none
    description: Reads state only, there is nothing to diff.
options:
  host_label:
    description: Host name put into each check result (normally C(inventory_hostname)).
    type: str
    default: localhost
  previous:
    description:
      - The RV(snapshot) of the previous review of the same database. Another database's snapshot, or
        one of an unknown version, is ignored.
    type: dict
  volume_free_bytes:
    description: Free bytes on the volume holding the database, for RV(size.days_until_full).
    type: int
  replica_index_scans:
    description:
      - Index scans counted on the replicas, by C(schema.index) name. They are added to this server's
        scans before an index is called unused (a replica serving reads uses indexes the primary does not).
    type: dict
  slow_query_top:
    description: How many statements, by total execution time, RV(slow_queries.top) lists.
    type: int
    default: 10
  slow_query_mean_ms:
    description: Mean execution time in milliseconds at or above which a statement is slow (PgHero, 20 ms).
    type: float
    default: 20
  slow_query_min_calls:
    description: Calls a statement needs before its mean time counts (PgHero, 100).
    type: int
    default: 100
  slow_query_regression_percent:
    description:
      - How much slower (percent) a statement's mean time since the previous review must be, compared with
        its mean time then, to be a regression.
    type: float
    default: 50
  snapshot_statements_limit:
    description: Statements (top by total time) kept in RV(snapshot) for the next comparison.
    type: int
    default: 500
  unused_index_min_bytes:
    description: Indexes smaller than this are never reported as unused.
    type: int
    default: 1048576
  unused_index_min_stats_age_days:
    description:
      - Days of statistics (since C(pg_stat_database.stats_reset), or the server start when never reset)
        needed before any index is called unused.
    type: float
    default: 14
  bloat_min_bytes:
    description: Estimated bloat, in bytes, a table or index needs before it is reported.
    type: int
    default: 104857600
  bloat_percent:
    description: Estimated bloat, percent of the relation's size, a table or index needs before it is reported.
    type: float
    default: 50
  confirm_limit:
    description:
      - At most this many reported bloat estimates are confirmed with C(pgstattuple_approx) (tables) or
        C(pgstatindex) (indexes) when the C(pgstattuple) extension is installed in the database.
    type: int
    default: 5
  sequence_warn_percent:
    description: Percent of the owning column's (or the sequence's) maximum at or above which a sequence warns.
    type: float
    default: 85
  sequence_fail_percent:
    description: Percent at or above which a sequence fails.
    type: float
    default: 95
  long_running_seconds:
    description: Active queries running this long are listed.
    type: float
    default: 60
  idle_in_transaction_seconds:
    description: Sessions idle in a transaction this long are listed.
    type: float
    default: 60
  xmin_horizon_seconds:
    description: Transactions (sessions, prepared transactions) open this long are xmin horizon holders.
    type: float
    default: 3600
  xmin_horizon_xid_age:
    description: Replication slots whose xmin or catalog_xmin is this many transactions old are holders.
    type: int
    default: 1000000
  cache_hit_ratio_warn:
    description: Table cache hit ratio, percent, below which the check warns (PgHero, 99).
    type: float
    default: 99
  days_until_full_warn:
    description:
      - Days until the volume is full (at the growth since the previous review) at or below which the check
        warns.
    type: float
    default: 30
  days_until_full_fail:
    description: The same, for a failure.
    type: float
    default: 7
  lock_timeout:
    description:
      - Seconds a catalog read waits for a lock. Measuring a relation's size needs an ACCESS SHARE lock, which a
        session holding ACCESS EXCLUSIVE (a migration's C(ALTER TABLE) in an open transaction) keeps from being
        granted; the review then fails naming that session instead of waiting for it.
    type: float
    default: 10
notes:
  - The login role needs C(pg_monitor) (or superuser) to see other sessions and all statements.
  - Slow queries need C(pg_stat_statements) in C(shared_preload_libraries) and C(CREATE EXTENSION
    pg_stat_statements) in the database; without them RV(slow_queries.available) is false and
    RV(slow_queries.hint) says what to do. The rest of the review still runs.
  - Bloat figures are estimates from planner statistics (C(pg_stats) widths, C(reltuples)); each entry
    says so (C(estimate=true)). With C(pgstattuple) installed, flagged objects carry a measurement in C(confirmed).
  - Supports PostgreSQL 13 and later.
seealso:
  - module: upkeep.runbooks.pg_maintenance
  - name: pg_stat_statements
    description: The statistics the slow-query review reads.
    link: https://www.postgresql.org/docs/current/pgstatstatements.html
  - name: The autovacuum daemon
    description: The thresholds the due-for-vacuum findings use.
    link: https://www.postgresql.org/docs/current/routine-vacuuming.html#AUTOVACUUM
"""

EXAMPLES = r"""
- name: Review the application database
  upkeep.runbooks.pg_review_info:
    login_unix_socket: /var/run/postgresql
    login_db: app
    host_label: "{{ inventory_hostname }}"
    previous: "{{ db_review_previous | default(omit) }}"
  become: true
  become_user: postgres
  register: review

- name: Show the slowest statements
  ansible.builtin.debug:
    var: review.slow_queries.top
"""

RETURN = r"""
database:
  description: The database reviewed.
  returned: always
  type: str
  sample: app
in_recovery:
  description: True when the server is a standby.
  returned: always
  type: bool
  sample: false
statements_run:
  description: Statements the review sent (fixed, whatever the number of tables; plus pgstattuple confirmations).
  returned: always
  type: int
  sample: 7
checks:
  description: One check result per finding, C({check, host, status, value, threshold, message}), for the report.
  returned: always
  type: list
  elements: dict
  sample: [{"check": "db_review:app:invalid_indexes", "host": "db1", "status": "warn", "value": [],
            "threshold": null, "message": "1 invalid index(es): public.orders_ref_idx (failed build)"}]
slow_queries:
  description: Statements from pg_stat_statements.
  returned: always
  type: dict
  contains:
    available:
      description: Whether pg_stat_statements could be read.
      type: bool
      sample: true
    hint:
      description: How to enable pg_stat_statements; null when it is usable.
      type: str
      sample: null
    top:
      description:
        - The O(slow_query_top) statements by total execution time, each with C(queryid), C(calls), C(total_ms),
          C(mean_ms), C(rows), C(query) (normalised text, up to 2000 characters) and C(rank).
      type: list
      elements: dict
    over_threshold:
      description: Statements with mean time >= O(slow_query_mean_ms) and calls >= O(slow_query_min_calls).
      type: list
      elements: dict
    new:
      description: Listed statements whose queryid the previous snapshot did not have (empty without O(previous)).
      type: list
      elements: dict
    regressions:
      description:
        - Statements whose mean time since the previous review (C(interval_mean_ms) over C(interval_calls))
          is O(slow_query_regression_percent) above their mean then (C(previous_mean_ms)).
      type: list
      elements: dict
indexes:
  description: Index findings.
  returned: always
  type: dict
  contains:
    stats_age_days:
      description: Days the index statistics cover (since stats_reset, or the server start).
      type: float
      sample: 30.5
    stats_reset:
      description: When the database's statistics were last reset; null when never.
      type: str
      sample: null
    unused:
      description:
        - Indexes with no scans (here plus O(replica_index_scans)), not unique, not backing a constraint,
          at least O(unused_index_min_bytes); each with C(index), C(table), C(size_bytes), C(scans),
          C(replica_scans), C(definition), C(drop_statement).
      type: list
      elements: dict
    duplicate:
      description:
        - Indexes whose columns are a leading prefix of another index on the same table with the same access
          method, operator classes, expressions and predicate; each with C(index), C(covered_by), C(table),
          C(bytes_saved), C(definition), C(covering_definition), C(drop_statement).
      type: list
      elements: dict
    invalid:
      description:
        - Invalid indexes that no running build owns; each with C(index), C(schema), C(name), C(oid), C(table),
          C(size_bytes), C(leftover) (what a C(_ccnew)/C(_ccold) leftover is, else null),
          C(backs_constraint), C(definition).
      type: list
      elements: dict
    building:
      description: Invalid indexes on tables with a CREATE INDEX / REINDEX in progress (not counted as invalid).
      type: list
      elements: str
constraints_not_validated:
  description:
    - Constraints created C(NOT VALID) and never validated, with C(constraint), C(table), C(kind),
      C(definition).
  returned: always
  type: list
  elements: dict
bloat:
  description: Estimated bloat over the limits.
  returned: always
  type: dict
  contains:
    method:
      description: How the estimate was made.
      type: str
    tables:
      description:
        - Tables over the limits, each with C(kind), C(name), C(size_bytes), C(expected_bytes),
          C(estimated_bloat_bytes), C(estimated_bloat_percent), C(estimate) (always true) and C(confirmed)
          (pgstattuple_approx figures, or null).
      type: list
      elements: dict
    indexes:
      description: B-tree indexes over the limits, the same keys plus C(table); C(confirmed) from pgstatindex.
      type: list
      elements: dict
maintenance_due:
  description: What autovacuum's formulas (with per-table reloptions) consider due.
  returned: always
  type: dict
  contains:
    vacuum:
      description:
        - Tables due for VACUUM (dead rows or, PostgreSQL 13+, inserted rows over the threshold), with C(table),
          C(dead_rows), C(live_rows), C(size_bytes), C(last_vacuum), C(last_analyze), C(autovacuum_enabled), C(reasons).
      type: list
      elements: dict
    analyze:
      description: Tables due for ANALYZE, the same keys.
      type: list
      elements: dict
    autovacuum_off:
      description: Due tables autovacuum will not process (disabled globally or by reloption).
      type: list
      elements: str
xmin_horizon:
  description: What keeps VACUUM from removing dead rows.
  returned: always
  type: dict
  contains:
    holders:
      description:
        - Sessions and prepared transactions open O(xmin_horizon_seconds) or longer, replication slots with an xmin
          older than O(xmin_horizon_xid_age); each with C(kind) (session, prepared_transaction, replication_slot),
          C(name) (pid, gid or slot), C(database), C(user), C(state), C(xid_age), C(seconds), C(what).
      type: list
      elements: dict
sequences:
  description:
    - Every sequence with C(sequence), C(last_value), C(max_value) (the smaller of the sequence's and its column
      type's maximum), C(limit_type), C(percent_used), C(column), C(column_type), C(kind) (serial or identity) and
      C(projected_exhaustion) (date, from the growth since O(previous); null when unknown).
  returned: always
  type: list
  elements: dict
sessions:
  description: Sessions worth a look.
  returned: always
  type: dict
  contains:
    long_running:
      description:
        - Active queries running O(long_running_seconds) or longer (C(pid), C(database), C(user), C(state),
          C(query), C(seconds)).
      type: list
      elements: dict
    idle_in_transaction:
      description: Sessions idle in a transaction for O(idle_in_transaction_seconds) or longer.
      type: list
      elements: dict
cache_hit_ratio:
  description: Table cache hit ratio in percent (pg_statio_user_tables); null before any read.
  returned: always
  type: float
  sample: 99.87
size:
  description: Database size and growth.
  returned: always
  type: dict
  contains:
    size_bytes:
      description: pg_database_size now.
      type: int
    previous_size_bytes:
      description: The size in O(previous); null without it.
      type: int
    growth_bytes_per_day:
      description: Growth per day since O(previous); null without it.
      type: int
    volume_free_bytes:
      description: O(volume_free_bytes) as given.
      type: int
    days_until_full:
      description: Days until the volume is full at that growth; null when unknown or not growing.
      type: float
snapshot:
  description:
    - What the next review compares with; pass it as O(previous). Keys C(version) (1), C(database), C(taken_at),
      C(size_bytes), C(statements) (queryid -> calls, total_ms, mean_ms) and C(sequences) (name -> last_value).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._pg_review import (  # noqa: E402
    DEFAULTS,
    LOCK_NOT_AVAILABLE,
    Counter,
    collect,
    lock_wait_message,
)
from ansible_collections.upkeep.runbooks.plugins.module_utils._postgres import (  # noqa: E402
    PostgresError,
    close_quietly,
    connect,
    postgres_common_argument_spec,
    server_version_num,
    target,
)

OPTION_TO_KEY = {"xmin_horizon_seconds": "xmin_holder_seconds", "xmin_horizon_xid_age": "xmin_holder_xid_age"}


def main():
    spec = postgres_common_argument_spec()
    spec.update(
        host_label=dict(type="str", default="localhost"),
        previous=dict(type="dict"),
        volume_free_bytes=dict(type="int"),
        replica_index_scans=dict(type="dict"),
        lock_timeout=dict(type="float", default=10),
    )
    for key, value in DEFAULTS.items():
        option = dict((v, k) for k, v in OPTION_TO_KEY.items()).get(key, key)
        if option == "confirm_limit" or isinstance(value, int):
            spec[option] = dict(type="int", default=value)
        else:
            spec[option] = dict(type="float", default=value)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    params = module.params
    for key in ("slow_query_top", "slow_query_min_calls", "confirm_limit", "snapshot_statements_limit"):
        if params[key] < 0:
            module.fail_json(msg="Failed to validate %s: must be 0 or more, got %s" % (key, params[key]))
    if params["lock_timeout"] <= 0:
        module.fail_json(
            msg="Failed to validate lock_timeout: must be more than 0 seconds, got %s" % params["lock_timeout"]
        )
    if params["sequence_warn_percent"] > params["sequence_fail_percent"]:
        module.fail_json(msg="Failed to validate sequence_warn_percent: it must not be above sequence_fail_percent")
    options = dict((OPTION_TO_KEY.get(k, k), params[k]) for k in list(DEFAULTS) + list(OPTION_TO_KEY) if k in params)
    options["host_label"] = params["host_label"]
    scans = {}
    for name, value in (params["replica_index_scans"] or {}).items():
        try:
            scans[name] = int(value)
        except (TypeError, ValueError):
            module.fail_json(msg="Failed to validate replica_index_scans: '%s' is not a number of scans" % name)

    conn = connect(module, settings={"lock_timeout": "%dms" % max(1, int(params["lock_timeout"] * 1000))})
    try:
        if server_version_num(conn) < 130000:
            module.fail_json(
                msg="Failed to review database '%s' at %s: pg_review_info supports PostgreSQL 13 and later"
                % (params["login_db"], target(params))
            )
        out = collect(
            conn,
            options,
            previous=params["previous"],
            volume_free_bytes=params["volume_free_bytes"],
            replica_index_scans=scans,
        )
    except PostgresError as exc:
        cause = exc.message
        if exc.sqlstate == LOCK_NOT_AVAILABLE:
            cause = lock_wait_message(Counter(conn), params["lock_timeout"])
        module.fail_json(msg="Failed to review database '%s' at %s: %s" % (params["login_db"], target(params), cause))
    finally:
        close_quietly(conn)
    out["statements_run"] += 1  # the version check
    module.exit_json(changed=False, **out)


if __name__ == "__main__":
    main()
