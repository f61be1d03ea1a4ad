"""pg_backup under faults: pg_dump killed, module stopped, disk full, lying pg_dump, awkward names.

Every case asserts that nothing counting as a backup is left behind (no manifest-bearing
directory, no .partial directory), that the error names what failed, and that a re-run recovers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest as m
from psycopg import sql

from tests.integration.module_runner import COLLECTIONS_PATH, REPO_ROOT, module_name
from tests.integration.pg_backup_helpers import (
    backup,
    exact_counts,
    make_bin_dir,
    no_partials,
    restore_into,
)

pytestmark = pytest.mark.integration

BULK = "bulk"
BULK_TABLES = {("public", "bulk")}


@pytest.fixture(scope="module")
def bulk(pg_cluster):
    """A database whose dump takes long enough to be interrupted (about 40 MB uncompressed)."""
    pg_cluster.execute("CREATE DATABASE bulk")
    with pg_cluster.connect(dbname=BULK) as conn:
        conn.execute(
            "CREATE TABLE public.bulk AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS a, "
            "md5((g * 3)::text) AS b, now() - g * interval '1 second' AS at FROM generate_series(1, 400000) g"
        )
    return pg_cluster


def assert_nothing_valid(backup_dir, database=BULK):
    """No complete backup, no partial directory, no stray file below the database directory."""
    assert m.list_backups(str(backup_dir), database) == []
    assert no_partials(backup_dir) == []
    db_dir = m.database_dir(str(backup_dir), database)
    if os.path.isdir(db_dir):
        assert os.listdir(db_dir) == [], os.listdir(db_dir)


def assert_rerun_recovers(cluster, backup_dir, database=BULK, **options):
    res = backup(cluster, database, backup_dir, **options)
    assert not res.failed, res
    listed = m.list_backups(str(backup_dir), database)
    assert [b["backup_id"] for b in listed] == [res["backup_id"]]
    assert m.verify_files(res["path"], listed[0]["manifest"]) == []
    assert no_partials(backup_dir) == []
    return res


# ------------------------------------------------------------------ pg_dump killed mid-run

KILL_AFTER_BYTES = """\
    out=""
    for a in "$@"; do case "$a" in --file=*) out="${a#--file=}";; esac; done
    "$REAL" "$@" &
    pid=$!
    while kill -0 $pid 2>/dev/null; do
        size=$(du -sb "$out" 2>/dev/null | cut -f1)
        if [ "${size:-0}" -ge 65536 ]; then kill -9 $pid; echo "$size" > "%(marker)s"; break; fi
        sleep 0.005
    done
    wait $pid
"""


@pytest.mark.parametrize("fmt, extra", [("custom", {"compression": "none"}), ("directory", {"jobs": 2})])
def test_pg_dump_killed_mid_run(bulk, tmp_path, fmt, extra):
    marker = tmp_path / "killed"
    bindir = make_bin_dir(tmp_path, bulk.bindir, KILL_AFTER_BYTES % {"marker": marker})
    backups = tmp_path / "backups"
    res = backup(bulk, BULK, backups, pg_bin_dir=str(bindir), format=fmt, **extra)
    assert marker.exists(), "the wrapper never killed pg_dump (the dump finished first)"
    assert res.failed, res
    assert res["msg"].startswith("Failed to dump database 'bulk': pg_dump failed (exit code 137"), res["msg"]
    assert "Traceback" not in res.output
    assert_nothing_valid(backups)
    assert_rerun_recovers(bulk, backups, format=fmt, **extra)


def _find_pg_dump(cluster, database, timeout=30):
    """pid of a running pg_dump whose environment names this cluster's port and ``database``
    (other test workers dump databases of the same name from their own clusters)."""
    deadline = time.monotonic() + timeout
    wanted = {("PGDATABASE=%s" % database).encode(), ("PGPORT=%s" % cluster.port).encode()}
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as handle:
                    argv = handle.read().split(b"\0")
                if not argv[0].endswith(b"pg_dump") or not any(a.startswith(b"--snapshot=") for a in argv):
                    continue
                with open("/proc/%s/environ" % pid, "rb") as handle:
                    if wanted <= set(handle.read().split(b"\0")):
                        return int(pid)
            except OSError:
                continue
        time.sleep(0.002)
    return None


def _start_killer(find, killed, stop_at_once=False):
    """A thread that SIGKILLs the process ``find()`` returns, 50 ms after it appears; ``killed``
    gets its ``pid`` and ``cmdline`` (read just before the kill).

    ``stop_at_once``: SIGSTOP it the moment it is found, so it cannot finish in those 50 ms (on a
    loaded machine a small dump can, and a killed zombie would look like a clean exit)."""

    def killer():
        pid = find()
        if pid:
            if stop_at_once:
                os.kill(pid, signal.SIGSTOP)
            time.sleep(0.05)
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as handle:
                    killed["cmdline"] = handle.read()
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
            except OSError:
                pass

    thread = threading.Thread(target=killer)
    thread.start()
    return thread


def test_pg_dump_killed_in_zstd_pipeline(bulk, tmp_path):
    """pg_dump dies, zstd sees a clean end of input and exits 0: the module must still fail."""
    killed = {}
    thread = _start_killer(lambda: _find_pg_dump(bulk, BULK), killed, stop_at_once=True)
    backups = tmp_path / "backups"
    res = backup(bulk, BULK, backups, compression="zstd")
    thread.join()
    assert killed.get("pid"), "pg_dump finished before it could be killed"
    assert bulk.password.encode() not in killed["cmdline"]
    assert res.failed, res
    assert "pg_dump failed (killed by SIGKILL)" in res["msg"], res["msg"]
    assert_nothing_valid(backups)
    assert_rerun_recovers(bulk, backups, compression="zstd")


def _descendant(predicate, timeout=30):
    """pid of a process below this test process (the module's children) whose argv matches."""
    me = os.getpid()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as handle:
                    argv = [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
                if not argv or not predicate(argv):
                    continue
                parent = int(pid)
                for _depth in range(4):  # module -> its child; or run_module's python -> module -> child
                    with open("/proc/%d/stat" % parent) as handle:
                        parent = int(handle.read().rsplit(")", 1)[1].split()[1])
                    if parent == me:
                        return int(pid)
            except (OSError, ValueError):
                continue
        time.sleep(0.002)
    return None


def test_compressor_killed_mid_stream(bulk, tmp_path):
    """zstd dies while the module moves its output to disk: the module fails naming zstd first."""
    killed = {}
    thread = _start_killer(
        lambda: _descendant(lambda argv: argv[0].endswith("zstd") and "-c" in argv and "-dcq" not in argv), killed)
    backups = tmp_path / "backups"
    res = backup(bulk, BULK, backups, compression="zstd")
    thread.join()
    assert killed.get("pid"), "zstd finished before it could be killed"
    assert res.failed, res
    # pg_dump dies of SIGPIPE as a consequence; the cause comes first in the message
    assert res["msg"].startswith("Failed to dump database 'bulk': zstd failed (killed by SIGKILL)"), res["msg"]
    assert "Traceback" not in res.output
    assert_nothing_valid(backups)
    assert_rerun_recovers(bulk, backups, compression="zstd")


LIST_FAILS = """\
#!/bin/bash
# pg_restore --list that reads a little of the stream, then fails as on a damaged archive
head -c 4096 > /dev/null
echo "pg_restore: error: could not read from input file: end of file" >&2
exit 1
"""


def test_table_of_contents_reader_failing_on_the_stream(bulk, tmp_path):
    """pg_restore --list fed from the stream stops early and fails: the dump still drains, the
    module fails with pg_restore's own message and leaves nothing that counts as a backup."""
    bindir = make_bin_dir(tmp_path, bulk.bindir)
    os.unlink(bindir / "pg_restore")
    (bindir / "pg_restore").write_text(LIST_FAILS)
    (bindir / "pg_restore").chmod(0o755)
    backups = tmp_path / "backups"
    res = backup(bulk, BULK, backups, compression="zstd", pg_bin_dir=str(bindir))
    assert res.failed, res
    assert "with pg_restore --list: pg_restore: error: could not read from input file" in res["msg"], res["msg"]
    assert "Traceback" not in res.output
    assert_nothing_valid(backups)
    assert_rerun_recovers(bulk, backups, compression="zstd")


SLOW_UNZSTD = """\
#!/bin/bash
# zstd whose decompressing run starts late, as on a busy machine; compressing runs are untouched
if [ "$1" = "-dcq" ]; then sleep 3; fi
exec %(real)s "$@"
"""


def test_slow_table_of_contents_feeder_is_waited_for(pg_cluster, tmp_path):
    """The stream's ``zstd -dc | pg_restore --list`` gets the whole table of contents even when
    its decompressor is still busy after the dump ended (it used to be stopped one second after
    the dump, which cut the table of contents short on a loaded machine). The dump is small, so
    all of it fits in the pipe to the sleeping decompressor and the dump ends first."""
    database = "slowtoc"
    pg_cluster.execute("CREATE DATABASE %s" % database)
    pg_cluster.execute("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 100) g",
                       dbname=database)
    wrappers = tmp_path / "path"
    wrappers.mkdir()
    (wrappers / "zstd").write_text(SLOW_UNZSTD % {"real": shutil.which("zstd")})
    (wrappers / "zstd").chmod(0o755)
    backups = tmp_path / "backups"
    res = backup(pg_cluster, database, backups, compression="zstd",
                 env={"PATH": "%s:%s" % (wrappers, os.environ["PATH"])})
    assert not res.failed, res["msg"]
    assert res["toc_entries"] > 0
    listed = m.list_backups(str(backups), database)
    assert m.verify_files(res["path"], listed[0]["manifest"]) == []


def test_row_count_failing_on_its_thread(pg_cluster, tmp_path):
    """The exact row counts run on their own thread while zstd output is written; when a count
    fails (its backend terminated) the module fails naming the table and the cause first.

    A session holds an exclusive lock on the first table before the module starts, so the count
    of that table is certainly waiting when its backend is terminated: no race with the dump."""
    database = "countfail"
    pg_cluster.execute("CREATE DATABASE %s" % database)
    pg_cluster.execute("CREATE TABLE a_locked (id int); INSERT INTO a_locked VALUES (1)", dbname=database)
    pg_cluster.execute("CREATE TABLE b_rows AS SELECT g AS id FROM generate_series(1, 1000) g", dbname=database)
    locker = pg_cluster.connect(dbname=database, autocommit=False)
    locker.execute("LOCK TABLE a_locked IN ACCESS EXCLUSIVE MODE")
    terminated = {}

    def terminator():
        deadline = time.monotonic() + 60
        with pg_cluster.connect(dbname="postgres") as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
                    "AND query LIKE 'SELECT count(*) AS n FROM%%a_locked%%'", (database,)).fetchone()
                if row:
                    conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    terminated["pid"] = row[0]
                    break
                time.sleep(0.01)
        locker.rollback()  # pg_dump, waiting for the same lock, goes on (or fails on the lost snapshot)

    thread = threading.Thread(target=terminator)
    thread.start()
    backups = tmp_path / "backups"
    try:
        res = backup(pg_cluster, database, backups, compression="zstd")
    finally:
        thread.join()
        locker.close()
    assert terminated.get("pid"), "no count query was seen waiting for the lock"
    assert res.failed, res
    assert res["msg"].startswith(
        "Failed to count rows of table public.a_locked in database 'countfail':"), res["msg"]
    assert "Traceback" not in res.output
    assert_nothing_valid(backups, database)
    assert_rerun_recovers(pg_cluster, backups, database, compression="zstd")


# ------------------------------------------------------------------ the module itself stopped


def _start_module(args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PYTHONPATH"] = str(COLLECTIONS_PATH)
    payload = dict(args, _ansible_check_mode=False, _ansible_diff=False, _ansible_no_log=False)
    proc = subprocess.Popen([sys.executable, "-m", module_name("pg_backup")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO_ROOT))
    proc.stdin.write(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
    proc.stdin.close()
    proc.stdin = None  # communicate() must not flush it again
    return proc


def test_sigterm_stops_pg_dump_and_removes_partial(bulk, tmp_path):
    started = tmp_path / "started"
    bindir = make_bin_dir(tmp_path, bulk.bindir, """\
        echo $$ > "%s"
        "$REAL" "$@" &
        echo $! >> "%s"
        sleep 60
        wait
    """ % (started, started))
    backups = tmp_path / "backups"
    proc = _start_module(bulk.module_args(database=BULK, backup_dir=str(backups), pg_bin_dir=str(bindir)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(started.read_text().split() if started.exists() else []) < 2:
        time.sleep(0.02)
    pids = [int(p) for p in started.read_text().split()]
    assert no_partials(backups), "the partial directory should exist while pg_dump runs"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    result = json.loads(out)
    assert result["failed"] and "interrupted by SIGTERM" in result["msg"], result
    assert "Traceback" not in err and bulk.password not in out + err
    for pid in pids:  # the wrapper and the real pg_dump are gone (not merely zombies of a live parent)
        deadline = time.monotonic() + 10
        while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists("/proc/%d" % pid), "process %d survived the module" % pid
    assert_nothing_valid(backups)
    assert_rerun_recovers(bulk, backups)


# ------------------------------------------------------------------ disk full


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MiB tmpfs; skipped where mounting is not permitted."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here: %s" % proc.stderr.strip())
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], capture_output=True, check=False)
        if os.path.ismount(str(mountpoint)):
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, check=False)


@pytest.mark.parametrize("options", [
    {"compression": "gzip"},
    {"compression": "zstd"},
    {"format": "directory", "jobs": 2},
])
def test_disk_full(bulk, small_fs, options):
    res = backup(bulk, BULK, small_fs, **options)
    assert res.failed, res
    assert res["msg"].startswith("Failed to dump database 'bulk'"), res["msg"]
    assert "No space left" in res["msg"], res["msg"]
    assert "Traceback" not in res.output
    assert_nothing_valid(small_fs)
    # room made: the same place works again
    subprocess.run(["mount", "-o", "remount,size=128m", str(small_fs)], check=True)
    assert_rerun_recovers(bulk, small_fs, **options)


# ------------------------------------------------------------------ pg_dump lying or too small


def test_error_on_stderr_with_exit_code_zero(bulk, tmp_path):
    bindir = make_bin_dir(tmp_path, bulk.bindir, """\
        "$REAL" "$@" || exit $?
        echo "pg_dump: error: simulated failure after writing the archive" >&2
        exit 0
    """)
    backups = tmp_path / "backups"
    res = backup(bulk, BULK, backups, pg_bin_dir=str(bindir))
    assert res.failed
    assert "pg_dump failed (exit code 0): pg_dump: error: simulated failure" in res["msg"], res["msg"]
    assert_nothing_valid(backups)


def test_dump_smaller_than_min_size(bulk, tmp_path):
    backups = tmp_path / "backups"
    res = backup(bulk, BULK, backups, min_size=10 ** 12)
    assert res.failed and "smaller than min_size 1000000000000" in res["msg"], res
    assert_nothing_valid(backups)


def test_empty_output_is_refused(bulk, tmp_path):
    bindir = make_bin_dir(tmp_path, bulk.bindir, """\
        for a in "$@"; do case "$a" in --file=*) : > "${a#--file=}";; esac; done
        exit 0
    """)
    backups = tmp_path / "backups"
    res = backup(bulk, BULK, backups, pg_bin_dir=str(bindir))
    assert res.failed and "Failed to" in res["msg"], res
    assert_nothing_valid(backups)


def test_old_pg_dump_is_refused(bulk, tmp_path):
    bindir = tmp_path / "oldbin"
    bindir.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        script = bindir / tool
        script.write_text("#!/bin/sh\necho '%s (PostgreSQL) 13.14'\n" % tool)
        script.chmod(0o755)
    backups = tmp_path / "backups"
    for check_mode in (True, False):
        res = backup(bulk, BULK, backups, check_mode=check_mode, pg_bin_dir=str(bindir))
        assert res.failed, res
        assert "pg_dump 13.14 in %s is older than the server (PostgreSQL 15)" % bindir in res["msg"], res["msg"]
    assert not backups.exists()


# ------------------------------------------------------------------ awkward identifiers

AWKWARD_DB = 'Shop "Ü" Ärger\'s=1 Ω'
AWKWARD_SCHEMA = 'Sales "Q1" Ü'
AWKWARD_TABLE = 'Order Items "x" É'


@pytest.fixture(scope="module")
def awkward(pg_cluster):
    pg_cluster.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(AWKWARD_DB)))
    with pg_cluster.connect(dbname=AWKWARD_DB) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(AWKWARD_SCHEMA)))
        conn.execute(sql.SQL('CREATE TABLE {} ("Id" int PRIMARY KEY, "Naïve Column" text, data jsonb)').format(
            sql.Identifier(AWKWARD_SCHEMA, AWKWARD_TABLE)))
        conn.execute(sql.SQL("INSERT INTO {} SELECT g, 'ünïcödé ' || g, jsonb_build_object('k', g) "
                             "FROM generate_series(1, 5000) g").format(sql.Identifier(AWKWARD_SCHEMA, AWKWARD_TABLE)))
        conn.execute(sql.SQL("CREATE TABLE {} (v text)").format(sql.Identifier("public", "UPPER case")))
        conn.execute(sql.SQL("INSERT INTO {} VALUES ('a'), ('b')").format(sql.Identifier("public", "UPPER case")))
    return pg_cluster


@pytest.mark.parametrize("options", [{}, {"compression": "zstd"}, {"format": "directory", "jobs": 2}])
def test_awkward_identifiers(awkward, tmp_path, options):
    res = backup(awkward, AWKWARD_DB, tmp_path, label="odd-names", globals=True, **options)
    assert not res.failed, res
    assert res["database"] == AWKWARD_DB
    safe = m.safe_name(AWKWARD_DB)
    assert safe == "Shop%20%22%C3%9C%22%20%C3%84rger%27s%3D1%20%CE%A9"
    assert res["path"] == os.path.join(str(tmp_path), safe, res["backup_id"])
    manifest = m.load_manifest(res["path"])
    assert manifest["database"] == AWKWARD_DB
    assert m.verify_files(res["path"], manifest) == []
    counted = {(t["schema"], t["name"]): t["rows"] for t in manifest["tables"]}
    assert counted == {(AWKWARD_SCHEMA, AWKWARD_TABLE): 5000, ("public", "UPPER case"): 2}
    assert [b["database"] for b in m.list_backups(str(tmp_path), AWKWARD_DB)] == [AWKWARD_DB]
    target = "restored_awkward_%d" % len(options)
    restore_into(awkward, res["path"], target)
    assert exact_counts(awkward, target, counted) == counted
