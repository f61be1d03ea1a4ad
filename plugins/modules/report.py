#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: report
short_description: Write the report of a runbook run (report.json and report.html)
version_added: 0.1.0
description:
  - Ends every cadence run (daily, weekly, monthly, quarterly, annually) and every on-demand
    runbook. Takes the check results the run collected, each
    C({check, host, status, value, threshold, message}) with status C(ok), C(warn) or C(fail),
    and writes a machine-readable C(report.json) and a self-contained C(report.html) for people.
  - The files go to C(<dest>/<cadence>/<YYYYmmddTHHMMSSZ>/) (UTC). When that directory already
    exists a suffix C(-2), C(-3), ... is added; an existing report is never overwritten.
    C(<dest>/<cadence>/latest) is a symlink, replaced atomically, to the newest report directory.
  - Both files are written to a temporary name in the same directory, flushed to disk and renamed,
    mode C(0640); directories the module creates get C(0750). C(latest) moves only after both
    files are complete.
  - Every expected host in O(hosts) that produced no result gets a C(fail) result
    C(host_results_missing). Every malformed result becomes a C(fail) result
    C(report_invalid_result) naming what is wrong; the report is still written.
  - Values, thresholds and O(run) are redacted defensively before anything is written or returned,
    see the notes.
  - The module does not fail when checks failed. The playbook decides, typically with
    M(ansible.builtin.fail) when RV(summary.status) is V(fail); see the examples and C(docs/report.md).
  - Runs on the controller. Call it once per run with C(delegate_to=localhost) and C(run_once=true).
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - The report is written in check mode too. It is the evidence of the run on the controller,
        not state managed on a host, and a check-mode run needs its evidence as much as any other.
      - The report records C(run.check_mode=true) so a check-mode report cannot be mistaken for a
        real run.
  diff_mode:
    support: none
    details:
      - A new report directory is created on every run; there is no earlier state to compare.
  platform:
    platforms: posix
options:
  cadence:
    description:
      - Name of the run, used as a directory name and in the report title, for example V(daily),
        V(weekly), V(monthly), V(quarterly), V(annually), or a runbook such as V(restore).
      - Lower case letters, digits, V(_) and V(-) only.
    type: str
    required: true
  results:
    description:
      - The check results of the run, each a dict with the keys C(check), C(host), C(status)
        (V(ok), V(warn) or V(fail)), C(value), C(threshold) and C(message), as built by the
        P(upkeep.runbooks.check_result#filter), P(upkeep.runbooks.check_evaluate#filter) and
        P(upkeep.runbooks.disk_checks#filter) filters.
      - Nested lists are flattened, so the per-host lists of a play can be passed without
        C(flatten).
      - Elements are accepted as they come (V(raw)) so that one malformed element is reported as a
        C(report_invalid_result) failure instead of aborting the report; keys other than the six
        above are dropped.
    type: list
    elements: raw
    required: true
  hosts:
    description:
      - The hosts expected to report, usually C(ansible_play_hosts_all) (which still lists hosts that
        failed or were unreachable).
      - Each of them without a single result gets a C(fail) result C(host_results_missing).
    type: list
    elements: str
    default: []
  dest:
    description:
      - Directory that holds the reports of every cadence. Created (mode C(0750)) when missing.
      - A relative path is relative to the directory C(ansible-playbook) was started from; prefer
        an absolute path, for example C({{ playbook_dir }}/../reports).
    type: path
    default: reports
  run:
    description:
      - Metadata about the run, copied into the C(run) object of the report, for example
        C(playbook), C(inventory), C(limit), C(ansible_version) and C(controller_user).
      - C(check_mode) is always set to a boolean, true when the module runs in check mode or the
        caller passed a true C(check_mode) (pass C(ansible_check_mode) when the task itself sets
        C(check_mode=false)). C(controller_user) and C(ansible_version) are filled in when not given.
    type: dict
    default: {}
  history:
    description:
      - Keep the run history C(<dest>/<cadence>/history.json) (see C(docs/report.md), section History)
        and add the C(What changed since the last run) section and the C(Trends) charts to the report.
      - The history is JSON Lines (schema 2, a header line and then one line per run), read one run at a
        time, so the memory the report needs does not grow with the file. A schema-1 history (one JSON
        document, written by earlier versions) is read and rewritten as schema 2 by the next real run.
      - The history is read and appended under an exclusive lock (C(history.lock)) and written
        atomically. Damage is reported as the C(fail) result C(report_history) naming the file and
        each damaged line; the next real run keeps the file as it was under
        C(history.json.damaged-<UTC stamp>) and carries every readable run over (a file whose header
        cannot be read is moved there and a new history starts). It is never silently reset.
        Damage in another cadence's history is a C(warn) result C(report_history:<cadence>).
      - Check-mode runs read the history but do not append to it.
    type: bool
    default: true
  capacity:
    description:
      - Add the capacity plan, computed from the histories of every cadence under O(dest), with the
        growth per day of each database and volume (Theil-Sen), the dates each volume reaches its
        warn and fail limits and 100 %, connection peaks, and verdict sentences.
      - V(summary) gives verdicts and tables (monthly); V(full) adds a projection chart per volume
        (annually); V(none) leaves the section out.
      - Needs O(history).
    type: str
    choices: [none, summary, full]
    default: none
  history_policy:
    description:
      - Retention of the history. C(full_days) (default 35) keeps every run; up to C(daily_days)
        (default 800) the last run of each UTC day is kept, compacted to its numbers; up to
        C(weekly_days) (default 1900) the last run of each ISO week; older runs are dropped;
        C(max_runs) (default 5000) caps the file.
    type: dict
    default: {}
  timestamp:
    description:
      - Time of the report in ISO 8601, for example V(2024-05-01T02:30:00Z); converted to UTC.
        A time without an offset is taken as UTC.
      - Defaults to now. Meant for tests and for re-rendering an earlier run.
    type: str
notes:
  - "Redaction: a key in a value, a threshold or O(run) whose name holds a secret word
    (C(password), C(passwd), C(passphrase), C(secret), C(token), C(credentials)) or names key
    material (C(private_key), C(api_key), C(secret_key), C(signing_key), ...) has its value replaced
    by C(********), at any depth. Names that only describe a secret (C(password_age_days),
    C(token_ttl), C(private_key_path)) and look-alikes (C(monkey), C(s3_key)) are kept.
    Passwords inside URLs (C(scheme://user:password@host)) are masked in every string."
  - Redaction is a safety net. Checks must not put secrets into results in the first place.
  - The layout on disk and the JSON schema (schema_version 1) are described in C(docs/report.md)
    of the collection, with a JSON Schema in C(docs/report.schema.json); the history format
    (schema_version 2) is described there too, section History.
seealso:
  - name: Report layout and schema
    description: docs/report.md in the upkeep.runbooks collection.
    link: https://example.invalid/upkeep/runbooks/docs/report.md
"""

EXAMPLES = r"""
- name: Write the daily report
  upkeep.runbooks.report:
    cadence: daily
    results: "{{ ansible_play_hosts_all | map('extract', hostvars, 'daily_results') | select('defined') | list }}"
    hosts: "{{ ansible_play_hosts_all }}"
    dest: "{{ playbook_dir }}/../reports"
    run:
      playbook: "{{ ansible_play_name }}"
      inventory: "{{ ansible_inventory_sources }}"
      limit: "{{ ansible_limit | default('') }}"
      ansible_version: "{{ ansible_version.full }}"
  delegate_to: localhost
  run_once: true
  register: daily_report

- name: Hand the summary to AWX / Automation Controller
  ansible.builtin.set_stats:
    data:
      upkeep_report: "{{ daily_report.summary }}"
      upkeep_report_html: "{{ daily_report.html_path }}"
  run_once: true

- name: Fail the run when a check failed (warnings do not fail it)
  ansible.builtin.fail:
    msg: >-
      {{ daily_report.summary.fail }} check(s) failed, see {{ daily_report.html_path }}:
      {{ daily_report.failures | map(attribute='message') | join('; ') }}
  when: daily_report.summary.status == 'fail'
  run_once: true

- name: Report of an on-demand restore, with a fixed time for a test
  upkeep.runbooks.report:
    cadence: restore
    results: "{{ restore_results }}"
    hosts: [db-test1]
    dest: /var/lib/upkeep/reports
    timestamp: "2024-05-01T02:30:00Z"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
dir:
  description: The directory this report was written to.
  returned: success
  type: str
  sample: /srv/upkeep/reports/daily/20240501T023000Z
json_path:
  description: Path of C(report.json).
  returned: success
  type: str
  sample: /srv/upkeep/reports/daily/20240501T023000Z/report.json
html_path:
  description: Path of C(report.html).
  returned: success
  type: str
  sample: /srv/upkeep/reports/daily/20240501T023000Z/report.html
latest:
  description: Path of the C(latest) symlink of the cadence, which now points at RV(dir).
  returned: success
  type: str
  sample: /srv/upkeep/reports/daily/latest
summary:
  description: The summary of the report, the same object as C(summary) in C(report.json).
  returned: success
  type: dict
  contains:
    total:
      description: Number of results in the report, including the ones the report added.
      type: int
      sample: 42
    ok:
      description: Number of results with status C(ok).
      type: int
      sample: 39
    warn:
      description: Number of results with status C(warn).
      type: int
      sample: 2
    fail:
      description: Number of results with status C(fail).
      type: int
      sample: 1
    status:
      description:
        - The worst status of all results; V(ok) when there are none.
        - V(fail) means the run should exit non-zero; V(warn) does not.
      type: str
      choices: [ok, warn, fail]
      sample: fail
    hosts:
      description: The worst status per host.
      type: dict
      sample: {"db1": "fail", "db2": "ok", "app1": "warn"}
history:
  description: What happened to the history of the cadence.
  returned: success
  type: dict
  contains:
    enabled:
      description: Whether O(history) was on.
      type: bool
      sample: true
    path:
      description: Path of the history file.
      type: str
      returned: when O(history) is true
      sample: /srv/upkeep/reports/daily/history.json
    problem:
      description: Why the history could not be read, or null.
      type: str
      returned: when O(history) is true
      sample: null
    set_aside:
      description: Where a damaged history was moved, or null.
      type: str
      returned: when O(history) is true
      sample: null
    recorded:
      description: Whether this run was appended (false in check mode).
      type: bool
      returned: when O(history) is true
      sample: true
    runs:
      description: Number of runs in the history after this one.
      type: int
      returned: when O(history) is true
      sample: 91
    schema_version:
      description: Schema version of the history file after this run (2 once written; 1 for a schema-1
        history that a check-mode run only read; a newer one's own version, left alone; null when there
        was none).
      type: int
      returned: when O(history) is true
      sample: 2
    migrated:
      description: Whether this run rewrote a schema-1 history as schema 2.
      type: bool
      returned: when this run was recorded
      sample: false
changes:
  description: The C(changes) object of C(report.json), see C(docs/report.md).
  returned: when O(history) is true
  type: dict
  sample: {"previous_at": "2024-04-30T02:30:00Z", "cadence": "daily", "statuses": [], "values": []}
capacity:
  description: The C(capacity) object of C(report.json) (volumes, databases, connections, verdicts).
  returned: when O(capacity) is not V(none)
  type: dict
  sample: {"verdicts": [{"level": "warn", "text": "db1's database volume grows 250.0 MiB/day and reaches ..."}]}
failures:
  description: The results with status C(fail), in report order (by host, then check).
  returned: success
  type: list
  elements: dict
  contains:
    host:
      description: Inventory name of the host.
      type: str
      sample: db1
    check:
      description: Name of the check.
      type: str
      sample: disk_free:database
    message:
      description: What was found, in words.
      type: str
      sample: "database (/var/lib/postgresql) on /var/lib/postgresql: 8.0 % free (16.0 GiB of 200.0 GiB),
        at or below the fail limit of 10 %; inodes 99.2 % free"
warns:
  description:
    - The results with status C(warn), in report order, shaped like RV(failures).
    - Named C(warns) because C(warnings) is reserved in module results for Ansible's own warnings.
  returned: success
  type: list
  elements: dict
  contains:
    host:
      description: Inventory name of the host.
      type: str
      sample: app1
    check:
      description: Name of the check.
      type: str
      sample: celery_queue_depth
    message:
      description: What was found, in words.
      type: str
      sample: celery queue length is 740, at or above the warn limit of 500
"""

import getpass  # noqa: E402 - Ansible modules import after their documentation
import traceback  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.parsing.convert_bool import boolean  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._history import DEFAULT_POLICY  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._report import (  # noqa: E402
    CADENCE_RE,
    ReportError,
    findings,
    redact,
    run_report,
)

try:
    from ansible.module_utils.ansible_release import __version__ as ANSIBLE_VERSION
except ImportError:  # pragma: no cover - always present in ansible-core
    ANSIBLE_VERSION = None


def _controller_user():
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER, as in some containers
        return None


def _policy(raw):
    """history_policy -> {name: int}; unknown names and non-numbers are errors a user can fix."""
    policy = {}
    for key, value in (raw or {}).items():
        if key not in DEFAULT_POLICY:
            raise ReportError(f"history_policy has unknown key {key!r} (known: {', '.join(sorted(DEFAULT_POLICY))})")
        try:
            policy[key] = int(value)
        except (TypeError, ValueError):
            raise ReportError(f"history_policy.{key} must be a whole number, got {value!r}") from None
        if policy[key] < 0:
            raise ReportError(f"history_policy.{key} must not be negative, got {value!r}")
    return policy


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cadence=dict(type="str", required=True),
            results=dict(type="list", elements="raw", required=True),
            hosts=dict(type="list", elements="str", default=[]),
            dest=dict(type="path", default="reports"),
            run=dict(type="dict", default={}),
            timestamp=dict(type="str"),
            history=dict(type="bool", default=True),
            capacity=dict(type="str", choices=["none", "summary", "full"], default="none"),
            history_policy=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    params = module.params
    # The arguments carry the raw results: echo them redacted, like the report itself.
    invocation = {"module_args": redact(dict(params))}

    cadence = params["cadence"]
    if not CADENCE_RE.match(cadence):
        module.fail_json(
            msg=f"Failed to write report: cadence {cadence!r} must contain only a-z, 0-9, '_' and '-'",
            invocation=invocation,
        )

    run = dict(params["run"] or {})
    # A --check run stays a check-mode run in the evidence even when the task forces check_mode: false.
    run["check_mode"] = bool(module.check_mode or boolean(run.get("check_mode") or False, strict=False))
    if not run.get("controller_user"):
        run["controller_user"] = _controller_user()
    if not run.get("ansible_version"):
        run["ansible_version"] = ANSIBLE_VERSION

    try:
        policy = _policy(params["history_policy"])
        report, paths, history = run_report(
            params["results"], cadence, params["dest"], params["hosts"], run, params["timestamp"],
            history=params["history"], capacity=params["capacity"] if params["history"] else "none",
            policy=policy, record=not run["check_mode"])
    except ReportError as exc:
        module.fail_json(msg=f"Failed to write report: {exc}", invocation=invocation)
    except Exception as exc:  # the report is the run's evidence: say why it is missing, never crash
        module.fail_json(
            msg=f"Failed to write report: {type(exc).__name__}: {exc}",
            exception=traceback.format_exc(),
            invocation=invocation,
        )

    extra = {"history": history}
    if "changes" in report:
        extra["changes"] = report["changes"]
    if "capacity" in report:
        extra["capacity"] = report["capacity"]
    module.exit_json(
        changed=True,
        **extra,
        dir=paths["dir"],
        json_path=paths["json_path"],
        html_path=paths["html_path"],
        latest=paths["latest"],
        summary=report["summary"],
        failures=findings(report, "fail"),
        warns=findings(report, "warn"),
        invocation=invocation,
    )


if __name__ == "__main__":
    main()
