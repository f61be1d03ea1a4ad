"""The order playbooks/patch.yml gives a rollout, and how monthly.yml and the inventories use it.

tests/integration/test_patch_playbook.py runs the playbook on containers; this file pins the parts of
its shape an innocent edit could break: the window first, every staging host planning before the first
changes, staging before the promotion, production
application hosts, then replicas, the primary last, every rollout play one host at a time, and the
stop of the rollout at the first failed host.
"""

import pathlib
import subprocess
import sys

import yaml

from ansible_collections.upkeep.runbooks.plugins.modules import maintenance_window
from tests.unit.module_helpers import run_module_main

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load(relative):
    with open(ROOT / relative) as handle:
        return yaml.safe_load(handle)


def roles_of(play):
    return [(role["role"], (role.get("vars") or {}).get("patching_stage")) for role in play.get("roles", [])]


def test_patch_playbook_order():
    everything = load("playbooks/patch.yml")
    # the maintenance window first (the shared playbook, asked only when there are hosts to patch), then
    # the run lock, given back before the report (docs/awx.md "Maintenance window first", "Run lock")
    assert everything[0]["ansible.builtin.import_playbook"] == "maintenance_window.yml"
    assert "inventory_hostnames" in everything[0]["vars"]["upkeep_window_needed"]
    assert everything[1]["ansible.builtin.import_playbook"] == "run_lock_acquire.yml"
    assert everything[-2]["ansible.builtin.import_playbook"] == "run_lock_release.yml"
    window = load("playbooks/maintenance_window.yml")[0]["tasks"][0]["block"][0]
    assert window["upkeep.runbooks.maintenance_window"]["windows"] == "{{ upkeep_maintenance_windows }}"
    plays = [play for play in everything if "hosts" in play]
    assert [play["hosts"] for play in plays] == [
        "{{ upkeep_patch_staging_hosts | default('patch_staging') }}",
        "{{ upkeep_patch_staging_hosts | default('patch_staging') }}",
        "localhost",
        "{{ upkeep_patch_production_hosts | default('patch_production') }}:&app",
        "{{ upkeep_patch_production_hosts | default('patch_production') }}:&postgres_replica",
        "{{ upkeep_patch_production_hosts | default('patch_production') }}:&postgres_primary",
        "localhost",
    ]
    # every staging host plans at once (read-only), before the first one changes
    assert "serial" not in plays[0]
    assert plays[0]["tasks"][0]["ansible.builtin.include_role"] == {"name": "upkeep.runbooks.patching",
                                                                    "tasks_from": "plan"}
    assert plays[2]["tasks"][0]["ansible.builtin.include_role"] == {"name": "upkeep.runbooks.patching",
                                                                    "tasks_from": "promote"}
    rollout = [plays[1]] + plays[3:6]
    for play in rollout:
        assert play["serial"] == 1, play["name"]
        assert "strategy" not in play and "throttle" not in play
    assert [roles_of(play) for play in rollout] == [[("upkeep.runbooks.patching", "staging")]] + \
        [[("upkeep.runbooks.patching", "production")]] * 3
    assert plays[-1]["roles"][0]["role"] == "upkeep.runbooks.report"
    assert plays[-1]["roles"][0]["vars"]["report_result_vars"] == ["window_results", "patching_results"]


def test_a_failed_host_stops_the_rollout():
    main = load("roles/patching/tasks/main.yml")
    patch_block = [task for task in main if "block" in task][0]
    assert [task["ansible.builtin.import_tasks"] for task in patch_block["block"]] == ["gates.yml", "apply.yml",
                                                                                        "verify.yml"]
    assert patch_block["rescue"][0]["ansible.builtin.import_tasks"] == "rollback.yml"
    # The window step comes before anything that changes the host ...
    steps = [task.get("ansible.builtin.import_tasks") for task in main]
    assert steps.index("window.yml") < steps.index("baseline.yml")
    # ... the rescue marks the rollout halted on localhost, which the window step of every later host reads.
    halt = load("roles/patching/tasks/rollback.yml")[-1]
    assert halt["delegate_to"] == "localhost" and halt["delegate_facts"] is True
    assert "patching_halted" in halt["ansible.builtin.set_fact"]
    window = load("roles/patching/tasks/window.yml")
    end = window[-1]
    assert end["ansible.builtin.meta"] == "end_host"
    decide = [task for task in window if "__patching_not_started" in task.get("ansible.builtin.set_fact", {})][0]
    assert "hostvars['localhost'].patching_halted" in decide["ansible.builtin.set_fact"]["__patching_not_started"]


def test_monthly_imports_patching_and_reports_it():
    plays = load("playbooks/monthly.yml")
    imports = [play.get("ansible.builtin.import_playbook") for play in plays]
    assert imports.index("patch.yml") < imports.index("rotate.yml")
    patching = plays[imports.index("patch.yml")]
    assert patching["vars"]["upkeep_patch_report"] is False
    report = plays[-1]["roles"][0]["vars"]
    assert {"window_results", "patching_results"} <= set(report["report_result_vars"])
    assert "patch_staging:patch_production" in report["report_host_pattern"]


def inventory_groups(name):
    proc = subprocess.run([str(pathlib.Path(sys.executable).parent / "ansible-inventory"), "-i",
                           str(ROOT / "inventories" / name), "--list"], capture_output=True, text=True, check=True,
                          cwd=str(ROOT))
    data = yaml.safe_load(proc.stdout)

    def hosts(group):
        found = list(data.get(group, {}).get("hosts", []))
        for child in data.get(group, {}).get("children", []):
            found += hosts(child)
        return sorted(set(found))

    return hosts


def test_example_inventories_split_staging_and_production():
    staging = inventory_groups("staging")
    assert staging("patch_production") == []
    assert staging("patch_staging") == sorted(staging("app") + staging("postgres"))
    production = inventory_groups("production")
    assert production("patch_staging") == []
    assert production("patch_production") == sorted(production("app") + production("postgres"))
    for name in ("staging", "production"):
        windows = load("inventories/%s/group_vars/all.yml" % name)["upkeep_maintenance_windows"]
        assert windows and all({"name", "rrule", "duration", "cutoff"} <= set(window) for window in windows)
        # the examples are windows the module reads (a Monday evening in Berlin, 18:30 CET)
        answer = run_module_main(maintenance_window, {"windows": windows, "now": "2026-12-07T17:30:00Z"})
        assert answer.exit_code == 0, answer
        assert answer["may_start"] is (name == "staging"), answer["reason"]
