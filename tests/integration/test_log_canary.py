"""log_canary against real rsyslog daemons on loopback: a collector (imtcp -> file) and forwarders.

Three "hosts": web1 and db1 forward to the collector; lost1's forwarder sends to a port where nothing
listens (the collector is unreachable from it: a firewall, a wrong target). Its line is written
locally and never arrives; the check fails naming lost1 and only lost1. A host whose syslog daemon
is stopped cannot even write the line, and the emit step says so, naming it.
"""

import pytest

from tests.fixtures.syslog import COLLECTOR_HOST, Collector, Forwarder, free_port
from tests.integration.module_runner import run_module

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def syslog(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("syslog")
    daemons = []
    try:
        collector = Collector(workdir).start()
        daemons.append(collector)
        forwarders = {}
        for name in ("web1", "db1"):
            forwarders[name] = Forwarder(workdir, name, collector.host, collector.port).start()
            daemons.append(forwarders[name])
        forwarders["lost1"] = Forwarder(workdir, "lost1", COLLECTOR_HOST, free_port()).start()
        daemons.append(forwarders["lost1"])
        yield collector, forwarders
    finally:
        for daemon in reversed(daemons):
            daemon.stop()


def _emit(forwarder, check_mode=False):
    return run_module("log_canary", {"mode": "emit", "name": forwarder.name, "socket": str(forwarder.socket)},
                      check_mode=check_mode)


def test_canaries_of_forwarding_hosts_arrive(syslog):
    collector, forwarders = syslog
    emitted = {name: _emit(forwarders[name], check_mode=(name == "db1")) for name in ("web1", "db1")}
    for name, res in emitted.items():
        assert not res.failed, res
        assert res["line"] == "upkeep-canary host=%s id=%s" % (name, res["id"])
        assert len(res["id"]) == 32
        assert res["changed"] is False
    res = run_module("log_canary", {"mode": "verify", "expected": {n: r["id"] for n, r in emitted.items()},
                                    "paths": [str(collector.received.parent / "*.log")], "timeout": 60,
                                    "poll_interval": 0.2})
    assert not res.failed, res
    assert res["missing"] == []
    assert sorted(res["arrived"]) == ["db1", "web1"]
    assert res["arrived"]["web1"]["path"] == str(collector.received)
    text = collector.received.read_text()
    for name, emitted_res in emitted.items():
        assert text.count(emitted_res["id"]) == 1, name


def test_host_whose_lines_do_not_reach_the_collector_fails_by_name(syslog):
    collector, forwarders = syslog
    emitted = {name: _emit(forwarders[name]) for name in ("web1", "lost1")}
    for res in emitted.values():
        assert not res.failed, res  # written locally either way
    args = {"mode": "verify", "expected": {n: r["id"] for n, r in emitted.items()},
            "paths": [str(collector.received.parent / "*.log")], "timeout": 8, "poll_interval": 0.2}
    res = run_module("log_canary", args)
    assert res.failed
    assert res["missing"] == ["lost1"]
    assert sorted(res["arrived"]) == ["web1"]
    assert res["msg"] == ("Log-shipping canary did not arrive within 8 s from: lost1 (looked in %s)"
                          % (collector.received.parent / "*.log"))
    # The role's way: no failure, the lists decide the per-host results.
    res = run_module("log_canary", dict(args, fail_on_missing=False, timeout=1))
    assert not res.failed
    assert res["missing"] == ["lost1"] and sorted(res["arrived"]) == ["web1"]


def test_stopped_forwarder_fails_the_host_by_name(syslog):
    collector, forwarders = syslog
    db1 = forwarders["db1"]
    db1.stop()
    res = _emit(db1)
    assert res.failed
    assert res["msg"].startswith("Failed to write the canary on db1 through syslog (%s): " % db1.socket)


def test_bad_name_is_refused():
    res = run_module("log_canary", {"mode": "emit", "name": "web 1; rm"})
    assert res.failed
    assert "must be letters, digits" in res["msg"]
