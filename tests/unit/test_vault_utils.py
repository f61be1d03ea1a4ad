"""_vault: error mapping, durations, the rotation pointer, time parsing and option checks (no network)."""

import datetime
import ssl

import hvac
import pytest
from requests import exceptions as requests_exceptions

from ansible_collections.upkeep.runbooks.plugins.module_utils import _vault

URL = "http://127.0.0.1:8200"


class FakeResponse:
    def __init__(self, status, body=None):
        self.status_code = status
        self._body = body

    def json(self):
        if self._body is None:
            raise ValueError("no JSON")
        return self._body


class FakeAdapter:
    """Answers every request with the next queued response (or raises the queued exception)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests = []

    def request(self, method, url, raise_exception=True, **kwargs):
        self.requests.append((method, url, kwargs))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


class FakeClient:
    def __init__(self, *answers):
        self.adapter = FakeAdapter(*answers)
        self.token = None


def vault_with(*answers):
    return _vault.Vault({"url": URL, "token": "t"}, client=FakeClient(*answers))


# ------------------------------------------------------------------ HTTP answers


@pytest.mark.parametrize("status, errors, cls, reason, text", [
    (400, ["check-and-set parameter did not match the current version"], _vault.VaultCASError, "cas_mismatch",
     "another writer changed the secret since it was read (check-and-set version mismatch); nothing was overwritten"),
    (400, ["check-and-set parameter required for this call"], _vault.VaultError, "invalid",
     "Vault requires check-and-set on this key"),
    (403, ["permission denied"], _vault.VaultError, "forbidden", "permission denied (the token is invalid"),
    (404, [], _vault.VaultError, "not_found", "not found (no such secret or version"),
    (503, ["Vault is sealed"], _vault.VaultSealedError, "sealed", "Vault is sealed (unseal it, then run again)"),
    (500, ["boom"], _vault.VaultError, "server_error", "Vault answered 500: boom"),
    (429, [], _vault.VaultError, "rate_limited", "Vault rate limit reached"),
])
def test_http_answers_map_to_clear_messages(status, errors, cls, reason, text):
    vault = vault_with(FakeResponse(status, {"errors": errors}))
    with pytest.raises(_vault.VaultError) as caught:
        vault.kv_write("app/db", {"a": "secret-value"}, cas=3)
    exc = caught.value
    assert type(exc) is cls and exc.reason == reason and exc.status == status
    assert exc.message == "Failed to write secret/app/db at %s: %s" % (URL, exc.cause)
    assert text in exc.cause
    assert "secret-value" not in exc.message
    method, url, kwargs = vault.client.adapter.requests[0]
    assert (method, url, kwargs["json"]["options"]) == ("POST", "/v1/secret/data/app/db", {"cas": 3})


@pytest.mark.parametrize("exc, reason, text", [
    (requests_exceptions.ConnectionError("HTTPConnectionPool(host='127.0.0.1', port=8200): Max retries exceeded "
                                         "(Caused by NewConnectionError('[Errno 111] Connection refused'))"),
     "unreachable", "connection refused (is Vault running and listening at that address?)"),
    (requests_exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed"),
     "tls", "TLS error: certificate verify failed (check ca_cert / VAULT_CACERT"),
    (requests_exceptions.SSLError("hostname '127.0.0.1' doesn't match 'vault.example.com'"),
     "tls", "TLS error: the certificate does not match the host name"),
    (ssl.SSLError("wrong version number"), "tls", "TLS error: handshake failed"),
    (requests_exceptions.ReadTimeout("Read timed out. (read timeout=30)"), "timeout", "no answer within the timeout"),
    (requests_exceptions.ConnectTimeout("connect timed out"), "timeout", "no answer within the timeout"),
    (ConnectionRefusedError(111, "Connection refused"), "unreachable", "connection refused"),
    (requests_exceptions.ConnectionError("Failed to resolve 'vault.invalid'"), "unreachable",
     "cannot resolve the host name"),
])
def test_transport_failures_map_to_clear_messages(exc, reason, text):
    vault = vault_with(exc)
    with pytest.raises(_vault.VaultUnreachableError) as caught:
        vault.kv_metadata("app/db")
    assert caught.value.reason == reason and caught.value.status is None
    assert caught.value.message.startswith("Failed to read the metadata of secret/app/db at %s: " % URL)
    assert text in caught.value.cause


@pytest.mark.parametrize("exc, status, reason", [
    (hvac.exceptions.InvalidRequest(errors=["check-and-set parameter did not match the current version"]), 400,
     "cas_mismatch"),
    (hvac.exceptions.Forbidden(errors=["permission denied"]), 403, "forbidden"),
    (hvac.exceptions.InvalidPath(errors=[]), 404, "not_found"),
    (hvac.exceptions.VaultDown(errors=["Vault is sealed"]), 503, "sealed"),
])
def test_hvac_exceptions_are_mapped_too(exc, status, reason):
    cause, got_status, got_reason = _vault.describe_error(exc)
    assert (got_status, got_reason) == (status, reason)
    assert cause and "Traceback" not in cause


def test_unknown_exception_and_vault_error_pass_through():
    assert _vault.describe_error(RuntimeError("x")) == ("unexpected RuntimeError from the Vault client", None, "other")
    err = _vault.VaultError("Failed to x: y", 403, "forbidden")
    assert _vault.describe_error(err) == ("Failed to x: y", 403, "forbidden")
    assert err.cause == "Failed to x: y"


def test_missing_keys_and_writes():
    vault = vault_with(FakeResponse(404, {"errors": []}), FakeResponse(200, {"data": {"version": 4}}))
    assert vault.kv_metadata("nope") is None
    assert vault.kv_write("app", {"k": "v"}, cas=3) == 4
    with pytest.raises(ValueError):
        vault.kv_write("app", {"k": "v"}, cas=None)


def test_login_with_token_and_approle():
    vault = vault_with(FakeResponse(200, {"data": {"id": "x"}}))
    vault.login()
    assert vault.client.adapter.requests[0][:2] == ("GET", "/v1/auth/token/lookup-self")
    params = {"url": URL, "auth_method": "approle", "role_id": "r", "secret_id": "approle-secret-xyz"}
    vault = _vault.Vault(params, client=FakeClient(FakeResponse(200, {"auth": {"client_token": "issued"}})))
    vault.login()
    assert vault.client.token == "issued"
    vault = _vault.Vault(params, client=FakeClient(FakeResponse(400, {"errors": ["invalid role or secret ID"]})))
    with pytest.raises(_vault.VaultError) as caught:
        vault.login()
    assert "invalid role_id or secret_id" in caught.value.message and caught.value.reason == "forbidden"
    assert "approle-secret-xyz" not in caught.value.message


# ------------------------------------------------------------------ helpers


@pytest.mark.parametrize("value, seconds", [
    (0, 0), (90, 90), ("90", 90), ("30s", 30), ("15m", 900), ("12h", 43200), ("20d", 1728000), ("2w", 1209600),
    (" 14d ", 1209600), ("", 0), (None, 0),
])
def test_duration_seconds(value, seconds):
    assert _vault.duration_seconds(value) == seconds


@pytest.mark.parametrize("value", ["soon", "1.5h", "-3", "3y", True, -1])
def test_duration_seconds_rejects(value):
    with pytest.raises(ValueError):
        _vault.duration_seconds(value)


def meta(current, versions, custom=None, deleted=()):
    raw = {"current_version": current, "custom_metadata": custom or {},
           "versions": dict((str(v), {"deletion_time": "2026-01-01T00:00:00Z" if v in deleted else "",
                                      "destroyed": False}) for v in versions)}
    return _vault.KVMetadata("p", raw)


def test_current_version_follows_a_live_pointer():
    assert _vault.current_version(None) == 0
    assert _vault.current_version(meta(3, [1, 2, 3])) == 3
    assert _vault.current_version(meta(3, [1, 2, 3], {"upkeep_current_version": "2"})) == 2
    assert _vault.current_version(meta(3, [1, 2, 3], {"upkeep_current_version": "2"}, deleted=[2])) == 3
    assert _vault.current_version(meta(3, [1, 2, 3], {"upkeep_current_version": "9"})) == 3
    assert _vault.current_version(meta(3, [1, 2, 3], {"upkeep_current_version": "x"})) == 3


def test_read_current_reads_the_pointed_version():
    body = {"data": {"current_version": 3, "custom_metadata": {"upkeep_current_version": "2"},
                     "versions": {"1": {}, "2": {}, "3": {}}}}
    secret = {"data": {"data": {"k": "v"}, "metadata": {"version": 2, "created_time": "2026-11-23T10:00:00Z"}}}
    vault = vault_with(FakeResponse(200, body), FakeResponse(200, secret))
    got, got_meta = _vault.read_current(vault, "app")
    assert got.version == 2 and got.data == {"k": "v"} and got_meta.current_version == 3
    assert vault.client.adapter.requests[1][1] == "/v1/secret/data/app?version=2"
    assert "v" not in repr(got).replace("version", "")


@pytest.mark.parametrize("text, expected", [
    ("2026-11-23T10:00:00Z", datetime.datetime(2026, 11, 23, 10, tzinfo=datetime.timezone.utc)),
    ("2026-11-23T10:00:00.123456789Z", datetime.datetime(2026, 11, 23, 10, tzinfo=datetime.timezone.utc)),
    ("2026-11-23T12:00:00+02:00", datetime.datetime(2026, 11, 23, 10, tzinfo=datetime.timezone.utc)),
    ("2026-11-23 10:00:00", datetime.datetime(2026, 11, 23, 10, tzinfo=datetime.timezone.utc)),
    ("yesterday", None), ("", None), (None, None),
])
def test_parse_time(text, expected):
    assert _vault.parse_time(text) == expected


def test_utc_now_text_round_trips():
    when = datetime.datetime(2026, 11, 23, 11, 0, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    assert _vault.utc_now_text(when) == "2026-11-23T10:00:05Z"
    assert _vault.parse_time(_vault.utc_now_text(when)) == when


@pytest.mark.parametrize("params, problem", [
    ({}, "no Vault address given"),
    ({"url": "vault:8200", "token": "t"}, "url must start with http:// or https://"),
    ({"url": URL}, "auth_method=token needs a token"),
    ({"url": URL, "auth_method": "approle", "secret_id": "s"}, "needs role_id"),
    ({"url": URL, "auth_method": "approle", "role_id": "r"}, "needs secret_id"),
    ({"url": URL, "token": "t", "timeout": 0}, "timeout must be a positive number"),
    ({"url": URL, "token": "t", "timeout": 5}, None),
    ({"url": "https://vault.example.com", "auth_method": "approle", "role_id": "r", "secret_id": "s"}, None),
])
def test_check_options(params, problem):
    got = _vault.check_options(params)
    if problem is None:
        assert got is None
    else:
        assert problem in got
