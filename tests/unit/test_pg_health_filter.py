"""Unit tests for the upkeep.runbooks.pg_health_checks filter."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.upkeep.runbooks.plugins.filter import pg_health
from ansible_collections.upkeep.runbooks.plugins.filter.pg_health import DEFAULT_THRESHOLDS, FilterModule

checks = pg_health.pg_health_checks
MIB = 1024 * 1024
GIB = 1024 * MIB


def primary_info(**overrides):
    info = {
        "changed": False,
        "reachable": True,
        "server_version": "15.8",
        "server_version_num": 150008,
        "in_recovery": False,
        "wal_replay_paused": None,
        "replication": {
            "role": "primary",
            "standby": None,
            "replicas": [{
                "application_name": "db2", "client_addr": "127.0.0.12", "state": "streaming",
                "sync_state": "async", "sent_lsn": "0/1", "write_lsn": "0/1", "flush_lsn": "0/1",
                "replay_lsn": "0/1", "lag_bytes": 0, "write_lag_seconds": None, "flush_lag_seconds": None,
                "replay_lag_seconds": None,
            }],
        },
        "replication_slots": [{"slot_name": "db2", "slot_type": "physical", "active": True, "wal_status": "reserved",
                               "restart_lsn": "0/1", "retained_wal_bytes": 1024, "database": None}],
        "connections": {"current": 10, "max_connections": 100, "superuser_reserved": 3, "reserved": 0,
                        "available": 97, "percent_used": 10.31, "by_state": {"idle": 9, "active": 1}},
        "databases": [{"name": "app", "size_bytes": 5 * GIB, "datfrozenxid_age": 10, "datminmxid_age": 1}],
        "wraparound": {"database": "app", "oldest_xid_age": 10, "oldest_mxid_age": 1,
                       "autovacuum_freeze_max_age": 200000000, "percent_towards_wraparound": 0.0,
                       "percent_towards_freeze_max_age": 0.0},
        "oldest_transaction": None,
        "oldest_idle_in_transaction_seconds": None,
    }
    info.update(overrides)
    return info


def standby_info(**standby):
    info = primary_info(in_recovery=True, wal_replay_paused=False, replication_slots=[])
    info["replication"] = {
        "role": "standby",
        "replicas": [],
        "standby": dict({
            "receive_lsn": "0/5", "replay_lsn": "0/5", "receive_replay_lag_bytes": 0, "replay_lag_seconds": 0.0,
            "last_replay_timestamp": None, "upstream_connected": True, "replay_paused": False,
        }, **standby),
    }
    return info


def by_check(results):
    return {r["check"]: r for r in results}


# ------------------------------------------------------------------ shape


def test_filter_is_registered():
    assert FilterModule().filters()["pg_health_checks"] is checks


def test_healthy_primary():
    results = checks(primary_info(), "db1", DEFAULT_THRESHOLDS, "primary")
    names = [r["check"] for r in results]
    assert names == ["postgres_reachable", "postgres_version", "postgres_role", "replica_lag:db2",
                     "replication_slot:db2", "connections", "oldest_transaction", "wraparound", "database_size:app"]
    assert all(r["status"] == "ok" for r in results), results
    assert all(r["host"] == "db1" for r in results)
    assert all(set(r) == {"check", "host", "status", "value", "threshold", "message"} for r in results)
    found = by_check(results)
    assert found["postgres_version"]["value"] == "15.8"
    assert found["database_size:app"]["value"] == 5 * GIB
    assert "5.0 GiB" in found["database_size:app"]["message"]
    assert found["connections"]["value"] == 10.31


def test_thresholds_optional_and_partial():
    assert checks(primary_info(), "db1") == checks(primary_info(), "db1", DEFAULT_THRESHOLDS)
    res = by_check(checks(primary_info(), "db1", {"connections_percent_warn": 5}))
    assert res["connections"]["status"] == "warn"


# ------------------------------------------------------------------ reachability and role


def test_unreachable_stops_after_first_check():
    info = {"changed": False, "reachable": False,
            "error": "Failed to connect to PostgreSQL at 127.0.0.11:5432: connection refused"}
    results = checks(info, "db1", DEFAULT_THRESHOLDS)
    assert len(results) == 1
    assert results[0]["check"] == "postgres_reachable"
    assert results[0]["status"] == "fail"
    assert "db1" in results[0]["message"] and "127.0.0.11:5432" in results[0]["message"]


def test_failed_task_result_with_fail_on_unreachable():
    info = {"failed": True, "reachable": False, "msg": "Failed to connect to PostgreSQL at h:1: connection refused"}
    results = checks(info, "db1", DEFAULT_THRESHOLDS)
    assert [r["status"] for r in results] == ["fail"]
    assert "connection refused" in results[0]["message"]


def test_failed_after_connect():
    info = {"failed": True, "reachable": True, "msg": "Failed to read health facts ...: permission denied"}
    results = by_check(checks(info, "db1", DEFAULT_THRESHOLDS))
    assert results["postgres_reachable"]["status"] == "ok"
    assert results["postgres_health_facts"]["status"] == "fail"
    assert "permission denied" in results["postgres_health_facts"]["message"]


@pytest.mark.parametrize(
    ("info", "expected", "status"),
    [
        (primary_info(), "primary", "ok"),
        (primary_info(), "replica", "fail"),
        (primary_info(), "standby", "fail"),
        (standby_info(), "replica", "ok"),
        (standby_info(), "primary", "fail"),
        (standby_info(), None, "ok"),
    ],
)
def test_role(info, expected, status):
    role = by_check(checks(info, "db1", DEFAULT_THRESHOLDS, expected))["postgres_role"]
    assert role["status"] == status
    if status == "fail":
        assert "expected to be a" in role["message"]


# ------------------------------------------------------------------ replication


def test_standby_lag_ok():
    result = by_check(checks(standby_info(), "db2", DEFAULT_THRESHOLDS))["replication_lag"]
    assert result["status"] == "ok"
    assert result["value"] == {"bytes": 0, "seconds": 0.0, "replay_paused": False, "upstream_connected": True}
    assert result["threshold"] == {
        "warn": {"bytes": 16 * MIB, "seconds": 60},
        "fail": {"bytes": 256 * MIB, "seconds": 300},
    }


@pytest.mark.parametrize(
    ("lag_bytes", "seconds", "status"),
    [
        (16 * MIB, 1.0, "warn"),
        (1024, 61.0, "warn"),
        (256 * MIB, 1.0, "fail"),
        (1024, 300.0, "fail"),
        (20 * MIB, 400.0, "fail"),
        (0, None, "ok"),
    ],
)
def test_standby_lag_worst_of_bytes_and_seconds(lag_bytes, seconds, status):
    info = standby_info(receive_replay_lag_bytes=lag_bytes, replay_lag_seconds=seconds)
    assert by_check(checks(info, "db2", DEFAULT_THRESHOLDS))["replication_lag"]["status"] == status


def test_standby_paused_warns_even_with_small_lag():
    info = standby_info(replay_paused=True, receive_replay_lag_bytes=4096, replay_lag_seconds=5.0)
    result = by_check(checks(info, "db2", DEFAULT_THRESHOLDS))["replication_lag"]
    assert result["value"]["replay_paused"] is True
    assert "paused" in result["message"]
    assert result["status"] == "warn"


def test_standby_paused_with_large_lag_fails():
    info = standby_info(replay_paused=True, receive_replay_lag_bytes=512 * 1024 * 1024, replay_lag_seconds=5.0)
    assert by_check(checks(info, "db2", DEFAULT_THRESHOLDS))["replication_lag"]["status"] == "fail"


def test_standby_not_streaming_fails():
    info = standby_info(upstream_connected=False)
    result = by_check(checks(info, "db2", DEFAULT_THRESHOLDS))["replication_lag"]
    assert result["status"] == "fail"
    assert "not streaming" in result["message"]


def test_standby_lag_unmeasurable_fails():
    info = standby_info(receive_replay_lag_bytes=None, replay_lag_seconds=None)
    assert by_check(checks(info, "db2", DEFAULT_THRESHOLDS))["replication_lag"]["status"] == "fail"


def test_standby_without_standby_section_is_bad_input():
    info = standby_info()
    info["replication"]["standby"] = None
    with pytest.raises(AnsibleFilterError, match="standby"):
        checks(info, "db2", DEFAULT_THRESHOLDS)


@pytest.mark.parametrize(
    ("changes", "status", "needle"),
    [
        ({"lag_bytes": 300 * MIB}, "fail", "300.0 MiB"),
        ({"lag_bytes": 17 * MIB}, "warn", "17.0 MiB"),
        ({"lag_bytes": 10, "replay_lag_seconds": 90.0}, "warn", "90.0 s"),
        ({"state": "catchup"}, "warn", "catchup"),
        ({"lag_bytes": None}, "warn", "unknown"),
    ],
)
def test_replica_lag_on_primary(changes, status, needle):
    info = primary_info()
    info["replication"]["replicas"][0].update(changes)
    result = by_check(checks(info, "db1", DEFAULT_THRESHOLDS))["replica_lag:db2"]
    assert result["status"] == status
    assert needle in result["message"]


def test_replicas_with_the_same_name_are_told_apart():
    info = primary_info()
    first = info["replication"]["replicas"][0]
    info["replication"]["replicas"] = [dict(first, application_name="walreceiver", client_addr="127.0.0.12"),
                                       dict(first, application_name="walreceiver", client_addr="127.0.0.13")]
    names = [r["check"] for r in checks(info, "db1", DEFAULT_THRESHOLDS) if r["check"].startswith("replica_lag")]
    assert names == ["replica_lag:walreceiver@127.0.0.12", "replica_lag:walreceiver@127.0.0.13"]


# ------------------------------------------------------------------ slots, connections, transactions


@pytest.mark.parametrize(
    ("changes", "status", "needle"),
    [
        ({"retained_wal_bytes": 2 * GIB}, "warn", "2.0 GiB"),
        ({"retained_wal_bytes": 11 * GIB}, "fail", "11.0 GiB"),
        ({"active": False}, "warn", "inactive"),
        ({"active": False, "retained_wal_bytes": 11 * GIB}, "fail", "inactive"),
        ({"wal_status": "lost", "retained_wal_bytes": None}, "fail", "lost"),
        ({"wal_status": "unreserved"}, "warn", "unreserved"),
    ],
)
def test_slots(changes, status, needle):
    info = primary_info()
    info["replication_slots"][0].update(changes)
    result = by_check(checks(info, "db1", DEFAULT_THRESHOLDS))["replication_slot:db2"]
    assert result["status"] == status
    assert needle in result["message"]
    assert result["threshold"]["unit"] == "bytes"


@pytest.mark.parametrize(("percent", "status"), [(10.0, "ok"), (80.0, "warn"), (95.0, "fail"), (99.5, "fail")])
def test_connections(percent, status):
    info = primary_info()
    info["connections"]["percent_used"] = percent
    result = by_check(checks(info, "db1", DEFAULT_THRESHOLDS))["connections"]
    assert result["status"] == status
    assert result["value"] == percent
    assert "10 of 97" in result["message"]


@pytest.mark.parametrize(("age", "status"), [(5.0, "ok"), (3600.0, "warn"), (30000.0, "fail")])
def test_oldest_transaction(age, status):
    info = primary_info(oldest_transaction={"age_seconds": age, "pid": 42, "state": "idle in transaction",
                                            "datname": "app", "usename": "web", "application_name": "x"},
                        oldest_idle_in_transaction_seconds=age)
    result = by_check(checks(info, "db1", DEFAULT_THRESHOLDS))["oldest_transaction"]
    assert result["status"] == status
    assert "pid 42" in result["message"] and "web" in result["message"]


def test_no_open_transaction_is_ok():
    result = by_check(checks(primary_info(), "db1", DEFAULT_THRESHOLDS))["oldest_transaction"]
    assert result["status"] == "ok" and result["value"] is None


@pytest.mark.parametrize(("age", "status"), [(10, "ok"), (1000000000, "warn"), (1600000000, "fail")])
def test_wraparound(age, status):
    info = primary_info()
    info["wraparound"]["oldest_xid_age"] = age
    result = by_check(checks(info, "db1", DEFAULT_THRESHOLDS))["wraparound"]
    assert result["status"] == status
    assert "database app" in result["message"]


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("not a dict", "db1", None), "info must be"),
        (({"changed": False}, "db1", None), "no 'reachable' key"),
        (({"skipped": True}, "db1", None), "skipped"),
        ((primary_info(), "", None), "host must be"),
        ((primary_info(), None, None), "host must be"),
        ((primary_info(), "db1", ["x"]), "thresholds must be a dict"),
        ((primary_info(), "db1", {"replication_lag_byte_warn": 1}), "unknown threshold replication_lag_byte_warn"),
        ((primary_info(), "db1", {"connections_percent_warn": "lots"}), "must be a number"),
        ((primary_info(), "db1", {"connections_percent_warn": True}), "must be a number"),
        ((primary_info(), "db1", {"connections_percent_warn": -1}), "must not be negative"),
        ((primary_info(), "db1", {"connections_percent_warn": 99}), "warning must come first"),
        ((primary_info(replication_slots="x"), "db1", None), "replication_slots must be a list"),
        ((primary_info(replication_slots=["x"]), "db1", None), r"replication_slots\[0\] must be a dict"),
        ((primary_info(connections=[1]), "db1", None), "unexpected type"),
    ],
)
def test_bad_input(args, needle):
    with pytest.raises(AnsibleFilterError, match=needle):
        checks(*args)


def test_bad_expected_role():
    with pytest.raises(AnsibleFilterError, match="expected_role must be primary or replica"):
        checks(primary_info(), "db1", None, "leader")


def test_numeric_text_thresholds_accepted():
    res = by_check(checks(primary_info(), "db1", {"connections_percent_warn": "5", "connections_percent_fail": "6.5"}))
    assert res["connections"]["status"] == "fail"


def test_input_not_modified():
    info = primary_info()
    before = copy.deepcopy(info)
    checks(info, "db1", DEFAULT_THRESHOLDS, "primary")
    assert info == before


def test_documented_thresholds_match_defaults():
    doc_path = Path(pg_health.__file__).with_name("pg_health_checks.yml")
    doc = yaml.safe_load(doc_path.read_text(encoding="utf-8"))["DOCUMENTATION"]
    sub = doc["options"]["thresholds"]["suboptions"]
    assert {k: v["default"] for k, v in sub.items()} == DEFAULT_THRESHOLDS
