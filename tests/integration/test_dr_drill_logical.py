"""The dr_drill role with ``dr_drill_source: logical``: the newest pg_dump backup drilled like the pgBackRest stanza.

Two real clusters: the source (the sample app migrated and seeded, a heartbeat committed every 0.2 s in its
``postgres`` database) and the DR host's own server. Role ``backup`` dumps the sample app's database on the source
and copies it to a moto S3 endpoint on 127.0.19.2 (its artifacts, as the daily run leaves them); more rows are
committed after the dump; then role ``dr_drill`` fetches the newest backup (role restore_test's fetch), restores it
into the DR server with pg_restore, checks and starts the application against it and measures RTO and RPO.

What must hold: RPO is the source's newest commit at the declaration minus the dump's snapshot time (the manifest's
``started_at``), the restored database holds exactly what the dump held (not the rows committed after it), the
application answered healthy from the DR server with the login's password set from its env file (as a SCRAM
verifier: the DR server's statement log never holds the password), and the drill left nothing behind on the DR server.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.postgres import free_port
from tests.fixtures.s3 import S3Server
from tests.integration.test_dr_drill import NODE_PATH, NODE_PYTHON, Heartbeat, passed_drill, seed_sample_app, ts
from tests.integration.test_dr_drill import run_play as _run_play

pytestmark = pytest.mark.integration

S3_HOST = "127.0.19.2"


class _Base:
    """What run_play needs: a directory for the playbook."""

    def __init__(self, base):
        self.base = base


@pytest.fixture
def shared_dir():
    """A directory the postgres OS user can reach (pytest's own temp root is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="upkeep-dr-logical-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    server = S3Server(str(tmp_path_factory.mktemp("s3-dr-logical")), host=S3_HOST).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_logical_drill_measures_rto_and_rpo_against_the_dumps_snapshot(pg_cluster_factory, s3_endpoint,
                                                                          shared_dir, tmp_path):
    if os.geteuid() != 0 or not os.access(NODE_PYTHON, os.X_OK) or shutil.which("psql") is None:
        pytest.skip("needs root, Debian's python3 and psql")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not found (Debian package redis-server)")
    source = pg_cluster_factory(name="source")
    # every statement in the DR server's log: the login's password must not be among them
    dr = pg_cluster_factory(name="dr", settings={"log_statement": "all"})
    app, redis, env_file = seed_sample_app(source, tmp_path / "sampleapp")
    bucket = "upkeep-dr-logical"
    s3_endpoint.client().create_bucket(Bucket=bucket)
    backup_dir = shared_dir / "backups"
    fetch_dir = shared_dir / "fetched"
    for path in (backup_dir, fetch_dir):
        path.mkdir(mode=0o700)
        shutil.chown(path, "postgres", "postgres")
    source.execute("CREATE TABLE upkeep_heartbeat (id bigserial PRIMARY KEY, "
                   "at timestamptz NOT NULL DEFAULT clock_timestamp())")
    beat = Heartbeat(source)
    beat.start()
    out = tmp_path / "results.json"
    socket_source = {"login_unix_socket": str(source.socket_dir), "login_port": source.port, "login_user": "postgres"}
    socket_dr = {"login_unix_socket": str(dr.socket_dir), "login_port": dr.port, "login_user": "postgres"}
    s3_vars = {"restore_test_s3_bucket": bucket, "restore_test_s3_endpoint_url": s3_endpoint.endpoint_url,
               "restore_test_s3_region": s3_endpoint.region, "restore_test_dir": str(fetch_dir)}
    backup_play = {
        "name": "the daily backup on the source", "hosts": "localhost", "gather_facts": False,
        "environment": {"PYTHONPATH": NODE_PATH, **s3_endpoint.env},
        "module_defaults": {"group/upkeep.runbooks.postgres": socket_source},
        "roles": [{"role": "upkeep.runbooks.backup", "vars": {
            "backup_databases": ["sampleapp"], "backup_dir": str(backup_dir), "backup_compression": "zstd",
            "backup_s3_enabled": True, "backup_s3_bucket": bucket, "backup_s3_endpoint_url": s3_endpoint.endpoint_url,
            "backup_s3_region": s3_endpoint.region}}],
        "post_tasks": [{"name": "Keep the backup results", "ansible.builtin.copy": {
            "content": "{{ backup_results | to_json }}", "dest": str(tmp_path / "backup.json"), "mode": "0600"}}],
    }
    try:
        proc = _run_play(_Base(tmp_path), [backup_play], "backup", unshare=False)
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
        backed_up = json.loads((tmp_path / "backup.json").read_text())
        assert [r["check"] for r in backed_up if r["status"] == "fail"] == [], backed_up
        assert "backup_offsite:sampleapp" in [r["check"] for r in backed_up], backed_up
        dumped_orders = source.execute("SELECT count(*) FROM orders_order", dbname="sampleapp")[0][0]
        # written after the dump: a logical backup cannot have it, and the drill must not show it
        source.execute("INSERT INTO orders_order (customer_id, status, total, currency, created_at, notes, metadata) "
                       "SELECT customer_id, status, total, currency, now(), notes, metadata FROM orders_order LIMIT 1",
                       dbname="sampleapp")
        drill_play = {
            "name": "logical drill", "hosts": "localhost", "gather_facts": False,
            "environment": {"PYTHONPATH": NODE_PATH, **s3_endpoint.env},
            "roles": [{"role": "upkeep.runbooks.dr_drill", "vars": {
                **s3_vars,
                "dr_drill_source": "logical",
                "dr_drill_logical_database": "sampleapp",
                "dr_drill_logical_connection": socket_dr,
                "dr_drill_source_host": "localhost",
                "dr_drill_source_connection": socket_source,
                "dr_drill_heartbeat_service": False,
                "dr_drill_rto_target_seconds": 600,
                "dr_drill_rpo_target_seconds": 600,
                "dr_drill_app_dir": str(app.APP_DIR),
                "dr_drill_app_python": sys.executable,
                "dr_drill_app_env_file": str(env_file),
                "dr_drill_app_bind": "127.0.0.1:%d" % free_port(),
                "dr_drill_app_object_counts": {"orders.Order": dumped_orders},
                "dr_drill_app_run_dir": str(tmp_path / "app-run"),
            }}],
            "post_tasks": [{"name": "Keep the results", "ansible.builtin.copy": {
                "content": "{{ dr_drill_results | to_json }}", "dest": str(out), "mode": "0600"}}],
        }
        proc = _run_play(_Base(tmp_path), [drill_play], "drill", unshare=False)
    finally:
        beat.halt.set()
        beat.join(10)
        redis.stop()
    drill = passed_drill(proc, beat, out)
    value = drill["value"]
    assert value["source"] == "logical" and value["rpo_basis"] == "snapshot"
    # the backup drilled is the one role backup made, and RPO is measured against its snapshot
    (manifest_path,) = backup_dir.glob("sampleapp/*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert value["backup"] == manifest["backup_id"]
    assert value["target"]["type"] == "logical" and value["target"]["snapshot_at"] == manifest["started_at"]
    assert value["newest_restored"] == manifest["started_at"]
    committed = [row[0] for row in source.execute("SELECT at::text FROM upkeep_heartbeat ORDER BY at")]
    assert value["last_committed_at_declaration"] in committed
    assert ts(value["last_committed_at_declaration"]) <= ts(value["declared_at"])
    expected_rpo = (ts(value["last_committed_at_declaration"]) - ts(manifest["started_at"])).total_seconds()
    assert expected_rpo > 0
    assert value["rpo_seconds"] == pytest.approx(expected_rpo, abs=0.001)
    assert value["rpo_cross_check_seconds"] == pytest.approx(expected_rpo, abs=0.001)
    # the phases: fetch, restore, then the application's; RTO holds them all
    phases = value["phases"]
    names = ["fetch_seconds", "restore_seconds", "app_deploy_check_seconds", "app_migrate_check_seconds",
             "app_objects_seconds", "app_start_seconds", "app_first_healthy_seconds"]
    assert all(phases[name] >= 0 for name in names), phases
    assert phases["restore_seconds"] > 0 and phases["fetch_seconds"] > 0
    assert value["rto_seconds"] >= sum(phases[name] for name in names)
    assert "from the logical backup" in drill["message"] and "fetch" in drill["message"]
    # the application saw exactly what the dump held (not the order written after it), through its own login
    application = value["application"]
    assert application["object_counts"] == {"orders.Order": dumped_orders}
    assert application["health"] == {"status": "ok", "database": "ok", "redis": "ok"}
    app.assert_no_secrets(proc.stdout + proc.stderr + out.read_text())
    # the login got its password as a SCRAM verifier: the DR server logged the statement, never the password
    dr_log = dr.logfile.read_text(errors="replace")
    assert "ALTER ROLE" in dr_log or "ALTER USER" in dr_log, "log_statement=all logged no password change"
    assert "SCRAM-SHA-256$4096:" in dr_log
    app.assert_no_secrets(dr_log)
    # nothing left behind: the drill's database is dropped, the fetched copy removed, the application stopped
    databases = [row[0] for row in dr.execute("SELECT datname FROM pg_database")]
    assert "sampleapp_dr_drill" not in databases and not any(name.startswith("upkeep_restore_") for name in databases)
    assert [path for path in fetch_dir.rglob("*") if not path.is_dir()] == []
    assert not (tmp_path / "app-run" / "gunicorn.pid").exists()
    # the source kept running throughout
    assert source.running
    with psycopg.connect(**source.conninfo(dbname="sampleapp")) as conn:
        assert conn.execute("SELECT count(*) FROM orders_order").fetchone()[0] == dumped_orders + 1
