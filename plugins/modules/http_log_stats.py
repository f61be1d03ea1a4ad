#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: http_log_stats
short_description: Error rate and latency from an nginx access log, over the period since the last run
version_added: 0.1.0
description:
  - Reads the lines an nginx access log got since the last run and returns the number of requests, the 5xx rate,
    the p50, p95 and p99 of C($request_time) and the slowest paths.
  - Health checks and static files are not counted (O(health_check_paths), O(static_paths)).
  - The position (inode and byte offset) is kept in O(state_file). A log rotated since the last run is handled -
    the rest of the rotated file (found by its inode among O(rotated_paths)) is read first, then the new file from
    its start, so nothing is lost and nothing is counted twice. A truncated file (copytruncate) is read from its
    start.
  - "The log must use nginx's C(combined) format followed by C($request_time) (further fields such as
    C($upstream_response_time) may follow):
    C(log_format upkeep '$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent
    \"$http_referer\" \"$http_user_agent\" $request_time $upstream_response_time';)
    and C(access_log /var/log/nginx/access.log upkeep;). See docs/http-error-rate.md."
  - Percentiles are nearest-rank (always one of the measured times, no interpolation), computed from counts per
    millisecond of C($request_time), so memory does not grow with the number of requests.
  - The module judges nothing; the P(upkeep.runbooks.http_health#role) role turns the numbers into check results
    against its thresholds (error rate 5 %, p95 2 s by default).
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
attributes:
  check_mode:
    support: full
    description: Check mode reads and counts the same lines but does not save the position, so the next run covers
      the same period again.
  diff_mode:
    support: none
    description: Only the module's own state file is written.
options:
  path:
    description: The access log.
    type: path
    default: /var/log/nginx/access.log
  state_file:
    description:
      - Where the position is kept (JSON, mode 0600, written atomically).
      - Defaults to C(/var/lib/upkeep-runbooks/http_log_stats/) plus O(path) with C(/) replaced by C(_), plus
        C(.json).
    type: path
  rotated_paths:
    description:
      - Glob patterns where the rotated log may be, searched for the inode of the file read last time.
      - Defaults to O(path) plus C(.1) (logrotate with C(delaycompress), as Debian's nginx package sets it up).
    type: list
    elements: path
  health_check_paths:
    description: Regular expressions (searched in the request path, without query string) of health checks.
    type: list
    elements: str
    default: ['^/healthz/?$', '^/health/?$', '^/ping/?$', '^/nginx_status$']
  static_paths:
    description: Regular expressions (searched in the request path) of static files.
    type: list
    elements: str
    default: ['^/static/', '^/media/', '^/favicon\.ico$', '^/robots\.txt$']
  slowest_count:
    description: How many of the slowest paths (by their p95) to return.
    type: int
    default: 10
  normalize_ids:
    description: Replace numeric and UUID path segments by C({id}) when grouping paths.
    type: bool
    default: true
notes:
  - Lines that do not match the format are counted in RV(unparsed_lines) (with one sample), never guessed at.
  - When the log was rotated twice between runs (or the rotated file was compressed already), the lines written to
    the file read last time after the saved offset cannot be read; RV(notes) says so.
"""

EXAMPLES = r"""
- name: Error rate and latency of the web tier since yesterday's run
  upkeep.runbooks.http_log_stats:
    path: /var/log/nginx/access.log
    health_check_paths: ['^/healthz/$', '^/-/ready$']
  register: http

- name: Fail on more than 5 % server errors
  ansible.builtin.assert:
    that: (http.error_rate_percent | default(0, true)) < 5
"""

RETURN = r"""
requests:
  description: Requests counted (not health checks, not static files).
  returned: success
  type: int
  sample: 1200
errors_5xx:
  description: Requests answered with a 5xx status.
  returned: success
  type: int
  sample: 12
error_rate_percent:
  description: C(errors_5xx) in percent of C(requests); null when there were no requests.
  returned: success
  type: float
  sample: 1.0
status_classes:
  description: Requests per status class.
  returned: success
  type: dict
  sample: {1xx: 0, 2xx: 1100, 3xx: 40, 4xx: 48, 5xx: 12}
p50_seconds:
  description: Median C($request_time) (nearest rank); null without requests.
  returned: success
  type: float
  sample: 0.012
p95_seconds:
  description: 95th percentile of C($request_time) (nearest rank); null without requests.
  returned: success
  type: float
  sample: 0.48
p99_seconds:
  description: 99th percentile of C($request_time) (nearest rank); null without requests.
  returned: success
  type: float
  sample: 1.9
max_seconds:
  description: The longest C($request_time).
  returned: success
  type: float
  sample: 3.2
slowest_paths:
  description: The slowest paths by p95 (then by request count), at most O(slowest_count).
  returned: success
  type: list
  elements: dict
  sample: [{path: "/orders/{id}/", requests: 40, errors_5xx: 2, p95_seconds: 1.9, max_seconds: 3.2,
            total_seconds: 21.4}]
excluded:
  description: Lines left out as health checks and as static files.
  returned: success
  type: dict
  sample: {health_checks: 1440, static: 310}
unparsed_lines:
  description: Lines that are not in the expected format.
  returned: success
  type: int
  sample: 0
unparsed_sample:
  description: The first such line (cut to 300 characters), null when there was none.
  returned: success
  type: str
  sample: null
lines_read:
  description: Complete lines read in this period, all kinds.
  returned: success
  type: int
  sample: 2950
period:
  description: C(from) (the time of the last run, null on the first) and C(to) (now), UTC ISO 8601.
  returned: success
  type: dict
  sample: {from: "2026-12-01T06:00:02Z", to: "2026-12-02T06:00:01Z"}
sources:
  description: The byte ranges read, in order (the rotated file first when there was a rotation).
  returned: success
  type: list
  elements: dict
  sample: [{path: /var/log/nginx/access.log.1, from: 80211, to: 90433}, {path: /var/log/nginx/access.log, from: 0,
            to: 1204}]
state_file:
  description: Where the position is kept.
  returned: success
  type: str
  sample: /var/lib/upkeep-runbooks/http_log_stats/_var_log_nginx_access.log.json
notes:
  description: What the module noticed (first run, rotation, truncation, lost lines, position not saved).
  returned: success
  type: list
  elements: str
  sample: ["/var/log/nginx/access.log was rotated since the last run: read the rest of
           /var/log/nginx/access.log.1 first"]
"""

import datetime  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - after the documentation
from ansible_collections.upkeep.runbooks.plugins.module_utils import _http_log  # noqa: E402

STATE_DIR = "/var/lib/upkeep-runbooks/http_log_stats"


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/var/log/nginx/access.log"),
            state_file=dict(type="path"),
            rotated_paths=dict(type="list", elements="path"),
            health_check_paths=dict(type="list", elements="str", default=list(_http_log.DEFAULT_HEALTH_CHECK_PATHS)),
            static_paths=dict(type="list", elements="str", default=list(_http_log.DEFAULT_STATIC_PATHS)),
            slowest_count=dict(type="int", default=10),
            normalize_ids=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"]
    state_file = params["state_file"] or "%s/%s.json" % (STATE_DIR, path.replace("/", "_"))
    rotated = params["rotated_paths"] if params["rotated_paths"] is not None else [path + ".1"]
    if params["slowest_count"] < 0:
        module.fail_json(msg="slowest_count must be 0 or more, got %d" % params["slowest_count"])
    now = _now()
    try:
        tally = _http_log.Tally(
            _http_log.compile_patterns(params["health_check_paths"], "health check"),
            _http_log.compile_patterns(params["static_paths"], "static file"),
            normalize=params["normalize_ids"],
        )
        state = _http_log.read_state(state_file)
        position, sources, notes = _http_log.collect(path, state, rotated, tally)
        summary = tally.summary(params["slowest_count"])
        if summary["lines_read"] and summary["unparsed_lines"] == summary["lines_read"]:
            module.fail_json(
                msg="Failed to read request times from %s: none of its %d new lines is in the expected format"
                    " (nginx combined followed by $request_time): %s" % (path, summary["lines_read"],
                                                                         _http_log.LOG_FORMAT),
                unparsed_sample=summary["unparsed_sample"], state_file=state_file)
        # changed: the position moved (new lines were read). The time of the run is saved either way, so the
        # next run's period starts here.
        changed = state is None or any(position.get(k) != state.get(k) for k in ("path", "inode", "device", "offset"))
        position["time"] = now
        if module.check_mode:
            notes.append("Check mode: the position was not saved; the next run covers this period again")
        else:
            _http_log.write_state(state_file, position)
    except _http_log.HttpLogError as exc:
        module.fail_json(msg=str(exc), state_file=state_file)
    summary.update(
        changed=changed,
        period={"from": (state or {}).get("time"), "to": now},
        sources=sources,
        state_file=state_file,
        notes=notes,
    )
    module.exit_json(**summary)


if __name__ == "__main__":
    main()
