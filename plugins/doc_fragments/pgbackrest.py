# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Options shared by every pgBackRest module of upkeep.runbooks; mirrors
    # pgbackrest_argument_spec() in plugins/module_utils/_pgbackrest.py.
    DOCUMENTATION = r"""
options:
  stanza:
    description:
      - The pgBackRest stanza (the configuration section naming one PostgreSQL cluster).
    type: str
    required: true
  config:
    description:
      - The pgBackRest configuration file, passed as C(--config). Repository credentials (S3 keys,
        the cipher passphrase) belong in this file (mode 0640, owned by the PostgreSQL OS user) or in
        C(PGBACKREST_*) environment variables, never in task arguments.
    type: path
    default: /etc/pgbackrest/pgbackrest.conf
  repo:
    description:
      - Use only this repository (C(--repo)) for the commands that accept it; by default pgBackRest
        considers every configured repository in order.
    type: int
  pgbackrest_bin:
    description:
      - The pgbackrest program (a name looked up on PATH or a full path).
    type: path
    default: pgbackrest
  os_user:
    description:
      - Run pgbackrest (and, for modules that start PostgreSQL, pg_ctl and psql) as this OS user, the
        owner of the data directory and the repository, usually C(postgres).
      - Only possible when the module runs as root; without it the commands run as the module's own user
        (C(become_user=postgres) does the same).
    type: str
  command_timeout:
    description:
      - Seconds any single pgbackrest command may take before it is stopped and the task fails.
    type: int
    default: 1800
"""
