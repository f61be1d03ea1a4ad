"""access_review against real PostgreSQL clusters, a real OpenBao and Django's own auth tables.

One cluster is clean (an application set up as docs/security-review.md recommends): the review finds
nothing. The other carries one of each finding; the review must name each exactly, nothing more, and
running each returned fix statement must make that finding disappear in the next review.
"""

from __future__ import annotations

import json
import os
import stat

import psycopg
import pytest

from tests.fixtures.postgres import ClusterFactory
from tests.integration.access_helpers import add_user, days_ago, django_database, grant_permission, ids, old_log_line
from tests.integration.module_runner import run_module
from tests.integration.vault_pg_rotate_helpers import seed, unique

pytestmark = pytest.mark.integration

MODULE = "access_review"
SETTINGS = {"log_connections": "on", "log_min_messages": "warning"}


def stamp(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def login(cluster, user, password, dbname="postgres"):
    psycopg.connect(host=cluster.host, port=cluster.port, user=user, password=password, dbname=dbname,
                    connect_timeout=5).close()


@pytest.fixture(scope="module")
def clusters(pg_bindir):
    factory = ClusterFactory(pg_bindir, prefix="access")
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def clean(clusters):
    """An owner group owns the application's database; the login is a plain member; recent Django users."""
    server = clusters(settings=SETTINGS, name="access-clean")
    server.execute("CREATE ROLE app_owner NOLOGIN")
    server.execute("CREATE ROLE app_web LOGIN PASSWORD 'web-pw-123' IN ROLE app_owner")
    django_database(server, "appdb")
    server.execute("ALTER DATABASE appdb OWNER TO app_owner")
    add_user(server, "appdb", "recent", last_login=days_ago(3))
    add_user(server, "appdb", "gone", last_login=days_ago(500), active=False)
    login(server, "app_web", "web-pw-123", "appdb")
    return server


@pytest.fixture(scope="module")
def dirty(clusters, vault_server):
    vault_client = vault_server.ensure_ready().client()
    server = clusters(settings=SETTINGS, name="access-dirty")
    for statement in (
        "CREATE ROLE app_blue LOGIN SUPERUSER PASSWORD 'blue-pw-123'",
        "CREATE ROLE ops LOGIN CREATEROLE PASSWORD 'ops-pw-123'",
        "CREATE ROLE analyst LOGIN PASSWORD 'analyst-pw-123' IN ROLE pg_read_all_data",
        "CREATE ROLE legacy_report LOGIN PASSWORD 'legacy-pw-123'",
        "CREATE ROLE never_used LOGIN PASSWORD 'never-pw-123'",
        "CREATE ROLE fresh_login LOGIN PASSWORD 'fresh-pw-123'",
    ):
        server.execute(statement)
    django_database(server, "appdb")
    server.execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric)", dbname="appdb")
    server.execute("GRANT SELECT ON orders TO PUBLIC", dbname="appdb")
    add_user(server, "appdb", "admin", last_login=days_ago(2), superuser=True, staff=True)
    add_user(server, "appdb", "olds", last_login=days_ago(400), staff=True)
    add_user(server, "appdb", "newbie", last_login=None, joined_days=200)
    add_user(server, "appdb", "recent", last_login=days_ago(5))
    add_user(server, "appdb", "gone", last_login=days_ago(500), staff=True, active=False)
    perm_id = add_user(server, "appdb", "permuser", last_login=days_ago(1))
    grant_permission(server, "appdb", perm_id, "change_user")
    for user, password in (("app_blue", "blue-pw-123"), ("ops", "ops-pw-123"), ("analyst", "analyst-pw-123"),
                           ("fresh_login", "fresh-pw-123")):
        login(server, user, password)
    app_path, report_path = "access/" + unique("app"), "access/" + unique("report")
    seed(vault_client, app_path, {"username": "app_blue", "password": "blue-pw-123"})
    seed(vault_client, report_path, {"username": "ops", "password": "ops-pw-123"})
    vault_client.secrets.kv.v2.update_metadata(
        path=app_path, mount_point="secret",
        custom_metadata={"upkeep_current_version": "1", "upkeep_rotated_at": stamp(days_ago(120))})
    vault_client.secrets.kv.v2.update_metadata(
        path=report_path, mount_point="secret",
        custom_metadata={"upkeep_current_version": "1", "upkeep_rotated_at": stamp(days_ago(10))})
    server.app_path, server.report_path = app_path, report_path
    vault_client.adapter.close()
    return server


def state_file_with(tmp_path, tracking_days):
    path = tmp_path / "last-seen.json"
    path.write_text(json.dumps({"schema_version": 1, "tracking_since": days_ago(tracking_days).strftime(
        "%Y-%m-%dT%H:%M:%SZ"), "last_seen": {}, "logs": {}}))
    os.chmod(path, 0o600)
    return path


def review(cluster, vault_server=None, check_mode=False, **extra):
    args = cluster.module_args(databases=["postgres", "appdb"], django=[{"database": "appdb"}])
    if vault_server is not None:
        args.update(url=vault_server.url, token=vault_server.token)
    args.update(extra)
    res = run_module(MODULE, args, check_mode=check_mode)
    assert not res.failed, res
    assert cluster.password not in res.output
    return res


def test_clean_setup_has_no_findings(clean, tmp_path):
    state = state_file_with(tmp_path, 365)
    res = review(clean, app_logins=["app_web"], log_files=[str(clean.logfile)], state_file=str(state))
    assert res["findings"] == [], res["findings"]
    assert res["counts"] == {"critical": 0, "high": 0, "medium": 0, "low": 0}
    seen = dict((item["role"], item["last_seen"]) for item in res["logins"])
    assert seen["app_web"] is not None  # the real log_connections line of the fixture's login
    assert not res["changed"] and res["state_written"]
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
    again = review(clean, app_logins=["app_web"], log_files=[str(clean.logfile)], state_file=str(state))
    assert again["findings"] == [] and not again["changed"], again
    assert not again.get("warnings"), again


def test_first_run_reports_no_login_as_unused(dirty, tmp_path):
    state = tmp_path / "new.json"
    res = review(dirty, log_files=[str(dirty.logfile)], state_file=str(state), check_mode=True)
    assert not [item for item in res["findings"] if item["check"] == "unused_login"]
    assert not state.exists()  # check mode writes nothing


def test_every_finding_named_exactly_and_each_fix_removes_it(dirty, vault_server, tmp_path):
    old_log = tmp_path / "postgresql-old.log"
    old_log.write_text(old_log_line(days_ago(120), "legacy_report") + old_log_line(days_ago(100), "ops")
                       + "2026-01-01 00:00:00.000 UTC [1] LOG:  checkpoint starting: time\n")
    state = state_file_with(tmp_path, 200)
    options = dict(log_files=[str(old_log), str(dirty.logfile)], state_file=str(state),
                   vault_app_secret=dirty.app_path, vault_secrets=[dirty.app_path, dirty.report_path])
    res = review(dirty, vault_server, **options)
    expected = [
        "django:appdb:direct-permissions:permuser",
        "django:appdb:inactive:newbie",
        "django:appdb:inactive:olds",
        "django:appdb:staff:admin",
        "django:appdb:staff:olds",
        "django:appdb:superuser:admin",
        "pg:app-superuser:app_blue",
        "pg:createrole:ops",
        "pg:member:pg_read_all_data:analyst",
        "pg:public-grant:appdb:public.orders:select",
        "pg:unused-login:legacy_report",
        "pg:unused-login:never_used",
        "vault:password-age:" + dirty.app_path,
    ]
    assert ids(res) == sorted(expected), json.dumps(res["findings"], indent=1)
    by_id = dict((item["id"], item) for item in res["findings"])
    assert res["app_current_login"] == "app_blue"
    assert res["admin_login"] == "postgres"
    assert res["findings"][0]["id"] == "pg:app-superuser:app_blue"  # critical first
    assert by_id["pg:unused-login:legacy_report"]["fix"] == 'ALTER ROLE "legacy_report" NOLOGIN;'
    assert by_id["pg:unused-login:legacy_report"]["details"]["last_seen"][:10] == \
        days_ago(120).strftime("%Y-%m-%d")
    assert by_id["pg:public-grant:appdb:public.orders:select"]["fix"] == \
        'REVOKE SELECT ON TABLE "public"."orders" FROM PUBLIC;'
    assert by_id["django:appdb:inactive:olds"]["severity"] == "high"  # staff
    assert by_id["django:appdb:inactive:newbie"]["severity"] == "medium"
    assert by_id["django:appdb:direct-permissions:permuser"]["details"]["permissions"] == ["auth.change_user"]
    assert by_id["vault:password-age:" + dirty.app_path]["details"]["age_days"] == 120
    assert "blue-pw-123" not in res.output
    seen = json.loads(state.read_text())["last_seen"]
    assert set(seen) >= {"legacy_report", "ops", "app_blue", "analyst", "fresh_login"}
    assert seen["ops"] > days_ago(1).strftime("%Y-%m-%d")  # the newer real line wins over the old one

    # Each fix statement, run as it is written, removes exactly its finding.
    for fid, item in sorted(by_id.items()):
        if not item["fix"]:
            continue
        database = item["details"].get("database") or ("appdb" if fid.startswith("django:") else "postgres")
        with dirty.connect(dbname=database) as conn:
            conn.execute(item["fix"])
    after = review(dirty, vault_server, **options)
    assert ids(after) == ["vault:password-age:" + dirty.app_path], after["findings"]
    with pytest.raises(psycopg.OperationalError):
        login(dirty, "legacy_report", "legacy-pw-123")


def test_bad_user_table_is_a_clear_failure(clean):
    args = clean.module_args(django=[{"database": "appdb", "user_table": "accounts_user"}])
    res = run_module(MODULE, args)
    assert res.failed
    assert res["msg"] == ("Failed to read Django accounts in database appdb: table public.accounts_user does not "
                          "exist (set user_table)")
    assert "Traceback" not in res.output


def test_unreachable_postgres_is_a_clear_failure(clean):
    res = run_module(MODULE, clean.module_args(login_port=1, connect_timeout=2))
    assert res.failed and res["msg"].startswith("Failed to connect to PostgreSQL at 127.0.0.1:1: ")


def test_state_file_of_another_schema_is_refused(clean, tmp_path):
    state = tmp_path / "s.json"
    state.write_text(json.dumps({"schema_version": 7}))
    res = run_module(MODULE, clean.module_args(state_file=str(state)))
    assert res.failed
    assert res["msg"] == "Failed to read the last-seen state file %s: schema_version 7 is not 1" % state
