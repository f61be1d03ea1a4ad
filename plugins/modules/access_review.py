#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: access_review
short_description: Review who can do what in PostgreSQL and the Django application, with the fix for each finding
version_added: 0.1.0
description:
  - Reads PostgreSQL's catalogs, the PostgreSQL server log, Vault KV metadata and the Django user tables and
    returns findings. It changes nothing in PostgreSQL, Vault or Django.
  - "PostgreSQL: roles with SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS (other than
    O(allowed_superusers) and O(allowed_attribute_roles)); application logins (O(app_logins) and the login Vault
    calls current in O(vault_app_secret)) with any of those or owning a database; members of roles with those
    attributes or of predefined roles that read or write everything (C(pg_read_all_data), C(pg_write_all_data),
    C(pg_execute_server_program), C(pg_read_server_files), C(pg_write_server_files), C(pg_signal_backend),
    C(pg_checkpoint)); privileges granted to PUBLIC on tables, views and sequences and CREATE on schemas in each
    of O(databases); login roles that have not connected for O(unused_days)."
  - PostgreSQL keeps no last-login time. The module reads C(connection authorized) lines (C(log_connections = on))
    from O(log_files) and keeps the newest time per login in O(state_file) between runs, with how far it read each
    file. A login never seen is reported only once tracking has run for O(unused_days), so a first run never
    reports every login as unused.
  - "Vault: for each of O(vault_secrets), the age of the version Vault calls current (C(upkeep_rotated_at) in the
    custom metadata that M(upkeep.runbooks.vault_pg_rotate) writes, else the version's creation time) against
    O(password_max_age_days)."
  - "Django (each item of O(django), read through the database): active superusers and staff accounts; active
    accounts whose last login is older than O(django[].inactive_days), or that never logged in and joined longer
    ago than that; accounts with permissions granted directly instead of through a group."
  - Every finding has a stable RV(findings[].id) (the same finding has the same id in the next run, which is what
    approvals for M(upkeep.runbooks.access_revoke) name), a severity and the exact statement that removes it.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - upkeep.runbooks.postgres
  - upkeep.runbooks.vault
attributes:
  check_mode:
    support: full
    description:
      - The review runs in full; only O(state_file) is not written.
  diff_mode:
    support: none
    description:
      - Nothing is changed; the findings are the result.
notes:
  - The module always reports C(changed=false). O(state_file) is its own bookkeeping (the review's connection
    itself adds a log line each run), RV(state_written) says whether it was written.
  - The admin login needs to read the catalogs (any login can) and, for Django, SELECT on the user tables.
  - Log lines need a timestamp at the start of C(log_line_prefix) (C(%m) or C(%t); the default C('%m [%p] ')).
    Times without a zone or with an abbreviation are read in the server's C(log_timezone).
options:
  databases:
    description:
      - Databases whose PUBLIC grants and ownership are checked. Defaults to O(login_db).
    type: list
    elements: str
  allowed_superusers:
    description: Roles that are expected to be superusers (not reported).
    type: list
    elements: str
    default: [postgres]
  allowed_attribute_roles:
    description:
      - Roles expected to have CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS (a replication login, a migration role).
    type: list
    elements: str
    default: []
  app_logins:
    description:
      - The application's PostgreSQL logins. Any of the attributes above on one of them is a critical finding,
        owning a database a high one. The login Vault calls current in O(vault_app_secret) is always one of them.
    type: list
    elements: str
    default: []
  exclude_roles:
    description: Roles left out of every PostgreSQL check.
    type: list
    elements: str
    default: []
  unused_days:
    description: A login role that has not connected for this many days is reported as unused.
    type: int
    default: 90
  log_files:
    description:
      - PostgreSQL server log files (glob patterns) with C(log_connections) lines, on the node that runs the module.
      - Rotated files may be listed too; each is read from where the previous run stopped (a file with a new inode
        or shorter than that is read from the start).
    type: list
    elements: path
    default: []
  state_file:
    description:
      - JSON file keeping the last-seen time per login and the read position per log file between runs
        (format in docs/security-review.md). Written atomically, mode 0600. Without it, every run starts tracking
        afresh and no login is reported as unused.
    type: path
  vault_secrets:
    description: KV v2 paths (below O(mount_point)) of database credentials whose password age is checked.
    type: list
    elements: str
    default: []
  vault_app_secret:
    description:
      - KV v2 path of the application's database credential. Its current version's C(username) is treated as an
        application login and returned as RV(app_current_login).
    type: str
  password_max_age_days:
    description: A password older than this is reported (medium; high at twice the age).
    type: int
    default: 90
  vault_ca_cert:
    description:
      - CA file for the Vault server certificate (O(ca_cert) is PostgreSQL's CA in this module).
      - Falls back to E(VAULT_CACERT).
    type: path
  ca_cert:
    description:
      - CA file for the PostgreSQL server certificate (O(ssl_mode=verify-ca) or V(verify-full)).
      - The Vault server's CA is O(vault_ca_cert) in this module.
      - Falls back to E(PGSSLROOTCERT).
    type: path
    aliases: [ssl_rootcert]
  django:
    description: Django databases whose accounts are reviewed.
    type: list
    elements: dict
    default: []
    suboptions:
      database:
        description: Database holding the Django tables.
        type: str
        required: true
      schema:
        description: Schema of the Django tables.
        type: str
        default: public
      user_table:
        description: The user table (C(auth_user), or the table of a custom C(AUTH_USER_MODEL) with the same columns).
        type: str
        default: auth_user
      user_permissions_table:
        description: The user-permission table. Defaults to O(django[].user_table) followed by C(_user_permissions).
        type: str
      inactive_days:
        description: An active account whose last login is older than this (or that never logged in) is reported.
        type: int
        default: 90
      allowed_superusers:
        description: Usernames expected to be superusers (not reported as superusers).
        type: list
        elements: str
        default: []
      allowed_staff:
        description: Usernames expected to be staff (not reported as staff).
        type: list
        elements: str
        default: []
seealso:
  - module: upkeep.runbooks.access_revoke
"""

EXAMPLES = r"""
- name: Review access on the primary
  upkeep.runbooks.access_review:
    login_unix_socket: /var/run/postgresql
    databases: [sampleapp]
    app_logins: [sampleapp_blue, sampleapp_green]
    log_files: [/var/log/postgresql/postgresql-15-main.log*]
    state_file: /var/lib/upkeep/access-last-seen.json
    url: https://vault.example.com:8200
    auth_method: approle
    vault_app_secret: sampleapp/database
    vault_secrets: [sampleapp/database, sampleapp/report]
    django:
      - database: sampleapp
        inactive_days: 90
  register: access
  no_log: true

- name: Show the findings
  ansible.builtin.debug:
    msg: "{{ access.findings | map(attribute='id') | list }}"
"""

RETURN = r"""
findings:
  description: The findings, most severe first, then by id.
  returned: success
  type: list
  elements: dict
  contains:
    id:
      description: Stable id, for example C(pg:unused-login:report_ro) or C(django:sampleapp:inactive:alice).
      type: str
      sample: pg:superuser:sampleapp
    source:
      description: V(postgresql), V(vault) or V(django).
      type: str
      sample: postgresql
    check:
      description: >-
        The check: V(role_attribute), V(app_login_privilege), V(app_login_ownership), V(powerful_membership),
        V(public_grant), V(unused_login), V(password_age), V(superuser), V(staff), V(inactive_account),
        V(direct_permissions).
      type: str
      sample: unused_login
    severity:
      description: V(critical), V(high), V(medium) or V(low).
      type: str
      sample: high
    subject:
      description: The role, user or object the finding is about.
      type: str
      sample: report_ro
    summary:
      description: One line for people.
      type: str
      sample: login report_ro has not connected since tracking began 2026-01-01T00:00:00Z (334 days, limit 90)
    fix:
      description: The exact SQL statement that removes the finding; null when the fix is not a statement.
      type: str
      sample: ALTER ROLE "report_ro" NOLOGIN;
    fix_command:
      description: What to run instead when the fix is not a SQL statement (a password rotation); else null.
      type: str
      sample: ansible-playbook playbooks/rotate.yml -e credential_rotation_force=true
    action:
      description: >-
        The fix in the form M(upkeep.runbooks.access_revoke) applies and can undo; null when that module does not
        apply this kind of finding. C(kind) is V(pg_role_attribute), V(pg_membership), V(pg_public_grant) or
        V(django_flag).
      type: dict
      sample: {kind: pg_role_attribute, role: report_ro, attribute: LOGIN}
    details:
      description: Check-specific facts (times, database, permissions).
      type: dict
      sample: {last_seen: null, tracking_since: "2026-01-01T00:00:00Z", unused_days: 90}
counts:
  description: Number of findings per severity.
  returned: success
  type: dict
  sample: {critical: 1, high: 3, medium: 2, low: 0}
logins:
  description: Every PostgreSQL login role with its last-seen time (null when never seen since tracking began).
  returned: success
  type: list
  elements: dict
  sample: [{role: report_ro, last_seen: null, days_since: null, tracking_since: "2026-01-01T00:00:00Z"}]
logs_read:
  description: The log files read in this run.
  returned: success
  type: list
  elements: str
  sample: [/var/log/postgresql/postgresql-15-main.log]
state_file:
  description: The last-seen state file, or null.
  returned: success
  type: str
  sample: /var/lib/upkeep/access-last-seen.json
state_written:
  description: Whether the state file was written (its content changed; never in check mode).
  returned: success
  type: bool
  sample: true
tracking_since:
  description: Since when last-seen times are tracked (the first run with this state file).
  returned: success
  type: str
  sample: "2026-01-01T00:00:00Z"
app_current_login:
  description: The login Vault calls current in O(vault_app_secret), or null.
  returned: success
  type: str
  sample: sampleapp_blue
admin_login:
  description: The login the review ran as (PostgreSQL C(session_user)).
  returned: success
  type: str
  sample: postgres
notes:
  description: What the review could not check, for example a missing permission table.
  returned: success
  type: list
  elements: str
  sample: []
"""

import json  # noqa: E402 - Ansible modules import after their documentation

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils import _access, _postgres  # noqa: E402


def main():
    module = AnsibleModule(argument_spec=_access.module_argument_spec(), supports_check_mode=True)
    _postgres.ensure_psycopg(module)
    params = module.params
    vault = None
    try:
        vault = _access.open_vault_for(params)
        review = _access.run_review(params, vault=vault, write_state=False)
        before = None
        written = False
        if params.get("state_file"):
            before, _exists = _access.load_state(params["state_file"], review.now)
            if not _exists:
                before = None
            if json.dumps(before, sort_keys=True) != json.dumps(review.state, sort_keys=True) and not module.check_mode:
                _access.save_state(params["state_file"], review.state)
                written = True
    except _access.AccessError as exc:
        module.fail_json(msg=str(exc))
    except _postgres.PostgresConnectError as exc:
        module.fail_json(msg=exc.message)
    except _postgres.PostgresError as exc:
        module.fail_json(msg="Failed to review access on PostgreSQL at %s: %s"
                         % (_postgres.target(params), exc.message))
    finally:
        if vault is not None:
            vault.close()
    module.exit_json(
        changed=False,
        findings=review.findings,
        counts=review.result(),
        logins=review.logins,
        logs_read=review.logs_read,
        state_file=params.get("state_file"),
        state_written=written,
        tracking_since=review.state.get("tracking_since"),
        app_current_login=review.app_current_login,
        admin_login=review.admin_login,
        notes=review.notes,
    )


if __name__ == "__main__":
    main()
