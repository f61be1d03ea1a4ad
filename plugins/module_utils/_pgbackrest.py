# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one pgBackRest backend of the collection (written against pgBackRest 2.45, Debian bookworm).

* :class:`PgBackRest` runs ``pgbackrest`` with an explicit configuration file and stanza,
  optionally as another OS user (``os_user``, when the module runs as root), with console
  logging off and errors on stderr, so a failure can be turned into one readable message
  (:func:`describe_failure`). Secrets (S3 keys, cipher passphrases) stay in the
  configuration file or the ``PGBACKREST_*`` environment: nothing secret is put on argv.
* :meth:`PgBackRest.info` parses ``pgbackrest info --output=json`` for one stanza;
  :func:`stanza_problems` turns its status codes into messages.
* WAL helpers: segment names, LSNs, segment size, and :func:`wal_gaps` which finds the
  segments missing from the archive between two points (the WAL continuity a backup needs).
* :func:`system_identifier` reads a data directory's ``global/pg_control`` and
  :func:`running_postmasters` lists the PostgreSQL servers running on this host, for the
  "never restore onto the source's primary or replica" rule of pitr_restore.

Pure Python, no Ansible imports: modules wrap it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import pwd
import re
import struct
import subprocess
import time

DEFAULT_CONFIG = "/etc/pgbackrest/pgbackrest.conf"
DEFAULT_TIMEOUT = 1800
SEGMENT_SIZE_DEFAULT = 16 * 1024 * 1024
_SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})")
_ERROR_RE = re.compile(r"^(?:ERROR|ASSERT): \[(\d{3})\]: (.*)$")
_REPO_COMMANDS = ("info", "restore", "repo-ls", "repo-get", "backup", "expire", "verify")
_LSN_RE = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")

# pgBackRest's stanza status codes (``pgbackrest help info``, src/command/info/info.c).
STATUS_OK = 0
STATUS_MESSAGES = {
    1: "the stanza has no data in the repository (missing stanza path: run 'pgbackrest stanza-create' "
       "or check repo1-path / the bucket and the stanza name)",
    2: "the repository holds no valid backup of the stanza yet (run a full backup)",
    3: "the stanza's info files are missing from the repository (missing stanza data)",
    4: "the repositories disagree about the stanza (different across repos)",
    5: "the repositories hold different databases for the stanza (database mismatch across repos)",
    99: "the repository could not be read",
}

# Hints for the pgBackRest 2.45 error codes seen in practice (each one observed, not guessed).
ERROR_HINTS = {
    "031": "check the pgBackRest configuration file and the options given",
    "038": "PostgreSQL is running on that data directory; stop it first",
    "040": "the data directory is not empty",
    "041": "a repository path could not be read (permissions, or the repository is unreachable)",
    "075": "the requested backup set does not exist in the repository",
    "104": "archive-push failed for the repository",
}


class PgBackRestError(Exception):
    """A pgBackRest operation failed; ``str()`` is a readable cause (no secret in it)."""

    def __init__(self, message, code=None):
        super(PgBackRestError, self).__init__(message)
        self.message = message
        self.code = code


# --------------------------------------------------------------------------------------
# options


def pgbackrest_argument_spec():
    """The options every pgBackRest module of the collection takes."""
    return dict(
        stanza=dict(type="str", required=True),
        config=dict(type="path", default=DEFAULT_CONFIG),
        repo=dict(type="int"),
        pgbackrest_bin=dict(type="path", default="pgbackrest"),
        os_user=dict(type="str"),
        command_timeout=dict(type="int", default=DEFAULT_TIMEOUT),
    )


# --------------------------------------------------------------------------------------
# running commands as the PostgreSQL OS user


class OsUser:
    """Who server-side commands run as: the module's own user, or ``name`` when running as root."""

    def __init__(self, name=None):
        self.name = name
        self.uid = self.gid = None
        self.home = None
        if not name:
            return
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise PgBackRestError("OS user '%s' does not exist on this host" % name) from None
        if entry.pw_uid == os.geteuid():
            return
        if os.geteuid() != 0:
            raise PgBackRestError(
                "cannot run commands as OS user '%s': the module runs as uid %s, not root "
                "(use become, or leave os_user unset)" % (name, os.geteuid())
            )
        self.uid, self.gid, self.home = entry.pw_uid, entry.pw_gid, entry.pw_dir

    @property
    def switches(self):
        return self.uid is not None

    def subprocess_kwargs(self):
        if not self.switches:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def env(self, base=None):
        env = dict(base if base is not None else os.environ)
        env["LC_MESSAGES"] = "C"
        env.pop("LC_ALL", None)
        if self.switches:
            env["HOME"] = self.home or "/"
            env["USER"] = env["LOGNAME"] = self.name
        return env

    def chown(self, path):
        if self.switches:
            os.chown(path, self.uid, self.gid)

    def run(self, argv, timeout=None, env=None, cwd="/", input_text=None):
        """Run ``argv`` as this user; a CompletedProcess (raises PgBackRestError when it cannot start)."""
        try:
            return subprocess.run(
                argv, env=self.env(env), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                check=False, input=input_text, **self.subprocess_kwargs()
            )
        except subprocess.TimeoutExpired:
            raise PgBackRestError(
                "%s did not finish within %s seconds" % (os.path.basename(argv[0]), timeout)
            ) from None
        except OSError as exc:
            raise PgBackRestError("cannot run %s: %s" % (argv[0], exc.strerror or exc)) from None


# --------------------------------------------------------------------------------------
# pgbackrest


def describe_failure(proc, command):
    """One readable line for a failed pgbackrest run: its ERROR lines, the code's hint."""
    errors = []
    code = None
    lines = (proc.stderr or "").splitlines() + (proc.stdout or "").splitlines()
    for index, line in enumerate(lines):
        match = _ERROR_RE.match(line.strip())
        if not match:
            continue
        code = code or match.group(1)
        text = match.group(2).strip()
        # continuation lines of the same error are indented
        for more in lines[index + 1:]:
            if more.startswith("       ") and not _ERROR_RE.match(more.strip()):
                text += " " + more.strip()
            else:
                break
        errors.append("[%s] %s" % (match.group(1), text))
    if not errors:
        tail = " ".join(line.strip() for line in lines if line.strip())[-500:]
        errors.append(tail or "no output")
    message = "pgbackrest %s exited with %s: %s" % (command, proc.returncode, "; ".join(errors))
    if code in ERROR_HINTS:
        message += " (%s)" % ERROR_HINTS[code]
    return message, code


class PgBackRest:
    """``pgbackrest`` for one stanza and configuration file."""

    def __init__(self, stanza, config=DEFAULT_CONFIG, binary="pgbackrest", os_user=None, repo=None,
                 timeout=DEFAULT_TIMEOUT):
        self.stanza = stanza
        self.config = config
        self.binary = binary
        self.user = os_user if isinstance(os_user, OsUser) else OsUser(os_user)
        self.repo = repo
        self.timeout = timeout

    @classmethod
    def from_params(cls, params):
        return cls(params["stanza"], config=params.get("config") or DEFAULT_CONFIG,
                   binary=params.get("pgbackrest_bin") or "pgbackrest", os_user=params.get("os_user"),
                   repo=params.get("repo"), timeout=params.get("command_timeout") or DEFAULT_TIMEOUT)

    def argv(self, command, *options, path=None):
        argv = [
            self.binary,
            "--config=%s" % self.config,
            "--stanza=%s" % self.stanza,
            "--log-level-console=off",
            "--log-level-stderr=error",
        ]
        if self.repo and command in _REPO_COMMANDS:
            argv.append("--repo=%d" % self.repo)
        argv.extend(options)
        argv.append(command)
        if path is not None:
            argv.append(path)
        return argv

    def run(self, command, *options, path=None, check=True, timeout=None):
        """Run a pgbackrest command; raises PgBackRestError with a readable message when it fails.

        ``options`` are ``--name=value`` strings; ``path`` is the command's positional argument (repo-ls).
        """
        if not os.path.isfile(self.config):
            raise PgBackRestError("pgBackRest configuration file %s does not exist" % self.config)
        proc = self.user.run(self.argv(command, *options, path=path), timeout=timeout or self.timeout)
        if check and proc.returncode != 0:
            message, code = describe_failure(proc, command)
            raise PgBackRestError(message, code)
        return proc

    def version(self):
        try:
            proc = self.user.run([self.binary, "version"], timeout=60)
        except PgBackRestError as exc:
            raise PgBackRestError("pgBackRest is not installed or not runnable (%s)" % exc) from None
        match = re.search(r"pgBackRest\s+(\S+)", proc.stdout or "")
        if proc.returncode != 0 or not match:
            raise PgBackRestError("pgbackrest version failed: %s" % (proc.stderr or proc.stdout).strip()[:300])
        return match.group(1)

    def info(self):
        """The stanza's entry of ``pgbackrest info --output=json`` (a dict)."""
        proc = self.run("info", "--output=json")
        return parse_info(proc.stdout, self.stanza)

    def list_archive(self, archive_id):
        """WAL file names (no path, no checksum suffix handling) in the archive of ``archive_id``."""
        proc = self.run("repo-ls", "--recurse", "--output=json", path="archive/%s/%s" % (self.stanza, archive_id))
        try:
            listing = json.loads(proc.stdout or "{}")
        except ValueError:
            raise PgBackRestError("pgbackrest repo-ls printed no JSON: %r" % (proc.stdout or "")[:200]) from None
        names = []
        for path, entry in listing.items():
            if isinstance(entry, dict) and entry.get("type") == "file":
                names.append(path.rsplit("/", 1)[-1])
        return names


def parse_info(text, stanza):
    """The entry for ``stanza`` in ``pgbackrest info --output=json`` output."""
    try:
        data = json.loads(text or "")
    except ValueError:
        raise PgBackRestError("pgbackrest info printed no JSON: %r" % (text or "")[:200]) from None
    if not isinstance(data, list):
        raise PgBackRestError("pgbackrest info printed unexpected JSON (not a list)")
    for entry in data:
        if isinstance(entry, dict) and entry.get("name") == stanza:
            return entry
    raise PgBackRestError("pgbackrest info does not list stanza '%s'" % stanza)


def stanza_problems(info):
    """Readable problems of a stanza from its status codes; empty when it is 'ok'.

    With code 99 ("other") the cause is only in the repository's own status message.
    """
    problems = []
    for repo in info.get("repo") or []:
        rstatus = repo.get("status") or {}
        rcode = rstatus.get("code")
        if rcode not in (None, STATUS_OK):
            problems.append("repo%s: %s" % (repo.get("key"), _status_text(rcode, rstatus.get("message"))))
    status = info.get("status") or {}
    code = status.get("code")
    if code not in (None, STATUS_OK) and not problems:
        problems.append(_status_text(code, status.get("message")))
    return problems


def _status_text(code, message):
    known = STATUS_MESSAGES.get(code)
    if known and code != 99:
        return known
    return "%s: %s" % (known or "status %s" % code, message or "unknown error")


def system_identifiers(info):
    """Every PostgreSQL system identifier the stanza has held (its ``db`` history), newest last."""
    return [str(db.get("system-id")) for db in info.get("db") or [] if db.get("system-id") is not None]


def backup_by_label(info, label):
    for backup in info.get("backup") or []:
        if backup.get("label") == label:
            return backup
    return None


def newest_backups(info):
    """{type: newest backup dict} for full, diff and incr, plus 'any'."""
    newest = {}
    for backup in info.get("backup") or []:
        if backup.get("error"):
            continue
        stop = (backup.get("timestamp") or {}).get("stop") or 0
        for key in (backup.get("type"), "any"):
            current = newest.get(key)
            if current is None or stop >= ((current.get("timestamp") or {}).get("stop") or 0):
                newest[key] = backup
    return newest


def backup_summary(backup, now=None):
    """The facts of one backup a report shows."""
    if not backup:
        return None
    now = time.time() if now is None else now
    stamp = backup.get("timestamp") or {}
    archive = backup.get("archive") or {}
    size = (backup.get("info") or {}).get("size")
    repo_size = ((backup.get("info") or {}).get("repository") or {}).get("size")
    return {
        "label": backup.get("label"),
        "type": backup.get("type"),
        "started": iso_utc(stamp.get("start")),
        "stopped": iso_utc(stamp.get("stop")),
        "age_seconds": round(now - stamp["stop"], 1) if stamp.get("stop") else None,
        "wal_start": archive.get("start"),
        "wal_stop": archive.get("stop"),
        "lsn_start": (backup.get("lsn") or {}).get("start"),
        "lsn_stop": (backup.get("lsn") or {}).get("stop"),
        "size_bytes": size,
        "repository_size_bytes": repo_size,
        "prior": backup.get("prior"),
        "repo": (backup.get("database") or {}).get("repo-key"),
        "error": bool(backup.get("error")),
    }


def iso_utc(epoch):
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))


def archive_for_backup(info, backup):
    """The archive entry (id, min, max) that holds ``backup``'s WAL (same database id and repo)."""
    database = (backup or {}).get("database") or {}
    for archive in info.get("archive") or []:
        adb = archive.get("database") or {}
        if adb.get("id") == database.get("id") and adb.get("repo-key") == database.get("repo-key"):
            return archive
    archives = info.get("archive") or []
    return archives[-1] if archives else None


# --------------------------------------------------------------------------------------
# WAL arithmetic


def parse_segment(name):
    """(timeline, log, seg) of a WAL segment file name (extra suffixes such as '-sha1.gz' ignored)."""
    match = _SEGMENT_RE.match(name or "")
    if not match:
        raise ValueError("not a WAL segment name: %r" % (name,))
    return tuple(int(part, 16) for part in match.groups())


def is_segment_file(name):
    """True for a WAL segment in the archive (not a .history, .backup or .partial file)."""
    if not _SEGMENT_RE.match(name or ""):
        return False
    rest = name[24:]
    return rest == "" or rest.startswith("-") and ".partial" not in rest


def segments_per_log(segment_size):
    return 0x100000000 // segment_size


def segment_number(name, segment_size):
    _tli, log, seg = parse_segment(name)
    return log * segments_per_log(segment_size) + seg


def segment_name(timeline, number, segment_size):
    per = segments_per_log(segment_size)
    return "%08X%08X%08X" % (timeline, number // per, number % per)


def parse_lsn(text):
    match = _LSN_RE.match((text or "").strip())
    if not match:
        raise ValueError("not an LSN: %r" % (text,))
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(value):
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def segment_size_from_backups(backups, default=SEGMENT_SIZE_DEFAULT):
    """The WAL segment size consistent with every backup's (LSN, segment name) pairs.

    The segment holding an LSN is ``lsn // size``; with sizes powers of two from 1 MiB to
    1 GiB, a backup that starts past the first segment pins the size down. ``default`` when
    nothing decides (or the default itself fits).
    """
    candidates = [1 << shift for shift in range(20, 31)]
    pairs = []
    for backup in backups or []:
        lsn = backup.get("lsn") or {}
        archive = backup.get("archive") or {}
        for key in ("start", "stop"):
            if lsn.get(key) and archive.get(key):
                try:
                    pairs.append((parse_lsn(lsn[key]), parse_segment(archive[key])))
                except ValueError:
                    continue
    fitting = []
    for size in candidates:
        per = segments_per_log(size)
        if all(value // size == log * per + seg for value, (_tli, log, seg) in pairs):
            fitting.append(size)
    if not fitting or default in fitting:
        return default
    return fitting[0] if len(fitting) == 1 else default


def wal_gaps(names, start, stop, segment_size, min_timeline=1):
    """Segments between ``start`` and ``stop`` (names, inclusive) missing from ``names``.

    A position counts as present when any timeline >= ``min_timeline`` archived it (after a
    promotion the history continues on a higher timeline). Returns a list of missing names on
    the timeline of ``start`` (at most the first 100, and a count).
    """
    present = set()
    for name in names:
        if not is_segment_file(name):
            continue
        tli, _log, _seg = parse_segment(name)
        if tli >= min_timeline:
            present.add(segment_number(name, segment_size))
    first = segment_number(start, segment_size)
    last = segment_number(stop, segment_size)
    timeline = parse_segment(start)[0]
    missing = [number for number in range(first, last + 1) if number not in present]
    return {
        "checked_from": start[:24],
        "checked_to": stop[:24],
        "segments_checked": max(last - first + 1, 0),
        "missing_count": len(missing),
        "missing": [segment_name(timeline, number, segment_size) for number in missing[:100]],
    }


# --------------------------------------------------------------------------------------
# PostgreSQL data directories on this host


def system_identifier(datadir):
    """The system identifier in ``datadir``/global/pg_control as a string, or None when absent."""
    path = os.path.join(datadir, "global", "pg_control")
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PgBackRestError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
    if len(head) < 8:
        return None
    return str(struct.unpack("=Q", head)[0])


def running_postmasters(proc_root="/proc"):
    """[{pid, datadir}] of the PostgreSQL servers running on this host that this user can see.

    A postmaster is a process whose program is ``postgres``/``postmaster`` (its children rename
    themselves ``postgres: ...``); its data directory is its working directory (the postmaster
    changes into it), else the ``-D`` argument. Returns also the pids that could not be read.
    """
    found, unreadable = [], []
    try:
        pids = [entry for entry in os.listdir(proc_root) if entry.isdigit()]
    except OSError:
        return found, unreadable
    for pid in pids:
        try:
            with open(os.path.join(proc_root, pid, "cmdline"), "rb") as handle:
                argv = [part.decode("utf-8", "replace") for part in handle.read().split(b"\0") if part]
        except OSError:
            continue
        if not argv or os.path.basename(argv[0]) not in ("postgres", "postmaster"):
            continue
        datadir = None
        try:
            datadir = os.readlink(os.path.join(proc_root, pid, "cwd"))
        except OSError:
            for index, arg in enumerate(argv):
                if arg == "-D" and index + 1 < len(argv):
                    datadir = argv[index + 1]
                elif arg.startswith("-D") and len(arg) > 2:
                    datadir = arg[2:]
        if datadir:
            found.append({"pid": int(pid), "datadir": os.path.realpath(datadir)})
        else:
            unreadable.append(int(pid))
    return found, unreadable


def postmaster_pid_info(datadir):
    """(pid, port, socket_dir) from ``datadir``/postmaster.pid, or None when there is none."""
    try:
        with open(os.path.join(datadir, "postmaster.pid"), "r", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    try:
        pid = int(lines[0])
        port = int(lines[3])
    except (IndexError, ValueError):
        return None
    socket_dir = lines[4].strip() if len(lines) > 4 else ""
    return {"pid": pid, "port": port, "socket_dir": socket_dir or None}
