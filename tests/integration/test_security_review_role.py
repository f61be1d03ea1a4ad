"""The security_review role through ansible-playbook against a real cluster, Django tables and OpenBao.

The play runs the role on localhost the way quarterly.yml runs it (module_defaults for the postgres
group; PGPASSWORD/VAULT_TOKEN from the environment, never in the play) and writes the host's
security_review_results to a file; the test reads the results a report would get.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.fixtures import tls
from tests.integration.access_helpers import add_user, days_ago, django_database
from tests.integration.test_http_security_review import HOST as WEB_HOST
from tests.integration.test_http_security_review import serve
from tests.integration.module_runner import COLLECTIONS_PATH, REPO_ROOT
from tests.integration.vault_pg_rotate_helpers import seed, unique

pytestmark = pytest.mark.integration


def can_login(cluster, user, password):
    try:
        psycopg.connect(host=cluster.host, port=cluster.port, user=user, password=password, dbname="postgres",
                        connect_timeout=5).close()
    except psycopg.OperationalError:
        return False
    return True


def test_role_reports_each_finding_and_revokes_only_the_approved(pg_cluster_factory, vault_server, tmp_path):
    cluster = pg_cluster_factory(settings={"log_connections": "on"}, name="secrole")
    cluster.execute("CREATE ROLE app_blue LOGIN SUPERUSER PASSWORD 'blue-pw-123'")
    cluster.execute("CREATE ROLE legacy_report LOGIN PASSWORD 'legacy-pw-123'")
    django_database(cluster, "appdb")
    add_user(cluster, "appdb", "olds", last_login=days_ago(400), staff=True)
    client = vault_server.ensure_ready().client()
    path = "secrole/" + unique("app")
    seed(client, path, {"username": "app_blue", "password": "blue-pw-123"})
    client.adapter.close()
    state = tmp_path / "last-seen.json"
    state.write_text(json.dumps({"schema_version": 1, "tracking_since": days_ago(200).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                 "last_seen": {"app_blue": days_ago(1).strftime("%Y-%m-%dT%H:%M:%SZ")}, "logs": {}}))
    out = tmp_path / "results.json"
    # A web site missing one header (no Referrer-Policy), and the sample app's deployment checks.
    ca = tls.make_ca(tmp_path / "web", "upkeep role web CA", days=800)
    cert, key = tls.issue(ca, tmp_path / "web", "web", [WEB_HOST], days=200)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    web = serve(context, {"Strict-Transport-Security": "max-age=31536000",
                          "Content-Security-Policy": "default-src 'self'",
                          "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"})
    env_file = tmp_path / "app.env"
    env_file.write_text("SECRET_KEY=short\nDB_HOST=127.0.0.1\nDB_NAME=x\nDB_USER=x\nDB_PASSWORD=not-used-here\n"
                        "REDIS_URL=redis://127.0.0.1:1/0\nALLOWED_HOSTS=app1\n")
    env_file.chmod(0o600)
    play = [{
        "name": "security review", "hosts": "localhost", "gather_facts": False,
        "module_defaults": {"group/upkeep.runbooks.postgres": {
            "login_host": cluster.host, "login_port": cluster.port, "login_user": "postgres"}},
        "roles": [{"role": "upkeep.runbooks.security_review", "vars": {
            "security_review_postgres_enabled": True,
            "security_review_become_user": "",
            "security_review_databases": ["postgres", "appdb"],
            "security_review_state_file": str(state),
            "security_review_record_file": str(tmp_path / "revocations.json"),
            "security_review_vault_app_secret": path,
            "security_review_django": [{"database": "appdb"}],
            "security_review_http_sites": [{"name": "shop",
                                            "url": "https://%s:%d/" % (WEB_HOST, web.server_address[1])}],
            "security_review_http_ca_cert": str(ca.cert_file),
            "security_review_django_check_command": [sys.executable, str(REPO_ROOT / "lab/app/src/manage.py")],
            "security_review_django_check_env": {"SAMPLEAPP_ENV_FILE": str(env_file)},
            "security_review_approvals": [{"id": "pg:unused-login:legacy_report", "approved_by": "j.doe",
                                           "expires": days_ago(-7).strftime("%Y-%m-%d")}],
        }}],
        "post_tasks": [{"name": "Keep the results", "ansible.builtin.copy": {
            "content": "{{ security_review_results | to_json }}", "dest": str(out), "mode": "0600"}}],
    }]
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(play))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_PATH), PGPASSWORD=cluster.password,
               VAULT_ADDR=vault_server.url, VAULT_TOKEN=vault_server.token, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", "ansible_python_interpreter=%s" % sys.executable, str(playbook)],
        capture_output=True, text=True, env=env, cwd=str(REPO_ROOT), timeout=300, check=False)
    web.shutdown()
    web.server_close()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    assert cluster.password not in proc.stdout + proc.stderr
    results = dict((item["check"], item) for item in json.loads(out.read_text()))
    assert results["security_review:pg:app-superuser:app_blue"]["status"] == "fail"
    assert "ALTER ROLE \"app_blue\" NOSUPERUSER;" in results["security_review:pg:app-superuser:app_blue"]["message"]
    assert results["security_review:pg:unused-login:legacy_report"]["status"] == "warn"
    assert results["security_review:django:appdb:inactive:olds"]["status"] == "fail"
    assert results["security_review:django:appdb:staff:olds"]["status"] == "warn"
    assert results["security_review_access"]["status"] == "warn"
    assert results["security_review_revoke"]["value"]["applied"] == ["pg:unused-login:legacy_report"]
    assert "security_review:tls:pg:127.0.0.1:%s:ssl-off" % cluster.port in results
    assert results["security_review_tls"]["status"] == "warn"
    assert results["security_review:http:shop:referrer-policy"]["status"] == "warn"
    assert results["security_review_http"]["status"] == "warn"
    assert not [name for name in results if name.startswith("security_review:http:") and "referrer" not in name]
    deploy = sorted(name.split(":")[-1] for name in results if name.startswith("security_review:django-deploy:"))
    assert deploy == ["security.W004", "security.W008", "security.W009", "security.W012", "security.W016"], deploy
    assert results["security_review_django_deploy"]["status"] == "ok"
    assert "not-used-here" not in proc.stdout + proc.stderr + out.read_text()
    assert not can_login(cluster, "legacy_report", "legacy-pw-123")
    assert can_login(cluster, "app_blue", "blue-pw-123")
