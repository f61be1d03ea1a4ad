"""Unit tests for plugins/modules/pg_backup.py: main() with PostgreSQL and the client programs mocked."""

from __future__ import annotations

import os
from unittest import mock

import pytest
from ansible_collections.upkeep.runbooks.plugins.module_utils import _pg_tools, _postgres
from ansible_collections.upkeep.runbooks.plugins.modules import pg_backup as mod

from tests.unit.module_helpers import run_module_main

SECRET = "unit-test-Pa55word"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("PG"):
            monkeypatch.delenv(key, raising=False)


def fake_bindir(tmp_path, name="bin", tools=("pg_dump", "pg_restore", "pg_dumpall")):
    bindir = tmp_path / name
    bindir.mkdir()
    for tool in tools:
        path = bindir / tool
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    return str(bindir)


class FakeServer:
    """Answers query_one() like a PostgreSQL server of the given version."""

    def __init__(self, version_num=150008, db_size=10 * 1024 * 1024):
        self.version_num = version_num
        self.db_size = db_size
        self.conn = mock.MagicMock(name="connection")

    def query_one(self, conn, query, params=None):
        text = str(query)
        if "server_version_num" in text:
            major, minor = divmod(self.version_num, 10000)
            return {"num": self.version_num, "version": "%d.%d (Debian)" % (major, minor), "in_recovery": False}
        if "pg_database_size" in text:
            return {"size": self.db_size}
        raise AssertionError("unexpected query in a unit test: %s" % text)


@pytest.fixture
def server(monkeypatch):
    fake = FakeServer()
    monkeypatch.setattr(_postgres, "open_connection", lambda params, autocommit=True: fake.conn)
    monkeypatch.setattr(mod, "query_one", fake.query_one)
    return fake


def args(tmp_path, **overrides):
    values = dict(login_host="127.0.0.1", login_password=SECRET, database="app",
                  backup_dir=str(tmp_path / "backups"))
    values.update(overrides)
    return values


def run(tmp_path, check_mode=True, **overrides):
    res = run_module_main(mod, args(tmp_path, **overrides), check_mode=check_mode)
    assert SECRET not in res.stdout
    assert "Traceback" not in res.stdout
    return res


# ------------------------------------------------------------------ argument errors


@pytest.mark.parametrize("overrides, message", [
    ({"label": "Daily"}, "Failed to validate label: 'Daily' may contain only lower-case letters"),
    ({"label": "a b"}, "Failed to validate label"),
    ({"jobs": 2}, "Failed to validate jobs: parallel dumps (jobs=2) need format=directory"),
    ({"jobs": 0, "format": "directory"}, "Failed to validate jobs: must be 1 or more"),
    ({"compression_level": 0}, "Failed to validate compression_level: gzip levels are 1 to 9, got 0"),
    ({"compression_level": 20, "compression": "zstd"}, "zstd levels are 1 to 19, got 20"),
    ({"compression_level": 3, "compression": "none"}, "not allowed with compression=none"),
    ({"min_size": -1}, "Failed to validate min_size"),
    ({"database": ""}, "Failed to validate database"),
    ({"format": "tar"}, "value of format must be one of: custom, directory"),
])
def test_argument_errors(tmp_path, overrides, message):
    with mock.patch.object(_postgres, "open_connection") as opened:
        res = run(tmp_path, **overrides)
    assert res.failed and message in res["msg"], res["msg"]
    opened.assert_not_called()
    assert not (tmp_path / "backups").exists()


def test_database_and_backup_dir_are_required(tmp_path):
    res = run_module_main(mod, {"login_host": "h"})
    assert res.failed and "database" in res["msg"] and "backup_dir" in res["msg"]


# ------------------------------------------------------------------ pg_dump versions


def test_refuses_pg_dump_older_than_server(tmp_path, server, monkeypatch):
    server.version_num = 160002
    bindir = fake_bindir(tmp_path)
    monkeypatch.setattr(_pg_tools, "tool_version", lambda path, env=None: ("15.8", 150008))
    for check_mode in (True, False):
        res = run(tmp_path, check_mode=check_mode, pg_bin_dir=bindir)
        assert res.failed
        assert res["msg"] == (
            "Failed to find a usable pg_dump for PostgreSQL 16.2: pg_dump 15.8 in %s is older than the server "
            "(PostgreSQL 16): a dump needs pg_dump 16 or newer" % bindir)
    assert not (tmp_path / "backups").exists()


def test_discovery_takes_first_new_enough_pg_dump(tmp_path, server, monkeypatch):
    server.version_num = 160002
    dirs = [fake_bindir(tmp_path, name) for name in ("path15", "config17", "debian16")]
    versions = {dirs[0]: ("15.8", 150008), dirs[1]: ("17.1", 170001), dirs[2]: ("16.4", 160004)}
    monkeypatch.setattr(_pg_tools, "candidate_bindirs", lambda env=None: list(dirs))
    monkeypatch.setattr(_pg_tools, "tool_version", lambda path, env=None: versions[os.path.dirname(path)])
    res = run(tmp_path)
    assert not res.failed, res
    assert "with pg_dump 17.1" in res["notes"][0]


def test_no_usable_pg_dump_lists_what_was_tried(tmp_path, server, monkeypatch):
    server.version_num = 170000
    dirs = [fake_bindir(tmp_path, "old"), fake_bindir(tmp_path, "partial", tools=("pg_dump",))]
    monkeypatch.setattr(_pg_tools, "candidate_bindirs", lambda env=None: list(dirs))
    monkeypatch.setattr(_pg_tools, "tool_version", lambda path, env=None: ("15.8", 150008))
    res = run(tmp_path)
    assert res.failed
    assert "no usable pg_dump 17 or newer found" in res["msg"]
    assert "%s (pg_dump 15.8)" % dirs[0] in res["msg"] and "%s (no pg_restore)" % dirs[1] in res["msg"]
    assert "install postgresql-client-17 or set pg_bin_dir" in res["msg"]


def test_globals_needs_pg_dumpall(tmp_path, server, monkeypatch):
    bindir = fake_bindir(tmp_path, tools=("pg_dump", "pg_restore"))
    monkeypatch.setattr(_pg_tools, "tool_version", lambda path, env=None: ("15.8", 150008))
    res = run(tmp_path, pg_bin_dir=bindir, globals=True)
    assert res.failed and "(no pg_dumpall)" in res["msg"]


def test_zstd_directory_needs_pg_dump_16(tmp_path, server, monkeypatch):
    bindir = fake_bindir(tmp_path)
    monkeypatch.setattr(_pg_tools, "tool_version", lambda path, env=None: ("15.8", 150008))
    res = run(tmp_path, pg_bin_dir=bindir, format="directory", compression="zstd")
    assert res.failed and "compression=zstd with format=directory needs pg_dump 16 or newer" in res["msg"]
    monkeypatch.setattr(_pg_tools, "tool_version", lambda path, env=None: ("16.4", 160004))
    res = run(tmp_path, pg_bin_dir=bindir, format="directory", compression="zstd")
    assert not res.failed, res


def test_zstd_program_missing(tmp_path, server, monkeypatch):
    bindir = fake_bindir(tmp_path)
    monkeypatch.setattr(_pg_tools, "tool_version", lambda path, env=None: ("15.8", 150008))
    monkeypatch.setattr(mod.shutil, "which", lambda name, *a, **kw: None)
    res = run(tmp_path, pg_bin_dir=bindir, compression="zstd")
    assert res.failed and res["msg"].startswith("Failed to find zstd: compression=zstd needs the zstd program")


# ------------------------------------------------------------------ check mode


def test_check_mode_predicts_and_touches_nothing(tmp_path, server, monkeypatch):
    bindir = fake_bindir(tmp_path)
    monkeypatch.setattr(_pg_tools, "tool_version", lambda path, env=None: ("15.8", 150008))
    res = run(tmp_path, pg_bin_dir=bindir, database='My "DB"', label="daily")
    assert not res.failed, res
    assert res["changed"] is True
    assert res["backup_id"].startswith("daily-") and res["backup_id"].endswith("Z")
    assert res["path"] == os.path.join(str(tmp_path / "backups"), "My%20%22DB%22", res["backup_id"])
    assert res["manifest_path"] == os.path.join(res["path"], "manifest.json")
    assert res["size"] is None and res["toc_entries"] is None
    assert res["notes"][0].startswith("check mode: would dump database 'My \"DB\"' (10.0 MiB on the server)")
    assert not (tmp_path / "backups").exists()
    server.conn.execute.assert_not_called()  # no transaction, no snapshot in check mode


def test_check_mode_needs_free_space(tmp_path, server, monkeypatch):
    bindir = fake_bindir(tmp_path)
    monkeypatch.setattr(_pg_tools, "tool_version", lambda path, env=None: ("15.8", 150008))
    monkeypatch.setattr(mod, "_free_bytes", lambda path: 1024)
    res = run(tmp_path, pg_bin_dir=bindir)
    assert res.failed
    assert "Failed to check backup_dir %s: 1.0 KiB free on its file system, less than the 10.0 MiB" % (
        tmp_path / "backups") in res["msg"]


def test_check_mode_needs_writable_dir(tmp_path, server, monkeypatch):
    bindir = fake_bindir(tmp_path)
    monkeypatch.setattr(_pg_tools, "tool_version", lambda path, env=None: ("15.8", 150008))
    real_access = os.access
    monkeypatch.setattr(mod.os, "access", lambda path, mode: path != str(tmp_path) and real_access(path, mode))
    res = run(tmp_path, pg_bin_dir=bindir)
    assert res.failed and "is not writable by this user" in res["msg"]


def test_connection_failure_is_reported(tmp_path, monkeypatch):
    def refuse(params, autocommit=True):
        raise _postgres.PostgresConnectError("Failed to connect to PostgreSQL at 127.0.0.1:5432: connection refused")

    monkeypatch.setattr(_postgres, "open_connection", refuse)
    res = run(tmp_path, check_mode=False)
    assert res.failed and res["msg"].startswith("Failed to connect to PostgreSQL at 127.0.0.1:5432")
    assert not (tmp_path / "backups").exists()


# ------------------------------------------------------------------ the pg_dump command line


class FakeModule:
    def __init__(self, **params):
        base = dict(database="app", label="manual", format="custom", jobs=1, compression="gzip",
                    compression_level=None, globals=False, min_size=1024, host_label=None, pg_bin_dir=None,
                    session_role=None, login_password=SECRET, login_host="db", login_port=5432,
                    login_user="backup", login_db="postgres", login_unix_socket=None, ssl_mode="prefer",
                    ca_cert=None, connect_timeout=10, backup_dir="/b")
        base.update(params)
        self.params = base
        self.check_mode = False


def argv_for(snapshot="00000003-0000001B-1", target="/b/x", version_num=150008, **params):
    backup = mod.PgBackup(FakeModule(**params))
    backup.tools = {"bindir": "/usr/lib/postgresql/15/bin", "version": "15.8", "version_num": version_num}
    return backup.dump_argv(snapshot, target)


@pytest.mark.parametrize("params, expected", [
    ({}, ["--format=custom"]),
    ({"compression_level": 9}, ["--format=custom", "--compress=9"]),
    ({"compression": "none"}, ["--format=custom", "--compress=0"]),
    ({"compression": "zstd"}, ["--format=custom", "--compress=0"]),
    ({"format": "directory", "jobs": 3}, ["--format=directory", "--jobs=3"]),
    ({"format": "directory", "compression": "zstd", "compression_level": 7}, ["--compress=zstd:7"]),
    ({"session_role": "backup_owner"}, ["--role=backup_owner"]),
])
def test_dump_argv(params, expected):
    argv = argv_for(**params)
    assert argv[0] == "/usr/lib/postgresql/15/bin/pg_dump"
    assert "--snapshot=00000003-0000001B-1" in argv and "--no-password" in argv and "--file=/b/x" in argv
    for item in expected:
        assert item in argv
    assert not any(SECRET in item for item in argv)
    assert not any(item.startswith("--dbname") or "=db" in item for item in argv)


def test_client_env_carries_connection_and_password():
    backup = mod.PgBackup(FakeModule(database='we"ird=db'))
    env = backup.client_env()
    assert env["PGPASSWORD"] == SECRET and env["PGDATABASE"] == 'we"ird=db'
    assert env["PGHOST"] == "db" and env["PGUSER"] == "backup" and env["PGAPPNAME"] == "upkeep.runbooks pg_backup"
    assert "PGPASSWORD" not in backup.client_env(password=False)
    assert "PGDATABASE" not in backup.client_env(database=False)


def test_stderr_reader_finds_errors(tmp_path):
    with open(tmp_path / "err", "w+b") as handle:
        handle.write(b"pg_dump: warning: something odd\npg_dump: error: query failed: ERROR:  boom\n")
        errors, lines = mod._read_stderr(handle)
    assert errors == ["pg_dump: error: query failed: ERROR:  boom"]
    assert lines[0] == "pg_dump: warning: something odd"
