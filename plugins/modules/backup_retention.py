#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_retention
short_description: Apply grandfather-father-son retention to the backups in a directory or an S3 prefix
version_added: 0.1.0
description:
  - Deletes the backups of each database that no retention rule keeps, in a local O(backup_dir) written by
    M(upkeep.runbooks.pg_backup) or under an S3 O(bucket)/O(prefix) written by M(upkeep.runbooks.s3_backup).
  - A backup is kept when it is the newest of its day, ISO week, month or year, for the O(keep_daily) days,
    O(keep_weekly) weeks, O(keep_monthly) months and O(keep_yearly) years that hold a backup (counting back from
    the newest; a period without backups does not use up a slot). Periods are UTC, taken from the backup id.
  - The newest backup of every database is never deleted, and no database goes under O(min_keep) backups.
  - Only complete backups (with a valid manifest) count and only they are deleted by the rules. Directories and
    prefixes that do not follow the backup layout, or whose manifest is invalid, are never touched (see
    RV(ignored)).
  - Unfinished work older than O(partial_max_age_hours) is removed. Locally that is C(.<backup_id>.partial)
    directories (and C(.deleting-*) directories an interrupted run left); on S3, backup prefixes without a
    manifest and incomplete multipart uploads.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - upkeep.runbooks.s3
attributes:
  check_mode:
    support: full
    details:
      - Computes the same plan and returns exactly what would be deleted and why in RV(deleted) and RV(partials);
        nothing is deleted.
  diff_mode:
    support: full
    details:
      - RV(diff) lists the backups (as C(<database>/<backup_id>)) before and after.
  platform:
    platforms: posix
options:
  backup_dir:
    description:
      - Local backup root. Exactly one of O(backup_dir) and O(bucket) is required.
    type: path
  bucket:
    description:
      - Bucket holding the copies. The S3 connection options apply only when it is set.
    type: str
  prefix:
    description:
      - Key prefix of the copies in O(bucket).
    type: str
    default: ''
  database:
    description:
      - Only this database's backups (the real database name). All databases when omitted, each on its own.
    type: str
  keep_daily:
    description: Number of most recent days (with a backup) whose newest backup is kept. V(0) disables the rule.
    type: int
    default: 7
  keep_weekly:
    description: Number of most recent ISO weeks (with a backup) whose newest backup is kept.
    type: int
    default: 4
  keep_monthly:
    description: Number of most recent months (with a backup) whose newest backup is kept.
    type: int
    default: 12
  keep_yearly:
    description: Number of most recent years (with a backup) whose newest backup is kept.
    type: int
    default: 3
  min_keep:
    description:
      - Never keep fewer than this many backups of a database; the newest of the expired ones are kept to make up
        the number.
    type: int
    default: 3
  partial_max_age_hours:
    description:
      - Unfinished backups (see above) whose last write is older than this are removed. V(0) removes all of them,
        which is only safe when no backup or upload is running.
    type: float
    default: 24
notes:
  - Local backups are deleted safely, by first renaming the directory to a hidden C(.deleting-<backup_id>) (a crash
    leaves nothing that still looks like a backup), then removing it.
  - On S3 a backup's manifest is deleted first, so the copy stops counting before its data goes; should the run stop
    half-way, the remaining objects are an abandoned prefix removed by a later run.
  - On a bucket with versioning (always the case with Object Lock), deleting adds delete markers; older versions stay
    until the bucket's lifecycle rules expire them. Objects under Object Lock retention cannot be deleted and fail the
    task with a clear message.
  - With O(bucket), the credentials need C(s3:ListBucket), C(s3:GetObject), C(s3:DeleteObject),
    C(s3:ListBucketMultipartUploads) and C(s3:AbortMultipartUpload) on the prefix.
seealso:
  - module: upkeep.runbooks.backup_info
  - module: upkeep.runbooks.s3_backup
"""

EXAMPLES = r"""
- name: Keep 7 daily, 4 weekly, 12 monthly and 3 yearly local backups
  upkeep.runbooks.backup_retention:
    backup_dir: /var/backups/postgresql

- name: Show what a tighter policy would delete off-site
  upkeep.runbooks.backup_retention:
    bucket: acme-db-backups
    prefix: postgres/production
    keep_daily: 14
    keep_weekly: 8
    keep_monthly: 24
    keep_yearly: 7
  check_mode: true
  diff: true
  register: plan

- name: Keep only the last three local backups of app (restore-test host)
  upkeep.runbooks.backup_retention:
    backup_dir: /var/backups/restore-test
    database: app
    keep_daily: 0
    keep_weekly: 0
    keep_monthly: 0
    keep_yearly: 0
    min_keep: 3
"""

RETURN = r"""
kept:
  description: Complete backups kept, newest first per database, with why.
  returned: always
  type: list
  elements: dict
  contains:
    database:
      description: Database name.
      type: str
      sample: app
    backup_id:
      description: Backup id.
      type: str
      sample: daily-20261123T021500Z
    location:
      description: V(local) or V(s3).
      type: str
      sample: local
    path:
      description: Directory (local).
      type: str
      sample: /var/backups/postgresql/app/daily-20261123T021500Z
    prefix:
      description: Key prefix of the copy (S3).
      type: str
      sample: postgres/production/app/daily-20261123T021500Z/
    reason:
      description: The reasons joined with a comma.
      type: str
      sample: newest, daily 2026-11-23, weekly 2026-W47, monthly 2026-11, yearly 2026
    reasons:
      description: Every rule that keeps it (V(newest), V(daily <date>), V(weekly <year>-W<week>),
        V(monthly <year>-<month>), V(yearly <year>), V(min_keep)).
      type: list
      elements: str
      sample: [newest, daily 2026-11-23, weekly 2026-W47, monthly 2026-11, yearly 2026]
deleted:
  description: Complete backups deleted (in check mode, that would be), with RV(kept[].reason) V(expired); same keys as
    RV(kept).
  returned: always
  type: list
  elements: dict
  sample: [{database: app, backup_id: daily-20261001T021500Z, location: local, reason: expired, reasons: [expired],
            path: /var/backups/postgresql/app/daily-20261001T021500Z}]
partials:
  description: Unfinished work removed (in check mode, that would be).
  returned: always
  type: list
  elements: dict
  sample: [{location: local, path: /var/backups/postgresql/app/.daily-20261120T021500Z.partial, age_hours: 80.1,
            reason: "abandoned partial backup older than 24 hours"}]
ignored:
  description: Directories or manifests that look like backups but were not counted (and were not touched), with why.
  returned: always
  type: list
  elements: dict
  sample: []
diff:
  description: Backups before and after, as C(<database>/<backup_id>), newest first.
  returned: always
  type: dict
  sample: {before: [app/daily-20261123T021500Z, app/daily-20261001T021500Z], after: [app/daily-20261123T021500Z]}
"""

import os  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils import _retention  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils import _s3  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import plain_number  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._failure import Failure  # noqa: E402

DELETING_PREFIX = ".deleting-"


def _time_of(item):
    try:
        return _manifest.parse_backup_time(item["backup_id"])
    except _manifest.ManifestError:
        return _manifest.parse_backup_time(item["finished_at"])


def plan(items, params):
    """(kept, deleted) over all databases: the GFS rules applied to each database separately."""
    grouped = {}
    for item in items:
        grouped.setdefault(item["database"], []).append(dict(item, time=_time_of(item)))
    kept, deleted = [], []
    for database in sorted(grouped):
        keep, drop = _retention.select(
            grouped[database], keep_daily=params["keep_daily"], keep_weekly=params["keep_weekly"],
            keep_monthly=params["keep_monthly"], keep_yearly=params["keep_yearly"], min_keep=params["min_keep"])
        kept.extend(keep)
        deleted.extend(drop)
    return kept, deleted


def _public(item, fields):
    out = {"database": item["database"], "backup_id": item["backup_id"], "location": item["location"],
           "reason": item["reason"], "reasons": item["reasons"]}
    for field in fields:
        out[field] = item[field]
    return out


def _name(item):
    return "%s/%s" % (item["database"], item["backup_id"])


# --------------------------------------------------------------------------------------
# local


def _remove_dir(path, db_dir, name):
    """Rename to a hidden .deleting-<name> first (never half-deleted yet complete-looking), then remove."""
    doomed = os.path.join(db_dir, DELETING_PREFIX + name)
    if os.path.lexists(doomed):
        shutil.rmtree(doomed)
    os.rename(path, doomed)
    _manifest.fsync_dir(db_dir)
    shutil.rmtree(doomed)


def run_local(module):
    params = module.params
    root = params["backup_dir"]
    if not os.path.isdir(root):
        raise Failure("Failed to apply retention to %s: it is not a directory" % root)
    skipped = []
    items = [dict(b, location="local") for b in _manifest.list_backups(root, params["database"], skipped=skipped)]
    kept, deleted = plan(items, params)
    now = time.time()
    cutoff = params["partial_max_age_hours"] * 3600.0
    partials = []
    for partial in _manifest.list_partials(root, params["database"], now=now):
        if partial["age_seconds"] >= cutoff:
            partials.append({"location": "local", "path": partial["path"],
                             "age_hours": round(partial["age_seconds"] / 3600.0, 2),
                             "reason": "abandoned partial backup older than %s hours"
                             % plain_number(params["partial_max_age_hours"])})
    for db_dir in _database_dirs(root, params["database"]):
        for name in sorted(os.listdir(db_dir)):
            path = os.path.join(db_dir, name)
            if name.startswith(DELETING_PREFIX) and os.path.isdir(path) and not os.path.islink(path):
                partials.append({"location": "local", "path": path, "age_hours": None,
                                 "reason": "left over by an interrupted delete"})
    if not module.check_mode:
        for item in deleted:
            try:
                _remove_dir(item["path"], os.path.dirname(item["path"]), item["backup_id"])
            except OSError as exc:
                raise Failure("Failed to delete backup %s: %s" % (item["path"], _s3.describe_error(exc))) from None
        for partial in partials:
            path = partial["path"]
            try:
                if os.path.basename(path).startswith(DELETING_PREFIX):
                    shutil.rmtree(path)
                else:
                    _remove_dir(path, os.path.dirname(path), os.path.basename(path).lstrip("."))
            except OSError as exc:
                raise Failure("Failed to delete unfinished backup %s: %s" % (path, _s3.describe_error(exc))) from None
    ignored = [{"location": "local", "path": s["path"], "reason": s["reason"]} for s in skipped]
    return ([_public(i, ["path"]) for i in kept], [_public(i, ["path"]) for i in deleted], partials, ignored,
            items)


def _database_dirs(root, database):
    if database is not None:
        path = _manifest.database_dir(root, database)
        return [path] if os.path.isdir(path) else []
    return [os.path.join(root, name) for name in sorted(os.listdir(root))
            if not name.startswith(".") and os.path.isdir(os.path.join(root, name))]


# --------------------------------------------------------------------------------------
# S3


def run_s3(module, s3):
    params = module.params
    bucket = params["bucket"]
    groups = _s3.scan_backups(s3, bucket, params["prefix"], params["database"])
    skipped = []
    remote = _s3.list_remote_backups(s3, bucket, params["prefix"], params["database"], skipped=skipped, groups=groups)
    items = [dict(b, location="s3") for b in remote]
    kept, deleted = plan(items, params)
    now = time.time()
    cutoff = params["partial_max_age_hours"] * 3600.0
    partials = []
    for group in groups:
        if group["manifest_key"] is not None:
            continue
        age = now - group["last_modified"].timestamp()
        if age >= cutoff:
            partials.append({"location": "s3", "prefix": group["prefix"], "age_hours": round(age / 3600.0, 2),
                             "objects": len(group["objects"]),
                             "reason": "prefix without manifest, unchanged for over %s hours"
                             % plain_number(params["partial_max_age_hours"]),
                             "_keys": [obj["key"] for obj in group["objects"]]})
    root = _s3.join_key(params["prefix"], _manifest.safe_name(params["database"]) if params["database"] else "")
    root = root + "/" if root else ""
    for upload in _s3.list_multipart_uploads(s3, bucket, root):
        initiated = upload["initiated"]
        age = now - initiated.timestamp() if initiated is not None else None
        if age is not None and age >= cutoff:
            partials.append({"location": "s3", "key": upload["key"], "age_hours": round(age / 3600.0, 2),
                             "reason": "incomplete multipart upload older than %s hours"
                             % plain_number(params["partial_max_age_hours"]),
                             "_upload_id": upload["upload_id"]})
    if not module.check_mode:
        for item in deleted:
            others = [obj["key"] for obj in item["objects"] if obj["key"] != item["key"]]
            _s3_delete(s3, bucket, [item["key"]], "backup %s" % _name(item))      # the manifest first
            _s3_delete(s3, bucket, others, "backup %s" % _name(item))
        for partial in partials:
            if "_keys" in partial:
                _s3_delete(s3, bucket, partial["_keys"], "unfinished backup %s" % _s3.url(bucket, partial["prefix"]))
            else:
                try:
                    s3.abort_multipart_upload(Bucket=bucket, Key=partial["key"], UploadId=partial["_upload_id"])
                except Exception as exc:  # noqa: BLE001
                    if _s3.error_code(exc) != "NoSuchUpload":
                        cause = _describe(exc, s3, bucket, partial["key"], params)
                        raise Failure("Failed to abort the multipart upload of %s: %s"
                                      % (_s3.url(bucket, partial["key"]), cause)) from None
    for partial in partials:
        partial.pop("_keys", None)
        partial.pop("_upload_id", None)
    ignored = [{"location": "s3", "key": s["key"], "reason": s["reason"]} for s in skipped]
    return ([_public(i, ["prefix"]) for i in kept], [_public(i, ["prefix"]) for i in deleted], partials, ignored,
            items)


def _s3_delete(s3, bucket, keys, what):
    if not keys:
        return
    try:
        _s3.delete_keys(s3, bucket, keys)
    except Exception as exc:  # noqa: BLE001
        if not _s3.is_library_error(exc):
            raise
        raise Failure("Failed to delete %s: %s" % (what, _describe(exc, s3, bucket, None, {}))) from None


def _describe(exc, s3, bucket, key, params):
    return _s3.describe_error(exc, _s3.endpoint_of(s3), bucket, key, secrets=_s3.secrets_of(params))


def main():
    argument_spec = _s3.s3_common_argument_spec()
    argument_spec.update(
        backup_dir=dict(type="path"),
        bucket=dict(type="str"),
        prefix=dict(type="str", default=""),
        database=dict(type="str"),
        keep_daily=dict(type="int", default=_retention.DEFAULTS["keep_daily"]),
        keep_weekly=dict(type="int", default=_retention.DEFAULTS["keep_weekly"]),
        keep_monthly=dict(type="int", default=_retention.DEFAULTS["keep_monthly"]),
        keep_yearly=dict(type="int", default=_retention.DEFAULTS["keep_yearly"]),
        min_keep=dict(type="int", default=_retention.DEFAULTS["min_keep"]),
        partial_max_age_hours=dict(type="float", default=24),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_one_of=[("backup_dir", "bucket")],
                           mutually_exclusive=[("backup_dir", "bucket")])
    params = module.params
    for option in ("keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "min_keep", "partial_max_age_hours"):
        if params[option] < 0:
            module.fail_json(msg="%s must not be negative, got %s" % (option, params[option]))

    where = params["backup_dir"] or _s3.url(params["bucket"], _s3.join_key(params["prefix"]))
    try:
        if params["backup_dir"]:
            kept, deleted, partials, ignored, before = run_local(module)
        else:
            _s3.ensure_boto3(module)
            s3 = _s3.client(params)
            try:
                kept, deleted, partials, ignored, before = run_s3(module, s3)
            except Failure:
                raise
            except Exception as exc:  # noqa: BLE001 - every library error becomes one readable message
                if not _s3.is_library_error(exc):
                    raise
                cause = _describe(exc, s3, params["bucket"], None, params)
                raise Failure("Failed to apply retention to %s: %s" % (where, cause)) from None
    except Failure as exc:
        module.fail_json(msg=exc.msg, changed=False)
    except _s3.S3Error as exc:
        module.fail_json(msg=exc.message, changed=False)
    except (OSError, _manifest.ManifestError) as exc:
        module.fail_json(msg="Failed to apply retention to %s: %s" % (where, _s3.describe_error(exc)), changed=False)

    before_names = _newest_first(before)
    gone = set(_name(i) for i in deleted)
    after_names = [name for name in before_names if name not in gone]
    module.exit_json(
        changed=bool(deleted or partials),
        kept=kept,
        deleted=deleted,
        partials=partials,
        ignored=ignored,
        diff={"before": before_names, "after": after_names},
    )


def _newest_first(items):
    """Names grouped by database (alphabetical), newest first within each."""
    by_db = {}
    for item in items:
        by_db.setdefault(item["database"], []).append(item)
    names = []
    for database in sorted(by_db):
        ordered = sorted(by_db[database], key=lambda i: (_time_of(i), i["backup_id"]), reverse=True)
        names.extend(_name(i) for i in ordered)
    return names


if __name__ == "__main__":
    main()
