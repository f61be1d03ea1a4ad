"""controller/ (AWX objects as code) checked statically.

Every key of every object is an option of its awx.awx module (read from `ansible-doc -j`,
once per test session), playbooks/controller_configure.yml passes every key the files use,
the job templates follow the house rules (no prompts, no surveys, one run at a time, a
timeout, the pinned EE, a failure notification), every schedule's recurrence rule is one
AWX accepts, parses with python-dateutil, and its next occurrences are the ones docs/awx.md
lists; the credential types inject the environment variables the modules fall back to.
No playbook or role asks a question: no vars_prompt, no pause without a timeout.
"""

import datetime
import json
import os
import pathlib
import re
import subprocess
import sys
import zoneinfo

import pytest
import yaml
from dateutil.rrule import rrulestr

from ansible_collections.upkeep.runbooks.plugins.module_utils import _s3, _vault, _window

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONTROLLER = ROOT / "controller"

# controller/ variable (infra.controller_configuration's name) -> awx.awx module
OBJECTS = {
    "controller_organizations": "organization",
    "controller_credential_types": "credential_type",
    "controller_credentials": "credential",
    "controller_execution_environments": "execution_environment",
    "controller_projects": "project",
    "controller_inventories": "inventory",
    "controller_inventory_sources": "inventory_source",
    "controller_notifications": "notification_template",
    "controller_templates": "job_template",
    "controller_schedules": "schedule",
}
CADENCES = ["daily", "weekly", "monthly", "quarterly", "annually"]
ON_DEMAND = ["rotate", "restore", "patch", "dr_drill"]
# Runbooks that change production: their templates start with the maintenance window
# (playbooks/maintenance_window.yml), then the run lock (docs/awx.md "Maintenance window first").
WINDOWED = ["monthly", "rotate", "restore", "patch", "dr_drill"]
# The plays of those runbooks that change their hosts, and the gate each starts with; patching
# asks the window before every host in its role (roles/patching/tasks/window.yml).
GATED_ROLES = {"upkeep.runbooks.credential_rotation", "upkeep.runbooks.db_maintenance", "upkeep.runbooks.dr_drill"}
# Playbooks other work is writing in parallel; the templates reference them already.
PENDING_PLAYBOOKS = {"playbooks/patch.yml", "playbooks/dr_drill.yml"}


class _Loader(yaml.SafeLoader):
    """safe_load that reads Ansible's !unsafe tag as the plain string it marks."""


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load(path):
    with open(path) as handle:
        return yaml.load(handle, Loader=_Loader) or {}  # noqa: S506 - SafeLoader subclass


@pytest.fixture(scope="session")
def controller():
    objects = {}
    for path in sorted(CONTROLLER.glob("*.yml")):
        for name, value in load(path).items():
            assert name not in objects, "%s is defined twice in controller/" % name
            objects[name] = value
    return objects


@pytest.fixture(scope="session")
def awx_options():
    """Option names of each awx.awx module, from one ansible-doc call per session."""
    modules = ["awx.awx.%s" % m for m in sorted(set(OBJECTS.values()))]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    doc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-doc"), "-j", *modules],
                         capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    data = json.loads(doc.stdout)
    return {name.split(".")[-1]: set(entry["doc"]["options"]) for name, entry in data.items()}


def by_name(controller, variable):
    return {obj["name"]: obj for obj in controller[variable]}


def test_every_list_is_known(controller):
    assert set(OBJECTS) - {"controller_organizations"} <= set(controller)
    unknown = [name for name in controller if name.startswith("controller_") and name not in OBJECTS]
    assert not unknown, "no awx.awx module mapped for %s" % unknown


@pytest.mark.parametrize("variable", sorted(OBJECTS))
def test_every_key_is_a_module_option(controller, awx_options, variable):
    options = awx_options[OBJECTS[variable]]
    for obj in controller.get(variable, []):
        unknown = sorted(set(obj) - options)
        assert not unknown, "%s %r: %s not options of awx.awx.%s" % (
            variable, obj.get("name"), unknown, OBJECTS[variable])


def test_configure_playbook_passes_every_key(controller):
    plays = load(ROOT / "playbooks" / "controller_configure.yml")
    passed = {}
    for task in plays[0]["tasks"]:
        module = next(k for k in task if k.startswith("awx.awx."))
        loop = re.search(r"\{\{\s*(controller_\w+)\s*\}\}", task["loop"]).group(1)
        passed.setdefault(loop, set()).update(task[module])
        assert task[module].get("state") == "present", "%s: only creates and updates" % task["name"]
    assert set(passed) == {v for v in OBJECTS if v in controller}
    for variable, keys in passed.items():
        for obj in controller[variable]:
            missing = sorted(set(obj) - keys)
            assert not missing, "%s %r: controller_configure.yml does not pass %s" % (variable, obj["name"], missing)


def test_job_templates_follow_the_rules(controller):
    templates = by_name(controller, "controller_templates")
    assert set(templates) == {"upkeep %s" % name for name in CADENCES + ON_DEMAND}
    credentials = set(by_name(controller, "controller_credentials"))
    ees = set(by_name(controller, "controller_execution_environments"))
    notifications = set(by_name(controller, "controller_notifications"))
    for name, tpl in templates.items():
        runbook = name.split(" ", 1)[1]
        assert tpl["playbook"] == "playbooks/%s.yml" % runbook
        assert (ROOT / tpl["playbook"]).is_file() or tpl["playbook"] in PENDING_PLAYBOOKS, tpl["playbook"]
        assert tpl["allow_simultaneous"] is False, name
        assert isinstance(tpl["timeout"], int) and 0 < tpl["timeout"] <= 8 * 3600, name
        assert tpl["execution_environment"] in ees, name
        assert tpl["notification_templates_error"] and set(tpl["notification_templates_error"]) <= notifications
        assert set(tpl["credentials"]) <= credentials, name
        assert tpl["survey_enabled"] is False and "survey_spec" not in tpl, name
        prompts = [key for key, value in tpl.items() if key.startswith("ask_") and value]
        assert not prompts, "%s prompts on launch: %s" % (name, prompts)
        assert tpl["extra_vars"]["report_s3_enabled"] is True, "AWX jobs keep their reports in S3"
        assert tpl["extra_vars"]["upkeep_run_lock_ttl"] == "%ds" % tpl["timeout"], "lock expiry = job timeout"


def test_runbooks_that_change_production_start_with_the_window_then_the_lock(controller):
    templates = by_name(controller, "controller_templates")
    for runbook in WINDOWED:
        plays = load(ROOT / templates["upkeep %s" % runbook]["playbook"])
        imports = [play.get("ansible.builtin.import_playbook") for play in plays]
        assert imports[0] == "maintenance_window.yml", (runbook, imports[0])
        # only plays on localhost (restore.yml's check of its inputs) before the lock
        lock = imports.index("run_lock_acquire.yml")
        assert all(play.get("hosts") == "localhost" for play in plays[1:lock]), runbook
        assert lock < imports.index("run_lock_release.yml"), runbook
        changing = [play for play in plays
                    if GATED_ROLES & {role["role"] for role in play.get("roles", [])} or play.get("name") ==
                    "Restore a backup"]
        assert changing or runbook == "patch", runbook
        for play in changing:
            assert plays.index(play) > lock, (runbook, play["name"])
            gate = play["pre_tasks"][0]
            assert gate["ansible.builtin.import_tasks"] == "tasks/window_gate.yml", (runbook, play["name"])
        report = plays[-1]["roles"][0]["vars"]
        assert "window_results" in report["report_result_vars"], runbook
    # patch.yml (imported by monthly.yml) asks only when it has hosts, rotate.yml always: both keep
    # the answer monthly.yml already has (one question per run).
    window = load(ROOT / "playbooks" / "maintenance_window.yml")[0]["tasks"][0]
    assert "upkeep_window_checked is not defined" in window["when"]


def test_scheduled_runs_that_change_production_start_inside_its_window(controller):
    """The schedules of the windowed templates start where production's window lets a run start."""
    windows = load(ROOT / "inventories" / "production" / "group_vars" / "all.yml")["upkeep_maintenance_windows"]
    reference, _documented = documented_occurrences()
    checked = set()
    for schedule in controller["controller_schedules"]:
        # annually.yml asks the window when it rehearses (a DR host with upkeep_dr_rehearsal_enabled)
        if schedule["unified_job_template"].split(" ", 1)[1] not in WINDOWED + ["annually"]:
            continue
        rule = parse(schedule["rrule"])
        zone = zoneinfo.ZoneInfo(re.search(r"TZID=([^:]+):", schedule["rrule"]).group(1))
        after = reference.astimezone(zone)
        for _ in range(24):
            after = rule.after(after)
            answer = _window.evaluate(windows, now=after.isoformat())
            assert answer["may_start"], (schedule["name"], after.isoformat(), answer["reason"])
        checked.add(schedule["unified_job_template"])
    assert checked == {"upkeep monthly", "upkeep annually"}, checked


def test_execution_environment_is_pinned(controller):
    settings = load(CONTROLLER / "settings.yml")
    for ee in controller["controller_execution_environments"]:
        image = settings["upkeep_controller_ee_image"] if "upkeep_controller_ee_image" in ee["image"] else ee["image"]
        assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), image
        assert ee["pull"] != "always"


# AWX's own checks of a schedule's rrule (awx/api/serializers.py, SchedulePreviewSerializer).
def awx_rrule_problems(rule):
    problems = []
    if not re.match(r"^DTSTART;TZID=[\w/+-]+:\d{8}T\d{6} RRULE:\S+$", rule):
        problems.append("not 'DTSTART;TZID=<zone>:<local time> RRULE:...' on one line")
    if re.match(r".*?BYDAY[:=][0-9]+[a-zA-Z]{2}", rule):
        problems.append("BYDAY with numeric prefix")
    if re.match(r".*?BYMONTHDAY[:=][0-9]+,-*[0-9]+", rule):
        problems.append("multiple BYMONTHDAYs")
    if re.match(r".*?BYMONTH[:=][0-9]+,[0-9]+", rule):
        problems.append("multiple BYMONTHs")
    if "BYYEARDAY" in rule or "BYWEEKNO" in rule or "FREQ=MINUTELY" in rule or "FREQ=SECONDLY" in rule:
        problems.append("a part AWX refuses")
    if "INTERVAL=" not in rule:
        problems.append("no INTERVAL")
    return problems


def parse(rule):
    return rrulestr(rule.replace(" RRULE:", "\nRRULE:"))


def documented_occurrences():
    """docs/awx.md's schedule table: name -> (reference time, [next occurrences])."""
    text = (ROOT / "docs" / "awx.md").read_text()
    ref = re.search(r"next occurrences after `([^`]+)`", text)
    assert ref, "docs/awx.md names no reference time for the schedule table"
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`upkeep ") and cells[1].startswith("`DTSTART"):
            rows[cells[0].strip("`")] = re.findall(r"`([^`]+)`", cells[2])
    return datetime.datetime.fromisoformat(ref.group(1)), rows


def test_schedules_parse_and_match_the_docs(controller):
    templates = set(by_name(controller, "controller_templates"))
    reference, documented = documented_occurrences()
    schedules = by_name(controller, "controller_schedules")
    assert set(documented) == set(schedules), "docs/awx.md lists other schedules than controller/schedules.yml"
    assert {s["unified_job_template"] for s in schedules.values()} == {"upkeep %s" % c for c in CADENCES}
    for name, schedule in schedules.items():
        assert schedule["unified_job_template"] in templates
        assert not awx_rrule_problems(schedule["rrule"]), (name, awx_rrule_problems(schedule["rrule"]))
        rule = parse(schedule["rrule"])
        zone = zoneinfo.ZoneInfo(re.search(r"TZID=([^:]+):", schedule["rrule"]).group(1))
        after = reference.astimezone(zone)
        upcoming = []
        for _ in documented[name]:
            after = rule.after(after)
            upcoming.append(after.isoformat(timespec="minutes"))
        assert upcoming == documented[name], name


def test_a_rule_awx_refuses_is_caught():
    assert awx_rrule_problems("DTSTART;TZID=Europe/Berlin:20260106T220000 RRULE:FREQ=MONTHLY;INTERVAL=1;BYDAY=1TU")
    assert awx_rrule_problems("DTSTART:20260106T220000 RRULE:FREQ=DAILY;INTERVAL=1")
    assert awx_rrule_problems("DTSTART;TZID=Europe/Berlin:20260106T220000\nRRULE:FREQ=DAILY;INTERVAL=1")


def env_fallbacks(spec):
    names = set()
    for option in spec.values():
        fallback = option.get("fallback")
        if fallback:
            names.update(fallback[1])
    return names


def test_credential_types_inject_what_the_modules_read(controller):
    known = env_fallbacks(_vault.vault_common_argument_spec()) | env_fallbacks(_s3.s3_common_argument_spec())
    for ctype in controller["controller_credential_types"]:
        fields = {f["id"]: f for f in ctype["inputs"]["fields"]}
        env = ctype["injectors"]["env"]
        assert set(env) <= known, "%s injects %s, which no module reads" % (ctype["name"], sorted(set(env) - known))
        for var, template in env.items():
            used = re.findall(r"\{\{\s*(\w+)", template)
            assert set(used) <= set(fields), (ctype["name"], var)
            for field in used:
                assert field in ctype["inputs"]["required"], "%s: %s injected but optional" % (ctype["name"], field)
        for field in fields.values():
            if field["id"] in ("secret_id", "secret_key"):
                assert field.get("secret") is True, "%s.%s must be a secret field" % (ctype["name"], field["id"])


def _tasks(node):
    """Every task dict under a play or task list, through blocks and handlers."""
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        if any(k in node for k in ("block", "rescue", "always")):
            for key in ("block", "rescue", "always"):
                yield from _tasks(node.get(key) or [])
        else:
            yield node
        for key in ("tasks", "pre_tasks", "post_tasks", "handlers"):
            yield from _tasks(node.get(key) or [])


PLAYBOOK_FILES = sorted(
    list((ROOT / "playbooks").glob("*.yml")) + list(ROOT.glob("roles/*/tasks/*.yml"))
    + list(ROOT.glob("roles/*/handlers/*.yml")) + list(ROOT.glob("molecule/*/*.yml"))
    + [ROOT / "lab" / "provision.yml"])


def waits_for_a_person(content):
    """What in a playbook or task file would wait for an answer AWX cannot give."""
    found = []
    if not isinstance(content, list):
        return found
    for play in content:
        if isinstance(play, dict) and "vars_prompt" in play:
            found.append("vars_prompt in play %r" % play.get("name"))
    for task in _tasks(content):
        for key in ("pause", "ansible.builtin.pause", "ansible.legacy.pause"):
            if key in task:
                args = task[key] if isinstance(task[key], dict) else {}
                if not (args.get("seconds") or args.get("minutes")):
                    found.append("pause without a timeout in task %r" % task.get("name"))
    return found


@pytest.mark.parametrize("path", PLAYBOOK_FILES, ids=[str(p.relative_to(ROOT)) for p in PLAYBOOK_FILES])
def test_nothing_waits_for_a_person(path):
    assert not waits_for_a_person(load(path)), "%s would hang an AWX job" % path


def test_a_prompt_is_caught():
    play = [{"name": "p", "hosts": "all", "vars_prompt": [{"name": "x"}],
             "tasks": [{"block": [{"name": "ask", "ansible.builtin.pause": {"prompt": "go?"}}]},
                       {"name": "wait", "ansible.builtin.pause": {"seconds": 5}}]}]
    assert waits_for_a_person(play) == ["vars_prompt in play 'p'", "pause without a timeout in task 'ask'"]
