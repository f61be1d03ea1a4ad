"""Backend of the run report: plugins/module_utils/_report.py."""

import json
import os
import re
import stat
from pathlib import Path
from unittest import mock

import jsonschema
import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _report
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import evaluate, result
from ansible_collections.upkeep.runbooks.plugins.module_utils._report import (
    REDACTED,
    ReportError,
    build_report,
    is_secret_key,
    redact,
    render_html,
    render_json,
    write_report,
)

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "report.schema.json"
TS = "2024-05-01T02:30:00Z"


def r(check, host, status, value=None, threshold=None, message="msg"):  # noqa: PLR0917 - mirrors result()
    return result(check, host, status, value, threshold, message)


def sample_results():
    return [
        r("db_reachable", "db2", "ok"),
        r("disk_free:logs", "db1", "warn", {"percent_free": 15.0}, {"warn_percent_free": 20}),
        r("backup_freshness", "db1", "ok"),
        r("replication_lag_seconds", "db2", "fail", 812.0, {"warn": 30, "fail": 300}),
        r("auth_failures", "app1", "warn"),
        r("disk_free:database", "db1", "fail"),
    ]


# ------------------------------------------------------------------ ordering and summary

def test_order_is_fail_warn_ok_then_host_then_check():
    report = build_report(sample_results(), "daily", timestamp=TS)
    got = [(x["status"], x["host"], x["check"]) for x in report["results"]]
    assert got == [
        ("fail", "db1", "disk_free:database"),
        ("fail", "db2", "replication_lag_seconds"),
        ("warn", "app1", "auth_failures"),
        ("warn", "db1", "disk_free:logs"),
        ("ok", "db1", "backup_freshness"),
        ("ok", "db2", "db_reachable"),
    ]


def test_order_is_stable_for_equal_host_and_check():
    items = [r("same", "h", "ok", value=i) for i in range(5)]
    report = build_report(items, "daily", timestamp=TS)
    assert [x["value"] for x in report["results"]] == [0, 1, 2, 3, 4]


def test_summary_counts_hosts_and_overall_status():
    report = build_report(sample_results(), "daily", timestamp=TS)
    assert report["summary"] == {
        "total": 6, "ok": 2, "warn": 2, "fail": 2, "status": "fail",
        "hosts": {"app1": "warn", "db1": "fail", "db2": "fail"},
    }


@pytest.mark.parametrize("statuses, overall", [
    (["ok", "ok"], "ok"),
    (["ok", "warn"], "warn"),
    (["warn", "fail", "ok"], "fail"),
])
def test_overall_status_is_the_worst(statuses, overall):
    items = [r(f"c{i}", "h", s) for i, s in enumerate(statuses)]
    assert build_report(items, "daily", timestamp=TS)["summary"]["status"] == overall


def test_empty_run_is_ok_with_zero_checks():
    report = build_report([], "daily", timestamp=TS)
    assert report["summary"] == {"total": 0, "ok": 0, "warn": 0, "fail": 0, "status": "ok", "hosts": {}}
    assert report["results"] == []


# ------------------------------------------------------------------ missing hosts

def test_expected_host_without_results_gets_a_failure():
    report = build_report([r("db_reachable", "db1", "ok")], "daily", hosts=["db1", "db2", "db2"], timestamp=TS)
    missing = [x for x in report["results"] if x["check"] == "host_results_missing"]
    assert missing == [{
        "check": "host_results_missing", "host": "db2", "status": "fail", "value": None, "threshold": None,
        "message": "db2: no check results were collected (host failed or was unreachable before any check ran)",
    }]
    assert report["summary"]["hosts"] == {"db1": "ok", "db2": "fail"}
    assert report["summary"]["status"] == "fail"


def test_host_with_any_result_is_not_missing_and_extra_hosts_are_kept():
    report = build_report([r("c", "db1", "warn"), r("c", "unexpected", "ok")], "daily", hosts=["db1"], timestamp=TS)
    assert [x["check"] for x in report["results"]] == ["c", "c"]
    assert report["summary"]["hosts"] == {"db1": "warn", "unexpected": "ok"}


# ------------------------------------------------------------------ validation

def test_invalid_results_become_failures_and_never_raise():
    bad = [
        {"check": "x", "host": "db1", "status": "meh", "value": 1, "threshold": None, "message": ""},
        {"check": "y", "host": "db1"},
        "not a dict",
        None,
        {"check": "", "host": "db1", "status": "ok", "value": None, "threshold": None, "message": ""},
        {"check": "z", "host": "db1", "status": "ok", "value": None, "threshold": None, "message": 5},
    ]
    report = build_report(bad + [r("fine", "db1", "ok")], "daily", timestamp=TS)
    invalid = [x for x in report["results"] if x["check"] == "report_invalid_result"]
    assert len(invalid) == 6
    assert all(x["status"] == "fail" for x in invalid)
    messages = " | ".join(x["message"] for x in invalid)
    assert "status 'meh' is not one of ok, warn, fail" in messages
    assert "missing key(s) status, value, threshold, message" in messages
    assert "is a str, not a dict" in messages
    assert "is a NoneType, not a dict" in messages
    assert "check must be a non-empty string" in messages
    assert "message must be a string, got int" in messages
    # the host is kept where it is known, so the failure lands in the right section
    hosts = sorted(x["host"] for x in invalid)
    assert hosts == ["(unknown host)", "(unknown host)", "db1", "db1", "db1", "db1"]
    assert any(x["check"] == "fine" for x in report["results"])


def test_invalid_result_names_its_position_and_check():
    report = build_report([r("a", "h", "ok"), {"check": "broken", "host": "h"}], "daily", timestamp=TS)
    bad = next(x for x in report["results"] if x["check"] == "report_invalid_result")
    assert bad["message"].startswith("check result #2 (check 'broken') is invalid: missing key(s)")
    assert bad["value"]["index"] == 2
    assert bad["value"]["keys"] == ["check", "host"]


def test_nested_lists_are_flattened_and_extra_keys_dropped():
    item = dict(r("a", "h1", "ok"), extra="dropped")
    report = build_report([[item], [[r("b", "h2", "warn")]], []], "daily", timestamp=TS)
    assert [x["check"] for x in report["results"]] == ["b", "a"]
    assert all(set(x) == set(_report.RESULT_KEYS) for x in report["results"])


def test_none_message_becomes_empty_and_values_become_json_safe():
    item = r("a", "h", "ok", value={"t": (1, 2), "s": {3}, "b": b"x", "f": float("nan")})
    item["message"] = None
    report = build_report([item], "daily", timestamp=TS)
    got = report["results"][0]
    assert got["message"] == ""
    assert got["value"] == {"t": [1, 2], "s": [3], "b": "x", "f": "nan"}
    json.loads(render_json(report))


def test_bad_cadence_and_timestamp_raise_report_error():
    with pytest.raises(ReportError, match="cadence"):
        build_report([], "Daily Run", timestamp=TS)
    with pytest.raises(ReportError, match="not an ISO 8601"):
        build_report([], "daily", timestamp="yesterday")


@pytest.mark.parametrize("given, expected", [
    ("2024-05-01T02:30:00Z", "2024-05-01T02:30:00Z"),
    ("2024-05-01T04:30:00+02:00", "2024-05-01T02:30:00Z"),
    ("2024-05-01T02:30:00.123456Z", "2024-05-01T02:30:00Z"),
    ("2024-05-01T02:30:00", "2024-05-01T02:30:00Z"),
])
def test_generated_at_is_utc_with_z(given, expected):
    assert build_report([], "daily", timestamp=given)["generated_at"] == expected


def test_generated_at_defaults_to_now():
    stamp = build_report([], "daily")["generated_at"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", stamp)


# ------------------------------------------------------------------ redaction

@pytest.mark.parametrize("key", [
    "password", "db_password", "PGPASSWORD", "dbPassword", "passwd", "passphrase", "secret", "client_secret",
    "secret_id", "token", "vault_token", "X-Vault-Token", "private_key", "privateKey", "ssh_private_key",
    "api_key", "X-Api-Key", "apikey", "secret_key", "aws_secret_access_key", "AWS_SECRET_ACCESS_KEY",
    "signing_key", "jwt_signing_key", "encryption_key", "credentials", "Authorization", "dbpassword",
    "vaulttoken", "pgpass_word_token",
])
def test_secret_keys_are_recognised(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", [
    "monkey", "s3_key", "key", "keys", "cache_key", "primary_key", "ssh_key_count", "access_key",
    "password_age_days", "token_ttl", "token_expires_at", "private_key_path", "secret_name",
    "password_encryption", "passwords_count", "turkey", "keystone", "tokenizer", "secretary", "bytes_free",
    "host", "pgpassword_age", "", 5, None,
])
def test_harmless_keys_are_kept(key):
    assert not is_secret_key(key)


def test_redact_masks_at_any_depth_and_leaves_input_alone():
    value = {
        "password": "hunter2",
        "monkey": "banana",
        "s3_key": "backups/db1/2024.dump",
        "nested": {"api_key": "abc", "list": [{"token": "t"}, {"name": "ok"}]},
        "private_key": {"pem": "-----BEGIN"},
        "secret": None,
        "dsn": "postgresql://app:s3cr3t@127.0.0.11:5432/app",
    }
    before = json.dumps(value, sort_keys=True)
    out = redact(value)
    assert json.dumps(value, sort_keys=True) == before
    assert out == {
        "password": REDACTED,
        "monkey": "banana",
        "s3_key": "backups/db1/2024.dump",
        "nested": {"api_key": REDACTED, "list": [{"token": REDACTED}, {"name": "ok"}]},
        "private_key": REDACTED,
        "secret": None,
        "dsn": f"postgresql://app:{REDACTED}@127.0.0.11:5432/app",
    }


def test_report_redacts_value_threshold_message_and_run(tmp_path):
    item = r("vault_token", "app1", "warn", {"token": "hvs.SECRETVALUE", "token_ttl": 60},
             {"password": "hunter2"}, "connect to https://u:hunter2@vault.internal failed")
    report = build_report([item], "daily", run={"db_password": "hunter2", "playbook": "daily.yml"}, timestamp=TS)
    paths = write_report(report, tmp_path)
    for path in (paths["json_path"], paths["html_path"]):
        text = Path(path).read_text()
        assert "hunter2" not in text
        assert "SECRETVALUE" not in text
    got = report["results"][0]
    assert got["value"] == {"token": REDACTED, "token_ttl": 60}
    assert got["threshold"] == {"password": REDACTED}
    assert got["message"] == f"connect to https://u:{REDACTED}@vault.internal failed"
    assert report["run"] == {"db_password": REDACTED, "playbook": "daily.yml"}


# ------------------------------------------------------------------ rendering

def test_json_document_shape():
    report = build_report(sample_results(), "weekly", hosts=["db1", "db3"],
                          run={"playbook": "playbooks/weekly.yml", "check_mode": False}, timestamp=TS)
    data = json.loads(render_json(report))
    assert list(data) == ["schema_version", "cadence", "generated_at", "run", "summary", "results"]
    assert data["schema_version"] == 1
    assert data["cadence"] == "weekly"
    assert data["generated_at"] == TS
    assert data["run"] == {"playbook": "playbooks/weekly.yml", "check_mode": False}


def test_report_validates_against_the_published_schema(tmp_path):
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    results = sample_results() + [
        {"check": "broken", "host": "db1"},
        evaluate("backup_size", "db1", 1234, fail=1000, unit="bytes"),
        r("x", "db1", "ok", {"nested": {"password": "p"}, "list": [1, "a", None, True]}),
    ]
    report = build_report(results, "daily", hosts=["db1", "db9"],
                          run={"playbook": "playbooks/daily.yml", "inventory": ["inventories/lab/hosts.yml"],
                               "check_mode": True, "ansible_version": "2.19.14", "limit": None,
                               "controller_user": "ops", "awx_job_id": 42}, timestamp=TS)
    paths = write_report(report, tmp_path)
    on_disk = json.loads(Path(paths["json_path"]).read_text())
    jsonschema.validate(on_disk, schema, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("breakage", [
    lambda d: d.update(schema_version=2),
    lambda d: d["results"][0].update(status="bad"),
    lambda d: d["results"][0].pop("threshold"),
    lambda d: d["summary"].pop("hosts"),
    lambda d: d.update(generated_at="2024-05-01 02:30:00"),
    lambda d: d.update(cadence="Daily"),
])
def test_schema_rejects_broken_reports(breakage):
    schema = json.loads(SCHEMA_PATH.read_text())
    data = json.loads(render_json(build_report(sample_results(), "daily", timestamp=TS)))
    breakage(data)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)


def test_html_escapes_every_string():
    evil = "<script>alert(1)</script>"
    item = r(f"check{evil}", f"host{evil}", "fail", {f"k{evil}": evil, "list": [evil]}, {"warn": evil}, evil)
    report = build_report([item], "daily", hosts=[f"other{evil}"], run={"playbook": evil, evil: evil}, timestamp=TS)
    page = render_html(report)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'onerror' not in page


def test_html_is_self_contained_and_ordered():
    report = build_report(sample_results(), "daily", hosts=["db1", "db2", "app1", "db9"], timestamp=TS)
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>FAIL &middot; Daily run report 2024-05-01T02:30:00Z</title>" in page
    assert "<style>" in page
    assert "<script" not in page
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#|report\.json)""", page)
    assert "@import" not in page and "url(" not in page
    attention = page.index('id="attention"')
    first_host = page.index('id="host-')
    assert attention < first_host
    # failures before warnings inside the attention table
    section = page[attention:first_host]
    assert section.index("disk_free:database") < section.index("auth_failures")
    # hosts with failures come first; the missing host is listed with its failure
    assert page.index('id="host-db1"') < page.index('id="host-app1"')
    assert "db9: no check results were collected" in page


def test_html_all_ok_says_so():
    page = render_html(build_report([r("a", "h", "ok")], "monthly", timestamp=TS))
    assert "No failures or warnings: all 1 check passed." in page
    assert '<header class="status-ok">' in page
    assert "CHECK MODE" not in page


def test_html_marks_check_mode_runs():
    page = render_html(build_report([r("a", "h", "ok")], "monthly", run={"check_mode": True}, timestamp=TS))
    assert "CHECK MODE: a dry run, nothing was changed" in page


def test_html_renders_values_readably():
    items = [
        r("disk_free:db", "h", "ok", {"path": "/var/lib/postgresql", "percent_free": 50.0,
                                      "bytes_free": 1073741824, "bytes_total": 2147483648},
          {"warn_percent_free": 20, "fail_percent_free": 10}),
        r("dump_size", "h", "ok", {"size": 1536, "unit": "bytes"}),
        r("wal_held", "h", "ok", 3221225472, {"warn_bytes": 1 << 30, "fail_bytes": 4 << 30}),
        evaluate("backup_size", "h", 5 * 1024 ** 3, warn=1024, higher_is_worse=False, unit="bytes"),
        r("flags", "h", "ok", {"enabled": True, "replicas": ["db2", "dr1"], "none": None, "empty": []}),
    ]
    items[3]["threshold"]["unit"] = "bytes"  # as check_evaluate records it
    page = render_html(build_report(items, "daily", timestamp=TS))
    assert "1.0 GiB" in page and "2.0 GiB" in page
    assert "50.0&nbsp;%" in page
    assert "1.5 KiB" in page
    assert "3.0 GiB" in page and "4.0 GiB" in page  # scalar value and limits from *_bytes threshold keys
    assert "5.0 GiB" in page and "1.0 KiB" in page  # check_evaluate with unit bytes
    assert "enabled:</span> yes" in page
    assert "db2, dr1" in page
    assert "(none)" in page
    assert "{'" not in page  # no Python reprs


# ------------------------------------------------------------------ writing

def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_write_layout_modes_and_latest(tmp_path):
    dest = tmp_path / "reports"
    report = build_report(sample_results(), "daily", timestamp=TS)
    paths = write_report(report, dest)
    run_dir = dest / "daily" / "20240501T023000Z"
    assert paths == {
        "dir": str(run_dir),
        "json_path": str(run_dir / "report.json"),
        "html_path": str(run_dir / "report.html"),
        "latest": str(dest / "daily" / "latest"),
    }
    assert sorted(os.listdir(run_dir)) == ["report.html", "report.json"]  # no temp files left
    assert sorted(os.listdir(dest / "daily")) == ["20240501T023000Z", "latest"]
    assert _mode(run_dir / "report.json") == 0o640
    assert _mode(run_dir / "report.html") == 0o640
    assert _mode(run_dir) == 0o750
    assert _mode(dest / "daily") == 0o750
    assert _mode(dest) == 0o750
    assert os.readlink(dest / "daily" / "latest") == "20240501T023000Z"  # relative: the tree can move
    assert json.loads((dest / "daily" / "latest" / "report.json").read_text())["summary"]["fail"] == 2


def test_existing_dest_keeps_its_mode(tmp_path):
    os.chmod(tmp_path, 0o755)  # noqa: S103 - the point: a mode the report must not change
    write_report(build_report([], "daily", timestamp=TS), tmp_path)
    assert _mode(tmp_path) == 0o755


def test_collision_adds_suffix_and_latest_follows(tmp_path):
    written = [write_report(build_report([r("c", "h", "ok", value=i)], "daily", timestamp=TS), tmp_path)
               for i in range(3)]
    names = [os.path.basename(w["dir"]) for w in written]
    assert names == ["20240501T023000Z", "20240501T023000Z-2", "20240501T023000Z-3"]
    assert os.readlink(tmp_path / "daily" / "latest") == "20240501T023000Z-3"
    first = json.loads((tmp_path / "daily" / "20240501T023000Z" / "report.json").read_text())
    assert first["results"][0]["value"] == 0  # never overwritten
    assert sorted(os.listdir(tmp_path / "daily")) == names + ["latest"]


def test_latest_is_replaced_not_followed(tmp_path):
    write_report(build_report([], "daily", timestamp="2024-05-01T00:00:00Z"), tmp_path)
    write_report(build_report([], "daily", timestamp="2024-05-02T00:00:00Z"), tmp_path)
    latest = tmp_path / "daily" / "latest"
    assert os.readlink(latest) == "20240502T000000Z"
    assert sorted(os.listdir(tmp_path / "daily" / "20240501T000000Z")) == ["report.html", "report.json"]
    assert not any(n.startswith(".latest") for n in os.listdir(tmp_path / "daily"))


def test_latest_that_is_a_directory_is_refused(tmp_path):
    (tmp_path / "daily" / "latest").mkdir(parents=True)
    with pytest.raises(ReportError, match="latest exists and is not a symlink"):
        write_report(build_report([], "daily", timestamp=TS), tmp_path)


def test_failed_write_leaves_no_temp_file_and_no_partial_target(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with mock.patch.object(_report.os, "replace", side_effect=OSError(28, "No space left on device")):
        with pytest.raises(OSError):
            _report.atomic_write(str(target), "new content")
    assert os.listdir(tmp_path) == ["report.json"]
    assert target.read_text() == "old"


def test_write_error_is_a_readable_report_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ReportError, match=r"file exists and is not a directory"):
        write_report(build_report([], "daily", timestamp=TS), blocker)
    with pytest.raises(ReportError, match=r"exists and is not a directory"):
        write_report(build_report([], "daily", timestamp=TS), blocker / "sub")


def test_os_errors_are_translated(tmp_path):
    with mock.patch.object(_report, "_new_run_dir", side_effect=PermissionError(13, "Permission denied", "/x/daily")):
        with pytest.raises(ReportError, match=r"^/x/daily: Permission denied$"):
            write_report(build_report([], "daily", timestamp=TS), tmp_path)
