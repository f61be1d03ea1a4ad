# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup manifests: the one place that knows the on-disk layout of a local backup.

Layout (see docs/manifest.md)::

    <backup_dir>/<database-safe>/<backup_id>/        a complete backup (has manifest.json)
    <backup_dir>/<database-safe>/.<backup_id>.partial/   being written (never a backup)

``backup_id`` is ``<label>-<UTC YYYYmmddTHHMMSSZ>``. The manifest is written last, atomically;
a directory counts as a backup only when it holds a manifest that :func:`load_manifest`
accepts. Pure Python, no Ansible imports: pg_backup writes manifests, pg_backup_verify,
pg_restore, s3_backup, backup_info and backup_retention read them through this file.

Memory stays bounded: files are hashed in fixed-size chunks, never read whole.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import hashlib
import json
import os
import re
import stat
import time

# fsync_dir is re-exported: the backup modules use it through this module.
from ansible_collections.upkeep.runbooks.plugins.module_utils._files import (  # noqa: F401  pylint: disable=unused-import
    fsync_dir,
    write_atomic,
)

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
KIND = "upkeep.runbooks.pg_backup"
PARTIAL_SUFFIX = ".partial"
FORMATS = ("custom", "directory")
COMPRESSIONS = ("gzip", "zstd", "none")

# A manifest lists every table of a database; keep a sane upper bound on what we parse.
MAX_MANIFEST_BYTES = 256 * 1024 * 1024

REQUIRED_KEYS = (
    "format_version",
    "kind",
    "backup_id",
    "label",
    "database",
    "host",
    "server_version",
    "server_version_num",
    "pg_dump_version",
    "format",
    "compression",
    "compression_level",
    "started_at",
    "finished_at",
    "duration_seconds",
    "wal_lsn_at_start",
    "snapshot",
    "toc_entries",
    "tables",
    "files",
    "total_size",
    "globals",
    "tool",
)

_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_LABEL_RE = re.compile(r"^[a-z0-9_-]+$")
_STAMP_RE = re.compile(r"^(\d{8}T\d{6}Z)$")
_BACKUP_ID_RE = re.compile(r"^([a-z0-9_-]+)-(\d{8}T\d{6}Z)$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


class ManifestError(Exception):
    """A manifest or backup directory is missing, unreadable or not valid; ``str()`` says why."""


# --------------------------------------------------------------------------------------
# names and times


def safe_name(database):
    """File-system safe form of a database name.

    Every character outside ``[A-Za-z0-9._-]`` becomes ``%XX`` per UTF-8 byte. A leading
    ``.`` is encoded too (``%2E``), so the result is never hidden, ``.`` or ``..``.
    The mapping is reversible (:func:`unsafe_name`); the manifest keeps the real name anyway.
    """
    if not isinstance(database, str) or database == "":
        raise ManifestError("database name must be a non-empty string")
    out = []
    for index, char in enumerate(database):
        if char in _SAFE_CHARS and not (index == 0 and char == "."):
            out.append(char)
        else:
            out.extend("%%%02X" % byte for byte in char.encode("utf-8"))
    return "".join(out)


def unsafe_name(name):
    """Inverse of :func:`safe_name`."""
    raw = bytearray()
    index = 0
    while index < len(name):
        char = name[index]
        if char == "%" and re.match(r"[0-9A-Fa-f]{2}$", name[index + 1:index + 3]):
            raw.append(int(name[index + 1:index + 3], 16))
            index += 3
        else:
            raw.extend(char.encode("utf-8"))
            index += 1
    return raw.decode("utf-8", errors="replace")


def valid_label(label):
    """True when ``label`` may be used in a backup id (``[a-z0-9_-]+``)."""
    return isinstance(label, str) and bool(_LABEL_RE.match(label))


def utcnow():
    """The current time, timezone-aware UTC."""
    return datetime.datetime.now(datetime.timezone.utc)


def _as_utc(when):
    if when.tzinfo is None:
        return when.replace(tzinfo=datetime.timezone.utc)
    return when.astimezone(datetime.timezone.utc)


def new_backup_id(label, when=None):
    """``<label>-<UTC YYYYmmddTHHMMSSZ>``; ``when`` defaults to now (naive means UTC)."""
    if not valid_label(label):
        raise ManifestError("label %r is not valid: use lower-case letters, digits, '_' and '-' only" % (label,))
    when = _as_utc(when or utcnow())
    return "%s-%s" % (label, when.strftime(_STAMP_FORMAT))


def split_backup_id(backup_id):
    """``(label, datetime)`` of a backup id, or raise ManifestError."""
    match = _BACKUP_ID_RE.match(backup_id or "")
    if not match:
        raise ManifestError("%r is not a backup id (expected <label>-YYYYmmddTHHMMSSZ)" % (backup_id,))
    return match.group(1), _parse_stamp(match.group(2))


def _parse_stamp(stamp):
    return datetime.datetime.strptime(stamp, _STAMP_FORMAT).replace(tzinfo=datetime.timezone.utc)


def utc_iso(when):
    """ISO 8601 UTC with milliseconds and ``Z``, e.g. ``2026-11-23T02:15:00.123Z``."""
    when = _as_utc(when)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (when.microsecond // 1000)


def parse_backup_time(value):
    """Datetime (aware, UTC) from a backup id, a bare ``YYYYmmddTHHMMSSZ`` stamp or an ISO 8601 string."""
    if isinstance(value, datetime.datetime):
        return _as_utc(value)
    if not isinstance(value, str) or not value:
        raise ManifestError("cannot read a time from %r" % (value,))
    if _STAMP_RE.match(value):
        return _parse_stamp(value)
    match = _BACKUP_ID_RE.match(value)
    if match:
        return _parse_stamp(match.group(2))
    text = value.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ManifestError("cannot read a time from %r (expected a backup id or ISO 8601)" % (value,)) from None
    return _as_utc(parsed)


# --------------------------------------------------------------------------------------
# paths


def database_dir(backup_dir, database):
    """``<backup_dir>/<database-safe>``."""
    return os.path.join(backup_dir, safe_name(database))


def backup_path(backup_dir, database, backup_id):
    """Final directory of a backup."""
    return os.path.join(database_dir(backup_dir, database), backup_id)


def partial_path(backup_dir, database, backup_id):
    """Directory a backup is written into before it is complete."""
    return os.path.join(database_dir(backup_dir, database), "." + backup_id + PARTIAL_SUFFIX)


def dump_name(database, fmt, compression):
    """Name of the dump inside a backup directory: ``<safe>.dump[.gz|.zst]`` or ``<safe>.dir``.

    The custom format compresses internally with gzip, so a gzip custom dump stays ``.dump``;
    only the external zstd stream gets ``.zst``. Directory dumps are always ``<safe>.dir``.
    """
    base = safe_name(database)
    if fmt == "directory":
        return base + ".dir"
    if compression == "zstd":
        return base + ".dump.zst"
    return base + ".dump"


# --------------------------------------------------------------------------------------
# files


def sha256_file(path, bufsize=1 << 20):
    """``(hexdigest, size)`` of a file, read in ``bufsize`` chunks into one reused buffer."""
    digest = hashlib.sha256()
    size = 0
    buf = bytearray(bufsize)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as handle:
        while True:
            count = handle.readinto(buf)
            if not count:
                break
            digest.update(view[:count])
            size += count
    return digest.hexdigest(), size


def fsync_file(path):
    """fsync one existing file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path, data, mode=0o600):
    """Write ``data`` as JSON to ``path``: temp file in the same directory, fsync, rename, fsync dir."""
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_atomic(path, text, mode=mode)


def _is_safe_relpath(rel):
    if not isinstance(rel, str) or rel == "" or "\\" in rel or "\x00" in rel:
        return False
    if rel.startswith("/"):
        return False
    parts = rel.split("/")
    return all(part not in ("", ".", "..") for part in parts)


def walk_files(root):
    """Sorted relative paths (``/``-separated) of every regular file below ``root``."""
    found = []
    for current, dirs, files in os.walk(root):
        dirs.sort()
        for name in files:
            full = os.path.join(current, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            found.append(rel)
    return sorted(found)


def file_entries(root, paths=None, bufsize=1 << 20):
    """Manifest ``files`` entries ``{path, size, sha256}`` for ``paths`` (default: every file), sorted."""
    entries = []
    for rel in sorted(paths if paths is not None else walk_files(root)):
        digest, size = sha256_file(os.path.join(root, rel), bufsize=bufsize)
        entries.append({"path": rel, "size": size, "sha256": digest})
    return entries


def tree_digest(entries):
    """sha256 of the sorted ``"<path> <sha256>\\n"`` lines of ``entries``: one checksum for a directory dump."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda item: item["path"]):
        digest.update(("%s %s\n" % (entry["path"], entry["sha256"])).encode("utf-8"))
    return digest.hexdigest()


# --------------------------------------------------------------------------------------
# manifests


def _require(condition, path, what):
    if not condition:
        raise ManifestError("manifest %s is not valid: %s" % (path, what))


def validate_manifest(data, where="<manifest>"):
    """Raise ManifestError unless ``data`` is a manifest this version understands."""
    _require(isinstance(data, dict), where, "top level is not a JSON object")
    version = data.get("format_version")
    _require(isinstance(version, int) and not isinstance(version, bool), where,
             "format_version missing or not an integer")
    if version > FORMAT_VERSION:
        raise ManifestError(
            "manifest %s has format_version %d, newer than the %d this collection reads: upgrade upkeep.runbooks"
            % (where, version, FORMAT_VERSION)
        )
    _require(version >= 1, where, "format_version %r is not valid" % (version,))
    missing = [key for key in REQUIRED_KEYS if key not in data]
    _require(not missing, where, "missing keys: %s" % ", ".join(missing))
    _require(data["kind"] == KIND, where, "kind is %r, expected %r" % (data["kind"], KIND))
    _require(isinstance(data["database"], str) and data["database"], where, "database is empty")
    _require(bool(_BACKUP_ID_RE.match(str(data["backup_id"]))), where,
             "backup_id %r is not valid" % (data["backup_id"],))
    _require(data["format"] in FORMATS, where, "format %r unknown" % (data["format"],))
    _require(data["compression"] in COMPRESSIONS, where, "compression %r unknown" % (data["compression"],))
    for key in ("started_at", "finished_at"):
        try:
            parse_backup_time(data[key])
        except ManifestError:
            raise ManifestError("manifest %s is not valid: %s %r is not a time" % (where, key, data[key])) from None
    _require(isinstance(data["tables"], list), where, "tables is not a list")
    for table in data["tables"]:
        _require(
            isinstance(table, dict) and isinstance(table.get("schema"), str) and isinstance(table.get("name"), str)
            and isinstance(table.get("rows"), int),
            where, "a tables entry lacks schema/name/rows",
        )
    files = data["files"]
    _require(isinstance(files, list) and files, where, "files is empty")
    seen = set()
    for entry in files:
        _require(isinstance(entry, dict), where, "a files entry is not an object")
        rel = entry.get("path")
        _require(_is_safe_relpath(rel), where, "file path %r is not a safe relative path" % (rel,))
        _require(rel != MANIFEST_NAME, where, "files lists the manifest itself")
        _require(rel not in seen, where, "file %r listed twice" % (rel,))
        seen.add(rel)
        size = entry.get("size")
        _require(isinstance(size, int) and not isinstance(size, bool) and size >= 0, where,
                 "file %r has no valid size" % (rel,))
        _require(isinstance(entry.get("sha256"), str) and bool(_SHA256_RE.match(entry["sha256"])), where,
                 "file %r has no valid sha256" % (rel,))
    _require(isinstance(data["total_size"], int), where, "total_size is not an integer")
    if data["globals"] is not None:
        _require(data["globals"] in seen, where, "globals %r is not among the files" % (data["globals"],))
    return data


def manifest_file(backup_path_):
    """Path of the manifest for a backup directory or a manifest path."""
    if os.path.isdir(backup_path_):
        return os.path.join(backup_path_, MANIFEST_NAME)
    return backup_path_


def load_manifest(backup_path_):
    """Read and validate the manifest of a backup (directory or manifest path)."""
    path = manifest_file(backup_path_)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise ManifestError("manifest %s does not exist: the backup is incomplete or was removed" % path) from None
        raise ManifestError("cannot read manifest %s: %s" % (path, exc.strerror or exc)) from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError("manifest %s is larger than %d bytes" % (path, MAX_MANIFEST_BYTES))
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError("manifest %s is not valid JSON: %s" % (path, exc)) from None
    return validate_manifest(data, path)


def verify_files(backup_path_, manifest, checksum=True, extra=True, bufsize=1 << 20):
    """Compare the files of a backup directory with its manifest.

    Returns a list (sorted by path) of ``{path, problem, expected, actual}`` with problem
    ``missing`` | ``size`` | ``sha256`` | ``extra``; empty when everything matches.
    A file with the wrong size is not hashed (its size already proves the mismatch).
    ``checksum=False`` checks presence and sizes only; ``extra=False`` ignores unlisted files.
    """
    root = backup_path_
    if not os.path.isdir(root):
        root = os.path.dirname(os.path.abspath(root))
    problems = []
    listed = set()
    for entry in manifest.get("files", []):
        rel = entry["path"]
        listed.add(rel)
        full = os.path.join(root, *rel.split("/"))
        try:
            info = os.stat(full)
        except OSError:
            problems.append({"path": rel, "problem": "missing", "expected": entry["size"], "actual": None})
            continue
        if not stat.S_ISREG(info.st_mode):
            problems.append({"path": rel, "problem": "missing", "expected": entry["size"], "actual": "not a file"})
            continue
        if info.st_size != entry["size"]:
            problems.append({"path": rel, "problem": "size", "expected": entry["size"], "actual": info.st_size})
            continue
        if checksum:
            digest, size = sha256_file(full, bufsize=bufsize)
            if size != entry["size"]:
                problems.append({"path": rel, "problem": "size", "expected": entry["size"], "actual": size})
            elif digest != entry["sha256"]:
                problems.append({"path": rel, "problem": "sha256", "expected": entry["sha256"], "actual": digest})
    if extra:
        for rel in walk_files(root):
            if rel == MANIFEST_NAME or rel in listed:
                continue
            full = os.path.join(root, *rel.split("/"))
            try:
                size = os.path.getsize(full)
            except OSError:
                size = None
            problems.append({"path": rel, "problem": "extra", "expected": None, "actual": size})
    return sorted(problems, key=lambda item: (item["path"], item["problem"]))


# --------------------------------------------------------------------------------------
# listing


def _database_dirs(backup_dir, database):
    if database is not None:
        candidate = database_dir(backup_dir, database)
        return [candidate] if os.path.isdir(candidate) else []
    try:
        names = sorted(os.listdir(backup_dir))
    except OSError:
        return []
    return [os.path.join(backup_dir, name) for name in names
            if not name.startswith(".") and os.path.isdir(os.path.join(backup_dir, name))]


def list_backups(backup_dir, database=None, skipped=None):
    """Complete backups below ``backup_dir`` (optionally of one database), newest first.

    Each item: ``{path, backup_id, database, label, finished_at, total_size, manifest}``.
    Hidden and ``.partial`` directories, directories without a manifest, with an invalid
    manifest, or whose manifest names another backup id or database are skipped; pass a list
    as ``skipped`` to receive ``{path, reason}`` for each directory passed over.
    """
    found = []
    for db_dir in _database_dirs(backup_dir, database):
        try:
            names = sorted(os.listdir(db_dir))
        except OSError as exc:
            if skipped is not None:
                skipped.append({"path": db_dir, "reason": "cannot list: %s" % (exc.strerror or exc)})
            continue
        for name in names:
            path = os.path.join(db_dir, name)
            if name.startswith(".") or not os.path.isdir(path):
                continue
            try:
                manifest = load_manifest(path)
            except ManifestError as exc:
                if skipped is not None:
                    skipped.append({"path": path, "reason": str(exc)})
                continue
            if manifest["backup_id"] != name:
                if skipped is not None:
                    skipped.append({"path": path, "reason": "manifest backup_id %r does not match the directory name"
                                    % (manifest["backup_id"],)})
                continue
            if safe_name(manifest["database"]) != os.path.basename(db_dir) or (
                    database is not None and manifest["database"] != database):
                if skipped is not None:
                    skipped.append({"path": path, "reason": "manifest database %r does not match the directory"
                                    % (manifest["database"],)})
                continue
            found.append({
                "path": path,
                "backup_id": manifest["backup_id"],
                "database": manifest["database"],
                "label": manifest["label"],
                "finished_at": manifest["finished_at"],
                "total_size": manifest["total_size"],
                "manifest": manifest,
            })
    found.sort(key=lambda item: (parse_backup_time(item["finished_at"]), item["backup_id"]), reverse=True)
    return found


def _newest_mtime(path):
    newest = os.lstat(path).st_mtime
    for current, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(current, name)).st_mtime)
            except OSError:
                pass
    return newest


def list_partials(backup_dir, database=None, now=None):
    """Unfinished backup directories (``.<backup_id>.partial``) with ``age_seconds`` since their last write."""
    now = time.time() if now is None else now
    found = []
    for db_dir in _database_dirs(backup_dir, database):
        try:
            names = sorted(os.listdir(db_dir))
        except OSError:
            continue
        for name in names:
            path = os.path.join(db_dir, name)
            if not (name.startswith(".") and name.endswith(PARTIAL_SUFFIX)) or not os.path.isdir(path):
                continue
            try:
                age = max(0.0, now - _newest_mtime(path))
            except OSError:
                continue
            found.append({"path": path, "age_seconds": age})
    return found
