"""run_lock against the OpenBao on loopback: take, refuse, re-enter, release, two contenders, expiry, policy."""

import concurrent.futures
import datetime
import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.integration.module_runner import REPO_ROOT, run_module

pytestmark = pytest.mark.integration

LOCK_POLICY = (
    'path "secret/data/upkeep/locks/*" { capabilities = ["create", "read", "update"] }\n'
    'path "secret/metadata/upkeep/locks/*" { capabilities = ["read"] }\n'
)


def lock_name():
    return "env-%s" % uuid.uuid4().hex[:10]


def args(server, name, **extra):
    out = {"url": server.url, "token": server.token, "name": name}
    out.update(extra)
    return out


def versions(client, name):
    answer = client.adapter.get("/v1/secret/metadata/upkeep/locks/%s" % name)
    return int(answer["data"]["current_version"])


def record(client, name):
    return client.adapter.get("/v1/secret/data/upkeep/locks/%s" % name)["data"]["data"]


def clean(res, server):
    assert "Traceback" not in res.output
    assert server.token not in res.output


def test_take_refuse_reenter_release(vault_server, vault_client):
    name = lock_name()
    first = run_module("run_lock", args(vault_server, name, holder="AWX job 17 (upkeep rotate)", run_id="awx-17"))
    assert not first.failed and first["changed"], first
    assert first["lock"]["state"] == "held" and first["lock"]["holder"] == "AWX job 17 (upkeep rotate)"
    assert first["previous"] == {} and first["path"] == "secret/upkeep/locks/%s" % name
    assert versions(vault_client, name) == 1

    other = run_module("run_lock", args(vault_server, name, holder="alice@laptop", run_id="cli-1"))
    assert other.failed and not other["changed"]
    assert other["msg"].startswith("Failed to acquire run lock %s: held by AWX job 17 (upkeep rotate) (run awx-17)"
                                   % name), other["msg"]
    assert other["holder"]["run_id"] == "awx-17"
    assert versions(vault_client, name) == 1, "a refused run wrote to the lock"
    clean(other, vault_server)

    again = run_module("run_lock", args(vault_server, name, holder="AWX job 17 (upkeep rotate)", run_id="awx-17"))
    assert not again.failed and not again["changed"], again
    assert versions(vault_client, name) == 1

    steal = run_module("run_lock", args(vault_server, name, state="released", run_id="cli-1"))
    assert steal.failed and "Failed to release run lock %s: held by AWX job 17" % name in steal["msg"]
    assert versions(vault_client, name) == 1

    released = run_module("run_lock", args(vault_server, name, state="released", run_id="awx-17"))
    assert not released.failed and released["changed"], released
    assert record(vault_client, name)["state"] == "released"
    assert run_module("run_lock", args(vault_server, name, state="released", run_id="awx-17"))["changed"] is False

    after = run_module("run_lock", args(vault_server, name, holder="alice@laptop", run_id="cli-1"))
    assert not after.failed and after["changed"] and not after["taken_over"]
    assert record(vault_client, name)["holder"] == "alice@laptop"


def test_check_mode_writes_nothing(vault_server, vault_client):
    name = lock_name()
    res = run_module("run_lock", args(vault_server, name, holder="h1", run_id="r1"), check_mode=True)
    assert not res.failed and res["changed"] and res["msg"].startswith("would have: ")
    assert vault_client.adapter.get("/v1/secret/metadata/upkeep/locks/%s" % name, raise_exception=False) \
        .status_code == 404
    run_module("run_lock", args(vault_server, name, holder="h1", run_id="r1"))
    refused = run_module("run_lock", args(vault_server, name, holder="h2", run_id="r2"), check_mode=True)
    assert refused.failed and "held by h1" in refused["msg"]
    released = run_module("run_lock", args(vault_server, name, state="released", run_id="r1"), check_mode=True)
    assert released["changed"] and record(vault_client, name)["state"] == "held"


def test_two_contenders_at_once(vault_server, vault_client):
    name = lock_name()
    contenders = ["controller-%d" % n for n in range(6)]

    def take(holder):
        return run_module("run_lock", args(vault_server, name, holder=holder, run_id=holder))

    with concurrent.futures.ThreadPoolExecutor(len(contenders)) as pool:
        results = dict(zip(contenders, pool.map(take, contenders)))
    winners = [h for h, res in results.items() if not res.failed]
    assert len(winners) == 1, {h: r.get("msg") for h, r in results.items()}
    winner = winners[0]
    assert record(vault_client, name)["run_id"] == winner
    assert versions(vault_client, name) == 1
    for holder, res in results.items():
        if holder != winner:
            assert res["msg"].startswith("Failed to acquire run lock %s: held by %s (run %s)" % (name, winner, winner))
            clean(res, vault_server)


def test_expired_lock_is_taken_over(vault_server, vault_client):
    name = lock_name()
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=9)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    crashed = {"schema": "1", "state": "held", "name": name, "holder": "AWX job 3 (upkeep patch)", "run_id": "awx-3",
               "acquired_at": long_ago.strftime(stamp),
               "expires_at": (long_ago + datetime.timedelta(hours=8)).strftime(stamp)}
    vault_client.adapter.post("/v1/secret/data/upkeep/locks/%s" % name, json={"data": crashed, "options": {"cas": 0}})
    res = run_module("run_lock", args(vault_server, name, holder="AWX job 4 (upkeep rotate)", run_id="awx-4"))
    assert not res.failed and res["changed"] and res["taken_over"], res
    assert res["previous"]["run_id"] == "awx-3"
    assert "the lock of AWX job 3 (upkeep patch) (run awx-3)" in res["msg"] and "had expired" in res["msg"]
    assert record(vault_client, name)["run_id"] == "awx-4" and versions(vault_client, name) == 2
    # The crashed run coming back cannot release the new holder's lock.
    late = run_module("run_lock", args(vault_server, name, state="released", run_id="awx-3"))
    assert late.failed and "held by AWX job 4" in late["msg"]


def test_short_ttl_expires(vault_server, vault_client):
    name = lock_name()
    assert not run_module("run_lock", args(vault_server, name, holder="h1", run_id="r1", ttl="1s")).failed
    deadline = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=10)
    while True:
        res = run_module("run_lock", args(vault_server, name, holder="h2", run_id="r2"))
        if not res.failed or datetime.datetime.now(datetime.timezone.utc) > deadline:
            break
    assert not res.failed and res["taken_over"], res


def test_force_release(vault_server, vault_client):
    name = lock_name()
    run_module("run_lock", args(vault_server, name, holder="dead run", run_id="r1"))
    res = run_module("run_lock", args(vault_server, name, state="released", run_id="operator", force=True))
    assert not res.failed and res["changed"] and record(vault_client, name)["state"] == "released"


def test_documented_policy_is_enough(vault_server, vault_client):
    vault_server.put_policy("upkeep-lock", LOCK_POLICY)
    token = vault_server.token_with(["upkeep-lock"])
    name = lock_name()
    base = {"url": vault_server.url, "token": token, "name": name}
    assert not run_module("run_lock", dict(base, holder="h", run_id="r")).failed
    assert not run_module("run_lock", dict(base, state="released", run_id="r")).failed
    assert not run_module("run_lock", dict(base, holder="h", run_id="r")).failed


def test_errors_are_sentences(vault_server):
    res = run_module("run_lock", {"url": "http://127.0.0.1:9", "token": "not-a-real-token", "name": "production",
                                  "holder": "h"})
    assert res.failed and res["msg"].startswith("Failed to "), res
    assert "Traceback" not in res.output and "not-a-real-token" not in res.output
    bad = run_module("run_lock", args(vault_server, "production", holder="h", ttl="soon"))
    assert bad.failed and bad["msg"].startswith("Failed to read ttl:")
    assert run_module("run_lock", args(vault_server, "a/b", holder="h"))["msg"].startswith("Failed to use run lock")


def run_playbook(tmp_path, server, name, body, extra_env=None):
    """ansible-playbook on a playbook in playbooks/'s place that imports the lock plays."""
    path = REPO_ROOT / "playbooks" / (".test-lock-%s.yml" % uuid.uuid4().hex[:8])
    path.write_text(body)
    try:
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), **server.env)
        env.update(extra_env or {})
        vars_ = json.dumps({"upkeep_run_lock_name": name, "upkeep_vault_connection": {},
                            "marker": str(tmp_path / "changed"), "ansible_python_interpreter": sys.executable})
        return subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                               "-c", "local", str(path), "-e", vars_], capture_output=True, text=True, env=env,
                              cwd=REPO_ROOT, timeout=300, check=False)
    finally:
        path.unlink()


CHANGE = """
- name: Change the environment
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Leave a mark
      ansible.builtin.copy:
        content: changed
        dest: "{{ marker }}"
        mode: "0600"
"""
RUNBOOK = ("---\n- ansible.builtin.import_playbook: run_lock_acquire.yml\n" + CHANGE
           + "- ansible.builtin.import_playbook: run_lock_release.yml\n")


def test_runbook_takes_and_gives_back_the_lock(tmp_path, vault_server, vault_client):
    name = lock_name()
    res = run_playbook(tmp_path, vault_server, name, RUNBOOK)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "changed").exists()
    assert record(vault_client, name)["state"] == "released" and versions(vault_client, name) == 2


def test_nested_runbooks_take_the_lock_once(tmp_path, vault_server, vault_client):
    name = lock_name()
    nested = ("---\n- ansible.builtin.import_playbook: run_lock_acquire.yml\n" + RUNBOOK.replace("---\n", "")
              + "- ansible.builtin.import_playbook: run_lock_release.yml\n")
    res = run_playbook(tmp_path, vault_server, name, nested)
    assert res.returncode == 0, res.stdout + res.stderr
    assert record(vault_client, name)["state"] == "released" and versions(vault_client, name) == 2


def test_runbook_stops_before_changing_anything_when_the_lock_is_held(tmp_path, vault_server, vault_client):
    name = lock_name()
    run_module("run_lock", args(vault_server, name, holder="AWX job 99 (upkeep patch) by bob", run_id="awx-99"))
    res = run_playbook(tmp_path, vault_server, name, RUNBOOK)
    assert res.returncode != 0
    assert "held by AWX job 99 (upkeep patch) by bob (run awx-99)" in res.stdout
    assert not (tmp_path / "changed").exists(), "the runbook went on without the lock"
    assert record(vault_client, name)["run_id"] == "awx-99" and versions(vault_client, name) == 1
