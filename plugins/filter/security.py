# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""security_findings: the findings of access_review/tls_review as check results for the report."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

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


class FilterModule(object):
    def filters(self):
        return {"security_findings": security_findings}
