"""playbooks/patch.yml end to end: ansible-playbook against Debian containers and the real, signed apt repository.

Five hosts (containers of the lab image, reached through the podman connection): stage1 and stage2 are staging;
app1 (application), db2 (replica group) and db1 (primary group) are production. PostgreSQL itself is
not in these containers (its gates are covered where a cluster runs), so patching_postgres_role is
empty and the database groups only give the order. The clock is fixed through upkeep_window_now, the
window is daily 02:00-04:00 UTC with a 10 minute cutoff, the soak is 3 days.

The runs follow each other in one module, as an operator's month would:
  1. both staging hosts plan, the plans are merged (stage2 has a package stage1 lacks), staging applies
     and promotes; production refuses the promotion (soak not over) and no production host changes;
  2. the repository publishes newer versions; check mode outside the window changes nothing and says
     what a real run would install and that it would not start now;
  3. a real run outside the window changes nothing and says why;
  4. inside the window: app1 first, exactly the staged versions (not the newer ones), rebooted and its
     service and health URL checked; db2 fails its health check, is rolled back, and db1 (the primary)
     is not started;
  5. db2 is healthy again, but the window reaches its cutoff before the primary's turn: db2 is
     patched (a reboot reported as required, not allowed on it), the primary does not start;
  6. the next night the primary is down: the rollout stops there, the report says so;
  7. with the primary back the rollout converges: only the primary changes.
"""

import datetime
import glob
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.fixtures.apt_repo import BASE, CONTAINERS_CONF, AptHost, AptRepo, podman

pytestmark = [pytest.mark.integration, pytest.mark.containers]

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_ADDRESS = "127.0.7.1"
HEALTH_ADDRESS = "127.0.7.2"
DB2_HEALTH = "{{ db2_health_url | default('') }}"  # run 4 points it at DEAD_URL
DEAD_URL = "http://127.0.7.3:9/healthz/"  # nothing listens there
STEP1 = {"upkeep-testlib": "1.0-1", "upkeep-testlib-dep": "1.0-1", "upkeep-testsvc": "1.0-1",
         "upkeep-testreboot": "1.0-1", "upkeep-testconf": "1:1.0-1"}
STEP2 = dict(STEP1, **{"upkeep-testlib": "1.1-1", "upkeep-testlib-dep": "1.1-1", "upkeep-testsvc": "1.1-1",
                       "upkeep-testreboot": "1.1-1", "upkeep-testconf": "1:1.1-1", "upkeep-testhelper": "1.1-1"})
RUN_TIMEOUT = 300  # one ansible-playbook run; a normal one takes well under a minute
WINDOW = [{"name": "nightly", "rrule": "DTSTART:20260101T020000Z\nRRULE:FREQ=DAILY", "duration": "2h",
           "cutoff": "10m"}]


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def rollout(tmp_path_factory, apt_debs):
    """The repository at step 2, the four hosts at step 1, an inventory, and a function that runs patch.yml."""
    work = tmp_path_factory.mktemp("patch-playbook")
    repo = AptRepo(work / "repo", host=REPO_ADDRESS, debs_dir=apt_debs).up(step=2)
    health = http.server.ThreadingHTTPServer((HEALTH_ADDRESS, 0), Health)
    threading.Thread(target=health.serve_forever, daemon=True).start()
    hosts = {}
    try:
        for name in ("stage1", "stage2", "app1", "db2", "db1"):
            # stage2 also carries upkeep-testrm, which no other host has: the merged plan must hold it
            hosts[name] = AptHost(repo).start(
                install=BASE + (("upkeep-testrm=1.0-1",) if name == "stage2" else ()),
                run_args=("--restart", "always") if name == "app1" else ())
        inventory = work / "hosts.yml"
        inventory.write_text(yaml.safe_dump(inventory_for(hosts, work, health.server_address[1])))
        yield Rollout(repo, hosts, inventory, work)
    finally:
        for host in hosts.values():
            host.remove()
        health.shutdown()
        health.server_close()
        repo.close()


def inventory_for(hosts, work, health_port):
    def host(name, **extra):
        return {name: dict(ansible_host=hosts[name].name, **extra)}

    return {"all": {"children": {
        "containers": {
            "vars": {
                "ansible_connection": "podman_nsenter",
                "ansible_python_interpreter": "/usr/bin/python3",
                "patching_postgres_role": "",
                "patching_reboot": False,
                "patching_reboot_timeout": 180,
                "patching_boot_time_command": "cut -d' ' -f22 /proc/1/stat",
                "patching_health_retries": 3,
                "patching_health_delay": 1,
                "patching_lock_timeout": 60,
            },
            "hosts": dict(**host("stage1"), **host("stage2"), **host("db1"),
                          **host("db2", patching_health_url=DB2_HEALTH), **host(
                "app1", patching_reboot=True, patching_services=["upkeep-testsvc.service"],
                patching_health_url="http://%s:%d/healthz/" % (HEALTH_ADDRESS, health_port))),
        },
        "app": {"hosts": {"app1": None}},
        "postgres": {"children": {"postgres_primary": {"hosts": {"db1": None}},
                                  "postgres_replica": {"hosts": {"db2": None}}}},
        "patch_staging": {"hosts": {"stage1": None, "stage2": None}},
        # the inventory order is not the rollout's order: the playbook orders by group
        "patch_production": {"hosts": {"db1": None, "db2": None, "app1": None}},
    }, "vars": {
        "upkeep_maintenance_windows": WINDOW,
        "patching_store_dir": str(work / "promotions"),
        "patching_min_soak": "3d",
        "upkeep_report_dir": str(work / "reports"),
        "upkeep_run_lock_enabled": False,  # no Vault here; tests/integration/test_run_lock.py covers the lock
        # the fixed clock, per host when a run needs the window to close mid-rollout (extra vars would
        # override a host's own value)
        "upkeep_window_now": "{{ test_clock[inventory_hostname] | default(test_clock['default']) }}",
    }}}


class Rollout:
    def __init__(self, repo, hosts, inventory, work):
        self.repo, self.hosts, self.inventory, self.work = repo, hosts, inventory, work
        self.today = datetime.datetime.now(datetime.timezone.utc).date()

    def at(self, days, hour):
        """upkeep_window_now: `days` after today at `hour`:30 UTC."""
        return "%sT%02d:30:00Z" % (self.today + datetime.timedelta(days=days), hour)

    def play(self, now, check=False, production_only=False, **extra):
        """ansible-playbook patch.yml at `now` (or {host: now, 'default': now}); (process, report)."""
        extra = dict(test_clock=now if isinstance(now, dict) else {"default": now}, **extra)
        if production_only:
            extra["upkeep_patch_staging_hosts"] = "no_staging_in_this_run"
        before = set(glob.glob(str(self.work / "reports" / "patch" / "*" / "*.json")))
        argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(self.inventory),
                "-e", json.dumps(extra), str(REPO_ROOT / "playbooks" / "patch.yml")]
        if check:
            argv.append("--check")
        env = dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"),
                   # as Molecule reaches its containers (docs/development.md): this rollout reboots app1
                   ANSIBLE_CONNECTION_PLUGINS=str(REPO_ROOT / "lab" / "ansible_plugins" / "connection"),
                   ANSIBLE_PIPELINING="true")
        self.runs = getattr(self, "runs", 0) + 1
        log_file = self.work / ("run-%d.log" % self.runs)
        with open(log_file, "w") as out:  # written as it runs: a run that hangs still shows where
            try:
                proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, text=True, env=env,
                                      cwd=str(self.work), timeout=RUN_TIMEOUT, check=False)
            except subprocess.TimeoutExpired:
                pytest.fail("ansible-playbook run %d did not end within %d s:\n%s"
                            % (self.runs, RUN_TIMEOUT, log_file.read_text()[-6000:]), pytrace=False)
        proc.stdout, proc.stderr = log_file.read_text(), ""
        new = sorted(set(glob.glob(str(self.work / "reports" / "patch" / "*" / "*.json"))) - before)
        assert new, "no report written:\n" + proc.stdout[-6000:] + proc.stderr[-3000:]
        with open([path for path in new if os.path.basename(path) == "report.json"][0]) as handle:
            report = json.load(handle)
        return proc, report

    def versions(self):
        return dict((name, host.versions()) for name, host in self.hosts.items())


def wait_for_systemd(host, timeout=60):
    deadline = time.monotonic() + timeout
    while host.sh("systemctl is-system-running", check=False).stdout.strip() not in ("running", "degraded"):
        assert time.monotonic() < deadline, "%s did not come back" % host.name
        time.sleep(0.5)


def results(report, check=None):
    found = [item for item in report["results"] if check is None or item["check"] == check]
    return dict((item["host"], item) for item in found)


def log(proc):
    return proc.stdout[-8000:] + proc.stderr[-3000:]


# Seven playbook runs in sequence, about 5 minutes on 2 busy cores: more than pytest.ini's 600 s would
# leave no margin. Each run has its own RUN_TIMEOUT, so a hang fails the test with the run's log and
# the fixture still removes the containers.
@pytest.mark.timeout(1500)
def test_staged_rollout(rollout):
    # 1. staging plans, applies and promotes; production refuses the promotion until it has soaked
    proc, report = rollout.play(rollout.at(1, 2))
    assert proc.returncode != 0, log(proc)
    versions = rollout.versions()
    assert versions["stage1"] == STEP2, log(proc)
    assert versions["stage2"] == dict(STEP2, **{"upkeep-testrm": "1.1-1"})
    assert versions["app1"] == versions["db2"] == versions["db1"] == STEP1
    staged = results(report, "patching")["stage1"]
    assert staged["status"] == "warn" and staged["value"]["reboot_pending"] is True, staged
    assert "reboot required" in staged["message"] and "patching_reboot is false" in staged["message"]
    promotion = results(report, "patching_promotion")["localhost"]
    assert promotion["status"] == "ok" and promotion["value"]["passed"] is True, promotion
    records = list((rollout.work / "promotions").glob("*.json"))
    assert [path.name for path in records] == [promotion["value"]["baseline_sha256"] + ".json"]
    record = json.loads(records[0].read_text())
    assert record["baseline"]["host"] == "stage1,stage2" and record["run"]["planned_on"] == "stage1,stage2"
    assert dict((pkg["name"], pkg["version"]) for pkg in record["baseline"]["packages"]) == dict(
        ((name, version) for name, version in STEP2.items()), **{"upkeep-testrm": "1.1-1"})
    assert sorted(entry["host"] for entry in record["hosts"] if entry["status"] == "applied") == ["stage1", "stage2"]
    refused = results(report, "patching_baseline")["app1"]
    assert refused["status"] == "fail" and "less than the soak time of 3d00h" in refused["message"], refused
    waiting = results(report, "patching")
    for name in ("db2", "db1"):
        assert waiting[name]["value"]["state"] == "not-started", waiting[name]
        assert "the rollout stopped at app1 (no baseline" in waiting[name]["message"]

    # 2. newer versions appear; check mode outside the window says what would happen and changes nothing
    rollout.repo.publish(3)
    outside = rollout.at(4, 12)
    proc, report = rollout.play(outside, check=True, production_only=True)
    assert rollout.versions()["app1"] == STEP1 and rollout.versions()["db1"] == STEP1, log(proc)
    window = results(report, "patching_window")
    preview = results(report, "patching")
    for name in ("app1", "db2", "db1"):
        assert window[name]["status"] == "warn", window
        assert window[name]["message"].startswith("%s: a real run now would not start this host (no new host may "
                                                  "start: outside every window;" % name), window[name]
        assert "next 'nightly' starts" in window[name]["message"]
        assert "%s 02:00 UTC" % rollout.at(5, 2)[:10] in window[name]["message"]
        assert "6 package(s) would change" in preview[name]["message"], preview[name]
        assert preview[name]["value"]["state"] == "would-patch"
        assert {(p["name"], p["after"]) for p in preview[name]["value"]["packages"]} == set(
            (name_, version) for name_, version in STEP2.items() if STEP1.get(name_) != version)
    assert not rollout.hosts["app1"].exists("/var/lib/upkeep-runbooks/apt-rollback.json")

    # 3. a real run outside the window changes nothing and says why
    proc, report = rollout.play(outside, production_only=True)
    assert proc.returncode != 0
    assert rollout.versions()["app1"] == rollout.versions()["db2"] == rollout.versions()["db1"] == STEP1, log(proc)
    for item in results(report, "patching").values():
        assert item["value"]["state"] == "not-started", item
        assert "no new host may start: outside every window;" in item["message"], item
        assert "next 'nightly' starts" in item["message"]
    assert results(report, "maintenance_window")["localhost"]["status"] == "fail"

    # 4. inside the window: app1 first (exactly the staged versions, rebooted, healthy), db2 fails its
    #    health check and is rolled back, db1 (the primary) is not started
    boot_before = rollout.hosts["app1"].sh("cut -d' ' -f22 /proc/1/stat").stdout.strip()
    inside = rollout.at(4, 2)
    proc, report = rollout.play(inside, production_only=True, db2_health_url=DEAD_URL)
    versions = rollout.versions()
    assert versions["app1"] == STEP2, log(proc)
    assert rollout.hosts["app1"].candidate("upkeep-testlib") == "1.2-1"  # newer was there, not taken
    assert rollout.hosts["app1"].sh("cut -d' ' -f22 /proc/1/stat").stdout.strip() != boot_before
    patched = results(report, "patching")
    assert patched["app1"]["status"] == "ok" and patched["app1"]["value"]["reboot"] is True, patched["app1"]
    assert patched["app1"]["value"]["services_restarted"] == []  # the reboot restarted it
    assert rollout.hosts["app1"].sh("systemctl is-active upkeep-testsvc.service").stdout.strip() == "active"
    failed = patched["db2"]
    assert failed["status"] == "fail" and failed["value"]["state"] == "failed", failed
    assert failed["message"].startswith('Failed to patch db2 at "Check this host\'s health URL"'), failed["message"]
    assert "Rolled back to the pre-patch versions." in failed["message"]
    assert versions["db2"] == STEP1 and set(rollout.hosts["db2"].states().values()) == {"ii "}
    assert patched["db1"]["value"]["state"] == "not-started" and versions["db1"] == STEP1
    assert "the rollout stopped at db2" in patched["db1"]["message"]
    # the order: app1's rollback manifest (written before its packages changed) precedes db2's
    manifests = dict((name, rollout.hosts[name].json("/var/lib/upkeep-runbooks/apt-rollback.json"))
                     for name in ("app1", "db2"))
    assert manifests["app1"]["created_at"] < manifests["db2"]["created_at"]
    assert manifests["db2"]["status"] == "rolled_back" and manifests["app1"]["status"] == "applied"
    assert not rollout.hosts["db1"].exists("/var/lib/upkeep-runbooks/apt-rollback.json")
    assert proc.returncode != 0

    # 5. db2 healthy again, but the window reaches its cutoff before the primary's turn (03:55, cutoff
    #    03:50): app1 is left as it is, the replica is patched, the primary does not start
    proc, report = rollout.play({"default": inside, "db1": rollout.at(4, 3).replace(":30:", ":55:")},
                                production_only=True)
    versions = rollout.versions()
    assert versions["app1"] == versions["db2"] == STEP2 and versions["db1"] == STEP1, log(proc)
    patched = results(report, "patching")
    assert patched["app1"]["status"] == "ok" and patched["app1"]["value"]["state"] == "unchanged", patched["app1"]
    assert patched["db2"]["status"] == "warn" and patched["db2"]["value"]["state"] == "patched", patched["db2"]
    assert patched["db1"]["value"]["state"] == "not-started", patched["db1"]
    assert "db1 not patched (left untouched): no new host may start: inside window 'nightly'" in \
        patched["db1"]["message"]
    assert "past its cutoff at 03:50" in patched["db1"]["message"]
    assert not rollout.hosts["db1"].exists("/var/lib/upkeep-runbooks/apt-rollback.json")

    # 6. the next night the primary is down: the rollout stops there with a clear result, and the report
    #    (which an unreachable host would otherwise cut off) is written
    podman("stop", "--time", "5", rollout.hosts["db1"].name)
    try:
        proc, report = rollout.play(rollout.at(5, 2), production_only=True)
    finally:
        podman("start", rollout.hosts["db1"].name)
    assert proc.returncode != 0, log(proc)
    patched = results(report, "patching")
    assert patched["db1"]["status"] == "fail" and patched["db1"]["value"]["state"] == "not-started", patched["db1"]
    assert patched["db1"]["message"].startswith("db1 not patched (left untouched): it is unreachable (")
    assert patched["db1"]["message"].endswith("the rollout stops here")
    assert [patched[name]["value"]["state"] for name in ("app1", "db2")] == ["unchanged", "unchanged"]
    wait_for_systemd(rollout.hosts["db1"])
    assert rollout.versions()["db1"] == STEP1

    # 7. back up, the rollout converges: only the primary changes
    proc, report = rollout.play(rollout.at(5, 2), production_only=True)
    assert proc.returncode == 0, log(proc)
    versions = rollout.versions()
    assert versions["app1"] == versions["db2"] == versions["db1"] == STEP2
    patched = results(report, "patching")
    assert [patched[name]["value"]["state"] for name in ("app1", "db2", "db1")] == ["unchanged", "unchanged", "patched"]
    for name in ("db2", "db1"):
        assert patched[name]["status"] == "warn", patched[name]
        assert patched[name]["value"]["reboot"] is False and patched[name]["value"]["reboot_pending"] is True
    assert rollout.hosts["db2"].json("/var/lib/upkeep-runbooks/apt-rollback.json")["created_at"] < \
        rollout.hosts["db1"].json("/var/lib/upkeep-runbooks/apt-rollback.json")["created_at"]
    compliance = results(report, "patching_compliance")
    assert compliance["app1"]["value"]["state"] == "installed"
    assert compliance["db1"]["value"]["state"] == "pending-reboot"
