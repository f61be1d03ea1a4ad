"""The runbooks that change production start with the maintenance window and take the run lock.

playbooks/rotate.yml, playbooks/restore.yml, the database maintenance of playbooks/monthly.yml,
playbooks/dr_drill.yml and the DR plays of annually.yml and quarterly.yml run through ansible-playbook
against this machine: "db1" is a test cluster
(tests/fixtures/postgres.py) reached over the local connection, the run lock and the rotated
secrets live in the session's OpenBao, the backups in moto. The clock is fixed through
upkeep_window_now against a window open daily 02:00-04:00 UTC (10 minute cutoff).

Outside the window each of them changes nothing (the password and every Vault version, a table's
vacuum count, the restore target, the DR host untouched), takes no lock, says why and ends
non-zero, with the window's failed check in its report (check mode previews and still says so);
inside it they run. A database maintenance run and a drill refuse at once, naming the holder,
while another run holds the lock.
(The lock itself, its expiry and the rotate job's refusal are in test_run_lock.py and
test_awx_runner.py; patch.yml's window in test_patch_playbook.py.)
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.integration.module_runner import REPO_ROOT, run_module
from tests.integration.restore_helpers import make_backup
from tests.integration.s3_backups import mirror
from tests.integration.vault_pg_rotate_helpers import can_login, create_login, current, seed, unique
from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest

pytestmark = pytest.mark.integration

WINDOW = [{"name": "nightly", "rrule": "DTSTART:20260101T020000Z\nRRULE:FREQ=DAILY", "duration": "2h",
           "cutoff": "10m"}]
TODAY = datetime.datetime.now(datetime.timezone.utc).date()
INSIDE = "%sT02:30:00Z" % TODAY
OUTSIDE = "%sT12:00:00Z" % TODAY
GATE_TASKS = {"Record why the host is left untouched", "Leave the host untouched outside the maintenance window"}


class Run:
    """One ansible-playbook run: the process, its JSON event tree, and the report it wrote."""

    def __init__(self, proc, report):
        self.proc, self.report = proc, report
        self.rc = proc.returncode
        try:
            self.tree = json.loads(proc.stdout)
        except ValueError:
            pytest.fail("no JSON output:\n%s\n%s" % (proc.stdout[-4000:], proc.stderr[-3000:]), pytrace=False)

    def __repr__(self):
        return "rc=%s\n%s" % (self.rc, json.dumps(self.failures(), indent=1)[-6000:] + self.proc.stderr[-2000:])

    def results(self):
        for play in self.tree["plays"]:
            for task in play["tasks"]:
                for host, res in task["hosts"].items():
                    # role tasks are named "<role> : <task>"
                    yield play["play"]["name"], task["task"]["name"].split(" : ")[-1], host, res

    def ran_on(self, host):
        """The tasks that ran on ``host`` (not skipped), the window gate aside."""
        return [(play, task) for play, task, name, res in self.results()
                if name == host and not res.get("skipped") and task not in GATE_TASKS]

    def failures(self):
        return [(task, host, res.get("msg")) for _play, task, host, res in self.results() if res.get("failed")]

    def task(self, name, host="localhost"):
        found = [res for _play, task, h, res in self.results() if task == name and h == host and not res.get("skipped")]
        assert found, "task %r did not run on %s: %r" % (name, host, self)
        return found[-1]

    def checks(self):
        assert self.report is not None, "no report was written: %r" % self
        return [(r["check"], r["host"], r["status"], r["message"]) for r in self.report["results"]]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("window-runbooks")


def run_playbook(work, playbook, inventory, cadence, now, vault_server, extra=None, env=None, check=False):
    name = "inv-%s.yml" % uuid.uuid4().hex[:8]
    (work / name).write_text(yaml.safe_dump(inventory))
    reports = work / "reports" / cadence
    before = set(reports.glob("*/report.json"))
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(work / name),
            "-e", json.dumps(dict(upkeep_window_now=now, **(extra or {}))), str(REPO_ROOT / "playbooks" / playbook)]
    if check:
        argv.append("--check")
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "VAULT_", "AWS_", "ANSIBLE_"))}
    run_env.update(vault_server.env, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOCALHOST_WARNING="0",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="0", PWD=str(work), **(env or {}))
    proc = subprocess.run(argv, capture_output=True, text=True, env=run_env, cwd=str(work), timeout=400, check=False)
    written = sorted(set(reports.glob("*/report.json")) - before)
    return Run(proc, json.loads(written[-1].read_text()) if written else None)


def inventory(environment, db_hosts, groups, **variables):
    """localhost-connected hosts, the window, the lock named ``environment``; ``groups``: {group: [hosts]}."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    hosts = {name: dict(local, **host_vars) for name, host_vars in db_hosts.items()}
    children = {group: {"hosts": {h: None for h in members}} for group, members in groups.items()}
    children.setdefault("postgres", {"children": {"postgres_primary": children.pop("postgres_primary", {})}})
    return {"all": {"hosts": hosts, "children": children, "vars": dict({
        "upkeep_environment": environment,
        "upkeep_vault_connection": {},   # VAULT_ADDR and VAULT_TOKEN from the environment
        "upkeep_maintenance_windows": WINDOW,
        "upkeep_report_dir": "reports",
    }, **variables)}}


def lock_versions(client, name):
    answer = client.adapter.get("/v1/secret/metadata/upkeep/locks/%s" % name, raise_exception=False)
    if not isinstance(answer, dict):  # hvac returns the response itself for a 404
        assert answer.status_code == 404, answer
        return 0
    return int(answer["data"]["current_version"])


def hold_lock(vault_server, name):
    holder = run_module("run_lock", {"url": vault_server.url, "token": vault_server.token, "name": name,
                                     "holder": "AWX job 99 (upkeep patch) by bob", "run_id": "awx-99"})
    assert not holder.failed, holder


def assert_refused_outside(run, host, environment, vault_client):
    assert run.rc != 0, run
    assert run.ran_on(host) == [], run.ran_on(host)
    window = [c for c in run.checks() if c[0] == "maintenance_window"]
    assert ("maintenance_window", "localhost", "fail") in [c[:3] for c in window], window
    assert any(c[1] == "localhost" and "outside every window; next 'nightly' starts" in c[3] for c in window), window
    assert any(c[1] == host and c[2] == "warn" and c[3].startswith("%s left untouched by " % host) for c in window), \
        window
    said = run.task("Say why nothing changes")["msg"]
    assert said.startswith("Outside the maintenance window, nothing in this run changes: outside every window"), said
    assert lock_versions(vault_client, environment) == 0, "a run outside the window took the lock"


def assert_refused_by_lock(run, host, environment, vault_client):
    assert run.rc != 0 and run.report is None, run
    (refused,) = run.failures()
    assert refused[0] == "Take the run lock of the environment" and refused[1] == "localhost"
    assert refused[2].startswith("Failed to acquire run lock %s: held by AWX job 99 (upkeep patch) by bob (run awx-99)"
                                 % environment), refused
    assert run.ran_on(host) == [], run.ran_on(host)
    assert lock_versions(vault_client, environment) == 1


# --- rotate.yml ---------------------------------------------------------------------------------

def test_rotate_changes_nothing_outside_the_window_and_rotates_inside(pg_cluster, vault_server, vault_client, work):
    user, old, path = unique("win"), "old-" + unique("pw"), "window/" + unique("db")
    create_login(pg_cluster, user, old)
    seed(vault_client, path, {"username": user, "password": old, "host": "db1", "dbname": "postgres"})
    environment = "lab-" + uuid.uuid4().hex[:8]
    db1 = {"upkeep_postgres_role": "primary", "credential_rotation_become_user": "",
           "upkeep_postgres_connection": {"login_host": pg_cluster.host, "login_port": pg_cluster.port,
                                          "login_user": "postgres"},
           "credential_rotation_database_secrets": [
               {"path": path, "strategy": "single", "username": user, "test_host": pg_cluster.host,
                "test_port": pg_cluster.port, "test_timeout": 20}]}
    inv = inventory(environment, {"db1": db1}, {"postgres_primary": ["db1"]})
    env = {"PGPASSWORD": pg_cluster.password}

    outside = run_playbook(work, "rotate.yml", inv, "rotate", OUTSIDE, vault_server, env=env)
    assert_refused_outside(outside, "db1", environment, vault_client)
    assert current(vault_client, path) == (1, {"username": user, "password": old, "host": "db1",
                                               "dbname": "postgres"})
    assert vault_client.secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")["data"][
        "current_version"] == 1
    assert can_login(pg_cluster, user, old)

    # Check mode outside the window previews the rotation (as patching does), changes nothing, and
    # still reports that a real run now would not start.
    preview = run_playbook(work, "rotate.yml", inv, "rotate", OUTSIDE, vault_server, env=env, check=True)
    assert preview.rc != 0, preview
    assert preview.ran_on("db1"), "the preview did not run"
    assert ("maintenance_window", "localhost", "fail") in [c[:3] for c in preview.checks()]
    assert preview.task("Say why nothing changes")["msg"].startswith(
        "Check mode outside the maintenance window: the preview runs")
    assert current(vault_client, path)[0] == 1 and can_login(pg_cluster, user, old)
    assert lock_versions(vault_client, environment) == 0

    inside = run_playbook(work, "rotate.yml", inv, "rotate", INSIDE, vault_server, env=env)
    assert inside.rc == 0, inside
    checks = inside.checks()
    assert ("maintenance_window", "localhost", "ok") in [c[:3] for c in checks], checks
    version, data = current(vault_client, path)
    assert version == 2 and data["password"] != old and can_login(pg_cluster, user, data["password"])
    assert lock_versions(vault_client, environment) == 2, "taken and given back"
    for secret in (old, data["password"], pg_cluster.password):
        assert secret not in outside.proc.stdout + inside.proc.stdout


# --- monthly.yml: the database maintenance ---------------------------------------------------------

NOBODY = "no_such_group"


def monthly_inventory(cluster, environment, **variables):
    """Only the database maintenance of monthly.yml has a host: db1, the primary."""
    db1 = {"upkeep_postgres_role": "primary",
           "upkeep_postgres_connection": {"login_host": cluster.host, "login_port": cluster.port,
                                          "login_user": "postgres"},
           "db_maintenance_databases": ["windowshop"], "db_maintenance_become_user": "",
           "db_maintenance_data_path": str(cluster.datadir), "db_maintenance_lock_timeout": 2}
    return inventory(environment, {"db1": db1}, {"postgres_primary": ["db1"]}, **variables)


# Play patterns are templated before any host exists: they come as extra vars, as an operator gives them.
MONTHLY_EXTRA = {"upkeep_monthly_hosts": NOBODY, "upkeep_restore_test_hosts": NOBODY,
                 "upkeep_monthly_patching": False, "upkeep_rotation_hosts": NOBODY,
                 "upkeep_rotation_app_hosts": NOBODY}


def vacuums(cluster):
    return cluster.scalar("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'orders'", dbname="windowshop")


@pytest.fixture(scope="module")
def windowshop(pg_cluster):
    """A table with 4000 dead rows that the monthly maintenance vacuums (autovacuum off for it)."""
    pg_cluster.execute("CREATE DATABASE windowshop")
    for statement in ("CREATE TABLE orders (id int, note text) WITH (autovacuum_enabled = off)",
                      "INSERT INTO orders SELECT g, 'n' FROM generate_series(1, 6000) g",
                      "ANALYZE orders", "DELETE FROM orders WHERE id > 2000"):
        pg_cluster.execute(statement, dbname="windowshop")
    return pg_cluster


def test_monthly_maintenance_waits_for_the_window_but_its_dry_run_does_not(windowshop, vault_server, vault_client,
                                                                          work):
    cluster = windowshop
    environment = "lab-" + uuid.uuid4().hex[:8]
    env = {"PGPASSWORD": cluster.password}
    real = dict(MONTHLY_EXTRA, db_maintenance_dry_run=False)

    outside = run_playbook(work, "monthly.yml", monthly_inventory(cluster, environment), "monthly", OUTSIDE,
                           vault_server, extra=real, env=env)
    assert_refused_outside(outside, "db1", environment, vault_client)
    assert vacuums(cluster) == 0
    assert not [c for c in outside.checks() if c[0].startswith("db_maintenance")]
    # Nested imports (patch.yml, rotate.yml) asked no second time: one failed window check.
    assert [c[:3] for c in outside.checks() if c[1] == "localhost"] == [("maintenance_window", "localhost", "fail")]

    dry = run_playbook(work, "monthly.yml", monthly_inventory(cluster, environment), "monthly", OUTSIDE,
                       vault_server, extra=MONTHLY_EXTRA, env=env)
    assert dry.rc != 0, dry  # the window's failed check still ends the run as failed
    assert [c for c in dry.checks() if c[0] == "db_maintenance:windowshop"][0][3].startswith(
        "check mode (dry run), nothing changed")
    assert vacuums(cluster) == 0 and lock_versions(vault_client, environment) == 0

    inside = run_playbook(work, "monthly.yml", monthly_inventory(cluster, environment), "monthly", INSIDE,
                          vault_server, extra=real, env=env)
    assert inside.rc == 0, inside
    done = [c for c in inside.checks() if c[0] == "db_maintenance:windowshop:vacuum:public.orders"]
    assert done and done[0][2] == "ok", inside.checks()
    assert vacuums(cluster) == 1
    assert lock_versions(vault_client, environment) == 2, "the monthly run took the lock once and gave it back"


def test_monthly_maintenance_refuses_while_another_run_holds_the_lock(windowshop, vault_server, vault_client, work):
    cluster = windowshop
    environment = "lab-" + uuid.uuid4().hex[:8]
    hold_lock(vault_server, environment)
    before = vacuums(cluster)
    run = run_playbook(work, "monthly.yml", monthly_inventory(cluster, environment), "monthly", INSIDE, vault_server,
                       extra=dict(MONTHLY_EXTRA, db_maintenance_dry_run=False), env={"PGPASSWORD": cluster.password})
    assert_refused_by_lock(run, "db1", environment, vault_client)
    assert vacuums(cluster) == before


# --- restore.yml --------------------------------------------------------------------------------

def test_restore_waits_for_the_window_unless_overridden(windowshop, vault_server, vault_client, s3_server, s3_bucket,
                                                        work, tmp_path):
    cluster = windowshop
    backup = make_backup(cluster, "windowshop", tmp_path / "backups")["path"]
    prefix = "window-" + uuid.uuid4().hex[:6]
    mirror(s3_server.client(), s3_bucket, prefix, backup, _manifest.load_manifest(backup))
    environment = "lab-" + uuid.uuid4().hex[:8]
    db1 = {"upkeep_postgres_connection": {"login_host": cluster.host, "login_port": cluster.port,
                                          "login_user": "postgres"}}
    inv = inventory(environment, {"db1": db1}, {"postgres_primary": ["db1"]})
    fetch_dir = tmp_path / "fetched"
    extra = {"restore_host": "db1", "restore_database": "windowshop", "restore_become_user": "",
             "restore_s3_bucket": s3_bucket, "restore_s3_prefix": prefix,
             "restore_s3_endpoint_url": s3_server.endpoint_url, "restore_dir": str(fetch_dir)}
    env = {"PGPASSWORD": cluster.password, "AWS_ACCESS_KEY_ID": s3_server.access_key,
           "AWS_SECRET_ACCESS_KEY": s3_server.secret_key, "AWS_DEFAULT_REGION": s3_server.region}

    def databases():
        return {row[0] for row in cluster.execute("SELECT datname FROM pg_database")}

    outside = run_playbook(work, "restore.yml", inv, "restore", OUTSIDE, vault_server, env=env,
                           extra=dict(extra, restore_target_database="windowshop_outside"))
    assert_refused_outside(outside, "db1", environment, vault_client)
    assert "windowshop_outside" not in databases() and not fetch_dir.exists()

    # An emergency restore outside the window names its reason; the report keeps it.
    override = run_playbook(work, "restore.yml", inv, "restore", OUTSIDE, vault_server, env=env,
                            extra=dict(extra, restore_target_database="windowshop_now",
                                       upkeep_window_override="INC-42 the primary lost its disk"))
    assert override.rc == 0, override
    (window,) = [c for c in override.checks() if c[0] == "maintenance_window"]
    assert window[2] == "warn" and window[3].startswith("outside the maintenance window (outside every window;")
    assert window[3].endswith("run anyway: INC-42 the primary lost its disk (upkeep_window_override)")
    assert ("restore", "db1", "ok") in [c[:3] for c in override.checks()]
    assert cluster.scalar("SELECT count(*) FROM orders", dbname="windowshop_now") == 2000
    assert lock_versions(vault_client, environment) == 2


# --- dr_drill.yml -------------------------------------------------------------------------------

def drill_inventory(environment):
    # dr1 runs nothing real here: the role's own preflight (no dr_drill_source_host) is the first
    # thing it would do, which shows whether the play got past the window and the lock.
    return inventory(environment, {"dr1": {}}, {"restore_targets": ["dr1"]})


PREFLIGHT = ("upkeep.runbooks.dr_drill", "Assert the drill settings are usable")  # (role, task)


def test_a_rehearsal_waits_for_the_window_and_a_drill_does_not(vault_server, vault_client, work):
    environment = "lab-" + uuid.uuid4().hex[:8]
    outside = run_playbook(work, "dr_drill.yml", drill_inventory(environment), "annually", OUTSIDE, vault_server,
                           extra={"dr_drill_kind": "rehearsal"})
    assert_refused_outside(outside, "dr1", environment, vault_client)

    inside = run_playbook(work, "dr_drill.yml", drill_inventory(environment), "annually", INSIDE, vault_server,
                          extra={"dr_drill_kind": "rehearsal"})
    assert PREFLIGHT[1] in [task for _play, task in inside.ran_on("dr1")], inside
    assert inside.task(PREFLIGHT[1], "dr1")["failed"], "dr1 has no drill settings here"
    assert lock_versions(vault_client, environment) == 1, "the rehearsal took the lock"

    # A drill touches only the DR host: no window question, it goes ahead outside the window.
    other = "lab-" + uuid.uuid4().hex[:8]
    drill = run_playbook(work, "dr_drill.yml", drill_inventory(other), "quarterly", OUTSIDE, vault_server)
    assert not [r for _p, task, _h, r in drill.results() if task == "Check the maintenance window" and not r.get(
        "skipped")]
    assert PREFLIGHT[1] in [task for _play, task in drill.ran_on("dr1")], drill
    assert lock_versions(vault_client, other) == 1, "the drill took the lock"


def test_a_drill_refuses_while_another_run_holds_the_lock(vault_server, vault_client, work):
    environment = "lab-" + uuid.uuid4().hex[:8]
    hold_lock(vault_server, environment)
    run = run_playbook(work, "dr_drill.yml", drill_inventory(environment), "quarterly", INSIDE, vault_server)
    assert_refused_by_lock(run, "dr1", environment, vault_client)


def test_the_annual_rehearsal_waits_for_the_window_and_the_quarterly_drill_takes_the_lock(vault_server, vault_client,
                                                                                        work):
    """annually.yml and quarterly.yml run the same role in their own plays, with the settings on the DR host."""
    environment = "lab-" + uuid.uuid4().hex[:8]
    inv = inventory(environment, {"dr1": {"upkeep_dr_enabled": True, "upkeep_dr_rehearsal_enabled": True}},
                    {"restore_targets": ["dr1"]})
    outside = run_playbook(work, "annually.yml", inv, "annually", OUTSIDE, vault_server,
                           extra={"upkeep_annually_hosts": NOBODY})
    assert_refused_outside(outside, "dr1", environment, vault_client)

    hold_lock(vault_server, environment)
    quarterly = run_playbook(work, "quarterly.yml", inv, "quarterly", OUTSIDE, vault_server,
                             extra={"upkeep_quarterly_hosts": NOBODY})
    assert_refused_by_lock(quarterly, "dr1", environment, vault_client)

    # Without a rehearsal the annual run asks no window and needs no lock: the lock held above does not stop it.
    plain = inventory(environment, {"dr1": {"upkeep_dr_enabled": True}}, {"restore_targets": ["dr1"]})
    annual = run_playbook(work, "annually.yml", plain, "annually", OUTSIDE, vault_server,
                          extra={"upkeep_annually_hosts": NOBODY})
    assert annual.report is not None and not [f for f in annual.failures() if f[1] == "localhost" and "lock" in f[0]]
    assert not [c for c in annual.checks() if c[0] == "maintenance_window"], annual.checks()
    assert lock_versions(vault_client, environment) == 1
