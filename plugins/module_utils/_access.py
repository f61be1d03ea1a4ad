# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The access review backend: findings about PostgreSQL roles and Django accounts, and their fixes.

``access_review`` reports findings; ``access_revoke`` runs the same review again and applies the
fixes of the findings an operator approved by id. Both therefore share one argument spec
(:func:`review_argument_spec`) and one :class:`Review`.

A finding is a dict::

    {"id": "pg:unused-login:report_ro", "source": "postgresql", "check": "unused_login",
     "severity": "medium", "subject": "report_ro", "summary": "...", "details": {...},
     "fix": "ALTER ROLE report_ro NOLOGIN;", "action": {...}}

``id`` is stable between runs (it names what the finding is about, never a time or a number that
changes), so an approval written for one run still names the same finding in the next one.
``fix`` is the exact statement that would remove the finding (``None`` when the fix is not a
statement, such as a password rotation, then ``fix_command`` says what to run). ``action`` is the
machine form of the fix that ``access_revoke`` knows how to apply and undo.

Last-seen times of PostgreSQL logins come from ``log_connections`` lines (PostgreSQL keeps none
itself); they are kept between runs in a JSON state file, documented in docs/security-review.md:

    {"schema_version": 1, "tracking_since": "<UTC>", "last_seen": {"<role>": "<UTC>"},
     "logs": {"<path>": {"inode": 123, "offset": 4567}}}
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import glob
import json
import os
import re

from ansible.module_utils.basic import env_fallback
from ansible_collections.upkeep.runbooks.plugins.module_utils import _files, _postgres

try:
    import zoneinfo
except ImportError:  # pragma: no cover - Python < 3.9
    zoneinfo = None

STATE_SCHEMA_VERSION = 1
SEVERITIES = ["critical", "high", "medium", "low"]
ROLE_ATTRIBUTES = [
    # (pg_roles column, keyword that removes it, severity)
    ("rolsuper", "SUPERUSER", "high"),
    ("rolcreaterole", "CREATEROLE", "medium"),
    ("rolcreatedb", "CREATEDB", "medium"),
    ("rolreplication", "REPLICATION", "medium"),
    ("rolbypassrls", "BYPASSRLS", "medium"),
]
# Predefined roles whose members can read or write everything, or act as the server's OS user.
POWERFUL_BUILTIN_ROLES = [
    "pg_read_all_data", "pg_write_all_data", "pg_execute_server_program", "pg_read_server_files",
    "pg_write_server_files", "pg_signal_backend", "pg_checkpoint",
]
RELKINDS = {"r": "TABLE", "p": "TABLE", "v": "TABLE", "m": "TABLE", "f": "TABLE", "S": "SEQUENCE"}


class AccessError(Exception):
    """A review step failed; ``str()`` is a readable message (Failed to <verb> <object>: <cause>)."""


def review_argument_spec():
    """Options of access_review, shared by access_revoke (which reviews again before it acts)."""
    return dict(
        databases=dict(type="list", elements="str"),
        allowed_superusers=dict(type="list", elements="str", default=["postgres"]),
        allowed_attribute_roles=dict(type="list", elements="str", default=[]),
        app_logins=dict(type="list", elements="str", default=[]),
        exclude_roles=dict(type="list", elements="str", default=[]),
        unused_days=dict(type="int", default=90),
        log_files=dict(type="list", elements="path", default=[]),
        state_file=dict(type="path"),
        vault_secrets=dict(type="list", elements="str", default=[], no_log=False),
        vault_app_secret=dict(type="str", no_log=False),
        password_max_age_days=dict(type="int", default=90, no_log=False),
        vault_ca_cert=dict(type="path", fallback=(env_fallback, ["VAULT_CACERT"])),
        django=dict(type="list", elements="dict", default=[], options=dict(
            database=dict(type="str", required=True),
            schema=dict(type="str", default="public"),
            user_table=dict(type="str", default="auth_user"),
            user_permissions_table=dict(type="str"),
            inactive_days=dict(type="int", default=90),
            allowed_superusers=dict(type="list", elements="str", default=[]),
            allowed_staff=dict(type="list", elements="str", default=[]),
        )),
    )


def module_argument_spec():
    """PostgreSQL connection + Vault connection (its CA as vault_ca_cert) + the review options."""
    from ansible_collections.upkeep.runbooks.plugins.module_utils import _vault
    spec = _postgres.postgres_common_argument_spec()
    vault_spec = _vault.vault_common_argument_spec()
    vault_spec.pop("ca_cert")  # PostgreSQL's option of that name wins; Vault's CA is vault_ca_cert
    spec.update(vault_spec)
    spec.update(review_argument_spec())
    return spec


def open_vault_for(params):
    """An authenticated Vault when the review needs one (vault_secrets or vault_app_secret), else None."""
    from ansible_collections.upkeep.runbooks.plugins.module_utils import _vault
    if not params.get("vault_secrets") and not params.get("vault_app_secret"):
        return None
    vault_params = dict(params)
    vault_params["ca_cert"] = params.get("vault_ca_cert")
    try:
        return _vault.open_vault(vault_params)
    except _vault.VaultError as exc:
        raise AccessError(exc.message) from None


def run_review(params, now=None, vault=None, write_state=True):
    """Run the whole review; returns the Review. Raises AccessError / PostgresError with readable messages."""
    def connect(dbname):
        p = dict(params)
        p["login_db"] = dbname
        return _postgres.open_connection(p)

    review = Review(params, connect, now=now, vault=vault)
    if vault is not None:
        review.read_app_current()
        review.run_vault()
    conn = _postgres.open_connection(params)
    try:
        review.run_postgres(conn)
    finally:
        _postgres.close_quietly(conn)
    for spec in params.get("django") or []:
        review.run_django(spec)
    review.result()
    if write_state and params.get("state_file"):
        save_state(params["state_file"], review.state)
    return review


# --------------------------------------------------------------------------------------
# time


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def utc_text(moment):
    if moment is None:
        return None
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text):
    """An aware datetime from ISO text ('Z', an offset, or naive = UTC); None for empty."""
    if text in (None, ""):
        return None
    if isinstance(text, datetime.datetime):
        moment = text
    elif isinstance(text, datetime.date):
        moment = datetime.datetime(text.year, text.month, text.day)
    else:
        value = str(text).strip().replace(" ", "T", 1)
        if value.endswith("Z"):
            value = value[:-1] + "+00:00"
        moment = datetime.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def days_between(earlier, later):
    return int((later - earlier).total_seconds() // 86400)


# --------------------------------------------------------------------------------------
# log_connections parsing

# log_line_prefix starts with %m or %t (the default '%m [%p] '): "2026-12-01 20:30:46.123 UTC".
_LINE_TIME = re.compile(
    r"^(?P<ts>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})(?:\.\d+)?\s*"
    r"(?P<tz>[A-Za-z][A-Za-z0-9_/+-]*|[+-]\d{2}(?::?\d{2})?)?\s")
_AUTHORIZED = re.compile(r"\b(?:replication )?connection authorized: user=(?P<user>\S+)")


def _zone(name, default_zone):
    if not name or name.upper() in ("UTC", "GMT", "Z"):
        return datetime.timezone.utc
    match = re.match(r"^([+-])(\d{2}):?(\d{2})?$", name)
    if match:
        delta = datetime.timedelta(hours=int(match.group(2)), minutes=int(match.group(3) or 0))
        return datetime.timezone(delta if match.group(1) == "+" else -delta)
    if zoneinfo is not None:
        try:
            return zoneinfo.ZoneInfo(name)
        except Exception:  # noqa: S110 - an abbreviation such as CET: fall back to log_timezone
            pass
    return default_zone


def parse_connection_line(line, default_zone=datetime.timezone.utc):
    """(user, aware UTC datetime) for a 'connection authorized' line with a timestamp prefix, else None."""
    found = _AUTHORIZED.search(line)
    if not found:
        return None
    stamp = _LINE_TIME.match(line)
    if not stamp:
        return None
    naive = datetime.datetime.strptime(stamp.group("ts").replace("T", " "), "%Y-%m-%d %H:%M:%S")
    moment = naive.replace(tzinfo=_zone(stamp.group("tz"), default_zone))
    user = found.group("user").strip('"')
    return user, moment.astimezone(datetime.timezone.utc)


def empty_state(now):
    return {"schema_version": STATE_SCHEMA_VERSION, "tracking_since": utc_text(now), "last_seen": {}, "logs": {}}


def load_state(path, now):
    """The last-seen state file, or a new state whose tracking starts ``now`` when there is none."""
    if not path or not os.path.exists(path):
        return empty_state(now), False
    try:
        with open(path, "r", encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError) as exc:
        raise AccessError("Failed to read the last-seen state file %s: %s" % (path, exc)) from None
    if not isinstance(state, dict) or state.get("schema_version") != STATE_SCHEMA_VERSION:
        raise AccessError("Failed to read the last-seen state file %s: schema_version %r is not %s"
                          % (path, state.get("schema_version") if isinstance(state, dict) else None,
                             STATE_SCHEMA_VERSION))
    state.setdefault("last_seen", {})
    state.setdefault("logs", {})
    state.setdefault("tracking_since", utc_text(now))
    return state, True


def save_state(path, state):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise AccessError("Failed to write the last-seen state file %s: directory %s does not exist"
                          % (path, directory))
    try:
        _files.write_atomic(path, json.dumps(state, indent=2, sort_keys=True) + "\n", mode=0o600)
    except OSError as exc:
        raise AccessError("Failed to write the last-seen state file %s: %s" % (path, exc)) from None


def scan_logs(patterns, state, default_zone=datetime.timezone.utc):
    """Read new 'connection authorized' lines of the files matching ``patterns`` into ``state``.

    Each file is read from the offset the state remembers for it, unless its inode changed or it
    is shorter than that offset (rotated or truncated): then from the start. Returns the files read.
    """
    read = []
    paths = []
    for pattern in patterns or []:
        matches = sorted(glob.glob(pattern))
        paths.extend(matches if matches else [])
    for path in paths:
        try:
            info = os.stat(path)
        except OSError as exc:
            raise AccessError("Failed to read the PostgreSQL log %s: %s" % (path, exc)) from None
        known = state["logs"].get(path) or {}
        offset = int(known.get("offset") or 0)
        if known.get("inode") != info.st_ino or info.st_size < offset:
            offset = 0
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except OSError as exc:
            raise AccessError("Failed to read the PostgreSQL log %s: %s" % (path, exc)) from None
        complete = data.rfind(b"\n") + 1  # a line still being written is read next time
        for raw in data[:complete].splitlines():
            parsed = parse_connection_line(raw.decode("utf-8", "replace"), default_zone)
            if parsed is None:
                continue
            user, moment = parsed
            previous = parse_utc(state["last_seen"].get(user))
            if previous is None or moment > previous:
                state["last_seen"][user] = utc_text(moment)
        state["logs"][path] = {"inode": info.st_ino, "offset": offset + complete}
        read.append(path)
    return read


# --------------------------------------------------------------------------------------
# findings


def finding(fid, source, check, severity, subject, summary, fix=None, action=None, details=None, fix_command=None):
    return {
        "id": fid, "source": source, "check": check, "severity": severity, "subject": subject,
        "summary": summary, "fix": fix, "fix_command": fix_command, "action": action, "details": details or {},
    }


def role_attribute_statement(role, keyword, enable=False):
    return _postgres.sql("ALTER ROLE {0} %s" % (keyword if enable else "NO" + keyword)).format(
        _postgres.identifier(role))


def membership_statement(group, member, grant=False):
    template = "GRANT {0} TO {1}" if grant else "REVOKE {0} FROM {1}"
    return _postgres.sql(template).format(_postgres.identifier(group), _postgres.identifier(member))


def public_grant_statement(kind, schema, name, privilege, grant=False):
    if privilege not in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "USAGE",
                         "CREATE", "EXECUTE"):
        raise AccessError("Failed to build a statement for privilege %r: unknown privilege" % privilege)
    if kind not in ("TABLE", "SEQUENCE", "SCHEMA"):
        raise AccessError("Failed to build a statement for object kind %r: unknown kind" % kind)
    template = ("GRANT %s ON %s {0} TO PUBLIC" if grant else "REVOKE %s ON %s {0} FROM PUBLIC") % (privilege, kind)
    target = _postgres.identifier(schema) if kind == "SCHEMA" else _postgres.identifier(schema, name)
    return _postgres.sql(template).format(target)


def database_owner_statement(database, owner):
    return _postgres.sql("ALTER DATABASE {0} OWNER TO {1}").format(
        _postgres.identifier(database), _postgres.identifier(owner))


def django_flag_statement(schema, table, column, value, user_id):
    if column not in ("is_active", "is_staff", "is_superuser"):
        raise AccessError("Failed to build a statement for column %r: not a Django account flag" % column)
    return _postgres.sql("UPDATE {0} SET {1} = %s WHERE id = %s" % ("true" if value else "false", int(user_id))).format(
        _postgres.identifier(schema, table), _postgres.identifier(column))


def text_of(statement, conn):
    return statement.as_string(conn) + ";"


class Review(object):
    """One access review. ``connect(dbname)`` returns a psycopg connection to that database."""

    def __init__(self, params, connect, now=None, vault=None):
        self.params = params
        self.connect = connect
        self.now = now or utc_now()
        self.vault = vault
        self.findings = []
        self.logins = []
        self.notes = []
        self.state = None
        self.state_existed = False
        self.logs_read = []
        self.app_current_login = None
        self.admin_login = None

    def add(self, item):
        self.findings.append(item)

    # -- PostgreSQL ---------------------------------------------------------------
    def run_postgres(self, conn):
        row = _postgres.query_one(conn, "SELECT session_user AS login, current_setting('log_timezone') AS tz, "
                                        "current_database() AS db")
        self.admin_login = row["login"]
        zone = _zone(row["tz"], datetime.timezone.utc)
        roles = _postgres.query_all(
            conn, "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin, "
                  "rolvaliduntil FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY rolname")
        excluded = set(self.params.get("exclude_roles") or [])
        app_logins = set(self.params.get("app_logins") or [])
        if self.app_current_login:
            app_logins.add(self.app_current_login)
        allowed_super = set(self.params.get("allowed_superusers") or [])
        allowed_attr = set(self.params.get("allowed_attribute_roles") or [])
        for role in roles:
            name = role["rolname"]
            if name in excluded:
                continue
            for column, keyword, severity in ROLE_ATTRIBUTES:
                if not role[column]:
                    continue
                if name in app_logins:
                    self.add(finding(
                        "pg:app-%s:%s" % (keyword.lower(), name), "postgresql", "app_login_privilege", "critical",
                        name, "application login %s has %s" % (name, keyword),
                        fix=text_of(role_attribute_statement(name, keyword), conn),
                        action={"kind": "pg_role_attribute", "role": name, "attribute": keyword},
                        details={"attribute": keyword, "can_login": role["rolcanlogin"]}))
                    continue
                if (column == "rolsuper" and name in allowed_super) or (column != "rolsuper" and name in allowed_attr) \
                        or (column != "rolsuper" and role["rolsuper"] and name in allowed_super):
                    continue
                self.add(finding(
                    "pg:%s:%s" % (keyword.lower(), name), "postgresql", "role_attribute", severity, name,
                    "role %s has %s" % (name, keyword),
                    fix=text_of(role_attribute_statement(name, keyword), conn),
                    action={"kind": "pg_role_attribute", "role": name, "attribute": keyword},
                    details={"attribute": keyword, "can_login": role["rolcanlogin"]}))
        self._memberships(conn, excluded)
        self._unused_logins(conn, roles, excluded, zone)
        databases = self.params.get("databases") or [row["db"]]
        for database in databases:
            self._database_checks(database, app_logins, conn if database == row["db"] else None)

    def _memberships(self, conn, excluded):
        rows = _postgres.query_all(
            conn,
            "SELECT g.rolname AS grp, m.rolname AS member, m.rolcanlogin AS can_login "
            "FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member "
            "WHERE g.rolsuper OR g.rolcreaterole OR g.rolcreatedb OR g.rolreplication OR g.rolbypassrls "
            "OR g.rolname = ANY(%s) ORDER BY g.rolname, m.rolname", (POWERFUL_BUILTIN_ROLES,))
        for row in rows:
            if row["member"] in excluded or row["grp"] in excluded:
                continue
            self.add(finding(
                "pg:member:%s:%s" % (row["grp"], row["member"]), "postgresql", "powerful_membership", "high",
                row["member"], "%s is a member of %s" % (row["member"], row["grp"]),
                fix=text_of(membership_statement(row["grp"], row["member"]), conn),
                action={"kind": "pg_membership", "group": row["grp"], "member": row["member"]},
                details={"group": row["grp"], "can_login": row["can_login"]}))

    def _unused_logins(self, conn, roles, excluded, zone):
        state_file = self.params.get("state_file")
        self.state, self.state_existed = load_state(state_file, self.now)
        self.logs_read = scan_logs(self.params.get("log_files"), self.state, zone)
        if not self.params.get("log_files"):
            self.notes.append("No log_files given: login last-seen times come from the state file only.")
        tracking_since = parse_utc(self.state.get("tracking_since")) or self.now
        limit = int(self.params.get("unused_days"))
        for role in roles:
            if not role["rolcanlogin"]:
                continue
            name = role["rolname"]
            last = parse_utc(self.state["last_seen"].get(name))
            entry = {"role": name, "last_seen": utc_text(last),
                     "days_since": days_between(last, self.now) if last else None,
                     "tracking_since": utc_text(tracking_since)}
            self.logins.append(entry)
            if name in excluded or name == self.admin_login:
                continue
            if last is not None:
                if days_between(last, self.now) < limit:
                    continue
                summary = "login %s last connected %s (%d days ago, limit %d)" % (
                    name, utc_text(last), days_between(last, self.now), limit)
            else:
                if days_between(tracking_since, self.now) < limit:
                    continue  # not enough evidence yet: tracking is younger than the limit
                summary = "login %s has not connected since tracking began %s (%d days, limit %d)" % (
                    name, utc_text(tracking_since), days_between(tracking_since, self.now), limit)
            self.add(finding(
                "pg:unused-login:%s" % name, "postgresql", "unused_login", "medium", name, summary,
                fix=text_of(role_attribute_statement(name, "LOGIN"), conn),
                action={"kind": "pg_role_attribute", "role": name, "attribute": "LOGIN"},
                details={"last_seen": utc_text(last), "tracking_since": utc_text(tracking_since),
                         "unused_days": limit}))

    def _database_checks(self, database, app_logins, conn=None):
        own = conn is None
        if own:
            conn = self.connect(database)
        try:
            rows = _postgres.query_all(
                conn,
                "SELECT n.nspname AS schema, c.relname AS name, c.relkind AS relkind, a.privilege_type AS privilege "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "CROSS JOIN LATERAL aclexplode(c.relacl) a "
                "WHERE a.grantee = 0 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') "
                "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' "
                "ORDER BY 1, 2, 4")
            for row in rows:
                kind = RELKINDS[row["relkind"]]
                write = row["privilege"] not in ("SELECT", "USAGE", "REFERENCES")
                self.add(finding(
                    "pg:public-grant:%s:%s.%s:%s" % (database, row["schema"], row["name"], row["privilege"].lower()),
                    "postgresql", "public_grant", "high" if write else "medium", "%s.%s" % (row["schema"], row["name"]),
                    "PUBLIC has %s on %s %s.%s in database %s"
                    % (row["privilege"], kind.lower(), row["schema"], row["name"], database),
                    fix=text_of(public_grant_statement(kind, row["schema"], row["name"], row["privilege"]), conn),
                    action={"kind": "pg_public_grant", "database": database, "object_kind": kind,
                            "schema": row["schema"], "name": row["name"], "privilege": row["privilege"]},
                    details={"database": database}))
            rows = _postgres.query_all(
                conn,
                "SELECT n.nspname AS schema FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a "
                "WHERE a.grantee = 0 AND a.privilege_type = 'CREATE' ORDER BY 1")
            for row in rows:
                self.add(finding(
                    "pg:public-grant:%s:%s:create" % (database, row["schema"]), "postgresql", "public_grant", "high",
                    row["schema"], "PUBLIC may CREATE in schema %s of database %s" % (row["schema"], database),
                    fix=text_of(public_grant_statement("SCHEMA", row["schema"], None, "CREATE"), conn),
                    action={"kind": "pg_public_grant", "database": database, "object_kind": "SCHEMA",
                            "schema": row["schema"], "name": None, "privilege": "CREATE"},
                    details={"database": database}))
            if app_logins:
                rows = _postgres.query_all(
                    conn,
                    "SELECT d.datname, r.rolname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
                    "WHERE r.rolname = ANY(%s) AND d.datname = current_database()", (sorted(app_logins),))
                for row in rows:
                    self.add(finding(
                        "pg:app-owns-database:%s:%s" % (row["rolname"], row["datname"]), "postgresql",
                        "app_login_ownership", "high", row["rolname"],
                        "application login %s owns database %s (it can drop it and grant anything in it)"
                        % (row["rolname"], row["datname"]),
                        fix=text_of(database_owner_statement(row["datname"], self.admin_login), conn),
                        action=None, details={"database": row["datname"]}))
        finally:
            if own:
                _postgres.close_quietly(conn)

    # -- Vault ----------------------------------------------------------------------
    def read_app_current(self):
        """The username of the version Vault calls current for ``vault_app_secret`` (None without one)."""
        from ansible_collections.upkeep.runbooks.plugins.module_utils import _vault
        path = self.params.get("vault_app_secret")
        if not path:
            return None
        secret, _meta = _vault.read_current(self.vault, path)
        if secret is None or not isinstance(secret.data, dict) or not secret.data.get("username"):
            raise AccessError("Failed to read the application login from Vault %s: no current version with a "
                              "username field" % self.vault.describe(path))
        self.app_current_login = secret.data["username"]
        return self.app_current_login

    def run_vault(self):
        from ansible_collections.upkeep.runbooks.plugins.module_utils import _vault
        limit = int(self.params.get("password_max_age_days"))
        for path in self.params.get("vault_secrets") or []:
            secret, meta = _vault.read_current(self.vault, path)
            if secret is None:
                self.add(finding("vault:missing-secret:%s" % path, "vault", "password_age", "high", path,
                                 "secret %s does not exist in Vault" % self.vault.describe(path),
                                 fix_command="seed the secret, see docs/rotation.md (Production set-up)"))
                continue
            rotated = meta.custom_metadata.get("upkeep_rotated_at")
            changed = parse_utc(rotated) if rotated else parse_utc(secret.created_time)
            username = secret.data.get("username") if isinstance(secret.data, dict) else None
            age = days_between(changed, self.now) if changed else None
            if age is None or age < limit:
                continue
            self.add(finding(
                "vault:password-age:%s" % path, "vault", "password_age", "high" if age >= 2 * limit else "medium",
                username or path,
                "password of %s in %s is %s days old (policy %s days%s)" % (
                    username or "the secret", self.vault.describe(path), age, limit,
                    "" if rotated else ", never rotated by upkeep.runbooks"),
                fix_command="ansible-playbook playbooks/rotate.yml -e credential_rotation_force=true",
                details={"changed_at": utc_text(changed), "age_days": age, "rotated_by_upkeep": bool(rotated),
                         "version": secret.version}))

    # -- Django -------------------------------------------------------------------------
    def run_django(self, spec):
        database = spec["database"]
        schema, table = spec.get("schema") or "public", spec.get("user_table") or "auth_user"
        perm_table = spec.get("user_permissions_table") or "%s_user_permissions" % table
        limit = int(spec.get("inactive_days"))
        conn = self.connect(database)
        try:
            exists = _postgres.query_one(conn, "SELECT to_regclass(%s) IS NOT NULL AS ok",
                                         ("%s.%s" % (_quote(schema), _quote(table)),))
            if not exists["ok"]:
                raise AccessError("Failed to read Django accounts in database %s: table %s.%s does not exist "
                                  "(set user_table)" % (database, schema, table))
            users = _postgres.query_all(conn, _postgres.sql(
                "SELECT id, username, is_superuser, is_staff, is_active, last_login, date_joined FROM {0} "
                "ORDER BY username").format(_postgres.identifier(schema, table)))
            perms = {}
            perm_exists = _postgres.query_one(conn, "SELECT to_regclass(%s) IS NOT NULL AS ok",
                                              ("%s.%s" % (_quote(schema), _quote(perm_table)),))
            if perm_exists["ok"]:
                rows = _postgres.query_all(conn, _postgres.sql(
                    "SELECT up.user_id, up.permission_id, ct.app_label || '.' || p.codename AS perm FROM {0} up "
                    "JOIN {1} p ON p.id = up.permission_id JOIN {2} ct ON ct.id = p.content_type_id "
                    "ORDER BY 3").format(_postgres.identifier(schema, perm_table),
                                         _postgres.identifier(schema, "auth_permission"),
                                         _postgres.identifier(schema, "django_content_type")))
                for row in rows:
                    perms.setdefault(row["user_id"], []).append(row)
            else:
                self.notes.append("Database %s: no table %s.%s, direct permissions not checked."
                                  % (database, schema, perm_table))
            for user in users:
                self._django_user(conn, database, schema, table, perm_table, spec, limit, user, perms.get(user["id"]))
        finally:
            _postgres.close_quietly(conn)

    def _django_user(self, conn, database, schema, table, perm_table, spec, limit, user, perms):
        name, uid = user["username"], user["id"]
        prefix = "django:%s:" % database
        if not user["is_active"]:
            return
        if user["is_superuser"] and name not in (spec.get("allowed_superusers") or []):
            self.add(finding(
                prefix + "superuser:" + name, "django", "superuser", "high", name,
                "Django user %s (id %s) in %s is a superuser" % (name, uid, database),
                fix=text_of(django_flag_statement(schema, table, "is_superuser", False, uid), conn),
                action={"kind": "django_flag", "database": database, "schema": schema, "table": table,
                        "user_id": uid, "username": name, "column": "is_superuser"}))
        if user["is_staff"] and name not in (spec.get("allowed_staff") or []):
            self.add(finding(
                prefix + "staff:" + name, "django", "staff", "medium", name,
                "Django user %s (id %s) in %s is staff (may use the admin site)" % (name, uid, database),
                fix=text_of(django_flag_statement(schema, table, "is_staff", False, uid), conn),
                action={"kind": "django_flag", "database": database, "schema": schema, "table": table,
                        "user_id": uid, "username": name, "column": "is_staff"}))
        last = parse_utc(user["last_login"])
        joined = parse_utc(user["date_joined"])
        stale = False
        if last is not None and days_between(last, self.now) >= limit:
            stale = True
            summary = "active Django user %s last logged in %s (%d days ago, limit %d)" % (
                name, utc_text(last), days_between(last, self.now), limit)
        elif last is None and (joined is None or days_between(joined, self.now) >= limit):
            stale = True
            summary = "active Django user %s has never logged in (joined %s, limit %d days)" % (
                name, utc_text(joined), limit)
        if stale:
            powerful = user["is_superuser"] or user["is_staff"]
            self.add(finding(
                prefix + "inactive:" + name, "django", "inactive_account", "high" if powerful else "medium", name,
                summary, fix=text_of(django_flag_statement(schema, table, "is_active", False, uid), conn),
                action={"kind": "django_flag", "database": database, "schema": schema, "table": table,
                        "user_id": uid, "username": name, "column": "is_active"},
                details={"last_login": utc_text(last), "date_joined": utc_text(joined), "inactive_days": limit,
                         "is_staff": user["is_staff"], "is_superuser": user["is_superuser"]}))
        if perms:
            self.add(finding(
                prefix + "direct-permissions:" + name, "django", "direct_permissions", "low", name,
                "Django user %s has %d permissions granted directly, not through a group" % (name, len(perms)),
                fix=_postgres.sql("DELETE FROM {0} WHERE user_id = %d" % int(uid)).format(
                    _postgres.identifier(schema, perm_table)).as_string(conn) + ";",
                action=None, details={"permissions": [row["perm"] for row in perms]}))

    # -- all ------------------------------------------------------------------------
    def result(self):
        order = dict((name, index) for index, name in enumerate(SEVERITIES))
        self.findings.sort(key=lambda item: (order.get(item["severity"], 9), item["id"]))
        counts = dict((name, 0) for name in SEVERITIES)
        for item in self.findings:
            counts[item["severity"]] = counts.get(item["severity"], 0) + 1
        return counts


def _quote(name):
    return '"%s"' % name.replace('"', '""')


# --------------------------------------------------------------------------------------
# revocation: approvals, the previous-state record, statements and their undo

RECORD_SCHEMA_VERSION = 1
LOCKOUT_ATTRIBUTES = ("LOGIN",)
ATTRIBUTE_COLUMNS = {"LOGIN": "rolcanlogin", "SUPERUSER": "rolsuper", "CREATEROLE": "rolcreaterole",
                     "CREATEDB": "rolcreatedb", "REPLICATION": "rolreplication", "BYPASSRLS": "rolbypassrls"}


def parse_expiry(value):
    """The end of an approval: a date means valid through that day (UTC), a date-time is exact."""
    text = str(value).strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}$", text):
        day = datetime.date.fromisoformat(text)
        return datetime.datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=datetime.timezone.utc)
    return parse_utc(text)


def _parse_approval_file(approval_file, text):
    """JSON needs nothing more; YAML needs PyYAML on the host (Debian: python3-yaml)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import yaml
    except ImportError:
        raise AccessError("Failed to read the approval file %s: not JSON, and reading YAML needs PyYAML "
                          "(python3-yaml) for this host's Python" % approval_file) from None
    try:
        return yaml.safe_load(text)
    except Exception as exc:
        raise AccessError("Failed to read the approval file %s: not YAML or JSON (%s)"
                          % (approval_file, str(exc).splitlines()[0])) from None


def load_approvals(approvals, approval_file):
    """Approvals from the option and the file: a list of {id, approved_by, expires}. Raises AccessError."""
    items = list(approvals or [])
    if approval_file:
        try:
            with open(approval_file, "r", encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise AccessError("Failed to read the approval file %s: %s" % (approval_file, exc)) from None
        data = _parse_approval_file(approval_file, text)
        if isinstance(data, dict):
            data = data.get("approvals")
        if not isinstance(data, list):
            raise AccessError("Failed to read the approval file %s: expected a list under 'approvals'" % approval_file)
        items.extend(data)
    checked = []
    for index, item in enumerate(items):
        where = "approval %d (%s)" % (index + 1, (item or {}).get("id") if isinstance(item, dict) else item)
        if not isinstance(item, dict):
            raise AccessError("Failed to read %s: expected a mapping with id, approved_by and expires" % where)
        missing = [key for key in ("id", "approved_by", "expires") if not item.get(key)]
        if missing:
            raise AccessError("Failed to read %s: %s missing" % (where, ", ".join(missing)))
        try:
            expires = parse_expiry(item["expires"])
        except ValueError:
            raise AccessError("Failed to read %s: expires %r is not a date (YYYY-MM-DD) or an ISO date-time"
                              % (where, str(item["expires"]))) from None
        checked.append({"id": str(item["id"]), "approved_by": str(item["approved_by"]), "expires": expires,
                        "ticket": str(item.get("ticket") or "") or None})
    return checked


def load_record(path):
    if not os.path.exists(path):
        return {"schema_version": RECORD_SCHEMA_VERSION, "entries": []}
    try:
        with open(path, "r", encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError) as exc:
        raise AccessError("Failed to read the revocation record %s: %s" % (path, exc)) from None
    if not isinstance(record, dict) or record.get("schema_version") != RECORD_SCHEMA_VERSION:
        raise AccessError("Failed to read the revocation record %s: schema_version is not %s"
                          % (path, RECORD_SCHEMA_VERSION))
    record.setdefault("entries", [])
    return record


def save_record(path, record):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise AccessError("Failed to write the revocation record %s: directory %s does not exist" % (path, directory))
    try:
        _files.write_atomic(path, json.dumps(record, indent=2, sort_keys=True) + "\n", mode=0o600)
    except OSError as exc:
        raise AccessError("Failed to write the revocation record %s: %s" % (path, exc)) from None


def read_before(conn, action):
    """The state the action changes, as it is now (what ``restored`` puts back)."""
    kind = action["kind"]
    if kind == "pg_role_attribute":
        row = _postgres.query_one(conn, _postgres.sql("SELECT {0} AS value FROM pg_roles WHERE rolname = %s").format(
            _postgres.identifier(ATTRIBUTE_COLUMNS[action["attribute"]])), (action["role"],))
        return {"exists": row is not None, "value": bool(row and row["value"])}
    if kind == "pg_membership":
        row = _postgres.query_one(
            conn, "SELECT bool_or(am.admin_option) AS admin_option, count(*) AS n FROM pg_auth_members am "
                  "JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member "
                  "WHERE g.rolname = %s AND m.rolname = %s", (action["group"], action["member"]))
        return {"exists": bool(row["n"]), "value": bool(row["n"]), "admin_option": bool(row["admin_option"])}
    if kind == "pg_public_grant":
        return {"exists": True, "value": True}
    if kind == "django_flag":
        row = _postgres.query_one(conn, _postgres.sql("SELECT username, {0} AS value FROM {1} WHERE id = %s").format(
            _postgres.identifier(action["column"]), _postgres.identifier(action["schema"], action["table"])),
            (action["user_id"],))
        return {"exists": row is not None and row["username"] == action["username"],
                "value": bool(row and row["value"])}
    raise AccessError("Failed to read the state for action kind %r: unknown kind" % kind)


def statement_for(action, undo=False, before=None):
    """The psycopg statement that applies (or, with ``undo``, reverts) ``action``."""
    kind = action["kind"]
    if kind == "pg_role_attribute":
        return role_attribute_statement(action["role"], action["attribute"], enable=undo)
    if kind == "pg_membership":
        if undo and (before or {}).get("admin_option"):
            return _postgres.sql("GRANT {0} TO {1} WITH ADMIN OPTION").format(
                _postgres.identifier(action["group"]), _postgres.identifier(action["member"]))
        return membership_statement(action["group"], action["member"], grant=undo)
    if kind == "pg_public_grant":
        return public_grant_statement(action["object_kind"], action["schema"], action["name"], action["privilege"],
                                      grant=undo)
    if kind == "django_flag":
        return django_flag_statement(action["schema"], action["table"], action["column"], bool(undo), action["user_id"])
    raise AccessError("Failed to build a statement for action kind %r: unknown kind" % kind)


def action_database(action, default):
    return action.get("database") or default


def lockout_reason(action, protected):
    """Why applying ``action`` would lock out a protected login, or None.

    ``protected`` maps login -> what it is ("the application's current login (Vault)", "the admin login").
    NOLOGIN is refused for every protected login; for the admin login, removing its attributes or
    memberships is refused too (the runbook would lose the power it needs to put things back).
    """
    if action["kind"] == "pg_role_attribute":
        role = action["role"]
        if role in protected and (action["attribute"] in LOCKOUT_ATTRIBUTES or protected[role] == "admin"):
            return "would %s %s, %s" % ("lock out" if action["attribute"] == "LOGIN" else
                                        "remove %s from" % action["attribute"], role, _protected_text(protected[role]))
    if action["kind"] == "pg_membership" and protected.get(action["member"]) == "admin":
        return "would remove %s from %s, %s" % (action["member"], action["group"], _protected_text("admin"))
    return None


def _protected_text(kind):
    return {"app": "the login the application currently uses (Vault's current version)",
            "admin": "the admin login this runbook runs as",
            "protected": "a login listed in protect_logins"}.get(kind, kind)
