"""Contract tests: the Vault endpoint the fixtures start behaves as Vault does, driven through hvac.

They run against whatever tests/fixtures/vault.py starts (a dev-mode vault/bao binary when one is
on PATH, else lab/vault_emulator.py), so the emulator is held to the same expectations as Vault.
Tests of emulator-only features (namespaces without Enterprise, --state, its CLI) say so and skip
for a real binary.
"""

import json
import os
import stat
import subprocess
import sys
import uuid

import hvac
import pytest
import requests
from hvac import exceptions

from tests.fixtures.vault import EMULATOR

pytestmark = pytest.mark.integration

CAS_MISMATCH = "check-and-set parameter did not match the current version"
CAS_REQUIRED = "check-and-set parameter required for this call"


def unique(prefix="contract"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def kv(client):
    return client.secrets.kv.v2


def read(client, path, version=None, mount="secret"):
    return kv(client).read_secret_version(path, version=version, mount_point=mount, raise_on_deleted_version=True)


def health(client, method="GET", **codes):
    """(status, body) of sys/health: hvac returns a dict for a 200 and a Response otherwise."""
    answer = client.sys.read_health_status(method=method, **codes)
    if isinstance(answer, dict):
        return 200, answer
    return answer.status_code, (answer.json() if method == "GET" else None)


def emulator_only(server):
    if server.kind != "emulator":
        pytest.skip(f"emulator-only behaviour; the backend here is a real {server.kind} binary")


@pytest.fixture
def mount(vault_client):
    """A fresh KV v2 mount, so config changes never leak into other tests."""
    name = unique("kv")
    vault_client.sys.enable_secrets_engine("kv", path=name, options={"version": "2"})
    return name


# --------------------------------------------------------------------------- KV v2 data
def test_write_with_cas_creates_then_updates_only_from_the_current_version(vault_client):
    path = unique()
    first = kv(vault_client).create_or_update_secret(path, {"password": "one"}, cas=0)
    assert first["data"]["version"] == 1
    assert first["data"]["destroyed"] is False
    assert first["data"]["deletion_time"] == ""
    assert first["data"]["created_time"].endswith("Z")
    assert set(first) >= {"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info",
                          "warnings", "auth"}

    with pytest.raises(exceptions.InvalidRequest) as again:
        kv(vault_client).create_or_update_secret(path, {"password": "dup"}, cas=0)
    assert again.value.errors == [CAS_MISMATCH]

    second = kv(vault_client).create_or_update_secret(path, {"password": "two"}, cas=1)
    assert second["data"]["version"] == 2

    with pytest.raises(exceptions.InvalidRequest, match=CAS_MISMATCH):
        kv(vault_client).create_or_update_secret(path, {"password": "stale"}, cas=1)
    assert read(vault_client, path)["data"]["data"] == {"password": "two"}


def test_write_without_cas_always_adds_a_version(vault_client):
    path = unique()
    for value in ("a", "b", "c"):
        kv(vault_client).create_or_update_secret(path, {"value": value})
    current = read(vault_client, path)
    assert current["data"]["metadata"]["version"] == 3
    assert current["data"]["data"] == {"value": "c"}


def test_read_specific_versions_and_missing_paths(vault_client):
    path = unique()
    for value in ("v1", "v2", "v3"):
        kv(vault_client).create_or_update_secret(path, {"key": value, "nested": {"n": [1, 2]}})
    assert read(vault_client, path, version=1)["data"]["data"]["key"] == "v1"
    assert read(vault_client, path, version=2)["data"]["metadata"]["version"] == 2
    latest = read(vault_client, path)
    assert latest["data"]["data"] == {"key": "v3", "nested": {"n": [1, 2]}}
    assert set(latest["data"]["metadata"]) == {"created_time", "custom_metadata", "deletion_time", "destroyed",
                                               "version"}

    with pytest.raises(exceptions.InvalidPath) as missing_version:
        read(vault_client, path, version=9)
    assert missing_version.value.errors == []
    with pytest.raises(exceptions.InvalidPath) as missing_path:
        read(vault_client, unique("absent"))
    assert missing_path.value.errors == []


def test_write_requires_a_data_object(vault_server, vault_client):
    response = requests.post(f"{vault_server.url}/v1/secret/data/{unique()}", json={"options": {}},
                             headers={"X-Vault-Token": vault_server.token}, timeout=10)
    assert response.status_code == 400
    assert response.json() == {"errors": ["no data provided"]}


# --------------------------------------------------------------------------- KV v2 metadata
def test_metadata_reports_versions_and_settings(vault_client):
    path = unique()
    kv(vault_client).create_or_update_secret(path, {"a": "1"})
    kv(vault_client).create_or_update_secret(path, {"a": "2"})
    meta = kv(vault_client).read_secret_metadata(path)["data"]
    assert meta["current_version"] == 2
    assert meta["oldest_version"] == 0
    assert meta["max_versions"] == 0
    assert meta["cas_required"] is False
    assert meta["delete_version_after"] == "0s"
    assert meta["custom_metadata"] is None
    assert set(meta["versions"]) == {"1", "2"}
    assert meta["versions"]["1"] == {"created_time": meta["created_time"], "deletion_time": "", "destroyed": False}
    assert meta["created_time"] <= meta["updated_time"] == meta["versions"]["2"]["created_time"]


def test_update_metadata_custom_metadata_shows_on_reads_and_writes(vault_client):
    path = unique()
    kv(vault_client).create_or_update_secret(path, {"a": "1"})
    kv(vault_client).update_metadata(path, custom_metadata={"owner": "dba", "rotated_by": "upkeep"})
    assert kv(vault_client).read_secret_metadata(path)["data"]["custom_metadata"] == {
        "owner": "dba", "rotated_by": "upkeep"}
    assert read(vault_client, path)["data"]["metadata"]["custom_metadata"]["owner"] == "dba"
    written = kv(vault_client).create_or_update_secret(path, {"a": "2"})
    assert written["data"]["custom_metadata"] == {"owner": "dba", "rotated_by": "upkeep"}

    kv(vault_client).update_metadata(path, custom_metadata={"owner": "ops"})  # POST replaces the map
    assert kv(vault_client).read_secret_metadata(path)["data"]["custom_metadata"] == {"owner": "ops"}


def test_metadata_patch_merges_custom_metadata(vault_server, vault_client):
    path = unique()
    kv(vault_client).create_or_update_secret(path, {"a": "1"})
    kv(vault_client).update_metadata(path, custom_metadata={"keep": "1", "drop": "2"})
    response = requests.patch(
        f"{vault_server.url}/v1/secret/metadata/{path}",
        data=json.dumps({"custom_metadata": {"drop": None, "new": "3"}, "max_versions": 4}),
        headers={"X-Vault-Token": vault_server.token, "Content-Type": "application/merge-patch+json"}, timeout=10)
    assert response.status_code == 204
    meta = kv(vault_client).read_secret_metadata(path)["data"]
    assert meta["custom_metadata"] == {"keep": "1", "new": "3"}
    assert meta["max_versions"] == 4


def test_max_versions_prunes_the_oldest_versions(vault_client, mount):
    path = unique()
    kv(vault_client).update_metadata(path, max_versions=2, mount_point=mount)
    for value in ("1", "2", "3", "4"):
        kv(vault_client).create_or_update_secret(path, {"v": value}, mount_point=mount)
    meta = kv(vault_client).read_secret_metadata(path, mount_point=mount)["data"]
    assert meta["max_versions"] == 2
    assert meta["current_version"] == 4
    assert meta["oldest_version"] == 3
    assert set(meta["versions"]) == {"3", "4"}
    with pytest.raises(exceptions.InvalidPath):
        read(vault_client, path, version=1, mount=mount)
    assert read(vault_client, path, version=3, mount=mount)["data"]["data"] == {"v": "3"}


def test_mount_config_max_versions_and_cas_required(vault_client, mount):
    kv(vault_client).configure(max_versions=3, cas_required=True, mount_point=mount)
    config = kv(vault_client).read_configuration(mount_point=mount)["data"]
    assert config == {"max_versions": 3, "cas_required": True, "delete_version_after": "0s"}

    path = unique()
    with pytest.raises(exceptions.InvalidRequest) as required:
        kv(vault_client).create_or_update_secret(path, {"v": "0"}, mount_point=mount)
    assert required.value.errors == [CAS_REQUIRED]
    for version in range(5):
        kv(vault_client).create_or_update_secret(path, {"v": str(version)}, cas=version, mount_point=mount)
    meta = kv(vault_client).read_secret_metadata(path, mount_point=mount)["data"]
    assert set(meta["versions"]) == {"3", "4", "5"}
    assert meta["oldest_version"] == 3


def test_cas_required_on_one_key(vault_client):
    path = unique()
    kv(vault_client).create_or_update_secret(path, {"v": "1"})
    kv(vault_client).update_metadata(path, cas_required=True)
    assert kv(vault_client).read_secret_metadata(path)["data"]["cas_required"] is True
    with pytest.raises(exceptions.InvalidRequest, match=CAS_REQUIRED):
        kv(vault_client).create_or_update_secret(path, {"v": "2"})
    assert kv(vault_client).create_or_update_secret(path, {"v": "2"}, cas=1)["data"]["version"] == 2
    kv(vault_client).create_or_update_secret(unique(), {"other": "keys unaffected"})


# --------------------------------------------------------------------------- delete / undelete / destroy
def test_delete_latest_undelete_and_destroy(vault_client):
    path = unique()
    kv(vault_client).create_or_update_secret(path, {"v": "1"})
    kv(vault_client).create_or_update_secret(path, {"v": "2"})

    assert kv(vault_client).delete_latest_version_of_secret(path).status_code == 204
    with pytest.raises(exceptions.InvalidPath) as deleted:
        read(vault_client, path)
    assert deleted.value.json["data"]["data"] is None
    assert deleted.value.json["data"]["metadata"]["version"] == 2
    assert deleted.value.json["data"]["metadata"]["deletion_time"] != ""
    soft = kv(vault_client).read_secret_version(path, raise_on_deleted_version=False)
    assert soft["data"]["data"] is None
    assert read(vault_client, path, version=1)["data"]["data"] == {"v": "1"}
    meta = kv(vault_client).read_secret_metadata(path)["data"]
    assert meta["versions"]["2"]["deletion_time"] != ""
    assert meta["versions"]["1"]["deletion_time"] == ""

    assert kv(vault_client).undelete_secret_versions(path, [2]).status_code == 204
    assert read(vault_client, path)["data"]["data"] == {"v": "2"}

    assert kv(vault_client).destroy_secret_versions(path, [1]).status_code == 204
    with pytest.raises(exceptions.InvalidPath) as destroyed:
        read(vault_client, path, version=1)
    assert destroyed.value.json["data"]["metadata"]["destroyed"] is True
    kv(vault_client).undelete_secret_versions(path, [1])
    with pytest.raises(exceptions.InvalidPath):
        read(vault_client, path, version=1)
    assert kv(vault_client).read_secret_metadata(path)["data"]["versions"]["1"]["destroyed"] is True


def test_delete_specific_versions(vault_client):
    path = unique()
    for value in ("1", "2", "3"):
        kv(vault_client).create_or_update_secret(path, {"v": value})
    kv(vault_client).delete_secret_versions(path, [1, 3])
    versions = kv(vault_client).read_secret_metadata(path)["data"]["versions"]
    assert [versions[n]["deletion_time"] != "" for n in ("1", "2", "3")] == [True, False, True]
    assert read(vault_client, path, version=2)["data"]["data"] == {"v": "2"}


def test_delete_without_versions_is_rejected(vault_server):
    response = requests.post(f"{vault_server.url}/v1/secret/delete/{unique()}", json={},
                             headers={"X-Vault-Token": vault_server.token}, timeout=10)
    assert response.status_code == 400
    assert response.json()["errors"] == ["No version number provided"]


def test_delete_metadata_removes_all_versions(vault_client):
    folder = unique("dir")
    kv(vault_client).create_or_update_secret(f"{folder}/gone", {"v": "1"})
    kv(vault_client).create_or_update_secret(f"{folder}/kept", {"v": "1"})
    assert kv(vault_client).delete_metadata_and_all_versions(f"{folder}/gone").status_code == 204
    with pytest.raises(exceptions.InvalidPath):
        kv(vault_client).read_secret_metadata(f"{folder}/gone")
    with pytest.raises(exceptions.InvalidPath):
        read(vault_client, f"{folder}/gone", version=1)
    assert kv(vault_client).list_secrets(folder)["data"]["keys"] == ["kept"]


# --------------------------------------------------------------------------- LIST
def test_list_secrets_returns_keys_and_folders(vault_server, vault_client):
    folder = unique("tree")
    for path in ("db/password", "db/replica/password", "django/secret_key", "jwt"):
        kv(vault_client).create_or_update_secret(f"{folder}/{path}", {"v": "x"})
    assert kv(vault_client).list_secrets(folder)["data"]["keys"] == ["db/", "django/", "jwt"]
    assert kv(vault_client).list_secrets(f"{folder}/db")["data"]["keys"] == ["password", "replica/"]

    via_get = requests.get(f"{vault_server.url}/v1/secret/metadata/{folder}/db/", params={"list": "true"},
                           headers={"X-Vault-Token": vault_server.token}, timeout=10)
    assert via_get.status_code == 200
    assert via_get.json()["data"]["keys"] == ["password", "replica/"]

    with pytest.raises(exceptions.InvalidPath) as empty:
        kv(vault_client).list_secrets(unique("nothing-here"))
    assert empty.value.errors == []


# --------------------------------------------------------------------------- tokens
def test_lookup_self_with_the_root_token(vault_server, vault_client):
    data = vault_client.auth.token.lookup_self()["data"]
    assert data["id"] == vault_server.token
    assert data["policies"] == ["root"]
    assert data["display_name"] == "root"
    assert data["ttl"] == 0
    assert data["expire_time"] is None
    assert data["path"] == "auth/token/root"
    assert vault_client.is_authenticated()


def test_bad_or_missing_token_is_forbidden(vault_server):
    bad = vault_server.client(token="not-a-token")
    with pytest.raises(exceptions.Forbidden) as denied:
        bad.auth.token.lookup_self()
    assert denied.value.errors == ["permission denied"]
    with pytest.raises(exceptions.Forbidden):
        read(bad, "anything")
    assert bad.is_authenticated() is False
    response = requests.get(f"{vault_server.url}/v1/secret/data/anything", timeout=10)
    assert response.status_code == 403
    assert response.json() == {"errors": ["permission denied"]}


# --------------------------------------------------------------------------- AppRole
def _make_role(client, **options):
    name = unique("role")
    client.auth.approle.create_or_update_approle(name, **options)
    role_id = client.auth.approle.read_role_id(name)["data"]["role_id"]
    secret = client.auth.approle.generate_secret_id(name)["data"]
    return name, role_id, secret


def test_approle_login_issues_a_working_token(vault_server, vault_client):
    name, role_id, secret = _make_role(vault_client, token_policies=["upkeep-rotate"], token_ttl="1h")
    assert secret["secret_id"] and secret["secret_id_accessor"]
    assert vault_client.auth.approle.read_role(name)["data"]["token_policies"] == ["upkeep-rotate"]

    app = vault_server.client(token="")
    login = app.auth.approle.login(role_id=role_id, secret_id=secret["secret_id"])
    auth = login["auth"]
    assert app.token == auth["client_token"] != vault_server.token
    assert sorted(auth["policies"]) == ["default", "upkeep-rotate"]
    assert auth["lease_duration"] == 3600
    assert auth["renewable"] is True
    assert auth["metadata"] == {"role_name": name}

    info = app.auth.token.lookup_self()["data"]
    assert info["id"] == auth["client_token"]
    assert info["path"] == "auth/approle/login"
    assert info["meta"] == {"role_name": name}
    assert 3500 < info["ttl"] <= 3600
    assert sorted(info["policies"]) == ["default", "upkeep-rotate"]

    assert app.auth.token.revoke_self().status_code == 204
    with pytest.raises(exceptions.Forbidden):
        app.auth.token.lookup_self()


def test_approle_token_can_use_kv_on_the_emulator(vault_server, vault_client):
    emulator_only(vault_server)  # a real Vault would (rightly) need an ACL policy for this
    _, role_id, secret = _make_role(vault_client)
    app = vault_server.client(token="")
    app.auth.approle.login(role_id=role_id, secret_id=secret["secret_id"])
    path = unique()
    kv(app).create_or_update_secret(path, {"v": "by approle"}, cas=0)
    assert read(vault_client, path)["data"]["data"] == {"v": "by approle"}


def test_approle_rejects_bad_credentials_and_spent_secret_ids(vault_server, vault_client):
    _, role_id, secret = _make_role(vault_client, secret_id_num_uses=1)
    app = vault_server.client(token="")
    with pytest.raises(exceptions.InvalidRequest) as wrong:
        app.auth.approle.login(role_id=role_id, secret_id="wrong-secret-id")
    assert wrong.value.errors == ["invalid role or secret ID"]
    with pytest.raises(exceptions.InvalidRequest, match="invalid role or secret ID"):
        app.auth.approle.login(role_id="no-such-role-id", secret_id=secret["secret_id"])

    app.auth.approle.login(role_id=role_id, secret_id=secret["secret_id"])
    with pytest.raises(exceptions.InvalidRequest, match="invalid role or secret ID"):
        vault_server.client(token="").auth.approle.login(role_id=role_id, secret_id=secret["secret_id"])


def test_approle_management_needs_more_than_an_approle_token(vault_server, vault_client):
    _, role_id, secret = _make_role(vault_client)
    app = vault_server.client(token="")
    app.auth.approle.login(role_id=role_id, secret_id=secret["secret_id"])
    with pytest.raises(exceptions.Forbidden):
        app.auth.approle.create_or_update_approle(unique("escalate"), token_policies=["root"])


def test_approle_defined_at_start_up(vault_server_factory):
    server = vault_server_factory(approles=["ci:role-ci-1234:secret-ci-5678:app-read,app-write"])
    app = server.client(token="")
    auth = app.auth.approle.login(role_id="role-ci-1234", secret_id="secret-ci-5678")["auth"]
    assert sorted(auth["token_policies"]) == ["app-read", "app-write", "default"]
    assert app.auth.token.lookup_self()["data"]["meta"] == {"role_name": "ci"}


# --------------------------------------------------------------------------- sys: health, seal, unseal
def test_health_when_active(vault_client):
    status, body = health(vault_client)
    assert status == 200
    assert body["initialized"] is True
    assert body["sealed"] is False
    assert body["standby"] is False
    assert isinstance(body["version"], str) and body["version"]
    assert health(vault_client, "HEAD")[0] == 200
    assert health(vault_client, active_code=299)[0] == 299
    assert vault_client.sys.is_initialized() is True


def test_seal_blocks_kv_until_unsealed(vault_server_factory):
    server = vault_server_factory()
    client = server.client()
    path = unique()
    kv(client).create_or_update_secret(path, {"v": "kept"})

    assert client.sys.seal().status_code == 204
    assert client.sys.is_sealed() is True
    with pytest.raises(exceptions.VaultDown) as down:
        read(client, path)
    assert down.value.errors == ["Vault is sealed"]
    with pytest.raises(exceptions.VaultDown):
        client.auth.token.lookup_self()
    status, body = health(client)
    assert status == 503
    assert body["sealed"] is True
    assert health(client, sealed_code=200)[0] == 200
    assert health(client, "HEAD")[0] == 503

    with pytest.raises(exceptions.InvalidRequest):
        client.sys.submit_unseal_key("not-the-unseal-key")
    assert client.sys.is_sealed() is True
    status = client.sys.submit_unseal_key(server.unseal_key)
    assert status["sealed"] is False
    assert read(client, path)["data"]["data"] == {"v": "kept"}


def test_only_root_may_seal(vault_server, vault_client):
    _, role_id, secret = _make_role(vault_client)
    app = vault_server.client(token="")
    app.auth.approle.login(role_id=role_id, secret_id=secret["secret_id"])
    with pytest.raises(exceptions.Forbidden):
        app.sys.seal()
    assert vault_client.sys.is_sealed() is False


def test_uninitialised_then_initialised(vault_server_factory):
    server = vault_server_factory(kind="emulator", binary=None, uninitialized=True, persistent=False)
    client = server.client()
    status, body = health(client)
    assert (status, body["initialized"], body["sealed"]) == (501, False, True)
    assert health(client, uninit_code=200)[0] == 200
    assert client.sys.is_initialized() is False
    with pytest.raises(exceptions.VaultDown):
        client.auth.token.lookup_self()
    init = client.sys.initialize(secret_shares=1, secret_threshold=1)
    assert init["root_token"] == server.token
    assert health(client)[0] == 503
    client.sys.submit_unseal_key(init["keys"][0])
    assert health(client)[0] == 200


# --------------------------------------------------------------------------- namespaces (emulator)
def test_namespaces_keep_separate_stores(vault_server):
    emulator_only(vault_server)
    path = unique()
    root_ns = vault_server.client()
    team_a = vault_server.client(namespace="team-a")
    team_b = vault_server.client(namespace="team-b")
    kv(root_ns).create_or_update_secret(path, {"owner": "root"}, cas=0)
    kv(team_a).create_or_update_secret(path, {"owner": "team-a"}, cas=0)  # cas=0: absent in this namespace
    assert read(root_ns, path)["data"]["data"] == {"owner": "root"}
    assert read(team_a, path)["data"]["data"] == {"owner": "team-a"}
    with pytest.raises(exceptions.InvalidPath):
        read(team_b, path)

    team_a.auth.approle.create_or_update_approle("ns-role", token_policies=["p"])
    role_id = team_a.auth.approle.read_role_id("ns-role")["data"]["role_id"]
    secret_id = team_a.auth.approle.generate_secret_id("ns-role")["data"]["secret_id"]
    with pytest.raises(exceptions.InvalidRequest):  # the role lives in team-a only
        vault_server.client(token="").auth.approle.login(role_id=role_id, secret_id=secret_id)
    app = vault_server.client(token="", namespace="team-a")
    app.auth.approle.login(role_id=role_id, secret_id=secret_id)
    assert read(app, path)["data"]["data"] == {"owner": "team-a"}
    with pytest.raises(exceptions.Forbidden):  # a team-a token is not valid in the root namespace
        read(vault_server.client(token=app.token), path)


# --------------------------------------------------------------------------- restart, persistence, faults
def test_state_survives_a_restart_on_the_same_port(vault_server_factory):
    server = vault_server_factory(persistent=True, kind="emulator", binary=None)
    client = server.client()
    path = unique()
    kv(client).create_or_update_secret(path, {"v": "1"})
    kv(client).create_or_update_secret(path, {"v": "2"})
    kv(client).update_metadata(path, custom_metadata={"rotated": "yes"})
    client.auth.approle.create_or_update_approle("persisted", token_policies=["p"])
    role_id = client.auth.approle.read_role_id("persisted")["data"]["role_id"]
    secret_id = client.auth.approle.generate_secret_id("persisted")["data"]["secret_id"]
    app = server.client(token="")
    app.auth.approle.login(role_id=role_id, secret_id=secret_id)
    url = server.url

    server.stop()
    mode = stat.S_IMODE(os.stat(server.state_file).st_mode)
    assert mode == 0o600
    assert [p.name for p in server.state_file.parent.iterdir() if p.name.endswith(".tmp")] == []
    server.start()

    assert server.url == url
    client = server.client()
    assert read(client, path, version=1)["data"]["data"] == {"v": "1"}
    meta = kv(client).read_secret_metadata(path)["data"]
    assert meta["current_version"] == 2
    assert meta["custom_metadata"] == {"rotated": "yes"}
    assert kv(client).create_or_update_secret(path, {"v": "3"}, cas=2)["data"]["version"] == 3
    assert server.client(token=app.token).auth.token.lookup_self()["data"]["meta"] == {"role_name": "persisted"}
    server.client(token="").auth.approle.login(role_id=role_id, secret_id=secret_id)


def test_without_state_a_restart_starts_empty(vault_server_factory):
    server = vault_server_factory(persistent=False, kind="emulator", binary=None)
    path = unique()
    kv(server.client()).create_or_update_secret(path, {"v": "1"})
    server.restart()
    with pytest.raises(exceptions.InvalidPath):
        read(server.client(), path)


def test_session_server_can_stop_mid_operation_and_come_back(vault_server):
    client = vault_server.client()
    path = unique()
    kv(client).create_or_update_secret(path, {"v": "before"})
    vault_server.stop()
    try:
        with pytest.raises(requests.exceptions.ConnectionError):
            kv(vault_server.client()).create_or_update_secret(path, {"v": "during"})
    finally:
        vault_server.start()
    after = vault_server.client()
    if vault_server.persistent:
        assert read(after, path)["data"]["data"] == {"v": "before"}
        assert kv(after).read_secret_metadata(path)["data"]["current_version"] == 1
    assert after.sys.is_sealed() is False


def test_request_log_never_contains_tokens_or_values(vault_server_factory):
    server = vault_server_factory(kind="emulator", binary=None)
    client = server.client()
    value = "s3cr3t-" + uuid.uuid4().hex
    path = unique()
    kv(client).create_or_update_secret(path, {"password": value})
    read(client, path, version=1)
    _, role_id, secret = _make_role(client)
    app = server.client(token="")
    app.auth.approle.login(role_id=role_id, secret_id=secret["secret_id"])
    server.stop()
    log = "".join(server.output)
    assert f"POST /v1/secret/data/{path} 200" in log
    for secret_text in (value, server.token, server.unseal_key, secret["secret_id"], app.token, "version=1"):
        assert secret_text not in log
    assert "vault-emulator: stopped" in log  # SIGTERM is a clean shutdown


# --------------------------------------------------------------------------- HTTP-level contract
def test_unsupported_operations_and_unknown_routes(vault_server):
    headers = {"X-Vault-Token": vault_server.token}
    listed = requests.request("LIST", f"{vault_server.url}/v1/secret/data/{unique()}", headers=headers, timeout=10)
    assert listed.status_code == 405
    assert "unsupported operation" in listed.json()["errors"][0]
    nowhere = requests.get(f"{vault_server.url}/v1/no-such-mount/thing", headers=headers, timeout=10)
    assert nowhere.status_code == 404
    assert "no handler for route" in nowhere.json()["errors"][0]
    assert nowhere.headers["Content-Type"] == "application/json"


def test_emulator_ready_line_and_loopback_only(tmp_path):
    for address in ("0.0.0.0:0", "10.1.2.3:8200", "[::1]:8200", "vault.example.org:8200"):
        refused = subprocess.run([sys.executable, str(EMULATOR), "--listen", address], capture_output=True,
                                 text=True, timeout=30)
        assert refused.returncode != 0, address
        assert "127.0.0.0/8" in refused.stderr
        assert refused.stdout == ""

    proc = subprocess.Popen([sys.executable, str(EMULATOR), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("vault-emulator listening on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        assert requests.get(f"http://127.0.0.1:{port}/v1/sys/health", timeout=10).status_code == 200
        assert hvac.Client(url=f"http://127.0.0.1:{port}", token="root").is_authenticated()  # default root token
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()
