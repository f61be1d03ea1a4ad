#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: s3_backup
short_description: Copy a verified backup to S3 and fetch it back, checked end to end by SHA-256
version_added: 0.1.0
description:
  - With O(state=present), copies one local backup written by M(upkeep.runbooks.pg_backup) (its files and its
    manifest) to C(s3://<bucket>/<prefix>/<database-safe>/<backup_id>/) on AWS S3 or any S3-compatible endpoint.
    Every object carries its SHA-256 as C(x-amz-meta-sha256); the manifest is uploaded last, so a remote copy
    counts only once all its files are there.
  - With O(state=fetched), downloads a backup from S3 into C(<dest>/<database-safe>/<backup_id>/), verifying every
    file against the SHA-256 in the manifest before the directory gets its final name.
  - Integrity is checked by SHA-256, never by ETag (the ETag of a multipart upload is not an MD5 of the content).
  - Idempotent. A remote copy whose manifest matches and whose objects all have the expected size and SHA-256
    is left alone; after an interrupted upload a re-run uploads only what is missing.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - upkeep.runbooks.s3
attributes:
  check_mode:
    support: full
    details:
      - Lists the bucket and reads object metadata (read-only) and returns in RV(keys) what would be uploaded or
        fetched. Nothing is written locally or remotely. Local files are checked for presence and size only;
        their SHA-256 is checked during the real upload.
  diff_mode:
    support: none
    details:
      - The result lists the keys copied (RV(keys)) and those already in place (RV(present)).
  platform:
    platforms: posix
options:
  state:
    description:
      - V(present) uploads the local backup at O(path).
      - V(fetched) downloads a backup into O(dest).
    type: str
    choices: [present, fetched]
    default: present
  path:
    description:
      - The local backup to upload, as its directory C(<backup_dir>/<database-safe>/<backup_id>) or its
        C(manifest.json). Required with O(state=present).
      - The backup must be complete (have a valid manifest). Its files are checked against the manifest while
        they are uploaded; a file that does not match fails the task and no remote manifest is written.
    type: path
  bucket:
    description:
      - Name of the bucket. It must exist; the module never creates buckets.
    type: str
    required: true
  prefix:
    description:
      - Key prefix under which backups are stored, for example V(postgres/production). Leading and trailing
        slashes are ignored.
    type: str
    default: ''
  database:
    description:
      - Database whose backup is fetched (O(state=fetched), required there).
      - With O(state=present) it is optional; when given it must match the manifest.
    type: str
  backup_id:
    description:
      - Backup to fetch, for example V(daily-20261123T021500Z). Use O(latest=true) instead to fetch the newest.
      - With O(state=present) it is optional; when given it must match the manifest.
    type: str
  latest:
    description:
      - With O(state=fetched), fetch the newest complete backup of O(database) under O(prefix).
    type: bool
    default: false
  dest:
    description:
      - With O(state=fetched), the local backup root. The backup is written to
        C(<dest>/<database-safe>/.<backup_id>.partial/) and renamed to C(<dest>/<database-safe>/<backup_id>/)
        once every file has been verified. Directories are created C(0700), files C(0600).
      - An existing complete copy with the same manifest is left alone; one that differs is replaced.
    type: path
  encryption:
    description:
      - Server-side encryption requested for every uploaded object.
      - V(AES256) is SSE-S3, V(aws:kms) is SSE-KMS (with O(kms_key_id), or the account's default key).
      - The recorded encryption of every uploaded object is checked after the upload.
    type: str
    choices: [none, AES256, aws:kms]
    default: AES256
  kms_key_id:
    description:
      - KMS key id or ARN for O(encryption=aws:kms).
    type: str
  storage_class:
    description:
      - Storage class of the uploaded objects, for example V(STANDARD_IA). The endpoint's default when omitted.
      - Archive classes (V(GLACIER), V(DEEP_ARCHIVE)) need a restore before O(state=fetched) or O(verify=full) can
        read them.
    type: str
  object_lock_mode:
    description:
      - Object Lock retention mode for the uploaded objects. The bucket must have Object Lock enabled.
      - Requires O(object_lock_retain_until_days).
    type: str
    choices: [GOVERNANCE, COMPLIANCE]
  object_lock_retain_until_days:
    description:
      - Days from now until which the uploaded objects cannot be deleted or overwritten.
    type: int
  verify:
    description:
      - How an uploaded copy is verified before its manifest is written.
      - V(metadata) reads every object's size and recorded SHA-256 (a HEAD request each). The content itself is
        protected in transit by the checksums botocore sends with every part and the endpoint checks.
      - V(full) also downloads every object as a stream and compares its SHA-256 (costs one full read of the
        copy, including for objects already present).
      - O(state=fetched) always verifies every file by SHA-256.
    type: str
    choices: [metadata, full]
    default: metadata
  part_size_mb:
    description:
      - Multipart part size in MiB (5 to 5120). Files larger than this are uploaded in parts; memory use stays
        bounded whatever the file size. Raised automatically when a file would need more than 10,000 parts.
      - The default (8 MiB parts, 10 in flight, boto3's own defaults) was the fastest setting measured against
        an S3 endpoint on the same host on a quiet machine, with a peak memory under 100 MB; see
        docs/performance.md. Against a remote endpoint with high latency, fewer and larger parts can be better.
    type: int
    default: 8
  max_concurrency:
    description:
      - Parts uploaded in parallel. Memory use grows with this (about one part buffer per part in flight).
    type: int
    default: 10
notes:
  - The credentials need C(s3:ListBucket), C(s3:GetObject), C(s3:PutObject), C(s3:DeleteObject) (to replace a
    stale remote manifest and clean up after a broken upload), C(s3:ListBucketMultipartUploads) and
    C(s3:AbortMultipartUpload) on the prefix, plus C(s3:PutObjectRetention) with Object Lock.
  - On failure the incomplete multipart uploads of the backup are aborted where the endpoint is still reachable,
    and the next run aborts any that are left before it starts.
  - Changing O(encryption) or O(storage_class) does not rewrite objects that are already in place with the right
    content.
seealso:
  - module: upkeep.runbooks.backup_info
  - module: upkeep.runbooks.backup_retention
"""

EXAMPLES = r"""
- name: Copy last night's backup off-site
  upkeep.runbooks.s3_backup:
    path: "{{ dump.path }}"
    bucket: acme-db-backups
    prefix: postgres/production
    storage_class: STANDARD_IA
  register: offsite

- name: Copy to an S3-compatible endpoint with KMS encryption, Object Lock and a full read-back
  upkeep.runbooks.s3_backup:
    path: /var/backups/postgresql/app/daily-20261123T021500Z
    bucket: db-backups
    endpoint_url: https://minio.internal:9000
    ca_bundle: /etc/ssl/certs/internal-ca.pem
    encryption: aws:kms
    kms_key_id: alias/db-backups
    object_lock_mode: COMPLIANCE
    object_lock_retain_until_days: 35
    verify: full
  environment:
    AWS_ACCESS_KEY_ID: "{{ vault_backup_access_key }}"
    AWS_SECRET_ACCESS_KEY: "{{ vault_backup_secret_key }}"

- name: Fetch the newest off-site backup of app onto the restore-test host
  upkeep.runbooks.s3_backup:
    state: fetched
    bucket: acme-db-backups
    prefix: postgres/production
    database: app
    latest: true
    dest: /var/backups/restore-test
  register: fetched

- name: Fetch one given backup
  upkeep.runbooks.s3_backup:
    state: fetched
    bucket: acme-db-backups
    database: app
    backup_id: daily-20261123T021500Z
    dest: /srv/restore
"""

RETURN = r"""
bucket:
  description: The bucket.
  returned: always
  type: str
  sample: acme-db-backups
prefix:
  description: The prefix as given.
  returned: always
  type: str
  sample: postgres/production
remote_prefix:
  description: Key prefix of the backup's objects.
  returned: when the backup is known
  type: str
  sample: postgres/production/app/daily-20261123T021500Z/
backup_id:
  description: The backup copied or fetched.
  returned: when the backup is known
  type: str
  sample: daily-20261123T021500Z
database:
  description: Database of the backup (the real name from the manifest).
  returned: when the backup is known
  type: str
  sample: app
path:
  description:
    - O(state=present), the local backup directory uploaded.
    - O(state=fetched), the local directory the backup is in (or would be, in check mode).
  returned: when the backup is known
  type: str
  sample: /var/backups/restore-test/app/daily-20261123T021500Z
keys:
  description:
    - Keys uploaded (O(state=present)) or fetched (O(state=fetched)) by this run, manifest last; in check mode the
      keys that would be.
  returned: always
  type: list
  elements: str
  sample:
    - postgres/production/app/daily-20261123T021500Z/app.dump
    - postgres/production/app/daily-20261123T021500Z/manifest.json
present:
  description: Keys already in place with the expected size and SHA-256 (O(state=present)), or all keys when a
    matching local copy already exists (O(state=fetched)).
  returned: always
  type: list
  elements: str
  sample: []
bytes:
  description: Bytes transferred (or that would be, in check mode).
  returned: always
  type: int
  sample: 190840217
verified:
  description: How the copy was verified, V(metadata) or V(full) for uploads, V(sha256) for fetches; null in check mode.
  returned: always
  type: str
  sample: metadata
encryption:
  description: Server-side encryption the endpoint recorded for the manifest object (null when none).
  returned: with O(state=present), outside check mode
  type: str
  sample: AES256
duration_seconds:
  description: Wall time of the operation.
  returned: always
  type: float
  sample: 12.41
"""

import datetime  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils import _s3  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._failure import Failure  # noqa: E402


def _cause(exc, s3=None, bucket=None, key=None, params=None):
    return _s3.describe_error(exc, _s3.endpoint_of(s3) if s3 is not None else None, bucket, key,
                              secrets=_s3.secrets_of(params or {}))


# --------------------------------------------------------------------------------------
# present


def _local_backup(params):
    try:
        manifest = _manifest.load_manifest(params["path"])
    except _manifest.ManifestError as exc:
        raise Failure("Failed to read backup %s: %s" % (params["path"], exc)) from None
    manifest_path = _manifest.manifest_file(params["path"])
    root = os.path.dirname(os.path.abspath(manifest_path))
    for option in ("database", "backup_id"):
        if params.get(option) and params[option] != manifest[option]:
            raise Failure("Failed to upload backup %s: %s is %r but the manifest says %r"
                          % (root, option, params[option], manifest[option]))
    problems = _manifest.verify_files(root, manifest, checksum=False, extra=False)
    if problems:
        raise Failure("Failed to upload backup %s: the local backup is broken: %s"
                      % (root, _problem_text(problems)), problems=problems)
    with open(manifest_path, "rb") as handle:
        raw = handle.read()
    return manifest, root, raw


def _problem_text(problems):
    shown = ["%s (%s: expected %s, found %s)" % (p["path"], p["problem"], p["expected"], p["actual"])
             for p in problems[:5]]
    more = " and %d more" % (len(problems) - 5) if len(problems) > 5 else ""
    return "; ".join(shown) + more


def _remote_state(s3, params, base, manifest, raw):
    """What is already there: (to_upload items, skipped keys, remote manifest present?)."""
    bucket = params["bucket"]
    try:
        listed = dict((obj["key"], obj) for obj in _s3.list_objects(s3, bucket, base))
    except Exception as exc:  # noqa: BLE001 - mapped to a message
        cause = _cause(exc, s3, bucket, None, params)
        raise Failure("Failed to list %s: %s" % (_s3.url(bucket, base), cause)) from None
    manifest_key = base + _manifest.MANIFEST_NAME
    remote_manifest = False
    if manifest_key in listed:
        try:
            remote_raw, _recorded = _s3.get_bytes(s3, bucket, manifest_key)
        except Exception as exc:  # noqa: BLE001
            raise Failure("Failed to read %s: %s" % (_s3.url(bucket, manifest_key),
                                                     _cause(exc, s3, bucket, manifest_key, params))) from None
        if remote_raw != raw:
            raise Failure(
                "Failed to upload backup %s: %s already exists with different content; a backup id is written "
                "once, so this is another backup with the same id (remove the remote copy to replace it)"
                % (manifest["backup_id"], _s3.url(bucket, manifest_key)))
        remote_manifest = True
    to_upload, skipped = [], []
    for entry in manifest["files"]:
        key = base + entry["path"]
        if key in listed and listed[key]["size"] == entry["size"]:
            try:
                info = _s3.head(s3, bucket, key)
            except Exception as exc:  # noqa: BLE001
                cause = _cause(exc, s3, bucket, key, params)
                raise Failure("Failed to read %s: %s" % (_s3.url(bucket, key), cause)) from None
            if info and info["size"] == entry["size"] and info["sha256"] == entry["sha256"]:
                skipped.append(key)
                continue
        to_upload.append({"path": None, "key": key, "size": entry["size"], "sha256": entry["sha256"],
                          "rel": entry["path"]})
    return to_upload, skipped, remote_manifest, manifest_key


def _verify_uploaded(s3, params, objects, requested_encryption, uploaded_now):
    """HEAD every object (size, recorded sha256, encryption of fresh uploads); with verify=full, re-read them.

    Returns what the HEAD requests said, by key, so no caller needs to ask again.
    """
    bucket = params["bucket"]
    infos = {}
    for obj in objects:
        key = obj["key"]
        try:
            info = _s3.head(s3, bucket, key)
            if info is None:
                raise Failure("Failed to verify %s: the object is missing after the upload" % _s3.url(bucket, key))
            infos[key] = info
            if info["size"] != obj["size"]:
                raise Failure("Failed to verify %s: it has %s bytes, expected %d"
                              % (_s3.url(bucket, key), info["size"], obj["size"]))
            if info["sha256"] != obj["sha256"]:
                raise Failure("Failed to verify %s: its recorded sha256 is %s, expected %s"
                              % (_s3.url(bucket, key), info["sha256"], obj["sha256"]))
            if key in uploaded_now and requested_encryption != "none" and info["encryption"] != requested_encryption:
                raise Failure("Failed to verify %s: the endpoint recorded server-side encryption %s, %s was requested"
                              % (_s3.url(bucket, key), info["encryption"], requested_encryption))
            if params["verify"] == "full":
                digest, size = _s3.stream_sha256(s3, bucket, key)
                if size != obj["size"] or digest != obj["sha256"]:
                    raise Failure("Failed to verify %s: reading it back gave %d bytes with SHA-256 %s, expected %d "
                                  "bytes with %s" % (_s3.url(bucket, key), size, digest, obj["size"], obj["sha256"]))
        except Failure:
            raise
        except Exception as exc:  # noqa: BLE001
            cause = _cause(exc, s3, bucket, key, params)
            raise Failure("Failed to verify %s: %s" % (_s3.url(bucket, key), cause)) from None
    return infos


def run_present(module, s3):
    params = module.params
    bucket = params["bucket"]
    manifest, root, raw = _local_backup(params)
    database, backup_id = manifest["database"], manifest["backup_id"]
    base = _s3.backup_prefix(params["prefix"], database, backup_id)
    result = dict(bucket=bucket, prefix=params["prefix"], remote_prefix=base, backup_id=backup_id,
                  database=database, path=root)
    to_upload, skipped, remote_manifest, manifest_key = _remote_state(s3, params, base, manifest, raw)
    for item in to_upload:
        item["path"] = os.path.join(root, *item.pop("rel").split("/"))
    manifest_sha = hashlib.sha256(raw).hexdigest()
    manifest_obj = {"key": manifest_key, "size": len(raw), "sha256": manifest_sha}
    files = [{"key": base + e["path"], "size": e["size"], "sha256": e["sha256"]} for e in manifest["files"]]

    if remote_manifest and not to_upload:
        skipped.append(manifest_key)
        if not module.check_mode:
            _verify_uploaded(s3, params, files + [manifest_obj], params["encryption"], set())
        result.update(changed=False, keys=[], present=skipped, bytes=0,
                      verified=None if module.check_mode else params["verify"])
        return result

    keys = [item["key"] for item in to_upload] + [manifest_key]
    nbytes = sum(item["size"] for item in to_upload) + len(raw)
    if module.check_mode:
        result.update(changed=True, keys=keys, present=skipped, bytes=nbytes, verified=None)
        return result

    # A remote manifest must never describe a copy that is being repaired: take it away first.
    if remote_manifest:
        try:
            _s3.delete_keys(s3, bucket, [manifest_key])
        except Exception as exc:  # noqa: BLE001
            raise Failure("Failed to delete stale %s: %s" % (_s3.url(bucket, manifest_key),
                                                             _cause(exc, s3, bucket, manifest_key, params))) from None
    _abort_leftovers(module, s3, bucket, base)

    extra = _s3.upload_extra_args(params["encryption"], params["kms_key_id"], params["storage_class"],
                                  params["object_lock_mode"], _retain_until(params))
    config = _s3.transfer_config(params["part_size_mb"], params["max_concurrency"])
    try:
        _s3.upload_verified(s3, bucket, to_upload, config, extra)
    except _s3.UploadFailed as exc:
        _cleanup_failed_upload(module, s3, bucket, base, exc)
        local = os.path.join(root, *exc.key[len(base):].split("/")) if exc.key else root
        if isinstance(exc.cause, _s3.ChecksumMismatch):
            raise Failure("Failed to upload backup %s: %s; the local backup is broken, nothing was kept on S3"
                          % (root, exc.message), key=exc.key) from None
        raise Failure("Failed to upload %s to %s: %s" % (local, _s3.url(bucket, exc.key or base), exc.message),
                      key=exc.key) from None

    uploaded_now = set(item["key"] for item in to_upload)
    _verify_uploaded(s3, params, files, params["encryption"], uploaded_now)
    try:
        _s3.put_bytes(s3, bucket, manifest_key, raw, extra)
    except Exception as exc:  # noqa: BLE001
        raise Failure("Failed to upload %s to %s: %s" % (os.path.join(root, _manifest.MANIFEST_NAME),
                                                         _s3.url(bucket, manifest_key),
                                                         _cause(exc, s3, bucket, manifest_key, params))) from None
    info = _verify_uploaded(s3, params, [manifest_obj], params["encryption"], {manifest_key})[manifest_key]
    result.update(changed=True, keys=keys, present=skipped, bytes=nbytes, verified=params["verify"],
                  encryption=info.get("encryption"))
    return result


def _retain_until(params):
    days = params.get("object_lock_retain_until_days")
    if not params.get("object_lock_mode") or days is None:
        return None
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)


def _abort_leftovers(module, s3, bucket, base):
    """Abort multipart uploads an earlier, interrupted run left under this backup's prefix."""
    try:
        aborted = _s3.abort_multipart_uploads(s3, bucket, base)
    except Exception as exc:  # noqa: BLE001 - cleanup only; the upload itself reports real problems
        module.warn("Could not abort incomplete multipart uploads under %s: %s"
                    % (_s3.url(bucket, base), _cause(exc, s3, bucket, base, module.params)))
        return
    if aborted:
        module.warn("Aborted %d incomplete multipart upload(s) left under %s by an earlier run"
                    % (len(aborted), _s3.url(bucket, base)))


def _cleanup_failed_upload(module, s3, bucket, base, exc):
    """After a failed upload: abort its multipart uploads; for a broken local file, remove what this run put there."""
    try:
        _s3.abort_multipart_uploads(s3, bucket, base)
        if isinstance(exc.cause, _s3.ChecksumMismatch) and exc.uploaded:
            _s3.delete_keys(s3, bucket, exc.uploaded)
    except Exception as cleanup:  # noqa: BLE001 - the endpoint is often what failed; the next run cleans up
        module.warn("Could not clean up under %s after the failed upload: %s"
                    % (_s3.url(bucket, base), _cause(cleanup, s3, bucket, base, module.params)))


# --------------------------------------------------------------------------------------
# fetched


def _find_remote(s3, params):
    bucket, prefix, database = params["bucket"], params["prefix"], params["database"]
    if params["latest"]:
        skipped = []
        try:
            backups = _s3.list_remote_backups(s3, bucket, prefix, database, skipped=skipped)
        except Exception as exc:  # noqa: BLE001
            where = _s3.url(bucket, _s3.join_key(prefix, _manifest.safe_name(database)) + "/")
            cause = _cause(exc, s3, bucket, None, params)
            raise Failure("Failed to list backups under %s: %s" % (where, cause)) from None
        if not backups:
            where = _s3.url(bucket, _s3.join_key(prefix, _manifest.safe_name(database)) + "/")
            raise Failure("Failed to fetch the latest backup of database %r: no complete backup under %s"
                          % (database, where), skipped_prefixes=skipped)
        newest = backups[0]
        key = newest["key"]
    else:
        key = _s3.backup_prefix(prefix, database, params["backup_id"]) + _manifest.MANIFEST_NAME
    try:
        manifest, raw, _recorded = _s3.load_remote_manifest(s3, bucket, key)
    except Exception as exc:  # noqa: BLE001
        if _s3.is_not_found(exc):
            raise Failure("Failed to fetch backup %s of database %r: %s does not exist (no complete backup there)"
                          % (params["backup_id"], database, _s3.url(bucket, key))) from None
        raise Failure("Failed to read %s: %s" % (_s3.url(bucket, key), _cause(exc, s3, bucket, key, params))) from None
    if manifest["database"] != database or (params["backup_id"] and manifest["backup_id"] != params["backup_id"]):
        raise Failure("Failed to fetch %s: the manifest is for backup %r of database %r"
                      % (_s3.url(bucket, key), manifest["backup_id"], manifest["database"]))
    return manifest, raw, key


def _local_copy_matches(final, manifest):
    try:
        local = _manifest.load_manifest(final)
    except _manifest.ManifestError:
        return False
    if local != manifest:
        return False
    return not _manifest.verify_files(final, local, checksum=False, extra=False)


def run_fetched(module, s3):
    params = module.params
    bucket = params["bucket"]
    manifest, raw, manifest_key = _find_remote(s3, params)
    database, backup_id = manifest["database"], manifest["backup_id"]
    base = manifest_key[:-len(_manifest.MANIFEST_NAME)]
    final = _manifest.backup_path(params["dest"], database, backup_id)
    partial = _manifest.partial_path(params["dest"], database, backup_id)
    keys = [base + entry["path"] for entry in manifest["files"]] + [manifest_key]
    nbytes = sum(entry["size"] for entry in manifest["files"]) + len(raw)
    result = dict(bucket=bucket, prefix=params["prefix"], remote_prefix=base, backup_id=backup_id,
                  database=database, path=final)
    exists = os.path.lexists(final)
    if exists and _local_copy_matches(final, manifest):
        result.update(changed=False, keys=[], present=keys, bytes=0, verified=None)
        return result
    if module.check_mode:
        result.update(changed=True, keys=keys, present=[], bytes=nbytes, verified=None)
        return result

    db_dir = os.path.dirname(final)
    current = None
    try:
        os.makedirs(db_dir, mode=0o700, exist_ok=True)
        if os.path.lexists(partial):
            shutil.rmtree(partial)
        os.mkdir(partial, 0o700)
        made_dirs = {partial}
        for entry in manifest["files"]:
            current = base + entry["path"]
            target = os.path.join(partial, *entry["path"].split("/"))
            parent = os.path.dirname(target)
            if parent not in made_dirs:
                os.makedirs(parent, mode=0o700, exist_ok=True)
                made_dirs.add(parent)
            _s3.download_verified(s3, bucket, current, target, entry["sha256"], entry["size"])
        current = None
        # The manifest goes in last, byte for byte as it was uploaded.
        fd = os.open(os.path.join(partial, _manifest.MANIFEST_NAME), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        for directory in sorted(made_dirs, key=len, reverse=True):
            _manifest.fsync_dir(directory)
        if exists:
            doomed = os.path.join(db_dir, ".deleting-%s" % backup_id)
            if os.path.lexists(doomed):
                shutil.rmtree(doomed)
            os.rename(final, doomed)
            os.rename(partial, final)
            _manifest.fsync_dir(db_dir)
            shutil.rmtree(doomed)
        else:
            os.rename(partial, final)
        _manifest.fsync_dir(db_dir)
    except Exception as exc:  # noqa: BLE001 - mapped to a message below
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, _s3.ChecksumMismatch):
            raise Failure("Failed to fetch %s: %s; nothing was kept in %s" % (_s3.url(bucket, current), exc.message,
                                                                              db_dir), key=current) from None
        if current is not None:
            cause = _cause(exc, s3, bucket, current, params)
            raise Failure("Failed to fetch %s: %s" % (_s3.url(bucket, current), cause),
                          key=current) from None
        cause = _cause(exc, s3, bucket, None, params)
        raise Failure("Failed to store backup %s in %s: %s" % (backup_id, final, cause)) from None
    result.update(changed=True, keys=keys, present=[], bytes=nbytes, verified="sha256")
    if exists:
        module.warn("Replaced the local copy %s, which did not match the remote manifest" % final)
    return result


# --------------------------------------------------------------------------------------


def main():
    argument_spec = _s3.s3_common_argument_spec()
    argument_spec.update(
        state=dict(type="str", default="present", choices=["present", "fetched"]),
        path=dict(type="path"),
        bucket=dict(type="str", required=True),
        prefix=dict(type="str", default=""),
        database=dict(type="str"),
        backup_id=dict(type="str"),
        latest=dict(type="bool", default=False),
        dest=dict(type="path"),
        encryption=dict(type="str", default="AES256", choices=_s3.ENCRYPTIONS),
        kms_key_id=dict(type="str", no_log=False),
        storage_class=dict(type="str"),
        object_lock_mode=dict(type="str", choices=["GOVERNANCE", "COMPLIANCE"]),
        object_lock_retain_until_days=dict(type="int"),
        verify=dict(type="str", default="metadata", choices=["metadata", "full"]),
        part_size_mb=dict(type="int", default=_s3.DEFAULT_PART_SIZE_MB),
        max_concurrency=dict(type="int", default=_s3.DEFAULT_MAX_CONCURRENCY),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("state", "present", ["path"]), ("state", "fetched", ["dest", "database"])],
        required_together=[("object_lock_mode", "object_lock_retain_until_days")],
        mutually_exclusive=[("backup_id", "latest")],
    )
    params = module.params
    started = time.monotonic()
    base = dict(changed=False, bucket=params["bucket"], prefix=params["prefix"], keys=[], present=[], bytes=0)

    problem = _s3.check_part_size(params["part_size_mb"])
    if params["max_concurrency"] < 1:
        problem = "max_concurrency must be at least 1, got %d" % params["max_concurrency"]
    if params["state"] == "fetched" and not params["latest"] and not params["backup_id"]:
        problem = "state=fetched needs backup_id, or latest=true to fetch the newest backup of the database"
    if params["object_lock_retain_until_days"] is not None and params["object_lock_retain_until_days"] < 1:
        problem = "object_lock_retain_until_days must be at least 1"
    if params["kms_key_id"] and params["encryption"] != "aws:kms":
        problem = "kms_key_id is only used with encryption=aws:kms"
    if problem:
        module.fail_json(msg=problem, **base)
    _s3.ensure_boto3(module)

    try:
        s3 = _s3.client(params, max_pool_connections=params["max_concurrency"] + 2)
        if params["state"] == "present":
            result = run_present(module, s3)
        else:
            result = run_fetched(module, s3)
    except Failure as exc:
        out = dict(base)
        out.update(exc.extra)
        out["duration_seconds"] = round(time.monotonic() - started, 3)
        module.fail_json(msg=exc.msg, **out)
    except _s3.S3Error as exc:
        module.fail_json(msg=exc.message, duration_seconds=round(time.monotonic() - started, 3), **base)
    result["duration_seconds"] = round(time.monotonic() - started, 3)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
