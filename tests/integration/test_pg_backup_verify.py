"""pg_backup_verify against real clusters, with backups made by the real pg_backup module.

A source cluster holds a database with awkward identifiers; backups of it (gzip, zstd, directory)
are made once per module and copied by every test that damages one. Restore-level checks run on
a second cluster (the "DR" server) and, where it matters, on the source server itself.
"""

from __future__ import annotations

import os

import pytest
from ansible_collections.upkeep.runbooks.plugins.module_utils import _restore
from psycopg import sql

from tests.fixtures.postgres import ClusterFactory
from tests.integration.restore_helpers import (
    AWKWARD_COUNTS,
    AWKWARD_DB,
    check,
    copy_backup,
    create_awkward,
    databases,
    dump_file,
    flip_byte,
    make_backup,
    manifest_counts,
    rewrite_manifest,
)
from tests.integration.restore_helpers import run as run_mod

pytestmark = pytest.mark.integration

MODULE = "upkeep.runbooks.pg_backup_verify"
SCRATCH_PREFIX = "upkeep_verify_"


@pytest.fixture(scope="module")
def clusters(pg_bindir):
    factory = ClusterFactory(pg_bindir, prefix="verify")
    try:
        source, dr = factory(name="vsource"), factory(name="vdr")
        create_awkward(source)
        yield source, dr
    finally:
        factory.close()


@pytest.fixture(scope="module")
def backups(clusters, tmp_path_factory):
    source, _dr = clusters
    base = tmp_path_factory.mktemp("verify-backups")
    made = {}
    for key, options in (("gzip", {}), ("zstd", {"compression": "zstd"}),
                         ("directory", {"format": "directory", "jobs": 2})):
        made[key] = make_backup(source, AWKWARD_DB, base / key, **options)["path"]
    return made


def verify(cluster, path, level="catalog", check_mode=False, **args):
    return run_mod(MODULE, cluster, check_mode=check_mode, path=path, level=level, **args)


def scratch_databases(cluster):
    return {name for name in databases(cluster) if name.startswith(SCRATCH_PREFIX)}


# ------------------------------------------------------------------ a good backup passes every level


@pytest.mark.parametrize("kind", ["gzip", "zstd", "directory"])
def test_every_level_passes_on_a_good_backup(clusters, backups, kind):
    _source, dr = clusters
    path = backups[kind]
    for level in ("checksum", "catalog"):
        res = verify(dr, path, level)
        assert res.rc == 0 and not res.failed, res
        assert res["changed"] is False and res["mismatches"] == []
        assert all(item["status"] == "ok" for item in res["checks"]), res["checks"]
        assert res["restore_duration_seconds"] is None

    res = verify(dr, path, "restore", jobs=2, amcheck=True, sanity_queries=[
        {"name": "names", "sql": 'SELECT 1 FROM "Sché ma ""q"""."Tab le ""X""" WHERE "Näme" LIKE \'%漢\'',
         "expect_rows_min": 1500},
        {"name": "upper", "sql": 'SELECT sum(v) FROM public."UPPER"'},
    ])
    assert res.rc == 0 and not res.failed, res
    assert res["changed"] is True and res["kept"] is False
    assert res["backup_id"].startswith("daily-") and res["database"] == AWKWARD_DB
    names = [item["name"] for item in res["checks"]]
    assert names == ["manifest", "checksum", "pg_restore", "toc", "toc_entries", "table_data", "server",
                     "scratch_database", "restore", "row_counts", "sanity:names", "sanity:upper", "amcheck",
                     "cleanup"]
    assert all(item["status"] == "ok" for item in res["checks"]), res["checks"]
    assert res["restore_duration_seconds"] > 0
    assert "all %d tables have the manifest's exact row counts" % len(AWKWARD_COUNTS) in check(
        res, "row_counts")["message"]
    assert "1500 rows" in check(res, "sanity:names")["message"]
    assert res["scratch_database"].startswith(SCRATCH_PREFIX)
    assert scratch_databases(dr) == set()


def test_manifest_counts_are_the_source_counts(backups):
    assert manifest_counts(backups["gzip"]) == AWKWARD_COUNTS


def test_restore_level_on_the_source_server_leaves_the_source_alone(clusters, backups):
    source, _dr = clusters
    before = databases(source)
    res = verify(source, backups["zstd"], "restore", jobs=2)
    assert res.rc == 0 and not res.failed, res
    assert databases(source) == before
    assert source.scalar('SELECT count(*) FROM public."UPPER"', dbname=AWKWARD_DB) == 250


def test_restore_level_in_check_mode_creates_nothing(clusters, backups):
    _source, dr = clusters
    before = databases(dr)
    res = verify(dr, backups["gzip"], "restore", check_mode=True, amcheck=True)
    assert res.rc == 0 and not res.failed, res
    assert res["changed"] is True and res["restore_duration_seconds"] is None
    assert "would create scratch database" in check(res, "scratch_database")["message"]
    assert databases(dr) == before


def test_refuses_to_restore_into_the_source_database_name(clusters, backups):
    source, _dr = clusters
    res = verify(source, backups["gzip"], "restore", scratch_database=AWKWARD_DB)
    assert res.failed
    assert "source database" in res["msg"] and "refusing" in res["msg"]
    assert source.scalar('SELECT count(*) FROM public."UPPER"', dbname=AWKWARD_DB) == 250


# ------------------------------------------------------------------ damaged backups


def test_flipped_byte_fails_the_checksum_naming_the_file(clusters, backups, tmp_path):
    _source, dr = clusters
    path = copy_backup(backups["gzip"], tmp_path)
    dump = dump_file(path)
    flip_byte(dump)
    for level in ("checksum", "restore"):
        res = verify(dr, path, level)
        assert res.failed
        assert os.path.basename(dump) + ": sha256" in res["msg"]
        assert check(res, "checksum")["status"] == "fail"
        assert res["mismatches"][0]["problem"] == "sha256"
        assert [item["name"] for item in res["checks"]] == ["manifest", "checksum"]  # nothing further ran
    assert scratch_databases(dr) == set()


def test_flipped_byte_in_a_directory_dump(clusters, backups, tmp_path):
    _source, dr = clusters
    path = copy_backup(backups["directory"], tmp_path)
    member = sorted(name for name in os.listdir(dump_file(path)) if name.endswith(".dat.gz"))[0]
    flip_byte(os.path.join(dump_file(path), member), offset=20)
    res = verify(dr, path, "checksum")
    assert res.failed and (os.path.basename(dump_file(path)) + "/" + member) in res["msg"]


def test_truncated_file(clusters, backups, tmp_path):
    _source, dr = clusters
    path = copy_backup(backups["zstd"], tmp_path)
    dump = dump_file(path)
    size = os.path.getsize(dump)
    os.truncate(dump, size // 2)
    res = verify(dr, path, "catalog")
    assert res.failed
    assert "%s: %d bytes, the manifest says %d (truncated or modified)" % (os.path.basename(dump), size // 2, size) \
        in res["msg"]


def test_deleted_manifest_is_not_a_complete_backup(clusters, backups, tmp_path):
    _source, dr = clusters
    path = copy_backup(backups["gzip"], tmp_path)
    os.unlink(os.path.join(path, "manifest.json"))
    res = verify(dr, path, "restore")
    assert res.failed
    assert "not a complete backup" in res["msg"] and path in res["msg"]
    assert check(res, "manifest")["status"] == "fail"
    assert scratch_databases(dr) == set()


def test_toc_count_mismatch(clusters, backups, tmp_path):
    _source, dr = clusters
    path = copy_backup(backups["gzip"], tmp_path)
    real = rewrite_manifest(path, lambda data: data.update(toc_entries=data["toc_entries"] + 1))["toc_entries"] - 1
    res = verify(dr, path, "catalog")
    assert res.failed
    assert check(res, "toc_entries")["status"] == "fail"
    assert "%d TOC entries, the manifest says %d" % (real, real + 1) in res["msg"]
    assert check(res, "checksum")["status"] == "ok"  # the manifest itself is not checksummed


def test_table_missing_from_the_dump(clusters, backups, tmp_path):
    _source, dr = clusters
    path = copy_backup(backups["gzip"], tmp_path)
    rewrite_manifest(path, lambda data: data["tables"].append({"schema": "public", "name": "ghost", "rows": 3}))
    res = verify(dr, path, "catalog")
    assert res.failed and "table public.ghost (3 rows in the manifest) has no TABLE DATA entry" in res["msg"]


def test_row_count_mismatch(clusters, backups, tmp_path):
    _source, dr = clusters
    path = copy_backup(backups["gzip"], tmp_path)

    def change(data):
        for table in data["tables"]:
            if table["name"] == "données":
                table["rows"] = 43

    rewrite_manifest(path, change)
    assert verify(dr, path, "catalog").rc == 0  # catalog cannot see row counts
    res = verify(dr, path, "restore")
    assert res.failed
    assert "table public.données has 42 rows, the manifest says 43" in res["msg"]
    assert res["mismatches"] == [{"check": "row_counts", "item": "public.données", "problem": "row_count",
                                  "expected": 43, "actual": 42,
                                  "message": "table public.données has 42 rows, the manifest says 43"}]
    assert check(res, "cleanup")["status"] == "ok"
    assert res["restore_duration_seconds"] > 0
    assert scratch_databases(dr) == set()


def test_failing_sanity_query(clusters, backups):
    _source, dr = clusters
    res = verify(dr, backups["gzip"], "restore", sanity_queries=[
        {"name": "few", "sql": "SELECT 1 FROM public.empty_table", "expect_rows_min": 1},
        {"name": "broken", "sql": "SELECT * FROM no_such_table"},
        {"name": "no_writes", "sql": "INSERT INTO public.empty_table VALUES (1) RETURNING id"},
    ])
    assert res.failed
    assert check(res, "sanity:few")["message"] == "returned 0 rows, at least 1 expected"
    assert 'relation "no_such_table" does not exist' in check(res, "sanity:broken")["message"]
    assert "read-only transaction" in check(res, "sanity:no_writes")["message"]
    assert check(res, "row_counts")["status"] == "ok"
    assert scratch_databases(dr) == set()


# ------------------------------------------------------------------ scratch database safety


def test_existing_scratch_without_marker_is_refused_and_left_alone(clusters, backups):
    _source, dr = clusters
    name = "upkeep_verify_not_mine"
    dr.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        dr.execute("CREATE TABLE precious (id int)", dbname=name)
        dr.execute("INSERT INTO precious VALUES (1), (2)", dbname=name)
        for check_mode in (True, False):
            res = verify(dr, backups["gzip"], "restore", scratch_database=name, check_mode=check_mode)
            assert res.failed
            assert "'%s' already exists" % name in res["msg"] and "not an upkeep.runbooks scratch" in res["msg"]
            assert res["changed"] is False
        assert dr.scalar("SELECT count(*) FROM precious", dbname=name) == 2
    finally:
        dr.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


def test_kept_scratch_is_reused_by_the_next_run(clusters, backups):
    _source, dr = clusters
    name = "upkeep_verify_kept"
    try:
        res = verify(dr, backups["zstd"], "restore", scratch_database=name, keep=True, jobs=1)
        assert res.rc == 0 and res["kept"] is True, res
        comment = dr.scalar("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                            (name,))
        assert comment.startswith("upkeep.runbooks scratch restore of {")
        mark = _restore.parse_mark(comment)
        assert (mark["kind"], mark["backup_id"], mark["source"]) == ("scratch", res["backup_id"], AWKWARD_DB)
        assert mark["kept"] is True and mark["created"] is not None  # kept on purpose: a sweep leaves it
        assert dr.scalar('SELECT count(*) FROM public."UPPER"', dbname=name) == 250

        res = verify(dr, backups["zstd"], "restore", scratch_database=name)
        assert res.rc == 0 and not res.failed, res
        assert res["kept"] is False and name not in databases(dr)
    finally:
        dr.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
