# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A minimal Redis client: RESP2 over a TCP (optionally TLS) socket, standard library only.

Why not redis-py: the modules that use this run on managed hosts with the system Python.
redis-py is in the sample application's virtualenv, not in the interpreter Ansible uses,
and installing python3-redis on every host only to send PING, INFO, LLEN, HLEN, SCAN,
SADD/SREM, PUBLISH and BRPOP is a dependency with no benefit. Those commands need
nothing but RESP's five reply types, which this file speaks.

Every failure is a ``RedisError`` whose message names host and port and never the
password; the module wraps it as "Failed to <verb> <object>: <cause>".
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import ssl


class RedisError(Exception):
    """A Redis operation failed; ``message`` is safe to show (no secrets)."""

    def __init__(self, message, kind="error"):
        super(RedisError, self).__init__(message)
        self.message = message
        self.kind = kind  # connect | auth | timeout | protocol | error


class RedisReplyError(RedisError):
    """The server answered a command with an error reply (-ERR ...)."""


def redis_common_argument_spec():
    """Connection options of every module that talks to Redis."""
    return dict(
        host=dict(type="str", default="127.0.0.1"),
        port=dict(type="int", default=6379),
        username=dict(type="str"),
        password=dict(type="str", no_log=True),
        db=dict(type="int", default=0),
        tls=dict(type="bool", default=False),
        ca_cert=dict(type="path"),
        connect_timeout=dict(type="float", default=5.0),
    )


def _encode(arg):
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return str(arg).encode("ascii")
    return str(arg).encode("utf-8")


def pack_command(*args):
    """RESP array of bulk strings for one command."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _encode(arg)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RedisClient:
    """One connection. Replies: bytes for bulk/simple strings, int, list, None."""

    def __init__(self, host="127.0.0.1", port=6379, username=None, password=None, db=0, tls=False,
                 ca_cert=None, connect_timeout=5.0):
        self.host = host
        self.port = port
        self.db = db
        self.where = "%s:%s" % (host, port)
        self._buf = b""
        self.sock = None
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout)
        except socket.timeout:
            raise RedisError("Redis at %s did not accept a connection within %ss" % (self.where, connect_timeout),
                             "connect") from None
        except OSError as exc:
            raise RedisError("cannot connect to Redis at %s: %s" % (self.where, exc.strerror or exc),
                             "connect") from None
        if tls:
            context = ssl.create_default_context(cafile=ca_cert)
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except (ssl.SSLError, OSError) as exc:
                sock.close()
                raise RedisError("TLS handshake with Redis at %s failed: %s" % (self.where, exc), "connect") from None
        self.sock = sock
        self.timeout = connect_timeout
        if password:
            try:
                if username:
                    self.command("AUTH", username, password)
                else:
                    self.command("AUTH", password)
            except RedisReplyError as exc:
                self.close()
                # The server's text (WRONGPASS ..., ERR invalid password) never contains the password.
                raise RedisError("Redis at %s refused the credentials: %s" % (self.where, exc.message),
                                 "auth") from None
        if db:
            self.command("SELECT", db)

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- wire --------------------------------------------------------------------

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise RedisError("Redis at %s did not answer within %ss" % (self.where, self.sock.gettimeout()),
                             "timeout") from None
        except OSError as exc:
            raise RedisError("lost the connection to Redis at %s: %s" % (self.where, exc.strerror or exc),
                             "connect") from None
        if not chunk:
            raise RedisError("Redis at %s closed the connection" % self.where, "connect")
        self._buf += chunk

    def _line(self):
        while b"\r\n" not in self._buf:
            self._fill()
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def _exact(self, size):
        while len(self._buf) < size + 2:
            self._fill()
        data, self._buf = self._buf[:size], self._buf[size + 2:]
        return data

    def read_reply(self):
        line = self._line()
        if not line:
            raise RedisError("Redis at %s sent an empty reply line" % self.where, "protocol")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RedisReplyError(rest.decode("utf-8", "replace"), "reply")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._exact(size)
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            return [self.read_reply() for _index in range(count)]
        raise RedisError("Redis at %s sent a reply this client does not understand (%r)" % (self.where, kind),
                         "protocol")

    def command(self, *args, **kwargs):
        """Send one command and return its reply; an error reply raises RedisReplyError.

        ``timeout`` (seconds) overrides the socket timeout for this reply (blocking commands).
        """
        timeout = kwargs.get("timeout")
        try:
            self.sock.settimeout(timeout if timeout is not None else self.timeout)
            self.sock.sendall(pack_command(*args))
        except OSError as exc:
            raise RedisError("lost the connection to Redis at %s: %s" % (self.where, exc.strerror or exc),
                             "connect") from None
        reply = self.read_reply()
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    def pipeline(self, commands):
        """Send several commands at once and return their replies (errors as RedisReplyError objects)."""
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(b"".join(pack_command(*cmd) for cmd in commands))
        except OSError as exc:
            raise RedisError("lost the connection to Redis at %s: %s" % (self.where, exc.strerror or exc),
                             "connect") from None
        return [self.read_reply() for _command in commands]


def parse_info(raw):
    """INFO text -> {key: value}; numbers become int/float, the rest stay text."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, value = line.split(":", 1)
        for kind in (int, float):
            try:
                value = kind(value)
                break
            except ValueError:
                continue
        out[key] = value
    return out


def glob_escape(text):
    """Escape a literal for a Redis glob pattern (SCAN MATCH)."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
