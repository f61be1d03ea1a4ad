"""Durable reports: s3_report and the report role's S3 report store against moto on loopback.

The reports are written by the real report module; the objects are read back with boto3 and
compared byte for byte with the local files. A dead endpoint must fail the upload (module and
playbook) with a message naming the local report, which stays as it was.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.s3 import free_port
from tests.integration.module_runner import COLLECTIONS_PATH, REPO_ROOT, run_module

pytestmark = pytest.mark.integration

RESULTS = [
    {"check": "disk_free:database", "host": "db1", "status": "ok", "value": {"free_percent": 61.0},
     "threshold": {"warn": 20, "fail": 10}, "message": "database volume 61 % free"},
    {"check": "replication_lag", "host": "db2", "status": "warn", "value": 42, "threshold": {"warn": 30},
     "message": "replica 42 s behind"},
]


@pytest.fixture
def env(s3_server):
    return dict(s3_server.env, AWS_ENDPOINT_URL=s3_server.endpoint_url)


def write_report(dest, timestamp, cadence="daily", results=RESULTS):
    res = run_module("report", {"cadence": cadence, "results": results, "hosts": ["db1", "db2"],
                                "dest": str(dest), "timestamp": timestamp, "run": {"playbook": "daily"}})
    assert not res.failed, res
    return res


def objects(s3_server, bucket):
    client = s3_server.client()
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return dict((obj["Key"], client.get_object(Bucket=bucket, Key=obj["Key"])) for obj in listed)


def body(obj):
    return obj["Body"].read()


def history_runs(data):
    """The runs of a schema-2 history (JSON Lines: a header line, then one run per line)."""
    lines = data.splitlines()
    assert json.loads(lines[0])["schema_version"] == 2
    return [json.loads(line) for line in lines[1:]]


SCHEMA1_FIXTURE = REPO_ROOT / "tests" / "fixtures" / "history" / "schema1-daily.json"


def digests(directory):
    return dict((name, hashlib.sha256((Path(directory) / name).read_bytes()).hexdigest())
                for name in sorted(os.listdir(directory)))


def store_args(report, bucket, **extra):
    args = {"path": report["dir"], "history": report["history"]["path"], "bucket": bucket,
            "environment": "production"}
    args.update(extra)
    return args


def test_report_lands_verified_with_latest_pointer(s3_server, s3_bucket, env, tmp_path):
    dest = tmp_path / "reports"
    first = write_report(dest, "2026-12-01T01:30:00Z")
    base = "reports/production/daily/"
    run1 = base + "20261201T013000Z/"

    planned = run_module("s3_report", store_args(first, s3_bucket), env=env, check_mode=True)
    assert not planned.failed, planned
    assert planned["keys"] == [run1 + "report.json", run1 + "report.html", run1 + "history.json",
                               base + "latest.json"]
    assert planned["changed"] and planned["verified"] is None and objects(s3_server, s3_bucket) == {}

    stored = run_module("s3_report", store_args(first, s3_bucket), env=env)
    assert not stored.failed, stored
    assert stored["changed"] and stored["latest_updated"] and stored["verified"] == "metadata"
    assert stored["url"] == "s3://%s/%s" % (s3_bucket, run1)
    assert s3_server.secret_key not in stored.output and "Traceback" not in stored.output

    remote = objects(s3_server, s3_bucket)
    assert sorted(remote) == sorted(planned["keys"])
    local_dir = Path(first["dir"])
    for name in ("report.json", "report.html"):
        data = (local_dir / name).read_bytes()
        assert body(remote[run1 + name]) == data
        assert remote[run1 + name]["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert remote[run1 + name]["ServerSideEncryption"] == "AES256"
    assert remote[run1 + "report.html"]["ContentType"].startswith("text/html")
    assert body(remote[run1 + "history.json"]) == Path(first["history"]["path"]).read_bytes()
    assert remote[run1 + "history.json"]["ContentType"] == "application/x-ndjson"
    pointer = json.loads(body(remote[base + "latest.json"]))
    assert pointer["run"] == "20261201T013000Z" and pointer["prefix"] == run1
    assert pointer["cadence"] == "daily" and pointer["environment"] == "production"
    assert pointer["status"] == "warn" and pointer["generated_at"] == "2026-12-01T01:30:00Z"
    assert pointer["objects"]["report.json"]["sha256"] == remote[run1 + "report.json"]["Metadata"]["sha256"]

    again = run_module("s3_report", store_args(first, s3_bucket, verify="full"), env=env)
    assert not again.failed, again
    assert again["changed"] is False and again["keys"] == [] and again["latest_updated"] is False
    assert sorted(again["present"]) == sorted(planned["keys"][:3])

    # The next day's run moves the pointer; re-sending the older run afterwards does not move it back.
    second = write_report(dest, "2026-12-02T01:30:00Z")
    newer = run_module("s3_report", store_args(second, s3_bucket), env=env)
    assert not newer.failed and newer["latest_updated"], newer
    older = run_module("s3_report", store_args(first, s3_bucket, history=None), env=env)
    assert not older.failed and older["latest_updated"] is False and older["keys"] == [], older
    assert json.loads(body(objects(s3_server, s3_bucket)[base + "latest.json"]))["run"] == "20261202T013000Z"
    # The history copied with the second run holds both runs; the first copy is untouched.
    remote = objects(s3_server, s3_bucket)
    assert len(history_runs(body(remote[base + "20261202T013000Z/history.json"]))) == 2
    assert len(history_runs(body(remote[run1 + "history.json"]))) == 1


def test_history_continues_from_the_store(s3_server, s3_bucket, env, tmp_path):
    args = {"state": "fetched", "cadence": "daily", "dest": str(tmp_path / "fresh"), "bucket": s3_bucket,
            "environment": "production"}
    nothing = run_module("s3_report", args, env=env)
    assert not nothing.failed and nothing["fetched"] is False and nothing["reason"] == "no stored run with a history"

    dest = tmp_path / "reports"
    write_report(dest, "2026-12-01T01:30:00Z")
    second = write_report(dest, "2026-12-02T01:30:00Z")
    for report in (write_report(tmp_path / "other", "2026-11-30T01:30:00Z"), second):
        assert not run_module("s3_report", store_args(report, s3_bucket), env=env).failed
    source = "s3://%s/reports/production/daily/20261202T013000Z/history.json" % s3_bucket

    planned = run_module("s3_report", args, env=env, check_mode=True)
    assert planned["fetched"] is True and planned["source"] == source, planned
    assert not (tmp_path / "fresh").exists()

    fetched = run_module("s3_report", args, env=env)
    assert not fetched.failed and fetched["fetched"] is True and fetched["runs"] == 2, fetched
    local = tmp_path / "fresh" / "daily" / "history.json"
    assert local.read_bytes() == Path(second["history"]["path"]).read_bytes()
    assert oct(local.stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in local.parent.iterdir()) == ["history.json", "history.lock"]

    # The next report on the fresh controller continues the history: it knows the run before it.
    third = write_report(tmp_path / "fresh", "2026-12-03T01:30:00Z")
    assert third["history"]["runs"] == 3 and third["changes"]["previous_at"] == "2026-12-02T01:30:00Z", third

    kept = run_module("s3_report", args, env=env)
    assert kept["fetched"] is False and kept["reason"] == "a local history exists"
    assert history_runs(local.read_bytes())[-1]["generated_at"] == "2026-12-03T01:30:00Z"

    dead = run_module("s3_report", dict(args, dest=str(tmp_path / "dead")),
                      env=dict(env, AWS_ENDPOINT_URL="http://127.0.0.1:%d" % free_port()))
    assert dead.failed and dead["msg"].startswith("Failed to fetch the daily history from s3://"), dead["msg"]
    assert "connection refused" in dead["msg"] and not (tmp_path / "dead").exists()


def test_schema1_history_in_the_store_is_fetched_then_migrated(s3_server, s3_bucket, env, tmp_path):
    """A store filled by the collection before history schema 2 holds one-document histories."""
    old = write_report(tmp_path / "old", "2026-02-09T02:30:00Z")
    stored = run_module("s3_report", store_args(old, s3_bucket, history=str(SCHEMA1_FIXTURE)), env=env)
    assert not stored.failed, stored
    remote = objects(s3_server, s3_bucket)
    key = "reports/production/daily/20260209T023000Z/history.json"
    assert body(remote[key]) == SCHEMA1_FIXTURE.read_bytes() and remote[key]["ContentType"] == "application/json"

    args = {"state": "fetched", "cadence": "daily", "dest": str(tmp_path / "fresh"), "bucket": s3_bucket,
            "environment": "production"}
    fetched = run_module("s3_report", args, env=env)
    assert not fetched.failed and fetched["fetched"] and fetched["runs"] == 40, fetched
    assert fetched["schema_version"] == 1
    local = tmp_path / "fresh" / "daily" / "history.json"
    assert local.read_bytes() == SCHEMA1_FIXTURE.read_bytes()

    nxt = write_report(tmp_path / "fresh", "2026-02-10T02:30:00Z")
    assert nxt["history"]["migrated"] is True and nxt["history"]["runs"] == 41, nxt["history"]
    assert nxt["changes"]["previous_at"] == "2026-02-09T02:30:00Z"
    runs = history_runs(local.read_bytes())
    fixture = json.loads(SCHEMA1_FIXTURE.read_text())["runs"]
    assert [r["metrics"] for r in runs[:40]] == [r["metrics"] for r in fixture]

    # A damaged stored history is refused with the line named; nothing lands locally.
    broken = tmp_path / "broken-history.json"
    lines = local.read_bytes().splitlines()
    lines[7] = lines[7][:50]
    broken.write_bytes(b"\n".join(lines) + b"\n")
    later = write_report(tmp_path / "old", "2026-02-11T02:30:00Z")
    assert not run_module("s3_report", store_args(later, s3_bucket, history=str(broken)), env=env).failed
    refused = run_module("s3_report", dict(args, dest=str(tmp_path / "other")), env=env)
    assert refused.failed and "has 1 damaged line (line 8: not valid JSON" in refused["msg"], refused["msg"]
    assert not (tmp_path / "other" / "daily" / "history.json").exists()


def test_report_is_written_once(s3_server, s3_bucket, env, tmp_path):
    report = write_report(tmp_path / "reports", "2026-12-01T01:30:00Z")
    key = "reports/production/daily/20261201T013000Z/report.json"
    s3_server.client().put_object(Bucket=s3_bucket, Key=key, Body=b"{}")
    res = run_module("s3_report", store_args(report, s3_bucket), env=env)
    assert res.failed and res.rc != 0
    assert "already exists with other content" in res["msg"] and report["dir"] in res["msg"], res["msg"]
    assert sorted(objects(s3_server, s3_bucket)) == [key]


def test_failing_endpoint_fails_loudly_and_keeps_the_local_report(s3_server, s3_bucket, env, tmp_path):
    report = write_report(tmp_path / "reports", "2026-12-01T01:30:00Z")
    before = digests(report["dir"])
    history_before = Path(report["history"]["path"]).read_bytes()
    dead = dict(env, AWS_ENDPOINT_URL="http://127.0.0.1:%d" % free_port())
    res = run_module("s3_report", store_args(report, s3_bucket), env=dead)
    assert res.failed and res.rc != 0
    assert res["msg"].startswith("Failed to upload report %s to s3://%s/" % (report["dir"], s3_bucket)), res["msg"]
    assert "connection refused" in res["msg"] and "the local report is kept" in res["msg"], res["msg"]
    assert "Traceback" not in res.output and s3_server.secret_key not in res.output
    assert digests(report["dir"]) == before
    assert Path(report["history"]["path"]).read_bytes() == history_before

    missing = run_module("s3_report", store_args(report, s3_bucket + "-gone"), env=env)
    assert missing.failed and "does not exist" in missing["msg"], missing["msg"]
    assert digests(report["dir"]) == before


def run_role(tmp_path, extra_vars, env):
    """The report role on localhost the way the cadence playbooks end; returns the process."""
    play = [{
        "name": "daily checks", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "A result",
                   "ansible.builtin.set_fact": {"health_results": [dict(RESULTS[0], host="localhost")]}}],
    }, {
        "name": "report", "hosts": "localhost", "gather_facts": False,
        "roles": [{"role": "upkeep.runbooks.report", "vars": {"report_cadence": "daily"}}],
    }]
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(play))
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps(extra_vars))
    run_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_PATH), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCALHOST_WARNING="0", **env)
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", "ansible_python_interpreter=%s" % sys.executable, "-e", "@%s" % extra, str(playbook)],
        capture_output=True, text=True, env=run_env, cwd=str(REPO_ROOT), timeout=300, check=False)


def test_report_role_stores_the_report_and_names_the_awx_job(s3_server, s3_bucket, env, tmp_path):
    reports = tmp_path / "reports"
    common = {"report_dir": str(reports), "report_s3_enabled": True, "report_s3_bucket": s3_bucket,
              "upkeep_environment": "staging", "awx_job_id": 4711, "awx_job_template_name": "upkeep daily"}
    proc = run_role(tmp_path, common, env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert s3_server.secret_key not in out
    (run_dir,) = [p for p in (reports / "daily").iterdir() if p.is_dir() and not p.is_symlink()]
    prefix = "reports/staging/daily/%s/" % run_dir.name
    remote = objects(s3_server, s3_bucket)
    assert sorted(remote) == sorted([prefix + "report.json", prefix + "report.html", prefix + "history.json",
                                     "reports/staging/daily/latest.json"])
    stored = json.loads(body(remote[prefix + "report.json"]))
    assert stored == json.loads((run_dir / "report.json").read_text())
    assert stored["run"]["awx_job_id"] == 4711 and stored["run"]["awx_job_template_name"] == "upkeep daily"
    assert "Stored: s3://%s/%s" % (s3_bucket, prefix) in proc.stdout

    # A fresh controller (a new AWX job container) continues the history kept in the store.
    fresh = tmp_path / "fresh-reports"
    again = run_role(tmp_path, dict(common, report_dir=str(fresh)), env)
    assert again.returncode == 0, (again.stdout + again.stderr)[-5000:]
    said = " ".join(again.stdout.split())  # the YAML callback wraps long messages
    assert "History continued from s3://%s/%shistory.json (1 runs)" % (s3_bucket, prefix) in said
    assert "changed=0" in again.stdout.splitlines()[-2], "storing the report is bookkeeping, not a change"
    (fresh_run,) = [p for p in (fresh / "daily").iterdir() if p.is_dir() and not p.is_symlink()]
    continued = json.loads((fresh_run / "report.json").read_text())
    assert continued["changes"]["previous_at"] == stored["generated_at"], continued["changes"]

    # The endpoint goes away: the run fails at the upload, naming the local report, which is there.
    dead = dict(common, report_s3_endpoint_url="http://127.0.0.1:%d" % free_port())
    failed = run_role(tmp_path, dead, env)
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0, out[-5000:]
    assert "Failed to upload report %s" % (reports / "daily") in out and "connection refused" in out, out[-5000:]
    runs = sorted(p for p in (reports / "daily").iterdir() if p.is_dir() and not p.is_symlink())
    assert len(runs) == 2
    assert json.loads((runs[-1] / "report.json").read_text())["summary"]["status"] == "ok"
    assert (runs[-1] / "report.html").stat().st_size > 0
