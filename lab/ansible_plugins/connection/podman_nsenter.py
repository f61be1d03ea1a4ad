# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection plugin for the lab's and Molecule's containers: podman's, with commands run through nsenter.

The test hosts are podman containers of the lab image on this machine. containers.podman.podman runs
every command with ``podman exec`` (a podman process, conmon and ``runc exec`` each time) and cannot
pipeline, so a task costs four or five of them: about a fifth of a CPU-second, which on a 2-core machine
running several Molecule scenarios at once is most of what the runs wait for. This plugin asks podman
once per task for the container's init PID and environment, then runs the command in the container's
namespaces with ``nsenter`` (util-linux) under that environment, and supports pipelining, so a task is
one ``podman inspect`` and one ``nsenter``.

What the command sees is what ``podman exec`` gives it: the container's mount, UTS, IPC, network, PID
and cgroup namespaces, its root and working directory, the image's environment (PATH, HOME, container,
HOSTNAME ...), root. Not applied: the container's seccomp profile and capability bounding set (the lab
containers run rootful with podman's defaults; nothing in the runbooks depends on lacking a capability).
A remote user (``ansible_user``) falls back to containers.podman.podman. Only for containers on the
machine running Ansible, as root.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = """
name: podman_nsenter
short_description: Run tasks in local podman containers through nsenter, with pipelining
description:
  - containers.podman.podman with commands run by nsenter in the container's namespaces, and pipelining.
  - For the lab and Molecule of upkeep.runbooks; needs root on the machine that runs the containers.
author: upkeep.runbooks maintainers
extends_documentation_fragment: []
options:
  remote_addr:
    description: The container's name or ID.
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_podman_host
  remote_user:
    description: User in the container (set, the plugin falls back to podman exec).
    env:
      - name: ANSIBLE_REMOTE_USER
    vars:
      - name: ansible_user
  podman_executable:
    description: The podman executable.
    default: podman
    vars:
      - name: ansible_podman_executable
    env:
      - name: ANSIBLE_PODMAN_EXECUTABLE
  podman_extra_args:
    description: Extra arguments for podman.
    default: ""
    vars:
      - name: ansible_podman_extra_args
    env:
      - name: ANSIBLE_PODMAN_EXTRA_ARGS
"""

import json  # noqa: E402 - plugins import after their documentation
import os  # noqa: E402 - plugins import after their documentation
import shlex  # noqa: E402 - plugins import after their documentation
import subprocess  # noqa: E402 - plugins import after their documentation

from ansible.errors import AnsibleConnectionFailure, AnsibleError  # noqa: E402
from ansible.module_utils.common.text.converters import to_bytes, to_native  # noqa: E402
from ansible.utils.display import Display  # noqa: E402
from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection  # noqa: E402

display = Display()

INSPECT_FORMAT = "{{.State.Pid}} {{json .Config.Env}}"
INIT_ONLY = ("HOSTNAME=", "container_uuid=")


class Connection(PodmanConnection):
    transport = "podman_nsenter"
    has_pipelining = True

    def __init__(self, *args, **kwargs):
        super(Connection, self).__init__(*args, **kwargs)
        self._pid = None
        self._env = None

    def _connect(self):
        if self.user:
            return super(Connection, self)._connect()
        if not self._connected:
            rc, out, err = self._podman("inspect", ["--format", INSPECT_FORMAT])
            pid, _sep, env = to_native(out).strip().partition(" ")
            if rc != 0 or not pid.isdigit() or pid == "0":
                raise AnsibleConnectionFailure("container %s is not running: %s"
                                               % (self._container_id, to_native(err).strip() or pid))
            # podman gives the init of a systemd container HOSTNAME and container_uuid besides the image's
            # environment; podman exec leaves both out
            self._pid = pid
            self._env = [item for item in json.loads(env or "[]") if not item.startswith(INIT_ONLY)]
            self._connected = True
        return self

    def _nsenter(self, argv, in_data=None, stdout=subprocess.PIPE):
        """Run ``argv`` in the container as podman exec would; (rc, stdout, stderr)."""
        self._connect()
        command = ["nsenter", "--target", self._pid, "--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup",
                   "--root", "--wd", "env", "-i"] + self._env + argv
        display.vvv("NSENTER %s" % (command,), host=self._container_id)
        proc = subprocess.Popen([to_bytes(a, errors="surrogate_or_strict") for a in command],
                                stdin=subprocess.PIPE if in_data is not None else subprocess.DEVNULL,
                                stdout=stdout, stderr=subprocess.PIPE)
        out, err = proc.communicate(input=in_data)
        if proc.returncode != 0 and not os.path.isdir("/proc/%s" % self._pid):
            raise AnsibleConnectionFailure("container %s stopped during the command" % self._container_id)
        return proc.returncode, out, err

    def exec_command(self, cmd, in_data=None, sudoable=False):
        if self.user:
            return super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
        # no terminal and no stdin unless Ansible pipes the module in: a prompt fails instead of waiting
        return self._nsenter(shlex.split(to_native(cmd, errors="surrogate_or_strict")),
                             in_data=in_data if in_data is not None else b"")

    # Files go through a shell in the container, so paths (and symlinks in them) resolve as the container sees
    # them; /proc/PID/root would resolve an absolute symlink against this machine's root.
    def put_file(self, in_path, out_path):
        if self.user:
            return super(Connection, self).put_file(in_path, out_path)
        display.vvv("PUT %s TO %s" % (in_path, out_path), host=self._container_id)
        with open(to_bytes(in_path, errors="surrogate_or_strict"), "rb") as handle:
            data = handle.read()
        rc, dummy, err = self._nsenter(["/bin/sh", "-c", 'cat > "$1"', "put", out_path], in_data=data)
        if rc != 0:
            raise AnsibleError("Failed to copy %s to %s in container %s: %s"
                               % (in_path, out_path, self._container_id, to_native(err).strip()))

    def fetch_file(self, in_path, out_path):
        if self.user:
            return super(Connection, self).fetch_file(in_path, out_path)
        display.vvv("FETCH %s TO %s" % (in_path, out_path), host=self._container_id)
        with open(to_bytes(out_path, errors="surrogate_or_strict"), "wb") as handle:
            rc, dummy, err = self._nsenter(["cat", "--", in_path], stdout=handle)
        if rc != 0:
            raise AnsibleError("Failed to fetch %s from container %s: %s"
                               % (in_path, self._container_id, to_native(err).strip()))

    def reset(self):
        self.close()

    def close(self):
        self._pid = self._env = None
        self._connected = False
