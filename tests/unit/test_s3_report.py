"""s3_report: argument handling and reading the local report, with the S3 backend mocked."""

import json
from unittest import mock

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _s3
from ansible_collections.upkeep.runbooks.plugins.modules import s3_report
from tests.unit.module_helpers import run_module_main


def report_dir(root, name="20261202T013000Z", content=None):
    path = root / "daily" / name
    path.mkdir(parents=True)
    data = content if content is not None else {"schema_version": 1, "cadence": "daily", "summary": {"status": "ok"}}
    (path / "report.json").write_text(json.dumps(data))
    (path / "report.html").write_text("<html></html>")
    return path


@pytest.mark.parametrize("extra, expected", [
    ({"environment": "prod/eu"}, "environment must contain only letters"),
    ({"kms_key_id": "alias/k"}, "kms_key_id is only used with encryption=aws:kms"),
])
def test_argument_errors(tmp_path, extra, expected):
    args = dict({"path": str(report_dir(tmp_path)), "bucket": "b", "environment": "production"}, **extra)
    with mock.patch.object(_s3, "client") as make_client:
        res = run_module_main(s3_report, args)
    assert res.failed and expected in res["msg"], res["msg"]
    make_client.assert_not_called()


@pytest.mark.parametrize("name, content, expected", [
    ("latest", None, "is not a report run"),
    ("20261202T013000Z", {"schema_version": 2, "cadence": "daily"}, "not a report of schema_version 1"),
    ("20261202T013000Z", {"schema_version": 1, "cadence": "../x"}, "has no valid cadence"),
])
def test_refuses_what_is_not_a_report(tmp_path, name, content, expected):
    path = report_dir(tmp_path, name, content)
    with mock.patch.object(_s3, "client"):
        res = run_module_main(s3_report, {"path": str(path), "bucket": "b", "environment": "production"})
    assert res.failed and res["msg"].startswith("Failed to read report %s" % path) and expected in res["msg"], res
    assert res["local_dir"] == str(path)


def test_missing_report_json_is_named(tmp_path):
    path = report_dir(tmp_path)
    (path / "report.json").unlink()
    with mock.patch.object(_s3, "client"):
        res = run_module_main(s3_report, {"path": str(path), "bucket": "b", "environment": "production"})
    assert res.failed and "report.json: No such file or directory" in res["msg"], res["msg"]


@pytest.mark.parametrize("older, newer", [
    ("20261201T013000Z", "20261202T013000Z"),
    ("20261202T013000Z", "20261202T013000Z-2"),
    ("20261202T013000Z-2", "20261202T013000Z-10"),
])
def test_run_order(older, newer):
    assert s3_report._run_order(older) < s3_report._run_order(newer)


@pytest.mark.parametrize("args, expected", [
    ({"state": "fetched", "dest": "/r"}, "state is fetched but all of the following are missing: cadence"),
    ({"state": "fetched", "cadence": "../x", "dest": "/r"}, "cadence must contain only a-z"),
    ({"state": "present"}, "state is present but all of the following are missing: path"),
])
def test_fetched_argument_errors(args, expected):
    with mock.patch.object(_s3, "client") as make_client:
        res = run_module_main(s3_report, dict(args, bucket="b", environment="production"))
    assert res.failed and expected in res["msg"], res["msg"]
    make_client.assert_not_called()


def test_result_never_carries_a_skipped_key(tmp_path):
    """Ansible reads 'skipped' in a task result as the task's own state and then ignores changed_when/failed_when."""
    path = report_dir(tmp_path)
    with mock.patch.object(_s3, "client"):
        res = run_module_main(s3_report, {"path": str(path), "bucket": "b", "environment": "prod",
                                          "kms_key_id": "alias/k"})
    assert res.failed and "skipped" not in res and "left_out" in res
