"""The pitr role through ansible-playbook against a real cluster and a real pgBackRest (POSIX repository).

The play configures pgBackRest for the cluster, sets archive_command/archive_timeout (archive_mode is already
on: a test cluster is not a service the handler could restart), creates and checks the stanza, takes the
first full backup and reports. A second run changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.fixtures.pgbackrest import pgbackrest_binary
from tests.integration.module_runner import COLLECTIONS_PATH, REPO_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture
def scratch():
    base = Path(tempfile.mkdtemp(prefix="upkeep-pitr-role-", dir="/tmp"))  # noqa: S108 - private dir
    os.chmod(base, 0o711)  # noqa: S103 - the postgres user must reach the repository and config inside
    yield base
    shutil.rmtree(base, ignore_errors=True)


# The role becomes the postgres OS user, who cannot run the venv's interpreter (it lives under /root):
# the "managed node" is Debian's python3 with the venv's site-packages (psycopg) on PYTHONPATH, as a node
# with python3-psycopg installed would be.
NODE_PYTHON = "/usr/bin/python3"
NODE_PATH = str(Path(psycopg.__file__).resolve().parents[1])


def run_play(play_file, out_dir):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_PATH), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0")
    env = {k: v for k, v in env.items() if not k.startswith("PG")}
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", "ansible_python_interpreter=%s" % NODE_PYTHON, "-e", "ansible_become_method=su",
         str(play_file)],
        capture_output=True, text=True, env=env, cwd=str(REPO_ROOT), timeout=300, check=False)


def test_role_turns_on_archiving_creates_the_stanza_backs_up_and_reports(pg_cluster_factory, scratch):
    if pgbackrest_binary() is None or not os.access(NODE_PYTHON, os.X_OK):
        pytest.skip("pgbackrest or Debian's python3 is not installed")
    if os.geteuid() != 0:
        pytest.skip("the role becomes the postgres OS user (su as root)")
    cluster = pg_cluster_factory(settings={"archive_mode": "on"}, name="pitrrole")
    out = scratch / "results.json"
    config = scratch / "etc" / "pgbackrest.conf"
    play = [{
        "name": "pitr", "hosts": "localhost", "gather_facts": False,
        "environment": {"PYTHONPATH": NODE_PATH},
        "roles": [{"role": "upkeep.runbooks.pitr", "vars": {
            "pitr_install": False,
            "pitr_pg_data": str(cluster.datadir),
            "pitr_pg_port": cluster.port,
            "pitr_pg_socket_path": str(cluster.socket_dir),
            "pitr_config_file": str(config),
            "pitr_log_path": str(scratch / "log"),
            "pitr_lock_path": str(scratch / "lock"),
            "pitr_repo_type": "posix",
            "pitr_repo_path": str(scratch / "repo"),
            "pitr_compress_type": "gz",
            "pitr_archive_timeout": 5,
            "pitr_scheduler": "none",
        }}],
        "post_tasks": [{"name": "Keep the results", "ansible.builtin.copy": {
            "content": "{{ pitr_results | to_json }}", "dest": str(out), "mode": "0600"}}],
    }]
    playbook = scratch / "play.yml"
    playbook.write_text(yaml.safe_dump(play))

    proc = run_play(playbook, scratch)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    mode = stat.S_IMODE(config.stat().st_mode)
    assert mode == 0o640
    assert cluster.scalar("SHOW archive_command") == (
        "pgbackrest --config=%s --stanza=main archive-push %%p" % config)
    assert cluster.scalar("SHOW archive_timeout") == "5s"
    results = {item["check"]: item for item in json.loads(out.read_text())}
    assert results["pgbackrest_repository"]["status"] == "ok", results
    assert results["pgbackrest_full_backup_age"]["status"] == "ok", results
    assert results["wal_continuity"]["status"] == "ok", results
    assert results["wal_archive_failures"]["status"] == "ok", results
    assert all(item["host"] == "localhost" for item in results.values())

    again = run_play(playbook, scratch)
    assert again.returncode == 0, again.stdout[-5000:] + again.stderr[-3000:]
    recap = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", again.stdout)
    # the results file is rewritten by the post task only when its content changed (the ages did)
    assert recap and int(recap.group(1)) <= 1, again.stdout[-3000:]
    assert "Take the first full backup" in again.stdout and "Create the stanza in the repository" in again.stdout
    for task in ("Take the first full backup", "Create the stanza in the repository"):
        section = again.stdout.split("TASK [upkeep.runbooks.pitr : %s]" % task)[1].split("TASK [")[0]
        assert "skipping" in section, section
