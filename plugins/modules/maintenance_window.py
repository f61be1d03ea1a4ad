#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: maintenance_window
short_description: Say whether a runbook that changes production may start a host now
version_added: 0.1.0
description:
  - Answers whether now is inside an allowed maintenance window, whether a new host may start (RV(may_start)),
    which window applies and how much time is left, or when the next window opens.
  - A window is an RFC 5545 recurrence rule (RRULE, read with python-dateutil) in an IANA time zone, with a
    O(windows[].duration) and a O(windows[].cutoff). No new host starts after the end minus the cutoff; a host
    that started always finishes, so the module never asks a running host to stop.
  - O(freezes) forbid starting anything while they last, even inside a window. O(excluded_dates) and
    O(windows[].excluded_dates) drop the occurrences that start on those local dates.
  - Occurrences follow the window's local wall time; durations are real elapsed time. A start that does not exist
    (the hour skipped when clocks spring forward) is read with the UTC offset before the gap, so 02:30 becomes 03:30
    summer time; a start that exists twice (clocks fall back) is the first one. This is the rule of RFC 5545.
  - Returns a check result in RV(result) for the run report (M(upkeep.runbooks.report)).
  - Used as the first play of every runbook that changes production, and between batches of a rollout with
    O(started_at). Read-only; runs on the controller.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Read-only; runs unchanged in check mode and returns the same answer.
  diff_mode:
    support: none
    details:
      - Reads nothing but its options, there is nothing to diff.
  platform:
    platforms: posix
requirements:
  - python-dateutil (on the host running the module, normally the controller)
  - Python 3.9 or later (zoneinfo) and a time zone database (the system's, or the tzdata Python package)
options:
  windows:
    description:
      - The allowed maintenance windows. Now is inside when it is inside any of them.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the window, unique among O(windows); messages and the report use it.
        type: str
        required: true
      rrule:
        description:
          - An RFC 5545 recurrence rule, one C(RRULE) line with an optional C(DTSTART) line before it, for example
            C(DTSTART;TZID=Europe/Berlin:20260105T220000) and C(RRULE:FREQ=WEEKLY;BYDAY=TU,TH) on two lines.
          - C(DTSTART;TZID=<zone>:<local time>) gives the first start and the time zone;
            C(DTSTART:<local time>) is local to O(windows[].timezone); C(DTSTART:<time>Z) is UTC.
          - Without C(DTSTART) the rule must give the start time with C(BYHOUR) (and C(BYMINUTE), else 0) and, for
            C(FREQ=WEEKLY), C(MONTHLY) or C(YEARLY), the days with C(BYDAY) or C(BYMONTHDAY); C(COUNT) and
            C(INTERVAL) greater than 1 need a C(DTSTART).
          - C(UNTIL) must be in UTC (C(...Z)) when the rule has a time zone. C(RDATE), C(EXDATE) and C(EXRULE) are
            not accepted; use O(windows[].excluded_dates), O(excluded_dates) or O(freezes).
          - C(FREQ=MINUTELY) and C(SECONDLY) are refused.
        type: str
        required: true
      timezone:
        description:
          - IANA time zone of the window, for example V(Europe/Berlin).
          - Required when the rule has no C(TZID) and its C(DTSTART) is not in UTC. When both are given they must
            name the same zone.
        type: str
      duration:
        description:
          - Length of each occurrence in real elapsed time, for example V(4h), V(90m), V(1h30m), V(PT4H) or a number
            of seconds.
        type: raw
        required: true
      cutoff:
        description:
          - No new host starts later than the end of the occurrence minus this, for example V(45m). It must be
            shorter than O(windows[].duration). Same forms as O(windows[].duration).
        type: raw
        default: 0
      excluded_dates:
        description:
          - Local dates (V(YYYY-MM-DD), in the window's time zone) on which an occurrence of this window that starts
            that day does not happen. Added to O(excluded_dates).
        type: list
        elements: str
        default: []
  freezes:
    description:
      - Change freezes. While one lasts no new host may start, inside a window or not, and the next window is
        the first one that opens after it.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description:
          - Name of the freeze, shown to the operator.
        type: str
        required: true
      start:
        description:
          - First moment of the freeze. A date (V(2026-12-18)) means 00:00 that day; a date and time takes its
            offset (V(2026-12-18T18:00:00+01:00)) or, without one, the freeze's time zone.
        type: str
        required: true
      end:
        description:
          - End of the freeze. A date is included whole (V(2027-01-03) ends at 00:00 on 4 January); a date and time
            is the exact end.
        type: str
        required: true
      reason:
        description:
          - Why, in a few words; shown in RV(reason).
        type: str
        default: ''
      timezone:
        description:
          - Time zone of dates and of times without an offset, and the zone the freeze is shown in.
          - Defaults to the time zone of the windows when they all use one; required for such values when the
            windows use several.
        type: str
  excluded_dates:
    description:
      - Local dates (V(YYYY-MM-DD)) on which no occurrence starts, for every window (each in its own time zone).
        A window that starts on the evening before and runs past midnight is excluded by the date it starts on.
    type: list
    elements: str
    default: []
  now:
    description:
      - The time to answer for, instead of the current time, for tests and for "what if" runs. An ISO 8601 time
        with an offset (V(2026-12-08T21:00:00Z), V(2026-12-08T22:00:00+01:00)), or epoch seconds.
      - A time without an offset is read as UTC, which is what Jinja's C(now) function gives with C(utc=true).
    type: raw
  started_at:
    description:
      - When the rollout calling the module started (same forms as O(now)). When it started inside an open
        window, before that window's cutoff and outside any freeze, RV(may_continue) is true (the hosts it
        started finish, even after the cutoff or the end) while RV(may_start) still says whether another
        host may start.
    type: raw
  fail_outside:
    description:
      - When true, the module fails with RV(reason) as its message when RV(may_start) is false, so the first
        play of a runbook stops there. The other return values are still returned.
      - When false the module only answers and the caller decides.
    type: bool
    default: false
  report_host:
    description:
      - Host name recorded in the check result RV(result) (the report groups results by host).
    type: str
    default: localhost
notes:
  - "Run it on the controller, once per play, with C(delegate_to: localhost) and C(run_once: true) (or in a play on
    C(localhost)); it needs python-dateutil there, not on the managed hosts."
  - Not in any action group, since it has no connection options for C(module_defaults).
  - The next window is searched for up to five years ahead; freezes are jumped over, not walked.
  - Rules that repeat by the hour, day or week and have no C(COUNT) are searched from a start moved close to now,
    so a rule with a C(DTSTART) years ago costs no more than a new one.
seealso:
  - module: upkeep.runbooks.report
  - name: RFC 5545, recurrence rules (section 3.3.10)
    description: The RRULE format the windows are written in.
    link: https://www.rfc-editor.org/rfc/rfc5545#section-3.3.10
"""

EXAMPLES = r"""
# First task of the first play of a runbook that changes production (a play on localhost):
# stop the run here unless a new host may start.
- name: Is a patch run allowed now?
  upkeep.runbooks.maintenance_window:
    windows:
      - name: weekly-patch
        rrule: |
          DTSTART;TZID=Europe/Berlin:20260105T220000
          RRULE:FREQ=WEEKLY;BYDAY=TU,TH
        duration: 4h
        cutoff: 45m
    freezes:
      - name: year-end freeze
        start: "2026-12-18"
        end: "2027-01-03"
        reason: no changes over the holidays
    excluded_dates: ["2026-12-31"]
    fail_outside: true
  register: window

# Inside a play on the hosts: ask once, on the controller, before each batch, with the time the
# rollout started (the first play kept the module's "now" in window_started_at on localhost).
- name: Ask whether another host may start
  upkeep.runbooks.maintenance_window:
    windows: "{{ upkeep_maintenance_windows }}"
    freezes: "{{ upkeep_change_freezes | default([]) }}"
    excluded_dates: "{{ upkeep_excluded_dates | default([]) }}"
    started_at: "{{ hostvars['localhost'].window_started_at }}"
  delegate_to: localhost
  run_once: true
  register: window_now

- name: Leave the hosts not started yet for the next window
  ansible.builtin.meta: end_play
  when: not window_now.may_start

# A window without DTSTART: the first Sunday of every month, 01:00-05:00 in New York,
# plus a daily evening window in Singapore.
- name: Two windows in two time zones
  upkeep.runbooks.maintenance_window:
    windows:
      - name: monthly-sunday
        rrule: "RRULE:FREQ=MONTHLY;BYDAY=1SU;BYHOUR=1;BYMINUTE=0"
        timezone: America/New_York
        duration: 4h
        cutoff: 1h
      - name: apac-evening
        rrule: "FREQ=DAILY;BYHOUR=21;BYMINUTE=30"
        timezone: Asia/Singapore
        duration: 90m
        cutoff: 30m
  register: window

# "What if": would the run at this time be allowed?
- name: Check a planned time
  upkeep.runbooks.maintenance_window:
    windows: "{{ upkeep_maintenance_windows }}"
    now: "2026-12-08T21:30:00Z"
  register: planned

# Keep the answer for the run report (list window_results in the report role's report_result_vars
# and include localhost in its report_host_pattern), and the rollout's start time.
- name: Record the window check
  ansible.builtin.set_fact:
    window_results: "{{ [window.result] }}"
    window_started_at: "{{ window.now }}"
"""

RETURN = r"""
inside:
  description: Whether now is inside an occurrence of any window (freezes aside).
  returned: always
  type: bool
  sample: true
may_start:
  description: Whether a new host may start now - inside a window, before its cutoff, and no freeze.
  returned: always
  type: bool
  sample: true
may_continue:
  description:
    - Whether the rollout that started at O(started_at) started inside a window, before its cutoff and outside any
      freeze, so the hosts it started finish. Always false without O(started_at).
  returned: always
  type: bool
  sample: false
now:
  description: The time the answer is for (O(now) or the current time), in UTC.
  returned: always
  type: str
  sample: "2026-12-08T22:48:00Z"
window:
  description:
    - The occurrence now is inside; null when outside every window. When occurrences overlap, the one still
      before its cutoff and ending last.
  returned: always
  type: dict
  contains: &occurrence
    name:
      description: Name of the window.
      type: str
      sample: weekly-patch
    timezone:
      description: Time zone of the window (V(UTC) for a C(DTSTART) in UTC).
      type: str
      sample: Europe/Berlin
    start:
      description: Start, in the window's time zone with its offset (ISO 8601).
      type: str
      sample: "2026-12-08T22:00:00+01:00"
    end:
      description: End (start plus the duration in elapsed time), local with offset.
      type: str
      sample: "2026-12-09T02:00:00+01:00"
    cutoff_at:
      description: From this moment no new host may start (end minus cutoff); local with offset.
      type: str
      sample: "2026-12-09T01:15:00+01:00"
    start_utc:
      description: Start in UTC.
      type: str
      sample: "2026-12-08T21:00:00Z"
    end_utc:
      description: End in UTC.
      type: str
      sample: "2026-12-09T01:00:00Z"
    cutoff_at_utc:
      description: Cutoff in UTC.
      type: str
      sample: "2026-12-09T00:15:00Z"
    duration_seconds:
      description: The window's duration.
      type: int
      sample: 14400
    cutoff_seconds:
      description: The window's cutoff.
      type: int
      sample: 2700
next_window:
  description:
    - The next time after now at which a new host may start, and the occurrence it belongs to. Occurrences on
      excluded dates are skipped, and a freeze moves the opening to its end when that is before the occurrence's
      cutoff, or skips the occurrence. While a new host may start now, it is the next occurrence after the current
      one. Null when no window opens within five years.
  returned: always
  type: dict
  contains:
    name:
      description: Name of the window.
      type: str
      sample: weekly-patch
    timezone:
      description: Time zone of the window.
      type: str
      sample: Europe/Berlin
    start:
      description: Start of the occurrence, local with offset.
      type: str
      sample: "2026-12-10T22:00:00+01:00"
    end:
      description: End of the occurrence, local with offset.
      type: str
      sample: "2026-12-11T02:00:00+01:00"
    cutoff_at:
      description: Cutoff of the occurrence, local with offset.
      type: str
      sample: "2026-12-11T01:15:00+01:00"
    start_utc:
      description: Start in UTC.
      type: str
      sample: "2026-12-10T21:00:00Z"
    end_utc:
      description: End in UTC.
      type: str
      sample: "2026-12-11T01:00:00Z"
    cutoff_at_utc:
      description: Cutoff in UTC.
      type: str
      sample: "2026-12-11T00:15:00Z"
    duration_seconds:
      description: The window's duration.
      type: int
      sample: 14400
    cutoff_seconds:
      description: The window's cutoff.
      type: int
      sample: 2700
    opens_at:
      description: When a new host may start, local with offset; the start, or the end of a freeze inside the
        occurrence.
      type: str
      sample: "2026-12-10T22:00:00+01:00"
    opens_at_utc:
      description: RV(next_window.opens_at) in UTC.
      type: str
      sample: "2026-12-10T21:00:00Z"
    seconds_until:
      description: Seconds from now to RV(next_window.opens_at).
      type: int
      sample: 166320
seconds_left:
  description: Seconds from now to the end of RV(window); null when outside every window.
  returned: always
  type: int
  sample: 7920
seconds_to_cutoff:
  description: Seconds from now to the cutoff of RV(window), 0 once it has passed; null when outside every window.
  returned: always
  type: int
  sample: 5220
frozen:
  description: The freeze that covers now (the one ending last if several do); null when none.
  returned: always
  type: dict
  contains:
    name:
      description: Name of the freeze.
      type: str
      sample: year-end freeze
    reason:
      description: Its reason (may be empty).
      type: str
      sample: no changes over the holidays
    timezone:
      description: The zone its times are shown in.
      type: str
      sample: Europe/Berlin
    start:
      description: Start, local with offset.
      type: str
      sample: "2026-12-18T00:00:00+01:00"
    end:
      description: End (exclusive), local with offset.
      type: str
      sample: "2027-01-04T00:00:00+01:00"
    start_utc:
      description: Start in UTC.
      type: str
      sample: "2026-12-17T23:00:00Z"
    end_utc:
      description: End in UTC.
      type: str
      sample: "2027-01-03T23:00:00Z"
started_at:
  description: O(started_at) in UTC.
  returned: when O(started_at) is given
  type: str
  sample: "2026-12-08T21:04:10Z"
started_window:
  description: The occurrence O(started_at) fell in, with the same keys as RV(window); null when it fell in none.
  returned: when O(started_at) is given
  type: dict
  contains: *occurrence
reason:
  description: One sentence for the operator; also the failure message with O(fail_outside).
  returned: always
  type: str
  sample: "outside every window; next 'weekly-patch' starts Tue 2026-12-08 22:00 CET (in 3d 4h)"
result:
  description:
    - The check result for the run report, C({check, host, status, value, threshold, message}) as
      P(upkeep.runbooks.check_result#filter) builds it, with check V(maintenance_window) and host O(report_host).
    - Status V(ok) when a new host may start; V(warn) when none may but RV(may_continue) is true; V(fail) otherwise.
  returned: always
  type: dict
  contains:
    check:
      description: V(maintenance_window).
      type: str
      sample: maintenance_window
    host:
      description: O(report_host).
      type: str
      sample: localhost
    status:
      description: V(ok), V(warn) or V(fail).
      type: str
      sample: ok
    value:
      description: C(now), C(inside), C(may_start), C(may_continue), the names of the window and the freeze, and
        the next window's name and C(opens_at).
      type: dict
      sample: {now: "2026-12-08T22:48:00Z", inside: true, may_start: true, may_continue: false,
               window: weekly-patch, frozen: null, next_window: {name: weekly-patch,
                                                                 opens_at: "2026-12-10T22:00:00+01:00"}}
    threshold:
      description: The current window's C(cutoff_at) and C(end); null outside every window.
      type: dict
      sample: {cutoff_at: "2026-12-09T01:15:00+01:00", end: "2026-12-09T02:00:00+01:00"}
    message:
      description: Same as RV(reason).
      type: str
      sample: "inside window 'weekly-patch' until 02:00 CET (2h12m left, new hosts until 01:15)"
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.upkeep.runbooks.plugins.module_utils import _window  # noqa: E402


def argument_spec():
    return dict(
        windows=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            rrule=dict(type="str", required=True),
            timezone=dict(type="str"),
            duration=dict(type="raw", required=True),
            cutoff=dict(type="raw", default=0),
            excluded_dates=dict(type="list", elements="str", default=[]),
        )),
        freezes=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            start=dict(type="str", required=True),
            end=dict(type="str", required=True),
            reason=dict(type="str", default=""),
            timezone=dict(type="str"),
        )),
        excluded_dates=dict(type="list", elements="str", default=[]),
        now=dict(type="raw"),
        started_at=dict(type="raw"),
        fail_outside=dict(type="bool", default=False),
        report_host=dict(type="str", default="localhost"),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    _window.ensure_libraries(module)
    try:
        answer = _window.evaluate(params["windows"], params["freezes"], params["excluded_dates"],
                                  now=params["now"], started_at=params["started_at"], host=params["report_host"])
    except _window.WindowError as exc:
        module.fail_json(msg=exc.msg)
    if params["fail_outside"] and not answer["may_start"]:
        module.fail_json(msg=answer["reason"], changed=False, **answer)
    module.exit_json(changed=False, **answer)


if __name__ == "__main__":
    main()
