#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: vault_secret_rotate
short_description: Rotate an application key held in Vault KV v2, keeping the previous values as fallbacks
version_added: 0.3.0
description:
  - Generates a new value for one field of a KV version 2 secret (for example Django's C(SECRET_KEY), or an HS256
    JWT signing key), writes it as a new version with check-and-set, and keeps the previous values, newest first,
    in the list field O(fallbacks_field) (C(<field>_FALLBACKS)), so what was signed with an earlier key still
    verifies (Django's C(SECRET_KEY_FALLBACKS), the verifying-key list of a JWT library).
  - The time each fallback was retired is kept in the custom metadata key C(upkeep_retired_<field>) (RFC 3339
    times, comma-separated, aligned with the list). A fallback retired longer ago than O(grace_period) is
    dropped; beyond O(keep) fallbacks the oldest are dropped (with a warning when one of them is still inside
    the grace period).
  - The new version is declared current by the custom metadata key C(upkeep_current_version), which
    M(upkeep.runbooks.vault_env_file) follows, and C(upkeep_rotated_at) (plus C(upkeep_rotated_at_<field>)) is
    set. If a run stops between the data write and that metadata write, the next run finds a latest version
    newer than the pointer without a pending marker and makes it current (RV(adopted)); that counts as the
    rotation of that run.
  - Other fields of the secret are carried over unchanged, so several keys (for example C(SECRET_KEY) and
    C(JWT_SIGNING_KEY)) can share one path; each task rotates one field.
  - A secret that does not exist yet is created (check-and-set 0) with a first value and no fallbacks.
  - With O(state=rolled_back) the value of O(rollback_version) is written back as a new version (history is never
    deleted) and the abandoned value becomes the first fallback, so anything signed with it in between still
    verifies.
  - The generated value is never returned, logged or put in a message.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - upkeep.runbooks.vault
attributes:
  check_mode:
    support: full
    details:
      - Authenticates, reads the secret and its metadata, evaluates O(min_age) and the fallback pruning and
        reports what would happen (RV(rotated), RV(kv_version) predicted). Nothing is written to Vault.
  diff_mode:
    support: none
    details:
      - Values are secret; RV(steps), RV(fallbacks) and RV(dropped_fallbacks) say what changed.
  platform:
    platforms: posix
options:
  path:
    description:
      - KV path of the secret below O(mount_point), for example V(sampleapp/django).
    type: str
    required: true
  field:
    description:
      - Field of the secret that holds the current value.
    type: str
    default: SECRET_KEY
  generator:
    description:
      - How the new value is made, always with Python's C(secrets) module.
      - V(django_secret_key) draws from the alphabet of Django's C(get_random_secret_key())
        (C(a-z0-9!@#$%^&*(-_=+))), which has no comma, so the fallbacks can be joined with C(,) in an env file.
      - V(urlsafe) draws from C(A-Za-z0-9-_) (6 bits per character), V(hex) from C(0-9a-f).
    type: str
    choices: [django_secret_key, urlsafe, hex]
    default: django_secret_key
  length:
    description:
      - Characters of the new value. Defaults to 50 for V(django_secret_key) (Django warns below that), 43 for
        V(urlsafe) (256 bits) and 64 for V(hex) (256 bits). At least 16, at most 1024.
    type: int
  fallbacks_field:
    description:
      - Field holding the list of previous values, newest first. Defaults to O(field) followed by C(_FALLBACKS).
      - A comma-separated string found there is read as a list; the module always writes a list.
    type: str
  keep:
    description:
      - At most this many previous values are kept (0 to 20). O(state=rolled_back) always keeps at least the
        abandoned value.
    type: int
    default: 3
  grace_period:
    description:
      - A fallback retired longer ago than this is dropped at the next rotation. Seconds, or a number with
        C(s), C(m), C(h), C(d) or C(w).
      - The default of 14 days is Django's default C(SESSION_COOKIE_AGE) (1209600 seconds); with
        O(generator=django_secret_key) a shorter period draws a warning, since sessions signed with a dropped key
        end early.
    type: str
    default: 14d
  state:
    description:
      - V(rotated) generates a new value when the secret is due (see O(min_age) and O(force)).
      - V(rolled_back) makes the value of O(rollback_version) current again.
    type: str
    choices: [rotated, rolled_back]
    default: rotated
  rollback_version:
    description:
      - With O(state=rolled_back), the version whose value becomes current again (typically RV(previous_version)
        of the rotation being undone). Required there.
    type: int
  min_age:
    description:
      - The field is due for rotation when it was last rotated (custom metadata C(upkeep_rotated_at_<field>))
        at least this long ago, or never. Same format as O(grace_period). V(0) rotates at every run.
    type: str
    default: '0'
  force:
    description:
      - Rotate even when not due.
    type: bool
    default: false
notes:
  - The token needs C(read) and C(create)/C(update) on C(<mount>/data/<path>) and C(<mount>/metadata/<path>).
  - Of two concurrent rotations of one secret, only one wins; the other fails with a check-and-set message and
    writes nothing. Running it again starts from the new version (and is usually not due any more).
  - Vault keeps a limited number of versions (C(max_versions)); a rollback can only go back to a version that is
    still there.
seealso:
  - module: upkeep.runbooks.vault_env_file
  - module: upkeep.runbooks.vault_pg_rotate
"""

EXAMPLES = r"""
- name: Rotate Django's SECRET_KEY at most once every 20 days, keeping fallbacks for two weeks
  upkeep.runbooks.vault_secret_rotate:
    url: https://vault.example.com:8200
    auth_method: approle
    role_id: "{{ rotation_role_id }}"
    secret_id: "{{ rotation_secret_id }}"
    path: sampleapp/django
    min_age: 20d
  register: django_key

- name: Rotate the JWT signing key stored in the same secret
  upkeep.runbooks.vault_secret_rotate:
    path: sampleapp/django
    field: JWT_SIGNING_KEY
    generator: urlsafe
    length: 64
    keep: 2
    grace_period: 1d
    min_age: 20d

- name: Undo the rotation when the app does not come back
  upkeep.runbooks.vault_secret_rotate:
    path: sampleapp/django
    state: rolled_back
    rollback_version: "{{ django_key.previous_version }}"
  when: django_key.rotated
"""

RETURN = r"""
rotated:
  description: Whether a new value was generated and made current (or would be, in check mode), including a value
    left by an interrupted run that this run made current (RV(adopted)).
  returned: always
  type: bool
  sample: true
rolled_back:
  description: Whether O(state=rolled_back) wrote the value of O(rollback_version) back as current.
  returned: always
  type: bool
  sample: false
adopted:
  description: Whether a version written by an interrupted earlier run was made current by this run.
  returned: always
  type: bool
  sample: false
due:
  description: Whether the field was due for rotation (O(force), never rotated, or rotated at least O(min_age) ago).
  returned: always
  type: bool
  sample: true
field:
  description: The field rotated.
  returned: always
  type: str
  sample: SECRET_KEY
generator:
  description: The generator used.
  returned: always
  type: str
  sample: django_secret_key
kv_version:
  description: The current version after the run (predicted in check mode).
  returned: success
  type: int
  sample: 8
previous_version:
  description: The version that was current before the run (0 when the secret did not exist). Pass it as
    O(rollback_version) to undo the rotation.
  returned: success
  type: int
  sample: 7
fallbacks:
  description: Number of previous values kept in O(fallbacks_field) after the run.
  returned: success
  type: int
  sample: 2
dropped_fallbacks:
  description: Number of previous values dropped by this run (expired grace period, or beyond O(keep)).
  returned: success
  type: int
  sample: 1
steps:
  description:
    - What was done, in order. Names are C(adopt) (only when an interrupted run left a version), C(create) (the
      check-and-set write of the new version; C(rollback) with O(state=rolled_back)) and C(finish) (the current
      pointer and times in the custom metadata).
    - C(status) is one of V(done), V(skipped), V(failed) (V(done) in check mode means it would be done).
  returned: always
  type: list
  elements: dict
  sample: [{name: create, status: done, msg: wrote version 8}, {name: finish, status: done, msg: version 8 is current}]
msg:
  description: One line saying what happened.
  returned: always
  type: str
  sample: rotated SECRET_KEY of secret/sampleapp/django to version 8; 2 fallbacks kept, 1 dropped
"""

import datetime  # noqa: E402
import secrets  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.upkeep.runbooks.plugins.module_utils import _vault  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._failure import Failure  # noqa: E402

DJANGO_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789!@#$%^&*(-_=+)"
URLSAFE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
HEX_ALPHABET = "0123456789abcdef"
GENERATORS = {
    "django_secret_key": (DJANGO_ALPHABET, 50),
    "urlsafe": (URLSAFE_ALPHABET, 43),
    "hex": (HEX_ALPHABET, 64),
}
DJANGO_SESSION_COOKIE_AGE = 1209600
MIN_LENGTH = 16
MAX_LENGTH = 1024
MAX_KEEP = 20
RETIRED_PREFIX = "upkeep_retired_"
FIELD_ROTATED_PREFIX = "upkeep_rotated_at_"


def now_utc():
    """The clock of the module (patched by the unit tests)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def generate(generator, length):
    """A new random value: ``length`` characters of the generator's alphabet."""
    alphabet = GENERATORS[generator][0]
    return "".join(secrets.choice(alphabet) for _position in range(length))


def retired_key(field):
    return RETIRED_PREFIX + field


def field_rotated_key(field):
    return FIELD_ROTATED_PREFIX + field


def read_fallbacks(data, fallbacks_field, where):
    """The previous values stored in ``fallbacks_field`` as a list of strings."""
    value = (data or {}).get(fallbacks_field)
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [item for item in value.split(",") if item]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [item for item in value if item]
    raise Failure("Failed to read %s of %s: expected a list of strings (or a comma-separated string), found a %s"
                  % (fallbacks_field, where, type(value).__name__))


def read_retired(custom_metadata, field, count, default):
    """Retirement times aligned with ``count`` fallbacks; missing or unreadable entries become ``default``."""
    text = (custom_metadata or {}).get(retired_key(field)) or ""
    times = [_vault.parse_time(item.strip()) or default for item in text.split(",") if item.strip()]
    times = times[:count]
    return times + [default] * (count - len(times))


def prune(pairs, keep, grace_seconds, now):
    """Apply the policy to [(value, retired_at)] newest first.

    Returns (kept pairs, number dropped as expired, list of dropped-beyond-keep retirement times that were still
    inside the grace period).
    """
    seen = set()
    unique = []
    for value, when in pairs:
        if value in seen:
            continue
        seen.add(value)
        unique.append((value, when))
    fresh = [(value, when) for value, when in unique if (now - when).total_seconds() <= grace_seconds]
    expired = len(unique) - len(fresh)
    kept, beyond = fresh[:keep], fresh[keep:]
    return kept, expired, [when for _value, when in beyond]


def times_text(pairs):
    return ",".join(_vault.utc_now_text(when) for _value, when in pairs) or None


def step(name, status, msg):
    return dict(name=name, status=status, msg=msg)


def _cause(exc):
    """(cause without the "Failed to ... at <url>: " prefix, status, reason) of a Vault failure."""
    cause, status, reason = _vault.describe_error(exc)
    return getattr(exc, "cause", None) or cause, status, reason


def _fail_vault(action, vault, path, exc, steps):
    """A Failure for a VaultError raised while ``action`` (``Failed to <action> in <path> at <url>: <cause>``)."""
    cause, status, reason = _cause(exc)
    if reason == "cas_mismatch":
        cause += "; run the task again to start from the new version"
    return Failure("Failed to %s in %s at %s: %s" % (action, vault.describe(path), vault.where(), cause),
                   vault_status=status, vault_reason=reason, steps=steps)


def check_options(module):
    """Validated (length, fallbacks_field, grace_seconds, min_age_seconds); warnings issued here."""
    params = module.params
    generator = params["generator"]
    length = params["length"] if params["length"] is not None else GENERATORS[generator][1]
    if length < MIN_LENGTH or length > MAX_LENGTH:
        raise Failure("Failed to check length: it must be between %d and %d characters, got %d"
                      % (MIN_LENGTH, MAX_LENGTH, length))
    if generator == "django_secret_key" and length < 50:
        module.warn("length %d is below the 50 characters Django's security check (security.W009) expects of "
                    "SECRET_KEY" % length)
    if params["keep"] < 0 or params["keep"] > MAX_KEEP:
        raise Failure("Failed to check keep: it must be between 0 and %d, got %d" % (MAX_KEEP, params["keep"]))
    durations = {}
    for option in ("grace_period", "min_age"):
        try:
            durations[option] = _vault.duration_seconds(params[option])
        except ValueError as exc:
            raise Failure("Failed to check %s: %s" % (option, exc)) from None
    if generator == "django_secret_key" and durations["grace_period"] < DJANGO_SESSION_COOKIE_AGE:
        module.warn("grace_period %s is shorter than Django's default SESSION_COOKIE_AGE (14 days): a fallback "
                    "dropped sooner ends the sessions and signed data that still use it"
                    % params["grace_period"])
    field = params["field"]
    if not field or "," in field:
        raise Failure("Failed to check field: %r is not a usable field name" % field)
    fallbacks_field = params["fallbacks_field"] or field + "_FALLBACKS"
    if fallbacks_field == field:
        raise Failure("Failed to check fallbacks_field: it must differ from field")
    return length, fallbacks_field, durations["grace_period"], durations["min_age"]


def adopt(module, vault, path, meta, pointer, latest, field, fallbacks_field, now):
    """Make ``latest`` (written by an interrupted run) current. True when it changed ``field``."""
    old = vault.kv_read(path, pointer)
    new = vault.kv_read(path, latest)
    old_data = (old.data if old is not None else None) or {}
    new_data = (new.data if new is not None else None) or {}
    changes = {_vault.CURRENT_VERSION_KEY: latest}
    ours = field in new_data and new_data.get(field) != old_data.get(field)
    if ours:
        when = _vault.parse_time(new.created_time) or now
        new_fallbacks = read_fallbacks(new_data, fallbacks_field, vault.describe(path))
        old_fallbacks = read_fallbacks(old_data, fallbacks_field, vault.describe(path))
        old_times = read_retired(meta.custom_metadata, field, len(old_fallbacks), when)
        if new_fallbacks and old_data.get(field) is not None and new_fallbacks[0] == old_data.get(field):
            times = [when] + old_times
        else:
            times = old_times
        times = (times + [when] * len(new_fallbacks))[:len(new_fallbacks)]
        changes[retired_key(field)] = times_text(list(zip(new_fallbacks, times)))
        changes[_vault.ROTATED_AT_KEY] = _vault.utc_now_text(when)
        changes[field_rotated_key(field)] = _vault.utc_now_text(when)
    if not module.check_mode:
        vault.kv_update_custom_metadata(path, changes)
    return ours


def run_rotated(module, vault, options):
    params = module.params
    path, field, generator = params["path"], params["field"], params["generator"]
    length, fallbacks_field, grace, min_age = options
    where = vault.describe(path)
    now = now_utc()
    steps = []
    result = dict(changed=False, rotated=False, rolled_back=False, adopted=False, due=False, field=field,
                  generator=generator, steps=steps)

    try:
        meta = vault.kv_metadata(path)
    except _vault.VaultError as exc:
        raise _fail_vault("rotate %s" % field, vault, path, exc, steps) from None
    exists = meta is not None and meta.current_version > 0
    latest = meta.current_version if exists else 0
    if exists and meta.int_value(_vault.PENDING_VERSION_KEY):
        raise Failure("Failed to rotate %s in %s at %s: a rotation by another module is pending (version %s, step "
                      "%s); finish or roll it back first (vault_pg_rotate resumes it)"
                      % (field, where, vault.where(), meta.int_value(_vault.PENDING_VERSION_KEY),
                         meta.custom_metadata.get(_vault.PENDING_STEP_KEY) or "unknown"), steps=steps)

    # A latest version newer than the pointer, without a pending marker: an earlier run wrote it and stopped
    # before its metadata write. It becomes current now.
    pointer = meta.int_value(_vault.CURRENT_VERSION_KEY) if exists else None
    if exists and pointer and meta.is_live(pointer) and latest > pointer and meta.is_live(latest):
        try:
            ours = adopt(module, vault, path, meta, pointer, latest, field, fallbacks_field, now)
        except _vault.VaultError as exc:
            steps.append(step("adopt", "failed", "could not make version %d current" % latest))
            raise _fail_vault("make version %d current" % latest, vault, path, exc, steps) from None
        steps.append(step("adopt", "done", "version %d, written by an interrupted run, made current (was %d)"
                          % (latest, pointer)))
        result.update(changed=True, adopted=True)
        if ours:
            fallbacks = vault.kv_read(path, latest)
            count = len(read_fallbacks(fallbacks.data if fallbacks else {}, fallbacks_field, where))
            steps.append(step("create", "skipped", "the interrupted run had written the new value"))
            steps.append(step("finish", "done", "version %d is current" % latest))
            result.update(rotated=True, due=True, kv_version=latest, previous_version=pointer, fallbacks=count,
                          dropped_fallbacks=0,
                          msg="completed the interrupted rotation of %s in %s: version %d is current"
                          % (field, where, latest))
            return result
        meta = vault.kv_metadata(path) if not module.check_mode else meta
        if module.check_mode:
            meta.custom_metadata[_vault.CURRENT_VERSION_KEY] = str(latest)
    current = _vault.current_version(meta) if exists else 0

    rotated_at = _vault.parse_time(meta.custom_metadata.get(field_rotated_key(field))) if exists else None
    due = bool(params["force"]) or rotated_at is None or (now - rotated_at).total_seconds() >= min_age
    result["due"] = due
    try:
        current_secret = vault.kv_read(path, current) if current else None
    except _vault.VaultError as exc:
        raise _fail_vault("rotate %s" % field, vault, path, exc, steps) from None
    if current and (current_secret is None or current_secret.data is None):
        raise Failure("Failed to rotate %s in %s at %s: its current version %d is deleted or destroyed; undelete it "
                      "or point upkeep_current_version at a live version" % (field, where, vault.where(), current),
                      steps=steps)
    data = dict(current_secret.data) if current_secret is not None else {}
    old_value = data.get(field)
    if old_value is not None and not isinstance(old_value, str):
        raise Failure("Failed to rotate %s in %s: the field holds a %s, not a string"
                      % (field, where, type(old_value).__name__), steps=steps)
    fallbacks = read_fallbacks(data, fallbacks_field, where)

    if not due:
        steps.append(step("create", "skipped", "not due"))
        steps.append(step("finish", "skipped", "not due"))
        result.update(kv_version=current, previous_version=current, fallbacks=len(fallbacks), dropped_fallbacks=0,
                      msg="%s in %s is not due: rotated at %s, min_age %s"
                      % (field, where, _vault.utc_now_text(rotated_at), params["min_age"]))
        return result

    times = read_retired(meta.custom_metadata if exists else {}, field, len(fallbacks), now)
    pairs = ([(old_value, now)] if old_value else []) + list(zip(fallbacks, times))
    kept, expired, beyond = prune(pairs, params["keep"], grace, now)
    _warn_beyond(module, field, beyond)
    dropped = expired + len(beyond)
    new_data = dict(data)
    new_data[field] = generate(generator, length)
    new_data[fallbacks_field] = [value for value, _when in kept]
    summary = "%d fallback%s kept, %d dropped" % (len(kept), "" if len(kept) == 1 else "s", dropped)
    result.update(rotated=True, changed=True, previous_version=current, fallbacks=len(kept), dropped_fallbacks=dropped)

    if module.check_mode:
        steps.append(step("create", "done", "would write version %d" % (latest + 1)))
        steps.append(step("finish", "done", "would make version %d current" % (latest + 1)))
        result.update(kv_version=latest + 1, msg="would rotate %s of %s to version %d; %s"
                      % (field, where, latest + 1, summary))
        return result

    try:
        version = vault.kv_write(path, new_data, cas=latest)
    except _vault.VaultError as exc:
        steps.append(step("create", "failed", "nothing was written"))
        raise _fail_vault("rotate %s" % field, vault, path, exc, steps) from None
    steps.append(step("create", "done", "wrote version %d" % version))
    stamp = _vault.utc_now_text(now)
    try:
        vault.kv_update_custom_metadata(path, {
            _vault.CURRENT_VERSION_KEY: version,
            _vault.ROTATED_AT_KEY: stamp,
            field_rotated_key(field): stamp,
            retired_key(field): times_text(kept),
        })
    except _vault.VaultError as exc:
        steps.append(step("finish", "failed", "version %d written but not made current" % version))
        cause, status, reason = _cause(exc)
        raise Failure("Failed to finish the rotation of %s in %s at %s: version %d was written but could not be made "
                      "current: %s; run the task again, it makes that version current"
                      % (field, where, vault.where(), version, cause), vault_status=status, vault_reason=reason,
                      steps=steps, kv_version=current, previous_version=current) from None
    steps.append(step("finish", "done", "version %d is current" % version))
    result.update(kv_version=version, msg="rotated %s of %s to version %d; %s" % (field, where, version, summary))
    return result


def _warn_beyond(module, field, beyond):
    if beyond:
        module.warn("dropped %d fallback(s) of %s that are still inside grace_period (keep is %d): what was signed "
                    "with them no longer verifies" % (len(beyond), field, module.params["keep"]))


def run_rolled_back(module, vault, options):
    params = module.params
    path, field = params["path"], params["field"]
    _length, fallbacks_field, grace, _min_age = options
    target_version = params["rollback_version"]
    where = vault.describe(path)
    now = now_utc()
    steps = []
    result = dict(changed=False, rotated=False, rolled_back=False, adopted=False, due=False, field=field,
                  generator=params["generator"], steps=steps)
    try:
        meta = vault.kv_metadata(path)
        if meta is None or not meta.current_version:
            raise Failure("Failed to roll back %s in %s at %s: no such secret (not found)"
                          % (field, where, vault.where()), steps=steps)
        latest = meta.current_version
        current = _vault.current_version(meta)
        target = vault.kv_read(path, target_version)
        current_secret = vault.kv_read(path, current)
    except _vault.VaultError as exc:
        raise _fail_vault("roll back %s" % field, vault, path, exc, steps) from None
    if target is None or target.data is None:
        state = "does not exist" if target is None else ("is destroyed" if target.destroyed else "is deleted")
        raise Failure("Failed to roll back %s in %s at %s: version %d %s"
                      % (field, where, vault.where(), target_version, state), steps=steps)
    restored = target.data.get(field)
    if not isinstance(restored, str) or not restored:
        raise Failure("Failed to roll back %s in %s: version %d has no %s" % (field, where, target_version, field),
                      steps=steps)
    if current_secret is None or current_secret.data is None:
        raise Failure("Failed to roll back %s in %s: the current version %d is deleted or destroyed"
                      % (field, where, current), steps=steps)
    data = dict(current_secret.data)
    abandoned = data.get(field)
    fallbacks = read_fallbacks(data, fallbacks_field, where)
    result["previous_version"] = current
    if abandoned == restored:
        steps.append(step("rollback", "skipped", "the current version %d already holds the value of version %d"
                          % (current, target_version)))
        steps.append(step("finish", "skipped", "nothing to do"))
        result.update(kv_version=current, fallbacks=len(fallbacks), dropped_fallbacks=0,
                      msg="%s of %s already has the value of version %d (current version %d)"
                      % (field, where, target_version, current))
        return result

    times = read_retired(meta.custom_metadata, field, len(fallbacks), now)
    pairs = ([(abandoned, now)] if abandoned else []) + [(value, when) for value, when in zip(fallbacks, times)
                                                         if value != restored]
    kept, expired, beyond = prune(pairs, max(params["keep"], 1), grace, now)
    _warn_beyond(module, field, beyond)
    data[field] = restored
    data[fallbacks_field] = [value for value, _when in kept]
    result.update(changed=True, rolled_back=True, fallbacks=len(kept), dropped_fallbacks=expired + len(beyond))
    if module.check_mode:
        steps.append(step("rollback", "done", "would write the value of version %d as version %d"
                          % (target_version, latest + 1)))
        steps.append(step("finish", "done", "would make version %d current" % (latest + 1)))
        result.update(kv_version=latest + 1, msg="would roll %s of %s back to the value of version %d"
                      % (field, where, target_version))
        return result
    try:
        version = vault.kv_write(path, data, cas=latest)
    except _vault.VaultError as exc:
        steps.append(step("rollback", "failed", "nothing was written"))
        raise _fail_vault("roll back %s" % field, vault, path, exc, steps) from None
    steps.append(step("rollback", "done", "wrote the value of version %d as version %d" % (target_version, version)))
    try:
        vault.kv_update_custom_metadata(path, {_vault.CURRENT_VERSION_KEY: version,
                                               retired_key(field): times_text(kept)})
    except _vault.VaultError as exc:
        steps.append(step("finish", "failed", "version %d written but not made current" % version))
        cause, status, reason = _cause(exc)
        raise Failure("Failed to finish the rollback of %s in %s at %s: version %d was written but could not be made "
                      "current: %s; run the task again" % (field, where, vault.where(), version, cause),
                      vault_status=status, vault_reason=reason, steps=steps) from None
    steps.append(step("finish", "done", "version %d is current" % version))
    result.update(kv_version=version, msg="rolled %s of %s back to the value of version %d (now version %d); the "
                  "abandoned value is the first fallback" % (field, where, target_version, version))
    return result


def main():
    argument_spec = _vault.vault_common_argument_spec()
    argument_spec.update(
        path=dict(type="str", required=True),
        field=dict(type="str", default="SECRET_KEY"),
        generator=dict(type="str", default="django_secret_key", choices=sorted(GENERATORS)),
        length=dict(type="int"),
        fallbacks_field=dict(type="str"),
        keep=dict(type="int", default=3),
        grace_period=dict(type="str", default="14d"),
        state=dict(type="str", default="rotated", choices=["rotated", "rolled_back"]),
        rollback_version=dict(type="int"),
        min_age=dict(type="str", default="0"),
        force=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[("state", "rolled_back", ["rollback_version"])])
    params = module.params
    params["path"] = (params["path"] or "").strip().strip("/")
    base = dict(changed=False, rotated=False, rolled_back=False, adopted=False, due=False, field=params["field"],
                generator=params["generator"], steps=[])
    vault = None
    try:
        if not params["path"]:
            raise Failure("Failed to check path: it is empty")
        if params["rollback_version"] is not None and params["rollback_version"] < 1:
            raise Failure("Failed to check rollback_version: versions start at 1")
        options = check_options(module)
        _vault.ensure_hvac(module)
        vault = _vault.connect(module)
        if params["state"] == "rolled_back":
            result = run_rolled_back(module, vault, options)
        else:
            result = run_rotated(module, vault, options)
    except Failure as exc:
        out = dict(base)
        out.update(exc.extra)
        module.fail_json(msg=exc.msg, **out)
    except _vault.VaultError as exc:
        module.fail_json(msg=exc.message, vault_status=exc.status, vault_reason=exc.reason, **base)
    finally:
        if vault is not None:
            vault.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
