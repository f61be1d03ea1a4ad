#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: patch_promotion
short_description: Promote a staged patch baseline, or select the promoted baseline production may install
version_added: 0.1.0
description:
  - With O(state=promoted) (staging) writes a promotion record to the promotion store - the patch baseline
    staging applied, the outcome on every staging host, every gate, when - sealed with a SHA-256 over its
    canonical JSON and written atomically (temporary file, fsync, rename) as C(<baseline sha256>.json) in
    O(store_dir) on the controller, or as an object below O(prefix) in O(bucket).
  - With O(state=selected) (production) reads the store, ignores records whose digest does not match (named in
    RV(problems)), takes the newest record or the one named by O(name), and refuses it when it did not pass
    staging, is younger than O(min_soak), older than O(max_age), or was tested on another OS release than
    O(os_release).
  - The record format is documented in docs/patching.md ("Promotion records").
  - 'Runs on the controller (C(delegate_to: localhost)).'
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - upkeep.runbooks.s3
attributes:
  check_mode:
    support: full
    details: O(state=promoted) builds and validates the record and writes nothing; O(state=selected) is read-only.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  state:
    description: V(promoted) writes a record, V(selected) chooses one for production.
    type: str
    choices: [promoted, selected]
    default: selected
  store_dir:
    description: Directory of the promotion store on the controller. One of O(store_dir) and O(bucket) is required.
    type: path
  bucket:
    description: S3 bucket of the promotion store (AWX job containers are ephemeral). The S3 connection options apply.
    type: str
  prefix:
    description: Key prefix of the records in O(bucket).
    type: str
    default: patch-promotions
  baseline:
    description: The baseline staging applied (what M(upkeep.runbooks.apt_patch_plan) returned). O(state=promoted).
    type: dict
  hosts:
    description:
      - One entry per staging host, O(state=promoted) - C(host), C(status) (applied, failed, rolled_back, skipped),
        C(packages) (name=version installed) and C(reboot) (bool).
    type: list
    elements: dict
    default: []
  gates:
    description: The gate check results of the staging run (C(check), C(host), C(status), C(message)).
    type: list
    elements: dict
    default: []
  run:
    description: Free-form facts about the run (playbook, inventory, user); no secrets.
    type: dict
    default: {}
  name:
    description:
      - With O(state=promoted), the record's name (default C(<date>-<first 12 hex digits of the baseline digest>)).
      - With O(state=selected), select the record of this name, or whose baseline digest is this value, instead
        of the newest.
    type: str
  min_soak:
    description: O(state=selected) refuses a record promoted less than this long ago (V(3d), V(12h), seconds).
    type: str
    default: 3d
  max_age:
    description: O(state=selected) refuses a record promoted longer ago than this; V(0) for no limit.
    type: str
    default: 45d
  os_release:
    description: The target host's C(/etc/os-release) facts (C(id), C(version_codename)); a record tested on
      another release is refused.
    type: dict
  now:
    description: The time to judge soak and age at (UTC C(YYYY-mm-ddTHH:MM:SSZ)); for tests and what-if runs.
    type: str
"""

EXAMPLES = r"""
- name: Promote what staging applied
  upkeep.runbooks.patch_promotion:
    state: promoted
    store_dir: /var/lib/upkeep-runbooks/patch-promotions
    baseline: "{{ plan.baseline }}"
    hosts:
      - {host: stage1, status: applied, packages: ["openssl=3.0.15-1~deb12u1"], reboot: false}
    gates: "{{ gate_results }}"
  delegate_to: localhost
  run_once: true

- name: Select the newest baseline that passed staging and soaked three days
  upkeep.runbooks.patch_promotion:
    state: selected
    store_dir: /var/lib/upkeep-runbooks/patch-promotions
    min_soak: 3d
    os_release: {id: debian, version_codename: bookworm}
  delegate_to: localhost
  run_once: true
  register: promoted
"""

RETURN = r"""
record:
  description: The record written (V(promoted)) or selected (V(selected)); its C(baseline) is what production installs.
  returned: success
  type: dict
sha256:
  description: The record's own digest.
  returned: success
  type: str
baseline_sha256:
  description: The digest of the baseline in the record (apply it with C(expected_sha256)).
  returned: success
  type: str
location:
  description: Where the record is (a path or an C(s3://) URL).
  returned: success
  type: str
passed:
  description: Whether staging passed (every host applied, no gate failed).
  returned: success
  type: bool
refusals:
  description: Why the selected record may not go to production (the module fails when there is one).
  returned: always
  type: list
  elements: str
problems:
  description: Records in the store that could not be read or whose digest does not match (never selected).
  returned: always
  type: list
  elements: str
candidates:
  description: Names of the valid records in the store, newest first.
  returned: always
  type: list
  elements: str
"""

import datetime  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.upkeep.runbooks.plugins.module_utils import _promotion, _s3  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._window import parse_duration  # noqa: E402


def _store(module, params):
    if params["store_dir"]:
        return _promotion.DirectoryStore(params["store_dir"])
    _s3.ensure_boto3(module)
    return _promotion.S3Store(_s3.client(params), _s3, params["bucket"], params["prefix"])


def _where(params):
    return params["store_dir"] or _s3.url(params["bucket"], _s3.join_key(params["prefix"]))


def _fail(module, verb, params, exc, **result):
    cause = exc
    if not isinstance(exc, (_promotion.PromotionError, ValueError)):
        cause = _s3.describe_error(exc, None, params.get("bucket"), secrets=_s3.secrets_of(params))
    module.fail_json(msg="Failed to %s %s: %s" % (verb, _where(params), cause), **result)


def promote(module, params):
    if not params["baseline"]:
        module.fail_json(msg="Failed to promote the baseline: state=promoted needs baseline")
    try:
        record = _promotion.new_record(params["baseline"], params["hosts"], params["gates"], params["run"],
                                       name=params["name"])
    except _promotion.PromotionError as exc:
        module.fail_json(msg="Failed to promote the baseline: %s" % exc, refusals=[], problems=[], candidates=[])
    result = dict(record=record, sha256=record["sha256"], baseline_sha256=record["baseline_sha256"],
                  passed=record["passed"], refusals=[], problems=[], candidates=[record["name"]])
    try:
        store = _store(module, params)
        key = _promotion.key_of(record)
        result["location"] = store.where(key)
        if not module.check_mode:
            store.write(key, _promotion.render(record))
    except Exception as exc:  # noqa: BLE001 - every store error becomes one readable message
        if not isinstance(exc, _promotion.PromotionError) and not _s3.is_library_error(exc):
            raise
        _fail(module, "write the promotion record to", params, exc, refusals=[], problems=[], candidates=[])
    module.exit_json(changed=True, **result)


def select(module, params):
    try:
        now = _promotion.parse_time(params["now"]) if params["now"] else datetime.datetime.now(datetime.timezone.utc)
    except ValueError:
        module.fail_json(msg="Failed to select a promoted baseline: now %r is not a UTC time" % params["now"])
    try:
        soak = parse_duration(params["min_soak"], "min_soak")
        max_age = parse_duration(params["max_age"], "max_age")
    except ValueError as exc:
        module.fail_json(msg="Failed to select a promoted baseline: %s" % exc)
    try:
        records, problems = _promotion.load_all(_store(module, params))
    except Exception as exc:  # noqa: BLE001
        if not isinstance(exc, _promotion.PromotionError) and not _s3.is_library_error(exc):
            raise
        _fail(module, "read the promotion store", params, exc, refusals=[], problems=[], candidates=[])
    candidates = [record["name"] for record, _where_ in records]
    base = dict(refusals=[], problems=problems, candidates=candidates)
    if params["name"]:
        chosen = [item for item in records if params["name"] in (item[0]["name"], item[0]["baseline_sha256"])]
        if not chosen:
            module.fail_json(msg="Failed to select a promoted baseline: %s holds no valid record named %s%s"
                             % (_where(params), params["name"],
                                (" (unreadable: %s)" % "; ".join(problems)) if problems else ""), **base)
    else:
        chosen = records
    if not chosen:
        module.fail_json(msg="Failed to select a promoted baseline: %s holds no valid promotion record%s"
                         % (_where(params), (" (unreadable: %s)" % "; ".join(problems)) if problems else ""), **base)
    record, location = chosen[0]
    refusals = _promotion.refusals(record, now, soak, max_age, params["os_release"])
    result = dict(base, record=record, sha256=record["sha256"], baseline_sha256=record["baseline_sha256"],
                  location=location, passed=record["passed"], refusals=refusals)
    if refusals:
        module.fail_json(msg="Failed to select a promoted baseline: %s" % "; ".join(refusals), **result)
    module.exit_json(changed=False, **result)


def main():
    argument_spec = _s3.s3_common_argument_spec()
    argument_spec.update(
        state=dict(type="str", choices=["promoted", "selected"], default="selected"),
        store_dir=dict(type="path"),
        bucket=dict(type="str"),
        prefix=dict(type="str", default="patch-promotions"),
        baseline=dict(type="dict"),
        hosts=dict(type="list", elements="dict", default=[]),
        gates=dict(type="list", elements="dict", default=[]),
        run=dict(type="dict", default={}),
        name=dict(type="str"),
        min_soak=dict(type="str", default="3d"),
        max_age=dict(type="str", default="45d"),
        os_release=dict(type="dict"),
        now=dict(type="str"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_one_of=[("store_dir", "bucket")], mutually_exclusive=[("store_dir", "bucket")])
    if module.params["state"] == "promoted":
        promote(module, module.params)
    select(module, module.params)


if __name__ == "__main__":
    main()
