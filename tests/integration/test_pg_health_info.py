"""pg_health_info against real PostgreSQL clusters, run as a separate process like Ansible runs it."""

from __future__ import annotations

import time

import pytest
from ansible_collections.upkeep.runbooks.plugins.filter.pg_health import DEFAULT_THRESHOLDS, pg_health_checks

from tests.integration.module_runner import run_module

pytestmark = pytest.mark.integration

MODULE = "upkeep.runbooks.pg_health_info"


def health(cluster, check_mode=False, env=None, **overrides):
    res = run_module(MODULE, cluster.module_args(**overrides), check_mode=check_mode, env=env)
    assert cluster.password not in res.output, "the superuser password leaked into the module output"
    return res


def wait_for(predicate, timeout=30, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def caught_up(primary, replica):
    """True once the replica replayed everything the primary has written."""
    current = primary.scalar("SELECT pg_current_wal_lsn()::text")
    return replica.scalar("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (current,))


def replica_entry(result, replica):
    entries = [r for r in result["replication"]["replicas"] if r["application_name"] == replica.application_name]
    assert len(entries) == 1, result["replication"]
    return entries[0]


# ------------------------------------------------------------------ a healthy pair


def test_primary_and_streaming_replica(pg_cluster, pg_replica_factory):
    replica = pg_replica_factory(pg_cluster, slot=True)
    wait_for(lambda: caught_up(pg_cluster, replica), what="replica catching up")

    def primary_with_zero_lag():
        res = health(pg_cluster)
        assert res.rc == 0 and not res.failed, res
        return res if replica_entry(res, replica)["lag_bytes"] == 0 else None

    res = wait_for(primary_with_zero_lag, what="lag_bytes 0 on the primary")
    assert res["reachable"] is True
    assert res["in_recovery"] is False
    assert res["wal_replay_paused"] is None
    assert res["server_version"].startswith("15.")
    assert 150000 <= res["server_version_num"] < 160000
    assert res["replication"]["role"] == "primary"
    assert res["replication"]["standby"] is None
    entry = replica_entry(res, replica)
    assert entry["state"] == "streaming"
    assert entry["client_addr"] == "127.0.0.1"
    assert entry["sync_state"] == "async"
    slot = [s for s in res["replication_slots"] if s["slot_name"] == replica.slot_name]
    assert slot and slot[0]["active"] is True and slot[0]["slot_type"] == "physical"
    assert slot[0]["wal_status"] == "reserved"
    assert slot[0]["retained_wal_bytes"] >= 0
    assert res["connections"]["current"] >= 1
    assert res["connections"]["max_connections"] == 50
    assert 0 < res["connections"]["percent_used"] < 100
    assert "postgres" in [d["name"] for d in res["databases"]]
    assert res["wraparound"]["oldest_xid_age"] > 0
    assert res["wraparound"]["autovacuum_freeze_max_age"] == 200000000

    def standby_with_zero_lag():
        res = health(replica)
        return res if res["replication"]["standby"]["receive_replay_lag_bytes"] == 0 else None

    standby = wait_for(standby_with_zero_lag, what="standby lag 0")
    assert standby["in_recovery"] is True
    assert standby["replication"]["role"] == "standby"
    assert standby["wal_replay_paused"] is False
    info = standby["replication"]["standby"]
    assert info["upstream_connected"] is True
    assert info["replay_paused"] is False
    assert info["replay_lag_seconds"] == 0
    assert info["receive_lsn"] and info["replay_lsn"]

    results = {r["check"]: r for r in pg_health_checks(res, "db1", DEFAULT_THRESHOLDS, "primary")}
    assert results["replica_lag:%s" % replica.application_name]["status"] == "ok"
    assert results["postgres_role"]["status"] == "ok"
    standby_results = {r["check"]: r for r in pg_health_checks(standby, "db2", DEFAULT_THRESHOLDS, "replica")}
    assert standby_results["replication_lag"]["status"] == "ok", standby_results["replication_lag"]
    wrong_role = {r["check"]: r for r in pg_health_checks(standby, "db2", DEFAULT_THRESHOLDS, "primary")}
    assert wrong_role["postgres_role"]["status"] == "fail"


def test_paused_replay_shows_lag(pg_cluster, pg_replica_factory):
    replica = pg_replica_factory(pg_cluster, slot=False)
    pg_cluster.execute("CREATE TABLE IF NOT EXISTS lag_probe (id bigserial PRIMARY KEY, filler text)")
    pg_cluster.execute("INSERT INTO lag_probe (filler) VALUES ('before pause')")
    wait_for(lambda: caught_up(pg_cluster, replica), what="replica catching up")
    wait_for(lambda: replica.scalar("SELECT pg_last_xact_replay_timestamp() IS NOT NULL"), what="a replayed commit")

    replica.execute("SELECT pg_wal_replay_pause()")
    try:
        wait_for(lambda: replica.scalar("SELECT pg_get_wal_replay_pause_state()") == "paused", what="replay paused")
        time.sleep(0.3)
        pg_cluster.execute("INSERT INTO lag_probe (filler) SELECT repeat('x', 200) FROM generate_series(1, 5000)")
        wait_for(lambda: replica.scalar("SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()"),
                 what="WAL received but not replayed")

        primary = health(pg_cluster)
        assert replica_entry(primary, replica)["lag_bytes"] > 0

        standby = health(replica)
        assert standby["wal_replay_paused"] is True
        info = standby["replication"]["standby"]
        assert info["replay_paused"] is True
        assert info["upstream_connected"] is True
        assert info["receive_replay_lag_bytes"] > 0
        assert info["replay_lag_seconds"] > 0
        assert info["last_replay_timestamp"]

        result = {r["check"]: r for r in pg_health_checks(standby, "db2", {"replication_lag_bytes_warn": 1})}
        lag = result["replication_lag"]
        assert lag["status"] == "warn"
        assert "paused" in lag["message"]
        assert lag["value"]["replay_paused"] is True
    finally:
        replica.execute("SELECT pg_wal_replay_resume()")
    wait_for(lambda: caught_up(pg_cluster, replica), what="replica catching up after resume")
    after = health(replica)
    assert after["wal_replay_paused"] is False


def test_slot_without_consumer_retains_wal(pg_cluster):
    pg_cluster.execute("SELECT pg_create_physical_replication_slot('idle_slot', true)")
    try:
        pg_cluster.execute("CREATE TABLE wal_filler AS SELECT g AS id, repeat('y', 100) AS t "
                           "FROM generate_series(1, 20000) AS g")
        pg_cluster.execute("SELECT pg_switch_wal()")
        res = health(pg_cluster)
        slot = [s for s in res["replication_slots"] if s["slot_name"] == "idle_slot"][0]
        assert slot["active"] is False
        assert slot["slot_type"] == "physical"
        assert slot["database"] is None
        assert slot["restart_lsn"]
        assert slot["retained_wal_bytes"] > 1024 * 1024

        checks = {r["check"]: r for r in pg_health_checks(res, "db1", {"slot_retained_wal_bytes_warn": 1024,
                                                                       "slot_retained_wal_bytes_fail": 1024 * 1024})}
        assert checks["replication_slot:idle_slot"]["status"] == "fail"
        assert "inactive" in checks["replication_slot:idle_slot"]["message"]
        default = {r["check"]: r for r in pg_health_checks(res, "db1", DEFAULT_THRESHOLDS)}
        assert default["replication_slot:idle_slot"]["status"] == "warn"
    finally:
        pg_cluster.execute("SELECT pg_drop_replication_slot('idle_slot')")
        pg_cluster.execute("DROP TABLE IF EXISTS wal_filler")


# ------------------------------------------------------------------ sessions and databases


def test_oldest_transaction_and_idle_in_transaction(pg_cluster):
    with pg_cluster.connect(autocommit=False, application_name="long_tx") as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.execute("SELECT txid_current()")
        time.sleep(1.1)
        res = health(pg_cluster)
        conn.rollback()
    oldest = res["oldest_transaction"]
    assert oldest["pid"] == pid
    assert oldest["age_seconds"] >= 1.0
    assert oldest["state"] == "idle in transaction"
    assert oldest["datname"] == "postgres"
    assert oldest["usename"] == "postgres"
    assert oldest["application_name"] == "long_tx"
    assert res["oldest_idle_in_transaction_seconds"] >= 1.0
    assert res["connections"]["by_state"].get("idle in transaction", 0) >= 1
    result = {r["check"]: r for r in pg_health_checks(res, "db1", {"oldest_transaction_seconds_warn": 1,
                                                                   "oldest_transaction_seconds_fail": 1000})}
    assert result["oldest_transaction"]["status"] == "warn"
    assert "pid %s" % pid in result["oldest_transaction"]["message"]


def test_no_other_transaction_means_null(pg_cluster_factory):
    cluster = pg_cluster_factory()
    res = health(cluster)
    assert res["oldest_transaction"] is None
    assert res["oldest_idle_in_transaction_seconds"] is None


def test_database_selection(pg_cluster):
    pg_cluster.execute("CREATE DATABASE app_health")
    try:
        res = health(pg_cluster)
        names = [d["name"] for d in res["databases"]]
        assert "app_health" in names and "postgres" in names
        assert "template0" not in names and "template1" not in names
        app = [d for d in res["databases"] if d["name"] == "app_health"][0]
        assert app["size_bytes"] > 0
        assert app["datfrozenxid_age"] >= 0 and app["datminmxid_age"] >= 0

        only = health(pg_cluster, databases=["app_health"])
        assert [d["name"] for d in only["databases"]] == ["app_health"]

        missing = health(pg_cluster, databases=["app_health", "no_such_db"])
        assert missing.failed and missing.rc != 0
        assert missing["msg"] == ("Failed to read health facts from PostgreSQL at 127.0.0.1:%s: "
                                  "database 'no_such_db' does not exist" % pg_cluster.port)
        assert "Traceback" not in missing.output
    finally:
        pg_cluster.execute("DROP DATABASE app_health")


def test_pg_monitor_role_is_enough(pg_cluster, pg_replica_factory):
    replica = pg_replica_factory(pg_cluster, slot=True)
    pg_cluster.execute("CREATE ROLE health_monitor LOGIN PASSWORD 'monitor-pw-1' IN ROLE pg_monitor")
    try:
        wait_for(lambda: replica.scalar("SELECT count(*) FROM pg_roles WHERE rolname = 'health_monitor'"),
                 what="role replicated")
        res = health(pg_cluster, login_user="health_monitor", login_password="monitor-pw-1")
        assert res["reachable"] is True and not res.failed, res
        entry = replica_entry(res, replica)
        assert entry["replay_lsn"] is not None and entry["lag_bytes"] is not None
        assert [s for s in res["replication_slots"] if s["slot_name"] == replica.slot_name][0]["retained_wal_bytes"] \
            is not None
        assert "monitor-pw-1" not in res.output
        standby = health(replica, login_user="health_monitor", login_password="monitor-pw-1")
        assert standby["replication"]["standby"]["upstream_connected"] is True
    finally:
        pg_cluster.execute("DROP ROLE health_monitor")


# ------------------------------------------------------------------ ways in


def test_unix_socket_and_check_mode(pg_cluster):
    res = run_module(MODULE, {"login_unix_socket": str(pg_cluster.socket_dir), "login_port": pg_cluster.port},
                     check_mode=True)
    assert res.rc == 0 and res["reachable"] is True and res["changed"] is False
    normal = health(pg_cluster)
    assert set(res) - {"invocation"} == set(normal) - {"invocation"}


def test_environment_fallbacks(pg_cluster):
    env = {"PGHOST": pg_cluster.host, "PGPORT": pg_cluster.port, "PGUSER": "postgres",
           "PGPASSWORD": pg_cluster.password, "PGDATABASE": "postgres"}
    res = run_module(MODULE, {}, env=env)
    assert res["reachable"] is True, res
    assert pg_cluster.password not in res.output


# ------------------------------------------------------------------ failures


def test_stopped_server_is_unreachable_not_failed(pg_cluster_factory):
    cluster = pg_cluster_factory()
    cluster.stop()
    res = health(cluster, connect_timeout=5)
    assert res.rc == 0 and not res.failed
    assert res["reachable"] is False
    assert res["changed"] is False
    assert res["error"].startswith("Failed to connect to PostgreSQL at 127.0.0.1:%s: connection refused" % cluster.port)
    assert "server_version" not in res

    checks = pg_health_checks(res, "db9", DEFAULT_THRESHOLDS)
    assert [(c["check"], c["status"]) for c in checks] == [("postgres_reachable", "fail")]
    assert "db9" in checks[0]["message"] and "127.0.0.1:%s" % cluster.port in checks[0]["message"]

    failing = health(cluster, fail_on_unreachable=True)
    assert failing.failed and failing.rc == 1
    assert failing["reachable"] is False
    assert "127.0.0.1:%s: connection refused" % cluster.port in failing["msg"]
    assert "Traceback" not in failing.output


def test_wrong_password(pg_cluster):
    res = health(pg_cluster, login_password="definitely-wrong-pw")
    assert res["reachable"] is False
    assert res["error"] == ("Failed to connect to PostgreSQL at 127.0.0.1:%s: authentication failed for user "
                            "'postgres' (check login_user/login_password)" % pg_cluster.port)
    assert "definitely-wrong-pw" not in res.output

    failing = health(pg_cluster, login_password="definitely-wrong-pw", fail_on_unreachable=True)
    assert failing.failed
    assert "authentication failed for user 'postgres'" in failing["msg"]
    assert "definitely-wrong-pw" not in failing.output
    assert "Traceback" not in failing.output


def test_missing_login_database(pg_cluster):
    res = health(pg_cluster, login_db="not_there", fail_on_unreachable=True)
    assert res.failed
    assert res["msg"] == "Failed to connect to PostgreSQL at 127.0.0.1:%s: database 'not_there' does not exist" % (
        pg_cluster.port)


def test_session_role(pg_cluster):
    ok = health(pg_cluster, session_role="pg_monitor")
    assert ok["reachable"] is True and not ok.failed, ok
    bad = health(pg_cluster, session_role="no_such_role")
    assert bad.failed and bad["reachable"] is True
    assert bad["msg"] == ("Failed to switch to session_role 'no_such_role' on PostgreSQL at 127.0.0.1:%s: "
                          "role 'no_such_role' does not exist" % pg_cluster.port)


def test_bad_option_is_a_clean_failure(pg_cluster):
    res = health(pg_cluster, ssl_mode="sometimes")
    assert res.failed and res.rc == 1
    assert "ssl_mode" in res["msg"]
    assert "Traceback" not in res.output
