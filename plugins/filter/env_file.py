# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter env_file_values: the KEY=VALUE pairs of env files, read as the application reads them.

Documentation lives next to this file (env_file_values.yml).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.upkeep.runbooks.plugins.module_utils._envfile import parse_env


def env_file_values(texts):
    """name -> value of one env file's text or a list of them (a later file wins)."""
    if isinstance(texts, str):
        texts = [texts]
    values = {}
    for number, text in enumerate(texts or [], 1):
        if not isinstance(text, str):
            raise AnsibleFilterError("env_file_values: item %d is not the text of an env file" % number)
        values.update(parse_env(text))
    return values


class FilterModule(object):
    def filters(self):
        return {"env_file_values": env_file_values}
