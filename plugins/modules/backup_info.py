#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup_info
short_description: List the complete backups in a directory and/or an S3 prefix, with freshness and size change
version_added: 0.1.0
description:
  - Lists the backups written by M(upkeep.runbooks.pg_backup) under a local O(backup_dir) and the copies
    M(upkeep.runbooks.s3_backup) put under an S3 O(bucket) and O(prefix), newest first, with the facts of their
    manifests and their ages.
  - Only complete backups are listed (a valid manifest exists). Unfinished work is reported apart, in
    RV(partials); directories or prefixes with an unreadable or invalid manifest are reported in
    RV(unreadable), not C(skipped), since Ansible takes a result with a non-empty C(skipped) key for a skipped task.
  - With O(max_age_hours) it also judges freshness (the daily check that a recent backup exists), and with
    O(size_change_percent) how much the newest backup's size differs from the one before.
  - Read-only.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - upkeep.runbooks.s3
attributes:
  check_mode:
    support: full
    details:
      - Read-only; runs unchanged in check mode and returns the same facts.
  diff_mode:
    support: none
    details:
      - Reads state only, there is nothing to diff.
  platform:
    platforms: posix
options:
  backup_dir:
    description:
      - Local backup root (the O(upkeep.runbooks.pg_backup#module:backup_dir) of M(upkeep.runbooks.pg_backup)).
      - At least one of O(backup_dir) and O(bucket) is required; with both, backups from both are listed.
    type: path
  bucket:
    description:
      - Bucket holding off-site copies made by M(upkeep.runbooks.s3_backup). The S3 connection options apply
        only when it is set.
    type: str
  prefix:
    description:
      - Key prefix of the copies in O(bucket).
    type: str
    default: ''
  database:
    description:
      - Only this database's backups (the real database name).
    type: str
  max_age_hours:
    description:
      - When set, RV(freshness) judges the age of the newest complete backup of each database against this limit.
    type: float
  size_change_percent:
    description:
      - When set, RV(size_change) compares the newest backup's total size with the previous one's and warns when
        it differs by more than this percentage.
    type: float
notes:
  - With O(bucket), the credentials need C(s3:ListBucket) and C(s3:GetObject) on the prefix (manifests are read).
  - A backup present in both places counts once for RV(freshness) and RV(size_change).
seealso:
  - module: upkeep.runbooks.s3_backup
  - module: upkeep.runbooks.backup_retention
"""

EXAMPLES = r"""
- name: Daily freshness check of the local backups and their off-site copies
  upkeep.runbooks.backup_info:
    backup_dir: /var/backups/postgresql
    bucket: acme-db-backups
    prefix: postgres/production
    database: app
    max_age_hours: 26
    size_change_percent: 30
  register: backups

- name: Fail the play when the newest backup is too old
  ansible.builtin.assert:
    that: backups.freshness.status != 'fail'
    fail_msg: "{{ backups.freshness.message }}"

- name: List what is off-site
  upkeep.runbooks.backup_info:
    bucket: acme-db-backups
    prefix: postgres/production
  register: offsite
"""

RETURN = r"""
backups:
  description: Complete backups, newest first (by RV(backups[].finished_at)).
  returned: always
  type: list
  elements: dict
  contains:
    location:
      description: V(local) or V(s3).
      type: str
      sample: local
    path:
      description: Directory of a local backup.
      type: str
      returned: for local backups
      sample: /var/backups/postgresql/app/daily-20261123T021500Z
    bucket:
      description: Bucket of an S3 copy.
      type: str
      returned: for S3 copies
      sample: acme-db-backups
    key:
      description: Key of an S3 copy's manifest.
      type: str
      returned: for S3 copies
      sample: postgres/production/app/daily-20261123T021500Z/manifest.json
    backup_id:
      description: Backup id.
      type: str
      sample: daily-20261123T021500Z
    database:
      description: Database name.
      type: str
      sample: app
    label:
      description: Label of the backup.
      type: str
      sample: daily
    finished_at:
      description: When the dump finished (UTC, ISO 8601).
      type: str
      sample: "2026-11-23T02:17:41.512Z"
    age_hours:
      description: Hours since RV(backups[].finished_at).
      type: float
      sample: 5.71
    total_size:
      description: Bytes of all files of the backup.
      type: int
      sample: 190840217
    format:
      description: V(custom) or V(directory).
      type: str
      sample: custom
    compression:
      description: V(gzip), V(zstd) or V(none).
      type: str
      sample: gzip
    host:
      description: Host label recorded by the backup.
      type: str
      sample: db1
partials:
  description:
    - Unfinished backups. Local C(.<backup_id>.partial) directories and S3 backup prefixes without a manifest
      (abandoned, or being written right now).
  returned: always
  type: list
  elements: dict
  contains:
    location:
      description: V(local) or V(s3).
      type: str
      sample: local
    path:
      description: The directory (local).
      type: str
      sample: /var/backups/postgresql/app/.daily-20261124T021500Z.partial
    prefix:
      description: The key prefix (S3).
      type: str
      sample: postgres/production/app/daily-20261124T021500Z/
    age_hours:
      description: Hours since anything in it was last written.
      type: float
      sample: 30.2
unreadable:
  description: Directories or manifest keys that look like backups but were not counted, with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{location: local, path: /var/backups/postgresql/app/daily-20261120T021500Z,
            reason: "manifest ... does not exist: the backup is incomplete or was removed"}]
freshness:
  description:
    - The newest complete backup's age per database, judged against O(max_age_hours); the database whose newest
      backup is oldest is reported.
    - V(fail) when there is no complete backup or it is older than O(max_age_hours). V(warn) when it is fresh but,
      with both O(backup_dir) and O(bucket) given, missing from one of them (for example not copied off-site yet).
  returned: when O(max_age_hours) is set
  type: dict
  contains:
    status:
      description: V(ok), V(warn) or V(fail).
      type: str
      sample: ok
    newest_age_hours:
      description: Age of that newest backup; null when there is none.
      type: float
      sample: 5.71
    max_age_hours:
      description: The limit.
      type: float
      sample: 26
    database:
      description: The database reported on; null when no backup was found at all.
      type: str
      sample: app
    backup_id:
      description: Its newest backup; null when none.
      type: str
      sample: daily-20261123T021500Z
    message:
      description: One sentence for the report.
      type: str
      sample: newest backup of app (daily-20261123T021500Z) is 5.7 hours old, within the 26 hour limit
size_change:
  description:
    - Size of the newest backup against the previous one of the same database; the database with the largest
      change is reported. V(warn) when the change exceeds O(size_change_percent) either way; V(ok) also when there
      is nothing to compare.
  returned: when O(size_change_percent) is set
  type: dict
  contains:
    status:
      description: V(ok) or V(warn).
      type: str
      sample: ok
    previous:
      description: Total size of the previous backup; null when there is none.
      type: int
      sample: 180000000
    newest:
      description: Total size of the newest backup; null when there is none.
      type: int
      sample: 190840217
    percent:
      description: Change in percent (negative when it shrank); null when there is nothing to compare.
      type: float
      sample: 6.02
    threshold_percent:
      description: The limit.
      type: float
      sample: 30
    database:
      description: The database reported on.
      type: str
      sample: app
    message:
      description: One sentence for the report.
      type: str
      sample: newest backup of app is 6.0% larger than the previous one (limit 30%)
"""

import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils import _s3  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import human_bytes, plain_number  # noqa: E402


def _hours(seconds):
    return round(max(0.0, seconds) / 3600.0, 2)


def _entry(location, item, manifest, now):
    finished = _manifest.parse_backup_time(item["finished_at"])
    out = {
        "location": location,
        "backup_id": item["backup_id"],
        "database": item["database"],
        "label": item["label"],
        "finished_at": item["finished_at"],
        "age_hours": _hours(now - finished.timestamp()),
        "total_size": item["total_size"],
        "format": manifest.get("format"),
        "compression": manifest.get("compression"),
        "host": manifest.get("host"),
    }
    return out


def collect_local(backup_dir, database, now):
    skipped = []
    backups = []
    for item in _manifest.list_backups(backup_dir, database, skipped=skipped):
        entry = _entry("local", item, item["manifest"], now)
        entry["path"] = item["path"]
        backups.append(entry)
    partials = [{"location": "local", "path": p["path"], "age_hours": _hours(p["age_seconds"])}
                for p in _manifest.list_partials(backup_dir, database, now=now)]
    skipped = [{"location": "local", "path": s["path"], "reason": s["reason"]} for s in skipped]
    return backups, partials, skipped


def collect_s3(s3, bucket, prefix, database, now):
    groups = _s3.scan_backups(s3, bucket, prefix, database)
    skipped = []
    backups = []
    for item in _s3.list_remote_backups(s3, bucket, prefix, database, skipped=skipped, groups=groups):
        entry = _entry("s3", item, item["manifest"], now)
        entry["bucket"] = bucket
        entry["key"] = item["key"]
        backups.append(entry)
    partials = [{"location": "s3", "bucket": bucket, "prefix": g["prefix"],
                 "age_hours": _hours(now - g["last_modified"].timestamp())}
                for g in groups if g["manifest_key"] is None]
    skipped = [{"location": "s3", "bucket": bucket, "key": s["key"], "reason": s["reason"]} for s in skipped]
    return backups, partials, skipped


def _by_database(backups):
    """{database: [unique backups newest first]} (a backup in both places counts once)."""
    grouped = {}
    for entry in backups:
        seen = grouped.setdefault(entry["database"], {})
        seen.setdefault(entry["backup_id"], entry)
    out = {}
    for database, items in grouped.items():
        out[database] = sorted(items.values(), key=lambda e: (_manifest.parse_backup_time(e["finished_at"]),
                                                              e["backup_id"]), reverse=True)
    return out


def freshness(backups, max_age_hours, locations, database=None):
    grouped = _by_database(backups)
    base = {"max_age_hours": max_age_hours}
    if not grouped:
        what = ("database %s" % database) if database else "any database"
        base.update(status="fail", newest_age_hours=None, database=database, backup_id=None,
                    message="no complete backup of %s was found" % what)
        return base
    stalest = max(grouped, key=lambda db: (grouped[db][0]["age_hours"], db))
    newest = grouped[stalest][0]
    age = newest["age_hours"]
    base.update(newest_age_hours=age, database=stalest, backup_id=newest["backup_id"])
    if age > max_age_hours:
        base.update(status="fail", message="newest backup of %s (%s) is %.1f hours old, older than the %s hour limit"
                    % (stalest, newest["backup_id"], age, plain_number(max_age_hours)))
        return base
    if len(locations) > 1:
        for db, items in sorted(grouped.items()):
            head = items[0]
            where = set(e["location"] for e in backups if e["database"] == db and e["backup_id"] == head["backup_id"])
            missing = sorted(set(locations) - where)
            if missing:
                base.update(status="warn", database=db, backup_id=head["backup_id"],
                            newest_age_hours=head["age_hours"],
                            message="newest backup of %s (%s) is %.1f hours old but has no %s copy"
                            % (db, head["backup_id"], head["age_hours"], " or ".join(missing)))
                return base
    base.update(status="ok", message="newest backup of %s (%s) is %.1f hours old, within the %s hour limit"
                % (stalest, newest["backup_id"], age, plain_number(max_age_hours)))
    return base


def size_change(backups, threshold):
    grouped = _by_database(backups)
    base = {"threshold_percent": threshold}
    worst = None
    for db, items in sorted(grouped.items()):
        if len(items) < 2:
            continue
        newest, previous = items[0]["total_size"], items[1]["total_size"]
        if previous:
            percent = round((newest - previous) * 100.0 / previous, 2)
        else:
            percent = 0.0 if newest == 0 else None   # from nothing to something: always worth a look
        rank = float("inf") if percent is None else abs(percent)
        if worst is None or rank > worst[0]:
            worst = (rank, db, previous, newest, percent)
    if worst is None:
        only = sorted(grouped)
        base.update(status="ok", previous=None, newest=grouped[only[0]][0]["total_size"] if len(only) == 1 else None,
                    percent=None, database=only[0] if len(only) == 1 else None,
                    message="no previous backup to compare sizes with")
        return base
    _rank, db, previous, newest, percent = worst
    if percent is None:
        status = "warn"
        message = "newest backup of %s is %s, the previous one was empty" % (db, human_bytes(newest))
    else:
        status = "warn" if abs(percent) > threshold else "ok"
        message = "newest backup of %s (%s) is %.1f%% %s than the previous one (%s), limit %s%%" % (
            db, human_bytes(newest), abs(percent), "larger" if percent >= 0 else "smaller", human_bytes(previous),
            plain_number(threshold))
    base.update(status=status, previous=previous, newest=newest, percent=percent, database=db, message=message)
    return base


def main():
    argument_spec = _s3.s3_common_argument_spec()
    argument_spec.update(
        backup_dir=dict(type="path"),
        bucket=dict(type="str"),
        prefix=dict(type="str", default=""),
        database=dict(type="str"),
        max_age_hours=dict(type="float"),
        size_change_percent=dict(type="float"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_one_of=[("backup_dir", "bucket")])
    params = module.params
    for option in ("max_age_hours", "size_change_percent"):
        if params[option] is not None and params[option] < 0:
            module.fail_json(msg="%s must not be negative" % option)
    now = time.time()
    backups, partials, skipped, locations = [], [], [], []

    if params["backup_dir"]:
        locations.append("local")
        try:
            found = collect_local(params["backup_dir"], params["database"], now)
        except (OSError, _manifest.ManifestError) as exc:
            module.fail_json(msg="Failed to list backups in %s: %s" % (params["backup_dir"], _s3.describe_error(exc)))
        for target, values in zip((backups, partials, skipped), found):
            target.extend(values)
    if params["bucket"]:
        locations.append("s3")
        _s3.ensure_boto3(module)
        where = _s3.url(params["bucket"], _s3.join_key(params["prefix"]))
        try:
            s3 = _s3.client(params)
            found = collect_s3(s3, params["bucket"], params["prefix"], params["database"], now)
        except Exception as exc:  # noqa: BLE001 - every library error becomes one readable message
            if not _s3.is_library_error(exc):
                raise
            module.fail_json(msg="Failed to list backups under %s: %s" % (
                where, _s3.describe_error(exc, None, params["bucket"], secrets=_s3.secrets_of(params))))
        for target, values in zip((backups, partials, skipped), found):
            target.extend(values)

    backups.sort(key=lambda e: (_manifest.parse_backup_time(e["finished_at"]), e["backup_id"], e["location"]),
                 reverse=True)
    result = dict(changed=False, backups=backups, partials=partials, unreadable=skipped)
    if params["max_age_hours"] is not None:
        result["freshness"] = freshness(backups, params["max_age_hours"], locations, params["database"])
    if params["size_change_percent"] is not None:
        result["size_change"] = size_change(backups, params["size_change_percent"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
