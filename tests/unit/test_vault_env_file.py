"""vault_env_file: rendering, validation and change detection with the Vault backend mocked at _vault."""

import os
import stat
from unittest import mock

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _vault
from ansible_collections.upkeep.runbooks.plugins.modules import vault_env_file
from tests.unit.module_helpers import run_module_main

TOKEN = "unit-token-0123456789"
VALUE = "unit-secret-value-abcdef0123456789"


class FakeVault:
    url = "http://127.0.0.1:8200"

    def __init__(self, secrets):
        self.secrets = secrets
        self.reads = []
        self.closed = False

    def describe(self, path):
        return "secret/" + path

    def where(self):
        return self.url

    def close(self):
        self.closed = True


def fake_read_current(vault, path):
    vault.reads.append(path)
    if path not in vault.secrets:
        return None, None
    version, data = vault.secrets[path]
    return _vault.KVSecret(path, version, data), None


@pytest.fixture
def vault():
    fake = FakeVault({
        "app/django": (4, {"SECRET_KEY": VALUE, "SECRET_KEY_FALLBACKS": ["old1", "old2"], "N": 3, "B": True}),
        "app/db": (2, {"username": "app_blue", "password": VALUE + "-pw"}),
    })
    with mock.patch.object(_vault, "connect", return_value=fake) as connect, \
            mock.patch.object(_vault, "read_current", side_effect=fake_read_current):
        fake.connect = connect
        yield fake


def run(tmp_path, variables, **extra):
    args = {"url": "http://127.0.0.1:8200", "token": TOKEN, "dest": str(tmp_path / "secrets.env"),
            "variables": variables}
    check_mode = extra.pop("check_mode", False)
    diff = extra.pop("diff", False)
    args.update(extra)
    return run_module_main(vault_env_file, args, check_mode=check_mode, diff=diff)


VARS = [
    {"name": "SECRET_KEY", "path": "app/django"},
    {"name": "SECRET_KEY_FALLBACKS", "path": "app/django"},
    {"name": "DB_USER", "path": "app/db", "field": "username"},
    {"name": "DB_PASSWORD", "path": "/app/db/", "field": "password"},
]


def test_renders_in_order_reads_each_path_once_and_returns_no_value(vault, tmp_path):
    res = run(tmp_path, VARS, header="from Vault")
    assert res.exit_code == 0 and res["changed"], res
    text = (tmp_path / "secrets.env").read_text()
    assert text == ("# from Vault\nSECRET_KEY=%s\nSECRET_KEY_FALLBACKS=old1,old2\nDB_USER=app_blue\nDB_PASSWORD=%s-pw\n"
                    % (VALUE, VALUE))
    assert vault.reads == ["app/django", "app/db"]
    assert vault.closed
    assert res["versions"] == {"app/django": 4, "app/db": 2}
    assert res["names"] == sorted(v["name"] for v in VARS)
    assert VALUE not in res.stdout and TOKEN not in res.stdout
    assert stat.S_IMODE(os.stat(tmp_path / "secrets.env").st_mode) == 0o600


def test_changed_names_and_diff_show_names_only(vault, tmp_path):
    dest = tmp_path / "secrets.env"
    dest.write_text("SECRET_KEY=%s\nSECRET_KEY_FALLBACKS=old1\nGONE=x\n" % VALUE)
    os.chmod(dest, 0o600)
    res = run(tmp_path, VARS[:2] + [{"name": "N", "path": "app/django"}, {"name": "B", "path": "app/django"}],
              diff=True, check_mode=True)
    assert res["changed"] is True
    assert res["changed_names"] == ["B", "GONE", "N", "SECRET_KEY_FALLBACKS"]
    assert res["diff"]["after"].endswith("B=<changed>\nN=<changed>\nSECRET_KEY_FALLBACKS=<changed>\n")
    assert "GONE=<changed>" in res["diff"]["before"]
    assert VALUE not in res.stdout
    assert dest.read_text().startswith("SECRET_KEY=%s\nSECRET_KEY_FALLBACKS=old1\n" % VALUE)  # check mode
    real = run(tmp_path, VARS[:2] + [{"name": "N", "path": "app/django"}, {"name": "B", "path": "app/django"}])
    assert real["changed"] and dest.read_text().endswith("N=3\nB=true\n")
    again = run(tmp_path, VARS[:2] + [{"name": "N", "path": "app/django"}, {"name": "B", "path": "app/django"}])
    assert (again["changed"], again["changed_names"]) == (False, [])


@pytest.mark.parametrize("data, message", [
    ({"X": "a\nb"}, "contains a line break"),
    ({"X": "a\rb"}, "contains a line break"),
    ({"X": "a\u2028b"}, "contains a line break"),
    ({"X": ["ok", "a,b"]}, "item 1 of field X of secret/p version 1 contains a comma"),
    ({"X": ["ok", {"a": 1}]}, "item 1 of field X of secret/p version 1 is a dict"),
    ({"X": None}, "is null"),
    ({"X": {"a": "b"}}, "is a dict"),
    ({"Y": "1"}, "Failed to render X: field X of secret/p version 1 does not exist"),
])
def test_values_that_do_not_fit_are_refused_without_showing_them(tmp_path, data, message):
    fake = FakeVault({"p": (1, data)})
    with mock.patch.object(_vault, "connect", return_value=fake), \
            mock.patch.object(_vault, "read_current", side_effect=fake_read_current):
        res = run(tmp_path, [{"name": "X", "path": "p"}])
    assert res.failed and message in res["msg"], res
    assert not (tmp_path / "secrets.env").exists()


@pytest.mark.parametrize("extra, message", [
    ({"mode": "0644"}, "gives other users access"),
    ({"mode": "u=rw"}, "expected an octal mode"),
    ({"owner": "no-such-user-upkeep"}, "no user 'no-such-user-upkeep'"),
    ({"group": "no-such-group-upkeep"}, "no group 'no-such-group-upkeep'"),
    ({"variables": [{"name": "1BAD", "path": "p"}]}, "invalid name '1BAD'"),
    ({"variables": [{"name": "A", "path": "p"}, {"name": "A", "path": "q"}]}, "A is listed twice"),
    ({"variables": []}, "the list is empty"),
    ({"header": "two\nlines"}, "header: it must be one line"),
])
def test_bad_options_fail_before_vault_is_asked(vault, tmp_path, extra, message):
    extra = dict(extra)
    res = run(tmp_path, extra.pop("variables", VARS), **extra)
    assert res.failed and message in res["msg"], res
    vault.connect.assert_not_called()


def test_missing_directory_and_missing_secret(vault, tmp_path):
    res = run_module_main(vault_env_file, {"url": "http://127.0.0.1:8200", "token": TOKEN,
                                           "dest": str(tmp_path / "nope" / "secrets.env"), "variables": VARS})
    assert res.failed and "the directory %s does not exist" % (tmp_path / "nope") in res["msg"]
    res = run(tmp_path, [{"name": "X", "path": "absent"}])
    assert res.failed and res["msg"] == "Failed to read secret/absent at http://127.0.0.1:8200: no such secret " \
                                        "(not found)"


def test_vault_errors_are_reported_and_the_file_is_left_alone(tmp_path):
    dest = tmp_path / "secrets.env"
    dest.write_text("SECRET_KEY=before\n")
    error = _vault.VaultSealedError("Failed to read the metadata of secret/app at http://v: Vault is sealed "
                                    "(unseal it, then run again)", 503, "sealed")
    with mock.patch.object(_vault, "connect", return_value=FakeVault({})), \
            mock.patch.object(_vault, "read_current", side_effect=error):
        res = run(tmp_path, VARS)
    assert res.failed and res["vault_reason"] == "sealed" and res["vault_status"] == 503
    assert res["msg"].startswith("Failed to read the metadata of secret/app")
    assert dest.read_text() == "SECRET_KEY=before\n"


def test_render_value_helpers():
    assert vault_env_file.render_value(["a", 1, 2.5], "X", "w") == "a,1,2.5"
    assert vault_env_file.render_value([], "X", "w") == ""
    assert vault_env_file.render_value("a=b#c $d 'e'", "X", "w") == "a=b#c $d 'e'"
    assert vault_env_file.parse_env("# c\nA=1=2\n B =x\nnoequals\n") == {"A": "1=2", "B": "x"}
    assert vault_env_file.parse_mode("600") == 0o600 and vault_env_file.parse_mode(0o640) == 0o640
