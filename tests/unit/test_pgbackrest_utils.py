"""Unit tests for plugins/module_utils/_pgbackrest.py (info parsing, errors, WAL arithmetic)."""

from __future__ import annotations

import json
import struct
import subprocess

import pytest
from ansible_collections.upkeep.runbooks.plugins.module_utils import _pgbackrest as b
from ansible_collections.upkeep.runbooks.plugins.modules import pgbackrest_info

MB16 = 16 * 1024 * 1024


def backup(label, kind, start, stop, lsn_start, lsn_stop, stamp):
    return {"label": label, "type": kind, "error": False, "archive": {"start": start, "stop": stop},
            "lsn": {"start": lsn_start, "stop": lsn_stop}, "timestamp": {"start": stamp - 5, "stop": stamp},
            "database": {"id": 1, "repo-key": 1}, "info": {"size": 10, "repository": {"size": 3}}}


def test_segment_names_round_trip_for_16_mib_segments():
    name = "0000000200000001000000FE"
    number = b.segment_number(name, MB16)
    assert number == 256 + 254
    assert b.segment_name(2, number, MB16) == name
    assert b.segment_name(2, number + 2, MB16) == "000000020000000200000000"
    assert b.parse_segment(name + "-0123abcd.gz") == (2, 1, 254)
    with pytest.raises(ValueError):
        b.parse_segment("00000002.history")


def test_only_segments_count_as_segment_files():
    assert b.is_segment_file("000000010000000000000003-c2b57bde9dd49a779bf8b6bdc13dd3e3a6415565.gz")
    assert b.is_segment_file("000000010000000000000003")
    assert not b.is_segment_file("000000010000000000000002.00000028.backup")
    assert not b.is_segment_file("00000002.history")
    assert not b.is_segment_file("000000010000000000000003.partial-abc.gz")


def test_lsn_parse_and_format():
    assert b.parse_lsn("0/2000028") == 0x2000028
    assert b.parse_lsn("1/A") == (1 << 32) + 10
    assert b.format_lsn(0x10000000A) == "1/A"
    with pytest.raises(ValueError):
        b.parse_lsn("nope")


def test_segment_size_is_derived_from_the_backups_positions():
    sixteen = [backup("F", "full", "000000010000000000000002", "000000010000000000000004", "0/2000028",
                      "0/4000050", 100)]
    assert b.segment_size_from_backups(sixteen) == MB16
    # 64 MiB segments: LSN 0/8000028 lies in segment 2
    sixty_four = [backup("F", "full", "000000010000000000000002", "000000010000000000000003", "0/8000028",
                         "0/C000050", 100)]
    assert b.segment_size_from_backups(sixty_four) == 64 * 1024 * 1024
    assert b.segment_size_from_backups([]) == MB16


def test_wal_gaps_finds_missing_segments_across_a_log_boundary_and_accepts_a_newer_timeline():
    names = ["0000000100000000000000FE-aa.gz", "000000010000000100000000-bb.gz", "000000010000000100000001-cc.gz",
             "000000020000000100000002-dd.gz", "000000010000000100000000.00000028.backup", "00000002.history"]
    gaps = b.wal_gaps(names, "0000000100000000000000FE", "000000010000000100000003", MB16)
    assert gaps["segments_checked"] == 6
    assert gaps["missing"] == ["0000000100000000000000FF", "000000010000000100000003"]
    assert gaps["missing_count"] == 2


def test_describe_failure_keeps_pgbackrest_message_hints_and_continuation_lines():
    proc = subprocess.CompletedProcess(["pgbackrest"], 38, "", (
        "ERROR: [038]: unable to restore while PostgreSQL is running\n"
        "       HINT: presence of 'postmaster.pid' in '/d' indicates PostgreSQL is running.\n"))
    message, code = b.describe_failure(proc, "restore")
    assert code == "038"
    assert message == ("pgbackrest restore exited with 38: [038] unable to restore while PostgreSQL is running "
                       "HINT: presence of 'postmaster.pid' in '/d' indicates PostgreSQL is running. "
                       "(PostgreSQL is running on that data directory; stop it first)")
    empty = subprocess.CompletedProcess(["pgbackrest"], 1, "", "")
    assert b.describe_failure(empty, "info")[0] == "pgbackrest info exited with 1: no output"


def test_stanza_problems_use_the_repository_message_for_other_errors():
    info = {"status": {"code": 99, "message": "other"},
            "repo": [{"key": 1, "status": {"code": 99, "message": "[PathOpenError] Permission denied"}}]}
    assert b.stanza_problems(info) == [
        "repo1: the repository could not be read: [PathOpenError] Permission denied"]
    assert b.stanza_problems({"status": {"code": 0}, "repo": [{"key": 1, "status": {"code": 0}}]}) == []
    missing = b.stanza_problems({"status": {"code": 1, "message": "missing stanza path"}, "repo": []})
    assert "stanza-create" in missing[0]


def test_parse_info_picks_the_stanza_and_rejects_garbage():
    text = json.dumps([{"name": "other"}, {"name": "main", "backup": []}])
    assert b.parse_info(text, "main") == {"name": "main", "backup": []}
    with pytest.raises(b.PgBackRestError, match="does not list stanza 'x'"):
        b.parse_info(text, "x")
    with pytest.raises(b.PgBackRestError, match="printed no JSON"):
        b.parse_info("ERROR", "main")


def test_newest_backups_per_type_skip_backups_with_errors():
    full = backup("F", "full", "000000010000000000000002", "000000010000000000000003", "0/2000028", "0/3000050", 100)
    diff = backup("F_D", "diff", "000000010000000000000005", "000000010000000000000005", "0/5000028", "0/5000100", 200)
    bad = dict(backup("F_I", "incr", "000000010000000000000007", "000000010000000000000007", "0/7000028",
                      "0/7000100", 300), error=True)
    newest = b.newest_backups({"backup": [full, diff, bad]})
    assert newest["any"]["label"] == "F_D" and newest["full"]["label"] == "F" and "incr" not in newest
    summary = b.backup_summary(diff, now=260)
    assert summary["age_seconds"] == 60 and summary["stopped"] == "1970-01-01T00:03:20Z"


def test_system_identifier_reads_pg_control(tmp_path):
    (tmp_path / "global").mkdir()
    (tmp_path / "global" / "pg_control").write_bytes(struct.pack("=Q", 7714627179209796676) + b"\0" * 100)
    assert b.system_identifier(str(tmp_path)) == "7714627179209796676"
    assert b.system_identifier(str(tmp_path / "nothing")) is None


def test_archiver_facts_exposure_is_zero_when_everything_is_archived_else_the_archive_age():
    row = {"in_recovery": False, "archive_mode": "on", "wal_segment_size": MB16, "last_archived_wal": "x",
           "last_archived_age_seconds": 42.04, "last_failed_wal": None, "last_failed_age_seconds": None,
           "current_lsn": "0/6000000"}
    facts = pgbackrest_info.archiver_facts(row, "000000010000000000000005", MB16)
    assert facts["unarchived_bytes"] == 0 and facts["rpo_exposure_seconds"] == 0.0 and facts["failing"] is False
    behind = pgbackrest_info.archiver_facts(dict(row, current_lsn="0/6000100", last_failed_wal="y",
                                                 last_failed_age_seconds=1.0), "000000010000000000000005", MB16)
    assert behind["unarchived_bytes"] == 0x100 and behind["rpo_exposure_seconds"] == 42.0 and behind["failing"]
