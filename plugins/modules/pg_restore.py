#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_restore
short_description: Restore a pg_backup backup into a PostgreSQL database, for real
version_added: 0.2.0
description:
  - Restores one backup written by M(upkeep.runbooks.pg_backup) into a database, for an emergency, a
    disaster-recovery switch-over or a refresh of another environment.
  - Before anything on the server is touched, every file of the backup is checked against the size and
    SHA-256 recorded in its manifest; a mismatch fails the task and nothing is changed.
  - Refuses a server whose major version is older than the C(pg_dump) that made the backup, and an
    existing database that is not empty unless O(replace=true) and O(confirm) names that database.
  - The backup is always restored into a new temporary database (C(upkeep_restore_<random>), created from
    C(template0) with the comment C(upkeep.runbooks restore in progress of ...)) with
    C(pg_restore --exit-on-error), which stops at the first error. Only when the restore succeeded is the
    temporary database given the target name. A failed restore drops the temporary database and leaves the
    target exactly as it was; under the target name there is only ever the old database or a complete restore.
  - When the target exists it is replaced in one transaction that renames it away and renames the restored
    database into its place. Just before that, new connections to the old database are refused
    (C(ALLOW_CONNECTIONS false)) and its sessions are terminated; sessions on other databases are not
    touched. The old database is then dropped.
  - The new database gets the owner, encoding, locale and connection limit of the database it replaces, its
    database-level privileges (C(GRANT ... ON DATABASE)), its per-database settings (C(ALTER DATABASE ... SET),
    C(ALTER ROLE ... IN DATABASE ... SET)) and its comment, none of which a C(pg_dump) archive holds. A new
    target is owned by the login role (or O(session_role)).
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - upkeep.runbooks.postgres
attributes:
  check_mode:
    support: full
    description:
      - Runs every check (manifest and checksums, C(pg_restore) version, server version, right to create
        databases, state of the target, O(replace)/O(confirm)) and predicts the restore; nothing is created,
        renamed or dropped.
  diff_mode:
    support: full
    description: Returns whether the target database exists and its size before and after.
options:
  path:
    description:
      - The backup directory (C(<backup_dir>/<database>/<backup_id>)) or its C(manifest.json).
      - A directory without C(manifest.json), or an unfinished C(.<backup_id>.partial) directory, is not a
        complete backup and is refused.
    type: path
    required: true
  target_database:
    description:
      - Database to restore into. Defaults to the backup's source database name from the manifest.
      - Must differ from O(login_db), because the module connects there to create, rename and drop databases.
    type: str
  replace:
    description:
      - Allow replacing an existing database that is not empty. O(confirm) must then name it too.
      - An existing empty database is replaced without it (there is nothing to lose).
    type: bool
    default: false
  confirm:
    description:
      - The name of the target database, typed out, to confirm that its current contents are to be
        thrown away. Required with O(replace=true) when the target exists and is not empty.
    type: str
  jobs:
    description:
      - Parallel jobs of C(pg_restore).
      - More than one job needs a seekable dump; a zstd-compressed custom-format dump is then decompressed into
        a private temporary file under O(tmp_dir) first (it takes as much space as the uncompressed dump).
        With O(jobs=1) it is streamed into C(pg_restore) instead.
    type: int
    default: 2
  create:
    description:
      - Create the target database when it does not exist. With V(false) a missing target fails the task.
    type: bool
    default: true
  no_owner:
    description:
      - Restore without the dump's C(ALTER ... OWNER TO) statements (C(pg_restore --no-owner)); every object is
        then owned by the login role (or O(session_role)).
      - With V(false) every role that owned objects in the source must exist on the target server; apply the
        backup's C(globals.sql) first. Grants in the dump name roles as well and are restored either way.
    type: bool
    default: false
  pg_bin_dir:
    description:
      - Directory holding C(pg_restore).
      - By default C(pg_restore) is taken from PATH, through C(pg_config), or from C(/usr/lib/postgresql/*/bin)
        (newest first), skipping any older than the C(pg_dump) that made the backup.
    type: path
  tmp_dir:
    description:
      - Directory for the private temporary copy of a dump that has to be decompressed (see O(jobs)).
      - Defaults to the managed node's temporary directory (E(TMPDIR) or C(/tmp)).
    type: path
notes:
  - The task reports C(changed=true) whenever it restores (or, in check mode, would restore).
  - The login role needs C(CREATEDB) (or superuser), must be able to rename and drop the database it replaces
    (its owner or a superuser) and to create what the dump holds; restoring as a superuser is the usual way.
  - The server needs free space for a second copy of the database while the old one still exists.
  - If the module process is killed during the restore, the temporary database C(upkeep_restore_<random>)
    stays behind, recognisable by its comment C(upkeep.runbooks restore in progress of ...), which also holds
    its creation time. M(upkeep.runbooks.pg_scratch_sweep) with O(upkeep.runbooks.pg_scratch_sweep#module:marks)
    including V(restore) drops it once it is older than the sweep's limit; or drop it by hand.
  - The dump's global objects (roles, tablespaces) are not restored; the backup's C(globals.sql) holds them.
seealso:
  - module: upkeep.runbooks.pg_backup
  - module: upkeep.runbooks.pg_backup_verify
  - module: upkeep.runbooks.pg_scratch_sweep
  - name: pg_restore
    description: The PostgreSQL restore program and its options.
    link: https://www.postgresql.org/docs/current/app-pgrestore.html
"""

EXAMPLES = r"""
- name: Restore the app database on the DR server (the database does not exist there yet)
  upkeep.runbooks.pg_restore:
    path: /var/backups/postgresql/app/daily-20261123T021500Z
    login_unix_socket: /var/run/postgresql
    jobs: 4
  become: true
  become_user: postgres
  register: restored

- name: Replace the production database with last night's backup (an operator typed the name)
  upkeep.runbooks.pg_restore:
    path: "{{ chosen_backup }}"
    target_database: app
    replace: true
    confirm: "{{ confirm_database }}"
    login_host: 127.0.0.11
    login_password: "{{ vault_postgres_password }}"

- name: Refresh staging from a production backup, owned by the staging role
  upkeep.runbooks.pg_restore:
    path: /srv/backups/app/weekly-20261122T030000Z/manifest.json
    target_database: app_staging
    replace: true
    confirm: app_staging
    no_owner: true
    session_role: app_staging_owner

- name: Show what a restore would do
  upkeep.runbooks.pg_restore:
    path: /var/backups/postgresql/app/daily-20261123T021500Z
    target_database: app
  check_mode: true
  diff: true
"""

RETURN = r"""
backup_id:
  description: The restored backup's id.
  returned: always
  type: str
  sample: daily-20261123T021500Z
database:
  description: The backup's source database (from its manifest).
  returned: always
  type: str
  sample: app
target_database:
  description: The database restored into.
  returned: always
  type: str
  sample: app
replaced:
  description:
    - Whether an existing database of that name was replaced (renamed away and dropped after the restore);
      in check mode, whether it would be.
  returned: always
  type: bool
  sample: true
created:
  description: Whether the target did not exist before (in check mode, would not have existed).
  returned: always
  type: bool
  sample: false
duration_seconds:
  description:
    - Wall-clock seconds from creating the temporary database to the target name pointing at the restored
      database (decompression, pg_restore and the swap); null in check mode.
  returned: always
  type: float
  sample: 93.4
restore_seconds:
  description: The part of RV(duration_seconds) spent in C(pg_restore) (decompression included); null in check mode.
  returned: always
  type: float
  sample: 91.2
old_database_dropped:
  description:
    - Whether the replaced database was dropped after the swap. False only when the drop failed (a warning
      names the leftover database) or nothing was replaced.
  returned: always
  type: bool
  sample: true
diff:
  description: The target database before and after.
  returned: when diff mode is on
  type: dict
  contains:
    before:
      description: C({database, exists, size_bytes}) before the restore.
      type: dict
    after:
      description: C({database, exists, size_bytes}) after the restore (size null in check mode).
      type: dict
  sample:
    before: {database: app, exists: true, size_bytes: 7918095}
    after: {database: app, exists: true, size_bytes: 8020111}
"""

import time  # noqa: E402 - Ansible modules import after their documentation
import uuid  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils import _restore  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._manifest import verify_files  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._postgres import (  # noqa: E402
    PostgresError,
    close_quietly,
    ensure_psycopg,
    open_connection,
    postgres_common_argument_spec,
    server_version,
    server_version_num,
    target,
)

TEMP_PREFIX = _restore.RESTORE_TEMP_PREFIX
OLD_PREFIX = _restore.REPLACED_PREFIX
MAX_LISTED_MISMATCHES = 10


class RestoreRun(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.root = None
        self.manifest = None
        self.target = None
        self.result = {
            "changed": False,
            "backup_id": None,
            "database": None,
            "target_database": None,
            "replaced": False,
            "created": False,
            "duration_seconds": None,
            "restore_seconds": None,
            "old_database_dropped": False,
        }

    def what(self):
        if self.manifest:
            return "backup %s of database '%s'" % (self.manifest["backup_id"], self.manifest["database"])
        return "backup %s" % self.params["path"]

    def fail(self, cause, into=True):
        where = ""
        if into and self.target:
            where = " into database '%s' on %s" % (self.target, target(self.params))
        self.module.fail_json(msg="Failed to restore %s%s: %s" % (self.what(), where, cause), **self.result)

    # ---- checks that touch nothing ------------------------------------------------------

    def load(self):
        try:
            self.root, self.manifest = _restore.load_backup(self.params["path"])
        except _restore.RestoreError as exc:
            self.fail(exc.message)
        self.result["backup_id"] = self.manifest["backup_id"]
        self.result["database"] = self.manifest["database"]
        self.target = self.params["target_database"] or self.manifest["database"]
        self.result["target_database"] = self.target

    def checksum(self):
        try:
            problems = verify_files(self.root, self.manifest)
        except OSError as exc:
            self.fail("cannot read the backup files: %s" % (exc.strerror or exc), into=False)
        if problems:
            details = [_restore.describe_file_problem(p) for p in problems]
            shown = details[:MAX_LISTED_MISMATCHES]
            if len(details) > len(shown):
                shown.append("and %d more" % (len(details) - len(shown)))
            self.fail("checksum verification failed, nothing was changed: %s" % "; ".join(shown), into=False)

    def validate_target(self):
        name = self.target
        if len(name.encode("utf-8")) > _restore.MAX_IDENTIFIER_BYTES:
            self.fail("target_database is longer than %d bytes" % _restore.MAX_IDENTIFIER_BYTES, into=False)
        if name == self.params["login_db"]:
            self.fail("target_database is also login_db; connect through another database (login_db: postgres or "
                      "template1) so the target can be renamed and replaced", into=False)

    def connect(self):
        ensure_psycopg(self.module)
        try:
            conn = open_connection(self.params)
        except PostgresError as exc:
            self.fail(exc.message)
        try:
            version, version_num = server_version(conn), server_version_num(conn)
            may_create = _restore.can_create_databases(conn)
        except PostgresError as exc:
            close_quietly(conn)
            self.fail("cannot read the server's version: %s" % exc.message)
        if _restore.major_of(version_num) < _restore.major_of(self.manifest["pg_dump_version"]):
            close_quietly(conn)
            dumped_by = self.manifest["pg_dump_version"]
            self.fail("the server runs PostgreSQL %s, older than the pg_dump %s that made the backup; restore onto "
                      "PostgreSQL %s or newer" % (version, dumped_by, _restore.major_label(dumped_by)))
        if not may_create:
            close_quietly(conn)
            self.fail("login role '%s' may not create databases (needs CREATEDB)" % self.params["login_user"])
        return conn, version_num

    def inspect_target(self, conn):
        """Target facts (None when missing) after the safety checks; fails the task when it must not be touched."""
        try:
            info = _restore.database_info(conn, self.target)
        except _restore.RestoreError as exc:
            self.fail(exc.message)
        if info is None:
            if not self.params["create"]:
                self.fail("the database does not exist and create is false")
            return None
        if info["is_template"]:
            self.fail("it is a template database; refusing to replace it")
        if info["allow_connections"]:
            try:
                objects = _restore.object_count(self.params, self.target)
            except _restore.RestoreError as exc:
                self.fail(exc.message)
        else:
            objects = None  # cannot look inside: treat as not empty
        info["objects"] = objects
        if objects != 0:
            content = ("holds %d objects" % objects) if objects is not None else "does not allow connections"
            if not self.params["replace"]:
                self.fail("the database exists and %s; to replace it set replace=true and confirm='%s'"
                          % (content, self.target))
            if self.params["confirm"] != self.target:
                self.fail("the database exists and %s; replace=true needs confirm set to its exact name '%s' (got %s)"
                          % (content, self.target,
                             ("'%s'" % self.params["confirm"]) if self.params["confirm"] is not None else "none"))
        return info

    # ---- the restore ---------------------------------------------------------------------

    def restore(self, conn, version_num, info, pg_restore, dump):
        token = uuid.uuid4().hex
        temp = TEMP_PREFIX + token[:16]
        started = time.monotonic()
        try:
            _restore.create_marked_database(conn, temp, "restore", like=info, backup_id=self.manifest["backup_id"],
                                            target=self.target, run_id=token)
        except _restore.RestoreError as exc:
            self.fail("%s; database '%s' was not changed" % (exc.message, self.target))
        self.result["changed"] = True
        try:
            if info:
                _restore.copy_database_properties(conn, self.target, temp)
            argv = _restore.restore_argv(pg_restore, temp, jobs=self.params["jobs"], no_owner=self.params["no_owner"],
                                         role=self.params["session_role"])
            with _restore.Workspace(self.params["tmp_dir"]) as workspace:
                seconds = _restore.run_restore(argv, dump, workspace, _restore.client_env(self.params),
                                               secrets=[self.params["login_password"]])
            self.result["restore_seconds"] = round(seconds, 3)
        except _restore.RestoreError as exc:
            leftover = self._drop_quietly(conn, temp, version_num)
            fate = ("not dropped: drop '%s' by hand (%s)" % (temp, leftover)) if leftover else "dropped"
            self.fail("%s; the temporary database was %s and database '%s' was left as it was"
                      % (exc.message, fate, self.target))
        self.swap(conn, version_num, info, temp, token)
        self.result["duration_seconds"] = round(time.monotonic() - started, 3)

    def _drop_quietly(self, conn, name, version_num):
        try:
            _restore.drop_database(conn, name, version_num)
        except _restore.RestoreError as exc:
            return exc.message
        return None

    def swap(self, conn, version_num, info, temp, token):
        if info is None:
            try:
                _restore.swap_databases(conn, self.target, temp)
                _restore.set_comment(conn, self.target, None)
            except _restore.RestoreError as exc:
                leftover = self._drop_quietly(conn, temp, version_num)
                self.fail("%s; the restored copy %s" % (
                    exc.message, ("is left as '%s' (%s)" % (temp, leftover)) if leftover else "was dropped"))
            self.result["created"] = True
            return
        old = OLD_PREFIX + token[:16]
        try:
            _restore.set_allow_connections(conn, self.target, False)
            _restore.terminate_sessions(conn, self.target)
            _restore.swap_databases(conn, self.target, temp, old)
        except _restore.RestoreError as exc:
            problems = []
            for step in (lambda: _restore.set_allow_connections(conn, self.target, info["allow_connections"]),
                         lambda: _restore.drop_database(conn, temp, version_num)):
                try:
                    step()
                except _restore.RestoreError as cleanup_exc:
                    problems.append(cleanup_exc.message)
            self.fail("%s; database '%s' was left as it was%s" % (
                exc.message, self.target, (" (cleanup: %s)" % "; ".join(problems)) if problems else ""))
        self.result["replaced"] = True
        try:
            _restore.set_comment(conn, self.target, info.get("comment"))
        except _restore.RestoreError as exc:
            self.module.warn("restored database '%s' but could not copy its comment: %s" % (self.target, exc.message))
        leftover = self._drop_quietly(conn, old, version_num)
        if leftover:
            self.module.warn("restored database '%s'; the replaced database is still there as '%s' and could not be "
                             "dropped: %s" % (self.target, old, leftover))
        else:
            self.result["old_database_dropped"] = True

    # ---- the whole run -----------------------------------------------------------------

    def run(self):
        self.load()
        self.validate_target()
        self.checksum()
        try:
            dump = _restore.locate_dump(self.root, self.manifest)
            pg_restore, _version = _restore.find_pg_restore(self.manifest["pg_dump_version"], self.params["pg_bin_dir"])
        except _restore.RestoreError as exc:
            self.fail(exc.message, into=False)
        conn, version_num = self.connect()
        try:
            info = self.inspect_target(conn)
            before = {"database": self.target, "exists": info is not None,
                      "size_bytes": info.get("size_bytes") if info else None}
            if self.module.check_mode:
                self.result.update(changed=True, replaced=info is not None, created=info is None)
                after = {"database": self.target, "exists": True, "size_bytes": None}
            else:
                self.restore(conn, version_num, info, pg_restore, dump)
                try:
                    now = _restore.database_info(conn, self.target)
                except _restore.RestoreError:
                    now = None
                after = {"database": self.target, "exists": now is not None,
                         "size_bytes": now.get("size_bytes") if now else None}
        finally:
            close_quietly(conn)
        if self.module._diff:
            self.result["diff"] = {"before": before, "after": after}
        self.module.exit_json(**self.result)


def main():
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(
        path=dict(type="path", required=True),
        target_database=dict(type="str"),
        replace=dict(type="bool", default=False),
        confirm=dict(type="str"),
        jobs=dict(type="int", default=2),
        create=dict(type="bool", default=True),
        no_owner=dict(type="bool", default=False),
        pg_bin_dir=dict(type="path"),
        tmp_dir=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if module.params["jobs"] < 1:
        module.fail_json(msg="Failed to restore backup %s: jobs must be at least 1, got %d"
                         % (module.params["path"], module.params["jobs"]))
    if module.params["target_database"] == "":
        module.fail_json(msg="Failed to restore backup %s: target_database must not be empty" % module.params["path"])
    RestoreRun(module).run()


if __name__ == "__main__":
    main()
