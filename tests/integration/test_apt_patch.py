"""apt_patch_plan and apt_patch_apply inside Debian containers against a real, signed apt repository.

The repository (lab/aptrepo.py) is published step by step: 1 (everything at 1.0-1), 2 (the 1.1-1
set staging tests; upkeep-testlib and its dependency from the security suite), 3 (1.2-1 of the
library chain and the service: newer than what staging tested). Hosts are containers of the lab
image (tests/fixtures/apt_repo.py); the modules run inside them with the container's python3-apt.
"""

import json
import os
import subprocess
import threading

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _baseline
from tests.fixtures.apt_repo import BASE, REPO_ADDRESS, AptHost, AptRepo, aptrepo

pytestmark = [pytest.mark.integration, pytest.mark.containers]  # hosts are lab-image containers

BASELINE = "/var/lib/upkeep-runbooks/patch-baseline.json"
ROLLBACK = "/var/lib/upkeep-runbooks/apt-rollback.json"
REBOOT = {"reboot_packages": ["upkeep-testreboot"]}
# upkeep-testsvc 1.1-1 needs upkeep-testhelper, a package the hosts do not have yet.
STEP2 = {"upkeep-testlib": "1.1-1", "upkeep-testlib-dep": "1.1-1", "upkeep-testsvc": "1.1-1",
         "upkeep-testreboot": "1.1-1", "upkeep-testconf": "1:1.1-1", "upkeep-testhelper": "1.1-1"}
STEP1 = {"upkeep-testlib": "1.0-1", "upkeep-testlib-dep": "1.0-1", "upkeep-testsvc": "1.0-1",
         "upkeep-testreboot": "1.0-1", "upkeep-testconf": "1:1.0-1"}


def plan(host, check_mode=False, diff=False, path=BASELINE, **args):
    res = host.module("apt_patch_plan", dict(REBOOT, path=path, host_label="staging1", **args),
                      check_mode=check_mode, diff=diff)
    return res


def apply(host, check_mode=False, diff=False, **args):
    return host.module("apt_patch_apply", dict(REBOOT, host_label="prod1", **args), check_mode=check_mode, diff=diff)


def pins(baseline):
    return dict((pkg["name"], pkg["version"]) for pkg in baseline["packages"])


# --------------------------------------------------------------------------------------
# planning: one repository and one host shared by the read-only tests of a worker


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """A host with the base packages plus upkeep-testrm and upkeep-testlegacy, the repository at step 2."""
    debs = tmp_path_factory.mktemp("plan-debs")
    aptrepo.build_debs(str(debs))
    repo = AptRepo(tmp_path_factory.mktemp("plan-repo"), host=REPO_ADDRESS, debs_dir=debs).up(step=2)
    host = AptHost(repo)
    try:
        host.start(install=BASE + ("upkeep-testrm=1.0-1", "upkeep-testlegacy=1.0-1"))
        yield host
    finally:
        host.remove()
        repo.close()


def test_plan_lists_the_upgrade_with_origins_and_flags(planned):
    res = plan(planned)
    assert not res.failed, res
    baseline = res["baseline"]
    assert pins(baseline) == STEP2, res["packages"]
    assert res["packages"] == ["%s=%s" % (name, STEP2[name]) for name in sorted(STEP2)]
    by_name = dict((pkg["name"], pkg) for pkg in baseline["packages"])
    assert res["security"] == ["upkeep-testlib", "upkeep-testlib-dep"]
    assert by_name["upkeep-testlib"]["suite"] == "upkeep-security" and by_name["upkeep-testlib"]["security"]
    assert by_name["upkeep-testsvc"]["suite"] == "upkeep" and not by_name["upkeep-testsvc"]["security"]
    assert by_name["upkeep-testsvc"]["origin"] == aptrepo.ORIGIN
    assert by_name["upkeep-testlib"]["installed"] == "1.0-1"
    assert by_name["upkeep-testhelper"]["installed"] is None and by_name["upkeep-testhelper"]["services"] == []
    assert [name for name, pkg in by_name.items() if pkg["reboot"]] == ["upkeep-testreboot"]
    assert res["reboot_required"] is True
    assert by_name["upkeep-testsvc"]["services"] == ["upkeep-testsvc.service"]
    assert res["services"] == ["upkeep-testsvc.service"]
    # upkeep-testrm 1.1-1 conflicts with the installed upkeep-testlegacy: a plan never removes.
    assert [(item["name"], item["reason"]) for item in res["held_back"]] == [
        ("upkeep-testrm", "would remove upkeep-testlegacy 1.0-1")]
    # The .deb checksums are the ones the repository index lists.
    debs = aptrepo.build_debs(str(planned.repo.debs_dir))
    assert by_name["upkeep-testlib"]["deb_sha256"] == _sha256(debs[("upkeep-testlib", "1.1-1")])
    # The identity of both Release files the host downloaded.
    sources = dict((src["dist"], src) for src in baseline["sources"])
    assert sorted(sources) == ["upkeep", "upkeep-security"]
    for suite, src in sources.items():
        assert src["sha256"] == planned.repo.release_sha256(suite)
        assert src["signed"] is True and src["release_file"] == "InRelease" and src["date"]
        assert src["uri"] == planned.repo.url
    assert baseline["os_release"]["id"] == "debian" and baseline["os_release"]["version_codename"] == "bookworm"
    assert baseline["host"] == "staging1" and baseline["architecture"] == "amd64"
    # Written as returned, sealed, readable by everyone, nothing installed.
    on_disk = planned.json(BASELINE)
    assert on_disk == baseline and _baseline.digest(on_disk) == res["sha256"] == on_disk["sha256"]
    assert planned.sh("stat -c %%a %s" % BASELINE).stdout.strip() == "644"
    assert planned.versions()["upkeep-testlib"] == "1.0-1"


def _sha256(path):
    import hashlib
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_plan_is_stable_and_its_digest_does_not_depend_on_layout(planned):
    first = plan(planned, path="/root/stable.json")
    assert first["changed"], first
    second = plan(planned, path="/root/stable.json", diff=True)
    assert not second["changed"] and second["sha256"] == first["sha256"], second
    assert second["diff"]["before"] == second["diff"]["after"]
    # The digest covers the canonical form: re-indenting and reordering keys keeps it valid.
    data = planned.json("/root/stable.json")
    planned.write("/root/reformatted.json", json.dumps(data, indent=7, sort_keys=False))
    local = os.path.join(os.environ.get("TMPDIR", "/tmp"), "upkeep-reformatted-%d.json" % os.getpid())
    with open(local, "w") as handle:
        handle.write(planned.read("/root/reformatted.json"))
    try:
        assert _baseline.load_baseline(local)["sha256"] == first["sha256"]
    finally:
        os.unlink(local)
    # Check mode predicts the same baseline and writes nothing.
    checked = plan(planned, check_mode=True, path="/root/never.json")
    assert checked["changed"] and checked["sha256"] != "" and not planned.exists("/root/never.json")
    assert pins(checked["baseline"]) == STEP2


def test_plan_include_and_exclude(planned):
    res = plan(planned, path="/root/exclude.json", exclude=["upkeep-testlib-dep"])
    assert not res.failed, res
    assert "upkeep-testlib-dep" not in pins(res["baseline"]) and "upkeep-testlib" not in pins(res["baseline"])
    assert [(item["name"], item["reason"]) for item in res["excluded"]] == [
        ("upkeep-testlib-dep", "excluded by pattern upkeep-testlib-dep")]
    held = dict((item["name"], item["reason"]) for item in res["held_back"])
    assert "needs upkeep-testlib-dep 1.1-1, which is excluded by pattern upkeep-testlib-dep" in held["upkeep-testlib"]
    assert set(pins(res["baseline"])) == {"upkeep-testsvc", "upkeep-testhelper", "upkeep-testreboot", "upkeep-testconf"}

    # The new package the service needs comes along whatever include says...
    res = plan(planned, path="/root/include.json", include=["upkeep-testsvc", "upkeep-testconf"])
    assert pins(res["baseline"]) == {"upkeep-testsvc": "1.1-1", "upkeep-testconf": "1:1.1-1",
                                     "upkeep-testhelper": "1.1-1"}
    assert res["baseline"]["selection"] == {"include": ["upkeep-testsvc", "upkeep-testconf"], "exclude": []}
    assert {item["name"] for item in res["excluded"] if item["reason"] == "not matched by include"} >= {
        "upkeep-testlib", "upkeep-testlib-dep", "upkeep-testreboot"}
    # ...and exclude stops it, holding the service back.
    res = plan(planned, path="/root/include.json", exclude=["upkeep-testhelper"])
    held = dict((item["name"], item["reason"]) for item in res["held_back"])
    assert held["upkeep-testsvc"] == "needs upkeep-testhelper 1.1-1, which is excluded by pattern upkeep-testhelper"


def test_plan_holds_back_held_packages_unless_allowed(planned):
    planned.sh("apt-mark hold upkeep-testconf")
    try:
        res = plan(planned, path="/root/held.json")
        assert "upkeep-testconf" not in pins(res["baseline"])
        assert any(item["name"] == "upkeep-testconf" and item["reason"].startswith("held")
                   for item in res["held_back"]), res["held_back"]
        res = plan(planned, path="/root/held.json", allow_held=True)
        assert pins(res["baseline"])["upkeep-testconf"] == "1:1.1-1"
    finally:
        planned.sh("apt-mark unhold upkeep-testconf")


def test_plan_refresh_fails_clearly_when_the_repository_is_down(planned):
    planned.repo.stop()
    try:
        res = plan(planned, path="/root/down.json", update_cache=True)
        assert res.failed
        assert res["msg"].startswith("Failed to refresh the apt lists on "), res["msg"]
        assert "%s" % planned.repo.port in res["msg"]
        assert not planned.exists("/root/down.json")
    finally:
        planned.repo.start()
    res = plan(planned, path="/root/down.json", update_cache=True)
    assert not res.failed and res["lists_refreshed"] and res["baseline"]["lists_refreshed"], res


# --------------------------------------------------------------------------------------
# applying: each test has its own repository and hosts


@pytest.fixture
def staged(apt_repo_factory, apt_host_factory):
    """The repository at step 2 and a staging host that planned it: (repo, staging, baseline)."""
    repo = apt_repo_factory(step=2)
    staging = apt_host_factory(repo)
    res = plan(staging)
    assert not res.failed, res
    return repo, staging, res["baseline"]


def test_apply_installs_exactly_the_tested_versions_when_newer_ones_are_published(staged, apt_host_factory):
    repo, staging, baseline = staged
    production = apt_host_factory(repo)
    production.write("/etc/upkeep-testconf.conf", "# changed by the operator\nsetting = local\n")

    # Check mode on staging: the exact apt actions, nothing changed.
    preview = apply(staging, check_mode=True, path=BASELINE)
    assert preview["changed"] and not preview.failed, preview
    assert sorted((a["action"], a["name"], a["to"]) for a in preview["actions"]) == sorted(
        ("install" if name == "upkeep-testhelper" else "upgrade", name, version) for name, version in STEP2.items())
    assert any(line.startswith("Inst upkeep-testlib [1.0-1] (1.1-1") for line in preview["simulation"])
    assert staging.versions() == STEP1
    assert not staging.exists(ROLLBACK)

    staged_res = apply(staging, path=BASELINE)
    assert not staged_res.failed and staged_res["changed"], staged_res
    assert staging.versions() == STEP2

    # Meanwhile the repository publishes 1.2-1: production's apt would pick it...
    repo.publish(3)
    assert repo.release_sha256() != baseline["sources"][0]["sha256"]
    # ...but production installs what staging tested, from the baseline passed as content.
    res = apply(production, diff=True, baseline=baseline, expected_sha256=baseline["sha256"], update_cache=True)
    assert not res.failed and res["changed"], res
    assert production.candidate("upkeep-testlib") == "1.2-1"
    assert production.versions() == STEP2
    # The new dependency too: apt would take its newest version, the baseline pins the tested one.
    assert production.candidate("upkeep-testhelper") == "1.2-1"
    assert res["baseline_sha256"] == baseline["sha256"]
    assert sorted((p["name"], p["before"] or "", p["after"]) for p in res["packages"]) == sorted(
        (name, STEP1.get(name, ""), STEP2[name]) for name in STEP2)
    assert "upkeep-testlib 1.0-1\n" in res["diff"]["before"] and "upkeep-testlib 1.1-1\n" in res["diff"]["after"]
    # Reboot and services: the package's postinst flagged a reboot; the service runs the old code.
    assert res["reboot_required"] is True
    assert any("reboot-required" in reason and "upkeep-testreboot" in reason for reason in res["reboot_reasons"])
    assert res["services"] == ["upkeep-testsvc.service"] and res["needrestart"] is False
    # The operator's conffile is kept, the package's new one is beside it; apt asked nothing.
    assert production.read("/etc/upkeep-testconf.conf").endswith("setting = local\n")
    assert "setting = 1.1-1" in production.read("/etc/upkeep-testconf.conf.dpkg-dist")
    # The apt timers were stopped for the run and are back.
    assert set(res["timers_paused"]) == {"apt-daily.timer", "apt-daily-upgrade.timer"}
    assert production.sh("systemctl is-active apt-daily.timer apt-daily-upgrade.timer").stdout.split() == [
        "active", "active"]
    # The rollback manifest: 0600, the pre-patch versions, applied.
    assert production.sh("stat -c %%a %s" % ROLLBACK).stdout.strip() == "600"
    manifest = production.json(ROLLBACK)
    assert _baseline.validate_rollback(manifest)["status"] == "applied"
    assert dict((p["name"], p["before"]) for p in manifest["packages"]) == dict(STEP1, **{"upkeep-testhelper": None})
    assert manifest["baseline_sha256"] == baseline["sha256"] and manifest["host"] == "prod1"

    # Idempotent: a second run changes nothing, and still names the service left on old code.
    again = apply(production, baseline=baseline)
    assert not again.failed and not again["changed"], again
    assert again["services"] == ["upkeep-testsvc.service"]
    assert {item["reason"] for item in again["left_alone"]} == {"already installed"}
    production.sh("systemctl restart upkeep-testsvc.service")
    assert apply(production, baseline=baseline)["services"] == []


def test_apply_refuses_a_version_the_repository_lacks(staged, apt_host_factory):
    repo, _staging, baseline = staged
    production = apt_host_factory(repo)
    repo.remove("upkeep-testlib", "1.1-1")
    res = apply(production, baseline=baseline, update_cache=True)
    assert res.failed and not res["changed"]
    assert res["msg"].startswith("Failed to check baseline %s against the repositories of prod1: no repository "
                                 "provides upkeep-testlib=1.1-1 (available: 1.0-1)"
                                 % baseline["sha256"][:12]), res["msg"]
    assert "nothing was changed" in res["msg"]
    assert production.versions() == STEP1 and not production.exists(ROLLBACK)
    # The library is back; now the new package the tested service needs is missing: named too.
    repo.add(aptrepo.build_debs(str(repo.debs_dir))[("upkeep-testlib", "1.1-1")], suite=aptrepo.SECURITY_SUITE)
    repo.remove("upkeep-testhelper", "1.1-1")
    res = apply(production, baseline=baseline, update_cache=True)
    assert res.failed and not res["changed"], res
    assert res["msg"] == ("Failed to check baseline %s against the repositories of prod1: no repository provides "
                          "upkeep-testhelper=1.1-1 (available: none), new with this baseline and needed by its "
                          "upgrades; nothing was changed" % baseline["sha256"][:12]), res["msg"]
    assert production.versions() == STEP1 and not production.exists(ROLLBACK)


def test_apply_refuses_another_build_of_a_tested_version(staged, apt_host_factory, tmp_path):
    """The mirror now serves a rebuilt upkeep-testlib 1.1-1: same version, other bytes, not what staging tested."""
    repo, _staging, baseline = staged
    tested = dict((pkg["name"], pkg) for pkg in baseline["packages"])["upkeep-testlib"]["deb_sha256"]
    original = aptrepo.build_debs(str(repo.debs_dir))[("upkeep-testlib", "1.1-1")]
    tree, rebuilt = tmp_path / "tree", tmp_path / "upkeep-testlib_1.1-1_all.deb"
    subprocess.run(["dpkg-deb", "-R", original, str(tree)], check=True)
    (tree / "usr" / "share" / "doc" / "upkeep-testlib").mkdir(parents=True, exist_ok=True)
    (tree / "usr" / "share" / "doc" / "upkeep-testlib" / "REBUILT").write_text("rebuilt on the mirror\n")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(rebuilt)], check=True,
                   capture_output=True)
    assert _sha256(str(rebuilt)) != tested
    repo.remove("upkeep-testlib", "1.1-1")
    repo.add(str(rebuilt), suite=aptrepo.SECURITY_SUITE)
    production = apt_host_factory(repo)
    res = apply(production, baseline=baseline, update_cache=True)
    assert res.failed and not res["changed"], res
    assert res["msg"] == (
        "Failed to check baseline %s against the repositories of prod1: the repositories provide upkeep-testlib=1.1-1 "
        "(baseline %s..., repository %s...) with another .deb SHA-256 than the baseline recorded (not the build that "
        "was tested); nothing was changed" % (baseline["sha256"][:12], tested[:12], _sha256(str(rebuilt))[:12]))
    assert production.versions() == STEP1 and not production.exists(ROLLBACK)


def test_apply_refuses_a_removal_and_a_held_package(apt_repo_factory, apt_host_factory):
    repo = apt_repo_factory(step=2)
    staging = apt_host_factory(repo, install=BASE + ("upkeep-testrm=1.0-1",))
    baseline = plan(staging)["baseline"]
    assert pins(baseline)["upkeep-testrm"] == "1.1-1"
    production = apt_host_factory(repo, install=BASE + ("upkeep-testrm=1.0-1", "upkeep-testlegacy=1.0-1"))
    res = apply(production, baseline=baseline)
    assert res.failed and "apt-get would remove upkeep-testlegacy 1.0-1" in res["msg"], res["msg"]
    assert res["msg"].startswith("Failed to check the apt actions for baseline")
    assert production.versions()["upkeep-testrm"] == "1.0-1" and "upkeep-testlegacy" in production.versions()

    # Without the conflicting package, a hold stops it instead.
    production.sh("apt-get -qq -y remove upkeep-testlegacy >/dev/null && apt-mark hold upkeep-testsvc")
    res = apply(production, baseline=baseline)
    assert res.failed and res["msg"].startswith("Failed to check holds on prod1: the baseline would change held "
                                                "packages: upkeep-testsvc"), res["msg"]
    assert production.versions()["upkeep-testsvc"] == "1.0-1" and not production.exists(ROLLBACK)
    res = apply(production, baseline=baseline, allow_held=True)
    assert not res.failed and production.versions()["upkeep-testsvc"] == "1.1-1", res
    assert production.versions()["upkeep-testrm"] == "1.1-1"


def test_apply_refuses_a_tampered_baseline(staged):
    _repo, staging, baseline = staged
    tampered = json.loads(json.dumps(baseline))
    for pkg in tampered["packages"]:
        if pkg["name"] == "upkeep-testlib":
            pkg["version"] = "1.2-1"
    staging.write("/root/tampered.json", json.dumps(tampered))
    res = apply(staging, path="/root/tampered.json")
    assert res.failed and res["msg"].startswith("Failed to verify the baseline: baseline /root/tampered.json does "
                                                "not match its sha256"), res["msg"]
    res = apply(staging, baseline=tampered)
    assert res.failed and "does not match its sha256" in res["msg"]
    # Only the recorded digest changed: the content no longer matches it.
    relabelled = dict(baseline, sha256="f" * 64)
    res = apply(staging, baseline=relabelled)
    assert res.failed and "does not match its sha256" in res["msg"], res["msg"]
    # An intact baseline that is not the promoted one is refused too.
    res = apply(staging, path=BASELINE, expected_sha256="0" * 64)
    assert res.failed and res["msg"].startswith("Failed to verify the baseline: its sha256 is %s, not the expected"
                                                % baseline["sha256"]), res["msg"]
    # Changed and sealed again by someone who knows the format: the promoted digest still refuses it.
    resealed = _baseline.seal(tampered)
    res = apply(staging, baseline=resealed, expected_sha256=baseline["sha256"])
    assert res.failed and res["msg"].startswith("Failed to verify the baseline: its sha256 is %s, not the expected %s"
                                                % (resealed["sha256"], baseline["sha256"])), res["msg"]
    assert staging.versions() == STEP1 and not staging.exists(ROLLBACK)


def test_a_failing_postinst_is_rolled_back(apt_repo_factory, apt_host_factory):
    repo = apt_repo_factory(step=2)
    host = apt_host_factory(repo, install=BASE + ("upkeep-testfail=1.0-1",))
    baseline = plan(host)["baseline"]
    assert pins(baseline)["upkeep-testfail"] == "1.1-1"
    before = host.versions()

    res = apply(host, path=BASELINE)
    assert res.failed and res["rolled_back"], res
    assert res["msg"].startswith("Failed to install baseline %s on prod1: " % baseline["sha256"][:12]), res["msg"]
    assert "upkeep-testfail" in res["msg"] and "post-installation script subprocess returned error exit status 1" \
        in res["msg"]
    assert "rolled back to the pre-patch versions" in res["msg"]
    assert res["failed_packages"] == ["upkeep-testfail"]
    assert host.versions() == before
    assert set(host.states().values()) == {"ii "}, host.states()
    assert host.json(ROLLBACK)["status"] == "rolled_back"
    assert host.sh("systemctl is-active apt-daily.timer").stdout.strip() == "active"

    # A re-run ends the same way: clean, back at the pre-patch versions; a plan without it converges.
    again = apply(host, path=BASELINE)
    assert again.failed and again["rolled_back"] and host.versions() == before
    assert not plan(host, exclude=["upkeep-testfail"]).failed
    res = apply(host, path=BASELINE)
    assert not res.failed, res
    assert host.versions() == dict(STEP2, **{"upkeep-testfail": "1.0-1"})


def test_without_automatic_rollback_the_broken_host_is_refused_then_rolled_back(apt_repo_factory, apt_host_factory):
    repo = apt_repo_factory(step=2)
    host = apt_host_factory(repo, install=BASE + ("upkeep-testfail=1.0-1",))
    baseline = plan(host)["baseline"]
    res = apply(host, path=BASELINE, rollback_on_failure=False)
    assert res.failed and not res["rolled_back"] and "rollback_on_failure is off" in res["msg"], res
    assert host.states()["upkeep-testfail"] == "iF "

    # dpkg is not clean: another apply is refused before it changes anything.
    res = apply(host, path=BASELINE)
    assert res.failed and res["msg"].startswith("Failed to check dpkg on prod1: packages not fully installed: "
                                                "upkeep-testfail 1.1-1 (iF)"), res["msg"]
    # The rollback may replace the broken package: it is one of the manifest's.
    preview = apply(host, state="rolled_back", check_mode=True)
    assert preview["changed"] and {a["action"] for a in preview["actions"]} == {"downgrade", "remove"}, preview
    assert host.states()["upkeep-testfail"] == "iF "
    res = apply(host, state="rolled_back", path=BASELINE)
    assert not res.failed and res["rolled_back"], res
    assert host.versions() == dict(STEP1, **{"upkeep-testfail": "1.0-1"})
    assert set(host.states().values()) == {"ii "}
    assert res["baseline_sha256"] == baseline["sha256"]


def test_repository_down_mid_run_leaves_nothing_half_installed(staged, apt_host_factory):
    repo, _staging, baseline = staged
    production = apt_host_factory(repo)
    repo.hold()
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(res=apply(production, baseline=baseline)))
    worker.start()
    try:
        repo.wait_for_request("HELD /pool/", timeout=120)
        repo.stop()  # the mirror dies while apt downloads
    finally:
        repo.release()
        worker.join(timeout=300)
    res = outcome["res"]
    assert res.failed and res["msg"].startswith("Failed to download the packages on prod1: "), res["msg"]
    assert res["msg"].endswith("nothing was installed"), res["msg"]
    assert production.versions() == STEP1 and set(production.states().values()) == {"ii "}
    assert not production.exists(ROLLBACK)
    assert production.sh("systemctl is-active apt-daily.timer").stdout.strip() == "active"

    repo.start()
    res = apply(production, baseline=baseline)
    assert not res.failed and res["changed"], res
    assert production.versions() == STEP2


def test_rolled_back_state(staged, apt_host_factory):
    repo, staging, baseline = staged
    res = apply(staging, path=BASELINE)
    assert not res.failed, res
    assert staging.versions() == STEP2

    preview = apply(staging, state="rolled_back", check_mode=True, diff=True)
    assert preview["changed"] and staging.versions() == STEP2, preview
    assert sorted((a["action"], a["name"], a["to"] or "") for a in preview["actions"]) == sorted(
        [("downgrade", name, version) for name, version in STEP1.items()] + [("remove", "upkeep-testhelper", "")])
    assert "upkeep-testlib 1.0-1\n" in preview["diff"]["after"]

    # One old version is gone from the repository but still in apt's cache; another is gone from both.
    repo.remove("upkeep-testsvc", "1.0-1")
    repo.remove("upkeep-testreboot", "1.0-1")
    staging.sh("rm -f /var/cache/apt/archives/upkeep-testreboot_1.0-1_all.deb")
    res = apply(staging, state="rolled_back", update_cache=True)
    assert res.failed and res["changed"] and res["rolled_back"], res
    assert res["msg"] == ("Failed to roll back upkeep-testreboot=1.0-1 on prod1: no repository provides the "
                          "pre-patch version any more and it is not in apt's archive cache; the other packages "
                          "were rolled back"), res["msg"]
    assert res["unavailable"] == [{"name": "upkeep-testreboot", "version": "1.0-1", "installed": "1.1-1"}]
    assert any("apt's archive cache" in note and "upkeep-testsvc" in note for note in res["notes"])
    assert staging.versions() == dict(STEP1, **{"upkeep-testreboot": "1.1-1"})
    assert staging.json(ROLLBACK)["status"] == "applied"

    again = apply(staging, state="rolled_back")
    assert again.failed and not again["changed"] and again["unavailable"][0]["name"] == "upkeep-testreboot"


def test_dpkg_lock_wait_times_out_with_the_holder_named(staged):
    _repo, staging, _baseline_doc = staged
    staging.exec("bash", "-c", "nohup python3 -c 'import fcntl,time; f=open(\"/var/lib/dpkg/lock-frontend\",\"w\"); "
                 "fcntl.lockf(f, fcntl.LOCK_EX); time.sleep(600)' >/dev/null 2>&1 & echo $! > /tmp/locker.pid")
    try:
        res = apply(staging, path=BASELINE, lock_timeout=2)
        assert res.failed, res
        assert res["msg"].startswith("Failed to lock dpkg on prod1: /var/lib/dpkg/lock-frontend is held by "
                                     "process "), res["msg"]
        assert "(python3) after waiting 2 s" in res["msg"]
        assert staging.versions() == STEP1 and not staging.exists(ROLLBACK)
        assert staging.sh("systemctl is-active apt-daily.timer").stdout.strip() == "active"
    finally:
        staging.sh("kill $(cat /tmp/locker.pid)", check=False)
    assert not apply(staging, path=BASELINE).failed


def test_interrupted_dpkg_is_repaired_only_when_allowed(staged):
    _repo, staging, _baseline_doc = staged
    staging.sh("cd /tmp && apt-get -q download upkeep-testconf=1:1.1-1 && dpkg --unpack /tmp/upkeep-testconf_*.deb")
    assert staging.states()["upkeep-testconf"] == "iU "
    res = apply(staging, path=BASELINE)
    assert res.failed and res["msg"].startswith("Failed to check dpkg on prod1: packages not fully installed: "
                                                "upkeep-testconf 1:1.1-1 (iU)"), res["msg"]
    assert "repair_dpkg" in res["msg"] and "upkeep-testconf" in res["dpkg_audit"]
    assert staging.versions()["upkeep-testlib"] == "1.0-1"
    res = apply(staging, path=BASELINE, repair_dpkg=True)
    assert not res.failed and res["dpkg_repaired"], res
    assert staging.versions() == STEP2 and set(staging.states().values()) == {"ii "}
