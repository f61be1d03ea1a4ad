"""tls_review against real PostgreSQL clusters with and without TLS and a real TLS endpoint.

Certificates come from tests/fixtures/tls.py (a CA of the test's own); PostgreSQL serves them with
``ssl = on``, so the certificate is read after a real SSLRequest. The extra endpoint is a Python TLS
server on 127.0.9.x (this work's loopback range).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import threading

import pytest

from tests.fixtures import tls
from tests.integration.module_runner import run_module

pytestmark = pytest.mark.integration

MODULE = "tls_review"
ENDPOINT_HOST = "127.0.9.20"


def tls_cluster(factory, tmp_path, name, days):
    cluster = factory(start=False, name=name)
    ca = tls.make_ca(tmp_path / name, "upkeep security test CA", days=800)
    cert, key = tls.issue(ca, tmp_path / name, "server", ["127.0.0.1"], days=days)
    for source, target in ((cert, "server.crt"), (key, "server.key")):
        shutil.copy(source, cluster.base / target)
        cluster._chown(cluster.base / target)
        (cluster.base / target).chmod(0o600)
    cluster.set(ssl="on", ssl_cert_file=str(cluster.base / "server.crt"), ssl_key_file=str(cluster.base / "server.key"))
    hba = cluster.datadir / "pg_hba.conf"
    hba.write_text(hba.read_text().replace("host    all          all   127.0.0.1/32    scram-sha-256",
                                           "hostssl all          all   127.0.0.1/32    scram-sha-256"))
    cluster.start()
    return cluster


def review(cluster, **extra):
    res = run_module(MODULE, cluster.module_args(**extra))
    assert not res.failed, res
    assert cluster.password not in res.output
    return res


def ids(res):
    return sorted(item["id"] for item in res["findings"])


def test_clean_tls_server_has_no_findings(pg_cluster_factory, tmp_path):
    cluster = tls_cluster(pg_cluster_factory, tmp_path, "tls-clean", 400)
    res = review(cluster, ssl_mode="require")
    assert res["findings"] == [], res["findings"]
    cert = res["certificates"]["postgresql"]
    assert cert["subject"] == "CN=127.0.0.1" and cert["issuer"] == "CN=upkeep security test CA"
    assert 398 <= cert["days_left"] <= 400
    assert cert["protocol"] in ("TLSv1.2", "TLSv1.3")
    assert res["settings"] == {"ssl": "on", "ssl_min_protocol_version": "TLSv1.2",
                               "password_encryption": "scram-sha-256"}


def test_certificate_expiry_warn_and_fail(pg_cluster_factory, tmp_path):
    cluster = tls_cluster(pg_cluster_factory, tmp_path, "tls-soon", 10)
    label = "127.0.0.1:%s" % cluster.port
    res = review(cluster, ssl_mode="require")
    assert ids(res) == ["tls:pg:%s:cert-expiry" % label]
    assert res["findings"][0]["severity"] == "medium"
    assert "expires in 9 days" in res["findings"][0]["summary"] or "expires in 10 days" in res["findings"][0]["summary"]
    strict = review(cluster, ssl_mode="require", fail_days=14)
    assert strict["findings"][0]["severity"] == "high"


def test_plain_server_with_open_hba_is_named_exactly(pg_cluster_factory):
    cluster = pg_cluster_factory(name="tls-plain")
    hba = cluster.datadir / "pg_hba.conf"
    hba.write_text(hba.read_text() + "host    all          all   0.0.0.0/0       md5\n")
    cluster.execute("SELECT pg_reload_conf()")
    cluster.execute("ALTER SYSTEM SET ssl_min_protocol_version = 'TLSv1'")
    cluster.execute("SELECT pg_reload_conf()")
    label = "127.0.0.1:%s" % cluster.port
    res = review(cluster)
    assert ids(res) == sorted([
        "tls:pg:%s:ssl-off" % label,
        "tls:pg:%s:min-protocol" % label,
        "tls:pg:%s:hba-nossl:host:all:all:0.0.0.0" % label,
        "tls:pg:%s:hba-md5:host:all:all:0.0.0.0" % label,
    ]), res["findings"]
    assert "postgresql" not in res["certificates"]


@pytest.fixture
def endpoint(tmp_path):
    ca = tls.make_ca(tmp_path / "ep", "upkeep endpoint CA", days=800)
    cert, key = tls.issue(ca, tmp_path / "ep", "endpoint", [ENDPOINT_HOST], days=5)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.socket()
    listener.bind((ENDPOINT_HOST, 0))
    listener.listen(5)
    stop = threading.Event()

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    listener.close()


def test_endpoint_certificate_expiring_fails(endpoint):
    res = run_module(MODULE, {"check_postgres": False, "endpoints": [
        {"name": "vault", "host": ENDPOINT_HOST, "port": endpoint}]})
    assert not res.failed, res
    assert ids(res) == ["tls:vault:cert-expiry"]
    assert res["findings"][0]["severity"] == "high"
    assert res["certificates"]["vault"]["subject"] == "CN=%s" % ENDPOINT_HOST


def test_unreachable_endpoint_is_a_clear_failure():
    res = run_module(MODULE, {"check_postgres": False, "endpoints": [{"name": "s3", "host": ENDPOINT_HOST, "port": 1}]})
    assert res.failed
    assert res["msg"].startswith("Failed to connect to %s:1: " % ENDPOINT_HOST), res["msg"]
