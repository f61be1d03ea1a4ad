"""Filters check_result, check_evaluate and disk_checks (plugins/filter/checks.py)."""

import copy

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.upkeep.runbooks.plugins.filter.checks import (
    FilterModule,
    check_evaluate,
    check_result,
    disk_checks,
)

GiB = 1024 ** 3


def mount(point, total_gib, free_gib, *, fstype="ext4", device=None, inodes=(1_000_000, 900_000)):
    """One entry shaped like ansible_facts.mounts (setup module on Linux)."""
    total, free = int(total_gib * GiB), int(free_gib * GiB)
    block = 4096
    return {
        "mount": point,
        "device": device or f"/dev/mapper/vg0-{point.strip('/').replace('/', '_') or 'root'}",
        "fstype": fstype,
        "options": "rw,relatime",
        "dump": 0,
        "passno": 0,
        "size_total": total,
        "size_available": free,
        "block_size": block,
        "block_total": total // block,
        "block_available": free // block,
        "block_used": (total - free) // block,
        "inode_total": inodes[0],
        "inode_available": inodes[1],
        "inode_used": inodes[0] - inodes[1],
        "uuid": "0b6e5a8e-1f57-4a53-9d61-2f6b0c9e1a11",
    }


# A Debian database server: separate volumes for the cluster, WAL and logs, plus the usual pseudo mounts.
DB_SERVER = [
    mount("/", 30, 12),
    mount("/boot", 1, 0.7),
    mount("/boot/efi", 0.5, 0.49, fstype="vfat", inodes=(0, 0)),
    mount("/dev/shm", 7.8, 7.8, fstype="tmpfs", device="tmpfs"),
    mount("/run", 1.6, 1.59, fstype="tmpfs", device="tmpfs"),
    mount("/run/lock", 0.005, 0.005, fstype="tmpfs", device="tmpfs"),
    mount("/var/lib/postgresql", 200, 16, fstype="xfs", inodes=(104_857_600, 104_000_000)),
    mount("/var/lib/postgresql/15/main/pg_wal", 50, 40, fstype="xfs"),
    mount("/var/log", 10, 1.5),
    mount("/run/user/1000", 1.6, 1.6, fstype="tmpfs", device="tmpfs"),
]


def by_check(results):
    return {r["check"]: r for r in results}


# ------------------------------------------------------------------ disk_checks

def test_db_server_volumes_and_statuses():
    results = disk_checks(DB_SERVER, "db1", {
        "database": "/var/lib/postgresql/15/main",
        "wal": "/var/lib/postgresql/15/main/pg_wal",
        "logs": "/var/log/postgresql",
        "backups": "/srv/backups",
    })
    assert [r["check"] for r in results] == [
        "disk_free:database", "disk_free:wal", "disk_free:logs", "disk_free:backups",
    ]
    got = by_check(results)
    database = got["disk_free:database"]
    assert database["host"] == "db1"
    assert database["status"] == "fail"  # 8 % free
    assert database["value"] == {
        "path": "/var/lib/postgresql/15/main",
        "mount": "/var/lib/postgresql",
        "percent_free": 8.0,
        "bytes_free": 16 * GiB,
        "bytes_total": 200 * GiB,
        "inodes_percent_free": 99.18,
    }
    assert database["threshold"] == {"warn_percent_free": 20, "fail_percent_free": 10}
    assert database["message"] == (
        "database (/var/lib/postgresql/15/main) on /var/lib/postgresql: 8.0 % free (16.0 GiB of 200.0 GiB), "
        "at or below the fail limit of 10 %; inodes 99.2 % free"
    )
    assert got["disk_free:wal"]["value"]["mount"] == "/var/lib/postgresql/15/main/pg_wal"
    assert got["disk_free:wal"]["status"] == "ok"
    assert got["disk_free:logs"]["value"]["mount"] == "/var/log"
    assert got["disk_free:logs"]["status"] == "warn"  # 15 %
    assert "at or below the warn limit of 20 %" in got["disk_free:logs"]["message"]
    assert got["disk_free:backups"]["value"]["mount"] == "/"
    assert got["disk_free:backups"]["status"] == "ok"  # 40 %


@pytest.mark.parametrize("path, expected_mount", [
    ("/var/library/data", "/"),                 # /var/lib is not a prefix of /var/library
    ("/var/lib", "/"),
    ("/var/lib/postgresql", "/var/lib/postgresql"),  # the mount point itself
    ("/var/lib/postgresql/", "/var/lib/postgresql"),  # trailing slash
    ("/var/lib/postgresql//15/./main", "/var/lib/postgresql"),
    ("/var/lib/postgresqlx", "/"),
    ("/var/lib/postgresql/15/main/pg_wal_archive", "/var/lib/postgresql"),
    ("/var/logs", "/"),
    ("/boot/efi/EFI", "/boot/efi"),
    ("/bootx", "/"),
    ("/run/postgresql", "/run"),                # tmpfs counts when it is what holds the path
    ("/run/user/1000/x", "/run/user/1000"),
    ("/", "/"),
])
def test_longest_component_prefix_wins(path, expected_mount):
    result = disk_checks(DB_SERVER, "db1", {"p": path})[0]
    assert result["value"]["mount"] == expected_mount


def test_mount_list_order_does_not_matter_for_prefixes():
    reversed_mounts = list(reversed(DB_SERVER))
    result = disk_checks(reversed_mounts, "db1", {"wal": "/var/lib/postgresql/15/main/pg_wal/0001"})[0]
    assert result["value"]["mount"] == "/var/lib/postgresql/15/main/pg_wal"


def test_overmounted_point_uses_the_later_entry():
    mounts = [mount("/", 30, 20), mount("/srv", 100, 50), mount("/srv", 100, 5, fstype="xfs")]
    result = disk_checks(mounts, "db1", {"backups": "/srv/backups"})[0]
    assert result["value"]["percent_free"] == 5.0
    assert result["status"] == "fail"


def test_path_without_covering_mount_fails():
    container_mounts = [mount("/etc/hosts", 30, 20), mount("/var/lib/postgresql", 100, 50)]
    result = disk_checks(container_mounts, "db1", {"logs": "/var/log"})[0]
    assert result["status"] == "fail"
    assert result["value"] == {"path": "/var/log", "mount": None}
    assert result["message"] == "logs (/var/log): no mounted file system covers this path in the gathered mount facts"


def test_empty_mount_facts_fail_every_path():
    results = disk_checks([], "db1", {"a": "/a", "b": "/b"})
    assert [r["status"] for r in results] == ["fail", "fail"]


def test_zero_size_file_system_fails_with_reason():
    mounts = [mount("/", 30, 20), dict(mount("/proc", 0, 0, fstype="proc", device="proc"), size_total=0)]
    result = disk_checks(mounts, "db1", {"proc": "/proc/1"})[0]
    assert result["status"] == "fail"
    assert result["value"]["percent_free"] is None
    assert "the file system (proc) reports no size" in result["message"]


def test_pseudo_file_systems_not_covering_the_path_are_ignored():
    mounts = [dict(mount("/proc", 0, 0, fstype="proc"), size_total=0), mount("/", 30, 20),
              mount("/sys", 0.0, 0.0, fstype="sysfs")]
    result = disk_checks(mounts, "db1", {"data": "/data"})[0]
    assert result["value"]["mount"] == "/"
    assert result["status"] == "ok"


@pytest.mark.parametrize("free_gib, status", [
    (20.0, "warn"), (20.1, "ok"), (10.0, "fail"), (10.1, "warn"), (0, "fail"),
])
def test_boundaries_are_inclusive(free_gib, status):
    result = disk_checks([mount("/", 100, free_gib)], "h", {"root": "/"})[0]
    assert result["status"] == status


@pytest.mark.parametrize("inodes, status", [((1000, 150), "warn"), ((1000, 50), "fail"), ((1000, 900), "ok")])
def test_inode_shortage_counts_with_the_same_limits(inodes, status):
    result = disk_checks([mount("/", 100, 80, inodes=inodes)], "h", {"root": "/"})[0]
    assert result["status"] == status
    assert result["value"]["inodes_percent_free"] == round(100.0 * inodes[1] / inodes[0], 2)
    if status != "ok":
        assert f"inodes {result['value']['inodes_percent_free']} % free, at or below the {status} limit" in \
            result["message"]
        assert "free (80.0 GiB of 100.0 GiB)," not in result["message"]  # space itself is fine


def test_file_system_without_inodes_is_judged_on_space():
    result = disk_checks([mount("/", 100, 50, fstype="btrfs", inodes=(0, 0))], "h", {"root": "/srv"})[0]
    assert result["value"]["inodes_percent_free"] is None
    assert result["status"] == "ok"
    assert "inodes" not in result["message"]


def test_custom_limits_and_numeric_strings():
    result = disk_checks([mount("/", 100, 25)], "h", {"root": "/"}, warn_percent_free="30", fail_percent_free=15)[0]
    assert result["status"] == "warn"
    assert result["threshold"] == {"warn_percent_free": 30, "fail_percent_free": 15}


def test_input_is_not_modified():
    mounts = copy.deepcopy(DB_SERVER)
    paths = {"database": "/var/lib/postgresql/"}
    disk_checks(mounts, "db1", paths)
    assert mounts == DB_SERVER
    assert paths == {"database": "/var/lib/postgresql/"}


@pytest.mark.parametrize("call, fragment", [
    (lambda: disk_checks({"mount": "/"}, "h", {"a": "/"}), "mounts must be the list ansible_facts.mounts, got dict"),
    (lambda: disk_checks("/", "h", {"a": "/"}), "mounts must be the list ansible_facts.mounts, got str"),
    (lambda: disk_checks(None, "h", {"a": "/"}), "got NoneType"),
    (lambda: disk_checks(["/"], "h", {"a": "/"}), "mounts[0] must be a dict, got str"),
    (lambda: disk_checks([{"device": "x"}], "h", {"a": "/"}), "mounts[0] has no absolute 'mount' point"),
    (lambda: disk_checks(DB_SERVER, "", {"a": "/"}), "host must be a non-empty string"),
    (lambda: disk_checks(DB_SERVER, "h", ["/var/log"]), "paths must be a non-empty dict of label -> absolute path"),
    (lambda: disk_checks(DB_SERVER, "h", {}), "paths must be a non-empty dict"),
    (lambda: disk_checks(DB_SERVER, "h", {"logs": "var/log"}), "path for 'logs' must be an absolute path"),
    (lambda: disk_checks(DB_SERVER, "h", {"logs": None}), "path for 'logs' must be an absolute path"),
    (lambda: disk_checks(DB_SERVER, "h", {"": "/x"}), "each label in paths must be a non-empty string"),
    (lambda: disk_checks(DB_SERVER, "h", {"a": "/"}, 5, 10), "warn_percent_free (5) must be at least"),
    (lambda: disk_checks(DB_SERVER, "h", {"a": "/"}, 120, 10), "warn_percent_free must be between 0 and 100"),
    (lambda: disk_checks(DB_SERVER, "h", {"a": "/"}, "lots", 10), "warn_percent_free must be a number"),
    (lambda: disk_checks(DB_SERVER, "h", {"a": "/"}, 20, None), "fail_percent_free must be a number"),
    (lambda: disk_checks([dict(mount("/", 1, 1), size_total="big")], "h", {"a": "/"}),
     "mount / has a non-numeric size_total"),
])
def test_bad_input_raises_filter_error(call, fragment):
    with pytest.raises(AnsibleFilterError) as err:
        call()
    assert fragment in str(err.value)
    assert str(err.value).startswith("disk_checks: ")


# ------------------------------------------------------------------ check_result / check_evaluate

def test_check_result_builds_the_shape():
    assert check_result("tls_enforced", "db1", "ok", "on", None, "ssl is on") == {
        "check": "tls_enforced", "host": "db1", "status": "ok", "value": "on", "threshold": None,
        "message": "ssl is on",
    }
    assert check_result("x", "h", "warn", message=None)["message"] == ""


@pytest.mark.parametrize("call, fragment", [
    (lambda: check_result("x", "h", "critical"), "unknown check status 'critical'"),
    (lambda: check_result("", "h", "ok"), "check must be a non-empty string"),
    (lambda: check_result("x", None, "ok"), "host must be a non-empty string"),
    (lambda: check_result("x", "h", "ok", message=5), "message must be a string"),
])
def test_check_result_rejects_bad_input(call, fragment):
    with pytest.raises(AnsibleFilterError, match="^check_result: ") as err:
        call()
    assert fragment in str(err.value)


def test_check_evaluate_statuses_and_unit_in_threshold():
    ok = check_evaluate(4.2, "replication_lag_seconds", "db2", warn=30, fail=300, unit="s", what="replication lag")
    assert ok["status"] == "ok"
    assert ok["threshold"] == {"warn": 30, "fail": 300, "unit": "s"}
    assert ok["message"] == "replication lag is 4.2 s"
    fail = check_evaluate("812", "replication_lag_seconds", "db2", warn="30", fail="300", unit="s")
    assert fail["status"] == "fail"
    assert fail["value"] == 812
    assert fail["message"] == "replication lag seconds is 812 s, at or above the fail limit of 300 s"
    low = check_evaluate(5, "cert_days_left", "db1", warn=30, fail=7, higher_is_worse=False, unit="days")
    assert low["status"] == "fail"
    assert check_evaluate(None, "x", "h", warn=1)["status"] == "fail"
    assert "unit" not in check_evaluate(1, "x", "h", warn=5)["threshold"]


@pytest.mark.parametrize("call, fragment", [
    (lambda: check_evaluate("fast", "x", "h"), "the value must be a number, got 'fast'"),
    (lambda: check_evaluate(True, "x", "h"), "the value must be a number, got a boolean"),
    (lambda: check_evaluate(1, "x", "h", warn=[1]), "warn must be a number"),
    (lambda: check_evaluate(1, "x", "h", higher_is_worse="no"), "higher_is_worse must be true or false"),
    (lambda: check_evaluate(1, "", "h"), "check must be a non-empty string"),
])
def test_check_evaluate_rejects_bad_input(call, fragment):
    with pytest.raises(AnsibleFilterError, match="^check_evaluate: ") as err:
        call()
    assert fragment in str(err.value)


def test_filter_module_exports_the_three_filters():
    assert set(FilterModule().filters()) == {"check_result", "check_evaluate", "disk_checks"}
