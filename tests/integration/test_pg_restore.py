"""pg_restore (the module) against real clusters, with backups made by the real pg_backup module.

The source cluster holds the awkward-identifier database, a database whose objects belong to a
role the DR cluster lacks, and a larger database for the kill test. Restores go to the DR cluster.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from psycopg import sql

from tests.fixtures.postgres import ClusterFactory
from tests.integration.restore_helpers import (
    AWKWARD_COUNTS,
    AWKWARD_DB,
    copy_backup,
    create_awkward,
    databases,
    dump_file,
    flip_byte,
    make_backup,
    manifest_counts,
    table_counts,
)
from tests.integration.restore_helpers import run as run_mod

pytestmark = pytest.mark.integration

MODULE = "upkeep.runbooks.pg_restore"
OWNED_DB = "owned_db"
BIG_DB = "big_db"


@pytest.fixture(scope="module")
def clusters(pg_bindir):
    factory = ClusterFactory(pg_bindir, prefix="restore")
    try:
        source, dr = factory(name="rsource"), factory(name="rdr")
        create_awkward(source)
        source.execute("CREATE ROLE app_owner")
        source.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(OWNED_DB)))
        source.execute("CREATE TABLE owned (id int PRIMARY KEY, v text)", dbname=OWNED_DB)
        source.execute("INSERT INTO owned SELECT g, md5(g::text) FROM generate_series(1, 300) g", dbname=OWNED_DB)
        source.execute("ALTER TABLE owned OWNER TO app_owner", dbname=OWNED_DB)
        source.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BIG_DB)))
        source.execute("CREATE TABLE big (id int, t text, n numeric)", dbname=BIG_DB)
        source.execute("INSERT INTO big SELECT g, md5(g::text) || md5((g + 1)::text), g * 1.5 "
                       "FROM generate_series(1, 1500000) g", dbname=BIG_DB)
        source.execute("CREATE INDEX big_t ON big (t)", dbname=BIG_DB)
        yield source, dr
    finally:
        factory.close()


@pytest.fixture(scope="module")
def backups(clusters, tmp_path_factory):
    source, _dr = clusters
    base = tmp_path_factory.mktemp("restore-backups")
    return {
        "gzip": make_backup(source, AWKWARD_DB, base / "gzip")["path"],
        "zstd": make_backup(source, AWKWARD_DB, base / "zstd", compression="zstd")["path"],
        "directory": make_backup(source, AWKWARD_DB, base / "dir", format="directory", jobs=2)["path"],
        "owned": make_backup(source, OWNED_DB, base / "owned")["path"],
        "big": make_backup(source, BIG_DB, base / "big", compression="zstd")["path"],
    }


def restore(cluster, path, check_mode=False, diff=False, **args):
    return run_mod(MODULE, cluster, check_mode=check_mode, diff=diff, path=path, **args)


def leftovers(cluster):
    return {name for name in databases(cluster) if name.startswith(("upkeep_restore_", "upkeep_replaced_"))}


def create_db(cluster, name, owner=None):
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if owner:
        statement = sql.SQL("{} OWNER {}").format(statement, sql.Identifier(owner))
    cluster.execute(statement)


def drop_db(cluster, name):
    cluster.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ------------------------------------------------------------------ restores that work


@pytest.mark.parametrize("kind,jobs", [("gzip", 2), ("zstd", 2), ("zstd", 1), ("directory", 2)])
def test_restore_onto_a_fresh_server_with_exact_counts(clusters, backups, kind, jobs):
    _source, dr = clusters
    target = "%s restored %s-%d" % (AWKWARD_DB, kind, jobs)
    try:
        res = restore(dr, backups[kind], diff=True, target_database=target, jobs=jobs)
        assert res.rc == 0 and not res.failed, res
        assert res["changed"] is True and res["created"] is True and res["replaced"] is False
        assert res["target_database"] == target and res["database"] == AWKWARD_DB
        assert res["duration_seconds"] > 0 and res["restore_seconds"] > 0
        assert res["diff"]["before"] == {"database": target, "exists": False, "size_bytes": None}
        assert res["diff"]["after"]["exists"] is True and res["diff"]["after"]["size_bytes"] > 0
        assert table_counts(dr, target, AWKWARD_COUNTS) == AWKWARD_COUNTS == manifest_counts(backups[kind])
        assert dr.scalar('SELECT "Näme" FROM "Sché ma ""q"""."Tab le ""X""" WHERE id = 7', dbname=target) == \
            "nom 7 é ü 漢"
        assert dr.scalar("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                         (target,)) is None  # the in-progress marker is gone
        assert leftovers(dr) == set()
    finally:
        drop_db(dr, target)


def test_default_target_is_the_source_name(clusters, backups):
    _source, dr = clusters
    try:
        res = restore(dr, backups["gzip"])
        assert res.rc == 0 and res["target_database"] == AWKWARD_DB, res
        assert table_counts(dr, AWKWARD_DB, AWKWARD_COUNTS) == AWKWARD_COUNTS
    finally:
        drop_db(dr, AWKWARD_DB)


def test_check_mode_changes_nothing(clusters, backups):
    _source, dr = clusters
    before = databases(dr)
    res = restore(dr, backups["gzip"], check_mode=True, diff=True, target_database="never_made")
    assert res.rc == 0 and res["changed"] is True and res["created"] is True, res
    assert res["diff"]["after"] == {"database": "never_made", "exists": True, "size_bytes": None}
    assert databases(dr) == before


# ------------------------------------------------------------------ refusals


def test_corrupt_backup_is_refused_before_anything_happens(clusters, backups, tmp_path):
    _source, dr = clusters
    path = copy_backup(backups["gzip"], tmp_path)
    flip_byte(dump_file(path))
    before = databases(dr)
    res = restore(dr, path, target_database="from_corrupt")
    assert res.failed
    assert "checksum verification failed, nothing was changed" in res["msg"]
    assert os.path.basename(dump_file(path)) + ": sha256" in res["msg"]
    assert databases(dr) == before


def test_missing_manifest_is_refused(clusters, backups, tmp_path):
    _source, dr = clusters
    path = copy_backup(backups["gzip"], tmp_path)
    os.unlink(os.path.join(path, "manifest.json"))
    res = restore(dr, path, target_database="from_incomplete")
    assert res.failed and "not a complete backup" in res["msg"]
    assert "from_incomplete" not in databases(dr)


def test_server_with_data_needs_replace_and_confirm(clusters, backups):
    _source, dr = clusters
    target = "Busy DB"
    create_db(dr, target)
    try:
        dr.execute("CREATE TABLE keep_me (id int)", dbname=target)
        dr.execute("INSERT INTO keep_me VALUES (1), (2), (3)", dbname=target)
        for options in ({}, {"replace": True}, {"replace": True, "confirm": "busy db"},
                        {"confirm": target}):
            for check_mode in (True, False):
                res = restore(dr, backups["gzip"], check_mode=check_mode, target_database=target, **options)
                assert res.failed, (options, res)
                assert "exists and holds" in res["msg"], res["msg"]
                assert res["changed"] is False
        assert dr.scalar("SELECT count(*) FROM keep_me", dbname=target) == 3
        assert leftovers(dr) == set()
    finally:
        drop_db(dr, target)


def test_create_false_with_missing_target(clusters, backups):
    _source, dr = clusters
    res = restore(dr, backups["gzip"], target_database="not_there", create=False)
    assert res.failed and "does not exist and create is false" in res["msg"]


# ------------------------------------------------------------------ replacing


def test_replace_swaps_in_the_backup_and_keeps_database_properties(clusters, backups):
    _source, dr = clusters
    target = "Prod Ü"
    dr.execute("CREATE ROLE reader LOGIN")
    dr.execute("CREATE ROLE db_owner")
    create_db(dr, target, owner="db_owner")
    other_conn = target_conn = None
    try:
        dr.execute("CREATE TABLE newer_stuff (id int)", dbname=target)
        dr.execute(sql.SQL("ALTER DATABASE {} SET search_path = {}, public").format(
            sql.Identifier(target), sql.Identifier("Sché ma \"q\"")))
        dr.execute(sql.SQL("ALTER DATABASE {} SET work_mem = '8MB'").format(sql.Identifier(target)))
        dr.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(target)))
        dr.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO reader").format(sql.Identifier(target)))
        dr.execute(sql.SQL("COMMENT ON DATABASE {} IS 'production data'").format(sql.Identifier(target)))
        target_conn = dr.connect(dbname=target)
        other_conn = dr.connect(dbname="postgres")

        res = restore(dr, backups["zstd"], diff=True, target_database=target, replace=True, confirm=target, jobs=2)
        assert res.rc == 0 and not res.failed, res
        assert res["replaced"] is True and res["old_database_dropped"] is True and res["created"] is False
        assert res["diff"]["before"]["exists"] is True and res["diff"]["after"]["exists"] is True

        assert table_counts(dr, target, AWKWARD_COUNTS) == AWKWARD_COUNTS
        assert dr.scalar("SELECT to_regclass('public.newer_stuff') IS NULL", dbname=target) is True
        info = dr.execute(
            "SELECT pg_get_userbyid(datdba), datacl::text, shobj_description(oid, 'pg_database') "
            "FROM pg_database WHERE datname = %s", (target,))[0]
        assert info[0] == "db_owner"
        assert "reader=c/" in info[1] and "=Tc/" not in info[1]  # PUBLIC lost CONNECT/TEMP as before
        assert info[2] == "production data"
        settings = dr.execute("SELECT unnest(setconfig) FROM pg_db_role_setting s JOIN pg_database d "
                              "ON d.oid = s.setdatabase WHERE d.datname = %s ORDER BY 1", (target,))
        assert [row[0] for row in settings] == ['search_path="Sché ma ""q""", public', "work_mem=8MB"]
        with dr.connect(dbname=target) as conn:  # the copied search_path finds the awkward schema
            assert conn.execute('SELECT count(*) FROM "Tab le ""X"""').fetchone()[0] == 1500

        with pytest.raises(Exception):  # noqa: B017,PT011 - the old database's session was terminated
            target_conn.execute("SELECT 1")
        assert other_conn.execute("SELECT 1").fetchone()[0] == 1  # other databases' sessions untouched
        assert leftovers(dr) == set()
    finally:
        for conn in (target_conn, other_conn):
            if conn is not None:
                conn.close()
        drop_db(dr, target)
        dr.execute("DROP ROLE IF EXISTS reader")
        dr.execute("DROP ROLE IF EXISTS db_owner")


def test_failed_restore_leaves_the_original_intact(clusters, backups):
    _source, dr = clusters
    create_db(dr, OWNED_DB)
    try:
        dr.execute("CREATE TABLE original (id int)", dbname=OWNED_DB)
        dr.execute("INSERT INTO original SELECT generate_series(1, 10)", dbname=OWNED_DB)
        res = restore(dr, backups["owned"], replace=True, confirm=OWNED_DB)
        assert res.failed
        assert 'role "app_owner" does not exist' in res["msg"]
        assert "database '%s' was left as it was" % OWNED_DB in res["msg"]
        assert res["replaced"] is False
        assert dr.scalar("SELECT count(*) FROM original", dbname=OWNED_DB) == 10
        assert leftovers(dr) == set()

        # Re-run recovers: without the dump's ownership the same backup restores.
        res = restore(dr, backups["owned"], replace=True, confirm=OWNED_DB, no_owner=True)
        assert res.rc == 0 and res["replaced"] is True, res
        assert dr.scalar("SELECT count(*) FROM owned", dbname=OWNED_DB) == 300
        assert dr.scalar("SELECT to_regclass('original') IS NULL", dbname=OWNED_DB) is True
    finally:
        drop_db(dr, OWNED_DB)


def _pg_restore_pids(port):
    """pg_restore processes restoring into a temporary database of the cluster on ``port``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                argv = handle.read().split(b"\0")
            if not argv or not argv[0].endswith(b"pg_restore") or not any(b"upkeep_restore_" in a for a in argv):
                continue
            with open("/proc/%s/environ" % entry, "rb") as handle:
                if ("PGPORT=%d" % port).encode() not in handle.read().split(b"\0"):
                    continue
        except OSError:
            continue
        found.append(int(entry))
    return found


def test_killed_pg_restore_leaves_the_original_intact(clusters, backups):
    _source, dr = clusters
    create_db(dr, BIG_DB)
    try:
        dr.execute("CREATE TABLE original (id int)", dbname=BIG_DB)
        dr.execute("INSERT INTO original SELECT generate_series(1, 5)", dbname=BIG_DB)
        outcome = {}
        runner = threading.Thread(target=lambda: outcome.update(
            res=restore(dr, backups["big"], replace=True, confirm=BIG_DB, jobs=1)))
        runner.start()
        killed = []
        deadline = time.monotonic() + 120
        while runner.is_alive() and not killed and time.monotonic() < deadline:
            for pid in _pg_restore_pids(dr.port):
                os.kill(pid, signal.SIGKILL)  # the pg_restore this test's module run started
                killed.append(pid)
            time.sleep(0.01)
        runner.join(300)
        assert killed, "pg_restore finished before it could be killed"
        res = outcome["res"]
        assert res.failed
        assert "pg_restore exited -9" in res["msg"] and "left as it was" in res["msg"]
        assert dr.scalar("SELECT count(*) FROM original", dbname=BIG_DB) == 5
        assert leftovers(dr) == set()
    finally:
        drop_db(dr, BIG_DB)
