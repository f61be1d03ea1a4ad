# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Transport checks: PostgreSQL TLS settings and pg_hba rules, and server certificates read off the wire.

Findings have the shape of the access review's (see _access.finding): stable id, severity, summary
and the exact fix.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import ipaddress
import socket
import ssl
import struct

from ansible_collections.upkeep.runbooks.plugins.module_utils import _postgres
from ansible_collections.upkeep.runbooks.plugins.module_utils._access import finding, utc_text

try:
    from cryptography import x509
except ImportError:  # pragma: no cover - reported by the module with missing_required_lib
    x509 = None

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
PROTOCOL_ORDER = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]


class TLSCheckError(Exception):
    """``str()`` reads 'Failed to <verb> <object>: <cause>'."""


def _loopback(address, netmask):
    if address in (None, ""):
        return False
    if address in ("all", "samehost", "samenet") or address.startswith("."):
        return False
    try:
        if netmask:
            net = ipaddress.ip_network("%s/%s" % (address, netmask), strict=False)
        else:
            net = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return address in ("localhost",)
    return net.subnet_of(ipaddress.ip_network("127.0.0.0/8")) if net.version == 4 else \
        net.subnet_of(ipaddress.ip_network("::1/128"))


def pg_settings_findings(conn, host_label):
    """ssl, ssl_min_protocol_version and password_encryption of the server behind ``conn``."""
    found = []
    rows = _postgres.query_all(conn, "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                               (["ssl", "ssl_min_protocol_version", "password_encryption"],))
    settings = dict((row["name"], row["setting"]) for row in rows)
    if settings.get("ssl") != "on":
        found.append(finding(
            "tls:pg:%s:ssl-off" % host_label, "postgresql", "pg_ssl", "high", host_label,
            "ssl is %s on %s: connections are not encrypted" % (settings.get("ssl"), host_label),
            fix="ALTER SYSTEM SET ssl = on; SELECT pg_reload_conf();",
            details={"ssl": settings.get("ssl")}))
    minimum = settings.get("ssl_min_protocol_version") or ""
    if minimum not in ("TLSv1.2", "TLSv1.3"):
        found.append(finding(
            "tls:pg:%s:min-protocol" % host_label, "postgresql", "pg_ssl_min_protocol", "high", host_label,
            "ssl_min_protocol_version is %r on %s (at least TLSv1.2 expected)" % (minimum, host_label),
            fix="ALTER SYSTEM SET ssl_min_protocol_version = 'TLSv1.2'; SELECT pg_reload_conf();",
            details={"ssl_min_protocol_version": minimum}))
    if settings.get("password_encryption") != "scram-sha-256":
        found.append(finding(
            "tls:pg:%s:password-encryption" % host_label, "postgresql", "pg_password_encryption", "medium",
            host_label, "password_encryption is %s on %s (scram-sha-256 expected)"
            % (settings.get("password_encryption"), host_label),
            fix="ALTER SYSTEM SET password_encryption = 'scram-sha-256'; SELECT pg_reload_conf();",
            details={"password_encryption": settings.get("password_encryption")}))
    return found, settings


def pg_hba_findings(conn, host_label):
    """Non-SSL ``host`` lines for non-loopback addresses, and md5/password methods, from pg_hba_file_rules."""
    rows = _postgres.query_all(
        conn, "SELECT line_number, type, database, user_name, address, netmask, auth_method, error "
              "FROM pg_hba_file_rules ORDER BY line_number")
    found = []
    for row in rows:
        if row["error"]:
            found.append(finding(
                "tls:pg:%s:hba-error:%s" % (host_label, row["line_number"]), "postgresql", "pg_hba", "high", host_label,
                "pg_hba.conf line %s on %s has an error: %s" % (row["line_number"], host_label, row["error"]),
                fix="correct pg_hba.conf line %s, then SELECT pg_reload_conf();" % row["line_number"]))
            continue
        where = "%s %s %s %s%s" % (row["type"], ",".join(row["database"] or []), ",".join(row["user_name"] or []),
                                   row["address"] or "", ("/" + row["netmask"]) if row["netmask"] else "")
        key = "%s:%s:%s:%s" % (row["type"], ",".join(row["database"] or []), ",".join(row["user_name"] or []),
                               row["address"] or "")
        if row["type"] == "host" and not _loopback(row["address"], row["netmask"]):
            found.append(finding(
                "tls:pg:%s:hba-nossl:%s" % (host_label, key), "postgresql", "pg_hba_ssl", "high", host_label,
                "pg_hba.conf line %s on %s allows connections without TLS from %s (%s)"
                % (row["line_number"], host_label, row["address"], where),
                fix="change line %s of pg_hba.conf from 'host' to 'hostssl' (and add 'hostnossl ... reject' for "
                    "the same addresses), then SELECT pg_reload_conf();" % row["line_number"],
                details={"line": row["line_number"], "rule": where}))
        if row["auth_method"] in ("md5", "password"):
            found.append(finding(
                "tls:pg:%s:hba-%s:%s" % (host_label, row["auth_method"], key), "postgresql", "pg_hba_method",
                "high" if row["auth_method"] == "password" else "medium", host_label,
                "pg_hba.conf line %s on %s uses %s (%s)" % (row["line_number"], host_label, row["auth_method"], where),
                fix="use scram-sha-256 on line %s of pg_hba.conf after every password on it is stored as SCRAM "
                    "(SELECT rolname FROM pg_authid WHERE rolpassword LIKE 'md5%%'), then SELECT pg_reload_conf();"
                    % row["line_number"],
                details={"line": row["line_number"], "rule": where}))
    return found


def fetch_certificate(host, port, timeout=10, postgres=False, server_name=None):
    """The DER certificate the server at host:port presents (PostgreSQL: after an SSLRequest)."""
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as exc:
        raise TLSCheckError("Failed to connect to %s:%s: %s" % (host, port, exc.strerror or exc)) from None
    try:
        if postgres:
            sock.sendall(SSL_REQUEST)
            answer = sock.recv(1)
            if answer != b"S":
                raise TLSCheckError("Failed to read the certificate of PostgreSQL at %s:%s: the server does not "
                                    "accept TLS (answered %r to SSLRequest)" % (host, port, answer))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the certificate is read to check it, not trusted  # noqa: S501
        try:
            wrapped = context.wrap_socket(sock, server_hostname=server_name or host)
        except (ssl.SSLError, OSError) as exc:
            raise TLSCheckError("Failed to complete the TLS handshake with %s:%s: %s" % (host, port, exc)) from None
        try:
            der = wrapped.getpeercert(binary_form=True)
            version = wrapped.version()
        finally:
            wrapped.close()
        return der, version
    finally:
        sock.close()


def certificate_finding(fid_prefix, label, der, now, warn_days, fail_days, source="tls", protocol=None):
    """A finding when the certificate expires within warn_days (medium) or fail_days/expired (high); and its facts."""
    cert = x509.load_der_x509_certificate(der)
    not_after = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    days_left = int((not_after - now).total_seconds() // 86400)
    subject = cert.subject.rfc4514_string()
    facts = {"subject": subject, "issuer": cert.issuer.rfc4514_string(), "not_after": utc_text(not_after),
             "days_left": days_left, "protocol": protocol}
    if days_left > warn_days:
        return None, facts
    severity = "high" if days_left <= fail_days else "medium"
    state = "expired %d days ago" % -days_left if days_left < 0 else "expires in %d days" % days_left
    return finding(
        "%s:cert-expiry" % fid_prefix, source, "certificate_expiry", severity, label,
        "certificate of %s (%s) %s (%s; warn at %d, fail at %d days)"
        % (label, subject, state, utc_text(not_after), warn_days, fail_days),
        fix_command="renew the certificate and reload the service before %s" % utc_text(not_after),
        details=facts), facts
