"""celery_redis_info against a real redis-server and a real Celery worker.

Redis is Debian's redis-server on 127.0.12.1 (a free port) with a password and a key prefix;
the worker is a minimal Celery app (kombu's Redis transport, as the sample app uses) run with
the test interpreter. Tasks are queued with Celery itself, so the keys the module counts are
the ones Celery writes.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.fixtures import tls
from tests.fixtures.redis import free_port
from tests.integration.module_runner import run_module

pytestmark = pytest.mark.integration

celery = pytest.importorskip("celery", reason="celery is not installed in the test interpreter")

HOST = "127.0.12.1"
PASSWORD = "redis pw=#$ 'quoted\" ${X}"
PREFIX = "app1:"

APP = textwrap.dedent("""
    import os
    from celery import Celery

    app = Celery("capp", broker=os.environ["CAPP_BROKER"])
    app.conf.broker_transport_options = {"global_keyprefix": os.environ.get("CAPP_PREFIX", "")}
    app.conf.broker_connection_retry_on_startup = True
    app.conf.task_queues = None

    @app.task(name="capp.add")
    def add(x, y):
        return x + y
""")

SEND = textwrap.dedent("""
    import sys
    from capp import app

    count, priority, queue, countdown = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    for i in range(count):
        options = {"queue": queue}
        if priority != "-":
            options["priority"] = int(priority)
        if countdown != "-":
            options["countdown"] = int(countdown)
        app.send_task("capp.add", args=(i, i), **options)
""")


@pytest.fixture
def broker(redis_factory):
    return redis_factory(password=PASSWORD, host=HOST, maxmemory="64mb", maxmemory_policy="noeviction")


@pytest.fixture
def capp(tmp_path, broker):
    (tmp_path / "capp.py").write_text(APP, encoding="utf-8")
    (tmp_path / "send.py").write_text(SEND, encoding="utf-8")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(tmp_path),
        "PYTHONDONTWRITEBYTECODE": "1",
        "CAPP_BROKER": broker.url(),
        "CAPP_PREFIX": PREFIX,
    }
    return {"dir": tmp_path, "env": env}


def send(capp, count, priority="-", queue="celery", countdown="-"):
    proc = subprocess.run([sys.executable, "send.py", str(count), str(priority), queue, str(countdown)],
                          cwd=capp["dir"], env=capp["env"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


@contextlib.contextmanager
def worker(capp, queues="celery,mail", name="w1@upkeep", gossip=False):
    log = capp["dir"] / "worker.log"
    quiet = [] if gossip else ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "capp", "worker", "--pool", "solo", "--loglevel", "INFO"]
            + quiet + ["-Q", queues, "-n", name],
            cwd=capp["dir"], env=capp["env"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "worker not ready:\n" + log.read_text(errors="replace")
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def run(broker, check_mode=False, **extra):
    args = broker.module_args(key_prefix=PREFIX, host_label="app1", worker_timeout=1.5, queues=["celery", "mail"])
    args.update(extra)
    res = run_module("celery_redis_info", args, check_mode=check_mode)
    assert PASSWORD not in res.output
    return res


def by_check(res):
    return dict((c["check"], c) for c in res["checks"])


def queue(res, name):
    return next(q for q in res["queues"] if q["name"] == name)


def test_healthy_broker_and_worker(broker, capp):
    with worker(capp):
        res = run(broker, check_mode=True)
    assert not res.failed, res
    assert res["reachable"] is True
    assert res["memory"]["maxmemory_bytes"] == 64 * 1024 * 1024
    assert res["memory"]["maxmemory_policy"] == "noeviction"
    assert res["workers"]["answered"] == ["w1@upkeep"]
    assert queue(res, "celery") == {"name": "celery", "messages": 0, "by_priority": {"0": 0, "3": 0, "6": 0, "9": 0},
                                    "consumers": ["w1@upkeep"]}
    assert queue(res, "mail")["consumers"] == ["w1@upkeep"]
    checks = by_check(res)
    assert {name: c["status"] for name, c in checks.items()} == {
        "redis_ping": "ok", "redis_memory": "ok", "redis_maxmemory_policy": "ok",
        "celery_queue_depth:celery": "ok", "celery_queue_depth:mail": "ok", "celery_unacked": "ok",
        "celery_workers": "ok", "celery_unconsumed_queues": "ok",
    }
    assert all(c["host"] == "app1" for c in res["checks"])
    # The broadcast cleaned up after itself: no reply binding, no reply list left behind.
    assert broker.cli("SCARD", PREFIX + "_kombu.binding.reply.celery.pidbox") == 0
    assert not [k for k in broker.cli("KEYS", "*") if b"reply.celery.pidbox" in k and b"binding" not in k]


def test_a_worker_with_gossip_leaves_no_unconsumed_queue(broker, capp):
    # Celery's defaults (gossip, mingle, heartbeat) bind the worker's own celeryev.<uuid> event queue;
    # that is no queue of work and must not be reported as unconsumed (the lab's worker runs so).
    with worker(capp, gossip=True):
        members = broker.cli("SMEMBERS", PREFIX + "_kombu.binding.celeryev")
        assert any(b"celeryev." in m for m in members), members
        res = run(broker)
    checks = by_check(res)
    assert checks["celery_workers"]["status"] == "ok", res
    assert checks["celery_unconsumed_queues"]["status"] == "ok", checks["celery_unconsumed_queues"]
    assert sorted(q["name"] for q in res["queues"]) == ["celery", "mail"]


def test_stopped_worker_queued_tasks_give_depth_and_failed_ping(broker, capp):
    # The worker declares its queues once, then stops; the tasks queued afterwards wait.
    with worker(capp):
        pass
    send(capp, 7)
    send(capp, 3, priority=9)
    send(capp, 2, queue="mail")
    res = run(broker, queue_depth_warn=5, queue_depth_fail=50)
    assert not res.failed, res
    assert queue(res, "celery")["messages"] == 10
    assert queue(res, "celery")["by_priority"] == {"0": 7, "3": 0, "6": 0, "9": 3}
    assert queue(res, "mail")["messages"] == 2
    assert res["workers"]["answered"] == []
    assert res["workers"]["pidbox_subscribers"] == 0
    checks = by_check(res)
    assert checks["celery_queue_depth:celery"]["status"] == "warn"
    assert checks["celery_queue_depth:celery"]["value"] == 10
    assert checks["celery_queue_depth:mail"]["status"] == "ok"
    assert checks["celery_workers"]["status"] == "fail"
    assert checks["celery_workers"]["value"] == 0
    assert "no worker answered ping within 1.5 s" in checks["celery_workers"]["message"]
    assert checks["celery_unconsumed_queues"]["status"] == "fail"
    assert checks["celery_unconsumed_queues"]["value"] == ["celery", "mail"]

    # Without the key prefix the module looks at other keys and must not find these tasks.
    bare = run(broker, key_prefix="", worker_timeout=0)
    assert queue(bare, "celery")["messages"] == 0

    # A worker that starts consuming again drains them.
    with worker(capp):
        deadline = time.monotonic() + 60
        while True:
            res = run(broker)
            if queue(res, "celery")["messages"] == 0 and queue(res, "mail")["messages"] == 0:
                break
            assert time.monotonic() < deadline, res["queues"]
            time.sleep(0.5)
        res = run(broker)
    assert by_check(res)["celery_workers"]["status"] == "ok", (res, (capp["dir"] / "worker.log").read_text())


def test_tasks_held_by_the_worker_are_unacked(broker, capp):
    with worker(capp):
        send(capp, 3, countdown=600)
        deadline = time.monotonic() + 30
        while broker.cli("HLEN", PREFIX + "unacked") < 3:
            assert time.monotonic() < deadline, "the worker did not reserve the countdown tasks"
            time.sleep(0.2)
        res = run(broker, unacked_warn=2, unacked_fail=10)
    assert res["unacked"]["count"] == 3
    assert res["unacked"]["oldest_age_seconds"] >= 0
    assert queue(res, "celery")["messages"] == 0
    assert by_check(res)["celery_unacked"]["status"] == "warn"


def test_evicting_policy_and_memory_near_maxmemory(broker):
    used = int(broker.cli("INFO", "memory").split(b"used_memory:")[1].split(b"\r\n")[0])
    broker.cli("CONFIG", "SET", "maxmemory", str(int(used * 1.05)))
    broker.cli("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    res = run(broker, worker_timeout=0)
    checks = by_check(res)
    assert checks["redis_maxmemory_policy"]["status"] == "fail"
    assert "deletes queued Celery tasks" in checks["redis_maxmemory_policy"]["message"]
    assert res["memory"]["percent_of_maxmemory"] >= 90
    assert checks["redis_memory"]["status"] == "fail"
    assert "celery_workers" not in checks  # worker_timeout=0 skips the broadcast

    broker.cli("CONFIG", "SET", "maxmemory-policy", "volatile-lru")
    assert by_check(run(broker, worker_timeout=0))["redis_maxmemory_policy"]["status"] == "warn"


def test_wrong_password_and_stopped_redis(broker):
    res = run_module("celery_redis_info", broker.module_args(password="not-the-password", host_label="app1"))
    assert not res.failed
    assert res["reachable"] is False
    assert "refused the credentials" in res["error"]
    assert "not-the-password" not in res.output
    assert [c["status"] for c in res["checks"]] == ["fail"]

    # The password also comes from REDISCLI_AUTH, as with redis-cli.
    args = broker.module_args(worker_timeout=0)
    del args["password"]
    res = run_module("celery_redis_info", args, env={"REDISCLI_AUTH": PASSWORD})
    assert res["reachable"] is True, res

    broker.stop()
    res = run(broker)
    assert res["reachable"] is False
    assert "cannot connect to Redis at %s:%s" % (HOST, broker.port) in res["error"]
    assert by_check(res)["redis_ping"]["status"] == "fail"
    res = run(broker, fail_on_unreachable=True)
    assert res.failed
    assert res["msg"].startswith("Failed to connect to Redis: cannot connect")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_bad_thresholds_are_refused():
    res = run_module("celery_redis_info", {"queue_depth_warn": 10, "queue_depth_fail": 5})
    assert res.failed
    assert res["msg"] == "Failed to validate queue_depth_warn: it must be 0 or more and not above queue_depth_fail"


def test_tls_with_the_servers_ca(redis_factory, tmp_path):
    ca = tls.make_ca(tmp_path / "ca", "upkeep redis CA")
    cert, key = tls.issue(ca, tmp_path / "ca", "redis", [HOST])
    tls_port = free_port(HOST)
    server = redis_factory(password=PASSWORD, host=HOST, tls_port=tls_port, tls_cert_file=cert, tls_key_file=key,
                           tls_ca_cert_file=ca.cert_file, tls_auth_clients="no")
    args = dict(server.module_args(port=tls_port, tls=True, worker_timeout=0))
    res = run_module("celery_redis_info", dict(args, ca_cert=str(ca.cert_file)))
    assert res["reachable"] is True, res
    assert by_check(res)["redis_ping"]["status"] == "ok"
    # Without the CA the certificate is not trusted: unreachable, and the reason says TLS.
    res = run_module("celery_redis_info", args)
    assert res["reachable"] is False
    assert "TLS handshake with Redis at %s:%s failed" % (HOST, tls_port) in res["error"]
    assert PASSWORD not in res.output
