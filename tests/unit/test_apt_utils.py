"""Pure helpers of the apt backend (plugins/module_utils/_apt.py): parsing apt's output, versions, patterns."""

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _apt

SIMULATION = """\
Reading package lists...
Building dependency tree...
The following packages will be upgraded:
  upkeep-testlib upkeep-testlib-dep
Inst upkeep-testlib-dep [1.0-1] (1.1-1 upkeep-test-security:upkeep-security [all])
Inst upkeep-testlib [1.0-1] (1.1-1 upkeep-test-security:upkeep-security [all])
Inst linux-image-6.1.0-30-amd64 (6.1.124-1 Debian-Security:12/stable-security [amd64])
Inst libfoo:i386 [2.0-1] (1.9-1 Debian:12.9/stable [i386])
Inst upkeep-testconf [1:1.0-1] (1:1.0-1 upkeep-test:upkeep [all])
Remv upkeep-testlegacy [1.0-1]
Purg oldthing [0.1]
Conf upkeep-testlib-dep (1.1-1 upkeep-test-security:upkeep-security [all])
"""


def test_parse_simulation():
    actions, lines = _apt.parse_simulation(SIMULATION)
    assert [(a["action"], a["name"], a["architecture"], a["from"], a["to"]) for a in actions] == [
        ("upgrade", "upkeep-testlib-dep", "all", "1.0-1", "1.1-1"),
        ("upgrade", "upkeep-testlib", "all", "1.0-1", "1.1-1"),
        ("install", "linux-image-6.1.0-30-amd64", "amd64", None, "6.1.124-1"),
        ("downgrade", "libfoo", "i386", "2.0-1", "1.9-1"),
        ("reinstall", "upkeep-testconf", "all", "1:1.0-1", "1:1.0-1"),
        ("remove", "upkeep-testlegacy", None, "1.0-1", None),
        ("remove", "oldthing", None, "0.1", None),
    ]
    assert lines[0].startswith("Inst upkeep-testlib-dep") and lines[-1].startswith("Conf ")
    assert len(lines) == 8


def test_apt_errors_and_failing_packages():
    out = ("Setting up upkeep-testfail (1.1-1) ...\n"
           "dpkg: error processing package upkeep-testfail (--configure):\n"
           " installed upkeep-testfail package post-installation script subprocess returned error exit status 1\n"
           "Errors were encountered while processing:\n upkeep-testfail\n")
    err = "E: Sub-process /usr/bin/dpkg returned an error code (1)\nE: Sub-process /usr/bin/dpkg returned an error " \
          "code (1)\n"
    assert _apt.apt_errors(out, err) == [
        "dpkg: error processing package upkeep-testfail (--configure):",
        "installed upkeep-testfail package post-installation script subprocess returned error exit status 1",
        "E: Sub-process /usr/bin/dpkg returned an error code (1)"]
    assert _apt.failing_packages(out, err) == ["upkeep-testfail"]
    fetch = ("Err:1 http://127.0.6.1:8080 upkeep InRelease\n  Could not connect\n"
             "W: Some index files failed to download. They have been ignored, or old ones used instead.\n")
    assert _apt.apt_errors(fetch, "") == ["Err:1 http://127.0.6.1:8080 upkeep InRelease",
                                          "W: Some index files failed to download. They have been ignored, or old "
                                          "ones used instead."]


def test_parse_release_of_a_clearsigned_file():
    text = ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\nLabel: Debian-Security\n"
            "Suite: stable-security\nCodename: bookworm-security\nDate: Sat, 30 Nov 2026 10:00:00 UTC\n"
            "Valid-Until: Sat, 07 Dec 2026 10:00:00 UTC\nSHA256:\n abc 123 main/binary-amd64/Packages\n"
            "-----BEGIN PGP SIGNATURE-----\n\nxyz\n-----END PGP SIGNATURE-----\n")
    fields = _apt.parse_release(text)
    assert fields["Suite"] == "stable-security" and fields["Valid-Until"].startswith("Sat, 07 Dec")
    assert fields["SHA256"] == "" and "Hash" not in fields
    assert _apt.parse_release("Origin: x\nSuite: y\n") == {"Origin": "x", "Suite": "y"}


@pytest.mark.parametrize("origin, expected", [
    ({"suite": "stable-security", "codename": "bookworm-security", "label": "Debian-Security"}, True),
    ({"suite": "upkeep-security", "codename": "upkeep-security", "label": "upkeep-test-security"}, True),
    ({"suite": "jammy-security", "codename": None, "label": "Ubuntu"}, True),
    ({"suite": "stable", "codename": "bookworm", "label": "Debian"}, False),
    ({"suite": "stable-updates", "codename": "bookworm-updates", "label": "Debian"}, False),
    ({"suite": None, "codename": None, "label": None}, False),
])
def test_is_security(origin, expected):
    assert _apt.is_security(origin) is expected


def test_patterns():
    assert _apt.matches("postgresql-15", ["nginx", "postgresql-*"]) == "postgresql-*"
    assert _apt.matches("postgresql", ["postgresql-*"]) is None
    assert _apt.matches("linux-image-6.1.0-30-amd64", _apt.REBOOT_PATTERNS) == "linux-image-*"
    assert _apt.matches("intel-microcode", _apt.REBOOT_PATTERNS) == "*-microcode"
    assert _apt.matches("libc6", _apt.REBOOT_PATTERNS) and not _apt.matches("libcurl4", _apt.REBOOT_PATTERNS)


@pytest.mark.parametrize("first, second, order", [
    ("1.0-1", "1.1-1", -1), ("1.1-1", "1.0-1", 1), ("1.0-1", "1.0-1", 0),
    ("1:0.9-1", "1.0-1", 1), ("1.0~rc1-1", "1.0-1", -1), ("1.0-1", "1.0-1+deb12u1", -1),
    ("15.10-0+deb12u1", "15.8-0+deb12u1", 1), ("6.1.0-30", "6.1.0-9", 1), ("1.0a", "1.0", 1),
    ("1.0+b1", "1.0", 1), ("1.00", "1.0", 0), ("~~", "~", -1), ("1.0-A", "1.0-a", -1), ("1.0.1", "1.0a", 1),
])
def test_debian_version_compare(first, second, order):
    result = _apt.debian_version_compare(first, second)
    assert (result > 0) - (result < 0) == order


def test_read_os_release(tmp_path):
    (tmp_path / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
                                         'VERSION_ID="12"\nVERSION_CODENAME=bookworm\n')
    (tmp_path / "debian_version").write_text("12.11\n")
    assert _apt.read_os_release(str(tmp_path / "os-release"), str(tmp_path / "debian_version")) == {
        "id": "debian", "version_id": "12", "version_codename": "bookworm",
        "pretty_name": "Debian GNU/Linux 12 (bookworm)", "debian_version": "12.11"}
    assert _apt.read_os_release(str(tmp_path / "none"), str(tmp_path / "none"))["id"] == "unknown"
