"""dependency_audit with the real pip-audit and npm against the stand-in advisory service on loopback.

The stand-in serves real advisory records (lab/advisories/osv/); the expected advisories of the old pins
are worked out here a second way, from the records' explicit ``versions`` lists, not from the ranges the
server evaluates.
"""

import datetime
import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.fixtures.advisories import REPO_ROOT, AdvisoryService
from tests.integration.module_runner import run_module

pytestmark = pytest.mark.integration

PIP_AUDIT = Path(sys.executable).parent / "pip-audit"
if not PIP_AUDIT.exists():
    pytest.skip("pip-audit is not installed (requirements-dev.txt pins it)", allow_module_level=True)

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "audit"
OLD_REQUIREMENTS = FIXTURES / "requirements-old.txt"
LOCKFILE = FIXTURES / "frontend" / "package-lock.json"
APP_REQUIREMENTS = REPO_ROOT / "lab" / "app" / "requirements.txt"
TODAY = datetime.datetime.now(datetime.timezone.utc).date()
FUTURE = (TODAY + datetime.timedelta(days=30)).isoformat()
PAST = (TODAY - datetime.timedelta(days=1)).isoformat()

# From the real records: what the old pins are known to be affected by.
EXPECTED_PYPI = {
    ("django", "4.2.10"): {"PYSEC-2024-47", "PYSEC-2024-56", "PYSEC-2024-57", "PYSEC-2024-58", "PYSEC-2024-59",
                           "PYSEC-2024-67", "PYSEC-2024-68", "PYSEC-2024-69", "PYSEC-2024-70", "PYSEC-2024-102"},
    ("sqlparse", "0.4.1"): {"PYSEC-2021-333", "PYSEC-2023-87"},
    ("gunicorn", "19.4.5"): {"PYSEC-2018-55"},
}
EXPECTED_NPM = {("lodash", "GHSA-35jh-r3h4-6jhm", "high"), ("lodash", "GHSA-29mw-wpgm-hmr9", "moderate"),
                ("minimist", "GHSA-xvch-5gv4-984h", "critical")}


@pytest.fixture(scope="module")
def advisories():
    service = AdvisoryService()
    yield service
    service.stop()


def _args(advisories, **extra):
    args = {"osv_url": advisories.osv_url, "npm_registry": advisories.npm_registry,
            "pip_audit_executable": str(PIP_AUDIT), "timeout": 120}
    args.update(extra)
    return args


def _ids_from_version_lists(package, version):
    data = json.loads((REPO_ROOT / "lab" / "advisories" / "osv" / ("pypi-%s.json" % package)).read_text())
    return {r["id"] for r in data["records"] if not r.get("withdrawn")
            and any(version in a.get("versions", []) for a in r["affected"])}


def test_old_pins_have_exactly_the_known_advisories(advisories):
    res = run_module("dependency_audit", _args(advisories, pip_requirements=[str(OLD_REQUIREMENTS)]),
                     check_mode=True)
    assert not res.failed, res
    found = {}
    for finding in res["findings"]:
        found.setdefault((finding["package"], finding["version"]), set()).add(finding["id"])
        assert finding["source"] == str(OLD_REQUIREMENTS)
        assert finding["ignored"] is False
    assert found == EXPECTED_PYPI
    for (package, version), ids in EXPECTED_PYPI.items():
        assert _ids_from_version_lists(package, version) == ids
    assert res["counts"]["total"] == res["counts"]["open"] == 13
    assert res["audited"] == [{"source": str(OLD_REQUIREMENTS), "tool": "pip-audit", "packages": 3, "skipped": []}]
    gunicorn = [f for f in res["findings"] if f["package"] == "gunicorn"][0]
    assert gunicorn["fix_versions"] == ["19.5.0"]
    assert "CVE-2018-1000164" in gunicorn["aliases"]


def test_sample_app_pins_have_no_known_advisory(advisories):
    res = run_module("dependency_audit", _args(advisories, pip_requirements=[str(APP_REQUIREMENTS)]))
    assert not res.failed, res
    pins = [line for line in APP_REQUIREMENTS.read_text().splitlines() if "==" in line and not line.startswith("#")]
    assert res["audited"][0]["packages"] == len(pins)
    assert res["counts"]["total"] == 0


def test_installed_environment_is_audited(advisories):
    # The test interpreter's environment has the sample app's requirements installed.
    res = run_module("dependency_audit", _args(advisories, pip_pythons=[sys.executable]))
    assert not res.failed, res
    assert res["audited"][0]["packages"] > 20
    assert res["counts"]["total"] == 0


def test_npm_lock_has_exactly_the_known_advisories(advisories):
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    res = run_module("dependency_audit", _args(advisories, npm_lockfiles=[str(LOCKFILE)]))
    assert not res.failed, res
    assert {(f["package"], f["id"], f["severity"]) for f in res["findings"]} == EXPECTED_NPM
    assert {f["package"]: f["version"] for f in res["findings"]} == {"lodash": "4.17.20", "minimist": "1.2.5"}
    assert res["counts"]["open_by_severity"]["critical"] == 1
    assert [f["severity"] for f in res["findings"]] == ["critical", "high", "moderate"]


def test_ignores_hold_until_they_expire(advisories):
    ignore = [
        {"id": "GHSA-29mw-wpgm-hmr9", "reason": "trim() never sees user input", "expires": FUTURE},
        {"id": "CVE-2021-44906", "reason": "alias of the minimist advisory: wrong package", "expires": FUTURE,
         "package": "lodash"},
        {"id": "PYSEC-2018-55", "reason": "behind nginx, which rejects CRLF in headers", "expires": PAST},
        {"id": "PYSEC-2021-333", "reason": "no strip_comments anywhere", "expires": TODAY.isoformat()},
        {"id": "GHSA-0000-0000-0000", "reason": "left over", "expires": FUTURE},
    ]
    lockfiles = [str(LOCKFILE)] if shutil.which("npm") else []
    res = run_module("dependency_audit", _args(advisories, pip_requirements=[str(OLD_REQUIREMENTS)],
                                               npm_lockfiles=lockfiles, ignore=ignore))
    assert not res.failed, res
    by_id = {f["id"]: f for f in res["findings"]}
    assert by_id["PYSEC-2021-333"]["ignored"] is True           # holds through its expiry day
    assert by_id["PYSEC-2018-55"]["ignored"] is False           # expired: counts again
    assert by_id["PYSEC-2018-55"]["ignore"]["expired"] is True
    assert res["expired_ignores"] == [{"id": "PYSEC-2018-55", "reason": "behind nginx, which rejects CRLF in headers",
                                       "expires": PAST, "package": None}]
    assert [e["id"] for e in res["unused_ignores"]] == (
        ["CVE-2021-44906", "GHSA-0000-0000-0000"] if lockfiles else
        ["GHSA-29mw-wpgm-hmr9", "CVE-2021-44906", "GHSA-0000-0000-0000"])
    if lockfiles:
        assert by_id["GHSA-29mw-wpgm-hmr9"]["ignored"] is True
        assert by_id["GHSA-xvch-5gv4-984h"]["ignored"] is False  # its alias entry is for another package
    assert res["counts"]["ignored"] == (2 if lockfiles else 1)
    assert res["counts"]["open"] == res["counts"]["total"] - res["counts"]["ignored"]
    assert res["findings"][-1]["ignored"] is True  # open ones first


def test_ignore_without_reason_or_with_a_bad_date_is_refused(advisories):
    res = run_module("dependency_audit", _args(advisories, pip_requirements=[str(OLD_REQUIREMENTS)],
                                               ignore=[{"id": "PYSEC-2018-55", "reason": " ", "expires": FUTURE}]))
    assert res.failed and "ignore[0] needs a non-empty reason" in res["msg"]
    res = run_module("dependency_audit", _args(advisories, pip_requirements=[str(OLD_REQUIREMENTS)],
                                               ignore=[{"id": "X", "reason": "r", "expires": "31.12.2026"}]))
    assert res.failed and "ignore[0].expires must be a date YYYY-MM-DD" in res["msg"]


def test_unreachable_service_fails_clearly(advisories, tmp_path):
    res = run_module("dependency_audit", _args(advisories, pip_requirements=[str(OLD_REQUIREMENTS)],
                                               osv_url="http://127.0.13.3:9/v1/query", timeout=30))
    assert res.failed
    assert res["msg"].startswith("Failed to audit %s with pip-audit: " % OLD_REQUIREMENTS)
