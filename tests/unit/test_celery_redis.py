"""module_utils/_celery_redis.judge and the RESP codec of module_utils/_redis (over a socketpair)."""

import socket
import threading

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils._celery_redis import DEFAULTS, judge, priority_keys
from ansible_collections.upkeep.runbooks.plugins.module_utils._redis import (
    RedisClient,
    RedisReplyError,
    pack_command,
    parse_info,
)

PARAMS = dict(DEFAULTS, host="127.0.0.1", port=6379)


def facts(**over):
    base = {
        "reachable": True, "ping_ms": 0.5,
        "memory": {"used_bytes": 900, "maxmemory_bytes": 1000, "maxmemory_policy": "noeviction",
                   "percent_of_maxmemory": 90.0},
        "queues": [{"name": "celery", "messages": 0, "consumers": ["w@h"]},
                   {"name": "old", "messages": 0, "consumers": []}],
        "unacked": {"count": 0, "oldest_age_seconds": None},
        "workers": {"timeout_seconds": 2.0, "answered": ["w@h"]},
    }
    base.update(over)
    return base


def statuses(checks):
    return {c["check"]: c["status"] for c in checks}


def test_judge_limits_and_policies():
    got = statuses(judge(facts(), PARAMS, "app1"))
    assert got == {"redis_ping": "ok", "redis_memory": "fail", "redis_maxmemory_policy": "ok",
                   "celery_queue_depth:celery": "ok", "celery_queue_depth:old": "ok", "celery_unacked": "ok",
                   "celery_workers": "ok", "celery_unconsumed_queues": "warn"}
    for policy, status in (("allkeys-lru", "fail"), ("volatile-ttl", "warn"), ("noeviction", "ok")):
        mem = dict(facts()["memory"], maxmemory_policy=policy)
        assert statuses(judge(facts(memory=mem), PARAMS, "h"))["redis_maxmemory_policy"] == status
    unlimited = dict(facts()["memory"], maxmemory_bytes=0, percent_of_maxmemory=None, maxmemory_policy="allkeys-lru")
    assert statuses(judge(facts(memory=unlimited), PARAMS, "h"))["redis_maxmemory_policy"] == "ok"


def test_judge_workers_and_unreachable():
    checks = judge(facts(workers={"timeout_seconds": 2.0, "answered": ["a@h"]}), dict(PARAMS, min_workers=2), "h")
    workers = next(c for c in checks if c["check"] == "celery_workers")
    assert workers["status"] == "fail" and workers["message"] == "1 worker answered ping within 2.0 s, 2 needed"
    skipped = judge(facts(workers={"timeout_seconds": 0, "answered": []}), PARAMS, "h")
    assert "celery_workers" not in statuses(skipped)
    down = judge({"reachable": False, "error": "cannot connect"}, PARAMS, "h")
    assert [(c["check"], c["status"]) for c in down] == [("redis_ping", "fail")]


def test_priority_keys_as_flower_counts_them():
    assert priority_keys("celery", "p:") == ["p:celery", "p:celery\x06\x163", "p:celery\x06\x166", "p:celery\x06\x169"]


def test_resp_codec_over_a_socket():
    ours, theirs = socket.socketpair()
    received = []

    def server():
        received.append(theirs.recv(4096))
        # a bulk string split across writes, an integer, an error, a nil, a nested array
        theirs.sendall(b"$5\r\nhel")
        theirs.sendall(b"lo\r\n:42\r\n-ERR nope\r\n$-1\r\n*2\r\n*1\r\n+OK\r\n:7\r\n")

    thread = threading.Thread(target=server)
    thread.start()
    client = RedisClient.__new__(RedisClient)
    client.sock, client._buf, client.where, client.timeout = ours, b"", "test", 5
    replies = client.pipeline([("GET", "k"), ("INCR", "n"), ("X",), ("GET", "none"), ("Y",)])
    thread.join()
    assert received[0].startswith(pack_command("GET", "k"))
    assert replies[0] == b"hello" and replies[1] == 42 and replies[3] is None and replies[4] == [[b"OK"], 7]
    assert isinstance(replies[2], RedisReplyError) and replies[2].message == "ERR nope"
    ours.close()
    theirs.close()


def test_parse_info():
    assert parse_info(b"# Memory\r\nused_memory:100\r\nmaxmemory_policy:noeviction\r\nratio:1.5\r\n") == {
        "used_memory": 100, "maxmemory_policy": "noeviction", "ratio": 1.5}


@pytest.mark.parametrize(("args", "wire"), [(("PING",), b"*1\r\n$4\r\nPING\r\n"),
                                            (("AUTH", "pä ss"), b"*2\r\n$4\r\nAUTH\r\n$6\r\np\xc3\xa4 ss\r\n")])
def test_pack_command(args, wire):
    assert pack_command(*args) == wire
