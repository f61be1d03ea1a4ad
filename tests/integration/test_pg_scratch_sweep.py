"""pg_scratch_sweep against a real cluster: leftovers of killed restore tests are swept, nothing else is.

One cluster holds the source database of the backup and is also the server the restore tests run
on (the scratch database never takes the source's name, so both fit on one server). The leftover
of the first test is real: pg_backup_verify is killed with SIGKILL while its pg_restore runs.
Other marked databases are made the way the modules make them (``_restore.create_marked_database``),
or with a mark whose creation time is set in the past to stand for a leftover that is hours old.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from ansible_collections.upkeep.runbooks.plugins.module_utils import _restore
from psycopg import sql

from tests.fixtures.postgres import ClusterFactory
from tests.integration.module_runner import COLLECTIONS_PATH, REPO_ROOT, module_name
from tests.integration.restore_helpers import databases, make_backup
from tests.integration.restore_helpers import run as run_mod

pytestmark = pytest.mark.integration

MODULE = "upkeep.runbooks.pg_scratch_sweep"
SOURCE_DB = "sweep_src"
HOURS_AGO = 30


@pytest.fixture(scope="module")
def cluster(pg_bindir):
    factory = ClusterFactory(pg_bindir, prefix="sweep")
    try:
        server = factory(name="sweep")
        server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SOURCE_DB)))
        # Big enough that pg_restore is still running when the test looks for it (about 60 MB restored).
        server.execute("CREATE TABLE big (id int, t text, n numeric)", dbname=SOURCE_DB)
        server.execute("INSERT INTO big SELECT g, md5(g::text) || md5((g + 1)::text), g * 1.5 "
                       "FROM generate_series(1, 600000) g", dbname=SOURCE_DB)
        server.execute("CREATE INDEX big_t ON big (t)", dbname=SOURCE_DB)
        yield server
    finally:
        factory.close()


@pytest.fixture(scope="module")
def source_backup(cluster, tmp_path_factory):
    return make_backup(cluster, SOURCE_DB, tmp_path_factory.mktemp("sweep-backups"))["path"]


def sweep(cluster, check_mode=False, diff=True, **args):
    args.setdefault("protected_databases", [SOURCE_DB])
    return run_mod(MODULE, cluster, check_mode=check_mode, diff=diff, **args)


def comment_of(cluster, name):
    return cluster.scalar("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,))


def names(entries):
    return [entry["name"] for entry in entries]


def entry_for(entries, name):
    found = [entry for entry in entries if entry["name"] == name]
    assert found, "%s not in %r" % (name, names(entries))
    return found[0]


def create_plain(cluster, name, comment=None):
    cluster.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    if comment is not None:
        cluster.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(comment)))


def create_marked(cluster, name, kind="scratch", **fields):
    """A database made and marked the way pg_backup_verify / pg_restore make theirs (created now)."""
    with cluster.connect() as conn:
        return _restore.create_marked_database(conn, name, kind, **fields)


def create_old_marked(cluster, name, kind="scratch", hours=HOURS_AGO, **fields):
    """A marked database whose mark says it was created ``hours`` ago: a leftover of an earlier run."""
    created = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=hours)
    fields.setdefault("backup_id", "daily-20261123T021500Z")
    fields.setdefault("run_id", str(uuid.uuid4()))
    create_plain(cluster, name, _restore.format_mark(kind, created, **fields))


def drop(cluster, *names_):
    for name in names_:
        cluster.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ------------------------------------------------------------------ a restore test killed mid-restore


def _start_verify(cluster, path, scratch):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PYTHONPATH"] = str(COLLECTIONS_PATH)
    args = cluster.module_args(path=path, level="restore", jobs=1, scratch_database=scratch)
    payload = dict(args, _ansible_check_mode=False, _ansible_diff=False, _ansible_no_log=False)
    proc = subprocess.Popen([sys.executable, "-m", module_name("pg_backup_verify")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO_ROOT))
    proc.stdin.write(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
    proc.stdin.close()
    proc.stdin = None  # communicate() must not flush it again
    return proc


def _restoring_children(parent):
    """Pids of the pg_restore processes started by ``parent`` that restore into a database.

    ``pg_restore --list`` (the catalog check before the restore) and ``--version`` probes are
    children too; only the run with ``--dbname`` writes into the scratch database.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                stat = handle.read()
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == parent and argv[0].endswith(b"pg_restore") and any(a.startswith(b"--dbname=") for a in argv):
            found.append(int(entry))
    return found


def _wait_no_sessions(cluster, name, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not cluster.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)):
            return
        time.sleep(0.1)
    raise AssertionError("sessions on %s did not end within %ds" % (name, timeout))


def test_killed_restore_test_leaves_a_marked_leftover_that_the_sweep_removes(cluster, source_backup):
    leftover = "upkeep_verify_killed"
    unmarked = "upkeep_restore_x"
    create_plain(cluster, unmarked)
    try:
        proc = _start_verify(cluster, source_backup, leftover)
        killed = None
        deadline = time.monotonic() + 120
        while proc.poll() is None and killed is None and time.monotonic() < deadline:
            if _restoring_children(proc.pid):
                os.kill(proc.pid, signal.SIGKILL)  # the module itself, mid-restore: no cleanup runs
                killed = proc.pid
            time.sleep(0.01)
        proc.communicate(timeout=60)
        assert killed, "pg_restore was never seen running (the restore finished or failed first)"
        assert proc.returncode == -signal.SIGKILL
        # pg_restore dies with its parent (SIGTERM on the parent's death); its session ends with it.
        _wait_no_sessions(cluster, leftover)

        assert leftover in databases(cluster), "the killed restore test left no scratch database behind"
        mark = _restore.parse_mark(comment_of(cluster, leftover))
        assert mark["kind"] == "scratch" and mark["format"] == "json" and mark["source"] == SOURCE_DB
        assert mark["created"] is not None and mark["kept"] is False

        # Check mode lists it and drops nothing.
        before = databases(cluster)
        res = sweep(cluster, check_mode=True, older_than=0)
        assert res.rc == 0 and not res.failed, res
        assert res["changed"] is True and res["removed"] == []
        assert names(res["would_remove"]) == [leftover]
        assert res["would_remove"][0]["outcome"] == "would_remove"
        assert res["msg"].startswith("would remove 1 leftover database")
        assert res["diff"]["before"]["marked_databases"] == [leftover]
        assert res["diff"]["after"]["marked_databases"] == []
        assert databases(cluster) == before

        # The real sweep with a limit of 0 removes it and reports its age and size.
        res = sweep(cluster, older_than=0)
        assert res.rc == 0 and not res.failed, res
        assert res["changed"] is True and res["would_remove"] == []
        assert names(res["removed"]) == [leftover]
        removed = res["removed"][0]
        assert removed["outcome"] == "removed" and removed["mark"] == "scratch" and removed["created_from"] == "mark"
        assert removed["age_seconds"] >= 0 and removed["size_bytes"] > 1024 * 1024
        assert removed["backup_id"] == mark["backup_id"] and removed["run_id"] == mark["run_id"]
        assert leftover not in databases(cluster)

        # The unmarked look-alike and the source database are untouched.
        kept = entry_for(res["kept"], unmarked)
        assert kept["mark"] is None and "not marked" in kept["reason"] and kept["warn"] is False
        assert {unmarked, SOURCE_DB} <= databases(cluster)
        assert cluster.scalar("SELECT count(*) FROM big", dbname=SOURCE_DB) == 600000

        # Nothing left: a second sweep changes nothing.
        res = sweep(cluster, older_than=0)
        assert res["changed"] is False and res["removed"] == [] and res["diff"]["before"]["marked_databases"] == []
    finally:
        drop(cluster, leftover, unmarked)


# ------------------------------------------------------------------ the limit


def test_limit_keeps_a_fresh_marked_database_and_removes_an_old_one(cluster):
    fresh, old = "upkeep_verify_fresh", "upkeep_verify_old"
    create_marked(cluster, fresh, backup_id="daily-20261130T021500Z", run_id=str(uuid.uuid4()), source=SOURCE_DB)
    create_old_marked(cluster, old, source=SOURCE_DB)
    try:
        res = sweep(cluster, check_mode=True, older_than="6h")
        assert names(res["would_remove"]) == [old] and res["removed"] == []
        assert {fresh, old} <= databases(cluster)

        res = sweep(cluster, older_than="6h")
        assert res.rc == 0 and not res.failed, res
        assert names(res["removed"]) == [old]
        assert HOURS_AGO * 3600 - 60 <= res["removed"][0]["age_seconds"] <= HOURS_AGO * 3600 + 60
        assert res["older_than_seconds"] == 21600
        kept = entry_for(res["kept"], fresh)
        assert "younger than the limit of 6h" in kept["reason"] and kept["warn"] is False
        assert 0 <= kept["age_seconds"] < 600
        assert fresh in databases(cluster) and old not in databases(cluster)
        assert "warnings" not in res or not res["warnings"]
    finally:
        drop(cluster, fresh, old)


def test_bad_limit_fails_before_connecting(cluster):
    res = sweep(cluster, older_than="six hours")
    assert res.failed and res["msg"].startswith("Failed to sweep scratch databases on ")
    assert "older_than must be a number of seconds or a duration" in res["msg"]


# ------------------------------------------------------------------ in use, protected, kept on purpose


def test_database_with_a_live_connection_is_kept_and_reported(cluster):
    busy = "upkeep_verify_busy"
    create_old_marked(cluster, busy)
    conn = cluster.connect(dbname=busy)
    try:
        res = sweep(cluster, older_than=0)
        assert res.rc == 0 and not res.failed, res
        assert res["removed"] == [] and res["changed"] is False
        kept = entry_for(res["kept"], busy)
        assert kept["warn"] is True and kept["sessions"] == 1 and "1 session connected" in kept["reason"]
        assert any(busy in str(warning) and "connected" in str(warning) for warning in res.get("warnings", [])), res
        assert busy in databases(cluster)
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session was not terminated
    finally:
        conn.close()
    try:
        _wait_no_sessions(cluster, busy)
        res = sweep(cluster, older_than=0)
        assert names(res["removed"]) == [busy]
    finally:
        drop(cluster, busy)


def test_protected_and_source_named_databases_are_never_dropped(cluster):
    marked_source = "app_copy"  # a marked database whose mark names it as the backup's source
    protected = "upkeep_verify_protected"
    create_old_marked(cluster, marked_source, source=marked_source)
    create_old_marked(cluster, protected)
    try:
        res = sweep(cluster, older_than=0, protected_databases=[SOURCE_DB, protected])
        assert res["removed"] == []
        assert "source database" in entry_for(res["kept"], marked_source)["reason"]
        assert entry_for(res["kept"], marked_source)["warn"] is True
        assert "protected_databases" in entry_for(res["kept"], protected)["reason"]
        assert {marked_source, protected, SOURCE_DB} <= databases(cluster)
    finally:
        drop(cluster, marked_source, protected)


def test_scratch_kept_on_purpose_is_left_alone(cluster, source_backup):
    name = "upkeep_verify_inspect"
    try:
        res = run_mod("upkeep.runbooks.pg_backup_verify", cluster, path=source_backup, level="restore",
                      scratch_database=name, keep=True, jobs=1)
        assert res.rc == 0 and res["kept"] is True, res
        assert _restore.parse_mark(comment_of(cluster, name))["kept"] is True
        res = sweep(cluster, older_than=0)
        assert name not in names(res["removed"])
        assert "keep=true" in entry_for(res["kept"], name)["reason"]
        assert name in databases(cluster)
    finally:
        drop(cluster, name)


# ------------------------------------------------------------------ marks written before marks had a time


def test_legacy_mark_is_aged_by_its_files(cluster):
    legacy = "upkeep_verify_legacy"
    create_plain(cluster, legacy, "upkeep.runbooks scratch restore of daily-20261123T021500Z %s" % uuid.uuid4())
    try:
        res = sweep(cluster, check_mode=True, older_than="1h")
        kept = entry_for(res["kept"], legacy)
        assert kept["mark_format"] == "legacy" and kept["created_from"] == "file"
        assert "younger than the limit" in kept["reason"] and 0 <= kept["age_seconds"] < 600

        res = sweep(cluster, older_than=0)
        removed = entry_for(res["removed"], legacy)
        assert removed["backup_id"] == "daily-20261123T021500Z" and removed["created_from"] == "file"
        assert legacy not in databases(cluster)
    finally:
        drop(cluster, legacy)


def test_legacy_mark_of_unknown_age_is_kept_when_files_cannot_be_read(cluster):
    legacy = "upkeep_verify_legacy_unknown"
    cluster.execute(sql.SQL("CREATE ROLE sweeper LOGIN CREATEDB PASSWORD {}").format(sql.Literal(cluster.password)))
    try:
        with psycopg.connect(**cluster.conninfo(user="sweeper"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(legacy)))
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(legacy), sql.Literal("upkeep.runbooks scratch restore of daily-x %s" % uuid.uuid4())))
        res = sweep(cluster, older_than=0, login_user="sweeper")
        assert res.rc == 0 and not res.failed, res
        kept = entry_for(res["kept"], legacy)
        assert kept["warn"] is True and kept["age_seconds"] is None
        assert "age unknown" in kept["reason"] and "pg_stat_file" in kept["reason"]
        assert legacy in databases(cluster)

        cluster.execute("GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO sweeper")
        res = sweep(cluster, older_than=0, login_user="sweeper")
        assert names(res["removed"]) == [legacy]  # its owner may drop it once its age can be told
    finally:
        drop(cluster, legacy)
        cluster.execute("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) FROM sweeper")
        cluster.execute("DROP ROLE IF EXISTS sweeper")


# ------------------------------------------------------------------ pg_restore's temporary databases


def test_pg_restore_temporaries_only_with_marks_restore_and_under_their_own_name(cluster):
    token = uuid.uuid4().hex
    temp = "upkeep_restore_" + token[:16]
    renamed_into_place = "app_restored"  # the swap renamed it, the mark was not cleared yet
    create_old_marked(cluster, temp, kind="restore", run_id=token, target="app")
    create_old_marked(cluster, renamed_into_place, kind="restore", run_id=uuid.uuid4().hex,
                      target=renamed_into_place)
    try:
        res = sweep(cluster, older_than=0)
        assert res["removed"] == []
        assert "marks does not include restore" in entry_for(res["kept"], temp)["reason"]

        res = sweep(cluster, older_than=0, marks=["scratch", "restore"])
        assert names(res["removed"]) == [temp]
        kept = entry_for(res["kept"], renamed_into_place)
        assert kept["warn"] is True and "renamed it into place" in kept["reason"]
        assert temp not in databases(cluster) and renamed_into_place in databases(cluster)
    finally:
        drop(cluster, temp, renamed_into_place)
