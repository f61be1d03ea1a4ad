#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: http_security_review
short_description: Check a web endpoint's HTTPS redirect, security headers and CORS answer
version_added: 0.1.0
description:
  - Sends GET requests to each site and reports findings in the shape of M(upkeep.runbooks.access_review)
    (stable id, severity, summary, fix).
  - "O(sites[].http_url): the plain-HTTP address must redirect (301, 302, 307 or 308) to an C(https://) location."
  - "O(sites[].url): the HTTPS answer must carry C(Strict-Transport-Security) with C(max-age) of at least 180 days,
    C(Content-Security-Policy), C(X-Content-Type-Options: nosniff), frame protection (C(X-Frame-Options) C(DENY) or
    C(SAMEORIGIN), or CSP C(frame-ancestors)) and a C(Referrer-Policy) other than C(unsafe-url)."
  - "CORS: a second request carries C(Origin: https://upkeep-cors-probe.invalid). Echoing that origin, or
    C(Access-Control-Allow-Origin: *) together with C(Access-Control-Allow-Credentials: true), is a finding."
  - Read-only.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode runs every check.
  diff_mode:
    support: none
    description: Nothing is changed.
options:
  sites:
    description: The sites to check.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Label used in finding ids (C(http:<name>:hsts)).
        type: str
        required: true
      url:
        description: HTTPS URL of a page the application serves (for example its login page).
        type: str
        required: true
      http_url:
        description: Plain-HTTP URL that must redirect to HTTPS; omit to skip that check.
        type: str
      server_name:
        description: Host header (and name checked in the certificate) when O(sites[].url) uses an address.
        type: str
  ca_cert:
    description: CA file the HTTPS certificates must be signed by (system CAs when omitted).
    type: path
  validate_certs:
    description: Verify HTTPS certificates. Certificate dates are checked by M(upkeep.runbooks.tls_review).
    type: bool
    default: true
  timeout:
    description: Seconds to wait for each answer.
    type: int
    default: 10
"""

EXAMPLES = r"""
- name: Check the application's headers
  upkeep.runbooks.http_security_review:
    sites:
      - name: shop
        url: https://10.0.0.21/accounts/login/
        http_url: http://10.0.0.21/
        server_name: shop.example.com
    ca_cert: /etc/ssl/certs/internal-ca.pem
  register: web
"""

RETURN = r"""
findings:
  description: The findings, most severe first (same fields as M(upkeep.runbooks.access_review)'s).
  returned: success
  type: list
  elements: dict
  sample: [{id: "http:shop:csp", severity: medium, summary: "https://10.0.0.21/ sends no Content-Security-Policy"}]
counts:
  description: Number of findings per severity.
  returned: success
  type: dict
  sample: {critical: 0, high: 0, medium: 1, low: 0}
responses:
  description: Per site, the HTTPS status and the security headers it sent (lower-case names).
  returned: success
  type: dict
  sample: {shop: {status: 200, headers: {strict-transport-security: max-age=31536000}}}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - Ansible modules import after their documentation
from ansible_collections.upkeep.runbooks.plugins.module_utils import _access, _http_review  # noqa: E402

SHOWN = ("strict-transport-security", "content-security-policy", "x-content-type-options", "x-frame-options",
         "referrer-policy", "access-control-allow-origin", "access-control-allow-credentials", "location")


def main():
    module = AnsibleModule(argument_spec=dict(
        sites=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            url=dict(type="str", required=True),
            http_url=dict(type="str"),
            server_name=dict(type="str"),
        )),
        ca_cert=dict(type="path"),
        validate_certs=dict(type="bool", default=True),
        timeout=dict(type="int", default=10),
    ), supports_check_mode=True)
    params = module.params
    findings, responses = [], {}
    options = dict(ca_cert=params["ca_cert"], validate_certs=params["validate_certs"], timeout=params["timeout"])
    try:
        for site in params["sites"]:
            status, headers = _http_review.fetch(site["url"], server_name=site.get("server_name"), **options)
            responses[site["name"]] = {"status": status,
                                       "headers": dict((k, v) for k, v in headers.items() if k in SHOWN)}
            findings.extend(_http_review.header_findings(site["name"], site["url"], headers))
            _status, cors = _http_review.fetch(site["url"], headers={"Origin": _http_review.PROBE_ORIGIN},
                                               server_name=site.get("server_name"), **options)
            findings.extend(_http_review.cors_findings(site["name"], site["url"], cors))
            if site.get("http_url"):
                status, headers = _http_review.fetch(site["http_url"], server_name=site.get("server_name"), **options)
                findings.extend(_http_review.redirect_findings(site["name"], site["http_url"], status, headers))
    except _http_review.HTTPCheckError as exc:
        module.fail_json(msg=str(exc))
    order = dict((name, index) for index, name in enumerate(_access.SEVERITIES))
    findings.sort(key=lambda item: (order.get(item["severity"], 9), item["id"]))
    counts = dict((name, 0) for name in _access.SEVERITIES)
    for item in findings:
        counts[item["severity"]] += 1
    module.exit_json(changed=False, findings=findings, counts=counts, responses=responses)


if __name__ == "__main__":
    main()
