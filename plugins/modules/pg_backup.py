#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_backup
short_description: Dump one PostgreSQL database into a checksummed, self-describing backup
version_added: 0.2.0
description:
  - Dumps one database with C(pg_dump) into C(<backup_dir>/<database>/<backup_id>/), where
    C(backup_id) is C(<label>-<UTC YYYYmmddTHHMMSSZ>), and writes a JSON manifest beside the dump.
    The layout and every manifest field are described in C(docs/manifest.md) of the collection.
  - Everything is written into a hidden C(.<backup_id>.partial) directory first. Files are
    fsynced, the manifest is written last (temporary name, fsync, rename), then the directory is
    renamed to its final name and its parent fsynced. A backup counts only when its manifest exists.
  - "The manifest records the database, O(host_label), server and pg_dump versions, O(label), start and
    end in UTC, the duration, the size and SHA-256 of every file, the number of entries in the archive's
    table of contents, every table with its exact row count and the WAL position at the start."
  - The row counts and the dump come from the same snapshot. The module opens a C(REPEATABLE READ READ ONLY)
    transaction, reads the WAL position, exports the snapshot with C(pg_export_snapshot()), starts
    C(pg_dump --snapshot=<id>) and counts the rows of every table with C(count(*)) in that transaction
    while pg_dump runs, one table at a time and without parallel workers (the counts finish long before
    the dump, so parallel workers would only take CPU from it). The transaction stays open until pg_dump
    has finished.
  - The task fails, leaving nothing that looks like a backup (the partial directory is removed), when
    pg_dump or the compressor exits non-zero, pg_dump reports an error on stderr, the dump is smaller than
    O(min_size), the archive's table of contents cannot be read, or writing fails (for example a full disk).
    The same cleanup happens when the module is stopped with SIGTERM or SIGINT; pg_dump is killed first.
  - The password reaches pg_dump, pg_dumpall and pg_restore through their environment (E(PGPASSWORD)),
    never through the command line.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - upkeep.runbooks.postgres
attributes:
  check_mode:
    support: full
    description:
      - Connects, checks the server version against pg_dump, checks that O(backup_dir) exists or can be
        created, is writable and has at least as much free space as the database occupies on the
        server (C(pg_database_size)), and predicts RV(backup_id) and RV(path).
      - Writes nothing; reports C(changed=true) with a note saying it would dump.
  diff_mode:
    support: none
    description: A dump is an action, not a state; there is nothing to diff.
options:
  database:
    description:
      - Name of the database to dump. The module connects to it directly; O(login_db) is not used.
      - Any name PostgreSQL accepts works (quotes, spaces, upper case, non-ASCII). On disk it is
        percent-encoded (every character outside C([A-Za-z0-9._-])); the manifest keeps the real name.
    type: str
    required: true
  backup_dir:
    description:
      - Directory holding the backups. Created (mode C(0700)) when missing.
      - The backup goes to C(<backup_dir>/<database>/<backup_id>/) with the database name encoded as above.
    type: path
    required: true
  label:
    description:
      - Kind of backup (for example V(daily), V(weekly), V(pre-upgrade)); the first part of the backup id.
      - Lower-case letters, digits, C(_) and C(-) only.
    type: str
    default: manual
  format:
    description:
      - pg_dump archive format. V(custom) writes one file; V(directory) writes one file per table and
        allows parallel dumps with O(jobs).
    type: str
    choices: [custom, directory]
    default: custom
  jobs:
    description:
      - Number of parallel pg_dump workers. Only with O(format=directory); every worker uses the same snapshot.
    type: int
    default: 1
  compression:
    description:
      - V(gzip) uses pg_dump's own compression (C(-Z)).
      - V(zstd) with O(format=custom) pipes an uncompressed archive (C(pg_dump -Fc -Z0)) through
        C(zstd -T0) into C(<database>.dump.zst); the C(zstd) program must be installed. Much faster than
        gzip for a similar size. Restoring it needs C(zstd -dc) in front of pg_restore (the verify and
        restore modules of this collection do that).
      - With V(zstd) and O(format=custom), zstd writes the dump file itself and the module reads the file back
        while it grows, computing its SHA-256 and feeding its start to C(zstd -dc | pg_restore --list), and
        flushes it to disk in steps; nothing is read a second time after the dump.
      - V(zstd) with O(format=directory) uses pg_dump's native zstd support and therefore needs pg_dump 16 or
        newer; with an older pg_dump it is refused, because pg_restore before 16 cannot read such an archive.
      - V(none) writes an uncompressed archive (C(-Z0)).
    type: str
    choices: [gzip, zstd, none]
    default: gzip
  compression_level:
    description:
      - Compression level, 1 to 9 for V(gzip) and 1 to 19 for V(zstd). The tool's default when omitted.
      - Not allowed with O(compression=none).
    type: int
  globals:
    description:
      - Also write C(globals.sql) with C(pg_dumpall --globals-only --no-role-passwords) (roles, their
        memberships and settings, tablespaces; no passwords). Usually needs a superuser.
    type: bool
    default: false
  min_size:
    description:
      - Smallest acceptable dump in bytes (the archive file, or all files of a directory archive).
        A smaller result fails the task, as an empty or truncated dump would.
    type: int
    default: 1024
  host_label:
    description:
      - Name of the database host recorded in the manifest. Roles pass C(inventory_hostname).
      - Defaults to the host name of the machine the module runs on.
    type: str
  reuse_hours:
    description:
      - When greater than 0 and a complete backup of this database with the same O(label) finished less
        than this many hours ago and its files still match its manifest, return that backup instead of
        dumping again (the task reports no change and RV(notes) says so).
      - A re-run of a cadence after a later step failed then carries on with the backup it already took,
        instead of taking and copying off site a second one.
    type: float
    default: 0
  pg_bin_dir:
    description:
      - Directory holding C(pg_dump), C(pg_restore) and (with O(globals)) C(pg_dumpall).
      - When omitted, the module uses the first of these whose pg_dump is at least the server's major version,
        namely the directory of C(pg_dump) on PATH, C(pg_config --bindir), and the newest
        C(/usr/lib/postgresql/<version>/bin).
      - A pg_dump older than the server's major version is always refused.
    type: path
notes:
  - The login role needs C(SELECT) on every table and sequence of the database (pg_dump needs it as well).
    The C(pg_read_all_data) predefined role (PostgreSQL 14 and later) is enough for a dedicated backup role.
  - "Tables listed in the manifest are the ordinary tables and partitions outside the system schemas that
    are not part of an extension (temporary tables excluded), exactly the tables whose data pg_dump writes
    as C(TABLE DATA) entries; partitioned parents, views, materialized views and foreign tables have no
    row count. On a standby unlogged tables are left out as well, because a standby has no data for them
    and pg_dump dumps them empty there (the notes name them)."
  - "The WAL position is read right after the snapshot was taken: every transaction in the dump committed
    before it. On a standby it is the last replayed position (C(pg_last_wal_replay_lsn()))."
  - For O(format=directory) the returned RV(sha256) is the SHA-256 of the lines C(<path> <sha256>)
    (path relative to the backup directory, one line per file, sorted by path, each ending in a newline) of
    the files of the archive; the manifest lists every file's own checksum.
  - Files are created with mode C(0600) and directories with C(0700); dumps may hold personal data.
  - Only the PostgreSQL client programs and, for V(zstd), the C(zstd) program are needed on the managed node
    (Debian packages C(postgresql-client) and C(zstd)).
requirements:
  - pg_dump, pg_restore (and pg_dumpall with O(globals)) at least as new as the server's major version
  - zstd when O(compression=zstd) and O(format=custom)
seealso:
  - name: pg_dump
    description: The program doing the dump, its formats and the C(--snapshot) option.
    link: https://www.postgresql.org/docs/current/app-pgdump.html
  - name: Snapshot synchronization
    description: pg_export_snapshot() and how another session can use the same snapshot.
    link: https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-SNAPSHOT-SYNCHRONIZATION
"""

EXAMPLES = r"""
- name: Daily dump of the application database (custom format, gzip)
  upkeep.runbooks.pg_backup:
    login_unix_socket: /var/run/postgresql
    database: app
    backup_dir: /var/backups/postgresql
    label: daily
    host_label: "{{ inventory_hostname }}"
  become: true
  become_user: postgres
  register: backup

- name: Faster dump with zstd, roles and tablespaces beside it
  upkeep.runbooks.pg_backup:
    login_host: 127.0.0.11
    login_user: backup
    login_password: "{{ vault_backup_password }}"
    database: app
    backup_dir: /srv/backups
    label: weekly
    compression: zstd
    globals: true
    host_label: "{{ inventory_hostname }}"

- name: Parallel dump of a large database in directory format
  upkeep.runbooks.pg_backup:
    login_unix_socket: /var/run/postgresql
    database: warehouse
    backup_dir: /srv/backups
    label: pre-upgrade
    format: directory
    jobs: 4
    min_size: 1048576
  become: true
  become_user: postgres

- name: Show where the backup went
  ansible.builtin.debug:
    msg: >-
      {{ backup.backup_id }}: {{ backup.size | human_readable }}
      in {{ backup.duration_seconds }} s, {{ backup.path }}
"""

RETURN = r"""
backup_id:
  description: Identifier of the backup, C(<label>-<UTC YYYYmmddTHHMMSSZ>); predicted in check mode.
  returned: success
  type: str
  sample: daily-20261123T021500Z
path:
  description: Directory of the backup; predicted in check mode (nothing is created).
  returned: success
  type: str
  sample: /var/backups/postgresql/app/daily-20261123T021500Z
manifest_path:
  description: Path of the manifest (C(manifest.json) in RV(path)); predicted in check mode.
  returned: success
  type: str
  sample: /var/backups/postgresql/app/daily-20261123T021500Z/manifest.json
size:
  description: Total size in bytes of the files of the backup (dump and C(globals.sql), without the manifest).
  returned: success, null in check mode
  type: int
  sample: 190840832
sha256:
  description:
    - SHA-256 of the dump file. For O(format=directory), the SHA-256 of the sorted C(<path> <sha256>) lines
      of the archive's files (see the notes).
  returned: success, null in check mode
  type: str
  sample: 5f2b1cfa0e6f4ac3e1b59c7b8e8c5e0e9e1f9f1e0b9a3c0d3f6b1d2c4e5f6a7b
duration_seconds:
  description: Seconds from the start of the dump to the rename of the finished backup.
  returned: success, null in check mode
  type: float
  sample: 14.2
tables:
  description: Number of tables whose exact row count is in the manifest.
  returned: success, null in check mode
  type: int
  sample: 42
toc_entries:
  description: Number of entries C(pg_restore --list) prints for the archive.
  returned: success, null in check mode
  type: int
  sample: 318
database:
  description: The database dumped (its real name).
  returned: always
  type: str
  sample: app
format:
  description: Archive format, V(custom) or V(directory).
  returned: always
  type: str
  sample: custom
compression:
  description: Compression used, V(gzip), V(zstd) or V(none).
  returned: always
  type: str
  sample: gzip
notes:
  description: What the module did or, in check mode, would do, and anything worth knowing about the dump.
  returned: always
  type: list
  elements: str
  sample:
    - >-
      dumped database 'app' (42 tables, 1204332 rows) with pg_dump 15.8 into
      /var/backups/postgresql/app/daily-20261123T021500Z
"""

import hashlib  # noqa: E402 - Ansible modules import after their documentation
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest as manifest_utils  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import human_bytes  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils import _pg_tools as pg_tools  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._postgres import (  # noqa: E402
    PostgresError,
    close_quietly,
    connect,
    describe_error,
    ensure_psycopg,
    identifier,
    postgres_common_argument_spec,
    query_all,
    query_one,
    sql,
)

FATAL_MARKERS = ("pg_dump: error:", "pg_dumpall: error:", "FATAL", "ERROR:")
STDERR_KEEP = 64 * 1024
FOLLOW_CHUNK = 1 << 20  # the zstd dump is read back (hashed) in pieces of this size: memory stays flat
FOLLOW_WAIT = 0.02  # seconds to wait for zstd when the reader has caught up with what it wrote
SYNC_BEHIND = 64 << 20  # while zstd writes, the file is flushed to disk every time this much more was read
LEVELS = {"gzip": (1, 9), "zstd": (1, 19)}

TABLES_QUERY = """
SELECT n.nspname AS schema, c.relname AS name, c.relpersistence = 'u' AS unlogged
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast'
  AND n.nspname !~ '^pg_temp_'
  AND NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_depend d
    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
  )
ORDER BY n.nspname, c.relname
"""


class BackupError(Exception):
    """A step failed; ``str()`` is the complete user-facing message."""


class Interrupted(BaseException):
    """SIGTERM/SIGINT arrived while dumping (BaseException: no library may swallow it)."""


def _digest_of(dump_entries, fmt):
    """RV(sha256): the dump file's, or for a directory dump the digest of its file list."""
    return manifest_utils.tree_digest(dump_entries) if fmt == "directory" else dump_entries[0]["sha256"]


def _dump_digest(manifest):
    rel = manifest_utils.dump_name(manifest["database"], manifest["format"], manifest["compression"])
    entries = [e for e in manifest["files"] if e["path"] == rel or e["path"].startswith(rel + "/")]
    return _digest_of(entries, manifest["format"]) if entries else None


def _raise_interrupted(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


# --------------------------------------------------------------------------------------
# small helpers


def validate_params(module):
    p = module.params
    if not manifest_utils.valid_label(p["label"]):
        module.fail_json(msg="Failed to validate label: %r may contain only lower-case letters, digits, "
                             "'_' and '-'" % (p["label"],))
    if not p["database"]:
        module.fail_json(msg="Failed to validate database: the name is empty")
    if p["jobs"] < 1:
        module.fail_json(msg="Failed to validate jobs: must be 1 or more, got %d" % p["jobs"])
    if p["jobs"] > 1 and p["format"] != "directory":
        module.fail_json(msg="Failed to validate jobs: parallel dumps (jobs=%d) need format=directory" % p["jobs"])
    if p["min_size"] < 0:
        module.fail_json(msg="Failed to validate min_size: must not be negative")
    level = p["compression_level"]
    if level is not None:
        if p["compression"] == "none":
            module.fail_json(msg="Failed to validate compression_level: not allowed with compression=none")
        low, high = LEVELS[p["compression"]]
        if not low <= level <= high:
            module.fail_json(msg="Failed to validate compression_level: %s levels are %d to %d, got %d"
                                 % (p["compression"], low, high, level))


def _strerror(exc):
    return getattr(exc, "strerror", None) or str(exc)


def _read_stderr(handle):
    """(error lines, last lines) of a captured stderr file, reading at most STDERR_KEEP bytes of it."""
    handle.flush()
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - STDERR_KEEP))
    text = handle.read().decode("utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if any(marker in line for marker in FATAL_MARKERS)]
    return errors, lines


def _unique(lines):
    seen = set()
    return [line for line in lines if not (line in seen or seen.add(line))]


def _mask(text, secret):
    return text.replace(secret, "********") if secret else text


def _existing_ancestor(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _free_bytes(path):
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def _ensure_dir(path):
    """Create ``path`` (and parents) with mode 0700 when missing; it must end up a writable directory."""
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o700)
    if not os.access(path, os.W_OK | os.X_OK):
        raise OSError(13, "Permission denied (directory not writable)")


class CountThread(threading.Thread):
    """The exact row counts of PgBackup.count_rows on a thread of their own (zstd dumps)."""

    def __init__(self, backup, tables):
        super().__init__(name="row-counts", daemon=True)
        self.backup = backup
        self.tables = tables
        self.counted = None
        self.error = None

    def run(self):
        try:
            self.counted = self.backup.count_rows(self.tables)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread by result()
            self.error = exc

    def result(self):
        if self.error is not None:
            if isinstance(self.error, BackupError):
                raise self.error
            raise BackupError("Failed to count rows in database '%s': %s: %s" % (
                self.backup.database, self.error.__class__.__name__,
                _mask(str(self.error), self.backup.password))) from None
        return self.counted

    def stop(self):
        """Cancel a running count query (the module is failing) and wait a little for the thread."""
        try:
            self.backup.conn.cancel()
        except Exception:  # noqa: S110 - the connection is closed next anyway
            pass
        self.join(timeout=5)


# --------------------------------------------------------------------------------------
# the backup


class PgBackup(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.database = self.p["database"]
        self.password = self.p.get("login_password")
        self.conn = None
        self.procs = []
        self.toc_procs = []
        self.toc_sink = None
        self.zstd = None
        self.follow_fd = None
        self.counter = None
        self.partial = None
        self.notes = []
        self.tools = None
        self.server_version = None
        self.server_version_num = None
        self.in_recovery = False

    # ---- set-up ----------------------------------------------------------------------

    def client_env(self, database=True, password=True):
        params = dict(self.p)
        if not password:
            params["login_password"] = None
        env = pg_tools.client_env(params, database=self.database if database else "",
                                  application_name="upkeep.runbooks pg_backup")
        if not database:
            env.pop("PGDATABASE", None)
        return env

    def connect(self):
        params = dict(self.p)
        params["login_db"] = self.database
        self.conn = connect(self.module, params, autocommit=True)
        try:
            row = query_one(self.conn, "SELECT current_setting('server_version_num')::int AS num, "
                                       "current_setting('server_version') AS version, "
                                       "pg_catalog.pg_is_in_recovery() AS in_recovery")
        except PostgresError as exc:
            raise BackupError("Failed to read the server version of database '%s': %s"
                              % (self.database, exc)) from None
        self.server_version_num = int(row["num"])
        self.server_version = (row["version"] or "").split(" ")[0]
        self.in_recovery = bool(row["in_recovery"])

    def find_tools(self):
        needed = ["pg_dump", "pg_restore"]
        if self.p["globals"]:
            needed.append("pg_dumpall")
        try:
            self.tools = pg_tools.find_bindir(self.server_version_num, pg_bin_dir=self.p["pg_bin_dir"],
                                              tools=needed, env=self.client_env(password=False))
        except pg_tools.ToolError as exc:
            raise BackupError("Failed to find a usable pg_dump for PostgreSQL %s: %s"
                              % (self.server_version, exc)) from None
        if self.p["compression"] == "zstd":
            if self.p["format"] == "directory":
                if pg_tools.major_of(self.tools["version_num"]) < 16:
                    raise BackupError(
                        "Failed to check compression: compression=zstd with format=directory needs pg_dump 16 or "
                        "newer (pg_dump %s in %s); use format=custom (zstd through a pipe) or compression=gzip"
                        % (self.tools["version"], self.tools["bindir"]))
            else:
                self.tools["zstd"] = shutil.which("zstd")
                if not self.tools["zstd"]:
                    raise BackupError("Failed to find zstd: compression=zstd needs the zstd program on PATH "
                                      "(Debian package zstd)")

    def tool(self, name):
        return os.path.join(self.tools["bindir"], name)

    # ---- check mode ------------------------------------------------------------------

    def check(self):
        started = manifest_utils.utcnow()
        backup_id = manifest_utils.new_backup_id(self.p["label"], started)
        path = manifest_utils.backup_path(self.p["backup_dir"], self.database, backup_id)
        try:
            row = query_one(self.conn, "SELECT pg_catalog.pg_database_size(current_database()) AS size")
        except PostgresError as exc:
            raise BackupError("Failed to read the size of database '%s': %s" % (self.database, exc)) from None
        db_size = int(row["size"])
        backup_dir = self.p["backup_dir"]
        existing = _existing_ancestor(manifest_utils.database_dir(backup_dir, self.database))
        if not os.path.isdir(existing):
            raise BackupError("Failed to check backup_dir %s: %s is not a directory" % (backup_dir, existing))
        if not os.access(existing, os.W_OK | os.X_OK):
            raise BackupError("Failed to check backup_dir %s: %s is not writable by this user"
                              % (backup_dir, existing))
        free = _free_bytes(existing)
        if free < db_size:
            raise BackupError(
                "Failed to check backup_dir %s: %s free on its file system, less than the %s database '%s' "
                "occupies on the server (pg_database_size)"
                % (backup_dir, human_bytes(free), human_bytes(db_size), self.database))
        self.notes.append(
            "check mode: would dump database '%s' (%s on the server) with pg_dump %s (%s, %s) into %s"
            % (self.database, human_bytes(db_size), self.tools["version"], self.p["format"],
               self.p["compression"], path))
        self.notes.append("%s free in %s" % (human_bytes(free), existing))
        return self.result(backup_id, path)

    def reuse(self):
        """The newest complete backup with this label when it is younger than reuse_hours, else None.

        A re-run of a cadence after a later step failed then carries on with the backup it
        already took instead of dumping again (and copying a second backup off site).
        """
        hours = self.p["reuse_hours"]
        if not hours or hours <= 0:
            return None
        now = manifest_utils.utcnow()
        for found in manifest_utils.list_backups(self.p["backup_dir"], self.database):
            if found["label"] != self.p["label"]:
                continue
            finished = manifest_utils.parse_backup_time(found["finished_at"])
            age_hours = (now - finished).total_seconds() / 3600.0
            if age_hours >= hours:
                return None
            problems = manifest_utils.verify_files(found["path"], found["manifest"])
            if problems:
                self.notes.append("newest backup %s is damaged (%s), taking a new one"
                                  % (found["backup_id"], ", ".join(sorted({m["problem"] for m in problems}))))
                return None
            manifest = found["manifest"]
            self.notes.append("reused %s: a complete backup with label %s finished %.1f h ago (reuse_hours %s); "
                              "its files match the manifest" % (found["backup_id"], self.p["label"], age_hours, hours))
            out = self.result(found["backup_id"], found["path"], size=manifest["total_size"],
                              duration_seconds=manifest["duration_seconds"], tables=len(manifest["tables"]),
                              toc_entries=manifest["toc_entries"], sha256=_dump_digest(manifest),
                              format=manifest["format"], compression=manifest["compression"])
            out["changed"] = False
            return out
        return None

    def result(self, backup_id, path, **values):
        out = dict(
            changed=True,
            backup_id=backup_id,
            path=path,
            manifest_path=os.path.join(path, manifest_utils.MANIFEST_NAME),
            size=None,
            sha256=None,
            duration_seconds=None,
            tables=None,
            toc_entries=None,
            database=self.database,
            format=self.p["format"],
            compression=self.p["compression"],
            notes=self.notes)
        out.update(values)
        return out

    # ---- dump --------------------------------------------------------------------------

    def dump_argv(self, snapshot, target):
        p = self.p
        argv = [self.tool("pg_dump"), "--format=%s" % p["format"], "--snapshot=%s" % snapshot, "--no-password"]
        if p["compression"] == "gzip":
            if p["compression_level"] is not None:
                argv.append("--compress=%d" % p["compression_level"])
        elif p["compression"] == "zstd" and p["format"] == "directory":
            argv.append("--compress=zstd" + (":%d" % p["compression_level"] if p["compression_level"] else ""))
        else:
            argv.append("--compress=0")
        if p["format"] == "directory" and p["jobs"] > 1:
            argv.append("--jobs=%d" % p["jobs"])
        if p["session_role"]:
            argv.append("--role=%s" % p["session_role"])
        if target is not None:
            argv.append("--file=%s" % target)
        return argv

    def start_dump(self, snapshot, dump_path, stderr_dump, stderr_zstd):
        env = self.client_env()
        external_zstd = self.p["compression"] == "zstd" and self.p["format"] == "custom"
        if not external_zstd:
            proc = pg_tools.start(self.dump_argv(snapshot, dump_path), env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=stderr_dump)
            self.procs.append(("pg_dump", proc, stderr_dump))
            return
        # pg_dump | zstd > FILE, as an operator would run it: zstd writes the dump file itself, and
        # this process reads it back while it grows (from the page cache), hashing it and feeding
        # the start of it to the table-of-contents check. No byte of the dump passes through a
        # pipe into this process and out again.
        out_fd = os.open(dump_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            dump = pg_tools.start(self.dump_argv(snapshot, None), env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=stderr_dump)
            self.procs.append(("pg_dump", dump, stderr_dump))
            zstd_argv = [self.tools["zstd"], "-T0", "-q", "-c"]
            if self.p["compression_level"]:
                zstd_argv.append("-%d" % self.p["compression_level"])
            zstd = pg_tools.start(zstd_argv, env=self.client_env(database=False, password=False),
                                  stdin=dump.stdout, stdout=out_fd, stderr=stderr_zstd)
            self.procs.append(("zstd", zstd, stderr_zstd))
            dump.stdout.close()  # zstd holds the read end now; pg_dump gets SIGPIPE if zstd dies
        finally:
            os.close(out_fd)  # zstd holds the file open; its exit closes it
        self.zstd = zstd
        self.follow_fd = os.open(dump_path, os.O_RDONLY)

    def start_toc_reader(self, out, err_unzstd, err_list):
        """``zstd -dc | pg_restore --list`` fed from the dump stream while it is written (zstd dumps).

        pg_restore reads only the archive's header and table of contents, which pg_dump writes
        first, and exits; its listing goes to the file ``out``. Returns the feeder's stdin.
        """
        env = self.client_env(database=False, password=False)
        unzstd = pg_tools.start([self.tools["zstd"], "-dcq"], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err_unzstd)
        self.toc_procs.append(("zstd", unzstd, err_unzstd))
        lister = pg_tools.start([self.tool("pg_restore"), "--list"], env=env, stdin=unzstd.stdout,
                                stdout=out, stderr=err_list)
        self.toc_procs.append(("pg_restore", lister, err_list))
        unzstd.stdout.close()
        return unzstd.stdin

    def follow(self, dump_path, toc_sink):
        """Read the dump file while zstd writes it: hash it and feed ``toc_sink`` until that closes.

        Reads what zstd has written so far; at the end of it, waits for more (or for zstd to
        exit, after which the rest is read once more to the end). The file is flushed to disk in
        steps of SYNC_BEHIND bytes while zstd still writes, so the final fsync has little left.
        Returns ``(sha256, size)`` of the file as it is on disk, fsynced. The pipeline's own
        failures (zstd unable to write, a full disk) are found by wait_dump.
        """
        digest = hashlib.sha256()
        size = 0
        synced = 0
        buf = bytearray(FOLLOW_CHUNK)
        view = memoryview(buf)
        fd = self.follow_fd
        writer_done = False
        try:
            while True:
                count = os.readv(fd, [buf])
                if count:
                    chunk = view[:count]
                    digest.update(chunk)
                    size += count
                    if toc_sink is not None:
                        try:
                            toc_sink.write(chunk)
                        except (BrokenPipeError, ValueError):
                            self.close_toc_sink()  # pg_restore has read the table of contents
                            toc_sink = None
                    if not writer_done and size - synced >= SYNC_BEHIND:
                        os.fdatasync(fd)
                        synced = size
                    continue
                if writer_done:
                    break
                if self.zstd.poll() is None:
                    # A plain sleep: Popen.wait(timeout) polls in much shorter steps and costs more CPU.
                    time.sleep(FOLLOW_WAIT)
                    continue
                writer_done = True  # zstd has exited: what it wrote is all in the file
            if toc_sink is not None:
                self.close_toc_sink()
            os.fsync(fd)
        except OSError as exc:
            raise BackupError("Failed to dump database '%s': cannot write %s: %s"
                              % (self.database, dump_path, _strerror(exc))) from None
        finally:
            os.close(fd)
            self.follow_fd = None
        return digest.hexdigest(), size

    def close_toc_sink(self):
        if self.toc_sink is not None:
            try:
                self.toc_sink.close()
            except OSError:  # noqa: S110 - pg_restore stopped reading; its exit code tells whether it is done
                pass
            self.toc_sink = None

    def toc_from_stream(self, dump_path, out, err_list):
        """The entry count pg_restore --list gave from the stream (see start_toc_reader)."""
        # pg_restore first: the feeder may still be decompressing what pg_restore reads (a busy
        # machine), and stopping it now would cut the table of contents short. Once pg_restore
        # has exited the feeder ends by itself, at the end of its input or on a broken pipe
        # (not an error); only one that still hangs on is stopped.
        code = None
        for name, proc, _err in self.toc_procs:
            if name == "pg_restore":
                code = proc.wait()
        for name, proc, _err in self.toc_procs:
            if name != "pg_restore":
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pg_tools.kill_process(proc, grace=1)
        self.toc_procs = []
        errors, lines = _read_stderr(err_list)
        if code != 0 or errors:
            raise BackupError("Failed to read the table of contents of %s with pg_restore --list: %s"
                              % (dump_path, "; ".join((errors or lines[-3:] or ["exit code %s" % code])[:3])))
        out.seek(0)
        count = sum(1 for line in out if line.strip() and not line.strip().startswith(b";"))
        if count == 0:
            raise BackupError("Failed to read the table of contents of %s: pg_restore --list found no entries"
                              % dump_path)
        return count

    def dump_failed(self):
        """True when a child of the pipeline already exited non-zero."""
        return any(proc.poll() not in (None, 0) for _name, proc, _err in self.procs)

    def wait_dump(self):
        """Wait for every process of the pipeline; fail on any non-zero exit or error line on stderr."""
        problems = []
        warnings = []
        for name, proc, err in self.procs:
            code = proc.wait()
            errors, lines = _read_stderr(err)
            if name == "pg_dump":
                warnings.extend(line for line in lines if "warning:" in line)
            if code != 0 or errors:
                detail = _unique(errors or lines[-3:])[:3]
                why = "exit code %s" % code if code >= 0 else "killed by %s" % signal.Signals(-code).name
                text = "%s failed (%s)" % (name, why) + (": " + "; ".join(detail) if detail else "")
                # pg_dump dying of SIGPIPE is the consequence of the compressor failing: name the cause first.
                consequence = name == "pg_dump" and code == -signal.SIGPIPE
                problems.append((1 if consequence else 0, text))
        self.procs = []
        if problems:
            message = " | ".join(text for _rank, text in sorted(problems, key=lambda item: item[0]))
            raise BackupError("Failed to dump database '%s': %s" % (self.database, _mask(message, self.password)))
        for line in _unique(warnings)[:5]:
            self.notes.append(_mask(line, self.password))

    def wait_dump_and_counts(self):
        """The counts of the counting thread once the pipeline has ended; a failed count is named
        first: its connection exported the snapshot, so pg_dump failing to import it afterwards
        ("invalid snapshot identifier") is the consequence, not the cause."""
        counter, self.counter = self.counter, None
        try:
            counted = counter.result()
        except BackupError as count_error:
            try:
                self.wait_dump()
            except BackupError as dump_error:
                raise BackupError("%s; then %s" % (count_error, dump_error)) from None
            raise
        self.wait_dump()
        return counted

    def count_rows(self, tables):
        counted = []
        for table in tables:
            if self.dump_failed():
                return counted
            query = sql("SELECT count(*) AS n FROM {0}").format(identifier(table["schema"], table["name"]))
            try:
                row = query_one(self.conn, query)
            except PostgresError as exc:
                raise BackupError("Failed to count rows of table %s.%s in database '%s': %s"
                                  % (table["schema"], table["name"], self.database, exc)) from None
            counted.append({"schema": table["schema"], "name": table["name"], "rows": int(row["n"])})
        return counted

    def dump_globals(self, path):
        with tempfile.TemporaryFile() as err:
            argv = [self.tool("pg_dumpall"), "--globals-only", "--no-role-passwords", "--no-password",
                    "--file=%s" % path]
            if self.p["session_role"]:
                argv.append("--role=%s" % self.p["session_role"])
            proc = pg_tools.start(argv, env=self.client_env(database=False), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=err)
            self.procs.append(("pg_dumpall", proc, err))
            code = proc.wait()
            self.procs = []
            errors, lines = _read_stderr(err)
        if code != 0 or errors:
            detail = "; ".join((errors or lines[-3:] or ["exit code %s" % code])[:3])
            raise BackupError("Failed to dump the globals of the server: %s" % _mask(detail, self.password))

    def toc_entries(self, dump_path):
        env = self.client_env(database=False, password=False)
        with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as zerr:
            feeder = None
            if dump_path.endswith(".zst"):
                feeder = pg_tools.start([self.tools["zstd"], "-dcq", dump_path], env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=zerr)
                self.procs.append(("zstd", feeder, zerr))
                lister = pg_tools.start([self.tool("pg_restore"), "--list"], env=env, stdin=feeder.stdout,
                                        stdout=subprocess.PIPE, stderr=err)
                feeder.stdout.close()
            else:
                lister = pg_tools.start([self.tool("pg_restore"), "--list", dump_path], env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
            self.procs.append(("pg_restore", lister, err))
            count = 0
            try:
                for line in lister.stdout:
                    text = line.strip()
                    if text and not text.startswith(b";"):
                        count += 1
            finally:
                lister.stdout.close()
                code = lister.wait()
                if feeder is not None:
                    pg_tools.kill_process(feeder, grace=1)  # pg_restore reads only the header and the TOC
                self.procs = []
            errors, lines = _read_stderr(err)
        if code != 0 or errors:
            raise BackupError("Failed to read the table of contents of %s with pg_restore --list: %s"
                              % (dump_path, "; ".join((errors or lines[-3:] or ["exit code %s" % code])[:3])))
        if count == 0:
            raise BackupError("Failed to read the table of contents of %s: pg_restore --list found no entries"
                              % dump_path)
        return count

    def finish_files(self, root, known=None):
        """Owner-only modes, fsync every file and directory, and return the manifest ``files`` entries.

        ``known`` maps relative paths to ``(sha256, size)`` computed while the file was written;
        their size is checked against the file and they are not read again.
        """
        known = known or {}
        for current, _dirs, files in os.walk(root):
            os.chmod(current, 0o700)
            for name in files:
                full = os.path.join(current, name)
                if not stat.S_ISREG(os.lstat(full).st_mode):
                    raise BackupError("Failed to check backup files: %s is not a regular file" % full)
                os.chmod(full, 0o600)
                manifest_utils.fsync_file(full)
        paths = manifest_utils.walk_files(root)
        entries = manifest_utils.file_entries(root, [rel for rel in paths if rel not in known])
        for rel in paths:
            if rel in known:
                digest, size = known[rel]
                on_disk = os.stat(os.path.join(root, rel)).st_size
                if on_disk != size:
                    raise BackupError("Failed to check backup files: %s has %d bytes, %d were written"
                                      % (os.path.join(root, rel), on_disk, size))
                entries.append({"path": rel, "size": size, "sha256": digest})
        entries.sort(key=lambda entry: entry["path"])
        for current, _dirs, _files in os.walk(root, topdown=False):
            manifest_utils.fsync_dir(current)
        return entries

    def run(self):
        p = self.p
        backup_dir = p["backup_dir"]
        db_dir = manifest_utils.database_dir(backup_dir, self.database)
        dump_rel = manifest_utils.dump_name(self.database, p["format"], p["compression"])
        try:
            _ensure_dir(backup_dir)
            _ensure_dir(db_dir)
        except OSError as exc:
            raise BackupError("Failed to create backup directory %s: %s"
                              % (db_dir, _strerror(exc))) from None
        # Backup ids have a one-second resolution: a second backup with the same label within the
        # same second waits for the next second rather than failing or overwriting.
        for _attempt in range(3):
            started = manifest_utils.utcnow()
            clock = time.monotonic()
            backup_id = manifest_utils.new_backup_id(p["label"], started)
            final = manifest_utils.backup_path(backup_dir, self.database, backup_id)
            partial = manifest_utils.partial_path(backup_dir, self.database, backup_id)
            if not os.path.lexists(final) and not os.path.lexists(partial):
                break
            time.sleep(1.0 - started.microsecond / 1e6 + 0.01)
        else:
            raise BackupError("Failed to create backup %s: the directory already exists" % final)
        dump_path = os.path.join(partial, dump_rel)
        try:
            os.mkdir(partial, 0o700)
        except OSError as exc:
            raise BackupError("Failed to create backup directory %s: %s"
                              % (partial, _strerror(exc))) from None
        self.partial = partial

        # The snapshot: first statement of a REPEATABLE READ transaction; pg_dump imports it.
        try:
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = query_one(
                self.conn,
                "SELECT pg_catalog.pg_is_in_recovery() AS in_recovery, "
                "(CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() "
                "ELSE pg_catalog.pg_current_wal_lsn() END)::text AS lsn")
            lsn = row["lsn"]
            self.in_recovery = bool(row["in_recovery"])
            snapshot = query_one(self.conn, "SELECT pg_catalog.pg_export_snapshot() AS id")["id"]
            tables = query_all(self.conn, TABLES_QUERY)
            # The counts run beside pg_dump and finish long before it: parallel workers would not
            # shorten the backup, only take CPU from pg_dump and the compressor (and workers from
            # the server's pool).
            self.conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            if self.in_recovery:
                # A standby has no data for unlogged tables; pg_dump dumps them without data there.
                unlogged = [t for t in tables if t["unlogged"]]
                tables = [t for t in tables if not t["unlogged"]]
                if unlogged:
                    self.notes.append(
                        "dumped from a standby: %d unlogged table(s) have no data there and are dumped empty "
                        "(not in the manifest's tables): %s" % (len(unlogged), ", ".join(
                            "%s.%s" % (t["schema"], t["name"]) for t in unlogged[:10])))
        except PostgresError as exc:
            raise BackupError("Failed to take a snapshot of database '%s': %s"
                              % (self.database, exc)) from None
        except Exception as exc:  # psycopg errors from conn.execute
            raise BackupError("Failed to take a snapshot of database '%s': %s"
                              % (self.database, describe_error(exc, secrets=[self.password]))) from None

        streamed = None
        toc = None
        with tempfile.TemporaryFile() as err_dump, tempfile.TemporaryFile() as err_zstd, \
                tempfile.TemporaryFile() as toc_out, tempfile.TemporaryFile() as err_unzstd, \
                tempfile.TemporaryFile() as err_list:
            self.start_dump(snapshot, dump_path, err_dump, err_zstd)
            if self.zstd is None:
                counted = self.count_rows(tables)
                self.wait_dump()
            else:
                # The exact counts run in the snapshot on their own thread (the queries release the
                # GIL) while this thread moves the compressed stream to disk.
                self.toc_sink = self.start_toc_reader(toc_out, err_unzstd, err_list)
                self.counter = CountThread(self, tables)
                self.counter.start()
                streamed = self.follow(dump_path, self.toc_sink)
                self.counter.join()
                counted = self.wait_dump_and_counts()
                toc = self.toc_from_stream(dump_path, toc_out, err_list)
        if len(counted) != len(tables):  # pragma: no cover - wait_dump raised already
            raise BackupError("Failed to dump database '%s': pg_dump stopped early" % self.database)
        try:
            self.conn.execute("COMMIT")
        except Exception:  # noqa: S110 - the dump is complete; the read-only transaction only held the snapshot
            pass

        if not os.path.exists(dump_path):
            raise BackupError("Failed to dump database '%s': pg_dump exited cleanly but wrote no %s"
                              % (self.database, dump_rel))
        if p["globals"]:
            self.dump_globals(os.path.join(partial, "globals.sql"))
        if toc is None:
            toc = self.toc_entries(dump_path)
        known = {dump_rel: streamed} if streamed is not None else {}
        try:
            entries = self.finish_files(partial, known)
        except OSError as exc:
            raise BackupError("Failed to checksum the files of %s: %s"
                              % (partial, _strerror(exc))) from None
        dump_entries = [e for e in entries if e["path"] == dump_rel or e["path"].startswith(dump_rel + "/")]
        dump_size = sum(e["size"] for e in dump_entries)
        if dump_size < p["min_size"]:
            raise BackupError("Failed to dump database '%s': the dump is %d bytes, smaller than min_size %d"
                              % (self.database, dump_size, p["min_size"]))
        main_sha = _digest_of(dump_entries, p["format"])
        total = sum(e["size"] for e in entries)

        finished = manifest_utils.utcnow()
        duration = round(time.monotonic() - clock, 3)
        data = {
            "format_version": manifest_utils.FORMAT_VERSION,
            "kind": manifest_utils.KIND,
            "backup_id": backup_id,
            "label": p["label"],
            "database": self.database,
            "host": p["host_label"] or socket.gethostname(),
            "server_version": self.server_version,
            "server_version_num": self.server_version_num,
            "pg_dump_version": self.tools["version"],
            "format": p["format"],
            "compression": p["compression"],
            "compression_level": p["compression_level"],
            "started_at": manifest_utils.utc_iso(started),
            "finished_at": manifest_utils.utc_iso(finished),
            "duration_seconds": duration,
            "wal_lsn_at_start": lsn,
            "snapshot": snapshot,
            "toc_entries": toc,
            "tables": counted,
            "files": entries,
            "total_size": total,
            "globals": "globals.sql" if p["globals"] else None,
            "tool": {"name": "upkeep.runbooks", "module": "pg_backup"},
        }
        manifest_path = os.path.join(partial, manifest_utils.MANIFEST_NAME)
        try:
            manifest_utils.validate_manifest(data, manifest_path)
            manifest_utils.write_json_atomic(manifest_path, data)
            manifest_utils.fsync_dir(partial)
        except OSError as exc:
            raise BackupError("Failed to write manifest %s: %s"
                              % (manifest_path, _strerror(exc))) from None
        except manifest_utils.ManifestError as exc:  # pragma: no cover - a bug, not an input problem
            raise BackupError("Failed to write manifest %s: %s" % (manifest_path, exc)) from None
        try:
            os.rename(partial, final)
            self.partial = None
            manifest_utils.fsync_dir(db_dir)
        except OSError as exc:
            raise BackupError("Failed to rename %s to %s: %s"
                              % (partial, final, _strerror(exc))) from None
        rows = sum(t["rows"] for t in counted)
        self.notes.insert(0, "dumped database '%s' (%d tables, %d rows) with pg_dump %s into %s"
                          % (self.database, len(counted), rows, self.tools["version"], final))
        if self.in_recovery:
            self.notes.append("dumped from a standby: wal_lsn_at_start is the last replayed WAL position")
        duration = round(time.monotonic() - clock, 3)
        return self.result(backup_id, final, size=total, sha256=main_sha, duration_seconds=duration,
                           tables=len(counted), toc_entries=toc)

    def cleanup(self):
        """Stop children and remove the partial directory; returns a note when removal failed."""
        for _name, proc, _err in self.procs + self.toc_procs:
            pg_tools.kill_process(proc)
        self.procs = []
        self.toc_procs = []
        self.close_toc_sink()
        self.zstd = None
        if self.follow_fd is not None:
            os.close(self.follow_fd)
            self.follow_fd = None
        if self.counter is not None and self.counter.is_alive():
            self.counter.stop()
        self.counter = None
        close_quietly(self.conn)
        self.conn = None
        if self.partial and os.path.exists(self.partial):
            shutil.rmtree(self.partial, ignore_errors=True)
            if os.path.exists(self.partial):
                return "the partial directory %s could not be removed completely" % self.partial
        return None


def main():
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(
        database=dict(type="str", required=True),
        backup_dir=dict(type="path", required=True),
        label=dict(type="str", default="manual"),
        format=dict(type="str", default="custom", choices=["custom", "directory"]),
        jobs=dict(type="int", default=1),
        compression=dict(type="str", default="gzip", choices=["gzip", "zstd", "none"]),
        compression_level=dict(type="int"),
        globals=dict(type="bool", default=False),
        min_size=dict(type="int", default=1024),
        host_label=dict(type="str"),
        pg_bin_dir=dict(type="path"),
        reuse_hours=dict(type="float", default=0))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    # RV(path) is the backup directory and RV(size) the backup's bytes: keep AnsibleModule from
    # replacing them with stat() facts of that directory (it does so for any result with a "path").
    module.add_path_info = lambda kwargs: kwargs
    validate_params(module)
    ensure_psycopg(module)

    backup = PgBackup(module)
    old_handlers = {}
    old_umask = os.umask(0o077)
    failure = None
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            old_handlers[signum] = signal.signal(signum, _raise_interrupted)
        try:
            result = backup.reuse()
            if result is None:
                backup.connect()
                backup.find_tools()
                result = backup.check() if module.check_mode else backup.run()
        except BackupError as exc:
            failure = str(exc)
        except (Interrupted, KeyboardInterrupt) as exc:
            failure = ("Failed to dump database '%s': interrupted by %s; pg_dump was stopped and the partial "
                       "backup removed" % (backup.database, str(exc) or "SIGINT"))
        except OSError as exc:
            failure = "Failed to dump database '%s': %s" % (backup.database, _strerror(exc))
        except Exception as exc:  # a bug must still clean up and must not print a traceback with paths
            failure = "Failed to dump database '%s': unexpected %s: %s" % (
                backup.database, exc.__class__.__name__, _mask(str(exc), backup.password))
        # From here on a second signal must not interrupt the cleanup.
        for signum in old_handlers:
            signal.signal(signum, signal.SIG_IGN)
        problem = backup.cleanup()
        if failure and problem:
            failure += "; " + problem
    finally:
        os.umask(old_umask)
        for signum, handler in old_handlers.items():
            signal.signal(signum, handler)
    if failure:
        module.fail_json(msg=failure, database=backup.database)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
