"""main() of http_log_stats, log_canary and dependency_audit with their backends mocked at module_utils."""

from unittest import mock

from ansible_collections.upkeep.runbooks.plugins.module_utils import _canary
from ansible_collections.upkeep.runbooks.plugins.modules import dependency_audit, http_log_stats, log_canary
from tests.unit.module_helpers import run_module_main

LINE = '10.0.0.1 - - [02/Dec/2026:09:00:00 +0000] "GET /a/ HTTP/1.1" 500 1 "-" "ua" 0.250 0.249\n'


def test_http_log_stats_check_mode_saves_no_position(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(LINE * 3)
    state = tmp_path / "state" / "pos.json"
    res = run_module_main(http_log_stats, {"path": str(log), "state_file": str(state)}, check_mode=True)
    assert (res["requests"], res["errors_5xx"], res["error_rate_percent"], res["p95_seconds"]) == (3, 3, 100.0, 0.25)
    assert not state.exists()
    assert any("Check mode" in note for note in res["notes"])
    res = run_module_main(http_log_stats, {"path": str(log), "state_file": str(state)})
    assert res["changed"] is True and state.exists() and oct(state.stat().st_mode & 0o777) == "0o600"


def test_http_log_stats_bad_pattern_and_state_fail_clearly(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(LINE)
    res = run_module_main(http_log_stats, {"path": str(log), "state_file": str(tmp_path / "s.json"),
                                           "static_paths": ["(unclosed"]})
    assert res.failed and res["msg"].startswith("Failed to compile the static file pattern '(unclosed'")
    (tmp_path / "s.json").write_text('{"schema": 99}')
    res = run_module_main(http_log_stats, {"path": str(log), "state_file": str(tmp_path / "s.json")})
    assert res.failed and "not a schema 1 position file" in res["msg"]


def test_log_canary_emit_failure_names_the_host():
    with mock.patch.object(_canary, "emit", side_effect=_canary.CanaryError("Failed to write the canary on app1 ...")):
        res = run_module_main(log_canary, {"mode": "emit", "name": "app1"})
    assert res.failed and res["msg"].startswith("Failed to write the canary on app1")


def test_log_canary_verify_missing_hosts():
    with mock.patch.object(_canary, "verify", return_value=({"app1": {"path": "/x", "waited_seconds": 0.1}},
                                                            ["db1", "db2"])) as verify:
        res = run_module_main(log_canary, {"mode": "verify", "expected": {"app1": "a", "db1": "b", "db2": "c"},
                                           "paths": ["/var/log/remote/*.log"], "timeout": 30})
        assert res.failed
        assert res["msg"] == ("Log-shipping canary did not arrive within 30 s from: db1, db2 "
                              "(looked in /var/log/remote/*.log)")
        assert res["missing"] == ["db1", "db2"]
        res = run_module_main(log_canary, {"mode": "verify", "expected": {"app1": "a"}, "paths": ["/x"],
                                           "fail_on_missing": False})
        assert not res.failed and verify.call_count == 2


def test_dependency_audit_needs_something_to_audit():
    res = run_module_main(dependency_audit, {})
    assert res.failed and res["msg"].startswith("Nothing to audit")


def test_dependency_audit_missing_file_fails_clearly(tmp_path):
    with mock.patch.object(dependency_audit, "_tool", return_value="/usr/bin/pip-audit"):
        res = run_module_main(dependency_audit, {"pip_requirements": [str(tmp_path / "nope.txt")]})
    assert res.failed and res["msg"] == "Failed to audit %s with pip-audit: no such file" % (tmp_path / "nope.txt")
