"""The dr_drill role through ansible-playbook: a drill against a running source with a heartbeat, RTO and RPO.

The source primary (pgbackrest_stanza) keeps committing a heartbeat row every 0.2 s while the drill runs.
The play runs in its own PID namespace (``unshare --pid --mount-proc``): that is the DR host's view, where the
source's postmaster is not a local process (on one test machine it would be, and pitr_restore rightly refuses
a host running the source).

The sample application (lab/app) is migrated and seeded on the source before the drill; the drill checks it
against the restored database (check --deploy, migrate --check, object counts), starts gunicorn on it and ends
the RTO at its first healthy /healthz/ answer (a database round trip and a Redis PING).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql

from tests.fixtures.pgbackrest import ARCHIVE_TIMEOUT
from tests.fixtures.postgres import free_port
from tests.integration.module_runner import COLLECTIONS_PATH, REPO_ROOT

pytestmark = pytest.mark.integration

NODE_PYTHON = "/usr/bin/python3"
NODE_PATH = str(Path(psycopg.__file__).resolve().parents[1])


def ts(text):
    text = text.replace(" ", "T", 1)
    if text[-3] in "+-":
        text += ":00"
    return datetime.datetime.fromisoformat(text)


class Heartbeat(threading.Thread):
    """Commits one heartbeat row every 0.2 s on the source until stopped."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.halt = threading.Event()
        self.errors = []

    def run(self):
        with self.cluster.connect() as conn:
            while not self.halt.wait(0.2):
                try:
                    conn.execute("INSERT INTO upkeep_heartbeat DEFAULT VALUES")
                except psycopg.Error as exc:  # the test fails on any
                    self.errors.append(str(exc))


@pytest.fixture(scope="module")
def sample_app(pgbackrest_stanza):
    """The sample app on the source (role, migrations, seed_demo) and its Redis, once for the module."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not found (Debian package redis-server)")
    app, redis, env_file = seed_sample_app(pgbackrest_stanza.cluster, pgbackrest_stanza.base / "sampleapp")
    try:
        yield app, env_file
    finally:
        redis.stop()


def seed_sample_app(cluster, workdir):
    """The sample app's database on the source: role, migrations, seed_demo. Returns the app's env file."""
    app = pytest.importorskip("tests.integration.test_sample_app")
    cluster.execute(sql.SQL("CREATE ROLE sampleapp LOGIN PASSWORD {}").format(sql.Literal(app.DB_PASSWORD)))
    cluster.execute("CREATE DATABASE sampleapp OWNER sampleapp")
    Path(workdir).mkdir(mode=0o700)
    redis = app.Redis(workdir).start()
    env_file = app.write_env_file(Path(workdir) / "sampleapp.env", {
        "SECRET_KEY": app.SECRET_KEY_1, "DB_HOST": cluster.host, "DB_PORT": str(cluster.port), "DB_NAME": "sampleapp",
        "DB_USER": "sampleapp", "DB_PASSWORD": app.DB_PASSWORD, "DB_SSLMODE": "disable", "REDIS_URL": redis.url,
        "ALLOWED_HOSTS": "127.0.0.1,localhost"})
    env = app.app_env(env_file, SEED_DEMO_PASSWORD=app.DEMO_PASSWORD)
    app.manage(env, "migrate", "--noinput")
    app.manage(env, "seed_demo", *app.SEED_ARGS)
    return app, redis, env_file


def run_play(stanza, play, name, unshare):
    playbook = stanza.base / ("%s.yml" % name)
    playbook.write_text(yaml.safe_dump(play))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_PATH), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0")
    prefix = ["unshare", "--pid", "--fork", "--mount-proc"] if unshare else []
    return subprocess.run(
        [*prefix, str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", "ansible_python_interpreter=%s" % NODE_PYTHON, "-e", "ansible_become_method=su", str(playbook)],
        capture_output=True, text=True, env=env, cwd=str(REPO_ROOT), timeout=400, check=False)


def passed_drill(proc, beat, out):
    """The one dr_drill result the play kept in ``out``, after checking the run and the drill passed."""
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert not beat.errors, beat.errors
    results = json.loads(out.read_text())
    assert len(results) == 1, results
    drill = results[0]
    assert drill["check"] == "dr_drill" and drill["status"] == "ok", drill["message"]
    return drill

def test_a_drill_measures_rto_and_rpo_against_the_heartbeat(pgbackrest_stanza, sample_app):
    if shutil.which("unshare") is None or os.geteuid() != 0 or not os.access(NODE_PYTHON, os.X_OK):
        pytest.skip("needs root, unshare and Debian's python3")
    stanza = pgbackrest_stanza
    cluster = stanza.cluster
    app, env_file = sample_app
    orders = cluster.execute("SELECT count(*) FROM orders_order", dbname="sampleapp")[0][0]
    assert orders > 0
    stanza.backup("full")
    # A first drill: the heartbeat begins just now, and its WAL reaches the archive only at the next segment
    # switch (archive_timeout raised to 8 s). Declared at once, the drill would restore a database without the
    # heartbeat table; the role waits until the archive holds a heartbeat first.
    cluster.set(archive_timeout="8s")
    cluster.execute("SELECT pg_reload_conf()")
    cluster.execute("CREATE TABLE IF NOT EXISTS upkeep_heartbeat (id bigserial PRIMARY KEY, "
                    "at timestamptz NOT NULL DEFAULT clock_timestamp())")
    beat = Heartbeat(cluster)
    beat.start()
    sock = stanza.restore_dir("drill-sock")
    drill_dir = stanza.base / "drill"
    out = stanza.base / "results.json"
    play = [{
        "name": "drill", "hosts": "localhost", "gather_facts": False,
        "environment": {"PYTHONPATH": NODE_PATH},
        "roles": [{"role": "upkeep.runbooks.dr_drill", "vars": {
            "dr_drill_source_host": "localhost",
            "dr_drill_source_connection": {"login_unix_socket": str(cluster.socket_dir), "login_port": cluster.port,
                                           "login_user": "postgres"},
            "dr_drill_stanza": stanza.name,
            "dr_drill_config": str(stanza.config),
            "dr_drill_data_directory": str(drill_dir),
            "dr_drill_settings": {"port": free_port(), "unix_socket_directories": str(sock)},
            "dr_drill_heartbeat_service": False,
            "dr_drill_wait_archive_seconds": 60,
            "dr_drill_rto_target_seconds": 600,
            "dr_drill_rpo_target_seconds": 60,
            "dr_drill_app_dir": str(app.APP_DIR),
            "dr_drill_app_python": sys.executable,
            "dr_drill_app_env_file": str(env_file),
            "dr_drill_app_bind": "127.0.0.1:%d" % free_port(),
            "dr_drill_app_object_counts": {"orders.Order": orders},
            "dr_drill_app_run_dir": str(stanza.base / "app-run"),
        }}],
        "post_tasks": [{"name": "Keep the results", "ansible.builtin.copy": {
            "content": "{{ dr_drill_results | to_json }}", "dest": str(out), "mode": "0600"}}],
    }]
    try:
        proc = run_play(stanza, play, "drill", unshare=True)
    finally:
        beat.halt.set()
        beat.join(10)
        cluster.set(archive_timeout=ARCHIVE_TIMEOUT)
        cluster.execute("SELECT pg_reload_conf()")
    drill = passed_drill(proc, beat, out)
    value = drill["value"]
    # it saw the heartbeat was new and waited for its segment to reach the archive before declaring (how many
    # retries that took depends on the machine's load: a busy run may find the segment archived at once)
    task = "Wait until the repository's archive holds that segment"
    assert task in proc.stdout, "the drill did not wait for the heartbeat to be archived"
    waited = proc.stdout.split(task, 1)[1]
    assert re.match(r"[^\n]*\][ *]*\n(FAILED - RETRYING: [^\n]*\n)*ok: \[localhost\]", waited), waited[:600]
    # the newest heartbeat restored is a row the source committed, at or before the declaration
    committed = [row[0] for row in cluster.execute("SELECT at::text FROM upkeep_heartbeat ORDER BY at")]
    assert value["newest_restored"] in committed
    assert value["last_committed_at_declaration"] in committed
    assert ts(value["newest_restored"]) <= ts(value["last_committed_at_declaration"]) <= ts(value["declared_at"])
    expected_rpo = (ts(value["last_committed_at_declaration"]) - ts(value["newest_restored"])).total_seconds()
    assert value["rpo_seconds"] == pytest.approx(expected_rpo, abs=0.001)
    # PostgreSQL's last replayed commit is at or after the newest heartbeat's insert time
    assert value["rpo_cross_check_seconds"] <= value["rpo_seconds"] + 0.001
    phases = value["phases"]
    app_phases = ["app_deploy_check_seconds", "app_migrate_check_seconds", "app_objects_seconds",
                  "app_start_seconds", "app_first_healthy_seconds"]
    assert all(phases[name] >= 0 for name in app_phases), phases
    # RTO runs from the declaration to the application's first healthy answer: it holds every phase
    assert value["rto_seconds"] >= (phases["restore_seconds"] + phases["replay_seconds"] + phases["promote_seconds"]
                                    + sum(phases[name] for name in app_phases))
    application = value["application"]
    assert application["object_counts"] == {"orders.Order": orders}
    assert application["health"] == {"status": "ok", "database": "ok", "redis": "ok"}
    assert "application healthy after" in drill["message"]
    app.assert_no_secrets(proc.stdout + proc.stderr + out.read_text())
    assert value["recovery_point"]["timeline"] == 2
    assert value["target"]["type"] == "lsn" and value["target"]["inclusive"] is False
    assert not drill_dir.exists(), "the drill's restore must be removed afterwards"
    assert not (stanza.base / "app-run" / "gunicorn.pid").exists(), "the drill's application must be stopped"


def test_a_rehearsal_stops_the_source_switches_the_app_and_measures_the_outage(pgbackrest_stanza, sample_app):
    """Runs after the drill (it stops the module's source for good).

    No PID namespace here: the source is stopped before pitr_restore runs, so nothing it refuses is running.
    The application is the test's own gunicorn on the source; its restart is a SIGHUP (new workers read the
    env file again, as systemd's restart does in the lab).
    """
    if os.geteuid() != 0 or not os.access(NODE_PYTHON, os.X_OK) or shutil.which("runuser") is None:
        pytest.skip("needs root, runuser and Debian's python3")
    stanza = pgbackrest_stanza
    cluster = stanza.cluster
    app, env_file = sample_app
    orders = cluster.execute("SELECT count(*) FROM orders_order", dbname="sampleapp")[0][0]
    cluster.execute("CREATE TABLE IF NOT EXISTS upkeep_heartbeat (id bigserial PRIMARY KEY, "
                    "at timestamptz NOT NULL DEFAULT clock_timestamp())")
    stanza.backup("full")
    data_dir = stanza.restore_dir("rehearsal")
    sock = stanza.restore_dir("rehearsal-sock")
    out = stanza.base / "rehearsal.json"
    web = app.Gunicorn(env_file, stanza.base / "sampleapp").start()
    beat = Heartbeat(cluster)
    beat.start()
    play = [{
        "name": "rehearsal", "hosts": "localhost", "gather_facts": False,
        "environment": {"PYTHONPATH": NODE_PATH},
        "roles": [{"role": "upkeep.runbooks.dr_drill", "vars": {
            "dr_drill_kind": "rehearsal",
            "dr_drill_source_host": "localhost",
            "dr_drill_source_connection": {"login_unix_socket": str(cluster.socket_dir), "login_port": cluster.port,
                                           "login_user": "postgres"},
            "dr_drill_source_stop_command": "runuser -u %s -- %s/pg_ctl stop -m immediate -D %s" % (
                "postgres", cluster.bindir, cluster.datadir),
            "dr_drill_stanza": stanza.name,
            "dr_drill_config": str(stanza.config),
            "dr_drill_data_directory": str(data_dir),
            "dr_drill_settings": {"port": free_port(), "unix_socket_directories": str(sock)},
            "dr_drill_heartbeat_service": False,
            "dr_drill_rto_target_seconds": 600,
            "dr_drill_rpo_target_seconds": 60,
            "dr_drill_app_dir": str(app.APP_DIR),
            "dr_drill_app_python": sys.executable,
            "dr_drill_app_env_file": str(env_file),
            "dr_drill_app_object_counts": {"orders.Order": orders},
            "dr_drill_app_run_dir": str(stanza.base / "rehearsal-run"),
            "dr_drill_rehearsal_env_file": str(env_file),
            "dr_drill_rehearsal_restart_command": "kill -HUP %d" % web.proc.pid,
            "dr_drill_rehearsal_health_url": web.url("/healthz/"),
            "dr_drill_rehearsal_max_seconds": 300,
        }}],
        "post_tasks": [{"name": "Keep the results", "ansible.builtin.copy": {
            "content": "{{ dr_drill_results | to_json }}", "dest": str(out), "mode": "0600"}}],
    }]
    try:
        proc = run_play(stanza, play, "rehearsal", unshare=False)
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
        results = json.loads(out.read_text())
        assert len(results) == 1 and results[0]["status"] == "ok", results
        value = results[0]["value"]
        assert value["kind"] == "rehearsal"
        # the source is gone: the disaster was real
        assert not cluster.pidfile.exists()
        # the application now answers from the DR server: its env file names the DR port, and its data is there
        restored_port = str(play[0]["roles"][0]["vars"]["dr_drill_settings"]["port"])
        assert "DB_PORT=%s\n" % restored_port in env_file.read_text()
        assert "DB_PORT=%s\n" % cluster.port in Path(str(env_file) + ".before-dr-rehearsal").read_text()
        status, body = app.http_get(None, web.url("/healthz/"))
        assert status == 200, body
        assert value["application"]["object_counts"] == {"orders.Order": orders}
        # users saw an outage: healthy before, failing after the stop, healthy again after the switch
        prober = value["prober"]
        assert prober["healthy_before"] is True and prober["recovered"] is True
        assert prober["failed_requests"] >= 1 and prober["requests"] > prober["failed_requests"]
        assert value["user_outage_seconds"] == prober["outage_seconds"] > 0
        # RPO against the heartbeat: the newest restored row is at or before the last one the source committed
        assert ts(value["newest_restored"]) <= ts(value["last_committed_at_declaration"])
        expected_rpo = (ts(value["last_committed_at_declaration"]) - ts(value["newest_restored"])).total_seconds()
        assert value["rpo_seconds"] == pytest.approx(expected_rpo, abs=0.001)
        assert value["target"]["type"] == "latest" and value["recovery_point"]["timeline"] >= 2
        phases = value["phases"]
        assert value["rto_seconds"] >= phases["restore_seconds"] + phases["app_start_seconds"]
        # the fail-back runbook, written out with this site's names
        steps = value["fail_back"]
        assert len(steps) == 6 and all(isinstance(step, str) and step for step in steps)
        assert "--stanza=%s" % stanza.name in " ".join(steps) and str(data_dir) in " ".join(steps)
        app.assert_no_secrets(proc.stdout + proc.stderr + out.read_text())
    finally:
        beat.halt.set()
        beat.join(10)
        web.stop()
