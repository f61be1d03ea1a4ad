#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: tls_review
short_description: Check PostgreSQL's transport security and the certificates of TLS endpoints
version_added: 0.1.0
description:
  - "PostgreSQL (O(check_postgres)): C(ssl = on); C(ssl_min_protocol_version) at least C(TLSv1.2);
    C(password_encryption = scram-sha-256); in C(pg_hba_file_rules), no C(host) rule (TLS optional) for addresses
    other than loopback, no C(md5) or C(password) method, no line with an error; and the certificate the server
    presents after an SSLRequest, read off the wire at O(pg_cert_host)."
  - "Endpoints (O(endpoints)): the certificate each TLS endpoint (Vault, the S3 endpoint, nginx) presents."
  - A certificate that expires within O(warn_days) is a medium finding, within O(fail_days) (or expired) a high one.
  - Read-only. Findings have the same shape as those of M(upkeep.runbooks.access_review).
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - upkeep.runbooks.postgres
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode runs every check.
  diff_mode:
    support: none
    description: Nothing is changed.
notes:
  - Reading C(pg_hba_file_rules) needs a superuser (or a role it was granted to).
  - Certificates are read without trusting them (the check is about their dates, not about the chain); clients
    still verify them.
requirements:
  - cryptography (Debian python3-cryptography) on the node that runs the module.
options:
  check_postgres:
    description: Run the PostgreSQL checks (with the connection options).
    type: bool
    default: true
  pg_cert_host:
    description:
      - Address to read PostgreSQL's certificate at.
      - Defaults to O(login_host) when that is not a socket, else C(127.0.0.1).
    type: str
  pg_cert_port:
    description: Port to read PostgreSQL's certificate at. Defaults to O(login_port).
    type: int
  endpoints:
    description: Further TLS endpoints whose certificates are checked.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: A label for the finding id and the report (for example C(vault)).
        type: str
        required: true
      host:
        description: Address to connect to.
        type: str
        required: true
      port:
        description: Port.
        type: int
        default: 443
      server_name:
        description: SNI name to send. Defaults to O(endpoints[].host).
        type: str
  warn_days:
    description: Days before expiry from which a certificate is a medium finding.
    type: int
    default: 30
  fail_days:
    description: Days before expiry from which a certificate is a high finding.
    type: int
    default: 7
"""

EXAMPLES = r"""
- name: Transport checks on the primary and the platform's endpoints
  upkeep.runbooks.tls_review:
    login_unix_socket: /var/run/postgresql
    pg_cert_host: 10.0.0.11
    endpoints:
      - {name: vault, host: 10.0.0.32, port: 8200}
      - {name: web, host: 10.0.0.21, port: 443, server_name: shop.example.com}
  register: tls
"""

RETURN = r"""
findings:
  description: The findings, most severe first (same fields as M(upkeep.runbooks.access_review)'s).
  returned: success
  type: list
  elements: dict
  sample: [{id: "tls:pg:127.0.0.1:5432:ssl-off", severity: high, summary: "ssl is off on 127.0.0.1:5432"}]
counts:
  description: Number of findings per severity.
  returned: success
  type: dict
  sample: {critical: 0, high: 1, medium: 0, low: 0}
certificates:
  description:
    - Per endpoint (C(postgresql) for the server), the certificate's subject, issuer, not_after, days_left and the
      TLS version negotiated.
  returned: success
  type: dict
  sample:
    postgresql: {subject: CN=127.0.0.1, issuer: CN=lab CA, not_after: "2027-01-01T00:00:00Z", days_left: 30,
                 protocol: TLSv1.3}
settings:
  description: The PostgreSQL settings read (ssl, ssl_min_protocol_version, password_encryption).
  returned: when O(check_postgres=true)
  type: dict
  sample: {ssl: "on", ssl_min_protocol_version: TLSv1.2, password_encryption: scram-sha-256}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402 - after the documentation
from ansible_collections.upkeep.runbooks.plugins.module_utils import _access, _postgres, _tls  # noqa: E402


def main():
    spec = _postgres.postgres_common_argument_spec()
    spec.update(
        check_postgres=dict(type="bool", default=True),
        pg_cert_host=dict(type="str"),
        pg_cert_port=dict(type="int"),
        endpoints=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            host=dict(type="str", required=True),
            port=dict(type="int", default=443),
            server_name=dict(type="str"),
        )),
        warn_days=dict(type="int", default=30),
        fail_days=dict(type="int", default=7),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    if _tls.x509 is None:
        module.fail_json(msg=missing_required_lib("cryptography", reason="to read certificates"))
    params = module.params
    now = _access.utc_now()
    findings, certificates, result = [], {}, {}
    try:
        if params["check_postgres"]:
            _postgres.ensure_psycopg(module)
            conn = _postgres.open_connection(params)
            try:
                label = _postgres.target(params)
                found, settings = _tls.pg_settings_findings(conn, label)
                findings.extend(found)
                findings.extend(_tls.pg_hba_findings(conn, label))
                result["settings"] = settings
            finally:
                _postgres.close_quietly(conn)
            if settings.get("ssl") == "on":
                host = params.get("pg_cert_host") or (
                    params.get("login_host") if params.get("login_host") and not params["login_host"].startswith("/")
                    else "127.0.0.1")
                port = params.get("pg_cert_port") or params.get("login_port") or 5432
                der, version = _tls.fetch_certificate(host, port, postgres=True)
                item, facts = _tls.certificate_finding("tls:pg:%s" % label, label, der, now, params["warn_days"],
                                                       params["fail_days"], source="postgresql", protocol=version)
                certificates["postgresql"] = facts
                if item:
                    findings.append(item)
        for endpoint in params["endpoints"]:
            der, version = _tls.fetch_certificate(endpoint["host"], endpoint["port"],
                                                  server_name=endpoint.get("server_name"))
            item, facts = _tls.certificate_finding("tls:%s" % endpoint["name"], endpoint["name"], der, now,
                                                   params["warn_days"], params["fail_days"], protocol=version)
            certificates[endpoint["name"]] = facts
            if item:
                findings.append(item)
    except _tls.TLSCheckError as exc:
        module.fail_json(msg=str(exc))
    except _postgres.PostgresConnectError as exc:
        module.fail_json(msg=exc.message)
    except _postgres.PostgresError as exc:
        module.fail_json(msg="Failed to check transport security of PostgreSQL at %s: %s"
                         % (_postgres.target(params), exc.message))
    order = dict((name, index) for index, name in enumerate(_access.SEVERITIES))
    findings.sort(key=lambda item: (order.get(item["severity"], 9), item["id"]))
    counts = dict((name, 0) for name in _access.SEVERITIES)
    for item in findings:
        counts[item["severity"]] += 1
    module.exit_json(changed=False, findings=findings, counts=counts, certificates=certificates, **result)


if __name__ == "__main__":
    main()
