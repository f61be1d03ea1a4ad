"""Unit tests for the Vault emulator's pure logic, with a fake clock (no sockets, no sleeping)."""

import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "lab" / "vault_emulator.py"
_SPEC = importlib.util.spec_from_file_location("vault_emulator", _PATH)
ve = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ve)

ROOT = {"X-Vault-Token": "root-token"}


class Clock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def emu(clock):
    return ve.Emulator(root_token="root-token", unseal_key="k", clock=clock)


def call(emu, method, path, body=None, headers=ROOT):
    raw = json.dumps(body).encode() if body is not None else b""
    return emu.handle(method, "/v1/" + path, headers, raw)


@pytest.mark.parametrize(("text", "seconds"), [
    (0, 0), ("0s", 0), ("90", 90), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), ("1.5m", 90), ("-1s", -1),
])
def test_parse_duration(text, seconds):
    assert ve.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["1x", "h", "1h 2m", True])
def test_parse_duration_rejects_garbage(text):
    with pytest.raises(ve.VaultError) as err:
        ve.parse_duration(text, "token_ttl")
    assert err.value.status == 400
    assert "token_ttl" in err.value.errors[0]


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (45, "45s"), (90, "1m30s"), (3600, "1h0m0s"),
                                               (-1, "-1s")])
def test_format_duration_matches_go(seconds, text):
    assert ve.format_duration(seconds) == text


def test_pruning_uses_the_larger_of_key_and_mount_max_versions():
    mount = ve.new_mount()
    mount["config"]["max_versions"] = 3
    meta = ve.new_key_meta(0.0)
    meta["max_versions"] = 2  # current Vault KV: max(key, mount) wins, so 3 here
    for n in range(5):
        ve.kv_add_version(mount, "k", meta, {"n": n}, float(n))
    assert sorted(meta["versions"], key=int) == ["3", "4", "5"]
    assert meta["oldest_version"] == 3


def test_pruning_defaults_to_ten_versions():
    mount = ve.new_mount()
    meta = ve.new_key_meta(0.0)
    for n in range(12):
        ve.kv_add_version(mount, "k", meta, {"n": n}, float(n))
    assert meta["oldest_version"] == 3
    assert len(meta["versions"]) == 10


def test_cas_rules():
    config = {"cas_required": False}
    meta = ve.new_key_meta(0.0)
    ve.check_cas({"cas": 0}, config, meta)
    ve.check_cas({}, config, meta)
    meta["current_version"] = 2
    with pytest.raises(ve.VaultError) as mismatch:
        ve.check_cas({"cas": 1}, config, meta)
    assert mismatch.value.errors == [ve.ERR_CAS_MISMATCH]
    with pytest.raises(ve.VaultError) as required:
        ve.check_cas(None, {"cas_required": True}, meta)
    assert required.value.errors == [ve.ERR_CAS_REQUIRED]
    with pytest.raises(ve.VaultError) as garbage:
        ve.check_cas({"cas": "two"}, config, meta)
    assert garbage.value.errors == ["error parsing check-and-set parameter"]


def test_merge_patch_follows_rfc7386():
    assert ve.merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": 5}) == {
        "a": 1, "b": {"d": 3, "e": 4}, "f": 5}


def test_custom_metadata_limits():
    with pytest.raises(ve.VaultError) as too_many:
        ve.validate_custom_metadata({f"k{i}": "v" for i in range(65)})
    assert "at most 64 keys, provided 65" in too_many.value.errors[0]
    with pytest.raises(ve.VaultError) as empty_value:
        ve.validate_custom_metadata({"k": ""})
    assert empty_value.value.errors[0].startswith("1 error occurred:\n\t* custom_metadata validation failed")


def test_delete_version_after_soft_deletes_on_schedule(emu, clock):
    assert call(emu, "POST", "secret/metadata/app", {"delete_version_after": "1h"})[0] == 204
    status, body = call(emu, "POST", "secret/data/app", {"data": {"v": "1"}})
    assert status == 200
    assert body["data"]["deletion_time"] != ""
    assert call(emu, "GET", "secret/data/app")[0] == 200
    clock.now += 3601
    status, body = call(emu, "GET", "secret/data/app")
    assert status == 404
    assert body["data"]["data"] is None


def test_approle_token_expires_after_its_ttl(emu, clock):
    assert call(emu, "POST", "auth/approle/role/r", {"token_ttl": "10m", "token_policies": "a,b"})[0] == 204
    role_id = call(emu, "GET", "auth/approle/role/r/role-id")[1]["data"]["role_id"]
    secret_id = call(emu, "POST", "auth/approle/role/r/secret-id")[1]["data"]["secret_id"]
    status, body = call(emu, "POST", "auth/approle/login", {"role_id": role_id, "secret_id": secret_id}, {})
    assert status == 200
    assert body["auth"]["policies"] == ["a", "b", "default"]
    token = {"X-Vault-Token": body["auth"]["client_token"]}
    clock.now += 300
    status, body = call(emu, "GET", "auth/token/lookup-self", headers=token)
    assert (status, body["data"]["ttl"]) == (200, 300)
    clock.now += 301
    assert call(emu, "GET", "auth/token/lookup-self", headers=token) == (403, {"errors": ["permission denied"]})


def test_secret_id_ttl_expires(emu, clock):
    call(emu, "POST", "auth/approle/role/r", {"secret_id_ttl": 60})
    role_id = call(emu, "GET", "auth/approle/role/r/role-id")[1]["data"]["role_id"]
    secret_id = call(emu, "POST", "auth/approle/role/r/secret-id")[1]["data"]["secret_id"]
    clock.now += 61
    status, body = call(emu, "POST", "auth/approle/login", {"role_id": role_id, "secret_id": secret_id}, {})
    assert (status, body) == (400, {"errors": ["invalid role or secret ID"]})


def test_patch_requires_merge_patch_content_type(emu):
    call(emu, "POST", "secret/data/x", {"data": {"a": "1"}})
    assert call(emu, "PATCH", "secret/data/x", {"data": {"b": "2"}})[0] == 415
    headers = dict(ROOT, **{"Content-Type": "application/merge-patch+json"})
    status, body = call(emu, "PATCH", "secret/data/x", {"data": {"b": "2"}, "options": {"cas": 1}}, headers)
    assert (status, body["data"]["version"]) == (200, 2)
    assert call(emu, "GET", "secret/data/x")[1]["data"]["data"] == {"a": "1", "b": "2"}


def test_sealed_answers_503_except_status_endpoints(emu):
    assert call(emu, "PUT", "sys/seal") == (204, None)
    assert call(emu, "GET", "secret/data/x") == (503, {"errors": ["Vault is sealed"]})
    assert call(emu, "POST", "auth/approle/login", {"role_id": "r"}, {}) == (503, {"errors": ["Vault is sealed"]})
    assert call(emu, "GET", "sys/seal-status", headers={})[1]["sealed"] is True
    assert call(emu, "PUT", "sys/unseal", {"key": "wrong"})[0] == 400
    assert call(emu, "PUT", "sys/unseal", {"key": "k"})[1]["sealed"] is False


@pytest.mark.parametrize(("address", "expected"), [("127.0.0.1:8200", ("127.0.0.1", 8200)),
                                                   ("127.0.0.32:0", ("127.0.0.32", 0)),
                                                   ("localhost:1", ("127.0.0.1", 1))])
def test_listen_accepts_loopback(address, expected):
    assert ve.parse_listen(address) == expected


@pytest.mark.parametrize("address", ["0.0.0.0:8200", "192.168.1.10:8200", "[::1]:8200", "vault:8200", "127.0.0.1"])
def test_listen_refuses_anything_else(address):
    with pytest.raises(ValueError):
        ve.parse_listen(address)
