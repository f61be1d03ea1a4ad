"""s3_backup against the moto S3 endpoint on loopback: upload, idempotence, fetch, faults."""

import hashlib
import json
import os
import stat
import threading
import time

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest
from tests.integration.module_runner import run_module
from tests.unit.backup_factory import make_backup

pytestmark = pytest.mark.integration

BACKUP_ID = "daily-20261123T021500Z"
PREFIX = "pg/prod"


@pytest.fixture
def env(s3_server):
    return dict(s3_server.env, AWS_ENDPOINT_URL=s3_server.endpoint_url)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def remote_keys(s3_server, bucket):
    resp = s3_server.client().list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in resp.get("Contents", []))


def base(database="app", backup_id=BACKUP_ID):
    return "%s/%s/%s/" % (PREFIX, _manifest.safe_name(database), backup_id)


def assert_clean_output(res, s3_server):
    assert s3_server.secret_key not in res.output
    assert "Traceback" not in res.output


def upload_args(path, bucket, **extra):
    args = {"path": path, "bucket": bucket, "prefix": PREFIX, "part_size_mb": 5}
    args.update(extra)
    return args


def fetch_args(bucket, dest, **extra):
    args = {"state": "fetched", "bucket": bucket, "prefix": PREFIX, "database": "app", "dest": str(dest)}
    args.update(extra)
    return args


def test_upload_is_idempotent_and_fetch_round_trips(s3_server, s3_bucket, env, tmp_path):
    dump = os.urandom(11 * 1024 * 1024 + 17)      # three parts of 5 MiB
    path, manifest = make_backup(tmp_path / "local", "app", BACKUP_ID, {"app.dump": dump, "globals.sql": b"-- g\n"})
    keys = [base() + "app.dump", base() + "globals.sql", base() + "manifest.json"]

    planned = run_module("s3_backup", upload_args(path, s3_bucket), env=env, check_mode=True)
    assert not planned.failed, planned
    assert planned["changed"] and planned["keys"] == keys and planned["verified"] is None
    assert remote_keys(s3_server, s3_bucket) == []

    first = run_module("s3_backup", upload_args(path, s3_bucket), env=env)
    assert not first.failed, first
    assert first["changed"] is True
    assert first["keys"] == keys and first["keys"][-1].endswith("manifest.json")
    assert first["present"] == []
    assert first["bytes"] == manifest["total_size"] + os.path.getsize(os.path.join(path, "manifest.json"))
    assert first["backup_id"] == BACKUP_ID and first["database"] == "app" and first["verified"] == "metadata"
    assert first["encryption"] == "AES256"
    assert_clean_output(first, s3_server)

    client = s3_server.client()
    for entry in manifest["files"]:
        head = client.head_object(Bucket=s3_bucket, Key=base() + entry["path"])
        assert head["Metadata"]["sha256"] == entry["sha256"]
        assert head["ContentLength"] == entry["size"]
        assert head["ServerSideEncryption"] == "AES256"
    assert "-" in client.head_object(Bucket=s3_bucket, Key=base() + "app.dump")["ETag"]   # multipart: not an MD5
    with open(os.path.join(path, "manifest.json"), "rb") as handle:
        local_manifest = handle.read()
    remote_manifest = client.get_object(Bucket=s3_bucket, Key=keys[-1])["Body"].read()
    assert remote_manifest == local_manifest

    second = run_module("s3_backup", upload_args(path, s3_bucket, verify="full"), env=env)
    assert not second.failed, second
    assert second["changed"] is False and second["keys"] == [] and second["present"] == keys
    assert second["verified"] == "full"

    dest = tmp_path / "restore"
    planned = run_module("s3_backup", fetch_args(s3_bucket, dest, latest=True), env=env, check_mode=True)
    assert planned["changed"] and planned["keys"] == keys and not dest.exists()

    fetched = run_module("s3_backup", fetch_args(s3_bucket, dest, latest=True), env=env)
    assert not fetched.failed, fetched
    final = os.path.join(str(dest), "app", BACKUP_ID)
    assert fetched["changed"] and fetched["path"] == final and fetched["verified"] == "sha256"
    assert fetched["keys"] == keys
    with open(os.path.join(final, "app.dump"), "rb") as handle:
        assert sha(handle.read()) == sha(dump)
    with open(os.path.join(final, "manifest.json"), "rb") as handle:
        assert handle.read() == local_manifest
    assert _manifest.verify_files(final, _manifest.load_manifest(final)) == []
    assert stat.S_IMODE(os.stat(final).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(final, "app.dump")).st_mode) == 0o600
    assert sorted(os.listdir(os.path.join(str(dest), "app"))) == [BACKUP_ID]       # no .partial left

    again = run_module("s3_backup", fetch_args(s3_bucket, dest, backup_id=BACKUP_ID), env=env)
    assert not again.failed, again
    assert again["changed"] is False and again["present"] == keys


def test_resumes_after_a_partial_copy(s3_server, s3_bucket, env, tmp_path):
    path, manifest = make_backup(tmp_path, "app", BACKUP_ID)
    dump = manifest["files"][0]
    with open(os.path.join(path, dump["path"]), "rb") as handle:
        s3_server.client().put_object(Bucket=s3_bucket, Key=base() + dump["path"], Body=handle.read(),
                                      Metadata={"sha256": dump["sha256"]})
    res = run_module("s3_backup", upload_args(path, s3_bucket), env=env)
    assert not res.failed, res
    assert res["present"] == [base() + dump["path"]]
    assert res["keys"] == [base() + "globals.sql", base() + "manifest.json"]


def test_flipped_byte_in_the_remote_copy_fails_fetch_naming_the_object(s3_server, s3_bucket, env, tmp_path):
    path, manifest = make_backup(tmp_path / "local", "app", BACKUP_ID, {"app.dump": os.urandom(300000)})
    assert not run_module("s3_backup", upload_args(path, s3_bucket), env=env).failed
    client = s3_server.client()
    key = base() + "app.dump"
    body = bytearray(client.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    body[1234] ^= 0x01
    client.put_object(Bucket=s3_bucket, Key=key, Body=bytes(body), Metadata={"sha256": manifest["files"][0]["sha256"]})

    dest = tmp_path / "restore"
    res = run_module("s3_backup", fetch_args(s3_bucket, dest, backup_id=BACKUP_ID), env=env)
    assert res.failed
    assert "Failed to fetch s3://%s/%s" % (s3_bucket, key) in res["msg"]
    assert "SHA-256" in res["msg"]
    assert os.listdir(os.path.join(str(dest), "app")) == []          # neither the backup nor its .partial

    # The recorded metadata still matches, so only a full read-back notices on the upload side.
    assert run_module("s3_backup", upload_args(path, s3_bucket), env=env)["changed"] is False
    full = run_module("s3_backup", upload_args(path, s3_bucket, verify="full"), env=env)
    assert full.failed and "Failed to verify s3://%s/%s" % (s3_bucket, key) in full["msg"]
    assert_clean_output(full, s3_server)


def test_broken_local_backup_is_refused_and_leaves_nothing(s3_server, s3_bucket, env, tmp_path):
    path, _manifest_data = make_backup(tmp_path, "app", BACKUP_ID,
                                       {"app.dump": os.urandom(6 * 1024 * 1024), "globals.sql": b"-- g\n"})
    with open(os.path.join(path, "app.dump"), "r+b") as handle:
        handle.seek(4096)
        byte = handle.read(1)
        handle.seek(4096)
        handle.write(bytes([byte[0] ^ 0xFF]))
    res = run_module("s3_backup", upload_args(path, s3_bucket), env=env)
    assert res.failed
    assert os.path.join(path, "app.dump") in res["msg"] and "SHA-256" in res["msg"]
    assert remote_keys(s3_server, s3_bucket) == []
    assert s3_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_missing_local_file_fails_before_uploading(s3_server, s3_bucket, env, tmp_path):
    path, _manifest_data = make_backup(tmp_path, "app", BACKUP_ID)
    os.unlink(os.path.join(path, "globals.sql"))
    res = run_module("s3_backup", upload_args(path, s3_bucket), env=env)
    assert res.failed and "globals.sql (missing" in res["msg"]
    assert remote_keys(s3_server, s3_bucket) == []


class StopAfterFirstPart(threading.Thread):
    """Stops the endpoint as soon as a multipart upload in ``bucket`` has a part."""

    def __init__(self, server, bucket):
        super().__init__(daemon=True)
        self.server, self.bucket = server, bucket
        self.stopped_after_parts = None
        self.done = threading.Event()

    def run(self):
        from botocore.config import Config

        import boto3

        client = boto3.client("s3", endpoint_url=self.server.endpoint_url, region_name=self.server.region,
                              aws_access_key_id=self.server.access_key,
                              aws_secret_access_key=self.server.secret_key,
                              config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5))
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                for upload in client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []):
                    parts = client.list_parts(Bucket=self.bucket, Key=upload["Key"],
                                              UploadId=upload["UploadId"]).get("Parts", [])
                    if parts:
                        self.server.stop()
                        self.stopped_after_parts = len(parts)
                        return
                time.sleep(0.005)
        finally:
            self.done.set()


def test_endpoint_stopped_mid_upload_leaves_no_manifest_and_a_rerun_completes(s3_server, s3_bucket, env, tmp_path):
    dump = os.urandom(40 * 1024 * 1024)
    path, manifest = make_backup(tmp_path / "local", "app", BACKUP_ID, {"app.dump": dump, "globals.sql": b"-- g\n"})
    args = upload_args(path, s3_bucket, max_concurrency=1)
    with open(s3_server.logfile, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        log_start = handle.tell()

    stopper = StopAfterFirstPart(s3_server, s3_bucket)
    stopper.start()
    started = time.monotonic()
    res = run_module("s3_backup", args, env=env, timeout=300)
    elapsed = time.monotonic() - started
    stopper.done.wait(10)
    assert stopper.stopped_after_parts, "the endpoint was not stopped mid-upload"
    assert res.failed, res
    assert res["msg"].startswith("Failed to upload %s to s3://%s/%sapp.dump: " % (
        os.path.join(path, "app.dump"), s3_bucket, base())), res["msg"]
    assert s3_server.endpoint_url in res["msg"]
    assert elapsed < 120
    assert_clean_output(res, s3_server)
    with open(s3_server.logfile, "rb") as handle:
        handle.seek(log_start)
        requests = handle.read().decode("utf-8", "replace")
    assert "PUT /%s/%smanifest.json" % (s3_bucket, base()) not in requests
    assert "POST /%s/%sapp.dump?uploads" % (s3_bucket, base()) in requests     # the upload had really started

    # moto keeps nothing across a restart: the bucket comes back empty, the re-run uploads everything.
    s3_server.start()
    s3_server.client().create_bucket(Bucket=s3_bucket)
    rerun = run_module("s3_backup", args, env=env)
    assert not rerun.failed, rerun
    assert rerun["changed"] and rerun["keys"][-1] == base() + "manifest.json"
    dest = tmp_path / "restore"
    fetched = run_module("s3_backup", fetch_args(s3_bucket, dest, latest=True), env=env)
    assert not fetched.failed, fetched
    with open(os.path.join(fetched["path"], "app.dump"), "rb") as handle:
        assert sha(handle.read()) == manifest["files"][0]["sha256"]


def test_another_backup_with_the_same_id_is_not_overwritten(s3_server, s3_bucket, env, tmp_path):
    first, _m1 = make_backup(tmp_path / "a", "app", BACKUP_ID)
    other, _m2 = make_backup(tmp_path / "b", "app", BACKUP_ID)
    assert not run_module("s3_backup", upload_args(first, s3_bucket), env=env).failed
    res = run_module("s3_backup", upload_args(other, s3_bucket), env=env)
    assert res.failed and "already exists with different content" in res["msg"]


def test_awkward_database_name_and_directory_format_round_trip(s3_server, s3_bucket, env, tmp_path):
    database = "Ünïcode db's \"quoted\""
    files = {"%s.dir/toc.dat" % _manifest.safe_name(database): b"toc" * 100,
             "%s.dir/3001.dat.gz" % _manifest.safe_name(database): os.urandom(70000)}
    path, manifest = make_backup(tmp_path / "local", database, BACKUP_ID, files, fmt="directory")
    res = run_module("s3_backup", upload_args(path, s3_bucket, encryption="none"), env=env)
    assert not res.failed, res
    assert res["database"] == database and res["encryption"] is None
    assert all(key.startswith(base(database)) for key in res["keys"])
    dest = tmp_path / "restore"
    fetched = run_module("s3_backup", fetch_args(s3_bucket, dest, database=database, latest=True), env=env)
    assert not fetched.failed, fetched
    assert fetched["path"] == _manifest.backup_path(str(dest), database, BACKUP_ID)
    assert _manifest.verify_files(fetched["path"], manifest) == []


def test_object_lock_retention_is_applied(s3_server, env, tmp_path):
    bucket = "upkeep-test-lock-%d" % os.getpid()
    client = s3_server.client()
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    path, _manifest_data = make_backup(tmp_path, "app", BACKUP_ID)
    res = run_module("s3_backup", upload_args(path, bucket, object_lock_mode="GOVERNANCE",
                                              object_lock_retain_until_days=2, storage_class="STANDARD_IA"), env=env)
    assert not res.failed, res
    head = client.head_object(Bucket=bucket, Key=base() + "manifest.json")
    assert head["ObjectLockMode"] == "GOVERNANCE" and head["StorageClass"] == "STANDARD_IA"


def test_missing_bucket_and_missing_backup_are_named(s3_server, s3_bucket, env, tmp_path):
    path, _manifest_data = make_backup(tmp_path, "app", BACKUP_ID)
    res = run_module("s3_backup", upload_args(path, s3_bucket + "-missing"), env=env)
    assert res.failed and "bucket '%s-missing' does not exist" % s3_bucket in res["msg"], res["msg"]
    res = run_module("s3_backup", fetch_args(s3_bucket, tmp_path / "r", backup_id=BACKUP_ID), env=env)
    assert res.failed and "manifest.json does not exist" in res["msg"], res["msg"]
    res = run_module("s3_backup", fetch_args(s3_bucket, tmp_path / "r", latest=True), env=env)
    assert res.failed and "no complete backup under s3://%s/%s/app/" % (s3_bucket, PREFIX) in res["msg"], res["msg"]


def test_stopped_endpoint_is_a_clear_error(s3_server, s3_bucket, env, tmp_path):
    path, _manifest_data = make_backup(tmp_path, "app", BACKUP_ID)
    s3_server.stop()
    try:
        res = run_module("s3_backup", upload_args(path, s3_bucket), env=env)
    finally:
        s3_server.start()
    assert res.failed
    assert "cannot connect to the S3 endpoint %s: connection refused" % s3_server.endpoint_url in res["msg"], res
    assert json.dumps(dict(res)).count(s3_server.secret_key) == 0


def test_fetch_replaces_a_damaged_local_copy_and_a_stale_partial(s3_server, s3_bucket, env, tmp_path):
    path, manifest = make_backup(tmp_path / "local", "app", BACKUP_ID, {"app.dump": os.urandom(5000)})
    assert not run_module("s3_backup", upload_args(path, s3_bucket), env=env).failed
    dest = tmp_path / "restore"
    first = run_module("s3_backup", fetch_args(s3_bucket, dest, latest=True), env=env)
    assert not first.failed, first
    with open(os.path.join(first["path"], "app.dump"), "r+b") as handle:
        handle.truncate(10)
    stale = _manifest.partial_path(str(dest), "app", BACKUP_ID)
    os.makedirs(stale)
    with open(os.path.join(stale, "junk"), "wb") as handle:
        handle.write(b"from an interrupted fetch")

    again = run_module("s3_backup", fetch_args(s3_bucket, dest, latest=True), env=env)
    assert not again.failed, again
    assert again["changed"] is True
    assert any("Replaced the local copy" in str(w) for w in again.get("warnings", [])), again.get("warnings")
    assert _manifest.verify_files(again["path"], manifest) == []
    assert sorted(os.listdir(os.path.join(str(dest), "app"))) == [BACKUP_ID]
