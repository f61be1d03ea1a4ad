# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Dependency audit: pip-audit and npm audit output -> findings, and the ignore list.

pip-audit runs with the OSV service at a configurable URL (``--osv-url``, default
https://api.osv.dev/v1/query) on fully pinned requirement files (``--no-deps --disable-pip``:
nothing is installed or resolved) or on an installed environment (``PIPAPI_PYTHON_LOCATION``).
npm audit runs on a package-lock.json (``--package-lock-only``) against ``--registry``.

An ignore entry is ``{id, reason, expires[, package]}``. It matches a finding whose id or one of
whose aliases is ``id`` (and whose package is ``package``, when given). It holds through its
``expires`` date (UTC); after that it is expired: the finding counts as open again and the expired
entry itself is reported, so an exception cannot silently become permanent.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import re

SEVERITIES = ("critical", "high", "moderate", "low", "info", "unknown")


class AuditError(Exception):
    """An audit could not be run or its output not read; the message is for the operator."""


def parse_date(text, what):
    try:
        return datetime.datetime.strptime(str(text), "%Y-%m-%d").date()
    except ValueError as exc:
        raise AuditError("%s must be a date YYYY-MM-DD, got %r" % (what, text)) from exc


def check_ignores(entries):
    """Validate the ignore list; return it with ``expires`` as dates."""
    checked = []
    for index, entry in enumerate(entries):
        where = "ignore[%d]" % index
        for key in ("id", "reason", "expires"):
            if not str(entry.get(key) or "").strip():
                raise AuditError("%s needs a non-empty %s (every ignore carries a reason and an expiry date)"
                                 % (where, key))
        checked.append(dict(entry, expires=parse_date(entry["expires"], where + ".expires")))
    return checked


def pip_audit_argv(executable, osv_url, cache_dir, requirements=None, timeout=None):
    argv = [executable, "--format", "json", "--progress-spinner", "off", "--vulnerability-service", "osv",
            "--osv-url", osv_url, "--cache-dir", cache_dir]
    if timeout:
        argv += ["--timeout", str(int(timeout))]
    if requirements:
        argv += ["--requirement", requirements, "--no-deps", "--disable-pip"]
    return argv


def parse_pip_audit(stdout, stderr, source):
    """pip-audit's JSON -> (findings, packages_audited, skipped)."""
    try:
        data = json.loads(stdout)
        deps = data["dependencies"]
    except (ValueError, KeyError, TypeError):
        detail = _last_lines(stderr, 1) or _last_lines(stdout, 1) or "no output"
        raise AuditError("Failed to audit %s with pip-audit: %s" % (source, detail)) from None
    findings, skipped = [], []
    for dep in deps:
        if dep.get("skip_reason"):
            skipped.append({"package": dep.get("name"), "reason": dep["skip_reason"]})
            continue
        for vuln in dep.get("vulns", []):
            findings.append({
                "source": source,
                "ecosystem": "PyPI",
                "package": dep["name"],
                "version": dep.get("version"),
                "id": vuln["id"],
                "aliases": sorted(vuln.get("aliases") or []),
                "severity": "unknown",
                "summary": (vuln.get("description") or "")[:300],
                "fix_versions": vuln.get("fix_versions") or [],
                "url": "https://osv.dev/vulnerability/%s" % vuln["id"],
            })
    return findings, len(deps) - len(skipped), skipped


GHSA_URL = re.compile(r"/(GHSA-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4})$")


def npm_audit_argv(executable, registry, cache_dir):
    return [executable, "audit", "--json", "--package-lock-only", "--audit-level=none", "--registry", registry,
            "--cache", cache_dir, "--no-fund", "--no-update-notifier"]


def parse_npm_audit(stdout, stderr, source):
    """npm audit's JSON (report version 2) -> (findings, packages_audited)."""
    try:
        data = json.loads(stdout)
    except ValueError:
        detail = _last_lines(stderr, 1) or _last_lines(stdout, 1) or "no output"
        raise AuditError("Failed to audit %s with npm audit: %s" % (source, detail)) from None
    if "error" in data:
        err = data["error"] or {}
        raise AuditError("Failed to audit %s with npm audit: %s" % (
            source, " ".join(str(err.get(k) or "") for k in ("code", "summary")).strip() or "unknown error"))
    if data.get("auditReportVersion") != 2:
        raise AuditError("Failed to audit %s with npm audit: unexpected report (auditReportVersion %r)"
                         % (source, data.get("auditReportVersion")))
    findings = []
    for name, vuln in sorted(data.get("vulnerabilities", {}).items()):
        for via in vuln.get("via", []):
            if not isinstance(via, dict):
                continue  # vulnerable only through another package, which has its own finding
            url = via.get("url") or ""
            match = GHSA_URL.search(url)
            fix = vuln.get("fixAvailable")
            findings.append({
                "source": source,
                "ecosystem": "npm",
                "package": via.get("name") or name,
                "version": None,
                "range": via.get("range"),
                "id": match.group(1) if match else str(via.get("source")),
                "aliases": [],
                "severity": via.get("severity") or "unknown",
                "summary": via.get("title") or "",
                "fix_versions": [fix["version"]] if isinstance(fix, dict) and fix.get("version") else [],
                "url": url,
            })
    total = ((data.get("metadata") or {}).get("dependencies") or {}).get("total")
    return findings, total


def npm_installed_versions(lockfile):
    """name -> sorted versions in a package-lock.json (v2/v3 ``packages``; v1 ``dependencies``)."""
    try:
        with open(lockfile) as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise AuditError("Failed to read %s: %s" % (lockfile, exc)) from exc
    versions = {}
    for path, meta in (data.get("packages") or {}).items():
        if path and "version" in meta:
            versions.setdefault(path.rsplit("node_modules/", 1)[-1], set()).add(meta["version"])
    return dict((name, sorted(v)) for name, v in versions.items())


def apply_ignores(findings, ignores, today):
    """Mark findings ignored (valid entry) or not; return (expired entries that matched or not, unused entries)."""
    used = set()
    for finding in findings:
        finding["ignored"] = False
        keys = set([finding["id"]] + list(finding.get("aliases") or []))
        for index, entry in enumerate(ignores):
            if entry["id"] not in keys:
                continue
            if entry.get("package") and entry["package"].lower() != finding["package"].lower():
                continue
            used.add(index)
            finding["ignore"] = {"reason": entry["reason"], "expires": entry["expires"].isoformat(),
                                 "expired": entry["expires"] < today}
            if entry["expires"] >= today:
                finding["ignored"] = True
                break
    expired = [_entry_out(e) for e in ignores if e["expires"] < today]
    unused = [_entry_out(e) for i, e in enumerate(ignores) if i not in used and e["expires"] >= today]
    return expired, unused


def _entry_out(entry):
    out = dict(entry)
    out["expires"] = entry["expires"].isoformat()
    return out


def counts(findings):
    open_findings = [f for f in findings if not f["ignored"]]
    by_severity = dict((s, 0) for s in SEVERITIES)
    for finding in open_findings:
        by_severity[finding["severity"] if finding["severity"] in by_severity else "unknown"] += 1
    return {"total": len(findings), "open": len(open_findings), "ignored": len(findings) - len(open_findings),
            "open_by_severity": by_severity}


def _last_lines(text, count=3):
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return " | ".join(lines[-count:])


def lock_dir(lockfile):
    if os.path.basename(lockfile) not in ("package-lock.json", "npm-shrinkwrap.json"):
        raise AuditError("Failed to audit %s: npm audit reads a package-lock.json or npm-shrinkwrap.json" % lockfile)
    if not os.path.isfile(lockfile):
        raise AuditError("Failed to audit %s: no such file" % lockfile)
    return os.path.dirname(os.path.abspath(lockfile))
