"""A backup directory in the pg_backup layout with made-up dump bytes, for unit tests.

The files and the manifest follow docs/manifest.md exactly (written through _manifest), only the
dump is not a real pg_dump archive: good for checksum-level tests and for everything that mocks
pg_restore and the server.
"""

from __future__ import annotations

import os

from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest

BACKUP_ID = "daily-20261123T021500Z"
TABLES = [
    {"schema": "public", "name": "orders", "rows": 3},
    {"schema": "My Schema", "name": "Tab le", "rows": 100},
]


def make_backup(base, database="app", dump_bytes=b"PGDMP fake archive bytes\n" * 40, backup_id=BACKUP_ID,
                compression="gzip", tables=None, toc_entries=12, pg_dump_version="15.18", extra_files=None):
    """Write a complete backup below ``base``; returns its directory (a str)."""
    path = _manifest.backup_path(str(base), database, backup_id)
    os.makedirs(path, mode=0o700)
    dump = _manifest.dump_name(database, "custom", compression)
    with open(os.path.join(path, dump), "wb") as handle:
        handle.write(dump_bytes)
    for rel, data in (extra_files or {}).items():
        with open(os.path.join(path, rel), "wb") as handle:
            handle.write(data)
    files = _manifest.file_entries(path)
    manifest = {
        "format_version": 1,
        "kind": "upkeep.runbooks.pg_backup",
        "backup_id": backup_id,
        "label": backup_id.rsplit("-", 1)[0],
        "database": database,
        "host": "db1",
        "server_version": "15.18",
        "server_version_num": 150018,
        "pg_dump_version": pg_dump_version,
        "format": "custom",
        "compression": compression,
        "compression_level": None,
        "started_at": "2026-11-23T02:15:00.123Z",
        "finished_at": "2026-11-23T02:15:12.456Z",
        "duration_seconds": 12.3,
        "wal_lsn_at_start": "0/3000028",
        "snapshot": "00000003-0000001B-1",
        "toc_entries": toc_entries,
        "tables": TABLES if tables is None else tables,
        "files": files,
        "total_size": sum(entry["size"] for entry in files),
        "globals": None,
        "tool": {"name": "upkeep.runbooks", "module": "pg_backup"},
    }
    _manifest.write_json_atomic(os.path.join(path, _manifest.MANIFEST_NAME), manifest)
    return path
