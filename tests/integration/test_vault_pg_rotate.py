"""vault_pg_rotate against a real PostgreSQL cluster and the Vault endpoint of tests/fixtures/vault.py.

The module runs as Ansible runs it (a separate Python process, JSON on stdin), once through
ansible-playbook at -vvv. Every test checks that Vault and PostgreSQL agree afterwards and that no
password written by the rotation shows up in what the module printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.module_runner import COLLECTIONS_PATH, REPO_ROOT, run_module
from tests.integration.vault_pg_rotate_helpers import (
    all_passwords,
    assert_agree,
    assert_no_secret,
    can_login,
    create_group,
    create_login,
    current,
    metadata,
    module_args,
    seed,
    unique,
)

pytestmark = pytest.mark.integration

MODULE = "vault_pg_rotate"


@pytest.fixture
def single(pg_cluster, vault_client):
    """A login with a seeded secret: (user, old password, path)."""
    user, old, path = unique("app"), "old-" + unique("pw"), "rot/" + unique("db")
    create_login(pg_cluster, user, old)
    seed(vault_client, path, {"username": user, "password": old, "host": "db1", "dbname": "postgres"})
    return user, old, path


@pytest.fixture
def pair(pg_cluster, vault_client):
    """blue/green logins in one owner group, blue current in Vault: (blue, green, blue pw, green pw, path)."""
    group = unique("owner")
    blue, green = group + "_blue", group + "_green"
    blue_pw, green_pw = "blue-" + unique("pw"), "green-" + unique("pw")
    create_group(pg_cluster, group)
    create_login(pg_cluster, blue, blue_pw, member_of=group)
    create_login(pg_cluster, green, green_pw, member_of=group)
    path = "rot/" + unique("pair")
    seed(vault_client, path, {"username": blue, "password": blue_pw})
    return blue, green, blue_pw, green_pw, path


def test_single_rotation(pg_cluster, vault_server, vault_client, single):
    user, old, path = single
    res = run_module(MODULE, module_args(pg_cluster, vault_server, path, username=user))
    assert res.rc == 0, res
    assert res["changed"] and res["rotated"] and not res["resumed"] and not res["rolled_back"]
    assert res["kv_version"] == 2 and res["previous_version"] == 1
    assert res["active_username"] == user == res["previous_username"]
    assert [s["status"] for s in res["steps"]] == ["done"] * 4, res["steps"]
    version, data = assert_agree(pg_cluster, vault_client, path)
    assert version == 2
    assert data["password"] != old and len(data["password"]) == 32 and data["password"].isalnum()
    assert data["host"] == "db1" and data["dbname"] == "postgres", "other fields are carried over"
    assert not can_login(pg_cluster, user, old), "the old password must stop working with strategy=single"
    meta = metadata(vault_client, path)
    assert meta["custom_metadata"]["upkeep_strategy"] == "single"
    assert meta["custom_metadata"]["upkeep_rotated_at"].endswith("Z")
    assert_no_secret([res.stdout, res.stderr, json.dumps(res)], all_passwords(vault_client, path))


def test_min_age_makes_a_second_run_idempotent(pg_cluster, vault_server, vault_client, single):
    user, _old, path = single
    args = module_args(pg_cluster, vault_server, path, username=user, min_age="1h")
    first = run_module(MODULE, args)
    assert first.rc == 0 and first["rotated"], first
    second = run_module(MODULE, args)
    assert second.rc == 0, second
    assert not second["changed"] and not second["rotated"]
    assert [s["status"] for s in second["steps"]] == ["skipped"] * 4
    assert "not due" in second["msg"] and second["kv_version"] == first["kv_version"]
    forced = run_module(MODULE, dict(args, force=True))
    assert forced["rotated"] and forced["kv_version"] == first["kv_version"] + 1, forced
    assert_agree(pg_cluster, vault_client, path)


def test_check_mode_changes_nothing(pg_cluster, vault_server, vault_client, single):
    user, old, path = single
    before = metadata(vault_client, path)
    res = run_module(MODULE, module_args(pg_cluster, vault_server, path, username=user), check_mode=True)
    assert res.rc == 0, res
    assert res["changed"] and res["rotated"] and res["kv_version"] == 2
    assert all(s["status"] == "skipped" and s["msg"].startswith("check mode") for s in res["steps"])
    after = metadata(vault_client, path)
    assert after["current_version"] == before["current_version"] == 1
    assert after["custom_metadata"] == before["custom_metadata"]
    assert can_login(pg_cluster, user, old)


def test_preflight_refuses_unknown_login_and_wrong_secret(pg_cluster, vault_server, vault_client, single):
    user, old, path = single
    res = run_module(MODULE, module_args(pg_cluster, vault_server, path, username="someone_else"))
    assert res.rc != 0 and "names the login '%s'" % user in res["msg"], res["msg"]
    missing = run_module(MODULE, module_args(pg_cluster, vault_server, "rot/" + unique("none"), username=user))
    assert missing.rc != 0 and "does not exist" in missing["msg"]
    assert can_login(pg_cluster, user, old)


def test_alternating_rotates_the_inactive_login_and_alternates(pg_cluster, vault_server, vault_client, pair):
    blue, green, blue_pw, green_pw, path = pair
    args = module_args(pg_cluster, vault_server, path, strategy="alternating", usernames=[blue, green])

    first = run_module(MODULE, args)
    assert first.rc == 0, first
    assert first["active_username"] == green and first["previous_username"] == blue
    version, data = assert_agree(pg_cluster, vault_client, path)
    assert data["username"] == green and version == 2
    assert can_login(pg_cluster, blue, blue_pw), "the previously active login keeps its password"
    assert not can_login(pg_cluster, green, green_pw)
    green_new = data["password"]

    second = run_module(MODULE, args)
    assert second.rc == 0, second
    assert second["active_username"] == blue and second["previous_username"] == green
    version, data = assert_agree(pg_cluster, vault_client, path)
    assert data["username"] == blue and version == 3
    assert can_login(pg_cluster, green, green_new), "green (active until now) still works"
    assert not can_login(pg_cluster, blue, blue_pw)
    assert metadata(vault_client, path)["custom_metadata"]["upkeep_strategy"] == "alternating"
    assert_no_secret([first.output, second.output], all_passwords(vault_client, path))


def test_alternating_preflight_needs_a_common_owner_group(pg_cluster, vault_server, vault_client):
    one, two = unique("lone"), unique("lone")
    create_login(pg_cluster, one, "pw-one-" + unique())
    create_login(pg_cluster, two, "pw-two-" + unique())
    path = "rot/" + unique("lone")
    seed(vault_client, path, {"username": one, "password": "pw"})
    res = run_module(MODULE, module_args(pg_cluster, vault_server, path, strategy="alternating",
                                         usernames=[one, two]))
    assert res.rc != 0 and "common owner group" in res["msg"], res["msg"]
    assert metadata(vault_client, path)["current_version"] == 1


def test_state_rolled_back_restores_the_previous_credential(pg_cluster, vault_server, vault_client, single):
    user, old, path = single
    args = module_args(pg_cluster, vault_server, path, username=user)
    rotated = run_module(MODULE, args)
    assert rotated.rc == 0, rotated
    back = run_module(MODULE, dict(args, state="rolled_back", rollback_version=rotated["previous_version"]))
    assert back.rc == 0, back
    assert back["rolled_back"] and not back["rotated"] and back["kv_version"] == 3
    version, data = assert_agree(pg_cluster, vault_client, path)
    assert data["password"] == old and can_login(pg_cluster, user, old)
    again = run_module(MODULE, dict(args, state="rolled_back", rollback_version=rotated["previous_version"]))
    assert again.rc == 0 and not again["changed"], again
    assert_no_secret([rotated.output, back.output, again.output], all_passwords(vault_client, path))


def test_verify_from_a_replica(pg_cluster_factory, pg_replica_factory, vault_server, vault_client):
    primary = pg_cluster_factory()
    replica = pg_replica_factory(primary)
    user, old, path = unique("rep"), "old-" + unique(), "rot/" + unique("rep")
    create_login(primary, user, old)
    seed(vault_client, path, {"username": user, "password": old})
    args = module_args(primary, vault_server, path, username=user, test_timeout=20,
                       verify_from=[{"host": replica.host, "port": replica.port}])
    res = run_module(MODULE, args)
    assert res.rc == 0, res
    assert "%s:%s" % (replica.host, replica.port) in res["steps"][2]["msg"]
    _version, data = assert_agree(primary, vault_client, path)
    assert can_login(replica, user, data["password"], port=replica.port)

    # An endpoint where the new password cannot log in: the rotation is rolled back everywhere.
    bad = dict(args, test_timeout=2, verify_from=[{"host": "127.0.0.1", "port": 1}])
    failed = run_module(MODULE, bad)
    assert failed.rc != 0 and failed["rolled_back"], failed
    assert "test step failed" in failed["msg"] and "127.0.0.1:1/postgres" in failed["msg"]
    assert [s["status"] for s in failed["steps"]] == ["rolled_back", "rolled_back", "failed", "skipped"]
    version, again = assert_agree(primary, vault_client, path)
    assert again["password"] == data["password"] and version == 4
    assert_no_secret([res.output, failed.output], all_passwords(vault_client, path))


def test_server_log_never_sees_the_password(pg_cluster_factory, vault_server, vault_client):
    cluster = pg_cluster_factory(settings={"log_statement": "all", "log_min_error_statement": "info"})
    user, old, path = unique("log"), "old-" + unique(), "rot/" + unique("log")
    create_login(cluster, user, old)
    seed(vault_client, path, {"username": user, "password": old})
    res = run_module(MODULE, module_args(cluster, vault_server, path, username=user))
    assert res.rc == 0, res
    assert "statement logging off" in res["steps"][1]["msg"]
    log = Path(cluster.logfile).read_text(encoding="utf-8", errors="replace")
    assert "SET LOCAL log_statement" in log, "log_statement=all logged the statements before the switch"
    assert "ALTER ROLE" not in log and "SCRAM-SHA-256$" not in log
    assert_no_secret([log, res.output], all_passwords(vault_client, path) - {old})


def test_ansible_playbook_vvv_shows_no_password(pg_cluster, vault_server, vault_client, single, tmp_path):
    user, _old, path = single
    playbook = tmp_path / "rotate.yml"
    args = module_args(pg_cluster, vault_server, path, username=user)
    args.pop("token")  # the token comes from the environment, as the role passes it
    playbook.write_text(json.dumps([{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Rotate", "upkeep.runbooks.vault_pg_rotate": args, "register": "rotation"},
                  {"name": "Show the result", "ansible.builtin.debug": {"var": "rotation"}}],
    }]), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_PATH), VAULT_TOKEN=vault_server.token,
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCALHOST_WARNING="0")
    env = {k: v for k, v in env.items() if not k.startswith("PG")}
    bindir = Path(sys.executable).parent
    proc = subprocess.run(
        [str(bindir / "ansible-playbook"), "-vvv", "-i", "localhost,", "-c", "local",
         "-e", "ansible_python_interpreter=%s" % sys.executable, str(playbook)],
        capture_output=True, text=True, env=env, cwd=str(REPO_ROOT), timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '"rotated": true' in proc.stdout or "rotated: true" in proc.stdout, proc.stdout[-3000:]
    assert "vault_pg_rotate" in proc.stdout and "changed=1" in proc.stdout
    version, _data = assert_agree(pg_cluster, vault_client, path)
    assert version == 2
    assert_no_secret([proc.stdout, proc.stderr], all_passwords(vault_client, path))
    assert current(vault_client, path)[0] == 2
