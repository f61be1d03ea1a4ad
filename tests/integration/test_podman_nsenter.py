"""The lab's connection plugin podman_nsenter (lab/ansible_plugins/connection) on a real container of the lab image.

Molecule's scenarios reach their hosts through it, so what a task sees must be what ``podman exec`` gives it: the
container's environment, hostname, PID namespace and file system (a path through a symlink inside the container
resolves there), become to another user, files both ways, pipelining; a container restarted between tasks is found
again, and a stopped one is unreachable (not a task failure).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
import yaml

from tests.fixtures.apt_repo import ensure_image, podman
from tests.integration.module_runner import COLLECTIONS_PATH, REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.containers]

PLUGINS = REPO_ROOT / "lab" / "ansible_plugins" / "connection"
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def container():
    if os.geteuid() != 0 or shutil.which("podman") is None or shutil.which("nsenter") is None:
        pytest.skip("needs root, podman and nsenter")
    name = "upkeep-test-nsenter-%s" % uuid.uuid4().hex[:8]
    podman("run", "--detach", "--name", name, "--label", "upkeep.test=nsenter", "--network", "none",
           "--systemd", "always", "--tmpfs", "/tmp", ensure_image())
    try:
        wait_booted(name)
        yield name
    finally:
        podman("rm", "--force", "--volumes", name, check=False)


def wait_booted(name):
    deadline = time.monotonic() + 60
    while podman("exec", name, "systemctl", "is-system-running", check=False).stdout.strip() not in (
            "running", "degraded"):
        assert time.monotonic() < deadline, "%s: systemd did not finish booting" % name
        time.sleep(0.3)


def run(tmp_path, container, tasks, name="play", connection="podman_nsenter", verbosity="-v"):
    """One play on the container (through podman_nsenter); (process, the JSON lines the play wrote)."""
    out = tmp_path / ("%s.jsonl" % name)
    play = [{"name": name, "hosts": "target", "gather_facts": False, "tasks": tasks}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"target": {
        "ansible_host": container, "ansible_connection": connection,
        "ansible_python_interpreter": "/usr/bin/python3", "out": str(out)}}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_PATH), ANSIBLE_CONNECTION_PLUGINS=str(PLUGINS),
               ANSIBLE_PIPELINING=str(connection == "podman_nsenter"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", CONTAINERS_CONF=str(REPO_ROOT / "lab" / "containers.conf"))
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), verbosity, "-i", str(tmp_path / "hosts.yml"),
                           str(tmp_path / "play.yml")], capture_output=True, text=True, env=env, cwd=str(REPO_ROOT),
                          timeout=300, check=False)
    lines = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return proc, lines


def keep(what):
    """A task that appends ``what`` (a Jinja expression) as one JSON line to the controller's file."""
    line = "{{ %s | to_json }}" % what
    return {"name": "Keep it", "delegate_to": "localhost",
            "ansible.builtin.lineinfile": {"path": "{{ out }}", "line": line, "create": True, "mode": "0600"}}


def test_a_task_sees_what_podman_exec_gives_it(tmp_path, container):
    podman("exec", container, "sh", "-c", "mkdir -p /opt/target && ln -sfn /opt/target /srv/link")
    source = tmp_path / "payload.txt"
    source.write_text("through the plugin\n")
    look = {"name": "Read the environment, hostname, PID 1 and the working directory", "ansible.builtin.command":
            "sh -c 'env | sort; echo ==; hostname; echo ==; cat /proc/1/comm; echo ==; pwd'",
            "register": "shell", "changed_when": False}
    proc, (through_podman,) = run(tmp_path, container, [look, keep("shell.stdout")], name="podman",
                                  connection="containers.podman.podman")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    proc, (seen,) = run(tmp_path, container, [
        look,
        {"name": "Become postgres", "ansible.builtin.command": "id -un", "become": True, "become_user": "postgres",
         "register": "become", "changed_when": False},
        {"name": "Copy a file through a symlink inside the container",
         "ansible.builtin.copy": {"src": str(source), "dest": "/srv/link/payload.txt", "mode": "0640"}},
        {"name": "Fetch it back", "ansible.builtin.fetch": {"src": "/srv/link/payload.txt",
                                                            "dest": str(tmp_path / "fetched.txt"), "flat": True}},
        keep("{'shell': shell.stdout, 'become': become.stdout}"),
    ], verbosity="-vvv")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # the same environment, hostname, PID namespace and working directory as a task through podman exec
    assert seen["shell"] == through_podman, (seen["shell"], through_podman)
    env_text, hostname, comm, cwd = seen["shell"].split("\n==\n")
    assert "container=podman" in env_text.splitlines()
    assert not any(v.startswith(("ANSIBLE_", "VIRTUAL_ENV=", "PYTHONPATH=")) for v in env_text.splitlines())
    assert hostname == podman("exec", container, "hostname").stdout.strip()
    assert comm == "systemd" and cwd == "/"
    assert seen["become"] == "postgres"
    assert podman("exec", container, "cat", "/opt/target/payload.txt").stdout == "through the plugin\n"
    assert podman("exec", container, "stat", "-c", "%a", "/opt/target/payload.txt").stdout.strip() == "640"
    assert (tmp_path / "fetched.txt").read_text() == "through the plugin\n"
    # pipelining: every module went in on stdin; the one file put into the container is the copy's payload
    puts = [line for line in proc.stdout.splitlines() if "PUT " in line]
    assert len(puts) == 1 and "payload.txt" in puts[0], puts


def test_a_restarted_container_is_found_again_and_a_stopped_one_is_unreachable(tmp_path, container):
    restart = {"name": "Restart the container", "delegate_to": "localhost",
               "ansible.builtin.command": "podman restart --time 5 %s" % container}
    proc, (before, after) = run(tmp_path, container, [
        {"name": "Boot time before", "ansible.builtin.command": "cut -d' ' -f22 /proc/1/stat", "register": "t0",
         "changed_when": False},
        keep("t0.stdout"),
        restart,
        {"name": "Wait for it", "ansible.builtin.wait_for_connection": {"timeout": 60}},
        {"name": "Boot time after", "ansible.builtin.command": "cut -d' ' -f22 /proc/1/stat", "register": "t1",
         "changed_when": False},
        keep("t1.stdout"),
    ], name="restart")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert int(after) > int(before)
    wait_booted(container)

    podman("stop", "--time", "5", container)
    try:
        proc, dummy = run(tmp_path, container, [{"name": "Anything", "ansible.builtin.command": "true"}],
                          name="stopped")
        assert proc.returncode == 4, proc.stdout[-3000:]  # unreachable, not failed
        assert "UNREACHABLE" in proc.stdout and "%s is not running" % container in proc.stdout
    finally:
        podman("start", container)
        wait_booted(container)
