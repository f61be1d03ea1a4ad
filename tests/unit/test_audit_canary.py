"""Pure parts of the dependency audit (_audit) and the log-shipping canary (_canary)."""

import datetime
import json

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _audit, _canary

TODAY = datetime.date(2026, 12, 2)


def _finding(fid, package="django", aliases=(), severity="unknown"):
    return {"id": fid, "package": package, "aliases": list(aliases), "severity": severity}


def test_ignores_need_reason_and_date():
    with pytest.raises(_audit.AuditError, match=r"ignore\[0\] needs a non-empty reason"):
        _audit.check_ignores([{"id": "X", "reason": "", "expires": "2027-01-01"}])
    with pytest.raises(_audit.AuditError, match=r"ignore\[1\]\.expires must be a date"):
        _audit.check_ignores([{"id": "X", "reason": "r", "expires": "2027-01-01"},
                              {"id": "Y", "reason": "r", "expires": "2027-13-01"}])


def test_ignore_by_alias_per_package_and_expiry():
    findings = [_finding("PYSEC-1", aliases=["CVE-1"]), _finding("GHSA-a", package="lodash", severity="high"),
                _finding("PYSEC-2")]
    ignores = _audit.check_ignores([
        {"id": "CVE-1", "reason": "r1", "expires": "2026-12-02"},                       # last day: holds
        {"id": "GHSA-a", "reason": "r2", "expires": "2027-01-01", "package": "minimist"},  # other package
        {"id": "PYSEC-2", "reason": "r3", "expires": "2026-12-01"},                     # expired yesterday
        {"id": "PYSEC-9", "reason": "r4", "expires": "2027-01-01"},                     # unused
    ])
    expired, unused = _audit.apply_ignores(findings, ignores, TODAY)
    assert [f["ignored"] for f in findings] == [True, False, False]
    assert findings[2]["ignore"] == {"reason": "r3", "expires": "2026-12-01", "expired": True}
    assert [e["id"] for e in expired] == ["PYSEC-2"]
    assert [e["id"] for e in unused] == ["GHSA-a", "PYSEC-9"]
    assert _audit.counts(findings) == {"total": 3, "open": 2, "ignored": 1, "open_by_severity": {
        "critical": 0, "high": 1, "moderate": 0, "low": 0, "info": 0, "unknown": 1}}


def test_pip_audit_output_and_errors():
    out = json.dumps({"dependencies": [
        {"name": "django", "version": "4.2.10", "vulns": [{"id": "PYSEC-2024-47", "fix_versions": ["4.2.11"],
                                                           "aliases": ["CVE-2024-27351"], "description": "d"}]},
        {"name": "local-pkg", "skip_reason": "not on PyPI"}], "fixes": []})
    findings, packages, skipped = _audit.parse_pip_audit(out, "", "req.txt")
    assert packages == 1 and skipped == [{"package": "local-pkg", "reason": "not on PyPI"}]
    assert findings[0]["fix_versions"] == ["4.2.11"] and findings[0]["aliases"] == ["CVE-2024-27351"]
    with pytest.raises(_audit.AuditError, match=r"^Failed to audit req.txt with pip-audit: ConnectionError: x$"):
        _audit.parse_pip_audit("", "Traceback\n  ...\nConnectionError: x\n", "req.txt")


def test_npm_audit_error_report_is_named():
    with pytest.raises(_audit.AuditError, match="ENOLOCK"):
        _audit.parse_npm_audit(json.dumps({"error": {"code": "ENOLOCK", "summary": "needs a lockfile"}}), "", "x")


def test_canary_follower_reads_only_complete_new_lines(tmp_path):
    log = tmp_path / "all.log"
    log.write_text("old line\nupkeep-canary host=web1 id=aa\npartial")
    follower = _canary.Follower([str(tmp_path / "*.log")], scan_bytes=1024)
    assert [line for _p, line in follower.new_lines()] == ["old line", "upkeep-canary host=web1 id=aa"]
    with open(log, "a") as handle:
        handle.write(" done\nnext\n")
    assert [line for _p, line in follower.new_lines()] == ["partial done", "next"]
    # Started near the end of a big file (the last 8 bytes: "ne\nnext\n"): the cut line is skipped, not half-read.
    follower = _canary.Follower([str(log)], scan_bytes=8)
    assert [line for _p, line in follower.new_lines()] == ["next"]


def test_canary_verify_matches_host_and_id_and_times_out(tmp_path):
    log = tmp_path / "all.log"
    log.write_text("Dec  2 x upkeep-canary: upkeep-canary host=web10 id=bb\n"
                   "Dec  2 x upkeep-canary: upkeep-canary host=web1 id=aa\n")
    clock = iter(range(100)).__next__
    arrived, missing = _canary.verify({"web1": "aa", "db1": "cc"}, [str(log)], timeout=3, interval=1,
                                      clock=clock, sleep=lambda _s: None)
    assert list(arrived) == ["web1"] and missing == ["db1"]
    with pytest.raises(_canary.CanaryError, match="host name"):
        _canary.new_line("web 1")
