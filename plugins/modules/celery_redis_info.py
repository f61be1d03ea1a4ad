#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: celery_redis_info
short_description: Read the health of a Redis broker and the Celery workers behind it
version_added: 0.1.0
description:
  - Connects to Redis over TCP (optionally TLS) with its password, sends C(PING), and reads memory used
    against C(maxmemory) and the C(maxmemory-policy) (a Celery broker needs C(noeviction), any other
    policy lets Redis delete queued tasks when memory runs out).
  - Counts each queue's depth the way Flower does, the queue's list plus its priority lists
    (C(queue\x06\x163), C(queue\x06\x166), C(queue\x06\x169)), behind the transport's O(key_prefix).
  - Counts the tasks workers hold but have not acknowledged (kombu's C(unacked) hash), that is prefetched,
    ETA/countdown and running tasks.
  - Sends a remote-control C(ping) and C(active_queues) broadcast, exactly what C(celery inspect ping)
    sends, and waits O(worker_timeout) seconds for answers. No answer is a failed check, never zero.
    Queues no answering worker consumes are reported.
  - Every finding is also a check result in RV(checks) for M(upkeep.runbooks.report), judged against the
    thresholds in the options.
  - Read-only towards the application. The broadcast adds one binding to
    C(_kombu.binding.reply.celery.pidbox) and a reply list, both removed before the module returns,
    as C(celery inspect) does.
  - "Dependencies: none beyond the Python standard library. The module speaks the Redis protocol (RESP2)
    itself over a socket. redis-py is in the application's virtualenv but not in the system Python Ansible
    runs modules with, and the handful of commands used here (PING, AUTH, SELECT, INFO, LLEN, HLEN, ZRANGE,
    SCAN, SMEMBERS, SADD, SREM, DEL, PUBLISH, BRPOP) do not justify installing it on every host."
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
attributes:
  check_mode:
    support: full
    description: Runs unchanged in check mode; the only writes are the temporary reply binding described above.
  diff_mode:
    support: none
    description: Reads state only, there is nothing to diff.
options:
  host:
    description: Redis host name or address.
    type: str
    default: 127.0.0.1
  port:
    description: Redis TCP port.
    type: int
    default: 6379
  username:
    description: ACL user name (Redis 6 and later); omit for the C(requirepass) password alone.
    type: str
  password:
    description:
      - Password (C(requirepass) or the ACL user's). Never logged or returned.
      - Falls back to the environment variable C(REDISCLI_AUTH), as C(redis-cli) does.
    type: str
  db:
    description: Database number of the broker URL (C(redis://host:port/<db>)).
    type: int
    default: 0
  tls:
    description: Connect with TLS (C(rediss://)).
    type: bool
    default: false
  ca_cert:
    description: CA bundle to verify the server certificate with when O(tls=true); the system store otherwise.
    type: path
  connect_timeout:
    description: Seconds to wait for the connection and for each reply.
    type: float
    default: 5
  key_prefix:
    description: The transport's C(global_keyprefix) (C(broker_transport_options)); empty for none.
    type: str
    default: ""
  queues:
    description:
      - Queues whose depth is always reported, even when no worker or binding mentions them.
      - Queues declared in Redis (C(_kombu.binding.*)) and queues workers consume are added when
        O(discover_queues=true).
    type: list
    elements: str
    default: [celery]
  discover_queues:
    description: Add the queues found in Redis and those answering workers consume to O(queues).
    type: bool
    default: true
  worker_timeout:
    description:
      - Seconds to wait for workers to answer the broadcast ping. V(0) skips the worker and consumer checks.
    type: float
    default: 2
  min_workers:
    description: Fewer workers answering than this fails RV(checks) C(celery_workers).
    type: int
    default: 1
  memory_warn_percent:
    description: Memory used, percent of C(maxmemory), at or above which C(redis_memory) warns.
    type: float
    default: 80
  memory_fail_percent:
    description: Memory used, percent of C(maxmemory), at or above which C(redis_memory) fails.
    type: float
    default: 90
  queue_depth_warn:
    description: Messages waiting in one queue at or above which C(celery_queue_depth:<queue>) warns.
    type: int
    default: 100
  queue_depth_fail:
    description: Messages waiting in one queue at or above which C(celery_queue_depth:<queue>) fails.
    type: int
    default: 1000
  unacked_warn:
    description: Unacknowledged tasks at or above which C(celery_unacked) warns.
    type: int
    default: 100
  unacked_fail:
    description: Unacknowledged tasks at or above which C(celery_unacked) fails.
    type: int
    default: 1000
  host_label:
    description: Host name put into each check result (normally C(inventory_hostname)).
    type: str
    default: localhost
  fail_on_unreachable:
    description: Fail the task when Redis cannot be reached, instead of returning RV(reachable=false).
    type: bool
    default: false
notes:
  - Works with kombu's default Redis transport options (C(fanout_prefix=true), priority steps 0, 3, 6, 9).
  - A worker started with C(--without-mingle --without-gossip) still answers; one started with remote control
    disabled (C(worker_enable_remote_control=False)) never does and is reported as not answering.
  - Redis Sentinel and Redis Cluster are not followed; point O(host) at the current master.
  - See C(docs/platform-health.md) for each check, its threshold and what to do when it fails.
seealso:
  - name: Celery monitoring guide
    description: C(celery inspect) and how Flower counts Redis queues.
    link: https://docs.celeryq.dev/en/stable/userguide/monitoring.html
  - name: Redis key eviction
    description: maxmemory and maxmemory-policy.
    link: https://redis.io/docs/latest/develop/reference/eviction/
"""

EXAMPLES = r"""
- name: Read Redis and Celery health on the application host
  upkeep.runbooks.celery_redis_info:
    host: 127.0.0.21
    password: "{{ vault_redis_password }}"
    queues: [celery, mail]
    host_label: "{{ inventory_hostname }}"
  register: celery_health

- name: Put the findings into the report
  ansible.builtin.set_fact:
    health_results: "{{ health_results | default([]) + celery_health.checks }}"

- name: A broker behind TLS with a key prefix and a slower worker pool
  upkeep.runbooks.celery_redis_info:
    host: redis.internal
    port: 6380
    tls: true
    ca_cert: /etc/ssl/certs/internal-ca.pem
    key_prefix: "app1:"
    worker_timeout: 5
    queue_depth_warn: 500
"""

RETURN = r"""
reachable:
  description: Whether Redis accepted the connection and the credentials.
  returned: always
  type: bool
  sample: true
error:
  description: Why Redis could not be used, naming host and port; the password never appears.
  returned: when RV(reachable) is false
  type: str
  sample: "cannot connect to Redis at 127.0.0.21:6379: Connection refused"
ping_ms:
  description: Milliseconds from connecting to the C(PONG), authentication included.
  returned: when reachable
  type: float
  sample: 0.8
redis_version:
  description: The server's version (C(INFO)).
  returned: when reachable
  type: str
  sample: 7.0.15
memory:
  description: Memory facts from C(INFO).
  returned: when reachable
  type: dict
  contains:
    used_bytes:
      description: C(used_memory).
      type: int
    peak_bytes:
      description: C(used_memory_peak).
      type: int
    maxmemory_bytes:
      description: C(maxmemory); 0 means no limit.
      type: int
    maxmemory_policy:
      description: C(maxmemory-policy).
      type: str
      sample: noeviction
    percent_of_maxmemory:
      description: C(used_bytes) as a percentage of C(maxmemory_bytes); null without a limit.
      type: float
    evicted_keys:
      description: Keys evicted since the server started.
      type: int
queues:
  description: One entry per queue (O(queues) plus the discovered ones), sorted by name.
  returned: when reachable
  type: list
  elements: dict
  contains:
    name:
      description: Queue name.
      type: str
      sample: celery
    messages:
      description: Messages waiting, all priority lists together (what Flower shows).
      type: int
      sample: 12
    by_priority:
      description: Messages per priority step (C("0"), C("3"), C("6"), C("9")).
      type: dict
      sample: {"0": 12, "3": 0, "6": 0, "9": 0}
    consumers:
      description: Answering workers that consume the queue; empty when nobody does.
      type: list
      elements: str
      sample: ["celery@app1"]
unacked:
  description: Tasks taken by workers but not acknowledged.
  returned: when reachable
  type: dict
  contains:
    count:
      description: Fields of the C(unacked) hash.
      type: int
      sample: 4
    oldest_age_seconds:
      description: Seconds since the oldest of them was taken; null when there is none.
      type: float
      sample: 2.5
workers:
  description: Answers to the broadcast ping.
  returned: when reachable
  type: dict
  contains:
    timeout_seconds:
      description: O(worker_timeout).
      type: float
    answered:
      description: Workers (C(name@host)) that answered C(pong) in time; empty when none did.
      type: list
      elements: str
      sample: ["celery@app1"]
    pidbox_subscribers:
      description: How many remote-control listeners Redis delivered the request to; null when not asked.
      type: int
      sample: 1
checks:
  description: One check result per finding, C({check, host, status, value, threshold, message}).
  returned: always
  type: list
  elements: dict
  sample: [{"check": "celery_workers", "host": "app1", "status": "fail", "value": 0,
            "threshold": {"min": 1, "timeout_seconds": 2.0},
            "message": "no worker answered ping within 2.0 s, 1 needed"}]
"""

from ansible.module_utils.basic import AnsibleModule, env_fallback  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._celery_redis import DEFAULTS, collect, judge  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._redis import (  # noqa: E402
    RedisError,
    redis_common_argument_spec,
)


def main():
    spec = redis_common_argument_spec()
    spec["password"]["fallback"] = (env_fallback, ["REDISCLI_AUTH"])
    spec.update(
        key_prefix=dict(type="str", default="", no_log=False),
        queues=dict(type="list", elements="str", default=["celery"]),
        discover_queues=dict(type="bool", default=True),
        worker_timeout=dict(type="float", default=2.0),
        host_label=dict(type="str", default="localhost"),
        fail_on_unreachable=dict(type="bool", default=False),
    )
    for key, value in DEFAULTS.items():
        spec[key] = dict(type="float" if isinstance(value, float) else "int", default=value)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    params = module.params
    for low, high in (("memory_warn_percent", "memory_fail_percent"), ("queue_depth_warn", "queue_depth_fail"),
                      ("unacked_warn", "unacked_fail")):
        if params[low] < 0 or params[low] > params[high]:
            module.fail_json(msg="Failed to validate %s: it must be 0 or more and not above %s" % (low, high))
    if params["worker_timeout"] < 0 or params["connect_timeout"] <= 0:
        module.fail_json(msg="Failed to validate the timeouts: worker_timeout >= 0 and connect_timeout > 0")

    try:
        facts = collect(params)
    except RedisError as exc:
        module.fail_json(msg="Failed to read Celery health from Redis at %s:%s: %s"
                         % (params["host"], params["port"], exc.message), reachable=True)
    if not facts["reachable"] and params["fail_on_unreachable"]:
        module.fail_json(msg="Failed to connect to Redis: %s" % facts["error"], reachable=False)
    facts["checks"] = judge(facts, params, params["host_label"])
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
