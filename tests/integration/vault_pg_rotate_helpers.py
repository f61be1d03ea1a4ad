"""Helpers shared by the vault_pg_rotate integration and fault tests.

A test gets logins of its own on a real cluster (unique names, so tests can share the module's
cluster), a KV v2 secret of its own in the session's Vault (unique path), and checks that Vault
and PostgreSQL agree: the password of the version Vault calls current logs in over TCP.
"""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql

CURRENT_KEY = "upkeep_current_version"
PENDING_KEY = "upkeep_pending_version"


def unique(prefix="rot"):
    return "%s_%s" % (prefix, uuid.uuid4().hex[:8])


def create_login(cluster, name, password, member_of=None):
    """CREATE ROLE name LOGIN PASSWORD ... (scram, as password_encryption says), optionally IN ROLE group.

    A member acts as its group (ALTER ROLE ... SET role), as docs/rotation.md recommends for alternating
    logins, so a session's current_user is the group while session_user is the login.
    """
    statement = sql.SQL("CREATE ROLE {0} LOGIN PASSWORD {1}").format(sql.Identifier(name), sql.Literal(password))
    with cluster.connect() as conn:
        conn.execute(statement)
        if member_of:
            conn.execute(sql.SQL("GRANT {0} TO {1}").format(sql.Identifier(member_of), sql.Identifier(name)))
            act_as_group = sql.SQL("ALTER ROLE {0} SET role = {1}")
            conn.execute(act_as_group.format(sql.Identifier(name), sql.Identifier(member_of)))


def create_group(cluster, name):
    with cluster.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {0} NOLOGIN").format(sql.Identifier(name)))


def can_login(cluster, user, password, host=None, port=None):
    """True when user/password logs in over TCP (scram-sha-256 in the fixture's pg_hba)."""
    try:
        conn = psycopg.connect(host=host or cluster.host, port=port or cluster.port, user=user, password=password,
                               dbname="postgres", connect_timeout=3)
    except psycopg.OperationalError:
        return False
    conn.close()
    return True


def seed(client, path, data, mount="secret"):
    """Write version 1 of the secret (cas=0: only when absent), as provisioning does."""
    client.secrets.kv.v2.create_or_update_secret(path=path, secret=data, cas=0, mount_point=mount)


def metadata(client, path, mount="secret"):
    return client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)["data"]


def read_version(client, path, version, mount="secret"):
    answer = client.secrets.kv.v2.read_secret_version(path=path, version=version, mount_point=mount,
                                                       raise_on_deleted_version=True)
    return answer["data"]["data"]


def current(client, path, mount="secret"):
    """(version, data) of the version the rotation pointer names (latest when there is no pointer)."""
    meta = metadata(client, path, mount)
    pointer = int(meta["custom_metadata"].get(CURRENT_KEY) or meta["current_version"]) \
        if meta.get("custom_metadata") else int(meta["current_version"])
    return pointer, read_version(client, path, pointer, mount)


def all_passwords(client, path, mount="secret"):
    """Every password any version of the secret holds (to prove none leaked into output)."""
    meta = metadata(client, path, mount)
    found = set()
    for version in sorted(int(v) for v in meta["versions"]):
        try:
            data = read_version(client, path, version, mount)
        except Exception:  # noqa: S112 - deleted versions hold nothing to look for
            continue
        if data and data.get("password"):
            found.add(data["password"])
    return found


def assert_agree(cluster, client, path, mount="secret"):
    """The credential Vault calls current is the one PostgreSQL accepts; no rotation is left pending."""
    version, data = current(client, path, mount)
    assert can_login(cluster, data["username"], data["password"]), \
        "version %s that Vault calls current does not log in as %s" % (version, data["username"])
    meta = metadata(client, path, mount)
    assert PENDING_KEY not in (meta.get("custom_metadata") or {}), meta.get("custom_metadata")
    assert int(meta["current_version"]) == version, "latest %s is not the current %s" % (
        meta["current_version"], version)
    return version, data


def assert_no_secret(texts, secrets):
    """None of ``secrets`` occurs in any of ``texts``."""
    blob = "\n".join(text for text in texts if text)
    for secret in secrets:
        assert secret and secret not in blob, "a password appears in the output"


def module_args(cluster, server, path, **extra):
    """Arguments for vault_pg_rotate: admin over the cluster's private socket, Vault with the root token."""
    args = dict(
        path=path,
        login_unix_socket=str(cluster.socket_dir),
        login_port=cluster.port,
        login_user="postgres",
        url=server.url,
        token=server.token,
        test_timeout=5,
    )
    args.update(extra)
    return args
