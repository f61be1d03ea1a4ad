#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: vault_pg_rotate
short_description: Rotate a PostgreSQL login's password with Vault KV version 2 as the source of truth
version_added: 0.3.0
description:
  - Rotates the password of a PostgreSQL login whose credential is kept in one Vault KV version 2 secret
    (fields C(username) and C(password); any other fields of the secret are carried over unchanged).
  - A rotation runs four steps. V(create) writes the new credential as a new version of the secret with
    check-and-set and records it as pending in the secret's custom metadata (C(upkeep_pending_version),
    C(upkeep_pending_step)). V(set) changes the login's password in PostgreSQL. V(test) logs in with the
    new credential over TCP at O(test_host) and at every O(verify_from) endpoint, retrying up to
    O(test_timeout). V(finish) points C(upkeep_current_version) at the new version, sets C(upkeep_rotated_at)
    and removes the pending keys. Consumers such as M(upkeep.runbooks.vault_env_file) read the version the
    pointer names, so they never see a credential PostgreSQL does not accept yet.
  - Any failure after the V(set) step rolls back, PostgreSQL first (the login gets the password of the
    version Vault calls current again), then Vault (the current data is written as a new version with
    check-and-set and declared current, so history is never deleted). The task then fails with the cause and
    RV(rolled_back=true).
  - When Vault cannot be reached to finish or roll back, PostgreSQL is still put back to the password of the
    version Vault calls current, and the pending version stays recorded. The next run finds it and resumes
    it (set, test and finish with the pending password), or rolls it back when it cannot be finished, and
    reports RV(resumed=true). A run that resumed does not start a second rotation.
  - A secret that was never rotated first gets C(upkeep_current_version) naming its current version, before the
    pending one is written.
  - With O(state=rolled_back), a pending rotation is not resumed but abandoned; the rollback writes on top of it.
  - The password is generated on the managed node with Python's C(secrets) module from letters and digits,
    so it is safe in env files and connection strings. PostgreSQL receives only a SCRAM-SHA-256 verifier
    computed on the managed node, never the cleartext, inside a transaction that turns statement logging off
    (C(SET LOCAL log_statement = 'none'), C(log_min_duration_statement = -1),
    C(log_min_error_statement = panic)) where the admin login may change those settings.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - upkeep.runbooks.postgres
  - upkeep.runbooks.vault
attributes:
  check_mode:
    support: full
    description:
      - Check mode reads the secret and its metadata from Vault, connects to PostgreSQL, runs the preflight
        checks (logins exist and may log in, shared owner group for V(alternating), primary server,
        privileges of the admin login) and reports what a real run would do in RV(rotated), RV(resumed),
        RV(steps) and RV(msg). It writes nothing to Vault or PostgreSQL.
  diff_mode:
    support: none
    description:
      - The only state is a password, which is never shown; RV(kv_version) and RV(previous_version) say what changed.
options:
  path:
    description:
      - Path of the secret below O(mount_point), for example C(sampleapp/database).
      - The secret must exist already and hold the login's current C(username) and C(password); that
        version is what a failed rotation rolls back to. Seed it once when the login is created.
    type: str
    required: true
  strategy:
    description:
      - V(single) changes the password of O(username) itself. Between the V(set) step and the restart of the
        application with the new credential there is a short window. Connections the application already
        holds keep working (PostgreSQL checks the password only when a session starts), but new connections
        it opens with the old password are refused until it has been restarted with the new one. Restart the
        application right after the task (the C(credential_rotation) role does) or use V(alternating).
      - V(alternating) keeps two logins of one owner group, for example C(app_blue) and C(app_green). Each
        run gives the one the current version does not name (the inactive one) a new password, tests it and
        then makes it current; the previously active login keeps its password, which stays valid until the
        next run rotates it. Never both logins change in one run. Restart every client with the new current
        credential before the next rotation.
    type: str
    choices: [single, alternating]
    default: single
  username:
    description:
      - The login whose password is rotated with O(strategy=single) (required there).
      - When the secret already names a different C(username), the task fails instead of rotating another login.
    type: str
  usernames:
    description:
      - The two logins of O(strategy=alternating) (required there), in any order.
      - Both must exist, be allowed to log in and be members of at least one common role (the owner group
        that owns the application's objects).
      - The current version of the secret must name one of them.
    type: list
    elements: str
  password_length:
    description:
      - Length of the generated password (letters and digits only), at least 16.
    type: int
    default: 32
  test_host:
    description:
      - Host name or address the V(test) step logs in at over TCP with the new credential.
      - Defaults to O(login_host) when that is a host name or address, else to C(127.0.0.1).
      - A unix socket path is refused, because the test has to go through password authentication.
    type: str
  test_port:
    description: Port for the V(test) step. Defaults to O(login_port).
    type: int
  test_db:
    description: Database the V(test) step connects to. Defaults to O(login_db).
    type: str
  test_timeout:
    description:
      - Seconds the V(test) step keeps retrying a login that fails (a server restarting, a standby that has not
        replayed the change yet) before it gives up and the rotation is rolled back.
      - Each attempt waits at most 5 seconds for the server (libpq C(connect_timeout)).
    type: int
    default: 10
  verify_from:
    description:
      - Further endpoints the new credential must log in at over TCP before it is declared current, for example
        a standby that has to replay the change, a connection pooler, or the service address the clients use.
      - Each is tested like O(test_host), with the same O(ssl_mode) and O(ca_cert), retried up to O(test_timeout).
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description: Host name or address.
        type: str
        required: true
      port:
        description: Port. Defaults to O(test_port).
        type: int
      dbname:
        description: Database. Defaults to O(test_db).
        type: str
  state:
    description:
      - V(rotated) rotates the password when it is due (see O(min_age) and O(force)), or finishes a pending
        rotation.
      - V(rolled_back) makes the credential of O(rollback_version) current again, through the same four steps.
        Its data is written as a new version, its password is set in PostgreSQL, tested, and the pointer moves
        to the new version. Nothing changes when the current version already holds that credential and no
        rotation is pending.
    type: str
    choices: [rotated, rolled_back]
    default: rotated
  rollback_version:
    description:
      - With O(state=rolled_back), the version whose credential becomes current again; normally the
        RV(previous_version) a rotation returned.
    type: int
  vault_ca_cert:
    description:
      - File with the certificate authorities the Vault server certificate must be signed by.
      - This module also talks to PostgreSQL, whose option O(ca_cert) is the PostgreSQL server's CA, so the Vault
        CA has its own name here.
      - Falls back to E(VAULT_CACERT).
    type: path
  ca_cert:
    description:
      - File with the certificate authorities the PostgreSQL server certificate must be signed by (used with
        O(ssl_mode=verify-ca) and O(ssl_mode=verify-full)), for the admin connection and the login tests.
      - The Vault server's CA is O(vault_ca_cert) in this module.
      - Falls back to E(PGSSLROOTCERT).
    type: path
    aliases: [ssl_rootcert]
  min_age:
    description:
      - The rotation is due only when the last one finished longer ago than this (custom metadata
        C(upkeep_rotated_at)), or the secret has never been rotated. Seconds, or a number with C(s), C(m),
        C(h), C(d) or C(w), such as V(20d).
      - V(0) rotates on every run. Use a value such as V(1h) so that running a playbook twice rotates once.
    type: str
    default: "0"
  force:
    description: Rotate even when O(min_age) says the rotation is not due.
    type: bool
    default: false
notes:
  - The connection options (O(login_host), O(login_unix_socket) ...) are the admin connection, normally the
    local socket as C(postgres) on the primary; the login that is rotated is never used for it. The admin login
    needs C(SUPERUSER) or C(CREATEROLE) (superuser to rotate a superuser, and to turn statement logging off).
  - The task reports C(changed=true) whenever it wrote to Vault or PostgreSQL, including a rollback.
  - Two runs at the same time cannot both win; the check-and-set write of the V(create) step lets one through and
    the other fails with I(another writer changed the secret) before it touched PostgreSQL.
  - A version written to the secret by someone else after the current one, and not yet made current, counts as
    pending, and the next run sets, tests and finishes it (or rolls it back).
  - Module defaults for the group C(group/upkeep.runbooks.vault) that set C(ca_cert) reach this module as the
    PostgreSQL CA; set O(vault_ca_cert) (or E(VAULT_CACERT)) for Vault.
  - No password (generated, current or previous) is ever returned, logged or put into a message.
seealso:
  - module: upkeep.runbooks.vault_env_file
  - module: upkeep.runbooks.vault_secret_rotate
  - name: Vault KV version 2 secrets engine
    description: Versions, check-and-set and custom metadata.
    link: https://developer.hashicorp.com/vault/docs/secrets/kv/kv-v2
  - name: ALTER ROLE
    description: Changing a role's password, including pre-encrypted SCRAM-SHA-256 verifiers.
    link: https://www.postgresql.org/docs/current/sql-alterrole.html
"""

EXAMPLES = r"""
- name: Rotate the reporting login (single strategy), at most once a day
  upkeep.runbooks.vault_pg_rotate:
    url: http://127.0.0.32:8200
    path: sampleapp/report_database
    username: sampleapp_report
    min_age: 1d
    login_unix_socket: /var/run/postgresql
  become: true
  become_user: postgres
  environment:
    VAULT_TOKEN: "{{ vault_rotation_token }}"
  no_log: true
  register: report_rotation

- name: Give the inactive one of blue/green a new password, test it here and on the standby, then flip
  upkeep.runbooks.vault_pg_rotate:
    path: sampleapp/database
    strategy: alternating
    usernames: [sampleapp_blue, sampleapp_green]
    test_db: sampleapp
    verify_from:
      - host: 127.0.0.12
      - host: pgbouncer.internal
        port: 6432
    auth_method: approle
    role_id: "{{ vault_role_id }}"
    secret_id: "{{ vault_secret_id }}"
    login_unix_socket: /var/run/postgresql
  become: true
  become_user: postgres
  register: app_rotation

- name: Go back to the credential that was current before (after the app failed its health check)
  upkeep.runbooks.vault_pg_rotate:
    path: sampleapp/database
    strategy: alternating
    usernames: [sampleapp_blue, sampleapp_green]
    state: rolled_back
    rollback_version: "{{ app_rotation.previous_version }}"
    login_unix_socket: /var/run/postgresql
  become: true
  become_user: postgres
  when: app_rotation.rotated
"""

RETURN = r"""
rotated:
  description:
    - Whether a new credential became current in this run (a fresh rotation or a resumed one). In check mode,
      whether it would.
  returned: always
  type: bool
  sample: true
resumed:
  description: Whether the run found a pending rotation of an earlier, interrupted run and finished or rolled it back.
  returned: always
  type: bool
  sample: false
rolled_back:
  description:
    - Whether the run rolled a rotation back, after a failure or because O(state=rolled_back). On failure, true
      means PostgreSQL has the password of the version Vault calls current again.
  returned: always
  type: bool
  sample: false
strategy:
  description: The strategy used.
  returned: always
  type: str
  sample: alternating
active_username:
  description: The login the current version names after the run (the one clients should use).
  returned: always
  type: str
  sample: sampleapp_green
previous_username:
  description: The login the current version named before the run.
  returned: always
  type: str
  sample: sampleapp_blue
kv_version:
  description:
    - The version of the secret that is current after the run (in check mode, the one that would be).
  returned: always
  type: int
  sample: 8
previous_version:
  description: The version that was current before the run; pass it to O(rollback_version) to go back.
  returned: always
  type: int
  sample: 7
pending_version:
  description: A pending version still recorded in Vault after the run (for the next run to resume); null when none.
  returned: always
  type: int
  sample: null
steps:
  description: The four steps in order, with what happened in each.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: C(create), C(set), C(test) or C(finish).
      type: str
      sample: test
    status:
      description: C(done), C(skipped), C(failed) or C(rolled_back) (done, then undone by the rollback).
      type: str
      sample: done
    msg:
      description: What was done, in a sentence.
      type: str
      sample: sampleapp_green logged in at 127.0.0.1:5432/sampleapp and 127.0.0.12:5432/sampleapp
  sample:
    - {name: create, status: done, msg: "wrote version 8 of secret/sampleapp/database (check-and-set on 7) as pending"}
vault_reason:
  description:
    - On a failure that came from Vault, its kind (forbidden, not_found, cas_mismatch, sealed, unreachable, tls,
      timeout ...), for playbooks that react to it.
  returned: on failures that came from Vault
  type: str
  sample: sealed
msg:
  description: The outcome in a sentence.
  returned: always
  type: str
  sample: rotated the password of sampleapp_green; version 8 of secret/sampleapp/database is current
"""

import datetime  # noqa: E402 - Ansible modules import after their documentation
import secrets  # noqa: E402
import string  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, env_fallback  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils import _postgres, _vault  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._scram import scram_verifier  # noqa: E402

STEPS = ("create", "set", "test", "finish")
PASSWORD_ALPHABET = string.ascii_letters + string.digits
MIN_PASSWORD_LENGTH = 16
MAX_PASSWORD_LENGTH = 1024
TEST_CONNECT_TIMEOUT = 5
STRATEGY_KEY = "upkeep_strategy"
QUIET_SETTINGS = (
    "SET LOCAL log_statement = 'none'",
    "SET LOCAL log_min_duration_statement = -1",
    "SET LOCAL log_min_error_statement = panic",
)

SQL_ROLE = """
SELECT rolname::text AS name, rolcanlogin AS can_login, rolsuper AS superuser
FROM pg_roles WHERE rolname = %s
"""
SQL_ADMIN = """
SELECT rolname::text AS name, rolsuper AS superuser, rolcreaterole AS createrole
FROM pg_roles WHERE rolname = current_user
"""
SQL_COMMON_GROUPS = """
SELECT DISTINCT g.rolname::text AS name
FROM pg_auth_members AS m1
JOIN pg_auth_members AS m2 ON m2.roleid = m1.roleid
JOIN pg_roles AS a ON a.oid = m1.member
JOIN pg_roles AS b ON b.oid = m2.member
JOIN pg_roles AS g ON g.oid = m1.roleid
WHERE a.rolname = %s AND b.rolname = %s
ORDER BY 1
"""
SQL_SESSIONS = "SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = %s"


class StepFailed(Exception):
    """A step failed; ``message`` is readable and holds no secret.

    ``unchanged`` is true when PostgreSQL reported the error for the statement itself, so the password
    change was certainly not committed.
    """

    def __init__(self, message, unchanged=False):
        super(StepFailed, self).__init__(message)
        self.message = message
        self.unchanged = unchanged


# --------------------------------------------------------------------------------------
# passwords


def generate_password(length):
    """A random password of letters and digits (safe in env files and conninfo strings)."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for dummy in range(length))


def without_failed_prefix(message):
    """``Failed to write X: cause`` -> ``cannot write X: cause`` for use inside a longer message."""
    if message.startswith("Failed to "):
        return "cannot " + message[len("Failed to "):]
    return message


# --------------------------------------------------------------------------------------
# PostgreSQL


class Postgres(object):
    """The admin connection: preflight reads and the password change (reconnects while a server restarts)."""

    def __init__(self, params, retry_seconds):
        self.params = params
        self.retry_seconds = max(0, retry_seconds)
        self.conn = None
        self.quiet = None  # whether statement logging could be turned off for the password change

    def connect(self):
        if self.conn is None:
            self.conn = _postgres.open_connection(self.params, autocommit=True)
        return self.conn

    def close(self):
        _postgres.close_quietly(self.conn)
        self.conn = None

    def where(self):
        return _postgres.target(self.params)

    def role(self, name):
        return _postgres.query_one(self.connect(), SQL_ROLE, (name,))

    def admin(self):
        return _postgres.query_one(self.connect(), SQL_ADMIN)

    def in_recovery(self):
        return _postgres.is_in_recovery(self.connect())

    def common_groups(self, first, second):
        rows = _postgres.query_all(self.connect(), SQL_COMMON_GROUPS, (first, second))
        return [row["name"] for row in rows]

    def sessions(self, name):
        row = _postgres.query_one(self.connect(), SQL_SESSIONS, (name,))
        return int(row["n"]) if row else 0

    def _set_once(self, name, verifier):
        conn = self.connect()
        statement = _postgres.sql("ALTER ROLE {0} PASSWORD {1}").format(
            _postgres.identifier(name), _postgres.pg_sql.Literal(verifier))
        with conn.transaction():
            quiet = True
            for setting in QUIET_SETTINGS:
                try:
                    with conn.transaction():
                        _postgres.execute(conn, setting)
                except _postgres.PostgresError as exc:
                    if exc.sqlstate != "42501":  # anything but "permission denied" is a real problem
                        raise
                    quiet = False
            # Durable before Vault records the step, whatever synchronous_commit the server defaults to.
            _postgres.execute(conn, "SET LOCAL synchronous_commit = on")
            _postgres.execute(conn, statement)
        self.quiet = quiet

    def set_password(self, name, password):
        """Give ``name`` the password (as a SCRAM verifier); retries through a restart. Raises StepFailed."""
        verifier = scram_verifier(password)
        deadline = time.monotonic() + self.retry_seconds
        while True:
            try:
                self._set_once(name, verifier)
                return
            except (_postgres.PostgresError, OSError) as exc:
                cause = exc.message if isinstance(exc, _postgres.PostgresError) else str(exc)
                cause = cause.replace(verifier, "********").replace(password, "********")
                sqlstate = getattr(exc, "sqlstate", None)
                self.close()
                retryable = sqlstate is None or sqlstate.startswith(("08", "57"))
                if not retryable or time.monotonic() >= deadline:
                    raise StepFailed("cannot change the password of %s on PostgreSQL at %s: %s"
                                     % (name, self.where(), without_failed_prefix(cause)),
                                     unchanged=not retryable) from None
                time.sleep(0.5)
            except Exception as exc:  # psycopg errors that escaped _postgres (e.g. at COMMIT)
                self.close()
                if time.monotonic() >= deadline:
                    cause = _postgres.describe_error(exc, secrets=[password, verifier])
                    raise StepFailed("cannot change the password of %s on PostgreSQL at %s: %s"
                                     % (name, self.where(), cause)) from None
                time.sleep(0.5)


def login_test(params, endpoints, username, password, timeout):
    """Log in as ``username`` at every endpoint over TCP, each retried up to ``timeout`` seconds.

    Returns the endpoints as ``host:port/db`` texts; raises StepFailed naming the first that refused.
    """
    done = []
    for endpoint in endpoints:
        conn_params = dict(
            login_host=endpoint["host"],
            login_port=endpoint["port"],
            login_user=username,
            login_password=password,
            login_db=endpoint["dbname"],
            ssl_mode=params.get("ssl_mode"),
            ca_cert=params.get("ca_cert"),
            connect_timeout=max(2, min(TEST_CONNECT_TIMEOUT, int(timeout) or TEST_CONNECT_TIMEOUT)),
        )
        label = "%s:%s/%s" % (endpoint["host"], endpoint["port"], endpoint["dbname"])
        deadline = time.monotonic() + max(0, timeout)
        attempts = 0
        while True:
            attempts += 1
            try:
                conn = _postgres.open_connection(conn_params, autocommit=True)
            except _postgres.PostgresError as exc:
                if time.monotonic() >= deadline:
                    raise StepFailed("%s could not log in at %s with the new password (%d %s in %ss): %s" % (
                        username, label, attempts, "attempt" if attempts == 1 else "attempts", timeout,
                        without_failed_prefix(exc.message.replace(password, "********")))) from None
                time.sleep(0.5)
                continue
            try:
                row = _postgres.query_one(conn, "SELECT session_user::text AS name")
            except _postgres.PostgresError as exc:
                raise StepFailed("%s logged in at %s but could not run a query: %s"
                                 % (username, label, exc.message)) from None
            finally:
                _postgres.close_quietly(conn)
            if not row or row.get("name") != username:
                raise StepFailed("logging in at %s as %s gave a session of %s" % (
                    label, username, (row or {}).get("name"))) from None
            done.append(label)
            break
    return done


# --------------------------------------------------------------------------------------
# the rotation


class Rotation(object):
    """One run of the module: reads, decides, runs the steps, rolls back, builds the result."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.path = self.params["path"].strip("/")
        self.strategy = self.params["strategy"]
        self.vault = None
        self.pg = None
        self.label = self.path
        self.steps = [{"name": name, "status": "skipped", "msg": ""} for name in STEPS]
        self.result = dict(changed=False, rotated=False, resumed=False, rolled_back=False, strategy=self.strategy,
                           active_username=None, previous_username=None, kv_version=None, previous_version=None,
                           pending_version=None, steps=self.steps, msg="")
        self.meta = None
        self.pointer = None
        self.current = None
        self.pending_written = None

    # -- bookkeeping ----------------------------------------------------------------
    def step(self, name, status, msg):
        for entry in self.steps:
            if entry["name"] == name:
                entry["status"] = status
                entry["msg"] = msg

    def status(self, name):
        return [entry["status"] for entry in self.steps if entry["name"] == name][0]

    def fail(self, msg, **extra):
        self.result.update(extra)
        self.result["msg"] = msg
        self.close()
        self.module.fail_json(**self.result)

    def exit(self, msg):
        self.result["msg"] = msg
        self.close()
        self.module.exit_json(**self.result)

    def close(self):
        if self.pg is not None:
            self.pg.close()
        if self.vault is not None:
            self.vault.close()

    def hide(self, *values):
        for value in values:
            if value:
                self.module.no_log_values.add(value)

    def what(self):
        user = self.params.get("username") if self.strategy == "single" else "/".join(self.params["usernames"])
        return "Failed to rotate the password of %s (%s)" % (user, self.label)

    # -- options ------------------------------------------------------------------
    def endpoints(self):
        params = self.params
        login_host = params.get("login_host")
        default_host = login_host if login_host and not login_host.startswith("/") and \
            not params.get("login_unix_socket") else "127.0.0.1"
        host = params.get("test_host") or default_host
        port = params.get("test_port") or params.get("login_port") or 5432
        dbname = params.get("test_db") or params.get("login_db") or "postgres"
        found = [dict(host=host, port=port, dbname=dbname)]
        for entry in params.get("verify_from") or []:
            found.append(dict(host=entry["host"], port=entry.get("port") or port, dbname=entry.get("dbname") or dbname))
        for entry in found:
            if not entry["host"] or entry["host"].startswith("/"):
                self.fail("%s: the login test goes over TCP, so test_host and verify_from hosts must be host names "
                          "or addresses, not socket paths (got %s)" % (self.what(), entry["host"]))
        return found

    def validate(self):
        params = self.params
        if self.strategy == "single":
            if not params.get("username"):
                self.fail("Failed to rotate a password in %s: strategy=single needs username" % self.path)
            if params.get("usernames"):
                self.fail("%s: usernames belongs to strategy=alternating; use username with strategy=single"
                          % self.what())
        else:
            names = params.get("usernames") or []
            if len(names) != 2 or len(set(names)) != 2 or not all(names):
                self.fail("Failed to rotate a password in %s: strategy=alternating needs usernames with exactly "
                          "two different logins" % self.path)
            if params.get("username"):
                self.fail("%s: username belongs to strategy=single; list both logins in usernames" % self.what())
        if not MIN_PASSWORD_LENGTH <= params["password_length"] <= MAX_PASSWORD_LENGTH:
            self.fail("%s: password_length must be between %d and %d, got %d" % (
                self.what(), MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH, params["password_length"]))
        if params["test_timeout"] < 0:
            self.fail("%s: test_timeout cannot be negative" % self.what())
        if params["state"] == "rolled_back" and not params.get("rollback_version"):
            self.fail("%s: state=rolled_back needs rollback_version (the previous_version a rotation returned)"
                      % self.what())
        try:
            self.min_age = _vault.duration_seconds(params["min_age"])
        except ValueError as exc:
            self.fail("%s: min_age: %s" % (self.what(), exc))
        self.test_endpoints = self.endpoints()

    def logins(self):
        if self.strategy == "single":
            return [self.params["username"]]
        return list(self.params["usernames"])

    # -- Vault reads ----------------------------------------------------------------
    def open_vault(self):
        _vault.ensure_hvac(self.module)
        params = dict(self.params)
        params["ca_cert"] = self.params.get("vault_ca_cert")
        try:
            self.vault = _vault.open_vault(params)
        except _vault.VaultError as exc:
            self.fail(exc.message, vault_reason=exc.reason)
        self.label = self.vault.describe(self.path)

    def vault_call(self, what, func, *args, **kwargs):
        """Run a Vault read before anything changed; fail the task readably on any error."""
        try:
            return func(*args, **kwargs)
        except _vault.VaultError as exc:
            self.fail("%s: %s" % (self.what(), without_failed_prefix(exc.message)), vault_reason=exc.reason)

    def read_state(self):
        meta = self.vault_call("read", self.vault.kv_metadata, self.path)
        if meta is None or not meta.current_version:
            self.fail("%s: the secret does not exist; seed it with the login's current username and password "
                      "first (it is what a failed rotation rolls back to)" % self.what())
        self.meta = meta
        self.pointer = self.current_pointer(meta)
        self.current = self.read_credential(self.pointer, "current")
        self.result.update(previous_version=self.pointer, kv_version=self.pointer,
                           previous_username=self.current.data["username"],
                           active_username=self.current.data["username"])

    @staticmethod
    def current_pointer(meta):
        """The version Vault calls current. Like _vault.current_version, but a secret never rotated before
        (no pointer yet) whose latest version is the pending one of an interrupted run has the version
        before it as current."""
        pointed = meta.int_value(_vault.CURRENT_VERSION_KEY)
        if pointed and meta.is_live(pointed):
            return pointed
        pending = meta.int_value(_vault.PENDING_VERSION_KEY)
        if pending and pending == meta.current_version:
            older = [version for version in meta.versions if version < pending and meta.is_live(version)]
            if older:
                return max(older)
        return meta.current_version

    def read_credential(self, version, role):
        secret = self.vault_call("read", self.vault.kv_read, self.path, version)
        if secret is None or secret.data is None:
            state = "deleted or destroyed" if secret is not None else "missing"
            self.fail("%s: version %s (%s) is %s" % (self.what(), version, role, state))
        data = secret.data
        if not isinstance(data, dict) or not data.get("username") or not isinstance(data.get("password"), str) \
                or not data.get("password"):
            self.fail("%s: version %s (%s) has no username and password fields" % (self.what(), version, role))
        self.hide(data["password"])
        return secret

    def pending_version(self):
        """The version a rotation wrote but did not finish, or None."""
        meta = self.meta
        named = meta.int_value(_vault.PENDING_VERSION_KEY)
        if named and named > self.pointer and meta.is_live(named):
            return named
        if meta.current_version > self.pointer and meta.is_live(meta.current_version):
            return meta.current_version
        return None

    def restore_credential(self, username):
        """(version, password) PostgreSQL should get back for ``username``: the newest version up to the
        current one that names it. None when Vault has no earlier password of that login."""
        for version in sorted((v for v in self.meta.versions if v <= self.pointer), reverse=True):
            if version == self.pointer:
                secret = self.current
            elif not self.meta.is_live(version):
                continue
            else:
                try:
                    secret = self.vault.kv_read(self.path, version)
                except _vault.VaultError:
                    continue
            data = (secret.data if secret is not None else None) or {}
            if data.get("username") == username and isinstance(data.get("password"), str) and data["password"]:
                self.hide(data["password"])
                return version, data["password"]
        return None

    # -- PostgreSQL preflight ---------------------------------------------------------
    def preflight(self):
        _postgres.ensure_psycopg(self.module)
        self.pg = Postgres(self.params, self.params["test_timeout"])
        try:
            self.pg.connect()
            if self.pg.in_recovery():
                self.fail("%s: PostgreSQL at %s is a standby; run the task against the primary (list standbys in "
                          "verify_from)" % (self.what(), self.pg.where()))
            admin = self.pg.admin() or {}
            roles = {}
            for name in self.logins():
                role = self.pg.role(name)
                if role is None:
                    self.fail("%s: role '%s' does not exist on PostgreSQL at %s" % (self.what(), name, self.pg.where()))
                if not role["can_login"]:
                    self.fail("%s: role '%s' cannot log in (NOLOGIN)" % (self.what(), name))
                if role["superuser"] and not admin.get("superuser"):
                    self.fail("%s: '%s' is a superuser and the admin login '%s' is not" % (
                        self.what(), name, admin.get("name")))
                roles[name] = role
            if not (admin.get("superuser") or admin.get("createrole")):
                self.fail("%s: the admin login '%s' needs SUPERUSER or CREATEROLE to change passwords" % (
                    self.what(), admin.get("name")))
            if self.strategy == "alternating":
                first, second = self.logins()
                groups = self.pg.common_groups(first, second)
                if not groups:
                    self.fail("%s: '%s' and '%s' are not members of a common owner group, so objects one creates "
                              "would not be usable by the other" % (self.what(), first, second))
        except _postgres.PostgresError as exc:
            self.fail("%s: preflight on PostgreSQL failed: %s" % (self.what(), without_failed_prefix(exc.message)))

    def check_names(self, secret, role):
        """The login ``secret`` names must be one this task manages."""
        name = secret.data["username"]
        if name not in self.logins():
            expected = "username %s" % self.logins()[0] if self.strategy == "single" else \
                "usernames %s" % ", ".join(self.logins())
            self.fail("%s: the %s version %s names the login '%s', not %s; refusing to touch another login" % (
                self.what(), role, secret.version, name, expected))

    # -- the steps ------------------------------------------------------------------
    def mark(self, step, meta_changes):
        """Record progress in the custom metadata (read-modify-write right after the data write)."""
        try:
            self.vault.kv_update_custom_metadata(self.path, meta_changes)
        except _vault.VaultError as exc:
            raise StepFailed("cannot record the %s step in Vault: %s"
                             % (step, without_failed_prefix(exc.message))) from None

    def create(self, data):
        """CAS write of the pending version + the pending keys. Fails the task (nothing touched) on error."""
        latest = self.meta.current_version
        if self.meta.int_value(_vault.CURRENT_VERSION_KEY) != self.pointer:
            # Name the current version before a newer one exists, so readers of the pointer never take
            # the pending version for the current one. Custom metadata has no check-and-set, and this
            # run read it a while ago (preflight logs in to PostgreSQL): a concurrent run may have
            # rotated since. Writing the old map back would point Vault at a password PostgreSQL no
            # longer has, so read it again and stop if another rotation left its marks. (A plain writer
            # that only added a version leaves the map alone: version ``self.pointer`` is still what
            # PostgreSQL has, and the check-and-set below refuses this run.)
            try:
                fresh = self.vault.kv_metadata(self.path)
                if fresh is None or fresh.custom_metadata != self.meta.custom_metadata:
                    self.step("create", "failed", "another writer changed the secret since it was read")
                    self.fail("%s: another writer changed %s since it was read (its newest version is now %s); "
                              "PostgreSQL was not touched, run again to pick up the new state"
                              % (self.what(), self.label, fresh.current_version if fresh else "gone"))
                self.meta = fresh
                self.vault.kv_update_custom_metadata(self.path, {_vault.CURRENT_VERSION_KEY: self.pointer},
                                                     meta=self.meta)
            except _vault.VaultError as exc:
                self.step("create", "failed", without_failed_prefix(exc.message))
                self.fail("%s: %s; nothing was changed" % (self.what(), without_failed_prefix(exc.message)),
                          vault_reason=exc.reason)
        try:
            version = self.vault.kv_write(self.path, data, cas=latest)
        except _vault.VaultCASError:
            self.step("create", "failed", "check-and-set on version %d refused: another writer changed the secret"
                      % latest)
            self.fail("%s: another writer changed %s since it was read (check-and-set on version %d refused); "
                      "PostgreSQL was not touched, run again to pick up the new state"
                      % (self.what(), self.label, latest))
        except _vault.VaultError as exc:
            self.step("create", "failed", without_failed_prefix(exc.message))
            self.fail("%s: %s; PostgreSQL was not touched" % (self.what(), without_failed_prefix(exc.message)),
                      vault_reason=exc.reason)
        self.pending_written = version
        self.result["changed"] = True
        try:
            self.mark("create", {_vault.PENDING_VERSION_KEY: version, _vault.PENDING_STEP_KEY: "created",
                                 STRATEGY_KEY: self.strategy})
        except StepFailed as exc:
            self.step("create", "failed", "wrote version %d, %s" % (version, exc.message))
            self.result["pending_version"] = version
            self.fail("%s: wrote version %d but %s; PostgreSQL was not touched and the next run resumes that "
                      "version" % (self.what(), version, exc.message))
        self.step("create", "done", "wrote version %d of %s (check-and-set on %d) as pending" % (
            version, self.label, latest))
        return version

    def run_steps(self, version, username, password, rotation=True):
        """set -> test -> finish for ``version`` (data already in Vault); rolls back on any failure."""
        endpoints = self.test_endpoints
        current = "set"
        try:
            self.result["changed"] = True
            self.pg.set_password(username, password)
            quiet = "statement logging off" if self.pg.quiet else \
                "the admin login may not turn statement logging off, only the verifier was sent"
            self.step("set", "done", "password of %s changed (SCRAM-SHA-256 verifier computed on the node, %s)" % (
                username, quiet))
            self.mark("set", {_vault.PENDING_VERSION_KEY: version, _vault.PENDING_STEP_KEY: "set"})
            current = "test"
            done = login_test(self.params, endpoints, username, password, self.params["test_timeout"])
            self.step("test", "done", "%s logged in at %s" % (username, " and ".join(done)))
            self.mark("test", {_vault.PENDING_STEP_KEY: "tested"})
            current = "finish"
            self.finish(version, rotation)
        except StepFailed as exc:
            before = self.steps[STEPS.index(current)]
            if before["status"] == "done":  # the step itself worked, recording it in Vault did not
                self.step(current, "failed", "%s; then %s" % (before["msg"], exc.message))
            else:
                self.step(current, "failed", exc.message)
            self.rollback(version, username, current, exc.message, pg_unchanged=exc.unchanged)

    def finish(self, version, rotation):
        try:
            meta = self.vault.kv_metadata(self.path)
        except _vault.VaultError as exc:
            raise StepFailed("cannot read the metadata of %s to finish: %s" % (
                self.label, without_failed_prefix(exc.message))) from None
        if meta is None or meta.current_version != version:
            raise StepFailed("another writer added version %s to %s during the rotation" % (
                meta.current_version if meta else "?", self.label)) from None
        changes = {_vault.CURRENT_VERSION_KEY: version, _vault.PENDING_VERSION_KEY: None,
                   _vault.PENDING_STEP_KEY: None, STRATEGY_KEY: self.strategy}
        if rotation:
            changes[_vault.ROTATED_AT_KEY] = _vault.utc_now_text()
        try:
            self.vault.kv_update_custom_metadata(self.path, changes, meta=meta)
        except _vault.VaultError as exc:
            raise StepFailed("cannot make version %d current: %s"
                             % (version, without_failed_prefix(exc.message))) from None
        self.step("finish", "done", "version %d of %s is current" % (version, self.label))
        self.result["kv_version"] = version
        self.result["pending_version"] = None

    def rollback(self, version, username, failed_step, cause, pg_unchanged=False):
        """After a failure at or after set: PostgreSQL back to the current version, then Vault. Always fails."""
        for name in STEPS:
            if self.status(name) == "done" and name in ("set", "test"):
                self.step(name, "rolled_back", self.steps[STEPS.index(name)]["msg"] + "; rolled back")
        head = "%s: the %s step failed: %s" % (self.what(), failed_step, cause)
        restore = self.restore_credential(username)
        if pg_unchanged:
            pg_note = "PostgreSQL refused the change, so %s keeps its password" % username
        elif restore is None:
            pg_note = ("Vault holds no earlier password of %s, which keeps the abandoned one (it is not the current "
                       "login)" % username)
        else:
            try:
                self.pg.set_password(username, restore[1])
                pg_note = "PostgreSQL has the password of version %d for %s again" % (restore[0], username)
            except StepFailed as exc:
                self.result["pending_version"] = version
                self.fail("%s; putting the previous password back failed too: %s. Vault still records pending "
                          "version %d; run the task again once PostgreSQL is reachable: it finishes or rolls back "
                          "that version" % (head, exc.message, version))
        self.result["rolled_back"] = True
        # Vault: abandon the pending version by writing the current data again as the newest version.
        try:
            meta = self.vault.kv_metadata(self.path)
            if meta is None:
                raise StepFailed("the secret disappeared") from None
            if meta.current_version != version:
                self.fail("%s; rolled back: %s. Another writer added version %d to %s meanwhile, so Vault is left as "
                          "it is" % (head, pg_note, meta.current_version, self.label))
            new = self.vault.kv_write(self.path, dict(self.current.data), cas=version)
            self.vault.kv_update_custom_metadata(self.path, {
                _vault.CURRENT_VERSION_KEY: new, _vault.PENDING_VERSION_KEY: None, _vault.PENDING_STEP_KEY: None,
            }, meta=meta)
        except (_vault.VaultError, StepFailed) as exc:
            self.result["pending_version"] = version
            self.fail("%s; rolled back: %s, which agrees with version %d that Vault calls current. Vault could not "
                      "be updated (%s): it still records pending version %d, which the next run resumes or rolls "
                      "back" % (head, pg_note, self.pointer, without_failed_prefix(exc.message), version))
        self.result["kv_version"] = new
        self.result["active_username"] = self.current.data["username"]
        self.step("create", "rolled_back", "wrote version %d (the data of version %d) over pending version %d" % (
            new, self.pointer, version))
        self.fail("%s; rolled back: %s, and version %d (the data of version %d) is current in Vault" % (
            head, pg_note, new, self.pointer))

    # -- decisions ------------------------------------------------------------------
    def due(self):
        """(due, reason)."""
        if self.params["force"]:
            return True, "force=true"
        text = self.meta.custom_metadata.get(_vault.ROTATED_AT_KEY)
        rotated_at = _vault.parse_time(text)
        if rotated_at is None:
            return True, "never rotated"
        age = (datetime.datetime.now(datetime.timezone.utc) - rotated_at).total_seconds()
        if age >= self.min_age:
            return True, "last rotated %s, %d s ago (min_age %d s)" % (text, age, self.min_age)
        return False, "last rotated %s, %d s ago, min_age is %d s" % (text, max(0, age), self.min_age)

    def run(self):
        self.validate()
        self.open_vault()
        self.read_state()
        self.check_names(self.current, "current")
        self.preflight()
        pending = self.pending_version()
        if self.params["state"] == "rolled_back":
            return self.roll_back_to(self.params["rollback_version"], pending)
        if pending is not None:
            return self.resume(pending)
        return self.rotate()

    def rotate(self):
        due, reason = self.due()
        if not due:
            for name in STEPS:
                self.step(name, "skipped", "not due: %s" % reason)
            self.exit("not due: %s" % reason)
        current_user = self.current.data["username"]
        if self.strategy == "single":
            username = current_user
        else:
            username = [name for name in self.logins() if name != current_user][0]
            sessions = self.pg.sessions(username)
            if sessions:
                self.module.warn("%d session(s) of the inactive login %s are open; they keep working, but new logins "
                                 "with its old password will fail" % (sessions, username))
        if self.module.check_mode:
            predicted = self.meta.current_version + 1
            self.step("create", "skipped", "check mode: would write version %d as pending (%s)" % (predicted, reason))
            self.step("set", "skipped", "check mode: would change the password of %s" % username)
            self.step("test", "skipped", "check mode: would log in as %s at %s" % (
                username, ", ".join("%s:%s/%s" % (e["host"], e["port"], e["dbname"]) for e in self.test_endpoints)))
            self.step("finish", "skipped", "check mode: would make version %d current" % predicted)
            self.result.update(changed=True, rotated=True, kv_version=predicted, active_username=username)
            self.exit("check mode: would rotate the password of %s (%s)" % (username, reason))
        password = generate_password(self.params["password_length"])
        self.hide(password)
        data = dict(self.current.data)
        data.update(username=username, password=password)
        version = self.create(data)
        self.run_steps(version, username, password)
        self.result.update(rotated=True, active_username=username)
        self.exit("rotated the password of %s (%s); version %d of %s is current" % (
            username, reason, version, self.label))

    def resume(self, version):
        pending = self.read_credential(version, "pending")
        self.check_names(pending, "pending")
        username = pending.data["username"]
        step = self.meta.custom_metadata.get(_vault.PENDING_STEP_KEY) or "unrecorded"
        self.result["resumed"] = True
        self.result["pending_version"] = version
        self.step("create", "skipped", "pending version %d found (last recorded step: %s)" % (version, step))
        if self.module.check_mode:
            self.step("set", "skipped", "check mode: would set the pending password of %s" % username)
            self.step("test", "skipped", "check mode: would log in as %s" % username)
            self.step("finish", "skipped", "check mode: would make version %d current" % version)
            self.result.update(changed=True, rotated=True, kv_version=version, active_username=username)
            self.exit("check mode: would resume pending version %d of %s (last recorded step: %s)" % (
                version, self.label, step))
        self.pending_written = version
        self.run_steps(version, username, pending.data["password"])
        self.result.update(rotated=True, active_username=username)
        self.exit("resumed the rotation interrupted after step %s: version %d of %s is current, %s has its password"
                  % (step, version, self.label, username))

    def roll_back_to(self, target, pending):
        if target > self.meta.current_version or target < 1:
            self.fail("%s: rollback_version %d does not exist (latest is %d)" % (
                self.what(), target, self.meta.current_version))
        wanted = self.read_credential(target, "rollback")
        self.check_names(wanted, "rollback")
        username = wanted.data["username"]
        if pending is None and self.current.data.get("username") == username and \
                self.current.data.get("password") == wanted.data["password"]:
            for name in STEPS:
                self.step(name, "skipped", "version %d already holds the credential of version %d" % (
                    self.pointer, target))
            self.result["active_username"] = username
            self.exit("nothing to roll back: current version %d already holds the credential of version %d" % (
                self.pointer, target))
        if self.module.check_mode:
            predicted = self.meta.current_version + 1
            self.step("create", "skipped", "check mode: would write the data of version %d as version %d" % (
                target, predicted))
            self.step("set", "skipped", "check mode: would give %s the password of version %d" % (username, target))
            self.step("test", "skipped", "check mode: would log in as %s" % username)
            self.step("finish", "skipped", "check mode: would make version %d current" % predicted)
            self.result.update(changed=True, rolled_back=True, kv_version=predicted, active_username=username)
            self.exit("check mode: would roll back to the credential of version %d" % target)
        version = self.create(dict(wanted.data))
        self.run_steps(version, username, wanted.data["password"], rotation=False)
        self.result.update(rolled_back=True, active_username=username)
        abandoned = "" if pending is None else " (pending version %d abandoned)" % pending
        self.exit("rolled back to the credential of version %d%s: version %d of %s is current, %s has that password"
                  % (target, abandoned, version, self.label, username))


def main():
    argument_spec = _postgres.postgres_common_argument_spec()
    vault_spec = _vault.vault_common_argument_spec()
    vault_spec.pop("ca_cert")  # the PostgreSQL option of the same name wins; Vault's CA is vault_ca_cert
    argument_spec.update(vault_spec)
    argument_spec.update(
        vault_ca_cert=dict(type="path", fallback=(env_fallback, ["VAULT_CACERT"])),
        path=dict(type="str", required=True),
        strategy=dict(type="str", choices=["single", "alternating"], default="single"),
        username=dict(type="str"),
        usernames=dict(type="list", elements="str"),
        password_length=dict(type="int", default=32, no_log=False),
        test_host=dict(type="str"),
        test_port=dict(type="int"),
        test_db=dict(type="str"),
        test_timeout=dict(type="int", default=10),
        verify_from=dict(type="list", elements="dict", default=[], options=dict(
            host=dict(type="str", required=True),
            port=dict(type="int"),
            dbname=dict(type="str"),
        )),
        state=dict(type="str", choices=["rotated", "rolled_back"], default="rotated"),
        rollback_version=dict(type="int"),
        min_age=dict(type="str", default="0"),
        force=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    Rotation(module).run()


if __name__ == "__main__":
    main()
