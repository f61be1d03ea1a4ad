# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis and Celery health, read the way kombu's Redis transport stores things.

What kombu (the transport under Celery) keeps in Redis, all behind ``global_keyprefix``:

* a queue ``q`` is a list ``q`` plus one list per priority step: ``q\\x06\\x163``,
  ``q\\x06\\x166``, ``q\\x06\\x169`` (steps 0, 3, 6, 9; the separator is ``\\x06\\x16``).
  Queue depth is the sum of their LLENs, which is what Flower shows.
* messages a worker has taken but not acknowledged (prefetched, ETA/countdown tasks it holds,
  tasks running) are fields of the hash ``unacked``; ``unacked_index`` (a sorted set) holds
  when each was taken.
* ``_kombu.binding.<exchange>`` sets hold ``routing_key\\x06\\x16pattern\\x06\\x16queue``:
  the queues declared on each exchange.
* remote control (``celery inspect ping``) publishes to the channel
  ``<prefix>/<db>.celery.pidbox``; each worker pushes its reply to the list named by the
  ``reply.celery.pidbox`` binding of the request's routing key.

``collect()`` reads those facts; ``judge()`` turns them into check results with thresholds.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import time
import uuid

from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import evaluate, human_bytes, result
from ansible_collections.upkeep.runbooks.plugins.module_utils._redis import (
    RedisClient,
    RedisError,
    RedisReplyError,
    glob_escape,
    parse_info,
)

SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
BINDING_PREFIX = "_kombu.binding."
REPLY_EXCHANGE = "reply.celery.pidbox"
PIDBOX_EXCHANGE = "celery.pidbox"
EVENT_EXCHANGE = "celeryev"

DEFAULTS = {
    "memory_warn_percent": 80.0,
    "memory_fail_percent": 90.0,
    "queue_depth_warn": 100,
    "queue_depth_fail": 1000,
    "unacked_warn": 100,
    "unacked_fail": 1000,
    "min_workers": 1,
}

# Policies under which Redis may delete keys when maxmemory is reached.
SAFE_POLICIES = ("noeviction",)


def priority_keys(queue, prefix=""):
    """The lists that make up one queue, in Flower's order."""
    return [prefix + (queue if not pri else "%s%s%d" % (queue, SEP, pri)) for pri in PRIORITY_STEPS]


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def queue_depths(client, queues, prefix=""):
    commands = []
    for queue in queues:
        commands.extend(("LLEN", key) for key in priority_keys(queue, prefix))
    replies = client.pipeline(commands) if commands else []
    out = {}
    for index, queue in enumerate(queues):
        part = replies[index * len(PRIORITY_STEPS):(index + 1) * len(PRIORITY_STEPS)]
        for reply in part:
            if isinstance(reply, RedisReplyError):
                raise RedisError("Failed to count queue %s: %s" % (queue, reply.message))
        out[queue] = {"messages": sum(part), "by_priority": dict(zip((str(p) for p in PRIORITY_STEPS), part))}
    return out


def declared_queues(client, prefix=""):
    """Queue names bound to any exchange except the remote-control ones (from _kombu.binding.*).

    The event exchange (``celeryev``) is left out too: every worker with gossip (Celery's default) and
    every monitor binds an auto-delete ``celeryev.<uuid>`` queue of its own there, which no worker lists
    among its consumed queues; it is not work waiting for a consumer."""
    pattern = glob_escape(prefix + BINDING_PREFIX) + "*"
    keys = set()
    cursor = b"0"
    while True:
        cursor, batch = client.command("SCAN", cursor, "MATCH", pattern, "COUNT", 500)
        keys.update(_text(k) for k in batch)
        if cursor in (b"0", 0):
            break
    queues = set()
    for key in sorted(keys):
        exchange = key[len(prefix + BINDING_PREFIX):]
        if exchange.endswith("pidbox") or exchange == EVENT_EXCHANGE or client.command("TYPE", key) != b"set":
            continue
        for member in client.command("SMEMBERS", key):
            parts = _text(member).split(SEP)
            if len(parts) == 3 and parts[2]:
                queues.add(parts[2])
    return sorted(queues)


def unacked(client, prefix=""):
    count = client.command("HLEN", prefix + "unacked")
    oldest = client.command("ZRANGE", prefix + "unacked_index", 0, 0, "WITHSCORES")
    age = None
    if oldest and len(oldest) == 2:
        try:
            age = max(round(time.time() - float(oldest[1]), 1), 0.0)
        except ValueError:
            age = None
    return {"count": count, "oldest_age_seconds": age}


def _envelope(method, ticket, reply_key, timeout, arguments=None):
    body = {
        "method": method,
        "arguments": arguments or {},
        "destination": None,
        "pattern": None,
        "matcher": None,
        "ticket": ticket,
        "reply_to": {"exchange": REPLY_EXCHANGE, "routing_key": reply_key},
    }
    return json.dumps({
        "body": base64.b64encode(json.dumps(body).encode("utf-8")).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"clock": 1, "expires": time.time() + timeout},
        "properties": {
            "delivery_mode": 2,
            "delivery_info": {"exchange": PIDBOX_EXCHANGE, "routing_key": ""},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    })


def _decode_reply(raw):
    """A reply message pushed by a worker -> (ticket, {worker: answer}); None when unreadable."""
    try:
        message = json.loads(_text(raw))
        body = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode("utf-8")
        return (message.get("headers") or {}).get("ticket"), json.loads(body)
    except (ValueError, KeyError, TypeError):
        return None


def broadcast(client, methods, timeout, prefix=""):
    """Send remote-control requests to every worker and gather the answers until ``timeout``.

    Returns ``({method: {worker: reply}}, subscribers)``; ``subscribers`` is how many
    pidbox listeners Redis delivered the first request to (PUBLISH's answer).
    """
    reply_key = str(uuid.uuid4())
    reply_queue = "%s.%s" % (reply_key, REPLY_EXCHANGE)
    binding_key = prefix + BINDING_PREFIX + REPLY_EXCHANGE
    member = SEP.join([reply_key, "", reply_queue])
    tickets = dict((str(uuid.uuid4()), method) for method in methods)
    answers = dict((method, {}) for method in methods)
    channel = "%s/%d.%s" % (prefix, client.db, PIDBOX_EXCHANGE)
    reply_keys = priority_keys(reply_queue, prefix)
    subscribers = None
    client.command("SADD", binding_key, member)
    try:
        for ticket, method in tickets.items():
            delivered = client.command("PUBLISH", channel, _envelope(method, ticket, reply_key, timeout))
            if subscribers is None:
                subscribers = delivered
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # BRPOP takes whole or fractional seconds (Redis >= 6); at least 10 ms.
            wait = max(round(left, 2), 0.01)
            reply = client.command("BRPOP", *(reply_keys + [wait]), timeout=wait + client.timeout)
            if reply is None:
                break
            decoded = _decode_reply(reply[1])
            if decoded is None or decoded[0] not in tickets or not isinstance(decoded[1], dict):
                continue
            answers[tickets[decoded[0]]].update(decoded[1])
    finally:
        client.pipeline([("SREM", binding_key, member)] + [("DEL", key) for key in reply_keys])
    return answers, subscribers


def collect(params):
    """Every fact; a Redis that cannot be reached gives ``reachable: False`` and ``error``."""
    prefix = params.get("key_prefix") or ""
    started = time.monotonic()
    try:
        client = RedisClient(
            host=params["host"], port=params["port"], username=params.get("username"),
            password=params.get("password"), db=params.get("db") or 0, tls=params.get("tls", False),
            ca_cert=params.get("ca_cert"), connect_timeout=params.get("connect_timeout") or 5.0,
        )
    except RedisError as exc:
        return {"reachable": False, "error": exc.message, "error_kind": exc.kind}
    with client:
        pong = client.command("PING")
        ping_ms = round((time.monotonic() - started) * 1000.0, 2)
        info = parse_info(client.command("INFO", "all"))
        memory = {
            "used_bytes": info.get("used_memory"),
            "peak_bytes": info.get("used_memory_peak"),
            "maxmemory_bytes": info.get("maxmemory"),
            "maxmemory_policy": info.get("maxmemory_policy"),
            "percent_of_maxmemory": None,
            "evicted_keys": info.get("evicted_keys"),
        }
        if memory["maxmemory_bytes"] and memory["used_bytes"] is not None:
            memory["percent_of_maxmemory"] = round(100.0 * memory["used_bytes"] / memory["maxmemory_bytes"], 2)

        workers = {}
        active_queues = {}
        subscribers = None
        if params.get("worker_timeout", 0) > 0:
            answers, subscribers = broadcast(client, ["ping", "active_queues"], params["worker_timeout"], prefix)
            workers = answers["ping"]
            active_queues = answers["active_queues"]

        consumed = {}
        for worker, queues in active_queues.items():
            for queue in queues if isinstance(queues, list) else []:
                if isinstance(queue, dict) and queue.get("name"):
                    consumed.setdefault(queue["name"], []).append(worker)

        names = list(params.get("queues") or [])
        if params.get("discover_queues", True):
            names.extend(declared_queues(client, prefix))
            names.extend(consumed)
        names = sorted(set(names))
        depths = queue_depths(client, names, prefix)
        queues = []
        for name in names:
            queues.append({
                "name": name,
                "messages": depths[name]["messages"],
                "by_priority": depths[name]["by_priority"],
                "consumers": sorted(consumed.get(name, [])),
            })
        return {
            "reachable": True,
            "ping": _text(pong),
            "ping_ms": ping_ms,
            "redis_version": info.get("redis_version"),
            "memory": memory,
            "queues": queues,
            "unacked": unacked(client, prefix),
            "workers": {
                "timeout_seconds": params.get("worker_timeout"),
                "answered": sorted(w for w, r in workers.items() if isinstance(r, dict) and r.get("ok") == "pong"),
                "pidbox_subscribers": subscribers,
            },
        }


def _plural(count, word):
    return "%d %s%s" % (count, word, "" if count == 1 else "s")


def judge(facts, params, host):
    """Check results for the facts of collect()."""
    checks = []
    where = "Redis at %s:%s" % (params["host"], params["port"])
    if not facts.get("reachable"):
        checks.append(result("redis_ping", host, "fail", None, None,
                             "%s does not answer PING: %s" % (where, facts.get("error"))))
        return checks
    checks.append(result("redis_ping", host, "ok", facts["ping_ms"], None,
                         "%s answers PING in %s ms" % (where, facts["ping_ms"])))

    memory = facts["memory"]
    if memory["percent_of_maxmemory"] is None:
        checks.append(result("redis_memory", host, "ok", memory["used_bytes"], None,
                             "Redis uses %s; no maxmemory limit is set, so memory is bounded only by the host"
                             % human_bytes(memory["used_bytes"] or 0)))
    else:
        item = evaluate("redis_memory", host, memory["percent_of_maxmemory"], params["memory_warn_percent"],
                        params["memory_fail_percent"], unit="%", what="Redis memory used of maxmemory")
        item["threshold"]["unit"] = "%"
        item["message"] += " (%s of %s)" % (human_bytes(memory["used_bytes"]), human_bytes(memory["maxmemory_bytes"]))
        checks.append(item)
    policy = memory["maxmemory_policy"]
    if policy in SAFE_POLICIES or not memory["maxmemory_bytes"]:
        status, text = "ok", "maxmemory-policy is %s" % policy
        if policy not in SAFE_POLICIES:
            text += " (no maxmemory set, so nothing is evicted)"
    elif str(policy).startswith("volatile-"):
        status = "warn"
        text = ("maxmemory-policy is %s: keys with a TTL (results, expiring queues) are evicted at maxmemory; "
                "set it to noeviction for a Celery broker" % policy)
    else:
        status = "fail"
        text = ("maxmemory-policy is %s: Redis deletes queued Celery tasks when maxmemory is reached; "
                "set it to noeviction" % policy)
    checks.append(result("redis_maxmemory_policy", host, status, policy, {"allowed": list(SAFE_POLICIES)}, text))

    for queue in facts["queues"]:
        checks.append(evaluate("celery_queue_depth:%s" % queue["name"], host, queue["messages"],
                               params["queue_depth_warn"], params["queue_depth_fail"],
                               what="Celery queue %s depth" % queue["name"]))
    un = facts["unacked"]
    out = evaluate("celery_unacked", host, un["count"], params["unacked_warn"], params["unacked_fail"],
                   what="tasks held by workers but not acknowledged (reserved, scheduled or running)")
    if un["oldest_age_seconds"] is not None:
        out["message"] += " (oldest taken %s s ago)" % un["oldest_age_seconds"]
    checks.append(out)

    workers = facts["workers"]
    if workers["timeout_seconds"]:
        answered = workers["answered"]
        need = params["min_workers"]
        threshold = {"min": need, "timeout_seconds": workers["timeout_seconds"]}
        if len(answered) >= need:
            checks.append(result("celery_workers", host, "ok", len(answered), threshold,
                                 "%s answered ping within %s s: %s" % (
                                     _plural(len(answered), "worker"), workers["timeout_seconds"],
                                     ", ".join(answered))))
        else:
            text = "%s answered ping within %s s, %d needed" % (
                "no worker" if not answered else _plural(len(answered), "worker"), workers["timeout_seconds"], need)
            checks.append(result("celery_workers", host, "fail", len(answered), threshold, text))

        idle = [q for q in facts["queues"] if not q["consumers"]]
        if not idle:
            checks.append(result("celery_unconsumed_queues", host, "ok", [], None,
                                 "every known queue has a consumer"))
        else:
            status = "fail" if any(q["messages"] for q in idle) else "warn"
            text = "no worker consumes %s" % ", ".join(
                "%s (%s)" % (q["name"], _plural(q["messages"], "message")) for q in idle)
            checks.append(result("celery_unconsumed_queues", host, status, [q["name"] for q in idle], None, text))
    return checks
