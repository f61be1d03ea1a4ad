"""pg_review_info against real PostgreSQL clusters with real problems planted in real databases."""

from __future__ import annotations

import re
import threading
import time

import psycopg
import pytest

from tests.fixtures.postgres import ClusterFactory
from tests.integration.module_runner import run_module

pytestmark = pytest.mark.integration

MODULE = "upkeep.runbooks.pg_review_info"

# Options that make every rule judge immediately on a small test database.
STRICT = {
    "unused_index_min_bytes": 0,
    "unused_index_min_stats_age_days": 0,
    "bloat_min_bytes": 65536,
    "bloat_percent": 30,
    "slow_query_mean_ms": 10,
    "slow_query_min_calls": 20,
    "host_label": "db1",
}


@pytest.fixture(scope="module")
def review_cluster(pg_bindir):
    factory = ClusterFactory(pg_bindir, prefix="review")
    try:
        yield factory(
            settings={
                "shared_preload_libraries": "pg_stat_statements",
                "wal_level": "logical",
                "max_prepared_transactions": 5,
                "autovacuum": "off",  # dead rows and statistics stay as the test made them
            }
        )
    finally:
        factory.close()


def new_db(cluster, name, extensions=("pg_stat_statements",)):
    cluster.execute('CREATE DATABASE "%s"' % name)
    for ext in extensions:
        cluster.execute("CREATE EXTENSION %s" % ext, dbname=name)
    return name


def review(cluster, db, check_mode=False, **options):
    args = cluster.module_args(login_db=db, **dict(STRICT, **options))
    res = run_module(MODULE, args, check_mode=check_mode)
    assert cluster.password not in res.output
    assert res.rc == 0 and not res.failed, res
    return res


def checks(res):
    return {c["check"].rsplit(":", 1)[1]: c for c in res["checks"]}


def script(cluster, db, text):
    """Run statements one by one in autocommit (VACUUM cannot run inside psql -c's transaction)."""
    for statement in [part.strip() for part in text.split(";\n") if part.strip()]:
        cluster.execute(statement, dbname=db)


def run_many(cluster, db, sql, times, params=None):
    with cluster.connect(dbname=db) as conn:
        for _ in range(times):
            conn.execute(sql, params)


# --------------------------------------------------------------------------- a clean database


def test_clean_database_has_no_findings(review_cluster):
    db = new_db(review_cluster, "clean")
    review_cluster.execute(
        "CREATE TABLE customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text UNIQUE);"
        "INSERT INTO customers (email) SELECT 'c' || g || '@example.org' FROM generate_series(1, 2000) g;"
        "ANALYZE customers",
        dbname=db,
    )
    run_many(review_cluster, db, "SELECT * FROM customers WHERE id = %s", 5, (1,))
    res = review(review_cluster, db)
    by = checks(res)
    assert res["database"] == "clean"
    assert res["slow_queries"]["available"] is True and res["slow_queries"]["hint"] is None
    assert res["slow_queries"]["top"], "pg_stat_statements shows the statements run"
    for name in (
        "slow_queries",
        "unused_indexes",
        "duplicate_indexes",
        "invalid_indexes",
        "constraints_not_validated",
        "bloat",
        "sequences",
        "xmin_horizon",
        "sessions",
        "size_growth",
    ):
        assert by[name]["status"] == "ok", by[name]
    assert res["indexes"] == dict(res["indexes"], unused=[], duplicate=[], invalid=[], building=[])
    assert res["constraints_not_validated"] == []
    assert res["bloat"]["tables"] == [] and res["bloat"]["indexes"] == []
    seq = [s for s in res["sequences"] if s["sequence"] == "public.customers_id_seq"][0]
    assert seq["kind"] == "identity" and seq["column_type"] == "bigint" and seq["last_value"] == 2000
    assert all(c["host"] == "db1" for c in res["checks"])


def test_extension_missing_gives_a_hint_not_a_failure(review_cluster):
    db = new_db(review_cluster, "nostat", extensions=())
    res = review(review_cluster, db)
    assert res["slow_queries"]["available"] is False
    assert "CREATE EXTENSION pg_stat_statements" in res["slow_queries"]["hint"]
    assert "shared_preload_libraries" not in res["slow_queries"]["hint"]  # it is preloaded here
    assert checks(res)["slow_queries"]["status"] == "warn"


def test_not_preloaded_says_how_to_enable(pg_cluster):
    pg_cluster.execute("CREATE DATABASE nopreload")
    res = run_module(MODULE, pg_cluster.module_args(login_db="nopreload"))
    assert res.rc == 0 and not res.failed, res
    hint = res["slow_queries"]["hint"]
    assert "shared_preload_libraries" in hint and "restart" in hint and "CREATE EXTENSION" in hint


# --------------------------------------------------------------------------- planted problems


@pytest.fixture(scope="module")
def problem_db(review_cluster):
    db = new_db(review_cluster, "shop", extensions=("pg_stat_statements", "pgstattuple"))
    script(
        review_cluster,
        db,
        """
        CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL, ref text, created timestamptz NOT NULL,
                             total numeric NOT NULL DEFAULT 0);
        INSERT INTO orders (customer_id, ref, created)
          SELECT g % 500, 'R' || (g % 1000), now() - g * interval '1 minute' FROM generate_series(1, 20000) g;
        CREATE INDEX orders_customer_idx ON orders (customer_id);
        CREATE INDEX orders_customer_created_idx ON orders (customer_id, created);
        CREATE INDEX orders_ref_idx ON orders (ref);
        CREATE TABLE churn (id int PRIMARY KEY, payload text);
        INSERT INTO churn SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;
        DELETE FROM churn WHERE id % 10 <> 0;
        VACUUM churn;
        ANALYZE;
        ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0) NOT VALID;
        CREATE TABLE tickets (id serial PRIMARY KEY, title text);
        SELECT setval('tickets_id_seq', 2000000000);
    """,
    )
    # a failed CREATE UNIQUE INDEX CONCURRENTLY leaves an invalid index behind
    proc = review_cluster.psql(
        dbname=db, sql="CREATE UNIQUE INDEX CONCURRENTLY orders_ref_uniq ON orders (ref)", check=False
    )
    assert proc.returncode != 0 and "could not create unique index" in proc.stderr
    # use the covering index, never the ref index
    run_many(
        review_cluster,
        db,
        "SELECT count(*) FROM orders WHERE customer_id = %s AND created > now() - interval '1 day'",
        3,
        (7,),
    )
    run_many(review_cluster, db, "SELECT pg_sleep(%s)", 20, (0.012,))
    return db


def test_each_planted_problem_is_found(review_cluster, problem_db):
    res = review(review_cluster, problem_db)
    by = checks(res)

    unused = {i["index"]: i for i in res["indexes"]["unused"]}
    assert "public.orders_ref_idx" in unused
    assert unused["public.orders_ref_idx"]["drop_statement"] == "DROP INDEX CONCURRENTLY public.orders_ref_idx;"
    assert "public.orders_pkey" not in unused and "public.orders_ref_uniq" not in unused  # unique / invalid
    assert by["unused_indexes"]["status"] == "warn"

    dup = res["indexes"]["duplicate"]
    assert [(d["index"], d["covered_by"]) for d in dup] == [
        ("public.orders_customer_idx", "public.orders_customer_created_idx")
    ]
    size = review_cluster.scalar("SELECT pg_relation_size('orders_customer_idx')", dbname=problem_db)
    assert dup[0]["bytes_saved"] == size > 0
    assert by["duplicate_indexes"]["status"] == "warn"

    inv = res["indexes"]["invalid"]
    assert [(i["index"], i["leftover"]) for i in inv] == [("public.orders_ref_uniq", None)]
    assert by["invalid_indexes"]["status"] == "warn"

    assert [(c["constraint"], c["table"], c["kind"]) for c in res["constraints_not_validated"]] == [
        ("orders_total_positive", "public.orders", "check")
    ]

    bloated = {b["name"]: b for b in res["bloat"]["tables"]}
    assert list(bloated) == ["public.churn"], res["bloat"]
    churn = bloated["public.churn"]
    assert churn["estimate"] is True and churn["estimated_bloat_percent"] >= 80
    assert churn["confirmed"]["free_percent"] >= 80, "pgstattuple_approx confirms the estimate"
    assert by["bloat"]["status"] == "warn" and "estimate" in by["bloat"]["message"]

    seq = {s["sequence"]: s for s in res["sequences"]}["public.tickets_id_seq"]
    assert seq["limit_type"] == "integer" and seq["max_value"] == 2147483647
    assert 93 < seq["percent_used"] < 94
    assert by["sequences"]["status"] == "warn"
    # the worst sequence's figure is the check's own value: the report history keeps it as a series
    assert by["sequences"]["value"]["sequence"] == "public.tickets_id_seq"
    assert by["sequences"]["value"]["percent_used"] == seq["percent_used"]

    slow = res["slow_queries"]
    over = [q for q in slow["over_threshold"] if "pg_sleep" in q["query"]]
    assert len(over) == 1 and over[0]["calls"] == 20 and over[0]["mean_ms"] >= 12
    assert by["slow_queries"]["status"] == "warn"

    due = res["maintenance_due"]
    vac = {t["table"]: t for t in due["vacuum"]}
    # 20000 rows inserted, never vacuumed: over autovacuum_vacuum_insert_threshold (1000) + 0.2 x 20000
    assert (
        "public.orders" in vac and "inserted since the last vacuum 20000 > 5000" in vac["public.orders"]["reasons"][0]
    )
    assert "public.churn" not in vac, "churn was vacuumed after its delete"
    assert due["analyze"] == []
    assert due["autovacuum_off"], "autovacuum is off on this cluster, due tables are named"
    assert res["statements_run"] <= 10


def test_check_mode_and_no_stats_reset(review_cluster, problem_db):
    before = review_cluster.scalar(
        "SELECT sum(calls) FROM pg_stat_statements WHERE query LIKE 'SELECT pg_sleep%%'", dbname=problem_db
    )
    res = review(review_cluster, problem_db, check_mode=True)
    assert res["changed"] is False
    after = review_cluster.scalar(
        "SELECT sum(calls) FROM pg_stat_statements WHERE query LIKE 'SELECT pg_sleep%%'", dbname=problem_db
    )
    assert after == before, "the review never resets pg_stat_statements"


def test_regression_and_new_query_against_previous(review_cluster, problem_db):
    first = review(review_cluster, problem_db)
    run_many(review_cluster, problem_db, "SELECT pg_sleep(%s)", 20, (0.03,))
    run_many(review_cluster, problem_db, "SELECT pg_sleep(%s), 'new'", 20, (0.011,))
    second = review(review_cluster, problem_db, previous=first["snapshot"])
    regs = [q for q in second["slow_queries"]["regressions"] if "pg_sleep" in q["query"]]
    assert len(regs) == 1 and regs[0]["interval_calls"] == 20 and regs[0]["interval_mean_ms"] >= 30
    assert regs[0]["previous_mean_ms"] < 20
    assert [q for q in second["slow_queries"]["new"] if "'new'" in q["query"] or "$2" in q["query"]]
    assert second["size"]["previous_size_bytes"] == first["size"]["size_bytes"]


def test_xmin_horizon_holders_are_named(review_cluster):
    db = new_db(review_cluster, "horizon")
    review_cluster.execute("CREATE TABLE t (id int)", dbname=db)
    # The logical slot first: creating one waits until every transaction holding an xid ends,
    # so it would wait forever behind the session and the prepared transaction below.
    review_cluster.execute(
        "SELECT pg_create_logical_replication_slot('upkeep_review_slot', 'test_decoding')", dbname=db
    )
    holder = review_cluster.connect(dbname=db, autocommit=False)
    prepared = review_cluster.connect(dbname=db, autocommit=True)
    try:
        holder.execute("SELECT txid_current()")
        prepared.execute("BEGIN")
        prepared.execute("INSERT INTO t VALUES (1)")
        prepared.execute("PREPARE TRANSACTION 'upkeep_review_test'")
        res = review(review_cluster, db, xmin_horizon_seconds=0, xmin_horizon_xid_age=0)
        kinds = {(h["kind"], h["name"]) for h in res["xmin_horizon"]["holders"]}
        assert ("prepared_transaction", "upkeep_review_test") in kinds
        assert ("replication_slot", "upkeep_review_slot") in kinds
        pid = holder.info.backend_pid
        assert ("session", str(pid)) in kinds
        assert checks(res)["xmin_horizon"]["status"] == "warn"
        # with production limits a fresh transaction is not a holder
        calm = review(review_cluster, db)
        assert calm["xmin_horizon"]["holders"] == []
    finally:
        holder.close()
        review_cluster.execute("COMMIT PREPARED 'upkeep_review_test'", dbname=db)
        review_cluster.execute("SELECT pg_drop_replication_slot('upkeep_review_slot')", dbname=db)
        prepared.close()


def test_ccnew_leftover_and_build_in_progress(review_cluster):
    db = new_db(review_cluster, "leftover")
    review_cluster.psql(
        dbname=db,
        sql="CREATE TABLE items (id int, name text);"
        "INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 5000) g;"
        "CREATE INDEX items_name_idx ON items (name);",
    )
    blocker = review_cluster.connect(dbname=db, autocommit=False)
    try:
        blocker.execute("INSERT INTO items VALUES (0, 'open')")
        # an open writer on the table: REINDEX CONCURRENTLY builds items_name_idx_ccnew, then
        # waits for that writer's lock and gives up at statement_timeout
        # two -c: each runs on its own, and REINDEX CONCURRENTLY refuses a transaction block
        proc = review_cluster.psql(
            "-c", "REINDEX INDEX CONCURRENTLY items_name_idx", dbname=db, check=False,
            sql="SET statement_timeout = '1s'",
        )
        assert proc.returncode != 0 and "statement timeout" in proc.stderr
        # a build in progress on another table is not an invalid index
        review_cluster.execute("CREATE TABLE other (id int)", dbname=db)
        blocker.execute("INSERT INTO other VALUES (1)")  # keeps the build below waiting
        errors = []

        def build():
            try:
                with review_cluster.connect(dbname=db) as conn:
                    conn.execute("SET statement_timeout = '20s'")
                    conn.execute("CREATE INDEX CONCURRENTLY other_id_idx ON other (id)")
            except psycopg.Error as exc:
                errors.append(exc)

        thread = threading.Thread(target=build)
        thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not review_cluster.scalar(
            "SELECT count(*) FROM pg_index WHERE indexrelid::regclass::text = 'other_id_idx'", dbname=db
        ):
            time.sleep(0.1)
        res = review(review_cluster, db)
        invalid = {i["index"]: i for i in res["indexes"]["invalid"]}
        assert list(invalid) == ["public.items_name_idx_ccnew"], res["indexes"]
        assert invalid["public.items_name_idx_ccnew"]["leftover"].startswith("_ccnew leftover")
        assert res["indexes"]["building"] == ["public.other_id_idx"]
    finally:
        blocker.close()
    thread.join(30)
    assert not errors


def test_fixed_number_of_statements_whatever_the_tables(review_cluster):
    small = new_db(review_cluster, "few_tables")
    big = new_db(review_cluster, "many_tables")
    review_cluster.execute("CREATE TABLE t1 (id int PRIMARY KEY, v text)", dbname=small)
    review_cluster.execute(
        "DO $$ BEGIN FOR i IN 1..2000 LOOP EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v text)', i);"
        " END LOOP; END $$",
        dbname=big,
    )
    counts = {}
    for db in (small, big):
        review_cluster.execute("ALTER DATABASE \"%s\" SET log_statement = 'all'" % db)
        offset = review_cluster.logfile.stat().st_size
        res = review(review_cluster, db)
        logged = review_cluster.logfile.read_text(errors="replace")[offset:]
        # simple protocol logs "statement: ...", a parameterised query "execute <unnamed>: ..."
        counts[db] = (res["statements_run"], len(re.findall(r"LOG:  (?:statement|execute [^:]*): ", logged)))
        review_cluster.execute('ALTER DATABASE "%s" RESET log_statement' % db)
    assert counts[small] == counts[big], counts
    assert counts[small][1] >= counts[small][0] >= 7


def test_a_migration_holding_access_exclusive_makes_the_review_fail_naming_it(review_cluster):
    db = new_db(review_cluster, "migrating")
    review_cluster.execute("CREATE TABLE accounts (id int PRIMARY KEY)", dbname=db)
    migration = review_cluster.connect(dbname=db, autocommit=False, application_name="django-migrate")
    try:
        migration.execute("ALTER TABLE accounts ADD COLUMN note text")  # ACCESS EXCLUSIVE until commit
        res = run_module(MODULE, review_cluster.module_args(login_db=db, lock_timeout=1))
        assert res.failed, res
        assert res["msg"].startswith("Failed to review database 'migrating'")
        assert "lock_timeout (1 s)" in res["msg"] and "pid %d" % migration.info.backend_pid in res["msg"]
        assert "django-migrate" in res["msg"] and "AccessExclusiveLock on accounts" in res["msg"]
    finally:
        migration.rollback()
        migration.close()
    assert review(review_cluster, db)["database"] == "migrating"
