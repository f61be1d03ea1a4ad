"""vault_secret_rotate against the Vault endpoint on loopback: rotation, fallbacks, pruning, CAS, faults, Django."""

import datetime
import os
import uuid

import pytest

from tests.integration.module_runner import COLLECTIONS_PATH, run_module

pytestmark = pytest.mark.integration

DAY = 86400


def unique(prefix="rotate"):
    return "upkeep-test/%s-%s" % (prefix, uuid.uuid4().hex[:10])


def kv(client):
    return client.secrets.kv.v2


def put(client, path, data, cas=None):
    return kv(client).create_or_update_secret(path=path, secret=data, cas=cas, mount_point="secret")["data"]["version"]


def read(client, path, version=None):
    # raw API call: the same with hvac 0.11 (the compatibility run) and 2.x
    query = "?version=%d" % int(version) if version else ""
    return client.adapter.get("/v1/secret/data/%s%s" % (path, query))["data"]["data"]


def metadata(client, path):
    return kv(client).read_secret_metadata(path=path, mount_point="secret")["data"]


def custom(client, path):
    return metadata(client, path).get("custom_metadata") or {}


def set_custom(client, path, mapping):
    # raw API call: hvac 0.11 (the compatibility run) has no custom_metadata argument
    client.adapter.post("/v1/secret/metadata/%s" % path, json={"custom_metadata": mapping})


def current(client, path):
    """The data of the version the pointer names (what vault_env_file renders)."""
    meta = custom(client, path)
    return read(client, path, int(meta["upkeep_current_version"]))


def rfc3339(seconds_ago):
    when = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds_ago)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def args(server, path, **extra):
    out = {"url": server.url, "token": server.token, "path": path}
    out.update(extra)
    return out


def all_values(client, path):
    """Every value any version of the secret ever held (for 'never in the output' checks)."""
    meta = metadata(client, path)
    values = set()
    for version in range(1, int(meta["current_version"]) + 1):
        try:
            data = read(client, path, version) or {}
        except Exception:  # noqa: BLE001, S112 - deleted / destroyed versions
            continue
        for value in data.values():
            values.update(value if isinstance(value, list) else [value])
    return [value for value in values if isinstance(value, str) and len(value) >= 16]


def assert_clean(res, client, path, server):
    assert "Traceback" not in res.output
    assert server.token not in res.output
    for value in all_values(client, path):
        assert value not in res.output, "a secret value reached the module output"


def test_rotate_keeps_the_old_value_as_fallback_and_other_fields(vault_server, vault_client):
    path = unique()
    put(vault_client, path, {"SECRET_KEY": "seed-" + "x" * 45, "JWT_SIGNING_KEY": "jwt-" + "y" * 40}, cas=0)
    res = run_module("vault_secret_rotate", args(vault_server, path))
    assert not res.failed, res
    assert (res["changed"], res["rotated"], res["kv_version"], res["previous_version"]) == (True, True, 2, 1)
    assert [s["name"] for s in res["steps"]] == ["create", "finish"]
    data = current(vault_client, path)
    assert len(data["SECRET_KEY"]) == 50 and data["SECRET_KEY"] != "seed-" + "x" * 45
    assert set(data["SECRET_KEY"]) <= set("abcdefghijklmnopqrstuvwxyz0123456789!@#$%^&*(-_=+)")
    assert data["SECRET_KEY_FALLBACKS"] == ["seed-" + "x" * 45]
    assert data["JWT_SIGNING_KEY"] == "jwt-" + "y" * 40
    meta = custom(vault_client, path)
    assert meta["upkeep_current_version"] == "2"
    assert meta["upkeep_rotated_at"] == meta["upkeep_rotated_at_SECRET_KEY"]
    assert len(meta["upkeep_retired_SECRET_KEY"].split(",")) == 1
    assert_clean(res, vault_client, path, vault_server)

    jwt = run_module("vault_secret_rotate", args(vault_server, path, field="JWT_SIGNING_KEY", generator="hex",
                                                 min_age="20d"))
    assert jwt["rotated"] and jwt["kv_version"] == 3, jwt
    data = current(vault_client, path)
    assert len(data["JWT_SIGNING_KEY"]) == 64 and int(data["JWT_SIGNING_KEY"], 16) >= 0
    assert data["JWT_SIGNING_KEY_FALLBACKS"] == ["jwt-" + "y" * 40]
    assert data["SECRET_KEY_FALLBACKS"] == ["seed-" + "x" * 45]
    assert_clean(jwt, vault_client, path, vault_server)


def test_creates_a_missing_secret_and_min_age_makes_it_idempotent(vault_server, vault_client):
    path = unique("create")
    first = run_module("vault_secret_rotate", args(vault_server, path, min_age="1d", generator="urlsafe"))
    assert first["rotated"] and (first["kv_version"], first["previous_version"], first["fallbacks"]) == (1, 0, 0)
    assert len(current(vault_client, path)["SECRET_KEY"]) == 43
    second = run_module("vault_secret_rotate", args(vault_server, path, min_age="1d", generator="urlsafe"))
    assert (second["changed"], second["rotated"], second["due"], second["kv_version"]) == (False, False, False, 1)
    assert [s["status"] for s in second["steps"]] == ["skipped", "skipped"]
    forced = run_module("vault_secret_rotate", args(vault_server, path, min_age="1d", force=True))
    assert forced["rotated"] and forced["kv_version"] == 2 and forced["fallbacks"] == 1
    assert_clean(forced, vault_client, path, vault_server)


def test_keep_and_grace_period_prune_fallbacks(vault_server, vault_client):
    path = unique("prune")
    values = ["value-%02d-%s" % (i, "z" * 40) for i in range(5)]
    put(vault_client, path, {"SECRET_KEY": values[0], "SECRET_KEY_FALLBACKS": values[1:]}, cas=0)
    # fallbacks retired 1, 2, 20 and 30 days ago
    set_custom(vault_client, path, {"upkeep_current_version": "1", "upkeep_rotated_at_SECRET_KEY": rfc3339(DAY),
                                    "upkeep_retired_SECRET_KEY": ",".join(rfc3339(d * DAY) for d in (1, 2, 20, 30))})
    res = run_module("vault_secret_rotate", args(vault_server, path))
    assert res["rotated"] and (res["fallbacks"], res["dropped_fallbacks"]) == (3, 2), res
    assert current(vault_client, path)["SECRET_KEY_FALLBACKS"] == values[:3]
    assert len(custom(vault_client, path)["upkeep_retired_SECRET_KEY"].split(",")) == 3

    res = run_module("vault_secret_rotate", args(vault_server, path, keep=1))
    assert (res["fallbacks"], res["dropped_fallbacks"]) == (1, 3), res
    assert any("still inside grace_period" in str(w) for w in res.get("warnings", [])), res
    assert len(current(vault_client, path)["SECRET_KEY_FALLBACKS"]) == 1

    short = run_module("vault_secret_rotate", args(vault_server, path, grace_period="1h"))
    assert any("SESSION_COOKIE_AGE" in str(w) for w in short.get("warnings", [])), short
    assert_clean(short, vault_client, path, vault_server)


def test_check_mode_writes_nothing(vault_server, vault_client):
    path = unique("check")
    put(vault_client, path, {"SECRET_KEY": "seed-" + "c" * 45}, cas=0)
    before = metadata(vault_client, path)
    res = run_module("vault_secret_rotate", args(vault_server, path), check_mode=True)
    assert (res["changed"], res["rotated"], res["kv_version"], res["fallbacks"]) == (True, True, 2, 1), res
    after = metadata(vault_client, path)
    assert (after["current_version"], after.get("custom_metadata")) == (before["current_version"],
                                                                         before.get("custom_metadata"))
    rb = run_module("vault_secret_rotate", args(vault_server, path, state="rolled_back", rollback_version=1),
                    check_mode=True)
    assert rb["changed"] is False and rb["rolled_back"] is False, rb  # version 1 is current already
    assert metadata(vault_client, path)["current_version"] == 1


def test_rollback_keeps_the_abandoned_value_as_first_fallback(vault_server, vault_client):
    path = unique("rollback")
    seed = "seed-" + "r" * 45
    put(vault_client, path, {"SECRET_KEY": seed, "SECRET_KEY_FALLBACKS": ["older-" + "o" * 40]}, cas=0)
    rotated = run_module("vault_secret_rotate", args(vault_server, path))
    abandoned = current(vault_client, path)["SECRET_KEY"]
    res = run_module("vault_secret_rotate", args(vault_server, path, state="rolled_back",
                                                 rollback_version=rotated["previous_version"]))
    assert not res.failed, res
    assert (res["changed"], res["rolled_back"], res["rotated"], res["kv_version"], res["previous_version"]) == \
        (True, True, False, 3, 2)
    data = current(vault_client, path)
    assert data["SECRET_KEY"] == seed
    assert data["SECRET_KEY_FALLBACKS"] == [abandoned, "older-" + "o" * 40]
    assert custom(vault_client, path)["upkeep_current_version"] == "3"
    # history is kept: version 2 still holds the abandoned value
    assert read(vault_client, path, 2)["SECRET_KEY"] == abandoned
    again = run_module("vault_secret_rotate", args(vault_server, path, state="rolled_back", rollback_version=1))
    assert (again["changed"], again["kv_version"]) == (False, 3), again
    assert_clean(res, vault_client, path, vault_server)


def test_interrupted_rotation_is_adopted_by_the_next_run(vault_server, vault_client):
    path = unique("adopt")
    seed = "seed-" + "a" * 45
    put(vault_client, path, {"SECRET_KEY": seed}, cas=0)
    set_custom(vault_client, path, {"upkeep_current_version": "1", "upkeep_rotated_at_SECRET_KEY": rfc3339(30 * DAY)})
    # what a run that stopped after its CAS data write leaves behind
    put(vault_client, path, {"SECRET_KEY": "new-" + "n" * 46, "SECRET_KEY_FALLBACKS": [seed]}, cas=1)
    res = run_module("vault_secret_rotate", args(vault_server, path, min_age="20d"))
    assert not res.failed, res
    assert (res["adopted"], res["rotated"], res["changed"], res["kv_version"], res["previous_version"]) == \
        (True, True, True, 2, 1)
    assert [s["name"] for s in res["steps"]] == ["adopt", "create", "finish"]
    meta = custom(vault_client, path)
    assert meta["upkeep_current_version"] == "2" and len(meta["upkeep_retired_SECRET_KEY"].split(",")) == 1
    assert metadata(vault_client, path)["current_version"] == 2
    again = run_module("vault_secret_rotate", args(vault_server, path, min_age="20d"))
    assert (again["changed"], again["rotated"]) == (False, False), again


def test_cas_conflict_from_a_concurrent_writer_then_a_rerun_converges(vault_server, vault_client, tmp_path):
    """A concurrent writer adds a version between the module's read and its CAS write.

    The writer is made deterministic with a sitecustomize hook in the module's own process: it writes
    another version (with the same CAS the module is about to use) right before the module's write.
    """
    path = unique("cas-det")
    put(vault_client, path, {"SECRET_KEY": "seed-" + "d" * 45}, cas=0)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "from ansible_collections.upkeep.runbooks.plugins.module_utils import _vault\n"
        "_orig = _vault.Vault.kv_write\n"
        "def kv_write(self, path, data, cas):\n"
        "    _orig(self, path, dict(self.kv_read(path, cas).data, OTHER='concurrent'), cas=cas)\n"
        "    return _orig(self, path, data, cas=cas)\n"
        "_vault.Vault.kv_write = kv_write\n")
    res = run_module("vault_secret_rotate", args(vault_server, path),
                     env={"PYTHONPATH": os.pathsep.join([str(COLLECTIONS_PATH), str(hook)])})
    assert res.failed, res
    assert res["msg"].startswith("Failed to rotate SECRET_KEY in secret/%s at %s: another writer changed the secret "
                                 "since it was read (check-and-set version mismatch); nothing was overwritten; run "
                                 "the task again" % (path, vault_server.url)), res["msg"]
    assert res["vault_reason"] == "cas_mismatch"
    assert res["steps"][-1] == {"name": "create", "status": "failed", "msg": "nothing was written"}
    assert custom(vault_client, path) == {}  # the loser never touched the metadata
    rerun = run_module("vault_secret_rotate", args(vault_server, path))
    assert rerun["rotated"] and rerun["adopted"] is False and rerun["kv_version"] == 3, rerun
    data = current(vault_client, path)
    assert data["SECRET_KEY_FALLBACKS"] == ["seed-" + "d" * 45] and data["OTHER"] == "concurrent"


def test_bad_token_and_sealed_vault(vault_server, vault_server_factory, vault_client):
    path = unique("faults")
    res = run_module("vault_secret_rotate", args(vault_server, path, token="hvs.not-a-valid-token"))
    assert res.failed and res["vault_reason"] == "forbidden", res
    assert res["msg"].startswith("Failed to authenticate to Vault with the token at %s: permission denied"
                                 % vault_server.url)
    assert "hvs.not-a-valid-token" not in res.output
    server = vault_server_factory()
    put(server.client(), path, {"SECRET_KEY": "seed-" + "s" * 45}, cas=0)
    server.client().sys.seal()
    res = run_module("vault_secret_rotate", args(server, path))
    assert res.failed and res["vault_reason"] == "sealed" and "Vault is sealed" in res["msg"], res
    server.client().sys.submit_unseal_key(server.unseal_key)
    assert metadata(server.client(), path)["current_version"] == 1
    rerun = run_module("vault_secret_rotate", args(server, path))
    assert rerun["rotated"] and rerun["kv_version"] == 2, rerun
    server.stop()
    res = run_module("vault_secret_rotate", args(server, path))
    assert res.failed and "connection refused" in res["msg"] and res["vault_reason"] == "unreachable", res


def test_approle_authentication(vault_server_factory):
    server = vault_server_factory(approles=["rotator:role-rot-1234:secret-rot-5678:rotation"])
    path = unique("approle")
    put(server.client(), path, {"SECRET_KEY": "seed-" + "p" * 45}, cas=0)
    common = {"url": server.url, "auth_method": "approle", "role_id": "role-rot-1234", "path": path}
    res = run_module("vault_secret_rotate", dict(common, secret_id="secret-rot-5678"))
    assert res["rotated"] and res["kv_version"] == 2, res
    bad = run_module("vault_secret_rotate", dict(common, secret_id="wrong-secret-id"))
    assert bad.failed and "invalid role_id or secret_id" in bad["msg"], bad
    assert "wrong-secret-id" not in bad.output and "secret-rot-5678" not in res.output
    env_res = run_module("vault_secret_rotate", {"path": path, "force": True},
                         env={"VAULT_ADDR": server.url, "VAULT_AUTH_METHOD": "approle",
                              "VAULT_ROLE_ID": "role-rot-1234", "VAULT_SECRET_ID": "secret-rot-5678",
                              "VAULT_TOKEN": None})
    assert env_res["rotated"] and env_res["kv_version"] == 3, env_res


def test_django_signing_survives_the_rotation(vault_server, vault_client):
    django = pytest.importorskip("django", reason="Django is not installed in this venv: the signing check needs it")
    from django.conf import settings

    path = unique("django")
    old_key = "seed-" + "k" * 45
    put(vault_client, path, {"SECRET_KEY": old_key}, cas=0)
    if not settings.configured:
        settings.configure(SECRET_KEY=old_key, SECRET_KEY_FALLBACKS=[])
    django.setup()
    from django.core import signing
    from django.test.utils import override_settings

    with override_settings(SECRET_KEY=old_key, SECRET_KEY_FALLBACKS=[]):
        token = signing.dumps({"user": 42}, salt="session")
    res = run_module("vault_secret_rotate", args(vault_server, path))
    assert res["rotated"], res
    data = current(vault_client, path)
    with override_settings(SECRET_KEY=data["SECRET_KEY"], SECRET_KEY_FALLBACKS=data["SECRET_KEY_FALLBACKS"]):
        assert signing.loads(token, salt="session") == {"user": 42}
        fresh = signing.dumps({"user": 7}, salt="session")
    with override_settings(SECRET_KEY=data["SECRET_KEY"], SECRET_KEY_FALLBACKS=[]):
        with pytest.raises(signing.BadSignature):
            signing.loads(token, salt="session")
    # after a rollback the value signed with the abandoned key still verifies
    run_module("vault_secret_rotate", args(vault_server, path, state="rolled_back", rollback_version=1))
    data = current(vault_client, path)
    assert data["SECRET_KEY"] == old_key
    with override_settings(SECRET_KEY=data["SECRET_KEY"], SECRET_KEY_FALLBACKS=data["SECRET_KEY_FALLBACKS"]):
        assert signing.loads(fresh, salt="session") == {"user": 7}
        assert signing.loads(token, salt="session") == {"user": 42}
