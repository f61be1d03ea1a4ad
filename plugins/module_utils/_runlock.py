# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run lock: one KV version 2 key in Vault per environment, taken with check-and-set.

Record (the key's data, schema 1; docs/awx.md "Run lock"):

    schema       "1"
    state        "held" or "released"
    name         the lock's name (normally the environment)
    holder       who holds it, in words (AWX job id and template, or user@host)
    run_id       the run's token; only the same run_id re-enters or releases without force
    acquired_at  RFC 3339 UTC
    expires_at   RFC 3339 UTC; after it anyone may take the lock (a crashed run)
    released_at  RFC 3339 UTC, when released

Every write names the version it replaces (``cas``). Of two runs that read the same
version, Vault accepts exactly one write; the other gets a check-and-set error, reads the
winner and fails naming it. Nothing but this key is ever written.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.upkeep.runbooks.plugins.module_utils import _vault

SCHEMA = "1"
FIELDS = ("schema", "state", "name", "holder", "run_id", "acquired_at", "expires_at", "released_at")


class LockHeld(Exception):
    """Another run holds the lock (or won the race for it)."""

    def __init__(self, record):
        super(LockHeld, self).__init__(describe(record))
        self.record = record


def describe(record):
    """'<holder> (run <run_id>) since <acquired_at>, expires <expires_at>'."""
    return "%s (run %s) since %s, expires %s" % (
        record.get("holder") or "an unnamed holder", record.get("run_id") or "?",
        record.get("acquired_at") or "?", record.get("expires_at") or "?")


def clean(data):
    """The lock fields of a KV data dict (nothing else is ever returned)."""
    return dict((key, str(data[key])) for key in FIELDS if data and data.get(key) not in (None, ""))


def is_held(record, now):
    """True while the record says held and has not expired at ``now``."""
    if not record or record.get("state") != "held":
        return False
    expires = _vault.parse_time(record.get("expires_at"))
    return expires is None or expires > now


class RunLock(object):
    """Acquire and release one named lock at ``path`` of a logged-in :class:`_vault.Vault`."""

    def __init__(self, vault, path, name, now=None):
        self.vault = vault
        self.path = path
        self.name = name
        self._now = now

    def now(self):
        return self._now() if self._now else datetime.datetime.now(datetime.timezone.utc)

    def read(self):
        """(record or {}, version to name in the next write)."""
        meta = self.vault.kv_metadata(self.path)
        version = meta.current_version if meta else 0
        if not version:
            return {}, 0
        secret = self.vault.kv_read(self.path, version)
        return clean(secret.data if secret and secret.data else {}), version

    def acquire(self, holder, run_id, ttl_seconds, check_mode=False, attempts=3):
        """Take the lock; returns (changed, record, previous). Raises LockHeld naming the holder."""
        for _attempt in range(attempts):
            previous, version = self.read()
            now = self.now()
            if is_held(previous, now):
                if previous.get("run_id") == run_id:
                    return False, previous, previous
                raise LockHeld(previous)
            record = dict(schema=SCHEMA, state="held", name=self.name, holder=holder, run_id=run_id,
                          acquired_at=_vault.utc_now_text(now),
                          expires_at=_vault.utc_now_text(now + datetime.timedelta(seconds=ttl_seconds)))
            if check_mode:
                return True, record, previous
            try:
                self.vault.kv_write(self.path, record, cas=version)
            except _vault.VaultCASError:
                continue  # another run wrote between our read and our write: read who
            return True, record, previous
        previous, version = self.read()
        raise LockHeld(previous or {"holder": "another run (the lock changed %d times while taking it)" % attempts})

    def release(self, run_id, force=False, check_mode=False):
        """Give the lock back; returns (changed, record, previous). Raises LockHeld when another run holds it."""
        previous, version = self.read()
        if not previous or previous.get("state") != "held":
            return False, previous, previous
        if previous.get("run_id") != run_id and not force:
            if is_held(previous, self.now()):
                raise LockHeld(previous)
            # expired lock of another run: releasing it changes nothing anyone relies on
            return False, previous, previous
        record = dict(previous, state="released", released_at=_vault.utc_now_text(self.now()))
        if check_mode:
            return True, record, previous
        try:
            self.vault.kv_write(self.path, record, cas=version)
        except _vault.VaultCASError:
            current, _version = self.read()
            raise LockHeld(current) from None
        return True, record, previous
