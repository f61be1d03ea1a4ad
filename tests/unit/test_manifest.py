"""Unit tests for plugins/module_utils/_manifest.py (layout, atomic writes, listing, verification)."""

import datetime
import hashlib
import json
import os
import stat
from unittest import mock

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _files
from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest as m

UTC = datetime.timezone.utc


def make_backup(root, database="app", backup_id="daily-20261123T021500Z", files=None, finished_at=None,
                write_manifest=True, **overrides):
    """Create a complete backup directory with the given files (rel path -> bytes); return (path, manifest)."""
    files = files if files is not None else {m.dump_name(database, "custom", "gzip"): b"x" * 2048}
    path = m.backup_path(str(root), database, backup_id)
    os.makedirs(path)
    for rel, content in files.items():
        full = os.path.join(path, *rel.split("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as handle:
            handle.write(content)
    entries = m.file_entries(path)
    label, when = m.split_backup_id(backup_id)
    manifest = {
        "format_version": 1,
        "kind": m.KIND,
        "backup_id": backup_id,
        "label": label,
        "database": database,
        "host": "db1",
        "server_version": "15.8",
        "server_version_num": 150008,
        "pg_dump_version": "15.8",
        "format": "custom",
        "compression": "gzip",
        "compression_level": None,
        "started_at": m.utc_iso(when),
        "finished_at": finished_at or m.utc_iso(when + datetime.timedelta(seconds=5)),
        "duration_seconds": 5.0,
        "wal_lsn_at_start": "0/3000028",
        "snapshot": "00000003-0000001B-1",
        "toc_entries": 12,
        "tables": [{"schema": "public", "name": "t", "rows": 3}],
        "files": entries,
        "total_size": sum(e["size"] for e in entries),
        "globals": None,
        "tool": {"name": "upkeep.runbooks", "module": "pg_backup"},
    }
    manifest.update(overrides)
    if write_manifest:
        m.write_json_atomic(os.path.join(path, m.MANIFEST_NAME), manifest)
    return path, manifest


# -- names and times ------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("sampleapp", "sampleapp"),
    ("My DB", "My%20DB"),
    ('we"ird', "we%22ird"),
    ("a/b", "a%2Fb"),
    ("dé", "d%C3%A9"),
    (".hidden", "%2Ehidden"),
    ("..", "%2E."),
    ("a.b-c_d", "a.b-c_d"),
    ("50%", "50%25"),
])
def test_safe_name(name, expected):
    assert m.safe_name(name) == expected
    assert m.unsafe_name(expected) == name


def test_safe_name_rejects_empty():
    with pytest.raises(m.ManifestError):
        m.safe_name("")


def test_new_backup_id_and_parse():
    when = datetime.datetime(2026, 11, 23, 2, 15, 0, 999000, tzinfo=UTC)
    backup_id = m.new_backup_id("daily", when)
    assert backup_id == "daily-20261123T021500Z"
    assert m.parse_backup_time(backup_id) == when.replace(microsecond=0)
    assert m.split_backup_id("pre-upgrade-20261123T021500Z") == ("pre-upgrade", when.replace(microsecond=0))
    # naive means UTC; other zones are converted
    assert m.new_backup_id("x", datetime.datetime(2026, 1, 2, 3, 4, 5)) == "x-20260102T030405Z"
    plus_one = datetime.timezone(datetime.timedelta(hours=1))
    assert m.new_backup_id("x", datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=plus_one)) == "x-20260102T020405Z"


@pytest.mark.parametrize("label", ["Daily", "", "a b", "a.b", "ü", None])
def test_new_backup_id_rejects_bad_labels(label):
    with pytest.raises(m.ManifestError, match="label"):
        m.new_backup_id(label)


def test_parse_backup_time_forms():
    expected = datetime.datetime(2026, 11, 23, 2, 15, 0, 123000, tzinfo=UTC)
    assert m.parse_backup_time("2026-11-23T02:15:00.123Z") == expected
    assert m.parse_backup_time("2026-11-23T03:15:00.123+01:00") == expected
    assert m.parse_backup_time("20261123T021500Z") == expected.replace(microsecond=0)
    assert m.utc_iso(expected) == "2026-11-23T02:15:00.123Z"
    with pytest.raises(m.ManifestError):
        m.parse_backup_time("yesterday")


def test_dump_names():
    assert m.dump_name("app", "custom", "gzip") == "app.dump"
    assert m.dump_name("app", "custom", "none") == "app.dump"
    assert m.dump_name("app", "custom", "zstd") == "app.dump.zst"
    assert m.dump_name("My DB", "directory", "gzip") == "My%20DB.dir"


# -- files ----------------------------------------------------------------------------


def test_sha256_file_streams_in_chunks(tmp_path):
    data = os.urandom(3 * 1024 + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    reads = []
    real_open = open

    def spy_open(*args, **kwargs):
        handle = real_open(*args, **kwargs)
        original = handle.readinto

        def readinto(buf):
            reads.append(len(buf))
            return original(buf)

        wrapper = mock.Mock(wraps=handle)
        wrapper.readinto = readinto
        wrapper.__enter__ = lambda self: wrapper
        wrapper.__exit__ = lambda self, *exc: handle.close()
        return wrapper

    with mock.patch("builtins.open", spy_open):
        digest, size = m.sha256_file(str(path), bufsize=1024)
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert reads and max(reads) == 1024 and len(reads) == 5  # 4 chunks (last partial) + EOF read


def test_sha256_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert m.sha256_file(str(path)) == (hashlib.sha256(b"").hexdigest(), 0)


def test_write_json_atomic(tmp_path):
    target = tmp_path / "manifest.json"
    with mock.patch.object(_files, "fsync_dir", wraps=_files.fsync_dir) as fsync_dir:
        m.write_json_atomic(str(target), {"b": 1, "a": "é"})
    assert json.loads(target.read_text("utf-8")) == {"a": "é", "b": 1}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    fsync_dir.assert_called_once_with(str(tmp_path), strict=True)
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_write_json_atomic_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text('{"old": true}')
    with pytest.raises(TypeError):
        m.write_json_atomic(str(target), {"bad": object()})
    assert json.loads(target.read_text()) == {"old": True}
    assert os.listdir(tmp_path) == ["manifest.json"]  # temp file removed


def test_write_json_atomic_rename_failure_cleans_up(tmp_path):
    target = tmp_path / "manifest.json"
    with mock.patch.object(_files.os, "replace", side_effect=OSError(28, "No space left on device")):
        with pytest.raises(OSError):
            m.write_json_atomic(str(target), {"a": 1})
    assert os.listdir(tmp_path) == []


def test_tree_digest_is_order_independent():
    entries = [{"path": "b", "sha256": "1" * 64}, {"path": "a", "sha256": "2" * 64}]
    expected = hashlib.sha256(("a %s\nb %s\n" % ("2" * 64, "1" * 64)).encode()).hexdigest()
    assert m.tree_digest(entries) == expected == m.tree_digest(list(reversed(entries)))


# -- load_manifest --------------------------------------------------------------------


def test_load_manifest_roundtrip(tmp_path):
    path, manifest = make_backup(tmp_path)
    assert m.load_manifest(path) == manifest
    assert m.load_manifest(os.path.join(path, m.MANIFEST_NAME)) == manifest


def test_load_manifest_missing(tmp_path):
    path, _ = make_backup(tmp_path, write_manifest=False)
    with pytest.raises(m.ManifestError, match="does not exist"):
        m.load_manifest(path)


@pytest.mark.parametrize("change, message", [
    ({"format_version": 2}, "newer than"),
    ({"format_version": "1"}, "format_version"),
    ({"kind": "other"}, "kind"),
    ({"files": []}, "files is empty"),
    ({"files": [{"path": "../etc/passwd", "size": 1, "sha256": "0" * 64}]}, "safe relative path"),
    ({"files": [{"path": "/abs", "size": 1, "sha256": "0" * 64}]}, "safe relative path"),
    ({"files": [{"path": "a", "size": -1, "sha256": "0" * 64}]}, "valid size"),
    ({"files": [{"path": "a", "size": 1, "sha256": "xyz"}]}, "valid sha256"),
    ({"format": "tar"}, "format"),
    ({"finished_at": "soon"}, "not a time"),
    ({"globals": "globals.sql"}, "globals"),
    ({"tables": [{"schema": "public"}]}, "tables"),
])
def test_load_manifest_rejects(tmp_path, change, message):
    path, manifest = make_backup(tmp_path, write_manifest=False)
    manifest.update(change)
    m.write_json_atomic(os.path.join(path, m.MANIFEST_NAME), manifest)
    with pytest.raises(m.ManifestError, match=message):
        m.load_manifest(path)


def test_load_manifest_missing_keys_and_bad_json(tmp_path):
    path, manifest = make_backup(tmp_path, write_manifest=False)
    del manifest["snapshot"]
    m.write_json_atomic(os.path.join(path, m.MANIFEST_NAME), manifest)
    with pytest.raises(m.ManifestError, match="missing keys: snapshot"):
        m.load_manifest(path)
    with open(os.path.join(path, m.MANIFEST_NAME), "w") as handle:
        handle.write('{"format_version": 1,')
    with pytest.raises(m.ManifestError, match="not valid JSON"):
        m.load_manifest(path)


# -- verify_files ---------------------------------------------------------------------


def test_verify_files_clean(tmp_path):
    path, manifest = make_backup(tmp_path, files={"app.dump": b"a" * 100, "globals.sql": b"--\n"})
    assert m.verify_files(path, manifest) == []


def test_verify_files_detects_every_problem(tmp_path):
    files = {"app.dir/toc.dat": b"t" * 10, "app.dir/3001.dat": b"d" * 50, "app.dir/3002.dat": b"e" * 50,
             "globals.sql": b"g"}
    path, manifest = make_backup(tmp_path, files=files)
    os.unlink(os.path.join(path, "globals.sql"))                          # missing
    with open(os.path.join(path, "app.dir", "toc.dat"), "ab") as handle:  # size
        handle.write(b"!")
    with open(os.path.join(path, "app.dir", "3001.dat"), "r+b") as handle:  # flipped byte
        handle.seek(20)
        handle.write(b"X")
    with open(os.path.join(path, "app.dir", "stray.dat"), "wb") as handle:  # extra
        handle.write(b"zz")
    problems = m.verify_files(path, manifest)
    by_path = {p["path"]: p for p in problems}
    assert [p["path"] for p in problems] == ["app.dir/3001.dat", "app.dir/stray.dat", "app.dir/toc.dat", "globals.sql"]
    assert by_path["globals.sql"] == {"path": "globals.sql", "problem": "missing", "expected": 1, "actual": None}
    assert by_path["app.dir/toc.dat"] == {"path": "app.dir/toc.dat", "problem": "size", "expected": 10, "actual": 11}
    assert by_path["app.dir/3001.dat"]["problem"] == "sha256"
    assert by_path["app.dir/3001.dat"]["expected"] == hashlib.sha256(b"d" * 50).hexdigest()
    assert by_path["app.dir/stray.dat"] == {"path": "app.dir/stray.dat", "problem": "extra", "expected": None,
                                            "actual": 2}
    # sizes only / ignoring extras
    quick = m.verify_files(path, manifest, checksum=False, extra=False)
    assert [(p["path"], p["problem"]) for p in quick] == [("app.dir/toc.dat", "size"), ("globals.sql", "missing")]


# -- listing --------------------------------------------------------------------------


def test_list_backups_newest_first_and_skips(tmp_path):
    old, _ = make_backup(tmp_path, backup_id="daily-20261121T021500Z")
    new, _ = make_backup(tmp_path, backup_id="daily-20261123T021500Z")
    mid, _ = make_backup(tmp_path, backup_id="weekly-20261122T021500Z")
    other, _ = make_backup(tmp_path, database="My DB", backup_id="daily-20261120T000000Z")
    # not backups:
    make_backup(tmp_path, backup_id="daily-20261124T021500Z", write_manifest=False)       # no manifest
    partial = m.partial_path(str(tmp_path), "app", "daily-20261125T021500Z")
    os.makedirs(partial)
    shutil_src = os.path.join(new, m.MANIFEST_NAME)
    with open(shutil_src, "rb") as handle:
        content = handle.read()
    with open(os.path.join(partial, m.MANIFEST_NAME), "wb") as handle:                   # partial with manifest
        handle.write(content)
    broken, _ = make_backup(tmp_path, backup_id="daily-20261126T021500Z", write_manifest=False)
    with open(os.path.join(broken, m.MANIFEST_NAME), "w") as handle:                     # invalid manifest
        handle.write("{}")
    renamed = os.path.join(m.database_dir(str(tmp_path), "app"), "copy-20261127T021500Z")
    os.rename(make_backup(tmp_path, backup_id="copy-20261128T000000Z")[0], renamed)      # id mismatch

    skipped = []
    found = m.list_backups(str(tmp_path), "app", skipped=skipped)
    assert [b["path"] for b in found] == [new, mid, old]
    assert found[0]["backup_id"] == "daily-20261123T021500Z"
    assert found[0]["label"] == "daily" and found[0]["database"] == "app"
    assert found[0]["total_size"] == 2048 and found[0]["manifest"]["format_version"] == 1
    reasons = {os.path.basename(s["path"]): s["reason"] for s in skipped}
    assert set(reasons) == {"daily-20261124T021500Z", "daily-20261126T021500Z", "copy-20261127T021500Z"}
    assert "does not exist" in reasons["daily-20261124T021500Z"]

    everything = m.list_backups(str(tmp_path))
    assert [b["path"] for b in everything] == [new, mid, old, other]
    assert m.list_backups(str(tmp_path), "My DB")[0]["database"] == "My DB"
    assert m.list_backups(str(tmp_path), "absent") == []
    assert m.list_backups(str(tmp_path / "nowhere")) == []


def test_list_partials(tmp_path):
    make_backup(tmp_path)
    partial = m.partial_path(str(tmp_path), "app", "daily-20261125T021500Z")
    os.makedirs(os.path.join(partial, "app.dir"))
    with open(os.path.join(partial, "app.dir", "toc.dat"), "wb") as handle:
        handle.write(b"x")
    past = 1_000_000_000
    for p in (partial, os.path.join(partial, "app.dir"), os.path.join(partial, "app.dir", "toc.dat")):
        os.utime(p, (past, past))
    os.makedirs(os.path.join(m.database_dir(str(tmp_path), "app"), ".not-a-partial"))
    found = m.list_partials(str(tmp_path), now=past + 3600)
    assert found == [{"path": partial, "age_seconds": 3600.0}]
    # a recent write anywhere inside makes the partial young
    os.utime(os.path.join(partial, "app.dir", "toc.dat"), (past + 3000, past + 3000))
    assert m.list_partials(str(tmp_path), "app", now=past + 3600)[0]["age_seconds"] == 600.0
    assert m.list_partials(str(tmp_path), "other", now=past + 3600) == []
