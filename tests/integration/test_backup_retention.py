"""backup_retention on a local backup directory and on the moto S3 endpoint."""

import datetime
import os
import time

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest
from tests.integration.module_runner import run_module
from tests.integration.s3_backups import mirror
from tests.unit.backup_factory import daily_ids, make_backup, make_partial

pytestmark = pytest.mark.integration

IDS = daily_ids(datetime.date(2026, 10, 25), 30)          # 2026-10-25 .. 2026-11-23, 02:15 UTC
KEPT = ["daily-20261123T021500Z", "daily-20261122T021500Z", "daily-20261121T021500Z", "daily-20261120T021500Z",
        "daily-20261119T021500Z", "daily-20261118T021500Z", "daily-20261117T021500Z", "daily-20261115T021500Z",
        "daily-20261108T021500Z", "daily-20261031T021500Z"]


def names(database, ids):
    return ["%s/%s" % (database, backup_id) for backup_id in ids]


@pytest.fixture
def local(tmp_path):
    root = tmp_path / "backups"
    for backup_id in IDS:
        make_backup(root, "app", backup_id, {"app.dump": backup_id.encode()})
    for backup_id in IDS[-2:]:
        make_backup(root, "shop", backup_id, {"shop.dump": b"s"})
    return root


def listing(root, database):
    return sorted(os.listdir(os.path.join(str(root), _manifest.safe_name(database))), reverse=True)


def test_local_check_mode_then_apply_then_idempotent(local):
    root = local
    old_partial = make_partial(root, "app", "daily-20261120T021500Z", mtime=time.time() - 48 * 3600)
    new_partial = make_partial(root, "app", "daily-20261124T021500Z")
    leftover = os.path.join(str(root), "app", ".deleting-daily-20261001T021500Z")
    os.makedirs(os.path.join(leftover, "sub"))
    stray = os.path.join(str(root), "app", "not-a-backup")
    os.makedirs(stray)

    plan = run_module("backup_retention", {"backup_dir": str(root)}, check_mode=True, diff=True)
    assert not plan.failed, plan
    assert plan["changed"] is True
    assert [k["backup_id"] for k in plan["kept"] if k["database"] == "app"] == KEPT
    assert [k["backup_id"] for k in plan["kept"] if k["database"] == "shop"] == IDS[-2:][::-1]
    assert len(plan["deleted"]) == 20 and {d["reason"] for d in plan["deleted"]} == {"expired"}
    kept = dict((k["backup_id"], k) for k in plan["kept"] if k["database"] == "app")
    assert kept["daily-20261123T021500Z"]["reason"] == \
        "newest, daily 2026-11-23, weekly 2026-W48, monthly 2026-11, yearly 2026"
    assert kept["daily-20261031T021500Z"]["reasons"] == ["monthly 2026-10"]
    assert kept["daily-20261123T021500Z"]["path"] == _manifest.backup_path(str(root), "app", IDS[-1])
    assert sorted(p["path"] for p in plan["partials"]) == sorted([old_partial, leftover])
    assert [i["path"] for i in plan["ignored"]] == [stray]
    assert plan["diff"]["before"] == names("app", IDS[::-1]) + names("shop", IDS[-2:][::-1])
    assert plan["diff"]["after"] == names("app", KEPT) + names("shop", IDS[-2:][::-1])
    # check mode touched nothing
    assert len([n for n in listing(root, "app") if not n.startswith(".")]) == 31
    assert os.path.isdir(old_partial) and os.path.isdir(leftover)

    done = run_module("backup_retention", {"backup_dir": str(root)})
    assert not done.failed, done
    assert done["changed"] is True and done["deleted"] == plan["deleted"] and done["kept"] == plan["kept"]
    assert listing(root, "app") == ["not-a-backup"] + KEPT + [os.path.basename(new_partial)]
    assert listing(root, "shop") == IDS[-2:][::-1]

    again = run_module("backup_retention", {"backup_dir": str(root)})
    assert not again.failed, again
    assert again["changed"] is False and again["deleted"] == [] and again["partials"] == []


def test_local_min_keep_and_database_filter(local):
    root = local
    args = {"backup_dir": str(root), "database": "app", "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0,
            "keep_yearly": 0, "min_keep": 2}
    res = run_module("backup_retention", args)
    assert not res.failed, res
    assert [(k["backup_id"], k["reason"]) for k in res["kept"]] == [(IDS[-1], "newest"), (IDS[-2], "min_keep")]
    assert listing(root, "app") == [IDS[-1], IDS[-2]]
    assert listing(root, "shop") == IDS[-2:][::-1]          # other databases untouched


def test_bad_arguments(tmp_path):
    res = run_module("backup_retention", {"backup_dir": str(tmp_path), "keep_daily": -1})
    assert res.failed and "keep_daily must not be negative" in res["msg"]
    res = run_module("backup_retention", {"backup_dir": str(tmp_path / "missing")})
    assert res.failed and "is not a directory" in res["msg"]
    res = run_module("backup_retention", {"backup_dir": str(tmp_path), "bucket": "b"})
    assert res.failed and "mutually exclusive" in res["msg"]


def test_s3_retention(s3_server, s3_bucket, tmp_path):
    client = s3_server.client()
    src = tmp_path / "src"
    for backup_id in IDS[-12:]:                              # 2026-11-12 .. 2026-11-23
        path, manifest = make_backup(src, "app", backup_id, {"app.dump": backup_id.encode(), "globals.sql": b"g"})
        mirror(client, s3_bucket, "pg", path, manifest)
    path, manifest = make_backup(src / "x", "app", "daily-20261124T021500Z", {"app.dump": b"half"})
    mirror(client, s3_bucket, "pg", path, manifest, with_manifest=False)     # abandoned / in progress
    upload = client.create_multipart_upload(Bucket=s3_bucket, Key="pg/app/daily-20261125T021500Z/app.dump")
    client.put_object(Bucket=s3_bucket, Key="pg/unrelated/file.txt", Body=b"keep me")
    env = dict(s3_server.env, AWS_ENDPOINT_URL=s3_server.endpoint_url)
    args = {"bucket": s3_bucket, "prefix": "pg", "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12,
            "keep_yearly": 3}

    plan = run_module("backup_retention", args, env=env, check_mode=True)
    assert not plan.failed, plan
    expected_kept = KEPT[:8]                                  # 7 days + the newest of 2026-W46 (11-15)
    assert [k["backup_id"] for k in plan["kept"]] == expected_kept
    assert [d["backup_id"] for d in plan["deleted"]] == ["daily-20261116T021500Z", "daily-20261114T021500Z",
                                                         "daily-20261113T021500Z", "daily-20261112T021500Z"]
    assert plan["deleted"][0]["prefix"] == "pg/app/daily-20261116T021500Z/"
    # The prefix without manifest is young, so it stays. moto reports every multipart upload as initiated in
    # 2010, so the one started above already counts as abandoned.
    assert [(p["location"], p.get("prefix"), p.get("key")) for p in plan["partials"]] == [
        ("s3", None, "pg/app/daily-20261125T021500Z/app.dump")]
    before = sorted(o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"])

    res = run_module("backup_retention", args, env=env)
    assert not res.failed, res
    assert res["changed"] and res["deleted"] == plan["deleted"]
    after = sorted(o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"])
    gone = sorted(set(before) - set(after))
    assert gone == sorted("pg/app/%s/%s" % (d["backup_id"], name) for d in plan["deleted"]
                          for name in ("app.dump", "globals.sql", "manifest.json"))
    assert "pg/unrelated/file.txt" in after
    assert s3_server.secret_key not in res.output

    uploads = client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert upload["UploadId"] not in [u["UploadId"] for u in uploads]
    assert any("20261124" in key for key in after)

    cleanup = run_module("backup_retention", dict(args, partial_max_age_hours=0), env=env)
    assert not cleanup.failed, cleanup
    assert cleanup["deleted"] == []
    assert [p["prefix"] for p in cleanup["partials"]] == ["pg/app/daily-20261124T021500Z/"]
    assert cleanup["partials"][0]["objects"] == 1
    remaining = sorted(o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert not any("20261124" in key for key in remaining)

    final = run_module("backup_retention", dict(args, partial_max_age_hours=0), env=env)
    assert final["changed"] is False
