# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""security_findings and django_deploy_checks: review output as check results for the report.

Documentation: security_findings.yml and django_deploy_checks.yml next to this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import result

FAILING = ("critical", "high")


def security_findings(findings, host, prefix="security_review"):
    """One check result per finding: fail for critical/high, warn otherwise; the fix is in the message."""
    if not isinstance(findings, Sequence) or isinstance(findings, (str, bytes)):
        raise AnsibleFilterError("security_findings: expected the findings list of a review module, got %r"
                                 % type(findings).__name__)
    if not isinstance(host, str) or not host:
        raise AnsibleFilterError("security_findings: host must be a non-empty string")
    out = []
    for item in findings:
        if not isinstance(item, Mapping) or not item.get("id"):
            raise AnsibleFilterError("security_findings: a finding without an id: %r" % (item,))
        fix = item.get("fix") or item.get("fix_command") or "see docs/security-review.md"
        status = "fail" if item.get("severity") in FAILING else "warn"
        out.append(result("%s:%s" % (prefix, item["id"]), host, status, item.get("subject"), item.get("severity"),
                          "%s. Fix: %s" % (item.get("summary") or item["id"], fix)))
    return out


# "?: (security.W004) You have not set ..." or "sampleapp.X: (security.E101) ..." as Django prints them.
_DJANGO_CHECK = re.compile(r"^(?P<obj>\S+): \((?P<id>[\w.]+\.(?P<level>[CEWI])\d+)\) (?P<msg>.*)$")


def django_deploy_checks(output, host, prefix="security_review:django-deploy"):
    """One result per message of ``manage.py check --deploy``: errors (E, C) fail, warnings (W) warn, infos are ok."""
    if not isinstance(output, str):
        raise AnsibleFilterError("django_deploy_checks: expected the text manage.py check --deploy printed")
    if not isinstance(host, str) or not host:
        raise AnsibleFilterError("django_deploy_checks: host must be a non-empty string")
    out = []
    for line in output.splitlines():
        match = _DJANGO_CHECK.match(line.strip())
        if not match:
            continue
        level = match.group("level")
        status = "fail" if level in ("E", "C") else "warn" if level == "W" else "ok"
        obj = match.group("obj")
        message = match.group("msg") + ("" if obj == "?" else " (%s)" % obj)
        out.append(result("%s:%s" % (prefix, match.group("id")), host, status, obj, None, message))
    return out


class FilterModule(object):
    def filters(self):
        return {"security_findings": security_findings, "django_deploy_checks": django_deploy_checks}
