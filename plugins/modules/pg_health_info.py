#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_health_info
short_description: Read the daily health facts of one PostgreSQL server
version_added: 0.1.0
description:
  - Connects to one PostgreSQL server and reads the facts the daily health checks judge,
    namely reachability, version, role (primary or standby), streaming replication and its lag,
    replication slots and the WAL they hold back, connection usage, database sizes,
    transaction ID wraparound and the oldest open transaction.
  - Read-only. It runs only C(SELECT) statements and never changes the server.
  - By default an unreachable server is a result (RV(reachable=false) with RV(error)), not a
    failure, so the daily report can list it next to the healthy ones. Set
    O(fail_on_unreachable=true) to fail the task instead.
  - The filter P(upkeep.runbooks.pg_health_checks#filter) turns the result into check results
    with thresholds.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - upkeep.runbooks.postgres
attributes:
  check_mode:
    support: full
    description: Read-only; runs unchanged in check mode and returns the same facts.
  diff_mode:
    support: none
    description: Reads state only, there is nothing to diff.
options:
  databases:
    description:
      - Databases whose size and freeze ages are reported in RV(databases).
      - When omitted or empty, every database that accepts connections and is not a template.
      - Naming a database that does not exist fails the task.
      - RV(wraparound) always considers every database, templates included.
    type: list
    elements: str
  fail_on_unreachable:
    description:
      - Fail the task when the server cannot be reached, instead of returning RV(reachable=false).
      - Errors after a successful connection (an unusable O(session_role), missing privileges, an
        unsupported server version) always fail the task.
    type: bool
    default: false
notes:
  - The login role needs the privileges of C(pg_monitor) (C(GRANT pg_monitor TO monitoring_role))
    to see other sessions, replication details, slot positions and the sizes of databases it may
    not connect to. Without them some values are null or the task fails with C(permission denied).
  - Supports PostgreSQL 12 and later; older servers are rejected with a clear message.
  - Standby lag in seconds is the age of the last replayed transaction while WAL is still waiting to be
    replayed, and 0 when everything received has been replayed. On a primary without writes a standby
    therefore reads 0, not the time since the last commit.
seealso:
  - name: pg_monitor and the other predefined roles
    description: What the monitoring role grants.
    link: https://www.postgresql.org/docs/current/predefined-roles.html
  - name: Monitoring replication
    description: pg_stat_replication, pg_stat_wal_receiver and replication slots.
    link: https://www.postgresql.org/docs/current/monitoring-stats.html
"""

EXAMPLES = r"""
- name: Read the health facts of the database server (peer auth over the local socket)
  upkeep.runbooks.pg_health_info:
    login_unix_socket: /var/run/postgresql
  become: true
  become_user: postgres
  register: pg_health

- name: Read health facts over TCP with a monitoring role, only for the application database
  upkeep.runbooks.pg_health_info:
    login_host: 127.0.0.11
    login_user: monitoring
    login_password: "{{ vault_monitoring_password }}"
    ssl_mode: verify-full
    ca_cert: /etc/ssl/certs/internal-ca.pem
    databases:
      - app
  register: pg_health

- name: Turn the facts into check results for the report
  ansible.builtin.set_fact:
    health_results: >-
      {{ health_results | default([]) + (pg_health | upkeep.runbooks.pg_health_checks(
         inventory_hostname, health_pg_thresholds, expected_role='primary')) }}

- name: Stop the play for a server that is down
  upkeep.runbooks.pg_health_info:
    login_host: db1.internal
    fail_on_unreachable: true
"""

RETURN = r"""
reachable:
  description: Whether a connection to the server could be made.
  returned: always
  type: bool
  sample: true
error:
  description:
    - Why the server could not be reached, naming host and port; the password never appears.
  returned: when RV(reachable) is false
  type: str
  sample: >-
    Failed to connect to PostgreSQL at 127.0.0.11:5432: connection refused
    (is PostgreSQL running and listening on that address and port?)
server_version:
  description: Server version without the distribution suffix.
  returned: when reachable
  type: str
  sample: "15.8"
server_version_num:
  description: Server version as a number (C(server_version_num) setting).
  returned: when reachable
  type: int
  sample: 150008
in_recovery:
  description: True on a standby (C(pg_is_in_recovery)), false on a primary.
  returned: when reachable
  type: bool
  sample: false
wal_replay_paused:
  description: Whether WAL replay is paused on this standby; null on a primary.
  returned: when reachable
  type: bool
  sample: null
replication:
  description: Streaming replication as seen from this server.
  returned: when reachable
  type: dict
  contains:
    role:
      description: C(primary) or C(standby).
      type: str
      sample: primary
    replicas:
      description:
        - One entry per WAL sender, i.e. per replica streaming from this server (on a standby these are
          cascaded replicas). Empty when none is connected.
        - Lag in bytes is measured from this server's current WAL position (on a standby, from the
          last received or replayed position).
      type: list
      elements: dict
      contains:
        application_name:
          description: The replica's C(application_name) from its C(primary_conninfo).
          type: str
          sample: db2
        client_addr:
          description: The replica's IP address; null for a unix socket connection.
          type: str
          sample: 127.0.0.12
        state:
          description: WAL sender state (C(startup), C(catchup), C(streaming), C(backup), C(stopping)).
          type: str
          sample: streaming
        sync_state:
          description: C(async), C(potential), C(sync) or C(quorum).
          type: str
          sample: async
        sent_lsn:
          description: Last WAL position sent.
          type: str
          sample: 0/3000148
        write_lsn:
          description: Last WAL position the replica wrote.
          type: str
          sample: 0/3000148
        flush_lsn:
          description: Last WAL position the replica flushed.
          type: str
          sample: 0/3000148
        replay_lsn:
          description: Last WAL position the replica replayed.
          type: str
          sample: 0/3000148
        lag_bytes:
          description: Bytes of WAL not yet replayed on the replica; null when the position is unknown.
          type: int
          sample: 0
        write_lag_seconds:
          description: C(write_lag) in seconds; null when the replica is idle and caught up.
          type: float
          sample: 0.0012
        flush_lag_seconds:
          description: C(flush_lag) in seconds; null when the replica is idle and caught up.
          type: float
          sample: 0.0025
        replay_lag_seconds:
          description: C(replay_lag) in seconds; null when the replica is idle and caught up.
          type: float
          sample: 0.0031
    standby:
      description: This server's own replay state; null on a primary.
      type: dict
      contains:
        receive_lsn:
          description: Last WAL position received from upstream (C(pg_last_wal_receive_lsn)); null when
            WAL comes from an archive only.
          type: str
          sample: 0/5000060
        replay_lsn:
          description: Last WAL position replayed (C(pg_last_wal_replay_lsn)).
          type: str
          sample: 0/5000060
        receive_replay_lag_bytes:
          description: Bytes received but not yet replayed (never negative); null without a receive position.
          type: int
          sample: 0
        replay_lag_seconds:
          description:
            - 0 when everything received has been replayed, or when replay reaches what had been received
              within two seconds (WAL in flight, not a lag); otherwise seconds since the commit time of the
              last replayed transaction. Null when no transaction has been replayed yet.
          type: float
          sample: 0.0
        last_replay_timestamp:
          description: Commit time of the last replayed transaction (ISO 8601); null when none yet.
          type: str
          sample: "2024-05-01T03:12:45.123456+00:00"
        upstream_connected:
          description: Whether the WAL receiver is streaming from its upstream (C(pg_stat_wal_receiver)).
          type: bool
          sample: true
        replay_paused:
          description: Whether WAL replay is paused (C(pg_wal_replay_pause)).
          type: bool
          sample: false
replication_slots:
  description: Replication slots on this server.
  returned: when reachable
  type: list
  elements: dict
  contains:
    slot_name:
      description: Slot name.
      type: str
      sample: db2
    slot_type:
      description: C(physical) or C(logical).
      type: str
      sample: physical
    active:
      description: Whether a consumer is connected to the slot.
      type: bool
      sample: true
    wal_status:
      description: C(reserved), C(extended), C(unreserved) or C(lost); null before PostgreSQL 13.
      type: str
      sample: reserved
    restart_lsn:
      description: Oldest WAL position the slot still needs; null for a slot that never reserved WAL.
      type: str
      sample: 0/3000000
    retained_wal_bytes:
      description:
        - WAL the slot holds back, from its C(restart_lsn) to the current WAL position (on a standby, the last
          received or replayed position). Null when the slot reserves no WAL.
      type: int
      sample: 16777216
    database:
      description: Database of a logical slot; null for a physical slot.
      type: str
      sample: null
connections:
  description: Client connection usage.
  returned: when reachable
  type: dict
  contains:
    current:
      description: Client backends connected now (this session included; WAL senders and background workers excluded).
      type: int
      sample: 12
    max_connections:
      description: The C(max_connections) setting.
      type: int
      sample: 100
    superuser_reserved:
      description: The C(superuser_reserved_connections) setting.
      type: int
      sample: 3
    reserved:
      description: The C(reserved_connections) setting (PostgreSQL 16 and later; 0 before).
      type: int
      sample: 0
    available:
      description: Slots ordinary roles can use, C(max_connections - superuser_reserved - reserved).
      type: int
      sample: 97
    percent_used:
      description: C(current) as a percentage of C(available), rounded to 0.01.
      type: float
      sample: 12.37
    by_state:
      description: Client backends per C(pg_stat_activity.state) (C(active), C(idle), C(idle in transaction) ...).
      type: dict
      sample: {"active": 1, "idle": 11}
databases:
  description: Size and freeze ages of the selected databases (see O(databases)), by name.
  returned: when reachable
  type: list
  elements: dict
  contains:
    name:
      description: Database name.
      type: str
      sample: app
    size_bytes:
      description: Size on disk in bytes (C(pg_database_size)).
      type: int
      sample: 7918095
    datfrozenxid_age:
      description: C(age) of C(datfrozenxid), transactions since the database was last completely frozen.
      type: int
      sample: 1214
    datminmxid_age:
      description: C(mxid_age) of C(datminmxid), the same for multixact IDs.
      type: int
      sample: 1
wraparound:
  description: Transaction ID wraparound risk over all databases (templates included).
  returned: when reachable
  type: dict
  contains:
    oldest_xid_age:
      description: The largest C(age) of C(datfrozenxid) of any database.
      type: int
      sample: 201042
    database:
      description: The database with that age.
      type: str
      sample: app
    oldest_mxid_age:
      description: The largest C(mxid_age) of C(datminmxid) of any database.
      type: int
      sample: 3
    autovacuum_freeze_max_age:
      description: The C(autovacuum_freeze_max_age) setting; above it autovacuum forces freezing.
      type: int
      sample: 200000000
    percent_towards_wraparound:
      description:
        - RV(wraparound.oldest_xid_age) as a percentage of 2^31-1 (2147483647), the age at which
          transaction IDs would wrap around. PostgreSQL stops assigning new IDs a few million before that.
      type: float
      sample: 0.01
    percent_towards_freeze_max_age:
      description: RV(wraparound.oldest_xid_age) as a percentage of C(autovacuum_freeze_max_age).
      type: float
      sample: 0.1
oldest_transaction:
  description:
    - The oldest open transaction of a client backend other than this session; null when there is none.
  returned: when reachable
  type: dict
  contains:
    age_seconds:
      description: Seconds since the transaction started.
      type: float
      sample: 4.2
    pid:
      description: Backend process ID.
      type: int
      sample: 4711
    state:
      description: Backend state (C(active), C(idle in transaction) ...).
      type: str
      sample: idle in transaction
    datname:
      description: Database of the session.
      type: str
      sample: app
    usename:
      description: Role of the session.
      type: str
      sample: app
    application_name:
      description: C(application_name) of the session.
      type: str
      sample: gunicorn
oldest_idle_in_transaction_seconds:
  description: Longest time any other session has sat idle inside a transaction; null when none does.
  returned: when reachable
  type: float
  sample: null
"""

import datetime  # noqa: E402 - Ansible modules import after their documentation
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._postgres import (  # noqa: E402
    PostgresConnectError,
    PostgresError,
    close_quietly,
    ensure_psycopg,
    open_connection,
    postgres_common_argument_spec,
    query_all,
    query_one,
    target,
)

MIN_SERVER_VERSION_NUM = 120000
XID_WRAP_LIMIT = 2 ** 31 - 1

# Reference WAL position lag is measured from: the current insert position on a primary,
# the furthest received or replayed position on a standby (pg_current_wal_lsn() fails there).
_REF_PRIMARY = "pg_current_wal_lsn()"
_REF_STANDBY = "greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())"

SQL_BASICS = """
SELECT current_setting('server_version') AS server_version,
       current_setting('server_version_num')::int AS server_version_num,
       pg_is_in_recovery() AS in_recovery
"""

SQL_STANDBY = """
SELECT r.receive_lsn::text AS receive_lsn,
       r.replay_lsn::text AS replay_lsn,
       CASE WHEN r.receive_lsn IS NULL OR r.replay_lsn IS NULL THEN NULL
            ELSE greatest(pg_wal_lsn_diff(r.receive_lsn, r.replay_lsn), 0)::bigint
       END AS receive_replay_lag_bytes,
       CASE WHEN r.receive_lsn IS NOT NULL AND r.receive_lsn <= r.replay_lsn THEN 0::float8
            ELSE greatest(extract(epoch FROM clock_timestamp() - r.last_replay_timestamp), 0)::float8
       END AS replay_lag_seconds,
       r.last_replay_timestamp,
       EXISTS (SELECT 1 FROM pg_stat_wal_receiver w WHERE w.status = 'streaming') AS upstream_connected,
       pg_is_wal_replay_paused() AS replay_paused
FROM (SELECT pg_last_wal_receive_lsn() AS receive_lsn,
             pg_last_wal_replay_lsn() AS replay_lsn,
             pg_last_xact_replay_timestamp() AS last_replay_timestamp) AS r
"""

_SQL_REPLICAS = """
SELECT application_name,
       host(client_addr) AS client_addr,
       state,
       sync_state,
       sent_lsn::text AS sent_lsn,
       write_lsn::text AS write_lsn,
       flush_lsn::text AS flush_lsn,
       replay_lsn::text AS replay_lsn,
       pg_wal_lsn_diff({ref}, replay_lsn)::bigint AS lag_bytes,
       extract(epoch FROM write_lag)::float8 AS write_lag_seconds,
       extract(epoch FROM flush_lag)::float8 AS flush_lag_seconds,
       extract(epoch FROM replay_lag)::float8 AS replay_lag_seconds
FROM pg_stat_replication
ORDER BY application_name, pid
"""
SQL_REPLICAS_PRIMARY = _SQL_REPLICAS.format(ref=_REF_PRIMARY)
SQL_REPLICAS_STANDBY = _SQL_REPLICAS.format(ref=_REF_STANDBY)

# wal_status arrived in PostgreSQL 13; reading it through to_jsonb() yields null before that
# instead of an error, so one statement serves every supported version.
_SQL_SLOTS = """
SELECT s.slot_name::text AS slot_name,
       s.slot_type,
       s.active,
       to_jsonb(s) ->> 'wal_status' AS wal_status,
       s.restart_lsn::text AS restart_lsn,
       pg_wal_lsn_diff({ref}, s.restart_lsn)::bigint AS retained_wal_bytes,
       s.database::text AS database
FROM pg_replication_slots AS s
ORDER BY s.slot_name
"""
SQL_SLOTS_PRIMARY = _SQL_SLOTS.format(ref=_REF_PRIMARY)
SQL_SLOTS_STANDBY = _SQL_SLOTS.format(ref=_REF_STANDBY)

SQL_CONNECTION_SETTINGS = """
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS superuser_reserved,
       coalesce(current_setting('reserved_connections', true), '0')::int AS reserved
"""

SQL_CONNECTIONS_BY_STATE = """
SELECT coalesce(state, 'unknown') AS state, count(*)::int AS count
FROM pg_stat_activity
WHERE backend_type = 'client backend'
GROUP BY 1
ORDER BY 1
"""

SQL_DATABASES = """
SELECT datname::text AS name,
       pg_database_size(oid)::bigint AS size_bytes,
       age(datfrozenxid)::bigint AS datfrozenxid_age,
       mxid_age(datminmxid)::bigint AS datminmxid_age
FROM pg_database
WHERE CASE WHEN %(names)s::text[] IS NULL THEN datallowconn AND NOT datistemplate
           ELSE datname = ANY(%(names)s::text[]) END
ORDER BY datname
"""

SQL_WRAPAROUND = """
SELECT d.datname::text AS database,
       age(d.datfrozenxid)::bigint AS oldest_xid_age,
       (SELECT max(mxid_age(datminmxid)) FROM pg_database)::bigint AS oldest_mxid_age,
       current_setting('autovacuum_freeze_max_age')::bigint AS autovacuum_freeze_max_age
FROM pg_database AS d
ORDER BY age(d.datfrozenxid) DESC, d.datname
LIMIT 1
"""

SQL_OLDEST_TRANSACTION = """
SELECT greatest(extract(epoch FROM clock_timestamp() - xact_start), 0)::float8 AS age_seconds,
       pid, state, datname::text AS datname, usename::text AS usename, application_name
FROM pg_stat_activity
WHERE xact_start IS NOT NULL
  AND pid <> pg_backend_pid()
  AND backend_type = 'client backend'
ORDER BY xact_start
LIMIT 1
"""

SQL_OLDEST_IDLE_IN_TRANSACTION = """
SELECT max(greatest(extract(epoch FROM clock_timestamp() - state_change), 0))::float8 AS seconds
FROM pg_stat_activity
WHERE state IN ('idle in transaction', 'idle in transaction (aborted)')
  AND pid <> pg_backend_pid()
"""


def _iso(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return value


def _percent(part, whole):
    if part is None or not whole:
        return None
    return round(100.0 * part / whole, 2)


def _version_text(full):
    """'15.8 (Debian 15.8-1.pgdg120+1)' -> '15.8'."""
    return (full or "").split(" ")[0]


# How long a standby that is behind what it received gets to replay it before the lag counts.
SETTLE_SECONDS = 2.0

SQL_REPLAYED_UP_TO = "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn AS replayed"


def settle_standby(conn, standby, sleep=time.sleep, clock=time.monotonic):
    """Tell WAL still in flight from a real replay lag.

    pg_last_xact_replay_timestamp() moves only on commit records, so right after a burst of
    non-commit WAL (a checkpoint, a backup's activity) a standby that is a few records behind
    looks as far behind as the last commit is old. When replay is running and reaches the
    position received at the first reading within SETTLE_SECONDS, the standby was catching
    up: it is reported with the state of the second reading and no time lag.
    """
    received = standby.get("receive_lsn")
    if not standby.get("receive_replay_lag_bytes") or standby.get("replay_paused") or not received:
        return standby
    deadline = clock() + SETTLE_SECONDS
    while clock() < deadline:
        sleep(0.25)
        if query_one(conn, SQL_REPLAYED_UP_TO, (received,))["replayed"]:
            settled = dict(query_one(conn, SQL_STANDBY) or {})
            settled["replay_lag_seconds"] = 0.0
            return settled
    return standby


def collect_replication(conn, in_recovery):
    if in_recovery:
        standby = settle_standby(conn, dict(query_one(conn, SQL_STANDBY) or {}))
        standby["last_replay_timestamp"] = _iso(standby.get("last_replay_timestamp"))
        replicas = query_all(conn, SQL_REPLICAS_STANDBY)
    else:
        standby = None
        replicas = query_all(conn, SQL_REPLICAS_PRIMARY)
    return {
        "role": "standby" if in_recovery else "primary",
        "replicas": [dict(row) for row in replicas],
        "standby": standby,
    }


def collect_connections(conn):
    settings = query_one(conn, SQL_CONNECTION_SETTINGS)
    by_state = dict((row["state"], row["count"]) for row in query_all(conn, SQL_CONNECTIONS_BY_STATE))
    current = sum(by_state.values())
    max_connections = settings["max_connections"]
    available = max_connections - settings["superuser_reserved"] - settings["reserved"]
    if available <= 0:
        available = max_connections
    return {
        "current": current,
        "max_connections": max_connections,
        "superuser_reserved": settings["superuser_reserved"],
        "reserved": settings["reserved"],
        "available": available,
        "percent_used": _percent(current, available),
        "by_state": by_state,
    }


def collect_databases(conn, names):
    rows = [dict(row) for row in query_all(conn, SQL_DATABASES, {"names": names or None})]
    if names:
        missing = sorted(set(names) - set(row["name"] for row in rows))
        if missing:
            quoted = ", ".join("'%s'" % name for name in missing)
            if len(missing) == 1:
                raise PostgresError("database %s does not exist" % quoted)
            raise PostgresError("databases %s do not exist" % quoted)
    return rows


def collect_wraparound(conn):
    row = dict(query_one(conn, SQL_WRAPAROUND) or {})
    age = row.get("oldest_xid_age")
    row["percent_towards_wraparound"] = _percent(age, XID_WRAP_LIMIT)
    row["percent_towards_freeze_max_age"] = _percent(age, row.get("autovacuum_freeze_max_age"))
    return row


def collect(conn, databases=None):
    """Every health fact of the server behind ``conn`` (raises PostgresError)."""
    basics = query_one(conn, SQL_BASICS)
    version_num = int(basics["server_version_num"])
    version = _version_text(basics["server_version"])
    if version_num < MIN_SERVER_VERSION_NUM:
        raise PostgresError("the server runs PostgreSQL %s; pg_health_info supports PostgreSQL 12 and later" % version)
    in_recovery = bool(basics["in_recovery"])
    replication = collect_replication(conn, in_recovery)
    slots_sql = SQL_SLOTS_STANDBY if in_recovery else SQL_SLOTS_PRIMARY
    oldest = query_one(conn, SQL_OLDEST_TRANSACTION)
    idle = query_one(conn, SQL_OLDEST_IDLE_IN_TRANSACTION)
    return {
        "reachable": True,
        "server_version": version,
        "server_version_num": version_num,
        "in_recovery": in_recovery,
        "wal_replay_paused": replication["standby"]["replay_paused"] if in_recovery else None,
        "replication": replication,
        "replication_slots": [dict(row) for row in query_all(conn, slots_sql)],
        "connections": collect_connections(conn),
        "databases": collect_databases(conn, databases),
        "wraparound": collect_wraparound(conn),
        "oldest_transaction": dict(oldest) if oldest else None,
        "oldest_idle_in_transaction_seconds": idle["seconds"] if idle else None,
    }


def main():
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(
        databases=dict(type="list", elements="str"),
        fail_on_unreachable=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    ensure_psycopg(module)

    try:
        conn = open_connection(module.params)
    except PostgresConnectError as exc:
        if module.params["fail_on_unreachable"]:
            module.fail_json(msg=exc.message, reachable=False)
        module.exit_json(changed=False, reachable=False, error=exc.message)
    except PostgresError as exc:  # connected, but session_role could not be taken
        module.fail_json(msg=exc.message, reachable=True)

    try:
        facts = collect(conn, module.params["databases"])
    except PostgresError as exc:
        module.fail_json(
            msg="Failed to read health facts from PostgreSQL at %s: %s" % (target(module.params), exc.message),
            reachable=True,
        )
    finally:
        close_quietly(conn)
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
