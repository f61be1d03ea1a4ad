"""Unit tests for the sweep of leftover scratch databases: marks, limits, the selection and the module.

The selection (``_restore.plan_sweep``) is pure and tested with plain dicts. The drop and the
module's main() run with the server mocked at module_utils level: ``_postgres`` for
``drop_leftover``/``sweep_inventory``, ``_restore.sweep_inventory``/``drop_leftover`` for main().
"""

from __future__ import annotations

import datetime
from unittest import mock

import pytest
from ansible_collections.upkeep.runbooks.plugins.module_utils import _postgres, _restore
from ansible_collections.upkeep.runbooks.plugins.modules import pg_scratch_sweep as mod

from tests.unit.module_helpers import run_module_main

SECRET = "unit-Sweep-Pa55word"
CONN = {"login_host": "127.0.0.1", "login_port": 5432, "login_password": SECRET}
UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
HOUR = 3600.0


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE", "PGSSLROOTCERT"):
        monkeypatch.delenv(key, raising=False)


def ago(hours):
    return NOW - datetime.timedelta(hours=hours)


def scratch_mark(hours, **fields):
    fields.setdefault("backup_id", "daily-20261123T021500Z")
    fields.setdefault("run_id", "6f1c2b9e-3f7a-4c51-9d0e-8a1b2c3d4e5f")
    fields.setdefault("source", "app")
    return _restore.format_mark("scratch", ago(hours), **fields)


def database(name, comment=None, sessions=0, oid=16500, created_from_file=None, **extra):
    """One entry as sweep_inventory returns it."""
    mark = _restore.parse_mark(comment)
    created, source = None, None
    if mark and mark["created"] is not None:
        created, source = mark["created"], "mark"
    elif mark and created_from_file is not None:
        created, source = created_from_file, "file"
    entry = {"oid": oid, "name": name, "comment": comment, "is_template": False, "tablespace": "pg_default",
             "sessions": sessions, "mark": mark, "size_bytes": 8110883, "created": created, "created_from": source,
             "age_problem": None if created else "its files cannot be read to tell"}
    entry.update(extra)
    return entry


def plan(databases, older_than=6 * HOUR, **kwargs):
    kwargs.setdefault("protected", ["app"])
    kwargs.setdefault("login_db", "postgres")
    return {entry["name"]: entry for entry in _restore.plan_sweep(databases, NOW, older_than, **kwargs)}


# ------------------------------------------------------------------ marks


def test_new_mark_keeps_the_old_prefix_and_carries_its_time():
    comment = scratch_mark(7)
    assert comment.startswith(_restore.SCRATCH_MARKER + "{")
    mark = _restore.parse_mark(comment)
    assert mark["kind"] == "scratch" and mark["format"] == "json"
    assert mark["created"] == ago(7) and mark["backup_id"] == "daily-20261123T021500Z" and mark["source"] == "app"
    assert mark["kept"] is False and mark["fields"]["v"] == _restore.MARK_VERSION


def test_mark_is_ascii_and_keeps_microseconds():
    created = datetime.datetime(2026, 11, 23, 2, 15, 4, 118233, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    comment = _restore.format_mark("restore", created, backup_id="b", target='Wéird "db" 漢', run_id="ab" * 16)
    assert comment.isascii()
    assert '"created": "2026-11-23T00:15:04.118233Z"' in comment  # UTC
    mark = _restore.parse_mark(comment)
    assert mark["target"] == 'Wéird "db" 漢' and mark["created"] == created and mark["kind"] == "restore"


def test_marks_written_before_the_time_are_still_recognised():
    mark = _restore.parse_mark("upkeep.runbooks scratch restore of daily-20261123T021500Z 6f1c2b9e-3f7a-4c51")
    assert (mark["kind"], mark["format"], mark["created"]) == ("scratch", "legacy", None)
    assert mark["backup_id"] == "daily-20261123T021500Z" and mark["run_id"] == "6f1c2b9e-3f7a-4c51"
    mark = _restore.parse_mark("upkeep.runbooks restore in progress of daily-1 into my app " + "a" * 32)
    assert (mark["kind"], mark["format"]) == ("restore", "legacy")
    assert (mark["backup_id"], mark["target"], mark["run_id"]) == ("daily-1", "my app", "a" * 32)


@pytest.mark.parametrize("comment", [
    None, "", "the app", "upkeep.runbooks scratch restore", "Upkeep.runbooks scratch restore of x y",
    " upkeep.runbooks scratch restore of x y", '{"created": "2026-11-23T00:15:04.118233Z"}',
])
def test_other_comments_are_no_mark(comment):
    assert _restore.parse_mark(comment) is None


def test_a_damaged_json_mark_is_still_a_mark_without_time():
    mark = _restore.parse_mark(_restore.SCRATCH_MARKER + '{"created": "yesterday", "backup_id": 5}')
    assert mark["kind"] == "scratch" and mark["format"] == "json" and mark["created"] is None
    assert mark["backup_id"] is None
    mark = _restore.parse_mark(_restore.SCRATCH_MARKER + "{not json")
    assert mark["kind"] == "scratch" and mark["created"] is None


def test_update_mark_keeps_time_and_fields():
    comment = _restore.update_mark(scratch_mark(2), kept=True)
    mark = _restore.parse_mark(comment)
    assert mark["kept"] is True and mark["created"] == ago(2) and mark["source"] == "app"
    with pytest.raises(_restore.RestoreError):
        _restore.update_mark("upkeep.runbooks scratch restore of x y", kept=True)


# ------------------------------------------------------------------ limits


@pytest.mark.parametrize("value,seconds", [
    (0, 0.0), ("0", 0.0), (90, 90.0), (1.5, 1.5), ("21600", 21600.0), ("6h", 21600.0), ("90m", 5400.0),
    ("45s", 45.0), ("1d12h", 129600.0), ("1w", 604800.0), (" 2H 30m ", 9000.0), ("0.5h", 1800.0),
])
def test_parse_duration(value, seconds):
    assert _restore.parse_duration(value) == seconds


@pytest.mark.parametrize("value", [None, True, "", "six hours", "6x", "6h and more", "h", "-5", "1e3", "nan"])
def test_parse_duration_refuses(value):
    with pytest.raises(_restore.RestoreError, match="older_than must be a number of seconds or a duration"):
        _restore.parse_duration(value)


@pytest.mark.parametrize("value", [-1, -0.5, float("-inf")])
def test_parse_duration_refuses_negative(value):
    with pytest.raises(_restore.RestoreError, match="must not be negative|older_than must be"):
        _restore.parse_duration(value)


def test_human_duration():
    assert _restore.human_duration(0) == "0s"
    assert _restore.human_duration(42) == "42s"
    assert _restore.human_duration(21600) == "6h"
    assert _restore.human_duration(25320) == "7h 2m"
    assert _restore.human_duration(3 * 86400 + 4 * 3600 + 59) == "3d 4h"
    assert _restore.human_duration(None) == "unknown"


# ------------------------------------------------------------------ the selection


def test_an_old_marked_leftover_goes():
    decided = plan([database("upkeep_verify_x", scratch_mark(7))])["upkeep_verify_x"]
    assert decided["action"] == "remove" and decided["warn"] is False
    assert decided["age_seconds"] == 7 * 3600 and decided["created"] == "2026-11-30T05:00:00.000000Z"
    assert decided["created_from"] == "mark" and decided["mark"] == "scratch" and decided["size_bytes"] == 8110883
    assert "7h old, limit 6h" in decided["reason"]


def test_exactly_at_the_limit_goes_and_just_below_stays():
    decided = plan([database("at", scratch_mark(6)), database("below", scratch_mark(5.999))])
    assert decided["at"]["action"] == "remove"
    assert decided["below"]["action"] == "keep" and "younger than the limit of 6h" in decided["below"]["reason"]
    assert decided["below"]["warn"] is False


def test_a_zero_limit_takes_every_idle_marked_leftover_but_nothing_created_in_the_future():
    decided = plan([database("now", scratch_mark(0)), database("skew", scratch_mark(-0.01))], older_than=0)
    assert decided["now"]["action"] == "remove"
    assert decided["skew"]["action"] == "keep"  # the server's clock went back: younger than any limit


@pytest.mark.parametrize("name", ["upkeep_restore_x", "upkeep_verify_x", "upkeep_replaced_0123456789abcdef"])
@pytest.mark.parametrize("comment", [None, "", "restore test copy, do not drop", "upkeep.runbooks scratch"])
def test_unmarked_databases_stay_whatever_their_name(name, comment):
    decided = plan([database(name, comment)], older_than=0)[name]
    assert decided["action"] == "keep" and decided["mark"] is None
    assert "not marked" in decided["reason"] and decided["warn"] is False


@pytest.mark.parametrize("name,expected", [
    ("postgres", "system database"), ("template1", "system database"), ("maint", "login_db"),
    ("app", "protected_databases"),
])
def test_system_login_and_protected_databases_stay_even_when_marked(name, expected):
    decided = plan([database(name, scratch_mark(100))], older_than=0, login_db="maint")[name]
    assert decided["action"] == "keep" and expected in decided["reason"]


def test_a_marked_template_stays():
    decided = plan([database("tpl", scratch_mark(100), is_template=True)], older_than=0)["tpl"]
    assert decided["action"] == "keep" and "template" in decided["reason"]


def test_a_database_named_like_the_source_in_its_mark_stays():
    decided = plan([database("shop", scratch_mark(100, source="shop"))], older_than=0, protected=[])["shop"]
    assert decided["action"] == "keep" and decided["warn"] is True and "source database" in decided["reason"]


def test_sessions_keep_it_with_a_warning():
    decided = plan([database("busy", scratch_mark(9), sessions=2)])["busy"]
    assert decided["action"] == "keep" and decided["warn"] is True and decided["sessions"] == 2
    assert "2 sessions connected: a database in use is never dropped" in decided["reason"]


def test_a_young_database_in_use_is_a_running_restore_not_a_warning():
    decided = plan([database("running", scratch_mark(0.1), sessions=3)])["running"]
    assert decided["action"] == "keep" and decided["warn"] is False and "younger" in decided["reason"]


def test_kept_on_purpose_stays():
    comment = _restore.update_mark(scratch_mark(100), kept=True)
    decided = plan([database("inspect", comment)], older_than=0)["inspect"]
    assert decided["action"] == "keep" and "keep=true" in decided["reason"] and decided["warn"] is False


def test_legacy_mark_ages_by_its_file_time_or_stays_with_a_warning():
    legacy = "upkeep.runbooks scratch restore of daily-1 6f1c2b9e"
    decided = plan([database("by_file", legacy, created_from_file=ago(8)), database("unknown", legacy)])
    assert decided["by_file"]["action"] == "remove" and decided["by_file"]["created_from"] == "file"
    assert decided["by_file"]["mark_format"] == "legacy" and decided["by_file"]["age_seconds"] == 8 * 3600
    unknown = decided["unknown"]
    assert unknown["action"] == "keep" and unknown["warn"] is True and unknown["age_seconds"] is None
    assert "age unknown" in unknown["reason"] and "cannot be read" in unknown["reason"]


def test_restore_temporaries_need_marks_restore_and_their_own_name():
    token = "0123456789abcdef" + "f" * 16
    temp = "upkeep_restore_0123456789abcdef"
    comment = _restore.format_mark("restore", ago(10), backup_id="b", target="app", run_id=token)
    renamed = _restore.format_mark("restore", ago(10), backup_id="b", target="other", run_id=token)
    into_place = _restore.format_mark("restore", ago(10), backup_id="b", target="shop", run_id="a" * 32)
    dbs = [database(temp, comment), database("upkeep_restore_elsewhere", renamed), database("shop", into_place)]

    only_scratch = plan(dbs)
    assert all(entry["action"] == "keep" for entry in only_scratch.values())
    assert "marks does not include restore" in only_scratch[temp]["reason"]

    both = plan(dbs, kinds=["scratch", "restore"])
    assert both[temp]["action"] == "remove" and "pg_restore temporary database" in both[temp]["reason"]
    assert both["upkeep_restore_elsewhere"]["action"] == "keep" and both["upkeep_restore_elsewhere"]["warn"]
    assert "the temporary name its mark gives, so it was renamed" in both["upkeep_restore_elsewhere"]["reason"]
    assert both["shop"]["action"] == "keep" and "renamed it into place" in both["shop"]["reason"]


@pytest.mark.parametrize("version", [2, None, "1"])
def test_a_mark_of_an_unknown_version_stays(version):
    comment = _restore.SCRATCH_MARKER + _restore.json.dumps(
        {"v": version, "created": "2026-11-20T00:00:00Z", "run_id": "r", "backup_id": "b"})
    decided = plan([database("upkeep_verify_future", comment)], older_than=0)["upkeep_verify_future"]
    assert decided["action"] == "keep" and decided["warn"] is True and "does not know" in decided["reason"]


def test_scratch_marks_can_be_left_out():
    decided = plan([database("upkeep_verify_x", scratch_mark(7))], kinds=["restore"])["upkeep_verify_x"]
    assert decided["action"] == "keep" and "marks does not include scratch" in decided["reason"]


def test_the_plan_keeps_order_and_carries_what_the_drop_rechecks():
    dbs = [database("b", scratch_mark(7), oid=2), database("a", scratch_mark(7), oid=1)]
    decided = _restore.plan_sweep(dbs, NOW, 0)
    assert [entry["name"] for entry in decided] == ["b", "a"]
    assert decided[0]["oid"] == 2 and decided[0]["comment"] == dbs[0]["comment"]


# ------------------------------------------------------------------ the drop, with _postgres mocked


def decision(name="upkeep_verify_x", oid=16500, comment="c"):
    return {"name": name, "oid": oid, "comment": comment}


def drop_with(recheck, execute_error=None):
    statements = []

    def execute(conn, statement, params=None):
        statements.append(statement)
        if execute_error:
            raise execute_error
        return 0

    with mock.patch.object(_postgres, "query_one", return_value=recheck), \
            mock.patch.object(_postgres, "execute", side_effect=execute):
        outcome = _restore.drop_leftover(mock.MagicMock(name="conn"), decision())
    return outcome, statements


def test_drop_uses_an_identifier_and_no_force():
    outcome, statements = drop_with({"oid": 16500, "comment": "c", "sessions": 0})
    assert outcome is None and len(statements) == 1
    statement = statements[0]
    assert isinstance(statement, _postgres.pg_sql.Composed)
    parts = list(statement)
    assert _postgres.pg_sql.Identifier("upkeep_verify_x") in parts
    assert "FORCE" not in repr(statement) and "DROP DATABASE" in repr(statement)


@pytest.mark.parametrize("recheck,expected,warn", [
    (None, "already gone", False),
    ({"oid": 16999, "comment": "c", "sessions": 0}, "changed after it was examined", True),
    ({"oid": 16500, "comment": "other", "sessions": 0}, "changed after it was examined", True),
    ({"oid": 16500, "comment": "c", "sessions": 1}, "1 session connected after it was examined", True),
])
def test_drop_rechecks_first(recheck, expected, warn):
    outcome, statements = drop_with(recheck)
    assert statements == []
    assert expected in outcome[0] and outcome[1] is warn


def test_drop_refused_for_a_session_that_came_in_between():
    error = _postgres.PostgresError('database "upkeep_verify_x" is being accessed by other users', "55006")
    outcome, _statements = drop_with({"oid": 16500, "comment": "c", "sessions": 0}, error)
    assert "a session connected just before the drop" in outcome[0] and outcome[1] is True


def test_drop_failure_is_a_reason_not_an_exception():
    error = _postgres.PostgresError("permission denied: must be owner of database upkeep_verify_x", "42501")
    outcome, _statements = drop_with({"oid": 16500, "comment": "c", "sessions": 0}, error)
    assert outcome[0] == "Failed to drop it: permission denied: must be owner of database upkeep_verify_x"


def test_inventory_reads_file_time_only_for_marks_without_one():
    legacy = "upkeep.runbooks scratch restore of daily-1 6f1c"
    rows = [
        {"oid": 1, "name": "app", "comment": "the app", "is_template": False, "tablespace": "pg_default",
         "sessions": 3},
        {"oid": 2, "name": "upkeep_verify_new", "comment": scratch_mark(1), "is_template": False,
         "tablespace": "pg_default", "sessions": 0},
        {"oid": 3, "name": "upkeep_verify_old", "comment": legacy, "is_template": False, "tablespace": "pg_default",
         "sessions": 0},
        {"oid": 4, "name": "upkeep_restore_x", "comment": None, "is_template": False, "tablespace": "pg_default",
         "sessions": 0},
        {"oid": 5, "name": "elsewhere", "comment": legacy, "is_template": False, "tablespace": "fast", "sessions": 0},
    ]
    queries = []

    def query_one(conn, query, params=None):
        queries.append(params)
        if "clock_timestamp" in query:
            return {"now": NOW}
        if "pg_stat_file" in query:
            return {"modified": ago(9)}
        return {"size_bytes": 100}

    with mock.patch.object(_postgres, "query_all", return_value=rows), \
            mock.patch.object(_postgres, "query_one", side_effect=query_one):
        now, found = _restore.sweep_inventory(mock.MagicMock(name="conn"))
    by_name = {entry["name"]: entry for entry in found}
    assert now == NOW and sorted(by_name) == ["elsewhere", "upkeep_restore_x", "upkeep_verify_new",
                                              "upkeep_verify_old"]  # 'app' is neither marked nor ours
    assert by_name["upkeep_verify_new"]["created_from"] == "mark"
    assert by_name["upkeep_verify_old"]["created"] == ago(9) and by_name["upkeep_verify_old"]["created_from"] == "file"
    assert {"path": "base/3/PG_VERSION"} in queries and {"path": "base/2/PG_VERSION"} not in queries
    assert by_name["elsewhere"]["created"] is None and "tablespace 'fast'" in by_name["elsewhere"]["age_problem"]
    assert by_name["upkeep_restore_x"]["mark"] is None and by_name["upkeep_restore_x"]["created"] is None


# ------------------------------------------------------------------ the module, backends mocked


class FakeServer:
    def __init__(self, databases, refuse=None):
        self.databases = databases
        self.refuse = refuse or {}
        self.dropped = []
        self.connected = []

    def patches(self):
        return [
            mock.patch.object(mod, "ensure_psycopg"),
            mock.patch.object(mod, "open_connection", side_effect=self.open_connection),
            mock.patch.object(_restore, "sweep_inventory", side_effect=lambda conn: (NOW, list(self.databases))),
            mock.patch.object(_restore, "drop_leftover", side_effect=self.drop),
        ]

    def open_connection(self, params, autocommit=True):
        self.connected.append(params.get("login_db"))
        return mock.MagicMock(name="conn")

    def drop(self, conn, decided):
        if decided["name"] in self.refuse:
            return self.refuse[decided["name"]], True
        self.dropped.append(decided["name"])
        return None


def run(args, server=None, check_mode=False, diff=False):
    server = server or FakeServer([])
    patches = server.patches()
    for patch in patches:
        patch.start()
    try:
        result = run_module_main(mod, dict(CONN, **args), check_mode=check_mode, diff=diff)
    finally:
        for patch in reversed(patches):
            patch.stop()
    assert SECRET not in result.stdout and "Traceback" not in result.stdout
    return result


def sample_server(**kwargs):
    return FakeServer([
        database("upkeep_verify_old", scratch_mark(7)),
        database("upkeep_verify_fresh", scratch_mark(0.5)),
        database("upkeep_verify_busy", scratch_mark(9), sessions=1),
        database("upkeep_restore_x"),
    ], **kwargs)


def names(entries):
    return [entry["name"] for entry in entries]


def test_module_removes_old_keeps_the_rest_and_reports_each():
    server = sample_server()
    result = run({"older_than": "6h", "protected_databases": ["app"]}, server, diff=True)
    assert not result.failed, result
    assert server.dropped == ["upkeep_verify_old"]
    assert result["changed"] is True and result["older_than_seconds"] == 21600
    assert names(result["removed"]) == ["upkeep_verify_old"] and result["would_remove"] == []
    removed = result["removed"][0]
    assert removed["outcome"] == "removed" and removed["age_seconds"] == 7 * 3600 and removed["size_bytes"] == 8110883
    assert "oid" not in removed and "comment" not in removed and "action" not in removed
    assert names(result["kept"]) == ["upkeep_verify_fresh", "upkeep_verify_busy", "upkeep_restore_x"]
    assert all(entry["outcome"] == "kept" and entry["reason"] for entry in result["kept"])
    assert result["diff"] == {
        "before": {"marked_databases": ["upkeep_verify_busy", "upkeep_verify_fresh", "upkeep_verify_old"]},
        "after": {"marked_databases": ["upkeep_verify_busy", "upkeep_verify_fresh"]},
    }
    assert result["msg"].startswith("removed 1 leftover database older than 6h on 127.0.0.1:5432: "
                                    "upkeep_verify_old (7h old, 7.7 MiB); kept 3: ")
    warnings = [str(warning) for warning in result.get("warnings", [])]
    assert len(warnings) == 1 and "upkeep_verify_busy" in warnings[0] and "connected" in warnings[0]


def test_module_check_mode_lists_and_drops_nothing():
    server = sample_server()
    result = run({"older_than": "6h"}, server, check_mode=True, diff=True)
    assert not result.failed, result
    assert server.dropped == []
    assert result["changed"] is True and result["removed"] == []
    assert names(result["would_remove"]) == ["upkeep_verify_old"]
    assert result["would_remove"][0]["outcome"] == "would_remove"
    assert result["msg"].startswith("would remove 1 leftover database older than 6h")
    assert result["diff"]["after"]["marked_databases"] == ["upkeep_verify_busy", "upkeep_verify_fresh"]


def test_module_nothing_to_do_is_not_a_change():
    result = run({"older_than": 0}, FakeServer([database("upkeep_restore_x")]))
    assert not result.failed and result["changed"] is False and result["removed"] == []
    assert result["msg"].startswith("no leftover database older than 0s on 127.0.0.1:5432; kept 1: upkeep_restore_x")
    assert "diff" not in result


def test_module_failed_drop_keeps_the_database_and_warns():
    server = sample_server(refuse={"upkeep_verify_old": "Failed to drop it: permission denied"})
    result = run({"older_than": "6h"}, server)
    assert not result.failed and result["changed"] is False and result["removed"] == []
    kept = [entry for entry in result["kept"] if entry["name"] == "upkeep_verify_old"][0]
    assert kept["reason"] == "Failed to drop it: permission denied" and kept["warn"] is True
    assert any("upkeep_verify_old" in str(warning) for warning in result.get("warnings", []))


def test_module_passes_protected_and_login_db_to_the_plan():
    server = FakeServer([database("shop", scratch_mark(100)), database("maint", scratch_mark(100))])
    result = run({"older_than": 0, "protected_databases": ["shop"], "login_db": "maint"}, server)
    assert result["removed"] == [] and server.dropped == [] and server.connected == ["maint"]


@pytest.mark.parametrize("older_than,expected", [
    ("soon", "older_than must be a number of seconds or a duration"),
    (-1, "older_than must not be negative"),
])
def test_module_refuses_a_bad_limit_before_connecting(older_than, expected):
    server = sample_server()
    result = run({"older_than": older_than}, server)
    assert result.failed and result["msg"].startswith("Failed to sweep scratch databases on 127.0.0.1:5432: ")
    assert expected in result["msg"] and server.connected == []


def test_module_requires_older_than_and_known_marks():
    assert "older_than" in run({}).get("msg", "")
    result = run({"older_than": 0, "marks": ["scratch", "everything"]})
    assert result.failed and "marks" in result["msg"]
    result = run({"older_than": 0, "marks": []})
    assert result.failed and "marks must name at least one kind" in result["msg"]


def test_module_unreachable_server():
    error = _postgres.PostgresConnectError("Failed to connect to PostgreSQL at 127.0.0.1:5432: connection refused")
    server = sample_server()
    with mock.patch.object(mod, "open_connection", side_effect=error):
        patches = [server.patches()[0]] + server.patches()[2:]
        for patch in patches:
            patch.start()
        try:
            result = run_module_main(mod, dict(CONN, older_than="6h"))
        finally:
            for patch in reversed(patches):
                patch.stop()
    assert result.failed
    assert result["msg"] == ("Failed to sweep scratch databases on 127.0.0.1:5432: Failed to connect to PostgreSQL "
                             "at 127.0.0.1:5432: connection refused")


def test_module_unreadable_server():
    server = sample_server()
    patches = server.patches()[:2] + [mock.patch.object(
        _restore, "sweep_inventory", side_effect=_restore.RestoreError("cannot list the databases: permission denied"))]
    for patch in patches:
        patch.start()
    try:
        result = run_module_main(mod, dict(CONN, older_than="6h"))
    finally:
        for patch in reversed(patches):
            patch.stop()
    assert result.failed and "cannot list the databases: permission denied" in result["msg"]
