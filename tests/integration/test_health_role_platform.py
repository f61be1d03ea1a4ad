"""The health role's platform checks through ansible-playbook: Redis/Celery, failed logins, CPU/memory.

The play runs upkeep.runbooks.health on localhost the way daily.yml runs it on an app host,
against a real redis-server (password, no worker running) and a generated sshd log, and
writes the host's health_results to a file: what the report would get.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.module_runner import COLLECTIONS_PATH, REPO_ROOT

pytestmark = pytest.mark.integration

PASSWORD = "role-redis-pw#1"


def run_play(tmp_path, role_vars):
    out = tmp_path / "results.json"
    play = [{
        "name": "daily health", "hosts": "localhost", "gather_facts": False,
        "roles": [{"role": "upkeep.runbooks.health", "vars": role_vars}],
        "post_tasks": [{"name": "Keep the results", "ansible.builtin.copy": {
            "content": "{{ health_results | to_json }}", "dest": str(out), "mode": "0600"}}],
    }]
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(play))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_PATH), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", "ansible_python_interpreter=%s" % sys.executable, str(playbook)],
        capture_output=True, text=True, env=env, cwd=str(REPO_ROOT), timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    return dict((item["check"], item) for item in json.loads(out.read_text())), proc


def test_role_records_platform_checks(redis_factory, tmp_path):
    redis = redis_factory(password=PASSWORD, host="127.0.12.1")
    auth_log = tmp_path / "auth.log"
    auth_log.write_text("".join(
        "Dec  2 09:00:%02d db1 sshd[%d]: Failed password for root from 192.0.2.50 port %d ssh2\n" % (i, 100 + i, i)
        for i in range(12)))
    role_vars = {
        "health_postgres_enabled": False,
        "health_disk_paths": {},
        "health_celery_enabled": True,
        "health_celery_redis_host": redis.host,
        "health_celery_redis_port": redis.port,
        "health_celery_redis_password": PASSWORD,
        "health_celery_worker_timeout": 0.5,
        "health_auth_logs": [{"kind": "sshd", "path": str(auth_log)}],
        "health_auth_state_file": str(tmp_path / "state" / "auth.json"),
        "health_auth_become": False,
        "health_resources_window": 1,
        "health_resources_interval": 0.5,
    }
    results, proc = run_play(tmp_path, role_vars)
    assert PASSWORD not in proc.stdout + proc.stderr
    assert results["host_reachable"]["status"] == "ok"
    assert results["redis_ping"]["status"] == "ok"
    assert results["celery_workers"]["status"] == "fail"  # no worker runs
    assert results["celery_queue_depth:celery"]["value"] == 0
    assert results["auth_failures"]["value"] == 12
    assert results["auth_failures_by_source"]["status"] == "warn"
    assert results["auth_failures_by_source"]["value"]["address"] == "192.0.2.50"
    assert {"host_cpu", "host_memory"} <= set(results)
    assert all(item["host"] == "localhost" for item in results.values())

    # Redis gone: the run still completes and says so.
    redis.stop()
    results, _ = run_play(tmp_path, role_vars)
    assert results["redis_ping"]["status"] == "fail"
    assert "cannot connect to Redis" in results["redis_ping"]["message"]
    assert results["auth_failures"]["value"] == 0  # counted last time, not again
