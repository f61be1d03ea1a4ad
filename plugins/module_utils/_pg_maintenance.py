# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Monthly database maintenance by policy: VACUUM, ANALYZE, REINDEX CONCURRENTLY, index removal.

What is due comes from the same readers and rules as the weekly review (:mod:`._pg_review`):
autovacuum's formulas for VACUUM/ANALYZE, the same unused/invalid/leftover/bloat rules for
indexes. :func:`plan` turns what was read into a list of actions (pure, unit-testable);
:func:`run` executes them one object at a time, or in check mode only reports them.

Rules this file keeps:

* In check mode nothing but ``SELECT`` statements reach the server: the plan, the
  preconditions (free space, old transactions) and the figures are catalog and statistics reads.
* The session starts with ``lock_timeout`` and ``statement_timeout`` (libpq startup options,
  no ``SET``), in autocommit: VACUUM and the CONCURRENTLY statements cannot run in a transaction.
* A statement that hits its lock timeout is reported with the sessions holding locks on the
  object, and the run goes on with the next object.
* A REINDEX CONCURRENTLY that fails leaves an invalid ``_ccnew`` copy behind; the run drops
  that copy again (DROP INDEX CONCURRENTLY) or, when it cannot, names it as left behind.
* A unique index, or one backing a constraint, is never dropped (leftover copies of an
  interrupted REINDEX CONCURRENTLY excepted: the original index still enforces).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import os
import re
import time

from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import human_bytes, result
from ansible_collections.upkeep.runbooks.plugins.module_utils._pg_review import (
    DEFAULTS as REVIEW_DEFAULTS,
)
from ansible_collections.upkeep.runbooks.plugins.module_utils._pg_review import (
    Counter,
    collect_basics,
    collect_indexes,
    collect_tables,
    estimate_bloat,
    leftover_kind,
    lock_holder,
    lock_holder_text,
    lock_wait_message,
    LOCK_NOT_AVAILABLE,
    unused_indexes,
    vacuum_due,
)
from ansible_collections.upkeep.runbooks.plugins.module_utils._postgres import PostgresError

DEFAULTS = {
    "vacuum": True,
    "analyze": True,
    "vacuum_full_tables": [],
    "invalid_index_action": "reindex",
    "drop_leftovers": True,
    "reindex_bloated": True,
    "drop_unused": False,
    "exclude": [],
    "bloat_min_bytes": REVIEW_DEFAULTS["bloat_min_bytes"],
    "bloat_percent": REVIEW_DEFAULTS["bloat_percent"],
    "unused_index_min_bytes": REVIEW_DEFAULTS["unused_index_min_bytes"],
    "unused_index_min_stats_age_days": REVIEW_DEFAULTS["unused_index_min_stats_age_days"],
    "blocking_transaction_seconds": 300.0,
    "free_space_factor": 1.2,
    "confirm_limit": 20,
}

LOCK_TIMEOUT_SQLSTATE = LOCK_NOT_AVAILABLE
CANCELED_SQLSTATE = "57014"

# The lock each statement takes, in the words an operator needs.
LOCKS = {
    "vacuum": "SHARE UPDATE EXCLUSIVE on the table: reads and writes go on; DDL and other VACUUM/ANALYZE wait",
    "analyze": "SHARE UPDATE EXCLUSIVE on the table: reads and writes go on; DDL and other VACUUM/ANALYZE wait",
    "vacuum_full": (
        "ACCESS EXCLUSIVE on the table for the whole rewrite: every read and write waits; needs free space "
        "for a full copy of the table and its indexes"
    ),
    "reindex": (
        "SHARE UPDATE EXCLUSIVE on the table and the index: reads and writes go on; waits for transactions "
        "writing the table or holding older snapshots, then swaps the new copy in"
    ),
    "drop_index": (
        "SHARE UPDATE EXCLUSIVE on the table, then ACCESS EXCLUSIVE on the index once no transaction uses it: "
        "reads and writes on the table go on"
    ),
}

ACTION_LOCK = {
    "drop_leftover": "drop_index",
    "drop_invalid": "drop_index",
    "drop_unused": "drop_index",
    "reindex_invalid": "reindex",
    "reindex_bloated": "reindex",
    "vacuum_full": "vacuum_full",
    "vacuum": "vacuum",
    "analyze": "analyze",
}

# ---------------------------------------------------------------------------------------------
# reads (each a single SELECT)

SQL_TABLE_FIGURES = """
SELECT pg_relation_size(c.oid)::bigint AS size_bytes, pg_total_relation_size(c.oid)::bigint AS total_bytes,
       coalesce(s.n_live_tup, 0)::bigint AS live_rows, coalesce(s.n_dead_tup, 0)::bigint AS dead_rows,
       greatest(s.last_vacuum, s.last_autovacuum) AS last_vacuum,
       greatest(s.last_analyze, s.last_autoanalyze) AS last_analyze,
       c.relfilenode::bigint AS relfilenode
FROM pg_class c LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
WHERE c.oid = %(oid)s::oid
"""

SQL_INDEX_FIGURES = """
SELECT c.oid::bigint AS oid, pg_relation_size(c.oid)::bigint AS size_bytes, i.indisvalid AS valid,
       c.relfilenode::bigint AS relfilenode
FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
WHERE c.oid = to_regclass(%(name)s)
"""

SQL_OLD_TRANSACTIONS = """
SELECT 'session' AS kind, pid::text AS name, usename::text AS user_name, application_name, backend_type, state,
       extract(epoch FROM clock_timestamp() - xact_start)::float8 AS xact_seconds, left(query, 200) AS query
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)
  AND xact_start < clock_timestamp() - make_interval(secs => %(seconds)s)
UNION ALL
SELECT 'prepared_transaction', gid, owner::text, NULL, NULL, 'prepared',
       extract(epoch FROM clock_timestamp() - prepared)::float8, NULL
FROM pg_prepared_xacts
WHERE database = current_database() AND prepared < clock_timestamp() - make_interval(secs => %(seconds)s)
ORDER BY xact_seconds DESC
"""

# Who holds locks on the objects (after a lock timeout), strongest first; when nobody does, the
# sessions whose transactions started before the statement (REINDEX/DROP CONCURRENTLY wait for them).
SQL_LOCK_HOLDERS = """
SELECT a.pid, a.usename::text AS user_name, a.application_name, a.backend_type, a.state,
       string_agg(DISTINCT l.mode, ', ') AS modes,
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS xact_seconds, left(a.query, 200) AS query
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.pid <> pg_backend_pid() AND l.locktype = 'relation'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.relation = ANY (%(oids)s::oid[])
GROUP BY a.pid, a.usename, a.application_name, a.backend_type, a.state, a.xact_start, a.query
ORDER BY a.xact_start NULLS LAST
"""

SQL_OLDER_TRANSACTIONS = """
SELECT pid, usename::text AS user_name, application_name, backend_type, state, NULL AS modes,
       extract(epoch FROM clock_timestamp() - xact_start)::float8 AS xact_seconds, left(query, 200) AS query
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)
  AND xact_start <= clock_timestamp() - make_interval(secs => %(seconds)s)
ORDER BY xact_start
"""

SQL_CC_LEFTOVERS = """
SELECT n.nspname::text AS schema, c.relname::text AS name
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indrelid = %(table_oid)s::oid AND NOT i.indisvalid
  AND (c.relname LIKE '%%\\_ccnew%%' OR c.relname LIKE '%%\\_ccold%%')
"""

SQL_DATA_DIRECTORY = "SELECT current_setting('data_directory') AS data_directory"


# ---------------------------------------------------------------------------------------------
# helpers


def _qualified(schema, name):
    return "%s.%s" % (schema, name)


def restore_statement(definition):
    """The CREATE INDEX CONCURRENTLY that puts a dropped index back (from pg_get_indexdef)."""
    if not definition:
        return None
    return re.sub(r"^CREATE (UNIQUE )?INDEX ", r"CREATE \1INDEX CONCURRENTLY ", definition, count=1) + ";"


def leftover_base(name):
    """The index a ``_ccnew``/``_ccold`` leftover is a copy of (name without the suffix)."""
    return re.sub(r"_cc(new|old)\d*$", "", name)


# ---------------------------------------------------------------------------------------------
# planning (pure)


def plan(data, opts, quote, replica_index_scans=None):
    """The actions due by policy, in the order they run.

    ``data`` holds ``basics``, ``tables``, ``indexes`` (the review's readers) and ``confirm`` (a
    pgstatindex callback or None); ``quote(schema, name)`` returns a quoted qualified name.
    Every action has ``action``, ``object``, ``table``, ``statement`` (None when the policy keeps
    it from running), ``lock``, ``reasons``, ``allowed`` and, when not allowed, ``skip_reason``.
    """
    o = dict(DEFAULTS)
    o.update(dict((k, v) for k, v in (opts or {}).items() if v is not None))
    exclude = set(o["exclude"] or ())
    basics, tables, indexes = data["basics"], data["tables"], data["indexes"]
    by_name = dict((_qualified(i["schema"], i["name"]), i) for i in indexes)
    table_by_name = dict((_qualified(t["schema"], t["name"]), t) for t in tables)
    actions = []
    acted = set()

    def add(action, obj, table, statement, reasons, allowed=True, skip_reason=None, **extra):
        entry = {
            "action": action,
            "object": obj,
            "table": table,
            "statement": statement if allowed else None,
            "would_be_statement": statement,
            "lock": LOCKS[ACTION_LOCK[action]],
            "reasons": reasons,
            "allowed": allowed,
            "skip_reason": skip_reason,
            "blocked": False,
        }
        if obj in exclude or (table and table in exclude):
            entry.update(statement=None, allowed=False, skip_reason="excluded by the exclude option")
        entry.update(extra)
        actions.append(entry)
        acted.add(obj)
        return entry

    def drop_sql(i):
        return "DROP INDEX CONCURRENTLY %s;" % quote(i["schema"], i["name"])

    def reindex_sql(i):
        return "REINDEX INDEX CONCURRENTLY %s;" % quote(i["schema"], i["name"])

    def index_extra(i):
        return {
            "table_oid": i["table_oid"],
            "index_oid": i["oid"],
            "size_bytes": i["size_bytes"],
            "definition": i["definition"],
        }

    # 1. leftovers of an interrupted REINDEX CONCURRENTLY; 2. other invalid indexes
    for i in indexes:
        if i["is_valid"] or i["build_in_progress"]:
            continue
        name = _qualified(i["schema"], i["name"])
        table = _qualified(i["table_schema"], i["table_name"])
        kind = leftover_kind(i["name"])
        if kind:
            base = by_name.get(_qualified(i["schema"], leftover_base(i["name"])))
            if base is None or base["table_oid"] != i["table_oid"]:
                add(
                    "drop_leftover",
                    name,
                    table,
                    drop_sql(i),
                    [kind],
                    False,
                    "the index it is a copy of (%s) is not on %s: look at it by hand"
                    % (_qualified(i["schema"], leftover_base(i["name"])), table),
                    blocked=True,
                    **index_extra(i),
                )
            else:
                add(
                    "drop_leftover",
                    name,
                    table,
                    drop_sql(i),
                    [kind + "; %s is the index in use" % base["name"]],
                    bool(o["drop_leftovers"]),
                    None if o["drop_leftovers"] else "drop_leftovers is off",
                    **index_extra(i),
                )
            continue
        reason = (
            "invalid index (a failed CREATE INDEX CONCURRENTLY or REINDEX): the planner ignores it, "
            "writes still maintain it"
        )
        action = o["invalid_index_action"]
        if action == "drop":
            if i["is_unique"] or i["backs_constraint"] or i["is_primary"]:
                add(
                    "drop_invalid",
                    name,
                    table,
                    drop_sql(i),
                    [reason],
                    False,
                    "unique or constraint-backing indexes are never dropped by maintenance; fix the data and "
                    "REINDEX it, or drop it by hand",
                    restore_statement=restore_statement(i["definition"]),
                    blocked=True,
                    **index_extra(i),
                )
            else:
                add(
                    "drop_invalid",
                    name,
                    table,
                    drop_sql(i),
                    [reason],
                    restore_statement=restore_statement(i["definition"]),
                    **index_extra(i),
                )
        else:
            add(
                "reindex_invalid",
                name,
                table,
                reindex_sql(i),
                [reason],
                action == "reindex",
                None if action == "reindex" else "invalid_index_action is none",
                **index_extra(i),
            )

    # 3. unused indexes (the review's rule: not unique, not backing a constraint, no scans here or
    #    on the replicas, big enough, statistics old enough)
    stats_age_days = (basics.get("stats_age_seconds") or 0) / 86400.0
    for u in unused_indexes(indexes, o, stats_age_days, replica_index_scans):
        i = by_name[u["index"]]
        if u["index"] in acted:
            continue
        add(
            "drop_unused",
            u["index"],
            u["table"],
            drop_sql(i),
            [
                "no index scans in %.1f days of statistics (here%s), %s"
                % (stats_age_days, " and on the replicas" if replica_index_scans else "", human_bytes(u["size_bytes"]))
            ],
            bool(o["drop_unused"]),
            None if o["drop_unused"] else "drop_unused is off",
            restore_statement=restore_statement(i["definition"]),
            **index_extra(i),
        )

    # 4. bloated indexes (estimate; confirmed with pgstatindex when pgstattuple is installed)
    bloat = estimate_bloat([], indexes, basics.get("block_size") or 8192, o, data.get("confirm"))
    for b in bloat["indexes"]:
        if b["name"] in acted:
            continue
        i = by_name[b["name"]]
        reasons = [
            "estimated bloat %s (%.1f %% of %s; estimate from statistics)"
            % (human_bytes(b["estimated_bloat_bytes"]), b["estimated_bloat_percent"], human_bytes(b["size_bytes"]))
        ]
        allowed, skip = bool(o["reindex_bloated"]), None if o["reindex_bloated"] else "reindex_bloated is off"
        confirmed = b.get("confirmed")
        if confirmed and confirmed.get("avg_leaf_density") is not None:
            measured = max(0.0, 100.0 - float(confirmed["avg_leaf_density"]) * 100.0 / 90.0)
            reasons.append(
                "pgstatindex: average leaf density %.1f %% (%.1f %% below a fresh index's 90 %%)"
                % (confirmed["avg_leaf_density"], measured)
            )
            if measured < o["bloat_percent"]:
                allowed, skip = False, "pgstatindex does not confirm the estimate"
        add(
            "reindex_bloated",
            b["name"],
            b["table"],
            reindex_sql(i),
            reasons,
            allowed,
            skip,
            estimated_bloat_bytes=b["estimated_bloat_bytes"],
            confirmed=confirmed,
            **index_extra(i),
        )

    # 5. VACUUM FULL of tables named for it; 6. VACUUM (ANALYZE) and 7. ANALYZE of tables due
    due = vacuum_due(tables, basics["settings"])
    full = []
    for name in o["vacuum_full_tables"] or ():
        t = table_by_name.get(name)
        if t is None:
            add(
                "vacuum_full",
                name,
                name,
                None,
                ["named in vacuum_full_tables"],
                False,
                "no such table (give it as schema.table)",
                blocked=True,
            )
            continue
        full.append(name)
        add(
            "vacuum_full",
            name,
            name,
            "VACUUM (FULL, ANALYZE) %s;" % quote(t["schema"], t["name"]),
            ["named in vacuum_full_tables"],
            table_oid=t["oid"],
        )
    for t in due["vacuum"]:
        if t["table"] in full:
            continue
        add(
            "vacuum",
            t["table"],
            t["table"],
            "VACUUM (ANALYZE) %s;" % quote(t["schema"], t["name"]),
            t["reasons"],
            bool(o["vacuum"]),
            None if o["vacuum"] else "vacuum is off",
            table_oid=t["oid"],
        )
    for t in due["analyze"]:
        if t["table"] in full or t["table"] in acted:
            continue
        add(
            "analyze",
            t["table"],
            t["table"],
            "ANALYZE %s;" % quote(t["schema"], t["name"]),
            t["reasons"],
            bool(o["analyze"]),
            None if o["analyze"] else "analyze is off",
            table_oid=t["oid"],
        )
    return actions


# ---------------------------------------------------------------------------------------------
# running


class Maintenance:
    """Runs a plan against one database (``conn`` in autocommit with the timeouts set)."""

    def __init__(self, conn, opts, check_mode, volume_free_bytes=None, local_socket=False):
        self.db = Counter(conn)
        self.conn = conn
        self.opts = dict(DEFAULTS)
        self.opts.update(dict((k, v) for k, v in (opts or {}).items() if v is not None))
        self.check_mode = check_mode
        self.volume_free_bytes = volume_free_bytes
        self.free_space_source = "volume_free_bytes option" if volume_free_bytes is not None else None
        self.local_socket = local_socket
        self.executed = []

    # ---- reads -------------------------------------------------------------------------

    def read(self):
        basics = collect_basics(self.db)
        data = {
            "basics": basics,
            "indexes": collect_indexes(self.db),
            "tables": collect_tables(self.db),
            "confirm": self._confirmer(basics),
        }
        return data

    def _confirmer(self, basics):
        schema = basics["extensions"].get("pgstattuple")
        if not schema:
            return None
        quoted = '"%s"' % schema.replace('"', '""')

        def confirm(kind, oid):
            if kind != "index":
                return None
            try:
                return self.db.one(
                    "SELECT avg_leaf_density::float8 AS avg_leaf_density, leaf_fragmentation::float8 AS "
                    "leaf_fragmentation, index_size::bigint AS index_size FROM %s.pgstatindex(%%(oid)s::oid::regclass)"
                    % quoted,
                    {"oid": oid},
                )
            except PostgresError as exc:
                return {"error": exc.message}

        return confirm

    def figures(self, action):
        """Before/after figures of the object an action works on (never raises)."""
        try:
            if action["action"] in ("vacuum", "analyze", "vacuum_full"):
                if action.get("table_oid") is None:
                    return None
                row = self.db.one(SQL_TABLE_FIGURES, {"oid": action["table_oid"]})
                if row is None:
                    return {"exists": False}
                for key in ("last_vacuum", "last_analyze"):
                    row[key] = row[key].isoformat() if row[key] is not None else None
                return dict(row, exists=True)
            row = self.db.one(SQL_INDEX_FIGURES, {"name": action["quoted_object"]})
            if row is None:
                return {"exists": False}
            return dict(row, exists=True)
        except PostgresError as exc:
            return {"error": exc.message}

    def free_bytes(self):
        if self.volume_free_bytes is None and self.local_socket and self.free_space_source is None:
            self.free_space_source = "unknown"
            try:
                path = self.db.one(SQL_DATA_DIRECTORY)["data_directory"]
                st = os.statvfs(path)
                self.volume_free_bytes = st.f_bavail * st.f_frsize
                self.free_space_source = "statvfs of the data directory %s" % path
            except (PostgresError, OSError, TypeError, KeyError):
                self.volume_free_bytes = None
        return self.volume_free_bytes

    def old_transactions(self):
        rows = self.db.all(SQL_OLD_TRANSACTIONS, {"seconds": float(self.opts["blocking_transaction_seconds"])})
        return [lock_holder(r) for r in rows]

    def lock_holders(self, action, started_seconds_ago):
        oids = [oid for oid in (action.get("table_oid"), action.get("index_oid")) if oid is not None]
        try:
            rows = self.db.all(SQL_LOCK_HOLDERS, {"oids": oids}) if oids else []
            if not rows and action["action"] not in ("vacuum", "analyze", "vacuum_full"):
                rows = self.db.all(SQL_OLDER_TRANSACTIONS, {"seconds": max(0.0, started_seconds_ago)})
        except PostgresError:
            return []
        return [lock_holder(r) for r in rows]

    # ---- preconditions -----------------------------------------------------------------

    def precondition(self, action):
        """None when the action may run, else (reason, holders)."""
        if action["action"] in ("reindex_invalid", "reindex_bloated"):
            free = self.free_bytes()
            needed = int(math.ceil((action.get("size_bytes") or 0) * float(self.opts["free_space_factor"])))
            if free is None:
                return (
                    "free space on the database volume is unknown: pass volume_free_bytes (the role passes the "
                    "data volume's free bytes) or connect over the local socket",
                    [],
                )
            if free < needed:
                return (
                    "not enough free space for the new copy of the index: %s free, %s needed (%s x %s)"
                    % (
                        human_bytes(free),
                        human_bytes(needed),
                        self.opts["free_space_factor"],
                        human_bytes(action.get("size_bytes") or 0),
                    ),
                    [],
                )
        if action["action"] in (
            "reindex_invalid",
            "reindex_bloated",
            "drop_leftover",
            "drop_invalid",
            "drop_unused",
            "vacuum_full",
        ):
            holders = self.old_transactions()
            if holders:
                return (
                    "%d transaction(s) open for %s s or more would block it until they end: %s"
                    % (
                        len(holders),
                        _plain(self.opts["blocking_transaction_seconds"]),
                        "; ".join(lock_holder_text(h) for h in holders[:3]),
                    ),
                    holders,
                )
        return None

    # ---- executing ---------------------------------------------------------------------

    def execute(self, statement):
        self.executed.append(statement)
        cur = self.conn.cursor()
        cur.execute(statement)

    def run_action(self, action):
        action.update(
            outcome=None,
            duration_seconds=None,
            before=None,
            after=None,
            holders=[],
            cleanup=[],
            left_behind=[],
            error=None,
        )
        if not action["allowed"]:
            action["outcome"] = "skipped"
            return action
        action["before"] = self.figures(action)
        blocked = self.precondition(action)
        if blocked:
            action["outcome"] = "skipped"
            action["skip_reason"], action["holders"] = blocked
            action["statement"] = None
            action["blocked"] = True
            return action
        if self.check_mode:
            action["outcome"] = "would_run"
            return action
        leftovers_before = self._cc_leftovers(action) if action["action"].startswith("reindex") else set()
        start = time.monotonic()
        try:
            self.execute(action["statement"])
            action["outcome"] = "done"
        except Exception as exc:  # psycopg.Error: the statement failed, the session is still usable
            sqlstate = getattr(exc, "sqlstate", None)
            text = " ".join(str(exc).split()) or exc.__class__.__name__
            if sqlstate == LOCK_TIMEOUT_SQLSTATE:
                action["outcome"] = "lock_timeout"
            elif sqlstate == CANCELED_SQLSTATE and "statement timeout" in text:
                action["outcome"] = "statement_timeout"
            else:
                action["outcome"] = "failed"
            action["error"] = text + (" (SQLSTATE %s)" % sqlstate if sqlstate else "")
            if action["outcome"] != "failed":
                action["holders"] = self.lock_holders(action, time.monotonic() - start)
            if action["action"].startswith("reindex"):
                self._clean_up(action, leftovers_before)
        finally:
            action["duration_seconds"] = round(time.monotonic() - start, 3)
        action["after"] = self.figures(action)
        return action

    def _cc_leftovers(self, action):
        try:
            return set(
                _qualified(r["schema"], r["name"])
                for r in self.db.all(SQL_CC_LEFTOVERS, {"table_oid": action["table_oid"]})
            )
        except PostgresError:
            return set()

    def _clean_up(self, action, before):
        """Drop the invalid copy a failed REINDEX CONCURRENTLY left (never one that existed before)."""
        try:
            rows = self.db.all(SQL_CC_LEFTOVERS, {"table_oid": action["table_oid"]})
        except PostgresError as exc:
            action["left_behind"].append({"index": None, "error": exc.message})
            return
        for r in rows:
            name = _qualified(r["schema"], r["name"])
            if name in before:
                continue
            statement = "DROP INDEX CONCURRENTLY %s;" % action["quote"](r["schema"], r["name"])
            step = {"index": name, "statement": statement, "outcome": "done", "error": None}
            try:
                self.execute(statement)
            except Exception as exc:
                step["outcome"] = (
                    "lock_timeout" if getattr(exc, "sqlstate", None) == LOCK_TIMEOUT_SQLSTATE else "failed"
                )
                step["error"] = " ".join(str(exc).split())
                action["left_behind"].append(
                    {
                        "index": name,
                        "statement": statement,
                        "error": step["error"],
                        "message": "the invalid copy %s is left behind; the next run drops it (drop_leftovers), or run "
                        "%s once the blocking transaction ended" % (name, statement),
                    }
                )
            action["cleanup"].append(step)


def _plain(value):
    return ("%d" % value) if float(value).is_integer() else ("%s" % value)


# ---------------------------------------------------------------------------------------------
# results


STATUS = {
    "done": "ok",
    "would_run": "ok",
    "lock_timeout": "warn",
    "statement_timeout": "warn",
    "failed": "fail",
}


def describe(action, check_mode):
    """(status, message) of one action for its check result."""
    obj, outcome = action["object"], action["outcome"]
    verb = {
        "drop_leftover": "drop leftover index",
        "drop_invalid": "drop invalid index",
        "drop_unused": "drop unused index",
        "reindex_invalid": "rebuild invalid index",
        "reindex_bloated": "rebuild bloated index",
        "vacuum_full": "VACUUM FULL",
        "vacuum": "VACUUM",
        "analyze": "ANALYZE",
    }[action["action"]]
    why = "; ".join(action["reasons"])
    if outcome == "skipped":
        blocked_by_condition = bool(action.get("blocked"))
        status = "warn" if blocked_by_condition else "ok"
        text = "%s %s not done: %s" % (verb, obj, action["skip_reason"])
        if not blocked_by_condition and action.get("would_be_statement"):
            text += " (due: %s; statement: %s)" % (why, action["would_be_statement"])
        return status, text
    if outcome == "would_run":
        return "ok", "check mode: would run %s (%s)" % (action["statement"], why)
    before, after = action.get("before") or {}, action.get("after") or {}
    if outcome == "done":
        return "ok", "%s %s in %.1f s: %s" % (
            verb,
            obj,
            action["duration_seconds"] or 0,
            _change(action, before, after),
        )
    holders = action.get("holders") or []
    text = "%s %s gave up after %.1f s: %s" % (verb, obj, action["duration_seconds"] or 0, action["error"])
    if outcome in ("lock_timeout", "statement_timeout"):
        text += "; held by %s" % (
            "; ".join(lock_holder_text(h) for h in holders[:3]) if holders else "no session found"
        )
    if action.get("cleanup"):
        text += "; " + "; ".join(
            "dropped its invalid copy %s again" % c["index"]
            if c["outcome"] == "done"
            else "could not drop its invalid copy %s (%s)" % (c["index"], c["error"])
            for c in action["cleanup"]
        )
    status = STATUS[outcome]
    if action.get("left_behind") and status == "ok":
        status = "warn"
    return status, text


def _change(action, before, after):
    if action["action"] in ("vacuum", "analyze", "vacuum_full"):
        parts = []
        if action["action"] != "analyze":
            parts.append("dead rows %s -> %s" % (before.get("dead_rows"), after.get("dead_rows")))
        parts.append(
            "size %s -> %s" % (human_bytes(before.get("total_bytes") or 0), human_bytes(after.get("total_bytes") or 0))
        )
        if action["action"] == "analyze":
            parts.append("last analyze %s" % after.get("last_analyze"))
        return ", ".join(parts)
    if action["action"].startswith("drop"):
        text = "%s freed" % human_bytes(before.get("size_bytes") or 0)
        if action.get("restore_statement"):
            text += "; to put it back: %s" % action["restore_statement"]
        return text
    return "size %s -> %s, valid %s -> %s" % (
        human_bytes(before.get("size_bytes") or 0),
        human_bytes(after.get("size_bytes") or 0),
        before.get("valid"),
        after.get("valid"),
    )


def run(
    conn,
    opts,
    check_mode,
    quote,
    host_label="localhost",
    volume_free_bytes=None,
    local_socket=False,
    replica_index_scans=None,
):
    """Read, plan and run (or, in check mode, only report) the maintenance of one database."""
    m = Maintenance(conn, opts, check_mode, volume_free_bytes=volume_free_bytes, local_socket=local_socket)
    try:
        data = m.read()
    except PostgresError as exc:
        if exc.sqlstate != LOCK_TIMEOUT_SQLSTATE:
            raise
        raise PostgresError(
            lock_wait_message(m.db, m.opts.get("lock_timeout") or 0) + "; nothing was done", exc.sqlstate
        ) from None
    database = data["basics"]["database"]
    actions = plan(data, m.opts, quote, replica_index_scans=replica_index_scans)
    for action in actions:
        schema, _sep, name = action["object"].partition(".")
        action["quote"] = quote
        action["quoted_object"] = quote(schema, name) if name else action["object"]
        m.run_action(action)
        action.pop("quote", None)
        action.pop("quoted_object", None)
    checks = []
    counts = dict((k, 0) for k in ("done", "would_run", "skipped", "lock_timeout", "statement_timeout", "failed"))
    for action in actions:
        counts[action["outcome"]] += 1
        status, message = describe(action, check_mode)
        action["message"] = message
        checks.append(
            result(
                "db_maintenance:%s:%s:%s" % (database, action["action"], action["object"]),
                host_label,
                status,
                {
                    "outcome": action["outcome"],
                    "statement": action["statement"],
                    "duration_seconds": action["duration_seconds"],
                    "before": action["before"],
                    "after": action["after"],
                },
                {"lock_timeout_s": opts.get("lock_timeout"), "statement_timeout_s": opts.get("statement_timeout")},
                message,
            )
        )
    summary = "%s: %s" % (
        database,
        ", ".join("%d %s" % (n, k.replace("_", " ")) for k, n in counts.items() if n) or "nothing due",
    )
    checks.insert(
        0,
        result(
            "db_maintenance:%s" % database,
            host_label,
            "ok",
            counts,
            None,
            ("check mode (dry run), nothing changed: " if check_mode else "") + summary,
        ),
    )
    return {
        "database": database,
        "actions": actions,
        "statements": [
            a["statement"]
            for a in actions
            if a["outcome"] in ("done", "would_run", "lock_timeout", "statement_timeout", "failed")
        ],
        "executed": list(m.executed),
        "counts": counts,
        "checks": checks,
        "volume_free_bytes": m.volume_free_bytes,
        "free_space_source": m.free_space_source,
        "changed": any(a["outcome"] == "done" or a.get("cleanup") for a in actions)
        or (check_mode and counts["would_run"] > 0),
    }
