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
  (describe, create with a marker comment, rename, drop, copy of database properties).

No Ansible imports beyond what ``_postgres`` uses: modules turn :class:`RestoreError` into
``fail_json``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

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

# Comment prefixes that mark databases this collection created (and may therefore drop).
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
    """CREATE DATABASE ``name`` from template0 and mark it with ``comment`` right away.

    ``like`` (a :func:`database_info` dict) gives owner, encoding and locale to copy.
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
    set_comment(conn, name, comment)


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
