# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failed and successful logins from PostgreSQL, sshd and Django log lines, and their review.

Parsers turn one line into an event ``{"outcome": "failure"|"success", "user", "address"}``
or None. ``Review`` adds up events per user and per source address, keeps the runs of
consecutive failures per address (carried between runs in the state) and flags a success
that comes right after ``success_after_failures`` or more failures from the same address.

PostgreSQL (stderr log format): the client address comes from ``log_line_prefix``
(``%h`` or ``%r``); without it, from the ``connection received: host=...`` line of the same
backend PID that ``log_connections = on`` writes; a ``no pg_hba.conf entry for host "..."``
line names it itself. Successes are ``connection authorized`` lines (``log_connections``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

KINDS = ("postgres", "sshd", "django")
UNKNOWN = "unknown"

# ---------------------------------------------------------------- PostgreSQL

_PREFIX_ESCAPES = {
    "a": r"(?P<app>.*?)",
    "u": r"(?P<user>.*?)",
    "d": r"(?P<db>.*?)",
    "r": r"(?P<remote>\[local\]|[^\s(]*?)(?:\((?P<rport>\d+)\))?",
    "h": r"(?P<host>\[local\]|[^\s]*?)",
    "b": r"[\w ]*?",
    "p": r"(?P<pid>\d+)",
    "P": r"\d*",
    "t": r"(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?: [A-Za-z0-9+:-]+)?)",
    "m": r"(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+(?: [A-Za-z0-9+:-]+)?)",
    "n": r"(?P<ts>\d+\.\d+)",
    "i": r".*?",
    "e": r"[0-9A-Z]{5}",
    "c": r"[0-9a-f]+\.[0-9a-f]+",
    "l": r"\d+",
    "s": r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?: [A-Za-z0-9+:-]+)?",
    "v": r"[\d/]*",
    "x": r"\d+",
    "Q": r"-?\d+",
}
_LEVELS = r"(?P<level>DEBUG\d?|INFO|NOTICE|WARNING|ERROR|LOG|FATAL|PANIC|DETAIL|HINT|QUERY|CONTEXT|LOCATION|STATEMENT)"

DEFAULT_LOG_LINE_PREFIX = "%m [%p] %q%u@%d "  # Debian's and PostgreSQL 15's packaged default


def prefix_regex(log_line_prefix):
    """Compile a regex for lines written with ``log_line_prefix`` (text after %q is optional)."""
    parts = []
    seen = set()
    optional_from = None
    i = 0
    text = log_line_prefix
    while i < len(text):
        ch = text[i]
        if ch != "%" or i + 1 >= len(text):
            parts.append(re.escape(ch))
            i += 1
            continue
        j = i + 1
        while j < len(text) and (text[j] == "-" or text[j].isdigit()):
            j += 1  # padding such as %-10u
        if j >= len(text):
            parts.append(re.escape(text[i:]))
            break
        esc = text[j]
        padded = j > i + 1
        i = j + 1
        if esc == "%":
            parts.append("%")
        elif esc == "q":
            optional_from = len(parts)
        elif esc in _PREFIX_ESCAPES:
            pattern = _PREFIX_ESCAPES[esc]
            for name in re.findall(r"\(\?P<(\w+)>", pattern):
                if name in seen:
                    pattern = pattern.replace("(?P<%s>" % name, "(?:")
                seen.add(name)
            parts.append((r"\s*" + pattern + r"\s*") if padded else pattern)
        else:
            parts.append(re.escape("%" + esc))
    if optional_from is not None:
        parts = parts[:optional_from] + ["(?:" + "".join(parts[optional_from:]) + ")?"]
    return re.compile("^" + "".join(parts) + _LEVELS + r":\s+(?P<msg>.*)$")


_PG_FAILED = re.compile(r'^(?:(?P<method>\w+) )?authentication failed for user "(?P<user>.*)"')
_PG_HBA = re.compile(
    r'^(?:no pg_hba\.conf entry|pg_hba\.conf rejects connection) for (?:replication connection from )?'
    r'host "(?P<host>[^"]*)", user "(?P<user>[^"]*)"')
_PG_RECEIVED = re.compile(r"^connection received: host=(?P<host>\S+)")
_PG_AUTHORIZED = re.compile(r"^(?:replication )?connection authorized: user=(?P<user>\S+)")


class PostgresParser:
    kind = "postgres"

    def __init__(self, log_line_prefix=None):
        self.regex = prefix_regex(log_line_prefix if log_line_prefix is not None else DEFAULT_LOG_LINE_PREFIX)
        self.pid_hosts = {}

    def _address(self, match):
        groups = match.groupdict()
        for key in ("remote", "host"):
            value = groups.get(key)
            if value and value not in ("[local]", "[unknown]"):
                return value
            if value == "[local]":
                return "local"
        pid = groups.get("pid")
        if pid and pid in self.pid_hosts:
            return self.pid_hosts[pid]
        return UNKNOWN

    def parse(self, line):
        match = self.regex.match(line)
        if not match:
            return None
        level, msg = match.group("level"), match.group("msg")
        if level == "LOG":
            received = _PG_RECEIVED.match(msg)
            if received:
                pid = match.groupdict().get("pid")
                if pid:
                    host = received.group("host")
                    self.pid_hosts[pid] = "local" if host == "[local]" else host
                    if len(self.pid_hosts) > 10000:
                        self.pid_hosts.clear()
                return None
            authorized = _PG_AUTHORIZED.match(msg)
            if authorized:
                return {"outcome": "success", "user": authorized.group("user"), "address": self._address(match)}
            return None
        if level != "FATAL":
            return None
        hba = _PG_HBA.match(msg)
        if hba:
            return {"outcome": "failure", "user": hba.group("user"), "address": hba.group("host"),
                    "reason": "no pg_hba.conf entry"}
        failed = _PG_FAILED.match(msg)
        if failed:
            method = (failed.group("method") or "").lower()
            return {"outcome": "failure", "user": failed.group("user"), "address": self._address(match),
                    "reason": "%s authentication failed" % (method or "password")}
        return None


# ---------------------------------------------------------------- sshd

_SSHD = re.compile(r"\bsshd(?:-session)?\[\d+\]: (?P<msg>.*)$")
_SSHD_FAILED = re.compile(
    r"^(?:message repeated (?P<repeat>\d+) times: \[ )?Failed (?P<method>\S+) for (?P<invalid>invalid user )?"
    r"(?P<user>.*?) from (?P<address>\S+) port \d+")
_SSHD_ACCEPTED = re.compile(r"^Accepted (?P<method>\S+) for (?P<user>.*?) from (?P<address>\S+) port \d+")


class SshdParser:
    kind = "sshd"

    def parse(self, line):
        match = _SSHD.search(line)
        if not match:
            return None
        msg = match.group("msg")
        failed = _SSHD_FAILED.match(msg)
        if failed:
            return {"outcome": "failure", "user": failed.group("user"), "address": failed.group("address"),
                    "count": int(failed.group("repeat") or 1),
                    "reason": "%s%s" % (failed.group("method"), " (invalid user)" if failed.group("invalid") else "")}
        accepted = _SSHD_ACCEPTED.match(msg)
        if accepted:
            return {"outcome": "success", "user": accepted.group("user"), "address": accepted.group("address")}
        return None


# ---------------------------------------------------------------- Django

DJANGO_EVENTS = {"user_login_failed": "failure", "user_logged_in": "success"}


class DjangoParser:
    """One JSON object per line (anything before the first ``{`` is ignored), written by the
    receivers of Django's ``user_login_failed`` / ``user_logged_in`` signals (docs/platform-health.md):
    ``{"event": "user_login_failed", "username": "...", "ip": "..."}``."""

    kind = "django"

    def parse(self, line):
        start = line.find('{"event"')
        if start < 0:
            return None
        try:
            data = json.loads(line[start:])
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("event") not in DJANGO_EVENTS:
            return None
        return {"outcome": DJANGO_EVENTS[data["event"]], "user": str(data.get("username") or ""),
                "address": str(data.get("ip") or UNKNOWN)}


def parser_for(kind, log_line_prefix=None):
    if kind == "postgres":
        return PostgresParser(log_line_prefix)
    if kind == "sshd":
        return SshdParser()
    if kind == "django":
        return DjangoParser()
    raise ValueError("unknown log kind %r (expected one of %s)" % (kind, ", ".join(KINDS)))


# ---------------------------------------------------------------- review

MAX_TRACKED = 5000


class Review:
    """Counts of one run; ``streaks`` maps ``kind|address`` to consecutive failures so far."""

    def __init__(self, success_after_failures=5, streaks=None):
        self.threshold = success_after_failures
        self.streaks = dict(streaks or {})
        self.total = 0
        self.successes = 0
        self.by_kind = dict((kind, 0) for kind in KINDS)
        self.by_user = {}
        self.by_source = {}
        self.source_users = {}
        self.source_kinds = {}
        self.suspicious = []

    def add(self, kind, event, source_name):
        address = event.get("address") or UNKNOWN
        user = event.get("user") or ""
        key = "%s|%s" % (kind, address)
        if event["outcome"] == "failure":
            count = event.get("count", 1)
            self.total += count
            self.by_kind[kind] = self.by_kind.get(kind, 0) + count
            self.by_user[user] = self.by_user.get(user, 0) + count
            self.by_source[address] = self.by_source.get(address, 0) + count
            users = self.source_users.setdefault(address, {})
            users[user] = users.get(user, 0) + count
            self.source_kinds.setdefault(address, set()).add(kind)
            if address != UNKNOWN:
                self.streaks[key] = self.streaks.get(key, 0) + count
            return
        self.successes += 1
        before = self.streaks.pop(key, 0)
        if address != UNKNOWN and self.threshold and before >= self.threshold:
            self.suspicious.append({"kind": kind, "log": source_name, "address": address, "user": user,
                                    "failures_before": before})

    def kept_streaks(self):
        """The longest runs, bounded so a scan of many addresses cannot grow the state file without end."""
        items = sorted(self.streaks.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_TRACKED]
        return dict(items)

    def top_sources(self, limit):
        ranked = sorted(self.by_source.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        out = []
        for address, count in ranked:
            users = sorted(self.source_users[address].items(), key=lambda kv: (-kv[1], kv[0]))
            out.append({"address": address, "failures": count, "kinds": sorted(self.source_kinds[address]),
                        "users": [pair[0] for pair in users[:5]], "distinct_users": len(users)})
        return out

    def top_users(self, limit):
        ranked = sorted(self.by_user.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return [{"user": user, "failures": count} for user, count in ranked]
