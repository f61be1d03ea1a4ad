# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one PostgreSQL backend of the collection.

Every module that talks to PostgreSQL takes its connection options from
:func:`postgres_common_argument_spec` (documented by the ``upkeep.runbooks.postgres`` doc
fragment), checks for psycopg with :func:`ensure_psycopg`, connects with :func:`connect` and
reads through :func:`query_one` / :func:`query_all`. Library exceptions are turned into
readable causes in exactly one place, :func:`describe_error`.

Rules this file keeps for all modules:

* the password is handed to libpq as a keyword argument, never put into a conninfo string,
  a message or argv;
* SQL takes values through bound parameters and names through ``psycopg.sql.Identifier``;
* only psycopg 3.1 APIs are used (Debian bookworm ships python3-psycopg 3.1).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.module_utils.basic import env_fallback, missing_required_lib

try:
    import psycopg
    from psycopg import sql as pg_sql
    from psycopg.rows import dict_row
except ImportError:  # pragma: no cover - exercised through ensure_psycopg() tests
    psycopg = None
    pg_sql = None
    dict_row = None

APPLICATION_NAME = "upkeep.runbooks"
MIN_PSYCOPG = (3, 1)
SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class PostgresError(Exception):
    """A PostgreSQL operation failed; ``str()`` is a readable cause without secrets."""

    def __init__(self, message, sqlstate=None):
        super(PostgresError, self).__init__(message)
        self.message = message
        self.sqlstate = sqlstate


class PostgresConnectError(PostgresError):
    """No session could be established (refused, timeout, authentication, missing database ...)."""


# --------------------------------------------------------------------------------------
# options


def postgres_common_argument_spec():
    """The connection options every PostgreSQL module of the collection accepts."""
    return dict(
        login_host=dict(type="str", aliases=["host"], fallback=(env_fallback, ["PGHOST"])),
        login_port=dict(type="int", default=5432, fallback=(env_fallback, ["PGPORT"])),
        login_user=dict(type="str", default="postgres", fallback=(env_fallback, ["PGUSER"])),
        login_password=dict(type="str", no_log=True, fallback=(env_fallback, ["PGPASSWORD"])),
        login_unix_socket=dict(type="str"),
        login_db=dict(type="str", default="postgres", fallback=(env_fallback, ["PGDATABASE"])),
        ssl_mode=dict(type="str", default="prefer", choices=SSL_MODES, fallback=(env_fallback, ["PGSSLMODE"])),
        ca_cert=dict(type="path", aliases=["ssl_rootcert"], fallback=(env_fallback, ["PGSSLROOTCERT"])),
        connect_timeout=dict(type="int", default=10),
        session_role=dict(type="str"),
    )


def ensure_psycopg(module):
    """Fail the module clearly when psycopg (>= 3.1) is not importable on the managed node."""
    if psycopg is None:
        module.fail_json(msg=missing_required_lib("psycopg", reason="(>= 3.1) to talk to PostgreSQL"))
    version = _version_tuple(getattr(psycopg, "__version__", "0"))
    if version < MIN_PSYCOPG:
        module.fail_json(
            msg="Failed to load psycopg: version %s is installed, upkeep.runbooks needs psycopg >= %s"
            % (psycopg.__version__, ".".join(str(part) for part in MIN_PSYCOPG))
        )


def _version_tuple(text):
    parts = []
    for piece in str(text).split(".")[:2]:
        match = re.match(r"\d+", piece)
        parts.append(int(match.group(0)) if match else 0)
    return tuple(parts)


def connection_kwargs(params, settings=None):
    """libpq keywords for the module options (includes the password: never log the result).

    ``settings`` (name -> value) become server settings of the session at startup (libpq
    ``options``, ``-c name=value``), so they hold from the first statement and no ``SET`` is sent.
    """
    socket_dir = params.get("login_unix_socket")
    host = socket_dir or params.get("login_host")
    kwargs = {
        "host": host or None,
        "port": params.get("login_port") or 5432,
        "user": params.get("login_user") or None,
        "password": params.get("login_password") or None,
        "dbname": params.get("login_db") or "postgres",
        "sslmode": params.get("ssl_mode") or "prefer",
        "sslrootcert": params.get("ca_cert") or None,
        "connect_timeout": params.get("connect_timeout"),
        "application_name": APPLICATION_NAME,
        "options": startup_options(settings) if settings else None,
    }
    if kwargs["connect_timeout"] is not None:
        kwargs["connect_timeout"] = str(int(kwargs["connect_timeout"]))
    return dict((key, value) for key, value in kwargs.items() if value is not None)


def startup_options(settings):
    """libpq ``options`` for server settings: ``-c name=value`` with spaces and backslashes escaped."""
    parts = []
    for name in sorted(settings):
        if not re.match(r"^[a-z_][a-z0-9_.]*$", name):
            raise ValueError("not a setting name: %r" % name)
        value = str(settings[name]).replace("\\", "\\\\").replace(" ", "\\ ")
        parts.append("-c %s=%s" % (name, value))
    return " ".join(parts)


def target(params):
    """Where a connection goes, for messages: ``host:port`` or the socket file path."""
    port = params.get("login_port") or 5432
    host = params.get("login_unix_socket") or params.get("login_host")
    if not host:
        return "local socket (port %s)" % port
    if host.startswith("/"):
        return "%s/.s.PGSQL.%s" % (host.rstrip("/"), port)
    return "%s:%s" % (host, port)


# --------------------------------------------------------------------------------------
# errors


# (pattern on the lower-cased library message, readable cause). First match wins.
_CAUSES = [
    (r"password authentication failed for user \"([^\"]*)\"",
     "authentication failed for user '{0}' (check login_user/login_password)"),
    (r"(no password supplied|fe_sendauth: no password)",
     "the server asks for a password and none was given (set login_password or PGPASSWORD)"),
    (r"no pg_hba\.conf entry for host \"([^\"]*)\", user \"([^\"]*)\", database \"([^\"]*)\"",
     "pg_hba.conf on the server has no entry allowing user '{1}' to database '{2}' from {0}"),
    (r"(peer|ident) authentication failed for user \"([^\"]*)\"",
     "{0} authentication failed for user '{1}' (connect over TCP with a password, or become that OS user)"),
    (r"authentication failed", "authentication failed"),
    (r"database \"([^\"]*)\" does not exist", "database '{0}' does not exist"),
    (r"role \"([^\"]*)\" does not exist", "role '{0}' does not exist"),
    (r"permission denied for database \"?([^\"\s]*)\"?",
     "permission denied: the login role may not connect to database '{0}' (grant CONNECT)"),
    (r"permission denied( for [^\n]*)?", "permission denied{0} (the login role lacks a privilege)"),
    (r"must be (superuser|a member of [^\n]*|owner of [^\n]*)", "permission denied: must be {0}"),
    (r"(server does not support ssl[^\n]*)", "SSL error: {0}"),
    (r"(certificate verify failed|root certificate file[^\n]*|certificate[^\n]*does not match[^\n]*)",
     "SSL error: {0}"),
    (r"(ssl[^\n]*(?:error|failed|required)[^\n]*)", "SSL error: {0}"),
    (r"(timeout expired|timed out|connection timeout)", "connection timed out (no answer within connect_timeout)"),
    (r"connection refused", "connection refused (is PostgreSQL running and listening on that address and port?)"),
    (r"could not translate host name \"([^\"]*)\"", "cannot resolve host name '{0}'"),
    (r"(failed to resolve host|name or service not known|nodename nor servname)", "cannot resolve the host name"),
    (r"no such file or directory[^\n]*", "no server socket found there (is PostgreSQL running locally on that port?)"),
    (r"network is unreachable|no route to host", "network unreachable"),
    (r"too many clients already|remaining connection slots are reserved",
     "the server has no free connection slots (max_connections reached)"),
    (r"the database system is (starting up|shutting down|in recovery mode|not yet accepting connections)",
     "the server is {0}"),
    (r"server closed the connection unexpectedly", "the server closed the connection unexpectedly"),
]


def describe_error(exc, secrets=None):
    """A one-line readable cause for an exception from psycopg/libpq (or anything else).

    ``secrets`` are strings (the password) masked out of whatever text the library gave.
    """
    raw = str(exc).strip() if exc is not None else ""
    cause = None
    for pattern, template in _CAUSES:
        match = re.search(pattern, raw, re.IGNORECASE)
        if match:
            values = [group or "" for group in match.groups()] or [match.group(0)]
            cause = template.format(*values)
            break
    if cause is None:
        cause = _one_line(raw) or exc.__class__.__name__
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate:
            cause = "%s (SQLSTATE %s)" % (cause, sqlstate)
    for secret in secrets or ():
        if secret:
            cause = cause.replace(secret, "********")
    return cause


def _one_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[0]
    line = re.sub(r"^(connection failed:\s*)+", "", line)
    line = re.sub(r"^connection to server at [^:]*(:\s*|failed:\s*)", "", line)
    return line.rstrip(".")


def connect_failure_message(params, exc):
    """The message for a failed connection: ``Failed to connect to PostgreSQL at h:p: cause``."""
    return "Failed to connect to PostgreSQL at %s: %s" % (
        target(params),
        describe_error(exc, secrets=[params.get("login_password")]),
    )


# --------------------------------------------------------------------------------------
# connecting


def open_connection(params, autocommit=True, settings=None):
    """Connect with the module options and apply ``session_role`` (``SET ROLE`` via an Identifier).

    ``settings`` are server settings the session starts with (see :func:`connection_kwargs`).

    Raises PostgresConnectError when no session can be established, PostgresError when the
    session exists but ``session_role`` cannot be taken; both carry a readable message.
    """
    if psycopg is None:
        raise PostgresConnectError(missing_required_lib("psycopg"))
    try:
        conn = psycopg.connect(autocommit=autocommit, **connection_kwargs(params, settings))
    except Exception as exc:  # psycopg.Error, or OSError/ValueError for impossible options
        raise PostgresConnectError(connect_failure_message(params, exc), getattr(exc, "sqlstate", None)) from None
    role = params.get("session_role")
    if role:
        try:
            conn.execute(pg_sql.SQL("SET ROLE {0}").format(pg_sql.Identifier(role)))
            if not autocommit:
                conn.commit()  # a later rollback must not undo the role switch
        except Exception as exc:
            close_quietly(conn)
            raise PostgresError(
                "Failed to switch to session_role '%s' on PostgreSQL at %s: %s"
                % (role, target(params), describe_error(exc, secrets=[params.get("login_password")])),
                getattr(exc, "sqlstate", None),
            ) from None
    return conn


def connect(module, params=None, autocommit=True, settings=None):
    """A psycopg connection for ``module`` (its params unless ``params`` given) or fail_json."""
    ensure_psycopg(module)
    params = module.params if params is None else params
    try:
        if settings:
            return open_connection(params, autocommit=autocommit, settings=settings)
        return open_connection(params, autocommit=autocommit)  # the call every module made before settings
    except PostgresError as exc:
        module.fail_json(msg=exc.message)


def close_quietly(conn):
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # noqa: S110 - closing a broken connection has nothing left to report
        pass


# --------------------------------------------------------------------------------------
# queries


def _run(conn, query, params):
    try:
        cur = conn.cursor(row_factory=dict_row)
        cur.execute(query, params)
        return cur
    except Exception as exc:
        raise PostgresError(describe_error(exc), getattr(exc, "sqlstate", None)) from None


def query_all(conn, query, params=None):
    """All rows of ``query`` as dicts. ``params`` are bound, never interpolated."""
    cur = _run(conn, query, params)
    try:
        return cur.fetchall() if cur.description is not None else []
    except Exception as exc:
        raise PostgresError(describe_error(exc), getattr(exc, "sqlstate", None)) from None


def query_one(conn, query, params=None):
    """The first row of ``query`` as a dict, or None when it returned no row."""
    cur = _run(conn, query, params)
    try:
        return cur.fetchone() if cur.description is not None else None
    except Exception as exc:
        raise PostgresError(describe_error(exc), getattr(exc, "sqlstate", None)) from None


def execute(conn, query, params=None):
    """Run a statement that returns no rows; the affected row count."""
    cur = _run(conn, query, params)
    return cur.rowcount


def identifier(*names):
    """A safely quoted (optionally qualified) SQL identifier."""
    return pg_sql.Identifier(*names)


def sql(template):
    """A psycopg ``sql.SQL`` for composing statements with :func:`identifier` parts."""
    return pg_sql.SQL(template)


def server_version_num(conn):
    """The server's version as an int (150008 for 15.8)."""
    row = query_one(conn, "SELECT current_setting('server_version_num')::int AS num")
    return int(row["num"])


def server_version(conn):
    """The server's version string without the distribution suffix ("15.8")."""
    row = query_one(conn, "SELECT current_setting('server_version') AS version")
    return (row["version"] or "").split(" ")[0]


def is_in_recovery(conn):
    """True on a standby (or a server replaying WAL)."""
    row = query_one(conn, "SELECT pg_is_in_recovery() AS in_recovery")
    return bool(row["in_recovery"])
