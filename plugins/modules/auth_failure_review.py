#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: auth_failure_review
short_description: Count failed logins since the last run in PostgreSQL, sshd and Django logs
version_added: 0.1.0
description:
  - Reads what each log in O(logs) gained since the previous run of this module on the host and counts
    failed logins per user and per source address, the top offenders, and the change against the previous
    run's counts.
  - PostgreSQL (stderr log format), namely C(password authentication failed) (and the other
    C(... authentication failed) methods), C(no pg_hba.conf entry) and C(pg_hba.conf rejects connection).
    The client address comes from C(%h) or C(%r) in O(logs[].log_line_prefix), else from the
    C(connection received) line C(log_connections=on) writes for the same process. Successful logins are
    C(connection authorized) lines (C(log_connections)).
  - sshd (C(auth.log) / syslog format, or the journal), namely
    C(Failed <method> for [invalid user] <user> from <address>) (rsyslog's C(message repeated N times)
    counted N times) and C(Accepted ... for <user> from <address>).
  - 'Django, one JSON line per signal, C({"event": "user_login_failed", "username": ..., "ip": ...}) and
    C(user_logged_in), as the receivers in C(docs/platform-health.md) write them.'
  - A successful login from an address right after O(success_after_failures) or more consecutive failures
    from it (also across runs) is flagged in RV(suspicious_successes) and fails a check.
  - The position in each log (device, inode, offset and a hash of the file's first bytes) is kept in
    O(state_file), so a log rotated between runs is finished from the rotated file (found by inode, or by
    its first bytes when compressed) before the new one is read, and nothing is counted twice or lost.
  - Every finding is also a check result in RV(checks) for M(upkeep.runbooks.report).
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
attributes:
  check_mode:
    support: full
    description:
      - Reads and counts everything, but does not write O(state_file), so the next real run counts the same
        lines again.
      - Writing O(state_file) is bookkeeping and never reported as C(changed); RV(state_file.written) says
        whether it was written.
  diff_mode:
    support: none
    description: The state file is bookkeeping; it is not diffed.
options:
  logs:
    description: The logs to read.
    type: list
    elements: dict
    required: true
    suboptions:
      kind:
        description: What writes the log.
        type: str
        required: true
        choices: [postgres, sshd, django]
      path:
        description: The log file. Exactly one of O(logs[].path) and O(logs[].journal_unit).
        type: path
      journal_unit:
        description:
          - A systemd unit whose journal is read with C(journalctl) instead of a file (the cursor is kept in
            O(state_file)).
        type: str
      name:
        description: Label of this log in results and in the state file; defaults to C(<kind>:<path or unit>).
        type: str
      log_line_prefix:
        description:
          - The server's C(log_line_prefix) (O(logs[].kind=postgres) only). Include C(%h) or C(%r) for client
            addresses, or set C(log_connections=on).
        type: str
        default: "%m [%p] %q%u@%d "
      rotated_dir:
        description: Directory logrotate moves old files to (C(olddir)); the log's own directory by default.
        type: path
  state_file:
    description: Where the positions and the previous run's counts are kept (JSON, mode 0600, written atomically).
    type: path
    default: /var/lib/upkeep-runbooks/auth_failure_review.json
  first_run:
    description:
      - What a log without a saved position contributes. V(beginning) counts the whole current file (the journal
        of the last 24 hours), V(end) only remembers where it ends.
    type: str
    choices: [beginning, end]
    default: beginning
  top:
    description: How many users and source addresses RV(top_users) and RV(top_sources) list.
    type: int
    default: 10
  success_after_failures:
    description: Consecutive failures from one address after which a success from it is flagged; V(0) disables it.
    type: int
    default: 5
  failures_warn:
    description: Failed logins in the period, all logs together, at or above which C(auth_failures) warns.
    type: int
    default: 50
  failures_fail:
    description: Failed logins in the period at or above which C(auth_failures) fails.
    type: int
    default: 500
  source_failures_warn:
    description: Failed logins from one address at or above which C(auth_failures_by_source) warns.
    type: int
    default: 10
  source_failures_fail:
    description: Failed logins from one address at or above which C(auth_failures_by_source) fails.
    type: int
    default: 100
  host_label:
    description: Host name put into each check result (normally C(inventory_hostname)).
    type: str
    default: localhost
notes:
  - Follows one rotation between runs (or a chain while each rotated file keeps its name prefix in the same
    directory and the oldest still exists). A log rotated more often than the module runs loses the middle
    files, and RV(logs[].gaps) says so.
  - The module needs to read the logs (root, or the C(adm) group on Debian for C(/var/log/auth.log) and
    C(/var/log/postgresql)).
  - See C(docs/platform-health.md) for each check, its threshold and what to do when it fails.
"""

EXAMPLES = r"""
- name: Review failed logins on the database host
  upkeep.runbooks.auth_failure_review:
    logs:
      - kind: postgres
        path: /var/log/postgresql/postgresql-15-main.log
        log_line_prefix: "%m [%p] %q%u@%d %h "
      - kind: sshd
        path: /var/log/auth.log
    host_label: "{{ inventory_hostname }}"
  become: true
  register: auth_review

- name: The application's failed logins from its journal
  upkeep.runbooks.auth_failure_review:
    logs:
      - kind: django
        journal_unit: sampleapp-web.service
      - kind: sshd
        journal_unit: ssh.service
    state_file: /var/lib/upkeep-runbooks/auth_app.json
  become: true
"""

RETURN = r"""
period:
  description: The period counted, from the previous run (null on the first) to now, ISO 8601 UTC.
  returned: always
  type: dict
  sample: {"from": "2026-12-01T03:00:01+00:00", "to": "2026-12-02T03:00:02+00:00"}
total:
  description: Failed logins in the period, all logs together.
  returned: always
  type: int
  sample: 23
successes:
  description: Successful logins seen in the period (only where the log records them).
  returned: always
  type: int
  sample: 4
by_kind:
  description: Failed logins per kind of log (C(postgres), C(sshd), C(django)).
  returned: always
  type: dict
  sample: {"postgres": 20, "sshd": 3, "django": 0}
by_user:
  description: Failed logins per attempted user name (at most 1000 names, the most frequent).
  returned: always
  type: dict
  sample: {"postgres": 20, "root": 3}
by_source:
  description: Failed logins per source address (at most 1000 addresses); C(unknown) when the log does not say.
  returned: always
  type: dict
  sample: {"127.0.12.7": 20, "192.0.2.10": 3}
top_sources:
  description: The O(top) addresses with the most failures, with the kinds of log and the user names they tried.
  returned: always
  type: list
  elements: dict
  sample: [{"address": "127.0.12.7", "failures": 20, "kinds": ["postgres"], "users": ["app"], "distinct_users": 1}]
top_users:
  description: The O(top) user names with the most failures.
  returned: always
  type: list
  elements: dict
  sample: [{"user": "app", "failures": 20}]
suspicious_successes:
  description: Successful logins right after O(success_after_failures) or more failures from the same address.
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "sshd", "log": "sshd:/var/log/auth.log", "address": "192.0.2.10", "user": "deploy",
            "failures_before": 12}]
previous:
  description: The previous run's C(total), C(by_kind) and time; null on the first run.
  returned: always
  type: dict
change:
  description: This run's counts minus the previous run's (C(total), C(by_kind)); null on the first run.
  returned: always
  type: dict
  sample: {"total": 5, "by_kind": {"postgres": 5, "sshd": 0, "django": 0}}
logs:
  description: What was read from each log.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The log's label.
      type: str
    kind:
      description: C(postgres), C(sshd) or C(django).
      type: str
    lines:
      description: Lines read in this run.
      type: int
    failures:
      description: Failed logins counted in it.
      type: int
    rotated_from:
      description: The rotated file that was finished first; null when the log was not rotated.
      type: str
    gaps:
      description: Why some lines may have been missed (rotation not followed, truncation, unreadable log).
      type: list
      elements: str
state_file:
  description: O(state_file), and whether it was written (never in check mode).
  returned: always
  type: dict
  contains:
    path:
      description: O(state_file).
      type: str
      sample: /var/lib/upkeep-runbooks/auth_failure_review.json
    written:
      description: Whether the positions and counts were saved (false in check mode).
      type: bool
      sample: true
checks:
  description: One check result per finding, C({check, host, status, value, threshold, message}).
  returned: always
  type: list
  elements: dict
"""

import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._auth_log import (  # noqa: E402
    DEFAULT_LOG_LINE_PREFIX,
    KINDS,
    Review,
    parser_for,
)
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import evaluate, result  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._failure import Failure  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._files import write_atomic  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._logfollow import read_since  # noqa: E402

STATE_VERSION = 1
MAX_LISTED = 1000


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def load_state(path):
    try:
        with open(path, "r", encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise Failure("Failed to read the state file %s: %s (move it away to start counting afresh)"
                      % (path, exc)) from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise Failure("Failed to read the state file %s: schema version %r, this module writes %d"
                      % (path, data.get("version") if isinstance(data, dict) else None, STATE_VERSION))
    return data


def read_journal(module, unit, cursor, first_run):
    argv = ["journalctl", "--unit", unit, "--output", "short-iso", "--no-pager", "--quiet", "--show-cursor"]
    if cursor:
        argv += ["--after-cursor", cursor]
    elif first_run == "end":
        argv += ["--lines", "0"]
    else:
        argv += ["--since", "-24h"]
    rc, out, err = module.run_command(argv)
    if rc != 0:
        raise OSError("journalctl --unit %s failed (%s): %s" % (unit, rc, (err or out).strip()))
    lines = out.splitlines()
    new_cursor = cursor
    if lines and lines[-1].startswith("-- cursor: "):
        new_cursor = lines.pop()[len("-- cursor: "):]
    return lines, new_cursor


def _clip(counts):
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_LISTED])


def review(module, params, state):
    previous_sources = (state or {}).get("sources", {})
    new_sources = {}
    rev = Review(params["success_after_failures"], (state or {}).get("streaks"))
    logs_out = []
    for spec in params["logs"]:
        kind = spec["kind"]
        where = spec.get("path") or spec.get("journal_unit")
        name = spec.get("name") or "%s:%s" % (kind, where)
        saved = previous_sources.get(name) or {}
        parser = parser_for(kind, spec.get("log_line_prefix") or DEFAULT_LOG_LINE_PREFIX)
        entry = {"name": name, "kind": kind, "lines": 0, "failures": 0, "rotated_from": None, "gaps": []}
        try:
            if spec.get("path"):
                lines, position, info = read_since(
                    spec["path"], saved.get("position"), "end" if params["first_run"] == "end" else "beginning",
                    spec.get("rotated_dir"))
                entry["rotated_from"] = info["rotated_from"]
                entry["gaps"] = info["gaps"]
                new_state = {"position": position}
            else:
                lines, cursor = read_journal(module, spec["journal_unit"], saved.get("cursor"), params["first_run"])
                new_state = {"cursor": cursor}
        except OSError as exc:
            entry["gaps"].append("could not read %s: %s" % (where, exc.strerror or exc))
            new_sources[name] = saved  # keep the old position: read it next time
            logs_out.append(entry)
            continue
        before = rev.total
        for line in lines:
            event = parser.parse(line)
            if event is not None:
                rev.add(kind, event, name)
        entry["lines"] = len(lines)
        entry["failures"] = rev.total - before
        new_sources[name] = new_state
        logs_out.append(entry)
    return rev, logs_out, new_sources


def judge(out, params, host):
    checks = []
    change = out["change"]
    delta = ""
    if change is not None:
        delta = ", %+d against the last report" % change["total"]
    by_kind = ", ".join("%s %d" % (k, out["by_kind"].get(k, 0)) for k in KINDS)
    item = evaluate("auth_failures", host, out["total"], params["failures_warn"], params["failures_fail"],
                    what="failed logins since the last run")
    item["message"] += " (%s)%s" % (by_kind, delta)
    checks.append(item)

    top = out["top_sources"][0] if out["top_sources"] else None
    if top is None:
        checks.append(result("auth_failures_by_source", host, "ok", None,
                             {"warn": params["source_failures_warn"], "fail": params["source_failures_fail"]},
                             "no failed login from any address"))
    else:
        item = evaluate("auth_failures_by_source", host, top["failures"], params["source_failures_warn"],
                        params["source_failures_fail"], what="failed logins from %s" % top["address"])
        item["value"] = {"address": top["address"], "failures": top["failures"], "users": top["users"]}
        item["message"] += " (%s; users %s)" % (", ".join(top["kinds"]), ", ".join(top["users"]) or "-")
        checks.append(item)

    sus = out["suspicious_successes"]
    if sus:
        text = "; ".join("%s login of %s from %s after %d failures from it" % (
            s["kind"], s["user"], s["address"], s["failures_before"]) for s in sus)
        checks.append(result("auth_success_after_failures", host, "fail", sus,
                             {"failures_before": params["success_after_failures"]}, text))
    else:
        checks.append(result("auth_success_after_failures", host, "ok", [],
                             {"failures_before": params["success_after_failures"]},
                             "no successful login right after repeated failures"))

    gaps = [(log["name"], g) for log in out["logs"] for g in log["gaps"]]
    if gaps:
        checks.append(result("auth_log_coverage", host, "warn", [pair[0] for pair in gaps], None,
                             "; ".join("%s: %s" % pair for pair in gaps)))
    else:
        checks.append(result("auth_log_coverage", host, "ok", [log["name"] for log in out["logs"]], None,
                             "every log was read completely since the last run"))
    return checks


def main():
    module = AnsibleModule(
        argument_spec=dict(
            logs=dict(type="list", elements="dict", required=True, options=dict(
                kind=dict(type="str", required=True, choices=list(KINDS)),
                path=dict(type="path"),
                journal_unit=dict(type="str"),
                name=dict(type="str"),
                log_line_prefix=dict(type="str", default=DEFAULT_LOG_LINE_PREFIX),
                rotated_dir=dict(type="path"),
            ), mutually_exclusive=[("path", "journal_unit")], required_one_of=[("path", "journal_unit")]),
            state_file=dict(type="path", default="/var/lib/upkeep-runbooks/auth_failure_review.json"),
            first_run=dict(type="str", choices=["beginning", "end"], default="beginning"),
            top=dict(type="int", default=10),
            success_after_failures=dict(type="int", default=5),
            failures_warn=dict(type="int", default=50),
            failures_fail=dict(type="int", default=500),
            source_failures_warn=dict(type="int", default=10),
            source_failures_fail=dict(type="int", default=100),
            host_label=dict(type="str", default="localhost"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    for low, high in (("failures_warn", "failures_fail"), ("source_failures_warn", "source_failures_fail")):
        if params[low] < 0 or params[low] > params[high]:
            module.fail_json(msg="Failed to validate %s: it must be 0 or more and not above %s" % (low, high))
    if params["top"] < 1 or params["success_after_failures"] < 0:
        module.fail_json(msg="Failed to validate top (>= 1) and success_after_failures (>= 0)")
    names = [spec.get("name") or "%s:%s" % (spec["kind"], spec.get("path") or spec.get("journal_unit"))
             for spec in params["logs"]]
    if len(set(names)) != len(names):
        module.fail_json(msg="Failed to validate logs: two entries have the same name; give them distinct names")

    try:
        state = load_state(params["state_file"])
        now = _now()
        rev, logs_out, new_sources = review(module, params, state)
        last = (state or {}).get("last_report")
        out = {
            "period": {"from": (state or {}).get("updated"), "to": now},
            "total": rev.total,
            "successes": rev.successes,
            "by_kind": rev.by_kind,
            "by_user": _clip(rev.by_user),
            "by_source": _clip(rev.by_source),
            "top_sources": rev.top_sources(params["top"]),
            "top_users": rev.top_users(params["top"]),
            "suspicious_successes": rev.suspicious,
            "previous": last,
            "change": None,
            "logs": logs_out,
        }
        if last:
            out["change"] = {
                "total": rev.total - last.get("total", 0),
                "by_kind": dict((k, rev.by_kind.get(k, 0) - (last.get("by_kind") or {}).get(k, 0)) for k in KINDS),
            }
        new_state = {
            "version": STATE_VERSION,
            "updated": now,
            "sources": new_sources,
            # Consecutive failures per "kind|address" still open at the end of this run.
            "streaks": rev.kept_streaks(),
            "last_report": {"at": now, "total": rev.total, "by_kind": rev.by_kind},
        }
        written = False
        if not module.check_mode:
            directory = os.path.dirname(os.path.abspath(params["state_file"]))
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o700)
            write_atomic(params["state_file"], json.dumps(new_state, indent=1, sort_keys=True) + "\n", mode=0o600)
            written = True
    except Failure as exc:
        module.fail_json(msg=exc.msg, **exc.extra)
    except OSError as exc:
        module.fail_json(msg="Failed to write the state file %s: %s" % (params["state_file"], exc))
    out["state_file"] = {"path": params["state_file"], "written": written}
    out["checks"] = judge(out, params, params["host_label"])
    # Moving the reader's positions is bookkeeping, not a change to the host: reporting it would make
    # every daily run "changed" (reading the logs produces new log lines), never idempotent.
    module.exit_json(changed=False, **out)


if __name__ == "__main__":
    main()
