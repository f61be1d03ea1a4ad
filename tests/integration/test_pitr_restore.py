"""pitr_restore with real pgBackRest 2.45 and real PostgreSQL: targets, refusals, a missing WAL segment.

One archiving primary for the file. The history every test restores from is written once:
full backup, row 1, (time T), row 2, restore point 'after_two', row 3, every segment archived.
The restores run while the source is stopped (this machine is the
source's host, which the module rightly refuses otherwise).
"""

from __future__ import annotations

import datetime
import json
import os
import time

import pytest

from tests.integration.pitr_helpers import pitr, restore_settings, restored_rows, source_stopped

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def history(pgbackrest_stanza):
    stanza = pgbackrest_stanza
    backup = stanza.backup("full")
    cluster = stanza.cluster
    cluster.execute("CREATE TABLE heartbeat (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
    cluster.execute("INSERT INTO heartbeat (id) VALUES (1)")
    first_commit = cluster.scalar("SELECT at FROM heartbeat WHERE id = 1")
    time.sleep(0.3)
    between = cluster.scalar("SELECT clock_timestamp()::text")
    time.sleep(0.3)
    cluster.execute("INSERT INTO heartbeat (id) VALUES (2)")
    cluster.execute("SELECT pg_create_restore_point('after_two')")
    cluster.execute("INSERT INTO heartbeat (id) VALUES (3)")
    stanza.switch_and_wait()
    return {"backup": backup, "between": between, "first_commit": first_commit}


def test_check_mode_says_what_it_would_restore_from_and_where(pgbackrest_stanza, history):
    stanza = pgbackrest_stanza
    target_dir = stanza.restore_dir("check")
    with source_stopped(stanza):
        res = pitr(stanza, target_dir, check_mode=True, target_type="time", target=history["between"])
    assert res.rc == 0 and not res.failed, res
    assert res["changed"] is True
    assert res["backup"]["label"] == history["backup"]["label"]
    assert res["data_directory"] == str(target_dir)
    assert res["target"] == {"type": "time", "value": history["between"], "inclusive": True}
    assert res["wal_gaps"]["missing_count"] == 0
    assert any("would restore backup %s from repo1 into %s" % (history["backup"]["label"], target_dir) in note
               for note in res["notes"]), res["notes"]
    assert "recovery_point" not in res
    assert os.listdir(target_dir) == []


def test_a_host_running_the_source_is_refused(pgbackrest_stanza, history):
    stanza = pgbackrest_stanza
    target_dir = stanza.restore_dir("refused")
    res = pitr(stanza, target_dir, check_mode=True)
    assert res.failed
    system_id = stanza.cluster.scalar("SELECT system_identifier::text FROM pg_control_system()")
    assert "source's system identifier %s" % system_id in res["msg"]
    assert str(stanza.cluster.datadir) in res["msg"]
    assert "primary or one of its replicas" in res["msg"]
    res = pitr(stanza, target_dir)
    assert res.failed and "primary or one of its replicas" in res["msg"]
    assert os.listdir(target_dir) == []


def test_pitr_to_a_time_between_two_transactions_contains_exactly_the_first(pgbackrest_stanza, history):
    stanza = pgbackrest_stanza
    target_dir = stanza.restore_dir("between")
    with source_stopped(stanza):
        res = pitr(stanza, target_dir, target_type="time", target=history["between"],
                   settings=restore_settings(stanza, "between"))
    assert res.rc == 0 and not res.failed, res
    assert res["changed"] is True and res["promoted"] is True and res["target_reached"] is True
    assert restored_rows(stanza, res) == [1]
    point = res["recovery_point"]
    assert point["timeline_before_promotion"] == 1 and point["timeline"] == 2
    assert point["lsn"]
    # the last transaction replayed is the one that committed row 1, before the target
    last = datetime.datetime.fromisoformat(point["last_transaction_time"])
    between = datetime.datetime.fromisoformat(history["between"] + ":00")
    assert history["first_commit"] <= last <= between, (history, point)
    assert set(res["phases"]) == {"restore_seconds", "start_seconds", "replay_seconds", "promote_seconds",
                                  "total_seconds"}
    assert all(value >= 0 for value in res["phases"].values())
    assert os.path.exists(os.path.join(target_dir, "upkeep_pitr_restore.json"))
    stanza.stop_restored(target_dir)


def test_pitr_to_a_named_restore_point(pgbackrest_stanza, history):
    stanza = pgbackrest_stanza
    target_dir = stanza.restore_dir("named")
    with source_stopped(stanza):
        res = pitr(stanza, target_dir, target_type="name", target="after_two",
                   settings=restore_settings(stanza, "named"))
    assert res.rc == 0 and not res.failed, res
    assert restored_rows(stanza, res) == [1, 2]
    assert res["recovery_point"]["timeline"] == 2


def test_a_non_empty_or_running_directory_is_refused_unless_replace(pgbackrest_stanza, history):
    stanza = pgbackrest_stanza
    # Its own running restore: under pytest -n 2 the test before it may have run on the other worker.
    target_dir = stanza.restore_dir("running")
    with source_stopped(stanza):
        res = pitr(stanza, target_dir, target_type="name", target="after_two",
                   settings=restore_settings(stanza, "running"))
        assert res.rc == 0 and not res.failed, res
        res = pitr(stanza, target_dir, replace=True)
        assert res.failed and "is running in the data directory %s" % target_dir in res["msg"], res
        stanza.stop_restored(target_dir)
        res = pitr(stanza, target_dir)
        assert res.failed
        assert "is not empty" in res["msg"] and "replace=true" in res["msg"]
        res = pitr(stanza, target_dir, replace=True, settings=restore_settings(stanza, "latest"))
    assert res.rc == 0 and not res.failed, res
    assert res["data_directory_state"]["replaces"]["made_by_pitr_restore"] is True
    assert restored_rows(stanza, res) == [1, 2, 3]
    assert res["target_reached"] is True and res["recovery_point"]["timeline_before_promotion"] is None
    stanza.stop_restored(target_dir)


def test_the_source_data_directory_is_never_replaced(pgbackrest_stanza, history):
    stanza = pgbackrest_stanza
    with source_stopped(stanza):
        res = pitr(stanza, stanza.cluster.datadir, replace=True, check_mode=True)
    assert res.failed
    assert "holds the source cluster itself" in res["msg"] and "refusing to replace it" in res["msg"]


def test_a_missing_wal_segment_fails_the_restore_and_names_it(pgbackrest_stanza, history):
    stanza = pgbackrest_stanza
    cluster = stanza.cluster
    for row in (10, 11, 12):
        cluster.execute("INSERT INTO heartbeat (id) VALUES (%s)", (row,))
        stanza.switch_and_wait()
    late = cluster.scalar("SELECT clock_timestamp()::text")
    cluster.execute("INSERT INTO heartbeat (id) VALUES (13)")
    stanza.switch_and_wait()
    stop = history["backup"]["archive"]["stop"]
    files = [path for path in stanza.archive_files() if path.name[:24] > stop]
    victim = files[-3]
    name = victim.name[:24]
    moved = victim.with_name("moved-away")
    os.rename(victim, moved)
    try:
        latest_dir = stanza.restore_dir("gap-latest")
        with source_stopped(stanza):
            res = pitr(stanza, latest_dir)
            assert res.failed
            assert "WAL segment %s is missing from the archive" % name in res["msg"], res["msg"]
            assert os.listdir(latest_dir) == []  # refused before anything was written

            time_dir = stanza.restore_dir("gap-time")
            res = pitr(stanza, time_dir, target_type="time", target=late,
                       settings=restore_settings(stanza, "gap-time"))
        assert res.failed
        assert "recovery ended before the target time %s was reached" % late in res["msg"], res["msg"]
        assert "WAL segment %s is missing from the archive" % name in res["msg"], res["msg"]
    finally:
        os.rename(moved, victim)
        stanza.stop_restored(stanza.base / "gap-time")


def test_a_restore_that_fails_midway_is_marked_and_a_retry_with_replace_works(pgbackrest_stanza, history):
    stanza = pgbackrest_stanza
    label = history["backup"]["label"]
    files = sorted((stanza.repo / "backup" / stanza.name / label / "pg_data" / "base").rglob("*.gz"))
    victim = files[len(files) // 2]
    os.chmod(victim, 0)
    target_dir = stanza.restore_dir("midway")
    try:
        with source_stopped(stanza):
            res = pitr(stanza, target_dir, backup_set=label, target_type="immediate")
        assert res.failed
        assert "pgbackrest restore exited" in res["msg"] and "Permission denied" in res["msg"], res["msg"]
        marker = json.loads((target_dir / "upkeep_pitr_restore.json").read_text())
        assert marker["complete"] is False and marker["backup"] == label
    finally:
        os.chmod(victim, 0o640)  # noqa: S103 - the repository file's own mode, given back
    with source_stopped(stanza):
        res = pitr(stanza, target_dir, backup_set=label, target_type="immediate", replace=True,
                   settings=restore_settings(stanza, "midway"))
    assert res.rc == 0 and not res.failed, res
    assert res["data_directory_state"]["replaces"]["complete"] is False
    assert res["target_reached"] is True and res["promoted"] is True
    assert res["recovery_point"]["timeline"] == 2
    stanza.stop_restored(target_dir)
