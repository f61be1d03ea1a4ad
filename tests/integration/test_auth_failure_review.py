"""auth_failure_review against a real PostgreSQL log and generated sshd / Django logs.

PostgreSQL: a test cluster logs with log_connections and a log_line_prefix carrying the
client address. Clients connect through a small TCP relay whose outgoing socket is bound to
127.0.12.7 (or .8, .9), so the server sees those addresses; wrong passwords are sent by
libpq (psycopg) itself, exactly as an application would.
"""

import contextlib
import gzip
import json
import os
import shutil
import socket
import threading

import psycopg
import pytest
from psycopg import sql

from tests.fixtures.postgres import ClusterFactory
from tests.integration.module_runner import run_module

pytestmark = pytest.mark.integration

PREFIX_WITH_HOST = "%m [%p] %q%u@%d %r "
PG_SETTINGS = {"log_connections": "on", "log_line_prefix": PREFIX_WITH_HOST, "log_min_messages": "warning"}
APP_PASSWORD = "right-app-pw"


class Relay:
    """Listen on 127.0.12.1; connect onwards to the cluster from a chosen source address."""

    def __init__(self, target, source):
        self.target = target
        self.source = source
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.12.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            upstream.bind((self.source, 0))
            upstream.connect(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self):
        self.closed = True
        self.server.close()


@pytest.fixture(scope="module")
def cluster(pg_bindir):
    """One cluster for the module: log_connections, the address in the prefix, .7 and .8 allowed in."""
    factory = ClusterFactory(pg_bindir, prefix="auth")
    try:
        cluster = factory(settings=PG_SETTINGS)
        hba = cluster.datadir / "pg_hba.conf"
        hba.write_text(hba.read_text() + "host all all 127.0.12.7/32 scram-sha-256\n"
                                          "host all all 127.0.12.8/32 scram-sha-256\n")
        cluster.execute("SELECT pg_reload_conf()")
        cluster.execute(sql.SQL("CREATE ROLE app LOGIN PASSWORD {}").format(sql.Literal(APP_PASSWORD)))
        yield cluster
    finally:
        factory.close()


@contextlib.contextmanager
def relay(cluster, source):
    r = Relay((cluster.host, cluster.port), source)
    try:
        yield r
    finally:
        r.close()


def attempt(r, user, password, dbname="postgres"):
    """One login through the relay; True when it succeeded."""
    try:
        with psycopg.connect(host="127.0.12.1", port=r.port, user=user, password=password, dbname=dbname,
                             connect_timeout=10, sslmode="disable"):
            return True
    except psycopg.OperationalError:
        return False


def review(tmp_path, logs, check_mode=False, **extra):
    args = {"logs": logs, "state_file": str(tmp_path / "state" / "auth.json"), "host_label": "db1"}
    args.update(extra)
    res = run_module("auth_failure_review", args, check_mode=check_mode)
    assert not res.failed, res
    return res


def by_check(res):
    return dict((c["check"], c) for c in res["checks"])


def test_wrong_postgres_passwords_counted_exactly(cluster, tmp_path):
    log = [{"kind": "postgres", "path": str(cluster.logfile), "log_line_prefix": PREFIX_WITH_HOST, "name": "pg"}]
    review(tmp_path, log, first_run="end")  # start at the end of what the cluster logged so far

    with relay(cluster, "127.0.12.7") as r7, relay(cluster, "127.0.12.9") as r9:
        for _ in range(7):
            assert not attempt(r7, "app", "wrong password")
        for _ in range(2):
            assert not attempt(r7, "nosuchuser", "x")
        for _ in range(3):
            assert not attempt(r9, "app", APP_PASSWORD)  # no pg_hba.conf line for .9
        assert attempt(r7, "app", APP_PASSWORD)  # right after 9 failures from .7

    res = review(tmp_path, log)
    assert res["total"] == 12
    assert res["by_kind"] == {"postgres": 12, "sshd": 0, "django": 0}
    assert res["by_source"] == {"127.0.12.7": 9, "127.0.12.9": 3}
    assert res["by_user"] == {"app": 10, "nosuchuser": 2}
    assert res["successes"] == 1
    assert res["top_sources"][0] == {"address": "127.0.12.7", "failures": 9, "kinds": ["postgres"],
                                     "users": ["app", "nosuchuser"], "distinct_users": 2}
    assert res["suspicious_successes"] == [{"kind": "postgres", "log": "pg", "address": "127.0.12.7",
                                            "user": "app", "failures_before": 9}]
    assert res["change"] == {"total": 12, "by_kind": {"postgres": 12, "sshd": 0, "django": 0}}
    checks = by_check(res)
    assert checks["auth_success_after_failures"]["status"] == "fail"
    assert checks["auth_failures_by_source"]["status"] == "ok"  # 9 < 10
    assert checks["auth_failures"]["message"].startswith("failed logins since the last run is 12 (postgres 12")
    assert APP_PASSWORD not in res.output

    # Nothing new: nothing counted twice.
    again = review(tmp_path, log)
    assert again["total"] == 0
    assert again["change"]["total"] == -12
    assert again["changed"] is False
    assert again["state_file"]["written"] is True


def test_postgres_address_from_connection_received_lines(cluster, tmp_path):
    """Without %h/%r in the prefix, the address comes from log_connections' line of the same PID."""
    plain_prefix = "%m [%p] %q%u@%d "
    with_host = [{"kind": "postgres", "path": str(cluster.logfile), "log_line_prefix": PREFIX_WITH_HOST}]
    review(tmp_path, with_host, first_run="end")
    with relay(cluster, "127.0.12.8") as r8:
        for _ in range(4):
            assert not attempt(r8, "app", "wrong")
    # The lines carry %r, but a prefix regex without it still finds pid and message: the
    # address must then come from the "connection received" line.
    start = tmp_path / "plain"
    start.mkdir()
    res = review(start, [{"kind": "postgres", "path": str(cluster.logfile), "log_line_prefix": plain_prefix}])
    assert res["by_source"].get("127.0.12.8") == 4
    res2 = review(tmp_path, with_host)
    assert res2["by_source"] == {"127.0.12.8": 4}


SSHD_FAIL = "Dec  2 09:{m:02d}:00 db1 sshd[{pid}]: Failed password for {inv}{user} from {ip} port {port} ssh2\n"
SSHD_OK = ("Dec  2 09:{m:02d}:30 db1 sshd[{pid}]: Accepted publickey for {user} from {ip} port {port} ssh2: "
           "ED25519 SHA256:x\n")


def sshd_fail(i, user="root", ip="192.0.2.10", invalid=False):
    return SSHD_FAIL.format(m=i % 60, pid=1000 + i, inv="invalid user " if invalid else "", user=user, ip=ip,
                            port=40000 + i)


def write(path, text, mode="a"):
    with open(path, mode, encoding="utf-8") as handle:
        handle.write(text)


def test_sshd_log_rotated_between_runs_loses_and_repeats_nothing(tmp_path):
    logdir = tmp_path / "log"
    logdir.mkdir()
    auth = logdir / "auth.log"
    logs = [{"kind": "sshd", "path": str(auth)}]
    noise = "Dec  2 09:00:01 db1 CRON[77]: pam_unix(cron:session): session opened for user root\n"
    write(auth, noise + "".join(sshd_fail(i) for i in range(5)))
    assert review(tmp_path, logs)["total"] == 5

    # 3 more lines in the old file, then logrotate (delaycompress: the old file keeps its inode as auth.log.1)
    write(auth, "".join(sshd_fail(i, user="admin", ip="198.51.100.7", invalid=True) for i in range(3)))
    os.rename(auth, logdir / "auth.log.1")
    write(auth, "".join(sshd_fail(i, user="deploy", ip="203.0.113.5") for i in range(4)) + noise)
    res = review(tmp_path, logs)
    assert res["total"] == 7
    assert res["by_source"] == {"198.51.100.7": 3, "203.0.113.5": 4}
    assert res["by_user"] == {"admin": 3, "deploy": 4}
    assert res["logs"][0]["rotated_from"] == str(logdir / "auth.log.1")
    assert res["logs"][0]["gaps"] == []
    assert res["change"]["total"] == 2
    assert review(tmp_path, logs)["total"] == 0

    # Rotation with immediate compression: the old file is found by its first bytes inside the .gz.
    write(auth, "".join(sshd_fail(i, ip="192.0.2.99") for i in range(2)))
    data = auth.read_bytes()
    auth.unlink()
    with gzip.open(logdir / "auth.log.2.gz", "wb") as handle:
        handle.write(data)
    write(auth, sshd_fail(1, ip="192.0.2.100"))
    res = review(tmp_path, logs)
    assert res["by_source"] == {"192.0.2.99": 2, "192.0.2.100": 1}
    assert res["logs"][0]["rotated_from"] == str(logdir / "auth.log.2.gz")

    # A line still being written (no newline yet) waits for the next run.
    write(auth, sshd_fail(5, ip="192.0.2.101").rstrip("\n"))
    assert review(tmp_path, logs)["total"] == 0
    write(auth, "\n")
    assert review(tmp_path, logs)["by_source"] == {"192.0.2.101": 1}

    # Rotated away and gone: the gap is reported, the new file is still counted.
    os.rename(auth, tmp_path / "elsewhere.log")
    write(auth, sshd_fail(9, ip="192.0.2.102"))
    res = review(tmp_path, logs)
    assert res["total"] == 1
    assert "the old file was not found" in res["logs"][0]["gaps"][0]
    assert by_check(res)["auth_log_coverage"]["status"] == "warn"


def test_sshd_success_after_failures_across_runs_and_repeats(tmp_path):
    auth = tmp_path / "auth.log"
    logs = [{"kind": "sshd", "path": str(auth)}]
    write(auth, "".join(sshd_fail(i, user="deploy", ip="192.0.2.10") for i in range(3)))
    assert review(tmp_path, logs, check_mode=True)["total"] == 3
    assert not (tmp_path / "state" / "auth.json").exists()  # check mode writes no state
    assert review(tmp_path, logs)["total"] == 3
    write(auth, "Dec  2 09:10:00 db1 sshd[2000]: message repeated 2 times: [ Failed password for deploy from "
                "192.0.2.10 port 50000 ssh2]\n")
    write(auth, SSHD_OK.format(m=11, pid=2001, user="deploy", ip="192.0.2.10", port=50001))
    write(auth, sshd_fail(12, user="x", ip="192.0.2.11") + SSHD_OK.format(m=12, pid=2003, user="x", ip="192.0.2.11",
                                                                         port=1))
    res = review(tmp_path, logs)
    assert res["total"] == 3  # 2 repeated + 1
    assert res["successes"] == 2
    assert res["suspicious_successes"] == [{"kind": "sshd", "log": "sshd:%s" % auth, "address": "192.0.2.10",
                                            "user": "deploy", "failures_before": 5}]
    state = json.loads((tmp_path / "state" / "auth.json").read_text())
    assert state["version"] == 1
    assert oct((tmp_path / "state" / "auth.json").stat().st_mode & 0o777) == "0o600"


def test_django_structured_lines(tmp_path):
    app_log = tmp_path / "web.log"
    lines = []
    for i in range(6):
        lines.append('2026-12-02 09:00:%02d,000 WARNING audit.auth 4242 {"event": "user_login_failed", '
                     '"username": "demo", "ip": "198.51.100.20"}' % i)
    lines.append('2026-12-02 09:01:00,000 WARNING audit.auth 4242 {"event": "user_login_failed", '
                 '"username": "j\\u00f6rg", "ip": "2001:db8::5"}')
    lines.append("2026-12-02 09:01:01,000 INFO django.server 4242 GET /healthz/ 200")
    lines.append('2026-12-02 09:02:00,000 INFO audit.auth 4242 {"event": "user_logged_in", "username": "demo", '
                 '"ip": "198.51.100.20"}')
    write(app_log, "\n".join(lines) + "\n")
    res = review(tmp_path, [{"kind": "django", "path": str(app_log)}], source_failures_warn=5,
                 source_failures_fail=50)
    assert res["total"] == 7
    assert res["by_kind"]["django"] == 7
    assert res["by_user"] == {"demo": 6, "jörg": 1}
    assert res["by_source"] == {"198.51.100.20": 6, "2001:db8::5": 1}
    assert res["suspicious_successes"][0]["failures_before"] == 6
    checks = by_check(res)
    assert checks["auth_failures_by_source"]["status"] == "warn"
    assert checks["auth_failures_by_source"]["value"]["address"] == "198.51.100.20"


def test_missing_log_and_bad_state(tmp_path):
    res = review(tmp_path, [{"kind": "sshd", "path": str(tmp_path / "absent.log")}])
    assert "could not read" in res["logs"][0]["gaps"][0]
    assert by_check(res)["auth_log_coverage"]["status"] == "warn"
    (tmp_path / "state" / "auth.json").write_text("{not json")
    res = run_module("auth_failure_review", {"logs": [{"kind": "sshd", "path": str(tmp_path / "absent.log")}],
                                             "state_file": str(tmp_path / "state" / "auth.json")})
    assert res.failed
    assert res["msg"].startswith("Failed to read the state file %s" % (tmp_path / "state" / "auth.json"))


def test_postgres_log_rotated_by_copytruncate_mid_period(cluster, tmp_path):
    """Debian's logrotate rotates PostgreSQL's log with copytruncate: the copy is finished first."""
    log = [{"kind": "postgres", "path": str(cluster.logfile), "log_line_prefix": PREFIX_WITH_HOST}]
    review(tmp_path, log, first_run="end")
    with relay(cluster, "127.0.12.8") as r8:
        for _ in range(3):
            assert not attempt(r8, "app", "wrong-before-rotation")
        # copytruncate: copy the file, then truncate the original in place (the server keeps appending).
        rotated = cluster.logfile.with_name(cluster.logfile.name + ".1")
        shutil.copyfile(cluster.logfile, rotated)
        with open(cluster.logfile, "r+b") as handle:
            handle.truncate(0)
        for _ in range(4):
            assert not attempt(r8, "app", "wrong-after-rotation")
    res = review(tmp_path, log)
    assert res["by_source"] == {"127.0.12.8": 7}
    assert res["logs"][0]["rotated_from"] == str(rotated)
    assert res["logs"][0]["gaps"] == []
    assert review(tmp_path, log)["total"] == 0
