"""Unit tests for plugins/modules/pg_health_info.py: main() with the backend mocked at module_utils."""

from __future__ import annotations

import datetime
import json
from unittest import mock

import pytest
import yaml
from ansible.module_utils import basic
from ansible_collections.upkeep.runbooks.plugins.module_utils import _postgres
from ansible_collections.upkeep.runbooks.plugins.modules import pg_health_info as mod

SECRET = "unit-test-Pa55word"


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


def _exit_json(self, **kwargs):
    kwargs.setdefault("changed", False)
    raise ExitJson(kwargs)


def _fail_json(self, msg="", **kwargs):
    kwargs["failed"] = True
    kwargs["msg"] = msg
    raise FailJson(kwargs)


@pytest.fixture(autouse=True)
def patch_module(monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail_json)
    for key in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE", "PGSSLROOTCERT"):
        monkeypatch.delenv(key, raising=False)


def set_args(monkeypatch, args, check_mode=False):
    payload = dict(args, _ansible_check_mode=check_mode)
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": payload}).encode())
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy")


def run_main(monkeypatch, args, check_mode=False):
    set_args(monkeypatch, args, check_mode)
    with pytest.raises((ExitJson, FailJson)) as info:
        mod.main()
    out = info.value.args[0]
    assert "Traceback" not in json.dumps(out, default=str)
    return out


# ------------------------------------------------------------------ a fake server

REPLAY_TS = datetime.datetime(2024, 5, 1, 3, 12, 45, tzinfo=datetime.timezone.utc)


def primary_answers():
    return {
        mod.SQL_BASICS: [{"server_version": "15.8 (Debian 15.8-1.pgdg120+1)", "server_version_num": 150008,
                          "in_recovery": False}],
        mod.SQL_REPLICAS_PRIMARY: [{
            "application_name": "db2", "client_addr": "127.0.0.12", "state": "streaming", "sync_state": "async",
            "sent_lsn": "0/3000148", "write_lsn": "0/3000148", "flush_lsn": "0/3000148", "replay_lsn": "0/3000060",
            "lag_bytes": 232, "write_lag_seconds": 0.001, "flush_lag_seconds": 0.002, "replay_lag_seconds": 0.003,
        }],
        mod.SQL_SLOTS_PRIMARY: [{"slot_name": "db2", "slot_type": "physical", "active": True,
                                 "wal_status": "reserved", "restart_lsn": "0/3000000",
                                 "retained_wal_bytes": 328, "database": None}],
        mod.SQL_CONNECTION_SETTINGS: [{"max_connections": 100, "superuser_reserved": 3, "reserved": 0}],
        mod.SQL_CONNECTIONS_BY_STATE: [{"state": "active", "count": 2}, {"state": "idle", "count": 10}],
        mod.SQL_DATABASES: [
            {"name": "app", "size_bytes": 7918095, "datfrozenxid_age": 1214, "datminmxid_age": 1},
            {"name": "postgres", "size_bytes": 7634279, "datfrozenxid_age": 1200, "datminmxid_age": 0},
        ],
        mod.SQL_WRAPAROUND: [{"database": "template0", "oldest_xid_age": 2147483, "oldest_mxid_age": 3,
                              "autovacuum_freeze_max_age": 200000000}],
        mod.SQL_OLDEST_TRANSACTION: [{"age_seconds": 4.2, "pid": 4711, "state": "idle in transaction",
                                      "datname": "app", "usename": "app", "application_name": "gunicorn"}],
        mod.SQL_OLDEST_IDLE_IN_TRANSACTION: [{"seconds": 3.9}],
    }


def standby_answers():
    answers = primary_answers()
    answers[mod.SQL_BASICS] = [dict(answers[mod.SQL_BASICS][0], in_recovery=True)]
    answers[mod.SQL_STANDBY] = [{
        "receive_lsn": "0/5000060", "replay_lsn": "0/5000000", "receive_replay_lag_bytes": 96,
        "replay_lag_seconds": 12.5, "last_replay_timestamp": REPLAY_TS, "upstream_connected": True,
        "replay_paused": True,
    }]
    answers[mod.SQL_REPLICAS_STANDBY] = []
    answers[mod.SQL_SLOTS_STANDBY] = []
    answers[mod.SQL_OLDEST_TRANSACTION] = []
    answers[mod.SQL_OLDEST_IDLE_IN_TRANSACTION] = [{"seconds": None}]
    del answers[mod.SQL_REPLICAS_PRIMARY]
    del answers[mod.SQL_SLOTS_PRIMARY]
    return answers


class FakeServer:
    """Answers the module's named statements; anything else is a test failure."""

    def __init__(self, answers, errors=None):
        self.answers = answers
        self.errors = errors or {}
        self.calls = []
        self.conn = mock.Mock(name="connection")

    def _answer(self, conn, query, params=None):
        assert conn is self.conn
        self.calls.append((query, params))
        if query in self.errors:
            raise self.errors[query]
        if query not in self.answers:
            raise AssertionError("unexpected statement: %s" % query)
        rows = self.answers[query]
        if query is mod.SQL_DATABASES and params["names"]:
            rows = [r for r in rows if r["name"] in params["names"]]
        return [dict(r) for r in rows]

    def query_all(self, conn, query, params=None):
        return self._answer(conn, query, params)

    def query_one(self, conn, query, params=None):
        rows = self._answer(conn, query, params)
        return rows[0] if rows else None

    def install(self, monkeypatch, connect_error=None):
        def open_connection(params, autocommit=True):
            self.params = dict(params)
            if connect_error is not None:
                raise connect_error
            return self.conn

        monkeypatch.setattr(mod, "open_connection", open_connection)
        monkeypatch.setattr(mod, "query_all", self.query_all)
        monkeypatch.setattr(mod, "query_one", self.query_one)
        return self


BASE_ARGS = {"login_host": "127.0.0.11", "login_port": 5432, "login_user": "monitor", "login_password": SECRET}


# ------------------------------------------------------------------ results


def test_primary_facts(monkeypatch):
    server = FakeServer(primary_answers()).install(monkeypatch)
    out = run_main(monkeypatch, BASE_ARGS)
    assert out["changed"] is False
    assert out["reachable"] is True
    assert out["server_version"] == "15.8"
    assert out["server_version_num"] == 150008
    assert out["in_recovery"] is False
    assert out["wal_replay_paused"] is None
    assert out["replication"]["role"] == "primary"
    assert out["replication"]["standby"] is None
    assert out["replication"]["replicas"][0]["lag_bytes"] == 232
    assert out["replication_slots"][0]["retained_wal_bytes"] == 328
    assert out["connections"] == {
        "current": 12, "max_connections": 100, "superuser_reserved": 3, "reserved": 0, "available": 97,
        "percent_used": 12.37, "by_state": {"active": 2, "idle": 10},
    }
    assert [d["name"] for d in out["databases"]] == ["app", "postgres"]
    assert out["wraparound"]["percent_towards_wraparound"] == 0.1
    assert out["wraparound"]["percent_towards_freeze_max_age"] == 1.07
    assert out["oldest_transaction"]["pid"] == 4711
    assert out["oldest_idle_in_transaction_seconds"] == 3.9
    assert server.conn.close.called
    assert server.params["login_password"] == SECRET
    assert SECRET not in json.dumps(out)
    assert "error" not in out


def test_standby_facts(monkeypatch):
    FakeServer(standby_answers()).install(monkeypatch)
    out = run_main(monkeypatch, BASE_ARGS)
    assert out["in_recovery"] is True
    assert out["wal_replay_paused"] is True
    standby = out["replication"]["standby"]
    assert out["replication"]["role"] == "standby"
    assert standby["last_replay_timestamp"] == "2024-05-01T03:12:45+00:00"
    assert standby["receive_replay_lag_bytes"] == 96
    assert out["replication"]["replicas"] == []
    assert out["oldest_transaction"] is None
    assert out["oldest_idle_in_transaction_seconds"] is None


def test_check_mode_returns_the_same(monkeypatch):
    FakeServer(primary_answers()).install(monkeypatch)
    normal = run_main(monkeypatch, BASE_ARGS)
    FakeServer(primary_answers()).install(monkeypatch)
    checked = run_main(monkeypatch, BASE_ARGS, check_mode=True)
    assert normal == checked


def test_databases_option_is_bound_parameter(monkeypatch):
    server = FakeServer(primary_answers()).install(monkeypatch)
    out = run_main(monkeypatch, dict(BASE_ARGS, databases=["app"]))
    assert [d["name"] for d in out["databases"]] == ["app"]
    params = [p for q, p in server.calls if q is mod.SQL_DATABASES][0]
    assert params == {"names": ["app"]}


def test_databases_default_means_all(monkeypatch):
    server = FakeServer(primary_answers()).install(monkeypatch)
    run_main(monkeypatch, dict(BASE_ARGS, databases=[]))
    assert [p for q, p in server.calls if q is mod.SQL_DATABASES][0] == {"names": None}


def test_missing_database_fails_clearly(monkeypatch):
    FakeServer(primary_answers()).install(monkeypatch)
    out = run_main(monkeypatch, dict(BASE_ARGS, databases=["app", "nope", "gone"]))
    assert out["failed"] is True
    assert out["msg"] == ("Failed to read health facts from PostgreSQL at 127.0.0.11:5432: "
                          "databases 'gone', 'nope' do not exist")


# ------------------------------------------------------------------ unreachable and errors


def refused():
    return _postgres.PostgresConnectError(
        "Failed to connect to PostgreSQL at 127.0.0.11:5432: connection refused "
        "(is PostgreSQL running and listening on that address and port?)"
    )


def test_unreachable_is_a_result_by_default(monkeypatch):
    FakeServer({}).install(monkeypatch, connect_error=refused())
    out = run_main(monkeypatch, BASE_ARGS)
    assert out.get("failed") is not True
    assert out["reachable"] is False
    assert out["changed"] is False
    assert "127.0.0.11:5432" in out["error"] and "connection refused" in out["error"]


def test_unreachable_fails_when_asked(monkeypatch):
    FakeServer({}).install(monkeypatch, connect_error=refused())
    out = run_main(monkeypatch, dict(BASE_ARGS, fail_on_unreachable=True))
    assert out["failed"] is True
    assert out["reachable"] is False
    assert out["msg"].startswith("Failed to connect to PostgreSQL at 127.0.0.11:5432: connection refused")


def test_session_role_failure_is_not_unreachable(monkeypatch):
    error = _postgres.PostgresError("Failed to switch to session_role 'ghost' on PostgreSQL at 127.0.0.11:5432: "
                                    "role 'ghost' does not exist")
    FakeServer({}).install(monkeypatch, connect_error=error)
    out = run_main(monkeypatch, dict(BASE_ARGS, session_role="ghost"))
    assert out["failed"] is True and out["reachable"] is True
    assert out["msg"] == str(error)


def test_permission_denied_after_connect_fails(monkeypatch):
    errors = {mod.SQL_REPLICAS_PRIMARY: _postgres.PostgresError("permission denied for view pg_stat_replication")}
    FakeServer(primary_answers(), errors).install(monkeypatch)
    out = run_main(monkeypatch, BASE_ARGS)
    assert out["failed"] is True
    assert out["reachable"] is True
    assert out["msg"] == ("Failed to read health facts from PostgreSQL at 127.0.0.11:5432: "
                          "permission denied for view pg_stat_replication")


def test_old_server_rejected(monkeypatch):
    answers = primary_answers()
    answers[mod.SQL_BASICS] = [{"server_version": "11.22", "server_version_num": 110022, "in_recovery": False}]
    FakeServer(answers).install(monkeypatch)
    out = run_main(monkeypatch, BASE_ARGS)
    assert out["failed"] is True
    assert "PostgreSQL 11.22" in out["msg"] and "12 and later" in out["msg"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"login_port": "fivefourthreetwo"}, "login_port"),
        ({"ssl_mode": "sometimes"}, "ssl_mode"),
        ({"databases": {"app": 1}}, "databases"),
        ({"fail_on_unreachable": "perhaps"}, "fail_on_unreachable"),
        ({"no_such_option": 1}, "no_such_option"),
        ({"connect_timeout": "soon"}, "connect_timeout"),
    ],
)
def test_bad_options_fail_cleanly(monkeypatch, args, needle):
    FakeServer(primary_answers()).install(monkeypatch)
    out = run_main(monkeypatch, dict(BASE_ARGS, **args))
    assert out["failed"] is True
    assert needle in out["msg"]
    assert SECRET not in out["msg"]


def test_missing_psycopg(monkeypatch):
    monkeypatch.setattr(_postgres, "psycopg", None)
    out = run_main(monkeypatch, BASE_ARGS)
    assert out["failed"] is True
    assert "Failed to import the required Python library (psycopg)" in out["msg"]


# ------------------------------------------------------------------ documentation


def _doc(name):
    return yaml.safe_load(getattr(mod, name))


def test_documentation_options_match_spec(monkeypatch):
    doc = _doc("DOCUMENTATION")
    assert "upkeep.runbooks.postgres" in doc["extends_documentation_fragment"]
    assert doc["attributes"]["check_mode"]["support"] == "full"
    assert doc["attributes"]["diff_mode"]["support"] == "none"
    assert set(doc["options"]) == {"databases", "fail_on_unreachable"}
    assert doc["options"]["fail_on_unreachable"]["default"] is False
    yaml.safe_load(mod.EXAMPLES)


def _check_documented(value, documented, path):
    """Every key of a returned value is documented (recursively through contains)."""
    if isinstance(value, dict) and documented is not None:
        for key, sub in value.items():
            assert key in documented, "RETURN does not document %s.%s" % (path, key)
            _check_documented(sub, documented[key].get("contains"), "%s.%s" % (path, key))
    elif isinstance(value, list) and documented is not None:
        for item in value:
            _check_documented(item, documented, path + "[]")


@pytest.mark.parametrize("answers", [primary_answers, standby_answers])
def test_every_returned_key_is_documented(monkeypatch, answers):
    FakeServer(answers()).install(monkeypatch)
    out = run_main(monkeypatch, BASE_ARGS)
    out.pop("changed")
    documented = _doc("RETURN")
    # by_state is a free-form map of state names.
    out["connections"]["by_state"] = {}
    _check_documented(out, documented, "")
    FakeServer({}).install(monkeypatch, connect_error=refused())
    down = run_main(monkeypatch, BASE_ARGS)
    down.pop("changed")
    _check_documented(down, documented, "")


def test_every_documented_top_level_key_is_returned(monkeypatch):
    FakeServer(standby_answers()).install(monkeypatch)
    out = run_main(monkeypatch, BASE_ARGS)
    assert set(_doc("RETURN")) - set(out) == {"error"}


class _Clock:
    def __init__(self):
        self.now = 0.0

    def sleep(self, seconds):
        self.now += seconds

    def monotonic(self):
        return self.now


def _standby(**kw):
    row = {"receive_lsn": "0/3000100", "replay_lsn": "0/3000000", "receive_replay_lag_bytes": 256,
           "replay_lag_seconds": 3600.0, "last_replay_timestamp": None, "upstream_connected": True,
           "replay_paused": False}
    row.update(kw)
    return row


def test_settle_standby_in_flight_wal_is_no_time_lag(monkeypatch):
    from ansible_collections.upkeep.runbooks.plugins.modules import pg_health_info as mod

    caught_up = _standby(receive_replay_lag_bytes=0, replay_lsn="0/3000100")
    answers = iter([{"replayed": False}, {"replayed": True}, caught_up])
    monkeypatch.setattr(mod, "query_one", lambda conn, sql, params=None: next(answers))
    clock = _Clock()
    settled = mod.settle_standby(object(), _standby(), sleep=clock.sleep, clock=clock.monotonic)
    assert settled["replay_lag_seconds"] == 0.0 and settled["receive_replay_lag_bytes"] == 0


def test_settle_standby_keeps_a_real_lag(monkeypatch):
    from ansible_collections.upkeep.runbooks.plugins.modules import pg_health_info as mod

    monkeypatch.setattr(mod, "query_one", lambda conn, sql, params=None: {"replayed": False})
    clock = _Clock()
    first = _standby()
    assert mod.settle_standby(object(), first, sleep=clock.sleep, clock=clock.monotonic) is first
    assert clock.now >= mod.SETTLE_SECONDS


def test_settle_standby_does_not_wait_for_a_paused_or_caught_up_standby(monkeypatch):
    from ansible_collections.upkeep.runbooks.plugins.modules import pg_health_info as mod

    monkeypatch.setattr(mod, "query_one", lambda *a, **k: pytest.fail("no query expected"))
    for row in (_standby(replay_paused=True), _standby(receive_replay_lag_bytes=0)):
        assert mod.settle_standby(object(), row, sleep=pytest.fail) is row
