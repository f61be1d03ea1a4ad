"""Run a collection module the way Ansible does: a separate Python process, JSON in, JSON out.

ansible-core 2.19 modules read ``{"ANSIBLE_MODULE_ARGS": {...}}`` from a file named on the
command line or from stdin. The runner uses stdin, so secrets in the arguments never reach a
file or argv. Internal options Ansible normally adds (check mode, no_log, diff) are set from the
keyword arguments.

    from tests.integration.module_runner import run_module

    res = run_module("pg_health_info", cluster.module_args(), check_mode=True)
    assert res["reachable"], res
    assert cluster.password not in res.stdout + res.stderr

``command_prefix`` runs the module somewhere else, for example inside a container of the lab
image: ``["podman", "exec", "-i", "-e", "PYTHONPATH=...", name]`` with ``python="python3"``
(the container's interpreter). ``env`` then reaches only the prefix command; variables the module
needs go into the prefix (``podman exec -e``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS_PATH = REPO_ROOT / ".collections"
MODULE_PACKAGE = "ansible_collections.upkeep.runbooks.plugins.modules"
FQCN_PREFIX = "upkeep.runbooks."


class ModuleRunError(AssertionError):
    """The module did not print a JSON result (it crashed or printed something else)."""


class ModuleResult(dict):
    """The module's JSON result, plus ``rc``, ``stdout``, ``stderr`` and ``argv`` of the run."""

    rc = None
    stdout = ""
    stderr = ""
    argv = ()

    @property
    def failed(self):
        return bool(self.get("failed"))

    @property
    def output(self):
        """Everything the process printed, for 'no secret anywhere' assertions."""
        return self.stdout + self.stderr


def module_name(name):
    """'pg_health_info' or 'upkeep.runbooks.pg_health_info' -> the importable module path."""
    if name.startswith(FQCN_PREFIX):
        name = name[len(FQCN_PREFIX):]
    if "." in name or not name.isidentifier():
        raise ValueError("not a module of upkeep.runbooks: %r" % name)
    return "%s.%s" % (MODULE_PACKAGE, name)


def run_module(name, args, check_mode=False, diff=False, env=None, timeout=120, python=None, cwd=None,
               command_prefix=None):
    """Run module ``name`` with ``args``; returns a ModuleResult (raises ModuleRunError on no JSON).

    ``env`` adds to (or, with a None value, removes from) the inherited environment; PG*
    variables of the calling shell are removed first so they cannot leak into a test.
    """
    payload = dict(args)
    payload.setdefault("_ansible_check_mode", bool(check_mode))
    payload.setdefault("_ansible_diff", bool(diff))
    payload.setdefault("_ansible_no_log", False)
    payload.setdefault("_ansible_module_name", name)

    run_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    run_env["PYTHONPATH"] = os.pathsep.join(
        [str(COLLECTIONS_PATH)] + ([run_env["PYTHONPATH"]] if run_env.get("PYTHONPATH") else [])
    )
    for key, value in (env or {}).items():
        if value is None:
            run_env.pop(key, None)
        else:
            run_env[key] = str(value)

    if command_prefix:
        argv = list(command_prefix) + [python or "python3", "-m", module_name(name)]
    else:
        argv = [python or sys.executable, "-m", module_name(name)]
    proc = subprocess.run(
        argv,
        input=json.dumps({"ANSIBLE_MODULE_ARGS": payload}),
        capture_output=True,
        text=True,
        env=run_env,
        cwd=str(cwd or REPO_ROOT),
        timeout=timeout,
        check=False,
    )
    try:
        data = json.loads(_last_json_line(proc.stdout))
    except ValueError:
        raise ModuleRunError(
            "module %s printed no JSON result (exit %s)\n--- stdout ---\n%s\n--- stderr ---\n%s"
            % (name, proc.returncode, proc.stdout, proc.stderr)
        ) from None
    out = ModuleResult(data)
    out.rc = proc.returncode
    out.stdout = proc.stdout
    out.stderr = proc.stderr
    out.argv = tuple(argv)
    return out


def _last_json_line(stdout):
    """A module prints one JSON document; tolerate stray lines before it."""
    text = stdout.strip()
    if text.startswith("{"):
        return text
    for line in reversed(text.splitlines()):
        if line.strip().startswith("{"):
            return line
    return text
