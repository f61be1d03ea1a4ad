"""access_revoke against a real PostgreSQL cluster, Django's migrated auth tables and a real OpenBao.

Each test gets its own cluster (revocations change it). Proofs: an approved revocation locks the login
out (a real login attempt fails) and ``restored`` lets it in again; an unapproved or expired approval
changes nothing; the login Vault calls current and the admin login are never revoked; check mode
prints the statements and changes nothing.
"""

from __future__ import annotations

import datetime
import json
import os
import stat

import psycopg
import pytest

from tests.integration.access_helpers import add_user, days_ago, django_database
from tests.integration.module_runner import run_module
from tests.integration.vault_pg_rotate_helpers import seed, unique

pytestmark = pytest.mark.integration

MODULE = "access_revoke"
TOMORROW = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).strftime("%Y-%m-%d")
YESTERDAY = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).strftime("%Y-%m-%d")
LEGACY = "pg:unused-login:legacy_report"
GRANT = "pg:public-grant:appdb:public.orders:select"
MEMBER = "pg:member:pg_read_all_data:analyst"
OLDS = "django:appdb:inactive:olds"


def can_login(cluster, user, password, dbname="postgres"):
    try:
        psycopg.connect(host=cluster.host, port=cluster.port, user=user, password=password, dbname=dbname,
                        connect_timeout=5).close()
    except psycopg.OperationalError:
        return False
    return True


@pytest.fixture
def platform(pg_cluster_factory, vault_server, tmp_path):
    server = pg_cluster_factory(settings={"log_connections": "on"}, name="revoke")
    for statement in (
        "CREATE ROLE app_blue LOGIN PASSWORD 'blue-pw-123'",
        "CREATE ROLE legacy_report LOGIN PASSWORD 'legacy-pw-123'",
        "CREATE ROLE analyst LOGIN PASSWORD 'analyst-pw-123' IN ROLE pg_read_all_data",
        "CREATE ROLE upkeep_admin LOGIN SUPERUSER PASSWORD 'admin-pw-123'",
    ):
        server.execute(statement)
    django_database(server, "appdb")
    server.execute("CREATE TABLE orders (id int PRIMARY KEY)", dbname="appdb")
    server.execute("GRANT SELECT ON orders TO PUBLIC", dbname="appdb")
    server.olds_id = add_user(server, "appdb", "olds", last_login=days_ago(400), staff=True)
    add_user(server, "appdb", "recent", last_login=days_ago(1))
    client = vault_server.ensure_ready().client()
    server.app_path = "revoke/" + unique("app")
    seed(client, server.app_path, {"username": "app_blue", "password": "blue-pw-123"})
    client.adapter.close()
    state = tmp_path / "last-seen.json"
    state.write_text(json.dumps({"schema_version": 1, "tracking_since": days_ago(200).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                 "last_seen": {}, "logs": {}}))
    server.state_file = str(state)
    server.record_file = str(tmp_path / "revocations.json")
    server.vault = vault_server
    return server


def approve(*ids, expires=TOMORROW):
    return [{"id": fid, "approved_by": "j.doe", "expires": expires, "ticket": "CHG-1"} for fid in ids]


def revoke(cluster, approvals=(), check_mode=False, **extra):
    args = cluster.module_args(databases=["postgres", "appdb"], django=[{"database": "appdb"}],
                               state_file=cluster.state_file, record_file=cluster.record_file,
                               url=cluster.vault.url, token=cluster.vault.token, vault_app_secret=cluster.app_path,
                               approvals=list(approvals))
    args.update(extra)
    res = run_module(MODULE, args, check_mode=check_mode, diff=True)
    assert cluster.password not in res.output and "blue-pw-123" not in res.output
    return res


def is_active(cluster, username):
    return cluster.execute("SELECT is_active FROM auth_user WHERE username = %s", (username,), dbname="appdb")[0][0]


def public_can_select(cluster):
    return cluster.execute("SELECT has_table_privilege('public', 'public.orders', 'SELECT')", dbname="appdb")[0][0]


def is_member(cluster):
    return cluster.execute("SELECT pg_has_role('analyst', 'pg_read_all_data', 'MEMBER')")[0][0]


def test_check_mode_prints_statements_and_changes_nothing(platform):
    res = revoke(platform, approve(LEGACY, OLDS), check_mode=True)
    assert not res.failed, res
    assert res["changed"]
    deactivate = 'UPDATE "public"."auth_user" SET "is_active" = false WHERE id = %d;' % platform.olds_id
    assert res["statements"] == ['ALTER ROLE "legacy_report" NOLOGIN;', deactivate]
    assert can_login(platform, "legacy_report", "legacy-pw-123")
    assert is_active(platform, "olds")
    assert not os.path.exists(platform.record_file)


def test_approved_revocation_locks_out_and_restored_puts_it_back(platform):
    res = revoke(platform, approve(LEGACY, GRANT, MEMBER, OLDS))
    assert not res.failed, res
    assert res["changed"]
    assert sorted(item["id"] for item in res["applied"]) == sorted([LEGACY, GRANT, MEMBER, OLDS])
    assert res["refused"] == [] and res["not_found"] == []
    assert "pg:superuser:upkeep_admin" in res["not_approved"]
    assert res["diff"]["before"][LEGACY] is True and res["diff"]["after"][LEGACY] is False
    assert not can_login(platform, "legacy_report", "legacy-pw-123")
    assert not public_can_select(platform) and not is_member(platform) and not is_active(platform, "olds")
    assert can_login(platform, "app_blue", "blue-pw-123")  # never approved, never touched
    assert stat.S_IMODE(os.stat(platform.record_file).st_mode) == 0o600
    record = json.loads(open(platform.record_file).read())
    assert [entry["status"] for entry in record["entries"]] == ["applied"] * 4
    assert all(entry["approved_by"] == "j.doe" and entry["ticket"] == "CHG-1" for entry in record["entries"])

    again = revoke(platform, approve(LEGACY, GRANT, MEMBER, OLDS))
    assert not again["changed"] and sorted(again["not_found"]) == sorted([LEGACY, GRANT, MEMBER, OLDS]), again

    args = platform.module_args(record_file=platform.record_file, state="restored")
    preview = run_module(MODULE, args, check_mode=True)
    assert preview["changed"] and 'ALTER ROLE "legacy_report" LOGIN;' in preview["statements"], preview
    assert not can_login(platform, "legacy_report", "legacy-pw-123")
    back = run_module(MODULE, args)
    assert not back.failed and back["changed"], back
    assert can_login(platform, "legacy_report", "legacy-pw-123")
    assert public_can_select(platform) and is_member(platform) and is_active(platform, "olds")
    record = json.loads(open(platform.record_file).read())
    assert [entry["status"] for entry in record["entries"]] == ["restored"] * 4
    assert not run_module(MODULE, args)["changed"]


def test_unapproved_or_expired_changes_nothing(platform):
    res = revoke(platform, approve(LEGACY, expires=YESTERDAY))
    assert not res.failed and not res["changed"], res
    assert res["refused"] == [{"id": LEGACY, "reason": "approval by j.doe expired %sT23:59:59Z" % YESTERDAY}]
    assert res["statements"] == [] and res["applied"] == []
    none = revoke(platform, [])
    assert not none["changed"] and LEGACY in none["not_approved"] and OLDS in none["not_approved"]
    assert can_login(platform, "legacy_report", "legacy-pw-123") and is_active(platform, "olds")
    assert public_can_select(platform) and is_member(platform)
    assert not os.path.exists(platform.record_file)


def test_current_application_login_is_never_locked_out(platform):
    res = revoke(platform, approve(LEGACY, "pg:unused-login:app_blue"))
    assert res.failed
    assert res["msg"] == ("Failed to revoke access: pg:unused-login:app_blue would lock out app_blue, the login the "
                          "application currently uses (Vault's current version); nothing was changed")
    assert can_login(platform, "app_blue", "blue-pw-123")
    assert can_login(platform, "legacy_report", "legacy-pw-123")  # the other approval was not applied either
    assert not os.path.exists(platform.record_file)


def test_admin_login_is_never_revoked(platform):
    res = revoke(platform, approve("pg:superuser:upkeep_admin"), login_user="upkeep_admin",
                 login_password="admin-pw-123")
    assert res.failed
    assert res["msg"] == ("Failed to revoke access: pg:superuser:upkeep_admin would remove SUPERUSER from "
                          "upkeep_admin, the admin login this runbook runs as; nothing was changed")
    assert platform.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'upkeep_admin'")[0][0]


def test_approval_file_without_approver_is_refused(platform, tmp_path):
    path = tmp_path / "approvals.yml"
    path.write_text("approvals:\n  - id: %s\n    expires: '%s'\n" % (LEGACY, TOMORROW))
    res = revoke(platform, approval_file=str(path))
    assert res.failed
    assert res["msg"] == "Failed to read approval 1 (%s): approved_by missing" % LEGACY
    assert can_login(platform, "legacy_report", "legacy-pw-123")
