# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Promotion records: the one place that knows their format (docs/patching.md, "Promotion records").

A promotion record is what a staging run leaves for production: the patch baseline staging
applied (whole, with its own SHA-256), the outcome on every staging host and of every gate,
when it was promoted, and a SHA-256 over the record's canonical JSON. It is stored as
``<store>/<baseline sha256>.json`` in a directory on the controller (written atomically:
temporary file, fsync, rename, fsync of the directory) or as an object below a prefix in an
S3 bucket. Production selects a record (the newest that passed, or a named one) and checks
its soak time, age and OS release before it installs anything.

Pure Python, no Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import re

from ansible_collections.upkeep.runbooks.plugins.module_utils import _baseline
from ansible_collections.upkeep.runbooks.plugins.module_utils._files import write_atomic

FORMAT_VERSION = 1
KIND = "upkeep.runbooks.patch_promotion"
RECORD_KEYS = ("format_version", "kind", "promoted_at", "name", "stage", "passed", "baseline_sha256",
               "baseline", "hosts", "gates", "run", "sha256")
HOST_KEYS = ("host", "status", "packages", "reboot")
HOST_STATUSES = ("applied", "failed", "rolled_back", "skipped")
SUFFIX = ".json"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class PromotionError(Exception):
    """A record that cannot be read, written or used; the message says why."""


def parse_time(value):
    """An aware datetime from ``YYYY-mm-ddTHH:MM:SS[.fff]Z``."""
    if not isinstance(value, str) or not value.endswith("Z"):
        raise ValueError(value)
    return datetime.datetime.fromisoformat(value[:-1] + "+00:00")


def validate(data, where="<promotion record>"):
    """Raise PromotionError unless ``data`` is an intact record this version understands; returns it."""
    def require(condition, what):
        if not condition:
            raise PromotionError("%s: %s" % (where, what))

    require(isinstance(data, dict), "not a JSON object")
    require(data.get("kind") == KIND, "kind is %r, not %r" % (data.get("kind"), KIND))
    version = data.get("format_version")
    require(isinstance(version, int) and not isinstance(version, bool), "format_version is not an integer")
    require(version <= FORMAT_VERSION, "format_version %d is newer than this collection reads (%d)"
            % (version, FORMAT_VERSION))
    missing = [key for key in RECORD_KEYS if key not in data]
    require(not missing, "lacks %s" % ", ".join(missing))
    require(_SHA256_RE.match(str(data["sha256"])) is not None, "sha256 is not a SHA-256")
    actual = _baseline.digest(data)
    require(actual == data["sha256"], "sha256 %s does not match its content (%s): the record was changed"
            % (data["sha256"], actual))
    require(isinstance(data["name"], str) and _NAME_RE.match(data["name"]) is not None,
            "name %r is not valid" % (data.get("name"),))
    require(data["stage"] == "staging", "stage is %r" % (data["stage"],))
    require(isinstance(data["passed"], bool), "passed is not a boolean")
    try:
        parse_time(data["promoted_at"])
    except (TypeError, ValueError):
        raise PromotionError("%s: promoted_at %r is not a UTC time" % (where, data["promoted_at"])) from None
    try:
        baseline = _baseline.validate_baseline(data["baseline"], "%s: baseline" % where)
    except _baseline.BaselineError as exc:
        raise PromotionError(str(exc)) from None
    require(baseline["sha256"] == data["baseline_sha256"], "baseline_sha256 %s is not the baseline's (%s)"
            % (data["baseline_sha256"], baseline["sha256"]))
    require(isinstance(data["hosts"], list) and data["hosts"], "hosts is empty")
    for entry in data["hosts"]:
        require(isinstance(entry, dict) and all(key in entry for key in HOST_KEYS),
                "a hosts entry lacks one of %s" % ", ".join(HOST_KEYS))
        require(entry["status"] in HOST_STATUSES, "host %s has status %r" % (entry["host"], entry["status"]))
    require(isinstance(data["gates"], list), "gates is not a list")
    require(isinstance(data["run"], dict), "run is not an object")
    return data


def new_record(baseline, hosts, gates, run, promoted_at=None, name=None):
    """A sealed record of ``baseline`` (validated) with the staging outcome; ``passed`` is derived:
    every host applied and no gate failed."""
    try:
        _baseline.validate_baseline(baseline, "baseline to promote")
    except _baseline.BaselineError as exc:
        raise PromotionError(str(exc)) from None
    hosts = sorted((dict(entry) for entry in hosts), key=lambda entry: entry.get("host", ""))
    passed = bool(hosts) and all(entry.get("status") == "applied" for entry in hosts) \
        and all(gate.get("status") != "fail" for gate in gates)
    promoted_at = promoted_at or _baseline.utc_now()
    record = {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "promoted_at": promoted_at,
        "name": name or ("%s-%s" % (promoted_at[:10], baseline["sha256"][:12])),
        "stage": "staging",
        "passed": passed,
        "baseline_sha256": baseline["sha256"],
        "baseline": baseline,
        "hosts": hosts,
        "gates": list(gates),
        "run": dict(run or {}),
    }
    return validate(_baseline.seal(record), "new promotion record")


def render(record):
    return _baseline.render(record).encode("utf-8")


def key_of(record):
    return record["baseline_sha256"] + SUFFIX


def loads(raw, where):
    try:
        data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PromotionError("%s is not valid JSON: %s" % (where, exc)) from None
    return validate(data, where)


# --------------------------------------------------------------------------------------
# stores: a directory on the controller, or a prefix in an S3 bucket


class DirectoryStore:
    def __init__(self, path):
        self.path = path

    def where(self, key):
        return os.path.join(self.path, key)

    def keys(self):
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise PromotionError("cannot list %s: %s" % (self.path, exc.strerror or exc)) from None
        return sorted(name for name in names if name.endswith(SUFFIX) and not name.startswith("."))

    def read(self, key):
        try:
            with open(self.where(key), "rb") as handle:
                return handle.read(_baseline.MAX_BYTES + 1)
        except OSError as exc:
            raise PromotionError("cannot read %s: %s" % (self.where(key), exc.strerror or exc)) from None

    def write(self, key, data):
        try:
            os.makedirs(self.path, mode=0o750, exist_ok=True)
            write_atomic(self.where(key), data, mode=0o640)
        except OSError as exc:
            raise PromotionError("cannot write %s: %s" % (self.where(key), exc.strerror or exc)) from None


class S3Store:
    """A prefix in a bucket; ``s3`` is a boto3 client, ``s3mod`` the _s3 module (imported by the caller)."""

    def __init__(self, s3, s3mod, bucket, prefix):
        self.s3 = s3
        self.s3mod = s3mod
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def where(self, key):
        return self.s3mod.url(self.bucket, self.s3mod.join_key(self.prefix, key))

    def keys(self):
        base = self.prefix + "/" if self.prefix else ""
        found = []
        for item in self.s3mod.list_objects(self.s3, self.bucket, base):
            name = item["key"][len(base):]
            if "/" not in name and name.endswith(SUFFIX):
                found.append(name)
        return sorted(found)

    def read(self, key):
        data, _digest = self.s3mod.get_bytes(self.s3, self.bucket, self.s3mod.join_key(self.prefix, key),
                                             limit=_baseline.MAX_BYTES)
        return data

    def write(self, key, data):
        self.s3mod.put_bytes(self.s3, self.bucket, self.s3mod.join_key(self.prefix, key), data)


def load_all(store):
    """(records, problems): every valid record in the store, newest promotion first, and one line per
    record that could not be read (a tampered or foreign file is named, never used)."""
    records, problems = [], []
    for key in store.keys():
        try:
            record = loads(store.read(key), store.where(key))
        except PromotionError as exc:
            problems.append(str(exc))
            continue
        record_where = store.where(key)
        records.append((record, record_where))
    records.sort(key=lambda item: parse_time(item[0]["promoted_at"]), reverse=True)
    return records, problems


def refusals(record, now, min_soak_seconds, max_age_seconds, os_release=None):
    """Reasons ``record`` may not go to production now (empty: it may)."""
    reasons = []
    label = "promotion %s (baseline %s)" % (record["name"], record["baseline_sha256"][:12])
    if not record["passed"]:
        failed = [entry["host"] for entry in record["hosts"] if entry["status"] != "applied"]
        failed_gates = [gate.get("check", "?") + "@" + str(gate.get("host", "?"))
                        for gate in record["gates"] if gate.get("status") == "fail"]
        reasons.append("%s did not pass staging (hosts not applied: %s; failed gates: %s)"
                       % (label, ", ".join(failed) or "none", ", ".join(failed_gates) or "none"))
    age = (now - parse_time(record["promoted_at"])).total_seconds()
    if age < min_soak_seconds:
        reasons.append("%s was promoted %s ago, less than the soak time of %s (it may go to production at %s)"
                       % (label, human(age), human(min_soak_seconds),
                          (parse_time(record["promoted_at"]) + datetime.timedelta(seconds=min_soak_seconds))
                          .strftime("%Y-%m-%dT%H:%M:%SZ")))
    if max_age_seconds and age > max_age_seconds:
        reasons.append("%s was promoted %s ago, more than the maximum age of %s: run staging again"
                       % (label, human(age), human(max_age_seconds)))
    if os_release:
        tested = record["baseline"]["os_release"]
        for key in ("id", "version_codename"):
            if os_release.get(key) and tested.get(key) and os_release.get(key) != tested.get(key):
                reasons.append("%s was tested on %s %s, this host runs %s %s"
                               % (label, tested.get("id"), tested.get("version_codename"),
                                  os_release.get("id"), os_release.get("version_codename")))
                break
    return reasons


def human(seconds):
    seconds = int(abs(seconds))
    if seconds >= 86400:
        return "%dd%02dh" % (seconds // 86400, seconds % 86400 // 3600)
    if seconds >= 3600:
        return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)
    return "%dm%02ds" % (seconds // 60, seconds % 60)
