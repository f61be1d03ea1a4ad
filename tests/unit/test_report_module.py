"""upkeep.runbooks.report: main() with real arguments, check mode and clear failures."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pytest
import yaml

from ansible_collections.upkeep.runbooks.plugins.modules import report as report_module
from tests.unit.module_helpers import run_module_main

REPO = Path(__file__).resolve().parents[2]
TS = "2024-05-01T02:30:00Z"


def res(check, host, status, value=None, threshold=None, message="m"):  # noqa: PLR0917 - mirrors result()
    return {"check": check, "host": host, "status": status, "value": value, "threshold": threshold,
            "message": message}


def args(tmp_path, **over):
    base = {
        "cadence": "daily",
        "results": [
            res("db_reachable", "db1", "ok", True),
            res("replication_lag_seconds", "db2", "fail", 900, {"warn": 30, "fail": 300},
                "replication lag is 900 s, at or above the fail limit of 300 s"),
            res("celery_queue_depth", "app1", "warn", 740, {"warn": 500}, "queue is 740"),
        ],
        "hosts": ["db1", "db2", "app1", "dr1"],
        "dest": str(tmp_path / "reports"),
        "run": {"playbook": "playbooks/daily.yml", "inventory": "inventories/lab/hosts.yml"},
        "timestamp": TS,
    }
    base.update(over)
    return base


def test_writes_report_and_returns_everything_documented(tmp_path):
    result = run_module_main(report_module, args(tmp_path))
    assert result.exit_code == 0, result
    assert result["changed"] is True
    run_dir = tmp_path / "reports" / "daily" / "20240501T023000Z"
    assert result["dir"] == str(run_dir)
    assert result["json_path"] == str(run_dir / "report.json")
    assert result["html_path"] == str(run_dir / "report.html")
    assert result["latest"] == str(tmp_path / "reports" / "daily" / "latest")
    assert os.readlink(result["latest"]) == "20240501T023000Z"
    assert result["summary"] == {
        "total": 4, "ok": 1, "warn": 1, "fail": 2, "status": "fail",
        "hosts": {"app1": "warn", "db1": "ok", "db2": "fail", "dr1": "fail"},
    }
    assert result["failures"] == [
        {"host": "db2", "check": "replication_lag_seconds",
         "message": "replication lag is 900 s, at or above the fail limit of 300 s"},
        {"host": "dr1", "check": "host_results_missing",
         "message": "dr1: no check results were collected (host failed or was unreachable before any check ran)"},
    ]
    assert result["warns"] == [{"host": "app1", "check": "celery_queue_depth", "message": "queue is 740"}]
    assert "warnings" not in result  # reserved for Ansible's own warnings

    data = json.loads(Path(result["json_path"]).read_text())
    assert data["summary"] == result["summary"]
    assert data["run"]["check_mode"] is False
    assert data["run"]["playbook"] == "playbooks/daily.yml"
    assert data["run"]["controller_user"]
    assert data["run"]["ansible_version"]


def test_return_keys_match_documentation():
    documented = set(yaml.safe_load(report_module.RETURN))
    assert documented == {"dir", "json_path", "html_path", "latest", "summary", "failures", "warns", "history",
                          "changes", "capacity"}


def test_history_and_capacity_come_back(tmp_path):
    first = run_module_main(report_module, args(tmp_path))
    assert first.exit_code == 0, first
    second = run_module_main(report_module, args(tmp_path, capacity="summary", timestamp="2024-05-02T02:30:00Z"))
    assert second.exit_code == 0, second
    assert second["history"]["recorded"] is True and second["history"]["runs"] == 2
    assert second["changes"]["previous_at"] is not None
    assert "verdicts" in second["capacity"]


def test_check_mode_does_not_record_history(tmp_path):
    result = run_module_main(report_module, args(tmp_path), check_mode=True)
    assert result.exit_code == 0, result
    assert result["history"]["recorded"] is False
    assert not Path(result["history"]["path"]).exists()


@pytest.mark.parametrize("policy, fragment", [
    ({"keep": 3}, "history_policy has unknown key 'keep'"),
    ({"full_days": "soon"}, "history_policy.full_days must be a whole number"),
    ({"max_runs": -1}, "history_policy.max_runs must not be negative"),
])
def test_bad_history_policy_fails_clearly(tmp_path, policy, fragment):
    result = run_module_main(report_module, args(tmp_path, history_policy=policy))
    assert result["failed"] is True and result["msg"].startswith("Failed to write report: ")
    assert fragment in result["msg"]


def test_check_mode_still_writes_and_records_it(tmp_path):
    result = run_module_main(report_module, args(tmp_path, run={"check_mode": False}), check_mode=True)
    assert result.exit_code == 0, result
    assert result["changed"] is True
    data = json.loads(Path(result["json_path"]).read_text())
    assert data["run"]["check_mode"] is True  # the module's own check mode wins over the caller's
    assert Path(result["html_path"]).is_file()


@pytest.mark.parametrize("given, module_check_mode, recorded", [
    (True, False, True),      # task forced check_mode: false inside a --check run, caller passed ansible_check_mode
    ("true", False, True),
    (False, False, False),
    ("no", False, False),
    (None, True, True),
    ("bogus", False, False),
])
def test_check_mode_is_true_if_either_side_says_so(tmp_path, given, module_check_mode, recorded):
    result = run_module_main(report_module, args(tmp_path, run={"check_mode": given}), check_mode=module_check_mode)
    data = json.loads(Path(result["json_path"]).read_text())
    assert data["run"]["check_mode"] is recorded


def test_given_run_metadata_is_kept(tmp_path):
    run = {"controller_user": "awx", "ansible_version": "2.19.0", "limit": "db*", "awx_job_id": 17}
    result = run_module_main(report_module, args(tmp_path, run=run))
    data = json.loads(Path(result["json_path"]).read_text())
    assert data["run"] == dict(run, check_mode=False)


def test_second_run_in_the_same_second_gets_a_suffix(tmp_path):
    first = run_module_main(report_module, args(tmp_path))
    second = run_module_main(report_module, args(tmp_path))
    assert second["dir"] == first["dir"] + "-2"
    assert os.readlink(second["latest"]) == "20240501T023000Z-2"


def test_secrets_never_reach_files_or_the_result(tmp_path):
    results = [res("vault_login", "app1", "warn", {"token": "hvs.TOPSECRET", "ttl": 5},
                   {"password": "hunter2"}, "login as app")]
    result = run_module_main(report_module, args(tmp_path, results=results, run={"db_password": "hunter2"}))
    assert result.exit_code == 0, result
    assert "TOPSECRET" not in result.stdout and "hunter2" not in result.stdout
    for path in (result["json_path"], result["html_path"]):
        text = Path(path).read_text()
        assert "TOPSECRET" not in text and "hunter2" not in text
    echoed = result["invocation"]["module_args"]["results"][0]
    assert echoed["value"]["token"] == "********"


def test_malformed_results_are_reported_not_fatal(tmp_path):
    results = ["oops", [res("a", "db1", "ok")], {"check": "x", "host": "db1", "status": "maybe"}]
    result = run_module_main(report_module, args(tmp_path, results=results, hosts=[]))
    assert result.exit_code == 0, result
    assert [f["check"] for f in result["failures"]] == ["report_invalid_result", "report_invalid_result"]
    assert result["summary"]["total"] == 3


@pytest.mark.parametrize("blocker", ["file", "file/below"])
def test_unwritable_dest_fails_clearly_without_traceback(tmp_path, blocker):
    (tmp_path / "file").write_text("not a directory")
    result = run_module_main(report_module, args(tmp_path, dest=str(tmp_path / blocker)))
    assert result.exit_code == 1
    assert result["failed"] is True
    assert result["msg"].startswith("Failed to write report: ")
    assert "is not a directory" in result["msg"]
    assert "Traceback" not in result.stdout
    assert "exception" not in result


def test_permission_denied_is_reported_with_the_path(tmp_path):
    error = PermissionError(13, "Permission denied", "/srv/reports/daily")
    with mock.patch("ansible_collections.upkeep.runbooks.plugins.module_utils._report._ensure_dir",
                    side_effect=error):
        result = run_module_main(report_module, args(tmp_path))
    assert result["failed"] is True
    assert result["msg"] == "Failed to write report: /srv/reports/daily: Permission denied"
    assert "Traceback" not in result["msg"]


def test_unexpected_error_still_fails_with_the_house_message(tmp_path):
    with mock.patch.object(report_module, "run_report", side_effect=RuntimeError("boom")):
        result = run_module_main(report_module, args(tmp_path))
    assert result["failed"] is True
    assert result["msg"] == "Failed to write report: RuntimeError: boom"
    assert "Traceback" not in result["msg"]


@pytest.mark.parametrize("over, fragment", [
    ({"cadence": "Daily Run"}, "cadence 'Daily Run' must contain only a-z, 0-9, '_' and '-'"),
    ({"cadence": "../etc"}, "cadence '../etc' must contain only"),
    ({"timestamp": "last tuesday"}, "timestamp 'last tuesday' is not an ISO 8601 date and time"),
])
def test_bad_input_fails_clearly(tmp_path, over, fragment):
    result = run_module_main(report_module, args(tmp_path, **over))
    assert result["failed"] is True
    assert result["msg"].startswith("Failed to write report: ")
    assert fragment in result["msg"]
    assert not (tmp_path / "reports").exists()


def test_missing_required_option_is_ansibles_own_message(tmp_path):
    result = run_module_main(report_module, {"cadence": "daily"})
    assert result["failed"] is True
    assert "results" in result["msg"]


@pytest.mark.skipif(not shutil.which("ansible-playbook", path=os.path.dirname(sys.executable)),
                    reason="ansible-playbook not installed next to this Python")
def test_playbook_end_to_end_with_filters_and_module(tmp_path):
    """The collection as Ansible loads it: FQCN filters in templates, the module through AnsiballZ."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(textwrap.dedent("""\
        - hosts: localhost
          gather_facts: false
          vars:
            mounts:
              - {mount: /, device: /dev/vda1, fstype: ext4, size_total: 42949672960, size_available: 4294967296,
                 inode_total: 2621440, inode_available: 2000000}
              - {mount: /var/lib/postgresql, device: /dev/vdb1, fstype: xfs, size_total: 107374182400,
                 size_available: 53687091200, inode_total: 52428800, inode_available: 52000000}
          tasks:
            - name: Build results with the filters
              ansible.builtin.set_fact:
                results: >-
                  {{ (mounts | upkeep.runbooks.disk_checks(inventory_hostname,
                        {'database': '/var/lib/postgresql/15/main', 'logs': '/var/log'}))
                     + ['db_reachable' | upkeep.runbooks.check_result(inventory_hostname, 'ok', value=true)]
                     + [12.5 | upkeep.runbooks.check_evaluate('replication_lag_seconds', inventory_hostname,
                                                             warn=30, fail=300, unit='s')] }}
            - name: Write the report
              upkeep.runbooks.report:
                cadence: daily
                results: "{{ results }}"
                hosts: "{{ ansible_play_hosts_all + ['ghost'] }}"
                dest: "{{ report_dest }}"
                run:
                  playbook: play.yml
              delegate_to: localhost
              run_once: true
              register: report
            - name: Show the outcome for the test
              ansible.builtin.copy:
                content: "{{ report | to_json }}"
                dest: "{{ report_dest }}/outcome.json"
                mode: "0600"
        """))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_NOCOLOR="1",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_REMOTE_TEMP=str(tmp_path / "rtmp"))
    dest = tmp_path / "reports"
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", f"report_dest={dest}", str(playbook)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outcome = json.loads((dest / "outcome.json").read_text())
    assert outcome["changed"] is True
    assert outcome["summary"]["fail"] == 2  # logs on / with 10 % free, and the ghost host
    assert outcome["summary"]["hosts"] == {"ghost": "fail", "localhost": "fail"}
    checks = {(f["host"], f["check"]) for f in outcome["failures"]}
    assert checks == {("localhost", "disk_free:logs"), ("ghost", "host_results_missing")}
    data = json.loads(Path(outcome["json_path"]).read_text())
    lag = next(x for x in data["results"] if x["check"] == "replication_lag_seconds")
    assert lag["threshold"] == {"warn": 30, "fail": 300, "unit": "s"}
    database = next(x for x in data["results"] if x["check"] == "disk_free:database")
    assert database["value"]["mount"] == "/var/lib/postgresql"
    assert database["status"] == "ok"
