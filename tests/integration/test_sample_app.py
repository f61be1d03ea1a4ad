"""The lab's sample Django application (lab/app) against a real PostgreSQL and Redis.

The app runs exactly as on the lab host app1: settings from a 0600 env file, migrations,
``seed_demo``, gunicorn with lab/app/gunicorn.conf.py, a Celery worker on Redis. Each
piece runs as a subprocess of the test interpreter, which must have the app's
requirements (lab/app/requirements.txt) installed; otherwise the module is skipped.
"""

import contextlib
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from psycopg import sql

from tests.integration.module_runner import run_module

pytestmark = pytest.mark.integration

for _module in ("django", "gunicorn", "celery", "redis"):
    pytest.importorskip(
        _module, reason=f"the sample app's requirements (lab/app/requirements.txt) are not installed: no {_module}"
    )

APP_DIR = Path(__file__).resolve().parents[2] / "lab" / "app"
SRC_DIR = APP_DIR / "src"

# Secrets with the characters a shell or a naive parser would mangle.
DB_PASSWORD = "pw=with#hash$HOME and 'quotes\" ${PATH}"
SECRET_KEY_1 = "k1-" + "x7Q=#$a" * 8
SECRET_KEY_2 = "k2-" + "Lm9$=#b" * 8
DEMO_PASSWORD = "Demo=pass#$ 2024!"
SEED_ARGS = ["--users", "30", "--customers", "120", "--orders", "400", "--events", "1500", "--seed", "7",
             "--now", "2025-06-01"]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_env_file(path, values, mode=0o600, extra=""):
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("# sample app settings written by the test\n\n")
        handle.write(extra)
        for key, value in values.items():
            handle.write(f"{key}={value}\n")
    os.chmod(path, mode)
    return path


def app_env(env_file, **extra):
    """A clean process environment: nothing from the caller's environment leaks in."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(Path(env_file).parent),
        "PYTHONDONTWRITEBYTECODE": "1",
        "SAMPLEAPP_ENV_FILE": str(env_file),
    }
    env.update(extra)
    return env


def manage(env, *args, check=True, timeout=300):
    proc = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=SRC_DIR, env=env, capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"manage.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def celery(env, *args, check=True, timeout=60):
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "sampleapp", *args],
        cwd=SRC_DIR, env=env, capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"celery {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def stop_process(proc, timeout=20):
    """Stop a process started with start_new_session=True, and its children."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class Redis:
    def __init__(self, workdir):
        self.port = free_port()
        self.log = Path(workdir) / f"redis-{self.port}.log"
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", str(self.log.parent)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited: {self.log.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(64).startswith(b"+PONG"):
                    return self
            time.sleep(0.1)
        pytest.fail("redis-server did not answer PING within 20 s")

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)


@pytest.fixture
def redis_server(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not found (Debian package redis-server)")
    server = Redis(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sample_db(pg_cluster, tmp_path_factory):
    """A migrated and seeded database owned by a role whose password needs verbatim parsing."""
    pg_cluster.execute(sql.SQL("CREATE ROLE sampleapp LOGIN PASSWORD {}").format(sql.Literal(DB_PASSWORD)))
    pg_cluster.execute("CREATE DATABASE sampleapp OWNER sampleapp")
    settings = {
        "SECRET_KEY": SECRET_KEY_1,
        "SECRET_KEY_FALLBACKS": "",
        "DB_HOST": pg_cluster.host,
        "DB_PORT": str(pg_cluster.port),
        "DB_NAME": "sampleapp",
        "DB_USER": "sampleapp",
        "DB_PASSWORD": DB_PASSWORD,
        "DB_SSLMODE": "disable",
        # Not reachable: migrations and seeding do not talk to Redis.
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    env_file = write_env_file(tmp_path_factory.mktemp("sampleapp") / "env", settings)
    env = app_env(env_file, SEED_DEMO_PASSWORD=DEMO_PASSWORD)
    manage(env, "migrate", "--noinput")
    seeded = manage(env, "seed_demo", *SEED_ARGS)
    assert "created 30 users, 1 known users" in seeded.stdout, seeded.stdout
    return {"cluster": pg_cluster, "settings": settings, "env": env, "seed_output": seeded.stdout}


def app_query(sample_db, query, params=None):
    return sample_db["cluster"].execute(query, params, dbname="sampleapp")


class Gunicorn:
    def __init__(self, env_file, workdir):
        self.port = free_port()
        self.env = app_env(env_file, GUNICORN_BIND=f"127.0.0.1:{self.port}")
        self.stdout_path = Path(workdir) / f"gunicorn-{self.port}.out"
        self.stderr_path = Path(workdir) / f"gunicorn-{self.port}.err"
        self.proc = None

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def logs(self):
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(errors="replace")

    def start(self):
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(APP_DIR / "gunicorn.conf.py")],
                cwd=APP_DIR, env=self.env, stdout=out, stderr=err, start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"gunicorn exited ({self.proc.returncode}):\n{self.logs()[-4000:]}")
            with contextlib.suppress(OSError):
                status, _ = http_get(None, self.url("/healthz/"))
                if status in (200, 503):
                    return self
            time.sleep(0.2)
        pytest.fail(f"gunicorn did not answer within 60 s:\n{self.logs()[-4000:]}")

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)


@contextlib.contextmanager
def running_gunicorn(env_file, workdir):
    server = Gunicorn(env_file, workdir)
    try:
        yield server.start()
    finally:
        server.stop()


def make_opener(jar):
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))


def http_get(opener, url):
    opener = opener or urllib.request.build_opener()
    try:
        with opener.open(url, timeout=15) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def login(server, jar, username, password):
    """Sign in through the login form; returns (final URL after redirects, body)."""
    opener = make_opener(jar)
    status, page = http_get(opener, server.url("/accounts/login/"))
    assert status == 200, page
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, page
    form = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": match.group(1), "username": username, "password": password, "next": "/whoami/"}
    ).encode()
    request = urllib.request.Request(server.url("/accounts/login/"), data=form)  # noqa: S310 - http://127.0.0.1 only
    with opener.open(request, timeout=15) as response:
        return response.geturl(), response.read().decode()


def login_ok(server, jar, username, password):
    """Sign in and expect the redirect to /whoami/ saying who we are."""
    final_url, body = login(server, jar, username, password)
    assert final_url == server.url("/whoami/"), body
    assert json.loads(body) == {"authenticated": True, "username": username}


def whoami(server, jar):
    status, body = http_get(make_opener(jar), server.url("/whoami/"))
    assert status == 200, body
    return json.loads(body)


def assert_no_secrets(text, *extra):
    for secret in (DB_PASSWORD, SECRET_KEY_1, SECRET_KEY_2, DEMO_PASSWORD, *extra):
        assert secret not in text


# ---- env file -------------------------------------------------------------------------------------------------


def test_env_file_values_are_taken_verbatim(tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text(
        "# a comment line\n"
        "   # an indented comment\n"
        "\n"
        "SECRET_KEY=a=b#c$d\n"
        "DB_PASSWORD= leading and trailing blanks  \n"
        "QUOTED=\"not unquoted\"\n"
        "DOLLARS=$HOME ${PATH} $(id) `id`\n"
        "HASH=#not a comment\n"
        "EMPTY=\n"
        "  SPACED_KEY = value\n"
        "WINDOWS=crlf\r\n"
        "DUP=first\n"
        "DUP=second\n",
        encoding="utf-8",
    )
    os.chmod(env_file, 0o600)
    code = ("import json, sys; from sampleapp.envfile import parse_env_file; "
            "print(json.dumps(parse_env_file(sys.argv[1])))")
    proc = subprocess.run([sys.executable, "-c", code, str(env_file)], cwd=SRC_DIR, env=app_env(env_file),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "SECRET_KEY": "a=b#c$d",
        "DB_PASSWORD": " leading and trailing blanks  ",
        "QUOTED": '"not unquoted"',
        "DOLLARS": "$HOME ${PATH} $(id) `id`",
        "HASH": "#not a comment",
        "EMPTY": "",
        "SPACED_KEY": " value",
        "WINDOWS": "crlf",
        "DUP": "second",
    }


def test_env_file_errors_name_keys_and_lines_never_values(tmp_path):
    base = {
        "SECRET_KEY": SECRET_KEY_1,
        "DB_HOST": "127.0.0.1",
        "DB_NAME": "sampleapp",
        "DB_USER": "sampleapp",
        "REDIS_URL": "redis://:redis-secret-value@127.0.0.1:6390/0",
        "ALLOWED_HOSTS": "localhost",
    }
    # DB_PASSWORD and (through the process environment override) SECRET_KEY are missing.
    env_file = write_env_file(tmp_path / "env", base)
    proc = manage(app_env(env_file, SECRET_KEY=""), "check", check=False, timeout=120)
    assert proc.returncode != 0
    assert "ImproperlyConfigured" in proc.stderr
    assert re.search(r"Missing required setting\(s\) SECRET_KEY, DB_PASSWORD ", proc.stderr), proc.stderr
    assert_no_secrets(proc.stdout + proc.stderr, "redis-secret-value")

    # The process environment overrides the file.
    env = app_env(env_file, DB_PASSWORD="from-process-env", DB_NAME="overridden")
    proc = manage(env, "shell", "--no-imports", "-c",
                  "from django.conf import settings; print(settings.DATABASES['default']['NAME'])",
                  timeout=120)
    assert proc.stdout.strip() == "overridden"

    # A malformed line is reported by number, without its content.
    bad = write_env_file(tmp_path / "bad", base, extra="this-line-is-a-secret-without-equals\n")
    proc = manage(app_env(bad), "check", check=False, timeout=120)
    assert proc.returncode != 0
    assert "line 3: expected KEY=VALUE" in proc.stderr, proc.stderr
    assert "this-line-is-a-secret" not in proc.stdout + proc.stderr

    # Other users must not be able to read it.
    loose = write_env_file(tmp_path / "loose", {**base, "DB_PASSWORD": "x"}, mode=0o644)
    proc = manage(app_env(loose), "check", check=False, timeout=120)
    assert proc.returncode != 0
    assert "accessible by other users (mode 0644)" in proc.stderr, proc.stderr

    # An env file named explicitly must exist.
    proc = manage(app_env(tmp_path / "absent"), "check", check=False, timeout=120)
    assert proc.returncode != 0
    assert "cannot read" in proc.stderr and "absent" in proc.stderr, proc.stderr


def test_settings_and_secrets_come_from_two_env_files(tmp_path):
    """The lab's layout: provisioned settings in one file, secrets rendered from Vault in another."""
    secret_keys = ("SECRET_KEY", "SECRET_KEY_FALLBACKS", "DB_USER", "DB_PASSWORD", "JWT_SIGNING_KEY",
                   "JWT_SIGNING_KEY_FALLBACKS")
    values = {
        "SECRET_KEY": SECRET_KEY_2,
        "SECRET_KEY_FALLBACKS": SECRET_KEY_1 + ",older-key-value",
        "DB_HOST": "127.0.0.1",
        "DB_NAME": "sampleapp",
        "DB_USER": "sampleapp_blue",
        "DB_PASSWORD": "pw-from-vault",
        "JWT_SIGNING_KEY": "jwt-current-value",
        "JWT_SIGNING_KEY_FALLBACKS": "jwt-previous-value",
        "REDIS_URL": "redis://127.0.0.1:6390/0",
        "ALLOWED_HOSTS": "localhost",
    }
    settings_file = write_env_file(tmp_path / "env", {k: v for k, v in values.items() if k not in secret_keys})
    secrets_file = write_env_file(tmp_path / "secrets.env", {k: values[k] for k in secret_keys})
    both = f"{settings_file}:{secrets_file}"
    code = ("import json; from django.conf import settings as s; print(json.dumps([s.SECRET_KEY, "
            "s.SECRET_KEY_FALLBACKS, s.DATABASES['default']['USER'], s.DATABASES['default']['PASSWORD'], "
            "s.JWT_SIGNING_KEY, s.JWT_SIGNING_KEY_FALLBACKS]))")
    proc = manage(app_env(settings_file, SAMPLEAPP_ENV_FILE=both), "shell", "--no-imports", "-c", code, timeout=120)
    assert json.loads(proc.stdout) == [SECRET_KEY_2, [SECRET_KEY_1, "older-key-value"], "sampleapp_blue",
                                       "pw-from-vault", "jwt-current-value", ["jwt-previous-value"]]

    # A key in both files is refused, naming the key and both files but no value.
    write_env_file(settings_file, {**{k: v for k, v in values.items() if k not in secret_keys},
                                   "DB_PASSWORD": "stale-password-value"})
    proc = manage(app_env(settings_file, SAMPLEAPP_ENV_FILE=both), "check", check=False, timeout=120)
    assert proc.returncode != 0
    assert f"DB_PASSWORD is set in both {settings_file} and {secrets_file}" in proc.stderr, proc.stderr
    assert_no_secrets(proc.stdout + proc.stderr, "stale-password-value", "pw-from-vault")

    # Every file named must exist: a secrets file not rendered yet stops the app.
    proc = manage(app_env(settings_file, SAMPLEAPP_ENV_FILE=f"{settings_file}:{tmp_path / 'missing.env'}"),
                  "check", check=False, timeout=120)
    assert proc.returncode != 0
    assert "cannot read" in proc.stderr and "missing.env" in proc.stderr, proc.stderr


# ---- seed_demo ----------------------------------------------------------------------------------------------


DIGESTS = {
    "orders_customer": "SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM orders_customer t",
    "orders_order": "SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM orders_order t",
    "orders_orderline": "SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM orders_orderline t",
    # Only seeded events (all before --now): the app adds its own as other tests sign in.
    "audit_event": "SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM audit_event t "
                   "WHERE created_at <= '2025-06-01T00:00:00Z'",
    "auth_user": "SELECT md5(string_agg(concat_ws(',', id, username, email, first_name, last_name, is_staff, "
                 "is_active, date_joined, last_login), '|' ORDER BY id)) FROM auth_user WHERE username <> 'demo'",
}


def digests(sample_db):
    return {table: app_query(sample_db, query)[0][0] for table, query in DIGESTS.items()}


def test_seed_demo_data_is_realistic_idempotent_and_deterministic(sample_db):
    counts = app_query(sample_db, """
        SELECT (SELECT count(*) FROM auth_user), (SELECT count(*) FROM accounts_profile),
               (SELECT count(*) FROM orders_customer), (SELECT count(*) FROM orders_order),
               (SELECT count(*) FROM audit_event WHERE created_at <= '2025-06-01T00:00:00Z'),
               (SELECT count(*) FROM orders_orderline),
               (SELECT count(*) FROM django_session)""")[0]
    assert counts[:5] == (31, 31, 120, 400, 1500)
    assert counts[5] >= 400 and counts[6] > 0

    # Realistic content: non-ASCII text, emoji, IPv4 and IPv6, two years of timestamps, consistent totals.
    assert app_query(sample_db, "SELECT count(*) FROM orders_customer WHERE name !~ '^[ -~]*$'")[0][0] > 0
    assert app_query(sample_db, "SELECT count(*) FROM orders_order WHERE notes ~ '[\\U0001F300-\\U0001FAFF]'")[0][0] > 0
    assert app_query(sample_db, "SELECT count(*) FROM audit_event WHERE family(ip) = 6")[0][0] > 0
    shapes = app_query(sample_db, """
        SELECT count(DISTINCT (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(payload) AS k))
        FROM audit_event""")[0][0]
    assert shapes >= 10
    span = app_query(sample_db, "SELECT max(created_at) - min(created_at) FROM audit_event")[0][0]
    assert span.days > 500
    mismatched = app_query(sample_db, """
        SELECT count(*) FROM orders_order o
        WHERE o.total <> (SELECT sum(l.quantity * l.unit_price) FROM orders_orderline l WHERE l.order_id = o.id)""")
    assert mismatched[0][0] == 0
    demo_hash = app_query(sample_db, "SELECT password FROM auth_user WHERE username = 'demo'")[0][0]
    assert demo_hash.startswith("pbkdf2_sha256$")

    before = digests(sample_db)
    again = manage(sample_db["env"], "seed_demo", *SEED_ARGS)
    assert "nothing to do" in again.stdout
    assert digests(sample_db) == before

    reseeded = manage(sample_db["env"], "seed_demo", "--force", *SEED_ARGS)
    assert "created 30 users" in reseeded.stdout
    assert digests(sample_db) == before
    assert_no_secrets(sample_db["seed_output"] + again.stdout + again.stderr + reseeded.stdout + reseeded.stderr)


def test_committed_migrations_match_the_models(sample_db):
    manage(sample_db["env"], "makemigrations", "--check", "--dry-run")


# ---- gunicorn --------------------------------------------------------------------------------------------------


def test_gunicorn_health_login_and_redis_outage(sample_db, redis_server, tmp_path):
    env_file = write_env_file(tmp_path / "env", {**sample_db["settings"], "REDIS_URL": redis_server.url})
    with running_gunicorn(env_file, tmp_path) as server:
        status, body = http_get(None, server.url("/healthz/?token=query-string-secret"))
        assert status == 200, body
        assert json.loads(body) == {"status": "ok", "database": "ok", "redis": "ok"}

        jar = http.cookiejar.CookieJar()
        assert whoami(server, jar) == {"authenticated": False, "username": None}
        final_url, page = login(server, jar, "demo", "wrong password")
        assert final_url == server.url("/accounts/login/") and "did not match" in page
        login_ok(server, jar, "demo", DEMO_PASSWORD)
        assert whoami(server, jar) == {"authenticated": True, "username": "demo"}

        status, body = http_get(make_opener(jar), server.url("/events/recent/"))
        assert status == 200, body
        events = json.loads(body)["events"]
        assert len(events) == 20
        assert [event["created_at"] for event in events] == sorted((e["created_at"] for e in events), reverse=True)
        status, body = http_get(make_opener(jar), server.url("/events/recent/?action=login"))
        newest = json.loads(body)["events"][0]
        assert newest["actor"] == "demo" and newest["ip"] == "127.0.0.1"
        status, body = http_get(make_opener(jar), server.url("/events/recent/?action=login_failed"))
        assert json.loads(body)["events"][0]["payload"] == {"username": "demo"}
        assert http_get(None, server.url("/events/recent/"))[0] == 401

        redis_server.stop()
        status, body = http_get(None, server.url("/healthz/"))
        assert status == 503, body
        assert json.loads(body) == {"status": "fail", "database": "ok", "redis": "ConnectionError"}

        # CONN_MAX_AGE=0: no worker keeps a connection (tagged application_name=sampleapp) between requests.
        deadline = time.monotonic() + 10
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sampleapp'"
        while app_query(sample_db, query)[0][0]:
            assert time.monotonic() < deadline, "the app keeps database connections open between requests"
            time.sleep(0.2)
    logs = server.logs()
    assert '"GET /healthz/ HTTP/1.1" 200' in logs
    assert "query-string-secret" not in logs
    assert_no_secrets(logs)


def test_secret_key_rotation_keeps_sessions_through_fallbacks(sample_db, redis_server, tmp_path):
    """The Django side of SECRET_KEY rotation, as the rotation runbook performs it."""
    settings = {**sample_db["settings"], "REDIS_URL": redis_server.url}
    used, idle = http.cookiejar.CookieJar(), http.cookiejar.CookieJar()

    env_file = write_env_file(tmp_path / "env", {**settings, "SECRET_KEY": SECRET_KEY_1})
    with running_gunicorn(env_file, tmp_path) as server:
        for jar in (used, idle):
            login_ok(server, jar, "demo", DEMO_PASSWORD)

    # New key, old key as fallback: both sessions still valid; a used one is re-signed.
    write_env_file(env_file, {**settings, "SECRET_KEY": SECRET_KEY_2, "SECRET_KEY_FALLBACKS": SECRET_KEY_1})
    with running_gunicorn(env_file, tmp_path) as server:
        assert whoami(server, used) == {"authenticated": True, "username": "demo"}

    # Fallback dropped: the session used during the window survives, the idle one is logged out.
    write_env_file(env_file, {**settings, "SECRET_KEY": SECRET_KEY_2, "SECRET_KEY_FALLBACKS": ""})
    with running_gunicorn(env_file, tmp_path) as server:
        assert whoami(server, used) == {"authenticated": True, "username": "demo"}
        assert whoami(server, idle) == {"authenticated": False, "username": None}
    assert_no_secrets(server.logs())


def test_gunicorn_reports_database_outage(sample_db, redis_server, tmp_path):
    settings = {**sample_db["settings"], "REDIS_URL": redis_server.url, "DB_PASSWORD": "not-the-password"}
    env_file = write_env_file(tmp_path / "env", settings)
    with running_gunicorn(env_file, tmp_path) as server:
        status, body = http_get(None, server.url("/healthz/"))
    assert status == 503, body
    assert json.loads(body) == {"status": "fail", "database": "OperationalError", "redis": "ok"}
    assert "not-the-password" not in server.logs()


def test_revenue_search_counts_and_sums_what_sql_finds(sample_db, redis_server, tmp_path):
    """/orders/revenue/: the lab's slow query (docs/database-maintenance.md), aggregates only, no sign-in."""
    env_file = write_env_file(tmp_path / "env", {**sample_db["settings"], "REDIS_URL": redis_server.url})
    with running_gunicorn(env_file, tmp_path) as server:
        status, body = http_get(None, server.url("/orders/revenue/?q=gi"))
        assert status == 400 and "at least 3" in body, body
        status, body = http_get(None, server.url("/orders/revenue/?q=GIFT"))
        assert status == 200, body
        status, nothing = http_get(None, server.url("/orders/revenue/?q=no-such-text-anywhere"))
    rows = app_query(
        sample_db,
        "SELECT currency, count(*), sum(total)::text FROM orders_order "
        "WHERE upper(notes) LIKE upper(%(q)s) OR upper(metadata::text) LIKE upper(%(q)s) GROUP BY currency",
        {"q": "%gift%"},
    )
    found = json.loads(body)
    assert found["q"] == "GIFT"
    assert found["orders"] == sum(count for _, count, _ in rows) > 0
    assert found["revenue"] == {currency: total for currency, _, total in rows}
    assert json.loads(nothing) == {"q": "no-such-text-anywhere", "orders": 0, "revenue": {}}


# ---- celery -------------------------------------------------------------------------------------------------


def test_celery_worker_records_heartbeat(sample_db, redis_server, tmp_path):
    env_file = write_env_file(tmp_path / "env", {**sample_db["settings"], "REDIS_URL": redis_server.url})
    env = app_env(env_file)
    log_path = tmp_path / "worker.log"
    with open(log_path, "ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "sampleapp", "worker", "--pool", "solo", "--loglevel", "INFO",
             "--without-gossip", "--without-mingle", "--hostname", "sampleapp-test@%h"],
            cwd=SRC_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            ping = celery(env, "inspect", "ping", "--timeout", "2", check=False)
            if ping.returncode == 0 and "pong" in ping.stdout:
                break
            assert worker.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, f"worker never answered ping:\n{ping.stdout}\n{ping.stderr}"
            time.sleep(0.5)

        task_id = celery(env, "call", "audit.tasks.record_heartbeat").stdout.strip()
        assert re.fullmatch(r"[0-9a-f-]{36}", task_id), task_id
        deadline = time.monotonic() + 30
        while not app_query(sample_db, "SELECT 1 FROM audit_event WHERE action = 'heartbeat' AND payload ->> "
                                       "'task_id' = %s", (task_id,)):
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.3)
    finally:
        stop_process(worker)
    assert_no_secrets(log_path.read_text(errors="replace"))


def test_sign_in_signals_write_lines_auth_failure_review_counts(sample_db, redis_server, tmp_path):
    """audit.signals logs one JSON line per failed and successful sign-in (docs/platform-health.md)."""
    env_file = write_env_file(tmp_path / "env", {**sample_db["settings"], "REDIS_URL": redis_server.url})
    with running_gunicorn(env_file, tmp_path) as server:
        for _ in range(5):
            final_url, _page = login(server, http.cookiejar.CookieJar(), "demo", "wrong password")
            assert final_url == server.url("/accounts/login/")
        login(server, http.cookiejar.CookieJar(), "nobody-here", "x")
        login_ok(server, http.cookiejar.CookieJar(), "demo", DEMO_PASSWORD)
    res = run_module("auth_failure_review", {
        "logs": [{"kind": "django", "path": str(server.stderr_path)}],
        "state_file": str(tmp_path / "auth-state.json"),
        "host_label": "app1",
    })
    assert not res.failed, res
    assert res["by_user"] == {"demo": 5, "nobody-here": 1}
    assert res["by_source"] == {"127.0.0.1": 6}
    assert res["successes"] == 1
    assert res["suspicious_successes"] == [{"kind": "django", "log": f"django:{server.stderr_path}",
                                            "address": "127.0.0.1", "user": "demo", "failures_before": 6}]
    assert_no_secrets(server.logs())
