"""The Vault backend (module_utils/_vault) against a real OpenBao, with both hvac stacks it meets.

The controller's venv has hvac 2.x; Debian bookworm's managed nodes (and the lab image) have
python3-hvac 0.11.2 with Debian's requests and urllib3. `make venv` puts that second stack into
.venv/hvac-debian; every test here runs the modules once with each (`hvac_stack`).

Faults are the real server's own: a restart (data kept, sealed until unsealed with the key),
sys/seal, a token whose policy cannot update the path, an expired token, a revoked AppRole
secret_id, and TLS with the right CA, a wrong CA and none.
"""

import os
import subprocess
import sys
import time
import uuid

import pytest

from tests.fixtures import tls
from tests.integration.module_runner import COLLECTIONS_PATH, REPO_ROOT, run_module

pytestmark = pytest.mark.integration

DEBIAN_STACK = REPO_ROOT / ".venv" / "hvac-debian"


@pytest.fixture(params=["controller", "debian"])
def hvac_stack(request):
    """Environment additions that make a module run import the named hvac stack."""
    if request.param == "controller":
        return {}
    if not (DEBIAN_STACK / "hvac" / "__init__.py").exists():
        pytest.fail("Debian's hvac stack is missing from %s: run `make venv` (it installs "
                    "tests/requirements-hvac-debian.txt there)" % DEBIAN_STACK, pytrace=False)
    return {"PYTHONPATH": os.pathsep.join([str(COLLECTIONS_PATH), str(DEBIAN_STACK)])}


def run(name, args, stack, env=None, **kwargs):
    return run_module(name, args, env=dict(stack, **(env or {})), **kwargs)


def unique(prefix):
    return "upkeep-backend/%s-%s" % (prefix, uuid.uuid4().hex[:10])


def seed(server, path, value):
    server.client().secrets.kv.v2.create_or_update_secret(path=path, secret={"SECRET_KEY": value}, cas=0,
                                                          mount_point="secret")


def version(server, path):
    return server.client().secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")["data"][
        "current_version"]


def rotate_args(server, path, **extra):
    return dict({"url": server.url, "token": server.token, "path": path, "force": True}, **extra)


def env_file_args(server, dest, path, **extra):
    return dict({"url": server.url, "token": server.token, "dest": str(dest),
                 "variables": [{"name": "SECRET_KEY", "path": path}]}, **extra)


def assert_clean(res, *secrets):
    assert "Traceback" not in res.output
    for secret in secrets:
        assert secret not in res.output


def test_each_stack_imports_the_hvac_it_names(hvac_stack):
    env = dict(os.environ, **hvac_stack)
    env.setdefault("PYTHONPATH", str(COLLECTIONS_PATH))
    where = subprocess.run([sys.executable, "-c", "import hvac, requests; print(hvac.__file__, requests.__version__)"],
                           env=env, capture_output=True, text=True, check=True).stdout
    if hvac_stack:
        assert where.startswith(str(DEBIAN_STACK)) and where.split()[1] == "2.28.1", where
    else:
        assert str(DEBIAN_STACK) not in where, where


def test_rotate_then_render_with_the_pointer(vault_server, hvac_stack, tmp_path):
    vault_server.ensure_ready()
    path = unique("round-trip")
    seed(vault_server, path, "seed-" + "r" * 45)
    res = run("vault_secret_rotate", rotate_args(vault_server, path), hvac_stack)
    assert not res.failed and res["rotated"] and res["kv_version"] == 2, res
    dest = tmp_path / "secrets.env"
    rendered = run("vault_env_file", env_file_args(vault_server, dest, path), hvac_stack)
    assert rendered["changed"], rendered
    current = vault_server.client().secrets.kv.v2.read_secret_version(path=path, version=2, mount_point="secret",
                                                                         raise_on_deleted_version=True)
    assert dest.read_text().startswith("SECRET_KEY=")
    assert current["data"]["data"]["SECRET_KEY"] in dest.read_text()
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    again = run("vault_env_file", env_file_args(vault_server, dest, path), hvac_stack)
    assert not again["changed"], again
    assert_clean(res, vault_server.token)
    assert_clean(rendered, vault_server.token, current["data"]["data"]["SECRET_KEY"])


def test_a_restart_keeps_the_data_and_comes_back_sealed(vault_server_factory, hvac_stack, tmp_path):
    server = vault_server_factory()
    path = unique("restart")
    seed(server, path, "seed-" + "s" * 45)
    assert run("vault_secret_rotate", rotate_args(server, path), hvac_stack)["kv_version"] == 2
    server.stop()
    server.bao.start()  # the process only: a real restart leaves OpenBao sealed
    assert server.is_sealed()
    sealed = run("vault_secret_rotate", rotate_args(server, path), hvac_stack)
    assert sealed.failed and sealed["vault_reason"] == "sealed", sealed
    assert "Vault is sealed (unseal it, then run again)" in sealed["msg"], sealed
    server.unseal()
    assert version(server, path) == 2, "the restart lost a version"
    res = run("vault_secret_rotate", rotate_args(server, path), hvac_stack)
    assert not res.failed and res["kv_version"] == 3 and res["previous_version"] == 2, res
    assert_clean(sealed, server.token, server.unseal_key)


def test_seal_and_unseal_with_the_key(vault_server_factory, hvac_stack, tmp_path):
    server = vault_server_factory()
    path = unique("seal")
    seed(server, path, "seed-" + "t" * 45)
    dest = tmp_path / "secrets.env"
    assert run("vault_env_file", env_file_args(server, dest, path), hvac_stack)["changed"]
    before = dest.read_bytes()
    server.seal()
    res = run("vault_env_file", env_file_args(server, dest, path), hvac_stack)
    assert res.failed and res["vault_reason"] == "sealed", res
    assert res["msg"].startswith("Failed to authenticate to Vault with the token at %s: Vault is sealed" % server.url)
    assert dest.read_bytes() == before
    server.unseal()
    assert not run("vault_env_file", env_file_args(server, dest, path), hvac_stack).failed
    assert_clean(res, server.token, server.unseal_key)


def test_a_policy_without_update_is_refused_and_nothing_changes(vault_server, hvac_stack):
    vault_server.ensure_ready()
    path = unique("readonly")
    seed(vault_server, path, "seed-" + "u" * 45)
    token = vault_server.token_with(["readonly"])
    res = run("vault_secret_rotate", rotate_args(vault_server, path, token=token), hvac_stack)
    assert res.failed and res["vault_reason"] == "forbidden", res
    assert "permission denied" in res["msg"] and path in res["msg"], res
    assert version(vault_server, path) == 1, "a version was written by a token that may only read"
    assert_clean(res, token, vault_server.token)


def test_an_expired_token_is_refused(vault_server, hvac_stack, tmp_path):
    vault_server.ensure_ready()
    path = unique("expired")
    seed(vault_server, path, "seed-" + "v" * 45)
    token = vault_server.token_with(["rotation"], ttl="2s", explicit_max_ttl="2s")
    time.sleep(3)
    res = run("vault_env_file", env_file_args(vault_server, tmp_path / "secrets.env", path, token=token), hvac_stack)
    assert res.failed and res["vault_reason"] == "forbidden", res
    assert res["msg"] == ("Failed to authenticate to Vault with the token at %s: permission denied (the token is "
                          "invalid, expired or revoked, or its policies do not allow this path)" % vault_server.url)
    assert not (tmp_path / "secrets.env").exists()
    assert_clean(res, token)


def test_a_revoked_secret_id_is_refused(vault_server_factory, hvac_stack):
    server = vault_server_factory(approles=["runbooks:role-backend-1:unused-secret-id:rotation"])
    path = unique("approle")
    seed(server, path, "seed-" + "w" * 45)
    answer = server.bao.call("POST", "auth/approle/role/runbooks/secret-id", {})
    secret_id = answer["data"]["secret_id"]
    common = {"url": server.url, "auth_method": "approle", "role_id": "role-backend-1", "path": path,
              "force": True}
    res = run("vault_secret_rotate", dict(common, secret_id=secret_id), hvac_stack)
    assert not res.failed and res["kv_version"] == 2, res
    server.bao.call("POST", "auth/approle/role/runbooks/secret-id/destroy", {"secret_id": secret_id})
    refused = run("vault_secret_rotate", dict(common, secret_id=secret_id), hvac_stack)
    assert refused.failed and refused["vault_reason"] == "forbidden", refused
    assert refused["msg"] == ("Failed to log in to Vault with AppRole at %s: AppRole login refused: invalid role_id "
                              "or secret_id (or the secret_id expired)" % server.url), refused
    assert version(server, path) == 2
    assert_clean(refused, secret_id)


def test_tls_trusts_ca_cert_and_vault_cacert_and_refuses_a_wrong_ca(vault_tls_server, hvac_stack, tmp_path):
    server = vault_tls_server
    assert server.url.startswith("https://127.0.0.1:")
    path = unique("tls")
    seed(server, path, "seed-" + "x" * 45)
    dest = tmp_path / "secrets.env"

    by_option = run("vault_env_file", env_file_args(server, dest, path, ca_cert=server.ca_file), hvac_stack,
                    env={"VAULT_CACERT": None})
    assert not by_option.failed and by_option["changed"], by_option
    dest.unlink()
    by_env = run("vault_env_file", env_file_args(server, dest, path), hvac_stack,
                 env={"VAULT_CACERT": server.ca_file})
    assert not by_env.failed and by_env["changed"], by_env

    other = tls.make_ca(tmp_path / "other-ca", "some other CA")
    for extra, env in (({"ca_cert": str(other.cert_file)}, {"VAULT_CACERT": None}),
                       ({}, {"VAULT_CACERT": str(other.cert_file)}),
                       ({}, {"VAULT_CACERT": None})):
        res = run("vault_env_file", env_file_args(server, tmp_path / "refused.env", path, **extra), hvac_stack,
                  env=env)
        assert res.failed and res["vault_reason"] == "tls", (extra, env, res)
        assert res["msg"] == ("Failed to authenticate to Vault with the token at %s: TLS error: certificate verify "
                              "failed (check ca_cert / VAULT_CACERT, or that the address speaks https)"
                              % server.url), res
        assert not (tmp_path / "refused.env").exists()
        assert_clean(res, server.token)
