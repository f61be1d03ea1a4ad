# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter scram_verifier: a password as PostgreSQL stores it for SCRAM-SHA-256.

Documentation lives next to this file (scram_verifier.yml).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.errors import AnsibleFilterError
from ansible_collections.upkeep.runbooks.plugins.module_utils._scram import scram_verifier as _verifier

# What PostgreSQL takes as already encrypted (src/backend/libpq/crypt.c, get_password_type).
_STORED = re.compile(r"^(md5[0-9a-f]{32}|SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+)$")


def scram_verifier(password):
    """``SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>`` for ``password``, with a fresh salt."""
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("scram_verifier: the password must be a non-empty string")
    if _STORED.match(password):
        # PostgreSQL would store such a value as it is: hashing it again would give a password nobody has.
        raise AnsibleFilterError("scram_verifier: the value is already a stored password (md5 or SCRAM verifier)")
    return _verifier(password)


class FilterModule(object):
    def filters(self):
        return {"scram_verifier": scram_verifier}
