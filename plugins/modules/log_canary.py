#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: log_canary
short_description: Prove that hosts' logs reach the central collector with a unique canary line
version_added: 0.1.0
description:
  - "O(mode=emit), on each host: writes one unique line, C(upkeep-canary host=<name> id=<32 hex digits>), through
    the host's own syslog with C(logger) (to C(/dev/log), or O(socket)), so it travels the way every other log line
    does: the local syslog daemon, its forwarding rule, the network, the collector."
  - "O(mode=verify), on the collector: follows the files the collector writes (O(paths), glob patterns) until the
    line of every host in O(expected) has arrived or O(timeout) seconds have passed. The module fails, naming each
    host whose line did not arrive, unless O(fail_on_missing=false)."
  - Both modes change nothing on any host but the one log line.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
attributes:
  check_mode:
    support: full
    description: The canary is a log line, not a change; check mode writes and looks for it just the same.
  diff_mode:
    support: none
    description: Nothing is changed.
options:
  mode:
    description: C(emit) writes the line on this host; C(verify) looks for the lines on the collector.
    type: str
    choices: [emit, verify]
    required: true
  name:
    description: With O(mode=emit), the host's name as the report knows it (usually C(inventory_hostname)).
    type: str
  run_id:
    description: With O(mode=emit), the id to write instead of a random one (32 hex digits recommended).
    type: str
  socket:
    description: With O(mode=emit), the syslog socket to write to; the default is logger's (C(/dev/log)).
    type: path
  tag:
    description: With O(mode=emit), the syslog tag.
    type: str
    default: upkeep-canary
  priority:
    description: With O(mode=emit), the syslog facility.level.
    type: str
    default: user.notice
  expected:
    description: With O(mode=verify), host name to canary id (the RV(id) each host's emit returned).
    type: dict
  paths:
    description:
      - With O(mode=verify), glob patterns of the files the collector writes the forwarded lines to
        (for example C(/var/log/remote/*.log)).
    type: list
    elements: path
  timeout:
    description: With O(mode=verify), seconds to wait for all lines.
    type: float
    default: 60
  poll_interval:
    description: With O(mode=verify), seconds between two looks at the files.
    type: float
    default: 1
  scan_bytes:
    description: With O(mode=verify), how far before the current end of each file to start looking, in bytes.
    type: int
    default: 16777216
  fail_on_missing:
    description: With O(mode=verify), fail when a line did not arrive (the role sets it to false and reports).
    type: bool
    default: true
requirements:
  - logger (util-linux, on every Debian host) for O(mode=emit).
"""

EXAMPLES = r"""
- name: Write the canary on every host
  upkeep.runbooks.log_canary:
    mode: emit
    name: "{{ inventory_hostname }}"
  register: canary

- name: Look for every host's canary on the collector
  upkeep.runbooks.log_canary:
    mode: verify
    expected: "{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, ['canary', 'id']))) }}"
    paths: [/var/log/remote/*.log]
    timeout: 60
  delegate_to: logs1
  run_once: true
"""

RETURN = r"""
id:
  description: The canary's id (O(mode=emit)).
  returned: mode is emit
  type: str
  sample: 3f0c2a8e9b1d4c7fa6e5d4c3b2a19081
line:
  description: The line written (O(mode=emit)).
  returned: mode is emit
  type: str
  sample: upkeep-canary host=app1 id=3f0c2a8e9b1d4c7fa6e5d4c3b2a19081
written_at:
  description: When the line was written, UTC ISO 8601 (O(mode=emit)).
  returned: mode is emit
  type: str
  sample: "2026-12-02T06:00:01Z"
arrived:
  description: Per host whose line arrived, the file it was found in and the seconds the check waited.
  returned: mode is verify
  type: dict
  sample: {app1: {path: /var/log/remote/app1.log, waited_seconds: 0.0}}
missing:
  description: Hosts whose line did not arrive within O(timeout).
  returned: mode is verify
  type: list
  elements: str
  sample: [db2]
"""

import datetime  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - after the documentation
from ansible_collections.upkeep.runbooks.plugins.module_utils import _canary  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=dict(
            mode=dict(type="str", choices=["emit", "verify"], required=True),
            name=dict(type="str"),
            run_id=dict(type="str"),
            socket=dict(type="path"),
            tag=dict(type="str", default="upkeep-canary"),
            priority=dict(type="str", default="user.notice"),
            expected=dict(type="dict"),
            paths=dict(type="list", elements="path"),
            timeout=dict(type="float", default=60),
            poll_interval=dict(type="float", default=1),
            scan_bytes=dict(type="int", default=16777216),
            fail_on_missing=dict(type="bool", default=True),
        ),
        required_if=[("mode", "emit", ["name"]), ("mode", "verify", ["expected", "paths"])],
        supports_check_mode=True,
    )
    params = module.params
    try:
        if params["mode"] == "emit":
            line, ident = _canary.new_line(params["name"], params["run_id"])
            logger = module.get_bin_path("logger", required=True)
            _canary.emit(module.run_command, logger, params["name"], line, params["tag"], params["priority"],
                         params["socket"])
            module.exit_json(changed=False, id=ident, line=line, written_at=datetime.datetime.now(
                datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        expected = dict((str(k), str(v)) for k, v in params["expected"].items())
        if params["timeout"] < 0 or params["poll_interval"] <= 0 or params["scan_bytes"] < 0:
            module.fail_json(msg="timeout and scan_bytes must be 0 or more and poll_interval more than 0")
        arrived, missing = _canary.verify(expected, params["paths"], params["timeout"], params["poll_interval"],
                                          params["scan_bytes"])
    except _canary.CanaryError as exc:
        module.fail_json(msg=str(exc))
    result = dict(changed=False, arrived=arrived, missing=missing)
    if missing and params["fail_on_missing"]:
        module.fail_json(msg="Log-shipping canary did not arrive within %s s from: %s (looked in %s)"
                         % (_plain(params["timeout"]), ", ".join(missing), ", ".join(params["paths"])), **result)
    module.exit_json(**result)


def _plain(number):
    return ("%d" % number) if float(number).is_integer() else ("%s" % number)


if __name__ == "__main__":
    main()
