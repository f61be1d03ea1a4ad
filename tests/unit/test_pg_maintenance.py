"""pg_maintenance's pure parts: the plan from catalog rows, the check messages, the startup options."""

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _pg_maintenance as m
from ansible_collections.upkeep.runbooks.plugins.module_utils._postgres import connection_kwargs, startup_options

SETTINGS = {
    "autovacuum": "on",
    "autovacuum_vacuum_threshold": "50",
    "autovacuum_vacuum_scale_factor": "0.2",
    "autovacuum_analyze_threshold": "50",
    "autovacuum_analyze_scale_factor": "0.1",
    "autovacuum_vacuum_insert_threshold": "1000",
    "autovacuum_vacuum_insert_scale_factor": "0.2",
}


def quote(schema, name):
    return '"%s"."%s"' % (schema, name)


def index(name, oid, table="orders", table_oid=1, **kw):
    row = {
        "oid": oid,
        "schema": "public",
        "name": name,
        "table_schema": "public",
        "table_name": table,
        "table_oid": table_oid,
        "access_method": "btree",
        "is_unique": False,
        "is_primary": False,
        "is_valid": True,
        "is_ready": True,
        "indkey": "2",
        "indclass": "1",
        "indcollation": "0",
        "indoption": "0",
        "expressions": "",
        "predicate": "",
        "backs_constraint": False,
        "size_bytes": 4 * 1024 * 1024,
        "reltuples": 1000.0,
        "relpages": 2,
        "scans": 5,
        "definition": "CREATE INDEX %s ON public.%s USING btree (c)" % (name, table),
        "build_in_progress": False,
        "stats_width": 4.0,
        "stats_columns": 1,
    }
    row.update(kw)
    return row


def table(name, oid, **kw):
    row = {
        "oid": oid,
        "schema": "public",
        "name": name,
        "reltuples": 1000.0,
        "relpages": 10,
        "reloptions": [],
        "size_bytes": 81920,
        "total_bytes": 81920,
        "live_rows": 1000,
        "dead_rows": 0,
        "modified_since_analyze": 0,
        "inserted_since_vacuum": 0,
        "last_vacuum": None,
        "last_analyze": None,
        "vacuum_count": 1,
        "stats_width": 8.0,
        "stats_columns": 2,
    }
    row.update(kw)
    return row


def plan(indexes=(), tables=(), **opts):
    data = {
        "basics": {"settings": SETTINGS, "block_size": 8192, "stats_age_seconds": 30 * 86400, "extensions": {}},
        "indexes": list(indexes),
        "tables": list(tables) or [table("orders", 1)],
        "confirm": None,
    }
    return {a["object"]: a for a in m.plan(data, opts, quote)}


def test_unique_or_constraint_index_is_never_dropped():
    acts = plan(
        [
            index("orders_code_key", 10, is_unique=True, is_valid=False),
            index("orders_ref_idx", 11, is_valid=False),
            index("orders_pkey", 12, is_unique=True, is_primary=True, backs_constraint=True, scans=0),
            index("orders_fk_idx", 13, backs_constraint=True, scans=0),
        ],
        invalid_index_action="drop",
        drop_unused=True,
    )
    assert acts["public.orders_code_key"]["statement"] is None and acts["public.orders_code_key"]["blocked"]
    assert "never dropped" in acts["public.orders_code_key"]["skip_reason"]
    assert acts["public.orders_ref_idx"]["statement"] == 'DROP INDEX CONCURRENTLY "public"."orders_ref_idx";'
    assert acts["public.orders_ref_idx"]["restore_statement"] == (
        "CREATE INDEX CONCURRENTLY orders_ref_idx ON public.orders USING btree (c);"
    )
    assert "public.orders_pkey" not in acts and "public.orders_fk_idx" not in acts


def test_leftover_dropped_only_next_to_its_original():
    acts = plan(
        [
            index("orders_ref_idx", 10),
            index("orders_ref_idx_ccnew", 11, is_valid=False, is_unique=True),
            index("lonely_idx_ccnew1", 12, is_valid=False),
            index("orders_x_idx_ccold", 13, is_valid=False, build_in_progress=True),
        ]
    )
    left = acts["public.orders_ref_idx_ccnew"]
    assert left["action"] == "drop_leftover" and left["allowed"]
    assert left["statement"] == 'DROP INDEX CONCURRENTLY "public"."orders_ref_idx_ccnew";'
    lonely = acts["public.lonely_idx_ccnew1"]
    assert lonely["statement"] is None and lonely["blocked"] and "public.lonely_idx" in lonely["skip_reason"]
    assert "public.orders_x_idx_ccold" not in acts, "a build in progress is not a leftover"
    assert m.leftover_base("orders_ref_idx_ccnew12") == "orders_ref_idx"


def test_unused_index_needs_the_policy_and_exclude_wins():
    rows = [index("orders_note_idx", 10, scans=0), index("items_note_idx", 20, table="items", table_oid=2, scans=0)]
    tables = [table("orders", 1), table("items", 2)]
    off = plan(rows, tables)
    assert off["public.orders_note_idx"]["allowed"] is False and off["public.orders_note_idx"]["statement"] is None
    assert off["public.orders_note_idx"]["would_be_statement"].startswith("DROP INDEX CONCURRENTLY")
    on = plan(rows, tables, drop_unused=True, exclude=["public.items"])
    assert on["public.orders_note_idx"]["allowed"] is True
    assert on["public.items_note_idx"]["allowed"] is False
    assert on["public.items_note_idx"]["skip_reason"].startswith("excluded")
    young = plan(rows, tables, drop_unused=True, unused_index_min_stats_age_days=60)
    assert young == {}, "statistics younger than the minimum age call nothing unused"


def test_vacuum_full_only_for_named_tables_and_vacuum_then_analyze():
    tables = [
        table("audit", 1, dead_rows=600),
        table("orders", 2, dead_rows=600),
        table("items", 3, modified_since_analyze=200),
    ]
    acts = plan(tables=tables, vacuum_full_tables=["public.audit", "public.missing"])
    assert acts["public.audit"]["action"] == "vacuum_full"
    assert acts["public.audit"]["statement"] == 'VACUUM (FULL, ANALYZE) "public"."audit";'
    assert acts["public.missing"]["blocked"] and acts["public.missing"]["statement"] is None
    assert acts["public.orders"]["statement"] == 'VACUUM (ANALYZE) "public"."orders";'
    assert acts["public.items"]["statement"] == 'ANALYZE "public"."items";'
    assert [a["action"] for a in plan(tables=tables).values()] == ["vacuum", "vacuum", "analyze"]
    assert plan(tables=tables, vacuum=False)["public.orders"]["skip_reason"] == "vacuum is off"


def test_lock_timeout_message_names_the_holder_and_the_cleanup():
    action = {
        "action": "reindex_bloated",
        "object": "public.orders_ref_idx",
        "reasons": ["bloated"],
        "outcome": "lock_timeout",
        "duration_seconds": 1.0,
        "error": "canceling statement due to lock timeout",
        "holders": [
            {
                "kind": "session",
                "pid": 4242,
                "user": "app",
                "application_name": "migrate",
                "backend_type": "client backend",
                "state": "idle in transaction",
                "modes": "ShareLock",
                "xact_seconds": 12.0,
                "query": "LOCK TABLE orders IN SHARE MODE",
            }
        ],
        "cleanup": [{"index": "public.orders_ref_idx_ccnew", "outcome": "lock_timeout", "error": "lock timeout"}],
        "left_behind": [{"index": "public.orders_ref_idx_ccnew"}],
        "before": {},
        "after": {},
    }
    status, message = m.describe(action, False)
    assert status == "warn"
    assert "pid 4242" in message and "migrate" in message and "holds ShareLock" in message
    assert "could not drop its invalid copy public.orders_ref_idx_ccnew" in message


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"lock_timeout": "5000ms"}, "-c lock_timeout=5000ms"),
        ({"statement_timeout": "1h", "lock_timeout": "5s"}, "-c lock_timeout=5s -c statement_timeout=1h"),
        ({"application_name": "a b\\c"}, "-c application_name=a\\ b\\\\c"),
    ],
)
def test_startup_options(settings, expected):
    assert startup_options(settings) == expected


def test_startup_options_reject_odd_names_and_stay_out_when_unset():
    with pytest.raises(ValueError):
        startup_options({"lock_timeout=1 -c x": "1"})
    assert "options" not in connection_kwargs({"login_host": "db1"})
    assert connection_kwargs({"login_host": "db1"}, {"lock_timeout": "1s"})["options"] == "-c lock_timeout=1s"
