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
