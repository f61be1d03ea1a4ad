#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_scratch_sweep
short_description: Drop the scratch databases that killed restore tests left behind
version_added: 0.3.0
description:
  - M(upkeep.runbooks.pg_backup_verify) restores into a scratch database and drops it afterwards. When its
    process is killed mid-restore, the scratch database stays behind, and so does the temporary
    C(upkeep_restore_<random>) database of a killed M(upkeep.runbooks.pg_restore). This module finds such
    leftovers on one server and drops the ones older than O(older_than).
  - A database is recognised by the mark those modules put in its comment, never by its name. A database
    whose comment is no mark is never dropped, whatever it is called; one whose name starts with
    C(upkeep_verify_), C(upkeep_restore_) or C(upkeep_replaced_) but carries no mark is listed in RV(kept)
    with the reason.
  - A marked database is dropped only when all of these hold. Its mark is of a kind listed in O(marks), and of a
    version of the mark format this module knows. It is not a template, not C(postgres), C(template0),
    C(template1), not O(login_db) and not in O(protected_databases). Its mark does not name it as the backup's
    source database or the restore's target. A C(pg_restore) temporary database still has the name its mark
    gives. C(pg_backup_verify) did not keep it on purpose (O(upkeep.runbooks.pg_backup_verify#module:keep=true)).
    Its age is known and at least O(older_than). No session is connected to it.
  - The age is the server's clock now minus the creation time in the mark, which is the server's clock when
    the database was created. Marks written by earlier versions of the collection hold no time; for them the
    modification time of the database's C(PG_VERSION) file, which C(CREATE DATABASE) writes, is used (read with
    C(pg_stat_file), which needs a superuser or C(GRANT EXECUTE ON FUNCTION pg_stat_file(text, boolean)) to the
    login role). A database whose age cannot be told is kept with a warning.
  - A database with connected sessions is never dropped, not even when they might be the leftover's own; it is
    kept and reported with a warning. Just before each drop the database is looked up again and must still
    have the same oid, comment and no session; C(DROP DATABASE) then runs without C(FORCE), so PostgreSQL
    itself refuses it if a session connects in between.
  - Each database is reported with its mark, age, size and outcome in RV(removed), RV(would_remove) or
    RV(kept).
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - upkeep.runbooks.postgres
attributes:
  check_mode:
    support: full
    description:
      - Connects, reads every database's mark, age, size and sessions, and lists what would be dropped in
        RV(would_remove); nothing is dropped.
  diff_mode:
    support: full
    description: The names of the marked databases before and after the sweep (predicted in check mode).
options:
  older_than:
    description:
      - Drop only leftovers at least this old.
      - A number of seconds (V(0), V(21600)) or a duration made of numbers with the units C(s), C(m) (minutes),
        C(h), C(d) and C(w), such as V(90m), V(6h) or V(1d12h).
      - Choose it longer than any restore could take on this server; a younger marked database may belong to
        a restore running right now.
      - V(0) sweeps every marked leftover that no session is connected to.
    type: raw
    required: true
  marks:
    description:
      - Which kinds of mark make a database a leftover this task may drop.
      - V(scratch) is the scratch database of M(upkeep.runbooks.pg_backup_verify); V(restore) is the
        temporary database of M(upkeep.runbooks.pg_restore), which is only dropped under the name its mark gives
        it (C(upkeep_restore_) and the first 16 characters of its run id).
    type: list
    elements: str
    choices: [scratch, restore]
    default: [scratch]
  protected_databases:
    description:
      - Names never dropped, mark or no mark, for example the source databases of the backups that are
        restore-tested on this server.
    type: list
    elements: str
    default: []
notes:
  - The task reports C(changed=true) when it dropped a database (in check mode, when it would).
  - The login role must own the leftovers or be a superuser to drop them; a drop PostgreSQL refuses keeps the
    database, with the cause in RV(kept) and a warning, and does not fail the task.
  - Failures to connect to or read the server fail the task with C(Failed to sweep scratch databases on ...).
seealso:
  - module: upkeep.runbooks.pg_backup_verify
  - module: upkeep.runbooks.pg_restore
  - name: DROP DATABASE
    description: What PostgreSQL does and refuses when a database is dropped.
    link: https://www.postgresql.org/docs/current/sql-dropdatabase.html
"""

EXAMPLES = r"""
- name: Drop restore-test leftovers older than six hours before the next restore test
  upkeep.runbooks.pg_scratch_sweep:
    older_than: 6h
    protected_databases: [app]
    login_unix_socket: /var/run/postgresql
  become: true
  become_user: postgres
  register: sweep

- name: Show what was dropped
  ansible.builtin.debug:
    msg: "{{ sweep.removed | map(attribute='name') | list }}"

- name: See what a sweep would drop, pg_restore temporaries included, without dropping anything
  upkeep.runbooks.pg_scratch_sweep:
    older_than: 1d
    marks: [scratch, restore]
    login_host: 127.0.0.13
    login_user: restore_tester
    login_password: "{{ vault_restore_tester_password }}"
  check_mode: true
  diff: true
"""

RETURN = r"""
older_than_seconds:
  description: The limit O(older_than) in seconds.
  returned: always
  type: float
  sample: 21600.0
removed:
  description:
    - The leftovers that were dropped, in name order. Empty in check mode.
  returned: always
  type: list
  elements: dict
  contains: &entry
    name:
      description: The database.
      type: str
      sample: upkeep_verify_daily_20261123t021500z
    mark:
      description: The kind of mark, V(scratch) or V(restore); null for an unmarked database.
      type: str
      sample: scratch
    mark_format:
      description:
        - V(json) for a mark that holds its creation time, V(legacy) for one written by an earlier version of the
          collection; null for an unmarked database.
      type: str
      sample: json
    backup_id:
      description: The backup that was being restored, from the mark; null when the mark does not say.
      type: str
      sample: daily-20261123T021500Z
    run_id:
      description: The id of the run that created the database, from the mark; null when the mark does not say.
      type: str
      sample: 6f1c2b9e-3f7a-4c51-9d0e-8a1b2c3d4e5f
    created:
      description: When the database was created (UTC, ISO 8601), by the server's clock; null when unknown.
      type: str
      sample: "2026-11-23T02:15:04.118233Z"
    created_from:
      description:
        - Where the creation time comes from, V(mark), or V(file) (the database's C(PG_VERSION) file, for marks
          without a time); null when unknown.
      type: str
      sample: mark
    age_seconds:
      description: Whole seconds since the database was created; null when unknown.
      type: int
      sample: 25320
    size_bytes:
      description: Size of the database; null when the login role may not connect to it.
      type: int
      sample: 19293798
    sessions:
      description: Sessions connected to it when it was examined (autovacuum workers not counted).
      type: int
      sample: 0
    outcome:
      description: V(removed), V(would_remove) or V(kept).
      type: str
      sample: removed
    reason:
      description: Why it was dropped or kept, in a sentence.
      type: str
      sample: pg_backup_verify scratch database, 7h 2m old, limit 6h, no session connected
    warn:
      description:
        - Whether an operator should look at it. True for a marked database kept because it is in use, its age is
          unknown, its mark contradicts its name, or the drop failed; false otherwise.
      type: bool
      sample: false
would_remove:
  description:
    - In check mode, the leftovers that would be dropped, with the same keys as RV(removed). Empty outside check
      mode.
  returned: always
  type: list
  elements: dict
  contains: *entry
kept:
  description:
    - Every marked database that was not dropped, and every unmarked one whose name starts with C(upkeep_verify_),
      C(upkeep_restore_) or C(upkeep_replaced_), with the reason in RV(kept[].reason); same keys as RV(removed).
  returned: always
  type: list
  elements: dict
  contains: *entry
  sample:
    - name: upkeep_verify_daily_20261130t021500z
      mark: scratch
      mark_format: json
      backup_id: daily-20261130T021500Z
      run_id: 0b7e4f9a-51d2-4c8e-a3f6-2d9c8b7a6e5f
      created: "2026-11-30T09:14:55.402118Z"
      created_from: mark
      age_seconds: 312
      size_bytes: 8110883
      sessions: 3
      outcome: kept
      reason: "5m 12s old, younger than the limit of 6h: a restore may still be running in it"
      warn: false
msg:
  description: What the sweep did, in a sentence or two.
  returned: always
  type: str
  sample: >-
    removed 1 leftover database older than 6h on /var/run/postgresql/.s.PGSQL.5432:
    upkeep_verify_daily_20261123t021500z (7h 2m old, 18.4 MiB); kept 1: upkeep_verify_daily_20261130t021500z
    (5m 12s old, younger than the limit of 6h: a restore may still be running in it)
diff:
  description: The marked databases before and after the sweep; returned in diff mode.
  returned: when diff mode is on
  type: dict
  contains:
    before:
      description: C(marked_databases), the sorted names of the marked databases found.
      type: dict
    after:
      description: C(marked_databases) left afterwards (in check mode, those that would be left).
      type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - Ansible modules import after their documentation
from ansible_collections.upkeep.runbooks.plugins.module_utils import _restore  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import human_bytes  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._postgres import (  # noqa: E402
    PostgresError,
    close_quietly,
    ensure_psycopg,
    open_connection,
    postgres_common_argument_spec,
    target,
)

MAX_LISTED = 10


def _describe(entry, with_reason):
    """``name (7h 2m old, 18.4 MiB)``, or ``name (reason)``."""
    if with_reason:
        return "%s (%s)" % (entry["name"], entry["reason"])
    facts = ["%s old" % _restore.human_duration(entry["age_seconds"])]
    if entry["size_bytes"] is not None:
        facts.append(human_bytes(entry["size_bytes"]))
    return "%s (%s)" % (entry["name"], ", ".join(facts))


def _listing(entries, with_reason=False):
    shown = [_describe(entry, with_reason) for entry in entries[:MAX_LISTED]]
    if len(entries) > MAX_LISTED:
        shown.append("and %d more" % (len(entries) - MAX_LISTED))
    return ", ".join(shown)


def summary(result, limit, where, check_mode):
    gone = result["would_remove"] if check_mode else result["removed"]
    verb = "would remove" if check_mode else "removed"
    limit_text = _restore.human_duration(limit)
    if gone:
        text = "%s %d leftover database%s older than %s on %s: %s" % (
            verb, len(gone), "" if len(gone) == 1 else "s", limit_text, where, _listing(gone))
    else:
        text = "no leftover database older than %s on %s" % (limit_text, where)
    if result["kept"]:
        text += "; kept %d: %s" % (len(result["kept"]), _listing(result["kept"], with_reason=True))
    return text


def main():
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(
        older_than=dict(type="raw", required=True),
        marks=dict(type="list", elements="str", choices=list(_restore.SWEEP_KINDS), default=["scratch"]),
        protected_databases=dict(type="list", elements="str", default=[]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    where = target(params)
    try:
        limit = _restore.parse_duration(params["older_than"])
    except _restore.RestoreError as exc:
        module.fail_json(msg="Failed to sweep scratch databases on %s: %s" % (where, exc.message))
    if not params["marks"]:
        module.fail_json(msg="Failed to sweep scratch databases on %s: marks must name at least one kind "
                         "(scratch, restore)" % where)

    ensure_psycopg(module)
    conn = None
    try:
        conn = open_connection(params)
        result = _restore.sweep_scratch(conn, limit, kinds=params["marks"],
                                        protected=params["protected_databases"], login_db=params["login_db"],
                                        check_mode=module.check_mode)
    except (PostgresError, _restore.RestoreError) as exc:
        module.fail_json(msg="Failed to sweep scratch databases on %s: %s" % (where, exc.message))
    finally:
        close_quietly(conn)

    for entry in result["kept"]:
        if entry["warn"]:
            module.warn("kept database '%s' on %s: %s" % (entry["name"], where, entry["reason"]))
    output = {
        "changed": bool(result["would_remove"] if module.check_mode else result["removed"]),
        "older_than_seconds": limit,
        "removed": result["removed"],
        "would_remove": result["would_remove"],
        "kept": result["kept"],
        "msg": summary(result, limit, where, module.check_mode),
    }
    if module._diff:
        output["diff"] = {"before": {"marked_databases": result["before"]},
                          "after": {"marked_databases": result["after"]}}
    module.exit_json(**output)


if __name__ == "__main__":
    main()
