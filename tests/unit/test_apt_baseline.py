"""The patch baseline and rollback manifest format (plugins/module_utils/_baseline.py, docs/patch-baseline.md)."""

import json
import os
import stat

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _baseline
from ansible_collections.upkeep.runbooks.plugins.module_utils._baseline import BaselineError

SOURCE = {"id": "http://127.0.6.1:8080/ upkeep", "uri": "http://127.0.6.1:8080/", "dist": "upkeep",
          "origin": "upkeep-test", "label": "upkeep-test", "suite": "upkeep", "codename": "upkeep",
          "date": "Tue, 01 Dec 2026 10:59:15 UTC", "valid_until": None, "release_file": "InRelease",
          "sha256": "d6bbcc07eeec25c84e1c80492430f61766e0481bd9dfe1eee5743919af77f3e6", "signed": True}
OS_RELEASE = {"id": "debian", "version_id": "12", "version_codename": "bookworm",
              "pretty_name": "Debian GNU/Linux 12 (bookworm)", "debian_version": "12.11"}


def package(name, installed="1.0-1", version="1.1-1", **extra):
    pkg = {"name": name, "architecture": "all", "installed": installed, "version": version,
           "deb_sha256": "a" * 64, "source_package": name, "origin": "upkeep-test", "label": "upkeep-test",
           "suite": "upkeep", "codename": "upkeep", "component": "main", "site": "127.0.6.1",
           "repositories": [SOURCE["id"]], "security": False, "reboot": False, "services": []}
    pkg.update(extra)
    return pkg


def make(packages=None, **overrides):
    args = dict(host="staging1", os_release=OS_RELEASE, architecture="amd64", lists_refreshed=True,
                selection={"include": ["*"], "exclude": []},
                packages=packages if packages is not None else [
                    package("upkeep-testsvc", services=["upkeep-testsvc.service"]),
                    package("upkeep-testlib", security=True), package("linux-image-amd64", reboot=True)],
                sources=[SOURCE], excluded=[], held_back=[], created_at="2026-12-01T11:00:00.000Z")
    args.update(overrides)
    return _baseline.new_baseline(**args)


def test_new_baseline_is_sealed_sorted_and_summarised():
    doc = make()
    assert doc["sha256"] == _baseline.digest(doc)
    assert [pkg["name"] for pkg in doc["packages"]] == ["linux-image-amd64", "upkeep-testlib", "upkeep-testsvc"]
    assert doc["reboot_required"] is True and doc["services"] == ["upkeep-testsvc.service"]
    assert doc["kind"] == "upkeep.runbooks.apt_patch_baseline" and doc["format_version"] == 1
    assert doc["tool"] == {"name": "upkeep.runbooks", "module": "apt_patch_plan"}


def test_digest_is_over_canonical_json_without_the_sha256_field():
    doc = make()
    body = dict((k, v) for k, v in doc.items() if k != "sha256")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    import hashlib
    assert doc["sha256"] == hashlib.sha256(canonical).hexdigest()
    # Key order and whitespace do not matter; the content does.
    shuffled = json.loads(json.dumps(doc, indent=5))
    assert _baseline.digest(dict(reversed(list(shuffled.items())))) == doc["sha256"]
    assert _baseline.canonical_json({"b": 1, "a": "ü"}) == '{"a":"ü","b":1}'.encode("utf-8")


def test_same_inputs_give_the_same_digest_and_same_plan_ignores_the_time():
    first, second = make(), make()
    assert first["sha256"] == second["sha256"]
    later = make(created_at="2026-12-02T11:00:00.000Z")
    assert later["sha256"] != first["sha256"] and _baseline.same_plan(first, later)
    other = make(packages=[package("upkeep-testlib", version="1.2-1")])
    assert not _baseline.same_plan(first, other)


def test_floats_are_refused():
    with pytest.raises(BaselineError, match="floating-point"):
        _baseline.canonical_json({"a": 1.5})


def test_write_and_load_round_trip(tmp_path):
    doc = make()
    path = tmp_path / "baseline.json"
    _baseline.write_baseline(str(path), doc)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert path.read_text().startswith('{\n  "architecture": "amd64",')
    assert _baseline.load_baseline(str(path)) == doc
    assert [p.name for p in tmp_path.iterdir()] == ["baseline.json"]  # no temporary file left


def test_a_changed_field_is_detected(tmp_path):
    doc = make()
    doc["packages"][1]["version"] = "1.2-1"
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(BaselineError, match=r"does not match its sha256: it records [0-9a-f]{64} but its content "
                                            r"hashes to [0-9a-f]{64}"):
        _baseline.load_baseline(str(path))


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format_version=2), "format_version 2, newer than the 1 this collection reads"),
    (lambda d: d.update(kind="something.else"), "kind is 'something.else'"),
    (lambda d: d.pop("sources"), "missing keys: sources"),
    (lambda d: d["packages"][0].update(version="1.0 1"), "version '1.0 1' is not valid"),
    (lambda d: d["packages"][0].update(name="Bad_Name"), "package name 'Bad_Name' is not valid"),
    (lambda d: d["packages"].append(dict(d["packages"][0])), "is listed twice"),
    (lambda d: d["packages"][0].update(repositories=["http://elsewhere/ x"]), "names repositories not among"),
    (lambda d: d["packages"][0].update(deb_sha256="abc"), "deb_sha256 is not 64 hex digits"),
    (lambda d: d.update(created_at="yesterday"), "created_at 'yesterday' is not a UTC time"),
    (lambda d: d.update(architecture="AMD 64"), "architecture 'AMD 64' is not valid"),
    (lambda d: d["held_back"].append({"name": "x1"}), "held_back entries need a name and a reason"),
])
def test_validation_names_the_problem(change, message):
    doc = make()
    change(doc)
    doc = _baseline.seal(doc) if "format_version" not in message and "kind" not in message else doc
    with pytest.raises(BaselineError) as err:
        _baseline.validate_baseline(doc, "baseline X")
    assert message in str(err.value)
    assert str(err.value).startswith("baseline X")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(BaselineError, match="baseline .*/nope.json does not exist"):
        _baseline.load_baseline(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BaselineError, match="is not valid JSON"):
        _baseline.load_baseline(str(tmp_path / "bad.json"))


def test_rollback_manifest_keeps_the_first_before_of_an_unfinished_attempt(tmp_path):
    first = _baseline.new_rollback("prod1", "b" * 64, [
        {"name": "upkeep-testlib", "architecture": "all", "before": "1.0-1", "after": "1.1-1"}])
    assert first["status"] == "pending" and first["sha256"] == _baseline.digest(first)
    # The second attempt sees 1.1-1 already installed for the library, and a new package.
    second = _baseline.new_rollback("prod1", "b" * 64, [
        {"name": "upkeep-testlib", "architecture": "all", "before": "1.1-1", "after": "1.1-1"},
        {"name": "upkeep-testlib-dep", "architecture": "all", "before": None, "after": "1.1-1"}], previous=first)
    befores = dict((p["name"], p["before"]) for p in second["packages"])
    assert befores == {"upkeep-testlib": "1.0-1", "upkeep-testlib-dep": None}
    assert second["created_at"] == first["created_at"]
    done = _baseline.with_status(second, "applied")
    assert done["status"] == "applied" and done["sha256"] == _baseline.digest(done)

    path = tmp_path / "state" / "rollback.json"
    _baseline.write_rollback(str(path), done)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert _baseline.load_rollback(str(path)) == done
    data = json.loads(path.read_text())
    data["packages"][0]["before"] = "0.9-1"
    path.write_text(json.dumps(data))
    with pytest.raises(BaselineError, match="does not match its sha256"):
        _baseline.load_rollback(str(path))
    with pytest.raises(BaselineError, match="status 'done' is not one of pending, applied, rolled_back"):
        _baseline.validate_rollback(_baseline.seal(dict(done, status="done")))


# --------------------------------------------------------------------------------------
# several planning hosts (merge_baselines, the filter of the same name)

DB_SOURCE = dict(SOURCE, id="http://127.0.6.1:8080/ upkeep-security", dist="upkeep-security", sha256="e" * 64)


def test_merge_takes_every_package_any_host_plans():
    app = make(host="app1", packages=[package("upkeep-testsvc", services=["upkeep-testsvc.service"]),
                                      package("upkeep-testlib", installed=None)])
    db = make(host="db1", packages=[package("upkeep-testlib", security=True, services=["upkeep-lib.service"]),
                                    package("libpq5", reboot=True, repositories=[DB_SOURCE["id"]])],
              sources=[SOURCE, DB_SOURCE], held_back=[{"name": "postgresql-15", "reason": "excluded"}])
    merged = _baseline.merge_baselines([app, db], created_at="2026-12-01T12:00:00.000Z")
    assert merged["sha256"] == _baseline.digest(merged) and merged["host"] == "app1,db1"
    by_name = dict((pkg["name"], pkg) for pkg in merged["packages"])
    assert sorted(by_name) == ["libpq5", "upkeep-testlib", "upkeep-testsvc"]
    # installed on db1: a regular upgrade, not only a new dependency; flags and services from any host
    assert by_name["upkeep-testlib"]["installed"] == "1.0-1" and by_name["upkeep-testlib"]["security"] is True
    assert by_name["upkeep-testlib"]["services"] == ["upkeep-lib.service"]
    assert merged["reboot_required"] is True
    assert merged["services"] == ["upkeep-lib.service", "upkeep-testsvc.service"]
    assert [src["id"] for src in merged["sources"]] == sorted([SOURCE["id"], DB_SOURCE["id"]])
    assert merged["held_back"] == [{"name": "postgresql-15", "reason": "excluded", "host": "db1"}]
    assert _baseline.merge_baselines([app]) == app
    # the order of the plans does not change the packages
    other = _baseline.merge_baselines([db, app], created_at="2026-12-01T12:00:00.000Z")
    assert other["packages"] == merged["packages"] and other["host"] == "db1,app1"


def test_merge_names_every_disagreement():
    app = make(host="app1")
    newer = make(host="db1", packages=[package("upkeep-testlib", version="1.2-1")],
                 os_release=dict(OS_RELEASE, version_codename="trixie"),
                 selection={"include": ["*"], "exclude": ["postgresql-*"]},
                 sources=[dict(SOURCE, sha256="f" * 64)])
    with pytest.raises(BaselineError) as caught:
        _baseline.merge_baselines([app, newer])
    message = str(caught.value)
    assert message.startswith("the plans of app1, db1 do not agree: app1 runs debian bookworm, db1 runs debian trixie")
    assert "app1 and db1 plan with other include/exclude patterns" in message
    assert "app1 and db1 saw different snapshots of http://127.0.6.1:8080/ upkeep (Release d6bbcc07eeec..., " \
           "ffffffffffff...): refresh the lists and plan again" in message
    assert "upkeep-testlib: app1 plans 1.1-1, db1 plans 1.2-1" in message
    rebuilt = make(host="db1", packages=[package("upkeep-testlib", deb_sha256="b" * 64)])
    with pytest.raises(BaselineError, match=r"upkeep-testlib: app1 plans 1.1-1, db1 plans 1.1-1 \(another .deb\)"):
        _baseline.merge_baselines([app, rebuilt])
    with pytest.raises(BaselineError, match="there is no plan to merge"):
        _baseline.merge_baselines([])
    broken = make(host="db1")
    broken["packages"][0]["version"] = "9.9-9"
    with pytest.raises(BaselineError, match="the plan of db1.*does not match its sha256"):
        _baseline.merge_baselines([app, broken])


def test_merge_filter():
    from ansible.errors import AnsibleFilterError  # noqa: PLC0415 - controller code, only here
    from ansible_collections.upkeep.runbooks.plugins.filter.patching import FilterModule  # noqa: PLC0415

    merge = FilterModule().filters()["merge_baselines"]
    app, db = make(host="app1"), make(host="db1", packages=[package("libpq5")])
    merged = merge([app, db])
    assert {pkg["name"] for pkg in merged["packages"]} == {"linux-image-amd64", "upkeep-testlib", "upkeep-testsvc",
                                                             "libpq5"}
    with pytest.raises(AnsibleFilterError, match="^Failed to merge the staging plans: the plans of app1, db1 do not"):
        merge([app, make(host="db1", packages=[package("upkeep-testlib", version="1.2-1")])])
    with pytest.raises(AnsibleFilterError, match="expected a list of baselines"):
        merge("not a list")
