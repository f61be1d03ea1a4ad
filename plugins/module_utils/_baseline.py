# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Patch baselines and rollback manifests: the one place that knows their format (docs/patch-baseline.md).

A *patch baseline* (written by apt_patch_plan, read by apt_patch_apply) is the exact set of
``name=version`` pairs a host would get, where they came from (the identity of every apt
source: Release date and SHA-256) and the host's OS release, sealed with a SHA-256 over its
canonical JSON. A *rollback manifest* (written by apt_patch_apply before it changes anything,
mode 0600) holds the versions installed before a baseline was applied, so the host can go back.

Canonical JSON: keys sorted, no insignificant whitespace (``","`` and ``":"`` separators),
UTF-8 without escaping non-ASCII, no floating-point numbers anywhere. The ``sha256`` of a document
is the SHA-256 of the canonical JSON of the document without its ``sha256`` key. Files are
written indented for people to read; the digest never depends on how a file is laid out.

Pure Python, no Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import errno
import hashlib
import json
import os
import re

from ansible_collections.upkeep.runbooks.plugins.module_utils._files import write_atomic

FORMAT_VERSION = 1
BASELINE_KIND = "upkeep.runbooks.apt_patch_baseline"
ROLLBACK_KIND = "upkeep.runbooks.apt_patch_rollback"
MAX_BYTES = 64 * 1024 * 1024

BASELINE_KEYS = (
    "format_version", "kind", "created_at", "host", "os_release", "architecture", "lists_refreshed",
    "selection", "packages", "sources", "excluded", "held_back", "reboot_required", "services", "tool", "sha256",
)
PACKAGE_KEYS = (
    "name", "architecture", "installed", "version", "deb_sha256", "source_package", "origin", "label", "suite",
    "codename", "component", "site", "repositories", "security", "reboot", "services",
)
SOURCE_KEYS = ("id", "uri", "dist", "origin", "label", "suite", "codename", "date", "valid_until",
               "release_file", "sha256", "signed")
OS_RELEASE_KEYS = ("id", "version_id", "version_codename", "pretty_name", "debian_version")
ROLLBACK_KEYS = ("format_version", "kind", "created_at", "updated_at", "host", "baseline_sha256", "status",
                 "packages", "tool", "sha256")
ROLLBACK_STATUSES = ("pending", "applied", "rolled_back")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_VERSION_RE = re.compile(r"^(?:[0-9]+:)?[0-9A-Za-z.+~-]+$")
_ARCH_RE = re.compile(r"^[a-z0-9-]+$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class BaselineError(Exception):
    """A baseline or rollback manifest is missing, unreadable, malformed or tampered with; ``str()`` says why."""


# --------------------------------------------------------------------------------------
# canonical form and digest


def _check_no_float(value, where, path="$"):
    if isinstance(value, float):
        raise BaselineError("%s is not valid: %s is a floating-point number (not allowed in canonical JSON)"
                            % (where, path))
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise BaselineError("%s is not valid: a key of %s is not a string" % (where, path))
            _check_no_float(item, where, "%s.%s" % (path, key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_no_float(item, where, "%s[%d]" % (path, index))


def canonical_json(data):
    """The canonical UTF-8 bytes of ``data``: sorted keys, no whitespace, non-ASCII kept as UTF-8."""
    _check_no_float(data, "document")
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def digest(data):
    """SHA-256 (hex) of the canonical JSON of ``data`` without its ``sha256`` key."""
    body = dict((key, value) for key, value in data.items() if key != "sha256")
    return hashlib.sha256(canonical_json(body)).hexdigest()


def seal(data):
    """A copy of ``data`` with ``sha256`` set to its digest."""
    sealed = copy.deepcopy(data)
    sealed.pop("sha256", None)
    sealed["sha256"] = digest(sealed)
    return sealed


def render(data):
    """The text a file holds: indented, keys sorted, one trailing newline (the digest does not depend on it)."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def utc_now():
    """``YYYY-mm-ddTHH:MM:SS.mmmZ`` of now, in UTC."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (now.microsecond // 1000)


def _parse_time(value):
    if not isinstance(value, str) or not value.endswith("Z"):
        raise ValueError(value)
    return datetime.datetime.fromisoformat(value[:-1] + "+00:00")


# --------------------------------------------------------------------------------------
# validation


def _require(condition, where, what):
    if not condition:
        raise BaselineError("%s is not valid: %s" % (where, what))


def _is_str(value, empty=False):
    return isinstance(value, str) and (empty or value != "")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_header(data, where, kind, keys):
    _require(isinstance(data, dict), where, "the top level is not a JSON object")
    version = data.get("format_version")
    _require(_is_int(version), where, "format_version is missing or not an integer")
    if version > FORMAT_VERSION:
        raise BaselineError("%s has format_version %d, newer than the %d this collection reads: upgrade "
                            "upkeep.runbooks" % (where, version, FORMAT_VERSION))
    _require(version >= 1, where, "format_version %r is not valid" % (version,))
    _require(data.get("kind") == kind, where, "kind is %r, expected %r" % (data.get("kind"), kind))
    missing = [key for key in keys if key not in data]
    _require(not missing, where, "missing keys: %s" % ", ".join(missing))
    _check_no_float(data, where)
    recorded = data["sha256"]
    _require(isinstance(recorded, str) and bool(_SHA256_RE.match(recorded)), where,
             "sha256 is not 64 lower-case hex digits")
    actual = digest(data)
    if actual != recorded:
        raise BaselineError("%s does not match its sha256: it records %s but its content hashes to %s (the file "
                            "was changed after it was written)" % (where, recorded, actual))
    try:
        _parse_time(data["created_at"])
    except ValueError:
        raise BaselineError("%s is not valid: created_at %r is not a UTC time" % (where, data["created_at"])) from None


def valid_name(name):
    return isinstance(name, str) and bool(_NAME_RE.match(name))


def valid_version(version):
    return isinstance(version, str) and bool(_VERSION_RE.match(version))


def _check_string_list(value, where, what):
    _require(isinstance(value, list) and all(_is_str(item) for item in value), where,
             "%s is not a list of strings" % what)


def validate_baseline(data, where="<baseline>"):
    """Raise BaselineError unless ``data`` is an intact baseline this version understands; returns it."""
    _check_header(data, where, BASELINE_KIND, BASELINE_KEYS)
    _require(_is_str(data["host"]), where, "host is empty")
    osr = data["os_release"]
    _require(isinstance(osr, dict) and all(key in osr for key in OS_RELEASE_KEYS), where,
             "os_release lacks one of %s" % ", ".join(OS_RELEASE_KEYS))
    _require(_is_str(osr["id"]), where, "os_release.id is empty")
    _require(_is_str(data["architecture"]) and bool(_ARCH_RE.match(data["architecture"])), where,
             "architecture %r is not valid" % (data["architecture"],))
    _require(isinstance(data["lists_refreshed"], bool), where, "lists_refreshed is not a boolean")
    selection = data["selection"]
    _require(isinstance(selection, dict), where, "selection is not an object")
    for key in ("include", "exclude"):
        _check_string_list(selection.get(key), where, "selection.%s" % key)
    sources = data["sources"]
    _require(isinstance(sources, list), where, "sources is not a list")
    source_ids = set()
    for source in sources:
        _require(isinstance(source, dict) and all(key in source for key in SOURCE_KEYS), where,
                 "a sources entry lacks one of %s" % ", ".join(SOURCE_KEYS))
        _require(_is_str(source["id"]) and source["id"] not in source_ids, where,
                 "source id %r is empty or listed twice" % (source.get("id"),))
        source_ids.add(source["id"])
        _require(source["sha256"] is None or bool(_SHA256_RE.match(str(source["sha256"]))), where,
                 "source %s has no valid sha256" % source["id"])
        _require(isinstance(source["signed"], bool), where, "source %s: signed is not a boolean" % source["id"])
    packages = data["packages"]
    _require(isinstance(packages, list), where, "packages is not a list")
    seen = set()
    for pkg in packages:
        _require(isinstance(pkg, dict) and all(key in pkg for key in PACKAGE_KEYS), where,
                 "a packages entry lacks one of %s" % ", ".join(PACKAGE_KEYS))
        name = pkg["name"]
        _require(valid_name(name), where, "package name %r is not valid" % (name,))
        _require(_is_str(pkg["architecture"]) and bool(_ARCH_RE.match(pkg["architecture"])), where,
                 "package %s: architecture %r is not valid" % (name, pkg["architecture"]))
        _require((name, pkg["architecture"]) not in seen, where, "package %s:%s is listed twice"
                 % (name, pkg["architecture"]))
        seen.add((name, pkg["architecture"]))
        _require(valid_version(pkg["version"]), where, "package %s: version %r is not valid" % (name, pkg["version"]))
        _require(pkg["installed"] is None or valid_version(pkg["installed"]), where,
                 "package %s: installed %r is not valid" % (name, pkg["installed"]))
        _require(pkg["deb_sha256"] is None or bool(_SHA256_RE.match(str(pkg["deb_sha256"]))), where,
                 "package %s: deb_sha256 is not 64 hex digits" % name)
        _require(isinstance(pkg["security"], bool) and isinstance(pkg["reboot"], bool), where,
                 "package %s: security and reboot must be booleans" % name)
        _check_string_list(pkg["services"], where, "services of package %s" % name)
        _check_string_list(pkg["repositories"], where, "repositories of package %s" % name)
        unknown = [ref for ref in pkg["repositories"] if ref not in source_ids]
        _require(not unknown, where, "package %s names repositories not among the sources: %s"
                 % (name, ", ".join(unknown)))
    for key in ("excluded", "held_back"):
        _require(isinstance(data[key], list) and all(isinstance(item, dict) and valid_name(item.get("name"))
                                                     and _is_str(item.get("reason")) for item in data[key]),
                 where, "%s entries need a name and a reason" % key)
    _require(isinstance(data["reboot_required"], bool), where, "reboot_required is not a boolean")
    _check_string_list(data["services"], where, "services")
    return data


def new_baseline(host, os_release, architecture, lists_refreshed, selection, packages, sources, excluded,
                 held_back, module="apt_patch_plan", created_at=None):
    """A sealed, validated baseline built from its parts (lists are sorted here)."""
    packages = sorted(packages, key=lambda item: (item["name"], item["architecture"]))
    data = {
        "format_version": FORMAT_VERSION,
        "kind": BASELINE_KIND,
        "created_at": created_at or utc_now(),
        "host": host,
        "os_release": dict((key, os_release.get(key)) for key in OS_RELEASE_KEYS),
        "architecture": architecture,
        "lists_refreshed": bool(lists_refreshed),
        "selection": {"include": list(selection.get("include") or []),
                      "exclude": list(selection.get("exclude") or [])},
        "packages": packages,
        "sources": sorted(sources, key=lambda item: item["id"]),
        "excluded": sorted(excluded, key=lambda item: item["name"]),
        "held_back": sorted(held_back, key=lambda item: item["name"]),
        "reboot_required": any(pkg["reboot"] for pkg in packages),
        "services": sorted(set(unit for pkg in packages for unit in pkg["services"])),
        "tool": {"name": "upkeep.runbooks", "module": module},
    }
    return validate_baseline(seal(data), "the new baseline")


def merge_baselines(baselines, created_at=None):
    """One baseline for every host that planned: the union of their plans (docs/patch-baseline.md,
    "Several planning hosts"). The hosts must agree on the OS release, the architecture, the
    selection, the version and .deb of every package they share, and the snapshot of every source
    they share; otherwise BaselineError names every disagreement. One baseline is returned as it is."""
    if not baselines:
        raise BaselineError("there is no plan to merge")
    docs = [validate_baseline(doc, "the plan of %s" % (doc.get("host") if isinstance(doc, dict) else "?"))
            for doc in baselines]
    if len(docs) == 1:
        return docs[0]
    first, problems = docs[0], []
    for doc in docs[1:]:
        for key in ("id", "version_codename"):
            if doc["os_release"].get(key) != first["os_release"].get(key):
                problems.append("%s runs %s %s, %s runs %s %s" % (
                    first["host"], first["os_release"].get("id"), first["os_release"].get("version_codename"),
                    doc["host"], doc["os_release"].get("id"), doc["os_release"].get("version_codename")))
                break
        if doc["architecture"] != first["architecture"]:
            problems.append("%s is %s, %s is %s" % (first["host"], first["architecture"], doc["host"],
                                                    doc["architecture"]))
        if doc["selection"] != first["selection"]:
            problems.append("%s and %s plan with other include/exclude patterns (%s, %s)" % (
                first["host"], doc["host"], canonical_json(first["selection"]).decode("utf-8"),
                canonical_json(doc["selection"]).decode("utf-8")))
    sources, source_from = {}, {}
    for doc in docs:
        for src in doc["sources"]:
            have = sources.get(src["id"])
            if have is None:
                sources[src["id"]], source_from[src["id"]] = copy.deepcopy(src), doc["host"]
            elif have["sha256"] != src["sha256"]:
                problems.append("%s and %s saw different snapshots of %s (Release %s..., %s...): refresh the lists "
                                "and plan again" % (source_from[src["id"]], doc["host"], src["id"],
                                                    str(have["sha256"])[:12], str(src["sha256"])[:12]))
    packages, planned_by = {}, {}
    for doc in docs:
        for pkg in doc["packages"]:
            key = (pkg["name"], pkg["architecture"])
            have = packages.get(key)
            if have is None:
                packages[key], planned_by[key] = copy.deepcopy(pkg), doc["host"]
                continue
            if pkg["version"] != have["version"] or pkg["deb_sha256"] != have["deb_sha256"]:
                problems.append("%s: %s plans %s, %s plans %s%s" % (
                    pkg["name"], planned_by[key], have["version"], doc["host"], pkg["version"],
                    " (another .deb)" if pkg["version"] == have["version"] else ""))
                continue
            if have["installed"] is None:
                have["installed"] = pkg["installed"]  # installed somewhere: not only a new dependency
            have["services"] = sorted(set(have["services"]) | set(pkg["services"]))
            have["repositories"] = sorted(set(have["repositories"]) | set(pkg["repositories"]))
            have["reboot"] = have["reboot"] or pkg["reboot"]
            have["security"] = have["security"] or pkg["security"]
    if problems:
        raise BaselineError("the plans of %s do not agree: %s" % (", ".join(doc["host"] for doc in docs),
                                                                  "; ".join(problems)))

    def union(key):
        seen, items = set(), []
        for doc in docs:
            for item in doc[key]:
                ident = (item["name"], item["reason"])
                if ident not in seen:
                    seen.add(ident)
                    items.append(dict(item, host=doc["host"]))
        return items

    return new_baseline(host=",".join(doc["host"] for doc in docs), os_release=first["os_release"],
                        architecture=first["architecture"],
                        lists_refreshed=all(doc["lists_refreshed"] for doc in docs), selection=first["selection"],
                        packages=list(packages.values()), sources=list(sources.values()),
                        excluded=union("excluded"), held_back=union("held_back"), created_at=created_at)


def same_plan(first, second):
    """True when two baselines differ at most in created_at (and therefore sha256)."""
    def body(doc):
        return dict((key, value) for key, value in doc.items() if key not in ("created_at", "sha256"))
    return canonical_json(body(first)) == canonical_json(body(second))


# --------------------------------------------------------------------------------------
# files


def _read_json(path, what):
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise BaselineError("%s %s does not exist" % (what, path)) from None
        raise BaselineError("cannot read %s %s: %s" % (what, path, exc.strerror or exc)) from None
    if len(raw) > MAX_BYTES:
        raise BaselineError("%s %s is larger than %d bytes" % (what, path, MAX_BYTES))
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BaselineError("%s %s is not valid JSON: %s" % (what, path, exc)) from None


def load_baseline(path):
    """Read, check the digest of and validate the baseline at ``path``."""
    return validate_baseline(_read_json(path, "baseline"), "baseline %s" % path)


def write_baseline(path, data, mode=0o644):
    """Write a (sealed, valid) baseline atomically: temporary file, fsync, rename, fsync of the directory."""
    validate_baseline(data, "baseline for %s" % path)
    write_atomic(path, render(data), mode=mode)


# --------------------------------------------------------------------------------------
# rollback manifests


def validate_rollback(data, where="<rollback manifest>"):
    """Raise BaselineError unless ``data`` is an intact rollback manifest; returns it."""
    _check_header(data, where, ROLLBACK_KIND, ROLLBACK_KEYS)
    _require(_is_str(data["host"]), where, "host is empty")
    _require(isinstance(data["baseline_sha256"], str) and bool(_SHA256_RE.match(data["baseline_sha256"])), where,
             "baseline_sha256 is not 64 hex digits")
    _require(data["status"] in ROLLBACK_STATUSES, where, "status %r is not one of %s"
             % (data["status"], ", ".join(ROLLBACK_STATUSES)))
    packages = data["packages"]
    _require(isinstance(packages, list), where, "packages is not a list")
    seen = set()
    for pkg in packages:
        _require(isinstance(pkg, dict) and all(key in pkg for key in ("name", "architecture", "before", "after")),
                 where, "a packages entry lacks name, architecture, before or after")
        _require(valid_name(pkg["name"]) and pkg["name"] not in seen, where,
                 "package name %r is not valid or listed twice" % (pkg.get("name"),))
        seen.add(pkg["name"])
        _require(pkg["before"] is None or valid_version(pkg["before"]), where,
                 "package %s: before %r is not a version" % (pkg["name"], pkg["before"]))
        _require(valid_version(pkg["after"]), where, "package %s: after %r is not a version"
                 % (pkg["name"], pkg["after"]))
    return data


def new_rollback(host, baseline_sha256, packages, previous=None, module="apt_patch_apply"):
    """A sealed rollback manifest for ``packages`` ({name, architecture, before, after}).

    With ``previous`` (a pending manifest of the same baseline: an earlier attempt that did not
    finish), the earlier ``before`` of every package it lists is kept: the pre-patch version is
    the one installed before the first attempt, not what a half-done attempt left.
    """
    merged = {}
    created_at = utc_now()
    if previous is not None:
        created_at = previous["created_at"]
        for pkg in previous["packages"]:
            merged[pkg["name"]] = dict(pkg)
    for pkg in packages:
        entry = merged.get(pkg["name"])
        if entry is None:
            merged[pkg["name"]] = dict(name=pkg["name"], architecture=pkg["architecture"], before=pkg["before"],
                                       after=pkg["after"])
        else:
            entry["after"] = pkg["after"]
    data = {
        "format_version": FORMAT_VERSION,
        "kind": ROLLBACK_KIND,
        "created_at": created_at,
        "updated_at": utc_now(),
        "host": host,
        "baseline_sha256": baseline_sha256,
        "status": "pending",
        "packages": [merged[name] for name in sorted(merged)],
        "tool": {"name": "upkeep.runbooks", "module": module},
    }
    return validate_rollback(seal(data), "the new rollback manifest")


def with_status(manifest, status):
    """A re-sealed copy of ``manifest`` with another status."""
    data = dict(manifest)
    data["status"] = status
    data["updated_at"] = utc_now()
    return validate_rollback(seal(data), "the rollback manifest")


def load_rollback(path):
    return validate_rollback(_read_json(path, "rollback manifest"), "rollback manifest %s" % path)


def write_rollback(path, data):
    """Write a rollback manifest atomically with mode 0600 (its directory is created 0700 when missing)."""
    validate_rollback(data, "rollback manifest for %s" % path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700)
    write_atomic(path, render(data), mode=0o600)
