"""pgbackrest_info against a real archiving primary and a real pgBackRest 2.45 repository.

One primary per file (module-scoped ``pgbackrest_stanza``); the tests run in file order and each
gives back what it broke (a moved segment, an unwritable directory) before it ends.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.integration.module_runner import run_module

pytestmark = pytest.mark.integration

MODULE = "upkeep.runbooks.pgbackrest_info"


def info(stanza, check_mode=False, **overrides):
    args = stanza.module_args(**stanza.cluster.module_args())
    args["report_host"] = "db1"
    args.update(overrides)
    res = run_module(MODULE, args, check_mode=check_mode)
    assert stanza.cluster.password not in res.output, "the superuser password leaked into the module output"
    return res


def checks(res):
    return {check["check"]: check for check in res["checks"]}


def wait_for(predicate, timeout=60, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def test_a_stanza_without_backup_fails_the_backup_checks(pgbackrest_stanza):
    res = info(pgbackrest_stanza)
    assert res.rc == 0 and not res.failed, res
    assert res["pgbackrest_version"] == "2.45"
    assert res["status"]["code"] == 2
    by_name = checks(res)
    assert by_name["pgbackrest_repository"]["status"] == "fail"
    assert "no valid backup" in by_name["pgbackrest_repository"]["message"]
    assert by_name["pgbackrest_backup_age"]["status"] == "fail"
    assert by_name["wal_continuity"]["status"] == "fail"
    assert by_name["wal_archive_failures"]["status"] == "ok"
    assert all(check["host"] == "db1" for check in res["checks"])
    system_id = pgbackrest_stanza.cluster.scalar("SELECT system_identifier::text FROM pg_control_system()")
    assert res["system_identifiers"] == [system_id]


def test_full_and_incremental_backups_are_judged_healthy(pgbackrest_stanza):
    stanza = pgbackrest_stanza
    full = stanza.backup("full")
    stanza.cluster.execute("CREATE TABLE IF NOT EXISTS heartbeat (id int PRIMARY KEY)")
    stanza.cluster.execute("INSERT INTO heartbeat VALUES (1)")
    incr = stanza.backup("incr")
    stanza.cluster.execute("INSERT INTO heartbeat VALUES (2)")
    stanza.switch_and_wait()

    res = info(stanza, check_mode=True, incr_max_age_hours=1)
    assert res.rc == 0 and not res.failed, res
    assert res["changed"] is False
    assert res["newest_backups"]["full"]["label"] == full["label"]
    assert res["newest_backups"]["incr"]["label"] == incr["label"]
    assert res["newest_backups"]["any"]["label"] == incr["label"]
    assert res["newest_backups"]["diff"] is None
    assert res["newest_backups"]["incr"]["prior"] == full["label"]
    assert 0 <= res["newest_backups"]["any"]["age_seconds"] < 3600
    wal = res["wal_continuity"]
    assert wal["backup"] == incr["label"]
    assert wal["checked_from"] == incr["archive"]["start"]
    assert wal["checked_to"] == res["archive"]["max"]
    assert wal["missing_count"] == 0 and wal["backup_consistent"] is True
    assert res["archiver"]["archive_mode"] == "on"
    assert res["archiver"]["failing"] is False
    by_name = checks(res)
    for name in ("pgbackrest_repository", "pgbackrest_backup_age", "pgbackrest_full_backup_age",
                 "pgbackrest_incr_backup_age", "wal_continuity", "wal_archive_failures", "wal_archive_rpo_exposure"):
        assert by_name[name]["status"] == "ok", by_name[name]
    assert "pgbackrest_diff_backup_age" not in by_name


def test_a_segment_missing_from_the_archive_is_named(pgbackrest_stanza):
    stanza = pgbackrest_stanza
    stanza.cluster.execute("INSERT INTO heartbeat VALUES (3)")
    stanza.switch_and_wait()
    stanza.cluster.execute("INSERT INTO heartbeat VALUES (4)")
    stanza.switch_and_wait()
    newest = stanza.info()["backup"][-1]
    later = [path for path in stanza.archive_files() if path.name[:24] > newest["archive"]["stop"]]
    assert len(later) >= 2, later
    victim = later[0]
    moved = victim.with_name("moved-away")
    os.rename(victim, moved)
    try:
        res = info(stanza)
        assert res.rc == 0 and not res.failed, res
        wal = res["wal_continuity"]
        assert wal["missing"] == [victim.name[:24]]
        assert wal["backup_consistent"] is True
        check = checks(res)["wal_continuity"]
        assert check["status"] == "fail"
        assert victim.name[:24] in check["message"]
        assert "restored only up to the gap" in check["message"]
    finally:
        os.rename(moved, victim)


def test_an_unwritable_repository_shows_as_failing_archiving_and_rpo_exposure(pgbackrest_stanza):
    stanza = pgbackrest_stanza
    timeline_dir = stanza.archive_files()[-1].parent
    failed_before = stanza.cluster.scalar("SELECT failed_count FROM pg_stat_archiver")
    os.chmod(timeline_dir, 0o550)  # noqa: S103 - read-only for its owner: archive-push cannot write
    try:
        stanza.cluster.execute("INSERT INTO heartbeat VALUES (5)")
        stuck = stanza.switch_wal()
        wait_for(lambda: stanza.cluster.scalar("SELECT failed_count FROM pg_stat_archiver") > failed_before,
                 what="archive_command failing")
        stanza.cluster.execute("INSERT INTO heartbeat VALUES (6)")
        res = info(stanza, rpo_warn_seconds=0.001, rpo_fail_seconds=3600)
        assert res.rc == 0 and not res.failed, res
        archiver = res["archiver"]
        assert archiver["failing"] is True
        assert archiver["last_failed_wal"] == stuck
        assert archiver["unarchived_bytes"] > 0
        assert archiver["rpo_exposure_seconds"] > 0
        by_name = checks(res)
        assert by_name["wal_archive_failures"]["status"] == "fail"
        assert stuck in by_name["wal_archive_failures"]["message"]
        assert by_name["wal_archive_rpo_exposure"]["status"] == "warn"
    finally:
        os.chmod(timeline_dir, 0o750)  # noqa: S103 - the repository's own mode, given back
    # the repository is back: the next segment wakes the archiver, which catches up
    stanza.cluster.execute("INSERT INTO heartbeat VALUES (7)")
    stanza.switch_and_wait()
    res = info(stanza)
    assert res["archiver"]["failing"] is False
    assert checks(res)["wal_archive_failures"]["status"] == "warn"
    assert checks(res)["wal_continuity"]["status"] == "ok"


def test_an_unreadable_repository_is_a_failed_check(pgbackrest_stanza):
    stanza = pgbackrest_stanza
    os.chmod(stanza.repo, 0)
    try:
        res = info(stanza)
    finally:
        os.chmod(stanza.repo, 0o750)  # noqa: S103 - the repository's own mode, given back
    assert res.rc == 0 and not res.failed, res
    check = checks(res)["pgbackrest_repository"]
    assert check["status"] == "fail"
    assert "Permission denied" in check["message"], check


def test_an_unreachable_database_is_a_failed_check_not_a_failed_task(pgbackrest_stanza):
    res = info(pgbackrest_stanza, login_port=1, connect_timeout=2)
    assert res.rc == 0 and not res.failed, res
    assert "connection refused" in res["archiver"]["error"]
    by_name = checks(res)
    assert by_name["wal_archive_failures"]["status"] == "fail"
    assert by_name["wal_archive_rpo_exposure"]["status"] == "fail"
    assert by_name["pgbackrest_repository"]["status"] == "ok"


def test_a_missing_configuration_file_fails_clearly(pgbackrest_stanza, tmp_path):
    res = info(pgbackrest_stanza, config=str(tmp_path / "nope.conf"))
    assert res.failed
    assert res["msg"] == ("Failed to read pgBackRest stanza 'main': pgBackRest configuration file %s does not exist"
                          % (tmp_path / "nope.conf"))
