#!/usr/bin/env python3
"""What pitr_restore costs next to the plain pgBackRest restore and recovery it wraps.

One archiving primary (tests/fixtures/pgbackrest.py: pgBackRest 2.45, a POSIX repository) holds the
generated Django-like database of bench/backup.py, grown to BENCH_PITR_SCALE GiB; a full backup is
taken, then an update of a tenth of the orders and order lines writes WAL the recovery has to replay.
The source is then stopped (the disaster), and in BENCH_ROUNDS rounds (sides alternating, the order
flipping every round) the same backup is recovered to the end of the archive into an empty
directory by

* ``pitr_restore`` (run as Ansible runs it: a Python process, arguments on stdin), and
* the baseline: ``pgbackrest restore --set=<label> --type=default --archive-mode=off``, the same
  port/socket settings appended to postgresql.auto.conf, ``pg_ctl start -w``, then polling
  ``pg_is_in_recovery()`` every 0.2 s (the module's own poll interval) until the server has promoted.

Both end at the first moment the restored server accepts writes. The target is at most 1.05x.

Environment: BENCH_PITR_SCALE (default 0.5 GiB), BENCH_ROUNDS (default 3). Runs as root (the server
side as the postgres OS user) or as the owner of the clusters. Everything is removed at the end.
"""

import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path[:0] = [HERE, TOP, os.path.join(TOP, ".collections")]

import backup as base  # noqa: E402 - bench/backup.py: the generator and the helpers
from tests.fixtures.pgbackrest import make_stanza  # noqa: E402
from tests.fixtures.postgres import _clean_env, find_bindir, free_port  # noqa: E402
from tests.integration.module_runner import run_module  # noqa: E402

ROUNDS = max(1, int(os.environ.get("BENCH_ROUNDS", "3")))
SCALE = float(os.environ.get("BENCH_PITR_SCALE", "0.5"))
TARGET = 1.05
POLL = 0.2
SETTINGS = {"shared_buffers": "256MB", "max_wal_size": "4GB", "checkpoint_timeout": "30min",
            "autovacuum": "off", "maintenance_work_mem": "256MB"}


class PitrBench:
    def __init__(self):
        self.bindir = find_bindir()
        if self.bindir is None or shutil.which("pgbackrest") is None:
            raise base.BenchError("needs PostgreSQL server binaries and pgbackrest (make deps)")
        self.factory, self.stanza = make_stanza(self.bindir, prefix="benchpitr", settings=SETTINGS)
        self.gen = base.Bench()  # only its generator: the cluster is the stanza's primary
        self.gen.cluster = self.stanza.cluster
        self.label = None

    def close(self):
        for name in ("module", "raw"):
            self.stanza.stop_restored(self.stanza.base / name)
        self.gen.cluster = None
        self.gen.close()
        self.stanza.close()
        self.factory.close()
        shutil.rmtree(self.stanza.base, ignore_errors=True)

    def prepare(self):
        cluster = self.stanza.cluster
        cluster.execute("CREATE DATABASE %s TEMPLATE template0" % base.DATABASE)
        self.gen.grow(int(SCALE * base.GIB))
        start = time.perf_counter()
        self.label = self.stanza.backup("full")["label"]
        base.say("backup    full %s in %.0f s" % (self.label, time.perf_counter() - start))
        with cluster.connect(dbname=base.DATABASE) as conn:
            conn.execute("UPDATE shop_order SET total = total + 1 WHERE id % 10 = 0")
            conn.execute("UPDATE shop_orderline SET quantity = quantity + 1 WHERE id % 10 = 0")
        wal = cluster.scalar("SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn))",
                             (self.stanza.info()["backup"][-1]["lsn"]["stop"],))
        self.stanza.switch_and_wait()
        base.say("wal       %s written after the backup, archived" % wal)
        cluster.stop("fast")  # the disaster: pitr_restore refuses a host that runs the source

    def directory(self, name):
        path = self.stanza.base / name
        self.stanza.stop_restored(path)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(mode=0o700)
        self.stanza._chown(path)
        sock = self.stanza.base / (name + "-sock")
        if not sock.exists():
            sock.mkdir(mode=0o700)
            self.stanza._chown(sock)
        return path, {"port": free_port(), "unix_socket_directories": str(sock)}

    def run_module(self, _round):
        path, settings = self.directory("module")
        start = time.perf_counter()
        res = run_module("pitr_restore", self.stanza.module_args(data_directory=str(path), backup_set=self.label,
                                                                 settings=settings), timeout=3600)
        seconds = time.perf_counter() - start
        if res.failed or not res.get("promoted"):
            raise base.BenchError("pitr_restore failed: %s" % (res.get("msg") or res.stderr[-2000:]))
        self.stanza.stop_restored(path)
        return seconds

    def as_server_user(self, argv, **kwargs):
        account = self.stanza.account
        if account:
            kwargs.update(user=account[0], group=account[1], extra_groups=[])
        return subprocess.run(argv, env=_clean_env(), cwd="/", capture_output=True, text=True, check=False, **kwargs)

    def run_raw(self, _round):
        path, settings = self.directory("raw")
        start = time.perf_counter()
        proc = self.as_server_user(["pgbackrest", "--config=%s" % self.stanza.config, "--stanza=%s" % self.stanza.name,
                                    "--pg1-path=%s" % path, "--set=%s" % self.label, "--type=default",
                                    "--archive-mode=off", "restore"])
        if proc.returncode != 0:
            raise base.BenchError("pgbackrest restore failed: %s" % proc.stderr[-2000:])
        with open(path / "postgresql.auto.conf", "a", encoding="utf-8") as handle:
            handle.write("port = %d\nunix_socket_directories = '%s'\n"
                         % (settings["port"], settings["unix_socket_directories"]))
        proc = self.as_server_user([os.path.join(self.bindir, "pg_ctl"), "start", "-w", "-D", str(path),
                                    "-l", str(path / "startup.log")])
        if proc.returncode != 0:
            raise base.BenchError("pg_ctl start failed: %s" % (proc.stderr or proc.stdout)[-2000:])
        psql = [os.path.join(self.bindir, "psql"), "-X", "-At", "-h", settings["unix_socket_directories"],
                "-p", str(settings["port"]), "-U", "postgres", "-d", "postgres", "-c", "SELECT pg_is_in_recovery()"]
        while self.as_server_user(psql).stdout.strip() != "f":
            time.sleep(POLL)
        seconds = time.perf_counter() - start
        self.stanza.stop_restored(path)
        return seconds

    def run(self):
        times = base.alternate(ROUNDS, [("pitr_restore", self.run_module), ("raw", self.run_raw)])
        module, raw = statistics.median(times["pitr_restore"]), statistics.median(times["raw"])
        ratio = module / raw
        base.say("restore   pitr_restore %.2f s / raw pgbackrest restore + recovery %.2f s = %.2fx "
                 "(target <= %.2fx: %s)" % (module, raw, ratio, TARGET, base.verdict(base.within(ratio, TARGET))))
        base.say("rounds    pitr_restore %s; raw %s" % (", ".join("%.2f" % t for t in times["pitr_restore"]),
                                                        ", ".join("%.2f" % t for t in times["raw"])))


def main():
    started = time.perf_counter()
    bench = None
    try:
        base.say("load      %s at the start" % base.load_average())
        bench = PitrBench()
        bench.prepare()
        bench.run()
        base.say("load      %s at the end" % base.load_average())
        base.say("total run time %.0f s" % (time.perf_counter() - started))
    except base.BenchError as exc:
        base.say("bench/pitr.py: %s" % exc)
        return 1
    except KeyboardInterrupt:
        base.say("bench/pitr.py: interrupted, cleaning up")
        return 130
    finally:
        if bench is not None:
            bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
