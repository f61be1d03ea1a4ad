"""Unit tests for plugins/modules/pg_restore.py: argument errors and safety refusals, backends mocked.

The backup on disk is real (tests/unit/fake_backup.py) so the checksum step runs for real; the
server, pg_restore and every database-level statement are mocked at module_utils level.
"""

from __future__ import annotations

import datetime
import os
from unittest import mock

import pytest
from ansible_collections.upkeep.runbooks.plugins.module_utils import _restore
from ansible_collections.upkeep.runbooks.plugins.modules import pg_restore as mod

from tests.unit.fake_backup import BACKUP_ID, make_backup
from tests.unit.module_helpers import run_module_main

SECRET = "unit-Restore-Pa55word"
CREATED = datetime.datetime(2026, 11, 23, 2, 15, 4, 118233, tzinfo=datetime.timezone.utc)
CONN = {"login_host": "127.0.0.1", "login_port": 5432, "login_password": SECRET}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE", "PGSSLROOTCERT"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def backup(tmp_path):
    return make_backup(tmp_path / "backups")


def existing(name="app", objects=5, **extra):
    info = {"oid": 16384, "name": name, "comment": "the app", "owner": "app", "encoding": "UTF8",
            "lc_collate": "C", "lc_ctype": "C", "locale_provider": "c", "icu_locale": None, "connection_limit": -1,
            "allow_connections": True, "is_template": False, "has_acl": True, "size_bytes": 7918095, "sessions": 1,
            "objects": objects}
    info.update(extra)
    return info


class FakeServer:
    """Records every database-level call the module makes; ``databases`` maps name -> info."""

    def __init__(self, databases=None, version_num=150018, can_create=True, restore_error=None, swap_error=None):
        self.databases = dict(databases or {})
        self.version_num = version_num
        self.can_create = can_create
        self.restore_error = restore_error
        self.swap_error = swap_error
        self.calls = []

    def names(self):
        return [call[0] for call in self.calls]

    def patches(self):
        version = "%d.%d" % (self.version_num // 10000, self.version_num % 10000)
        return [
            mock.patch.object(mod, "ensure_psycopg"),
            mock.patch.object(mod, "open_connection", side_effect=self.open_connection),
            mock.patch.object(mod, "server_version", return_value=version),
            mock.patch.object(mod, "server_version_num", return_value=self.version_num),
            mock.patch.object(_restore, "find_pg_restore", return_value=("/usr/bin/pg_restore", "15.18")),
            mock.patch.object(_restore, "can_create_databases", return_value=self.can_create),
            mock.patch.object(_restore, "database_info", side_effect=self.database_info),
            mock.patch.object(_restore, "object_count", side_effect=self.object_count),
            mock.patch.object(_restore, "create_marked_database", side_effect=self.create_marked_database),
            mock.patch.object(_restore, "copy_database_properties", side_effect=self.record("copy_properties")),
            mock.patch.object(_restore, "run_restore", side_effect=self.run_restore),
            mock.patch.object(_restore, "set_allow_connections", side_effect=self.record("allow_connections")),
            mock.patch.object(_restore, "terminate_sessions", side_effect=self.record("terminate_sessions")),
            mock.patch.object(_restore, "swap_databases", side_effect=self.swap_databases),
            mock.patch.object(_restore, "drop_database", side_effect=self.drop_database),
            mock.patch.object(_restore, "set_comment", side_effect=self.record("set_comment")),
        ]

    def record(self, name):
        def call(conn, *args):
            self.calls.append((name,) + args)
        return call

    def open_connection(self, params, autocommit=True):
        self.calls.append(("open_connection", params.get("login_db")))
        return mock.MagicMock(name="conn")

    def database_info(self, conn, name):
        return dict(self.databases[name]) if name in self.databases else None

    def object_count(self, params, name):
        return self.databases[name]["objects"]

    def create_marked_database(self, conn, name, kind, like=None, **fields):
        comment = _restore.format_mark(kind, CREATED, **fields)
        self.calls.append(("create_database", name, comment, like))
        self.databases[name] = existing(name, objects=0, comment=comment)
        return comment

    def run_restore(self, argv, dump, workspace, env, secrets=None):
        self.calls.append(("run_restore", argv, env))
        if self.restore_error:
            raise _restore.RestoreError(self.restore_error)
        return 2.25

    def swap_databases(self, conn, target, replacement, old_name=None):
        self.calls.append(("swap_databases", target, replacement, old_name))
        if self.swap_error:
            raise _restore.RestoreError(self.swap_error)
        if old_name:
            self.databases[old_name] = self.databases.pop(target)
        self.databases[target] = self.databases.pop(replacement)

    def drop_database(self, conn, name, version_num):
        self.calls.append(("drop_database", name))
        self.databases.pop(name, None)


def run(args, server=None, check_mode=False, diff=False):
    server = server or FakeServer()
    patches = server.patches()
    for patch in patches:
        patch.start()
    try:
        result = run_module_main(mod, args, check_mode=check_mode, diff=diff)
    finally:
        for patch in reversed(patches):
            patch.stop()
    assert SECRET not in result.stdout
    assert "Traceback" not in result.stdout
    return result


# ------------------------------------------------------------------ arguments


def test_path_is_required():
    result = run({})
    assert result.failed and "path" in result["msg"]


def test_jobs_must_be_positive(backup):
    result = run(dict(CONN, path=backup, jobs=0))
    assert result.failed and "jobs must be at least 1" in result["msg"]


def test_empty_target_database(backup):
    result = run(dict(CONN, path=backup, target_database=""))
    assert result.failed and "target_database must not be empty" in result["msg"]


def test_target_equal_to_login_db(backup):
    server = FakeServer()
    result = run(dict(CONN, path=backup, target_database="postgres"), server)
    assert result.failed and "also login_db" in result["msg"]
    assert server.calls == []


def test_password_is_masked_in_invocation(backup):
    result = run(dict(CONN, path=backup, target_database="fresh"))
    assert result["invocation"]["module_args"]["login_password"] != SECRET


# ------------------------------------------------------------------ nothing is touched for a bad backup


def test_missing_manifest(backup):
    os.unlink(os.path.join(backup, "manifest.json"))
    server = FakeServer()
    result = run(dict(CONN, path=backup), server)
    assert result.failed and "not a complete backup" in result["msg"]
    assert server.calls == []


def test_checksum_mismatch_fails_before_touching_anything(backup):
    with open(os.path.join(backup, "app.dump"), "r+b") as handle:
        handle.seek(7)
        handle.write(b"X")
    server = FakeServer(databases={"app": existing()})
    result = run(dict(CONN, path=backup, replace=True, confirm="app"), server)
    assert result.failed
    assert "checksum verification failed, nothing was changed" in result["msg"] and "app.dump: sha256" in result["msg"]
    assert server.calls == []  # not even connected
    assert result["changed"] is False


# ------------------------------------------------------------------ server and target refusals


def test_refuses_older_server(backup):
    server = FakeServer(version_num=140011)
    result = run(dict(CONN, path=backup, target_database="fresh"), server)
    assert result.failed
    assert "runs PostgreSQL 14.11, older than the pg_dump 15.18" in result["msg"]
    assert "PostgreSQL 15 or newer" in result["msg"]
    assert "create_database" not in server.names()


def test_newer_server_is_fine(backup):
    server = FakeServer(version_num=170002)
    result = run(dict(CONN, path=backup, target_database="fresh"), server)
    assert not result.failed, result


def test_refuses_without_createdb(backup):
    result = run(dict(CONN, path=backup, login_user="app"), FakeServer(can_create=False))
    assert result.failed and "may not create databases" in result["msg"]


def test_refuses_non_empty_target_without_replace(backup):
    server = FakeServer(databases={"app": existing(objects=42)})
    result = run(dict(CONN, path=backup), server)
    assert result.failed
    assert "into database 'app' on 127.0.0.1:5432" in result["msg"]
    assert "exists and holds 42 objects" in result["msg"] and "replace=true and confirm='app'" in result["msg"]
    assert "create_database" not in server.names()


def test_refuses_replace_with_wrong_confirm(backup):
    server = FakeServer(databases={"app": existing()})
    result = run(dict(CONN, path=backup, replace=True, confirm="App"), server)
    assert result.failed and "confirm set to its exact name 'app' (got 'App')" in result["msg"]
    assert "create_database" not in server.names()


def test_refuses_replace_without_confirm(backup):
    server = FakeServer(databases={"app": existing()})
    result = run(dict(CONN, path=backup, replace=True), server)
    assert result.failed and "(got none)" in result["msg"]


def test_refuses_database_that_allows_no_connections(backup):
    server = FakeServer(databases={"app": existing(allow_connections=False, objects=None)})
    result = run(dict(CONN, path=backup), server)
    assert result.failed and "does not allow connections" in result["msg"]


def test_refuses_template(backup):
    server = FakeServer(databases={"tpl": existing("tpl", objects=0, is_template=True)})
    result = run(dict(CONN, path=backup, target_database="tpl", replace=True, confirm="tpl"), server)
    assert result.failed and "template database" in result["msg"]


def test_missing_target_with_create_false(backup):
    result = run(dict(CONN, path=backup, create=False))
    assert result.failed and "does not exist and create is false" in result["msg"]


# ------------------------------------------------------------------ check mode and diff


def test_check_mode_changes_nothing(backup):
    server = FakeServer(databases={"app": existing()})
    result = run(dict(CONN, path=backup, replace=True, confirm="app"), server, check_mode=True, diff=True)
    assert not result.failed, result
    assert result["changed"] is True and result["replaced"] is True and result["created"] is False
    assert result["duration_seconds"] is None
    assert result["diff"] == {"before": {"database": "app", "exists": True, "size_bytes": 7918095},
                              "after": {"database": "app", "exists": True, "size_bytes": None}}
    assert set(server.names()) == {"open_connection"}


def test_check_mode_still_refuses(backup):
    server = FakeServer(databases={"app": existing()})
    result = run(dict(CONN, path=backup), server, check_mode=True)
    assert result.failed and "replace=true" in result["msg"]


# ------------------------------------------------------------------ the restore itself


def test_new_target_is_restored_under_a_temporary_name_then_renamed(backup):
    server = FakeServer()
    result = run(dict(CONN, path=backup, jobs=3, no_owner=True), server, diff=True)
    assert not result.failed, result
    assert result["changed"] is True and result["created"] is True and result["replaced"] is False
    assert result["backup_id"] == BACKUP_ID and result["target_database"] == "app" and result["database"] == "app"
    assert result["restore_seconds"] == 2.25 and result["duration_seconds"] >= 0
    names = server.names()
    assert names == ["open_connection", "create_database", "run_restore", "swap_databases", "set_comment"]
    _, temp, comment, like = server.calls[1]
    assert temp.startswith("upkeep_restore_") and like is None
    mark = _restore.parse_mark(comment)
    assert comment.startswith("upkeep.runbooks restore in progress of {")
    assert (mark["kind"], mark["format"], mark["backup_id"], mark["target"]) == ("restore", "json", BACKUP_ID, "app")
    assert temp == "upkeep_restore_" + mark["run_id"][:16] and len(mark["run_id"]) == 32
    argv, env = server.calls[2][1:]
    assert "--exit-on-error" in argv and "--jobs=3" in argv and "--no-owner" in argv
    assert "--dbname=dbname='%s'" % temp in argv
    assert SECRET not in " ".join(argv) and env["PGPASSWORD"] == SECRET
    assert server.calls[3] == ("swap_databases", "app", temp, None)
    assert server.calls[4] == ("set_comment", "app", None)
    assert result["diff"]["before"]["exists"] is False and result["diff"]["after"]["exists"] is True


def test_owner_kept_by_default(backup):
    server = FakeServer()
    run(dict(CONN, path=backup), server)
    argv = [call for call in server.calls if call[0] == "run_restore"][0][1]
    assert "--no-owner" not in argv and "--no-privileges" not in argv


def test_replace_swaps_and_drops_the_old_database(backup):
    server = FakeServer(databases={"app": existing()})
    result = run(dict(CONN, path=backup, replace=True, confirm="app"), server)
    assert not result.failed, result
    assert result["replaced"] is True and result["old_database_dropped"] is True
    names = server.names()
    assert names == ["open_connection", "create_database", "copy_properties", "run_restore", "allow_connections",
                     "terminate_sessions", "swap_databases", "set_comment", "drop_database"]
    temp = server.calls[1][1]
    assert server.calls[1][3]["owner"] == "app"  # created like the database it replaces
    assert server.calls[2] == ("copy_properties", "app", temp)
    assert server.calls[4] == ("allow_connections", "app", False)
    assert server.calls[5] == ("terminate_sessions", "app")  # only the old database's sessions
    old = server.calls[6][3]
    assert old.startswith("upkeep_replaced_") and server.calls[8] == ("drop_database", old)
    assert server.calls[7] == ("set_comment", "app", "the app")


def test_existing_empty_target_needs_no_confirm(backup):
    server = FakeServer(databases={"app": existing(objects=0)})
    result = run(dict(CONN, path=backup), server)
    assert not result.failed, result
    assert result["replaced"] is True


def test_failed_restore_leaves_the_original(backup):
    error = 'pg_restore exited 1: pg_restore: error: could not execute query: ERROR:  role "ghost" does not exist'
    server = FakeServer(databases={"app": existing()}, restore_error=error)
    result = run(dict(CONN, path=backup, replace=True, confirm="app"), server)
    assert result.failed
    assert 'role "ghost" does not exist' in result["msg"]
    assert "the temporary database was dropped and database 'app' was left as it was" in result["msg"]
    assert "swap_databases" not in server.names() and "allow_connections" not in server.names()
    temp = server.calls[1][1]
    assert ("drop_database", temp) in server.calls and ("drop_database", "app") not in server.calls
    assert result["changed"] is True  # a database was created and dropped
    assert set(server.databases) == {"app"}


def test_failed_swap_restores_connections_and_drops_the_copy(backup):
    server = FakeServer(databases={"app": existing()}, swap_error="cannot rename database: in use")
    result = run(dict(CONN, path=backup, replace=True, confirm="app"), server)
    assert result.failed and "database 'app' was left as it was" in result["msg"]
    assert ("allow_connections", "app", True) in server.calls
    temp = server.calls[1][1]
    assert ("drop_database", temp) in server.calls and ("drop_database", "app") not in server.calls


def test_old_database_that_cannot_be_dropped_is_a_warning(backup, capsys):
    server = FakeServer(databases={"app": existing()})
    real_drop = server.drop_database

    def drop(conn, name, version_num):
        if name.startswith("upkeep_replaced_"):
            raise _restore.RestoreError("cannot drop database '%s': permission denied" % name)
        return real_drop(conn, name, version_num)

    server.drop_database = drop
    result = run(dict(CONN, path=backup, replace=True, confirm="app"), server)
    assert not result.failed, result
    assert result["replaced"] is True and result["old_database_dropped"] is False
    # ansible-core returns module warnings in the result, or prints them itself once a
    # Display has been set up in the process (another test may have done so first).
    shown = str(result.get("warnings", "")) + capsys.readouterr().err
    assert "still there as 'upkeep_replaced_" in shown

