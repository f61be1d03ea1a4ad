"""module_utils/_logfollow.py: positions across truncation and rotation, on files in a temp dir."""

import gzip
import os
import shutil

from ansible_collections.upkeep.runbooks.plugins.module_utils._logfollow import find_rotated, read_since
from ansible_collections.upkeep.runbooks.plugins.modules.auth_failure_review import read_journal


def test_copytruncate_reads_from_the_start_and_says_so(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("a\nb\n")
    lines, pos, info = read_since(str(log))
    assert lines == ["a", "b"] and info["first_run"]
    with open(log, "r+", encoding="utf-8") as handle:  # copytruncate, then one new line
        handle.truncate(0)
    log.write_text("c\n")
    lines, pos2, info = read_since(str(log), pos)
    assert lines == ["c"]
    assert info["truncated"] and "truncated in place" in info["gaps"][0]
    # Same length again but other content (truncated and refilled): the head hash tells.
    log.write_text("d\n")
    lines, _, info = read_since(str(log), pos2)
    assert lines == ["d"] and info["truncated"]


def test_start_at_end_and_rotated_dir(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("old\n")
    lines, pos, _ = read_since(str(log), None, start="end")
    assert lines == [] and pos["offset"] == 4
    log.write_text("old\nnew\n")
    olddir = tmp_path / "old"
    olddir.mkdir()
    os.rename(log, olddir / "auth.log-20261202")
    log.write_text("newest\n")
    assert find_rotated(str(log), pos) is None
    lines, _, info = read_since(str(log), pos, rotated_dir=str(olddir))
    assert lines == ["new", "newest"]
    assert info["rotated_from"] == str(olddir / "auth.log-20261202")


class FakeModule:
    def __init__(self, rc=0, out="", err=""):
        self.result = (rc, out, err)
        self.argv = None

    def run_command(self, argv):
        self.argv = argv
        return self.result


def test_read_journal_keeps_the_cursor():
    module = FakeModule(out="2026-12-02T09:00:00+0000 app1 sshd[5]: Failed password for x from 192.0.2.1 port 1 ssh2\n"
                            "-- cursor: s=abc;i=2\n")
    lines, cursor = read_journal(module, "ssh.service", "s=abc;i=1", "beginning")
    assert lines == ["2026-12-02T09:00:00+0000 app1 sshd[5]: Failed password for x from 192.0.2.1 port 1 ssh2"]
    assert cursor == "s=abc;i=2"
    assert module.argv[-2:] == ["--after-cursor", "s=abc;i=1"]
    lines, cursor = read_journal(FakeModule(out=""), "ssh.service", "s=abc;i=2", "beginning")
    assert lines == [] and cursor == "s=abc;i=2"
    module = FakeModule(out="-- cursor: s=z\n")
    read_journal(module, "ssh.service", None, "beginning")
    assert module.argv[-2:] == ["--since", "-24h"]


def test_copytruncate_with_its_copy_and_a_reused_inode(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("2026-12-01 first\n")
    _, pos, _ = read_since(str(log))
    with open(log, "a", encoding="utf-8") as handle:
        handle.write("2026-12-01 second\n")
    # copytruncate: copy, then truncate the original (same inode), which gets a new first line.
    (tmp_path / "app.log.1").write_bytes(log.read_bytes())
    with open(log, "r+", encoding="utf-8") as handle:
        handle.truncate(0)
    log.write_text("2026-12-02 third\n")
    lines, pos, info = read_since(str(log), pos)
    assert lines == ["2026-12-01 second", "2026-12-02 third"]
    assert info["rotated_from"] == str(tmp_path / "app.log.1") and not info["truncated"] and info["gaps"] == []

    # The same inode reused by a new file after the old one was compressed away: found by content.
    with open(log, "a", encoding="utf-8") as handle:
        handle.write("2026-12-02 fourth\n")
    with open(log, "rb") as src, gzip.open(tmp_path / "app.log.2.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    with open(log, "r+", encoding="utf-8") as handle:  # same inode, new content
        handle.truncate(0)
        handle.write("2026-12-03 fifth\n")
    lines, _, info = read_since(str(log), pos)
    assert lines == ["2026-12-02 fourth", "2026-12-03 fifth"]
    assert info["rotated_from"] == str(tmp_path / "app.log.2.gz")
