"""The http_health, log_shipping and dependency_audit roles through ansible-playbook, against real parts.

Three inventory hosts on the local connection stand for a web host (web1, nginx in front of the
sample app, its own rsyslog forwarder), a host whose forwarder cannot reach the collector (lost1),
and the collector (logs1, a real rsyslog receiving over TCP). The dependency audit asks the
stand-in advisory service. The plays are the daily and weekly playbooks' plays with the lab's paths;
the test reads each host's result facts as the report would get them.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.advisories import AdvisoryService
from tests.fixtures.syslog import COLLECTOR_HOST, Collector, Forwarder, free_port
from tests.fixtures.web import Nginx, SampleAppUpstream
from tests.integration.module_runner import COLLECTIONS_PATH, REPO_ROOT

pytestmark = pytest.mark.integration

for _module in ("django", "gunicorn"):
    pytest.importorskip(_module, reason="the sample app's requirements (lab/app/requirements.txt) are not installed")
PIP_AUDIT = Path(sys.executable).parent / "pip-audit"
if not PIP_AUDIT.exists():
    pytest.skip("pip-audit is not installed (requirements-dev.txt pins it)", allow_module_level=True)

if shutil.which("npm") is None:
    pytest.skip("npm is not installed (it comes with Node.js on the machine image)", allow_module_level=True)

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "audit"


def _run_playbook(tmp_path, inventory, plays):
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(plays))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_PATH), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0")
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"),
         str(tmp_path / "play.yml")],
        capture_output=True, text=True, env=env, cwd=str(REPO_ROOT), timeout=400, check=False)


def test_daily_and_weekly_roles_report_the_checks(tmp_path):
    started = []
    try:
        upstream = SampleAppUpstream(tmp_path).start()
        started.append(upstream)
        nginx = Nginx(tmp_path, upstream).start()
        started.append(nginx)
        collector = Collector(tmp_path).start()
        started.append(collector)
        web1 = Forwarder(tmp_path, "web1", collector.host, collector.port).start()
        started.append(web1)
        lost1 = Forwarder(tmp_path, "lost1", COLLECTOR_HOST, free_port()).start()
        started.append(lost1)
        advisories = AdvisoryService()

        # 40 requests, 4 of them 500s (10 %: at the fail limit), 4 slow ones (ranks 37-40: p95, rank 38, is one
        # of them, whatever the machine's speed), health checks.
        for path, count in (("/lab/fault/?status=200", 32), ("/lab/fault/?status=500", 4),
                            ("/api/reports/?delay=0.5", 4), ("/healthz/", 5)):
            for _ in range(count):
                nginx.get(path)
        nginx.wait_logged(45)

        local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        inventory = {"all": {"children": {
            "app": {"hosts": {"web1": dict(local, log_shipping_socket=str(web1.socket))}},
            "other": {"hosts": {"lost1": dict(local, log_shipping_socket=str(lost1.socket))}},
            "collectors": {"hosts": {"logs1": local}},
        }}}
        today = datetime.datetime.now(datetime.timezone.utc).date()
        keep = {"name": "Keep the results", "ansible.builtin.copy": {
            "content": "{{ {'http': http_health_results | default([]), 'canary': log_shipping_results | default([]),"
                       " 'audit': dependency_audit_results | default([])} | to_json }}",
            "dest": str(tmp_path / "results-{{ inventory_hostname }}.json"), "mode": "0600"}}
        plays = [
            {"name": "Daily web tier error rate and latency", "hosts": "app", "gather_facts": False,
             "roles": [{"role": "upkeep.runbooks.http_health", "vars": {
                 "http_health_log_path": str(nginx.access_log),
                 "http_health_state_file": str(tmp_path / "http-state.json"),
                 "http_health_p95_seconds_warn": 0.5,
                 "http_health_p95_seconds_fail": 60,
                 "http_health_become": False}}]},
            {"name": "Log-shipping canary", "hosts": "app:other", "gather_facts": False,
             "roles": [{"role": "upkeep.runbooks.log_shipping", "vars": {
                 "log_shipping_collector": "logs1",
                 "log_shipping_received_paths": [str(collector.received.parent / "*.log")],
                 "log_shipping_timeout_seconds": 10,
                 "log_shipping_become": False}}]},
            {"name": "Dependency audit", "hosts": "app", "gather_facts": False,
             "roles": [{"role": "upkeep.runbooks.dependency_audit", "vars": {
                 "dependency_audit_pip_requirements": [str(FIXTURES / "requirements-old.txt")],
                 "dependency_audit_npm_lockfiles": [str(FIXTURES / "frontend" / "package-lock.json")],
                 "dependency_audit_osv_url": advisories.osv_url,
                 "dependency_audit_npm_registry": advisories.npm_registry,
                 "dependency_audit_pip_audit_executable": str(PIP_AUDIT),
                 "dependency_audit_ignore": [
                     {"id": "GHSA-29mw-wpgm-hmr9", "reason": "trim() never sees user input",
                      "expires": (today + datetime.timedelta(days=30)).isoformat()},
                     {"id": "PYSEC-2018-55", "reason": "behind nginx",
                      "expires": (today - datetime.timedelta(days=1)).isoformat()}]}}]},
            {"name": "Keep what the report would read", "hosts": "app:other", "gather_facts": False,
             "tasks": [keep]},
            {"name": "Report", "hosts": "localhost", "gather_facts": False, "connection": "local",
             "roles": [{"role": "upkeep.runbooks.report", "vars": {
                 "report_cadence": "weekly", "report_host_pattern": "app:other",
                 "report_dir": str(tmp_path / "reports"), "report_history": False,
                 "report_fail_on_failed_checks": False,
                 "report_result_vars": ["http_health_results", "log_shipping_results",
                                        "dependency_audit_results"]}}]},
        ]
        proc = _run_playbook(tmp_path, inventory, plays)
        advisories.stop()
    finally:
        for part in reversed(started):
            part.stop()
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    web = json.loads((tmp_path / "results-web1.json").read_text())
    lost = json.loads((tmp_path / "results-lost1.json").read_text())

    http = {r["check"]: r for r in web["http"]}
    assert http["http_error_rate"]["status"] == "fail"
    assert http["http_error_rate"]["value"] == 10.0
    assert http["http_error_rate"]["threshold"] == {"warn": 5, "fail": 10, "unit": "%"}
    assert http["http_p95_latency"]["status"] == "warn"
    assert http["http_p95_latency"]["value"] >= 0.5
    assert http["http_p95_latency"]["threshold"] == {"warn": 0.5, "fail": 60, "unit": "s"}
    assert http["http_requests"]["value"] == 40
    assert http["http_requests"]["status"] == "ok"
    assert "5 health checks" in http["http_requests"]["message"]
    assert "slowest: /api/reports/" in http["http_requests"]["message"]

    assert [r["status"] for r in web["canary"]] == ["ok"]
    assert web["canary"][0]["host"] == "web1"
    assert [r["status"] for r in lost["canary"]] == ["fail"]
    assert lost["canary"][0]["message"].startswith("canary written on lost1 (upkeep-canary host=lost1 id=")
    assert "did not arrive at logs1 within 10 s" in lost["canary"][0]["message"]

    audit = {r["check"]: r for r in web["audit"]}
    assert audit["dependency_audit"]["status"] == "fail"
    # 13 PyPI + 3 npm advisories, one of them ignored; the expired ignore hides nothing.
    assert audit["dependency_audit"]["value"] == 15
    assert "15 open and 1 ignored advisories" in audit["dependency_audit"]["message"]
    assert "minimist 1.2.5 GHSA-xvch-5gv4-984h (fix: 1.2.8)" in audit["dependency_audit"]["message"]
    assert audit["dependency_audit_ignores"]["status"] == "fail"
    assert audit["dependency_audit_ignores"]["message"].startswith(
        "expired ignore entries (fix or renew with a new reason): PYSEC-2018-55.")
    assert lost["audit"] == [] and lost["http"] == []

    # The report has every one of them, with its status, and an HTML page.
    report_json = sorted((tmp_path / "reports").rglob("*.json"))
    report = json.loads([p for p in report_json if "history" not in p.name][0].read_text())
    text = json.dumps(report)
    for check in ("http_error_rate", "http_p95_latency", "http_requests", "log_shipping_canary", "dependency_audit",
                  "dependency_audit_ignores"):
        assert '"%s"' % check in text, check
    assert list((tmp_path / "reports").rglob("*.html"))
