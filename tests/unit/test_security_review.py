"""Pure helpers of the security review: log parsing and the last-seen state, approvals, lock-out rules,
pg_hba address classes, header and CORS findings, the report filters, and documentation of the modules."""

import datetime
import json
import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.upkeep.runbooks.plugins.filter import security
from ansible_collections.upkeep.runbooks.plugins.module_utils import _access, _http_review, _tls
from ansible_collections.upkeep.runbooks.plugins.modules import (
    access_review,
    access_revoke,
    http_security_review,
    tls_review,
)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("line,user,moment", [
    ("2026-11-30 08:00:01.123 UTC [42] LOG:  connection authorized: user=report_ro database=app application_name=psql",
     "report_ro", datetime.datetime(2026, 11, 30, 8, 0, 1, tzinfo=UTC)),
    ("2026-11-30 09:00:01 +02 [42] LOG:  replication connection authorized: user=replicator application_name=s",
     "replicator", datetime.datetime(2026, 11, 30, 7, 0, 1, tzinfo=UTC)),
    ("2026-11-30 09:00:01.5 Europe/Berlin [1] LOG:  connection authorized: user=\"odd name\" database=x",
     "odd", datetime.datetime(2026, 11, 30, 8, 0, 1, tzinfo=UTC)),
])
def test_connection_lines(line, user, moment):
    assert _access.parse_connection_line(line) == (user.strip('"'), moment)


@pytest.mark.parametrize("line", [
    "2026-11-30 08:00:01.123 UTC [42] LOG:  connection received: host=127.0.0.1 port=5000",
    "connection authorized: user=x database=y",  # no timestamp prefix: cannot be dated
    "",
])
def test_other_lines_are_ignored(line):
    assert _access.parse_connection_line(line) is None


def test_abbreviation_falls_back_to_log_timezone():
    zone = datetime.timezone(datetime.timedelta(hours=1))
    user, moment = _access.parse_connection_line(
        "2026-11-30 09:00:00 CET [1] LOG:  connection authorized: user=a database=b", zone)
    assert (user, moment) == ("a", datetime.datetime(2026, 11, 30, 8, 0, 0, tzinfo=UTC))


def line(moment, user):
    return "%s UTC [1] LOG:  connection authorized: user=%s database=x\n" % (moment.strftime("%Y-%m-%d %H:%M:%S"), user)


def test_scan_logs_resumes_skips_partial_lines_and_restarts_after_rotation(tmp_path):
    log = tmp_path / "pg.log"
    log.write_text(line(NOW - datetime.timedelta(days=3), "a") + "2026-12-01 10:00:00 UTC [1] LOG:  connection auth")
    state = _access.empty_state(NOW)
    _access.scan_logs([str(tmp_path / "*.log")], state)
    assert state["last_seen"] == {"a": "2026-11-28T12:00:00Z"}
    first_offset = state["logs"][str(log)]["offset"]
    with open(log, "a") as handle:  # the half line is completed, one more follows
        handle.write("orized: user=b database=x\n" + line(NOW - datetime.timedelta(days=5), "a"))
    _access.scan_logs([str(log)], state)
    assert state["last_seen"] == {"a": "2026-11-28T12:00:00Z", "b": "2026-12-01T10:00:00Z"}  # older a kept newer
    assert state["logs"][str(log)]["offset"] > first_offset
    log.unlink()
    log.write_text(line(NOW - datetime.timedelta(days=1), "c"))  # rotated: new inode, shorter file
    _access.scan_logs([str(log)], state)
    assert state["last_seen"]["c"] == "2026-11-30T12:00:00Z"


def test_state_file_round_trip_is_0600(tmp_path):
    path = tmp_path / "state.json"
    state, existed = _access.load_state(str(path), NOW)
    assert not existed and state["tracking_since"] == "2026-12-01T12:00:00Z"
    _access.save_state(str(path), state)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert _access.load_state(str(path), NOW)[0] == state
    path.write_text("{not json")
    with pytest.raises(_access.AccessError, match=r"^Failed to read the last-seen state file "):
        _access.load_state(str(path), NOW)


def test_approvals(tmp_path):
    file = tmp_path / "a.yml"
    file.write_text("approvals:\n  - {id: x, approved_by: j.doe, expires: '2026-12-31'}\n")
    items = _access.load_approvals([{"id": "y", "approved_by": "k", "expires": "2026-12-01T10:00:00Z"}], str(file))
    assert [(a["id"], a["expires"]) for a in items] == [
        ("y", datetime.datetime(2026, 12, 1, 10, 0, tzinfo=UTC)),
        ("x", datetime.datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))]
    with pytest.raises(_access.AccessError, match=r"^Failed to read approval 1 \(z\): expires 'soon' is not a date"):
        _access.load_approvals([{"id": "z", "approved_by": "k", "expires": "soon"}], None)
    with pytest.raises(_access.AccessError, match=r"^Failed to read the approval file .*: expected a list"):
        file.write_text("approvals: 3\n")
        _access.load_approvals([], str(file))


def test_approval_file_json_needs_no_pyyaml(tmp_path, monkeypatch):
    # Hosts without python3-yaml (the lab image) read a JSON approval file; a YAML one is a clear error.
    monkeypatch.setitem(__import__("sys").modules, "yaml", None)
    file = tmp_path / "a.json"
    file.write_text(json.dumps({"approvals": [{"id": "x", "approved_by": "j.doe", "expires": "2026-12-31"}]}))
    assert [a["id"] for a in _access.load_approvals([], str(file))] == ["x"]
    file.write_text("approvals:\n  - {id: x, approved_by: j.doe, expires: '2026-12-31'}\n")
    with pytest.raises(_access.AccessError, match=r"^Failed to read the approval file .*: not JSON, and reading YAML "
                                                  r"needs PyYAML \(python3-yaml\)"):
        _access.load_approvals([], str(file))


def test_lockout_rules():
    protected = {"app_blue": "app", "postgres": "admin", "monitor": "protected"}
    nologin = {"kind": "pg_role_attribute", "attribute": "LOGIN"}
    reason = _access.lockout_reason(dict(nologin, role="app_blue"), protected)
    assert "the login the application currently uses" in reason
    assert "a login listed in protect_logins" in _access.lockout_reason(dict(nologin, role="monitor"), protected)
    assert _access.lockout_reason(dict(nologin, role="legacy"), protected) is None
    nosuper = {"kind": "pg_role_attribute", "attribute": "SUPERUSER"}
    assert _access.lockout_reason(dict(nosuper, role="app_blue"), protected) is None  # the fix the finding asks for
    assert "admin login" in _access.lockout_reason(dict(nosuper, role="postgres"), protected)
    member = {"kind": "pg_membership", "group": "pg_read_all_data", "member": "postgres"}
    assert "admin login" in _access.lockout_reason(member, protected)


@pytest.mark.parametrize("address,netmask,loopback", [
    ("127.0.0.1", "255.255.255.255", True), ("127.0.0.0", "255.0.0.0", True), ("::1", None, True),
    ("0.0.0.0", "0.0.0.0", False),  # noqa: S104 - a pg_hba address, nothing binds
    ("10.0.0.0", "255.0.0.0", False), ("all", None, False),
    ("samenet", None, False), (".example.com", None, False), ("127.0.0.0", "254.0.0.0", False),
])
def test_hba_loopback(address, netmask, loopback):
    assert _tls._loopback(address, netmask) is loopback


def test_header_and_cors_findings():
    good = {"strict-transport-security": "max-age=31536000", "content-security-policy": "default-src 'self'; "
            "frame-ancestors 'none'", "x-content-type-options": "nosniff", "referrer-policy": "same-origin"}
    assert _http_review.header_findings("s", "https://x/", good) == []  # CSP frame-ancestors is frame protection
    short = dict(good, **{"strict-transport-security": "max-age=300"})
    found = _http_review.header_findings("s", "u", short)
    assert [(f["id"], f["severity"]) for f in found] == [("http:s:hsts", "medium")]
    star = {"access-control-allow-origin": "*"}
    assert _http_review.cors_findings("s", "u", star)[0]["severity"] == "low"
    star_creds = dict(star, **{"access-control-allow-credentials": "true"})
    assert _http_review.cors_findings("s", "u", star_creds)[0]["severity"] == "high"
    assert _http_review.cors_findings("s", "u", {"access-control-allow-origin": "https://shop.example.com"}) == []
    assert _http_review.redirect_findings("s", "http://x/", 301, {"location": "https://x/"}) == []
    assert _http_review.redirect_findings("s", "http://x/", 301, {"location": "http://y/"})[0]["id"] == \
        "http:s:https-redirect"


def test_security_findings_filter():
    out = security.security_findings([
        {"id": "pg:superuser:a", "severity": "high", "subject": "a", "summary": "role a has SUPERUSER",
         "fix": 'ALTER ROLE "a" NOSUPERUSER;'},
        {"id": "vault:password-age:p", "severity": "medium", "subject": "u", "summary": "old", "fix": None,
         "fix_command": "rotate"}], "db1")
    assert [(r["check"], r["status"]) for r in out] == [("security_review:pg:superuser:a", "fail"),
                                                        ("security_review:vault:password-age:p", "warn")]
    assert out[0]["message"] == 'role a has SUPERUSER. Fix: ALTER ROLE "a" NOSUPERUSER;'
    with pytest.raises(AnsibleFilterError, match="without an id"):
        security.security_findings([{"severity": "high"}], "db1")


def test_django_deploy_checks_filter():
    text = ("System check identified some issues:\n\nWARNINGS:\n"
            "?: (security.W004) You have not set a value for the SECURE_HSTS_SECONDS setting.\n"
            "sampleapp.Order: (models.E001) broken.\n\nSystem check identified 2 issues (0 silenced).\n")
    out = security.django_deploy_checks(text, "app1")
    assert [(r["check"], r["status"]) for r in out] == [
        ("security_review:django-deploy:security.W004", "warn"), ("security_review:django-deploy:models.E001", "fail")]
    assert out[1]["message"] == "broken. (sampleapp.Order)"
    assert security.django_deploy_checks("System check identified no issues (0 silenced).\n", "app1") == []


@pytest.mark.parametrize("module", [access_review, access_revoke, tls_review, http_security_review])
def test_documentation_parses_and_examples_are_yaml(module):
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc["attributes"]["check_mode"]["support"] in ("full", "partial")
    returned = yaml.safe_load(module.RETURN)
    assert all(spec.get("description") for spec in returned.values())
    assert isinstance(yaml.safe_load(module.EXAMPLES), list)


def test_review_finding_keys_are_documented():
    documented = set(yaml.safe_load(access_review.RETURN)["findings"]["contains"])
    item = _access.finding("i", "postgresql", "c", "low", "s", "m")
    assert set(item) == documented
    assert json.dumps(item)
