#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: dependency_audit
short_description: Known vulnerabilities in Python and npm dependencies, with an ignore list that expires
version_added: 0.1.0
description:
  - Runs C(pip-audit) on fully pinned requirement or lock files (O(pip_requirements), with
    C(--no-deps --disable-pip), so nothing is resolved or installed) and on installed Python environments
    (O(pip_pythons)), asking the OSV service at O(osv_url).
  - Runs C(npm audit --package-lock-only) on each O(npm_lockfiles) against O(npm_registry).
  - Each advisory for each package is one finding. O(ignore) entries carry a reason and an expiry date; a matching
    entry that has not expired marks the finding ignored; an expired entry no longer does, and is returned in
    RV(expired_ignores) so the caller can fail on it.
  - "Production hosts (or the controller, when the module is delegated) must reach the OSV API
    (C(https://api.osv.dev/v1/query), HTTPS) for pip-audit and the npm registry's audit endpoint
    (C(https://registry.npmjs.org/-/npm/v1/security/advisories/bulk)) and package metadata for npm audit, or the
    mirrors O(osv_url) and O(npm_registry) point to. See docs/log-shipping-and-audit.md."
  - Read-only; the module never fails because of findings, only when an audit cannot run.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
attributes:
  check_mode:
    support: full
    description: The audits only read; check mode runs them.
  diff_mode:
    support: none
    description: Nothing is changed.
requirements:
  - pip-audit (2.7 or later, for C(--osv-url)) where O(pip_requirements) or O(pip_pythons) are given.
  - npm (7 or later) where O(npm_lockfiles) are given.
options:
  pip_requirements:
    description: Requirement files with every package pinned (C(name==version)), transitive ones included.
    type: list
    elements: path
    default: []
  pip_pythons:
    description: Interpreters (for example C(/srv/app/venv/bin/python)) whose installed packages are audited.
    type: list
    elements: path
    default: []
  npm_lockfiles:
    description: C(package-lock.json) (or C(npm-shrinkwrap.json)) files.
    type: list
    elements: path
    default: []
  osv_url:
    description: The OSV query endpoint pip-audit asks.
    type: str
    default: https://api.osv.dev/v1/query
  npm_registry:
    description: The npm registry npm audit asks.
    type: str
    default: https://registry.npmjs.org/
  pip_audit_executable:
    description: The pip-audit command (found in PATH when not a path).
    type: str
    default: pip-audit
  npm_executable:
    description: The npm command (found in PATH when not a path).
    type: str
    default: npm
  ignore:
    description: Advisories not to count, each until its expiry date.
    type: list
    elements: dict
    default: []
    suboptions:
      id:
        description: Advisory id or alias (C(PYSEC-...), C(GHSA-...), C(CVE-...)).
        type: str
        required: true
      reason:
        description: Why it is acceptable for now (shown in the report).
        type: str
        required: true
      expires:
        description: Last day (UTC, C(YYYY-MM-DD)) the entry holds.
        type: str
        required: true
      package:
        description: Only for this package.
        type: str
  timeout:
    description: Seconds each audit command may take.
    type: int
    default: 300
"""

EXAMPLES = r"""
- name: Audit the application's pinned requirements, its virtualenv and the frontend lock
  upkeep.runbooks.dependency_audit:
    pip_requirements: [/srv/app/requirements.txt]
    pip_pythons: [/srv/app/venv/bin/python]
    npm_lockfiles: [/srv/app/frontend/package-lock.json]
    ignore:
      - id: GHSA-29mw-wpgm-hmr9
        reason: lodash.trim is not reachable from user input; upgrade planned with the frontend rewrite
        expires: "2027-03-31"
  register: audit
"""

RETURN = r"""
findings:
  description: One entry per advisory and package, open ones first.
  returned: success
  type: list
  elements: dict
  sample:
    - {source: /srv/app/requirements.txt, ecosystem: PyPI, package: django, version: 4.2.10, id: PYSEC-2024-47,
       aliases: [CVE-2024-27351], severity: unknown, summary: "...", fix_versions: [4.2.11],
       url: "https://osv.dev/vulnerability/PYSEC-2024-47", ignored: false}
counts:
  description: C(total), C(open), C(ignored) findings and C(open_by_severity) (pip-audit gives no severity, C(unknown)).
  returned: success
  type: dict
  sample: {total: 3, open: 2, ignored: 1, open_by_severity: {critical: 1, high: 0, moderate: 0, low: 0, info: 0,
           unknown: 1}}
expired_ignores:
  description: Ignore entries whose expiry date has passed (each is a failure to act on).
  returned: success
  type: list
  elements: dict
  sample: [{id: PYSEC-2024-47, reason: "waiting for 4.2.11 in the base image", expires: "2026-11-30"}]
unused_ignores:
  description: Valid ignore entries that matched no finding (candidates for removal).
  returned: success
  type: list
  elements: dict
  sample: []
audited:
  description: What was audited, with the number of packages each had and those pip-audit skipped.
  returned: success
  type: list
  elements: dict
  sample: [{source: /srv/app/requirements.txt, tool: pip-audit, packages: 24, skipped: []}]
"""

import datetime  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - after the documentation
from ansible_collections.upkeep.runbooks.plugins.module_utils import _audit  # noqa: E402


def _tool(module, name, what):
    if os.sep in name:
        return name
    path = module.get_bin_path(name)
    if path is None:
        module.fail_json(msg="Failed to find %s (%s) in PATH on this host: install it or set the path" % (name, what))
    return path


def _run(module, argv, timeout, cwd=None, env=None):
    """rc, stdout, stderr; a command that outlives ``timeout`` is killed and reported."""
    import subprocess

    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise _audit.AuditError("Failed to audit with %s: no answer within %d s" % (argv[0], timeout)) from exc
    except OSError as exc:
        raise _audit.AuditError("Failed to run %s: %s" % (argv[0], exc)) from exc
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            pip_requirements=dict(type="list", elements="path", default=[]),
            pip_pythons=dict(type="list", elements="path", default=[]),
            npm_lockfiles=dict(type="list", elements="path", default=[]),
            osv_url=dict(type="str", default="https://api.osv.dev/v1/query"),
            npm_registry=dict(type="str", default="https://registry.npmjs.org/"),
            pip_audit_executable=dict(type="str", default="pip-audit"),
            npm_executable=dict(type="str", default="npm"),
            ignore=dict(type="list", elements="dict", default=[], options=dict(
                id=dict(type="str", required=True),
                reason=dict(type="str", required=True),
                expires=dict(type="str", required=True),
                package=dict(type="str"),
            )),
            timeout=dict(type="int", default=300),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not (params["pip_requirements"] or params["pip_pythons"] or params["npm_lockfiles"]):
        module.fail_json(msg="Nothing to audit: give pip_requirements, pip_pythons or npm_lockfiles")
    today = datetime.datetime.now(datetime.timezone.utc).date()
    findings, audited = [], []
    workdir = tempfile.mkdtemp(prefix="upkeep-audit-")
    base_env = dict(os.environ, HOME=workdir, npm_config_update_notifier="false")
    try:
        ignores = _audit.check_ignores(params["ignore"])
        if params["pip_requirements"] or params["pip_pythons"]:
            pip_audit = _tool(module, params["pip_audit_executable"], "pip-audit, from PyPI")
            cache = os.path.join(workdir, "pip-audit-cache")
            for req in params["pip_requirements"]:
                if not os.path.isfile(req):
                    raise _audit.AuditError("Failed to audit %s with pip-audit: no such file" % req)
                argv = _audit.pip_audit_argv(pip_audit, params["osv_url"], cache, requirements=req,
                                             timeout=params["timeout"])
                _rc, out, err = _run(module, argv, params["timeout"], env=base_env)
                found, packages, skipped = _audit.parse_pip_audit(out, err, req)
                findings.extend(found)
                audited.append({"source": req, "tool": "pip-audit", "packages": packages, "skipped": skipped})
            for python in params["pip_pythons"]:
                if not os.access(python, os.X_OK):
                    raise _audit.AuditError("Failed to audit %s with pip-audit: not an executable interpreter" % python)
                argv = _audit.pip_audit_argv(pip_audit, params["osv_url"], cache, timeout=params["timeout"])
                _rc, out, err = _run(module, argv, params["timeout"],
                                     env=dict(base_env, PIPAPI_PYTHON_LOCATION=python))
                found, packages, skipped = _audit.parse_pip_audit(out, err, python)
                findings.extend(found)
                audited.append({"source": python, "tool": "pip-audit", "packages": packages, "skipped": skipped})
        if params["npm_lockfiles"]:
            npm = _tool(module, params["npm_executable"], "npm, Debian package npm or Node.js")
            for lockfile in params["npm_lockfiles"]:
                cwd = _audit.lock_dir(lockfile)
                argv = _audit.npm_audit_argv(npm, params["npm_registry"], os.path.join(workdir, "npm-cache"))
                _rc, out, err = _run(module, argv, params["timeout"], cwd=cwd, env=base_env)
                found, packages = _audit.parse_npm_audit(out, err, lockfile)
                installed = _audit.npm_installed_versions(lockfile)
                for finding in found:
                    finding["version"] = ", ".join(installed.get(finding["package"], [])) or None
                findings.extend(found)
                audited.append({"source": lockfile, "tool": "npm audit", "packages": packages, "skipped": []})
        expired, unused = _audit.apply_ignores(findings, ignores, today)
    except _audit.AuditError as exc:
        module.fail_json(msg=str(exc))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    order = dict((s, i) for i, s in enumerate(_audit.SEVERITIES))
    findings.sort(key=lambda f: (f["ignored"], order.get(f["severity"], 9), f["package"], f["id"]))
    module.exit_json(changed=False, findings=findings, counts=_audit.counts(findings), expired_ignores=expired,
                     unused_ignores=unused, audited=audited)


if __name__ == "__main__":
    main()
