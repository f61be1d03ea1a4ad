"""The repository goes away while the primary keeps committing; it comes back; nothing is lost.

One archiving primary for the file (real pgBackRest 2.45 archive_command). While the repository is
gone archive-push fails and PostgreSQL keeps the segments (``.ready``); once it is back the archiver
catches up in order, the archive has no gap, and a restore after the source is lost has every row
that was committed.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.integration.module_runner import run_module
from tests.integration.pitr_helpers import pitr, restore_settings, restored_rows, source_stopped

pytestmark = pytest.mark.integration


def wait_for(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def ready_segments(cluster):
    status = cluster.datadir / "pg_wal" / "archive_status"
    return sorted(name[:-6] for name in os.listdir(status) if name.endswith(".ready"))


def test_archiving_catches_up_after_a_repository_outage_and_the_restore_has_every_row(pgbackrest_stanza):
    stanza = pgbackrest_stanza
    cluster = stanza.cluster
    stanza.backup("full")
    cluster.execute("CREATE TABLE heartbeat (id int PRIMARY KEY)")
    for row in range(1, 6):
        cluster.execute("INSERT INTO heartbeat VALUES (%s)", (row,))
    stanza.switch_and_wait()
    failed_before = cluster.scalar("SELECT failed_count FROM pg_stat_archiver")

    away = stanza.base / "repo-unreachable"
    os.rename(stanza.repo, away)  # the repository is gone: archive-push cannot reach it
    try:
        stuck = []
        for row in range(6, 16):
            cluster.execute("INSERT INTO heartbeat VALUES (%s)", (row,))
            if row % 3 == 0:
                stuck.append(stanza.switch_wal())
        wait_for(lambda: cluster.scalar("SELECT failed_count FROM pg_stat_archiver") > failed_before,
                 what="archive-push failing")
        last_failed = cluster.scalar("SELECT last_failed_wal FROM pg_stat_archiver")
        assert last_failed == stuck[0]
        assert set(stuck) <= set(ready_segments(cluster)), "PostgreSQL must keep every unarchived segment"
    finally:
        os.rename(away, stanza.repo)

    cluster.execute("INSERT INTO heartbeat VALUES (16)")
    final = stanza.switch_and_wait()
    assert final[:24] >= stuck[-1]
    archiver = cluster.execute("SELECT failed_count > 0, last_archived_time > last_failed_time FROM pg_stat_archiver")
    assert archiver == [(True, True)]
    wait_for(lambda: not ready_segments(cluster), what="no .ready segment left")
    archived = {path.name[:24] for path in stanza.archive_files()}
    assert set(stuck) <= archived

    info = run_module("upkeep.runbooks.pgbackrest_info", stanza.module_args(check_archiver=False))
    assert info["wal_continuity"]["missing_count"] == 0, info["wal_continuity"]

    committed = [row[0] for row in cluster.execute("SELECT id FROM heartbeat ORDER BY id")]
    assert committed == list(range(1, 17))
    target_dir = stanza.restore_dir("after-outage")
    with source_stopped(stanza):
        res = pitr(stanza, target_dir, settings=restore_settings(stanza, "after-outage"))
    assert res.rc == 0 and not res.failed, res
    assert restored_rows(stanza, res) == committed
    assert res["promoted"] is True
    stanza.stop_restored(target_dir)
