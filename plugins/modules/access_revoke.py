#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: access_revoke
short_description: Apply the fixes of access review findings an operator approved, and put them back on request
version_added: 0.1.0
description:
  - With O(state=revoked), runs the review of M(upkeep.runbooks.access_review) again (same options) and applies
    the fix of each finding whose id is approved in O(approvals) or O(approval_file) and still found. Findings
    nobody approved are never touched, whatever their severity.
  - "What it applies: C(ALTER ROLE ... NOLOGIN) for unused logins, C(ALTER ROLE ... NOSUPERUSER) (and the other
    attributes), C(REVOKE group FROM member) for powerful memberships, C(REVOKE ... FROM PUBLIC), and for Django
    C(UPDATE <user_table> SET is_active = false) (or C(is_staff)/C(is_superuser) = false) by the account's id."
  - An approval names the finding's id, who approved it and until when (C(expires), a date valid through that day
    in UTC, or an ISO date-time). An expired approval is refused and changes nothing; an approval whose finding is
    no longer found is reported in RV(not_found).
  - Before any change, the task fails when an approved fix would lock out the login the application currently
    uses (the C(username) of the version Vault calls current in O(vault_app_secret)), the admin login the module
    runs as (C(session_user); also any attribute or membership removal from it), or a login in
    O(protect_logins). Nothing is changed then.
  - The previous state of everything changed is written to O(record_file) (JSON, mode 0600, written atomically
    before the changes are committed). O(state=restored) reads it and puts back every entry not yet restored
    (or those in O(ids)), newest first.
  - Statements for one database run in one transaction; a failure rolls that database back and fails the task.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - upkeep.runbooks.postgres
  - upkeep.runbooks.vault
attributes:
  check_mode:
    support: full
    description:
      - Runs the review, checks the approvals and the lock-out rules, and returns the statements it would run in
        RV(statements); runs none and writes no record.
  diff_mode:
    support: full
    description:
      - RV(diff) holds the previous and the new value of everything changed.
options:
  state:
    description:
      - V(revoked) applies approved findings. V(restored) puts back what O(record_file) recorded.
    type: str
    choices: [revoked, restored]
    default: revoked
  approvals:
    description: Approved finding ids.
    type: list
    elements: dict
    default: []
    suboptions:
      id:
        description: The finding's id as M(upkeep.runbooks.access_review) returned it.
        type: str
        required: true
      approved_by:
        description: Who approved it (recorded with the change).
        type: str
        required: true
      expires:
        description: Until when the approval holds (C(YYYY-MM-DD) through that day UTC, or an ISO date-time).
        type: str
        required: true
      ticket:
        description: A change or ticket reference (recorded).
        type: str
  approval_file:
    description:
      - YAML or JSON file with more approvals, a list under C(approvals) of the same form as O(approvals).
    type: path
  record_file:
    description: JSON file keeping the previous state of every change (format in docs/security-review.md).
    type: path
    required: true
  ids:
    description: With O(state=restored), restore only these finding ids (default every entry not yet restored).
    type: list
    elements: str
    default: []
  protect_logins:
    description: More PostgreSQL logins that must never lose LOGIN (for example a monitoring or replication login).
    type: list
    elements: str
    default: []
  databases:
    description: See M(upkeep.runbooks.access_review).
    type: list
    elements: str
  allowed_superusers:
    description: See M(upkeep.runbooks.access_review).
    type: list
    elements: str
    default: [postgres]
  allowed_attribute_roles:
    description: See M(upkeep.runbooks.access_review).
    type: list
    elements: str
    default: []
  app_logins:
    description: See M(upkeep.runbooks.access_review).
    type: list
    elements: str
    default: []
  exclude_roles:
    description: See M(upkeep.runbooks.access_review).
    type: list
    elements: str
    default: []
  unused_days:
    description: See M(upkeep.runbooks.access_review).
    type: int
    default: 90
  log_files:
    description: See M(upkeep.runbooks.access_review).
    type: list
    elements: path
    default: []
  state_file:
    description:
      - See M(upkeep.runbooks.access_review). Read only here (the review task keeps it up to date).
    type: path
  vault_secrets:
    description: See M(upkeep.runbooks.access_review).
    type: list
    elements: str
    default: []
  vault_app_secret:
    description:
      - KV v2 path of the application's database credential; the C(username) of the version Vault calls current
        is never locked out. Strongly recommended.
    type: str
  password_max_age_days:
    description: See M(upkeep.runbooks.access_review).
    type: int
    default: 90
  vault_ca_cert:
    description:
      - CA file for the Vault server certificate (O(ca_cert) is PostgreSQL's CA in this module).
      - Falls back to E(VAULT_CACERT).
    type: path
  ca_cert:
    description:
      - CA file for the PostgreSQL server certificate. Falls back to E(PGSSLROOTCERT).
    type: path
    aliases: [ssl_rootcert]
  django:
    description: See M(upkeep.runbooks.access_review).
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
        description: The user table.
        type: str
        default: auth_user
      user_permissions_table:
        description: The user-permission table.
        type: str
      inactive_days:
        description: Days without a login after which an active account is a finding.
        type: int
        default: 90
      allowed_superusers:
        description: Usernames expected to be superusers.
        type: list
        elements: str
        default: []
      allowed_staff:
        description: Usernames expected to be staff.
        type: list
        elements: str
        default: []
seealso:
  - module: upkeep.runbooks.access_review
"""

EXAMPLES = r"""
- name: Lock out the logins the security officer approved
  upkeep.runbooks.access_revoke:
    login_unix_socket: /var/run/postgresql
    databases: [sampleapp]
    state_file: /var/lib/upkeep/access-last-seen.json
    record_file: /var/lib/upkeep/access-revocations.json
    url: https://vault.example.com:8200
    auth_method: approle
    vault_app_secret: sampleapp/database
    django:
      - database: sampleapp
    approvals:
      - id: pg:unused-login:legacy_report
        approved_by: j.doe
        expires: "2026-12-31"
        ticket: CHG-1234
  no_log: true

- name: Put everything back
  upkeep.runbooks.access_revoke:
    login_unix_socket: /var/run/postgresql
    record_file: /var/lib/upkeep/access-revocations.json
    state: restored
"""

RETURN = r"""
applied:
  description: The findings whose fix was applied (or would be, in check mode).
  returned: success
  type: list
  elements: dict
  sample: [{id: "pg:unused-login:legacy_report", approved_by: j.doe, statement: 'ALTER ROLE "legacy_report" NOLOGIN;'}]
  contains:
    id:
      description: The finding id.
      type: str
    approved_by:
      description: Who approved it.
      type: str
    statement:
      description: The statement run.
      type: str
    database:
      description: The database it ran in.
      type: str
restored:
  description: With O(state=restored), the record entries put back (or that would be, in check mode).
  returned: success
  type: list
  elements: dict
  sample: [{id: "pg:unused-login:legacy_report", statement: 'ALTER ROLE "legacy_report" LOGIN;', database: postgres}]
  contains:
    id:
      description: The finding id.
      type: str
    statement:
      description: The statement run to put the previous state back.
      type: str
    database:
      description: The database it ran in.
      type: str
refused:
  description: Approvals not applied, each with C(id) and C(reason) (expired, no fix this module applies).
  returned: success
  type: list
  elements: dict
  sample: [{id: "pg:unused-login:old", reason: "approval by j.doe expired 2026-01-31T23:59:59Z"}]
not_found:
  description: Approved ids the review did not find (already fixed, or a typo).
  returned: success
  type: list
  elements: str
  sample: ["django:sampleapp:inactive:bob"]
not_approved:
  description: Ids of findings found but not approved (left alone).
  returned: success
  type: list
  elements: str
  sample: ["pg:createrole:ops"]
statements:
  description: Every statement run (or, in check mode, that would run), in order.
  returned: success
  type: list
  elements: str
  sample: ['ALTER ROLE "legacy_report" NOLOGIN;']
record_file:
  description: The revocation record.
  returned: success
  type: str
  sample: /var/lib/upkeep/access-revocations.json
app_current_login:
  description: The login Vault calls current in O(vault_app_secret), or null.
  returned: success
  type: str
  sample: sampleapp_blue
admin_login:
  description: The login the module runs as.
  returned: success
  type: str
  sample: postgres
diff:
  description: Previous and new value per finding id.
  returned: when changed and in diff mode
  type: dict
  sample: {before: {"pg:unused-login:legacy_report": true}, after: {"pg:unused-login:legacy_report": false}}
lockouts:
  description: On failure only, the approved findings refused because they would lock out a protected login.
  returned: failure
  type: list
  elements: dict
  sample: [{id: "pg:unused-login:sampleapp_blue", reason: "would lock out sampleapp_blue, the login ..."}]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - Ansible modules import after their documentation
from ansible_collections.upkeep.runbooks.plugins.module_utils import _access, _postgres  # noqa: E402


class Revoke(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.vault = None
        self.conns = {}

    def conn(self, database):
        if database not in self.conns:
            params = dict(self.params)
            params["login_db"] = database
            self.conns[database] = _postgres.open_connection(params, autocommit=False)
        return self.conns[database]

    def close(self):
        for conn in self.conns.values():
            _postgres.close_quietly(conn)
        if self.vault is not None:
            self.vault.close()

    def run(self):
        try:
            if self.params["state"] == "restored":
                result = self.restore()
            else:
                result = self.revoke()
        except _access.AccessError as exc:
            self.module.fail_json(msg=str(exc))
        except _postgres.PostgresConnectError as exc:
            self.module.fail_json(msg=exc.message)
        except _postgres.PostgresError as exc:
            self.module.fail_json(msg="Failed to %s access on PostgreSQL at %s: %s" % (
                "restore" if self.params["state"] == "restored" else "revoke",
                _postgres.target(self.params), exc.message))
        finally:
            self.close()
        self.module.exit_json(**result)

    # -- revoked ------------------------------------------------------------------------
    def revoke(self):
        params = self.params
        approvals = _access.load_approvals(params.get("approvals"), params.get("approval_file"))
        record = _access.load_record(params["record_file"])
        self.vault = _access.open_vault_for(params)
        review = _access.run_review(params, vault=self.vault, write_state=False)
        now = review.now
        found = dict((item["id"], item) for item in review.findings)
        protected = dict((name, "protected") for name in params.get("protect_logins") or [])
        protected[review.admin_login] = "admin"
        protected[params.get("login_user") or review.admin_login] = "admin"
        if review.app_current_login:
            protected[review.app_current_login] = "app"
        refused, not_found, todo, lockouts = [], [], [], []
        approved_ids = set()
        for approval in approvals:
            fid = approval["id"]
            approved_ids.add(fid)
            if approval["expires"] <= now:
                refused.append({"id": fid, "reason": "approval by %s expired %s" % (
                    approval["approved_by"], _access.utc_text(approval["expires"]))})
                continue
            item = found.get(fid)
            if item is None:
                not_found.append(fid)
                continue
            if not item.get("action"):
                refused.append({"id": fid, "reason": "access_revoke does not apply this kind of finding; run its fix "
                                                     "by hand: %s" % (item.get("fix") or item.get("fix_command"))})
                continue
            reason = _access.lockout_reason(item["action"], protected)
            if reason:
                lockouts.append({"id": fid, "reason": reason})
                continue
            if any(entry["finding"]["id"] == fid for entry in todo):
                continue
            todo.append({"approval": approval, "finding": item})
        not_approved = sorted(fid for fid in found if fid not in approved_ids)
        if lockouts:
            self.module.fail_json(
                msg="Failed to revoke access: %s; nothing was changed" % "; ".join(
                    "%s %s" % (entry["id"], entry["reason"]) for entry in lockouts),
                lockouts=lockouts, refused=refused, not_found=not_found, applied=[], statements=[], changed=False)

        applied, statements, entries = [], [], []
        diff = {"before": {}, "after": {}}
        default_db = params.get("login_db") or "postgres"
        for job in todo:
            action = job["finding"]["action"]
            database = _access.action_database(action, default_db)
            conn = self.conn(database)
            before = _access.read_before(conn, action)
            if not before["exists"]:
                refused.append({"id": job["finding"]["id"], "reason": "the object changed since the review "
                                                                      "(it no longer exists as reviewed)"})
                continue
            text = _access.text_of(_access.statement_for(action), conn)
            statements.append(text)
            applied.append({"id": job["finding"]["id"], "approved_by": job["approval"]["approved_by"],
                            "statement": text, "database": database})
            diff["before"][job["finding"]["id"]] = before["value"]
            diff["after"][job["finding"]["id"]] = False
            entries.append({
                "id": job["finding"]["id"], "action": action, "before": before, "database": database,
                "statement": text, "approved_by": job["approval"]["approved_by"],
                "approval_expires": _access.utc_text(job["approval"]["expires"]), "ticket": job["approval"]["ticket"],
                "applied_at": _access.utc_text(now), "status": "applied", "restored_at": None})
        changed = bool(applied)
        if changed and not self.module.check_mode:
            for entry in entries:
                self.conns[entry["database"]].execute(_access.statement_for(entry["action"]))
            # The record is on disk before anything is committed: a crash after it leaves at worst an entry
            # whose undo is harmless (it sets the value it had).
            record["entries"].extend(entries)
            _access.save_record(params["record_file"], record)
            for database in sorted(set(entry["database"] for entry in entries)):
                self.conns[database].commit()
        result = dict(changed=changed, applied=applied, restored=[], refused=refused, not_found=not_found,
                      not_approved=not_approved, statements=statements, record_file=params["record_file"],
                      app_current_login=review.app_current_login, admin_login=review.admin_login)
        if changed and self.module._diff:
            result["diff"] = diff
        return result

    # -- restored -----------------------------------------------------------------------
    def restore(self):
        params = self.params
        record = _access.load_record(params["record_file"])
        wanted = set(params.get("ids") or [])
        now = _access.utc_now()
        default_db = params.get("login_db") or "postgres"
        restored, statements = [], []
        todo = [entry for entry in reversed(record["entries"])
                if entry.get("status") == "applied" and (not wanted or entry["id"] in wanted)]
        for entry in todo:
            database = entry.get("database") or default_db
            conn = self.conn(database)
            statement = _access.statement_for(entry["action"], undo=True, before=entry.get("before"))
            text = _access.text_of(statement, conn)
            statements.append(text)
            restored.append({"id": entry["id"], "statement": text, "database": database})
            if not self.module.check_mode:
                conn.execute(statement)
                entry["status"] = "restored"
                entry["restored_at"] = _access.utc_text(now)
        changed = bool(restored)
        if changed and not self.module.check_mode:
            for conn in self.conns.values():
                conn.commit()
            _access.save_record(params["record_file"], record)
        return dict(changed=changed, applied=[], restored=restored, refused=[], not_found=[], not_approved=[],
                    statements=statements, record_file=params["record_file"], app_current_login=None,
                    admin_login=params.get("login_user"))


def main():
    spec = _access.module_argument_spec()
    spec.update(
        state=dict(type="str", choices=["revoked", "restored"], default="revoked"),
        approvals=dict(type="list", elements="dict", default=[], options=dict(
            id=dict(type="str", required=True),
            approved_by=dict(type="str", required=True),
            expires=dict(type="str", required=True),
            ticket=dict(type="str"),
        )),
        approval_file=dict(type="path"),
        record_file=dict(type="path", required=True),
        ids=dict(type="list", elements="str", default=[]),
        protect_logins=dict(type="list", elements="str", default=[]),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    _postgres.ensure_psycopg(module)
    Revoke(module).run()


if __name__ == "__main__":
    main()
