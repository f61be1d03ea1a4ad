#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: apt_patch_plan
short_description: Work out the apt upgrade a Debian host would get and write it down as a patch baseline
version_added: 0.4.0
description:
  - Works out the upgrade this host would get from its configured apt repositories and writes it to
    O(path) as a I(patch baseline), a JSON manifest of exact C(name=version) pairs that
    M(upkeep.runbooks.apt_patch_apply) installs on this or another host, nothing else. The format
    is described in C(docs/patch-baseline.md) of the collection.
  - Every installed package whose candidate version is newer is a candidate for the upgrade.
    O(include) and O(exclude) select among them by name; held packages (C(apt-mark hold)) are held back
    unless O(allow_held). The selected packages are then asked for at their candidate versions with
    C(apt-get -s install --no-install-recommends), the same resolver
    M(upkeep.runbooks.apt_patch_apply) runs, so new packages the upgrade needs (a new kernel ABI
    package, a new dependency) are part of the plan.
  - A plan never removes or downgrades a package and never upgrades an excluded or held one. A
    package whose upgrade would do that is held back with the reason (RV(held_back)), and the rest of
    the upgrade is planned without it.
  - For each package the baseline records the installed and the new version, origin, label, suite,
    codename and component of the repository it comes from, whether it is a security update (it comes
    from a C(*-security) suite), whether it needs a reboot (its name matches O(reboot_packages)), the
    running systemd services it ships (they need a restart after the upgrade) and the SHA-256 of its
    C(.deb) as the repository index lists it.
  - For every repository a package comes from the baseline records the identity of the Release file
    the host downloaded (C(InRelease) or C(Release)) - its C(Date), C(Valid-Until), origin, suite and
    SHA-256 - and the host's OS release and architecture, then seals the whole document with a SHA-256
    over its canonical JSON (RV(sha256)).
  - The baseline is written atomically (temporary file, fsync, rename). A plan that comes out the same
    as the baseline already at O(path) (only the time differs) leaves the file alone and reports no
    change, so a re-run keeps the same RV(sha256).
  - The module changes nothing on the host apart from the apt lists (with O(update_cache)) and O(path).
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Plans exactly as without check mode from the apt lists the host has, and returns the baseline
        and RV(sha256) it would write. Nothing is written and the apt lists are not refreshed even with
        O(update_cache) (RV(notes) says so).
  diff_mode:
    support: full
    details:
      - The diff shows the C(name=version) lines of the baseline at O(path) before and after.
  platform:
    platforms: debian
options:
  path:
    description:
      - Where to write the baseline on the host. Missing parent directories are created (mode C(0755)).
    type: path
    required: true
  update_cache:
    description:
      - Refresh the apt lists (C(apt-get update)) first. A repository that cannot be reached fails the
        task (C(APT::Update::Error-Mode=any)) instead of planning from old lists.
    type: bool
    default: false
  include:
    description:
      - Shell-style patterns (C(fnmatch)) of package names to consider. Upgradable packages no pattern
        matches are listed in RV(excluded).
      - New packages the selected upgrades need (a dependency, a new kernel ABI package) are planned whatever
        these patterns say; O(exclude) stops them.
    type: list
    elements: str
    default: ['*']
  exclude:
    description:
      - Shell-style patterns of package names never to upgrade, for example C(postgresql-*) and
        C(postgresql) on database hosts. Also applies to new packages the upgrade would pull in; an
        upgrade that needs an excluded package is held back.
    type: list
    elements: str
    default: []
  allow_held:
    description:
      - Plan upgrades of held packages (C(apt-mark hold)) too. M(upkeep.runbooks.apt_patch_apply)
        needs the same option to install them.
    type: bool
    default: false
  reboot_packages:
    description:
      - Shell-style patterns of package names whose upgrade needs a reboot.
      - The default covers kernels and their modules, firmware and microcode, the C library, systemd,
        udev, dbus, cryptsetup and initramfs-tools.
    type: list
    elements: str
  host_label:
    description:
      - Name of the host recorded in the baseline. Roles pass C(inventory_hostname).
      - Defaults to the host name of the machine.
    type: str
  lock_timeout:
    description:
      - Seconds to wait for the apt lists lock before C(apt-get update) (another apt run holds it).
    type: int
    default: 300
notes:
  - Needs the Debian package C(python3-apt) on the host (Debian installs it with apt by default).
  - The C(services) of a package in RV(baseline.packages) are the systemd services it ships that are running;
    services that only load a library the upgrade replaces are found after the upgrade by
    M(upkeep.runbooks.apt_patch_apply) (with C(needrestart) when it is installed).
requirements:
  - python3-apt
seealso:
  - module: upkeep.runbooks.apt_patch_apply
  - name: apt-get(8)
    description: The simulation (C(-s)) and the install options this module and apt_patch_apply use.
    link: https://manpages.debian.org/bookworm/apt/apt-get.8.en.html
"""

EXAMPLES = r"""
- name: Plan this month's patches on a staging database host (no PostgreSQL server upgrades)
  upkeep.runbooks.apt_patch_plan:
    path: /var/lib/upkeep-runbooks/patch-baseline.json
    update_cache: true
    exclude:
      - postgresql
      - postgresql-1*
      - postgresql-server-*
    host_label: "{{ inventory_hostname }}"
  register: plan

- name: Show what would be installed
  ansible.builtin.debug:
    msg: >-
      {{ plan.packages | length }} packages ({{ plan.security | length }} security updates),
      reboot needed: {{ plan.reboot_required }}, services to restart: {{ plan.services | join(', ') }},
      baseline {{ plan.sha256 }}

- name: Keep the baseline on the controller for promotion to production
  ansible.builtin.fetch:
    src: /var/lib/upkeep-runbooks/patch-baseline.json
    dest: "baselines/{{ inventory_hostname }}.json"
    flat: true
"""

RETURN = r"""
baseline_path:
  description: Where the baseline is (or, in check mode, would be) written (O(path)).
  returned: always
  type: str
  sample: /var/lib/upkeep-runbooks/patch-baseline.json
sha256:
  description: SHA-256 of the baseline's canonical JSON (without its own C(sha256) field).
  returned: success
  type: str
  sample: 0b4c6f1b1e3c51d4b0f37b8a2f8ad7e3f0c4dfc1b7d3e0c2bb5f3a6d1e9c8a77
baseline:
  description:
    - The baseline document, exactly as written to RV(baseline_path) (see C(docs/patch-baseline.md) for every field).
    - A role can pass it to M(upkeep.runbooks.apt_patch_apply) as O(upkeep.runbooks.apt_patch_apply#module:baseline).
  returned: success
  type: dict
  contains:
    format_version:
      description: Version of the baseline format, C(1).
      type: int
    kind:
      description: Always C(upkeep.runbooks.apt_patch_baseline).
      type: str
    created_at:
      description: UTC time of the plan, ISO 8601 with milliseconds and C(Z).
      type: str
    host:
      description: The host the plan was made on (O(host_label)).
      type: str
    os_release:
      description:
        - C(id), C(version_id), C(version_codename), C(pretty_name) of C(/etc/os-release) and C(debian_version).
      type: dict
    architecture:
      description: dpkg's native architecture of the host.
      type: str
    lists_refreshed:
      description: Whether the apt lists were refreshed for this plan.
      type: bool
    selection:
      description: The O(include) and O(exclude) patterns used.
      type: dict
    packages:
      description:
        - One entry per package to install, sorted by name, with C(name), C(architecture), C(installed)
          (null for a new package), C(version), C(deb_sha256), C(source_package), C(origin), C(label), C(suite),
          C(codename), C(component), C(site), C(repositories) (ids of RV(baseline.sources)), C(security),
          C(reboot), C(services).
      type: list
      elements: dict
    sources:
      description:
        - The repositories the packages come from, each with C(id) (C(<uri> <dist>)), C(uri), C(dist), the
          Release file's C(origin), C(label), C(suite), C(codename), C(date), C(valid_until), which file it was
          (C(release_file)), its C(sha256) and whether it was C(signed).
      type: list
      elements: dict
    excluded:
      description: Upgradable packages left out by the patterns, with C(name), C(installed), C(candidate), C(reason).
      type: list
      elements: dict
    held_back:
      description:
        - Upgradable packages held back (held, or their upgrade would remove, downgrade or need a refused package).
      type: list
      elements: dict
    reboot_required:
      description: Whether any package of the plan needs a reboot.
      type: bool
    services:
      description: Every service of the C(services) of RV(baseline.packages).
      type: list
      elements: str
    tool:
      description: What wrote the baseline (C(name) V(upkeep.runbooks), C(module) V(apt_patch_plan)).
      type: dict
    sha256:
      description: The same as RV(sha256).
      type: str
packages:
  description: The C(name=version) pairs of the baseline, sorted.
  returned: success
  type: list
  elements: str
  sample: [upkeep-testlib=1.1-1, upkeep-testlib-dep=1.1-1]
security:
  description: Names of the packages whose new version comes from a security suite.
  returned: success
  type: list
  elements: str
  sample: [openssl, libssl3]
reboot_required:
  description: Whether a package of the plan needs a reboot after installing (see O(reboot_packages)).
  returned: success
  type: bool
  sample: true
services:
  description: Running systemd services shipped by the packages of the plan; they need a restart after the upgrade.
  returned: success
  type: list
  elements: str
  sample: [nginx.service]
excluded:
  description: Upgradable packages the patterns left out, with C(name), C(installed), C(candidate) and C(reason).
  returned: success
  type: list
  elements: dict
  sample: [{name: postgresql-15, installed: 15.8-0+deb12u1, candidate: 15.10-0+deb12u1,
            reason: excluded by pattern postgresql-1*}]
held_back:
  description: Upgradable packages held back, with C(name), C(installed), C(candidate) and C(reason).
  returned: success
  type: list
  elements: dict
  sample: [{name: upkeep-testrm, installed: 1.0-1, candidate: 1.1-1, reason: would remove upkeep-testlegacy 1.0-1}]
sources:
  description: The identity of every repository the packages come from (as RV(baseline.sources)).
  returned: success
  type: list
  elements: dict
lists_refreshed:
  description: Whether C(apt-get update) ran (never in check mode).
  returned: always
  type: bool
  sample: true
simulation:
  description: The C(Inst)/C(Conf)/C(Remv) lines of the final C(apt-get -s install) run.
  returned: success
  type: list
  elements: str
  sample: ["Inst upkeep-testlib [1.0-1] (1.1-1 upkeep-test-security:upkeep-security [all])"]
notes:
  description: What the module did or, in check mode, would do.
  returned: always
  type: list
  elements: str
  sample: ["wrote baseline /var/lib/upkeep-runbooks/patch-baseline.json: 6 packages, 2 security updates"]
"""

import os  # noqa: E402 - Ansible modules import after their documentation
import socket  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.upkeep.runbooks.plugins.module_utils import _apt  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils import _baseline  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._failure import Failure  # noqa: E402


def pins_text(baseline):
    if baseline is None:
        return ""
    return "".join("%s=%s\n" % (pkg["name"], pkg["version"]) for pkg in baseline["packages"])


def read_existing(path, notes):
    if not os.path.lexists(path):
        return None
    try:
        return _baseline.load_baseline(path)
    except _baseline.BaselineError as exc:
        notes.append("the file at %s is replaced: %s" % (path, exc))
        return None


def run(module, host_factory):
    p = module.params
    path = p["path"]
    notes = []
    if os.path.isdir(path):
        raise Failure("Failed to check path %s: it is a directory" % path)
    label = p["host_label"] or socket.gethostname()
    host = host_factory(label)

    refreshed = False
    if p["update_cache"] and module.check_mode:
        notes.append("check mode: the apt lists were not refreshed; the plan uses the lists the host has")
    elif p["update_cache"]:
        host.update()
        refreshed = True

    reboot = p["reboot_packages"] if p["reboot_packages"] is not None else list(_apt.REBOOT_PATTERNS)
    packages, excluded, held_back, lines = _apt.plan_upgrade(
        host, include=p["include"], exclude=p["exclude"], allow_held=p["allow_held"], reboot_patterns=reboot)
    source_ids = sorted(set(ref for pkg in packages for ref in pkg["repositories"]))
    sources = []
    for ident in source_ids:
        entry = host.source_identity(ident)
        if entry is not None:
            sources.append(entry)
        if entry is None or entry["sha256"] is None:
            notes.append("no Release file of %s in the apt lists: its identity is not recorded" % ident)
    known = set(entry["id"] for entry in sources)
    for pkg in packages:
        pkg["repositories"] = [ref for ref in pkg["repositories"] if ref in known]
    try:
        baseline = _baseline.new_baseline(
            host=label, os_release=_apt.read_os_release(), architecture=host.architecture, lists_refreshed=refreshed,
            selection={"include": p["include"], "exclude": p["exclude"]}, packages=packages, sources=sources,
            excluded=excluded, held_back=held_back)
    except _baseline.BaselineError as exc:
        raise Failure("Failed to build the baseline: %s" % exc) from None

    existing = read_existing(path, notes)
    changed = True
    if existing is not None and _baseline.same_plan(existing, baseline):
        baseline, changed = existing, False
        notes.append("baseline %s is up to date (%s, planned %s)" % (path, baseline["sha256"], baseline["created_at"]))
    summary = "%d packages, %d security updates%s" % (
        len(baseline["packages"]), sum(1 for pkg in baseline["packages"] if pkg["security"]),
        ", reboot needed" if baseline["reboot_required"] else "")
    if changed and module.check_mode:
        notes.append("check mode: would write baseline %s: %s" % (path, summary))
    elif changed:
        directory = os.path.dirname(os.path.abspath(path))
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o755)
            _baseline.write_baseline(path, baseline)
        except OSError as exc:
            raise Failure("Failed to write baseline %s: %s" % (path, exc.strerror or exc)) from None
        notes.append("wrote baseline %s: %s" % (path, summary))
    for item in held_back:
        notes.append("held back %s %s: %s" % (item["name"], item["candidate"], item["reason"]))

    result = dict(
        changed=changed,
        baseline_path=path,
        sha256=baseline["sha256"],
        baseline=baseline,
        packages=["%s=%s" % (pkg["name"], pkg["version"]) for pkg in baseline["packages"]],
        security=[pkg["name"] for pkg in baseline["packages"] if pkg["security"]],
        reboot_required=baseline["reboot_required"],
        services=baseline["services"],
        excluded=baseline["excluded"],
        held_back=baseline["held_back"],
        sources=baseline["sources"],
        lists_refreshed=refreshed,
        simulation=lines,
        notes=notes,
    )
    if module._diff:
        result["diff"] = dict(before_header=path, after_header=path, before=pins_text(existing),
                              after=pins_text(baseline))
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            update_cache=dict(type="bool", default=False),
            include=dict(type="list", elements="str", default=["*"]),
            exclude=dict(type="list", elements="str", default=[]),
            allow_held=dict(type="bool", default=False),
            reboot_packages=dict(type="list", elements="str"),
            host_label=dict(type="str"),
            lock_timeout=dict(type="int", default=300),
        ),
        supports_check_mode=True,
    )
    _apt.ensure_apt_pkg(module)
    if module.params["lock_timeout"] < 0:
        module.fail_json(msg="Failed to validate lock_timeout: must not be negative")
    base = dict(changed=False, baseline_path=module.params["path"], lists_refreshed=False, notes=[])
    try:
        result = run(module, lambda label: _apt.AptHost(module, lock_timeout=module.params["lock_timeout"],
                                                        host=label))
    except (Failure, _apt.AptError) as exc:
        out = dict(base)
        out.update(exc.extra)
        module.fail_json(msg=exc.msg, **out)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
