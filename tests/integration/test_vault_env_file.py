"""vault_env_file against the Vault endpoint on loopback: current pointer, mode, idempotence, check mode, faults."""

import os
import secrets
import stat
import uuid

import pytest

from tests.integration.module_runner import run_module

pytestmark = pytest.mark.integration


def unique(prefix="envfile"):
    return "upkeep-test/%s-%s" % (prefix, uuid.uuid4().hex[:10])


def kv(client):
    return client.secrets.kv.v2


def put(client, path, data, cas=None):
    return kv(client).create_or_update_secret(path=path, secret=data, cas=cas, mount_point="secret")["data"]["version"]


def point(client, path, version):
    # raw API call: hvac 0.11 (the compatibility run) has no custom_metadata argument
    client.adapter.post("/v1/secret/metadata/%s" % path, json={"custom_metadata": {"upkeep_current_version":
                                                                                   str(version)}})


def args(server, dest, variables, **extra):
    out = {"url": server.url, "token": server.token, "dest": str(dest), "variables": variables}
    out.update(extra)
    return out


@pytest.fixture
def seeded(vault_client):
    """A database secret and a Django secret with a pending (latest > current) version."""
    db, django = unique("db"), unique("django")
    values = {
        "db_user": "app_blue", "db_pw": secrets.token_urlsafe(24),
        "key1": "k1-" + secrets.token_hex(20), "key2": "k2-" + secrets.token_hex(20),
        "old": "old-" + secrets.token_hex(20), "pending": "pending-" + secrets.token_hex(20),
    }
    put(vault_client, db, {"username": values["db_user"], "password": values["db_pw"], "host": "127.0.0.1"}, cas=0)
    put(vault_client, django, {"SECRET_KEY": values["key1"], "SECRET_KEY_FALLBACKS": [values["old"]]}, cas=0)
    put(vault_client, django, {"SECRET_KEY": values["key2"], "SECRET_KEY_FALLBACKS": [values["key1"]]}, cas=1)
    point(vault_client, django, 2)
    put(vault_client, django, {"SECRET_KEY": values["pending"], "SECRET_KEY_FALLBACKS": [values["key2"]]}, cas=2)
    variables = [
        {"name": "DB_USER", "path": db, "field": "username"},
        {"name": "DB_PASSWORD", "path": db, "field": "password"},
        {"name": "SECRET_KEY", "path": django},
        {"name": "SECRET_KEY_FALLBACKS", "path": django},
    ]
    return dict(db=db, django=django, values=values, variables=variables)


def assert_no_values(res, values):
    for value in values.values():
        if len(value) > 12:
            assert value not in res.output, "a secret value reached the module output"
    assert "Traceback" not in res.output


def test_renders_the_current_version_not_the_latest(vault_server, seeded, tmp_path):
    dest = tmp_path / "secrets.env"
    res = run_module("vault_env_file", args(vault_server, dest, seeded["variables"], header="rendered by tests"),
                     diff=True)
    assert not res.failed, res
    assert res["changed"] is True
    v = seeded["values"]
    assert dest.read_text() == ("# rendered by tests\nDB_USER=app_blue\nDB_PASSWORD=%s\nSECRET_KEY=%s\n"
                                "SECRET_KEY_FALLBACKS=%s\n" % (v["db_pw"], v["key2"], v["key1"]))
    assert v["pending"] not in dest.read_text()
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert res["versions"] == {seeded["db"]: 1, seeded["django"]: 2}
    assert res["names"] == ["DB_PASSWORD", "DB_USER", "SECRET_KEY", "SECRET_KEY_FALLBACKS"]
    assert res["changed_names"] == res["names"]
    assert "<changed>" in res["diff"]["after"]
    assert_no_values(res, v)


def test_unchanged_then_changed_when_the_pointer_moves(vault_server, vault_client, seeded, tmp_path):
    dest = tmp_path / "secrets.env"
    first = run_module("vault_env_file", args(vault_server, dest, seeded["variables"]))
    assert first["changed"] is True, first
    again = run_module("vault_env_file", args(vault_server, dest, seeded["variables"]))
    assert (again["changed"], again["changed_names"]) == (False, []), again

    point(vault_client, seeded["django"], 3)
    check = run_module("vault_env_file", args(vault_server, dest, seeded["variables"]), check_mode=True, diff=True)
    assert check["changed"] is True and check["changed_names"] == ["SECRET_KEY", "SECRET_KEY_FALLBACKS"], check
    assert seeded["values"]["pending"] not in dest.read_text(), "check mode wrote the file"
    assert check["diff"]["before"] == "# mode: 0600\n# owner: root\n# group: root\n" \
        "SECRET_KEY=<changed>\nSECRET_KEY_FALLBACKS=<changed>\n" if os.geteuid() == 0 else True

    moved = run_module("vault_env_file", args(vault_server, dest, seeded["variables"]), diff=True)
    assert moved["changed"] is True and moved["changed_names"] == ["SECRET_KEY", "SECRET_KEY_FALLBACKS"], moved
    assert "SECRET_KEY=%s\n" % seeded["values"]["pending"] in dest.read_text()
    assert_no_values(moved, seeded["values"])
    assert_no_values(check, seeded["values"])


def test_mode_and_owner_changes_alone_are_changes(vault_server, seeded, tmp_path):
    dest = tmp_path / "secrets.env"
    assert run_module("vault_env_file", args(vault_server, dest, seeded["variables"]))["changed"]
    os.chmod(dest, 0o644)
    res = run_module("vault_env_file", args(vault_server, dest, seeded["variables"]))
    assert res["changed"] is True and res["changed_names"] == [], res
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    res = run_module("vault_env_file", args(vault_server, dest, seeded["variables"], mode="0640", group="nogroup"))
    assert res["changed"] is True, res
    st = os.stat(dest)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_gid == __import__("grp").getgrnam("nogroup").gr_gid
    same = run_module("vault_env_file", args(vault_server, dest, seeded["variables"], mode="0640", group="nogroup"))
    assert same["changed"] is False, same


def test_check_mode_on_a_new_file_writes_nothing(vault_server, seeded, tmp_path):
    dest = tmp_path / "secrets.env"
    res = run_module("vault_env_file", args(vault_server, dest, seeded["variables"]), check_mode=True)
    assert res["changed"] is True and res["changed_names"] == res["names"], res
    assert not dest.exists()
    assert os.listdir(tmp_path) == []


def test_refuses_values_that_do_not_fit_the_format(vault_server, vault_client, tmp_path):
    path = unique("bad")
    put(vault_client, path, {"MULTI": "line1\nline2", "LIST": ["a", "b,c"], "OK": "fine"}, cas=0)
    dest = tmp_path / "secrets.env"
    dest.write_text("OK=before\n")
    os.chmod(dest, 0o600)
    res = run_module("vault_env_file", args(vault_server, dest, [{"name": "OK", "path": path},
                                                                 {"name": "MULTI", "path": path}]))
    assert res.failed and "line break" in res["msg"] and "MULTI" in res["msg"], res
    res = run_module("vault_env_file", args(vault_server, dest, [{"name": "LIST", "path": path}]))
    assert res.failed and "contains a comma" in res["msg"], res
    res = run_module("vault_env_file", args(vault_server, dest, [{"name": "NOPE", "path": path}]))
    assert res.failed and "field NOPE of secret/%s version 1 does not exist" % path in res["msg"], res
    res = run_module("vault_env_file", args(vault_server, dest, [{"name": "X", "path": unique("missing")}]))
    assert res.failed and "not found" in res["msg"], res
    assert dest.read_text() == "OK=before\n"
    assert "line1" not in res.output


def test_vault_stopped_leaves_the_file_untouched(vault_server_factory, tmp_path):
    server = vault_server_factory()
    client = server.client()
    path = unique("stop")
    put(client, path, {"SECRET_KEY": "a" * 50}, cas=0)
    (tmp_path / "etc").mkdir()
    dest = tmp_path / "etc" / "secrets.env"
    variables = [{"name": "SECRET_KEY", "path": path}]
    assert run_module("vault_env_file", args(server, dest, variables))["changed"]
    before = dest.read_bytes()
    server.stop()
    res = run_module("vault_env_file", args(server, dest, variables))
    assert res.failed, res
    assert res["msg"].startswith("Failed to authenticate to Vault with the token at %s: connection refused"
                                 % server.url), res
    assert dest.read_bytes() == before
    assert os.listdir(tmp_path / "etc") == ["secrets.env"], "a temporary file was left behind"
    assert "Traceback" not in res.output and server.token not in res.output


def test_sealed_vault_and_bad_token(vault_server, vault_server_factory, seeded, tmp_path):
    dest = tmp_path / "secrets.env"
    bad = dict(args(vault_server, dest, seeded["variables"]), token="not-a-valid-token")
    res = run_module("vault_env_file", bad)
    assert res.failed and "permission denied" in res["msg"] and res["vault_reason"] == "forbidden", res
    server = vault_server_factory()
    server.client().sys.seal()
    res = run_module("vault_env_file", args(server, dest, seeded["variables"]))
    assert res.failed and "Vault is sealed" in res["msg"] and res["vault_reason"] == "sealed", res
    assert not dest.exists()
