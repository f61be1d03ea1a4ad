# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options shared by every PostgreSQL module of upkeep.runbooks; mirrors
    # postgres_common_argument_spec() in plugins/module_utils/_postgres.py.
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server.
      - A value starting with C(/) is taken as a unix socket directory, as libpq does.
      - When neither O(login_host) nor O(login_unix_socket) is set, libpq's default local socket is used.
      - Falls back to the E(PGHOST) environment variable of the managed node.
    type: str
    aliases: [host]
  login_port:
    description:
      - TCP port of the server, or the port number in the unix socket's file name.
      - Falls back to E(PGPORT).
    type: int
    default: 5432
  login_user:
    description:
      - Role to log in as.
      - Falls back to E(PGUSER).
    type: str
    default: postgres
  login_password:
    description:
      - Password of O(login_user).
      - Handed to libpq as a connection keyword; it never appears in a connection string, on a command
        line, in a message or in a return value.
      - Falls back to E(PGPASSWORD). Without a password libpq still consults C(~/.pgpass).
    type: str
  login_unix_socket:
    description:
      - Directory holding the server's unix socket (for example C(/var/run/postgresql)).
      - Takes precedence over O(login_host).
    type: str
  login_db:
    description:
      - Database to connect to.
      - Falls back to E(PGDATABASE).
    type: str
    default: postgres
  ssl_mode:
    description:
      - Whether and how strictly TLS is negotiated, with libpq's semantics.
      - Use V(verify-full) with O(ca_cert) across untrusted networks.
      - Falls back to E(PGSSLMODE).
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - File with the certificate authorities the server certificate must be signed by
        (used with O(ssl_mode=verify-ca) and O(ssl_mode=verify-full)).
      - Falls back to E(PGSSLROOTCERT).
    type: path
    aliases: [ssl_rootcert]
  connect_timeout:
    description:
      - Seconds to wait for the connection to be established before giving up.
    type: int
    default: 10
  session_role:
    description:
      - Role to switch to with C(SET ROLE) right after logging in; O(login_user) must be a member of it.
    type: str
notes:
  - Connections identify themselves as C(application_name=upkeep.runbooks) in C(pg_stat_activity).
  - Failures read C(Failed to connect to PostgreSQL at host:port) followed by the cause
    (connection refused, timeout, authentication failed, database does not exist, permission denied, SSL).
requirements:
  - psycopg >= 3.1 on the managed node (Debian package C(python3-psycopg))
"""
