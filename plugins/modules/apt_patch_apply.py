#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: apt_patch_apply
short_description: Install exactly the packages of a patch baseline on a Debian host, or roll them back
version_added: 0.4.0
description:
  - With O(state=applied), installs exactly the C(name=version) pairs of a patch baseline written by
    M(upkeep.runbooks.apt_patch_plan) (here or on another host, such as staging), nothing else. It never
    upgrades everything. C(apt-get install) is given the exact versions, and a newer version the
    repositories publish meanwhile is not installed.
  - The baseline's SHA-256 is verified first (and compared with O(expected_sha256) when given); a
    baseline that was changed after it was written is refused. Its OS (C(ID) and C(VERSION_CODENAME)
    of C(/etc/os-release)) and architecture must be the host's.
  - A baseline package the host does not have is skipped (a package new to the planning host is installed
    only when another package of the baseline needs it). A package already at its baseline version is left
    alone, so a second run reports no change.
  - Refused before anything changes, naming the packages - a version no repository of the host provides
    (or provides with another SHA-256 than the baseline recorded), an installed version newer than the
    baseline's, a held package (unless O(allow_held)), and an C(apt-get -s) solution that would remove a
    package or install anything the baseline does not name at another version than the baseline's.
  - "Preflight: dpkg must not be interrupted or have half-installed packages (C(dpkg --audit));
    C(dpkg --configure -a) repairs that only with O(repair_dpkg). The module waits up to O(lock_timeout)
    seconds for the dpkg lock and for running C(apt-daily) and C(apt-daily-upgrade) services
    (unattended-upgrades), and stops the C(apt-daily) and C(apt-daily-upgrade) timers for the run (they are
    started again at the end). apt, dpkg, debconf, ucf and needrestart run non-interactively; changed
    conffiles keep the local version (C(--force-confold)), the package's one is left beside it."
  - Before changing anything it writes a I(rollback manifest) (O(rollback_path), mode C(0600)) with the
    version of every package it will touch. All archives are downloaded first (C(--download-only)); only then
    does dpkg run (C(--no-download)), so a repository that fails during the download leaves the host as it was.
  - When the installation fails (a maintainer script fails, dpkg stops), the packages are installed again at
    the versions of the rollback manifest (O(rollback_on_failure)) and the task fails saying what failed and
    what was rolled back.
  - With O(state=rolled_back), installs the versions of the rollback manifest again (downgrades) and removes
    packages the baseline installed new. A version no repository provides any more is taken from apt's archive
    cache (C(/var/cache/apt/archives)) when it is still there; the others are named in RV(unavailable) and the
    task fails after rolling back the rest.
  - Afterwards the module reports whether a reboot is needed (C(/var/run/reboot-required), a newer kernel in
    C(/boot) than the running one, needrestart's kernel check, O(reboot_packages)) and which services need a
    restart (C(needrestart -b) when installed, and the running systemd services the changed packages ship).
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Verifies the baseline, checks the host, dpkg's state, holds and the repositories and runs
        C(apt-get -s install) with the exact versions; RV(actions) and RV(simulation) list what apt would do.
        Nothing is stopped, written, downloaded or installed.
  diff_mode:
    support: full
    details:
      - The diff lists C(name version) of every package changed, before and after.
  platform:
    platforms: debian
options:
  state:
    description:
      - V(applied) installs the baseline; V(rolled_back) goes back to the versions of the rollback manifest.
    type: str
    choices: [applied, rolled_back]
    default: applied
  path:
    description:
      - Path of the baseline on the host. One of O(path) and O(baseline) is required with O(state=applied).
      - With O(state=rolled_back), optional; when given, the rollback manifest must belong to this baseline.
    type: path
  baseline:
    description:
      - The baseline document itself (for example RV(upkeep.runbooks.apt_patch_plan#module:baseline) of a
        staging host, kept by a role), instead of O(path).
    type: dict
  expected_sha256:
    description:
      - The SHA-256 the baseline must have, for example the one recorded when the baseline was promoted from
        staging. The baseline's own digest only proves it is intact; this proves it is the promoted one.
    type: str
  update_cache:
    description:
      - Refresh the apt lists (C(apt-get update)) first; an unreachable repository fails the task before any change.
    type: bool
    default: false
  allow_held:
    description:
      - Install baseline packages that are held (C(apt-mark hold)), with C(--allow-change-held-packages).
        Otherwise a held package in the baseline is refused before any change.
    type: bool
    default: false
  repair_dpkg:
    description:
      - Run C(dpkg --configure -a) when dpkg was interrupted or packages are half-installed. Otherwise such a
        host is refused before any change.
    type: bool
    default: false
  rollback_on_failure:
    description:
      - When the installation fails, install the versions of the rollback manifest again before failing.
    type: bool
    default: true
  rollback_path:
    description:
      - The rollback manifest (mode C(0600); its directory is created with mode C(0700)).
      - Written before the installation, read by O(state=rolled_back). A manifest of another baseline whose
        application did not finish (status C(pending)) is never overwritten.
    type: path
    default: /var/lib/upkeep-runbooks/apt-rollback.json
  reboot_packages:
    description:
      - Shell-style patterns of package names whose upgrade needs a reboot; the default is the same as
        apt_patch_plan's.
    type: list
    elements: str
  lock_timeout:
    description:
      - Seconds to wait for the dpkg lock (C(DPkg::Lock::Timeout)), for running apt services and, with
        O(update_cache), for the apt lists lock.
    type: int
    default: 300
  host_label:
    description:
      - Name of the host recorded in the rollback manifest and used in messages. Defaults to the host name.
    type: str
notes:
  - Needs the Debian package C(python3-apt) on the host.
  - The apt timers are stopped for the run, not disabled; if the module is killed they come back at the next boot.
  - Services are not restarted and the host is not rebooted. RV(services) and RV(reboot_required) tell the
    role what to do.
requirements:
  - python3-apt
seealso:
  - module: upkeep.runbooks.apt_patch_plan
"""

EXAMPLES = r"""
- name: Install the baseline staging tested, and nothing else
  upkeep.runbooks.apt_patch_apply:
    baseline: "{{ promoted_baseline }}"
    expected_sha256: "{{ promoted_baseline_sha256 }}"
    update_cache: true
    host_label: "{{ inventory_hostname }}"
  register: patched

- name: Restart what the upgrade left running on old code
  ansible.builtin.systemd_service:
    name: "{{ item }}"
    state: restarted
  loop: "{{ patched.services }}"

- name: Check first (apt-get -s) without changing anything
  upkeep.runbooks.apt_patch_apply:
    path: /var/lib/upkeep-runbooks/patch-baseline.json
  check_mode: true
  register: preview

- name: Go back to the versions from before the patch
  upkeep.runbooks.apt_patch_apply:
    state: rolled_back
"""

RETURN = r"""
state:
  description: The O(state) asked for.
  returned: always
  type: str
  sample: applied
baseline_sha256:
  description: SHA-256 of the baseline applied (with O(state=rolled_back), the one the rollback manifest belongs to).
  returned: when a baseline or rollback manifest was read
  type: str
  sample: 0b4c6f1b1e3c51d4b0f37b8a2f8ad7e3f0c4dfc1b7d3e0c2bb5f3a6d1e9c8a77
packages:
  description:
    - The packages changed (predicted in check mode), each with C(name), C(architecture), C(before) (null when it
      was not installed) and C(after) (null when removed).
  returned: always
  type: list
  elements: dict
  sample: [{name: upkeep-testlib, architecture: all, before: 1.0-1, after: 1.1-1}]
actions:
  description:
    - What C(apt-get -s) said apt would do, each with C(action) (C(install), C(upgrade), C(downgrade),
      C(reinstall), C(remove)), C(name), C(architecture), C(from) and C(to).
  returned: always
  type: list
  elements: dict
  sample: [{action: upgrade, name: upkeep-testlib, architecture: all, from: 1.0-1, to: 1.1-1}]
simulation:
  description: The C(Inst)/C(Conf)/C(Remv) lines of C(apt-get -s install) with the exact versions.
  returned: always
  type: list
  elements: str
  sample: ["Inst upkeep-testlib [1.0-1] (1.1-1 upkeep-test-security:upkeep-security [all])"]
left_alone:
  description: Baseline packages not touched, with C(name), C(version) and C(reason) (already at the version,
    not installed on this host, the same as before for a rollback). Not named C(skipped), since Ansible takes a
    result with a non-empty C(skipped) key for a skipped task.
  returned: always
  type: list
  elements: dict
  sample: [{name: upkeep-testsvc, version: 1.1-1, reason: not installed on this host}]
unavailable:
  description: With O(state=rolled_back) (or a rollback after a failure), packages whose pre-patch version no
    repository and no cached archive provides, with C(name), C(version) and C(installed).
  returned: always
  type: list
  elements: dict
  sample: [{name: upkeep-testlib, version: 1.0-1, installed: 1.1-1}]
rolled_back:
  description:
    - Whether packages were installed again at their pre-patch versions (O(state=rolled_back) or after a failure).
  returned: always
  type: bool
  sample: false
rollback_path:
  description: The rollback manifest (O(rollback_path)).
  returned: always
  type: str
  sample: /var/lib/upkeep-runbooks/apt-rollback.json
dpkg_repaired:
  description: Whether C(dpkg --configure -a) ran (O(repair_dpkg)).
  returned: always
  type: bool
  sample: false
timers_paused:
  description: The apt timers stopped during the run and started again afterwards.
  returned: always
  type: list
  elements: str
  sample: [apt-daily.timer, apt-daily-upgrade.timer]
reboot_required:
  description: Whether the host needs a reboot (predicted from the package names in check mode).
  returned: always
  type: bool
  sample: true
reboot_reasons:
  description: Why a reboot is needed.
  returned: always
  type: list
  elements: str
  sample: ["/var/run/reboot-required exists (packages: linux-image-6.1.0-30-amd64)"]
services:
  description: systemd services to restart (needrestart's list when installed, and the running services the changed
    packages ship).
  returned: always
  type: list
  elements: str
  sample: [upkeep-testsvc.service]
needrestart:
  description: Whether needrestart was asked for RV(services).
  returned: always
  type: bool
  sample: false
notes:
  description: What the module did or, in check mode, would do.
  returned: always
  type: list
  elements: str
  sample: ["installed 5 packages of baseline 0b4c6f1b1e3c"]
failed_packages:
  description: When the installation failed, the packages dpkg reported as failing.
  returned: failure
  type: list
  elements: str
  sample: [upkeep-testfail]
missing:
  description: When refused because a repository lacks a version, each C(name=version) with the versions offered.
  returned: failure
  type: list
  elements: str
  sample: ["upkeep-testlib=1.1-1 (available: 1.2-1, 1.0-1)"]
held:
  description: When refused because of holds, the held packages the baseline would change.
  returned: failure
  type: list
  elements: str
  sample: [upkeep-testsvc]
dpkg_audit:
  description: When refused because dpkg is not clean, what C(dpkg --audit) says.
  returned: failure
  type: str
  sample: "The following packages are only half configured ..."
"""

import os  # noqa: E402 - Ansible modules import after their documentation
import socket  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.upkeep.runbooks.plugins.module_utils import _apt  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils import _baseline  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._failure import Failure  # noqa: E402

MAX_PIN_ROUNDS = 10


def _spec(name, version):
    return "%s=%s" % (name, version)


def _list(items, limit=20):
    items = list(items)
    text = ", ".join(items[:limit])
    return text + (" and %d more" % (len(items) - limit) if len(items) > limit else "")


class Apply(object):
    """The flow of one run: read, check, (simulate), change, report."""

    def __init__(self, module, host):
        self.module = module
        self.p = module.params
        self.host = host
        self.check_mode = module.check_mode
        self.notes = []
        self.result = dict(changed=False, state=self.p["state"], packages=[], actions=[], simulation=[], left_alone=[],
                           unavailable=[], rolled_back=False, rollback_path=self.p["rollback_path"],
                           dpkg_repaired=False, timers_paused=[], reboot_required=False, reboot_reasons=[],
                           services=[], needrestart=False, notes=self.notes)
        patterns = self.p["reboot_packages"]
        self.reboot_patterns = list(_apt.REBOOT_PATTERNS) if patterns is None else patterns

    # -- reading ---------------------------------------------------------------------------
    def load_baseline(self):
        p = self.p
        try:
            if p["baseline"] is not None:
                baseline = _baseline.validate_baseline(p["baseline"], "the baseline given as content")
            else:
                baseline = _baseline.load_baseline(p["path"])
        except _baseline.BaselineError as exc:
            raise Failure("Failed to verify the baseline: %s" % exc) from None
        expected = (p["expected_sha256"] or "").strip().lower()
        if expected and baseline["sha256"] != expected:
            raise Failure("Failed to verify the baseline: its sha256 is %s, not the expected %s (a different baseline "
                          "from the one promoted)" % (baseline["sha256"], expected))
        self.result["baseline_sha256"] = baseline["sha256"]
        return baseline

    def check_os(self, baseline):
        osr = _apt.read_os_release()
        want, have = baseline["os_release"], osr
        mismatch = (want.get("id"), want.get("version_codename")) != (have.get("id"), have.get("version_codename"))
        if mismatch or baseline["architecture"] != self.host.architecture:
            raise Failure("Failed to check baseline %s against %s: it was planned for %s %s (%s), this host runs %s %s "
                          "(%s)" % (baseline["sha256"][:12], self.host.host, want.get("id"),
                                    want.get("version_codename"), baseline["architecture"], have.get("id"),
                                    have.get("version_codename"), self.host.architecture))

    def check_dpkg(self, allowed=()):
        """dpkg must be clean (or repairable with repair_dpkg); packages in ``allowed`` may be broken."""
        problems = [item for item in self.host.dpkg_problems() if item["name"] not in allowed]
        interrupted = self.host.interrupted()
        if not problems and not interrupted:
            return False
        what = []
        if interrupted:
            what.append("a dpkg run was interrupted")
        if problems:
            listed = _list("%s %s (%s)" % (i["name"], i["version"], i["status"]) for i in problems)
            what.append("packages not fully installed: %s" % listed)
        if not self.p["repair_dpkg"]:
            raise Failure("Failed to check dpkg on %s: %s; nothing was changed. Repair it with dpkg --configure -a or "
                          "set repair_dpkg" % (self.host.host, "; ".join(what)), dpkg_audit=self.host.dpkg_audit())
        self.notes.append("%s: dpkg --configure -a %s" % ("; ".join(what), "would run (check mode)"
                                                          if self.check_mode else "runs first"))
        return True

    def load_rollback(self, required):
        path = self.p["rollback_path"]
        if not os.path.lexists(path):
            if required:
                raise Failure("Failed to read the rollback manifest %s: it does not exist (no baseline was applied "
                              "with it on this host)" % path)
            return None
        try:
            return _baseline.load_rollback(path)
        except _baseline.BaselineError as exc:
            raise Failure("Failed to read the rollback manifest: %s" % exc) from None

    # -- what to install -------------------------------------------------------------------
    def targets(self, baseline):
        """{name: entry} of the baseline packages to install here, with their current version as ``before``."""
        host = self.host
        targets, newer, optional = {}, [], {}
        for pkg in baseline["packages"]:
            name, version, arch = pkg["name"], pkg["version"], pkg["architecture"]
            current = host.installed_version(name, arch)
            if current == version:
                self.result["left_alone"].append({"name": name, "version": version, "reason": "already installed"})
            elif current is None and pkg["installed"] is None:
                optional[name] = pkg  # new on the planning host: installed only when a target needs it
            elif current is None:
                self.result["left_alone"].append({"name": name, "version": version,
                                                  "reason": "not installed on this host"})
            elif _apt.version_compare(current, version) > 0:
                newer.append("%s %s (baseline %s)" % (name, current, version))
            else:
                targets[name] = {"name": name, "architecture": arch, "before": current, "after": version, "pkg": pkg}
        if newer:
            raise Failure("Failed to check baseline %s against %s: installed versions are newer than the baseline's, "
                          "applying it would downgrade them: %s; nothing was changed"
                          % (baseline["sha256"][:12], host.host, _list(newer)))
        return targets, optional

    def check_available(self, entries, baseline_sha):
        """Every entry's version must come from a repository of the host, with the recorded .deb SHA-256."""
        missing, different = [], []
        for entry in entries:
            offered = self.host.available(entry["name"], entry["architecture"])
            match = [item for item in offered if item["version"] == entry["after"]]
            if not match:
                others = ", ".join(item["version"] for item in offered) or "none"
                missing.append("%s (available: %s)" % (_spec(entry["name"], entry["after"]), others))
                continue
            recorded = entry["pkg"].get("deb_sha256")
            if recorded and all(item["deb_sha256"] and item["deb_sha256"] != recorded for item in match):
                different.append("%s (baseline %s..., repository %s...)" % (
                    _spec(entry["name"], entry["after"]), recorded[:12], match[0]["deb_sha256"][:12]))
        if missing:
            raise Failure("Failed to check baseline %s against the repositories of %s: no repository provides %s; "
                          "nothing was changed" % (baseline_sha[:12], self.host.host, _list(missing)),
                          missing=missing)
        if different:
            raise Failure("Failed to check baseline %s against the repositories of %s: the repositories provide %s "
                          "with another .deb SHA-256 than the baseline recorded (not the build that was tested); "
                          "nothing was changed" % (baseline_sha[:12], self.host.host, _list(different)))

    def check_holds(self, entries):
        held = [entry["name"] for entry in entries if self.host.is_held(entry["name"], entry["architecture"])]
        if held and not self.p["allow_held"]:
            raise Failure("Failed to check holds on %s: the baseline would change held packages: %s (apt-mark hold); "
                          "set allow_held to install them; nothing was changed" % (self.host.host, _list(held)),
                          held=held)
        if held:
            self.notes.append("held packages changed (allow_held): %s" % _list(held))

    def resolve(self, baseline, targets, optional):
        """Simulate until apt's solution installs only baseline versions; refuse anything else."""
        by_name = dict((pkg["name"], pkg) for pkg in baseline["packages"])
        for _round in range(MAX_PIN_ROUNDS):
            specs = [_spec(name, entry["after"]) for name, entry in sorted(targets.items())]
            try:
                actions, lines = self.host.simulate(specs, allow_held=self.p["allow_held"])
            except _apt.AptError:
                self.check_new_packages(baseline, optional)
                raise
            problems, pinned = [], []
            for act in actions:
                name = act["name"]
                if act["action"] == "remove":
                    problems.append("remove %s %s" % (name, act["from"]))
                elif name in targets:
                    if act["to"] != targets[name]["after"]:
                        problems.append("install %s %s instead of %s" % (name, act["to"], targets[name]["after"]))
                elif name in by_name and act["action"] in ("install", "upgrade"):
                    pkg = by_name[name]
                    entry = {"name": name, "architecture": pkg["architecture"], "before": act["from"],
                             "after": pkg["version"], "pkg": pkg}
                    self.check_available([entry], baseline["sha256"])
                    targets[name] = entry
                    pinned.append(name)
                    optional.pop(name, None)
                else:
                    problems.append("%s %s %s, which is not in the baseline" % (
                        act["action"], name, act["to"] or ""))
            if problems:
                raise Failure("Failed to check the apt actions for baseline %s on %s: apt-get would %s; nothing was "
                              "changed" % (baseline["sha256"][:12], self.host.host, _list(problems)),
                              simulation=lines)
            if not pinned:
                self.result["actions"], self.result["simulation"] = actions, lines
                for name, pkg in sorted(optional.items()):
                    self.result["left_alone"].append({"name": name, "version": pkg["version"],
                                                      "reason": "new on the planning host, not needed here"})
                return specs
        raise Failure("Failed to check the apt actions for baseline %s on %s: the dependencies did not settle after "
                      "%d rounds" % (baseline["sha256"][:12], self.host.host, MAX_PIN_ROUNDS))

    def check_new_packages(self, baseline, optional):
        """apt could not solve the upgrade: when a package the baseline installs new (a dependency the upgrades
        brought along on the planning host) is missing at its version, that is the cause; name it."""
        missing = []
        for name, pkg in sorted(optional.items()):
            offered = self.host.available(name, pkg["architecture"])
            if not any(item["version"] == pkg["version"] for item in offered):
                missing.append("%s (available: %s)" % (_spec(name, pkg["version"]),
                                                       ", ".join(item["version"] for item in offered) or "none"))
        if missing:
            raise Failure("Failed to check baseline %s against the repositories of %s: no repository provides %s, "
                          "new with this baseline and needed by its upgrades; nothing was changed"
                          % (baseline["sha256"][:12], self.host.host, _list(missing)), missing=missing)

    # -- changing --------------------------------------------------------------------------
    def _prepare(self, deadline, repair, allowed=()):
        """Stop the apt timers, wait for apt services and the dpkg lock, repair dpkg if asked."""
        self.result["timers_paused"] = self.host.pause_timers()
        self.host.wait_for_apt_services(deadline)
        self.host.wait_for_lock(deadline)
        if repair:
            self.host.configure_pending()
            self.result["dpkg_repaired"] = True
            self.result["changed"] = True
            self.notes.append("dpkg --configure -a repaired the dpkg state")
            left = [item for item in self.host.dpkg_problems() if item["name"] not in allowed]
            if left:
                raise Failure("Failed to repair dpkg on %s: still not fully installed after dpkg --configure -a: %s"
                              % (self.host.host, _list("%s (%s)" % (i["name"], i["status"]) for i in left)))

    def current_versions(self, names):
        self.host.cache(refresh=True)
        return dict((name, self.host.installed_version(name, arch)) for name, arch in names)

    def write_manifest(self, manifest):
        try:
            _baseline.write_rollback(self.p["rollback_path"], manifest)
        except OSError as exc:
            raise Failure("Failed to write the rollback manifest %s: %s" % (self.p["rollback_path"],
                                                                            exc.strerror or exc)) from None

    def apply(self):
        baseline = self.load_baseline()
        host = self.host
        self.check_os(baseline)
        repair = self.check_dpkg()
        if self.p["update_cache"] and self.check_mode:
            self.notes.append("check mode: the apt lists were not refreshed")
        elif self.p["update_cache"]:
            host.update()
        targets, optional = self.targets(baseline)
        if targets:
            self.check_available(targets.values(), baseline["sha256"])
            self.check_holds(targets.values())
        previous = self.load_rollback(required=False)
        pending = previous is not None and previous["status"] == "pending"
        if pending and previous["baseline_sha256"] != baseline["sha256"]:
            raise Failure("Failed to record the rollback manifest %s: it belongs to baseline %s, whose application did "
                          "not finish (status pending); roll it back (state=rolled_back) or move it away first; "
                          "nothing was changed" % (self.p["rollback_path"], previous["baseline_sha256"][:12]))
        if not targets:
            self.notes.append("every package of baseline %s is at its version or not installed here: nothing to do"
                              % baseline["sha256"][:12])
            if repair and not self.check_mode:
                self._run_change(lambda: None, [], repair)
            self.finish([], check=self.check_mode, baseline=baseline)
            return self.result
        specs = self.resolve(baseline, targets, optional)
        changes = [dict((k, entry[k]) for k in ("name", "architecture", "before", "after"))
                   for _name, entry in sorted(targets.items())]
        self.result["packages"] = changes
        self.result["changed"] = True
        if self.check_mode:
            self.notes.append("check mode: would install %d packages of baseline %s: %s"
                              % (len(specs), baseline["sha256"][:12], _list(specs)))
            self.finish(changes, check=True)
            return self.result

        same = previous if (previous is not None and previous["status"] == "pending"
                            and previous["baseline_sha256"] == baseline["sha256"]) else None
        label = self.p["host_label"] or host.host

        def install():
            host.download(specs, allow_held=self.p["allow_held"])
            manifest = _baseline.new_rollback(label, baseline["sha256"], changes, previous=same)
            self.write_manifest(manifest)
            self.install_or_roll_back(manifest, specs, changes, previous)
            self.write_manifest(_baseline.with_status(manifest, "applied"))

        self._run_change(install, changes, repair)
        self.notes.insert(0, "installed %d packages of baseline %s: %s"
                          % (len(specs), baseline["sha256"][:12], _list(specs)))
        self.finish(changes, baseline=baseline)
        return self.result

    def _run_change(self, action, changes, repair, allowed=()):
        deadline = time.monotonic() + self.p["lock_timeout"]
        try:
            self._prepare(deadline, repair, allowed)
            action()
        finally:
            self.host.resume_timers(self.result["timers_paused"])

    def install_or_roll_back(self, manifest, specs, changes, previous):
        host = self.host
        names = [(c["name"], c["architecture"]) for c in changes]
        try:
            host.install(specs, allow_held=self.p["allow_held"])
            cause = None
        except _apt.AptError as exc:
            cause, failed, phase = exc.msg, exc.extra.get("failed_packages") or [], exc.extra.get("phase")
        if cause is None:
            now = self.current_versions(names)
            wrong = ["%s is %s, not %s" % (c["name"], now[c["name"]], c["after"]) for c in changes
                     if now[c["name"]] != c["after"]]
            broken = host.dpkg_problems()
            if not wrong and not broken:
                return
            cause = "; ".join(wrong + ["%s is %s" % (i["name"], i["status"]) for i in broken])
            failed, phase = [i["name"] for i in broken], "install"
        now = self.current_versions(names)
        touched = [c for c in changes if now[c["name"]] != c["before"]] or host.dpkg_problems()
        what = "Failed to install baseline %s on %s: %s" % (self.result["baseline_sha256"][:12], host.host, cause)
        extra = dict(failed_packages=failed)
        if not touched:
            # Nothing changed (the lock, say): the manifest of this attempt goes, the previous one comes back.
            if previous is not None:
                self.write_manifest(previous)
            else:
                try:
                    os.unlink(self.p["rollback_path"])
                except OSError:
                    pass
            if phase == "lock":
                what = cause
            raise Failure(what + "; nothing was changed", **extra)
        if not self.p["rollback_on_failure"]:
            raise Failure(what + "; the host is left as it is (rollback_on_failure is off): roll back with "
                          "state=rolled_back (rollback manifest %s)" % self.p["rollback_path"], **extra)
        try:
            done, unavailable = self.roll_back(manifest, execute=True, after_failure=True)
        except (Failure, _apt.AptError) as exc:
            raise Failure(what + "; the rollback failed too: %s; the rollback manifest %s keeps the pre-patch versions"
                          % (exc.msg, self.p["rollback_path"]), **extra) from None
        self.write_manifest(_baseline.with_status(manifest, "rolled_back"))
        self.result["rolled_back"] = True
        text = what + "; rolled back to the pre-patch versions: %s" % _list(
            "%s %s" % (c["name"], c["after"] or "removed") for c in done)
        if unavailable:
            text += "; NOT rolled back (no repository or cached archive has the old version): %s" % _list(
                _spec(u["name"], u["version"]) for u in unavailable)
        raise Failure(text, rolled_back=True, unavailable=unavailable, rollback_path=self.p["rollback_path"], **extra)

    # -- rolling back ------------------------------------------------------------------------
    def roll_back(self, manifest, execute, after_failure=False):
        """Install the manifest's ``before`` versions again; returns (changes done or planned, unavailable).

        ``execute=False`` stops after the simulation. ``after_failure`` also reinstalls packages dpkg
        left half-configured at their pre-patch version.
        """
        host = self.host
        host.cache(refresh=True)
        specs, removals, unavailable, changes = [], [], [], []
        broken_names = set(item["name"] for item in host.dpkg_problems()) if after_failure else set()
        for pkg in manifest["packages"]:
            name, arch, before = pkg["name"], pkg["architecture"], pkg["before"]
            current = host.installed_version(name, arch)
            broken = name in broken_names
            if current == before and not broken:
                self.result["left_alone"].append({"name": name, "version": before or "(not installed)",
                                                  "reason": "already at the pre-patch version"})
                continue
            if before is None:
                removals.append(name)
                changes.append({"name": name, "architecture": arch, "before": current, "after": None})
                continue
            if any(item["version"] == before for item in host.available(name, arch)):
                specs.append(_spec(name, before))
            else:
                archive = host.cached_archive(name, before, arch)
                if archive is None:
                    unavailable.append({"name": name, "version": before, "installed": current})
                    continue
                specs.append(archive)
                self.notes.append("%s %s comes from apt's archive cache (%s): no repository provides it any more"
                                  % (name, before, archive))
            changes.append({"name": name, "architecture": arch, "before": current, "after": before})
        self.result["unavailable"] = unavailable
        if not specs and not removals:
            return [], unavailable
        actions, lines = host.simulate(specs, allow_downgrades=True, allow_held=self.p["allow_held"],
                                       removals=removals)
        mine = set(c["name"] for c in changes)
        others = ["%s %s" % (a["action"], a["name"]) for a in actions if a["name"] not in mine]
        if others:
            raise Failure("Failed to roll back on %s: apt-get would also %s; nothing was rolled back"
                          % (host.host, _list(others)), simulation=lines)
        if not after_failure or not execute:
            self.result["actions"], self.result["simulation"] = actions, lines
        if not execute:
            return changes, unavailable
        host.download(specs, allow_downgrades=True, allow_held=self.p["allow_held"])
        host.install(specs, allow_downgrades=True, allow_held=self.p["allow_held"], removals=removals)
        now = self.current_versions([(c["name"], c["architecture"]) for c in changes])
        wrong = ["%s is %s, not %s" % (c["name"], now[c["name"]], c["after"]) for c in changes
                 if now[c["name"]] != c["after"]]
        broken = [item for item in host.dpkg_problems() if item["name"] in mine]
        if wrong or broken:
            raise Failure("Failed to roll back on %s: %s" % (host.host, "; ".join(
                wrong + ["%s is %s" % (i["name"], i["status"]) for i in broken])))
        return changes, unavailable

    def rolled_back(self):
        manifest = self.load_rollback(required=True)
        self.result["baseline_sha256"] = manifest["baseline_sha256"]
        if self.p["path"] or self.p["baseline"] is not None:
            baseline = self.load_baseline()
            if baseline["sha256"] != manifest["baseline_sha256"]:
                raise Failure("Failed to check the rollback manifest %s: it belongs to baseline %s, not %s"
                              % (self.p["rollback_path"], manifest["baseline_sha256"][:12], baseline["sha256"][:12]))
        mine = set(pkg["name"] for pkg in manifest["packages"])
        repair = self.check_dpkg(allowed=mine)
        if self.p["update_cache"] and not self.check_mode:
            self.host.update()
        changes, unavailable = self.roll_back(manifest, execute=False, after_failure=True)
        if not self.check_mode and (changes or repair):
            outcome = {}

            def act():
                outcome["done"] = self.roll_back(manifest, execute=True, after_failure=True)

            self._run_change(act, changes, repair, allowed=mine)
            changes, unavailable = outcome["done"]
        self.result["packages"] = changes
        self.result["changed"] = bool(changes) or self.result["dpkg_repaired"]
        self.result["rolled_back"] = bool(changes) and not self.check_mode
        if not unavailable and not self.check_mode and manifest["status"] != "rolled_back":
            self.write_manifest(_baseline.with_status(manifest, "rolled_back"))
        verb = "would roll back" if self.check_mode else "rolled back"
        if changes:
            self.notes.insert(0, "%s %d packages to their pre-patch versions: %s" % (verb, len(changes), _list(
                "%s %s" % (c["name"], c["after"] or "(removed)") for c in changes)))
        else:
            self.notes.insert(0, "every package of the rollback manifest is at its pre-patch version")
        self.finish(changes, check=self.check_mode)
        if unavailable:
            raise Failure("Failed to roll back %s on %s: no repository provides the pre-patch version any more and it "
                          "is not in apt's archive cache%s" % (
                              _list(_spec(u["name"], u["version"]) for u in unavailable), self.host.host,
                              "; the other packages were rolled back" if changes and not self.check_mode else ""))
        return self.result

    # -- the report ----------------------------------------------------------------------------
    def finish(self, changes, check=False, baseline=None):
        changed_names = [c["name"] for c in changes]
        if check:
            flagged = sorted(name for name in changed_names if _apt.matches(name, self.reboot_patterns))
            needed, reasons = self.host.reboot_status((), ())
            if flagged:
                needed = True
                reasons = reasons + ["packages that need a reboot after upgrading: %s" % ", ".join(flagged)]
            units = []
            for change in changes:
                units.extend(self.host.unit_files(change["name"], change["architecture"]))
            services, used = self.host.active_units(units), False
        else:
            needed, reasons = self.host.reboot_status(changed_names, self.reboot_patterns)
            packages = [(c["name"], c["architecture"]) for c in changes if c["after"] is not None]
            if baseline is not None:
                packages += [(pkg["name"], pkg["architecture"]) for pkg in baseline["packages"]]
            services, used = self.host.services_to_restart(sorted(set(packages)))
        self.result.update(reboot_required=needed, reboot_reasons=reasons, services=services, needrestart=used)
        if self.module._diff:
            self.result["diff"] = dict(
                before="".join("%s %s\n" % (c["name"], c["before"] or "(not installed)") for c in changes),
                after="".join("%s %s\n" % (c["name"], c["after"] or "(removed)") for c in changes))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["applied", "rolled_back"], default="applied"),
            path=dict(type="path"),
            baseline=dict(type="dict"),
            expected_sha256=dict(type="str"),
            update_cache=dict(type="bool", default=False),
            allow_held=dict(type="bool", default=False),
            repair_dpkg=dict(type="bool", default=False),
            rollback_on_failure=dict(type="bool", default=True),
            rollback_path=dict(type="path", default="/var/lib/upkeep-runbooks/apt-rollback.json"),
            reboot_packages=dict(type="list", elements="str"),
            lock_timeout=dict(type="int", default=300),
            host_label=dict(type="str"),
        ),
        mutually_exclusive=[("path", "baseline")],
        required_if=[("state", "applied", ("path", "baseline"), True)],
        supports_check_mode=True,
    )
    _apt.ensure_apt_pkg(module)
    if module.params["lock_timeout"] < 0:
        module.fail_json(msg="Failed to validate lock_timeout: must not be negative")
    label = module.params["host_label"] or socket.gethostname()
    flow = None
    try:
        flow = Apply(module, _apt.AptHost(module, lock_timeout=module.params["lock_timeout"], host=label))
        result = flow.apply() if module.params["state"] == "applied" else flow.rolled_back()
    except (Failure, _apt.AptError) as exc:
        out = dict(flow.result) if flow is not None else dict(changed=False, state=module.params["state"])
        out.update(exc.extra)
        module.fail_json(msg=exc.msg, **out)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
