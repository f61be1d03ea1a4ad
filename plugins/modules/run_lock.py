#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: run_lock
short_description: Take or give back the lock that keeps runbooks changing one environment from overlapping
version_added: 0.1.0
description:
  - A run lock per environment, kept as one KV version 2 key in Vault (or OpenBao) and written with check-and-set,
    so two runs never both hold it, whichever controller or AWX instance started them.
  - V(acquired) takes the lock for O(holder) and O(run_id). When another run holds it and it has not expired, the
    module fails at once naming the holder, when it took the lock and when the lock expires, and writes nothing.
    The same O(run_id) may acquire again (a playbook that imports another one) without a change.
  - A lock whose holder crashed expires after O(ttl); the next run takes it over and RV(previous) names the run that
    left it.
  - V(released) gives the lock back. Only the run that holds it releases it, unless O(force=true) (an operator
    clearing the lock of a run known to be dead).
  - Uses the controller's clock for the expiry; keep the controllers' clocks in sync (NTP). The record is described
    in docs/awx.md.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - upkeep.runbooks.vault
attributes:
  check_mode:
    support: full
    details:
      - Logs in and reads the lock; reports whether it could be taken or released (and fails when another run holds
        it) without writing.
  diff_mode:
    support: none
    details:
      - RV(previous) and RV(lock) show the record before and after.
  platform:
    platforms: posix
requirements:
  - hvac (on the host running the module, normally the controller)
options:
  name:
    description:
      - Name of the lock, normally the environment (V(production)). Runbooks that must not overlap use the same name.
    type: str
    required: true
  state:
    description:
      - V(acquired) takes the lock, V(released) gives it back.
    type: str
    choices: [acquired, released]
    default: acquired
  holder:
    description:
      - Who holds the lock, in words other runs show in their error, for example C(AWX job 4711 (upkeep rotate) by
        alice). Required with O(state=acquired). Not a secret; do not put one in it.
    type: str
  run_id:
    description:
      - Token of this run. The same value re-enters the lock and releases it. Required with O(state=released).
      - With O(state=acquired) a random one is made when not given; it is returned in RV(lock.run_id).
    type: str
  ttl:
    description:
      - How long the lock holds without being released; after that another run may take it over (a crashed run).
        Seconds, or a number with C(s), C(m), C(h), C(d) or C(w). Make it longer than the longest runbook (the
        job template's timeout).
    type: str
    default: 8h
  force:
    description:
      - With O(state=released), release the lock even when another run holds it.
    type: bool
    default: false
  path_prefix:
    description:
      - KV path under O(mount_point) the locks live in; the lock is C(<path_prefix>/<name>).
      - The AppRole needs C(create), C(read), C(update) on C(<mount>/data/<path_prefix>/*) and C(read) on
        C(<mount>/metadata/<path_prefix>/*).
    type: str
    default: upkeep/locks
"""

EXAMPLES = r"""
- name: Take the production lock for this run
  upkeep.runbooks.run_lock:
    name: production
    holder: "AWX job {{ awx_job_id }} ({{ awx_job_template_name }})"
    run_id: "awx-{{ awx_job_id }}"
    ttl: 4h
  delegate_to: localhost
  run_once: true

- name: Give it back
  upkeep.runbooks.run_lock:
    name: production
    state: released
    run_id: "awx-{{ awx_job_id }}"
  delegate_to: localhost
  run_once: true

- name: Clear the lock of a run known to be dead
  upkeep.runbooks.run_lock:
    name: production
    state: released
    force: true
"""

RETURN = r"""
lock:
  description: The lock record after the call (what Vault holds, or would hold in check mode).
  returned: success
  type: dict
  contains:
    name:
      description: Name of the lock.
      type: str
    state:
      description: V(held) or V(released).
      type: str
    holder:
      description: Who holds (or last held) the lock.
      type: str
    run_id:
      description: Token of the run holding (or that last held) the lock.
      type: str
    acquired_at:
      description: When it was taken, RFC 3339 UTC.
      type: str
    expires_at:
      description: When it expires, RFC 3339 UTC.
      type: str
    released_at:
      description: When it was released, RFC 3339 UTC; absent while held.
      type: str
previous:
  description: The record found before the call; empty when the lock never existed. After a takeover it names the
    run whose lock had expired.
  returned: success
  type: dict
taken_over:
  description: True when the lock was taken from a run whose lock had expired.
  returned: success
  type: bool
path:
  description: Where the lock lives, C(<mount>/<path_prefix>/<name>).
  returned: always
  type: str
msg:
  description: One sentence saying what happened.
  returned: always
  type: str
holder:
  description: On failure because another run holds the lock, that run's record.
  returned: failure
  type: dict
"""

import uuid  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.upkeep.runbooks.plugins.module_utils import _runlock, _vault  # noqa: E402


def main():
    argument_spec = _vault.vault_common_argument_spec()
    argument_spec.update(
        name=dict(type="str", required=True),
        state=dict(type="str", default="acquired", choices=["acquired", "released"]),
        holder=dict(type="str"),
        run_id=dict(type="str"),
        ttl=dict(type="str", default="8h"),
        force=dict(type="bool", default=False),
        path_prefix=dict(type="str", default="upkeep/locks"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[("state", "acquired", ["holder"]), ("state", "released", ["run_id"])])
    params = module.params
    name = params["name"].strip("/")
    if not name or "/" in name:
        module.fail_json(msg="Failed to use run lock %r: the name must be one path segment" % params["name"])
    path = "%s/%s" % (params["path_prefix"].strip("/"), name)
    base = dict(changed=False, path="%s/%s" % ((params["mount_point"] or "secret").strip("/"), path))
    try:
        ttl = _vault.duration_seconds(params["ttl"])
    except ValueError as exc:
        module.fail_json(msg="Failed to read ttl: %s" % exc, **base)
    if ttl <= 0:
        module.fail_json(msg="Failed to read ttl: it must be longer than 0", **base)
    _vault.ensure_hvac(module)

    acquiring = params["state"] == "acquired"
    run_id = params["run_id"] or ("run-%s" % uuid.uuid4().hex)
    try:
        lock = _runlock.RunLock(_vault.connect(module), path, name)
        if acquiring:
            changed, record, previous = lock.acquire(params["holder"], run_id, ttl, check_mode=module.check_mode)
        else:
            changed, record, previous = lock.release(run_id, force=params["force"], check_mode=module.check_mode)
    except _runlock.LockHeld as exc:
        module.fail_json(msg="Failed to %s run lock %s: held by %s" % (
            "acquire" if acquiring else "release", name, exc), holder=exc.record, **base)
    except _vault.VaultError as exc:
        module.fail_json(msg="Failed to %s run lock %s: %s" % (
            "acquire" if acquiring else "release", name, exc.message),
            vault_status=exc.status, vault_reason=exc.reason, **base)

    taken_over = bool(acquiring and changed and previous.get("state") == "held")
    if acquiring:
        msg = ("run lock %s taken by %s" % (name, record["holder"]) if changed
               else "run lock %s already held by this run" % name)
        if taken_over:
            msg += " (the lock of %s had expired)" % _runlock.describe(previous)
    else:
        msg = "run lock %s released" % name if changed else "run lock %s was not held by this run" % name
    if module.check_mode and changed:
        msg = "would have: " + msg
    base.update(changed=changed, lock=record, previous=previous, taken_over=taken_over, msg=msg)
    module.exit_json(**base)


if __name__ == "__main__":
    main()
