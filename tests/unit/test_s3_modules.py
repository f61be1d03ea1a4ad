"""s3_backup, backup_info, backup_retention: argument handling and error paths with the S3 backend mocked."""

import datetime
from unittest import mock

import pytest
from botocore import exceptions as boto_exceptions

from ansible_collections.upkeep.runbooks.plugins.module_utils import _s3
from ansible_collections.upkeep.runbooks.plugins.modules import backup_info, backup_retention, s3_backup
from tests.unit.backup_factory import make_backup
from tests.unit.module_helpers import run_module_main

SECRET = "unit-secret-KEY/abc+123"
AWS_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CA_BUNDLE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in AWS_VARS:
        monkeypatch.delenv(name, raising=False)


def client_error(code, message="", operation="ListObjectsV2"):
    return boto_exceptions.ClientError({"Error": {"Code": code, "Message": message}}, operation)


# ------------------------------------------------------------------ s3_backup arguments


@pytest.mark.parametrize("args, expected", [
    ({"path": "/x", "part_size_mb": 4}, "part_size_mb must be between 5 and 5120"),
    ({"path": "/x", "max_concurrency": 0}, "max_concurrency must be at least 1"),
    ({"state": "fetched", "dest": "/d", "database": "app"}, "needs backup_id, or latest=true"),
    ({"state": "fetched", "dest": "/d", "database": "app", "backup_id": "x", "latest": True},
     "mutually exclusive: backup_id|latest"),
    ({"state": "fetched", "database": "app", "latest": True},
     "state is fetched but all of the following are missing: dest"),
    ({"state": "present"}, "state is present but all of the following are missing: path"),
    ({"path": "/x", "object_lock_mode": "GOVERNANCE"}, "parameters are required together"),
    ({"path": "/x", "kms_key_id": "alias/k"}, "kms_key_id is only used with encryption=aws:kms"),
    ({"path": "/x", "object_lock_mode": "COMPLIANCE", "object_lock_retain_until_days": 0},
     "object_lock_retain_until_days must be at least 1"),
])
def test_s3_backup_argument_errors(args, expected):
    with mock.patch.object(_s3, "client") as make_client:
        res = run_module_main(s3_backup, dict(args, bucket="b"))
    assert res.failed and expected in res["msg"], res["msg"]
    make_client.assert_not_called()


def test_s3_backup_refuses_a_missing_backup(tmp_path):
    with mock.patch.object(_s3, "client"):
        res = run_module_main(s3_backup, {"path": str(tmp_path / "nope"), "bucket": "b"})
    assert res.failed and res["msg"].startswith("Failed to read backup %s: manifest" % (tmp_path / "nope"))


def test_s3_backup_credentials_from_environment_never_reach_the_output(tmp_path, monkeypatch):
    path, _m = make_backup(tmp_path, "app", "daily-20261123T021500Z")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDUNIT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    fake = mock.Mock()
    fake.meta.endpoint_url = "http://127.0.0.1:9"
    fake.get_paginator.return_value.paginate.side_effect = client_error(
        "InvalidAccessKeyId", "The AWS Access Key Id you provided (signed %s) does not exist" % SECRET)
    with mock.patch.object(_s3, "client", return_value=fake) as make_client:
        res = run_module_main(s3_backup, {"path": path, "bucket": "b", "prefix": "pg"})
    seen = make_client.call_args[0][0]
    assert seen["access_key"] == "AKIDUNIT" and seen["secret_key"] == SECRET
    assert seen["endpoint_url"] == "http://127.0.0.1:9" and seen["region"] == "eu-west-1"
    assert res.failed
    assert res["msg"] == ("Failed to list s3://b/pg/app/daily-20261123T021500Z/: the access key id is not known to "
                          "the endpoint (check access_key / AWS_ACCESS_KEY_ID)")
    assert SECRET not in res.stdout


def test_s3_backup_check_mode_uploads_nothing(tmp_path):
    path, manifest = make_backup(tmp_path, "app", "daily-20261123T021500Z")
    fake = mock.Mock()
    fake.get_paginator.return_value.paginate.return_value = [{"Contents": []}]
    with mock.patch.object(_s3, "client", return_value=fake), \
            mock.patch.object(_s3, "upload_verified") as upload, mock.patch.object(_s3, "put_bytes") as put:
        res = run_module_main(s3_backup, {"path": path, "bucket": "b"}, check_mode=True)
    assert not res.failed, res
    assert res["changed"] and res["keys"][-1] == "app/daily-20261123T021500Z/manifest.json"
    assert len(res["keys"]) == len(manifest["files"]) + 1
    upload.assert_not_called()
    put.assert_not_called()
    fake.put_object.assert_not_called()
    fake.delete_objects.assert_not_called()


def test_s3_backup_upload_failure_names_file_and_keeps_manifest_back(tmp_path):
    path, _m = make_backup(tmp_path, "app", "daily-20261123T021500Z")
    fake = mock.Mock()
    fake.meta.endpoint_url = "http://127.0.0.1:9"
    fake.get_paginator.return_value.paginate.return_value = [{}]
    cause = boto_exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9/b/k",
                                                    error=ConnectionRefusedError("Connection refused"))
    failed = _s3.UploadFailed(_s3.describe_error(cause), key="app/daily-20261123T021500Z/app.dump", cause=cause)
    with mock.patch.object(_s3, "client", return_value=fake), \
            mock.patch.object(_s3, "upload_verified", side_effect=failed), \
            mock.patch.object(_s3, "put_bytes") as put:
        res = run_module_main(s3_backup, {"path": path, "bucket": "b"})
    assert res.failed
    assert res["msg"] == ("Failed to upload %s/app.dump to s3://b/app/daily-20261123T021500Z/app.dump: cannot connect "
                          "to the S3 endpoint http://127.0.0.1:9: connection refused (is it running?)" % path)
    put.assert_not_called()


# ------------------------------------------------------------------ backup_info


def entry(database, backup_id, hours, size, location="local"):
    return {"database": database, "backup_id": backup_id, "age_hours": hours, "total_size": size,
            "location": location, "finished_at": (datetime.datetime(2026, 11, 23, 12, tzinfo=datetime.timezone.utc)
                                                   - datetime.timedelta(hours=hours)).isoformat()}


def test_freshness_rules():
    fresh = [entry("app", "daily-b", 3, 10), entry("app", "daily-a", 27, 10)]
    assert backup_info.freshness(fresh, 26, ["local"])["status"] == "ok"
    stale = backup_info.freshness([entry("app", "daily-a", 27, 10)], 26, ["local"])
    assert stale["status"] == "fail" and stale["newest_age_hours"] == 27 and stale["backup_id"] == "daily-a"
    none = backup_info.freshness([], 26, ["local", "s3"], "app")
    assert none["status"] == "fail" and none["database"] == "app" and none["newest_age_hours"] is None
    local_only = backup_info.freshness(fresh + [entry("app", "daily-a", 27, 10, "s3")], 26, ["local", "s3"])
    assert local_only["status"] == "warn" and "has no s3 copy" in local_only["message"]
    two_dbs = backup_info.freshness(fresh + [entry("shop", "daily-x", 30, 1)], 26, ["local"])
    assert two_dbs["status"] == "fail" and two_dbs["database"] == "shop"


def test_size_change_rules():
    grew = backup_info.size_change([entry("app", "b", 1, 150), entry("app", "a", 25, 100)], 30)
    assert grew["status"] == "warn" and grew["percent"] == 50.0 and "50.0% larger" in grew["message"]
    shrank = backup_info.size_change([entry("app", "b", 1, 60), entry("app", "a", 25, 100)], 50)
    assert shrank["status"] == "ok" and shrank["percent"] == -40.0 and "smaller" in shrank["message"]
    alone = backup_info.size_change([entry("app", "b", 1, 60)], 10)
    assert alone["status"] == "ok" and alone["percent"] is None and alone["newest"] == 60
    from_empty = backup_info.size_change([entry("app", "b", 1, 60), entry("app", "a", 25, 0)], 10)
    assert from_empty["status"] == "warn" and from_empty["percent"] is None
    worst = backup_info.size_change([entry("app", "b", 1, 101), entry("app", "a", 25, 100),
                                     entry("shop", "d", 1, 300), entry("shop", "c", 25, 100)], 10)
    assert worst["database"] == "shop" and worst["percent"] == 200.0


def test_backup_info_needs_a_location():
    res = run_module_main(backup_info, {})
    assert res.failed and "one of the following is required: backup_dir, bucket" in res["msg"]


def test_backup_info_s3_failure_message(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDUNIT")
    fake = mock.Mock()
    fake.meta.endpoint_url = "https://s3.example"
    fake.get_paginator.return_value.paginate.side_effect = client_error("SignatureDoesNotMatch", "bad sig")
    with mock.patch.object(_s3, "client", return_value=fake):
        res = run_module_main(backup_info, {"bucket": "b", "prefix": "pg"})
    assert res.failed and res["msg"].startswith("Failed to list backups under s3://b/pg: the request signature")
    assert SECRET not in res.stdout


# ------------------------------------------------------------------ backup_retention


def test_retention_deletes_the_manifest_before_the_data():
    objects = lambda bid: [{"key": "pg/app/%s/%s" % (bid, name), "size": 1,  # noqa: E731
                            "last_modified": datetime.datetime(2026, 11, 23, tzinfo=datetime.timezone.utc)}
                           for name in ("app.dump", "globals.sql", "manifest.json")]
    items = []
    for bid in ("daily-20261123T021500Z", "daily-20261122T021500Z", "daily-20261121T021500Z"):
        items.append({"key": "pg/app/%s/manifest.json" % bid, "prefix": "pg/app/%s/" % bid, "backup_id": bid,
                      "database": "app", "label": "daily", "finished_at": bid[6:], "total_size": 1,
                      "manifest": {}, "objects": objects(bid)})
    calls = []
    with mock.patch.object(_s3, "client"), mock.patch.object(_s3, "scan_backups", return_value=[]), \
            mock.patch.object(_s3, "list_remote_backups", return_value=items), \
            mock.patch.object(_s3, "list_multipart_uploads", return_value=[]), \
            mock.patch.object(_s3, "delete_keys", side_effect=lambda s3, bucket, keys: calls.append(list(keys))):
        res = run_module_main(backup_retention, {"bucket": "b", "prefix": "pg", "keep_daily": 1, "keep_weekly": 0,
                                                 "keep_monthly": 0, "keep_yearly": 0, "min_keep": 1})
    assert not res.failed, res
    assert [d["backup_id"] for d in res["deleted"]] == ["daily-20261122T021500Z", "daily-20261121T021500Z"]
    assert calls == [
        ["pg/app/daily-20261122T021500Z/manifest.json"],
        ["pg/app/daily-20261122T021500Z/app.dump", "pg/app/daily-20261122T021500Z/globals.sql"],
        ["pg/app/daily-20261121T021500Z/manifest.json"],
        ["pg/app/daily-20261121T021500Z/app.dump", "pg/app/daily-20261121T021500Z/globals.sql"],
    ]


def test_retention_object_lock_refusal_is_clear():
    item = {"key": "pg/app/daily-20261121T021500Z/manifest.json", "prefix": "pg/app/daily-20261121T021500Z/",
            "backup_id": "daily-20261121T021500Z", "database": "app", "label": "daily",
            "finished_at": "2026-11-21T02:16:00Z", "total_size": 1, "manifest": {}, "objects": []}
    newer = dict(item, backup_id="daily-20261122T021500Z", key="pg/app/daily-20261122T021500Z/manifest.json")
    refused = _s3.S3Error("S3 refused to delete s3://b/pg/app/daily-20261121T021500Z/manifest.json: access denied: "
                          "object protected by object lock")
    with mock.patch.object(_s3, "client"), mock.patch.object(_s3, "scan_backups", return_value=[]), \
            mock.patch.object(_s3, "list_remote_backups", return_value=[newer, item]), \
            mock.patch.object(_s3, "list_multipart_uploads", return_value=[]), \
            mock.patch.object(_s3, "delete_keys", side_effect=refused):
        res = run_module_main(backup_retention, {"bucket": "b", "prefix": "pg", "keep_daily": 1, "keep_weekly": 0,
                                                 "keep_monthly": 0, "keep_yearly": 0, "min_keep": 1})
    assert res.failed
    assert res["msg"] == ("Failed to delete backup app/daily-20261121T021500Z: S3 refused to delete "
                          "s3://b/pg/app/daily-20261121T021500Z/manifest.json: access denied: object protected by "
                          "object lock")


@pytest.mark.parametrize("option", ["keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "min_keep",
                                    "partial_max_age_hours"])
def test_retention_rejects_negative_values(tmp_path, option):
    res = run_module_main(backup_retention, {"backup_dir": str(tmp_path), option: -1})
    assert res.failed and "%s must not be negative" % option in res["msg"]
