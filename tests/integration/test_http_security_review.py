"""http_security_review against real HTTPS and HTTP servers on 127.0.9.x with a certificate of the test CA.

A hardened site (every header, redirect to HTTPS, CORS limited to its own origin) gives no finding;
a careless one (no headers, plain HTTP served, CORS echoing any origin with credentials) gives
each finding exactly.
"""

from __future__ import annotations

import http.server
import ssl
import threading

import pytest

from tests.fixtures import tls
from tests.integration.module_runner import run_module

pytestmark = pytest.mark.integration

HOST = "127.0.9.21"
GOOD_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def serve(context=None, headers=None, redirect=False, echo_origin=False):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server interface
            if redirect:
                self.send_response(301)
                self.send_header("Location", "https://%s/" % HOST)
                self.end_headers()
                return
            self.send_response(200)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            origin = self.headers.get("Origin")
            if echo_origin and origin:
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture
def sites(tmp_path):
    ca = tls.make_ca(tmp_path, "upkeep web CA", days=800)
    cert, key = tls.issue(ca, tmp_path, "web", [HOST], days=200)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    servers = {
        "good": serve(context, GOOD_HEADERS),
        "good_http": serve(redirect=True),
        "bad": serve(context, {}, echo_origin=True),
        "bad_http": serve(headers={}),
    }
    yield ca.cert_file, dict((name, server.server_address[1]) for name, server in servers.items())
    for server in servers.values():
        server.shutdown()
        server.server_close()


def test_hardened_site_has_no_findings(sites):
    ca_file, ports = sites
    res = run_module("http_security_review", {"ca_cert": str(ca_file), "sites": [
        {"name": "shop", "url": "https://%s:%d/" % (HOST, ports["good"]),
         "http_url": "http://%s:%d/" % (HOST, ports["good_http"])}]})
    assert not res.failed, res
    assert res["findings"] == [], res["findings"]
    assert res["responses"]["shop"]["status"] == 200
    assert res["responses"]["shop"]["headers"]["x-frame-options"] == "DENY"


def test_careless_site_names_each_finding(sites):
    ca_file, ports = sites
    res = run_module("http_security_review", {"ca_cert": str(ca_file), "sites": [
        {"name": "shop", "url": "https://%s:%d/" % (HOST, ports["bad"]),
         "http_url": "http://%s:%d/" % (HOST, ports["bad_http"])}]})
    assert not res.failed, res
    assert sorted(item["id"] for item in res["findings"]) == [
        "http:shop:cors", "http:shop:csp", "http:shop:frame-options", "http:shop:hsts", "http:shop:https-redirect",
        "http:shop:nosniff", "http:shop:referrer-policy"]
    by_id = dict((item["id"], item) for item in res["findings"])
    assert by_id["http:shop:cors"]["severity"] == "high"
    assert by_id["http:shop:cors"]["details"] == {"allow_origin": "https://upkeep-cors-probe.invalid",
                                                  "allow_credentials": True}
    assert by_id["http:shop:https-redirect"]["details"]["status"] == 200


def test_untrusted_certificate_is_a_clear_failure(sites):
    _ca_file, ports = sites
    site = {"name": "shop", "url": "https://%s:%d/" % (HOST, ports["good"])}
    res = run_module("http_security_review", {"sites": [site]})
    assert res.failed
    assert res["msg"].startswith("Failed to fetch https://%s:%d/: " % (HOST, ports["good"]))
    assert "CERTIFICATE_VERIFY_FAILED" in res["msg"] or "certificate verify failed" in res["msg"]
