"""backup_info on a local backup directory and on the moto S3 endpoint."""

import datetime
import os
import shutil

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest
from tests.integration.module_runner import run_module
from tests.integration.s3_backups import mirror
from tests.unit.backup_factory import make_backup, make_partial

pytestmark = pytest.mark.integration

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def bid(hours_ago, label="daily"):
    return _manifest.new_backup_id(label, NOW - datetime.timedelta(hours=hours_ago))


@pytest.fixture
def local(tmp_path):
    """app: 2 h, 26 h and 50 h old (sizes 2000, 1000, 1000 bytes); shop: 40 h old; one partial; one broken dir."""
    root = tmp_path / "backups"
    made = {}
    for hours, size in ((2, 2000), (26, 1000), (50, 1000)):
        made[hours] = make_backup(root, "app", bid(hours), {"app.dump": b"a" * size}, host="db1")
    made["shop"] = make_backup(root, "shop", bid(40), {"shop.dump": b"s" * 10}, host="db2", compression="zstd")
    make_partial(root, "app", bid(1))
    broken, _m = make_backup(root, "app", bid(70), {"app.dump": b"x"})
    os.unlink(os.path.join(broken, "manifest.json"))
    return root, made


def test_local_listing_newest_first(local):
    root, made = local
    res = run_module("backup_info", {"backup_dir": str(root)}, check_mode=True)
    assert not res.failed, res
    assert res["changed"] is False
    assert [b["backup_id"] for b in res["backups"]] == [bid(2), bid(26), bid(40), bid(50)]
    newest = res["backups"][0]
    assert newest["location"] == "local" and newest["path"] == made[2][0]
    assert newest["database"] == "app" and newest["label"] == "daily" and newest["host"] == "db1"
    assert newest["format"] == "custom" and newest["compression"] == "gzip" and newest["total_size"] == 2000
    assert 1.9 < newest["age_hours"] < 2.2
    assert res["backups"][2]["database"] == "shop" and res["backups"][2]["compression"] == "zstd"
    assert [p["path"] for p in res["partials"]] == [_manifest.partial_path(str(root), "app", bid(1))]
    assert res["partials"][0]["location"] == "local" and res["partials"][0]["age_hours"] < 1
    assert [s["path"] for s in res["unreadable"]] == [_manifest.backup_path(str(root), "app", bid(70))]
    assert "does not exist" in res["unreadable"][0]["reason"]
    assert "freshness" not in res and "size_change" not in res


def test_freshness_and_size_change(local):
    root, _made = local
    res = run_module("backup_info", {"backup_dir": str(root), "max_age_hours": 26, "size_change_percent": 50})
    assert not res.failed, res
    fresh = res["freshness"]
    assert fresh["status"] == "fail" and fresh["database"] == "shop" and fresh["backup_id"] == bid(40)
    assert "older than the 26 hour limit" in fresh["message"]
    change = res["size_change"]
    assert change["status"] == "warn" and change["database"] == "app"
    assert change["previous"] == 1000 and change["newest"] == 2000 and change["percent"] == 100.0
    assert "100.0% larger" in change["message"]

    res = run_module("backup_info", {"backup_dir": str(root), "database": "app", "max_age_hours": 26,
                                     "size_change_percent": 150})
    assert [b["database"] for b in res["backups"]] == ["app"] * 3
    assert res["freshness"]["status"] == "ok" and res["freshness"]["database"] == "app"
    assert res["size_change"]["status"] == "ok"


def test_no_backup_at_all_is_a_failed_freshness(tmp_path):
    res = run_module("backup_info", {"backup_dir": str(tmp_path), "database": "app", "max_age_hours": 26,
                                     "size_change_percent": 10})
    assert not res.failed, res
    assert res["backups"] == [] and res["freshness"]["status"] == "fail"
    assert res["freshness"]["newest_age_hours"] is None and "no complete backup of database app" in \
        res["freshness"]["message"]
    assert res["size_change"]["status"] == "ok" and res["size_change"]["percent"] is None


def test_s3_listing_and_both_locations(s3_server, s3_bucket, local):
    root, made = local
    client = s3_server.client()
    for hours in (2, 26):
        mirror(client, s3_bucket, "pg", made[hours][0], made[hours][1])
    abandoned = make_backup(root.parent / "other", "app", bid(3), {"app.dump": b"z"})
    mirror(client, s3_bucket, "pg", abandoned[0], abandoned[1], with_manifest=False)
    client.put_object(Bucket=s3_bucket, Key="pg/app/not-a-backup/readme.txt", Body=b"ignored")
    client.put_object(Bucket=s3_bucket, Key="pg/app/%s/manifest.json" % bid(80), Body=b"{not json")
    env = dict(s3_server.env, AWS_ENDPOINT_URL=s3_server.endpoint_url)

    res = run_module("backup_info", {"bucket": s3_bucket, "prefix": "pg", "max_age_hours": 26}, env=env)
    assert not res.failed, res
    assert [(b["location"], b["backup_id"]) for b in res["backups"]] == [("s3", bid(2)), ("s3", bid(26))]
    assert res["backups"][0]["key"] == "pg/app/%s/manifest.json" % bid(2) and res["backups"][0]["bucket"] == s3_bucket
    assert [p["prefix"] for p in res["partials"]] == ["pg/app/%s/" % bid(3)]
    assert [s["key"] for s in res["unreadable"]] == ["pg/app/%s/manifest.json" % bid(80)]
    assert "not valid JSON" in res["unreadable"][0]["reason"]
    assert res["freshness"]["status"] == "ok"
    assert s3_server.secret_key not in res.output

    both = run_module("backup_info", {"bucket": s3_bucket, "prefix": "pg", "backup_dir": str(root),
                                      "database": "app", "max_age_hours": 26, "size_change_percent": 150}, env=env)
    assert not both.failed, both
    assert [(b["location"], b["backup_id"]) for b in both["backups"]] == [
        ("s3", bid(2)), ("local", bid(2)), ("s3", bid(26)), ("local", bid(26)), ("local", bid(50))]
    assert both["freshness"]["status"] == "ok"
    assert both["size_change"]["previous"] == 1000       # each backup counts once

    shutil.rmtree(made[2][0])
    make_backup(root, "app", bid(1), {"app.dump": b"a" * 2000})      # newer, not off-site yet
    warn = run_module("backup_info", {"bucket": s3_bucket, "prefix": "pg", "backup_dir": str(root),
                                      "database": "app", "max_age_hours": 26}, env=env)
    assert warn["freshness"]["status"] == "warn" and "has no s3 copy" in warn["freshness"]["message"]


def test_s3_errors_are_clear(s3_server, s3_bucket):
    env = dict(s3_server.env, AWS_ENDPOINT_URL=s3_server.endpoint_url)
    res = run_module("backup_info", {"bucket": s3_bucket + "-nope"}, env=env)
    assert res.failed
    assert res["msg"] == "Failed to list backups under s3://%s-nope/: bucket '%s-nope' does not exist" % (
        s3_bucket, s3_bucket)
