# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that build check results in roles: check_result, check_evaluate, disk_checks.

Their documentation lives next to this file (check_result.yml, check_evaluate.yml,
disk_checks.yml), the way ansible-core documents several filters kept in one file.
The thresholds and the result shape come from module_utils/_checks.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import posixpath
from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import (
    classify,
    evaluate,
    human_bytes,
    result,
    worst,
)


def _need_name(value, what, filter_name):
    if not isinstance(value, str) or not value.strip():
        raise AnsibleFilterError(f"{filter_name}: {what} must be a non-empty string, got {value!r}")
    return str(value)


def _number(value, what, filter_name, allow_none=True):
    """int/float, or numeric text as templating often yields; bools are refused."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool):
        raise AnsibleFilterError(f"{filter_name}: {what} must be a number, got a boolean")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            pass
    raise AnsibleFilterError(f"{filter_name}: {what} must be a number, got {value!r}")


def check_result(check, host, status, value=None, threshold=None, message=""):  # noqa: PLR0917 - filter signature
    """One check result dict: {check, host, status, value, threshold, message}."""
    check = _need_name(check, "check", "check_result")
    host = _need_name(host, "host", "check_result")
    if message is None:
        message = ""
    if not isinstance(message, str):
        raise AnsibleFilterError(f"check_result: message must be a string, got {type(message).__name__}")
    try:
        return result(check, host, status, value, threshold, str(message))
    except ValueError as exc:
        raise AnsibleFilterError(f"check_result: {exc}") from None


def check_evaluate(  # noqa: PLR0917 - a filter takes its arguments positionally
    value, check, host, warn=None, fail=None, higher_is_worse=True, unit="", what=None
):
    """A result for a measured value against warn/fail limits; the message states both."""
    check = _need_name(check, "check", "check_evaluate")
    host = _need_name(host, "host", "check_evaluate")
    value = _number(value, "the value", "check_evaluate")
    warn = _number(warn, "warn", "check_evaluate")
    fail = _number(fail, "fail", "check_evaluate")
    if not isinstance(higher_is_worse, bool):
        raise AnsibleFilterError(f"check_evaluate: higher_is_worse must be true or false, got {higher_is_worse!r}")
    if what is not None and not isinstance(what, str):
        raise AnsibleFilterError(f"check_evaluate: what must be a string, got {what!r}")
    unit = "" if unit is None else str(unit)
    out = evaluate(check, host, value, warn, fail, higher_is_worse, unit, what)
    if unit:
        # Lets the report render limits in the check's unit (bytes as KiB/MiB/...).
        out["threshold"]["unit"] = unit
    return out


# ------------------------------------------------------------------ disk_checks

def _norm(path):
    path = posixpath.normpath(path)
    return "/" + path.lstrip("/") if path.startswith("//") else path


def _covers(mount_point, path):
    """Path-component aware prefix: /var/lib covers /var/lib/x but not /var/library."""
    if mount_point == "/":
        return True
    return path == mount_point or path.startswith(mount_point + "/")


def _covering_mount(mounts, path):
    """The mount whose mount point is the longest prefix of path; the later one wins a tie
    (a file system mounted over another at the same point hides it)."""
    best = None
    best_len = -1
    for mount in mounts:
        point = _norm(mount["mount"])
        if _covers(point, path) and len(point) >= best_len:
            best, best_len = mount, len(point)
    return best


def _percent(part, total):
    if part is None or not total:
        return None
    return round(100.0 * part / total, 2)


def _int_or_none(mount, key):
    value = mount.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        point = mount.get("mount")
        raise AnsibleFilterError(f"disk_checks: mount {point} has a non-numeric {key}: {value!r}") from None


def _validate_mounts(mounts):
    if isinstance(mounts, (str, bytes)) or not isinstance(mounts, Sequence):
        raise AnsibleFilterError(
            f"disk_checks: mounts must be the list ansible_facts.mounts, got {type(mounts).__name__}"
        )
    clean = []
    for index, mount in enumerate(mounts):
        if not isinstance(mount, Mapping):
            raise AnsibleFilterError(f"disk_checks: mounts[{index}] must be a dict, got {type(mount).__name__}")
        point = mount.get("mount")
        if not isinstance(point, str) or not point.startswith("/"):
            raise AnsibleFilterError(f"disk_checks: mounts[{index}] has no absolute 'mount' point: {point!r}")
        clean.append(mount)
    return clean


def _pct_limit(value, what):
    value = _number(value, what, "disk_checks", allow_none=False)
    if not 0 <= value <= 100:
        raise AnsibleFilterError(f"disk_checks: {what} must be between 0 and 100, got {value}")
    return value


def _fmt_pct(value):
    return "%s %%" % (round(value, 1) if isinstance(value, float) else value)


def disk_checks(mounts, host, paths, warn_percent_free=20, fail_percent_free=10):
    """One disk_free:<label> result per labelled path, from ansible_facts.mounts."""
    host = _need_name(host, "host", "disk_checks")
    mounts = _validate_mounts(mounts)
    if not isinstance(paths, Mapping) or not paths:
        raise AnsibleFilterError(
            "disk_checks: paths must be a non-empty dict of label -> absolute path, e.g. "
            f"{{'database': '/var/lib/postgresql'}}; got {paths!r}"
        )
    warn = _pct_limit(warn_percent_free, "warn_percent_free")
    fail = _pct_limit(fail_percent_free, "fail_percent_free")
    if warn < fail:
        raise AnsibleFilterError(
            f"disk_checks: warn_percent_free ({warn}) must be at least fail_percent_free ({fail}): "
            "less free space is worse, so the warning has to come first"
        )
    threshold = {"warn_percent_free": warn, "fail_percent_free": fail}

    results = []
    for raw_label, raw_path in paths.items():
        label = _need_name(raw_label, "each label in paths", "disk_checks")
        if not isinstance(raw_path, str) or not raw_path.startswith("/"):
            raise AnsibleFilterError(f"disk_checks: path for {label!r} must be an absolute path, got {raw_path!r}")
        path = _norm(raw_path)
        check = f"disk_free:{label}"
        mount = _covering_mount(mounts, path)
        if mount is None:
            results.append(result(
                check, host, "fail", {"path": path, "mount": None}, threshold,
                f"{label} ({path}): no mounted file system covers this path in the gathered mount facts",
            ))
            continue

        size_total = _int_or_none(mount, "size_total")
        size_available = _int_or_none(mount, "size_available")
        inode_total = _int_or_none(mount, "inode_total")
        inode_available = _int_or_none(mount, "inode_available")
        percent_free = _percent(size_available, size_total)
        inodes_free = _percent(inode_available, inode_total)
        value = {
            "path": path,
            "mount": mount["mount"],
            "percent_free": percent_free,
            "bytes_free": size_available,
            "bytes_total": size_total,
            "inodes_percent_free": inodes_free,
        }
        where = "{} ({}) on {}".format(label, path, mount["mount"])
        if percent_free is None:
            results.append(result(
                check, host, "fail", value, threshold,
                "{}: the file system ({}) reports no size, free space cannot be measured".format(
                    where, mount.get("fstype") or "unknown type"),
            ))
            continue

        space_status = classify(percent_free, warn, fail, higher_is_worse=False)
        # File systems without fixed inode tables (btrfs, some network ones) report 0 inodes.
        inode_status = classify(inodes_free, warn, fail, higher_is_worse=False) if inodes_free is not None else "ok"
        status = worst([space_status, inode_status])

        text = f"{where}: {_fmt_pct(percent_free)} free ({human_bytes(size_available)} of {human_bytes(size_total)})"
        if space_status != "ok":
            text += ", at or below the {} limit of {}".format(
                space_status, _fmt_pct(warn if space_status == "warn" else fail))
        parts = [text]
        if inodes_free is not None:
            inode_text = f"inodes {_fmt_pct(inodes_free)} free"
            if inode_status != "ok":
                inode_text += ", at or below the {} limit of {}".format(
                    inode_status, _fmt_pct(warn if inode_status == "warn" else fail))
            parts.append(inode_text)
        results.append(result(check, host, status, value, threshold, "; ".join(parts)))
    return results


class FilterModule:
    """upkeep.runbooks check-result filters."""

    def filters(self):
        return {
            "check_result": check_result,
            "check_evaluate": check_evaluate,
            "disk_checks": disk_checks,
        }
