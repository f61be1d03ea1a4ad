# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Env files of the application: ``KEY=VALUE`` lines read without shell semantics.

As the sample app reads them (lab/app/src/sampleapp/envfile.py): blank lines and lines whose first
non-blank character is ``#`` are skipped, the key is the text before the first ``=`` without its
surrounding blanks, the value everything after it, verbatim. Values are secrets: nothing here puts
one in a message. Used by vault_env_file (the file it replaces) and the ``env_file_values`` filter.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def parse_env(text):
    """name -> value of an env file's text (later lines win; lines without '=' ignored)."""
    values = {}
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#") or "=" not in raw:
            continue
        key, value = raw.split("=", 1)
        values[key.strip()] = value
    return values
