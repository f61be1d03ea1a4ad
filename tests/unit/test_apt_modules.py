"""apt_patch_plan and apt_patch_apply main() with the apt backend replaced by an in-memory host."""

import json
import os
import stat
from unittest import mock

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _apt
from ansible_collections.upkeep.runbooks.plugins.module_utils import _baseline
from ansible_collections.upkeep.runbooks.plugins.modules import apt_patch_apply, apt_patch_plan
from tests.unit.module_helpers import run_module_main

SOURCE_ID = "http://127.0.6.1:8080/ upkeep"
SOURCE = {"id": SOURCE_ID, "uri": "http://127.0.6.1:8080/", "dist": "upkeep", "origin": "upkeep-test",
          "label": "upkeep-test", "suite": "upkeep", "codename": "upkeep", "date": "Tue, 01 Dec 2026 10:59:15 UTC",
          "valid_until": None, "release_file": "InRelease", "sha256": "d" * 64, "signed": True}
OS_RELEASE = {"id": "debian", "version_id": "12", "version_codename": "bookworm",
              "pretty_name": "Debian GNU/Linux 12 (bookworm)", "debian_version": "12.11"}


def sha(name, version):
    import hashlib
    return hashlib.sha256(("%s=%s" % (name, version)).encode()).hexdigest()


class FakeVersion:
    arch = "all"


class FakeHost:
    """Packages, a repository and dpkg in memory; apt-get -s/download/install act on them."""

    architecture = "amd64"

    def __init__(self, installed, repo, conflicts=None, failing=(), held=(), security=()):
        self.host = "prod1"
        self.installed = dict(installed)
        self.repo = dict((name, list(versions)) for name, versions in repo.items())
        self.conflicts = dict(conflicts or {})
        self.failing = set(failing)
        self.held = set(held)
        self.security = set(security)
        self.broken = {}
        self.calls = []
        self.download_error = None

    # reading
    def cache(self, refresh=False):
        return None

    def installed_version(self, name, architecture=None):
        return self.installed.get(name)

    def is_held(self, name, architecture=None):
        return name in self.held

    def available(self, name, architecture=None):
        return [{"version": v, "deb_sha256": sha(name, v)} for v in self.repo.get(name, [])]

    def find_version(self, name, version, architecture=None):
        return FakeVersion() if version in self.repo.get(name, []) else None

    def origin_of(self, version):
        return {"origin": "upkeep-test", "label": "upkeep-test", "suite": "upkeep", "codename": "upkeep",
                "component": "main", "site": "127.0.6.1", "repositories": [SOURCE_ID], "security": False}

    def deb_sha256(self, version):
        return None

    def source_package(self, version):
        return None

    def source_identity(self, ident):
        return dict(SOURCE) if ident == SOURCE_ID else None

    def unit_files(self, name, architecture=None):
        return ["%s.service" % name] if name.endswith("svc") else []

    def active_units(self, units):
        return list(units)

    def dpkg_problems(self):
        return [{"name": n, "version": self.installed[n], "status": s} for n, s in sorted(self.broken.items())]

    def interrupted(self):
        return False

    def dpkg_audit(self):
        return "\n".join(" %s" % n for n in self.broken)

    # apt-get
    def update(self):
        self.calls.append("update")

    def simulate(self, specs, allow_downgrades=False, allow_held=False, removals=()):
        self.calls.append(("simulate", tuple(specs)))
        broken = [spec for spec in specs if spec in getattr(self, "unsolvable", ())]
        if broken:
            raise _apt.AptError("Failed to simulate apt-get install %s on prod1: E: Unable to correct problems, "
                                "you have held broken packages." % " ".join(specs))
        actions = []
        for spec in specs:
            name, _, version = spec.partition("=")
            current = self.installed.get(name)
            if current is None:
                kind = "install"
            else:
                order = _apt.version_compare(version, current)
                kind = "upgrade" if order > 0 else "downgrade" if order < 0 else "reinstall"
            actions.append({"action": kind, "name": name, "architecture": "all", "from": current, "to": version})
            victim = self.conflicts.get((name, version))
            if victim and victim in self.installed:
                actions.append({"action": "remove", "name": victim, "architecture": None,
                                "from": self.installed[victim], "to": None})
        for name in removals:
            actions.append({"action": "remove", "name": name, "architecture": None, "from": self.installed.get(name),
                            "to": None})
        return actions, ["Inst %s" % spec for spec in specs]

    def pause_timers(self):
        self.calls.append("pause")
        return ["apt-daily.timer", "apt-daily-upgrade.timer"]

    def resume_timers(self, timers):
        self.calls.append(("resume", tuple(timers)))

    def wait_for_apt_services(self, deadline=None):
        pass

    def wait_for_lock(self, deadline=None):
        pass

    def configure_pending(self):
        self.calls.append("configure")
        self.broken.clear()

    def download(self, specs, allow_downgrades=False, allow_held=False):
        self.calls.append(("download", tuple(specs)))
        if self.download_error:
            raise _apt.AptError("Failed to download the packages on prod1: %s; nothing was installed"
                                % self.download_error, phase="download")

    def install(self, specs, allow_downgrades=False, allow_held=False, removals=()):
        self.calls.append(("install", tuple(specs), tuple(removals)))
        failed = []
        for spec in specs:
            name, _, version = spec.partition("=")
            self.installed[name] = version
            self.broken.pop(name, None)
            if name in self.failing and not allow_downgrades:
                self.broken[name] = "iF"
                failed.append(name)
        for name in removals:
            self.installed.pop(name, None)
        if failed:
            raise _apt.AptError("dpkg: error processing package %s (--configure):; post-installation script "
                                "subprocess returned error exit status 1" % failed[0], phase="install",
                                failed_packages=failed)
        return ""

    def cached_archive(self, name, version, architecture):
        return None

    def reboot_status(self, changed_names=(), patterns=()):
        flagged = [n for n in changed_names if _apt.matches(n, patterns)]
        return bool(flagged), (["upgraded packages that need a reboot: %s" % ", ".join(flagged)] if flagged else [])

    def services_to_restart(self, packages):
        return sorted("%s.service" % n for n, _a in packages if n.endswith("svc") and n in self.installed), False


BASE = {"upkeep-testlib": "1.0-1", "upkeep-testlib-dep": "1.0-1", "upkeep-testsvc": "1.0-1"}
REPO = {"upkeep-testlib": ["1.2-1", "1.1-1", "1.0-1"], "upkeep-testlib-dep": ["1.2-1", "1.1-1", "1.0-1"],
        "upkeep-testsvc": ["1.1-1", "1.0-1"], "upkeep-testrm": ["1.1-1", "1.0-1"]}


def baseline_doc(pins, installed=BASE, **overrides):
    packages = []
    for name, version in pins.items():
        packages.append({"name": name, "architecture": "all", "installed": installed.get(name), "version": version,
                         "deb_sha256": sha(name, version), "source_package": name, "origin": "upkeep-test",
                         "label": "upkeep-test", "suite": "upkeep", "codename": "upkeep", "component": "main",
                         "site": "127.0.6.1", "repositories": [SOURCE_ID], "security": False, "reboot": False,
                         "services": []})
    args = dict(host="staging1", os_release=OS_RELEASE, architecture="amd64", lists_refreshed=True,
                selection={"include": ["*"], "exclude": []}, packages=packages, sources=[SOURCE], excluded=[],
                held_back=[])
    args.update(overrides)
    return _baseline.new_baseline(**args)


PINS = {"upkeep-testlib": "1.1-1", "upkeep-testlib-dep": "1.1-1", "upkeep-testsvc": "1.1-1"}


@pytest.fixture
def patched():
    state = {}

    def use(host):
        state["host"] = host
        return host

    with mock.patch.object(_apt, "ensure_apt_pkg"), \
            mock.patch.object(_apt, "AptHost", side_effect=lambda *a, **k: state["host"]), \
            mock.patch.object(_apt, "read_os_release", return_value=dict(OS_RELEASE)):
        yield use


def run_apply(tmp_path, args, check_mode=False, diff=False):
    full = dict(rollback_path=str(tmp_path / "state" / "rollback.json"), host_label="prod1")
    full.update(args)
    return run_module_main(apt_patch_apply, full, check_mode=check_mode, diff=diff)


# --------------------------------------------------------------------------------------
# apt_patch_plan


def upgradable_of(host):
    found = []
    for name, current in sorted(host.installed.items()):
        newest = host.repo.get(name, [current])[0]
        if _apt.version_compare(newest, current) > 0:
            found.append({"name": name, "architecture": "all", "installed": current, "candidate": newest,
                          "spec": "%s=%s" % (name, newest)})
    return found


def test_plan_writes_a_sealed_baseline_once(tmp_path, patched):
    host = patched(FakeHost(BASE, REPO))
    path = tmp_path / "plans" / "baseline.json"
    with mock.patch.object(_apt, "upgradable", side_effect=upgradable_of):
        res = run_module_main(apt_patch_plan, {"path": str(path), "host_label": "staging1"}, diff=True)
        assert res.exit_code == 0 and res["changed"], res
        assert res["packages"] == ["upkeep-testlib=1.2-1", "upkeep-testlib-dep=1.2-1", "upkeep-testsvc=1.1-1"]
        assert res["services"] == ["upkeep-testsvc.service"] and res["sources"] == [SOURCE]
        assert res["diff"]["before"] == "" and "upkeep-testsvc=1.1-1\n" in res["diff"]["after"]
        on_disk = json.loads(path.read_text())
        assert on_disk == res["baseline"] and on_disk["sha256"] == res["sha256"] == _baseline.digest(on_disk)
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o755

        again = run_module_main(apt_patch_plan, {"path": str(path), "host_label": "staging1"})
        assert not again["changed"] and again["sha256"] == res["sha256"]
        assert again["baseline"]["created_at"] == res["baseline"]["created_at"]

        other = tmp_path / "other.json"
        checked = run_module_main(apt_patch_plan, {"path": str(other), "update_cache": True}, check_mode=True)
        assert checked["changed"] and not other.exists() and "update" not in host.calls
        assert "check mode: the apt lists were not refreshed" in checked["notes"][0]


def test_plan_holds_back_what_would_remove_or_needs_an_excluded_package(tmp_path, patched):
    # A package new with the baseline (a dependency the service's upgrade brought along) is gone from the
    # repository: apt cannot solve the upgrade, and the refusal names the package, not apt's riddle.
    doc = baseline_doc(dict(PINS, **{"upkeep-testhelper": "1.1-1"}))
    host = patched(FakeHost(BASE, REPO))
    host.unsolvable = {"upkeep-testsvc=1.1-1"}
    res = run_apply(tmp_path, {"baseline": doc})
    assert res.failed and res["msg"] == (
        "Failed to check baseline %s against the repositories of prod1: no repository provides "
        "upkeep-testhelper=1.1-1 (available: none), new with this baseline and needed by its upgrades; nothing was "
        "changed" % doc["sha256"][:12])
    assert res["missing"] == ["upkeep-testhelper=1.1-1 (available: none)"] and host.installed == BASE
    # When the new package is there, apt's own answer is the message.
    host = patched(FakeHost(BASE, dict(REPO, **{"upkeep-testhelper": ["1.1-1"]})))
    host.unsolvable = {"upkeep-testsvc=1.1-1"}
    res = run_apply(tmp_path, {"baseline": doc})
    assert res.failed and res["msg"].startswith("Failed to simulate apt-get install ") and "held broken" in res["msg"]

    installed = dict(BASE, **{"upkeep-testrm": "1.0-1", "upkeep-testlegacy": "1.0-1"})
    host = patched(FakeHost(installed, REPO, conflicts={("upkeep-testrm", "1.1-1"): "upkeep-testlegacy"}))
    with mock.patch.object(_apt, "upgradable", side_effect=upgradable_of):
        res = run_module_main(apt_patch_plan, {"path": str(tmp_path / "b.json"), "exclude": ["upkeep-testsvc"]})
    assert res.exit_code == 0, res
    assert res["packages"] == ["upkeep-testlib=1.2-1", "upkeep-testlib-dep=1.2-1"]
    assert res["excluded"] == [{"name": "upkeep-testsvc", "installed": "1.0-1", "candidate": "1.1-1",
                                "reason": "excluded by pattern upkeep-testsvc"}]
    assert res["held_back"] == [{"name": "upkeep-testrm", "installed": "1.0-1", "candidate": "1.1-1",
                                 "reason": "would remove upkeep-testlegacy 1.0-1"}]
    assert any(call[0] == "simulate" and call[1] == ("upkeep-testrm=1.1-1",) for call in host.calls
               if isinstance(call, tuple))


def test_plan_holds_back_a_package_apt_cannot_solve(tmp_path, patched):
    host = patched(FakeHost(BASE, REPO))
    host.unsolvable = {"upkeep-testsvc=1.1-1"}
    with mock.patch.object(_apt, "upgradable", side_effect=upgradable_of):
        res = run_module_main(apt_patch_plan, {"path": str(tmp_path / "b.json")})
    assert res.exit_code == 0, res
    assert res["packages"] == ["upkeep-testlib=1.2-1", "upkeep-testlib-dep=1.2-1"]
    assert res["held_back"] == [{"name": "upkeep-testsvc", "installed": "1.0-1", "candidate": "1.1-1",
                                 "reason": "apt finds no solution: E: Unable to correct problems, you have held "
                                           "broken packages."}]


def test_plan_refuses_a_directory_as_path(tmp_path, patched):
    patched(FakeHost(BASE, REPO))
    res = run_module_main(apt_patch_plan, {"path": str(tmp_path)})
    assert res.failed and res["msg"] == "Failed to check path %s: it is a directory" % tmp_path


# --------------------------------------------------------------------------------------
# apt_patch_apply


def test_apply_installs_exactly_the_baseline_and_records_the_rollback(tmp_path, patched):
    host = patched(FakeHost(BASE, REPO))
    doc = baseline_doc(PINS)
    res = run_apply(tmp_path, {"baseline": doc, "expected_sha256": doc["sha256"]}, diff=True)
    assert res.exit_code == 0 and res["changed"], res
    assert host.installed == PINS
    install = [call for call in host.calls if isinstance(call, tuple) and call[0] == "install"]
    assert install == [("install", ("upkeep-testlib=1.1-1", "upkeep-testlib-dep=1.1-1", "upkeep-testsvc=1.1-1"), ())]
    order = [c if isinstance(c, str) else c[0] for c in host.calls]
    assert order.index("download") < order.index("install") and order[-1] == "resume"
    assert res["timers_paused"] == ["apt-daily.timer", "apt-daily-upgrade.timer"]
    assert res["services"] == ["upkeep-testsvc.service"]
    assert res["diff"]["before"].startswith("upkeep-testlib 1.0-1\n")
    manifest = _baseline.load_rollback(res["rollback_path"])
    assert manifest["status"] == "applied" and manifest["baseline_sha256"] == doc["sha256"]
    assert dict((p["name"], p["before"]) for p in manifest["packages"]) == BASE
    assert stat.S_IMODE(os.stat(res["rollback_path"]).st_mode) == 0o600

    again = run_apply(tmp_path, {"baseline": doc})
    assert again.exit_code == 0 and not again["changed"]
    assert {s["reason"] for s in again["left_alone"]} == {"already installed"}
    assert _baseline.load_rollback(res["rollback_path"]) == manifest


def test_check_mode_changes_nothing(tmp_path, patched):
    host = patched(FakeHost(BASE, REPO))
    res = run_apply(tmp_path, {"baseline": baseline_doc(PINS)}, check_mode=True)
    assert res["changed"] and [a["action"] for a in res["actions"]] == ["upgrade"] * 3
    assert host.installed == BASE and not (tmp_path / "state").exists()
    assert not any(c in host.calls for c in ("pause",)) and all(
        c[0] == "simulate" for c in host.calls if isinstance(c, tuple))


@pytest.mark.parametrize("mutate, expected", [
    (lambda doc: doc["packages"][0].update(version="1.2-1"), "Failed to verify the baseline: the baseline given as "
                                                              "content does not match its sha256"),
    (lambda doc: doc.update(format_version=3), "Failed to verify the baseline: the baseline given as content has "
                                               "format_version 3"),
])
def test_apply_refuses_a_changed_baseline(tmp_path, patched, mutate, expected):
    host = patched(FakeHost(BASE, REPO))
    doc = baseline_doc(PINS)
    mutate(doc)
    res = run_apply(tmp_path, {"baseline": doc})
    assert res.failed and res["msg"].startswith(expected), res["msg"]
    assert host.installed == BASE and host.calls == []


def test_apply_refuses_another_promoted_digest_another_os_and_newer_versions(tmp_path, patched):
    host = patched(FakeHost(BASE, REPO))
    doc = baseline_doc(PINS)
    res = run_apply(tmp_path, {"baseline": doc, "expected_sha256": "f" * 64})
    assert res.failed and res["msg"] == ("Failed to verify the baseline: its sha256 is %s, not the expected %s (a "
                                         "different baseline from the one promoted)" % (doc["sha256"], "f" * 64))
    trixie = baseline_doc(PINS, os_release=dict(OS_RELEASE, version_codename="trixie"))
    res = run_apply(tmp_path, {"baseline": trixie})
    assert res.failed and res["msg"].startswith("Failed to check baseline %s against prod1: it was planned for "
                                                "debian trixie (amd64), this host runs debian bookworm (amd64)"
                                                % trixie["sha256"][:12]), res["msg"]
    host.installed["upkeep-testsvc"] = "1.2-1"
    res = run_apply(tmp_path, {"baseline": doc})
    assert res.failed and "installed versions are newer than the baseline's, applying it would downgrade them: " \
        "upkeep-testsvc 1.2-1 (baseline 1.1-1)" in res["msg"]
    assert not any(isinstance(c, tuple) and c[0] == "install" for c in host.calls)


def test_apply_refuses_missing_versions_other_builds_holds_and_removals(tmp_path, patched):
    repo = dict(REPO, **{"upkeep-testlib": ["1.2-1", "1.0-1"]})
    host = patched(FakeHost(BASE, repo))
    doc = baseline_doc(PINS)
    res = run_apply(tmp_path, {"baseline": doc})
    assert res.failed and res["msg"] == (
        "Failed to check baseline %s against the repositories of prod1: no repository provides "
        "upkeep-testlib=1.1-1 (available: 1.2-1, 1.0-1); nothing was changed" % doc["sha256"][:12])
    assert res["missing"] == ["upkeep-testlib=1.1-1 (available: 1.2-1, 1.0-1)"]

    host = patched(FakeHost(BASE, REPO))
    rebuilt = json.loads(json.dumps(doc))
    rebuilt["packages"][0]["deb_sha256"] = "e" * 64
    res = run_apply(tmp_path, {"baseline": _baseline.seal(rebuilt)})
    assert res.failed and "with another .deb SHA-256 than the baseline recorded" in res["msg"]

    host = patched(FakeHost(BASE, REPO, held=["upkeep-testsvc"]))
    res = run_apply(tmp_path, {"baseline": doc})
    assert res.failed and res["msg"].startswith("Failed to check holds on prod1: the baseline would change held "
                                                "packages: upkeep-testsvc (apt-mark hold)")
    res = run_apply(tmp_path, {"baseline": doc, "allow_held": True})
    assert not res.failed and host.installed == PINS

    # A package new with the baseline (a dependency the service's upgrade brought along) is gone from the
    # repository: apt cannot solve the upgrade, and the refusal names the package, not apt's riddle.
    doc = baseline_doc(dict(PINS, **{"upkeep-testhelper": "1.1-1"}))
    host = patched(FakeHost(BASE, REPO))
    host.unsolvable = {"upkeep-testsvc=1.1-1"}
    res = run_apply(tmp_path, {"baseline": doc})
    assert res.failed and res["msg"] == (
        "Failed to check baseline %s against the repositories of prod1: no repository provides "
        "upkeep-testhelper=1.1-1 (available: none), new with this baseline and needed by its upgrades; nothing was "
        "changed" % doc["sha256"][:12])
    assert res["missing"] == ["upkeep-testhelper=1.1-1 (available: none)"] and host.installed == BASE
    # When the new package is there, apt's own answer is the message.
    host = patched(FakeHost(BASE, dict(REPO, **{"upkeep-testhelper": ["1.1-1"]})))
    host.unsolvable = {"upkeep-testsvc=1.1-1"}
    res = run_apply(tmp_path, {"baseline": doc})
    assert res.failed and res["msg"].startswith("Failed to simulate apt-get install ") and "held broken" in res["msg"]

    installed = dict(BASE, **{"upkeep-testrm": "1.0-1", "upkeep-testlegacy": "1.0-1"})
    host = patched(FakeHost(installed, REPO, conflicts={("upkeep-testrm", "1.1-1"): "upkeep-testlegacy"}))
    doc = baseline_doc(dict(PINS, **{"upkeep-testrm": "1.1-1"}), installed=dict(BASE, **{"upkeep-testrm": "1.0-1"}))
    res = run_apply(tmp_path, {"baseline": doc})
    assert res.failed and "apt-get would remove upkeep-testlegacy 1.0-1; nothing was changed" in res["msg"]
    assert host.installed == installed


def test_a_failed_installation_is_rolled_back(tmp_path, patched):
    host = patched(FakeHost(BASE, REPO, failing=["upkeep-testsvc"]))
    doc = baseline_doc(PINS)
    res = run_apply(tmp_path, {"baseline": doc})
    assert res.failed and res["rolled_back"] and res["failed_packages"] == ["upkeep-testsvc"], res
    assert res["msg"].startswith("Failed to install baseline %s on prod1: dpkg: error processing package "
                                 "upkeep-testsvc" % doc["sha256"][:12])
    assert "; rolled back to the pre-patch versions: upkeep-testlib 1.0-1, upkeep-testlib-dep 1.0-1, upkeep-testsvc " \
           "1.0-1" in res["msg"]
    assert host.installed == BASE and host.broken == {}
    assert _baseline.load_rollback(res["rollback_path"])["status"] == "rolled_back"
    assert host.calls[-1] == ("resume", ("apt-daily.timer", "apt-daily-upgrade.timer"))


def test_without_rollback_the_manifest_stays_pending_and_blocks_another_baseline(tmp_path, patched):
    host = patched(FakeHost(BASE, REPO, failing=["upkeep-testsvc"]))
    doc = baseline_doc(PINS)
    res = run_apply(tmp_path, {"baseline": doc, "rollback_on_failure": False})
    assert res.failed and not res["rolled_back"] and "rollback_on_failure is off" in res["msg"]
    assert host.broken == {"upkeep-testsvc": "iF"}
    assert _baseline.load_rollback(res["rollback_path"])["status"] == "pending"

    res = run_apply(tmp_path, {"baseline": doc})
    assert res.failed and res["msg"].startswith("Failed to check dpkg on prod1: packages not fully installed: "
                                                "upkeep-testsvc 1.1-1 (iF); nothing was changed")
    host.broken.clear()
    other = baseline_doc({"upkeep-testlib": "1.2-1"})
    res = run_apply(tmp_path, {"baseline": other})
    assert res.failed and "it belongs to baseline %s, whose application did not finish" % doc["sha256"][:12] \
        in res["msg"]

    host.broken["upkeep-testsvc"] = "iF"
    res = run_apply(tmp_path, {"state": "rolled_back", "baseline": doc})
    assert not res.failed and res["rolled_back"] and host.installed == BASE and host.broken == {}, res
    assert _baseline.load_rollback(res["rollback_path"])["status"] == "rolled_back"
    again = run_apply(tmp_path, {"state": "rolled_back"})
    assert not again.failed and not again["changed"]


def test_a_failed_download_changes_nothing(tmp_path, patched):
    host = patched(FakeHost(BASE, REPO))
    host.download_error = "E: Failed to fetch http://127.0.6.1:8080/pool/x.deb  Connection failed"
    res = run_apply(tmp_path, {"baseline": baseline_doc(PINS)})
    assert res.failed and res["msg"].endswith("Connection failed; nothing was installed")
    assert host.installed == BASE and not (tmp_path / "state" / "rollback.json").exists()
    assert host.calls[-1][0] == "resume"


def test_rolled_back_names_versions_no_repository_has(tmp_path, patched):
    host = patched(FakeHost(BASE, REPO))
    doc = baseline_doc(PINS)
    assert not run_apply(tmp_path, {"baseline": doc}).failed
    host.repo["upkeep-testsvc"] = ["1.1-1"]
    res = run_apply(tmp_path, {"state": "rolled_back"})
    assert res.failed and res["msg"] == ("Failed to roll back upkeep-testsvc=1.0-1 on prod1: no repository provides "
                                         "the pre-patch version any more and it is not in apt's archive cache; the "
                                         "other packages were rolled back")
    assert res["unavailable"] == [{"name": "upkeep-testsvc", "version": "1.0-1", "installed": "1.1-1"}]
    assert host.installed == dict(BASE, **{"upkeep-testsvc": "1.1-1"})
    assert _baseline.load_rollback(res["rollback_path"])["status"] == "applied"

    res = run_apply(tmp_path, {"state": "rolled_back", "baseline": baseline_doc({"upkeep-testlib": "1.2-1"})})
    assert res.failed and res["msg"].startswith("Failed to check the rollback manifest")


def test_rolled_back_without_a_manifest(tmp_path, patched):
    patched(FakeHost(BASE, REPO))
    res = run_apply(tmp_path, {"state": "rolled_back"})
    assert res.failed and res["msg"].startswith("Failed to read the rollback manifest %s: it does not exist"
                                                % (tmp_path / "state" / "rollback.json"))


def test_arguments(tmp_path, patched):
    patched(FakeHost(BASE, REPO))
    res = run_apply(tmp_path, {})
    assert res.failed and "path, baseline" in res["msg"]
    res = run_apply(tmp_path, {"path": "/x", "baseline": {}})
    assert res.failed and "mutually exclusive" in res["msg"]
