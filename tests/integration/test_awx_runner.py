"""AWX-style job runs: playbooks through ansible-runner with a private data dir laid out as AWX lays it out.

AWX (its receptor worker) hands ansible-runner a private data dir holding

* ``env/extravars``: the job's extra variables plus the ``awx_*`` / ``tower_*`` job variables,
* ``env/envvars``: the job environment (``JOB_ID``, ``AWX_HOST``, ...) and what the credentials
  inject (here the S3 keys of the "upkeep S3" credential type and a PostgreSQL password),
* ``env/settings``: runner settings; AWX sets ``idle_timeout`` and ``job_timeout``,
* ``inventory/hosts``: an executable inventory script printing the inventory as JSON,
* ``project/``: the project checkout, the directory the playbook runs from,

and reads back the event stream (``artifacts/<ident>/job_events``), the exit status and the
``set_stats`` data (the ``artifact_data`` of the ``playbook_on_stats`` event). These tests do
the same against this machine: the daily playbook on "db1" (a local PostgreSQL cluster from
tests/fixtures/postgres.py, reached over the local connection) with the report stored in moto,
a playbook that would wait for terminal input, which the idle timeout must end, and the
rotate runbook, a job that changes things: one login's password rotated through the real
OpenBao (the AppRole injected as the "upkeep Vault AppRole" credential type does) under the
run lock, and a second job refused at once while another run holds that lock. All run on this
host, and all but the lock refusal once more inside the execution environment image
(``make ee``) as AWX runs them through receptor: ``transmit | worker in the EE container | process``.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import yaml

from tests.integration.module_runner import COLLECTIONS_PATH, REPO_ROOT, run_module
from tests.integration.vault_pg_rotate_helpers import can_login, create_login, current, seed, unique

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
JOB_ID = 4711
TEMPLATE = "upkeep daily"
IDLE_TIMEOUT = 120      # seconds without output before runner ends the job, as AWX's setting does
PROMPT_IDLE_TIMEOUT = 8  # for the jobs that wait for input: short, so the test is quick
JOB_TIMEOUT = 540       # the job template's timeout; below pytest-timeout's 600 s


def awx_extravars(job_id=JOB_ID, template=TEMPLATE):
    """The variables AWX adds to every job's extra variables (awx_* and their older tower_* names)."""
    job = {
        "job_id": job_id, "job_launch_type": "scheduled", "job_template_id": 12, "job_template_name": template,
        "project_revision": "0123456789abcdef0123456789abcdef01234567", "project_scm_branch": "main",
        "inventory_id": 3, "inventory_name": "lab", "execution_node": "awx-task-0", "host": "https://awx.invalid",
        "schedule_id": 5, "schedule_name": "upkeep daily 01:30",
        "user_id": 1, "user_name": "", "user_email": "", "user_first_name": "", "user_last_name": "",
    }
    out = {}
    for key, value in job.items():
        out["awx_" + key] = value
        out["tower_" + key] = value
    return out


def inventory_script(groups, hostvars):
    """An executable inventory script in AWX's shape (--list prints groups and _meta.hostvars)."""
    data = dict(groups)
    data["_meta"] = {"hostvars": hostvars}
    return textwrap.dedent("""\
        #!/usr/bin/env python3
        import json
        import sys

        DATA = json.loads(%r)
        if len(sys.argv) > 2 and sys.argv[1] == "--host":
            print(json.dumps(DATA["_meta"]["hostvars"].get(sys.argv[2], {})))
        else:
            print(json.dumps(DATA))
        """) % json.dumps(data)


def private_data_dir(root, playbooks, extravars, envvars, groups, hostvars, idle_timeout=IDLE_TIMEOUT):
    """Lay out ``root`` as AWX does; ``playbooks`` are (relative path, text or source file) pairs."""
    env = root / "env"
    env.mkdir(parents=True)
    (env / "extravars").write_text(yaml.safe_dump(extravars))
    (env / "envvars").write_text(yaml.safe_dump(envvars))
    (env / "settings").write_text(yaml.safe_dump({
        "idle_timeout": idle_timeout, "job_timeout": JOB_TIMEOUT, "pexpect_timeout": 5,
        "suppress_ansible_output": True}))
    for name in ("extravars", "envvars", "settings"):
        (env / name).chmod(0o600)
    inventory = root / "inventory"
    inventory.mkdir()
    script = inventory / "hosts"
    script.write_text(inventory_script(groups, hostvars))
    script.chmod(stat.S_IRWXU)
    project = root / "project"
    (project / "playbooks").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "ansible.cfg", project / "ansible.cfg")
    for rel, text in playbooks:
        target = project / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, Path):
            shutil.copy(text, target)
        else:
            target.write_text(text)
    return root


def job_env(root):
    """What the worker process itself runs with: the tool chain on PATH, the collection installed."""
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("PG", "AWS_", "ANSIBLE_", "VAULT_")))
    env["PATH"] = "%s:%s" % (BIN, env.get("PATH", "/usr/bin:/bin"))
    # In the EE the collection is installed; here it is the checkout, as AWX's project sync would place it.
    env["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS_PATH)
    env["HOME"] = str(root / "home")
    return env


def run_job(root, playbook, ident):
    proc = subprocess.run(
        [str(BIN / "ansible-runner"), "run", str(root), "-p", playbook, "--ident", ident],
        capture_output=True, text=True, env=job_env(root), stdin=subprocess.DEVNULL, timeout=JOB_TIMEOUT + 30,
        check=False)
    artifacts = root / "artifacts" / ident
    events = [json.loads(path.read_text()) for path in sorted((artifacts / "job_events").glob("*.json"),
                                                              key=lambda p: int(p.name.split("-", 1)[0]))]
    return proc, artifacts, events


def all_text(artifacts, events, *dirs):
    """Everything of the job that AWX shows or keeps: the events, stdout, the fact cache, and ``dirs``.

    Runner's ``command`` artifact is left out on purpose: it records the job's environment, which
    holds what the credentials inject; AWX keeps it out of the UI and the API (its "safe env"
    replaces credential values with HIDDEN_PASSWORD).
    """
    parts = [json.dumps(event) for event in events]
    files = [artifacts / name for name in ("stdout", "status", "rc")]
    for directory in (artifacts / "fact_cache",) + dirs:
        files.extend(p for p in Path(directory).rglob("*") if p.is_file())
    for path in files:
        if path.exists():
            parts.append(path.read_text(errors="replace"))
    return "\n".join(parts)


def daily_job(root, pg_cluster, s3_server, s3_bucket, in_ee):
    """Lay out the daily job's private data dir; ``in_ee``: paths and interpreter as seen inside the EE."""
    if "appdb" not in [row[0] for row in pg_cluster.execute("SELECT datname FROM pg_database")]:
        pg_cluster.execute("CREATE DATABASE appdb")
        pg_cluster.execute("CREATE TABLE items (id int PRIMARY KEY, name text)", dbname="appdb")
        pg_cluster.execute("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g", dbname="appdb")
    # Inside the EE the worker unpacks the job into /runner; files it writes there go with the container.
    work = "/runner" if in_ee else str(root)
    groups = {
        "all": {"children": ["postgres"], "vars": {"upkeep_environment": "lab"}},
        "postgres": {"children": ["postgres_primary"]},
        "postgres_primary": {"hosts": ["db1"]},
    }
    db1 = {
        # db1 is the job's own machine (the EE container, or this host); its PostgreSQL is a test cluster.
        "ansible_connection": "local",
        "upkeep_postgres_role": "primary",
        "upkeep_postgres_connection": {"login_host": pg_cluster.host, "login_port": pg_cluster.port,
                                       "login_user": "postgres"},
        "health_postgres_become_user": "",
        "backup_become_user": "",
        "backup_databases": ["appdb"],
        "backup_dir": work + "/backups",
        "backup_s3_enabled": True,
        "backup_s3_bucket": s3_bucket,
        "backup_s3_prefix": "postgresql/lab",
        "backup_s3_endpoint_url": s3_server.endpoint_url,
        "backup_s3_region": s3_server.region,
        "health_disk_paths": {"work": work},
        # The job asserts a healthy run: the CPU of this shared machine (busy with the other tests)
        # must not decide it. host_resources_info has its own tests with a known /proc.
        "health_resources_enabled": False,
    }
    if in_ee:
        # The EE runs jobs as uid 1000 without sudo: no privilege escalation on the local "host".
        db1.update(ansible_python_interpreter="/usr/bin/python3", ansible_become=False)
        # The container's own disk is no database volume (its overlay root is not in the mount facts).
        db1["health_disk_paths"] = {}
    else:
        # Root on a machine without sudo; su to the same user needs no password.
        db1.update(ansible_python_interpreter=sys.executable, ansible_become_method="ansible.builtin.su")
    extravars = dict(awx_extravars(), report_s3_enabled=True, report_s3_bucket=s3_bucket,
                     report_s3_endpoint_url=s3_server.endpoint_url, report_s3_region=s3_server.region,
                     upkeep_report_dir=work + "/reports")
    # The job environment: AWX's own variables and what the credentials inject.
    envvars = {
        "JOB_ID": str(JOB_ID), "INVENTORY_ID": "3", "PROJECT_REVISION": extravars["awx_project_revision"],
        "AWX_HOST": "https://awx.invalid", "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        "AWX_PRIVATE_DATA_DIR": work,
        "AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "PGPASSWORD": pg_cluster.password,
    }
    if in_ee:
        # AWX points the job's collection path at the project's requirements and the EE's collections,
        # which also overrides the project's ansible.cfg (collections_path = .collections, a checkout-only path).
        envvars["ANSIBLE_COLLECTIONS_PATH"] = \
            "/runner/requirements_collections:~/.ansible/collections:/usr/share/ansible/collections"
    private_data_dir(root, [("playbooks/daily.yml", REPO_ROOT / "playbooks/daily.yml")], extravars, envvars,
                     groups, {"db1": db1})


def check_daily(proc, artifacts, events, pg_cluster, s3_server, s3_bucket, *dirs):
    """What AWX would show of the daily job; returns (the report store's copy of report.json, the summary)."""
    stdout = (artifacts / "stdout").read_text(errors="replace") if (artifacts / "stdout").exists() else ""
    assert (artifacts / "status").read_text() == "successful", stdout[-6000:] + proc.stderr[-2000:]
    assert (artifacts / "rc").read_text() == "0" and proc.returncode == 0

    failed = [e for e in events if e["event"] in ("runner_on_failed", "runner_on_unreachable")
              and not e["event_data"].get("ignore_errors")]
    assert failed == [], [(e["event_data"].get("task"), e["event_data"].get("res", {}).get("msg")) for e in failed]
    text = all_text(artifacts, events, *dirs)
    for secret in (pg_cluster.password, s3_server.secret_key):
        assert secret not in text, "a secret reached the job's output"

    # set_stats arrives as the run's artifact data, as AWX stores it on the job.
    (stats,) = [e for e in events if e["event"] == "playbook_on_stats"]
    artifact_data = stats["event_data"]["artifact_data"]
    summary = artifact_data["upkeep_report"]
    assert summary["cadence"] == "daily" and summary["fail"] == 0 and summary["ok"] > 0, summary
    store = artifact_data["upkeep_report_s3"]
    assert store["url"].startswith("s3://%s/reports/lab/daily/" % s3_bucket), store

    # The copy in the report store names the AWX job.
    client = s3_server.client()
    stored = json.loads(client.get_object(Bucket=s3_bucket, Key=store["prefix"] + "report.json")["Body"].read())
    assert stored["run"]["awx_job_id"] == JOB_ID and stored["run"]["awx_job_template_name"] == TEMPLATE
    assert stored["run"]["awx_schedule_name"] == "upkeep daily 01:30"
    html = client.get_object(Bucket=s3_bucket, Key=store["prefix"] + "report.html")["Body"].read().decode()
    assert TEMPLATE in html and str(JOB_ID) in html
    checks = dict((r["check"], r["status"]) for r in stored["results"])
    assert checks["host_reachable"] == "ok" and checks["backup_offsite:appdb"] == "ok", checks
    offsite = client.list_objects_v2(Bucket=s3_bucket, Prefix="postgresql/lab/appdb/")
    assert any(obj["Key"].endswith("/manifest.json") for obj in offsite.get("Contents", []))
    return stored, summary


def test_daily_as_an_awx_job(pg_cluster, s3_server, s3_bucket, tmp_path):
    root = tmp_path / "awx_4711_pdd"
    daily_job(root, pg_cluster, s3_server, s3_bucket, in_ee=False)
    proc, artifacts, events = run_job(root, "playbooks/daily.yml", "4711")
    stored, summary = check_daily(proc, artifacts, events, pg_cluster, s3_server, s3_bucket, root / "reports")
    # Without a container the local report stays, and the store holds the same bytes.
    assert json.loads(Path(summary["json_path"]).read_text()) == stored


def ee_image():
    image = os.environ.get("UPKEEP_EE_IMAGE", "localhost/upkeep-runbooks-ee:latest")
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    env = dict(os.environ, CONTAINERS_CONF=os.environ.get("CONTAINERS_CONF", str(REPO_ROOT / "lab/containers.conf")))
    if subprocess.run(["podman", "image", "exists", image], env=env, check=False).returncode != 0:
        pytest.skip("the execution environment image %s is not built (make ee)" % image)
    return image


def run_job_in_ee(root, playbook, ident, image):
    """Run the job the way AWX does through receptor: transmit | worker inside the EE | process.

    The worker runs in a container of the EE image on the host network (the test's PostgreSQL
    and S3 endpoints are on 127.0.0.1), as the image's user (uid 1000), and unpacks the job into
    /runner inside the container; only the event stream comes back, which ``process`` turns
    into the artifacts on this side.
    """
    env = job_env(root)
    env["CONTAINERS_CONF"] = os.environ.get("CONTAINERS_CONF", str(REPO_ROOT / "lab/containers.conf"))
    name = "upkeep-awx-job-%s-%s" % (ident, os.getpid())
    pipeline = "%s transmit %s -p %s --ident %s | podman run --rm -i --network host --name %s %s " \
               "ansible-runner worker --private-data-dir=/runner | %s process %s --ident %s" % (
                   BIN / "ansible-runner", root, playbook, ident, name, image, BIN / "ansible-runner", root, ident)
    try:
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=JOB_TIMEOUT + 30, check=False)
    finally:
        subprocess.run(["podman", "rm", "-f", "--ignore", name], env=env, capture_output=True, check=False)
    artifacts = root / "artifacts" / ident
    events = [json.loads(path.read_text()) for path in sorted((artifacts / "job_events").glob("*.json"),
                                                              key=lambda p: int(p.name.split("-", 1)[0]))]
    return proc, artifacts, events


@pytest.mark.containers  # the job runs in a container of the EE image
def test_daily_as_an_awx_job_in_the_execution_environment(pg_cluster, s3_server, s3_bucket, tmp_path):
    image = ee_image()
    root = tmp_path / "awx_4711_ee_pdd"
    daily_job(root, pg_cluster, s3_server, s3_bucket, in_ee=True)
    proc, artifacts, events = run_job_in_ee(root, "playbooks/daily.yml", "4711", image)
    stored, summary = check_daily(proc, artifacts, events, pg_cluster, s3_server, s3_bucket)
    # The local report was written inside the container and went with it; the store kept it.
    assert summary["json_path"].startswith("/runner/reports/daily/")
    assert not (root / "reports").exists()
    assert stored["summary"]["status"] == summary["status"]
    # The collection ran from the EE's installed copy, not from a checkout.
    assert "/usr/share/ansible/collections/ansible_collections/upkeep/runbooks" in json.dumps(events)


@pytest.mark.parametrize("play", [
    {"name": "asks", "hosts": "localhost", "gather_facts": False,
     "tasks": [{"name": "Wait for a human", "ansible.builtin.pause": {"prompt": "Press enter to go on"}},
               {"name": "Never reached", "ansible.builtin.debug": {"msg": "went on"}}]},
    {"name": "asks", "hosts": "localhost", "gather_facts": False,
     "vars_prompt": [{"name": "answer", "prompt": "Proceed?", "private": False}],
     "tasks": [{"name": "Never reached", "ansible.builtin.debug": {"msg": "went on with {{ answer }}"}}]},
], ids=["pause", "vars_prompt"])
def test_a_prompt_ends_the_job_at_the_idle_timeout(tmp_path, play):
    root = tmp_path / "awx_4712_pdd"
    private_data_dir(root, [("playbooks/asks.yml", yaml.safe_dump([play]))], awx_extravars(4712), {"JOB_ID": "4712"},
                     {"all": {"hosts": ["localhost"]}},
                     {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
                     idle_timeout=PROMPT_IDLE_TIMEOUT)
    proc, artifacts, events = run_job(root, "playbooks/asks.yml", "4712")
    assert (artifacts / "status").read_text() == "timeout", (artifacts / "stdout").read_text()[-3000:]
    assert proc.returncode != 0
    assert not [e for e in events if e["event"] == "runner_on_ok" and "went on" in json.dumps(e["event_data"])]


@pytest.mark.containers  # the job runs in a container of the EE image
def test_a_prompt_ends_the_job_at_the_idle_timeout_in_the_execution_environment(tmp_path):
    image = ee_image()
    root = tmp_path / "awx_4713_ee_pdd"
    play = {"name": "asks", "hosts": "localhost", "gather_facts": False,
            "tasks": [{"name": "Wait for a human", "ansible.builtin.pause": {"prompt": "Press enter to go on"}},
                      {"name": "Never reached", "ansible.builtin.debug": {"msg": "went on"}}]}
    private_data_dir(root, [("playbooks/asks.yml", yaml.safe_dump([play]))], awx_extravars(4713), {"JOB_ID": "4713"},
                     {"all": {"hosts": ["localhost"]}},
                     {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}},
                     idle_timeout=PROMPT_IDLE_TIMEOUT)
    proc, artifacts, events = run_job_in_ee(root, "playbooks/asks.yml", "4713", image)
    assert (artifacts / "status").read_text() == "timeout", proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not [e for e in events if e["event"] == "runner_on_ok" and "went on" in json.dumps(e["event_data"])]


# --- the rotate runbook: a job that changes things --------------------------------------------

ROTATE_TEMPLATE = "upkeep rotate"


@pytest.fixture(scope="module")
def rotate_approle(vault_server):
    """(role_id, secret_id) of an AppRole with the rotation policy, as the "upkeep Vault AppRole" credential holds."""
    vault_server.ensure_ready()
    role_id, secret_id = "role-" + uuid.uuid4().hex, "sid-" + uuid.uuid4().hex
    vault_server.bao.define_approle("awx-" + uuid.uuid4().hex[:8], role_id, secret_id, ["rotation"])
    return role_id, secret_id


@pytest.fixture
def rotated_login(pg_cluster, vault_client):
    """A login of its own with version 1 of its secret in Vault: (user, old password, KV path)."""
    user, old, path = unique("awx"), "old-" + unique("pw"), "awx/" + unique("db")
    create_login(pg_cluster, user, old)
    seed(vault_client, path, {"username": user, "password": old, "host": "db1", "dbname": "postgres"})
    return user, old, path


def rotate_job(root, pg_cluster, vault_server, approle, environment, login, job_id, store=None):
    """Lay out the rotate job's private data dir; ``store``: (s3_server, bucket) to run it in the EE.

    On this host the report stays in ``root/reports``. In the EE (``store`` given) the report is
    written inside the container and also uploaded to the report store, as AWX jobs do.

    Hosts: only db1 (postgres_primary, the test cluster over the local connection). The
    inventory has no ``app`` group, so rotate.yml's rollout play (hosts ``upkeep_rotation_app_hosts``,
    default ``app``) matches no host and restarts nothing: this job rotates the login in
    PostgreSQL and Vault, takes and gives back the run lock, and writes the report.
    """
    user, _old, path = login
    work = "/runner" if store else str(root)
    groups = {
        "all": {"children": ["postgres"], "vars": {
            "upkeep_environment": environment,
            # As inventories/production/group_vars/all.yml: the address in the inventory, the
            # AppRole from what the "upkeep Vault AppRole" credential injects.
            "upkeep_vault_connection": {
                "url": vault_server.url, "auth_method": "approle",
                "role_id": "{{ lookup('ansible.builtin.env', 'VAULT_ROLE_ID') }}",
                "secret_id": "{{ lookup('ansible.builtin.env', 'VAULT_SECRET_ID') }}"}}},
        "postgres": {"children": ["postgres_primary"]},
        "postgres_primary": {"hosts": ["db1"]},
    }
    db1 = {
        "ansible_connection": "local", "upkeep_postgres_role": "primary",
        "upkeep_postgres_connection": {"login_host": pg_cluster.host, "login_port": pg_cluster.port,
                                       "login_user": "postgres"},
        # The test cluster is reached over TCP with PGPASSWORD, not as the postgres OS user.
        "credential_rotation_become_user": "",
        "credential_rotation_database_secrets": [
            {"path": path, "strategy": "single", "username": user, "test_host": pg_cluster.host,
             "test_port": pg_cluster.port, "test_timeout": 20}],
    }
    if store:
        # The EE runs jobs as uid 1000 without sudo: no privilege escalation on the local "host".
        db1.update(ansible_python_interpreter="/usr/bin/python3", ansible_become=False)
    else:
        db1.update(ansible_python_interpreter=sys.executable)
    extravars = dict(awx_extravars(job_id, ROTATE_TEMPLATE), awx_job_launch_type="manual",
                     tower_job_launch_type="manual", awx_user_name="alice", tower_user_name="alice",
                     upkeep_report_dir=work + "/reports")
    if store:
        s3_server, bucket = store
        extravars.update(report_s3_enabled=True, report_s3_bucket=bucket, report_s3_endpoint_url=s3_server.endpoint_url,
                         report_s3_region=s3_server.region)
    # The job environment: AWX's own variables and what the credentials inject (the custom
    # "upkeep Vault AppRole" and "upkeep S3" types of controller/credential_types.yml, and a
    # PostgreSQL password).
    role_id, secret_id = approle
    envvars = {
        "JOB_ID": str(job_id), "INVENTORY_ID": "3", "PROJECT_REVISION": extravars["awx_project_revision"],
        "AWX_HOST": "https://awx.invalid", "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        "AWX_PRIVATE_DATA_DIR": work,
        "VAULT_ADDR": vault_server.url, "VAULT_AUTH_METHOD": "approle",
        "VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": secret_id,
        "PGPASSWORD": pg_cluster.password,
    }
    if store:
        envvars.update(AWS_ACCESS_KEY_ID=s3_server.access_key, AWS_SECRET_ACCESS_KEY=s3_server.secret_key)
        # As in daily_job: the EE's collections, not the checkout-only path of the project's ansible.cfg.
        envvars["ANSIBLE_COLLECTIONS_PATH"] = \
            "/runner/requirements_collections:~/.ansible/collections:/usr/share/ansible/collections"
    playbooks = [("playbooks/%s" % name, REPO_ROOT / "playbooks" / name)
                 for name in ("rotate.yml", "maintenance_window.yml", "tasks/window_gate.yml", "run_lock_acquire.yml",
                              "run_lock_release.yml")]
    private_data_dir(root, playbooks, extravars, envvars, groups, {"db1": db1})


def job_output(artifacts, events, root):
    """What AWX shows or keeps of a job: ``all_text`` plus every other artifact and the report dir.

    Runner's ``command`` artifact (the job environment, see ``all_text``) and ``env/`` of the
    private data dir (AWX writes the credentials there for the run) are left out.
    """
    extra = [p.read_text(errors="replace") for p in artifacts.rglob("*")
             if p.is_file() and p.name != "command" and "job_events" not in p.parts]
    return "\n".join([all_text(artifacts, events, *[d for d in (root / "reports",) if d.exists()])] + extra)


def lock_versions(client, name):
    """Every version of the run lock's record, oldest first."""
    meta = client.secrets.kv.v2.read_secret_metadata(path="upkeep/locks/" + name, mount_point="secret")["data"]
    return [client.secrets.kv.v2.read_secret_version(path="upkeep/locks/" + name, version=v, mount_point="secret",
                                                     raise_on_deleted_version=True)["data"]["data"]
            for v in range(1, int(meta["current_version"]) + 1)]


def check_rotate(proc, artifacts, events, pg_cluster, vault_client, approle, environment, login, job_id):
    """What the rotate job must have done; returns (the report's summary, the secrets that must not show)."""
    user, old, path = login
    stdout = (artifacts / "stdout").read_text(errors="replace") if (artifacts / "stdout").exists() else ""
    assert (artifacts / "status").read_text() == "successful", stdout[-6000:] + proc.stderr[-2000:]
    assert (artifacts / "rc").read_text() == "0" and proc.returncode == 0
    failed = [e for e in events if e["event"] in ("runner_on_failed", "runner_on_unreachable")
              and not e["event_data"].get("ignore_errors")]
    assert failed == [], [(e["event_data"].get("task"), e["event_data"].get("res", {}).get("msg")) for e in failed]

    # The login's password changed: Vault's current version logs in, the old password is refused.
    version, data = current(vault_client, path)
    new = data["password"]
    assert version == 2 and new != old and data["username"] == user
    assert can_login(pg_cluster, user, new)
    assert not can_login(pg_cluster, user, old)

    # The run lock was taken by this job and given back (two versions of the record in Vault KV).
    taken, released = lock_versions(vault_client, environment)
    assert taken["state"] == "held" and taken["run_id"] == "awx-%d" % job_id, taken
    assert taken["holder"] == "AWX job %d (upkeep rotate) by alice" % job_id, taken
    assert released["state"] == "released" and released["run_id"] == taken["run_id"] and released.get("released_at")

    # The summary of the report arrives as the job's artifact data.
    (stats,) = [e for e in events if e["event"] == "playbook_on_stats"]
    summary = stats["event_data"]["artifact_data"]["upkeep_report"]
    assert summary["cadence"] == "rotate" and summary["fail"] == 0, summary
    assert user in json.dumps(events), "the events are this job's"
    return stats["event_data"]["artifact_data"], (old, new, approle[1], pg_cluster.password)


def check_rotate_report(report, path, job_id):
    checks = dict((r["check"], r) for r in report["results"])
    rotated = checks["credential_rotation_rotate:" + path]
    assert rotated["status"] == "ok" and rotated["value"]["rotated"] and rotated["value"]["kv_version"] == 2
    assert report["run"]["awx_job_id"] == job_id


def test_rotate_as_an_awx_job(pg_cluster, vault_server, vault_client, rotate_approle, rotated_login, tmp_path):
    environment = "lab-" + uuid.uuid4().hex[:8]
    root = tmp_path / "awx_4721_pdd"
    rotate_job(root, pg_cluster, vault_server, rotate_approle, environment, rotated_login, 4721)
    proc, artifacts, events = run_job(root, "playbooks/rotate.yml", "4721")
    artifact_data, secrets = check_rotate(proc, artifacts, events, pg_cluster, vault_client, rotate_approle,
                                          environment, rotated_login, 4721)
    json_path = Path(artifact_data["upkeep_report"]["json_path"])
    assert json_path.is_relative_to(root / "reports")
    check_rotate_report(json.loads(json_path.read_text()), rotated_login[2], 4721)

    text = job_output(artifacts, events, root)
    for secret in secrets:
        assert secret not in text, "a secret reached the job's output"


@pytest.mark.containers  # the job runs in a container of the EE image
def test_rotate_as_an_awx_job_in_the_execution_environment(pg_cluster, vault_server, vault_client, rotate_approle,
                                                           rotated_login, s3_server, s3_bucket, tmp_path):
    image = ee_image()
    environment = "lab-" + uuid.uuid4().hex[:8]
    root = tmp_path / "awx_4723_ee_pdd"
    rotate_job(root, pg_cluster, vault_server, rotate_approle, environment, rotated_login, 4723,
               store=(s3_server, s3_bucket))
    proc, artifacts, events = run_job_in_ee(root, "playbooks/rotate.yml", "4723", image)
    artifact_data, secrets = check_rotate(proc, artifacts, events, pg_cluster, vault_client, rotate_approle,
                                          environment, rotated_login, 4723)
    # The local report went with the container; the report store kept it.
    assert artifact_data["upkeep_report"]["json_path"].startswith("/runner/reports/rotate/")
    store = artifact_data["upkeep_report_s3"]
    assert store["url"].startswith("s3://%s/reports/%s/rotate/" % (s3_bucket, environment)), store
    client = s3_server.client()
    stored = [client.get_object(Bucket=s3_bucket, Key=store["prefix"] + name)["Body"].read().decode()
              for name in ("report.json", "report.html")]
    check_rotate_report(json.loads(stored[0]), rotated_login[2], 4723)
    assert "/usr/share/ansible/collections/ansible_collections/upkeep/runbooks" in json.dumps(events)

    text = "\n".join([job_output(artifacts, events, root)] + stored)
    for secret in secrets + (s3_server.secret_key,):
        assert secret not in text, "a secret reached the job's output"


def test_rotate_job_fails_at_once_while_another_run_holds_the_lock(pg_cluster, vault_server, vault_client,
                                                                   rotate_approle, rotated_login, tmp_path):
    user, old, path = rotated_login
    environment = "lab-" + uuid.uuid4().hex[:8]
    holder = run_module("run_lock", {"url": vault_server.url, "token": vault_server.token, "name": environment,
                                     "holder": "AWX job 99 (upkeep patch) by bob", "run_id": "awx-99"})
    assert not holder.failed, holder
    root = tmp_path / "awx_4722_pdd"
    rotate_job(root, pg_cluster, vault_server, rotate_approle, environment, rotated_login, 4722)
    proc, artifacts, events = run_job(root, "playbooks/rotate.yml", "4722")
    stdout = (artifacts / "stdout").read_text(errors="replace")
    # Failed (not ended by the idle or job timeout), naming the run that holds the lock.
    assert (artifacts / "status").read_text() == "failed", stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode != 0
    (refused,) = [e for e in events if e["event"] == "runner_on_failed"]
    assert refused["event_data"]["task"] == "Take the run lock of the environment"
    assert refused["event_data"]["res"]["msg"].startswith(
        "Failed to acquire run lock %s: held by AWX job 99 (upkeep patch) by bob (run awx-99)" % environment)
    assert "AWX job 99 (upkeep patch) by bob" in stdout

    # Nothing changed: no task ran on db1, the password and Vault are as before, the lock is the holder's.
    assert not [e for e in events if e["event_data"].get("host") == "db1"]
    version, data = current(vault_client, path)
    assert version == 1 and data["password"] == old
    assert vault_client.secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")["data"][
        "current_version"] == 1
    assert can_login(pg_cluster, user, old)
    (record,) = lock_versions(vault_client, environment)
    assert record["state"] == "held" and record["run_id"] == "awx-99"

    text = job_output(artifacts, events, root)
    for secret in (old, rotate_approle[1], pg_cluster.password):
        assert secret not in text, "a secret reached the job's output"
