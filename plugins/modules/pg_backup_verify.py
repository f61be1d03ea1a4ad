#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_backup_verify
short_description: Prove that a pg_backup backup is intact and restores
version_added: 0.2.0
description:
  - Verifies one backup written by M(upkeep.runbooks.pg_backup) against its manifest, at one of three
    levels, each including the ones below it.
  - V(checksum) compares the size and SHA-256 of every file the manifest lists and finds files that are
    missing or not listed. It needs no PostgreSQL server.
  - V(catalog) also reads the dump's table of contents with C(pg_restore --list), compares the number of
    entries with the manifest's C(toc_entries) and makes sure every table of the manifest has its
    C(TABLE DATA) entry. It needs C(pg_restore) but no server.
  - V(restore) also restores the dump into a scratch database on the server given by the connection
    options with C(pg_restore --exit-on-error --jobs=N --no-owner --no-privileges), counts the rows of
    every table exactly and compares them with the manifest, runs the O(sanity_queries), optionally checks
    every B-tree index with C(amcheck), and drops the scratch database unless O(keep=true). The time the
    restore took is returned as RV(restore_duration_seconds), the evidence for the recovery time objective.
  - The levels stop at the first one that fails; a later level is not attempted on a backup that already
    failed a lower one.
  - A backup that fails verification fails the task; the message lists the mismatches and the result still
    holds RV(checks) and RV(mismatches).
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - upkeep.runbooks.postgres
attributes:
  check_mode:
    support: full
    description:
      - Levels V(checksum) and V(catalog) only read files and run unchanged in check mode.
      - At level V(restore), check mode runs the checksum and catalog checks, connects to the server, checks its
        version, the login role's right to create databases, the state of the scratch database and the
        availability of C(amcheck), and predicts the restore without creating anything.
  diff_mode:
    support: none
    description: Verification leaves no state behind (unless O(keep=true)); there is nothing to diff.
options:
  path:
    description:
      - The backup directory (C(<backup_dir>/<database>/<backup_id>)) or its C(manifest.json).
      - A directory without C(manifest.json), or an unfinished C(.<backup_id>.partial) directory, is not a
        complete backup and fails with a message saying so.
    type: path
    required: true
  level:
    description:
      - How far to go; see the description.
    type: str
    choices: [checksum, catalog, restore]
    default: catalog
  scratch_database:
    description:
      - Name of the database the backup is restored into at O(level=restore).
      - Defaults to C(upkeep_verify_) followed by the backup id in lower case with every character other than
        letters, digits and C(_) replaced by C(_).
      - Must differ from the backup's source database name; the module refuses otherwise, whichever server
        it connects to.
      - The module creates it with a mark in its comment, C(upkeep.runbooks scratch restore of) followed by a
        JSON object with the backup id, the source database, a run id and the creation time by the server's
        clock (see the restore test page of the collection's docs). A database of that name that already exists
        is dropped and created again only when its comment starts with C(upkeep.runbooks scratch restore of) and
        no session uses it; any other existing database of that name makes the task fail without touching it.
      - A scratch database left behind by a run that was killed is dropped by
        M(upkeep.runbooks.pg_scratch_sweep) once it is older than the sweep's limit.
    type: str
  jobs:
    description:
      - Parallel jobs of C(pg_restore) at O(level=restore).
      - More than one job needs a seekable dump; a zstd-compressed custom-format dump is then decompressed
        into a private temporary file under O(tmp_dir) first (it takes as much space as the uncompressed
        dump). With O(jobs=1) it is streamed into C(pg_restore) instead.
    type: int
    default: 2
  sanity_queries:
    description:
      - Queries run in the restored scratch database at O(level=restore), each in its own read-only transaction.
      - A query that fails, or returns fewer rows than its O(sanity_queries[].expect_rows_min), fails the
        verification.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the check, reported as C(sanity:<name>).
        type: str
        required: true
      sql:
        description: The query.
        type: str
        required: true
      expect_rows_min:
        description: The least number of rows the query must return. Without it, the query only has to succeed.
        type: int
  amcheck:
    description:
      - At O(level=restore), create the C(amcheck) extension in the scratch database (in a schema of its own,
        C(upkeep_amcheck), unless the dump brought the extension already) and run C(bt_index_check) on every
        valid B-tree index the restore created (system catalog indexes are left out), the TOAST indexes of the
        restored tables included.
      - The server needs the C(amcheck) extension files (PostgreSQL contrib; Debian's C(postgresql-NN) ships them).
    type: bool
    default: false
  keep:
    description:
      - Keep the scratch database after a restore-level verification (for inspection) instead of dropping it.
      - A kept scratch database carries the mark, so the next verification may drop and reuse it; the mark also
        records that it was kept on purpose, so M(upkeep.runbooks.pg_scratch_sweep) leaves it alone.
    type: bool
    default: false
  pg_bin_dir:
    description:
      - Directory holding C(pg_restore).
      - By default C(pg_restore) is taken from PATH, then from the versioned installation directories
        (C(/usr/lib/postgresql/*/bin), C(/usr/pgsql-*/bin)), newest first, skipping any older than the
        C(pg_dump) that made the backup.
    type: path
  tmp_dir:
    description:
      - Directory for the private temporary copy of a dump that has to be decompressed (see O(jobs)).
      - Defaults to the managed node's temporary directory (E(TMPDIR) or C(/tmp)).
    type: path
notes:
  - The connection options only matter at O(level=restore); they name the server the scratch database is
    created on, which should be a test or DR server, not the production primary.
  - The restore uses C(--no-owner) and C(--no-privileges). Ownership and grants name roles of the source
    server that a verification server need not have; restoring them would make the test depend on roles
    rather than on the backup. M(upkeep.runbooks.pg_restore) restores them for real.
  - The scratch database is created from C(template0), so objects someone added to C(template1) cannot
    collide with the dump.
  - At O(level=restore) the task reports C(changed=true) even though nothing remains afterwards, because it
    created and dropped a database on the server. Levels V(checksum) and V(catalog) never report a change.
  - Row counts are taken with C(SELECT count(*) FROM <table>), the way M(upkeep.runbooks.pg_backup) counted
    them in the dump's snapshot; they must equal the manifest's exact counts.
  - The login role needs C(CREATEDB) (or superuser) at O(level=restore); restoring extensions may need more.
seealso:
  - module: upkeep.runbooks.pg_backup
  - module: upkeep.runbooks.pg_restore
  - module: upkeep.runbooks.pg_scratch_sweep
  - name: pg_restore
    description: The PostgreSQL restore program and its options.
    link: https://www.postgresql.org/docs/current/app-pgrestore.html
  - name: amcheck
    description: Verifying the logical consistency of B-tree indexes.
    link: https://www.postgresql.org/docs/current/amcheck.html
"""

EXAMPLES = r"""
- name: Check the checksums and the catalog of last night's backup (no server needed)
  upkeep.runbooks.pg_backup_verify:
    path: "{{ backup_result.path }}"
    level: catalog

- name: Restore the newest backup on the DR host and time it
  upkeep.runbooks.pg_backup_verify:
    path: /srv/restore-test/app/daily-20261123T021500Z
    level: restore
    login_unix_socket: /var/run/postgresql
    jobs: 4
    amcheck: true
    sanity_queries:
      - name: recent_orders
        sql: SELECT 1 FROM orders_order WHERE created_at > now() - interval '7 days'
        expect_rows_min: 1
      - name: admin_exists
        sql: SELECT 1 FROM auth_user WHERE is_superuser
        expect_rows_min: 1
  become: true
  become_user: postgres
  register: restore_test

- name: Record the measured restore time
  ansible.builtin.debug:
    msg: "restore of {{ restore_test.backup_id }} took {{ restore_test.restore_duration_seconds }} s"

- name: Keep the restored copy for a look with psql
  upkeep.runbooks.pg_backup_verify:
    path: /srv/restore-test/app/daily-20261123T021500Z/manifest.json
    level: restore
    login_host: 127.0.0.13
    login_user: restore_tester
    login_password: "{{ vault_restore_tester_password }}"
    scratch_database: app_restore_check
    keep: true
"""

RETURN = r"""
level:
  description: The level that was requested.
  returned: always
  type: str
  sample: restore
backup_id:
  description: The backup's id from its manifest; null when the manifest could not be read.
  returned: always
  type: str
  sample: daily-20261123T021500Z
database:
  description: The backup's source database; null when the manifest could not be read.
  returned: always
  type: str
  sample: app
backup_path:
  description: The backup directory that was verified.
  returned: always
  type: str
  sample: /var/backups/postgresql/app/daily-20261123T021500Z
checks:
  description:
    - Every check that ran, in order. Names are C(manifest), C(checksum), C(pg_restore), C(toc), C(toc_entries),
      C(table_data), C(server), C(scratch_database), C(restore), C(row_counts), C(sanity:<name>), C(amcheck),
      C(cleanup); which ones appear depends on the level and on where a failure stopped the run.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: What was checked.
      type: str
      sample: checksum
    status:
      description: C(ok) or C(fail).
      type: str
      sample: ok
    message:
      description: What was found, in a sentence.
      type: str
      sample: 2 files (18.4 MiB) match the manifest's sizes and SHA-256 checksums
  sample:
    - {name: manifest, status: ok, message: "manifest of backup daily-20261123T021500Z of database 'app' is valid"}
mismatches:
  description: Each difference between the backup and its manifest, or what made the restore fail; empty when it passed.
  returned: always
  type: list
  elements: dict
  contains:
    check:
      description: The check that found it.
      type: str
      sample: checksum
    item:
      description: The file, table or query concerned.
      type: str
      sample: app.dump
    problem:
      description:
        - Short kind, for example C(missing), C(size), C(sha256), C(extra), C(toc_entries), C(no_table_data),
          C(restore_failed), C(row_count), C(table_missing), C(query_failed), C(too_few_rows), C(index_corrupt).
      type: str
      sample: sha256
    expected:
      description: What the manifest or the query says; null when not applicable.
      type: raw
      sample: 9f2c...e1
    actual:
      description: What was found; null when not applicable.
      type: raw
      sample: 03ab...77
    message:
      description: The mismatch in a sentence.
      type: str
      sample: "app.dump: sha256 03ab...77, the manifest says 9f2c...e1 (content changed)"
restore_duration_seconds:
  description:
    - Wall-clock seconds of the restore into the scratch database, decompression included, the measured
      recovery time for this backup on this server.
    - Null below O(level=restore), in check mode, and when the restore failed.
  returned: always
  type: float
  sample: 84.213
scratch_database:
  description: The scratch database used (or that would be used in check mode) at O(level=restore); null below it.
  returned: always
  type: str
  sample: upkeep_verify_daily_20261123t021500z
kept:
  description: Whether the scratch database still exists after the task (O(keep=true)).
  returned: always
  type: bool
  sample: false
"""

import re  # noqa: E402 - Ansible modules import after their documentation
import uuid  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils import _restore  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import human_bytes  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._manifest import verify_files  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._postgres import (  # noqa: E402
    PostgresError,
    close_quietly,
    ensure_psycopg,
    execute,
    identifier,
    open_connection,
    postgres_common_argument_spec,
    query_all,
    query_one,
    server_version,
    server_version_num,
    sql,
    target,
)

LEVELS = ("checksum", "catalog", "restore")
SCRATCH_PREFIX = _restore.SCRATCH_PREFIX
AMCHECK_SCHEMA = "upkeep_amcheck"
MAX_LISTED_MISMATCHES = 10

SQL_INDEXES = """
SELECT c.oid::int AS oid, n.nspname::text AS schema, c.relname::text AS name
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_am AS a ON a.oid = c.relam
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE a.amname = 'btree' AND c.relkind = 'i' AND i.indisvalid AND i.indisready
  AND c.relpersistence <> 't' AND c.oid >= 16384
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY n.nspname, c.relname
"""

SQL_AMCHECK_AVAILABLE = "SELECT count(*)::int AS n FROM pg_available_extensions WHERE name = 'amcheck'"
SQL_AMCHECK_SCHEMA = """
SELECT n.nspname::text AS schema FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
WHERE e.extname = 'amcheck'
"""


def default_scratch_name(backup_id):
    """``upkeep_verify_<backup id in lower case, [a-z0-9_] only>``, at most 63 bytes."""
    return (SCRATCH_PREFIX + re.sub(r"[^a-z0-9_]", "_", backup_id.lower()))[: _restore.MAX_IDENTIFIER_BYTES]


class Verification(object):
    """Collects checks and mismatches and builds the module result."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.checks = []
        self.mismatches = []
        self.manifest = None
        self.root = None
        self.changed = False
        self.duration = None
        self.scratch = None
        self.mark = None
        self.kept = False

    # ---- bookkeeping -----------------------------------------------------------------

    def ok(self, name, message):
        self.checks.append({"name": name, "status": "ok", "message": message})

    def fail(self, name, message, problems=()):
        self.checks.append({"name": name, "status": "fail", "message": message})
        for problem in problems:
            entry = {"check": name, "item": None, "problem": None, "expected": None, "actual": None, "message": ""}
            entry.update(problem)
            self.mismatches.append(entry)
        return False

    def result(self):
        manifest = self.manifest or {}
        return {
            "changed": self.changed,
            "level": self.params["level"],
            "backup_id": manifest.get("backup_id"),
            "database": manifest.get("database"),
            "backup_path": self.root or self.params["path"],
            "checks": self.checks,
            "mismatches": self.mismatches,
            "restore_duration_seconds": round(self.duration, 3) if self.duration is not None else None,
            "scratch_database": self.scratch,
            "kept": self.kept,
        }

    def what(self):
        if self.manifest:
            return "backup %s of database '%s'" % (self.manifest["backup_id"], self.manifest["database"])
        return "backup %s" % self.params["path"]

    def abort(self, cause):
        """Fail the task for a reason that is not a mismatch (bad input, unusable server or tools)."""
        self.module.fail_json(msg="Failed to verify %s: %s" % (self.what(), cause), **self.result())

    def finish(self):
        failed = [check for check in self.checks if check["status"] == "fail"]
        if failed:
            details = [m["message"] for m in self.mismatches] or [c["message"] for c in failed]
            shown = details[:MAX_LISTED_MISMATCHES]
            if len(details) > len(shown):
                shown.append("and %d more" % (len(details) - len(shown)))
            self.module.fail_json(
                msg="Failed to verify %s at level %s: %d %s: %s" % (
                    self.what(), self.params["level"], len(details),
                    "mismatch" if len(details) == 1 else "mismatches", "; ".join(shown)),
                **self.result()
            )
        self.module.exit_json(**self.result())

    # ---- levels ----------------------------------------------------------------------

    def load(self):
        try:
            self.root, self.manifest = _restore.load_backup(self.params["path"])
        except _restore.RestoreError as exc:
            problem = {"item": self.params["path"], "problem": "not_a_backup", "message": exc.message}
            self.fail("manifest", exc.message, [problem])
            self.module.fail_json(msg="Failed to verify backup %s: %s" % (self.params["path"], exc.message),
                                  **self.result())
        self.ok("manifest", "manifest of %s is valid (format %s, %s compression, %d files, %d tables)" % (
            self.what(), self.manifest["format"], self.manifest["compression"], len(self.manifest["files"]),
            len(self.manifest["tables"])))

    def checksum(self):
        try:
            problems = verify_files(self.root, self.manifest)
        except OSError as exc:
            self.abort("cannot read the backup files: %s" % (exc.strerror or exc))
        if problems:
            return self.fail("checksum", "%d of the backup's files do not match the manifest" % len(problems), [
                {"item": p["path"], "problem": p["problem"], "expected": p["expected"], "actual": p["actual"],
                 "message": _restore.describe_file_problem(p)} for p in problems])
        total = sum(entry["size"] for entry in self.manifest["files"])
        self.ok("checksum", "%d files (%s) match the manifest's sizes and SHA-256 checksums" % (
            len(self.manifest["files"]), human_bytes(total)))
        return True

    def find_pg_restore(self):
        try:
            path, version = _restore.find_pg_restore(self.manifest["pg_dump_version"], self.params["pg_bin_dir"])
        except _restore.RestoreError as exc:
            self.fail("pg_restore", exc.message)
            self.abort(exc.message)
        self.ok("pg_restore", "using %s (version %s) for a dump made by pg_dump %s" % (
            path, version, self.manifest["pg_dump_version"]))
        return path

    def catalog(self, pg_restore, workspace):
        try:
            dump = _restore.locate_dump(self.root, self.manifest)
        except _restore.RestoreError as exc:
            return self.fail("toc", exc.message, [{"item": self.root, "problem": "no_dump",
                                                   "message": exc.message}]), None
        try:
            lines = _restore.list_toc(pg_restore, dump, workspace)
        except _restore.RestoreError as exc:
            return self.fail("toc", exc.message, [{"item": dump.relpath, "problem": "toc_unreadable",
                                                   "message": exc.message}]), dump
        entries = _restore.toc_entries(lines)
        self.ok("toc", "pg_restore --list read the table of contents of %s (%d entries)" % (dump.relpath, len(entries)))
        good = True
        expected = self.manifest["toc_entries"]
        if len(entries) != expected:
            good = self.fail("toc_entries",
                             "the dump has %d TOC entries, the manifest says %s" % (len(entries), expected),
                             [{"item": dump.relpath, "problem": "toc_entries", "expected": expected,
                               "actual": len(entries),
                               "message": "%s: %d TOC entries, the manifest says %s" % (
                                   dump.relpath, len(entries), expected)}])
        else:
            self.ok("toc_entries", "%d TOC entries, as the manifest says" % expected)
        missing = _restore.missing_table_data(entries, self.manifest["tables"])
        if missing:
            good = self.fail("table_data", "%d of the manifest's tables have no TABLE DATA entry in the dump" % len(
                missing), [{"item": "%s.%s" % (t["schema"], t["name"]), "problem": "no_table_data",
                            "expected": t["rows"], "actual": None,
                            "message": "table %s.%s (%s rows in the manifest) has no TABLE DATA entry in the dump" % (
                                t["schema"], t["name"], t["rows"])} for t in missing])
        else:
            self.ok("table_data",
                    "all %d tables of the manifest have a TABLE DATA entry" % len(self.manifest["tables"]))
        return good, dump

    # ---- restore level ---------------------------------------------------------------

    def scratch_name(self):
        name = self.params["scratch_database"] or default_scratch_name(self.manifest["backup_id"])
        if name == self.manifest["database"]:
            self.fail("scratch_database", "refusing to restore into '%s': it is the backup's source database name"
                      % name)
            self.abort("scratch_database '%s' is the name of the backup's source database; refusing to restore "
                       "into it (choose another scratch_database)" % name)
        if len(name.encode("utf-8")) > _restore.MAX_IDENTIFIER_BYTES:
            self.abort("scratch_database '%s' is longer than %d bytes" % (name, _restore.MAX_IDENTIFIER_BYTES))
        if name == self.params["login_db"]:
            self.abort("scratch_database '%s' is also login_db; connect through another database (e.g. postgres) "
                       "so the scratch database can be dropped" % name)
        return name

    def connect_server(self):
        ensure_psycopg(self.module)
        try:
            conn = open_connection(self.params)
        except PostgresError as exc:
            self.fail("server", exc.message)
            self.abort(exc.message)
        try:
            version, version_num = server_version(conn), server_version_num(conn)
            may_create = _restore.can_create_databases(conn)
        except PostgresError as exc:
            close_quietly(conn)
            self.abort("cannot read the server's version at %s: %s" % (target(self.params), exc.message))
        if _restore.major_of(version_num) < _restore.major_of(self.manifest["pg_dump_version"]):
            close_quietly(conn)
            message = ("the server at %s runs PostgreSQL %s, older than the pg_dump %s that made the backup"
                       % (target(self.params), version, self.manifest["pg_dump_version"]))
            self.fail("server", message)
            self.abort(message)
        if not may_create:
            close_quietly(conn)
            message = "login role '%s' may not create databases on %s (needs CREATEDB)" % (
                self.params["login_user"], target(self.params))
            self.fail("server", message)
            self.abort(message)
        self.ok("server", "PostgreSQL %s at %s can take a dump made by pg_dump %s" % (
            version, target(self.params), self.manifest["pg_dump_version"]))
        return conn, version_num

    def inspect_scratch(self, conn, name):
        """'missing' or 'ours' (a marked leftover that may be dropped); aborts for anything else."""
        try:
            info = _restore.database_info(conn, name)
        except _restore.RestoreError as exc:
            self.abort(exc.message)
        if info is None:
            return "missing"
        comment = info.get("comment") or ""
        mark = _restore.parse_mark(comment)
        if mark is None or mark["kind"] != "scratch":
            message = ("database '%s' already exists on %s and is not an upkeep.runbooks scratch database (its comment "
                       "is %s); refusing to touch it: drop it yourself or choose another scratch_database"
                       % (name, target(self.params), ("'%s'" % comment) if comment else "empty"))
            self.fail("scratch_database", message)
            self.abort(message)
        if info["sessions"]:
            message = ("scratch database '%s' on %s is in use by %d session(s) (another verification running?); "
                       "refusing to drop it" % (name, target(self.params), info["sessions"]))
            self.fail("scratch_database", message)
            self.abort(message)
        return "ours"

    def check_amcheck_available(self, conn):
        try:
            row = query_one(conn, SQL_AMCHECK_AVAILABLE)
        except PostgresError as exc:
            self.abort("cannot look up the amcheck extension: %s" % exc.message)
        if not row["n"]:
            message = "the amcheck extension is not installed on the server at %s (PostgreSQL contrib)" % target(
                self.params)
            self.fail("amcheck", message)
            self.abort(message)

    def restore(self, pg_restore, dump, workspace):
        name = self.scratch = self.scratch_name()
        conn, version_num = self.connect_server()
        try:
            state = self.inspect_scratch(conn, name)
            if self.params["amcheck"]:
                self.check_amcheck_available(conn)
            if self.module.check_mode:
                self.changed = True
                self.ok("scratch_database", "would %screate scratch database '%s' on %s and restore %s into it "
                        "with %d jobs" % ("drop the leftover and re-" if state == "ours" else "", name,
                                          target(self.params), dump.relpath, self.params["jobs"]))
                return True
            return self._restore_into(conn, version_num, name, state, pg_restore, dump, workspace)
        finally:
            close_quietly(conn)

    def _restore_into(self, conn, version_num, name, state, pg_restore, dump, workspace):
        created = False
        try:
            try:
                if state == "ours":
                    _restore.drop_database(conn, name, version_num)
                    self.changed = True
                self.mark = _restore.create_marked_database(
                    conn, name, "scratch", backup_id=self.manifest["backup_id"], run_id=str(uuid.uuid4()),
                    source=self.manifest["database"])
                created = self.changed = True
            except _restore.RestoreError as exc:
                self.fail("scratch_database", exc.message)
                self.abort(exc.message)
            self.ok("scratch_database", "created scratch database '%s' on %s" % (name, target(self.params)))

            argv = _restore.restore_argv(pg_restore, name, jobs=self.params["jobs"], no_owner=True,
                                         no_privileges=True, role=self.params["session_role"])
            env = _restore.client_env(self.params)
            try:
                self.duration = _restore.run_restore(argv, dump, workspace, env,
                                                     secrets=[self.params["login_password"]])
            except _restore.RestoreError as exc:
                self.fail("restore", "restore into '%s' failed: %s" % (name, exc.message), [
                    {"item": dump.relpath, "problem": "restore_failed",
                     "message": "restoring %s failed: %s" % (dump.relpath, exc.message)}])
                return False
            self.ok("restore", "restored %s into '%s' in %.1f s with %d jobs" % (
                dump.relpath, name, self.duration, self.params["jobs"]))
            return self.inspect_restored(name)
        finally:
            if created:
                self.cleanup(conn, version_num, name)

    def _scratch_conn(self, check, name, autocommit=True):
        """A session on the scratch database, or None after recording a failed ``check``."""
        try:
            return open_connection(dict(self.params, login_db=name), autocommit=autocommit)
        except PostgresError as exc:
            message = "cannot connect to scratch database '%s': %s" % (name, exc.message)
            self.fail(check, message, [{"item": name, "problem": "no_connection", "message": message}])
            return None

    def inspect_restored(self, name):
        good = self.row_counts(name)
        if self.params["sanity_queries"]:
            good = self.sanity(name) and good
        if self.params["amcheck"]:
            good = self.amcheck(name) and good
        return good

    def row_counts(self, name):
        conn = self._scratch_conn("row_counts", name, autocommit=False)
        if conn is None:
            return False
        problems, total = [], 0
        try:
            execute(conn, "SET TRANSACTION READ ONLY")
            for table in self.manifest["tables"]:
                label = "%s.%s" % (table["schema"], table["name"])
                try:
                    row = query_one(conn, sql("SELECT count(*) AS n FROM {0}").format(
                        identifier(table["schema"], table["name"])))
                except PostgresError as exc:
                    conn.rollback()
                    execute(conn, "SET TRANSACTION READ ONLY")
                    problems.append({"item": label, "problem": "table_missing", "expected": table["rows"],
                                     "message": "table %s could not be counted in the restored database: %s" % (
                                         label, exc.message)})
                    continue
                total += row["n"]
                if row["n"] != table["rows"]:
                    problems.append({"item": label, "problem": "row_count", "expected": table["rows"],
                                     "actual": row["n"], "message": "table %s has %d rows, the manifest says %d" % (
                                         label, row["n"], table["rows"])})
            conn.rollback()
        finally:
            close_quietly(conn)
        if problems:
            return self.fail("row_counts", "%d of %d tables differ from the manifest's row counts" % (
                len(problems), len(self.manifest["tables"])), problems)
        self.ok("row_counts", "all %d tables have the manifest's exact row counts (%d rows)" % (
            len(self.manifest["tables"]), total))
        return True

    def sanity(self, name):
        conn = self._scratch_conn("sanity", name, autocommit=False)
        if conn is None:
            return False
        good = True
        try:
            for query in self.params["sanity_queries"]:
                check = "sanity:%s" % query["name"]
                try:
                    execute(conn, "SET TRANSACTION READ ONLY")
                    rows = len(query_all(conn, query["sql"]))
                except PostgresError as exc:
                    good = self.fail(check, "query failed: %s" % exc.message, [
                        {"item": query["name"], "problem": "query_failed",
                         "message": "sanity query %s failed: %s" % (query["name"], exc.message)}])
                    continue
                finally:
                    conn.rollback()
                minimum = query.get("expect_rows_min")
                if minimum is not None and rows < minimum:
                    good = self.fail(check, "returned %d rows, at least %d expected" % (rows, minimum), [
                        {"item": query["name"], "problem": "too_few_rows", "expected": minimum, "actual": rows,
                         "message": "sanity query %s returned %d rows, at least %d expected" % (
                             query["name"], rows, minimum)}])
                else:
                    self.ok(check, "returned %d rows%s" % (
                        rows, "" if minimum is None else " (at least %d expected)" % minimum))
        finally:
            close_quietly(conn)
        return good

    def amcheck(self, name):
        conn = self._scratch_conn("amcheck", name)
        if conn is None:
            return False
        try:
            try:
                row = query_one(conn, SQL_AMCHECK_SCHEMA)
                if row is None:
                    execute(conn, sql("CREATE SCHEMA IF NOT EXISTS {0}").format(identifier(AMCHECK_SCHEMA)))
                    execute(conn, sql("CREATE EXTENSION amcheck SCHEMA {0}").format(identifier(AMCHECK_SCHEMA)))
                    row = query_one(conn, SQL_AMCHECK_SCHEMA)
                indexes = query_all(conn, SQL_INDEXES)
            except PostgresError as exc:
                message = "cannot set up amcheck in '%s': %s" % (name, exc.message)
                return self.fail("amcheck", message, [{"item": name, "problem": "amcheck_unavailable",
                                                       "message": message}])
            schema = row["schema"]
            problems = []
            for index in indexes:
                label = "%s.%s" % (index["schema"], index["name"])
                try:
                    query_one(conn, sql("SELECT {0}.bt_index_check(%(oid)s::oid::regclass) AS done").format(
                        identifier(schema)), {"oid": index["oid"]})
                except PostgresError as exc:
                    problems.append({"item": label, "problem": "index_corrupt",
                                     "message": "index %s failed bt_index_check: %s" % (label, exc.message)})
        finally:
            close_quietly(conn)
        if problems:
            return self.fail("amcheck", "%d of %d B-tree indexes failed bt_index_check" % (
                len(problems), len(indexes)), problems)
        self.ok("amcheck", "bt_index_check passed on all %d B-tree indexes" % len(indexes))
        return True

    def cleanup(self, conn, version_num, name):
        if self.params["keep"]:
            self.kept = True
            try:
                # A sweep (pg_scratch_sweep) leaves a database kept on purpose alone.
                _restore.set_comment(conn, name, _restore.update_mark(self.mark, kept=True))
            except _restore.RestoreError as exc:
                self.ok("cleanup", "kept scratch database '%s' (keep=true), but could not record that in its mark, "
                        "so a sweep may drop it once it is older than its limit: %s" % (name, exc.message))
                return
            self.ok("cleanup", "kept scratch database '%s' (keep=true)" % name)
            return
        try:
            _restore.drop_database(conn, name, version_num)
        except _restore.RestoreError as exc:
            self.kept = True
            self.fail("cleanup", "could not drop scratch database '%s': %s" % (name, exc.message))
            return
        self.ok("cleanup", "dropped scratch database '%s'" % name)


def run(module):
    level = module.params["level"]
    verification = Verification(module)
    verification.load()
    if not verification.checksum():
        verification.finish()
    if level == "checksum":
        verification.finish()
    with _restore.Workspace(module.params["tmp_dir"]) as workspace:
        pg_restore = verification.find_pg_restore()
        good, dump = verification.catalog(pg_restore, workspace)
        if good and level == "restore":
            verification.restore(pg_restore, dump, workspace)
    verification.finish()


def main():
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(
        path=dict(type="path", required=True),
        level=dict(type="str", choices=list(LEVELS), default="catalog"),
        scratch_database=dict(type="str"),
        jobs=dict(type="int", default=2),
        sanity_queries=dict(
            type="list", elements="dict", default=[],
            options=dict(
                name=dict(type="str", required=True),
                sql=dict(type="str", required=True),
                expect_rows_min=dict(type="int"),
            ),
        ),
        amcheck=dict(type="bool", default=False),
        keep=dict(type="bool", default=False),
        pg_bin_dir=dict(type="path"),
        tmp_dir=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if module.params["jobs"] < 1:
        module.fail_json(msg="Failed to verify backup %s: jobs must be at least 1, got %d"
                         % (module.params["path"], module.params["jobs"]))
    names = [query["name"] for query in module.params["sanity_queries"]]
    duplicates = sorted(set(name for name in names if names.count(name) > 1))
    if duplicates:
        module.fail_json(msg="Failed to verify backup %s: sanity_queries names must be unique, repeated: %s"
                         % (module.params["path"], ", ".join(duplicates)))
    run(module)


if __name__ == "__main__":
    main()
