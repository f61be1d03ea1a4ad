"""pg_backup against a real PostgreSQL cluster, run as a separate process like Ansible runs it."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest as m

from tests.integration.pg_backup_helpers import (
    SHOP_TABLES,
    assert_private_tree,
    backup,
    create_shop,
    exact_counts,
    make_bin_dir,
    no_partials,
    restore_into,
    toc_count,
)

pytestmark = pytest.mark.integration

DB = "shop"


@pytest.fixture(scope="module")
def shop(pg_cluster):
    create_shop(pg_cluster, DB)
    pg_cluster.execute("CREATE ROLE app_reader LOGIN PASSWORD 'reader-secret-123'")
    return pg_cluster


def check_backup(cluster, res, backup_dir, fmt, compression, restore_name):
    """Everything a good backup must satisfy, including a real restore with matching row counts."""
    assert res.rc == 0 and not res.failed, res
    assert res["changed"] is True
    assert res["database"] == DB and res["format"] == fmt and res["compression"] == compression
    path = res["path"]
    assert os.path.dirname(path) == os.path.join(str(backup_dir), DB)
    assert os.path.basename(path) == res["backup_id"]
    assert res["manifest_path"] == os.path.join(path, "manifest.json")
    assert not no_partials(backup_dir)
    assert_private_tree(os.path.join(str(backup_dir), DB))

    manifest = m.load_manifest(path)
    assert m.verify_files(path, manifest) == []
    assert manifest["backup_id"] == res["backup_id"]
    assert manifest["database"] == DB
    assert manifest["format"] == fmt and manifest["compression"] == compression
    assert manifest["server_version_num"] // 10000 == 15 and manifest["pg_dump_version"].startswith("15.")
    assert manifest["host"] == "db1"
    assert manifest["total_size"] == res["size"] == sum(f["size"] for f in manifest["files"])
    assert manifest["toc_entries"] == res["toc_entries"] == toc_count(cluster, path)
    assert manifest["wal_lsn_at_start"] and "/" in manifest["wal_lsn_at_start"]
    assert manifest["snapshot"]
    assert m.parse_backup_time(manifest["started_at"]) <= m.parse_backup_time(manifest["finished_at"])
    assert res["duration_seconds"] >= manifest["duration_seconds"] > 0

    tables = {(t["schema"], t["name"]): t["rows"] for t in manifest["tables"]}
    assert set(tables) == SHOP_TABLES
    assert res["tables"] == len(SHOP_TABLES)
    assert tables == exact_counts(cluster, DB, SHOP_TABLES)
    assert tables[("public", "empty_table")] == 0 and tables[("sales", "order_line")] == 16000

    dump_rel = m.dump_name(DB, fmt, compression)
    dump_files = [f for f in manifest["files"] if f["path"] == dump_rel or f["path"].startswith(dump_rel + "/")]
    if fmt == "directory":
        assert res["sha256"] == m.tree_digest(dump_files)
        assert any(f["path"] == dump_rel + "/toc.dat" for f in dump_files)
    else:
        assert [f["path"] for f in dump_files] == [dump_rel]
        assert res["sha256"] == dump_files[0]["sha256"] == m.sha256_file(os.path.join(path, dump_rel))[0]

    restore_into(cluster, path, restore_name)
    assert exact_counts(cluster, restore_name, SHOP_TABLES) == tables
    return manifest


@pytest.mark.parametrize("compression, suffix", [("gzip", ".dump"), ("zstd", ".dump.zst"), ("none", ".dump")])
def test_custom_format(shop, tmp_path, compression, suffix):
    res = backup(shop, DB, tmp_path, label="daily", compression=compression, host_label="db1")
    manifest = check_backup(shop, res, tmp_path, "custom", compression, "restored_custom_%s" % compression)
    assert res["backup_id"].startswith("daily-")
    assert [f["path"] for f in manifest["files"]] == ["shop" + suffix]
    magic = b"\x28\xb5\x2f\xfd" if compression == "zstd" else b"PGDMP"  # zstd frame / pg_dump archive
    with open(os.path.join(res["path"], "shop" + suffix), "rb") as handle:
        assert handle.read(len(magic)) == magic
    assert manifest["globals"] is None


def test_compression_sizes_differ(shop, tmp_path):
    none = backup(shop, DB, tmp_path / "none", compression="none", host_label="db1")
    gzip = backup(shop, DB, tmp_path / "gzip", compression="gzip", compression_level=9, host_label="db1")
    assert not none.failed and not gzip.failed
    assert gzip["size"] < none["size"] / 2
    assert m.load_manifest(gzip["path"])["compression_level"] == 9


def test_directory_format_parallel(shop, tmp_path):
    res = backup(shop, DB, tmp_path, label="weekly", format="directory", jobs=2, host_label="db1")
    manifest = check_backup(shop, res, tmp_path, "directory", "gzip", "restored_directory")
    data_files = [f["path"] for f in manifest["files"] if f["path"].endswith(".dat.gz")]
    assert len(data_files) >= len(SHOP_TABLES) - 1  # the empty table may have no data file content
    assert manifest["files"] == sorted(manifest["files"], key=lambda f: f["path"])


def test_rows_after_the_snapshot_are_neither_counted_nor_dumped(shop, tmp_path):
    """A wrapper pg_dump changes data in another session after the snapshot was exported, then runs
    the real pg_dump: the manifest counts and the restored dump must both show the state before."""
    psql = os.path.join(shop.bindir, "psql")
    before = exact_counts(shop, DB, SHOP_TABLES)
    script = """\
        "%s" -X -q -v ON_ERROR_STOP=1 -h "%s" -p %s -U postgres -d %s -c "
            INSERT INTO audit.event (at, kind, payload)
                SELECT timestamptz '2026-02-01' + g * interval '1 minute', 'late', '{}' FROM generate_series(1, 777) g;
            DELETE FROM public.cache WHERE k IN (SELECT k FROM public.cache ORDER BY k LIMIT 10);
            CREATE TABLE public.created_after_snapshot (id int);" || exit 99
        exec "$REAL" "$@"
    """ % (psql, shop.socket_dir, shop.port, DB)
    bindir = make_bin_dir(tmp_path, shop.bindir, script)
    try:
        res = backup(shop, DB, tmp_path / "backups", pg_bin_dir=str(bindir), host_label="db1")
        assert not res.failed, res
        after = exact_counts(shop, DB, SHOP_TABLES)
        assert after[("audit", "event_2026")] == before[("audit", "event_2026")] + 777
        assert after[("public", "cache")] == before[("public", "cache")] - 10

        manifest = m.load_manifest(res["path"])
        counted = {(t["schema"], t["name"]): t["rows"] for t in manifest["tables"]}
        assert counted == before
        assert ("public", "created_after_snapshot") not in counted

        restore_into(shop, res["path"], "restored_snapshot")
        assert exact_counts(shop, "restored_snapshot", SHOP_TABLES) == before
        assert shop.scalar("SELECT to_regclass('public.created_after_snapshot') IS NULL", dbname="restored_snapshot")
    finally:
        with shop.connect(dbname=DB) as conn:
            conn.execute("DELETE FROM audit.event WHERE kind = 'late'")
            conn.execute("INSERT INTO public.cache SELECT 'k' || g, repeat('v', 50) FROM generate_series(1, 100) g "
                         "ON CONFLICT DO NOTHING")
            conn.execute("DROP TABLE IF EXISTS public.created_after_snapshot")


def test_password_never_on_argv(shop, tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    script = """\
        printf '%%s\\n' "$0" "$@" > "%(rec)s/argv"
        tr '\\0' '\\n' < /proc/$$/cmdline > "%(rec)s/cmdline"
        env | cut -d= -f1 | sort > "%(rec)s/env_keys"
        [ "$PGPASSWORD" = "%(pw)s" ] && echo yes > "%(rec)s/password_in_env"
        exec "$REAL" "$@"
    """ % {"rec": record, "pw": shop.password}
    bindir = make_bin_dir(tmp_path, shop.bindir, script)
    res = backup(shop, DB, tmp_path / "backups", pg_bin_dir=str(bindir), globals=True, host_label="db1")
    assert not res.failed, res
    argv = (record / "argv").read_text()
    cmdline = (record / "cmdline").read_text()
    assert "--snapshot=" in argv and "--format=custom" in argv
    assert shop.password not in argv and shop.password not in cmdline
    assert not [arg for arg in argv.splitlines() if "password=" in arg.lower() or arg == "-W"]
    assert (record / "password_in_env").read_text().strip() == "yes"
    keys = (record / "env_keys").read_text().split()
    assert {"PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGAPPNAME"} <= set(keys)
    assert shop.password not in res.output
    with open(res["manifest_path"], encoding="utf-8") as handle:
        assert shop.password not in handle.read()


def test_globals(shop, tmp_path):
    res = backup(shop, DB, tmp_path, globals=True, compression="zstd", host_label="db1")
    assert not res.failed, res
    manifest = m.load_manifest(res["path"])
    assert manifest["globals"] == "globals.sql"
    assert [f["path"] for f in manifest["files"]] == ["globals.sql", "shop.dump.zst"]
    text = open(os.path.join(res["path"], "globals.sql"), encoding="utf-8").read()
    assert "CREATE ROLE app_reader" in text
    assert "reader-secret-123" not in text and "SCRAM-SHA-256$" not in text
    assert res["size"] == manifest["total_size"]
    assert m.verify_files(res["path"], manifest) == []


def test_check_mode_touches_nothing(shop, tmp_path):
    target = tmp_path / "not" / "yet"
    res = backup(shop, DB, target, check_mode=True, label="daily", host_label="db1")
    assert res.rc == 0 and not res.failed, res
    assert res["changed"] is True
    assert res["backup_id"].startswith("daily-")
    assert res["path"] == os.path.join(str(target), DB, res["backup_id"])
    assert res["size"] is None and res["sha256"] is None
    assert any("would dump" in note for note in res["notes"])
    assert not (tmp_path / "not").exists()

    existing = tmp_path / "existing"
    existing.mkdir()
    res = backup(shop, DB, existing, check_mode=True, format="directory", jobs=2)
    assert not res.failed, res
    assert os.listdir(existing) == []


def test_check_mode_validates_backup_dir(shop, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    res = backup(shop, DB, a_file / "sub", check_mode=True)
    assert res.failed and "Failed to check backup_dir" in res["msg"] and "not a directory" in res["msg"], res


def test_two_backups_in_the_same_second_get_distinct_ids(shop, tmp_path):
    first = backup(shop, DB, tmp_path, label="burst", compression="none")
    second = backup(shop, DB, tmp_path, label="burst", compression="none")
    assert not first.failed and not second.failed
    assert first["backup_id"] != second["backup_id"]
    listed = m.list_backups(str(tmp_path), DB)
    assert [b["backup_id"] for b in listed] == [second["backup_id"], first["backup_id"]]


def test_sha256_in_manifest_matches_independent_hash(shop, tmp_path):
    res = backup(shop, DB, tmp_path, compression="gzip")
    manifest = m.load_manifest(res["path"])
    for entry in manifest["files"]:
        with open(os.path.join(res["path"], entry["path"]), "rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == entry["sha256"]


def test_backup_from_a_standby(shop, pg_replica_factory, tmp_path):
    replica = pg_replica_factory(shop, slot=False)
    target = shop.scalar("SELECT pg_current_wal_lsn()::text")
    deadline = time.monotonic() + 30
    while not replica.scalar("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)):
        assert time.monotonic() < deadline, "the replica did not catch up"
        time.sleep(0.1)
    res = backup(replica, DB, tmp_path, label="standby", compression="zstd", host_label="db2")
    assert not res.failed, res
    assert any("dumped from a standby" in note for note in res["notes"])
    manifest = m.load_manifest(res["path"])
    assert manifest["host"] == "db2"
    counted = {(t["schema"], t["name"]): t["rows"] for t in manifest["tables"]}
    on_primary = exact_counts(shop, DB, SHOP_TABLES)
    assert counted == {key: rows for key, rows in on_primary.items() if key != ("public", "cache")}
    assert any("unlogged" in note and "public.cache" in note for note in res["notes"])
    assert m.verify_files(res["path"], manifest) == []
    assert replica.scalar("SELECT %s::pg_lsn <= pg_last_wal_replay_lsn()", (manifest["wal_lsn_at_start"],))
    restore_into(shop, res["path"], "restored_from_standby")
    restored = exact_counts(shop, "restored_from_standby", SHOP_TABLES)
    assert restored == {**counted, ("public", "cache"): 0}


def test_reuse_hours_returns_the_recent_backup(pg_cluster, tmp_path):
    """A second run within reuse_hours takes no new dump; a damaged or older backup is not reused."""
    from tests.integration.module_runner import run_module

    pg_cluster.execute("CREATE DATABASE reuse_db")
    pg_cluster.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g", dbname="reuse_db")
    args = pg_cluster.module_args(database="reuse_db", backup_dir=str(tmp_path), label="daily", reuse_hours=2)
    first = run_module("pg_backup", args)
    assert first["changed"] and not first.failed, first
    second = run_module("pg_backup", args)
    assert not second.failed, second
    assert second["changed"] is False
    assert second["backup_id"] == first["backup_id"]
    assert second["sha256"] == first["sha256"] and second["size"] == first["size"]
    assert any("reused" in note for note in second["notes"])

    dump = [p for p in os.listdir(first["path"]) if p.endswith(".dump")][0]
    with open(os.path.join(first["path"], dump), "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    third = run_module("pg_backup", args)
    assert third["changed"] and third["backup_id"] != first["backup_id"], third
    assert any("damaged" in note for note in third["notes"])

    other_label = run_module("pg_backup", dict(args, label="weekly"))
    assert other_label["changed"] and other_label["backup_id"].startswith("weekly-")
