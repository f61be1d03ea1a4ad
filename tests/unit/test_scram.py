"""Unit tests for plugins/module_utils/_scram.py and the scram_verifier filter.

The expected verifiers were stored by a real PostgreSQL 15 (Debian bookworm) for ``CREATE ROLE ... PASSWORD``
with ``password_encryption = scram-sha-256``; computed here with the same salt, they must come out identical.
"""

from __future__ import annotations

import base64

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.upkeep.runbooks.plugins.filter.scram import scram_verifier as scram_filter
from ansible_collections.upkeep.runbooks.plugins.module_utils import _scram

STORED_BY_POSTGRESQL = {
    "pencil": "SCRAM-SHA-256$4096:YH9tWvf+6SrzmhnzsaGuOA==$bT7EHUdu5u1V+KQuX7vDzb35jose8D5AoJnv8n7+uzE="
              ":FhwfJ+Kq0HfzxaVcdTagcBOSguL20a/jYFb/KLT6Eso=",
    # SASLprep: the Roman numeral nine becomes "IX" (NFKC), the no-break space a space
    "I\u2168\u00a0x": "SCRAM-SHA-256$4096:uWZe18Mz5uXbQUlUHiEZVw==$q7aRVnb6fSTWpEsHinl635kDgU5mMxrr1xVpAZ2m2iU="
                      ":O/jvbA2zuWwg3w9hVII6xTxf0+sqfE+qKp0J/wTfaCc=",
}


def _salt(verifier):
    return base64.b64decode(verifier.split("$")[1].split(":")[1])


@pytest.mark.parametrize("password", sorted(STORED_BY_POSTGRESQL))
def test_verifier_is_what_postgresql_stores(password):
    expected = STORED_BY_POSTGRESQL[password]
    assert _scram.scram_verifier(password, salt=_salt(expected)) == expected


def test_a_fresh_salt_each_time():
    first, second = _scram.scram_verifier("pencil"), _scram.scram_verifier("pencil")
    assert first != second
    assert len(_salt(first)) == _scram.SCRAM_SALT_BYTES
    assert first.startswith("SCRAM-SHA-256$4096:")


def test_saslprep():
    assert _scram.saslprep("plain ASCII \x07 stays") == "plain ASCII \x07 stays"
    assert _scram.saslprep("a\u00a0b") == "a b"  # non-ASCII space maps to a space
    assert _scram.saslprep("a\u00adb") == "ab"  # soft hyphen maps to nothing
    assert _scram.saslprep("\u2168") == "IX"  # NFKC
    assert _scram.saslprep("a\u0007\u00e9") is None  # a control character is prohibited: raw bytes are hashed


def test_filter_gives_a_verifier_never_the_password():
    verifier = scram_filter("Drill-Passw0rd")
    assert "Drill-Passw0rd" not in verifier
    assert _scram.scram_verifier("Drill-Passw0rd", salt=_salt(verifier)) == verifier


@pytest.mark.parametrize("value", ["", None, 42, STORED_BY_POSTGRESQL["pencil"], "md5" + "0" * 32])
def test_filter_refuses_what_is_no_cleartext_password(value):
    with pytest.raises(AnsibleFilterError, match="scram_verifier"):
        scram_filter(value)


@pytest.mark.parametrize("password", ["md5-is-not-a-hash", "SCRAM-SHA-256 is a mechanism"])
def test_filter_takes_passwords_that_only_look_like_stored_ones(password):
    verifier = scram_filter(password)
    assert _scram.scram_verifier(password, salt=_salt(verifier)) == verifier
