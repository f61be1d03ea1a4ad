#!/usr/bin/env python3
"""Vault HTTP API emulator for the upkeep.runbooks tests and local lab.

Standard library only, loopback only. It answers the subset of the Vault HTTP
API that the collection uses (KV v2, token self-service, AppRole, sys health /
seal / unseal) with Vault's documented status codes, envelopes and error texts,
so hvac behaves against it as it does against Vault. It is a test double: no
ACL policies are evaluated, nothing is encrypted at rest, there are no leases.
Production must use a real Vault or OpenBao. See docs/vault-emulator.md.

    python lab/vault_emulator.py --listen 127.0.0.1:8200 [--root-token T] [--state FILE]
"""

import argparse
import base64
import copy
import datetime
import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import string
import sys
import tempfile
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

VAULT_VERSION = "1.17.0"
DEFAULT_MAX_VERSIONS = 10
DEFAULT_TOKEN_TTL = 768 * 3600  # Vault's system default/max lease TTL (32 days)
DEFAULT_ROOT_TOKEN = "root"  # noqa: S105 - the well-known dev-mode default, test use only
DEFAULT_UNSEAL_KEY = "emulator-unseal-key"
RESERVED_MOUNTS = {"sys", "auth", "cubbyhole", "identity"}
STATE_FORMAT = 1

ERR_SEALED = "Vault is sealed"
ERR_DENIED = "permission denied"
ERR_CAS_MISMATCH = "check-and-set parameter did not match the current version"
ERR_CAS_REQUIRED = "check-and-set parameter required for this call"
ERR_BAD_CREDS = "invalid role or secret ID"


def multierror(*messages):
    """Render messages the way Vault's go-multierror does."""
    n = len(messages)
    return f"{n} error{'s' if n != 1 else ''} occurred:\n" + "".join(f"\t* {m}\n" for m in messages) + "\n"


ERR_UNSUPPORTED_OP = multierror("unsupported operation")
ERR_UNSUPPORTED_PATH = multierror("unsupported path")


class VaultError(Exception):
    """An HTTP error answer: status, Vault's `errors` list, or a full body (404 with metadata)."""

    def __init__(self, status, errors=None, body=None):
        super().__init__(status, errors)
        self.status = status
        self.errors = list(errors or [])
        self.body = body


# ---------------------------------------------------------------------------
# small helpers: time, durations, ids, coercion
# ---------------------------------------------------------------------------

def rfc3339(ts):
    if ts is None:
        return ""
    return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DUR_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")


def parse_duration(value, field="ttl"):
    """Seconds from an int or a Go duration string ("90", "1h30m", "-1s"), as Vault's parseutil accepts."""
    bad = VaultError(400, [f'error converting input {value!r} for field "{field}": invalid duration'])
    if isinstance(value, bool):
        raise bad
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    if text == "":
        return 0
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    pos, total = 0, 0.0
    for match in _DUR_PART.finditer(text):
        if match.start() != pos:
            raise bad
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise bad
    return sign * int(total)


def format_duration(seconds):
    """Go's time.Duration.String() for whole seconds: 0s, 45s, 1m30s, 1h0m0s."""
    if not seconds:
        return "0s"
    sign = "-" if seconds < 0 else ""
    hours, rest = divmod(abs(int(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


_B62 = string.ascii_letters + string.digits


def b62(length):
    return "".join(secrets.choice(_B62) for _ in range(length))


def as_int(value, field):
    if isinstance(value, bool):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise VaultError(400, [f'error converting input {value!r} for field "{field}"']) from None


def as_bool(value, field):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "t", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "f", "no", ""):
        return False
    raise VaultError(400, [f'error converting input {value!r} for field "{field}"'])


def as_str_list(value):
    """Vault's TypeCommaStringSlice: a list or a comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return [str(p).strip() for p in value if str(p).strip()]


def as_int_list(value, field="versions"):
    """Vault's TypeCommaIntSlice."""
    if value is None:
        return []
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        value = str(value).split(",")
    return [as_int(v, field) for v in value if str(v).strip() != ""]


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def validate_custom_metadata(raw, drop_nulls=False):
    """Coerce custom_metadata to str->str and apply Vault's limits (64 keys, 128/512 chars)."""
    prefix = "custom_metadata validation failed"
    if not isinstance(raw, dict):
        raise VaultError(400, [f"{prefix}: expected a map of strings"])
    result = {}
    for key, value in raw.items():
        if value is None and drop_nulls:
            continue
        if isinstance(value, (dict, list)):
            raise VaultError(400, [f"{prefix}: value for key {key!r} is not a string"])
        text = ("1" if value else "0") if isinstance(value, bool) else str(value)
        result[str(key)] = "" if value is None else text
    if len(result) > 64:
        raise VaultError(400, [multierror(f"{prefix}: payload must contain at most 64 keys, provided {len(result)}")])
    problems = []
    for key, value in result.items():
        if not 0 < len(key) <= 128:
            problems.append(f"{prefix}: length of key {key!r} is {len(key)} but must be 0 < len(key) <= 128")
        if not 0 < len(value) <= 512:
            problems.append(
                f"{prefix}: length of value for key {key!r} is {len(value)} but must be 0 < len(value) <= 512")
        if not key.isprintable() or not value.isprintable():
            problems.append(f"{prefix}: key {key!r} or its value contains unprintable characters")
    if problems:
        raise VaultError(400, [multierror(*problems)])
    return result


def envelope(data=None, auth=None, warnings=None):
    return {
        "request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False, "lease_duration": 0,
        "data": data, "wrap_info": None, "warnings": warnings or None, "auth": auth,
    }


# ---------------------------------------------------------------------------
# KV version 2 engine (pure functions over one mount's dict, unit-testable)
# ---------------------------------------------------------------------------

def new_mount():
    config = {"max_versions": 0, "cas_required": False, "delete_version_after": 0}
    return {"type": "kv", "version": 2, "accessor": "kv_" + secrets.token_hex(4), "config": config, "keys": {}}


def new_key_meta(now):
    return {"created_time": now, "updated_time": now, "current_version": 0, "oldest_version": 0,
            "max_versions": 0, "cas_required": False, "delete_version_after": 0, "custom_metadata": None,
            "versions": {}}


def is_deleted(version, now):
    return version["deletion_time"] is not None and version["deletion_time"] <= now


def deletion_time_for(created, config, meta):
    """Vault's delete_version_after: the smaller non-zero of mount and key settings; mount < 0 disables."""
    mount, key = config["delete_version_after"], meta["delete_version_after"]
    if mount < 0 or (mount == 0 and key == 0):
        return None
    chosen = min(v for v in (mount, key) if v > 0)
    return created + chosen


def version_view(number, version, meta):
    return {"created_time": rfc3339(version["created_time"]), "custom_metadata": meta["custom_metadata"],
            "deletion_time": rfc3339(version["deletion_time"]), "destroyed": version["destroyed"],
            "version": number}


def check_cas(options, config, meta):
    if options is not None and not isinstance(options, dict):
        raise VaultError(400, ["options must be a map"])
    if options and "cas" in options:
        try:
            cas = int(options["cas"])
        except (TypeError, ValueError):
            raise VaultError(400, ["error parsing check-and-set parameter"]) from None
        if cas != meta["current_version"]:
            raise VaultError(400, [ERR_CAS_MISMATCH])
    elif config["cas_required"] or meta["cas_required"]:
        raise VaultError(400, [ERR_CAS_REQUIRED])


def kv_add_version(mount, key, meta, data, now):
    """Append a version, then prune past max_versions exactly as Vault's KeyMetadata.AddVersion does."""
    config = mount["config"]
    meta["current_version"] += 1
    number = meta["current_version"]
    version = {"created_time": now, "deletion_time": deletion_time_for(now, config, meta),
               "destroyed": False, "data": data}
    meta["versions"][str(number)] = version
    meta["updated_time"] = now
    max_versions = max(meta["max_versions"], config["max_versions"]) or DEFAULT_MAX_VERSIONS
    if number - meta["oldest_version"] >= max_versions:
        to_delete = number - max_versions
        for old in range(meta["oldest_version"], to_delete + 1):
            meta["versions"].pop(str(old), None)
        meta["oldest_version"] = to_delete + 1
    mount["keys"][key] = meta
    return version_view(number, version, meta)


def kv_write(mount, key, body, now):
    if not isinstance(body.get("data"), dict):
        raise VaultError(400, ["no data provided"])
    meta = mount["keys"].get(key) or new_key_meta(now)
    check_cas(body.get("options"), mount["config"], meta)
    return kv_add_version(mount, key, meta, copy.deepcopy(body["data"]), now)


def kv_patch(mount, key, body, now):
    if not isinstance(body.get("data"), dict):
        raise VaultError(400, ["no data provided"])
    meta = mount["keys"].get(key)
    if meta is None:
        raise VaultError(404)
    check_cas(body.get("options"), mount["config"], meta)
    number = meta["current_version"]
    current = meta["versions"].get(str(number))
    if current is None:
        raise VaultError(404)
    if is_deleted(current, now) or current["destroyed"]:
        raise VaultError(404, body=envelope(version_view(number, current, meta)))
    return kv_add_version(mount, key, meta, merge_patch(current["data"], body["data"]), now)


def kv_read(mount, key, version_param, now):
    meta = mount["keys"].get(key)
    if meta is None:
        raise VaultError(404)
    number = as_int(version_param, "version") if version_param not in (None, "") else 0
    if number <= 0:
        number = meta["current_version"]
    version = meta["versions"].get(str(number))
    if version is None:
        raise VaultError(404)
    view = version_view(number, version, meta)
    if is_deleted(version, now) or version["destroyed"]:
        raise VaultError(404, body=envelope({"data": None, "metadata": view}))
    return {"data": copy.deepcopy(version["data"]), "metadata": view}


def kv_soft_delete(meta, numbers, now):
    for number in numbers:
        version = meta["versions"].get(str(number))
        if version is None or version["destroyed"] or is_deleted(version, now):
            continue
        version["deletion_time"] = now


def kv_undelete(mount, meta, numbers, now):
    for number in numbers:
        version = meta["versions"].get(str(number))
        if version is None or version["destroyed"]:
            continue
        version["deletion_time"] = deletion_time_for(now, mount["config"], meta)


def kv_destroy(meta, numbers):
    for number in numbers:
        version = meta["versions"].get(str(number))
        if version is None or version["destroyed"]:
            continue
        version["destroyed"] = True
        version["data"] = None


def kv_metadata_view(meta):
    return {
        "cas_required": meta["cas_required"], "created_time": rfc3339(meta["created_time"]),
        "current_version": meta["current_version"], "custom_metadata": meta["custom_metadata"],
        "delete_version_after": format_duration(meta["delete_version_after"]),
        "max_versions": meta["max_versions"], "oldest_version": meta["oldest_version"],
        "updated_time": rfc3339(meta["updated_time"]),
        "versions": {n: {"created_time": rfc3339(v["created_time"]), "deletion_time": rfc3339(v["deletion_time"]),
                         "destroyed": v["destroyed"]}
                     for n, v in sorted(meta["versions"].items(), key=lambda item: int(item[0]))},
    }


def kv_metadata_write(mount, key, body, now, patch=False):
    """POST replaces the given fields; PATCH merges (custom_metadata by JSON merge patch). Returns warnings."""
    fields = {k: body[k] for k in ("max_versions", "cas_required", "delete_version_after", "custom_metadata")
              if k in body}
    meta = mount["keys"].get(key)
    if patch and meta is None:
        raise VaultError(404)
    if not fields:
        return []
    parsed = {}
    if "max_versions" in fields:
        parsed["max_versions"] = max(0, as_int(fields["max_versions"], "max_versions"))
    if "cas_required" in fields:
        parsed["cas_required"] = as_bool(fields["cas_required"], "cas_required")
    if "delete_version_after" in fields:
        parsed["delete_version_after"] = max(0, parse_duration(fields["delete_version_after"],
                                                               "delete_version_after"))
    if "custom_metadata" in fields:
        raw = fields["custom_metadata"]
        if patch:
            merged = merge_patch((meta or {}).get("custom_metadata") or {}, raw) if raw is not None else None
            parsed["custom_metadata"] = validate_custom_metadata(merged) or None if merged is not None else None
        else:
            parsed["custom_metadata"] = validate_custom_metadata(raw if raw is not None else {}) or None
    warnings = []
    if parsed.get("cas_required") is False and mount["config"]["cas_required"]:
        warnings.append('"cas_required" set to false, but is mandated by backend config. This value will be ignored.')
    if meta is None:
        meta = new_key_meta(now)
        mount["keys"][key] = meta
    meta.update(parsed)
    return warnings


def kv_list(mount, prefix):
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    children = set()
    for key in mount["keys"]:
        if key.startswith(prefix) and key != prefix:
            rest = key[len(prefix):]
            children.add(rest.split("/", 1)[0] + "/" if "/" in rest else rest)
    if not children:
        raise VaultError(404)
    return sorted(children)


# ---------------------------------------------------------------------------
# the emulated server core (transport independent)
# ---------------------------------------------------------------------------

class Request:
    def __init__(self, *, op, path, query, body, token, namespace):
        self.op, self.path, self.query = op, path, query
        self.body, self.token, self.namespace = body, token, namespace


class Emulator:
    """All state and request handling. `handle()` is thread-safe (one lock around everything)."""

    PUBLIC = {"sys/health", "sys/seal-status", "sys/unseal", "sys/init"}

    def __init__(self, *, root_token, unseal_key=DEFAULT_UNSEAL_KEY, kv_mounts=(), approles=(),
                 state_file=None, start_sealed=False, uninitialized=False, clock=time.time):
        self.lock = threading.RLock()
        self._dirty = False
        self.clock = clock
        self.root_token = root_token
        self.unseal_key = unseal_key
        self.kv_mounts = ["secret"] + [m.strip("/") for m in kv_mounts if m.strip("/") != "secret"]
        for name in self.kv_mounts:
            if not name or name.split("/")[0] in RESERVED_MOUNTS:
                raise ValueError(f"invalid KV mount name {name!r}")
        self.state_file = state_file
        self.state = self._load() if state_file and os.path.exists(state_file) else None
        if self.state is None:
            self.state = {"format": STATE_FORMAT, "initialized": not uninitialized,
                          "cluster_id": str(uuid.uuid4()), "namespaces": {}, "tokens": {}}
        self.started = self.clock()
        self.root_accessor = b62(24)
        self.sealed = start_sealed or not self.state["initialized"]
        for ns in list(self.state["namespaces"]) + [""]:
            self._ns(ns)
        for spec in approles:
            self._define_approle(spec)
        self._dirty = True
        self._save()

    # -- persistence --------------------------------------------------------
    def _load(self):
        try:
            with open(self.state_file, encoding="utf-8") as handle:
                state = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read state file {self.state_file}: {exc}") from exc
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"state file {self.state_file} has an unknown format")
        return state

    def _save(self):
        if not (self.state_file and self._dirty):
            return
        folder = os.path.dirname(os.path.abspath(self.state_file))
        fd, tmp = tempfile.mkstemp(prefix=".vault-emulator-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.state, handle, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.state_file)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._dirty = False

    # -- namespaces, mounts, tokens ---------------------------------------------
    def _ns(self, name):
        ns = self.state["namespaces"].get(name)
        if ns is None:
            ns = self.state["namespaces"][name] = {"mounts": {}, "roles": {}}
        for mount in self.kv_mounts:
            ns["mounts"].setdefault(mount, new_mount())
        for mount in ns["mounts"].values():  # state written by an earlier revision
            mount.setdefault("accessor", "kv_" + secrets.token_hex(4))
        return ns

    def _define_approle(self, spec):
        parts = spec.split(":")
        if len(parts) not in (3, 4) or not all(parts[:3]):
            raise ValueError(f"--approle expects NAME:ROLE_ID:SECRET_ID[:POLICY,...], got {spec.split(':')[0]}:...")
        name, role_id, secret_id = parts[:3]
        roles = self._ns("")["roles"]
        role = self._new_role({"token_policies": parts[3]} if len(parts) == 4 else {}, roles.get(name))
        role["role_id"] = role_id
        role["secret_ids"].setdefault(secret_id, self._new_secret_id(role))
        roles[name] = role

    def _issue_token(self, ns, policies, ttl, *, meta, num_uses=0, entity_id=""):
        """A service token as AppRole login issues it (orphan, renewable, path auth/approle/login)."""
        now = self.clock()
        token = "hvs." + b62(24)
        ttl = ttl or DEFAULT_TOKEN_TTL
        self.state["tokens"][token] = {
            "namespace": ns, "accessor": b62(24), "policies": sorted(set(policies)), "ttl": ttl,
            "issued": now, "expires": now + ttl, "display_name": "approle", "path": "auth/approle/login",
            "meta": meta, "num_uses": num_uses, "renewable": True, "orphan": True, "entity_id": entity_id,
        }
        self._dirty = True
        return token, self.state["tokens"][token]

    def _resolve_token(self, token, ns):
        if not token:
            return None
        if secrets.compare_digest(token.encode(), self.root_token.encode()):
            return {"root": True, "policies": ["root"], "namespace": ""}
        rec = self.state["tokens"].get(token)
        if rec is None:
            return None
        if rec["expires"] is not None and rec["expires"] <= self.clock():
            del self.state["tokens"][token]
            self._dirty = True
            return None
        if not (rec["namespace"] == "" or ns == rec["namespace"] or ns.startswith(rec["namespace"] + "/")):
            return None
        return rec

    def _token_view(self, token, rec):
        now = self.clock()
        if rec.get("root"):
            return {"accessor": self.root_accessor, "creation_time": int(self.started), "creation_ttl": 0,
                    "display_name": "root", "entity_id": "", "expire_time": None, "explicit_max_ttl": 0,
                    "id": token, "meta": None, "num_uses": 0, "orphan": True, "path": "auth/token/root",
                    "policies": ["root"], "ttl": 0, "type": "service"}
        return {"accessor": rec["accessor"], "creation_time": int(rec["issued"]), "creation_ttl": rec["ttl"],
                "display_name": rec["display_name"], "entity_id": rec["entity_id"],
                "expire_time": rfc3339(rec["expires"]) if rec["expires"] else None, "explicit_max_ttl": 0,
                "id": token, "issue_time": rfc3339(rec["issued"]), "meta": rec["meta"] or None,
                "num_uses": rec["num_uses"],
                "orphan": rec["orphan"], "path": rec["path"], "policies": rec["policies"],
                "renewable": rec["renewable"],
                "ttl": 0 if rec["expires"] is None else max(0, int(rec["expires"] - now)), "type": "service"}

    def _auth_block(self, token, rec):
        return {"client_token": token, "accessor": rec["accessor"], "policies": rec["policies"],
                "token_policies": rec["policies"], "metadata": rec["meta"] or None, "lease_duration": rec["ttl"],
                "renewable": rec["renewable"], "entity_id": rec["entity_id"], "token_type": "service",
                "orphan": rec["orphan"], "mfa_requirement": None, "num_uses": rec["num_uses"]}

    # -- entry point ----------------------------------------------------------
    def handle(self, method, target, headers, raw_body=b""):
        """Answer one HTTP request: returns (status, JSON body or None)."""
        headers = {str(k).lower(): v for k, v in headers.items()}
        with self.lock:
            try:
                status, body = self._dispatch(self._parse(method, target, headers, raw_body))
            except VaultError as err:
                status = err.status
                body = err.body if err.body is not None else {"errors": err.errors}
            self._save()
            return status, body

    def _parse(self, method, target, headers, raw_body):
        split = urlsplit(target)
        path = unquote(split.path)
        if not path.startswith("/v1/"):
            raise VaultError(404, [f'no handler for route "{path.lstrip("/")}". route entry not found.'])
        path = re.sub(r"/{2,}", "/", path[len("/v1/"):])
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        ops = {"GET": "read", "HEAD": "head", "POST": "update", "PUT": "update", "DELETE": "delete",
               "LIST": "list", "PATCH": "patch"}
        if method not in ops:
            raise VaultError(405, [ERR_UNSUPPORTED_OP])
        op = ops[method]
        if method == "GET" and query.get("list", "").lower() in ("true", "1", "t"):
            op = "list"
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if method == "PATCH" and content_type != "application/merge-patch+json":
            raise VaultError(415, ["PATCH requires Content-Type of application/merge-patch+json"])
        body = {}
        if raw_body and raw_body.strip() and op in ("update", "patch", "delete"):
            try:
                body = json.loads(raw_body)
            except ValueError as exc:
                raise VaultError(400, [f"failed to parse JSON input: {exc}"]) from None
            if not isinstance(body, dict):
                raise VaultError(400, ["failed to parse JSON input: expected a JSON object"])
        if op == "read":
            body = dict(query)
        token = headers.get("x-vault-token") or ""
        auth_header = headers.get("authorization") or ""
        if not token and auth_header.lower().startswith("bearer "):
            token = auth_header[7:].strip()
        namespace = (headers.get("x-vault-namespace") or "").strip().strip("/")
        if namespace == "root":
            namespace = ""
        if headers.get("x-vault-wrap-ttl"):
            raise VaultError(400, ["response wrapping is not supported by the vault emulator"])
        return Request(op=op, path=path, query=query, body=body, token=token, namespace=namespace)

    def _dispatch(self, req):
        path = req.path.rstrip("/") if req.op != "list" else req.path
        if path.rstrip("/") in self.PUBLIC:
            return self._sys_public(req, path.rstrip("/"))
        if req.op == "head":
            raise VaultError(405, [ERR_UNSUPPORTED_OP])
        if self.sealed:
            raise VaultError(503, [ERR_SEALED])
        if path.rstrip("/") == "auth/approle/login":
            return self._approle_login(req)
        caller = self._resolve_token(req.token, req.namespace)
        if caller is None:
            raise VaultError(403, [ERR_DENIED])
        if caller.get("num_uses"):
            caller["num_uses"] -= 1
            if caller["num_uses"] == 0:
                self.state["tokens"].pop(req.token, None)
            self._dirty = True
        if path.startswith("sys/"):
            return self._sys(req, caller, path)
        if path.startswith("auth/token/"):
            return self._token_api(req, caller, path)
        if path.startswith("auth/approle/"):
            return self._approle_admin(req, caller, path)
        ns = self._ns(req.namespace)
        for name in sorted(ns["mounts"], key=len, reverse=True):
            if path == name or path.startswith(name + "/"):
                return self._kv(req, ns["mounts"][name], path[len(name):].lstrip("/"))
        raise VaultError(404, [f'no handler for route "{req.path}". route entry not found.'])

    # -- sys ----------------------------------------------------------------
    def _seal_status(self):
        status = {"type": "shamir", "initialized": self.state["initialized"], "sealed": self.sealed, "t": 1, "n": 1,
                  "progress": 0, "nonce": "", "version": VAULT_VERSION, "build_date": "2024-06-10T10:11:34Z",
                  "migration": False, "recovery_seal": False,
                  "storage_type": "file" if self.state_file else "inmem"}
        if not self.sealed:
            status.update(cluster_name="vault-emulator", cluster_id=self.state["cluster_id"])
        return status

    def _sys_public(self, req, path):
        if path == "sys/health":
            if req.op not in ("read", "head"):
                raise VaultError(405, [ERR_UNSUPPORTED_OP])
            return self._health(req)
        if path == "sys/seal-status":
            if req.op != "read":
                raise VaultError(405, [ERR_UNSUPPORTED_OP])
            return 200, self._seal_status()
        if path == "sys/init":
            if req.op == "read":
                return 200, {"initialized": self.state["initialized"]}
            if req.op != "update":
                raise VaultError(405, [ERR_UNSUPPORTED_OP])
            if self.state["initialized"]:
                raise VaultError(400, ["Vault is already initialized"])
            self.state["initialized"] = True
            self._dirty = True
            key64 = base64.b64encode(self.unseal_key.encode()).decode()
            return 200, {"keys": [self.unseal_key], "keys_base64": [key64], "root_token": self.root_token}
        # sys/unseal
        if req.op != "update":
            raise VaultError(405, [ERR_UNSUPPORTED_OP])
        if not self.state["initialized"]:
            raise VaultError(400, ["Vault is not initialized"])
        if as_bool(req.body.get("reset", False), "reset") or not self.sealed:
            return 200, self._seal_status()
        key = req.body.get("key")
        if not key:
            raise VaultError(400, ["'key' must be specified in request body as JSON, or 'reset' set to true"])
        accepted = {self.unseal_key, base64.b64encode(self.unseal_key.encode()).decode()}
        if not any(secrets.compare_digest(str(key).encode(), k.encode()) for k in accepted):
            raise VaultError(400, ["Unseal failed, invalid key"])
        self.sealed = False
        return 200, self._seal_status()

    def _health(self, req):
        def code(name, default):
            raw = req.query.get(name)
            if raw in (None, ""):
                return default
            try:
                return int(raw)
            except ValueError:
                raise VaultError(400, [f"bad code: {raw}"]) from None

        if not self.state["initialized"]:
            status = code("uninitcode", 501)
        elif self.sealed:
            status = code("sealedcode", 503)
        else:
            status = code("activecode", 200)
        body = {"initialized": self.state["initialized"], "sealed": self.sealed, "standby": self.sealed,
                "performance_standby": False, "replication_performance_mode": "disabled",
                "replication_dr_mode": "disabled", "server_time_utc": int(self.clock()), "version": VAULT_VERSION,
                "enterprise": False, "echo_duration_ms": 0, "clock_skew_ms": 0,
                "replication_primary_canary_age_ms": 0}
        if not self.sealed:
            body.update(cluster_name="vault-emulator", cluster_id=self.state["cluster_id"])
        return status, (None if req.op == "head" else body)

    def _require_root(self, caller):
        if not caller.get("root"):
            raise VaultError(403, [ERR_DENIED])

    def _sys(self, req, caller, path):
        ns = self._ns(req.namespace)
        if path == "sys/seal":
            if req.op != "update":
                raise VaultError(405, [ERR_UNSUPPORTED_OP])
            self._require_root(caller)
            self.sealed = True
            return 204, None
        if path == "sys/mounts":
            if req.op != "read":
                raise VaultError(405, [ERR_UNSUPPORTED_OP])
            mounts = {f"{name}/": {"type": "kv", "options": {"version": "2"}, "description": "",
                                   "accessor": ns["mounts"][name]["accessor"], "local": False,
                                   "seal_wrap": False, "config": {"default_lease_ttl": 0, "max_lease_ttl": 0}}
                      for name in sorted(ns["mounts"])}
            return 200, dict(envelope(mounts), **mounts)
        if path.startswith("sys/mounts/"):
            name = path[len("sys/mounts/"):].strip("/")
            self._require_root(caller)
            if req.op == "delete":
                if ns["mounts"].pop(name, None) is not None:
                    self._dirty = True
                return 204, None
            if req.op != "update":
                raise VaultError(405, [ERR_UNSUPPORTED_OP])
            engine = str(req.body.get("type", ""))
            version = str((req.body.get("options") or {}).get("version", "1"))
            if engine not in ("kv", "kv-v2") or (engine == "kv" and version != "2"):
                raise VaultError(400, [f"the vault emulator only provides KV version 2 mounts, not {engine!r}"])
            if not name or name.split("/")[0] in RESERVED_MOUNTS:
                raise VaultError(400, [f'cannot mount under "{name}/"'])
            if any(name == m or name.startswith(m + "/") or m.startswith(name + "/") for m in ns["mounts"]):
                raise VaultError(400, [f"path is already in use at {name}/"])
            ns["mounts"][name] = new_mount()
            self._dirty = True
            return 204, None
        raise VaultError(404, [f'no handler for route "{req.path}". route entry not found.'])

    # -- auth/token -----------------------------------------------------------
    def _token_api(self, req, caller, path):
        if path == "auth/token/lookup-self":
            if req.op not in ("read", "update"):
                raise VaultError(405, [ERR_UNSUPPORTED_OP])
            return 200, envelope(self._token_view(req.token, caller))
        if path == "auth/token/revoke-self":
            if req.op != "update":
                raise VaultError(405, [ERR_UNSUPPORTED_OP])
            if caller.get("root"):
                raise VaultError(400, ["the vault emulator's root token cannot be revoked"])
            self.state["tokens"].pop(req.token, None)
            self._dirty = True
            return 204, None
        raise VaultError(404, [ERR_UNSUPPORTED_PATH])

    # -- AppRole --------------------------------------------------------------
    def _new_role(self, body, role=None):
        """A validated copy of `role` updated from `body` (nothing is changed when a field is invalid)."""
        if role:
            role = copy.deepcopy(role)
        else:
            role = {"role_id": str(uuid.uuid4()), "secret_ids": {}, "entity_id": str(uuid.uuid4()),
                    "bind_secret_id": True, "secret_id_num_uses": 0, "secret_id_ttl": 0, "token_ttl": 0,
                    "token_max_ttl": 0, "token_policies": [], "token_num_uses": 0, "token_type": "default",
                    "token_no_default_policy": False, "token_period": 0}
        if "policies" in body and "token_policies" not in body:
            body = dict(body, token_policies=body["policies"])
        for field in ("bind_secret_id", "token_no_default_policy"):
            if field in body:
                role[field] = as_bool(body[field], field)
        for field in ("secret_id_num_uses", "token_num_uses"):
            if field in body:
                role[field] = as_int(body[field], field)
        for field in ("secret_id_ttl", "token_ttl", "token_max_ttl", "token_period"):
            if field in body:
                role[field] = parse_duration(body[field], field)
        if "token_policies" in body:
            role["token_policies"] = sorted(set(as_str_list(body["token_policies"])))
        if "token_type" in body:
            role["token_type"] = str(body["token_type"])
        return role

    def _new_secret_id(self, role, meta=None):
        return {"accessor": str(uuid.uuid4()), "created": self.clock(), "ttl": role["secret_id_ttl"],
                "uses_left": role["secret_id_num_uses"], "metadata": meta or {}}

    def _role_view(self, role):
        view = {k: role[k] for k in ("bind_secret_id", "secret_id_num_uses", "secret_id_ttl", "token_max_ttl",
                                     "token_no_default_policy", "token_num_uses", "token_period",
                                     "token_policies", "token_ttl", "token_type")}
        view.update(local_secret_ids=False, secret_id_bound_cidrs=[], token_bound_cidrs=[],
                    token_explicit_max_ttl=0, policies=role["token_policies"], period=role["token_period"])
        return view

    def _approle_admin(self, req, caller, path):
        self._require_root(caller)
        roles = self._ns(req.namespace)["roles"]
        if path.rstrip("/") == "auth/approle/role" and req.op == "list":
            if not roles:
                raise VaultError(404)
            return 200, envelope({"keys": sorted(roles)})
        match = re.fullmatch(r"auth/approle/role/([\w.@-]+)(?:/(role-id|secret-id|custom-secret-id))?/?", path)
        if not match:
            raise VaultError(404, [ERR_UNSUPPORTED_PATH])
        name, sub = match.groups()
        role = roles.get(name)
        if sub is None:
            if req.op == "read":
                if role is None:
                    raise VaultError(404)
                return 200, envelope(self._role_view(role))
            if req.op == "delete":
                if roles.pop(name, None) is not None:
                    self._dirty = True
                return 204, None
            if req.op != "update":
                raise VaultError(405, [ERR_UNSUPPORTED_OP])
            roles[name] = self._new_role(req.body, role)
            self._dirty = True
            return 204, None
        if role is None:
            raise VaultError(400, [f'role "{name}" does not exist'])
        if sub == "role-id":
            if req.op == "read":
                return 200, envelope({"role_id": role["role_id"]})
            if req.op != "update":
                raise VaultError(405, [ERR_UNSUPPORTED_OP])
            new_id = str(req.body.get("role_id") or "").strip()
            if not new_id:
                raise VaultError(400, ["missing role_id"])
            role["role_id"] = new_id
            self._dirty = True
            return 204, None
        if sub == "secret-id" and req.op == "list":
            if not role["secret_ids"]:
                raise VaultError(404)
            return 200, envelope({"keys": sorted(s["accessor"] for s in role["secret_ids"].values())})
        if req.op != "update":
            raise VaultError(405, [ERR_UNSUPPORTED_OP])
        secret_id = str(uuid.uuid4()) if sub == "secret-id" else str(req.body.get("secret_id") or "").strip()
        if not secret_id:
            raise VaultError(400, ["missing secret_id"])
        meta = req.body.get("metadata") or {}
        if isinstance(meta, str):
            try:
                meta = json.loads(meta)
            except ValueError:
                raise VaultError(400, ["failed to parse metadata: not a JSON object"]) from None
        entry = role["secret_ids"][secret_id] = self._new_secret_id(role, meta)
        self._dirty = True
        return 200, envelope({"secret_id": secret_id, "secret_id_accessor": entry["accessor"],
                              "secret_id_ttl": entry["ttl"], "secret_id_num_uses": entry["uses_left"]})

    def _approle_login(self, req):
        if req.op != "update":
            raise VaultError(405, [ERR_UNSUPPORTED_OP])
        role_id = str(req.body.get("role_id") or "").strip()
        if not role_id:
            raise VaultError(400, ["missing role_id"])
        roles = self._ns(req.namespace)["roles"]
        found = [(n, r) for n, r in roles.items() if secrets.compare_digest(r["role_id"].encode(), role_id.encode())]
        if not found:
            raise VaultError(400, [ERR_BAD_CREDS])
        name, role = found[0]
        if role["bind_secret_id"]:
            secret_id = str(req.body.get("secret_id") or "").strip()
            if not secret_id:
                raise VaultError(400, ["missing secret_id"])
            entry = next((e for s, e in role["secret_ids"].items()
                          if secrets.compare_digest(s.encode(), secret_id.encode())), None)
            if entry is None or (entry["ttl"] and entry["created"] + entry["ttl"] <= self.clock()):
                raise VaultError(400, [ERR_BAD_CREDS])
            if entry["uses_left"]:
                entry["uses_left"] -= 1
                if entry["uses_left"] == 0:
                    role["secret_ids"].pop(secret_id)
        policies = list(role["token_policies"])
        if not role["token_no_default_policy"]:
            policies.append("default")
        ttl = role["token_ttl"] or DEFAULT_TOKEN_TTL
        if role["token_max_ttl"]:
            ttl = min(ttl, role["token_max_ttl"])
        token, rec = self._issue_token(req.namespace, policies, ttl, meta={"role_name": name},
                                       num_uses=role["token_num_uses"], entity_id=role["entity_id"])
        return 200, envelope(None, auth=self._auth_block(token, rec))

    # -- KV v2 ----------------------------------------------------------------
    def _kv(self, req, mount, rest):
        now = self.clock()
        head, _, key = rest.partition("/")
        op, body = req.op, req.body
        if head == "config" and not key:
            if op == "read":
                cfg = mount["config"]
                return 200, envelope({"cas_required": cfg["cas_required"], "max_versions": cfg["max_versions"],
                                      "delete_version_after": format_duration(cfg["delete_version_after"])})
            if op != "update":
                raise VaultError(405, [ERR_UNSUPPORTED_OP])
            cfg = dict(mount["config"])
            if "max_versions" in body:
                cfg["max_versions"] = max(0, as_int(body["max_versions"], "max_versions"))
            if "cas_required" in body:
                cfg["cas_required"] = as_bool(body["cas_required"], "cas_required")
            if "delete_version_after" in body:
                dva = parse_duration(body["delete_version_after"], "delete_version_after")
                cfg["delete_version_after"] = -1 if dva < 0 else dva
            mount["config"] = cfg
            self._dirty = True
            return 204, None
        if head == "data":
            if not key or key.endswith("/"):
                raise VaultError(404, [ERR_UNSUPPORTED_PATH])
            if op == "read":
                return 200, envelope(kv_read(mount, key, body.get("version"), now))
            if op in ("update", "patch"):
                result = (kv_write if op == "update" else kv_patch)(mount, key, body, now)
                self._dirty = True
                return 200, envelope(result)
            if op == "delete":
                meta = mount["keys"].get(key)
                if meta is not None:
                    kv_soft_delete(meta, [meta["current_version"]], now)
                    self._dirty = True
                return 204, None
            raise VaultError(405, [ERR_UNSUPPORTED_OP])
        if head == "metadata":
            if op == "list":
                return 200, envelope({"keys": kv_list(mount, key)})
            if op == "read":
                meta = mount["keys"].get(key)
                if meta is None:
                    raise VaultError(404)
                return 200, envelope(kv_metadata_view(meta))
            if not key:
                raise VaultError(400, ["missing path"])
            if op in ("update", "patch"):
                warnings = kv_metadata_write(mount, key, body, now, patch=op == "patch")
                self._dirty = True
                return (200, envelope(None, warnings=warnings)) if warnings else (204, None)
            if op == "delete":
                if mount["keys"].pop(key, None) is not None:
                    self._dirty = True
                return 204, None
            raise VaultError(405, [ERR_UNSUPPORTED_OP])
        if head in ("delete", "undelete", "destroy") and key:
            if op != "update":
                raise VaultError(405, [ERR_UNSUPPORTED_OP])
            numbers = as_int_list(body.get("versions"))
            if not numbers:
                raise VaultError(400, ["no version number provided" if head == "destroy"
                                       else "No version number provided"])
            meta = mount["keys"].get(key)
            if meta is not None:
                if head == "delete":
                    kv_soft_delete(meta, numbers, now)
                elif head == "undelete":
                    kv_undelete(mount, meta, numbers, now)
                else:
                    kv_destroy(meta, numbers)
                self._dirty = True
            return 204, None
        raise VaultError(404, [ERR_UNSUPPORTED_PATH])


# ---------------------------------------------------------------------------
# HTTP transport
# ---------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    server_version = "vault-emulator"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # headers and body go out in two writes: without this, Nagle + delayed ACK add ~40 ms per request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            status, body = self.server.emulator.handle(self.command, self.path, self.headers, raw)
        except Exception as exc:  # report the type and code location only: messages could carry request data
            sys.stderr.write("vault-emulator: internal error " + type(exc).__name__ + "\n"
                             + "".join(traceback.format_tb(exc.__traceback__)))
            status, body = 500, {"errors": [f"internal emulator error: {type(exc).__name__}"]}
        payload = b"" if body is None or self.command == "HEAD" else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)
        # method, path (no query string) and status only: never headers, bodies or values
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        sys.stderr.write(f"{stamp} {self.command} {urlsplit(self.path).path} {status}\n")
        sys.stderr.flush()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_LIST = _serve
    do_OPTIONS = do_TRACE = do_CONNECT = _serve

    def log_message(self, fmt, *args):  # the default log would print query strings; _serve logs instead
        pass


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, emulator):
        super().__init__(address, Handler)
        self.emulator = emulator


def parse_listen(value):
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen must be HOST:PORT, got {value!r}")
    host = host.strip("[]")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"--listen host must be an IP literal in 127.0.0.0/8, got {host!r}") from None
    if address.version != 4 or address not in ipaddress.ip_network("127.0.0.0/8"):
        raise ValueError(f"refusing to listen on {host}: the vault emulator only binds to loopback 127.0.0.0/8")
    return host, int(port)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Vault HTTP API emulator for tests and the local lab "
                                                 "(loopback only; production must use Vault/OpenBao).")
    parser.add_argument("--listen", required=True, help="HOST:PORT, HOST in 127.0.0.0/8 (port 0 = any free)")
    parser.add_argument("--root-token", default=os.environ.get("VAULT_EMULATOR_ROOT_TOKEN", DEFAULT_ROOT_TOKEN),
                        help="root token (default: $VAULT_EMULATOR_ROOT_TOKEN or 'root')")
    parser.add_argument("--unseal-key", default=os.environ.get("VAULT_EMULATOR_UNSEAL_KEY", DEFAULT_UNSEAL_KEY),
                        help="key accepted by sys/unseal (default: $VAULT_EMULATOR_UNSEAL_KEY or "
                             f"{DEFAULT_UNSEAL_KEY})")
    parser.add_argument("--state", help="JSON file to persist data across restarts (default: in memory)")
    parser.add_argument("--kv-mount", action="append", default=[], help="extra KV v2 mount (repeatable)")
    parser.add_argument("--approle", action="append", default=[],
                        help="NAME:ROLE_ID:SECRET_ID[:POLICY,...] defined at start-up (repeatable)")
    parser.add_argument("--start-sealed", action="store_true", help="start sealed, as a restarted Vault does")
    parser.add_argument("--uninitialized", action="store_true",
                        help="start uninitialised (sys/health 501) until PUT sys/init; ignored if --state exists")
    args = parser.parse_args(argv)
    try:
        host, port = parse_listen(args.listen)
        if not args.root_token:
            raise ValueError("--root-token must not be empty")
        emulator = Emulator(root_token=args.root_token, unseal_key=args.unseal_key, kv_mounts=args.kv_mount,
                            approles=args.approle, state_file=args.state, start_sealed=args.start_sealed,
                            uninitialized=args.uninitialized)
        server = EmulatorServer((host, port), emulator)
    except (ValueError, OSError) as exc:
        print(f"vault-emulator: error: {exc}", file=sys.stderr)
        return 2

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    bound_host, bound_port = server.server_address[:2]
    if args.unseal_key == DEFAULT_UNSEAL_KEY:
        print(f"vault-emulator: using the default unseal key {DEFAULT_UNSEAL_KEY!r}", file=sys.stderr)
    print(f"vault-emulator listening on http://{bound_host}:{bound_port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        print("vault-emulator: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
