# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pg_health_checks filter: upkeep.runbooks.pg_health_info's result -> check results.

Its documentation lives next to this file in pg_health_checks.yml. Result shape, status
logic and messages for single values come from module_utils/_checks.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import (
    classify,
    evaluate,
    human_bytes,
    result,
    worst,
)

FILTER = "pg_health_checks"

MIB = 1024 * 1024
GIB = 1024 * MIB

# The health role's defaults are these values; keep both in step.
DEFAULT_THRESHOLDS = {
    "replication_lag_bytes_warn": 16 * MIB,
    "replication_lag_bytes_fail": 256 * MIB,
    "replication_lag_seconds_warn": 60,
    "replication_lag_seconds_fail": 300,
    "connections_percent_warn": 80,
    "connections_percent_fail": 95,
    "slot_retained_wal_bytes_warn": 1 * GIB,
    "slot_retained_wal_bytes_fail": 10 * GIB,
    "oldest_transaction_seconds_warn": 3600,
    "oldest_transaction_seconds_fail": 21600,
    "wraparound_age_warn": 1000000000,
    "wraparound_age_fail": 1500000000,
}

ROLES = {"primary": "primary", "replica": "replica", "standby": "replica"}


def _error(text):
    return AnsibleFilterError("%s: %s" % (FILTER, text))


def _number(value, what):
    """int/float, or numeric text as templating may yield; booleans and other text are refused."""
    if isinstance(value, bool) or value is None:
        raise _error("%s must be a number, got %r" % (what, value))
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value.strip())
            except ValueError:
                continue
    raise _error("%s must be a number, got %r" % (what, value))


def _thresholds(thresholds):
    if thresholds is None:
        return dict(DEFAULT_THRESHOLDS)
    if not isinstance(thresholds, Mapping):
        raise _error("thresholds must be a dict, got %s" % type(thresholds).__name__)
    unknown = sorted(str(key) for key in thresholds if key not in DEFAULT_THRESHOLDS)
    if unknown:
        raise _error(
            "unknown threshold%s %s (known: %s)"
            % ("s" if len(unknown) > 1 else "", ", ".join(unknown), ", ".join(sorted(DEFAULT_THRESHOLDS)))
        )
    merged = dict(DEFAULT_THRESHOLDS)
    for key, value in thresholds.items():
        number = _number(value, "threshold %s" % key)
        if number < 0:
            raise _error("threshold %s must not be negative, got %s" % (key, number))
        merged[key] = number
    for key in DEFAULT_THRESHOLDS:
        if key.endswith("_warn") and merged[key] > merged[key[: -len("_warn")] + "_fail"]:
            raise _error(
                "threshold %s (%s) is above %s (%s): the warning must come first"
                % (key, merged[key], key[: -len("_warn")] + "_fail", merged[key[: -len("_warn")] + "_fail"])
            )
    return merged


def _limits(limits, prefix):
    return limits[prefix + "_warn"], limits[prefix + "_fail"]


def _section(info, key, kind):
    value = info.get(key)
    if value is None:
        return None
    if not isinstance(value, kind):
        raise _error("info.%s has an unexpected type %s; pass the registered pg_health_info result"
                     % (key, type(value).__name__))
    return value


def _list(info, key):
    value = info.get(key)
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise _error("info.%s must be a list, got %s" % (key, type(value).__name__))
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise _error("info.%s[%d] must be a dict, got %s" % (key, index, type(item).__name__))
    return value


def _seconds(value):
    if value is None:
        return "unknown"
    return "%s s" % round(value, 1)


def _lag_status(lag_bytes, lag_seconds, limits):
    """Worst of the byte and the second classification; a missing value is not judged."""
    statuses = []
    if lag_bytes is not None:
        statuses.append(classify(lag_bytes, *_limits(limits, "replication_lag_bytes")))
    if lag_seconds is not None:
        statuses.append(classify(lag_seconds, *_limits(limits, "replication_lag_seconds")))
    return worst(statuses)


def _lag_threshold(limits):
    bytes_warn, bytes_fail = _limits(limits, "replication_lag_bytes")
    seconds_warn, seconds_fail = _limits(limits, "replication_lag_seconds")
    return {
        "warn": {"bytes": bytes_warn, "seconds": seconds_warn},
        "fail": {"bytes": bytes_fail, "seconds": seconds_fail},
    }


def _lag_text(lag_bytes, lag_seconds):
    shown = human_bytes(lag_bytes) if lag_bytes is not None else "unknown bytes"
    return "%s of WAL behind, replay lag %s" % (shown, _seconds(lag_seconds))


def _standby_check(host, standby, limits):
    lag_bytes = standby.get("receive_replay_lag_bytes")
    lag_seconds = standby.get("replay_lag_seconds")
    paused = bool(standby.get("replay_paused"))
    connected = standby.get("upstream_connected")
    value = {"bytes": lag_bytes, "seconds": lag_seconds, "replay_paused": paused, "upstream_connected": connected}
    status = _lag_status(lag_bytes, lag_seconds, limits)
    notes = []
    if lag_bytes is None and lag_seconds is None:
        status = "fail"
        notes.append("lag cannot be measured (no WAL received or replayed yet)")
    if paused:
        # A paused standby falls further behind with every write and a failover to it would
        # first have to replay all of it: worth a warning even while the lag is still small.
        status = worst([status, "warn"])
        notes.append("WAL replay is paused (pg_wal_replay_resume() continues it)")
    if connected is False:
        status = "fail"
        notes.append("the standby is not streaming from its upstream, so the lag shown may be far too low")
    message = "standby replay lag: %s" % _lag_text(lag_bytes, lag_seconds)
    if status != "ok" and (lag_bytes is not None or lag_seconds is not None):
        message += " (limits warn %s / %s, fail %s / %s)" % (
            human_bytes(limits["replication_lag_bytes_warn"]), _seconds(limits["replication_lag_seconds_warn"]),
            human_bytes(limits["replication_lag_bytes_fail"]), _seconds(limits["replication_lag_seconds_fail"]),
        )
    if notes:
        message += "; " + "; ".join(notes)
    return result("replication_lag", host, status, value, _lag_threshold(limits), message)


def _replica_names(replicas):
    """replica_lag:<application_name>, disambiguated when several replicas share a name."""
    base = [str(r.get("application_name") or r.get("client_addr") or "unnamed") for r in replicas]
    names = []
    for index, replica in enumerate(replicas):
        name = base[index]
        if base.count(name) > 1:
            name = "%s@%s" % (name, replica.get("client_addr") or "local")
            if name in names:
                name = "%s#%d" % (name, index + 1)
        names.append(name)
    return names


def _replica_check(host, name, replica, limits):
    lag_bytes = replica.get("lag_bytes")
    lag_seconds = replica.get("replay_lag_seconds")
    state = replica.get("state")
    value = {
        "bytes": lag_bytes,
        "seconds": lag_seconds,
        "state": state,
        "sync_state": replica.get("sync_state"),
        "client_addr": replica.get("client_addr"),
    }
    status = _lag_status(lag_bytes, lag_seconds, limits)
    message = "replica %s: %s" % (name, _lag_text(lag_bytes, lag_seconds))
    notes = []
    if lag_bytes is None:
        status = worst([status, "warn"])
        notes.append("replay position unknown (replica starting, or the login role lacks pg_monitor)")
    if state != "streaming":
        status = worst([status, "warn"])
        notes.append("state is %s, not streaming" % (state or "unknown"))
    if notes:
        message += "; " + "; ".join(notes)
    return result("replica_lag:%s" % name, host, status, value, _lag_threshold(limits), message)


def _slot_check(host, slot, limits):
    name = slot.get("slot_name") or "unnamed"
    retained = slot.get("retained_wal_bytes")
    active = slot.get("active")
    wal_status = slot.get("wal_status")
    warn, fail = _limits(limits, "slot_retained_wal_bytes")
    status = classify(retained, warn, fail) if retained is not None else "ok"
    value = {
        "retained_wal_bytes": retained,
        "active": active,
        "wal_status": wal_status,
        "slot_type": slot.get("slot_type"),
    }
    text = "slot %s (%s) retains %s of WAL" % (
        name, slot.get("slot_type") or "unknown type", human_bytes(retained) if retained is not None else "no")
    if status != "ok":
        text += ", at or above the %s limit of %s" % (status, human_bytes(fail if status == "fail" else warn))
    notes = []
    if active is False:
        status = worst([status, "warn"])
        notes.append("inactive: no consumer is connected, WAL piles up until it returns or the slot is dropped")
    if wal_status == "lost":
        status = "fail"
        notes.append("wal_status is lost: WAL it needed is gone, its consumer must be rebuilt")
    elif wal_status == "unreserved":
        status = worst([status, "warn"])
        notes.append("wal_status is unreserved: WAL it needs is about to be removed")
    if notes:
        text += "; " + "; ".join(notes)
    threshold = {"warn": warn, "fail": fail, "unit": "bytes"}
    return result("replication_slot:%s" % name, host, status, value, threshold, text)


def _connections_check(host, connections, limits):
    percent = connections.get("percent_used")
    warn, fail = _limits(limits, "connections_percent")
    out = evaluate("connections", host, percent, warn, fail, unit="%", what="connection slots used")
    if percent is not None:
        out["message"] += " (%s of %s available)" % (connections.get("current"), connections.get("available"))
    out["threshold"]["unit"] = "%"
    return out


def _oldest_transaction_check(host, info, limits):
    oldest = _section(info, "oldest_transaction", Mapping)
    idle = info.get("oldest_idle_in_transaction_seconds")
    warn, fail = _limits(limits, "oldest_transaction_seconds")
    if not oldest:
        return result("oldest_transaction", host, "ok", None, {"warn": warn, "fail": fail, "unit": "s"},
                      "no open transaction besides the check itself")
    age = oldest.get("age_seconds")
    out = evaluate("oldest_transaction", host, age, warn, fail, unit="s", what="oldest open transaction")
    out["message"] += " (pid %s, user %s, database %s, %s)" % (
        oldest.get("pid"), oldest.get("usename"), oldest.get("datname"), oldest.get("state"))
    if idle is not None:
        out["message"] += "; longest idle in transaction %s" % _seconds(idle)
    out["threshold"]["unit"] = "s"
    return out


def _wraparound_check(host, wraparound, limits):
    age = wraparound.get("oldest_xid_age")
    warn, fail = _limits(limits, "wraparound_age")
    out = evaluate("wraparound", host, age, warn, fail, what="oldest transaction ID age")
    if age is not None:
        out["message"] += " (database %s, %s %% of the way to wraparound)" % (
            wraparound.get("database"), wraparound.get("percent_towards_wraparound"))
    return out


def pg_health_checks(info, host, thresholds=None, expected_role=None):
    """Check results for one server from the registered result of upkeep.runbooks.pg_health_info."""
    if not isinstance(host, str) or not host.strip():
        raise _error("host must be a non-empty string, got %r" % (host,))
    if not isinstance(info, Mapping):
        raise _error("info must be the registered result of upkeep.runbooks.pg_health_info, got %s"
                     % type(info).__name__)
    limits = _thresholds(thresholds)
    if expected_role not in (None, ""):
        if expected_role not in ROLES:
            raise _error("expected_role must be primary or replica, got %r" % (expected_role,))
        expected_role = ROLES[expected_role]

    if "reachable" not in info:
        if info.get("failed"):
            cause = info.get("msg", "unknown error")
            return [result("postgres_reachable", host, "fail", False, None,
                           "PostgreSQL health facts of %s could not be read: %s" % (host, cause))]
        if info.get("skipped"):
            raise _error("the pg_health_info task for %s was skipped; there is nothing to check" % host)
        raise _error("info has no 'reachable' key: pass the registered result of upkeep.runbooks.pg_health_info")

    if not info["reachable"]:
        error = info.get("error") or info.get("msg") or "unknown error"
        return [result("postgres_reachable", host, "fail", False, None,
                       "PostgreSQL on %s is unreachable: %s" % (host, error))]
    results = [result("postgres_reachable", host, "ok", True, None, "PostgreSQL on %s accepts connections" % host)]
    if info.get("failed"):
        results.append(result("postgres_health_facts", host, "fail", None, None,
                              "PostgreSQL on %s answered but its health facts could not be read: %s"
                              % (host, info.get("msg", "unknown error"))))
        return results

    version = info.get("server_version")
    results.append(result("postgres_version", host, "ok", version, None, "PostgreSQL %s" % version))

    in_recovery = bool(info.get("in_recovery"))
    role = "replica" if in_recovery else "primary"
    if expected_role and expected_role != role:
        results.append(result("postgres_role", host, "fail", role, {"expected": expected_role},
                              "server is a %s but is expected to be a %s" % (role, expected_role)))
    else:
        results.append(result("postgres_role", host, "ok", role,
                              {"expected": expected_role} if expected_role else None, "server is a %s" % role))

    replication = _section(info, "replication", Mapping) or {}
    standby = replication.get("standby")
    if in_recovery:
        if not isinstance(standby, Mapping):
            raise _error("info.replication.standby is missing for a server in recovery")
        results.append(_standby_check(host, standby, limits))
    replicas = _list(replication, "replicas")
    for name, replica in zip(_replica_names(replicas), replicas):
        results.append(_replica_check(host, name, replica, limits))

    for slot in _list(info, "replication_slots"):
        results.append(_slot_check(host, slot, limits))

    connections = _section(info, "connections", Mapping)
    if connections is not None:
        results.append(_connections_check(host, connections, limits))

    results.append(_oldest_transaction_check(host, info, limits))

    wraparound = _section(info, "wraparound", Mapping)
    if wraparound is not None:
        results.append(_wraparound_check(host, wraparound, limits))

    for database in _list(info, "databases"):
        name = database.get("name") or "unnamed"
        size = database.get("size_bytes")
        results.append(result(
            "database_size:%s" % name, host, "ok", size, {"unit": "bytes"},
            "database %s is %s" % (name, human_bytes(size) if size is not None else "of unknown size"),
        ))
    return results


class FilterModule(object):
    """upkeep.runbooks PostgreSQL health filters."""

    def filters(self):
        return {"pg_health_checks": pg_health_checks}
