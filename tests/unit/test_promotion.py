"""Promotion records (plugins/module_utils/_promotion.py) and the patch_promotion module.

The record format, the directory store on a real temporary directory, the refusal rules with fixed
clocks (soak, maximum age, failed staging, OS release), and the module's main() in-process. Only the
S3 store's calls into module_utils/_s3 are replaced (by an in-memory bucket).
"""

import copy
import datetime
import json
import os
import stat
from unittest import mock

import pytest
import yaml

from ansible_collections.upkeep.runbooks.plugins.module_utils import _baseline, _promotion
from ansible_collections.upkeep.runbooks.plugins.module_utils._promotion import PromotionError
from ansible_collections.upkeep.runbooks.plugins.modules import patch_promotion
from tests.unit.module_helpers import run_module_main
from tests.unit.test_apt_baseline import make as make_baseline
from tests.unit.test_apt_baseline import package

UTC = datetime.timezone.utc
PROMOTED_AT = "2026-12-01T11:00:00.000Z"
STAGING_HOSTS = [
    {"host": "stage2", "status": "applied", "packages": ["upkeep-testlib=1.1-1"], "reboot": False},
    {"host": "stage1", "status": "applied", "packages": ["upkeep-testlib=1.1-1"], "reboot": True},
]
GATES = [{"check": "patching_gate_replication_lag", "host": "stage1", "status": "ok", "message": "lag 0.0 s"}]


def at(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def record(baseline=None, hosts=None, gates=None, promoted_at=PROMOTED_AT, name=None):
    return _promotion.new_record(baseline or make_baseline(), STAGING_HOSTS if hosts is None else hosts,
                                 GATES if gates is None else gates, {"playbook": "patch.yml"},
                                 promoted_at=promoted_at, name=name)


def reseal(data):
    """A record changed and sealed again, as someone who knows the format would forge it."""
    return _baseline.seal(data)


# --------------------------------------------------------------------------------------
# the record


def test_new_record_is_sealed_and_derives_passed():
    rec = record()
    assert rec["sha256"] == _baseline.digest(rec)
    assert rec["kind"] == "upkeep.runbooks.patch_promotion" and rec["format_version"] == 1
    assert rec["stage"] == "staging" and rec["passed"] is True
    assert rec["baseline_sha256"] == rec["baseline"]["sha256"]
    assert rec["name"] == "2026-12-01-%s" % rec["baseline_sha256"][:12]
    assert [entry["host"] for entry in rec["hosts"]] == ["stage1", "stage2"]
    assert _promotion.key_of(rec) == rec["baseline_sha256"] + ".json"
    # The rendered file is the record (any layout reads back to the same digest).
    assert json.loads(_promotion.render(rec)) == rec


@pytest.mark.parametrize("hosts, gates", [
    ([dict(STAGING_HOSTS[0]), dict(STAGING_HOSTS[1], status="rolled_back")], GATES),
    ([dict(STAGING_HOSTS[0], status="skipped")], GATES),
    (STAGING_HOSTS, GATES + [{"check": "patching_gate_backup", "host": "stage1", "status": "fail"}]),
])
def test_a_failed_host_or_gate_makes_a_record_that_did_not_pass(hosts, gates):
    assert record(hosts=hosts, gates=gates)["passed"] is False


def test_a_record_needs_hosts_and_an_intact_baseline():
    with pytest.raises(PromotionError, match="hosts is empty"):
        record(hosts=[])
    broken = make_baseline()
    broken["packages"][0]["version"] = "9.9-9"
    with pytest.raises(PromotionError, match="baseline to promote.*does not match its sha256"):
        record(baseline=broken)


def _changed(rec, change):
    data = copy.deepcopy(rec)
    change(data)
    return data


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(passed=True, hosts=[dict(h, status="applied") for h in d["hosts"]]),
     "does not match its content (.*): the record was changed"),
    (lambda d: d.update(promoted_at="2026-11-01T00:00:00.000Z"), "the record was changed"),
    (lambda d: d["baseline"]["packages"][0].update(version="1.2-1"), "the record was changed"),
])
def test_a_changed_record_is_refused(change, message):
    rec = record(hosts=[dict(STAGING_HOSTS[0], status="rolled_back")])
    with pytest.raises(PromotionError, match=message):
        _promotion.validate(_changed(rec, change), "store/x.json")


@pytest.mark.parametrize("change, message", [
    # a baseline changed inside a resealed record is caught by the baseline's own digest
    (lambda d: d["baseline"]["packages"][0].update(version="1.2-1"), "baseline .*does not match its sha256"),
    (lambda d: d.update(baseline_sha256="0" * 64), "baseline_sha256 0{64} is not the baseline's"),
    (lambda d: d.update(format_version=2), "format_version 2 is newer than this collection reads"),
    (lambda d: d.update(kind="something.else"), "kind is 'something.else'"),
    (lambda d: d.update(stage="production"), "stage is 'production'"),
    (lambda d: d.update(promoted_at="yesterday"), "promoted_at 'yesterday' is not a UTC time"),
    (lambda d: d.update(name="../etc/passwd"), "name '../etc/passwd' is not valid"),
    (lambda d: d.update(passed="yes"), "passed is not a boolean"),
    (lambda d: d["hosts"][0].update(status="done"), "host stage1 has status 'done'"),
    (lambda d: d["hosts"][0].pop("reboot"), "a hosts entry lacks one of"),
    (lambda d: d.pop("gates"), "lacks gates"),
])
def test_validation_names_the_problem(change, message):
    forged = reseal(_changed(record(), change))
    with pytest.raises(PromotionError, match="^store/x.json: .*" + message):
        _promotion.validate(forged, "store/x.json")


def test_loads_refuses_what_is_not_json():
    with pytest.raises(PromotionError, match="store/x.json is not valid JSON"):
        _promotion.loads(b"{not json", "store/x.json")
    with pytest.raises(PromotionError, match="not a JSON object"):
        _promotion.loads(b"[]", "store/x.json")


# --------------------------------------------------------------------------------------
# the directory store


def test_directory_store_writes_atomically_and_reads_newest_first(tmp_path):
    store = _promotion.DirectoryStore(str(tmp_path / "promotions"))
    assert store.keys() == [] and _promotion.load_all(store) == ([], [])
    old = record(promoted_at="2026-11-20T09:00:00.000Z")
    new = record(baseline=make_baseline(packages=[package("upkeep-testsvc", version="1.2-1")]))
    for rec in (new, old):
        store.write(_promotion.key_of(rec), _promotion.render(rec))
    names = sorted(os.listdir(store.path))
    assert names == sorted([_promotion.key_of(old), _promotion.key_of(new)])  # no temporary file left
    assert stat.S_IMODE(os.stat(store.where(_promotion.key_of(new))).st_mode) == 0o640
    # Files that are not records are not read at all.
    (tmp_path / "promotions" / "README.txt").write_text("notes")
    (tmp_path / "promotions" / ".half-written.json").write_text("{")
    records, problems = _promotion.load_all(store)
    assert [rec["name"] for rec, _where in records] == [new["name"], old["name"]]
    assert records[0][1] == store.where(_promotion.key_of(new)) and problems == []


def test_a_tampered_file_is_named_and_never_used(tmp_path):
    store = _promotion.DirectoryStore(str(tmp_path))
    good = record(promoted_at="2026-11-20T09:00:00.000Z")
    store.write(_promotion.key_of(good), _promotion.render(good))
    tampered = record(baseline=make_baseline(created_at="2026-12-01T00:00:00.000Z"),
                      hosts=[dict(STAGING_HOSTS[0], status="failed")])
    tampered["passed"] = True  # the file says it passed; its digest says otherwise
    store.write(_promotion.key_of(tampered), json.dumps(tampered).encode())
    records, problems = _promotion.load_all(store)
    assert [rec["sha256"] for rec, _where in records] == [good["sha256"]]
    assert len(problems) == 1 and problems[0].startswith(store.where(_promotion.key_of(tampered)))
    assert "the record was changed" in problems[0]


def test_directory_store_errors_are_promotion_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = _promotion.DirectoryStore(str(blocker / "promotions"))
    with pytest.raises(PromotionError, match="cannot write .*/file/promotions/"):
        store.write("x.json", b"{}")
    with pytest.raises(PromotionError, match="cannot read .*/file/promotions/x.json"):
        store.read("x.json")


# --------------------------------------------------------------------------------------
# refusals, with fixed clocks

DAY = 86400


def test_a_soaked_record_that_passed_may_go():
    assert _promotion.refusals(record(), at("2026-12-04T11:00:00Z"), 3 * DAY, 45 * DAY) == []
    # exactly at the end of the soak is enough; a millisecond before is not
    assert _promotion.refusals(record(), at("2026-12-04T11:00:00.000Z"), 3 * DAY, 0) == []
    early = _promotion.refusals(record(), at("2026-12-04T10:59:59.999Z"), 3 * DAY, 0)
    assert len(early) == 1 and "less than the soak time" in early[0]


def test_soak_time_not_over_says_when_it_may_go():
    rec = record()
    reasons = _promotion.refusals(rec, at("2026-12-02T17:30:00Z"), 3 * DAY, 45 * DAY)
    assert reasons == ["promotion %s (baseline %s) was promoted 1d06h ago, less than the soak time of 3d00h "
                       "(it may go to production at 2026-12-04T11:00:00Z)" % (rec["name"], rec["baseline_sha256"][:12])]


def test_too_old_a_record_must_be_staged_again():
    reasons = _promotion.refusals(record(), at("2027-01-20T11:00:00Z"), 3 * DAY, 45 * DAY)
    assert len(reasons) == 1 and "more than the maximum age of 45d00h: run staging again" in reasons[0]
    assert _promotion.refusals(record(), at("2028-01-20T11:00:00Z"), 3 * DAY, 0) == []


def test_a_record_that_did_not_pass_staging_is_refused_with_what_failed():
    rec = record(hosts=[dict(STAGING_HOSTS[0]), dict(STAGING_HOSTS[1], status="rolled_back")],
                 gates=GATES + [{"check": "patching_gate_backup", "host": "stage1", "status": "fail"}])
    reasons = _promotion.refusals(rec, at("2026-12-10T00:00:00Z"), 3 * DAY, 45 * DAY)
    assert reasons == ["promotion %s (baseline %s) did not pass staging (hosts not applied: stage1; failed gates: "
                       "patching_gate_backup@stage1)" % (rec["name"], rec["baseline_sha256"][:12])]


def test_another_os_release_is_refused_and_reasons_add_up():
    rec = record(hosts=[dict(STAGING_HOSTS[0], status="failed")])
    reasons = _promotion.refusals(rec, at("2026-12-01T12:00:00Z"), 3 * DAY, 45 * DAY,
                                  {"id": "debian", "version_codename": "trixie"})
    assert len(reasons) == 3
    assert "did not pass staging" in reasons[0] and "less than the soak time" in reasons[1]
    assert reasons[2].endswith("was tested on debian bookworm, this host runs debian trixie")
    assert _promotion.refusals(record(), at("2026-12-05T00:00:00Z"), 3 * DAY, 45 * DAY,
                               {"id": "debian", "version_codename": "bookworm"}) == []
    # an unknown release on either side is not a mismatch
    assert _promotion.refusals(record(), at("2026-12-05T00:00:00Z"), 3 * DAY, 45 * DAY, {"id": "debian"}) == []


@pytest.mark.parametrize("seconds, text", [(0, "0m00s"), (59, "0m59s"), (3600, "1h00m"), (3 * DAY + 7200, "3d02h"),
                                           (-90, "1m30s")])
def test_human(seconds, text):
    assert _promotion.human(seconds) == text


# --------------------------------------------------------------------------------------
# the module


def promote(tmp_path, check_mode=False, **args):
    params = dict(state="promoted", store_dir=str(tmp_path), baseline=make_baseline(), hosts=STAGING_HOSTS,
                  gates=GATES, run={"playbook": "patch.yml"})
    params.update(args)
    params = dict((key, value) for key, value in params.items() if value is not None)  # None stands for omit
    return run_module_main(patch_promotion, params, check_mode=check_mode)


def select(tmp_path, **args):
    params = dict(state="selected", store_dir=str(tmp_path), now="2026-12-10T00:00:00Z")
    params.update(args)
    params = dict((key, value) for key, value in params.items() if value is not None)
    return run_module_main(patch_promotion, params)


def test_module_promotes_into_the_store(tmp_path):
    res = promote(tmp_path)
    assert res.exit_code == 0 and res["changed"] and res["passed"], res
    path = tmp_path / (res["baseline_sha256"] + ".json")
    assert res["location"] == str(path) and path.exists()
    on_disk = json.loads(path.read_text())
    assert on_disk == res["record"] and _baseline.digest(on_disk) == res["sha256"]


def test_module_promote_in_check_mode_writes_nothing(tmp_path):
    res = promote(tmp_path / "store", check_mode=True)
    assert res.exit_code == 0 and res["changed"] and res["record"]["passed"]
    assert res["location"] == str(tmp_path / "store" / (res["baseline_sha256"] + ".json"))
    assert not (tmp_path / "store").exists()


def test_module_promote_refuses_a_missing_or_changed_baseline(tmp_path):
    res = promote(tmp_path, baseline={})
    assert res.failed and res["msg"] == "Failed to promote the baseline: state=promoted needs baseline"
    broken = make_baseline()
    broken["packages"][0]["version"] = "9.9-9"
    res = promote(tmp_path, baseline=broken)
    assert res.failed and res["msg"].startswith("Failed to promote the baseline: baseline to promote")
    assert "does not match its sha256" in res["msg"] and os.listdir(tmp_path) == []


def test_module_selects_the_newest_record_that_soaked(tmp_path):
    older = promote(tmp_path, baseline=make_baseline(created_at="2026-11-01T00:00:00.000Z"))
    with mock.patch.object(_baseline, "utc_now", return_value="2026-12-06T08:00:00.000Z"):
        newest = promote(tmp_path)
    assert older["record"]["promoted_at"] < newest["record"]["promoted_at"]
    res = select(tmp_path, now="2026-12-09T08:00:00Z", os_release={"id": "debian", "version_codename": "bookworm"})
    assert res.exit_code == 0 and not res["changed"], res
    assert res["record"]["name"] == newest["record"]["name"] and res["baseline_sha256"] == newest["baseline_sha256"]
    assert res["candidates"] == [newest["record"]["name"], older["record"]["name"]]
    assert res["refusals"] == [] and res["problems"] == []


def test_module_refuses_the_newest_before_its_soak_is_over(tmp_path):
    with mock.patch.object(_baseline, "utc_now", return_value="2026-12-06T08:00:00.000Z"):
        newest = promote(tmp_path)
    res = select(tmp_path, now="2026-12-07T08:00:00Z")
    assert res.failed and res["refusals"] and res["baseline_sha256"] == newest["baseline_sha256"]
    assert res["msg"] == "Failed to select a promoted baseline: " + res["refusals"][0]
    assert "less than the soak time of 3d00h (it may go to production at 2026-12-09T08:00:00Z)" in res["msg"]
    # A shorter soak (the lab, a hotfix decided by a person) lets it through.
    assert select(tmp_path, now="2026-12-07T08:00:00Z", min_soak="12h").exit_code == 0


def test_module_refuses_a_failed_staging_run(tmp_path):
    promoted = promote(tmp_path, hosts=[dict(STAGING_HOSTS[0], status="rolled_back")])
    assert promoted.exit_code == 0 and promoted["passed"] is False  # recorded, so production can say why
    res = select(tmp_path, now="2027-01-01T00:00:00Z")
    assert res.failed and "did not pass staging (hosts not applied: stage2; failed gates: none)" in res["msg"]


def test_module_selects_by_name_or_digest_and_says_when_none_matches(tmp_path):
    first = promote(tmp_path, baseline=make_baseline(created_at="2026-11-01T00:00:00.000Z"), name="november")
    promote(tmp_path)
    assert select(tmp_path, name="november")["sha256"] == first["sha256"]
    assert select(tmp_path, name=first["baseline_sha256"])["record"]["name"] == "november"
    res = select(tmp_path, name="december")
    assert res.failed and res["msg"] == ("Failed to select a promoted baseline: %s holds no valid record named "
                                         "december" % tmp_path)
    assert len(res["candidates"]) == 2


def test_module_never_selects_a_tampered_record(tmp_path):
    good = promote(tmp_path, baseline=make_baseline(created_at="2026-11-01T00:00:00.000Z"), name="good")
    with mock.patch.object(_baseline, "utc_now", return_value="2026-12-06T08:00:00.000Z"):
        forged = promote(tmp_path, name="forged")
    path = tmp_path / (forged["baseline_sha256"] + ".json")
    data = json.loads(path.read_text())
    data["promoted_at"] = "2026-11-02T00:00:00.000Z"  # pretend it soaked long enough
    path.write_text(json.dumps(data))
    res = select(tmp_path, now="2026-12-07T00:00:00Z")
    assert res["record"]["name"] == "good" and res["candidates"] == ["good"]
    assert len(res["problems"]) == 1 and "the record was changed" in res["problems"][0]
    res = select(tmp_path, name="forged")
    assert res.failed and "holds no valid record named forged (unreadable: %s" % path in res["msg"]
    assert good["sha256"] != forged["sha256"]


def test_module_empty_store_and_bad_options(tmp_path):
    res = select(tmp_path / "none")
    assert res.failed and res["msg"] == ("Failed to select a promoted baseline: %s holds no valid promotion record"
                                         % (tmp_path / "none"))
    assert select(tmp_path, now="10 Dec").get("msg") == ("Failed to select a promoted baseline: now '10 Dec' is "
                                                         "not a UTC time")
    res = select(tmp_path, min_soak="three days")
    assert res.failed and res["msg"].startswith("Failed to select a promoted baseline: min_soak must be a length")
    res = run_module_main(patch_promotion, {"state": "selected"})
    assert res.failed and "one of the following is required: store_dir, bucket" in res["msg"]
    res = run_module_main(patch_promotion, {"store_dir": str(tmp_path), "bucket": "b"})
    assert res.failed and "mutually exclusive" in res["msg"]


class FakeBucket:
    """The _s3 calls the S3 store makes, on a dict."""

    def __init__(self):
        self.objects = {}

    def list_objects(self, _s3, bucket, prefix):
        return [{"key": key} for key in sorted(self.objects) if key.startswith(prefix)]

    def get_bytes(self, _s3, bucket, key, limit=None):
        return self.objects[key], None

    def put_bytes(self, _s3, bucket, key, data, extra_args=None, content_type=None):
        self.objects[key] = data


def test_module_s3_store_round_trip(tmp_path):
    bucket = FakeBucket()
    from ansible_collections.upkeep.runbooks.plugins.module_utils import _s3
    with mock.patch.object(_s3, "ensure_boto3"), mock.patch.object(_s3, "client", return_value=object()), \
            mock.patch.object(_s3, "list_objects", bucket.list_objects), \
            mock.patch.object(_s3, "get_bytes", bucket.get_bytes), \
            mock.patch.object(_s3, "put_bytes", bucket.put_bytes):
        args = dict(store_dir=None, bucket="upkeep-backups", prefix="env/patch-promotions/")
        res = promote(tmp_path, **args)
        assert res.exit_code == 0, res
        key = "env/patch-promotions/%s.json" % res["baseline_sha256"]
        assert list(bucket.objects) == [key] and res["location"] == "s3://upkeep-backups/" + key
        bucket.objects["env/patch-promotions/older/ignored.json"] = b"{}"  # below the prefix: not a record
        chosen = select(tmp_path, **args)
        assert chosen.exit_code == 0 and chosen["sha256"] == res["sha256"] and chosen["location"] == res["location"]
        assert chosen["problems"] == []


def test_every_returned_key_is_documented(tmp_path):
    documented = yaml.safe_load(patch_promotion.RETURN)
    promote(tmp_path)
    for res in (select(tmp_path), promote(tmp_path, check_mode=True)):
        returned = {k for k in res if k not in ("changed", "invocation", "failed", "msg")}
        assert returned == set(documented), res
