# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The weekly database review: read-only findings about one PostgreSQL database.

:func:`collect` runs a fixed set of catalog and statistics queries (the same number whatever
the number of tables: every per-object judgement happens here in Python, plus at most
``confirm_limit`` pgstattuple calls) and :func:`review` turns what was read into findings and
check results. Nothing here writes to the server: no ``pg_stat_statements_reset()``, no
``ANALYZE``, no temporary objects.

The maintenance module (pg_maintenance) reuses :func:`collect_tables`, :func:`vacuum_due`,
:func:`collect_indexes` and :func:`invalid_indexes` so that "due" means the same thing in the
review and in the maintenance.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import math

from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import human_bytes, result
from ansible_collections.upkeep.runbooks.plugins.module_utils._postgres import PostgresError, query_all, query_one

SNAPSHOT_VERSION = 1

# SQLSTATE of "canceling statement due to lock timeout".
LOCK_NOT_AVAILABLE = "55P03"

# Largest value a sequence-owning column can hold, by column type.
TYPE_MAX = {"smallint": 32767, "integer": 2147483647, "bigint": 9223372036854775807}

DEFAULTS = {
    "slow_query_top": 10,
    "slow_query_mean_ms": 20.0,
    "slow_query_min_calls": 100,
    "slow_query_regression_percent": 50.0,
    "snapshot_statements_limit": 500,
    "unused_index_min_bytes": 1048576,
    "unused_index_min_stats_age_days": 14.0,
    "bloat_min_bytes": 104857600,
    "bloat_percent": 50.0,
    "confirm_limit": 5,
    "sequence_warn_percent": 85.0,
    "sequence_fail_percent": 95.0,
    "long_running_seconds": 60.0,
    "idle_in_transaction_seconds": 60.0,
    "xmin_holder_seconds": 3600.0,
    "xmin_holder_xid_age": 1000000,
    "cache_hit_ratio_warn": 99.0,
    "days_until_full_warn": 30.0,
    "days_until_full_fail": 7.0,
}

# ---------------------------------------------------------------------------------------------
# statements (a fixed list: the review never runs one statement per table or index)

SQL_BASICS = """
SELECT current_database() AS database,
       current_setting('server_version_num')::int AS server_version_num,
       pg_is_in_recovery() AS in_recovery,
       pg_database_size(current_database())::bigint AS size_bytes,
       current_setting('shared_preload_libraries') AS shared_preload_libraries,
       current_setting('block_size')::int AS block_size,
       (SELECT extract(epoch FROM clock_timestamp() - coalesce(d.stats_reset, pg_postmaster_start_time()))
          FROM pg_stat_database d WHERE d.datname = current_database())::float8 AS stats_age_seconds,
       (SELECT d.stats_reset FROM pg_stat_database d WHERE d.datname = current_database()) AS stats_reset,
       pg_postmaster_start_time() AS postmaster_start,
       (SELECT json_object_agg(extname, nspname) FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace)
         AS extensions,
       (SELECT json_object_agg(name, setting) FROM pg_settings WHERE name IN (
          'autovacuum', 'autovacuum_vacuum_threshold', 'autovacuum_vacuum_scale_factor',
          'autovacuum_analyze_threshold', 'autovacuum_analyze_scale_factor',
          'autovacuum_vacuum_insert_threshold', 'autovacuum_vacuum_insert_scale_factor')) AS settings,
       (SELECT 100.0 * sum(heap_blks_hit) / nullif(sum(heap_blks_hit) + sum(heap_blks_read), 0)
          FROM pg_statio_user_tables)::float8 AS cache_hit_ratio,
       (SELECT sum(heap_blks_hit) + sum(heap_blks_read) FROM pg_statio_user_tables)::bigint AS cache_reads
"""

# pg_stat_statements >= 1.8 (PostgreSQL 13) names the columns *_exec_time.
SQL_STATEMENTS = """
WITH s AS (
  SELECT queryid::text AS queryid, calls::bigint AS calls,
         total_exec_time::float8 AS total_ms, mean_exec_time::float8 AS mean_ms,
         rows::bigint AS rows, left(query, 2000) AS query,
         row_number() OVER (ORDER BY total_exec_time DESC) AS rank
  FROM {schema}.pg_stat_statements
  WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND queryid IS NOT NULL
)
SELECT queryid, calls, total_ms, mean_ms, rows, query, rank::int AS rank
FROM s
WHERE rank <= %(limit)s OR (mean_ms >= %(mean_ms)s AND calls >= %(min_calls)s)
ORDER BY rank
"""

SQL_INDEXES = """
SELECT i.indexrelid::bigint AS oid,
       n.nspname::text AS schema, c.relname::text AS name,
       tn.nspname::text AS table_schema, t.relname::text AS table_name, i.indrelid::bigint AS table_oid,
       am.amname::text AS access_method,
       i.indisunique AS is_unique, i.indisprimary AS is_primary,
       i.indisvalid AS is_valid, i.indisready AS is_ready,
       i.indkey::text AS indkey, i.indclass::text AS indclass, i.indcollation::text AS indcollation,
       i.indoption::text AS indoption,
       coalesce(pg_get_expr(i.indexprs, i.indrelid), '') AS expressions,
       coalesce(pg_get_expr(i.indpred, i.indrelid), '') AS predicate,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) AS backs_constraint,
       pg_relation_size(i.indexrelid)::bigint AS size_bytes,
       c.reltuples::float8 AS reltuples, c.relpages::bigint AS relpages,
       coalesce(s.idx_scan, 0)::bigint AS scans,
       pg_get_indexdef(i.indexrelid) AS definition,
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p
               WHERE p.relid = i.indrelid
                 AND p.datid = (SELECT oid FROM pg_database WHERE datname = current_database()))
         AS build_in_progress,
       (SELECT coalesce(sum(st.avg_width), 0) FROM pg_attribute a JOIN pg_stats st
           ON st.schemaname = tn.nspname AND st.tablename = t.relname AND st.attname = a.attname
         WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[]))::float8 AS stats_width,
       (SELECT count(*) FROM pg_attribute a JOIN pg_stats st
           ON st.schemaname = tn.nspname AND st.tablename = t.relname AND st.attname = a.attname
         WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[]))::int AS stats_columns
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace tn ON tn.oid = t.relnamespace
JOIN pg_am am ON am.oid = c.relam
LEFT JOIN pg_stat_all_indexes s ON s.indexrelid = i.indexrelid
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast_temp%%'
ORDER BY n.nspname, c.relname
"""

SQL_TABLES = """
SELECT c.oid::bigint AS oid, n.nspname::text AS schema, c.relname::text AS name,
       c.reltuples::float8 AS reltuples, c.relpages::bigint AS relpages,
       coalesce(c.reloptions, '{}')::text[] AS reloptions,
       pg_relation_size(c.oid)::bigint AS size_bytes,
       pg_total_relation_size(c.oid)::bigint AS total_bytes,
       coalesce(s.n_live_tup, 0)::bigint AS live_rows, coalesce(s.n_dead_tup, 0)::bigint AS dead_rows,
       coalesce(s.n_mod_since_analyze, 0)::bigint AS modified_since_analyze,
       coalesce((to_jsonb(s) ->> 'n_ins_since_vacuum')::bigint, 0) AS inserted_since_vacuum,
       greatest(s.last_vacuum, s.last_autovacuum) AS last_vacuum,
       greatest(s.last_analyze, s.last_autoanalyze) AS last_analyze,
       coalesce(s.vacuum_count, 0) + coalesce(s.autovacuum_count, 0) AS vacuum_count,
       (SELECT coalesce(sum(st.avg_width), 0) FROM pg_stats st
         WHERE st.schemaname = n.nspname AND st.tablename = c.relname)::float8 AS stats_width,
       (SELECT count(*) FROM pg_stats st WHERE st.schemaname = n.nspname AND st.tablename = c.relname)::int
         AS stats_columns
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
WHERE c.relkind IN ('r', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast_temp%%'
ORDER BY n.nspname, c.relname
"""

SQL_CONSTRAINTS = """
SELECT n.nspname::text AS schema, t.relname::text AS table_name, k.conname::text AS name,
       CASE k.contype WHEN 'f' THEN 'foreign key' WHEN 'c' THEN 'check' ELSE k.contype::text END AS kind,
       pg_get_constraintdef(k.oid) AS definition
FROM pg_constraint k
JOIN pg_class t ON t.oid = k.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE NOT k.convalidated
ORDER BY 1, 2, 3
"""

SQL_SEQUENCES = """
SELECT s.schemaname::text AS schema, s.sequencename::text AS name, s.data_type::text AS sequence_type,
       s.last_value::numeric AS last_value, s.max_value::numeric AS max_value, s.increment_by::bigint AS increment,
       col.table_schema, col.table_name, col.column_name, col.column_type, col.kind
FROM pg_sequences s
LEFT JOIN LATERAL (
  SELECT tn.nspname::text AS table_schema, t.relname::text AS table_name, a.attname::text AS column_name,
         format_type(a.atttypid, NULL) AS column_type,
         CASE d.deptype WHEN 'i' THEN 'identity' ELSE 'serial' END AS kind
  FROM pg_class sc
  JOIN pg_namespace sn ON sn.oid = sc.relnamespace
  JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = sc.oid AND d.deptype IN ('a', 'i')
                  AND d.refclassid = 'pg_class'::regclass
  JOIN pg_class t ON t.oid = d.refobjid
  JOIN pg_namespace tn ON tn.oid = t.relnamespace
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
  WHERE sc.relname = s.sequencename AND sn.nspname = s.schemaname
  LIMIT 1
) col ON true
ORDER BY 1, 2
"""

# Everything that holds back the xmin horizon (what VACUUM may remove), oldest first, and the
# sessions worth reporting (long-running queries, idle in transaction).
SQL_ACTIVITY = """
SELECT 'session' AS kind, pid::text AS name, datname::text AS database, usename::text AS user_name,
       application_name, state,
       greatest(age(backend_xmin), age(backend_xid))::bigint AS xid_age,
       extract(epoch FROM clock_timestamp() - xact_start)::float8 AS xact_seconds,
       extract(epoch FROM clock_timestamp() - query_start)::float8 AS query_seconds,
       extract(epoch FROM clock_timestamp() - state_change)::float8 AS state_seconds,
       left(query, 500) AS query
FROM pg_stat_activity
WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL OR state <> 'idle')
UNION ALL
SELECT 'replication_slot', slot_name::text, database::text, NULL, slot_type,
       CASE WHEN active THEN 'active' ELSE 'inactive' END,
       greatest(age(xmin), age(catalog_xmin))::bigint, NULL, NULL, NULL,
       CASE WHEN xmin IS NOT NULL THEN 'xmin' ELSE 'catalog_xmin' END
FROM pg_replication_slots
WHERE xmin IS NOT NULL OR catalog_xmin IS NOT NULL
UNION ALL
SELECT 'prepared_transaction', gid, database::text, owner::text, NULL, 'prepared',
       age(transaction)::bigint, extract(epoch FROM clock_timestamp() - prepared)::float8, NULL, NULL, NULL
FROM pg_prepared_xacts
ORDER BY xid_age DESC NULLS LAST
"""

# Sessions holding ACCESS EXCLUSIVE locks in this database: they block even catalog reads that
# measure a relation (pg_relation_size takes ACCESS SHARE). Only read after a lock timeout.
SQL_EXCLUSIVE_HOLDERS = """
SELECT a.pid, a.usename::text AS user_name, a.application_name, a.backend_type, a.state,
       string_agg(DISTINCT l.mode || ' on ' || l.relation::regclass::text, ', ') AS modes,
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS xact_seconds, left(a.query, 200) AS query
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.pid <> pg_backend_pid() AND l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
GROUP BY a.pid, a.usename, a.application_name, a.backend_type, a.state, a.xact_start, a.query
ORDER BY a.xact_start NULLS LAST
"""

SQL_CONFIRM_TABLE = """
SELECT table_len::bigint AS table_len, approx_free_space::bigint AS free_bytes,
       dead_tuple_len::bigint AS dead_bytes, approx_free_percent::float8 AS free_percent,
       dead_tuple_percent::float8 AS dead_percent
FROM {schema}.pgstattuple_approx(%(oid)s::oid::regclass)
"""

SQL_CONFIRM_INDEX = """
SELECT index_size::bigint AS index_size, avg_leaf_density::float8 AS avg_leaf_density,
       leaf_fragmentation::float8 AS leaf_fragmentation
FROM {schema}.pgstatindex(%(oid)s::oid::regclass)
"""


# ---------------------------------------------------------------------------------------------
# helpers


def _qualified(schema, name):
    return "%s.%s" % (schema, name)


def _iso(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return value


def _num(value):
    """numeric/Decimal -> int when whole, else float; None stays None."""
    if value is None:
        return None
    if float(value).is_integer():
        return int(value)
    return float(value)


def _reloptions(items):
    out = {}
    for item in items or ():
        key, _sep, value = str(item).partition("=")
        out[key] = value
    return out


def _float(value, default=None):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _parse_time(text):
    if not text:
        return None
    try:
        value = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value


class Counter:
    """Counts the statements a review sends (the review promises a fixed number)."""

    def __init__(self, conn):
        self.conn = conn
        self.statements = 0

    def all(self, query, params=None):
        self.statements += 1
        return [dict(row) for row in query_all(self.conn, query, params)]

    def one(self, query, params=None):
        self.statements += 1
        row = query_one(self.conn, query, params)
        return dict(row) if row else None


# ---------------------------------------------------------------------------------------------
# reading


def collect_basics(db):
    basics = db.one(SQL_BASICS)
    basics["extensions"] = basics.get("extensions") or {}
    basics["settings"] = basics.get("settings") or {}
    return basics


def pg_stat_statements_state(basics):
    """(usable, hint): whether the view can be read, and how to make it readable when not."""
    preloaded = "pg_stat_statements" in [
        part.strip().strip('"') for part in (basics.get("shared_preload_libraries") or "").split(",")
    ]
    installed = "pg_stat_statements" in basics["extensions"]
    if preloaded and installed:
        return True, None
    steps = []
    if not preloaded:
        steps.append(
            "add pg_stat_statements to shared_preload_libraries in postgresql.conf "
            "(ALTER SYSTEM SET shared_preload_libraries = '...,pg_stat_statements') and restart PostgreSQL"
        )
    if not installed:
        steps.append("run CREATE EXTENSION pg_stat_statements; in database '%s'" % basics["database"])
    return False, "pg_stat_statements is not usable here: " + "; then ".join(steps)


def collect_tables(db):
    return db.all(SQL_TABLES)


def collect_indexes(db):
    return db.all(SQL_INDEXES)


def collect(conn, options, previous=None, volume_free_bytes=None, replica_index_scans=None):
    """Read everything the review judges and return the review (see :func:`review`)."""
    db = Counter(conn)
    basics = collect_basics(db)
    statements = None
    usable, hint = pg_stat_statements_state(basics)
    if usable:
        schema = basics["extensions"]["pg_stat_statements"]
        statements = db.all(
            _with_schema(SQL_STATEMENTS, schema),
            {
                "limit": max(options["slow_query_top"], options["snapshot_statements_limit"]),
                "mean_ms": options["slow_query_mean_ms"],
                "min_calls": options["slow_query_min_calls"],
            },
        )
    indexes = collect_indexes(db)
    tables = collect_tables(db)
    constraints = db.all(SQL_CONSTRAINTS)
    sequences = db.all(SQL_SEQUENCES)
    activity = db.all(SQL_ACTIVITY)
    data = {
        "basics": basics,
        "statements": statements,
        "statements_hint": hint,
        "indexes": indexes,
        "tables": tables,
        "constraints": constraints,
        "sequences": sequences,
        "activity": activity,
    }
    out = review(
        data,
        options,
        previous=previous,
        volume_free_bytes=volume_free_bytes,
        replica_index_scans=replica_index_scans,
        confirm=_confirmer(db, basics),
    )
    out["statements_run"] = db.statements
    return out


def _with_schema(template, schema):
    """The statement with the extension's schema quoted in (names from pg_namespace, never input)."""
    return template.replace("{schema}", '"%s"' % schema.replace('"', '""'))


def _confirmer(db, basics):
    schema = basics["extensions"].get("pgstattuple")
    if not schema:
        return None

    def confirm(kind, oid):
        query = SQL_CONFIRM_TABLE if kind == "table" else SQL_CONFIRM_INDEX
        try:
            return db.one(_with_schema(query, schema), {"oid": oid})
        except PostgresError as exc:
            return {"error": exc.message}

    return confirm


# ---------------------------------------------------------------------------------------------
# judging


def review(data, options, previous=None, volume_free_bytes=None, replica_index_scans=None, confirm=None, now=None):
    """Findings and check results from what :func:`collect` read (pure: unit-testable)."""
    opts = dict(DEFAULTS)
    opts.update(dict((k, v) for k, v in (options or {}).items() if v is not None))
    now = now or datetime.datetime.now(datetime.timezone.utc)
    basics = data["basics"]
    database = basics["database"]
    host = opts.get("host_label") or "localhost"
    previous = previous if isinstance(previous, dict) and previous.get("version") == SNAPSHOT_VERSION else None
    if previous and previous.get("database") not in (None, database):
        previous = None
    checks = []

    def add(name, status, value=None, threshold=None, message=""):
        checks.append(result("db_review:%s:%s" % (database, name), host, status, value, threshold, message))

    out = {"database": database, "in_recovery": bool(basics["in_recovery"])}

    # slow queries ------------------------------------------------------------------------
    out["slow_queries"] = slow = slow_queries(data.get("statements"), data.get("statements_hint"), opts, previous)
    threshold = {
        "mean_ms": opts["slow_query_mean_ms"],
        "min_calls": opts["slow_query_min_calls"],
        "regression_percent": opts["slow_query_regression_percent"],
    }
    if not slow["available"]:
        add("slow_queries", "warn", None, threshold, slow["hint"])
    elif slow["over_threshold"] or slow["regressions"]:
        add(
            "slow_queries",
            "warn",
            [_short_query(q) for q in (slow["regressions"] + slow["over_threshold"])[:10]],
            threshold,
            "%d quer%s with mean time >= %s ms over >= %s calls; %d mean-time regression(s) since the previous "
            "report; %d new quer%s"
            % (
                len(slow["over_threshold"]),
                "y" if len(slow["over_threshold"]) == 1 else "ies",
                _plain(opts["slow_query_mean_ms"]),
                opts["slow_query_min_calls"],
                len(slow["regressions"]),
                len(slow["new"]),
                "y" if len(slow["new"]) == 1 else "ies",
            ),
        )
    else:
        add(
            "slow_queries",
            "ok",
            [_short_query(q) for q in slow["top"][:5]],
            threshold,
            "no query over %s ms mean with >= %s calls; top %d by total time listed"
            % (_plain(opts["slow_query_mean_ms"]), opts["slow_query_min_calls"], min(5, len(slow["top"]))),
        )

    # indexes -----------------------------------------------------------------------------
    stats_age_days = (basics.get("stats_age_seconds") or 0) / 86400.0
    indexes = data["indexes"]
    out["indexes"] = {
        "stats_age_days": round(stats_age_days, 2),
        "stats_reset": _iso(basics.get("stats_reset")),
        "unused": unused_indexes(indexes, opts, stats_age_days, replica_index_scans),
        "duplicate": duplicate_indexes(indexes),
        "invalid": invalid_indexes(indexes),
        "building": [
            _qualified(i["schema"], i["name"]) for i in indexes if not i["is_valid"] and i["build_in_progress"]
        ],
    }
    idx = out["indexes"]
    if stats_age_days < opts["unused_index_min_stats_age_days"]:
        add(
            "unused_indexes",
            "ok",
            [],
            {"min_stats_age_days": opts["unused_index_min_stats_age_days"]},
            "not judged: index statistics cover %.1f days (since %s), fewer than the %s days required"
            % (
                stats_age_days,
                "the last stats reset" if basics.get("stats_reset") else "the server start",
                _plain(opts["unused_index_min_stats_age_days"]),
            ),
        )
    else:
        wasted = sum(i["size_bytes"] for i in idx["unused"])
        add(
            "unused_indexes",
            "warn" if idx["unused"] else "ok",
            [{"index": i["index"], "table": i["table"], "size_bytes": i["size_bytes"]} for i in idx["unused"]],
            {
                "min_bytes": opts["unused_index_min_bytes"],
                "min_stats_age_days": opts["unused_index_min_stats_age_days"],
            },
            ("%d index(es) never scanned in %.1f days, %s" % (len(idx["unused"]), stats_age_days, human_bytes(wasted)))
            if idx["unused"]
            else "no unused index over %s" % human_bytes(opts["unused_index_min_bytes"]),
        )
    add(
        "duplicate_indexes",
        "warn" if idx["duplicate"] else "ok",
        [
            {"index": d["index"], "covered_by": d["covered_by"], "bytes_saved": d["bytes_saved"]}
            for d in idx["duplicate"]
        ],
        None,
        (
            "%d duplicate index(es); dropping them saves %s"
            % (len(idx["duplicate"]), human_bytes(sum(d["bytes_saved"] for d in idx["duplicate"])))
        )
        if idx["duplicate"]
        else "no duplicate index",
    )
    add(
        "invalid_indexes",
        "warn" if idx["invalid"] else "ok",
        [{"index": i["index"], "leftover": i["leftover"]} for i in idx["invalid"]],
        None,
        (
            "%d invalid index(es): %s"
            % (
                len(idx["invalid"]),
                ", ".join("%s (%s)" % (i["index"], i["leftover"] or "failed build") for i in idx["invalid"]),
            )
        )
        if idx["invalid"]
        else "no invalid index"
        + (" (%d build(s) in progress not counted)" % len(idx["building"]) if idx["building"] else ""),
    )

    # constraints -------------------------------------------------------------------------
    out["constraints_not_validated"] = cons = [
        {
            "constraint": c["name"],
            "table": _qualified(c["schema"], c["table_name"]),
            "kind": c["kind"],
            "definition": c["definition"],
        }
        for c in data["constraints"]
    ]
    add(
        "constraints_not_validated",
        "warn" if cons else "ok",
        [{"constraint": c["constraint"], "table": c["table"]} for c in cons],
        None,
        (
            "%d constraint(s) NOT VALID: %s"
            % (len(cons), ", ".join("%s on %s" % (c["constraint"], c["table"]) for c in cons))
        )
        if cons
        else "every constraint is validated",
    )

    # bloat -------------------------------------------------------------------------------
    out["bloat"] = bloat = estimate_bloat(data["tables"], indexes, basics.get("block_size") or 8192, opts, confirm)
    flagged = [b for b in bloat["tables"] + bloat["indexes"] if b["flagged"]]
    add(
        "bloat",
        "warn" if flagged else "ok",
        [
            {
                "object": b["name"],
                "kind": b["kind"],
                "estimated_bloat_bytes": b["estimated_bloat_bytes"],
                "estimated_bloat_percent": b["estimated_bloat_percent"],
                "confirmed": b["confirmed"],
            }
            for b in flagged
        ],
        {"min_bytes": opts["bloat_min_bytes"], "percent": opts["bloat_percent"]},
        (
            "%d object(s) with estimated bloat >= %s and >= %s %% (estimates from statistics%s)"
            % (
                len(flagged),
                human_bytes(opts["bloat_min_bytes"]),
                _plain(opts["bloat_percent"]),
                "; pgstattuple_approx confirmation attached" if confirm else "; install pgstattuple to confirm",
            )
        )
        if flagged
        else "no estimated bloat over the limits (estimates from statistics)",
    )

    # vacuum / analyze due, xmin horizon ---------------------------------------------------
    out["maintenance_due"] = due = vacuum_due(data["tables"], basics["settings"])
    out["xmin_horizon"] = horizon = xmin_horizon(data["activity"], opts)
    holders = horizon["holders"]
    add(
        "xmin_horizon",
        "warn" if holders else "ok",
        holders[:10] if holders else None,
        {"seconds": opts["xmin_holder_seconds"], "xid_age": opts["xmin_holder_xid_age"]},
        ("dead rows cannot be removed past: %s" % "; ".join(_holder_text(h) for h in holders[:5]))
        if holders
        else "nothing holds the xmin horizon back beyond the limits",
    )
    blocked = bool(holders) and bool(due["vacuum"])
    add(
        "vacuum_due",
        "warn" if blocked or due["autovacuum_off"] else "ok",
        [{"table": t["table"], "reasons": t["reasons"]} for t in (due["vacuum"] + due["analyze"])][:20],
        None,
        "%d table(s) due for VACUUM, %d for ANALYZE by autovacuum's thresholds%s%s"
        % (
            len(due["vacuum"]),
            len(due["analyze"]),
            "; autovacuum is off for: %s" % ", ".join(due["autovacuum_off"]) if due["autovacuum_off"] else "",
            "; an xmin horizon holder keeps VACUUM from removing dead rows" if blocked else "",
        ),
    )

    # sequences ---------------------------------------------------------------------------
    out["sequences"] = seqs = sequences(data["sequences"], previous, now)
    worst = max([s["percent_used"] for s in seqs] or [0])
    status = (
        "fail" if worst >= opts["sequence_fail_percent"] else "warn" if worst >= opts["sequence_warn_percent"] else "ok"
    )
    near = [s for s in seqs if s["percent_used"] >= opts["sequence_warn_percent"]]
    top = max(seqs, key=lambda s: s["percent_used"]) if seqs else None
    # The worst sequence's percent_used is what the report history keeps as a time series
    # (capacity planning fits it for the exhaustion date); ``near`` lists every one over warn.
    add(
        "sequences",
        status,
        {
            "percent_used": worst,
            "sequence": top["sequence"] if top else None,
            "projected_exhaustion": top["projected_exhaustion"] if top else None,
            "near": [
                {
                    "sequence": s["sequence"],
                    "percent_used": s["percent_used"],
                    "limit_type": s["limit_type"],
                    "projected_exhaustion": s["projected_exhaustion"],
                }
                for s in near
            ],
        },
        {"warn": opts["sequence_warn_percent"], "fail": opts["sequence_fail_percent"], "unit": "%"},
        (
            "%d sequence(s) at or above %s %% of their column's maximum: %s"
            % (
                len(near),
                _plain(opts["sequence_warn_percent"]),
                ", ".join("%s %.1f %%" % (s["sequence"], s["percent_used"]) for s in near),
            )
        )
        if near
        else "highest sequence use is %.2f %% of its column's maximum" % worst,
    )

    # sessions ----------------------------------------------------------------------------
    out["sessions"] = sess = sessions(data["activity"], opts)
    total = len(sess["long_running"]) + len(sess["idle_in_transaction"])
    add(
        "sessions",
        "warn" if total else "ok",
        (sess["long_running"] + sess["idle_in_transaction"])[:10] or None,
        {
            "long_running_seconds": opts["long_running_seconds"],
            "idle_in_transaction_seconds": opts["idle_in_transaction_seconds"],
        },
        "%d long-running quer%s, %d session(s) idle in transaction"
        % (
            len(sess["long_running"]),
            "y" if len(sess["long_running"]) == 1 else "ies",
            len(sess["idle_in_transaction"]),
        ),
    )

    # cache hit ratio ---------------------------------------------------------------------
    ratio = basics.get("cache_hit_ratio")
    out["cache_hit_ratio"] = None if ratio is None else round(ratio, 2)
    if ratio is None or (basics.get("cache_reads") or 0) < 1000:
        add(
            "cache_hit_ratio",
            "ok",
            out["cache_hit_ratio"],
            {"warn": opts["cache_hit_ratio_warn"], "unit": "%"},
            "too few table reads to judge the cache hit ratio",
        )
    else:
        add(
            "cache_hit_ratio",
            "warn" if ratio < opts["cache_hit_ratio_warn"] else "ok",
            round(ratio, 2),
            {"warn": opts["cache_hit_ratio_warn"], "unit": "%"},
            "table cache hit ratio is %.2f %%%s"
            % (
                ratio,
                (", below %s %%" % _plain(opts["cache_hit_ratio_warn"]))
                if ratio < opts["cache_hit_ratio_warn"]
                else "",
            ),
        )

    # size and growth ---------------------------------------------------------------------
    out["size"] = size = growth(basics["size_bytes"], previous, now, volume_free_bytes)
    days = size["days_until_full"]
    status = "ok"
    if days is not None:
        status = (
            "fail" if days <= opts["days_until_full_fail"] else "warn" if days <= opts["days_until_full_warn"] else "ok"
        )
    add(
        "size_growth",
        status,
        {
            "size_bytes": size["size_bytes"],
            "growth_bytes_per_day": size["growth_bytes_per_day"],
            "days_until_full": days,
        },
        {"warn": opts["days_until_full_warn"], "fail": opts["days_until_full_fail"], "unit": "days until full"},
        "database is %s%s%s"
        % (
            human_bytes(size["size_bytes"]),
            ", growing %s per day" % human_bytes(size["growth_bytes_per_day"])
            if size["growth_bytes_per_day"] is not None
            else " (no previous report to compare with)",
            "" if days is None else ", volume full in %.0f days" % float(days),
        ),
    )

    out["snapshot"] = snapshot(database, now, basics["size_bytes"], data.get("statements"), seqs)
    out["checks"] = checks
    return out


def _plain(value):
    return ("%d" % value) if float(value).is_integer() else ("%s" % value)


def _short_query(q):
    return {
        "queryid": q["queryid"],
        "calls": q["calls"],
        "mean_ms": round(q["mean_ms"], 2),
        "total_ms": round(q["total_ms"], 1),
        "query": (q["query"] or "")[:200],
    }


def _holder_text(h):
    if h["kind"] == "session":
        return "session pid %s (%s, %s) open %.0f s" % (h["name"], h["user"], h["state"], h["seconds"] or 0)
    if h["kind"] == "prepared_transaction":
        return "prepared transaction '%s' prepared %.0f s ago" % (h["name"], h["seconds"] or 0)
    return "replication slot '%s' (%s, xid age %s)" % (h["name"], h["state"], h["xid_age"])


def slow_queries(rows, hint, opts, previous):
    out = {"available": rows is not None, "hint": hint, "top": [], "over_threshold": [], "new": [], "regressions": []}
    if rows is None:
        return out
    prev = (previous or {}).get("statements") or {}
    for row in rows:
        q = {
            "queryid": row["queryid"],
            "calls": int(row["calls"]),
            "total_ms": float(row["total_ms"]),
            "mean_ms": float(row["mean_ms"]),
            "rows": int(row["rows"]),
            "query": row["query"],
            "rank": row["rank"],
        }
        if q["rank"] <= opts["slow_query_top"]:
            out["top"].append(q)
        if q["mean_ms"] >= opts["slow_query_mean_ms"] and q["calls"] >= opts["slow_query_min_calls"]:
            out["over_threshold"].append(q)
        if previous is None or q["rank"] > opts["slow_query_top"] and q not in out["over_threshold"]:
            continue
        before = prev.get(q["queryid"])
        if before is None:
            out["new"].append(q)
            continue
        calls = q["calls"] - int(before.get("calls") or 0)
        spent = q["total_ms"] - float(before.get("total_ms") or 0)
        if calls <= 0 or spent < 0:
            continue  # statistics were reset (or nothing ran): no interval to compare
        interval_mean = spent / calls
        prev_mean = float(before.get("mean_ms") or 0)
        if (
            prev_mean > 0
            and interval_mean >= opts["slow_query_mean_ms"]
            and interval_mean >= prev_mean * (1 + opts["slow_query_regression_percent"] / 100.0)
        ):
            reg = dict(q)
            reg.update(
                previous_mean_ms=round(prev_mean, 3), interval_mean_ms=round(interval_mean, 3), interval_calls=calls
            )
            out["regressions"].append(reg)
    return out


def unused_indexes(indexes, opts, stats_age_days, replica_index_scans=None):
    replica = replica_index_scans or {}
    out = []
    for i in indexes:
        name = _qualified(i["schema"], i["name"])
        if i["is_unique"] or i["is_primary"] or i["backs_constraint"] or not i["is_valid"]:
            continue
        scans = int(i["scans"]) + int(replica.get(name) or 0)
        if scans > 0 or i["size_bytes"] < opts["unused_index_min_bytes"]:
            continue
        if stats_age_days < opts["unused_index_min_stats_age_days"]:
            continue
        out.append(
            {
                "index": name,
                "table": _qualified(i["table_schema"], i["table_name"]),
                "size_bytes": i["size_bytes"],
                "scans": scans,
                "replica_scans": int(replica.get(name) or 0),
                "definition": i["definition"],
                "drop_statement": "DROP INDEX CONCURRENTLY %s;" % _quote_qualified(i["schema"], i["name"]),
            }
        )
    return out


def _quote_ident(name):
    if name.replace("_", "a").isalnum() and name == name.lower() and not name[:1].isdigit():
        return name
    return '"%s"' % name.replace('"', '""')


def _quote_qualified(schema, name):
    return "%s.%s" % (_quote_ident(schema), _quote_ident(name))


def duplicate_indexes(indexes):
    """Indexes whose columns are a leading prefix of another index on the same table with the same
    access method, expressions and predicate (PgHero's rule, plus operator classes and collations)."""
    out = []
    valid = [i for i in indexes if i["is_valid"]]
    by_table = {}
    for i in valid:
        by_table.setdefault(i["table_oid"], []).append(i)
    for group in by_table.values():
        for a in group:
            if a["is_primary"] or a["backs_constraint"] and a["is_unique"]:
                continue
            akey, aclass, acoll, aopt = (
                a["indkey"].split(),
                a["indclass"].split(),
                a["indcollation"].split(),
                a["indoption"].split(),
            )
            for b in group:
                if (
                    a is b
                    or a["access_method"] != b["access_method"]
                    or a["expressions"] != b["expressions"]
                    or a["predicate"] != b["predicate"]
                ):
                    continue
                bkey, bclass, bcoll, bopt = (
                    b["indkey"].split(),
                    b["indclass"].split(),
                    b["indcollation"].split(),
                    b["indoption"].split(),
                )
                n = len(akey)
                if n > len(bkey) or bkey[:n] != akey or bclass[:n] != aclass or bcoll[:n] != acoll or bopt[:n] != aopt:
                    continue
                if a["access_method"] != "btree" and n != len(bkey):
                    continue  # only btree can serve a leading prefix
                if a["is_unique"] and not (b["is_unique"] and n == len(bkey)):
                    continue  # a's uniqueness is not enforced by b
                if n == len(bkey):
                    # identical: keep the one backing a constraint, else the older (lower oid)
                    if b["backs_constraint"] and not a["backs_constraint"]:
                        pass
                    elif a["backs_constraint"] and not b["backs_constraint"]:
                        continue
                    elif a["oid"] < b["oid"]:
                        continue
                out.append(
                    {
                        "index": _qualified(a["schema"], a["name"]),
                        "covered_by": _qualified(b["schema"], b["name"]),
                        "table": _qualified(a["table_schema"], a["table_name"]),
                        "bytes_saved": a["size_bytes"],
                        "definition": a["definition"],
                        "covering_definition": b["definition"],
                        "drop_statement": "DROP INDEX CONCURRENTLY %s;" % _quote_qualified(a["schema"], a["name"]),
                    }
                )
                break
    return out


def leftover_kind(name):
    """'_ccnew'/'_ccold' leftovers of REINDEX CONCURRENTLY are named after it; None otherwise."""
    base = name.rstrip("0123456789")
    if base.endswith("_ccnew"):
        return "_ccnew leftover of an interrupted REINDEX CONCURRENTLY (the new copy; drop it)"
    if base.endswith("_ccold"):
        return "_ccold leftover of an interrupted REINDEX CONCURRENTLY (the old copy; drop it)"
    return None


def invalid_indexes(indexes):
    out = []
    for i in indexes:
        if i["is_valid"] or i["build_in_progress"]:
            continue
        out.append(
            {
                "index": _qualified(i["schema"], i["name"]),
                "schema": i["schema"],
                "name": i["name"],
                "oid": i["oid"],
                "table": _qualified(i["table_schema"], i["table_name"]),
                "size_bytes": i["size_bytes"],
                "leftover": leftover_kind(i["name"]),
                "backs_constraint": i["backs_constraint"],
                "definition": i["definition"],
            }
        )
    return out


def estimate_bloat(tables, indexes, block_size, opts, confirm=None):
    """Bloat estimates from planner statistics: expected pages from rows x average width against
    the pages the relation has. They are estimates (pg_stats widths, no alignment padding, no
    TOAST): a flagged object is confirmed with pgstattuple when that extension is installed."""
    page_usable = block_size - 24
    out_t, out_i = [], []
    for t in tables:
        if not t["stats_columns"] or t["relpages"] <= 1 or t["reltuples"] < 0:
            continue
        row = 24 + 4 + math.ceil(t["stats_width"] / 8.0) * 8  # tuple header, item pointer, data
        fill = _float(_reloptions(t["reloptions"]).get("fillfactor"), 100.0) / 100.0
        per_page = max(1, int(page_usable * fill // row))
        expected = max(1, math.ceil(t["reltuples"] / per_page)) * block_size
        out_t.append(_bloat_entry("table", t, t["relpages"] * block_size, expected, opts))
    for i in indexes:
        if (
            i["access_method"] != "btree"
            or not i["stats_columns"]
            or i["relpages"] <= 1
            or i["expressions"]
            or not i["is_valid"]
            or i["stats_columns"] < len(i["indkey"].split())
        ):
            continue
        entry = 8 + 4 + math.ceil(i["stats_width"] / 8.0) * 8
        per_page = max(1, int(page_usable * 0.9 // entry))
        expected = (max(1, math.ceil(max(i["reltuples"], 0) / per_page)) + 1) * block_size  # + metapage
        out_i.append(_bloat_entry("index", i, i["relpages"] * block_size, expected, opts))
    flagged = sorted([e for e in out_t + out_i if e["flagged"]], key=lambda e: -e["estimated_bloat_bytes"])
    for entry in flagged[: max(0, int(opts["confirm_limit"]))]:
        if confirm is not None:
            entry["confirmed"] = confirm(entry["kind"], entry["oid"])
    for entry in out_t + out_i:
        entry.pop("oid", None)
    return {
        "method": "estimate from pg_stats average widths and reltuples (not measured)",
        "tables": [e for e in out_t if e["flagged"]],
        "indexes": [e for e in out_i if e["flagged"]],
    }


def _bloat_entry(kind, rel, actual, expected, opts):
    bloat = max(0, actual - expected)
    percent = round(100.0 * bloat / actual, 1) if actual else 0.0
    return {
        "kind": kind,
        "name": _qualified(rel["schema"], rel["name"]),
        "oid": rel["oid"],
        "table": _qualified(rel["table_schema"], rel["table_name"]) if kind == "index" else None,
        "size_bytes": actual,
        "expected_bytes": expected,
        "estimated_bloat_bytes": bloat,
        "estimated_bloat_percent": percent,
        "estimate": True,
        "confirmed": None,
        "flagged": bloat >= opts["bloat_min_bytes"] and percent >= opts["bloat_percent"],
    }


def vacuum_due(tables, settings):
    """Tables autovacuum's own formulas consider due, with per-table reloptions:
    vacuum when dead rows > threshold + scale_factor * reltuples, or (PostgreSQL 13+) inserted rows
    since the last vacuum > insert_threshold + insert_scale_factor * reltuples; analyze when rows
    modified since the last analyze > analyze_threshold + analyze_scale_factor * reltuples."""

    def setting(opts, name, cast=float):
        value = opts.get(name)
        if value is None:
            value = settings.get(name)
        return cast(value) if value is not None else None

    out = {"vacuum": [], "analyze": [], "autovacuum_off": []}
    global_on = str(settings.get("autovacuum", "on")).lower() in ("on", "true", "1")
    for t in tables:
        opts = _reloptions(t["reloptions"])
        name = _qualified(t["schema"], t["name"])
        reltuples = max(float(t["reltuples"]), 0.0)
        enabled = global_on and str(opts.get("autovacuum_enabled", "true")).lower() not in ("false", "off", "0")
        vac_limit = (
            setting(opts, "autovacuum_vacuum_threshold") + setting(opts, "autovacuum_vacuum_scale_factor") * reltuples
        )
        ana_limit = (
            setting(opts, "autovacuum_analyze_threshold") + setting(opts, "autovacuum_analyze_scale_factor") * reltuples
        )
        reasons = []
        if t["dead_rows"] > vac_limit:
            reasons.append(
                "dead rows %d > %.0f (vacuum threshold + scale factor x %.0f rows)"
                % (t["dead_rows"], vac_limit, reltuples)
            )
        ins_threshold = setting(opts, "autovacuum_vacuum_insert_threshold")
        if ins_threshold is not None and ins_threshold >= 0:
            ins_limit = ins_threshold + (setting(opts, "autovacuum_vacuum_insert_scale_factor") or 0) * reltuples
            if t["inserted_since_vacuum"] > ins_limit:
                reasons.append(
                    "rows inserted since the last vacuum %d > %.0f (insert threshold)"
                    % (t["inserted_since_vacuum"], ins_limit)
                )
        common = {
            "table": name,
            "schema": t["schema"],
            "name": t["name"],
            "oid": t["oid"],
            "dead_rows": t["dead_rows"],
            "live_rows": t["live_rows"],
            "size_bytes": t["size_bytes"],
            "last_vacuum": _iso(t["last_vacuum"]),
            "last_analyze": _iso(t["last_analyze"]),
            "autovacuum_enabled": enabled,
        }
        if reasons:
            out["vacuum"].append(dict(common, reasons=reasons))
        if t["modified_since_analyze"] > ana_limit:
            out["analyze"].append(
                dict(
                    common,
                    reasons=[
                        "rows modified since the last analyze %d > %.0f" % (t["modified_since_analyze"], ana_limit)
                    ],
                )
            )
        if not enabled and (reasons or t["modified_since_analyze"] > ana_limit):
            out["autovacuum_off"].append(name)
    return out


def xmin_horizon(activity, opts):
    holders = []
    for a in activity:
        if a["xid_age"] is None:
            continue
        if a["kind"] == "replication_slot":
            if a["xid_age"] < opts["xmin_holder_xid_age"]:
                continue
        elif (a["xact_seconds"] or 0) < opts["xmin_holder_seconds"]:
            continue
        holders.append(
            {
                "kind": a["kind"],
                "name": a["name"],
                "database": a["database"],
                "user": a["user_name"],
                "state": a["state"],
                "xid_age": a["xid_age"],
                "seconds": None if a["xact_seconds"] is None else round(a["xact_seconds"], 1),
                "what": a["query"] if a["kind"] == "replication_slot" else None,
            }
        )
    return {"holders": holders}


def sessions(activity, opts):
    long_running, idle = [], []
    for a in activity:
        if a["kind"] != "session":
            continue
        entry = {
            "pid": int(a["name"]),
            "database": a["database"],
            "user": a["user_name"],
            "application_name": a["application_name"],
            "state": a["state"],
            "query": (a["query"] or "")[:200],
        }
        if a["state"] == "active" and (a["query_seconds"] or 0) >= opts["long_running_seconds"]:
            long_running.append(dict(entry, seconds=round(a["query_seconds"], 1)))
        elif (a["state"] or "").startswith("idle in transaction") and (a["state_seconds"] or 0) >= opts[
            "idle_in_transaction_seconds"
        ]:
            idle.append(dict(entry, seconds=round(a["state_seconds"], 1)))
    return {"long_running": long_running, "idle_in_transaction": idle}


def sequences(rows, previous, now):
    prev = (previous or {}).get("sequences") or {}
    taken = _parse_time((previous or {}).get("taken_at"))
    out = []
    for s in rows:
        name = _qualified(s["schema"], s["name"])
        seq_max = _num(s["max_value"])
        col_max = TYPE_MAX.get(s["column_type"] or "")
        limit = min(seq_max, col_max) if col_max else seq_max
        limit_type = s["column_type"] if col_max and col_max <= seq_max else "sequence max_value"
        last = _num(s["last_value"])
        used = 0.0 if last is None else round(100.0 * last / limit, 2) if limit else 0.0
        projected = None
        before = prev.get(name)
        if last is not None and before is not None and taken is not None and last > before:
            days = (now - taken).total_seconds() / 86400.0
            if days > 0:
                per_day = (last - before) / days
                projected = (
                    (now + datetime.timedelta(days=(limit - last) / per_day)).date().isoformat()
                    if per_day > 0 and (limit - last) / per_day < 36500
                    else None
                )
        out.append(
            {
                "sequence": name,
                "last_value": last,
                "max_value": limit,
                "limit_type": limit_type,
                "percent_used": used,
                "column": _qualified(s["table_name"], s["column_name"]) if s["table_name"] else None,
                "column_type": s["column_type"],
                "kind": s["kind"],
                "projected_exhaustion": projected,
            }
        )
    return out


def growth(size, previous, now, volume_free_bytes):
    out = {
        "size_bytes": size,
        "previous_size_bytes": None,
        "growth_bytes_per_day": None,
        "volume_free_bytes": volume_free_bytes,
        "days_until_full": None,
    }
    taken = _parse_time((previous or {}).get("taken_at"))
    if previous and taken and previous.get("size_bytes") is not None:
        days = (now - taken).total_seconds() / 86400.0
        out["previous_size_bytes"] = previous["size_bytes"]
        if days > 0:
            out["growth_bytes_per_day"] = int((size - previous["size_bytes"]) / days)
    rate = out["growth_bytes_per_day"]
    if volume_free_bytes is not None and rate and rate > 0:
        out["days_until_full"] = round(volume_free_bytes / float(rate), 1)
    return out


def snapshot(database, now, size, statements, seqs):
    return {
        "version": SNAPSHOT_VERSION,
        "database": database,
        "taken_at": now.isoformat(),
        "size_bytes": size,
        "statements": dict(
            (
                r["queryid"],
                {
                    "calls": int(r["calls"]),
                    "total_ms": round(float(r["total_ms"]), 3),
                    "mean_ms": round(float(r["mean_ms"]), 3),
                },
            )
            for r in (statements or [])
        ),
        "sequences": dict((s["sequence"], s["last_value"]) for s in seqs if s["last_value"] is not None),
    }


# ---------------------------------------------------------------------------------------------
# lock holders


def lock_holder_text(h):
    """One line naming a session or prepared transaction that holds a lock or an old snapshot."""
    if h.get("kind") == "prepared_transaction":
        return "prepared transaction '%s' (%s) open %.0f s" % (h["name"], h.get("user"), h.get("xact_seconds") or 0)
    what = h.get("backend_type") or "session"
    text = "pid %s (%s, user %s%s, %s" % (
        h["pid"],
        what,
        h.get("user"),
        (", application %s" % h["application_name"]) if h.get("application_name") else "",
        h.get("state") or "no state",
    )
    if h.get("modes"):
        text += ", holds %s" % h["modes"]
    if h.get("xact_seconds") is not None:
        text += ", transaction open %.0f s" % h["xact_seconds"]
    text += ")"
    if h.get("query"):
        text += ": %s" % " ".join(h["query"].split())[:120]
    return text


def lock_holder(row):
    """A lock holder from a row of the lock/transaction queries."""
    return {
        "kind": row.get("kind") or "session",
        "pid": int(row["pid"])
        if row.get("pid") is not None
        else (int(row["name"]) if row.get("kind") == "session" else None),
        "name": row.get("name"),
        "user": row.get("user_name"),
        "application_name": row.get("application_name") or None,
        "backend_type": row.get("backend_type"),
        "state": row.get("state"),
        "modes": row.get("modes"),
        "xact_seconds": None if row.get("xact_seconds") is None else round(float(row["xact_seconds"]), 1),
        "query": row.get("query"),
    }


def exclusive_lock_holders(db):
    """Sessions holding ACCESS EXCLUSIVE locks on relations of this database (never raises)."""
    try:
        return [lock_holder(r) for r in db.all(SQL_EXCLUSIVE_HOLDERS)]
    except PostgresError:
        return []


def lock_wait_message(db, seconds):
    """Why reading the catalog gave up at its lock timeout, naming the sessions holding the locks."""
    holders = exclusive_lock_holders(db)
    return "reading the catalog waited longer than lock_timeout (%s s) for a lock%s" % (
        _plain(seconds),
        (" held by " + "; ".join(lock_holder_text(h) for h in holders[:3])) if holders else "",
    )
