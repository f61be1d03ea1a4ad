"""pg_maintenance against a real PostgreSQL cluster: real dead rows, real bloat, real locks held by other sessions."""

from __future__ import annotations

import os
import re

import pytest

from tests.fixtures.postgres import ClusterFactory
from tests.integration.module_runner import run_module

pytestmark = pytest.mark.integration

MODULE = "upkeep.runbooks.pg_maintenance"

# Thresholds small enough for test tables; a 1 s lock timeout keeps the lock tests short.
STRICT = {
    "bloat_min_bytes": 65536,
    "bloat_percent": 30,
    "unused_index_min_bytes": 0,
    "unused_index_min_stats_age_days": 0,
    "lock_timeout": 1,
    "statement_timeout": 120,
    "host_label": "db1",
}


@pytest.fixture(scope="module")
def cluster(pg_bindir):
    factory = ClusterFactory(pg_bindir, prefix="maint")
    try:
        # autovacuum off: dead rows and statistics stay exactly as each test made them
        yield factory(settings={"autovacuum": "off"})
    finally:
        factory.close()


def free_bytes(cluster):
    st = os.statvfs(cluster.datadir)
    return st.f_bavail * st.f_frsize


def maintain(cluster, db, check_mode=False, diff=False, **options):
    opts = dict(STRICT, volume_free_bytes=free_bytes(cluster))
    opts.update(options)
    args = cluster.module_args(login_db=db, **opts)
    res = run_module(MODULE, args, check_mode=check_mode, diff=diff)
    assert cluster.password not in res.output
    assert res.rc == 0 and not res.failed, res
    return res


def script(cluster, db, text):
    """Statements one by one in autocommit (VACUUM and CONCURRENTLY cannot run in a transaction block), on one
    connection whose table statistics are flushed after each: a backend reports its inserts and updates
    when it goes idle or exits, which can be after a VACUUM on another connection has reset the counters (the
    table then looked due for an insert-triggered VACUUM under load)."""
    with cluster.connect(dbname=db) as conn:
        for statement in [part.strip() for part in text.split(";\n") if part.strip()]:
            conn.execute(statement)
            conn.execute("SELECT pg_stat_force_next_flush()")


def new_db(cluster, name, setup, extensions=()):
    cluster.execute('CREATE DATABASE "%s"' % name)
    for ext in extensions:
        cluster.execute("CREATE EXTENSION %s" % ext, dbname=name)
    script(cluster, name, setup)
    return name


def actions(res, kind=None):
    return {a["object"]: a for a in res["actions"] if kind is None or a["action"] == kind}


def check(res, action, obj):
    name = "db_maintenance:%s:%s:%s" % (res["database"], action, obj)
    return [c for c in res["checks"] if c["check"] == name][0]


def indexes(cluster, db):
    """name -> (valid, relfilenode) of every index in the public schema."""
    rows = cluster.execute(
        "SELECT c.relname, i.indisvalid, c.relfilenode FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'",
        dbname=db,
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def table_state(cluster, db):
    """Everything a maintenance statement would change: files, dead rows, vacuum and analyze counters."""
    return cluster.execute(
        "SELECT c.relname, c.relfilenode, s.n_dead_tup, s.vacuum_count, s.analyze_count, s.n_mod_since_analyze "
        "FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid ORDER BY 1",
        dbname=db,
    )


def logged_statements(logged):
    """Statements in a log_statement=all server log (one entry per log line prefix, statements span lines)."""
    out = []
    for entry in re.split(r"(?m)^(?=\d{4}-\d\d-\d\d )", logged):
        match = re.search(r"LOG:  (?:statement|execute [^:]*): (.*)", entry, re.DOTALL)
        if match:
            out.append(match.group(1).strip())
    return out


def failed_cic(cluster, db, statement, error):
    """Leave an invalid index behind the way production does: a CREATE INDEX CONCURRENTLY that fails."""
    proc = cluster.psql(dbname=db, sql=statement, check=False)
    assert proc.returncode != 0 and error in proc.stderr, proc.stderr


BLOATED = """
CREATE TABLE events (id int NOT NULL, kind text NOT NULL, payload text);
INSERT INTO events SELECT g, 'kind-' || (g % 7) || '-' || g, repeat('p', 50) FROM generate_series(1, 20000) g;
CREATE INDEX events_kind_idx ON events (kind);
DELETE FROM events WHERE id % 10 <> 0;
VACUUM ANALYZE events;
SELECT count(*) FROM events WHERE kind = 'kind-1-8'
"""


# --------------------------------------------------------------------------- check mode


def test_check_mode_runs_nothing_but_catalog_reads(cluster):
    db = new_db(
        cluster,
        "plan",
        BLOATED
        + """;
        CREATE TABLE churn (id int, v text);
        INSERT INTO churn SELECT g, 'x' FROM generate_series(1, 5000) g;
        ANALYZE churn;
        DELETE FROM churn WHERE id > 1000;
        CREATE INDEX churn_v_idx ON churn (v)
        """,
        extensions=("pgstattuple",),
    )
    failed_cic(cluster, db, "CREATE INDEX CONCURRENTLY churn_ratio_idx ON churn ((100 / (id - 5)))", "division by zero")
    before_idx, before_tables = indexes(cluster, db), table_state(cluster, db)
    assert before_idx["churn_ratio_idx"][0] is False

    cluster.execute("ALTER DATABASE plan SET log_statement = 'all'")
    offset = cluster.logfile.stat().st_size
    res = maintain(cluster, db, check_mode=True, diff=True, drop_unused=True)
    logged = cluster.logfile.read_text(errors="replace")[offset:]
    cluster.execute("ALTER DATABASE plan RESET log_statement")

    # the exact statements, the lock each takes and why each is due
    acts = actions(res)
    assert acts["public.churn_ratio_idx"]["action"] == "reindex_invalid"
    assert acts["public.events_kind_idx"]["action"] == "reindex_bloated"
    assert acts["public.churn_v_idx"]["action"] == "drop_unused"
    assert acts["public.churn"]["action"] == "vacuum"
    assert res["statements"] == [
        'REINDEX INDEX CONCURRENTLY "public"."churn_ratio_idx";',
        'DROP INDEX CONCURRENTLY "public"."churn_v_idx";',
        'REINDEX INDEX CONCURRENTLY "public"."events_kind_idx";',
        'VACUUM (ANALYZE) "public"."churn";',
    ]
    for act in res["actions"]:
        assert act["outcome"] == "would_run", act
        assert act["lock"] and act["reasons"] and act["after"] is None
    assert "SHARE UPDATE EXCLUSIVE" in acts["public.churn"]["lock"]
    assert "dead rows 4000 > 250" in acts["public.churn"]["reasons"][0]
    assert acts["public.events_kind_idx"]["confirmed"]["avg_leaf_density"] < 40, "pgstatindex confirmed the estimate"
    assert (
        acts["public.churn_v_idx"]["restore_statement"]
        == "CREATE INDEX CONCURRENTLY churn_v_idx ON public.churn USING btree (v);"
    )
    assert res["changed"] is True and res["executed"] == []
    assert res["counts"]["would_run"] == 4
    assert res["diff"]["before"]["public.churn"]["dead_rows"] == 4000

    # the server log: the module's session sent SELECTs and nothing else
    sent = logged_statements(logged)
    assert len(sent) >= 5, logged
    for statement in sent:
        assert re.match(r"\s*(SELECT|WITH)\b", statement, re.IGNORECASE), statement
    assert not re.search(r"\b(VACUUM|ANALYZE|REINDEX|DROP|CREATE|SET|ALTER|LOCK)\b", "\n".join(sent).upper()), sent

    # and nothing changed: same files, dead rows, counters, indexes
    assert indexes(cluster, db) == before_idx
    assert table_state(cluster, db) == before_tables
    assert (
        cluster.scalar(
            "SELECT count(*) FROM pg_locks WHERE database = (SELECT oid FROM pg_database WHERE datname = 'plan')"
        )
        == 0
    )


# --------------------------------------------------------------------------- real runs


def test_vacuum_removes_dead_rows_and_a_second_run_has_nothing_due(cluster):
    db = new_db(
        cluster,
        "vacuum",
        """
        CREATE TABLE orders (id int, total numeric);
        INSERT INTO orders SELECT g, g FROM generate_series(1, 10000) g;
        ANALYZE orders;
        DELETE FROM orders WHERE id % 2 = 0
        """,
        extensions=("pgstattuple",),
    )
    assert cluster.scalar("SELECT dead_tuple_count FROM pgstattuple('orders')", dbname=db) == 5000
    res = maintain(cluster, db, diff=True)
    act = actions(res, "vacuum")["public.orders"]
    assert act["outcome"] == "done" and act["statement"] == 'VACUUM (ANALYZE) "public"."orders";'
    assert act["before"]["dead_rows"] == 5000 and act["after"]["dead_rows"] == 0
    assert act["after"]["last_vacuum"] and act["after"]["last_analyze"]
    assert act["duration_seconds"] >= 0
    assert res["executed"] == ['VACUUM (ANALYZE) "public"."orders";']
    assert cluster.scalar("SELECT dead_tuple_count FROM pgstattuple('orders')", dbname=db) == 0, "really removed"
    assert res["diff"]["after"]["public.orders"]["dead_rows"] == 0
    c = check(res, "vacuum", "public.orders")
    assert c["status"] == "ok" and "dead rows 5000 -> 0" in c["message"] and c["host"] == "db1"
    assert c["value"]["before"]["dead_rows"] == 5000

    again = maintain(cluster, db)
    assert again["actions"] == [] and again["changed"] is False
    assert again["checks"][0]["message"].endswith("nothing due")


def test_reindex_concurrently_replaces_a_bloated_index(cluster):
    db = new_db(cluster, "bloat", BLOATED, extensions=("pgstattuple",))
    before = indexes(cluster, db)
    size = cluster.scalar("SELECT pg_relation_size('events_kind_idx')", dbname=db)

    short = maintain(cluster, db, volume_free_bytes=size // 2)
    act = actions(short, "reindex_bloated")["public.events_kind_idx"]
    assert act["outcome"] == "skipped" and act["blocked"] and "not enough free space" in act["skip_reason"]
    assert check(short, "reindex_bloated", "public.events_kind_idx")["status"] == "warn"
    assert indexes(cluster, db) == before

    res = maintain(cluster, db, diff=True)
    act = actions(res, "reindex_bloated")["public.events_kind_idx"]
    assert act["outcome"] == "done", act
    assert act["statement"] == 'REINDEX INDEX CONCURRENTLY "public"."events_kind_idx";'
    assert act["before"]["size_bytes"] == size and act["after"]["size_bytes"] < size / 3
    assert act["after"]["valid"] is True and act["after"]["relfilenode"] != act["before"]["relfilenode"]
    after = indexes(cluster, db)
    assert after["events_kind_idx"][0] is True and after["events_kind_idx"][1] != before["events_kind_idx"][1]
    assert not [name for name in after if "_ccnew" in name or "_ccold" in name], after
    assert cluster.scalar("SELECT pg_relation_size('events_kind_idx')", dbname=db) == act["after"]["size_bytes"]
    assert check(res, "reindex_bloated", "public.events_kind_idx")["status"] == "ok"
    assert "reindex_bloated" not in {a["action"] for a in maintain(cluster, db, check_mode=True)["actions"]}


def test_lock_held_by_another_session_gives_up_at_lock_timeout_and_names_the_holder(cluster):
    db = new_db(
        cluster,
        "locked",
        BLOATED
        + """;
        CREATE TABLE other (id int);
        INSERT INTO other SELECT g FROM generate_series(1, 5000) g;
        ANALYZE other;
        DELETE FROM other WHERE id > 100;
        CREATE TABLE logs (id int, v text);
        INSERT INTO logs SELECT g, 'x' FROM generate_series(1, 5000) g;
        ANALYZE logs;
        DELETE FROM logs WHERE id > 100
        """,
    )
    before_idx, before_tables = indexes(cluster, db), table_state(cluster, db)
    holder = cluster.connect(dbname=db, autocommit=False, application_name="migration")
    try:
        # what a plain CREATE INDEX holds: reads go on, VACUUM and REINDEX CONCURRENTLY must wait
        holder.execute("LOCK TABLE events, logs IN SHARE MODE")
        pid = holder.info.backend_pid
        res = maintain(cluster, db)
        by = actions(res)
        for name in ("public.events_kind_idx", "public.logs"):
            act = by[name]
            assert act["outcome"] == "lock_timeout", act
            assert "lock timeout" in act["error"] and act["duration_seconds"] < 60
            assert [h["pid"] for h in act["holders"]] == [pid]
            assert act["holders"][0]["application_name"] == "migration" and "ShareLock" in act["holders"][0]["modes"]
            c = check(res, act["action"], name)
            assert c["status"] == "warn" and "pid %d" % pid in c["message"] and "migration" in c["message"]
        # the rest went on
        assert by["public.other"]["outcome"] == "done" and by["public.other"]["after"]["dead_rows"] == 0
        # nothing half-done on the locked tables
        assert indexes(cluster, db) == before_idx
        assert [r for r in table_state(cluster, db) if r[0] != "other"] == [r for r in before_tables if r[0] != "other"]
    finally:
        holder.close()


def test_reindex_stopped_by_a_writer_drops_its_copy_or_names_it_and_the_next_run_drops_it(cluster):
    db = new_db(cluster, "writer", BLOATED)
    before = indexes(cluster, db)
    writer = cluster.connect(dbname=db, autocommit=False)
    try:
        # an open write transaction: the REINDEX builds events_kind_idx_ccnew, then waits for the writer
        writer.execute("INSERT INTO events VALUES (0, 'open', NULL)")
        res = maintain(cluster, db, vacuum=False, analyze=False)
        act = actions(res, "reindex_bloated")["public.events_kind_idx"]
        assert act["outcome"] == "lock_timeout", act
        assert writer.info.backend_pid in [h["pid"] for h in act["holders"]]
        # the cleanup waits for the same writer: the copy is named, with the statement that drops it
        assert act["left_behind"] and act["left_behind"][0]["index"] == "public.events_kind_idx_ccnew"
        assert act["left_behind"][0]["statement"] == 'DROP INDEX CONCURRENTLY "public"."events_kind_idx_ccnew";'
        assert check(res, "reindex_bloated", "public.events_kind_idx")["status"] == "warn"
        assert indexes(cluster, db)["events_kind_idx"] == before["events_kind_idx"], "the index in use is untouched"
    finally:
        writer.rollback()
        writer.close()

    # the leftover is not an index of its own: the next run drops it, then rebuilds the original
    res = maintain(cluster, db, vacuum=False, analyze=False)
    by = actions(res)
    left = by["public.events_kind_idx_ccnew"]
    assert left["action"] == "drop_leftover" and left["outcome"] == "done", left
    assert left["reasons"][0].startswith("_ccnew leftover")
    assert (
        by["public.events_kind_idx"]["action"] == "reindex_bloated"
        and by["public.events_kind_idx"]["outcome"] == "done"
    )
    assert res["executed"][0] == 'DROP INDEX CONCURRENTLY "public"."events_kind_idx_ccnew";'
    assert sorted(indexes(cluster, db)) == ["events_kind_idx"]


def test_invalid_indexes_rebuilt_failed_rebuild_cleaned_up_unique_never_dropped(cluster):
    db = new_db(
        cluster,
        "invalid",
        """
        CREATE TABLE items (id int PRIMARY KEY, code text);
        INSERT INTO items SELECT g, 'c' || (g % 3000) FROM generate_series(1, 4000) g;
        VACUUM ANALYZE items
        """,
    )
    failed_cic(cluster, db, "CREATE INDEX CONCURRENTLY items_ratio_idx ON items ((100 / (id - 5)))", "division by zero")
    failed_cic(
        cluster, db, "CREATE UNIQUE INDEX CONCURRENTLY items_code_key ON items (code)", "could not create unique"
    )
    cluster.execute("DELETE FROM items WHERE id = 5", dbname=db)  # the row the first build tripped on

    dropping = maintain(cluster, db, invalid_index_action="drop", check_mode=True)
    uniq = actions(dropping)["public.items_code_key"]
    assert uniq["outcome"] == "skipped" and uniq["statement"] is None and "never dropped" in uniq["skip_reason"]
    assert check(dropping, "drop_invalid", "public.items_code_key")["status"] == "warn"
    assert (
        actions(dropping)["public.items_ratio_idx"]["statement"]
        == 'DROP INDEX CONCURRENTLY "public"."items_ratio_idx";'
    )

    res = maintain(cluster, db)
    by = actions(res)
    assert by["public.items_ratio_idx"]["outcome"] == "done"
    assert by["public.items_ratio_idx"]["after"]["valid"] is True
    fail = by["public.items_code_key"]
    assert fail["action"] == "reindex_invalid" and fail["outcome"] == "failed", fail
    assert "could not create unique index" in fail["error"]
    assert [c["outcome"] for c in fail["cleanup"]] == ["done"] and fail["left_behind"] == []
    assert check(res, "reindex_invalid", "public.items_code_key")["status"] == "fail"
    now = indexes(cluster, db)
    assert now["items_ratio_idx"][0] is True and now["items_code_key"][0] is False
    assert not [name for name in now if "_cc" in name], now


def test_unused_index_dropped_only_when_the_policy_allows_it(cluster):
    db = new_db(
        cluster,
        "unused",
        """
        CREATE TABLE customers (id int PRIMARY KEY, email text, city text);
        INSERT INTO customers SELECT g, 'c' || g || '@example.org', 'city' || (g % 50) FROM generate_series(1, 3000) g;
        CREATE INDEX customers_city_idx ON customers (city);
        CREATE UNIQUE INDEX customers_email_key ON customers (email);
        VACUUM ANALYZE customers
        """,
    )
    off = maintain(cluster, db)
    act = actions(off, "drop_unused")["public.customers_city_idx"]
    assert act["outcome"] == "skipped" and act["skip_reason"] == "drop_unused is off" and act["statement"] is None
    assert act["would_be_statement"] == 'DROP INDEX CONCURRENTLY "public"."customers_city_idx";'
    assert "customers_city_idx" in indexes(cluster, db)
    assert set(actions(off, "drop_unused")) == {"public.customers_city_idx"}, "unique and primary key never listed"

    res = maintain(cluster, db, drop_unused=True)
    act = actions(res, "drop_unused")["public.customers_city_idx"]
    assert act["outcome"] == "done" and act["after"] == {"exists": False}
    assert 'DROP INDEX CONCURRENTLY "public"."customers_city_idx";' in res["statements"]
    restore = act["restore_statement"]
    assert restore == "CREATE INDEX CONCURRENTLY customers_city_idx ON public.customers USING btree (city);"
    assert restore in check(res, "drop_unused", "public.customers_city_idx")["message"]
    assert sorted(indexes(cluster, db)) == ["customers_email_key", "customers_pkey"]
    cluster.execute(restore.rstrip(";"), dbname=db)  # the statement really puts it back
    assert indexes(cluster, db)["customers_city_idx"][0] is True


def test_excluded_objects_are_left_alone_and_vacuum_full_only_when_named(cluster):
    db = new_db(
        cluster,
        "full",
        """
        CREATE TABLE audit (id int, v text);
        INSERT INTO audit SELECT g, repeat('a', 100) FROM generate_series(1, 5000) g;
        ANALYZE audit;
        DELETE FROM audit WHERE id > 500;
        CREATE TABLE keep (id int);
        INSERT INTO keep SELECT g FROM generate_series(1, 5000) g;
        ANALYZE keep;
        DELETE FROM keep WHERE id > 500
        """,
    )
    plain = maintain(cluster, db, check_mode=True)
    assert {a["statement"] for a in plain["actions"]} == {
        'VACUUM (ANALYZE) "public"."audit";',
        'VACUUM (ANALYZE) "public"."keep";',
    }, "no VACUUM FULL unless a table is named for it"
    size = cluster.scalar("SELECT pg_relation_size('audit')", dbname=db)
    res = maintain(cluster, db, vacuum_full_tables=["public.audit"], exclude=["public.keep"])
    by = actions(res)
    assert by["public.audit"]["action"] == "vacuum_full" and by["public.audit"]["outcome"] == "done"
    assert "ACCESS EXCLUSIVE" in by["public.audit"]["lock"]
    assert by["public.audit"]["after"]["size_bytes"] < size / 5
    assert by["public.keep"]["outcome"] == "skipped" and by["public.keep"]["skip_reason"].startswith("excluded")
    assert res["executed"] == ['VACUUM (FULL, ANALYZE) "public"."audit";']


def test_old_transaction_keeps_reindex_from_starting(cluster):
    db = new_db(cluster, "oldxact", BLOATED)
    before = indexes(cluster, db)
    old = cluster.connect(dbname=db, autocommit=False)
    try:
        old.execute("SELECT txid_current()")
        res = maintain(cluster, db, blocking_transaction_seconds=0)
        act = actions(res, "reindex_bloated")["public.events_kind_idx"]
        assert act["outcome"] == "skipped" and act["blocked"] and "would block it" in act["skip_reason"]
        assert old.info.backend_pid in [h["pid"] for h in act["holders"]]
        assert res["executed"] == [] and indexes(cluster, db) == before
    finally:
        old.close()


def test_refuses_a_standby(cluster, pg_replica_factory):
    replica = pg_replica_factory(cluster)
    res = run_module(MODULE, replica.module_args(), check_mode=True)
    assert res.failed and "standby" in res["msg"] and res["msg"].startswith("Failed to maintain database 'postgres'")
    assert replica.password not in res.output


def test_bad_options_fail_clearly(cluster):
    res = run_module(MODULE, cluster.module_args(lock_timeout=0))
    assert res.failed and res["msg"] == "Failed to validate lock_timeout: must be more than 0 seconds, got 0.0"
    res = run_module(MODULE, cluster.module_args(vacuum_full_tables=["audit"]))
    assert res.failed and "is not schema.name" in res["msg"]


def test_access_exclusive_lock_during_the_catalog_read_fails_clearly_naming_the_holder(cluster):
    db = new_db(
        cluster,
        "migrating",
        """
        CREATE TABLE accounts (id int, v text);
        INSERT INTO accounts SELECT g, 'x' FROM generate_series(1, 5000) g;
        ANALYZE accounts;
        DELETE FROM accounts WHERE id > 100
        """,
    )
    before = table_state(cluster, db)
    migration = cluster.connect(dbname=db, autocommit=False, application_name="django-migrate")
    try:
        migration.execute("ALTER TABLE accounts ADD COLUMN note text")  # ACCESS EXCLUSIVE until commit
        res = run_module(MODULE, cluster.module_args(login_db=db, lock_timeout=1))
        assert res.failed, res
        assert res["msg"].startswith(
            "Failed to maintain database 'migrating' at 127.0.0.1:%d: reading the catalog" % cluster.port
        )
        assert "pid %d" % migration.info.backend_pid in res["msg"] and "django-migrate" in res["msg"]
        assert "AccessExclusiveLock on accounts" in res["msg"] and "nothing was done" in res["msg"]
    finally:
        migration.rollback()
        migration.close()
    assert table_state(cluster, db) == before


def test_statement_timeout_is_reported_and_analyze_only_tables_are_analyzed(cluster):
    db = new_db(
        cluster,
        "stmt",
        """
        CREATE TABLE archive (id int, v text);
        INSERT INTO archive SELECT g, 'x' FROM generate_series(1, 3000) g;
        ANALYZE archive;
        CREATE TABLE prices (id int, amount numeric);
        INSERT INTO prices SELECT g, g FROM generate_series(1, 3000) g;
        VACUUM ANALYZE prices;
        UPDATE prices SET amount = amount + 1 WHERE id <= 400
        """,
    )
    holder = cluster.connect(dbname=db, autocommit=False)
    try:
        holder.execute("LOCK TABLE archive IN SHARE MODE")
        # a lock timeout longer than the statement timeout: the wait ends at the statement timeout
        res = maintain(cluster, db, vacuum_full_tables=["public.archive"], lock_timeout=60, statement_timeout=3)
        by = actions(res)
        full = by["public.archive"]
        assert full["action"] == "vacuum_full" and full["outcome"] == "statement_timeout", full
        assert "statement timeout" in full["error"] and [h["pid"] for h in full["holders"]] == [holder.info.backend_pid]
        assert check(res, "vacuum_full", "public.archive")["status"] == "warn"
        # 400 rows updated after the last ANALYZE of 3000: due for ANALYZE (50 + 10 %), not for VACUUM (50 + 20 %)
        prices = by["public.prices"]
        assert prices["action"] == "analyze" and prices["statement"] == 'ANALYZE "public"."prices";', prices
        assert prices["outcome"] == "done" and prices["after"]["last_analyze"] != prices["before"]["last_analyze"]
    finally:
        holder.close()
