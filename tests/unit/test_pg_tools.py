"""Unit tests for plugins/module_utils/_pg_tools.py (client programs: environment, versions, discovery)."""

from __future__ import annotations

import subprocess
import time

import pytest
from ansible_collections.upkeep.runbooks.plugins.module_utils import _pg_tools as t


def test_client_env_drops_inherited_pg_variables_and_sets_ours():
    base = {"PATH": "/usr/bin", "PGSERVICE": "evil", "PGPASSWORD": "inherited", "LC_ALL": "de_DE.UTF-8",
            "LANGUAGE": "de", "HOME": "/root"}
    params = {"login_host": "db1", "login_port": 5433, "login_user": "backup", "login_password": "s3cret",
              "login_db": "postgres", "login_unix_socket": None, "ssl_mode": "verify-full", "ca_cert": "/ca.pem",
              "connect_timeout": 7}
    env = t.client_env(params, database="app", application_name="x", base=base)
    assert env == {"PATH": "/usr/bin", "HOME": "/root", "LC_MESSAGES": "C", "PGHOST": "db1", "PGPORT": "5433",
                   "PGUSER": "backup", "PGDATABASE": "app", "PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/ca.pem",
                   "PGCONNECT_TIMEOUT": "7", "PGAPPNAME": "x", "PGPASSWORD": "s3cret"}


def test_client_env_socket_wins_and_no_password():
    params = {"login_host": "db1", "login_unix_socket": "/run/postgresql", "login_password": None, "login_db": "db"}
    env = t.client_env(params, base={})
    assert env["PGHOST"] == "/run/postgresql" and env["PGDATABASE"] == "db"
    assert "PGPASSWORD" not in env


@pytest.mark.parametrize("text, expected", [
    ("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n", ("15.18", 150018)),
    ("pg_restore (PostgreSQL) 16.4", ("16.4", 160004)),
    ("pg_dump (PostgreSQL) 17devel", ("17.0", 170000)),
    ("pg_dump (PostgreSQL) 9.6.24", ("9.6.24", 90624)),
])
def test_parse_version(text, expected):
    assert t.parse_version(text) == expected


def test_parse_version_rejects_garbage():
    with pytest.raises(t.ToolError, match="cannot read a PostgreSQL version"):
        t.parse_version("bash: pg_dump: command not found")


def test_major_helpers():
    assert t.major_of(150008) == 15 and t.major_of(90624) == 906
    assert t.major_label(15) == "15" and t.major_label(906) == "9.6"


def make_tool(directory, name, version):
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\necho '%s (PostgreSQL) %s'\n" % (name, version))
    path.chmod(0o755)
    return path


def test_tool_version_runs_the_program(tmp_path):
    path = make_tool(tmp_path / "bin", "pg_dump", "15.6")
    assert t.tool_version(str(path)) == ("15.6", 150006)
    broken = tmp_path / "bin" / "broken"
    broken.write_text("#!/bin/sh\necho nope >&2\nexit 3\n")
    broken.chmod(0o755)
    with pytest.raises(t.ToolError, match="exited with 3: nope"):
        t.tool_version(str(broken))
    with pytest.raises(t.ToolError, match="cannot run"):
        t.tool_version(str(tmp_path / "missing"))


def test_find_bindir_explicit_and_candidates(tmp_path, monkeypatch):
    old = tmp_path / "old"
    new = tmp_path / "new"
    for tool in ("pg_dump", "pg_restore"):
        make_tool(old, tool, "14.9")
        make_tool(new, tool, "16.1")
    found = t.find_bindir(150008, pg_bin_dir=str(new), tools=("pg_dump", "pg_restore"))
    assert found == {"bindir": str(new), "version": "16.1", "version_num": 160001, "tried": []}
    with pytest.raises(t.ToolError, match="pg_dump 14.9 in .* is older than the server"):
        t.find_bindir(150008, pg_bin_dir=str(old))
    monkeypatch.setattr(t, "candidate_bindirs", lambda env=None: [str(old), str(new)])
    found = t.find_bindir(150008)
    assert found["bindir"] == str(new) and found["tried"] == ["%s (pg_dump 14.9)" % old]
    monkeypatch.setattr(t, "candidate_bindirs", lambda env=None: [])
    with pytest.raises(t.ToolError, match="no pg_dump found on PATH"):
        t.find_bindir(150008)


def test_debian_dirs_sorted_newest_first(monkeypatch):
    monkeypatch.setattr(t.glob, "glob", lambda pattern: ["/usr/lib/postgresql/9.6/bin", "/usr/lib/postgresql/15/bin",
                                                         "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/13/bin"])
    assert t._debian_bindirs() == ["/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin",
                                   "/usr/lib/postgresql/13/bin", "/usr/lib/postgresql/9.6/bin"]


def test_kill_process_stops_the_whole_group():
    proc = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & sleep 60; wait"], preexec_fn=t.die_with_parent)  # noqa: PLW1509
    time.sleep(0.2)
    started = time.monotonic()
    t.kill_process(proc, grace=2)
    assert proc.poll() is not None
    assert time.monotonic() - started < 5
    t.kill_process(proc)  # already gone: no error
