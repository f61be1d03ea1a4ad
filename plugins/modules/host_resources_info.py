#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: host_resources_info
short_description: CPU and memory use of a Linux host over a short sampling window
version_added: 0.1.0
description:
  - Reads C(/proc/stat) and C(/proc/meminfo) every O(interval) seconds for O(window) seconds and reports CPU
    use over the whole window (with the busiest interval) and memory use averaged over the readings (with the
    highest), so one busy second does not decide the daily check.
  - CPU use is the share of non-idle time of all CPUs (C(idle) and C(iowait) count as idle, C(steal) as busy,
    as C(top) shows it). Memory use is C(MemTotal - MemAvailable), the memory the kernel could not hand to
    a new program without swapping; page cache it can drop counts as free.
  - Every finding is also a check result in RV(checks) for M(upkeep.runbooks.report).
  - Standard library only; needs Linux 3.14 or later (C(MemAvailable)).
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
attributes:
  check_mode:
    support: full
    description: Read-only; runs unchanged in check mode.
  diff_mode:
    support: none
    description: Reads state only.
options:
  window:
    description: Seconds to sample over.
    type: float
    default: 5
  interval:
    description: Seconds between readings (at least two readings are taken).
    type: float
    default: 1
  cpu_warn_percent:
    description: CPU use over the window at or above which C(host_cpu) warns.
    type: float
    default: 80
  cpu_fail_percent:
    description: CPU use over the window at or above which C(host_cpu) fails.
    type: float
    default: 95
  memory_warn_percent:
    description: Average memory use at or above which C(host_memory) warns.
    type: float
    default: 85
  memory_fail_percent:
    description: Average memory use at or above which C(host_memory) fails.
    type: float
    default: 95
  proc_path:
    description: Where procfs is mounted (a host's procfs bind-mounted elsewhere, e.g. in a container).
    type: path
    default: /proc
  host_label:
    description: Host name put into each check result (normally C(inventory_hostname)).
    type: str
    default: localhost
  scope:
    description:
      - What is measured.
      - V(host) reads C(/proc/stat), every CPU of the kernel, which in a container sharing the machine's kernel
        (without lxcfs) is the whole machine, so a busy neighbour reads as a busy host.
      - V(cgroup) reads this process's control group under O(cgroup_path) (v2 or v1), the CPU time of the
        container over the CPUs it may use (its CPU quota, else the CPUs it may run on), and its memory
        against its memory limit where it has one (without a limit it may use the machine's memory, which
        C(/proc/meminfo) then describes). iowait and steal are not counted per group.
      - V(auto) is V(cgroup) when the module runs in a container (podman's or docker's marker file, or
        PID 1's C(container) variable) whose group can be read, with O(proc_path) left at C(/proc); else V(host).
    type: str
    choices: [auto, host, cgroup]
    default: auto
  cgroup_path:
    description: Where the cgroup file system is mounted.
    type: path
    default: /sys/fs/cgroup
notes:
  - The result's RV(scope) says which was measured.
  - See C(docs/platform-health.md) for each check, its threshold and what to do when it fails.
"""

EXAMPLES = r"""
- name: Sample CPU and memory for 5 seconds
  upkeep.runbooks.host_resources_info:
    host_label: "{{ inventory_hostname }}"
  register: host_load

- name: A longer window and the guide's thresholds written out
  upkeep.runbooks.host_resources_info:
    window: 30
    interval: 2
    cpu_warn_percent: 80
    memory_warn_percent: 85
"""

RETURN = r"""
scope:
  description: What was measured, V(host) or V(cgroup) (see O(scope)).
  returned: always
  type: str
  sample: cgroup
window_seconds:
  description: Seconds from the first to the last reading.
  returned: always
  type: float
  sample: 5.01
samples:
  description: Number of readings.
  returned: always
  type: int
  sample: 6
cpu:
  description: CPU use.
  returned: always
  type: dict
  contains:
    percent:
      description: Busy share of all CPUs over the window; null when the counters did not move.
      type: float
      sample: 12.5
    max_interval_percent:
      description: The busiest interval between two readings.
      type: float
      sample: 30.1
    iowait_percent:
      description: Share of the window spent waiting for I/O (counted as idle in RV(cpu.percent)).
      type: float
      sample: 0.4
    steal_percent:
      description: Share taken by the hypervisor for other guests (counted as busy).
      type: float
      sample: 0.2
    cpus:
      description: Number of CPUs in C(/proc/stat); with RV(scope=cgroup) the CPUs the group may use (its
        quota, which can be a fraction).
      type: float
      sample: 2
memory:
  description: Memory use.
  returned: always
  type: dict
  contains:
    percent:
      description: C(MemTotal - MemAvailable) as a percentage of C(MemTotal), averaged over the readings; with
        RV(memory.source=cgroup) the group's usage less its inactive file pages, of its limit.
      type: float
      sample: 41.3
    source:
      description: V(cgroup) when the group's memory limit was the measure, else V(host).
      type: str
      sample: host
    max_percent:
      description: The highest reading.
      type: float
      sample: 41.9
    total_bytes:
      description: C(MemTotal), or the group's memory limit.
      type: int
    available_bytes:
      description: C(MemAvailable) at the last reading, or what is left of the group's limit.
      type: int
    swap_used_percent:
      description: Swap in use at the last reading; null without swap.
      type: float
checks:
  description: C(host_cpu) and C(host_memory) check results.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import evaluate  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._host_load import (  # noqa: E402
    Cgroup, ProcError, in_container, sample)


def judge(facts, params, host):
    whose = "" if facts["scope"] == "host" else "the container's "
    cpu = evaluate("host_cpu", host, facts["cpu"]["percent"], params["cpu_warn_percent"],
                   params["cpu_fail_percent"], unit="%", what="%sCPU use over %s s" % (whose, facts["window_seconds"]))
    if facts["cpu"]["max_interval_percent"] is not None and facts["scope"] == "host":
        cpu["message"] += " (busiest interval %s %%, iowait %s %%, steal %s %%)" % (
            facts["cpu"]["max_interval_percent"], facts["cpu"]["iowait_percent"], facts["cpu"]["steal_percent"])
    elif facts["cpu"]["max_interval_percent"] is not None:
        cpu["message"] += " of %s CPUs (busiest interval %s %%)" % (facts["cpu"]["cpus"],
                                                                    facts["cpu"]["max_interval_percent"])
    mem = evaluate("host_memory", host, facts["memory"]["percent"], params["memory_warn_percent"],
                   params["memory_fail_percent"], unit="%",
                   what="memory use" if facts["memory"]["source"] == "host" else "memory use of the container's limit")
    mem["message"] += " (highest %s %%)" % facts["memory"]["max_percent"]
    for item in (cpu, mem):
        item["threshold"]["unit"] = "%"  # the report shows value and limits in percent
    return [cpu, mem]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            window=dict(type="float", default=5.0),
            interval=dict(type="float", default=1.0),
            cpu_warn_percent=dict(type="float", default=80.0),
            cpu_fail_percent=dict(type="float", default=95.0),
            memory_warn_percent=dict(type="float", default=85.0),
            memory_fail_percent=dict(type="float", default=95.0),
            proc_path=dict(type="path", default="/proc"),
            host_label=dict(type="str", default="localhost"),
            scope=dict(type="str", default="auto", choices=["auto", "host", "cgroup"]),
            cgroup_path=dict(type="path", default="/sys/fs/cgroup"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["interval"] <= 0 or params["window"] < params["interval"] or params["window"] > 600:
        module.fail_json(msg="Failed to validate window and interval: 0 < interval <= window <= 600")
    for kind in ("cpu", "memory"):
        warn, fail = params["%s_warn_percent" % kind], params["%s_fail_percent" % kind]
        if not 0 <= warn <= fail <= 100:
            module.fail_json(msg="Failed to validate %s_warn_percent and %s_fail_percent: 0 <= warn <= fail <= 100"
                             % (kind, kind))
    cgroup = None
    if params["scope"] == "cgroup" or (params["scope"] == "auto" and params["proc_path"] == "/proc" and in_container()):
        try:
            cgroup = Cgroup(params["cgroup_path"])
        except ProcError as exc:
            if params["scope"] == "cgroup":
                module.fail_json(msg="Failed to read the container's CPU and memory use: %s" % exc.message)
            module.warn("running in a container whose control group cannot be read (%s): CPU and memory are the "
                        "machine's" % exc.message)
    try:
        facts = sample(params["proc_path"], params["window"], params["interval"], cgroup=cgroup)
    except ProcError as exc:
        module.fail_json(msg="Failed to read CPU and memory use: %s" % exc.message)
    facts["checks"] = judge(facts, params, params["host_label"])
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
