# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one Vault backend of the collection.

Modules that talk to HashiCorp Vault (or OpenBao) take their connection options from
:func:`vault_common_argument_spec` (documented by the ``upkeep.runbooks.vault`` doc fragment),
get an authenticated :class:`Vault` from :func:`connect`, and read and write KV version 2
secrets through its ``kv_*`` methods. Vault's answers are turned into readable causes in
exactly one place, :func:`describe_error`.

Rules this file keeps for all modules:

* requests go through hvac's adapter to Vault's documented HTTP paths, not through hvac's
  KV helpers, so the python3-hvac of Debian bookworm (0.11) and current hvac (2.x) behave
  the same;
* every KV data write names the version it replaces (check-and-set): ``kv_write`` has no
  default for ``cas``;
* no token, secret ID or secret value is ever put into a message or an exception.

Rotation pointer: the modules that rotate a secret write the new value as a new version
first and only then declare it current, by setting the custom metadata key
``upkeep_current_version``. Readers use :func:`read_current`, which honours that pointer.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible.module_utils.six.moves.urllib.parse import quote

try:
    import hvac
except ImportError:  # pragma: no cover - exercised through ensure_hvac() tests
    hvac = None

try:
    from requests import exceptions as requests_exceptions
except ImportError:  # pragma: no cover - hvac depends on requests
    requests_exceptions = None

AUTH_METHODS = ["token", "approle"]
CURRENT_VERSION_KEY = "upkeep_current_version"
PENDING_VERSION_KEY = "upkeep_pending_version"
PENDING_STEP_KEY = "upkeep_pending_step"
ROTATED_AT_KEY = "upkeep_rotated_at"


class VaultError(Exception):
    """A Vault operation failed; ``str()`` is a readable message without secrets.

    ``status`` is the HTTP status (None when no answer came), ``reason`` one of
    forbidden, not_found, cas_mismatch, invalid, sealed, uninitialized, unreachable, tls,
    timeout, server_error, rate_limited, other.
    """

    def __init__(self, message, status=None, reason="other", cause=None):
        super(VaultError, self).__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        # the readable cause alone (without "Failed to <action> at <url>: "), for callers that word their own message
        self.cause = cause or message


class VaultCASError(VaultError):
    """A check-and-set write named a version that is no longer the latest."""


class VaultSealedError(VaultError):
    """Vault answered 503: sealed (or in maintenance)."""


class VaultUnreachableError(VaultError):
    """No answer at all: connection refused, DNS, TLS or timeout."""


# --------------------------------------------------------------------------------------
# options


def vault_common_argument_spec():
    """The connection options every Vault module of the collection accepts."""
    return dict(
        url=dict(type="str", aliases=["vault_addr"], fallback=(env_fallback, ["VAULT_ADDR"])),
        auth_method=dict(type="str", default="token", choices=AUTH_METHODS,
                         fallback=(env_fallback, ["VAULT_AUTH_METHOD"])),
        token=dict(type="str", no_log=True, fallback=(env_fallback, ["VAULT_TOKEN"])),
        role_id=dict(type="str", no_log=False, fallback=(env_fallback, ["VAULT_ROLE_ID"])),
        secret_id=dict(type="str", no_log=True, fallback=(env_fallback, ["VAULT_SECRET_ID"])),
        namespace=dict(type="str", fallback=(env_fallback, ["VAULT_NAMESPACE"])),
        ca_cert=dict(type="path", aliases=["cacert"], fallback=(env_fallback, ["VAULT_CACERT"])),
        validate_certs=dict(type="bool", default=True),
        timeout=dict(type="int", default=30),
        mount_point=dict(type="str", default="secret"),
    )


def ensure_hvac(module):
    """Fail the module clearly when hvac is not importable on the node that runs it."""
    if hvac is None:
        module.fail_json(msg=missing_required_lib("hvac", reason="to talk to HashiCorp Vault"))


def check_options(params):
    """A readable problem with the connection options, or None. Needs no network."""
    url = params.get("url")
    if not url:
        return "no Vault address given (set url or VAULT_ADDR)"
    if not re.match(r"^https?://[^/\s]+", url):
        return "url must start with http:// or https:// (got a value without a scheme)"
    if params.get("auth_method") == "approle":
        if not params.get("role_id"):
            return "auth_method=approle needs role_id (or VAULT_ROLE_ID)"
        if not params.get("secret_id"):
            return "auth_method=approle needs secret_id (or VAULT_SECRET_ID)"
    elif not params.get("token"):
        return "auth_method=token needs a token (set token or VAULT_TOKEN)"
    if params.get("timeout") is not None and int(params["timeout"]) <= 0:
        return "timeout must be a positive number of seconds"
    return None


# --------------------------------------------------------------------------------------
# errors

_STATUS_REASONS = {
    400: "invalid",
    401: "forbidden",
    403: "forbidden",
    404: "not_found",
    405: "invalid",
    412: "invalid",
    429: "rate_limited",
    500: "server_error",
    501: "uninitialized",
    502: "server_error",
    503: "sealed",
}

# hvac raises these when it is asked to (older releases always do): class name -> status.
_HVAC_STATUSES = {
    "InvalidRequest": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "InvalidPath": 404,
    "UnsupportedOperation": 405,
    "PreconditionFailed": 412,
    "RateLimitExceeded": 429,
    "InternalServerError": 500,
    "VaultNotInitialized": 501,
    "BadGateway": 502,
    "VaultDown": 503,
}


def _status_cause(status, errors):
    """The readable cause for an HTTP answer of Vault with ``errors`` (list of strings)."""
    text = "; ".join(str(error) for error in errors or [] if error) if errors else ""
    lowered = text.lower()
    if status == 400 and "check-and-set" in lowered:
        if "required" in lowered:
            return "Vault requires check-and-set on this key and the write did not name a version", "invalid"
        return ("another writer changed the secret since it was read (check-and-set version mismatch); "
                "nothing was overwritten", "cas_mismatch")
    if status == 400 and ("invalid role or secret id" in lowered or "invalid role id" in lowered):
        return "AppRole login refused: invalid role_id or secret_id (or the secret_id expired)", "forbidden"
    if status in (401, 403):
        return ("permission denied (the token is invalid, expired or revoked, or its policies do not allow "
                "this path)", "forbidden")
    if status == 404:
        return ("not found (no such secret or version, or the mount or path is wrong%s)"
                % ("" if not text else ": " + text), "not_found")
    if status == 503:
        if "sealed" in lowered or not text:
            return "Vault is sealed (unseal it, then run again)", "sealed"
        return "Vault is unavailable: %s" % text, "sealed"
    if status == 501:
        return "Vault is not initialised", "uninitialized"
    if status == 429:
        return "Vault rate limit reached (try again later)", "rate_limited"
    reason = _STATUS_REASONS.get(status, "other")
    if text:
        return "Vault answered %s: %s" % (status, text), reason
    return "Vault answered HTTP %s" % status, reason


def _transport_cause(exc):
    """Readable cause and reason for a requests/urllib3 exception (no HTTP answer)."""
    raw = str(exc)
    lowered = raw.lower()
    name = exc.__class__.__name__
    is_ssl = requests_exceptions is not None and isinstance(exc, requests_exceptions.SSLError)
    if is_ssl or "ssl" in name.lower() or "certificate verify failed" in lowered:
        detail = "certificate verify failed" if "certificate verify failed" in lowered else "handshake failed"
        if "hostname" in lowered and "match" in lowered:
            detail = "the certificate does not match the host name"
        return ("TLS error: %s (check ca_cert / VAULT_CACERT, or that the address speaks https)" % detail, "tls")
    is_timeout = requests_exceptions is not None and isinstance(exc, requests_exceptions.Timeout)
    if is_timeout or "timed out" in lowered:
        return "no answer within the timeout", "timeout"
    if "connection refused" in lowered or "errno 111" in lowered:
        return "connection refused (is Vault running and listening at that address?)", "unreachable"
    if "name or service not known" in lowered or "failed to resolve" in lowered or "nodename nor servname" in lowered:
        return "cannot resolve the host name", "unreachable"
    if "remotedisconnected" in lowered or "connection aborted" in lowered or "connection reset" in lowered:
        return "the connection was closed before Vault answered", "unreachable"
    if "network is unreachable" in lowered or "no route to host" in lowered:
        return "network unreachable", "unreachable"
    return "cannot reach Vault (%s)" % name, "unreachable"


def describe_error(exc):
    """(cause, status, reason) for any exception raised while talking to Vault."""
    if isinstance(exc, VaultError):
        return exc.message, exc.status, exc.reason
    status = _HVAC_STATUSES.get(exc.__class__.__name__)
    if hvac is not None and isinstance(exc, hvac.exceptions.VaultError) and status is not None:
        cause, reason = _status_cause(status, getattr(exc, "errors", None) or [])
        return cause, status, reason
    if requests_exceptions is not None and isinstance(exc, requests_exceptions.RequestException):
        cause, reason = _transport_cause(exc)
        return cause, None, reason
    if isinstance(exc, (OSError, ValueError)):
        cause, reason = _transport_cause(exc)
        return cause, None, reason
    return "unexpected %s from the Vault client" % exc.__class__.__name__, None, "other"


def error_for(action, url, exc):
    """A VaultError (right subclass) reading ``Failed to <action> at <url>: <cause>``."""
    cause, status, reason = describe_error(exc)
    message = "Failed to %s at %s: %s" % (action, url, cause)
    if reason == "cas_mismatch":
        return VaultCASError(message, status, reason, cause=cause)
    if reason in ("sealed", "uninitialized"):
        return VaultSealedError(message, status, reason, cause=cause)
    if reason in ("unreachable", "tls", "timeout"):
        return VaultUnreachableError(message, status, reason, cause=cause)
    return VaultError(message, status, reason, cause=cause)


# --------------------------------------------------------------------------------------
# KV v2 values


class KVSecret(object):
    """One version of a KV v2 secret. ``data`` holds secret values: never log or return it."""

    def __init__(self, path, version, data, created_time=None, deleted=False, destroyed=False, custom_metadata=None):
        self.path = path
        self.version = version
        self.data = data
        self.created_time = created_time
        self.deleted = deleted
        self.destroyed = destroyed
        self.custom_metadata = dict(custom_metadata or {})

    def __repr__(self):  # never show the data
        return "KVSecret(path=%r, version=%r, fields=%r)" % (self.path, self.version, sorted(self.data or {}))


class KVMetadata(object):
    """The metadata of a KV v2 key: versions, settings and custom metadata (no secret values)."""

    def __init__(self, path, raw):
        raw = raw or {}
        self.path = path
        self.current_version = int(raw.get("current_version") or 0)
        self.oldest_version = int(raw.get("oldest_version") or 0)
        self.cas_required = bool(raw.get("cas_required"))
        self.max_versions = int(raw.get("max_versions") or 0)
        self.custom_metadata = dict(raw.get("custom_metadata") or {})
        self.updated_time = raw.get("updated_time")
        self.versions = {}
        for key, value in (raw.get("versions") or {}).items():
            try:
                self.versions[int(key)] = dict(value or {})
            except (TypeError, ValueError):
                continue

    def is_live(self, version):
        """True when ``version`` exists and is neither deleted nor destroyed."""
        info = self.versions.get(version)
        if info is None:
            return False
        return not info.get("destroyed") and not info.get("deletion_time")

    def int_value(self, key):
        """The custom metadata value ``key`` as an int, or None when absent or not a number."""
        value = self.custom_metadata.get(key)
        try:
            return int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None


def current_version(meta):
    """The version the rotation pointer calls current; the latest version when there is no usable pointer."""
    if meta is None:
        return 0
    pointed = meta.int_value(CURRENT_VERSION_KEY)
    if pointed and meta.is_live(pointed):
        return pointed
    return meta.current_version


def utc_now_text(now=None):
    """RFC 3339 UTC time with seconds, as the rotation metadata stores it."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text):
    """A timezone-aware datetime from Vault's or our RFC 3339 text; None when unparseable."""
    if not text:
        return None
    match = re.match(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$", str(text).strip())
    if not match:
        return None
    base = datetime.datetime.strptime("%s %s" % (match.group(1), match.group(2)), "%Y-%m-%d %H:%M:%S")
    zone = match.group(4) or "Z"
    if zone == "Z":
        offset = datetime.timedelta(0)
    else:
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = sign * datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return base.replace(tzinfo=datetime.timezone(offset))


_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(value):
    """Seconds for ``value``: an int, or text such as ``90``, ``30s``, ``15m``, ``12h``, ``20d``, ``2w``.

    Raises ValueError with a readable message for anything else.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 3600, 12h or 20d, got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return value
    match = _DURATION.match(str(value or "0"))
    if not match:
        raise ValueError("expected a duration such as 3600, 12h or 20d, got %r" % (value,))
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


# --------------------------------------------------------------------------------------
# the client


class Vault(object):
    """An authenticated connection to one Vault (namespace) and one KV v2 mount."""

    def __init__(self, params, client=None):
        self.url = (params.get("url") or "").rstrip("/")
        self.namespace = params.get("namespace") or None
        self.mount_point = (params.get("mount_point") or "secret").strip("/")
        self.params = params
        self.client = client if client is not None else self._new_client(params)

    # -- plumbing -------------------------------------------------------------------
    def _new_client(self, params):
        if hvac is None:
            raise VaultError(missing_required_lib("hvac"), reason="other")
        verify = params.get("ca_cert") or bool(params.get("validate_certs", True))
        kwargs = dict(url=self.url, verify=verify, timeout=int(params.get("timeout") or 30))
        if self.namespace:
            kwargs["namespace"] = self.namespace
        return hvac.Client(**kwargs)

    def where(self):
        """The address for messages: the URL, plus the namespace when one is used."""
        return "%s (namespace %s)" % (self.url, self.namespace) if self.namespace else self.url

    def request(self, method, path, action, payload=None, missing_ok=False):
        """Send one request; the decoded JSON answer (None for 204 and for a tolerated 404).

        Raises the VaultError subclass for every failure, with ``Failed to <action> at <url>``.
        """
        url = "/v1/" + path.lstrip("/")
        kwargs = {}
        if payload is not None:
            kwargs["json"] = payload
        try:
            try:
                response = self.client.adapter.request(method, url, raise_exception=False, **kwargs)
            except TypeError:  # very old adapters have no raise_exception: let them raise
                response = self.client.adapter.request(method, url, **kwargs)
        except Exception as exc:
            if missing_ok and _HVAC_STATUSES.get(exc.__class__.__name__) == 404:
                return None
            raise error_for(action, self.where(), exc) from None
        if isinstance(response, dict):
            return response
        status = getattr(response, "status_code", None)
        if status is None:
            return response
        if status == 204:
            return None
        body = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if 200 <= status < 300:
            return body
        if status == 404 and missing_ok:
            return None
        errors = (body or {}).get("errors") if isinstance(body, dict) else None
        cause, reason = _status_cause(status, errors or [])
        raise error_for(action, self.where(), VaultError(cause, status, reason)) from None

    def _kv_path(self, kind, path):
        return "%s/%s/%s" % (quote(self.mount_point), kind, quote(path.strip("/")))

    def describe(self, path):
        """``mount/path`` for messages."""
        return "%s/%s" % (self.mount_point, path.strip("/"))

    # -- authentication ---------------------------------------------------------------
    def login(self):
        """Authenticate with the configured method; raises VaultError. Returns self."""
        method = self.params.get("auth_method") or "token"
        if method == "approle":
            answer = self.request("POST", "auth/approle/login", "log in to Vault with AppRole",
                                  payload={"role_id": self.params.get("role_id"),
                                           "secret_id": self.params.get("secret_id")})
            token = ((answer or {}).get("auth") or {}).get("client_token")
            if not token:
                raise VaultError("Failed to log in to Vault with AppRole at %s: the answer held no token"
                                 % self.where(), reason="forbidden")
            self.client.token = token
        else:
            self.client.token = self.params.get("token")
            self.request("GET", "auth/token/lookup-self", "authenticate to Vault with the token")
        return self

    def health(self):
        """sys/health as a dict (sealed, initialized, standby, version ...), whatever the status code."""
        answer = self.request("GET", "sys/health?standbyok=true&sealedcode=200&uninitcode=200",
                              "read the health of Vault")
        return answer or {}

    def close(self):
        adapter = getattr(self.client, "adapter", None)
        if adapter is not None and hasattr(adapter, "close"):
            try:
                adapter.close()
            except Exception:  # noqa: S110 - nothing left to report when closing
                pass

    # -- KV v2 ------------------------------------------------------------------------
    def kv_metadata(self, path):
        """The key's KVMetadata, or None when the key does not exist."""
        answer = self.request("GET", self._kv_path("metadata", path),
                              "read the metadata of %s" % self.describe(path), missing_ok=True)
        if answer is None:
            return None
        return KVMetadata(path, answer.get("data") or {})

    def kv_read(self, path, version=None):
        """Version ``version`` (latest when None) as KVSecret; None when the key or version is missing.

        A soft-deleted or destroyed version comes back with ``data=None`` and ``deleted``/``destroyed`` set.
        """
        url = self._kv_path("data", path)
        if version:
            url += "?version=%d" % int(version)
        label = "read %s%s" % (self.describe(path), " version %s" % version if version else "")
        try:
            answer = self.request("GET", url, label, missing_ok=True)
        except VaultError as exc:
            if exc.status == 404:
                answer = None
            else:
                raise
        if answer is None:
            if version:
                meta = self.kv_metadata(path)
                info = meta.versions.get(int(version)) if meta else None
                if info is not None:
                    return KVSecret(path, int(version), None, info.get("created_time"),
                                    deleted=bool(info.get("deletion_time")), destroyed=bool(info.get("destroyed")),
                                    custom_metadata=meta.custom_metadata)
            return None
        data = answer.get("data") or {}
        meta = data.get("metadata") or {}
        return KVSecret(path, int(meta.get("version") or version or 0), data.get("data"), meta.get("created_time"),
                        deleted=bool(meta.get("deletion_time")), destroyed=bool(meta.get("destroyed")),
                        custom_metadata=meta.get("custom_metadata"))

    def kv_write(self, path, data, cas):
        """Write ``data`` as a new version, only if ``cas`` is still the latest version (0: key must not exist).

        Returns the new version number. Raises VaultCASError when another writer came first.
        """
        if cas is None or int(cas) < 0:
            raise ValueError("kv_write needs the version it replaces (cas >= 0)")
        if not isinstance(data, dict):
            raise ValueError("kv_write needs a mapping of fields")
        answer = self.request("POST", self._kv_path("data", path), "write %s" % self.describe(path),
                              payload={"data": data, "options": {"cas": int(cas)}})
        version = ((answer or {}).get("data") or {}).get("version")
        if not version:
            raise VaultError("Failed to write %s at %s: Vault did not say which version it created"
                             % (self.describe(path), self.where()))
        return int(version)

    def kv_set_custom_metadata(self, path, mapping):
        """Replace the key's custom metadata with ``mapping`` (str -> str; non-secret bookkeeping only)."""
        clean = dict((str(key), str(value)) for key, value in (mapping or {}).items() if value not in (None, ""))
        self.request("POST", self._kv_path("metadata", path),
                     "write the custom metadata of %s" % self.describe(path),
                     payload={"custom_metadata": clean})

    def kv_update_custom_metadata(self, path, changes, meta=None):
        """Read-modify-write of custom metadata: keys in ``changes`` set (None removes). Returns the new map."""
        if meta is None:
            meta = self.kv_metadata(path)
        merged = dict(meta.custom_metadata if meta else {})
        for key, value in changes.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = str(value)
        self.kv_set_custom_metadata(path, merged)
        if meta is not None:
            meta.custom_metadata = merged
        return merged


def read_current(vault, path):
    """(KVSecret, KVMetadata) of the version the rotation pointer calls current; (None, None) if no key."""
    meta = vault.kv_metadata(path)
    if meta is None or not meta.current_version:
        return None, meta
    secret = vault.kv_read(path, current_version(meta))
    return secret, meta


def open_vault(params, client=None):
    """An authenticated Vault for the module options; raises VaultError with a readable message."""
    problem = check_options(params)
    if problem:
        raise VaultError("Failed to connect to Vault: %s" % problem, reason="invalid")
    vault = Vault(params, client=client)
    return vault.login()


def connect(module, params=None):
    """An authenticated :class:`Vault` for ``module`` (its params unless ``params`` given), or fail_json."""
    ensure_hvac(module)
    try:
        return open_vault(module.params if params is None else params)
    except VaultError as exc:
        module.fail_json(msg=exc.message, vault_status=exc.status, vault_reason=exc.reason)
