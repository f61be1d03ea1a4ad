"""Unit tests for plugins/module_utils/_pitr.py: backup choice, targets, the refusal rules, restore options."""

from __future__ import annotations

import json
import os
import struct

import pytest
from ansible_collections.upkeep.runbooks.plugins.module_utils import _pitr as p

SYSID = "7714627179209796676"


def backup(label, stop, lsn_stop, kind="full"):
    return {"label": label, "type": kind, "error": False, "timestamp": {"start": stop - 5, "stop": stop},
            "lsn": {"start": "0/2000028", "stop": lsn_stop},
            "archive": {"start": "000000010000000000000002", "stop": "000000010000000000000003"},
            "database": {"id": 1, "repo-key": 1}}


INFO = {"backup": [backup("F1", 1_700_000_000, "0/3000050"), backup("F1_I", 1_700_003_600, "0/9000050", "incr")],
        "db": [{"id": 1, "system-id": int(SYSID), "version": "15"}]}


def test_target_times_need_a_zone_and_accept_postgres_and_iso_forms():
    assert p.parse_target_time("2023-11-14 22:30:00+00").timestamp() == 1_700_001_000
    assert p.parse_target_time("2023-11-14T22:30:00Z").timestamp() == 1_700_001_000
    assert p.parse_target_time("2023-11-14 23:30:00.5+01").timestamp() == 1_700_001_000.5
    with pytest.raises(p.PitrError, match="has no time zone"):
        p.parse_target_time("2023-11-14 22:30:00")
    with pytest.raises(p.PitrError, match="is not a time stamp"):
        p.parse_target_time("yesterday")


def test_the_backup_is_the_newest_that_finished_before_a_time_or_lsn_target():
    assert p.choose_backup(INFO, "time", "2023-11-14 22:30:00+00")["label"] == "F1"
    assert p.choose_backup(INFO, "time", "2023-11-15 00:00:00+00")["label"] == "F1_I"
    assert p.choose_backup(INFO, "lsn", "0/5000000")["label"] == "F1"
    assert p.choose_backup(INFO, "latest")["label"] == "F1_I"
    assert p.choose_backup(INFO, "name", "x", backup_set="F1")["label"] == "F1"
    with pytest.raises(p.PitrError, match="no backup finished before the target time"):
        p.choose_backup(INFO, "time", "2020-01-01 00:00:00+00")
    with pytest.raises(p.PitrError, match="backup set nope is not in the repository"):
        p.choose_backup(INFO, "latest", backup_set="nope")
    with pytest.raises(p.PitrError, match="holds no backup"):
        p.choose_backup({"backup": []}, "latest")


def _cluster_dir(root, name, sysid=SYSID, marker=False):
    datadir = root / name
    (datadir / "global").mkdir(parents=True)
    (datadir / "global" / "pg_control").write_bytes(struct.pack("=Q", int(sysid)) + b"\0" * 64)
    if marker:
        (datadir / p.MARKER).write_text(json.dumps({"restored_at": "2024-05-02T00:00:00+00:00"}))
    return datadir


def _fake_proc(root, pid, datadir, argv=("/usr/lib/postgresql/15/bin/postgres", "-D", "/x")):
    entry = root / "proc" / str(pid)
    entry.mkdir(parents=True)
    (entry / "cmdline").write_bytes(b"\0".join(part.encode() for part in argv) + b"\0")
    os.symlink(str(datadir), str(entry / "cwd"))


def test_a_host_running_the_source_is_refused_and_a_marked_restore_is_not(tmp_path):
    source = _cluster_dir(tmp_path, "source")
    drill = _cluster_dir(tmp_path, "drill", marker=True)
    other = _cluster_dir(tmp_path, "other", sysid="1")
    _fake_proc(tmp_path, 10, drill)
    _fake_proc(tmp_path, 11, other)
    _fake_proc(tmp_path, 12, other, argv=("postgres: 15/main: checkpointer",))
    notes = p.check_host(SYSID, str(tmp_path / "new"), proc_root=str(tmp_path / "proc"))
    assert notes == ["a restore made by pitr_restore runs in %s (pid 10); it is not the source" % drill]
    _fake_proc(tmp_path, 13, source)
    with pytest.raises(p.PitrError, match="it is the source's primary or one of its replicas"):
        p.check_host(SYSID, str(tmp_path / "new"), proc_root=str(tmp_path / "proc"))
    with pytest.raises(p.PitrError, match="is running in the data directory"):
        p.check_host("1", str(other), proc_root=str(tmp_path / "proc"))


def test_data_directory_rules(tmp_path):
    assert p.check_data_directory(str(tmp_path / "new"), SYSID, False) == {"exists": False, "entries": 0,
                                                                           "replaces": None}
    with pytest.raises(p.PitrError, match="parent directory"):
        p.check_data_directory(str(tmp_path / "no" / "new"), SYSID, False)
    source = _cluster_dir(tmp_path, "source")
    with pytest.raises(p.PitrError, match="is not empty .* set replace=true"):
        p.check_data_directory(str(source), SYSID, False)
    with pytest.raises(p.PitrError, match="holds the source cluster itself"):
        p.check_data_directory(str(source), SYSID, True)
    drill = _cluster_dir(tmp_path, "drill", marker=True)
    state = p.check_data_directory(str(drill), SYSID, True)
    assert state["replaces"] == {"system_identifier": SYSID, "made_by_pitr_restore": True,
                                 "restored_at": "2024-05-02T00:00:00+00:00", "complete": True}
    (drill / "postmaster.pid").write_text("%d\n%s\n0\n5432\n/tmp\n" % (os.getpid(), drill))
    with pytest.raises(p.PitrError, match="is running in the data directory"):
        p.check_data_directory(str(drill), SYSID, True)


def test_restore_options_pass_the_chosen_set_and_pause_at_a_target():
    the_plan = {"data_directory": "/d", "backup": {"label": "F1"}, "repo": 1,
                "target": {"type": "time", "value": "2023-11-14 22:30:00+00", "inclusive": False}}
    assert p.restore_options(the_plan, "off") == [
        "--pg1-path=/d", "--set=F1", "--archive-mode=off", "--repo=1", "--type=time", "--target-action=pause",
        "--target=2023-11-14 22:30:00+00", "--target-exclusive"]
    the_plan["target"] = {"type": "latest", "value": None, "inclusive": True}
    assert p.restore_options(the_plan, "preserve")[-1] == "--type=default"


def test_settings_are_appended_quoted_and_names_checked(tmp_path):
    user = type("User", (), {"chown": lambda self, path: None})()
    (tmp_path / "postgresql.auto.conf").write_text("restore_command = 'x'\n")
    p.write_settings(user, str(tmp_path), {"port": 5444, "unix_socket_directories": "/run/it's"})
    text = (tmp_path / "postgresql.auto.conf").read_text()
    assert text.endswith("port = 5444\nunix_socket_directories = '/run/it''s'\n")
    with pytest.raises(p.PitrError, match="not a PostgreSQL setting name"):
        p.write_settings(user, str(tmp_path), {"port = 1\nevil": 1})


def test_a_debian_layout_backup_gets_the_configuration_files_a_server_needs(tmp_path):
    user = type("User", (), {"chown": lambda self, path: None})()
    assert p.write_missing_config(user, str(tmp_path), {"port": 5444}) == [
        "postgresql.conf", "pg_hba.conf", "pg_ident.conf"]
    assert "local   all   all   peer" in (tmp_path / "pg_hba.conf").read_text()
    assert oct((tmp_path / "postgresql.conf").stat().st_mode & 0o777) == "0o600"
    # present files are kept; an hba_file/ident_file in the settings means none is written
    (tmp_path / "pg_hba.conf").write_text("host all all 127.0.0.0/8 scram-sha-256\n")
    assert p.write_missing_config(user, str(tmp_path), {}) == []
    assert (tmp_path / "pg_hba.conf").read_text() == "host all all 127.0.0.0/8 scram-sha-256\n"
    other = tmp_path / "other"
    other.mkdir()
    assert p.write_missing_config(user, str(other), {"hba_file": "/etc/postgresql/15/main/pg_hba.conf",
                                                    "ident_file": "/etc/postgresql/15/main/pg_ident.conf"}) == [
        "postgresql.conf"]
