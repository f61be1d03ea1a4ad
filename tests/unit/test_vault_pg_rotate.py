"""Unit tests for plugins/modules/vault_pg_rotate.py.

main() runs in-process (tests/unit/module_helpers.run_module_main) with the two backends replaced at
the module_utils boundary: ``_vault.open_vault`` returns an in-memory KV v2 store with versions,
check-and-set and custom metadata, and ``_postgres.open_connection`` / ``query_one`` / ``query_all`` /
``execute`` / ``is_in_recovery`` talk to an in-memory server that stores SCRAM verifiers and checks
logins against them. The decision logic runs for real.
"""

from __future__ import annotations

import base64
import copy
import datetime
from unittest import mock

import pytest
from ansible_collections.upkeep.runbooks.plugins.module_utils import _postgres, _vault
from ansible_collections.upkeep.runbooks.plugins.modules import vault_pg_rotate as mod
from psycopg import sql as pg_sql

from tests.unit.module_helpers import run_module_main

PATH = "app/database"
OLD = "Old-Passw0rd-unit"
BLUE_OLD = "Blue-Passw0rd-unit"
GREEN_OLD = "Green-Passw0rd-unit"
BASE = {"path": PATH, "url": "http://127.0.0.1:8200", "token": "unit-token", "login_unix_socket": "/run/pg",
        "test_timeout": 0}


# --------------------------------------------------------------------------------------
# fakes


class FakeVault:
    """KV v2 of one mount in memory: versions, CAS, custom metadata; failures on demand."""

    def __init__(self):
        self.versions = {}  # path -> {version: data}
        self.custom = {}  # path -> {key: str}
        self.writes = []  # (kind, path, version or changes)
        self.down = False  # every call raises "connection refused"
        self.down_after_writes = None  # go down once this many writes happened
        self.cas_conflict = False

    # helpers for tests
    def seed(self, path, data, custom=None):
        self.versions.setdefault(path, {})
        version = len(self.versions[path]) + 1
        self.versions[path][version] = dict(data)
        if custom is not None:
            self.custom[path] = {k: str(v) for k, v in custom.items()}
        return version

    def _check(self, action):
        if self.down_after_writes is not None and len(self.writes) >= self.down_after_writes:
            self.down = True
        if self.down:
            raise _vault.VaultUnreachableError(
                "Failed to %s at http://127.0.0.1:8200: connection refused (is Vault running and listening at "
                "that address?)" % action, None, "unreachable")

    # the _vault.Vault interface the module uses
    def describe(self, path):
        return "secret/%s" % path

    def close(self):
        pass

    def kv_metadata(self, path):
        self._check("read the metadata of secret/%s" % path)
        if path not in self.versions:
            return None
        versions = self.versions[path]
        raw = {"current_version": max(versions), "oldest_version": 1,
               "custom_metadata": dict(self.custom.get(path, {})),
               "versions": {str(v): {"created_time": "2026-11-01T00:00:00Z", "deletion_time": "", "destroyed": False}
                            for v in versions}}
        return _vault.KVMetadata(path, raw)

    def kv_read(self, path, version=None):
        self._check("read secret/%s" % path)
        versions = self.versions.get(path)
        if not versions:
            return None
        version = version or max(versions)
        if version not in versions:
            return None
        return _vault.KVSecret(path, version, copy.deepcopy(versions[version]))

    def kv_write(self, path, data, cas):
        self._check("write secret/%s" % path)
        latest = max(self.versions.get(path, {0: None}))
        if self.cas_conflict or cas != latest:
            raise _vault.VaultCASError("Failed to write secret/%s at http://127.0.0.1:8200: another writer changed "
                                       "the secret since it was read" % path, 400, "cas_mismatch")
        self.versions.setdefault(path, {})[latest + 1] = copy.deepcopy(data)
        self.writes.append(("data", path, latest + 1))
        return latest + 1

    def kv_update_custom_metadata(self, path, changes, meta=None):
        self._check("write the custom metadata of secret/%s" % path)
        merged = dict(self.custom.get(path, {}))
        for key, value in changes.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = str(value)
        self.custom[path] = merged
        self.writes.append(("meta", path, dict(changes)))
        if meta is not None:
            meta.custom_metadata = merged
        return merged

    # assertions
    def pointer(self, path):
        return int(self.custom[path][_vault.CURRENT_VERSION_KEY])

    def current_data(self, path):
        return self.versions[path][self.pointer(path)]


def verifier_matches(verifier, password):
    iterations, salt = verifier.split("$")[1].split(":")
    return mod.scram_verifier(password, base64.b64decode(salt), int(iterations)) == verifier


class FakeConn:
    def __init__(self, server, user):
        self.server, self.user = server, user
        self.closed = False

    def transaction(self):
        return FakeTransaction(self)

    def close(self):
        self.closed = True


class FakeTransaction:
    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FakeServer:
    """An in-memory PostgreSQL: roles with SCRAM verifiers, memberships, logins checked against them."""

    def __init__(self):
        self.roles = {}  # name -> dict(verifier, can_login, superuser)
        self.members = {}  # group -> set(members)
        self.in_recovery = False
        self.down = False
        self.admin = {"name": "postgres", "superuser": True, "createrole": True}
        self.alters = []  # role names whose password was changed
        self.statements = []
        self.reject_logins = set()  # endpoints host:port where logins fail
        self.alter_error = None  # (message, sqlstate) the ALTER ROLE fails with

    def add(self, name, password, can_login=True, superuser=False, group=None):
        self.roles[name] = {"verifier": mod.scram_verifier(password), "can_login": can_login, "superuser": superuser}
        if group:
            self.members.setdefault(group, set()).add(name)

    def accepts(self, name, password):
        role = self.roles.get(name)
        return bool(role and role["can_login"] and verifier_matches(role["verifier"], password))

    # _postgres replacements
    def open_connection(self, params, autocommit=True):
        where = "%s:%s" % (params.get("login_unix_socket") or params.get("login_host"), params.get("login_port"))
        if self.down:
            raise _postgres.PostgresConnectError("Failed to connect to PostgreSQL at %s: connection refused" % where)
        if params.get("login_unix_socket"):
            return FakeConn(self, params.get("login_user") or "postgres")
        user = params["login_user"]
        if where in self.reject_logins or not self.accepts(user, params.get("login_password") or ""):
            raise _postgres.PostgresConnectError(
                "Failed to connect to PostgreSQL at %s: authentication failed for user '%s'" % (where, user))
        return FakeConn(self, user)

    def query_one(self, conn, query, params=None):
        rows = self.query_all(conn, query, params)
        return rows[0] if rows else None

    def query_all(self, conn, query, params=None):
        if self.down:
            raise _postgres.PostgresError("the server closed the connection unexpectedly", "08006")
        if query == mod.SQL_ROLE:
            role = self.roles.get(params[0])
            return [dict(name=params[0], can_login=role["can_login"], superuser=role["superuser"])] if role else []
        if query == mod.SQL_ADMIN:
            return [dict(self.admin)]
        if query == mod.SQL_COMMON_GROUPS:
            return [{"name": g} for g, m in sorted(self.members.items()) if params[0] in m and params[1] in m]
        if query == mod.SQL_SESSIONS:
            return [{"n": 0}]
        if "session_user" in query:
            return [{"name": conn.user}]
        raise AssertionError("unexpected query %r" % query)

    def execute(self, conn, query, params=None):
        if self.down:
            raise _postgres.PostgresError("the server closed the connection unexpectedly", "08006")
        if isinstance(query, pg_sql.Composed):
            if self.alter_error:
                raise _postgres.PostgresError(*self.alter_error)
            parts = query._obj
            assert parts[0]._obj == "ALTER ROLE " and parts[2]._obj == " PASSWORD "
            name, verifier = parts[1]._obj[0], parts[3]._obj
            assert verifier.startswith("SCRAM-SHA-256$4096:")
            self.roles[name]["verifier"] = verifier
            self.alters.append(name)
            return 0
        self.statements.append(query)
        return 0

    def is_in_recovery(self, conn):
        return self.in_recovery


@pytest.fixture
def vault():
    return FakeVault()


@pytest.fixture
def server():
    return FakeServer()


@pytest.fixture(autouse=True)
def backends(vault, server, monkeypatch):
    for key in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "VAULT_ADDR", "VAULT_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    with mock.patch.object(_vault, "open_vault", return_value=vault) as opened, \
            mock.patch.object(_postgres, "open_connection", side_effect=server.open_connection), \
            mock.patch.object(_postgres, "query_one", side_effect=server.query_one), \
            mock.patch.object(_postgres, "query_all", side_effect=server.query_all), \
            mock.patch.object(_postgres, "execute", side_effect=server.execute), \
            mock.patch.object(_postgres, "is_in_recovery", side_effect=server.is_in_recovery), \
            mock.patch.object(mod.time, "sleep"):
        yield opened


@pytest.fixture
def single(vault, server):
    server.add("app", OLD)
    vault.seed(PATH, {"username": "app", "password": OLD, "host": "db1"})


@pytest.fixture
def pair(vault, server):
    server.add("app_blue", BLUE_OLD, group="app")
    server.add("app_green", GREEN_OLD, group="app")
    vault.seed(PATH, {"username": "app_blue", "password": BLUE_OLD})


def run(args=None, check_mode=False, **extra):
    payload = dict(BASE)
    payload.update(args or {})
    payload.update(extra)
    return run_module_main(mod, payload, check_mode=check_mode)


def statuses(result):
    return [step["status"] for step in result["steps"]]


def assert_no_password(result, vault):
    for versions in vault.versions.values():
        for data in versions.values():
            assert data["password"] not in result.stdout


# --------------------------------------------------------------------------------------
# helpers


def test_generated_passwords_are_letters_and_digits():
    password = mod.generate_password(40)
    assert len(password) == 40 and password.isalnum() and password.isascii()
    assert mod.generate_password(40) != password


# --------------------------------------------------------------------------------------
# due policy


def test_single_rotation_when_never_rotated(vault, server, single):
    result = run(username="app")
    assert result.exit_code == 0, result
    assert result["changed"] and result["rotated"] and not result["resumed"] and not result["rolled_back"]
    assert statuses(result) == ["done"] * 4
    assert result["kv_version"] == 2 and result["previous_version"] == 1
    assert result["active_username"] == result["previous_username"] == "app"
    data = vault.current_data(PATH)
    assert vault.pointer(PATH) == 2 and data["host"] == "db1" and len(data["password"]) == 32
    assert server.accepts("app", data["password"]) and not server.accepts("app", OLD)
    assert vault.custom[PATH][_vault.ROTATED_AT_KEY].endswith("Z")
    assert vault.custom[PATH]["upkeep_strategy"] == "single"
    assert _vault.PENDING_VERSION_KEY not in vault.custom[PATH]
    assert "SET LOCAL log_statement = 'none'" in server.statements
    assert "rotated the password of app (never rotated)" in result["msg"]
    assert_no_password(result, vault)


def test_not_due_changes_nothing(vault, server, single):
    recent = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5))
    vault.custom[PATH] = {_vault.ROTATED_AT_KEY: _vault.utc_now_text(recent), _vault.CURRENT_VERSION_KEY: "1"}
    result = run(username="app", min_age="1h")
    assert result.exit_code == 0
    assert not result["changed"] and not result["rotated"]
    assert statuses(result) == ["skipped"] * 4 and result["msg"].startswith("not due")
    assert vault.writes == [] and server.alters == []
    forced = run(username="app", min_age="1h", force=True)
    assert forced["rotated"] and forced["kv_version"] == 2 and "force=true" in forced["msg"]


def test_due_when_older_than_min_age(vault, single):
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=31)
    vault.custom[PATH] = {_vault.ROTATED_AT_KEY: _vault.utc_now_text(old)}
    result = run(username="app", min_age="30d")
    assert result["rotated"] and "min_age 2592000 s" in result["msg"]


def test_check_mode_writes_nothing(vault, server, single):
    result = run(username="app", check_mode=True)
    assert result.exit_code == 0
    assert result["changed"] and result["rotated"] and result["kv_version"] == 2
    assert all(step["status"] == "skipped" and step["msg"].startswith("check mode") for step in result["steps"])
    assert vault.writes == [] and server.alters == []
    assert result["msg"].startswith("check mode: would rotate")


# --------------------------------------------------------------------------------------
# alternating


def test_alternating_picks_the_inactive_login(vault, server, pair):
    result = run(strategy="alternating", usernames=["app_blue", "app_green"])
    assert result.exit_code == 0, result
    assert result["active_username"] == "app_green" and result["previous_username"] == "app_blue"
    assert server.alters == ["app_green"], "only the inactive login changes"
    assert server.accepts("app_blue", BLUE_OLD)
    assert vault.current_data(PATH)["username"] == "app_green"
    second = run(strategy="alternating", usernames=["app_green", "app_blue"])
    assert second["active_username"] == "app_blue" and server.alters == ["app_green", "app_blue"]
    assert server.accepts("app_green", vault.versions[PATH][2]["password"])


def test_alternating_preflight(vault, server, pair):
    server.members["app"].discard("app_green")
    result = run(strategy="alternating", usernames=["app_blue", "app_green"])
    assert result.failed and "not members of a common owner group" in result["msg"]
    server.members["app"].add("app_green")
    server.roles["app_green"]["can_login"] = False
    result = run(strategy="alternating", usernames=["app_blue", "app_green"])
    assert result.failed and "'app_green' cannot log in (NOLOGIN)" in result["msg"]
    assert vault.writes == [] and server.alters == []


def test_secret_naming_another_login_is_refused(vault, server, pair):
    server.add("other", "x" * 20)
    result = run(username="other")
    assert result.failed and "names the login 'app_blue', not username other" in result["msg"]
    result = run(strategy="alternating", usernames=["other", "app_green"])
    assert result.failed and "refusing to touch another login" in result["msg"]


# --------------------------------------------------------------------------------------
# failures and rollback


def test_test_failure_rolls_back_postgres_then_vault(vault, server, single):
    server.reject_logins.add("127.0.0.1:5432")
    result = run(username="app")
    assert result.failed and result["rolled_back"] and not result["rotated"]
    assert statuses(result) == ["rolled_back", "rolled_back", "failed", "skipped"]
    assert "the test step failed: app could not log in at 127.0.0.1:5432/postgres" in result["msg"]
    assert "PostgreSQL has the password of version 1 for app again" in result["msg"]
    assert server.accepts("app", OLD)
    assert vault.pointer(PATH) == 3 and vault.current_data(PATH)["password"] == OLD
    assert _vault.PENDING_VERSION_KEY not in vault.custom[PATH]
    assert result["kv_version"] == 3 and result["pending_version"] is None
    assert_no_password(result, vault)


def test_vault_down_at_finish_puts_postgres_back_and_leaves_pending(vault, server, single):
    # writes: pointer, data v2, pending keys, step=set, step=tested -> down before the finish
    vault.down_after_writes = 4
    result = run(username="app")
    assert result.failed and result["rolled_back"], result
    assert "connection refused" in result["msg"] and "it still records pending version 2" in result["msg"]
    assert "agrees with version 1 that Vault calls current" in result["msg"]
    assert server.accepts("app", OLD)
    assert result["pending_version"] == 2
    # next run: Vault is back, the pending version is resumed
    vault.down, vault.down_after_writes = False, None
    again = run(username="app")
    assert again.exit_code == 0 and again["resumed"] and again["rotated"], again
    assert vault.pointer(PATH) == 2 and server.accepts("app", vault.versions[PATH][2]["password"])
    assert "resumed the rotation interrupted after step" in again["msg"]


def test_postgres_down_after_set_leaves_pending(vault, server, single):
    original = mod.login_test

    def down_then_test(*args, **kwargs):
        server.down = True
        return original(*args, **kwargs)

    with mock.patch.object(mod, "login_test", side_effect=down_then_test):
        result = run(username="app")
    assert result.failed and not result["rolled_back"]
    assert "putting the previous password back failed too" in result["msg"]
    assert vault.custom[PATH][_vault.PENDING_VERSION_KEY] == "2"
    server.down = False
    again = run(username="app")
    assert again["resumed"] and again["rotated"] and vault.pointer(PATH) == 2


def test_cas_conflict_touches_nothing(vault, server, single):
    vault.cas_conflict = True
    result = run(username="app")
    assert result.failed and "another writer changed secret/app/database" in result["msg"]
    assert "PostgreSQL was not touched" in result["msg"] and server.alters == []
    assert statuses(result) == ["failed", "skipped", "skipped", "skipped"]


def test_rotation_finished_by_another_run_during_preflight_is_left_alone(vault, server, single):
    """A first rotation (no pointer yet) names the current version before writing; a concurrent run that
    rotated completely while this one was logging in to PostgreSQL must not be pointed back at version 1."""
    original = server.query_all

    def rotate_meanwhile(conn, query, params=None):
        if query == mod.SQL_ADMIN and vault.pointer_written is None:
            vault.pointer_written = True
            vault.seed(PATH, {"username": "app", "password": "Other-Run-Passw0rd"},
                       custom={_vault.CURRENT_VERSION_KEY: "2", _vault.ROTATED_AT_KEY: "2026-12-02T12:00:00Z"})
            server.roles["app"]["verifier"] = mod.scram_verifier("Other-Run-Passw0rd")
        return original(conn, query, params)

    vault.pointer_written = None
    server.query_all = rotate_meanwhile
    result = run(username="app")
    assert result.failed and "another writer changed secret/app/database" in result["msg"], result["msg"]
    assert "PostgreSQL was not touched" in result["msg"] and server.alters == []
    assert [w for w in vault.writes if w[0] == "meta"] == [] and vault.pointer(PATH) == 2
    assert server.accepts("app", "Other-Run-Passw0rd")


def test_vault_unreachable_at_start(vault, backends, single):
    backends.side_effect = _vault.VaultUnreachableError(
        "Failed to authenticate to Vault with the token at http://127.0.0.1:8200: connection refused",
        None, "unreachable")
    result = run(username="app")
    assert result.failed and result["msg"].startswith("Failed to authenticate to Vault")
    assert result["vault_reason"] == "unreachable" and not result["changed"]


# --------------------------------------------------------------------------------------
# resume


def test_resume_pending_version_from_metadata(vault, server, single):
    vault.custom[PATH] = {_vault.CURRENT_VERSION_KEY: "1"}
    vault.seed(PATH, {"username": "app", "password": "Pending-Passw0rd-unit"},
               custom={_vault.CURRENT_VERSION_KEY: "1", _vault.PENDING_VERSION_KEY: "2",
                       _vault.PENDING_STEP_KEY: "set"})
    result = run(username="app", min_age="30d")
    assert result.exit_code == 0 and result["resumed"] and result["rotated"]
    assert "last recorded step: set" in result["steps"][0]["msg"]
    assert server.accepts("app", "Pending-Passw0rd-unit") and vault.pointer(PATH) == 2
    assert "Pending-Passw0rd-unit" not in result.stdout


def test_resume_unmarked_latest_version(vault, server, single):
    """A crash between the CAS data write and the metadata write: latest > pointer, no pending key."""
    vault.custom[PATH] = {_vault.CURRENT_VERSION_KEY: "1"}
    vault.seed(PATH, {"username": "app", "password": "Unmarked-Passw0rd-unit"})
    result = run(username="app")
    assert result["resumed"] and "last recorded step: unrecorded" in result["steps"][0]["msg"]
    assert server.accepts("app", "Unmarked-Passw0rd-unit")


def test_resume_that_cannot_finish_rolls_back(vault, server, single):
    vault.seed(PATH, {"username": "app", "password": "Pending-Passw0rd-unit"},
               custom={_vault.PENDING_VERSION_KEY: "2", _vault.PENDING_STEP_KEY: "created"})
    server.reject_logins.add("127.0.0.1:5432")
    result = run(username="app")
    assert result.failed and result["resumed"] and result["rolled_back"]
    assert server.accepts("app", OLD) and vault.pointer(PATH) == 3
    assert vault.current_data(PATH)["password"] == OLD


def test_resume_in_check_mode_predicts(vault, server, single):
    vault.seed(PATH, {"username": "app", "password": "Pending-Passw0rd-unit"},
               custom={_vault.CURRENT_VERSION_KEY: "1", _vault.PENDING_VERSION_KEY: "2"})
    result = run(username="app", check_mode=True)
    assert result["resumed"] and result["rotated"] and "would resume pending version 2" in result["msg"]
    assert vault.writes == [] and server.alters == []


# --------------------------------------------------------------------------------------
# state=rolled_back


def test_rolled_back_state(vault, server, single):
    rotated = run(username="app")
    back = run(username="app", state="rolled_back", rollback_version=rotated["previous_version"])
    assert back.exit_code == 0 and back["rolled_back"] and not back["rotated"]
    assert back["kv_version"] == 3 and vault.current_data(PATH)["password"] == OLD
    assert server.accepts("app", OLD)
    again = run(username="app", state="rolled_back", rollback_version=1)
    assert again.exit_code == 0 and not again["changed"] and again["msg"].startswith("nothing to roll back")


# --------------------------------------------------------------------------------------
# options and preflight


@pytest.mark.parametrize("args, message", [
    ({}, "strategy=single needs username"),
    ({"strategy": "alternating", "usernames": ["a"]}, "exactly two different logins"),
    ({"strategy": "alternating", "usernames": ["a", "a"]}, "exactly two different logins"),
    ({"username": "app", "state": "rolled_back"}, "state=rolled_back needs rollback_version"),
    ({"username": "app", "password_length": 8}, "password_length must be between 16 and 1024"),
    ({"username": "app", "min_age": "soon"}, "min_age: expected a duration"),
    ({"username": "app", "test_host": "/run/pg"}, "must be host names or addresses, not socket paths"),
    ({"username": "app", "verify_from": [{"host": "/tmp"}]}, "not socket paths"),
])
def test_option_errors(vault, server, single, args, message):
    result = run(args)
    assert result.failed and message in result["msg"], result["msg"]
    assert result["msg"].startswith("Failed to ")
    assert vault.writes == [] and server.alters == []


def test_preflight_errors(vault, server, single):
    server.in_recovery = True
    assert "is a standby" in run(username="app")["msg"]
    server.in_recovery = False
    server.admin = {"name": "ops", "superuser": False, "createrole": False}
    assert "needs SUPERUSER or CREATEROLE" in run(username="app")["msg"]
    server.admin = {"name": "ops", "superuser": False, "createrole": True}
    server.roles["app"]["superuser"] = True
    assert "'app' is a superuser and the admin login 'ops' is not" in run(username="app")["msg"]
    del server.roles["app"]
    assert "role 'app' does not exist" in run(username="app")["msg"]
    assert vault.writes == []


def test_missing_secret(vault, server):
    server.add("app", OLD)
    result = run(username="app")
    assert result.failed and "the secret does not exist; seed it" in result["msg"]


def test_test_endpoints_default_and_verify_from(vault, server, single):
    calls = []
    original = server.open_connection

    def record(params, autocommit=True):
        if not params.get("login_unix_socket"):
            calls.append((params["login_host"], params["login_port"], params["login_db"], params["connect_timeout"]))
        return original(params, autocommit)

    _postgres.open_connection.side_effect = record
    result = run(username="app", login_port=5433, login_db="app", test_timeout=10,
                 verify_from=[{"host": "10.0.0.2"}, {"host": "pooler", "port": 6432, "dbname": "pool"}])
    assert result.exit_code == 0, result
    assert calls == [("127.0.0.1", 5433, "app", 5), ("10.0.0.2", 5433, "app", 5), ("pooler", 6432, "pool", 5)]
    assert "127.0.0.1:5433/app and 10.0.0.2:5433/app and pooler:6432/pool" in result["steps"][2]["msg"]


def test_set_refused_rolls_back_vault_only(vault, server, single):
    server.alter_error = ("permission denied to alter role", "42501")
    result = run(username="app")
    assert result.failed and result["rolled_back"], result
    assert "the set step failed: cannot change the password of app" in result["msg"]
    assert "PostgreSQL refused the change, so app keeps its password" in result["msg"]
    assert statuses(result) == ["rolled_back", "failed", "skipped", "skipped"]
    assert server.accepts("app", OLD) and vault.current_data(PATH)["password"] == OLD
    assert _vault.PENDING_VERSION_KEY not in vault.custom[PATH]


def test_rolled_back_abandons_a_pending_rotation(vault, server, single):
    vault.seed(PATH, {"username": "app", "password": "Pending-Passw0rd-unit"},
               custom={_vault.CURRENT_VERSION_KEY: "1", _vault.PENDING_VERSION_KEY: "2",
                       _vault.PENDING_STEP_KEY: "set"})
    server.roles["app"]["verifier"] = mod.scram_verifier("Pending-Passw0rd-unit")
    result = run(username="app", state="rolled_back", rollback_version=1)
    assert result.exit_code == 0 and result["rolled_back"] and not result["resumed"], result
    assert "pending version 2 abandoned" in result["msg"]
    assert vault.pointer(PATH) == 3 and server.accepts("app", OLD)
    assert _vault.PENDING_VERSION_KEY not in vault.custom[PATH]
