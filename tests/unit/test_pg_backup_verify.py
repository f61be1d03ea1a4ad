"""Unit tests for plugins/modules/pg_backup_verify.py and the helpers of _restore it relies on.

main() runs in-process with the server and pg_restore mocked at module_utils level; the backup
on disk is real (tests/unit/fake_backup.py), so the checksum level runs for real.
"""

from __future__ import annotations

import datetime
import os
from unittest import mock

import pytest
from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest, _restore
from ansible_collections.upkeep.runbooks.plugins.modules import pg_backup_verify as mod

from tests.unit.fake_backup import BACKUP_ID, TABLES, make_backup
from tests.unit.module_helpers import run_module_main

SECRET = "unit-Verify-Pa55word"
CREATED = datetime.datetime(2026, 11, 23, 2, 15, 4, 118233, tzinfo=datetime.timezone.utc)
CONN = {"login_host": "127.0.0.1", "login_port": 5432, "login_password": SECRET}

# What pg_restore --list would print for the fake backup (12 entries, both tables with data).
TOC = [
    ";",
    "; Archive created at 2026-11-23 02:15:00 UTC",
    ";     TOC Entries: 20",
    ";",
    "6; 2615 16385 SCHEMA - My Schema postgres",
    "215; 1259 16386 TABLE My Schema Tab le postgres",
    "216; 1259 16390 TABLE public orders postgres",
    "217; 1259 16391 SEQUENCE public orders_id_seq postgres",
    "218; 0 0 SEQUENCE OWNED BY public orders_id_seq postgres",
    "219; 2604 16392 DEFAULT public orders id postgres",
    "3363; 0 16386 TABLE DATA My Schema Tab le postgres",
    "3364; 0 16390 TABLE DATA public orders postgres",
    "3365; 0 0 SEQUENCE SET public orders_id_seq postgres",
    "3219; 2606 16392 CONSTRAINT My Schema Tab le Tab le_pkey postgres",
    "3220; 2606 16393 CONSTRAINT public orders orders_pkey postgres",
    "3221; 1259 16394 INDEX public orders_created postgres",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE", "PGSSLROOTCERT"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def backup(tmp_path):
    return make_backup(tmp_path / "backups")


@pytest.fixture
def tools():
    """pg_restore found and --list answering with TOC."""
    with mock.patch.object(_restore, "find_pg_restore", return_value=("/usr/bin/pg_restore", "15.18")), \
            mock.patch.object(_restore, "list_toc", return_value=list(TOC)) as list_toc:
        yield list_toc


class FakeServer:
    """The server side of a restore-level run, mocked at module_utils level."""

    def __init__(self, version_num=150018, can_create=True, scratch=None):
        self.version_num = version_num
        self.can_create = can_create
        self.scratch = scratch
        self.conn = mock.MagicMock(name="conn")
        self.calls = []

    def patches(self):
        version = "%d.%d" % (self.version_num // 10000, self.version_num % 10000)
        return [
            mock.patch.object(mod, "ensure_psycopg"),
            mock.patch.object(mod, "open_connection", side_effect=self.open_connection),
            mock.patch.object(mod, "server_version", return_value=version),
            mock.patch.object(mod, "server_version_num", return_value=self.version_num),
            mock.patch.object(_restore, "can_create_databases", return_value=self.can_create),
            mock.patch.object(_restore, "database_info", side_effect=lambda conn, name: self.scratch),
            mock.patch.object(_restore, "create_marked_database", side_effect=self.create_marked_database),
            mock.patch.object(_restore, "set_comment", side_effect=self.record("set_comment")),
            mock.patch.object(_restore, "drop_database", side_effect=self.record("drop_database")),
            mock.patch.object(_restore, "run_restore", side_effect=self.record("run_restore", 1.5)),
        ]

    def open_connection(self, params, autocommit=True):
        self.calls.append(("open_connection", params.get("login_db")))
        return self.conn

    def create_marked_database(self, conn, name, kind, like=None, **fields):
        comment = _restore.format_mark(kind, CREATED, **fields)
        self.calls.append(("create_database", name, comment))
        return comment

    def record(self, name, value=None):
        def call(*args, **kwargs):
            self.calls.append((name,) + args[1:])
            return value
        return call

    def names(self):
        return [call[0] for call in self.calls]


def run(args, server=None, check_mode=False):
    server = server or FakeServer()
    patches = server.patches()
    for patch in patches:
        patch.start()
    try:
        result = run_module_main(mod, args, check_mode=check_mode)
    finally:
        for patch in reversed(patches):
            patch.stop()
    assert SECRET not in result.stdout
    assert "Traceback" not in result.stdout
    return result


def statuses(result):
    return {check["name"]: check["status"] for check in result["checks"]}


# ------------------------------------------------------------------ arguments


def test_path_is_required():
    result = run({})
    assert result.failed and "path" in result["msg"]


def test_level_must_be_known(backup):
    result = run({"path": backup, "level": "quick"})
    assert result.failed and "level" in result["msg"]


def test_jobs_must_be_positive(backup):
    result = run({"path": backup, "level": "restore", "jobs": 0})
    assert result.failed
    assert result["msg"].startswith("Failed to verify backup") and "jobs must be at least 1" in result["msg"]


def test_sanity_query_names_must_be_unique(backup):
    queries = [{"name": "a", "sql": "SELECT 1"}, {"name": "a", "sql": "SELECT 2"}]
    result = run({"path": backup, "level": "restore", "sanity_queries": queries})
    assert result.failed and "repeated: a" in result["msg"]


def test_sanity_query_needs_sql(backup):
    result = run({"path": backup, "level": "restore", "sanity_queries": [{"name": "a"}]})
    assert result.failed and "sql" in result["msg"]


def test_default_scratch_name():
    assert mod.default_scratch_name("daily-20261123T021500Z") == "upkeep_verify_daily_20261123t021500z"
    long_name = mod.default_scratch_name("a" * 80 + "-20261123T021500Z")
    assert len(long_name) == 63 and long_name.startswith("upkeep_verify_aaa")


# ------------------------------------------------------------------ what is not a backup


def test_missing_manifest_is_not_a_complete_backup(backup):
    os.unlink(os.path.join(backup, "manifest.json"))
    result = run({"path": backup, "level": "checksum"})
    assert result.failed
    assert "not a complete backup" in result["msg"] and backup in result["msg"]
    assert statuses(result) == {"manifest": "fail"}
    assert result["mismatches"][0]["problem"] == "not_a_backup"


def test_partial_directory_is_refused(tmp_path):
    partial = tmp_path / "app" / (".%s.partial" % BACKUP_ID)
    partial.mkdir(parents=True)
    result = run({"path": str(partial)})
    assert result.failed and "partial backup directory" in result["msg"]


def test_nonexistent_path(tmp_path):
    result = run({"path": str(tmp_path / "nothing")})
    assert result.failed and "does not exist" in result["msg"]


def test_invalid_manifest(backup):
    with open(os.path.join(backup, "manifest.json"), "w") as handle:
        handle.write("{not json")
    result = run({"path": backup, "level": "checksum"})
    assert result.failed and "not a complete backup" in result["msg"] and "not valid JSON" in result["msg"]


# ------------------------------------------------------------------ checksum level


def test_checksum_level_passes_without_server_or_tools(backup):
    server = FakeServer()
    with mock.patch.object(_restore, "find_pg_restore") as find:
        result = run({"path": os.path.join(backup, "manifest.json"), "level": "checksum"}, server)
    assert not result.failed, result
    assert result["changed"] is False
    assert statuses(result) == {"manifest": "ok", "checksum": "ok"}
    assert result["backup_id"] == BACKUP_ID and result["database"] == "app"
    assert result["restore_duration_seconds"] is None and result["scratch_database"] is None
    assert result["backup_path"] == backup
    assert not find.called and server.calls == []


def test_flipped_byte_names_the_file(backup):
    dump = os.path.join(backup, "app.dump")
    with open(dump, "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0x01]))
    result = run({"path": backup, "level": "catalog"})
    assert result.failed
    assert "app.dump: sha256" in result["msg"] and "content changed" in result["msg"]
    assert statuses(result)["checksum"] == "fail" and "toc" not in statuses(result)
    assert result["mismatches"][0]["item"] == "app.dump" and result["mismatches"][0]["problem"] == "sha256"


def test_truncated_and_extra_files(backup):
    dump = os.path.join(backup, "app.dump")
    size = os.path.getsize(dump)
    with open(dump, "r+b") as handle:
        handle.truncate(size - 10)
    with open(os.path.join(backup, "stray.txt"), "w") as handle:
        handle.write("x")
    result = run({"path": backup, "level": "checksum"})
    assert result.failed
    problems = {m["item"]: m["problem"] for m in result["mismatches"]}
    assert problems == {"app.dump": "size", "stray.txt": "extra"}
    assert "truncated" in result["msg"] and "2 mismatches" in result["msg"]


def test_missing_dump(backup):
    os.unlink(os.path.join(backup, "app.dump"))
    result = run({"path": backup, "level": "checksum"})
    assert result.failed and "app.dump: listed in the manifest but missing" in result["msg"]


# ------------------------------------------------------------------ catalog level


def test_catalog_level_passes(backup, tools):
    result = run({"path": backup})
    assert not result.failed, result
    assert statuses(result) == {"manifest": "ok", "checksum": "ok", "pg_restore": "ok", "toc": "ok",
                                "toc_entries": "ok", "table_data": "ok"}
    assert result["changed"] is False and result["level"] == "catalog"


def test_catalog_runs_in_check_mode(backup, tools):
    result = run({"path": backup}, check_mode=True)
    assert not result.failed and result["changed"] is False and tools.called


def test_toc_count_mismatch(tmp_path, tools):
    path = make_backup(tmp_path, toc_entries=13)
    result = run({"path": path})
    assert result.failed
    assert statuses(result)["toc_entries"] == "fail"
    assert "12 TOC entries, the manifest says 13" in result["msg"]


def test_table_without_data_entry(tmp_path, tools):
    tables = TABLES + [{"schema": "public", "name": "gone", "rows": 5}]
    path = make_backup(tmp_path, tables=tables)
    result = run({"path": path})
    assert result.failed
    assert "public.gone" in result["msg"] and "no TABLE DATA entry" in result["msg"]
    assert result["mismatches"] == [{
        "check": "table_data", "item": "public.gone", "problem": "no_table_data", "expected": 5, "actual": None,
        "message": "table public.gone (5 rows in the manifest) has no TABLE DATA entry in the dump"}]


def test_unreadable_toc(backup):
    error = _restore.RestoreError("pg_restore --list could not read app.dump (exit 1): pg_restore: error: "
                                  "input file does not appear to be a valid archive")
    with mock.patch.object(_restore, "find_pg_restore", return_value=("/usr/bin/pg_restore", "15.18")), \
            mock.patch.object(_restore, "list_toc", side_effect=error):
        result = run({"path": backup})
    assert result.failed and "valid archive" in result["msg"]
    assert statuses(result)["toc"] == "fail"


def test_no_usable_pg_restore(backup):
    with mock.patch.object(_restore, "find_pg_restore", side_effect=_restore.RestoreError("no usable pg_restore 17")):
        result = run({"path": backup})
    assert result.failed and "no usable pg_restore 17" in result["msg"]
    assert result["msg"].startswith("Failed to verify backup %s of database 'app'" % BACKUP_ID)


# ------------------------------------------------------------------ restore level: safety


def test_refuses_scratch_named_like_the_source(backup, tools):
    server = FakeServer()
    result = run(dict(CONN, path=backup, level="restore", scratch_database="app"), server)
    assert result.failed
    assert "source database" in result["msg"] and "refusing" in result["msg"]
    assert server.calls == []  # decided before connecting anywhere


def test_refuses_existing_scratch_without_marker(backup, tools):
    server = FakeServer(scratch={"name": "upkeep_verify_x", "comment": "important data", "sessions": 0})
    result = run(dict(CONN, path=backup, level="restore", scratch_database="upkeep_verify_x"), server)
    assert result.failed
    assert "'upkeep_verify_x' already exists" in result["msg"] and "not an upkeep.runbooks scratch" in result["msg"]
    assert "important data" in result["msg"]
    assert "drop_database" not in server.names() and "create_database" not in server.names()
    assert result["changed"] is False


def test_refuses_scratch_without_comment(backup, tools):
    server = FakeServer(scratch={"name": "s", "comment": None, "sessions": 0})
    result = run(dict(CONN, path=backup, level="restore", scratch_database="s"), server)
    assert result.failed and "its comment is empty" in result["msg"]
    assert "drop_database" not in server.names()


def test_refuses_marked_scratch_in_use(backup, tools):
    server = FakeServer(scratch={"name": "s", "comment": _restore.SCRATCH_MARKER + "x y", "sessions": 2})
    result = run(dict(CONN, path=backup, level="restore", scratch_database="s"), server)
    assert result.failed and "in use by 2 session" in result["msg"]
    assert "drop_database" not in server.names()


def test_reuses_marked_leftover(backup, tools):
    server = FakeServer(scratch={"name": "s", "comment": _restore.SCRATCH_MARKER + "x y", "sessions": 0})
    with mock.patch.object(mod.Verification, "inspect_restored", return_value=True):
        result = run(dict(CONN, path=backup, level="restore", scratch_database="s"), server)
    assert not result.failed, result
    assert server.names().count("drop_database") == 2  # the leftover, then our own scratch at the end
    assert server.names().index("drop_database") < server.names().index("create_database")


def test_refuses_older_server(backup, tools):
    server = FakeServer(version_num=140010)
    result = run(dict(CONN, path=backup, level="restore"), server)
    assert result.failed and "runs PostgreSQL 14.10, older than the pg_dump 15.18" in result["msg"]
    assert "create_database" not in server.names()


def test_refuses_role_without_createdb(backup, tools):
    server = FakeServer(can_create=False)
    result = run(dict(CONN, path=backup, level="restore", login_user="reader"), server)
    assert result.failed and "'reader' may not create databases" in result["msg"]


def test_refuses_scratch_equal_to_login_db(backup, tools):
    result = run(dict(CONN, path=backup, level="restore", scratch_database="postgres"))
    assert result.failed and "also login_db" in result["msg"]


def test_check_mode_predicts_and_creates_nothing(backup, tools):
    server = FakeServer()
    result = run(dict(CONN, path=backup, level="restore"), server, check_mode=True)
    assert not result.failed, result
    assert result["changed"] is True
    assert result["scratch_database"] == "upkeep_verify_daily_20261123t021500z"
    assert result["restore_duration_seconds"] is None
    assert "would create scratch database" in result["checks"][-1]["message"]
    assert set(server.names()) == {"open_connection"}


def test_unreachable_server(backup, tools):
    server = FakeServer()
    error = mod.PostgresError("Failed to connect to PostgreSQL at 127.0.0.1:5432: connection refused")
    with mock.patch.object(mod, "open_connection", side_effect=error):
        patches = server.patches()[2:]
        for patch in patches:
            patch.start()
        try:
            result = run_module_main(mod, dict(CONN, path=backup, level="restore"))
        finally:
            for patch in patches:
                patch.stop()
    assert result.failed and "connection refused" in result["msg"]
    assert statuses(result)["server"] == "fail"


# ------------------------------------------------------------------ restore level: flow


def test_restore_flow_and_cleanup(backup, tools):
    server = FakeServer()
    with mock.patch.object(mod.Verification, "inspect_restored", return_value=True):
        result = run(dict(CONN, path=backup, level="restore", jobs=3), server)
    assert not result.failed, result
    assert result["changed"] is True and result["restore_duration_seconds"] == 1.5 and result["kept"] is False
    assert server.names() == ["open_connection", "create_database", "run_restore", "drop_database"]
    created = [call for call in server.calls if call[0] == "create_database"][0]
    assert created[1] == "upkeep_verify_daily_20261123t021500z"
    argv = _restore.restore_argv("/usr/bin/pg_restore", created[1], jobs=3, no_owner=True, no_privileges=True)
    assert "--no-owner" in argv and "--no-privileges" in argv and "--exit-on-error" in argv and "--jobs=3" in argv
    assert statuses(result)["cleanup"] == "ok"


def test_marker_comment_names_backup(backup, tools):
    server = FakeServer()
    with mock.patch.object(mod.Verification, "inspect_restored", return_value=True):
        run(dict(CONN, path=backup, level="restore"), server)
    name, comment = [call for call in server.calls if call[0] == "create_database"][0][1:3]
    assert name == "upkeep_verify_daily_20261123t021500z"
    assert comment.startswith("upkeep.runbooks scratch restore of {")  # the prefix every version recognises
    mark = _restore.parse_mark(comment)
    assert (mark["kind"], mark["format"], mark["backup_id"], mark["source"]) == ("scratch", "json", BACKUP_ID, "app")
    assert mark["created"] == CREATED and mark["kept"] is False and len(mark["run_id"]) == 36


def test_keep_leaves_the_scratch(backup, tools):
    server = FakeServer()
    with mock.patch.object(mod.Verification, "inspect_restored", return_value=True):
        result = run(dict(CONN, path=backup, level="restore", keep=True), server)
    assert result["kept"] is True and "drop_database" not in server.names()
    # The mark now says it was kept on purpose (a sweep leaves it alone), with its creation time unchanged.
    name, comment = [call for call in server.calls if call[0] == "set_comment"][-1][1:]
    mark = _restore.parse_mark(comment)
    assert name == "upkeep_verify_daily_20261123t021500z" and mark["kept"] is True and mark["created"] == CREATED
    assert mark["run_id"] == _restore.parse_mark(server.calls[1][2])["run_id"]


def test_reuses_a_leftover_with_a_new_mark(backup, tools):
    old = _restore.format_mark("scratch", CREATED, backup_id="x", run_id="r", source="app")
    server = FakeServer(scratch={"name": "s", "comment": old, "sessions": 0})
    with mock.patch.object(mod.Verification, "inspect_restored", return_value=True):
        result = run(dict(CONN, path=backup, level="restore", scratch_database="s"), server)
    assert not result.failed, result
    assert server.names().index("drop_database") < server.names().index("create_database")


def test_refuses_a_pg_restore_temporary_as_scratch(backup, tools):
    mark = _restore.format_mark("restore", CREATED, backup_id="x", run_id="r", target="app")
    server = FakeServer(scratch={"name": "s", "comment": mark, "sessions": 0})
    result = run(dict(CONN, path=backup, level="restore", scratch_database="s"), server)
    assert result.failed and "not an upkeep.runbooks scratch" in result["msg"]
    assert "drop_database" not in server.names()


def test_failed_restore_fails_and_drops_scratch(backup, tools):
    server = FakeServer()
    failure = _restore.RestoreError('pg_restore exited 1: pg_restore: error: could not execute query: ERROR:  x')
    patches = server.patches()
    patches[-1] = mock.patch.object(_restore, "run_restore", side_effect=failure)
    for patch in patches:
        patch.start()
    try:
        result = run_module_main(mod, dict(CONN, path=backup, level="restore"))
    finally:
        for patch in reversed(patches):
            patch.stop()
    assert result.failed
    assert "restoring app.dump failed" in result["msg"]
    assert result["restore_duration_seconds"] is None
    assert "drop_database" in server.names()
    assert statuses(result)["restore"] == "fail" and statuses(result)["cleanup"] == "ok"


def test_scratch_that_refuses_connections_is_a_failed_check_and_still_dropped(backup, tools):
    server = FakeServer()
    real_open = server.open_connection

    def open_connection(params, autocommit=True):
        if params.get("login_db") != "postgres":
            raise mod.PostgresError("Failed to connect to PostgreSQL at 127.0.0.1:5432: too many clients")
        return real_open(params, autocommit)

    server.open_connection = open_connection
    result = run(dict(CONN, path=backup, level="restore"), server)
    assert result.failed and "cannot connect to scratch database" in result["msg"]
    assert statuses(result)["row_counts"] == "fail" and statuses(result)["cleanup"] == "ok"
    assert server.names()[-1] == "drop_database"


# ------------------------------------------------------------------ _restore helpers


def test_missing_table_data_handles_spaces_and_newlines():
    entries = _restore.toc_entries(TOC)
    tables = [{"schema": "My Schema", "name": "Tab le"}, {"schema": "public", "name": "orders"},
              {"schema": "public", "name": "order"}, {"schema": "My", "name": "Schema Tab le"}]
    missing = _restore.missing_table_data(entries, tables)
    assert [t["name"] for t in missing] == ["order"]  # the last one is ambiguous in --list output and matches
    newline = ["1; 0 1 TABLE DATA public line one two postgres"]
    assert _restore.missing_table_data(newline, [{"schema": "public", "name": "line\none"}]) == []


def test_toc_entries_count():
    assert len(_restore.toc_entries(TOC)) == 12
    assert _restore.toc_entries(["", "  ", "; x", "  ;y", "1; 2 3 TABLE a b c"]) == ["1; 2 3 TABLE a b c"]


def test_version_helpers():
    assert _restore.version_num("15.18") == 150018
    assert _restore.version_num("9.6.24") == 90624
    assert _restore.version_num(160002) == 160002
    assert _restore.major_of("16.1") == 16 and _restore.major_of(90624) == 906
    assert _restore.major_label("9.6.24") == "9.6"
    with pytest.raises(_restore.RestoreError):
        _restore.version_num("unknown")


def test_conninfo_dbname_quotes():
    assert _restore.conninfo_dbname("a b") == "dbname='a b'"
    assert _restore.conninfo_dbname("it's\\x=y") == "dbname='it\\'s\\\\x=y'"


def test_client_env_keeps_password_off_argv():
    params = {"login_host": "127.0.0.1", "login_port": 5433, "login_user": "u", "login_password": SECRET,
              "login_db": "postgres", "ssl_mode": "require"}
    env = _restore.client_env(params)
    assert env["PGPASSWORD"] == SECRET and env["PGHOST"] == "127.0.0.1" and env["PGPORT"] == "5433"
    assert "PGDATABASE" not in env
    argv = _restore.restore_argv("/usr/bin/pg_restore", "db", jobs=2, role="r")
    assert SECRET not in " ".join(argv) and "--role=r" in argv


def test_locate_dump_variants(tmp_path):
    for compression, name, external in (("gzip", "app.dump", None), ("zstd", "app.dump.zst", "zstd"),
                                         ("none", "app.dump", None)):
        path = make_backup(tmp_path / compression, compression=compression)
        root, manifest = _restore.load_backup(path)
        dump = _restore.locate_dump(root, manifest)
        assert (dump.relpath, dump.kind, dump.external) == (name, "file", external)
    manifest = {"database": "x y", "format": "directory", "compression": "gzip",
                "files": [{"path": "x%20y.dir/toc.dat"}, {"path": "x%20y.dir/3363.dat.gz"}]}
    dump = _restore.locate_dump("/b", manifest)
    assert (dump.relpath, dump.kind, dump.external) == ("x%20y.dir", "directory", None)
    manifest["files"] = [{"path": "globals.sql"}]
    with pytest.raises(_restore.RestoreError, match="no directory-format dump"):
        _restore.locate_dump("/b", manifest)


def test_describe_file_problem():
    assert _restore.describe_file_problem({"path": "a", "problem": "missing", "expected": 1, "actual": None}) == (
        "a: listed in the manifest but missing")
    assert "not listed" in _restore.describe_file_problem({"path": "b", "problem": "extra"})


def test_split_setting_list():
    assert _restore.split_setting_list('"$user", public') == ["$user", "public"]
    assert _restore.split_setting_list('"My ""Schema""", x') == ['My "Schema"', "x"]
    assert _restore.split_setting_list("") == []


def test_summarize_stderr_masks_secret():
    text = ("pg_restore: while PROCESSING TOC:\npg_restore: error: could not execute query: ERROR:  role \"ghost\" "
            "does not exist %s\nCommand was: ALTER TABLE public.t OWNER TO ghost;\n" % SECRET)
    summary = _restore.summarize_stderr(text, secrets=[SECRET])
    assert SECRET not in summary and 'role "ghost" does not exist' in summary and "Command was:" in summary


def test_manifest_written_by_helper_is_valid(backup):
    manifest = _manifest.load_manifest(backup)
    assert manifest["backup_id"] == BACKUP_ID
