"""Unit tests for plugins/module_utils/_postgres.py and its doc fragment (no server needed)."""

from __future__ import annotations

import json
from unittest import mock

import pytest
import yaml
from ansible.module_utils import basic
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.upkeep.runbooks.plugins.doc_fragments.postgres import ModuleDocFragment
from ansible_collections.upkeep.runbooks.plugins.module_utils import _postgres as pg

psycopg = pytest.importorskip("psycopg")

SECRET = "s3cr3t-Pa55"


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


@pytest.fixture
def fake_module():
    module = mock.Mock()
    module.params = {}

    def fail_json(**kwargs):
        raise FailJson(kwargs)

    module.fail_json.side_effect = fail_json
    return module


# ------------------------------------------------------------------ argument spec and docs


def validated(params, monkeypatch=None, env=None):
    for key in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE", "PGSSLROOTCERT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    res = ArgumentSpecValidator(pg.postgres_common_argument_spec()).validate(params)
    return res


def test_spec_defaults(monkeypatch):
    res = validated({}, monkeypatch)
    assert res.error_messages == []
    p = res.validated_parameters
    assert p["login_port"] == 5432
    assert p["login_user"] == "postgres"
    assert p["login_db"] == "postgres"
    assert p["ssl_mode"] == "prefer"
    assert p["connect_timeout"] == 10
    assert p["login_host"] is None
    assert p["login_password"] is None
    assert p["session_role"] is None


def test_spec_env_fallbacks(monkeypatch):
    env = {
        "PGHOST": "127.0.0.5",
        "PGPORT": "6543",
        "PGUSER": "monitor",
        "PGPASSWORD": SECRET,
        "PGDATABASE": "app",
        "PGSSLMODE": "require",
        "PGSSLROOTCERT": "/etc/ca.pem",
    }
    res = validated({}, monkeypatch, env)
    assert res.error_messages == []
    p = res.validated_parameters
    assert (p["login_host"], p["login_port"], p["login_user"], p["login_db"]) == ("127.0.0.5", 6543, "monitor", "app")
    assert p["login_password"] == SECRET
    assert p["ssl_mode"] == "require"
    assert p["ca_cert"] == "/etc/ca.pem"
    assert SECRET in res._no_log_values


def test_spec_explicit_beats_env(monkeypatch):
    res = validated({"login_port": 5433, "login_user": "x"}, monkeypatch, {"PGPORT": "6543", "PGUSER": "y"})
    assert res.validated_parameters["login_port"] == 5433
    assert res.validated_parameters["login_user"] == "x"


def test_spec_aliases(monkeypatch):
    res = validated({"host": "db1", "ssl_rootcert": "/ca.pem"}, monkeypatch)
    assert res.validated_parameters["login_host"] == "db1"
    assert res.validated_parameters["ca_cert"] == "/ca.pem"


def test_spec_rejects_bad_values(monkeypatch):
    res = validated({"ssl_mode": "sometimes", "login_port": "five"}, monkeypatch)
    text = " ".join(res.error_messages)
    assert "ssl_mode" in text and "sometimes" in text
    assert "login_port" in text


def test_password_is_no_log():
    spec = pg.postgres_common_argument_spec()
    assert spec["login_password"]["no_log"] is True
    assert [k for k, v in spec.items() if v.get("no_log")] == ["login_password"]


def test_doc_fragment_matches_spec():
    doc = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)
    spec = pg.postgres_common_argument_spec()
    assert set(doc["options"]) == set(spec)
    for name, option in spec.items():
        documented = doc["options"][name]
        assert documented.get("type", "str") == option.get("type", "str"), name
        assert documented.get("default") == option.get("default"), name
        assert sorted(documented.get("aliases", [])) == sorted(option.get("aliases", [])), name
        assert documented.get("choices") == option.get("choices"), name
        assert documented["description"], name
    assert any("psycopg >= 3.1" in r for r in doc["requirements"])


# ------------------------------------------------------------------ connection keywords


def test_connection_kwargs_tcp():
    kw = pg.connection_kwargs({
        "login_host": "127.0.0.11", "login_port": 5433, "login_user": "mon", "login_password": SECRET,
        "login_db": "app", "ssl_mode": "verify-full", "ca_cert": "/ca.pem", "connect_timeout": 3,
    })
    assert kw == {
        "host": "127.0.0.11", "port": 5433, "user": "mon", "password": SECRET, "dbname": "app",
        "sslmode": "verify-full", "sslrootcert": "/ca.pem", "connect_timeout": "3",
        "application_name": "upkeep.runbooks",
    }


def test_connection_kwargs_socket_wins_and_no_empty_values():
    kw = pg.connection_kwargs({"login_host": "db1", "login_unix_socket": "/run/postgresql", "login_port": 5432})
    assert kw["host"] == "/run/postgresql"
    assert "password" not in kw and "sslrootcert" not in kw


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"login_host": "127.0.0.11", "login_port": 5432}, "127.0.0.11:5432"),
        ({"login_unix_socket": "/run/postgresql/", "login_port": 5433}, "/run/postgresql/.s.PGSQL.5433"),
        ({"login_host": "/tmp/sock", "login_port": 5432}, "/tmp/sock/.s.PGSQL.5432"),
        ({"login_port": 5432}, "local socket (port 5432)"),
    ],
)
def test_target(params, expected):
    assert pg.target(params) == expected


# ------------------------------------------------------------------ error mapping


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('connection failed: connection to server at "127.0.0.1", port 5999 failed: Connection refused\n'
         "\tIs the server running on that host and accepting TCP/IP connections?", "connection refused"),
        ('connection to server at "127.0.0.1", port 5432 failed: timeout expired', "timed out"),
        ("connection timeout expired", "timed out"),
        ('connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  password '
         'authentication failed for user "monitor"', "authentication failed for user 'monitor'"),
        ("fe_sendauth: no password supplied", "none was given"),
        ('FATAL:  database "app" does not exist', "database 'app' does not exist"),
        ('FATAL:  role "ghost" does not exist', "role 'ghost' does not exist"),
        ('FATAL:  permission denied for database "app"\nDETAIL:  User does not have CONNECT privilege.',
         "may not connect to database 'app'"),
        ("permission denied for table pg_authid", "permission denied for table pg_authid"),
        ("server does not support SSL, but SSL was required", "SSL error: server does not support SSL"),
        ('root certificate file "/nope" does not exist', "SSL error"),
        ('FATAL:  no pg_hba.conf entry for host "127.0.0.1", user "u", database "d", no encryption',
         "pg_hba.conf on the server has no entry allowing user 'u' to database 'd' from 127.0.0.1"),
        ('could not translate host name "db9" to address: Name or service not known', "cannot resolve host name 'db9'"),
        ('connection to server on socket "/x/.s.PGSQL.5432" failed: No such file or directory', "no server socket"),
        ("FATAL:  sorry, too many clients already", "no free connection slots"),
        ("FATAL:  the database system is starting up", "the server is starting up"),
    ],
)
def test_describe_error_known_causes(text, expected):
    assert expected in pg.describe_error(psycopg.OperationalError(text))


def test_describe_error_unknown_keeps_first_line_and_sqlstate():
    exc = psycopg.errors.UndefinedTable('relation "nosuch" does not exist\nLINE 1: select * from nosuch')
    text = pg.describe_error(exc)
    assert text.startswith('relation "nosuch" does not exist')
    assert "LINE 1" not in text


def test_describe_error_masks_secrets():
    exc = psycopg.OperationalError("weird failure mentioning %s in passing" % SECRET)
    text = pg.describe_error(exc, secrets=[SECRET, None, ""])
    assert SECRET not in text and "********" in text


def test_describe_error_non_psycopg():
    assert pg.describe_error(ValueError("")) == "ValueError"
    assert "boom" in pg.describe_error(RuntimeError("boom"))


# ------------------------------------------------------------------ connecting


def test_open_connection_passes_password_as_keyword():
    params = {"login_host": "127.0.0.1", "login_port": 5432, "login_user": "u", "login_password": SECRET}
    with mock.patch.object(pg.psycopg, "connect") as connect:
        pg.open_connection(params)
    args, kwargs = connect.call_args
    assert args == ()  # no conninfo string at all
    assert kwargs["password"] == SECRET
    assert kwargs["autocommit"] is True
    assert kwargs["application_name"] == "upkeep.runbooks"


def test_open_connection_failure_message():
    params = {"login_host": "127.0.0.1", "login_port": 5999, "login_password": SECRET}
    err = psycopg.OperationalError(
        'connection to server at "127.0.0.1", port 5999 failed: Connection refused (password %s)' % SECRET
    )
    with mock.patch.object(pg.psycopg, "connect", side_effect=err):
        with pytest.raises(pg.PostgresConnectError) as info:
            pg.open_connection(params)
    assert str(info.value).startswith("Failed to connect to PostgreSQL at 127.0.0.1:5999: connection refused")
    assert SECRET not in str(info.value)


def test_open_connection_sets_session_role_through_identifier():
    conn = mock.Mock()
    with mock.patch.object(pg.psycopg, "connect", return_value=conn):
        assert pg.open_connection({"session_role": 'odd"role'}) is conn
    statement = conn.execute.call_args[0][0]
    assert isinstance(statement, psycopg.sql.Composed)
    assert any(isinstance(part, psycopg.sql.Identifier) for part in statement)


def test_session_role_survives_rollback_without_autocommit():
    conn = mock.Mock()
    with mock.patch.object(pg.psycopg, "connect", return_value=conn):
        pg.open_connection({"session_role": "app_owner"}, autocommit=False)
    conn.commit.assert_called_once()


def test_open_connection_session_role_failure_closes():
    conn = mock.Mock()
    conn.execute.side_effect = psycopg.errors.InvalidParameterValue('role "ghost" does not exist')
    with mock.patch.object(pg.psycopg, "connect", return_value=conn):
        with pytest.raises(pg.PostgresError, match="session_role 'ghost'.*role 'ghost' does not exist") as info:
            pg.open_connection({"session_role": "ghost", "login_host": "h", "login_port": 1})
    assert not isinstance(info.value, pg.PostgresConnectError)
    conn.close.assert_called_once()


def test_connect_fails_module_cleanly(fake_module):
    fake_module.params = {"login_host": "127.0.0.1", "login_port": 5999}
    with mock.patch.object(pg.psycopg, "connect", side_effect=psycopg.OperationalError("Connection refused")):
        with pytest.raises(FailJson) as info:
            pg.connect(fake_module)
    assert info.value.args[0]["msg"].startswith("Failed to connect to PostgreSQL at 127.0.0.1:5999: connection refused")


def test_ensure_psycopg_missing(fake_module, monkeypatch):
    monkeypatch.setattr(pg, "psycopg", None)
    with pytest.raises(FailJson) as info:
        pg.ensure_psycopg(fake_module)
    assert "psycopg" in info.value.args[0]["msg"]
    assert "Failed to import the required Python library" in info.value.args[0]["msg"]


def test_ensure_psycopg_too_old(fake_module, monkeypatch):
    monkeypatch.setattr(pg, "psycopg", mock.Mock(__version__="3.0.18"))
    with pytest.raises(FailJson, match=r"psycopg >= 3\.1"):
        pg.ensure_psycopg(fake_module)


def test_ensure_psycopg_ok(fake_module):
    pg.ensure_psycopg(fake_module)
    fake_module.fail_json.assert_not_called()


# ------------------------------------------------------------------ queries


def fake_conn(rows=None, error=None, description=True):
    cursor = mock.Mock()
    cursor.description = [("x",)] if description else None
    cursor.fetchall.return_value = rows or []
    cursor.fetchone.return_value = (rows or [None])[0]
    if error:
        cursor.execute.side_effect = error
    conn = mock.Mock()
    conn.cursor.return_value = cursor
    return conn, cursor


def test_query_all_and_one_bind_parameters():
    conn, cursor = fake_conn([{"a": 1}, {"a": 2}])
    assert pg.query_all(conn, "SELECT a FROM t WHERE b = %s", ("x",)) == [{"a": 1}, {"a": 2}]
    cursor.execute.assert_called_with("SELECT a FROM t WHERE b = %s", ("x",))
    assert conn.cursor.call_args.kwargs["row_factory"] is pg.dict_row
    assert pg.query_one(conn, "SELECT 1") == {"a": 1}


def test_query_without_result_rows():
    conn, _ = fake_conn(description=False)
    assert pg.query_all(conn, "SET x = 1") == []
    assert pg.query_one(conn, "SET x = 1") is None


def test_query_errors_become_postgres_error():
    conn, _ = fake_conn(error=psycopg.errors.InsufficientPrivilege("permission denied for function pg_ls_waldir"))
    with pytest.raises(pg.PostgresError) as info:
        pg.query_all(conn, "SELECT 1")
    assert "permission denied for function pg_ls_waldir" in str(info.value)
    assert info.value.sqlstate == "42501"


def test_helpers_read_version_and_recovery():
    conn = mock.Mock()
    with mock.patch.object(pg, "query_one", side_effect=[{"num": 150008}, {"version": "15.8 (Debian)"},
                                                         {"in_recovery": True}]):
        assert pg.server_version_num(conn) == 150008
        assert pg.server_version(conn) == "15.8"
        assert pg.is_in_recovery(conn) is True


def test_identifier_quotes():
    statement = pg.sql("DROP ROLE {0}").format(pg.identifier('we"ird'))
    parts = list(statement)
    assert isinstance(parts[1], psycopg.sql.Identifier)
    if pg._version_tuple(psycopg.__version__) >= (3, 2):  # rendering without a connection needs psycopg 3.2
        assert statement.as_string(None) == 'DROP ROLE "we""ird"'


def test_module_args_reach_module_through_stdin_format():
    # The spec is usable by a real AnsibleModule (as every module builds it).
    payload = json.dumps({"ANSIBLE_MODULE_ARGS": {"login_port": "5432", "_ansible_check_mode": True}})
    with mock.patch.object(basic, "_ANSIBLE_ARGS", payload.encode()), \
            mock.patch.object(basic, "_ANSIBLE_PROFILE", "legacy"):
        module = basic.AnsibleModule(argument_spec=pg.postgres_common_argument_spec(), supports_check_mode=True)
    assert module.params["login_port"] == 5432
    assert module.check_mode is True
