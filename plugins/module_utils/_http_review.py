# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP transport and security-header checks of a web endpoint (findings as in _access)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import ssl

from ansible.module_utils.six.moves import http_client
from ansible.module_utils.six.moves.urllib.parse import urlsplit
from ansible_collections.upkeep.runbooks.plugins.module_utils._access import finding

PROBE_ORIGIN = "https://upkeep-cors-probe.invalid"
HSTS_FIX = 'add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;'
CSP_FIX = "add_header Content-Security-Policy \"default-src 'self'; frame-ancestors 'none'\" always;"
CORS_FIX = "allow only the application's own origins (django-cors-headers: CORS_ALLOWED_ORIGINS)"
HSTS_MIN_SECONDS = 15552000  # 180 days


class HTTPCheckError(Exception):
    """``str()`` reads 'Failed to <verb> <object>: <cause>'."""


def fetch(url, headers=None, ca_cert=None, validate_certs=True, timeout=10, server_name=None):
    """(status, {lower-case header: value}) of one GET, redirects not followed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HTTPCheckError("Failed to check %s: not an http(s) URL" % url)
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    try:
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=ca_cert)
            if not validate_certs:  # the operator chose so; dates are tls_review's job
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            conn = http_client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout, context=context)
        else:
            conn = http_client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        send = {"Host": server_name or parts.netloc, "User-Agent": "upkeep.runbooks http_security_review"}
        send.update(headers or {})
        conn.request("GET", path, headers=send)
        response = conn.getresponse()
        response.read()
        found = dict((key.lower(), value) for key, value in response.getheaders())
        conn.close()
        return response.status, found
    except (OSError, http_client.HTTPException, ssl.SSLError) as exc:
        raise HTTPCheckError("Failed to fetch %s: %s" % (url, getattr(exc, "strerror", None) or exc)) from None


def header_findings(name, url, headers):
    """Findings for missing or weak security headers of one HTTPS response."""
    out = []
    prefix = "http:%s" % name
    hsts = headers.get("strict-transport-security")
    if not hsts:
        out.append(finding(prefix + ":hsts", "http", "hsts", "high", name,
                           "%s sends no Strict-Transport-Security" % url, fix=HSTS_FIX,
                           fix_command="Django: SECURE_HSTS_SECONDS = 31536000"))
    else:
        match = re.search(r"max-age\s*=\s*\"?(\d+)", hsts, re.I)
        age = int(match.group(1)) if match else 0
        if age < HSTS_MIN_SECONDS:
            out.append(finding(prefix + ":hsts", "http", "hsts", "medium", name,
                               "%s sends Strict-Transport-Security with max-age %d (at least %d expected)"
                               % (url, age, HSTS_MIN_SECONDS),
                               fix=HSTS_FIX, details={"value": hsts}))
    csp = headers.get("content-security-policy")
    if not csp:
        out.append(finding(prefix + ":csp", "http", "csp", "medium", name,
                           "%s sends no Content-Security-Policy" % url, fix=CSP_FIX))
    if (headers.get("x-content-type-options") or "").strip().lower() != "nosniff":
        out.append(finding(prefix + ":nosniff", "http", "x_content_type_options", "medium", name,
                           "%s does not send X-Content-Type-Options: nosniff" % url,
                           fix="add_header X-Content-Type-Options nosniff always;",
                           fix_command="Django: SECURE_CONTENT_TYPE_NOSNIFF = True (default)"))
    frame = (headers.get("x-frame-options") or "").strip().upper()
    if frame not in ("DENY", "SAMEORIGIN") and not re.search(r"frame-ancestors", csp or "", re.I):
        out.append(finding(prefix + ":frame-options", "http", "frame_protection", "medium", name,
                           "%s allows framing (no X-Frame-Options DENY/SAMEORIGIN, no CSP frame-ancestors)" % url,
                           fix="add_header X-Frame-Options DENY always;",
                           fix_command="Django: django.middleware.clickjacking.XFrameOptionsMiddleware"))
    referrer = (headers.get("referrer-policy") or "").strip().lower()
    if not referrer or referrer == "unsafe-url":
        out.append(finding(prefix + ":referrer-policy", "http", "referrer_policy", "low", name,
                           "%s sends %s Referrer-Policy" % (url, "an unsafe-url" if referrer else "no"),
                           fix="add_header Referrer-Policy same-origin always;",
                           fix_command="Django: SECURE_REFERRER_POLICY = 'same-origin'"))
    return out


def cors_findings(name, url, headers):
    """Findings from the answer to a request with a foreign Origin (PROBE_ORIGIN)."""
    allow = (headers.get("access-control-allow-origin") or "").strip()
    credentials = (headers.get("access-control-allow-credentials") or "").strip().lower() == "true"
    prefix = "http:%s" % name
    if allow == PROBE_ORIGIN:
        return [finding(prefix + ":cors", "http", "cors", "high" if credentials else "medium", name,
                        "%s allows any origin (it echoed %s%s)"
                        % (url, PROBE_ORIGIN, " with credentials" if credentials else ""),
                        fix_command=CORS_FIX,
                        details={"allow_origin": allow, "allow_credentials": credentials})]
    if allow == "*":
        return [finding(prefix + ":cors", "http", "cors", "high" if credentials else "low", name,
                        "%s sends Access-Control-Allow-Origin: *%s" % (url, " with credentials" if credentials else ""),
                        fix_command=CORS_FIX,
                        details={"allow_origin": allow, "allow_credentials": credentials})]
    return []


def redirect_findings(name, http_url, status, headers):
    location = headers.get("location") or ""
    if status in (301, 302, 307, 308) and location.lower().startswith("https://"):
        return []
    return [finding("http:%s:https-redirect" % name, "http", "https_redirect", "high", name,
                    "%s answers %s%s instead of redirecting to HTTPS" % (
                        http_url, status, (" (Location: %s)" % location) if location else ""),
                    fix="return 301 https://$host$request_uri;",
                    fix_command="Django: SECURE_SSL_REDIRECT = True",
                    details={"status": status, "location": location or None})]
