# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SCRAM-SHA-256 verifiers: what PostgreSQL stores for a password, computed where the password is.

A verifier sent in ``ALTER ROLE ... PASSWORD`` is stored as it is, so the cleartext never reaches the
server, its statement log or pg_stat_statements. Used by vault_pg_rotate and the ``scram_verifier`` filter.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import hmac
import secrets
import stringprep
import unicodedata

SCRAM_ITERATIONS = 4096
SCRAM_SALT_BYTES = 16


def saslprep(text):
    """``text`` prepared with SASLprep (RFC 4013) the way PostgreSQL and libpq do; None when prohibited.

    Pure ASCII is returned unchanged (PostgreSQL does the same). For anything else PostgreSQL and libpq
    fall back to the raw bytes when preparation fails, so a None here means: hash the raw password.
    """
    if all(ord(char) < 128 for char in text):
        return text
    mapped = "".join(" " if stringprep.in_table_c12(char) else char
                     for char in text if not stringprep.in_table_b1(char))
    normal = unicodedata.normalize("NFKC", mapped)
    if not normal:
        return None
    prohibited = (stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
                  stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6, stringprep.in_table_c7,
                  stringprep.in_table_c8, stringprep.in_table_c9, stringprep.in_table_a1)
    for char in normal:
        if any(check(char) for check in prohibited):
            return None
    rand_al = [stringprep.in_table_d1(char) for char in normal]
    if any(rand_al):
        if any(stringprep.in_table_d2(char) for char in normal):
            return None
        if not (rand_al[0] and rand_al[-1]):
            return None
    return normal


def scram_verifier(password, salt=None, iterations=SCRAM_ITERATIONS):
    """PostgreSQL's stored form of ``password`` for SCRAM-SHA-256 (what password_encryption would store).

    ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``, all base64. PostgreSQL accepts this in
    ``ALTER ROLE ... PASSWORD`` as already encrypted, so the cleartext never reaches the server.
    """
    salt = salt if salt is not None else secrets.token_bytes(SCRAM_SALT_BYTES)
    prepared = saslprep(password)
    raw = (prepared if prepared is not None else password).encode("utf-8")
    salted = hashlib.pbkdf2_hmac("sha256", raw, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data):
        return base64.b64encode(data).decode("ascii")

    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, b64(salt), b64(stored_key), b64(server_key))
