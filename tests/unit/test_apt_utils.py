"""Pure helpers of the apt backend (plugins/module_utils/_apt.py): parsing apt's output, versions, patterns."""

import os
import subprocess
import sys
from unittest import mock

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


# --------------------------------------------------------------------------------------
# AptHost helpers that read the system, with apt_pkg and the commands replaced


class FakeModule:
    def __init__(self, outputs, binaries=()):
        self.outputs = outputs
        self.binaries = set(binaries)
        self.commands = []

    def run_command(self, argv, environ_update=None, check_rc=False):
        self.commands.append((argv, environ_update))
        for prefix, answer in self.outputs.items():
            if " ".join(argv).startswith(prefix):
                return answer
        return 0, "", ""

    def get_bin_path(self, name, opt_dirs=None):
        return "/usr/sbin/" + name if name in self.binaries else None


@pytest.fixture
def host_of(tmp_path):
    def make(outputs=None, binaries=()):
        fake_apt_pkg = mock.MagicMock()
        fake_apt_pkg.config.find_dir.side_effect = lambda key: str(tmp_path / key.replace("::", "_")) + "/"
        fake_apt_pkg.config.find_file.return_value = str(tmp_path / "dpkg" / "status")
        fake_apt_pkg.config.find.return_value = "amd64"
        with mock.patch.object(_apt, "apt_pkg", fake_apt_pkg):
            host = _apt.AptHost(FakeModule(outputs or {}, binaries), lock_timeout=1, host="db1")
        (tmp_path / "dpkg" / "info").mkdir(parents=True, exist_ok=True)
        return host
    return make


def test_needrestart_batch_output_and_services(host_of, tmp_path):
    out = ("NEEDRESTART-VER: 3.6\nNEEDRESTART-KCUR: 6.1.0-28-amd64\nNEEDRESTART-KEXP: 6.1.0-30-amd64\n"
           "NEEDRESTART-KSTA: 3\nNEEDRESTART-SVC: nginx.service\nNEEDRESTART-SVC: cron.service\n")
    host = host_of({"/usr/sbin/needrestart -b -r l": (0, out, "")}, binaries=["needrestart"])
    assert host.needrestart() == (["cron.service", "nginx.service"], "3")
    env = dict(host.module.commands[-1][1])
    assert "NEEDRESTART_SUSPEND" not in env
    assert host_of().needrestart() is None


def test_stale_services_are_the_running_units_older_than_their_package(host_of, tmp_path):
    # systemctl show answers in the order asked: other, stopped, upkeep-testsvc (sorted).
    show = ("Id=other.service\nActiveState=active\nActiveEnterTimestamp=@3000\n\n"
            "Id=stopped.service\nActiveState=inactive\nActiveEnterTimestamp=\n\n"
            "Id=upkeep-testsvc.service\nActiveState=active\nActiveEnterTimestamp=@1000\n")
    host = host_of({"systemctl show": (0, show, "")})
    info = tmp_path / "dpkg" / "info"
    (info / "upkeep-testsvc.list").write_text("/lib/systemd/system/upkeep-testsvc.service\n/usr/bin/x\n"
                                              "/lib/systemd/system/upkeep-testsvc@.service\n")
    (info / "other.list").write_text("/lib/systemd/system/other.service\n")
    (info / "stopped.list").write_text("/usr/lib/systemd/system/stopped.service\n")
    for name in ("upkeep-testsvc", "other", "stopped"):
        os.utime(info / ("%s.list" % name), (2000, 2000))
    assert host.unit_files("upkeep-testsvc") == ["upkeep-testsvc.service"]
    with mock.patch.object(_apt.AptHost, "systemd_running", return_value=True):
        assert host.stale_services([("upkeep-testsvc", "all"), ("other", "all"), ("stopped", "all")]) == [
            "upkeep-testsvc.service"]


def test_reboot_reasons(host_of, tmp_path):
    host = host_of()
    flag = tmp_path / "reboot-required"
    flag.write_text("")
    (tmp_path / "reboot-required.pkgs").write_text("linux-image-6.1.0-30-amd64\nlibc6\nlibc6\n")
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / ("vmlinuz-%s" % os.uname()[2])).write_text("")
    (boot / "vmlinuz-99.0.0-1-amd64").write_text("")
    with mock.patch.object(_apt, "REBOOT_REQUIRED", str(flag)), \
            mock.patch.object(_apt.AptHost, "newest_kernel", return_value="99.0.0-1-amd64"):
        needed, reasons = host.reboot_status(["libc6", "upkeep-testlib"], _apt.REBOOT_PATTERNS)
    assert needed
    assert reasons[0] == "%s exists (packages: libc6, linux-image-6.1.0-30-amd64)" % flag
    assert reasons[1] == "the running kernel is %s, the newest installed is 99.0.0-1-amd64" % os.uname()[2]
    assert reasons[2] == "upgraded packages that need a reboot: libc6"
    assert host.newest_kernel(str(boot)) == "99.0.0-1-amd64"
    with mock.patch.object(_apt, "REBOOT_REQUIRED", str(tmp_path / "none")), \
            mock.patch.object(_apt.AptHost, "newest_kernel", return_value=None):
        assert host.reboot_status(["upkeep-testlib"], _apt.REBOOT_PATTERNS) == (False, [])


def test_lock_holder_names_the_process_and_the_wait_times_out(host_of, tmp_path):
    lock = tmp_path / "lock-frontend"
    lock.write_text("")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
                               "fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
                               str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert _apt.lock_holder(str(lock)) == holder.pid
        host = host_of()
        with pytest.raises(_apt.AptError) as err:
            host.wait_for_lock(paths=(str(lock),))
        assert str(err.value).startswith("Failed to lock dpkg on db1: %s is held by process %d (" % (lock, holder.pid))
        assert str(err.value).endswith("after waiting 1 s (lock_timeout)")
    finally:
        holder.kill()
        holder.wait()
    assert _apt.lock_holder(str(lock)) is None


def test_install_errors_become_apt_errors(host_of):
    out = "dpkg: error processing package upkeep-testfail (--configure):\n installed upkeep-testfail package " \
          "post-installation script subprocess returned error exit status 1\n"
    host = host_of({"apt-get -q -o Dpkg::Use-Pty=0 -y --no-download": (100, out, "E: Sub-process /usr/bin/dpkg "
                                                                                 "returned an error code (1)\n")})
    with pytest.raises(_apt.AptError) as err:
        host.install(["upkeep-testfail=1.1-1"])
    assert err.value.extra == {"phase": "install", "failed_packages": ["upkeep-testfail"]}
    argv, env = host.module.commands[-1]
    assert argv[-1] == "upkeep-testfail=1.1-1" and "--no-install-recommends" in argv
    assert "Dpkg::Options::=--force-confold" in argv and "DPkg::Lock::Timeout=1" in argv
    assert env["DEBIAN_FRONTEND"] == "noninteractive" and env["NEEDRESTART_MODE"] == "l"
    lock = host_of({"apt-get -q -o Dpkg::Use-Pty=0 -y --no-download": (
        100, "", "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)\n")})
    with pytest.raises(_apt.AptError) as err:
        lock.install(["x=1"])
    assert err.value.msg == ("Failed to lock dpkg on db1: E: Could not get lock /var/lib/dpkg/lock-frontend. It is "
                             "held by process 4242 (apt-get)")
    down = host_of({"apt-get -q -o Dpkg::Use-Pty=0 -o APT::Update::Error-Mode=any update": (
        100, "Err:1 http://127.0.6.1:8080 upkeep InRelease\n", "E: Failed to fetch http://127.0.6.1:8080/dists/"
        "upkeep/InRelease  Could not connect\n")})
    with pytest.raises(_apt.AptError) as err:
        down.update()
    assert err.value.msg.startswith("Failed to refresh the apt lists on db1: Err:1 http://127.0.6.1:8080 upkeep "
                                    "InRelease; E: Failed to fetch")
