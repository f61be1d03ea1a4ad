# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Point-in-time recovery with pgBackRest: the plan (which backup, which WAL, is it safe here) and the run.

:func:`plan` reads the stanza and this host and decides everything read-only: the backup to
restore from, the WAL it needs and whether that WAL is all in the repository, and whether this
host may receive the restore at all. It refuses

* a data directory that is not empty (unless ``replace``), that a PostgreSQL server runs in, or
  that holds a copy of the source cluster pitr_restore did not make (a replica's or the primary's
  data);
* a host where any running PostgreSQL server has the stanza's system identifier and is not a
  restore made by pitr_restore: that host is the source's primary or one of its replicas.

:func:`execute` then restores (``pgbackrest restore --set``), starts PostgreSQL, waits until
recovery reaches the target (``recovery_target_action=pause``) or the end of the archive, records
the point reached, promotes, and times each phase. The restored data directory carries the marker
file :data:`MARKER` describing the restore.

Pure Python over :mod:`_pgbackrest`; modules wrap it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import re
import shutil
import time

from ansible_collections.upkeep.runbooks.plugins.module_utils._pgbackrest import (
    PgBackRestError,
    archive_for_backup,
    backup_summary,
    iso_utc,
    newest_backups,
    parse_lsn,
    postmaster_pid_info,
    running_postmasters,
    segment_name,
    segment_number,
    segment_size_from_backups,
    system_identifier,
    wal_gaps,
)

MARKER = "upkeep_pitr_restore.json"
MARKER_VERSION = 1
TARGET_TYPES = ("latest", "time", "name", "lsn", "immediate")
_RESTORED_RE = re.compile(r'restored log file "([0-9A-F]{24})" from archive')
_SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_.]*$")
POLL = 0.2


class PitrError(PgBackRestError):
    """The restore was refused or failed; the message says why."""


def parse_target_time(text):
    """An aware datetime from a recovery target time; PostgreSQL's own format and ISO 8601 are accepted."""
    value = (text or "").strip()
    normal = value.replace("T", " ", 1)
    if re.search(r"[+-]\d{2}$", normal):
        normal += ":00"
    normal = re.sub(r"\s*(UTC|Z)$", "+00:00", normal)
    try:
        parsed = datetime.datetime.fromisoformat(normal)
    except ValueError:
        raise PitrError("target time %r is not a time stamp (use '2024-05-02 09:15:00+00')" % value) from None
    if parsed.tzinfo is None:
        raise PitrError("target time %r has no time zone (add one, for example '+00')" % value)
    return parsed


# --------------------------------------------------------------------------------------
# plan


def choose_backup(info, target_type, target=None, backup_set=None):
    """The backup to restore from (a pgBackRest info backup entry); raises PitrError."""
    backups = [item for item in info.get("backup") or [] if not item.get("error")]
    if backup_set:
        for item in info.get("backup") or []:
            if item.get("label") == backup_set:
                return item
        raise PitrError("backup set %s is not in the repository (backups: %s)"
                        % (backup_set, ", ".join(item.get("label") for item in backups) or "none"))
    if not backups:
        raise PitrError("the repository holds no backup of the stanza to restore from")
    if target_type == "time":
        when = parse_target_time(target).timestamp()
        before = [item for item in backups if (item.get("timestamp") or {}).get("stop", 0) <= when]
        if not before:
            oldest = min(backups, key=lambda item: item["timestamp"]["stop"])
            raise PitrError("no backup finished before the target time %s (the oldest, %s, finished at %s)"
                            % (target, oldest["label"], iso_utc(oldest["timestamp"]["stop"])))
        return max(before, key=lambda item: item["timestamp"]["stop"])
    if target_type == "lsn":
        wanted = parse_lsn(target)
        before = [item for item in backups if parse_lsn((item.get("lsn") or {}).get("stop") or "0/0") <= wanted]
        if not before:
            raise PitrError("no backup ends at or before the target LSN %s" % target)
        return max(before, key=lambda item: parse_lsn(item["lsn"]["stop"]))
    return newest_backups(info)["any"]


def source_system_identifier(info, backup):
    database_id = (backup.get("database") or {}).get("id")
    for db in info.get("db") or []:
        if db.get("id") == database_id:
            return str(db.get("system-id")), str(db.get("version"))
    raise PitrError("the stanza's info lists no database with id %s for backup %s" % (database_id, backup.get("label")))


def read_marker(datadir):
    try:
        with open(os.path.join(datadir, MARKER), "r", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def check_host(source_id, data_directory, proc_root="/proc"):
    """Refuse a host that runs the source's primary or a replica; returns notes about what was seen."""
    notes = []
    postmasters, unreadable = running_postmasters(proc_root)
    target = os.path.realpath(data_directory)
    for server in postmasters:
        try:
            sysid = system_identifier(server["datadir"])
        except PgBackRestError as exc:
            notes.append("could not read the system identifier of the server in %s (pid %s): %s"
                         % (server["datadir"], server["pid"], exc))
            continue
        if server["datadir"] == target:
            raise PitrError("PostgreSQL (pid %s) is running in the data directory %s: stop it first"
                            % (server["pid"], data_directory))
        if sysid != source_id:
            continue
        marker = read_marker(server["datadir"])
        if marker is not None:
            notes.append("a restore made by pitr_restore runs in %s (pid %s); it is not the source"
                         % (server["datadir"], server["pid"]))
            continue
        raise PitrError(
            "this host runs a PostgreSQL server with the source's system identifier %s (pid %s, data directory %s): "
            "it is the source's primary or one of its replicas, and pitr_restore never restores there"
            % (source_id, server["pid"], server["datadir"])
        )
    if unreadable:
        notes.append("could not see the data directory of postgres process(es) %s (run as root or as the "
                     "PostgreSQL OS user to check them)" % ", ".join(str(pid) for pid in unreadable))
    return notes


def check_data_directory(data_directory, source_id, replace):
    """Whether ``data_directory`` may receive the restore; returns its state (exists, entries, replace)."""
    state = {"exists": os.path.isdir(data_directory), "entries": 0, "replaces": None}
    if os.path.exists(data_directory) and not state["exists"]:
        raise PitrError("%s exists and is not a directory" % data_directory)
    if not state["exists"]:
        parent = os.path.dirname(os.path.abspath(data_directory))
        if not os.path.isdir(parent):
            raise PitrError("the parent directory %s of the data directory does not exist" % parent)
        return state
    try:
        entries = os.listdir(data_directory)
    except OSError as exc:
        raise PitrError("cannot list the data directory %s: %s" % (data_directory, exc.strerror or exc)) from None
    state["entries"] = len(entries)
    if not entries:
        return state
    if not replace:
        raise PitrError("the data directory %s is not empty (%d entries); set replace=true to replace its contents"
                        % (data_directory, len(entries)))
    pid_info = postmaster_pid_info(data_directory)
    if pid_info and _alive(pid_info["pid"]):
        raise PitrError("PostgreSQL (pid %s) is running in the data directory %s: stop it first"
                        % (pid_info["pid"], data_directory))
    sysid = system_identifier(data_directory)
    marker = read_marker(data_directory)
    if sysid == source_id and marker is None:
        raise PitrError(
            "the data directory %s holds the source cluster itself (system identifier %s) and was not made by "
            "pitr_restore: it is the primary's or a replica's data, refusing to replace it (if it is what remains "
            "of a restore that was killed, empty it by hand)" % (data_directory, sysid)
        )
    state["replaces"] = {"system_identifier": sysid, "made_by_pitr_restore": marker is not None,
                         "restored_at": (marker or {}).get("restored_at"),
                         "complete": (marker or {}).get("complete", marker is not None)}
    return state


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def plan(backrest, params, proc_root="/proc"):
    """Everything decided read-only: a dict the module returns in check mode and acts on otherwise."""
    target_type = params["target_type"]
    target = params.get("target")
    if target_type in ("time", "name", "lsn") and not target:
        raise PitrError("target_type=%s needs a target" % target_type)
    if target_type in ("latest", "immediate") and target:
        raise PitrError("target_type=%s takes no target (got %r)" % (target_type, target))
    if target_type == "time":
        parse_target_time(target)
    if os.geteuid() == 0 and not backrest.user.switches:
        raise PitrError("the module runs as root: set os_user to the owner of the data directory (usually postgres); "
                        "PostgreSQL refuses to run as root")
    info = backrest.info()
    backup = choose_backup(info, target_type, target, params.get("backup_set"))
    source_id, pg_version = source_system_identifier(info, backup)
    data_directory = os.path.abspath(params["data_directory"])
    notes = check_host(source_id, data_directory, proc_root)
    state = check_data_directory(data_directory, source_id, params.get("replace"))

    archive = archive_for_backup(info, backup) or {}
    segment_size = segment_size_from_backups(info.get("backup"))
    start, stop = backup["archive"]["start"], backup["archive"]["stop"]
    names = backrest.list_archive(archive["id"]) if archive.get("id") else []
    timeline = int(start[:8], 16)
    needed = wal_gaps(names, start, stop, segment_size, min_timeline=timeline)
    if needed["missing_count"]:
        raise PitrError("backup %s cannot become consistent: WAL segment(s) %s missing from the archive"
                        % (backup["label"], ", ".join(needed["missing"][:5])))
    newest = archive.get("max") or stop
    gaps = wal_gaps(names, start, newest, segment_size, min_timeline=timeline)
    if gaps["missing_count"] and target_type == "latest":
        raise PitrError(
            "recovery to the latest point would stop early: WAL segment %s is missing from the archive "
            "(%d missing between %s and %s); restore to a time before the gap, or put the segment back"
            % (gaps["missing"][0], gaps["missing_count"], start, newest)
        )
    if gaps["missing_count"]:
        notes.append("WAL segment(s) %s are missing from the archive: a target after them cannot be reached"
                     % ", ".join(gaps["missing"][:5]))
    return {
        "stanza": backrest.stanza,
        "data_directory": data_directory,
        "data_directory_state": state,
        "source_system_identifier": source_id,
        "pg_version": pg_version,
        "backup": backup_summary(backup),
        "repo": (backup.get("database") or {}).get("repo-key"),
        "archive": {"id": archive.get("id"), "min": archive.get("min"), "max": archive.get("max")},
        "wal_segment_size": segment_size,
        "wal_gaps": gaps,
        "target": {"type": target_type, "value": target, "inclusive": params.get("target_inclusive", True)},
        "notes": notes,
    }


# --------------------------------------------------------------------------------------
# run


def find_pg_bindir(pg_bin_dir, pg_version):
    candidates = [pg_bin_dir] if pg_bin_dir else ["/usr/lib/postgresql/%s/bin" % pg_version]
    if not pg_bin_dir:
        found = shutil.which("pg_ctl")
        if found:
            candidates.append(os.path.dirname(found))
    for path in candidates:
        if all(os.access(os.path.join(path, exe), os.X_OK) for exe in ("pg_ctl", "postgres", "psql")):
            return path
    raise PitrError("no PostgreSQL %s server programs (pg_ctl, postgres, psql) in %s (install postgresql-%s or set "
                    "pg_bin_dir)" % (pg_version, " or ".join(candidates), pg_version))


def restore_options(the_plan, archive_mode):
    target = the_plan["target"]
    options = ["--pg1-path=%s" % the_plan["data_directory"], "--set=%s" % the_plan["backup"]["label"],
               "--archive-mode=%s" % archive_mode]
    if the_plan.get("repo"):
        options.append("--repo=%s" % the_plan["repo"])
    if target["type"] == "latest":
        options.append("--type=default")
    else:
        options.append("--type=%s" % target["type"])
        options.append("--target-action=pause")
        if target["value"]:
            options.append("--target=%s" % target["value"])
        if not target["inclusive"] and target["type"] in ("time", "lsn"):
            options.append("--target-exclusive")
    return options


def _quote_setting(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return str(value)
    return "'%s'" % str(value).replace("\\", "\\\\").replace("'", "''")


def write_settings(user, data_directory, settings):
    """Append ``settings`` to postgresql.auto.conf (after pgBackRest's recovery settings)."""
    if not settings:
        return
    for name in settings:
        if not _SETTING_NAME.match(name):
            raise PitrError("%r is not a PostgreSQL setting name" % name)
    path = os.path.join(data_directory, "postgresql.auto.conf")
    lines = ["", "# Settings for the restored server, written by upkeep.runbooks.pitr_restore"]
    lines.extend("%s = %s" % (name, _quote_setting(value)) for name, value in sorted(settings.items()))
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    user.chown(path)


MISSING_CONFIG_HBA = (
    "# Written by upkeep.runbooks.pitr_restore: the source keeps its pg_hba.conf outside the data directory\n"
    "# (Debian's /etc/postgresql/<version>/<cluster>). Local connections only; set hba_file in the restore's\n"
    "# settings to use this host's own rules instead.\n"
    "local   all   all   peer\n"
)


def write_missing_config(user, data_directory, settings):
    """Give a restored data directory the configuration files a server needs to start, where the source kept
    them elsewhere (Debian's layout: postgresql.conf, pg_hba.conf and pg_ident.conf under /etc/postgresql).

    An empty ``postgresql.conf`` (PostgreSQL's defaults, then postgresql.auto.conf with the source's ALTER SYSTEM
    settings and ``settings``); a ``pg_hba.conf`` of local peer connections unless ``settings`` names an
    ``hba_file``; an empty ``pg_ident.conf`` unless it names an ``ident_file``. Returns the files written.
    """
    settings = settings or {}
    wanted = [("postgresql.conf", "# Written by upkeep.runbooks.pitr_restore: the source keeps its postgresql.conf "
                                  "outside the data directory.\n# PostgreSQL's defaults apply, then "
                                  "postgresql.auto.conf (the source's ALTER SYSTEM and the restore's settings).\n")]
    if "hba_file" not in settings:
        wanted.append(("pg_hba.conf", MISSING_CONFIG_HBA))
    if "ident_file" not in settings:
        wanted.append(("pg_ident.conf", "# Written by upkeep.runbooks.pitr_restore: no user name maps.\n"))
    written = []
    for name, text in wanted:
        path = os.path.join(data_directory, name)
        if os.path.exists(path):
            continue
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        user.chown(path)
        written.append(name)
    return written


def write_marker(user, data_directory, the_plan, complete=True):
    marker = {
        "version": MARKER_VERSION,
        "made_by": "upkeep.runbooks.pitr_restore",
        "complete": complete,
        "stanza": the_plan["stanza"],
        "source_system_identifier": the_plan["source_system_identifier"],
        "backup": the_plan["backup"]["label"],
        "target": the_plan["target"],
        "restored_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    path = os.path.join(data_directory, MARKER)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(marker, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(tmp, path)
    user.chown(path)


def clear_directory(data_directory):
    for entry in os.listdir(data_directory):
        path = os.path.join(data_directory, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


class Server:
    """The restored PostgreSQL server: pg_ctl and psql as the OS user, state from postmaster.pid."""

    def __init__(self, user, bindir, data_directory, superuser="postgres"):
        self.user = user
        self.bindir = bindir
        self.data_directory = data_directory
        self.superuser = superuser
        self.logfile = os.path.join(data_directory, "pitr_restore_startup.log")

    def start(self):
        proc = self.user.run([os.path.join(self.bindir, "pg_ctl"), "start", "-W", "-D", self.data_directory,
                              "-l", self.logfile], timeout=120)
        if proc.returncode != 0:
            raise PitrError("pg_ctl start failed (exit %s): %s"
                            % (proc.returncode, (proc.stderr or proc.stdout).strip()))

    def stop(self, mode="fast"):
        self.user.run([os.path.join(self.bindir, "pg_ctl"), "stop", "-D", self.data_directory, "-m", mode, "-w",
                       "-t", "60"], timeout=120)

    def pid_info(self):
        return postmaster_pid_info(self.data_directory)

    def alive(self):
        info = self.pid_info()
        return bool(info) and _alive(info["pid"])

    def status(self):
        """The postmaster.pid status line: starting, ready, standby, stopping; None when absent."""
        try:
            with open(os.path.join(self.data_directory, "postmaster.pid"), "r", encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except OSError:
            return None
        return lines[7].strip() if len(lines) > 7 else "starting"

    def query(self, sql, timeout=60):
        """One row of ``sql`` as a list of strings (psql -At, fields split on '|')."""
        info = self.pid_info()
        if not info:
            raise PitrError("the restored server is not running (no postmaster.pid)")
        host = info["socket_dir"] or "127.0.0.1"
        proc = self.user.run([os.path.join(self.bindir, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1",
                              "-h", host, "-p", str(info["port"]), "-U", self.superuser, "-d", "postgres",
                              "-c", sql], timeout=timeout)
        if proc.returncode != 0:
            raise PitrError("psql on the restored server failed: %s" % (proc.stderr or proc.stdout).strip()[:500])
        line = (proc.stdout or "").strip().splitlines()
        return line[-1].split("|") if line else []

    def log_tail(self, lines=30):
        try:
            with open(self.logfile, "r", encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return ""

    def last_restored_segment(self):
        try:
            with open(self.logfile, "r", encoding="utf-8", errors="replace") as handle:
                found = _RESTORED_RE.findall(handle.read())
        except OSError:
            return None
        return found[-1] if found else None


SQL_STATE = ("SELECT pg_is_in_recovery(), "
             "CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE 'not paused' END, "
             "coalesce(pg_last_wal_replay_lsn()::text, ''), "
             "coalesce(to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', "
             "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), '')")
SQL_TIMELINE = "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"


def _failed_recovery(server, the_plan, what):
    """The error for a server that stopped before reaching the target: name the WAL segment it lacked."""
    tail = server.log_tail()
    last = server.last_restored_segment()
    size = the_plan["wal_segment_size"]
    missing = None
    if last:
        missing = segment_name(int(last[:8], 16), segment_number(last, size) + 1, size)
    if "recovery ended before configured recovery target was reached" in tail:
        cause = "recovery ended before the target %s was reached" % _target_text(the_plan["target"])
        if missing:
            newest = the_plan["archive"].get("max")
            if newest and missing > newest:
                cause += ": the archive ends at WAL segment %s, the target lies beyond it" % newest
            else:
                cause += ": WAL segment %s is missing from the archive (the last one restored was %s)" % (missing, last)
    else:
        cause = "PostgreSQL stopped %s" % what
    return PitrError("%s\n--- server log tail (%s) ---\n%s" % (cause, server.logfile, tail.strip()))


def _target_text(target):
    if target["type"] == "latest":
        return "latest"
    return "%s %s" % (target["type"], target["value"] or "")


def execute(backrest, the_plan, params, clock=time.monotonic, sleep=time.sleep):
    """Restore, start, wait for the target, promote; returns the result dict (raises PitrError)."""
    user = backrest.user
    data_directory = the_plan["data_directory"]
    bindir = find_pg_bindir(params.get("pg_bin_dir"), the_plan["pg_version"])
    phases = {}
    began = clock()

    # restore -----------------------------------------------------------------------
    started = clock()
    if the_plan["data_directory_state"]["exists"]:
        if the_plan["data_directory_state"]["entries"]:
            clear_directory(data_directory)
    else:
        os.mkdir(data_directory, 0o700)
        user.chown(data_directory)
    try:
        backrest.run("restore", *restore_options(the_plan, params.get("archive_mode") or "off"))
    except PgBackRestError:
        # a half-restored directory is still this module's: mark it, so that a retry with replace=true may
        # clear it (without the mark it would look like the source's own data and be refused)
        write_marker(user, data_directory, the_plan, complete=False)
        raise
    written = write_missing_config(user, data_directory, params.get("settings"))
    write_settings(user, data_directory, params.get("settings"))
    write_marker(user, data_directory, the_plan)
    phases["restore_seconds"] = round(clock() - started, 3)

    server = Server(user, bindir, data_directory, params.get("superuser") or "postgres")
    try:
        outcome = _recover(server, the_plan, params, phases, clock, sleep)
    except PitrError as exc:
        if server.alive():
            server.stop("fast")
            raise PitrError("%s\n(the restored server was stopped; its data directory is kept for inspection)"
                            % exc.message) from None
        raise
    phases["total_seconds"] = round(clock() - began, 3)
    outcome["phases"] = phases
    outcome["config_written"] = written
    return outcome


def _recover(server, the_plan, params, phases, clock, sleep):
    """Start the restored server, wait for the target, promote; fills ``phases``."""
    # start -------------------------------------------------------------------------
    started = clock()
    server.start()
    deadline = started + params["start_timeout"]
    while True:
        status = server.status()
        if status in ("ready", "standby"):
            try:
                server.query("SELECT 1")
                break
            except PitrError:
                pass
        if not server.alive() and clock() - started > 1:
            raise _failed_recovery(server, the_plan, "while starting")
        if clock() > deadline:
            raise PitrError("the restored server did not accept connections within %ss\n--- server log tail ---\n%s"
                            % (params["start_timeout"], server.log_tail()))
        sleep(POLL)
    phases["start_seconds"] = round(clock() - started, 3)

    # replay ------------------------------------------------------------------------
    started = clock()
    deadline = started + params["recovery_timeout"]
    reached_target = None
    while True:
        try:
            in_recovery, pause_state, lsn, xact_time = server.query(SQL_STATE)
        except PitrError:
            if not server.alive():
                raise _failed_recovery(server, the_plan, "during recovery") from None
            in_recovery, pause_state, lsn, xact_time = "t", "", "", ""
        if in_recovery == "f":
            reached_target = the_plan["target"]["type"] == "latest"
            break
        if pause_state == "paused":
            reached_target = True
            break
        if clock() > deadline:
            raise PitrError("recovery did not reach the target %s within %ss (replayed up to %s)"
                            % (_target_text(the_plan["target"]), params["recovery_timeout"], lsn or "nothing"))
        sleep(POLL)
    phases["replay_seconds"] = round(clock() - started, 3)
    point = {"lsn": lsn or None, "last_transaction_time": xact_time or None,
             "timeline_before_promotion": None, "timeline": None}

    # promote -----------------------------------------------------------------------
    promoted = in_recovery == "f"
    started = clock()
    if in_recovery == "t":
        point["timeline_before_promotion"] = int(server.query(
            "SELECT timeline_id FROM pg_control_checkpoint()")[0])
        if params.get("promote", True):
            server.query("SELECT pg_promote(true, %d)" % int(params["start_timeout"]))
            while server.query("SELECT pg_is_in_recovery()")[0] != "f":
                if clock() - started > params["start_timeout"]:
                    raise PitrError("the restored server did not finish promotion within %ss" % params["start_timeout"])
                sleep(POLL)
            promoted = True
    if promoted:
        point["timeline"] = int(server.query(SQL_TIMELINE)[0], 16)
    phases["promote_seconds"] = round(clock() - started, 3)
    pid_info = server.pid_info() or {}
    return {
        "recovery_point": point,
        "target_reached": reached_target,
        "promoted": promoted,
        "server": {"port": pid_info.get("port"), "socket_dir": pid_info.get("socket_dir"), "pid": pid_info.get("pid"),
                   "log": server.logfile, "bindir": server.bindir},
    }
