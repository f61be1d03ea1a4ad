# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL client programs (pg_dump, pg_restore, pg_dumpall, psql): finding them and running them safely.

* :func:`client_env` turns the module's connection options into libpq environment variables.
  The password travels as ``PGPASSWORD`` in the child's environment only (readable on Linux by
  the same user and root, like the module's own memory); it is never put on argv or in a
  conninfo string. Inherited ``PG*`` variables are dropped so nothing leaks in from the caller.
* :func:`find_bindir` picks the directory of client programs: an explicit ``pg_bin_dir``, else
  the one on PATH, then ``pg_config --bindir``, then the newest ``/usr/lib/postgresql/<ver>/bin``,
  taking the first whose version is at least the server's major version.
* :func:`kill_process` stops a child and its process group.

Pure Python, no Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re
import shutil
import signal
import subprocess
import time

APPLICATION_NAME = "upkeep.runbooks"
VERSION_TIMEOUT = 30
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?(?:\.(\d+))?")
DEBIAN_GLOB = "/usr/lib/postgresql/*/bin"


class ToolError(Exception):
    """A client program is missing, unusable or too old; ``str()`` is a readable cause."""


def client_env(params, database=None, application_name=APPLICATION_NAME, base=None):
    """Environment for a libpq client program connecting with the module's options.

    ``params`` are the options of ``postgres_common_argument_spec()``; ``database`` overrides
    ``login_db`` (None leaves PGDATABASE unset when ``login_db`` is empty). Messages are
    forced to English (``LC_MESSAGES=C``) so errors can be recognised.
    """
    env = dict((key, value) for key, value in (base if base is not None else os.environ).items()
               if not key.startswith("PG"))
    env.pop("LC_ALL", None)
    env.pop("LANGUAGE", None)
    env["LC_MESSAGES"] = "C"
    host = params.get("login_unix_socket") or params.get("login_host")
    values = {
        "PGHOST": host,
        "PGPORT": params.get("login_port"),
        "PGUSER": params.get("login_user"),
        "PGDATABASE": database if database is not None else params.get("login_db"),
        "PGSSLMODE": params.get("ssl_mode"),
        "PGSSLROOTCERT": params.get("ca_cert"),
        "PGCONNECT_TIMEOUT": params.get("connect_timeout"),
        "PGAPPNAME": application_name,
        "PGPASSWORD": params.get("login_password"),
    }
    for key, value in values.items():
        if value is not None and value != "":
            env[key] = str(value)
    return env


def major_of(version_num):
    """Major version of a ``server_version_num``-style number (150008 -> 15, 90624 -> 906)."""
    version_num = int(version_num)
    return version_num // 10000 if version_num >= 100000 else version_num // 100


def major_label(major):
    """Printable major version (15 -> "15", 906 -> "9.6")."""
    return str(major) if major < 100 else "%d.%d" % (major // 100, major % 100)


def parse_version(text):
    """``(version, version_num)`` from ``pg_dump --version`` output, e.g. ("15.18", 150018)."""
    match = _VERSION_RE.search(text or "")
    if not match:
        raise ToolError("cannot read a PostgreSQL version from %r" % ((text or "").strip()[:200],))
    first, second, third = (int(part) if part is not None else 0 for part in match.groups())
    if first >= 10:
        return "%d.%d" % (first, second), first * 10000 + second
    return "%d.%d.%d" % (first, second, third), first * 10000 + second * 100 + third


def tool_version(path, env=None):
    """``(version, version_num)`` of a client program (runs ``<path> --version``)."""
    try:
        proc = subprocess.run([path, "--version"], env=env, capture_output=True, text=True,
                              timeout=VERSION_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolError("cannot run %s: %s" % (path, getattr(exc, "strerror", None) or exc)) from None
    if proc.returncode != 0:
        raise ToolError("%s --version exited with %s: %s" % (path, proc.returncode, (proc.stderr or "").strip()[:300]))
    return parse_version(proc.stdout)


def pg_config_bindir(env=None):
    """``pg_config --bindir`` of the pg_config on PATH, or None."""
    pg_config = shutil.which("pg_config", path=(env or os.environ).get("PATH"))
    if not pg_config:
        return None
    try:
        proc = subprocess.run([pg_config, "--bindir"], env=env, capture_output=True, text=True,
                              timeout=VERSION_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    out = (proc.stdout or "").strip()
    return out if proc.returncode == 0 and out else None


def _debian_bindirs():
    def key(path):
        match = re.search(r"/postgresql/(\d+)(?:\.(\d+))?/bin$", path)
        return (int(match.group(1)), int(match.group(2) or 0)) if match else (0, 0)

    return sorted(glob.glob(DEBIAN_GLOB), key=key, reverse=True)


def candidate_bindirs(env=None):
    """Directories to look in, in order: PATH's, pg_config's, Debian's (newest first); no duplicates."""
    found = []
    on_path = shutil.which("pg_dump", path=(env or os.environ).get("PATH"))
    if on_path:
        found.append(os.path.dirname(on_path))
    config_dir = pg_config_bindir(env)
    if config_dir:
        found.append(config_dir)
    found.extend(_debian_bindirs())
    unique = []
    for path in found:
        real = os.path.realpath(path)
        if real not in [os.path.realpath(item) for item in unique]:
            unique.append(path)
    return unique


def find_bindir(server_version_num, pg_bin_dir=None, tools=("pg_dump",), env=None, probe="pg_dump"):
    """The client program directory to use for a server; raises ToolError.

    Returns ``{"bindir", "version", "version_num", "tried"}`` where version is that of
    ``probe`` (pg_dump by default). Every name in ``tools`` must be executable there. With
    ``pg_bin_dir`` only that directory is considered; a too old program there is refused.
    """
    server_major = major_of(server_version_num)
    dirs = [pg_bin_dir] if pg_bin_dir else candidate_bindirs(env)
    tried = []
    for bindir in dirs:
        missing = [tool for tool in tools if not os.access(os.path.join(bindir, tool), os.X_OK)]
        if missing:
            tried.append("%s (no %s)" % (bindir, ", ".join(missing)))
            continue
        path = os.path.join(bindir, probe)
        try:
            version, version_num = tool_version(path, env)
        except ToolError as exc:
            tried.append("%s (%s)" % (bindir, exc))
            continue
        if major_of(version_num) < server_major:
            tried.append("%s (%s %s)" % (bindir, probe, version))
            if pg_bin_dir:
                raise ToolError(
                    "%s %s in %s is older than the server (PostgreSQL %s): a dump needs %s %s or newer"
                    % (probe, version, bindir, major_label(server_major), probe, major_label(server_major))
                )
            continue
        return {"bindir": bindir, "version": version, "version_num": version_num, "tried": tried}
    if not tried:
        raise ToolError("no %s found on PATH, through pg_config or in %s (install the PostgreSQL client "
                        "package or set pg_bin_dir)" % (probe, DEBIAN_GLOB))
    raise ToolError(
        "no usable %s %s or newer found; tried %s (install postgresql-client-%s or set pg_bin_dir)"
        % (probe, major_label(server_major), "; ".join(tried), major_label(server_major))
    )


def kill_process(proc, grace=5.0):
    """Stop ``proc`` (and its process group when it leads one): SIGTERM, then SIGKILL after ``grace``."""
    if proc is None or proc.poll() is not None:
        return
    try:
        pgid = os.getpgid(proc.pid)
    except OSError:
        pgid = None
    own_group = pgid is not None and pgid == proc.pid

    def send(sig):
        try:
            if own_group:
                os.killpg(pgid, sig)
            else:
                os.kill(proc.pid, sig)
        except OSError:
            pass

    send(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        send(signal.SIGKILL)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    elif own_group:
        send(signal.SIGKILL)  # leftover workers of a parallel pg_dump


def start(argv, **kwargs):
    """``subprocess.Popen`` for a child that leads its own session and is stopped when this process dies.

    For pipelines (pg_dump | zstd) and for children that must be stoppable as a group; modules
    call this instead of Popen. Safe because modules are single-threaded when they fork.
    """
    return subprocess.Popen(argv, preexec_fn=die_with_parent, **kwargs)  # noqa: PLW1509  # pylint: disable=subprocess-popen-preexec-fn


def die_with_parent():
    """``preexec_fn``: new session, and SIGTERM to the child when the module process dies (Linux)."""
    os.setsid()
    try:
        import ctypes  # pylint: disable=import-outside-toplevel

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: S110 - not Linux, or no libc: the module still cleans up itself
        pass
