#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: s3_report
short_description: Copy a run report (report.json, report.html, the history) to the S3 report store
version_added: 0.1.0
description:
  - Copies one report directory written by M(upkeep.runbooks.report) to
    C(s3://<bucket>/<prefix>/<environment>/<cadence>/<run>/) on AWS S3 or any S3-compatible endpoint, where
    C(<cadence>) comes from C(report.json) and C(<run>) is the report directory's name (its UTC time, for
    example V(20261202T013000Z), with the C(-2) suffix the report module adds to a second report in the same
    second).
  - C(report.json) and C(report.html) are copied, and O(history) (the cadence's C(history.json), JSON Lines since
    history schema 2, stored with Content-Type C(application/x-ndjson)) when given and present, as it was after
    this run. Every object carries its SHA-256 as C(x-amz-meta-sha256) and is verified
    after the upload.
  - Then C(<prefix>/<environment>/<cadence>/latest.json) is written, last, naming the run and its objects. It is
    only moved forward; a run older than the one it names leaves it alone.
  - A report is written once. An object that is already there with the same SHA-256 is left alone (a re-run after
    a failed step uploads only what is missing); one with other content fails the task.
  - Meant for runs whose controller does not keep files, such as AWX / Automation Controller jobs, whose execution
    environment container is removed when the job ends. The local report is never touched.
  - With O(state=fetched), brings the history of the newest stored run (the C(history.json) the C(latest.json)
    pointer names) to C(<dest>/<cadence>/history.json) when there is no local history, so a controller that
    starts empty (an AWX job) continues the cadence's history instead of starting a new one. A local history is
    never replaced. The fetched history is checked line by line (one run at a time) before it is put in place; a
    damaged one is refused with the line named. A schema-1 history (stored by an earlier version of the
    collection) is fetched as it is and rewritten as schema 2 by the next report.
  - Runs on the controller, next to M(upkeep.runbooks.report), with C(delegate_to=localhost) and C(run_once=true).
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - upkeep.runbooks.s3
attributes:
  check_mode:
    support: full
    details:
      - Reads the local report, lists the run's prefix and reads the C(latest.json) pointer (read-only), and returns
        in RV(keys) what would be uploaded. Nothing is written.
      - With O(state=fetched), reads the pointer and says in RV(fetched) whether the history would be fetched;
        nothing is downloaded.
  diff_mode:
    support: none
    details:
      - The result lists the keys copied (RV(keys)) and those already in place (RV(present)).
  platform:
    platforms: posix
options:
  state:
    description:
      - V(present) uploads the report in O(path).
      - V(fetched) brings the newest stored history of O(cadence) to O(dest) when O(dest) has none.
    type: str
    choices: [present, fetched]
    default: present
  path:
    description:
      - The report directory C(<dest>/<cadence>/<run>/) holding C(report.json) and C(report.html), as returned by
        M(upkeep.runbooks.report) in RV(upkeep.runbooks.report#module:dir).
      - Required with O(state=present).
    type: path
  cadence:
    description:
      - With O(state=fetched), the cadence whose history is fetched (required there).
    type: str
  dest:
    description:
      - With O(state=fetched), the reports directory (the O(upkeep.runbooks.report#module:dest) of the report
        module); the history goes to C(<dest>/<cadence>/history.json), mode C(0640), under the history's lock.
    type: path
  history:
    description:
      - The cadence's C(history.json) (RV(upkeep.runbooks.report#module:history.path)). Copied beside the report
        when the file exists; a missing file is left out and said so in RV(left_out).
    type: path
  bucket:
    description:
      - Name of the bucket. It must exist; the module never creates buckets.
    type: str
    required: true
  prefix:
    description:
      - Key prefix of the report store. Leading and trailing slashes are ignored.
    type: str
    default: reports
  environment:
    description:
      - Name of the environment the run was about, for example V(production); a key part, so reports of several
        environments can share a bucket.
      - Letters, digits, V(.), V(_) and V(-) only.
    type: str
    required: true
  encryption:
    description:
      - Server-side encryption requested for every uploaded object, checked after the upload.
    type: str
    choices: [none, AES256, aws:kms]
    default: AES256
  kms_key_id:
    description:
      - KMS key id or ARN for O(encryption=aws:kms).
    type: str
  storage_class:
    description:
      - Storage class of the uploaded objects. The endpoint's default when omitted.
    type: str
  verify:
    description:
      - V(metadata) checks every object's size and recorded SHA-256 (a HEAD request each).
      - V(full) also reads every object back and compares its SHA-256.
    type: str
    choices: [metadata, full]
    default: metadata
  latest:
    description:
      - Write the C(latest.json) pointer of the environment and cadence after the upload.
    type: bool
    default: true
notes:
  - The credentials need C(s3:ListBucket), C(s3:GetObject) and C(s3:PutObject) on the prefix. In AWX the
    C(upkeep S3) credential type injects them as C(AWS_ACCESS_KEY_ID) and C(AWS_SECRET_ACCESS_KEY).
  - The layout and the C(latest.json) schema are described in C(docs/report.md) of the collection, section
    "The S3 report store".
seealso:
  - module: upkeep.runbooks.report
  - module: upkeep.runbooks.s3_backup
"""

EXAMPLES = r"""
- name: Write the daily report
  upkeep.runbooks.report:
    cadence: daily
    results: "{{ daily_results }}"
    dest: /var/lib/upkeep/reports
  delegate_to: localhost
  run_once: true
  register: daily_report

- name: Keep it in the report store
  upkeep.runbooks.s3_report:
    path: "{{ daily_report.dir }}"
    history: "{{ daily_report.history.path | default(omit) }}"
    bucket: acme-ops-reports
    environment: production
  delegate_to: localhost
  run_once: true
  register: stored

- name: Continue the history of the stored runs on a controller that starts empty (before the report is written)
  upkeep.runbooks.s3_report:
    state: fetched
    cadence: daily
    dest: /var/lib/upkeep/reports
    bucket: acme-ops-reports
    environment: production
  delegate_to: localhost
  run_once: true

- name: An S3-compatible endpoint with a private CA, read back in full
  upkeep.runbooks.s3_report:
    path: /var/lib/upkeep/reports/weekly/20261206T040000Z
    bucket: ops-reports
    prefix: upkeep/reports
    environment: staging
    endpoint_url: https://minio.internal:9000
    ca_bundle: /etc/ssl/certs/internal-ca.pem
    verify: full
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
bucket:
  description: The bucket.
  returned: always
  type: str
  sample: acme-ops-reports
remote_prefix:
  description: Key prefix of the run's objects.
  returned: with O(state=present), when the local report could be read
  type: str
  sample: reports/production/daily/20261202T013000Z/
url:
  description: C(s3://) URL of the run's prefix.
  returned: when the local report could be read
  type: str
  sample: s3://acme-ops-reports/reports/production/daily/20261202T013000Z/
cadence:
  description: Cadence of the report, from C(report.json).
  returned: when the local report could be read
  type: str
  sample: daily
run:
  description: Name of the report directory, the run's key part.
  returned: when the local report could be read
  type: str
  sample: 20261202T013000Z
keys:
  description: Keys uploaded by this run (in check mode, the keys that would be), the pointer last.
  returned: always
  type: list
  elements: str
  sample:
    - reports/production/daily/20261202T013000Z/report.json
    - reports/production/daily/20261202T013000Z/report.html
    - reports/production/daily/20261202T013000Z/history.json
    - reports/production/daily/latest.json
present:
  description: Keys already in place with the expected size and SHA-256.
  returned: always
  type: list
  elements: str
  sample: []
objects:
  description: Every object of the run in the store, by file name, with its key, size and SHA-256.
  returned: when the local report could be read
  type: dict
  sample: {"report.json": {"key": "reports/production/daily/20261202T013000Z/report.json", "size": 5120,
           "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}}
left_out:
  description:
    - Files that were not copied, with the reason (a history that does not exist yet).
    - Not called C(skipped), which Ansible reserves in task results (a task result with it ignores
      C(changed_when) and C(failed_when)).
  returned: with O(state=present)
  type: list
  elements: str
  sample: []
latest_key:
  description: Key of the C(latest.json) pointer.
  returned: when O(latest) is true and the local report could be read
  type: str
  sample: reports/production/daily/latest.json
latest_updated:
  description:
    - Whether the pointer names this run now (false when it already did, when it names a newer run, or in check
      mode).
  returned: when O(latest) is true and the local report could be read
  type: bool
  sample: true
bytes:
  description: Bytes uploaded (or that would be, in check mode).
  returned: always
  type: int
  sample: 48211
verified:
  description: How the objects were verified, V(metadata) or V(full); null in check mode.
  returned: always
  type: str
  sample: metadata
local_dir:
  description: The local report directory, which the module never changes; also named in every failure message.
  returned: with O(state=present)
  type: str
  sample: /var/lib/upkeep/reports/daily/20261202T013000Z
history:
  description: With O(state=fetched), the local history file.
  returned: with O(state=fetched)
  type: str
  sample: /runner/project/reports/daily/history.json
fetched:
  description: With O(state=fetched), whether the stored history was brought (would be, in check mode).
  returned: with O(state=fetched)
  type: bool
  sample: true
source:
  description: With O(state=fetched), the C(s3://) URL of the stored history, or null when there is none.
  returned: with O(state=fetched)
  type: str
  sample: s3://acme-ops-reports/reports/production/daily/20261202T013000Z/history.json
runs:
  description: With O(state=fetched), the number of runs in the fetched history.
  returned: with O(state=fetched), when a history was fetched outside check mode
  type: int
  sample: 57
schema_version:
  description: With O(state=fetched), the schema version of the fetched history (1 or 2).
  returned: with O(state=fetched), when a history was fetched outside check mode
  type: int
  sample: 2
reason:
  description: With O(state=fetched), why nothing was fetched.
  returned: with O(state=fetched), when nothing was fetched
  type: str
  sample: a local history exists
duration_seconds:
  description: Wall time of the operation.
  returned: always
  type: float
  sample: 0.42
"""

import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.upkeep.runbooks.plugins.module_utils import _history  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils import _s3  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._failure import Failure  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._files import fsync_dir  # noqa: E402

REPORT_FILES = (("report.json", "application/json"), ("report.html", "text/html; charset=utf-8"))
HISTORY_NAME = "history.json"
LATEST_NAME = "latest.json"
LATEST_SCHEMA = 1
RUN_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z(-[0-9]+)?$")
ENVIRONMENT_RE = re.compile(r"^[A-Za-z0-9._-]+$")
CADENCE_RE = re.compile(r"^[a-z0-9_-]+$")
MAX_REPORT_JSON = 64 * 1024 * 1024


def _run_order(run):
    """Sort key of a run name: its time, then its suffix (``-2`` after the bare stamp)."""
    stamp, _sep, suffix = run.partition("-")
    return (stamp, int(suffix) if suffix.isdigit() else 1)


def _local_report(params):
    """Read the report directory: (cadence, run, items) with items [{name, path, size, sha256, content_type}]."""
    root = os.path.abspath(params["path"])
    run = os.path.basename(root.rstrip("/"))
    if not os.path.isdir(root):
        raise Failure("Failed to read report %s: it is not a directory" % root)
    if not RUN_RE.match(run):
        raise Failure("Failed to read report %s: the directory name %r is not a report run (YYYYmmddTHHMMSSZ, "
                      "written by upkeep.runbooks.report)" % (root, run))
    json_path = os.path.join(root, "report.json")
    try:
        if os.path.getsize(json_path) > MAX_REPORT_JSON:
            raise Failure("Failed to read report %s: report.json is larger than %d bytes" % (root, MAX_REPORT_JSON))
        with open(json_path, "rb") as handle:
            report = json.loads(handle.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise Failure("Failed to read report %s: report.json: %s" % (root, cause)) from None
    if not isinstance(report, dict) or report.get("schema_version") != 1:
        raise Failure("Failed to read report %s: report.json is not a report of schema_version 1" % root)
    cadence = report.get("cadence")
    if not isinstance(cadence, str) or not CADENCE_RE.match(cadence):
        raise Failure("Failed to read report %s: report.json has no valid cadence" % root)
    items = []
    for name, content_type in REPORT_FILES:
        items.append(_item(root, os.path.join(root, name), name, content_type))
    skipped = []
    if params.get("history"):
        if os.path.isfile(params["history"]):
            items.append(_item(root, params["history"], HISTORY_NAME, _history_type(params["history"])))
        else:
            skipped.append("%s: no history file yet" % params["history"])
    summary = report.get("summary") if isinstance(report.get("summary"), dict) else {}
    meta = {"generated_at": report.get("generated_at"), "status": summary.get("status")}
    return cadence, run, items, skipped, meta


def _history_type(path):
    """JSON Lines for a schema-2 history (header line first), JSON for an older one-document history."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline(4096)
        head = json.loads(first.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return "application/json"
    if isinstance(head, dict) and head.get("schema_version") == 2 and "runs" not in head:
        return "application/x-ndjson"
    return "application/json"


def _item(root, path, name, content_type):
    try:
        digest, size = _manifest.sha256_file(path)
    except OSError as exc:
        raise Failure("Failed to read report %s: %s: %s" % (root, path, exc.strerror or exc)) from None
    return {"name": name, "path": path, "size": size, "sha256": digest, "content_type": content_type}


def _cause(exc, s3, bucket, key, params):
    return _s3.describe_error(exc, _s3.endpoint_of(s3), bucket, key, secrets=_s3.secrets_of(params))


def _read_pointer(s3, params, key):
    """The ``latest.json`` document, or None when there is no (readable) pointer."""
    try:
        raw, _recorded = _s3.get_bytes(s3, params["bucket"], key)
    except Exception as exc:  # noqa: BLE001 - mapped by the caller
        if _s3.is_not_found(exc):
            return None
        raise
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("run"), str) or not RUN_RE.match(data["run"]):
        return None
    return data


def _read_latest(s3, params, key):
    """The run the pointer names now, or None when there is no (readable) pointer."""
    data = _read_pointer(s3, params, key)
    return data["run"] if data else None


def run_fetched(module, s3, params):
    """Bring the newest stored history to <dest>/<cadence>/history.json unless a local one exists."""
    bucket = params["bucket"]
    cadence = params["cadence"]
    dest = os.path.abspath(params["dest"])
    cadence_dir = os.path.join(dest, cadence)
    local = _history.history_path(dest, cadence)
    base = _s3.join_key(params["prefix"], params["environment"], cadence)
    latest_key = _s3.join_key(base, LATEST_NAME)
    result = dict(cadence=cadence, history=local, fetched=False, source=None, latest_key=latest_key)
    where = "Failed to fetch the %s history from %s" % (cadence, _s3.url(bucket, base + "/"))
    if os.path.exists(local):
        result.update(changed=False, reason="a local history exists")
        return result
    try:
        pointer = _read_pointer(s3, params, latest_key)
    except Exception as exc:  # noqa: BLE001 - mapped to a message
        raise Failure("%s: %s" % (where, _cause(exc, s3, bucket, latest_key, params))) from None
    entry = ((pointer or {}).get("objects") or {}).get(HISTORY_NAME)
    if not isinstance(entry, dict) or not str(entry.get("key", "")).startswith(base + "/") \
            or not isinstance(entry.get("size"), int) or not isinstance(entry.get("sha256"), str):
        result.update(changed=False, reason="no stored run with a history" if pointer is None or entry is None
                      else "%s names no usable history" % _s3.url(bucket, latest_key))
        return result
    key = entry["key"]
    result["source"] = _s3.url(bucket, key)
    if module.check_mode:
        result.update(changed=True, fetched=True)
        return result
    temp = "%s.fetch-%d" % (local, os.getpid())
    try:
        os.makedirs(cadence_dir, mode=0o750, exist_ok=True)
        with _history.Locked(cadence_dir):
            if os.path.exists(local):  # another run wrote one meanwhile: it wins
                result.update(changed=False, reason="a local history exists")
                return result
            if os.path.lexists(temp):
                os.unlink(temp)
            _s3.download_verified(s3, bucket, key, temp, sha256=entry["sha256"], size=entry["size"])
            scan = _history.Scan(temp, cadence).consume()  # one run at a time: checks every line
            problem = scan.message()
            if problem:
                raise Failure("%s: the stored history %s %s" % (where, result["source"], problem))
            os.chmod(temp, _history.FILE_MODE)
            os.link(temp, local)  # never replaces a history that appeared after the check
            fsync_dir(cadence_dir)
    except Failure:
        raise
    except Exception as exc:  # noqa: BLE001 - mapped to a message
        raise Failure("%s: %s" % (where, _cause(exc, s3, bucket, key, params))) from None
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)
    result.update(changed=True, fetched=True, runs=scan.count, schema_version=scan.schema)
    return result


def run(module, s3, params, local_dir):
    bucket = params["bucket"]
    environment = params["environment"]
    cadence, run_name, items, skipped, meta = _local_report(params)
    base = _s3.join_key(params["prefix"], environment, cadence)
    remote_prefix = _s3.join_key(base, run_name) + "/"
    for item in items:
        item["key"] = remote_prefix + item["name"]
    latest_key = _s3.join_key(base, LATEST_NAME)
    objects = dict((i["name"], {"key": i["key"], "size": i["size"], "sha256": i["sha256"]}) for i in items)
    result = dict(remote_prefix=remote_prefix, url=_s3.url(bucket, remote_prefix), cadence=cadence, run=run_name,
                  left_out=skipped, objects=objects)
    where = "Failed to upload report %s to %s" % (local_dir, _s3.url(bucket, remote_prefix))
    current = None
    try:
        listed = dict((obj["key"], obj) for obj in _s3.list_objects(s3, bucket, remote_prefix))
        to_upload, present = [], []
        for item in items:
            current = item["key"]
            if item["key"] in listed:
                info = _s3.head(s3, bucket, item["key"])
                if info and info["size"] == item["size"] and info["sha256"] == item["sha256"]:
                    present.append(item["key"])
                    continue
                raise Failure("%s: %s already exists with other content; a report is written once"
                              % (where, _s3.url(bucket, item["key"])), local_dir=local_dir)
            to_upload.append(item)
        current = latest_key if params["latest"] else None
        pointed = _read_latest(s3, params, latest_key) if params["latest"] else None
        current = None
    except Failure:
        raise
    except Exception as exc:  # noqa: BLE001 - mapped to a message
        raise Failure("%s: %s; the local report is kept" % (where, _cause(exc, s3, bucket, current, params)),
                      local_dir=local_dir) from None

    move_latest = params["latest"] and (pointed is None or _run_order(pointed) < _run_order(run_name))
    planned = [item["key"] for item in to_upload] + ([latest_key] if move_latest else [])
    nbytes = sum(item["size"] for item in to_upload)
    result.update(present=present, keys=planned, bytes=nbytes)
    if params["latest"]:
        result["latest_key"] = latest_key
    if module.check_mode:
        result.update(changed=bool(planned), verified=None)
        if params["latest"]:
            result["latest_updated"] = False
        return result

    fresh = set(item["key"] for item in to_upload)
    extra_args = _s3.upload_extra_args(params["encryption"], params["kms_key_id"], params["storage_class"])
    try:
        if to_upload:
            _s3.upload_verified(s3, bucket, to_upload, _s3.transfer_config(), extra_args)
        for item in items:
            current = item["key"]
            _s3.verify_object(s3, bucket, item["key"], item["size"], item["sha256"], full=params["verify"] == "full",
                              encryption=params["encryption"] if item["key"] in fresh else None)
        if move_latest:
            current = latest_key
            pointer = {
                "schema_version": LATEST_SCHEMA,
                "environment": environment,
                "cadence": cadence,
                "run": run_name,
                "prefix": remote_prefix,
                "generated_at": meta["generated_at"],
                "status": meta["status"],
                "uploaded_at": _manifest.utc_iso(datetime.datetime.now(datetime.timezone.utc)),
                "objects": result["objects"],
            }
            data = (json.dumps(pointer, indent=2, sort_keys=True) + "\n").encode("utf-8")
            digest = _s3.put_bytes(s3, bucket, latest_key, data, extra_args)
            _s3.verify_object(s3, bucket, latest_key, len(data), digest, full=params["verify"] == "full",
                              encryption=params["encryption"])
            nbytes += len(data)
    except _s3.UploadFailed as exc:
        raise Failure("%s: %s (%s); the local report is kept" % (where, exc.message, exc.key),
                      local_dir=local_dir, keys=exc.uploaded) from None
    except Exception as exc:  # noqa: BLE001 - mapped to a message
        cause = _cause(exc, s3, bucket, current, params)
        raise Failure("%s: %s (%s); the local report is kept" % (where, cause, current),
                      local_dir=local_dir) from None
    result.update(changed=bool(planned), bytes=nbytes, verified=params["verify"])
    if params["latest"]:
        result["latest_updated"] = move_latest
    if pointed is not None and not move_latest and pointed != run_name:
        module.warn("%s names the newer run %s; it was left alone" % (_s3.url(bucket, latest_key), pointed))
    return result


def main():
    argument_spec = _s3.s3_common_argument_spec()
    argument_spec.update(
        state=dict(type="str", default="present", choices=["present", "fetched"]),
        path=dict(type="path"),
        cadence=dict(type="str"),
        dest=dict(type="path"),
        history=dict(type="path"),
        bucket=dict(type="str", required=True),
        prefix=dict(type="str", default="reports"),
        environment=dict(type="str", required=True),
        encryption=dict(type="str", default="AES256", choices=_s3.ENCRYPTIONS),
        kms_key_id=dict(type="str", no_log=False),
        storage_class=dict(type="str"),
        verify=dict(type="str", default="metadata", choices=["metadata", "full"]),
        latest=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[("state", "present", ["path"]), ("state", "fetched", ["cadence", "dest"])])
    params = module.params
    started = time.monotonic()
    if params["state"] == "fetched":
        local_dir = None
        base = dict(changed=False, bucket=params["bucket"], keys=[], present=[], bytes=0, verified=None)
        what = "Failed to fetch the %s history" % params["cadence"]
    else:
        local_dir = os.path.abspath(params["path"])
        base = dict(changed=False, bucket=params["bucket"], keys=[], present=[], left_out=[], bytes=0,
                    verified=None, local_dir=local_dir)
        what = "Failed to upload report %s" % local_dir
    problem = None
    if params["state"] == "fetched" and not CADENCE_RE.match(params["cadence"] or ""):
        problem = "cadence must contain only a-z, 0-9, '_' and '-', got %r" % params["cadence"]
    if not ENVIRONMENT_RE.match(params["environment"] or ""):
        problem = "environment must contain only letters, digits, '.', '_' and '-', got %r" % params["environment"]
    if params["kms_key_id"] and params["encryption"] != "aws:kms":
        problem = "kms_key_id is only used with encryption=aws:kms"
    if problem:
        module.fail_json(msg="%s: %s" % (what, problem), **base)
    _s3.ensure_boto3(module)
    try:
        s3 = _s3.client(params)
        if params["state"] == "fetched":
            result = run_fetched(module, s3, params)
        else:
            result = run(module, s3, params, local_dir)
    except Failure as exc:
        out = dict(base)
        out.update(exc.extra)
        out["duration_seconds"] = round(time.monotonic() - started, 3)
        module.fail_json(msg=exc.msg, **out)
    except _s3.S3Error as exc:
        module.fail_json(msg="%s: %s" % (what, exc.message),
                         duration_seconds=round(time.monotonic() - started, 3), **base)
    out = dict(base)
    out.update(result)
    out["duration_seconds"] = round(time.monotonic() - started, 3)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
