# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""merge_baselines: the plans of several staging hosts as one patch baseline.

Documentation: merge_baselines.yml next to this file; the format is plugins/module_utils/_baseline.py's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError
from ansible_collections.upkeep.runbooks.plugins.module_utils import _baseline


def _plain(value):
    """Ansible's lazy containers and tagged strings as the plain JSON types the format expects."""
    if isinstance(value, Mapping):
        return dict((str(key), _plain(item)) for key, item in value.items())
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(item) for item in value]
    if isinstance(value, str):
        return str(value)
    return value


def merge_baselines(baselines):
    """One sealed baseline from the baselines apt_patch_plan returned on several hosts."""
    if not isinstance(baselines, Sequence) or isinstance(baselines, (str, bytes)):
        raise AnsibleFilterError("merge_baselines: expected a list of baselines, got %r" % type(baselines).__name__)
    try:
        return _baseline.merge_baselines([_plain(doc) for doc in baselines])
    except _baseline.BaselineError as exc:
        raise AnsibleFilterError("Failed to merge the staging plans: %s" % exc) from None


class FilterModule(object):
    def filters(self):
        return {"merge_baselines": merge_baselines}
