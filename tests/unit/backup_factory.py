"""Build backups in the layout of docs/manifest.md for tests that need one but not pg_dump.

    from tests.unit.backup_factory import make_backup, make_partial

    path, manifest = make_backup(tmp_path, "app", "daily-20261123T021500Z", {"app.dump": b"..."})

Files are whatever bytes the test gives ("dump" content is never parsed by the modules under
test); the manifest is complete and valid and written last with _manifest.write_json_atomic.
"""

import datetime
import os

from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest as m


def make_backup(backup_dir, database="app", backup_id="daily-20261123T021500Z", files=None, host="db1",
                fmt="custom", compression="gzip", finished_at=None, mtime=None):
    """A complete local backup; returns (path, manifest). ``files`` maps relative path -> bytes."""
    if files is None:
        files = {m.dump_name(database, fmt, compression): os.urandom(4096), "globals.sql": b"-- globals\n"}
    path = m.backup_path(str(backup_dir), database, backup_id)
    os.makedirs(path, mode=0o700)
    for rel, content in files.items():
        full = os.path.join(path, *rel.split("/"))
        os.makedirs(os.path.dirname(full), mode=0o700, exist_ok=True)
        with open(full, "wb") as handle:
            handle.write(content)
        os.chmod(full, 0o600)
    entries = m.file_entries(path)
    label, when = m.split_backup_id(backup_id)
    finished = finished_at or (when + datetime.timedelta(seconds=42))
    manifest = {
        "format_version": m.FORMAT_VERSION,
        "kind": m.KIND,
        "backup_id": backup_id,
        "label": label,
        "database": database,
        "host": host,
        "server_version": "15.8",
        "server_version_num": 150008,
        "pg_dump_version": "15.8",
        "format": fmt,
        "compression": compression,
        "compression_level": None,
        "started_at": m.utc_iso(when),
        "finished_at": m.utc_iso(finished),
        "duration_seconds": (finished - when).total_seconds(),
        "wal_lsn_at_start": "0/3000028",
        "snapshot": "00000003-0000001B-1",
        "toc_entries": 12,
        "tables": [{"schema": "public", "name": "audit_event", "rows": 3}],
        "files": entries,
        "total_size": sum(entry["size"] for entry in entries),
        "globals": "globals.sql" if "globals.sql" in files else None,
        "tool": {"name": "upkeep.runbooks", "module": "pg_backup"},
    }
    m.write_json_atomic(os.path.join(path, m.MANIFEST_NAME), manifest)
    if mtime is not None:
        touch_tree(path, mtime)
    return path, manifest


def make_partial(backup_dir, database="app", backup_id="daily-20261124T021500Z", mtime=None):
    """An abandoned ``.<backup_id>.partial`` directory with one file in it."""
    path = m.partial_path(str(backup_dir), database, backup_id)
    os.makedirs(path, mode=0o700)
    with open(os.path.join(path, m.safe_name(database) + ".dump"), "wb") as handle:
        handle.write(b"half a dump")
    if mtime is not None:
        touch_tree(path, mtime)
    return path


def touch_tree(path, mtime):
    for current, dirs, files in os.walk(path):
        for name in files + dirs:
            os.utime(os.path.join(current, name), (mtime, mtime))
    os.utime(path, (mtime, mtime))


def daily_ids(start, count, label="daily", hour=2):
    """Backup ids for ``count`` consecutive days from ``start`` (a date), at ``hour``:15 UTC."""
    ids = []
    for offset in range(count):
        day = start + datetime.timedelta(days=offset)
        when = datetime.datetime(day.year, day.month, day.day, hour, 15, tzinfo=datetime.timezone.utc)
        ids.append(m.new_backup_id(label, when))
    return ids
