# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading and restoring pg_backup backups: the shared backend of pg_backup_verify and pg_restore.

What lives here:

* :func:`load_backup` - a backup directory (or its manifest) to ``(root, manifest)``, with the
  one message operators see for an incomplete backup;
* :func:`find_pg_restore` - a ``pg_restore`` able to read the dump (through ``_pg_tools``);
* :func:`locate_dump` and :class:`Workspace` - the dump inside the backup, decompressed to a
  private temporary file only when ``pg_restore`` needs a seekable file (a parallel restore of
  an external zstd stream); otherwise the decompressor is piped into ``pg_restore``;
* :func:`list_toc` / :func:`run_restore` - ``pg_restore`` runs, the password in its environment,
  never on argv;
* TOC parsing, version comparison, and the database-level statements both modules need
  (describe, create with a mark, rename, drop, copy of database properties);
* the marks (:func:`format_mark` / :func:`parse_mark`): the comment that tells a database this
  collection created (and may therefore drop) from every other, with its creation time;
* :func:`sweep_scratch` - the sweep of marked leftovers older than a limit (``pg_scratch_sweep``),
  its decisions taken by the pure :func:`plan_sweep`.

No Ansible imports beyond what ``_postgres`` uses: modules turn :class:`RestoreError` into
``fail_json``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time

from ansible_collections.upkeep.runbooks.plugins.module_utils import _pg_tools, _postgres
from ansible_collections.upkeep.runbooks.plugins.module_utils._manifest import (
    MANIFEST_NAME,
    PARTIAL_SUFFIX,
    ManifestError,
    dump_name,
    load_manifest,
)

# Comment prefixes that mark databases this collection created (and may therefore drop); see
# "marks" below and docs/restore-test.md for what follows them.
SCRATCH_MARKER = "upkeep.runbooks scratch restore of "
RESTORE_MARKER = "upkeep.runbooks restore in progress of "

# PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes.
MAX_IDENTIFIER_BYTES = 63

# Settings whose value is a list of (possibly quoted) items; copied item by item like pg_dumpall does.
_LIST_SETTINGS = frozenset(
    ["search_path", "temp_tablespaces", "session_preload_libraries", "local_preload_libraries",
     "shared_preload_libraries"]
)

# How much of a tool's stderr is kept for messages.
_STDERR_TAIL_BYTES = 64 * 1024


class RestoreError(Exception):
    """Reading or restoring a backup failed; ``str()`` is a readable cause without secrets."""

    def __init__(self, message):
        super(RestoreError, self).__init__(message)
        self.message = message


# --------------------------------------------------------------------------------------
# the backup on disk


def load_backup(path):
    """``(root, manifest)`` of a complete backup; RestoreError saying why it is not one.

    ``path`` is a backup directory or its ``manifest.json``. A directory without a manifest,
    or a hidden/``.partial`` directory, is not a complete backup.
    """
    if not path:
        raise RestoreError("no backup path given")
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise RestoreError("%s does not exist" % path)
    if os.path.isdir(path):
        root, manifest_path = path, os.path.join(path, MANIFEST_NAME)
    else:
        root, manifest_path = os.path.dirname(path), path
    base = os.path.basename(root)
    if base.startswith(".") or base.endswith(PARTIAL_SUFFIX):
        raise RestoreError(
            "%s is a partial backup directory (still being written or abandoned), not a complete backup" % root
        )
    if not os.path.exists(manifest_path):
        raise RestoreError(
            "%s has no %s, so it is not a complete backup (the backup was interrupted, is still being "
            "written, or its manifest was deleted)" % (root, MANIFEST_NAME)
        )
    try:
        manifest = load_manifest(manifest_path)
    except ManifestError as exc:
        raise RestoreError("%s is not a complete backup: %s" % (root, exc)) from None
    return root, manifest


def describe_file_problem(problem):
    """A sentence for one mismatch dict of ``_manifest.verify_files``."""
    path, kind = problem["path"], problem["problem"]
    expected, actual = problem.get("expected"), problem.get("actual")
    if kind == "missing":
        if actual:
            return "%s: listed in the manifest but is %s" % (path, actual)
        return "%s: listed in the manifest but missing" % path
    if kind == "size":
        return "%s: %s bytes, the manifest says %s (truncated or modified)" % (path, actual, expected)
    if kind == "sha256":
        return "%s: sha256 %s, the manifest says %s (content changed)" % (path, actual, expected)
    if kind == "extra":
        return "%s: not listed in the manifest" % path
    return "%s: %s" % (path, kind)


class Dump(object):
    """Where the dump of a backup is and how it has to be read.

    ``path`` is the dump file or directory, ``kind`` ``file`` or ``directory``, ``external``
    the compression applied outside pg_dump to a custom-format file (``zstd``, or ``gzip`` for a
    ``.dump.gz``) or None when pg_restore reads the dump as it is.
    """

    def __init__(self, path, relpath, kind, external=None):
        self.path = path
        self.relpath = relpath
        self.kind = kind
        self.external = external

    def __repr__(self):
        return "<Dump %s %s external=%s>" % (self.kind, self.relpath, self.external)


def _external_of(name):
    """Compression applied outside pg_dump to a custom-format file, from its name."""
    if name.endswith(".zst"):
        return "zstd"
    if name.endswith(".gz"):
        return "gzip"
    return None


def locate_dump(root, manifest):
    """The :class:`Dump` of a backup, found through the manifest's file list."""
    paths = [entry["path"] for entry in manifest["files"]]
    expected = dump_name(manifest["database"], manifest["format"], manifest["compression"])
    if manifest["format"] == "directory":
        # pg_restore reads a directory archive as it is, whatever pg_dump compressed its members with.
        candidates = [expected] if (expected + "/toc.dat") in paths else sorted(
            set(p.split("/", 1)[0] for p in paths if p.endswith("/toc.dat") and p.count("/") == 1)
        )
        if len(candidates) != 1:
            raise RestoreError("the manifest lists no directory-format dump (expected %s/toc.dat)" % expected)
        return Dump(os.path.join(root, candidates[0]), candidates[0], "directory")
    if expected in paths:
        relpath = expected
    else:
        candidates = [p for p in paths if "/" not in p and re.search(r"\.dump(\.gz|\.zst)?$", p)]
        if len(candidates) != 1:
            raise RestoreError("the manifest lists no custom-format dump (expected %s)" % expected)
        relpath = candidates[0]
    return Dump(os.path.join(root, relpath), relpath, "file", _external_of(relpath))


# --------------------------------------------------------------------------------------
# versions and tools


def version_num(text):
    """``server_version_num``-style number of a version string: ``'15.18'`` -> 150018, ``'9.6.24'`` -> 90624."""
    if isinstance(text, int):
        return text
    match = re.search(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(text or ""))
    if not match:
        raise RestoreError("cannot read a PostgreSQL version from %r" % (text,))
    first, second, third = (int(part) if part is not None else 0 for part in match.groups())
    if first >= 10:
        return first * 10000 + second
    return first * 10000 + second * 100 + third


def major_of(version):
    """Major version (15, or 906 for 9.6) of a version string or number."""
    return _pg_tools.major_of(version_num(version))


def major_label(version):
    """Printable major version of a version string or number ("15", "9.6")."""
    num = version_num(version)
    if num >= 100000:
        return str(num // 10000)
    return "%d.%d" % (num // 10000, (num // 100) % 100)


def find_pg_restore(pg_dump_version, pg_bin_dir=None):
    """``(path, version)`` of a pg_restore able to read a dump made by ``pg_dump_version``.

    pg_restore reads archives of its own and older pg_dump versions only, so one at least as
    new as the dump's pg_dump is chosen (see ``_pg_tools.find_bindir`` for the search order).
    """
    try:
        found = _pg_tools.find_bindir(version_num(pg_dump_version), pg_bin_dir=pg_bin_dir, tools=("pg_restore",),
                                      probe="pg_restore")
    except _pg_tools.ToolError as exc:
        raise RestoreError("%s (the dump was made by pg_dump %s)" % (exc, pg_dump_version)) from None
    return os.path.join(found["bindir"], "pg_restore"), found["version"]


# --------------------------------------------------------------------------------------
# running pg_restore


def client_env(params):
    """Environment for pg_restore: the connection options as PG* variables, password included.

    The password travels here (PGPASSWORD), never on argv (see ``_pg_tools.client_env``).
    """
    return _pg_tools.client_env(params, database="")


def conninfo_dbname(name):
    """``dbname='...'`` for ``pg_restore -d``: a conninfo string, so names with ``=`` or spaces stay names."""
    return "dbname='%s'" % name.replace("\\", "\\\\").replace("'", "\\'")


def _one_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0] if lines else ""


def summarize_stderr(text, secrets=None, limit=3):
    """The error lines of a client program (``pg_restore: error: ...`` and the statement after it)."""
    lines = [line.rstrip() for line in (text or "").splitlines() if line.strip()]
    picked = []
    for index, line in enumerate(lines):
        if re.search(r"\b(error|fatal)\b", line, re.IGNORECASE):
            picked.append(line.strip())
            if index + 1 < len(lines) and lines[index + 1].startswith("Command was:"):
                picked.append(lines[index + 1].strip()[:300])
    if not picked:
        picked = [line.strip() for line in lines[-limit:]]
    summary = " | ".join(picked[: limit * 2])
    for secret in secrets or ():
        if secret:
            summary = summary.replace(secret, "********")
    return summary or "no error output"


def _read_tail(handle):
    handle.flush()
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - _STDERR_TAIL_BYTES))
    return handle.read().decode("utf-8", errors="replace")


def decompress_argv(compression, path):
    """argv that writes the decompressed ``path`` to stdout."""
    program = {"zstd": "zstd", "gzip": "gzip"}[compression]
    exe = shutil.which(program)
    if not exe:
        raise RestoreError(
            "the %s command is not installed (Debian package %s); it is needed to read %s" % (program, program, path)
        )
    if compression == "zstd":
        return [exe, "-d", "-c", "-q", "--", path]
    return [exe, "-d", "-c", "--", path]


class Workspace(object):
    """A private temporary directory (0700) for decompressed dumps; removed by :meth:`cleanup`."""

    def __init__(self, tmp_dir=None):
        self.tmp_dir = tmp_dir
        self._path = None

    @property
    def path(self):
        if self._path is None:
            try:
                self._path = tempfile.mkdtemp(prefix="upkeep-restore-", dir=self.tmp_dir)
            except OSError as exc:
                raise RestoreError("cannot create a temporary directory in %s: %s"
                                   % (self.tmp_dir or tempfile.gettempdir(), exc.strerror or exc)) from None
        return self._path

    def cleanup(self):
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.cleanup()

    def _decompress_to(self, compression, source, target):
        argv = decompress_argv(compression, source)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, tempfile.TemporaryFile() as err:
            proc = _spawn(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            try:
                code = proc.wait()
            except BaseException:
                _pg_tools.kill_process(proc, grace=2)
                raise
            if code != 0:
                raise RestoreError("cannot decompress %s into %s: %s exited %s: %s" % (
                    source, self.path, os.path.basename(argv[0]), code, summarize_stderr(_read_tail(err))))

    def seekable(self, dump):
        """A path pg_restore can seek in: the dump itself, or a decompressed copy in the workspace."""
        if not dump.external:
            return dump.path
        target = os.path.join(self.path, re.sub(r"\.(zst|gz)$", "", os.path.basename(dump.path)))
        self._decompress_to(dump.external, dump.path, target)
        return target


def _spawn(argv, **kwargs):
    """Start a child in its own session that gets SIGTERM when the module process dies."""
    try:
        # The module is single-threaded, so preexec_fn is safe here.
        return subprocess.Popen(argv, preexec_fn=_pg_tools.die_with_parent,  # noqa: PLW1509 # pylint: disable=W1509
                                **kwargs)
    except OSError as exc:
        raise RestoreError("cannot run %s: %s" % (argv[0], exc.strerror or exc)) from None


def _run_with_input(argv, env, dump, workspace, seekable, capture_stdout=False, list_only=False):
    """Run a pg_restore argv on ``dump``; returns ``(rc, stdout_lines, stderr_text)``.

    When the dump needs decompressing and no seekable file is required, the decompressor is
    piped into pg_restore's stdin (no temporary space needed). ``list_only``: pg_restore reads
    just the header and the TOC, so the decompressor is stopped once pg_restore is done.
    """
    decompressor = None
    stdin = subprocess.DEVNULL
    if dump.external and seekable:
        argv = argv + [workspace.seekable(dump)]
    elif not dump.external:
        argv = argv + [dump.path]

    lines = []
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as dec_err:
        if dump.external and not seekable:
            decompressor = _spawn(decompress_argv(dump.external, dump.path), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=dec_err, env=env)
            stdin = decompressor.stdout
        proc = None
        try:
            proc = _spawn(argv, stdin=stdin, stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
                          stderr=err, env=env)
            if decompressor is not None:
                decompressor.stdout.close()  # pg_restore holds the read end; if it stops, the writer gets SIGPIPE
            if capture_stdout:
                for raw in proc.stdout:
                    lines.append(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
                proc.stdout.close()
            rc = proc.wait()
        except BaseException:
            _pg_tools.kill_process(proc, grace=2)
            _pg_tools.kill_process(decompressor, grace=2)
            raise
        stderr = _read_tail(err)
        if decompressor is not None:
            if list_only:
                _pg_tools.kill_process(decompressor, grace=1)
            dec_rc = decompressor.wait()
            if rc == 0 and dec_rc != 0 and not list_only:
                raise RestoreError("cannot decompress %s: %s exited %s: %s" % (
                    dump.path, os.path.basename(decompressor.args[0]), dec_rc, summarize_stderr(_read_tail(dec_err))))
    return rc, lines, stderr


def list_toc(pg_restore, dump, workspace):
    """The lines ``pg_restore --list`` prints for ``dump`` (comments included); RestoreError if it fails."""
    env = _pg_tools.client_env({}, database="")
    rc, lines, stderr = _run_with_input([pg_restore, "--list"], env, dump, workspace, seekable=False,
                                        capture_stdout=True, list_only=True)
    if rc != 0:
        raise RestoreError("pg_restore --list could not read %s (exit %s): %s"
                           % (dump.relpath, rc, summarize_stderr(stderr)))
    return lines


def restore_argv(pg_restore, dbname, jobs=1, no_owner=False, no_privileges=False, role=None, extra=()):
    """argv of a restore into ``dbname`` that stops at the first error. Holds no secret."""
    argv = [pg_restore, "--exit-on-error", "--jobs=%d" % int(jobs), "--dbname=" + conninfo_dbname(dbname)]
    if no_owner:
        argv.append("--no-owner")
    if no_privileges:
        argv.append("--no-privileges")
    if role:
        argv.append("--role=" + role)
    argv.extend(extra)
    return argv


def run_restore(argv, dump, workspace, env, secrets=None):
    """Run a restore argv (from :func:`restore_argv`) on ``dump``; seconds it took (decompression included)."""
    jobs = 1
    for arg in argv:
        if arg.startswith("--jobs="):
            jobs = int(arg.split("=", 1)[1])
    started = time.monotonic()
    rc, _lines, stderr = _run_with_input(argv, env, dump, workspace, seekable=jobs > 1)
    duration = time.monotonic() - started
    if rc != 0:
        raise RestoreError("pg_restore exited %s: %s" % (rc, summarize_stderr(stderr, secrets=secrets)))
    return duration


# --------------------------------------------------------------------------------------
# the table of contents


def toc_entries(lines):
    """The entry lines of a ``pg_restore --list`` output (comments and blank lines dropped).

    This is the definition of the manifest's ``toc_entries``.
    """
    return [line for line in lines if line.strip() and not line.lstrip().startswith(";")]


def toc_name(text):
    """A name as ``pg_restore --list`` prints it: newlines become spaces, nothing is quoted."""
    return (text or "").replace("\r", " ").replace("\n", " ")


_TABLE_DATA = re.compile(r"^\s*\d+;\s+\d+\s+\d+\s+TABLE DATA (.*)$")


def table_data_keys(entries):
    """``'<schema> <table> <owner>'`` of every TABLE DATA entry (names as --list prints them)."""
    keys = []
    for line in entries:
        match = _TABLE_DATA.match(line)
        if match:
            keys.append(match.group(1))
    return keys


def missing_table_data(entries, tables):
    """Manifest tables without a TABLE DATA entry in the TOC.

    --list prints ``schema name owner`` unquoted, so a table matches an entry that starts with
    ``"<schema> <name> "`` (or is exactly ``"<schema> <name>"``).
    """
    keys = table_data_keys(entries)
    missing = []
    for table in tables:
        prefix = "%s %s" % (toc_name(table["schema"]), toc_name(table["name"]))
        if not any(key == prefix or key.startswith(prefix + " ") for key in keys):
            missing.append(table)
    return missing


# --------------------------------------------------------------------------------------
# databases


SQL_DATABASE = """
SELECT d.oid::int AS oid,
       d.datname::text AS name,
       shobj_description(d.oid, 'pg_database') AS comment,
       pg_get_userbyid(d.datdba)::text AS owner,
       pg_encoding_to_char(d.encoding) AS encoding,
       d.datcollate::text AS lc_collate,
       d.datctype::text AS lc_ctype,
       to_jsonb(d) ->> 'datlocprovider' AS locale_provider,
       coalesce(to_jsonb(d) ->> 'daticulocale', to_jsonb(d) ->> 'datlocale') AS icu_locale,
       d.datconnlimit AS connection_limit,
       d.datallowconn AS allow_connections,
       d.datistemplate AS is_template,
       d.datacl IS NOT NULL AS has_acl,
       CASE WHEN has_database_privilege(d.oid, 'CONNECT') THEN pg_database_size(d.oid) END AS size_bytes,
       (SELECT count(*) FROM pg_stat_activity a WHERE a.datid = d.oid AND a.pid <> pg_backend_pid())::int AS sessions
FROM pg_database AS d
WHERE d.datname = %(name)s
"""

# What makes a database "non-empty": anything a restore would collide with or an operator would miss.
SQL_OBJECT_COUNT = r"""
SELECT
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
      AND n.nspname NOT LIKE 'pg\_temp\_%')
+ (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema'))
+ (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND t.typtype IN ('d', 'e', 'r'))
+ (SELECT count(*) FROM pg_namespace
    WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\_%')
+ (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')
+ (SELECT count(*) FROM pg_largeobject_metadata) AS objects
"""

SQL_CAN_CREATE_DB = """
SELECT rolsuper OR rolcreatedb AS can_create FROM pg_roles WHERE rolname = current_user
"""

SQL_ACL = """
SELECT a.grantee::int AS grantee_oid, r.rolname::text AS grantee, a.privilege_type, a.is_grantable
FROM pg_database AS d CROSS JOIN LATERAL aclexplode(d.datacl) AS a
LEFT JOIN pg_roles AS r ON r.oid = a.grantee
WHERE d.datname = %(name)s
ORDER BY 2, 3
"""

SQL_SETTINGS = """
SELECT s.setrole::int AS role_oid, r.rolname::text AS role, s.setconfig AS config
FROM pg_db_role_setting AS s JOIN pg_database AS d ON d.oid = s.setdatabase
LEFT JOIN pg_roles AS r ON r.oid = s.setrole
WHERE d.datname = %(name)s
ORDER BY 2
"""


def _raise(what, exc):
    raise RestoreError("%s: %s" % (what, getattr(exc, "message", None) or _postgres.describe_error(exc))) from None


def database_info(conn, name):
    """Facts about database ``name`` (see SQL_DATABASE), or None when it does not exist."""
    try:
        row = _postgres.query_one(conn, SQL_DATABASE, {"name": name})
    except _postgres.PostgresError as exc:
        _raise("cannot look up database '%s'" % name, exc)
    return dict(row) if row else None


def object_count(params, name):
    """How many user objects database ``name`` holds (0 for a fresh, empty database)."""
    conn = None
    try:
        conn = _postgres.open_connection(dict(params, login_db=name))
        row = _postgres.query_one(conn, SQL_OBJECT_COUNT)
        return int(row["objects"])
    except _postgres.PostgresError as exc:
        _raise("cannot inspect database '%s'" % name, exc)
    finally:
        _postgres.close_quietly(conn)


def can_create_databases(conn):
    row = _postgres.query_one(conn, SQL_CAN_CREATE_DB)
    return bool(row and row["can_create"])


def _literal(value):
    return _postgres.pg_sql.Literal(value)


def create_database(conn, name, comment, like=None):
    """CREATE DATABASE ``name`` from template0 and give it ``comment`` right away (none when None).

    ``like`` (a :func:`database_info` dict) gives owner, encoding and locale to copy. Databases the
    collection may drop later are made with :func:`create_marked_database` instead.
    """
    parts = [_postgres.sql("CREATE DATABASE {0} TEMPLATE template0").format(_postgres.identifier(name))]
    if like:
        parts.append(_postgres.sql("OWNER {0}").format(_postgres.identifier(like["owner"])))
        parts.append(_postgres.sql("ENCODING {0}").format(_literal(like["encoding"])))
        parts.append(_postgres.sql("LC_COLLATE {0} LC_CTYPE {1}").format(
            _literal(like["lc_collate"]), _literal(like["lc_ctype"])))
        if like.get("locale_provider") == "i" and like.get("icu_locale"):
            parts.append(_postgres.sql("LOCALE_PROVIDER icu ICU_LOCALE {0}").format(_literal(like["icu_locale"])))
        if like.get("connection_limit") not in (None, -1):
            parts.append(_postgres.sql("CONNECTION LIMIT {0}").format(_literal(int(like["connection_limit"]))))
    statement = _postgres.sql(" ").join(parts)
    try:
        _postgres.execute(conn, statement)
    except _postgres.PostgresError as exc:
        _raise("cannot create database '%s'" % name, exc)
    if comment is not None:
        set_comment(conn, name, comment)


def create_marked_database(conn, name, kind, like=None, **fields):
    """CREATE DATABASE ``name`` (see :func:`create_database`) and mark it as ``kind``; returns the mark.

    The mark's ``created`` is the server's clock read right after the database exists, so its age
    is never overstated. Should reading the clock or setting the comment fail, the database just
    created is dropped again: no unmarked database is left behind.
    """
    create_database(conn, name, None, like=like)
    try:
        comment = format_mark(kind, server_clock(conn), **fields)
        set_comment(conn, name, comment)
    except RestoreError as exc:
        try:
            _postgres.execute(conn, _postgres.sql("DROP DATABASE IF EXISTS {0}").format(_postgres.identifier(name)))
        except _postgres.PostgresError as drop_exc:
            raise RestoreError("%s; database '%s' was created but could not be marked nor dropped again (%s): drop "
                               "it by hand" % (exc.message, name, drop_exc.message)) from None
        raise
    return comment


def set_comment(conn, name, comment):
    try:
        _postgres.execute(conn, _postgres.sql("COMMENT ON DATABASE {0} IS {1}").format(
            _postgres.identifier(name), _literal(comment)))
    except _postgres.PostgresError as exc:
        _raise("cannot comment on database '%s'" % name, exc)


def terminate_sessions(conn, name, timeout=30.0):
    """Terminate every other session on database ``name``; RestoreError when some survive ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            row = _postgres.query_one(
                conn,
                "SELECT count(*)::int AS left FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %(name)s AND pid <> pg_backend_pid()) AS t",
                {"name": name},
            )
        except _postgres.PostgresError as exc:
            _raise("cannot terminate the sessions on database '%s'" % name, exc)
        if not row["left"]:
            return
        if time.monotonic() > deadline:
            raise RestoreError("%d sessions on database '%s' did not end within %ds" % (row["left"], name, timeout))
        time.sleep(0.2)


def drop_database(conn, name, server_version_num):
    """DROP DATABASE ``name`` (its sessions are ended first). Only call it on a database this run may drop."""
    statement = _postgres.sql("DROP DATABASE IF EXISTS {0}").format(_postgres.identifier(name))
    if server_version_num >= 130000:
        statement = _postgres.sql("DROP DATABASE IF EXISTS {0} WITH (FORCE)").format(_postgres.identifier(name))
    else:
        terminate_sessions(conn, name)
    try:
        _postgres.execute(conn, statement)
    except _postgres.PostgresError as exc:
        _raise("cannot drop database '%s'" % name, exc)


def set_allow_connections(conn, name, allow):
    try:
        _postgres.execute(conn, _postgres.sql("ALTER DATABASE {0} WITH ALLOW_CONNECTIONS {1}").format(
            _postgres.identifier(name), _postgres.sql("true" if allow else "false")))
    except _postgres.PostgresError as exc:
        _raise("cannot change ALLOW_CONNECTIONS of database '%s'" % name, exc)


def swap_databases(conn, target, replacement, old_name=None):
    """In one transaction: rename ``target`` to ``old_name`` (when given), then ``replacement`` to ``target``."""
    try:
        with conn.transaction():
            if old_name:
                _postgres.execute(conn, _postgres.sql("ALTER DATABASE {0} RENAME TO {1}").format(
                    _postgres.identifier(target), _postgres.identifier(old_name)))
            _postgres.execute(conn, _postgres.sql("ALTER DATABASE {0} RENAME TO {1}").format(
                _postgres.identifier(replacement), _postgres.identifier(target)))
    except _postgres.PostgresError as exc:
        _raise("cannot rename database '%s' to '%s'" % (replacement, target), exc)
    except Exception as exc:  # psycopg errors raised by the transaction block itself
        _raise("cannot rename database '%s' to '%s'" % (replacement, target), exc)


def split_setting_list(value):
    """``'"My Schema", public'`` -> ``['My Schema', 'public']`` (double-quoted items unquoted)."""
    items, current, quoted, index = [], [], False, 0
    text = value or ""
    while index < len(text):
        char = text[index]
        if quoted:
            if char == '"':
                if text[index + 1:index + 2] == '"':
                    current.append('"')
                    index += 1
                else:
                    quoted = False
            else:
                current.append(char)
        elif char == '"':
            quoted = True
        elif char == ",":
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        index += 1
    last = "".join(current).strip()
    if last or items:
        items.append(last)
    return items


def _setting_statement(database, role, config):
    name, _sep, value = config.partition("=")
    if name in _LIST_SETTINGS:
        value_sql = _postgres.sql(", ").join(_literal(item) for item in split_setting_list(value))
    else:
        value_sql = _literal(value)
    if role:
        return _postgres.sql("ALTER ROLE {0} IN DATABASE {1} SET {2} TO {3}").format(
            _postgres.identifier(role), _postgres.identifier(database), _postgres.identifier(name), value_sql)
    return _postgres.sql("ALTER DATABASE {0} SET {1} TO {2}").format(
        _postgres.identifier(database), _postgres.identifier(name), value_sql)


def copy_database_properties(conn, source, target):
    """Give database ``target`` the privileges and per-database settings of ``source``.

    A dump made without ``--create`` holds neither, so a database that replaces another gets
    them from the one it replaces (owner, encoding and locale are set at creation).
    """
    try:
        grants = _postgres.query_all(conn, SQL_ACL, {"name": source})
        settings = _postgres.query_all(conn, SQL_SETTINGS, {"name": source})
        info = database_info(conn, source)
        if info and info["has_acl"]:
            _postgres.execute(conn, _postgres.sql("REVOKE ALL ON DATABASE {0} FROM PUBLIC").format(
                _postgres.identifier(target)))
            for grant in grants:
                if grant["grantee_oid"] != 0 and not grant["grantee"]:
                    continue  # a dropped role left in the ACL
                grantee = _postgres.sql("PUBLIC") if grant["grantee_oid"] == 0 else _postgres.identifier(
                    grant["grantee"])
                statement = _postgres.sql("GRANT {0} ON DATABASE {1} TO {2}").format(
                    _postgres.sql(grant["privilege_type"]), _postgres.identifier(target), grantee)
                if grant["is_grantable"]:
                    statement = _postgres.sql("{0} WITH GRANT OPTION").format(statement)
                _postgres.execute(conn, statement)
        for setting in settings:
            if setting["role_oid"] and not setting["role"]:
                continue
            for config in setting["config"] or []:
                _postgres.execute(conn, _setting_statement(target, setting["role"], config))
    except _postgres.PostgresError as exc:
        _raise("cannot copy privileges and settings of database '%s' to '%s'" % (source, target), exc)


# --------------------------------------------------------------------------------------
# marks
#
# A database this collection creates and may drop later carries a mark in its comment: the
# kind's prefix (SCRATCH_MARKER for pg_backup_verify's scratch databases, RESTORE_MARKER for
# pg_restore's temporary ones), then one JSON object. The prefix alone is what makes a mark,
# as it always was, so every version of the collection recognises every other version's marks;
# the JSON carries the creation time (the server's clock) that lets a sweep tell a leftover from
# a restore running right now. docs/restore-test.md documents the format.

MARK_VERSION = 1
MARK_PREFIXES = {"scratch": SCRATCH_MARKER, "restore": RESTORE_MARKER}
MARK_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

# Names the collection gives the databases it creates: pg_backup_verify's default scratch name,
# pg_restore's temporary database (followed by the first 16 characters of the run id in its mark)
# and the database pg_restore replaced (renamed to the same suffix before it is dropped).
SCRATCH_PREFIX = "upkeep_verify_"
RESTORE_TEMP_PREFIX = "upkeep_restore_"
REPLACED_PREFIX = "upkeep_replaced_"
OWN_PREFIXES = (SCRATCH_PREFIX, RESTORE_TEMP_PREFIX, REPLACED_PREFIX)

_UTC = datetime.timezone.utc


def format_time(moment):
    """``2026-11-23T02:15:00.123456Z``: an aware datetime in UTC, microseconds kept."""
    return moment.astimezone(_UTC).strftime(MARK_TIME_FORMAT)


def parse_time(text):
    """The aware UTC datetime of :func:`format_time` text (the fraction may be missing); None if unreadable."""
    if not isinstance(text, str):
        return None
    for pattern in (MARK_TIME_FORMAT, "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.datetime.strptime(text, pattern).replace(tzinfo=_UTC)
        except ValueError:
            continue
    return None


def format_mark(kind, created, **fields):
    """The comment that marks a database of ``kind`` (``scratch`` or ``restore``) made at ``created``.

    The kind's prefix, then a JSON object holding the mark version ``v``, ``created`` and
    ``fields`` (None values left out). ASCII only: database comments live in a shared catalog
    that has no encoding of its own, so JSON escapes anything else.
    """
    data = dict((key, value) for key, value in fields.items() if value is not None)
    data.update(v=MARK_VERSION, created=format_time(created))
    return MARK_PREFIXES[kind] + json.dumps(data, sort_keys=True, ensure_ascii=True)


def parse_mark(comment):
    """The mark in a database comment as a dict, or None when the comment is no mark of this collection.

    Keys: ``kind`` (``scratch``/``restore``), ``format``, ``version`` (``v`` of a JSON mark),
    ``created`` (aware datetime or None),
    ``backup_id``, ``run_id``, ``source`` (the backup's source database), ``target`` (the database a
    pg_restore run was for), ``kept`` (pg_backup_verify keep=true) and ``fields`` (the JSON as read).
    ``format`` is ``json`` for marks that carry their creation time and ``legacy`` for the marks
    written before them, ``<backup_id> <uuid>`` (scratch) and ``<backup_id> into <target> <token>``
    (restore), which carry none: ``created`` is then None. Details that cannot be read are None.
    """
    if not isinstance(comment, str):
        return None
    for kind in sorted(MARK_PREFIXES):
        prefix = MARK_PREFIXES[kind]
        if comment.startswith(prefix):
            break
    else:
        return None
    rest = comment[len(prefix):]
    mark = {"kind": kind, "format": "legacy", "version": None, "created": None, "backup_id": None, "run_id": None,
            "source": None, "target": None, "kept": False, "fields": {}}
    data = None
    if rest.startswith("{"):
        try:
            data = json.loads(rest)
        except ValueError:
            data = None
    if isinstance(data, dict):
        mark.update(format="json", fields=data, version=data.get("v"), created=parse_time(data.get("created")),
                    kept=data.get("kept") is True)
        for key in ("backup_id", "run_id", "source", "target"):
            value = data.get(key)
            mark[key] = value if isinstance(value, str) else None
        return mark
    head, _sep, tail = rest.rpartition(" ")
    if kind == "scratch":
        mark.update(backup_id=head or None, run_id=tail or None)
    else:
        backup_id, into, target_name = head.partition(" into ")
        mark.update(backup_id=backup_id or None, target=(target_name or None) if into else None, run_id=tail or None)
    return mark


def update_mark(comment, **changes):
    """The mark ``comment`` with ``changes`` to its fields (a None value removes one); its time is kept."""
    mark = parse_mark(comment)
    if mark is None or mark["format"] != "json" or mark["created"] is None:
        raise RestoreError("the comment %r is not a mark with a creation time" % (comment,))
    fields = dict((key, value) for key, value in mark["fields"].items() if key not in ("v", "created"))
    fields.update(changes)
    return format_mark(mark["kind"], mark["created"], **fields)


def server_clock(conn):
    """The server's current time (an aware datetime). Marks and ages use the server's clock, never the node's."""
    try:
        row = _postgres.query_one(conn, "SELECT clock_timestamp() AS now")
    except _postgres.PostgresError as exc:
        _raise("cannot read the server's clock", exc)
    return row["now"]


# --------------------------------------------------------------------------------------
# the sweep of leftovers

SWEEP_KINDS = ("scratch", "restore")
SYSTEM_DATABASES = frozenset(["postgres", "template0", "template1"])
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = r"(\d+(?:\.\d+)?)\s*([smhdw])"
SQLSTATE_OBJECT_IN_USE = "55006"

# Sessions count what DROP DATABASE (without FORCE) refuses to run beside; autovacuum workers are
# left out because DROP DATABASE ends them itself.
_SESSIONS = """(SELECT count(*) FROM pg_stat_activity AS a
        WHERE a.datid = d.oid AND a.pid <> pg_backend_pid()
          AND a.backend_type IS DISTINCT FROM 'autovacuum worker')::int"""

SQL_SWEEP_DATABASES = """
SELECT d.oid::int AS oid,
       d.datname::text AS name,
       shobj_description(d.oid, 'pg_database') AS comment,
       d.datistemplate AS is_template,
       t.spcname::text AS tablespace,
       %s AS sessions
FROM pg_database AS d LEFT JOIN pg_tablespace AS t ON t.oid = d.dattablespace
ORDER BY d.datname
""" % _SESSIONS

SQL_SWEEP_RECHECK = """
SELECT d.oid::int AS oid, shobj_description(d.oid, 'pg_database') AS comment, %s AS sessions
FROM pg_database AS d
WHERE d.datname = %%(name)s
""" % _SESSIONS

SQL_DATABASE_SIZE = """
SELECT CASE WHEN has_database_privilege(%(oid)s::oid, 'CONNECT') THEN pg_database_size(%(oid)s::oid) END AS size_bytes
"""

# A database's directory gets its PG_VERSION file when CREATE DATABASE makes it, never touched again.
SQL_FILE_TIME = "SELECT (pg_stat_file(%(path)s, true)).modification AS modified"


def parse_duration(value, what="older_than"):
    """Seconds of a limit given as seconds (``0``, ``90``, ``21600.5``) or text such as ``45m``, ``6h``, ``1d12h``.

    Units: s, m (minutes), h, d, w. RestoreError for anything else, or a negative limit.
    """
    problem = "%s must be a number of seconds or a duration such as 90m, 6h or 1d12h, got %r" % (what, value)
    if value is None or isinstance(value, bool):
        raise RestoreError(problem)
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        if re.match(r"^\d+(\.\d+)?$", text):
            seconds = float(text)
        else:
            parts = re.findall(_DURATION_PART, text)
            if not parts or re.sub(_DURATION_PART, "", text).strip():
                raise RestoreError(problem)
            seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    if math.isnan(seconds) or math.isinf(seconds):
        raise RestoreError(problem)
    if seconds < 0:
        raise RestoreError("%s must not be negative, got %r" % (what, value))
    return seconds


def human_duration(seconds):
    """``3d 4h``, ``6h 12m``, ``5m 3s``, ``42s``: the two largest units of a number of seconds."""
    if seconds is None:
        return "unknown"
    left = int(max(0, seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append("%d%s" % (left // size, unit))
            left %= size
    return " ".join(parts[:2])


def _database_size(conn, oid):
    try:
        row = _postgres.query_one(conn, SQL_DATABASE_SIZE, {"oid": oid})
    except _postgres.PostgresError:
        return None  # gone meanwhile, or unreadable: the size is information, not a condition
    return row["size_bytes"] if row else None


def _file_created(conn, entry):
    """``(time, problem)``: when the database's directory was made, read from its PG_VERSION file."""
    if entry.get("tablespace") != "pg_default":
        return None, "it lives in tablespace '%s', where its files are not looked up" % entry.get("tablespace")
    try:
        row = _postgres.query_one(conn, SQL_FILE_TIME, {"path": "base/%d/PG_VERSION" % entry["oid"]})
    except _postgres.PostgresError as exc:
        return None, ("its files cannot be read to tell: pg_stat_file needs a superuser, or GRANT EXECUTE ON "
                      "FUNCTION pg_stat_file(text, boolean) to the login role: %s" % exc.message)
    if not row or row["modified"] is None:
        return None, "its PG_VERSION file was not found"
    return row["modified"], None


def sweep_inventory(conn):
    """``(now, databases)``: the server's time, and every marked database plus every unmarked one with a
    name the collection uses (listed so a report shows them, never dropped), each with its parsed
    ``mark``, ``size_bytes``, ``created`` and where that time came from (``created_from``: ``mark``
    or ``file``, the time PostgreSQL wrote the database's PG_VERSION file, for marks without a time).
    """
    now = server_clock(conn)
    try:
        rows = _postgres.query_all(conn, SQL_SWEEP_DATABASES)
    except _postgres.PostgresError as exc:
        _raise("cannot list the databases", exc)
    found = []
    for row in rows:
        entry = dict(row)
        entry["mark"] = parse_mark(entry["comment"])
        if entry["mark"] is None and not entry["name"].startswith(OWN_PREFIXES):
            continue
        entry.update(size_bytes=_database_size(conn, entry["oid"]), created=None, created_from=None,
                     age_problem=None)
        if entry["mark"] is not None:
            if entry["mark"]["created"] is not None:
                entry.update(created=entry["mark"]["created"], created_from="mark")
            else:
                created, problem = _file_created(conn, entry)
                entry.update(created=created, created_from="file" if created else None, age_problem=problem)
        found.append(entry)
    return now, found


def _describe_comment(comment):
    if not comment:
        return "empty"
    return "'%s'" % (comment if len(comment) <= 60 else comment[:57] + "...")


def _kind_label(kind):
    return {"scratch": "pg_backup_verify scratch database", "restore": "pg_restore temporary database"}[kind]


def _sessions(count):
    return "%d session%s connected" % (count, "" if count == 1 else "s")


def _keep_reason(entry, age, older_than, kinds, protected, login_db):
    """``(reason, warn)`` for keeping a database, or None when it is a leftover to drop.

    Reasons hold no parentheses: reports list them as ``name (reason)``.
    """
    name, mark = entry["name"], entry["mark"]
    if entry.get("is_template"):
        return "a template database", False
    if name in SYSTEM_DATABASES:
        return "a system database", False
    if login_db and name == login_db:
        return "login_db, the database the sweep connects through", False
    if name in protected:
        return "listed in protected_databases", False
    if mark is None:
        return ("not marked: its comment is %s, and a name alone never makes a database a leftover"
                % _describe_comment(entry.get("comment"))), False
    if mark["kind"] not in kinds:
        return "a %s, and marks does not include %s" % (_kind_label(mark["kind"]), mark["kind"]), False
    if mark["format"] == "json" and mark["version"] != MARK_VERSION:
        return ("its mark has version %s, which this version of upkeep.runbooks does not know: a newer version "
                "should sweep it" % json.dumps(mark["version"])), True
    if mark["kind"] == "scratch" and mark["source"] == name:
        return "its mark names it as the source database of the backup restored into it", True
    if mark["kind"] == "restore":
        if mark["target"] == name:
            return ("it has the name of the database its restore was for, so pg_restore renamed it into place "
                    "before clearing the mark: check it and clear its comment"), True
        expected = RESTORE_TEMP_PREFIX + (mark["run_id"] or "")[:16]
        if not mark["run_id"] or name != expected:
            return ("its name is not %s, the temporary name its mark gives, so it was renamed and is no leftover"
                    % (expected if mark["run_id"] else RESTORE_TEMP_PREFIX + "<run id>")), True
    if mark["kept"]:
        return "pg_backup_verify kept it on purpose with keep=true; drop it by hand when done with it", False
    if age is None:
        return ("age unknown: its mark, written by an older version of upkeep.runbooks, holds no creation time, "
                "and %s" % (entry.get("age_problem") or "no other source gave one")), True
    if age < older_than:
        return ("%s old, younger than the limit of %s: a restore may still be running in it"
                % (human_duration(age), human_duration(older_than))), False
    if entry.get("sessions"):
        return ("%s: a database in use is never dropped; is a restore still running, or is someone looking at it?"
                % _sessions(entry["sessions"])), True
    return None


def plan_sweep(databases, now, older_than, kinds=("scratch",), protected=(), login_db=None):
    """Decide, for each database of :func:`sweep_inventory`, whether it is a leftover to drop. Pure.

    A database is dropped only when all of these hold: it carries a mark of one of ``kinds``; it
    is not a template, a system database, ``login_db`` or one of ``protected``; its mark does not
    name it as the backup's source or the restore's target, and a pg_restore temporary database
    still has the name its mark gives; pg_backup_verify did not keep it on purpose; its age
    (``now`` minus its creation time) is known and at least ``older_than`` seconds; no session is
    connected to it. Returns one dict per database, in the order given: ``name``, ``mark``,
    ``mark_format``, ``backup_id``, ``run_id``, ``created``, ``created_from``, ``age_seconds``,
    ``size_bytes``, ``sessions``, ``action`` (``remove``/``keep``), ``reason``, ``warn``, and
    ``oid`` and ``comment`` for the check just before the drop.
    """
    protected = set(name for name in protected or () if name)
    kinds = set(kinds or ())
    plan = []
    for entry in databases:
        mark = entry.get("mark")
        created = entry.get("created")
        age = (now - created).total_seconds() if created is not None else None
        decision = {
            "name": entry["name"],
            "mark": mark["kind"] if mark else None,
            "mark_format": mark["format"] if mark else None,
            "backup_id": mark["backup_id"] if mark else None,
            "run_id": mark["run_id"] if mark else None,
            "created": format_time(created) if created is not None else None,
            "created_from": entry.get("created_from") if created is not None else None,
            "age_seconds": int(age) if age is not None else None,
            "size_bytes": entry.get("size_bytes"),
            "sessions": entry.get("sessions") or 0,
            "oid": entry.get("oid"),
            "comment": entry.get("comment"),
        }
        kept = _keep_reason(entry, age, older_than, kinds, protected, login_db)
        if kept:
            decision.update(action="keep", reason=kept[0], warn=kept[1])
        else:
            decision.update(action="remove", warn=False, reason="%s, %s old, limit %s, no session connected" % (
                _kind_label(mark["kind"]), human_duration(age), human_duration(older_than)))
        plan.append(decision)
    return plan


def drop_leftover(conn, decision):
    """DROP DATABASE a leftover :func:`plan_sweep` chose; ``None`` when dropped, else ``(reason, warn)``.

    Just before the drop the database is looked up again: it must still have the oid and the
    comment it was judged by (not dropped and re-created meanwhile, say by a restore test starting
    now) and no session. DROP DATABASE runs without FORCE, so PostgreSQL itself refuses it when a
    session connects in between.
    """
    name = decision["name"]
    try:
        now = _postgres.query_one(conn, SQL_SWEEP_RECHECK, {"name": name})
    except _postgres.PostgresError as exc:
        return "Failed to look it up again before dropping it: %s" % exc.message, True
    if now is None:
        return "already gone when its turn came: dropped by someone else meanwhile", False
    if now["oid"] != decision["oid"] or now["comment"] != decision["comment"]:
        return "changed after it was examined, so it may have been created again: left for the next sweep", True
    if now["sessions"]:
        return "%s after it was examined: a database in use is never dropped" % _sessions(now["sessions"]), True
    try:
        _postgres.execute(conn, _postgres.sql("DROP DATABASE {0}").format(_postgres.identifier(name)))
    except _postgres.PostgresError as exc:
        if exc.sqlstate == SQLSTATE_OBJECT_IN_USE:
            return "a session connected just before the drop: a database in use is never dropped", True
        return "Failed to drop it: %s" % exc.message, True
    return None


def _public(decision, outcome):
    entry = dict((key, value) for key, value in decision.items() if key not in ("oid", "comment", "action"))
    entry["outcome"] = outcome
    return entry


def sweep_scratch(conn, older_than, kinds=("scratch",), protected=(), login_db=None, check_mode=False):
    """Drop (or, in check mode, name) the marked leftovers at least ``older_than`` seconds old.

    Returns ``{removed, would_remove, kept, before, after}``: the first three are lists of
    :func:`plan_sweep` entries with their ``outcome``; ``before``/``after`` the names of the marked
    databases before and after (predicted in check mode). A drop that fails keeps the database,
    with the reason; only a server that cannot be read raises RestoreError.
    """
    now, found = sweep_inventory(conn)
    plan = plan_sweep(found, now, older_than, kinds=kinds, protected=protected, login_db=login_db)
    result = {"removed": [], "would_remove": [], "kept": []}
    for decision in plan:
        if decision["action"] == "keep":
            result["kept"].append(_public(decision, "kept"))
        elif check_mode:
            result["would_remove"].append(_public(decision, "would_remove"))
        else:
            problem = drop_leftover(conn, decision)
            if problem is None:
                result["removed"].append(_public(decision, "removed"))
            else:
                decision.update(reason=problem[0], warn=problem[1])
                result["kept"].append(_public(decision, "kept"))
    gone = set(entry["name"] for entry in result["removed"] + result["would_remove"])
    result["before"] = sorted(entry["name"] for entry in found if entry["mark"] is not None)
    result["after"] = [name for name in result["before"] if name not in gone]
    return result
