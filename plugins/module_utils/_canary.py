# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The log-shipping canary: a unique line written on a host, looked for on the collector.

A canary line is ``upkeep-canary host=<name> id=<32 hex digits>``, written through the host's own
syslog (``logger``, to /dev/log or a given socket), so it takes the path every other log line
takes: the local syslog daemon, its forwarding rule, the network, the collector's rules, its file.

On the collector, the files the collector writes (glob patterns) are read from a little before
their current end (``scan_bytes``) and then followed as they grow, until every expected id was
seen or the time limit is over. Only complete lines count.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re
import time
import uuid

PREFIX = "upkeep-canary"
NAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]+$")


class CanaryError(Exception):
    """The canary could not be written or looked for; the message is for the operator."""


def new_line(name, run_id=None):
    """The unique line for host ``name``, and its id."""
    if not NAME_RE.match(name or ""):
        raise CanaryError("Failed to write the canary: host name %r must be letters, digits and _ . : @ -" % name)
    ident = run_id or uuid.uuid4().hex
    return "%s host=%s id=%s" % (PREFIX, name, ident), ident


def emit(run_command, logger, name, line, tag, priority, socket=None):
    """Write ``line`` through syslog with logger(1); raise CanaryError naming the host when that fails."""
    argv = [logger, "--socket-errors=on", "-t", tag, "-p", priority]
    if socket:
        argv += ["-u", socket]
    argv += ["--", line]
    rc, out, err = run_command(argv)
    if rc != 0:
        raise CanaryError("Failed to write the canary on %s through syslog (%s): %s"
                          % (name, socket or "the default socket", (err or out).strip() or "rc=%d" % rc))
    return argv


class Follower(object):
    """Reads the complete lines added to the files matching some globs, file by file."""

    def __init__(self, patterns, scan_bytes):
        self.patterns = patterns
        self.scan_bytes = scan_bytes
        self.offsets = {}  # path -> (inode, offset)

    def new_lines(self):
        """(path, line) for each complete line added since the last call (or in the last scan_bytes)."""
        found = []
        for pattern in self.patterns:
            for path in sorted(glob.glob(pattern)):
                try:
                    with open(path, "rb") as handle:
                        st = os.fstat(handle.fileno())
                        known = self.offsets.get(path)
                        if known is None:
                            offset = max(0, st.st_size - self.scan_bytes)
                        elif known[0] != st.st_ino or st.st_size < known[1]:
                            offset = 0  # rotated or truncated since the last look: the new file from its start
                        else:
                            offset = known[1]
                        handle.seek(offset)
                        data = handle.read(max(0, st.st_size - offset))
                except OSError as exc:
                    raise CanaryError("Failed to read the collector's file %s: %s" % (path, exc)) from exc
                end = data.rfind(b"\n")
                if known is None and offset > 0:
                    # started in the middle of a line: skip to the next one
                    first = data.find(b"\n")
                    skip = first + 1 if first != -1 else 0
                else:
                    skip = 0
                if end == -1 or end < skip:
                    self.offsets[path] = (st.st_ino, offset + skip)
                    continue
                for raw in data[skip:end].split(b"\n"):
                    found.append((path, raw.decode("utf-8", "replace")))
                self.offsets[path] = (st.st_ino, offset + end + 1)
        return found


def verify(expected, patterns, timeout, interval=1.0, scan_bytes=16 * 1024 * 1024, clock=time.monotonic,
           sleep=time.sleep):
    """Wait for every ``{host: id}`` canary; return (arrived {host: {path, waited_seconds}}, missing [hosts])."""
    wanted = dict(("id=%s" % ident, host) for host, ident in expected.items())
    arrived = {}
    follower = Follower(patterns, scan_bytes)
    start = clock()
    while True:
        for path, line in follower.new_lines():
            if PREFIX not in line:
                continue
            for marker, host in list(wanted.items()):
                if marker in line and ("host=%s " % host) in line + " ":
                    arrived[host] = {"path": path, "waited_seconds": round(clock() - start, 1)}
                    del wanted[marker]
        if not wanted or clock() - start >= timeout:
            break
        sleep(min(interval, max(0.0, timeout - (clock() - start))))
    return arrived, sorted(wanted.values())
