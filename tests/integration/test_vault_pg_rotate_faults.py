"""Fault tests for vault_pg_rotate: what the issue lists under Proof.

Vault stopped between set and finish, Vault sealed, PostgreSQL restarted (and down) mid-rotation, a
check-and-set conflict from a concurrent writer, a bad token. Each: a clear error, a re-run
converges, Vault and PostgreSQL agree afterwards, no password in the output or the server log.

The faults are real (a private Vault process is stopped or sealed, the PostgreSQL server is stopped);
to hit the exact moment, the module runs in-process and the fault is injected at a step boundary by
wrapping the module's own function for that step (``login_test`` runs after set and before finish,
``generate_password`` after the read and before the check-and-set write).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from unittest import mock

import pytest
from ansible_collections.upkeep.runbooks.plugins.modules import vault_pg_rotate as mod

from tests.integration.module_runner import run_module
from tests.integration.vault_pg_rotate_helpers import (
    PENDING_KEY,
    all_passwords,
    assert_agree,
    assert_no_secret,
    can_login,
    create_login,
    current,
    metadata,
    module_args,
    seed,
    unique,
)
from tests.unit.module_helpers import run_module_main

pytestmark = pytest.mark.integration

MODULE = "vault_pg_rotate"


@pytest.fixture
def private_vault(vault_server_factory):
    """An OpenBao of this test only (raft storage: its data survives a stop and start)."""
    return vault_server_factory()


@pytest.fixture
def login(pg_cluster_factory):
    """A cluster of this test (the faults stop it) with one login: (cluster, user, old password)."""
    cluster = pg_cluster_factory()
    user, old = unique("app"), "old-" + unique("pw")
    create_login(cluster, user, old)
    return cluster, user, old


def in_process(args, capfd, **patches):
    """Run main() in this process with ``patches`` on the module; returns (result, captured output)."""
    with mock.patch.multiple(mod, **patches) if patches else mock.MagicMock():
        result = run_module_main(mod, args)
    captured = capfd.readouterr()
    return result, result.stdout + captured.out + captured.err


def wrap(original, before):
    """``original`` with ``before()`` run first (the fault at that step boundary)."""
    def wrapper(*args, **kwargs):
        before()
        return original(*args, **kwargs)
    return wrapper


def test_vault_stopped_between_set_and_finish(login, private_vault, capfd):
    cluster, user, old = login
    client = private_vault.client()
    path = "rot/" + unique("stop")
    seed(client, path, {"username": user, "password": old})
    args = module_args(cluster, private_vault, path, username=user)

    failed, output = in_process(args, capfd, login_test=wrap(mod.login_test, private_vault.stop))
    assert failed.exit_code == 1 and failed.failed, failed
    assert "connection refused" in failed["msg"] and "Vault could not be updated" in failed["msg"], failed["msg"]
    assert failed["rolled_back"] and failed["pending_version"] == 2
    assert "next run resumes" in failed["msg"]
    # PostgreSQL agrees with the version Vault calls current (1) while Vault is down.
    assert can_login(cluster, user, old)

    private_vault.start()
    client = private_vault.client()
    assert metadata(client, path)["custom_metadata"][PENDING_KEY] == "2"
    again = run_module(MODULE, args)
    assert again.rc == 0, again
    assert again["resumed"] and again["rotated"] and again["kv_version"] == 2, again
    assert_agree(cluster, client, path)
    assert not can_login(cluster, user, old)
    secrets = all_passwords(client, path)
    assert_no_secret([output, again.output, Path(cluster.logfile).read_text(errors="replace")], secrets)


def test_vault_sealed_between_set_and_finish(login, private_vault, capfd):
    cluster, user, old = login
    client = private_vault.client()
    path = "rot/" + unique("seal")
    seed(client, path, {"username": user, "password": old})
    args = module_args(cluster, private_vault, path, username=user)

    failed, output = in_process(args, capfd, login_test=wrap(mod.login_test, client.sys.seal))
    assert failed.failed and "Vault is sealed" in failed["msg"], failed["msg"]
    assert failed["rolled_back"] and failed["pending_version"] == 2
    assert can_login(cluster, user, old)

    sealed = run_module(MODULE, args)
    assert sealed.rc != 0 and "Vault is sealed" in sealed["msg"], sealed["msg"]
    assert sealed["msg"].startswith("Failed to ")

    client.sys.submit_unseal_key(private_vault.unseal_key)
    again = run_module(MODULE, args)
    assert again.rc == 0 and again["resumed"] and again["rotated"], again
    assert_agree(cluster, client, path)
    assert_no_secret([output, sealed.output, again.output], all_passwords(client, path))


def test_sealed_vault_at_start_touches_nothing(login, private_vault):
    cluster, user, old = login
    client = private_vault.client()
    path = "rot/" + unique("sealed")
    seed(client, path, {"username": user, "password": old})
    client.sys.seal()
    args = module_args(cluster, private_vault, path, username=user)
    res = run_module(MODULE, args)
    assert res.rc != 0 and "Vault is sealed (unseal it, then run again)" in res["msg"], res["msg"]
    assert not res["changed"]
    assert can_login(cluster, user, old)
    client.sys.submit_unseal_key(private_vault.unseal_key)
    again = run_module(MODULE, args)
    assert again.rc == 0 and again["rotated"] and not again["resumed"], again
    assert_agree(cluster, client, path)


def test_postgres_restarted_mid_rotation(login, vault_server, vault_client, capfd):
    """The server restarts between set and test: the test step retries until it is back."""
    cluster, user, old = login
    path = "rot/" + unique("restart")
    seed(vault_client, path, {"username": user, "password": old})
    args = module_args(cluster, vault_server, path, username=user, test_timeout=30)

    def restart_in_background():
        cluster.stop("fast")
        threading.Thread(target=lambda: (time.sleep(1.5), cluster.start()), daemon=True).start()

    res, output = in_process(args, capfd, login_test=wrap(mod.login_test, restart_in_background))
    assert res.exit_code == 0, res["msg"]
    assert res["rotated"] and [s["status"] for s in res["steps"]] == ["done"] * 4
    assert "attempt" not in res["steps"][2]["msg"]
    assert_agree(cluster, vault_client, path)
    assert not can_login(cluster, user, old)
    assert_no_secret([output, Path(cluster.logfile).read_text(errors="replace")], all_passwords(vault_client, path))


def test_postgres_down_mid_rotation_then_rerun_converges(login, vault_server, vault_client, capfd):
    """The server stops after set and stays down: no rollback possible in PostgreSQL, the pending
    version stays in Vault, and the run after the server is back finishes it."""
    cluster, user, old = login
    path = "rot/" + unique("down")
    seed(vault_client, path, {"username": user, "password": old})
    args = module_args(cluster, vault_server, path, username=user, test_timeout=2)

    failed, output = in_process(args, capfd, login_test=wrap(mod.login_test, lambda: cluster.stop("fast")))
    assert failed.failed and not failed["rolled_back"], failed
    assert "the test step failed" in failed["msg"] and "connection refused" in failed["msg"], failed["msg"]
    assert "putting the previous password back failed too" in failed["msg"]
    assert failed["pending_version"] == 2
    assert metadata(vault_client, path)["custom_metadata"][PENDING_KEY] == "2"

    cluster.start()
    again = run_module(MODULE, args)
    assert again.rc == 0 and again["resumed"] and again["rotated"], again
    assert_agree(cluster, vault_client, path)
    assert_no_secret([output, again.output, Path(cluster.logfile).read_text(errors="replace")],
                     all_passwords(vault_client, path))


def test_cas_conflict_from_a_concurrent_writer(login, vault_server, vault_client, capfd):
    cluster, user, old = login
    path = "rot/" + unique("cas")
    seed(vault_client, path, {"username": user, "password": old})
    theirs = "theirs-" + unique("pw")

    def concurrent_write():
        vault_client.secrets.kv.v2.create_or_update_secret(path=path, secret={"username": user, "password": theirs},
                                                           cas=1, mount_point="secret")

    args = module_args(cluster, vault_server, path, username=user)
    failed, output = in_process(args, capfd, generate_password=wrap(mod.generate_password, concurrent_write))
    assert failed.failed, failed
    assert "another writer changed secret/%s" % path in failed["msg"], failed["msg"]
    assert "PostgreSQL was not touched" in failed["msg"]
    assert [s["status"] for s in failed["steps"]] == ["failed", "skipped", "skipped", "skipped"]
    assert can_login(cluster, user, old), "the loser must not have touched PostgreSQL"

    # The other writer's version is newer than the current one and not finished: the next run adopts it.
    again = run_module(MODULE, args)
    assert again.rc == 0 and again["resumed"], again
    version, data = assert_agree(cluster, vault_client, path)
    assert version == 2 and data["password"] == theirs
    assert_no_secret([output, again.output], all_passwords(vault_client, path) - {theirs})


def test_two_concurrent_runs_only_one_wins(login, vault_server, vault_client):
    cluster, user, old = login
    path = "rot/" + unique("race")
    seed(vault_client, path, {"username": user, "password": old})
    args = module_args(cluster, vault_server, path, username=user)
    results = []
    threads = [threading.Thread(target=lambda: results.append(run_module(MODULE, args))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ok = [res for res in results if res.rc == 0]
    assert ok, results
    for res in results:
        if res.rc != 0:
            assert "another writer changed" in res["msg"], res["msg"]
    assert_agree(cluster, vault_client, path)
    assert int(metadata(vault_client, path)["current_version"]) <= 3


def test_bad_token(login, vault_server, vault_client):
    cluster, user, old = login
    path = "rot/" + unique("token")
    seed(vault_client, path, {"username": user, "password": old})
    args = module_args(cluster, vault_server, path, username=user)
    res = run_module(MODULE, dict(args, token="not-a-valid-token"))
    assert res.rc != 0, res
    assert res["msg"].startswith("Failed to authenticate to Vault") and "permission denied" in res["msg"], res["msg"]
    assert "not-a-valid-token" not in res.output
    assert not res["changed"] and can_login(cluster, user, old)
    assert current(vault_client, path)[0] == 1
    again = run_module(MODULE, args)
    assert again.rc == 0 and again["rotated"], again
    assert_agree(cluster, vault_client, path)
    assert_no_secret([res.output, again.output], all_passwords(vault_client, path))
