# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""apt and dpkg on a Debian host: the one backend the patching modules use.

What apt knows (installed and candidate versions, every version a repository offers, origins,
the SHA-256 of each .deb, holds, the configured sources) is read through the ``apt_pkg`` bindings
(Debian package python3-apt, imported lazily). What apt would *do* is asked from apt itself with
``apt-get -s`` (the resolver apt-get install runs), and changes are made with the apt-get and dpkg
command lines, which are the interfaces an operator knows and apt supports:

* ``apt-get update -o APT::Update::Error-Mode=any`` (a repository that cannot be reached is an error);
* ``apt-get install --download-only`` of exact ``name=version`` pairs, then ``apt-get install
  --no-download`` of the same pairs with ``--force-confold``/``--force-confdef`` and
  ``DPkg::Lock::Timeout``: everything is downloaded before dpkg touches anything;
* ``dpkg --audit``/``dpkg-query`` for interrupted or half-configured packages, ``dpkg --configure -a``
  to repair them (only when the caller allows it).

Helpers raise :class:`AptError` whose text reads "Failed to <verb> <object>: <cause>"; the modules
pass it to ``fail_json`` unchanged.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import fnmatch
import hashlib
import os
import re
import socket
import struct
import time
import traceback

APT_PKG_IMPORT_ERROR = None
try:
    import apt_pkg  # noqa: F401 - availability is checked by ensure_apt_pkg()
except ImportError:
    apt_pkg = None
    APT_PKG_IMPORT_ERROR = traceback.format_exc()

# Upgrades of these packages are only complete after a reboot (kernel, C library, init, the
# system bus, microcode and firmware). fnmatch patterns on the binary package name.
REBOOT_PATTERNS = (
    "linux-image-*", "linux-modules-*", "linux-firmware", "firmware-*", "*-microcode", "libc6", "libc6-*",
    "systemd", "systemd-sysv", "libsystemd0", "udev", "dbus", "dbus-daemon", "dbus-system-bus-common",
    "cryptsetup", "cryptsetup-initramfs", "initramfs-tools",
)
APT_TIMERS = ("apt-daily.timer", "apt-daily-upgrade.timer")
APT_SERVICES = ("apt-daily.service", "apt-daily-upgrade.service")
DPKG_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock")
LISTS_LOCK = "lock"
REBOOT_REQUIRED = "/var/run/reboot-required"
STATUS_FILE_TYPE = "Debian dpkg status file"
UNIT_DIRS = ("/lib/systemd/system/", "/usr/lib/systemd/system/", "/etc/systemd/system/")
KEEP_OUTPUT = 30

# apt, dpkg and the tools their maintainer scripts call must never ask a question.
QUIET_ENV = {
    "LC_ALL": "C", "LANG": "C", "LANGUAGE": "C",
    "DEBIAN_FRONTEND": "noninteractive",
    "APT_LISTCHANGES_FRONTEND": "none",
    "APT_LISTBUGS_FRONTEND": "none",
    "UCF_FORCE_CONFFOLD": "1",
    # needrestart's apt hook would restart services (or ask): the module asks needrestart itself,
    # in list mode, after the installation.
    "NEEDRESTART_MODE": "l",
    "NEEDRESTART_SUSPEND": "1",
}
CONFFILE_OPTIONS = ("-o", "Dpkg::Options::=--force-confold", "-o", "Dpkg::Options::=--force-confdef")

_INST_RE = re.compile(r"^Inst (\S+) (?:\[([^\]]+)\] )?\((\S+)(?: (.*?))? \[([^\]]+)\]\)")
_REMV_RE = re.compile(r"^(Remv|Purg) (\S+)(?: \[([^\]]+)\])?")
_SECURITY_RE = re.compile(r"-security$", re.IGNORECASE)


class AptError(Exception):
    """A step failed; ``str()`` is the complete user-facing message ("Failed to ...")."""

    def __init__(self, msg, **extra):
        super(AptError, self).__init__(msg)
        self.msg = msg
        self.extra = extra


def ensure_apt_pkg(module):
    """Fail the module with missing_required_lib when python3-apt is not importable."""
    if apt_pkg is None:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib("python3-apt (apt_pkg)", url="https://packages.debian.org/python3-apt"),
                         exception=APT_PKG_IMPORT_ERROR)


# --------------------------------------------------------------------------------------
# pure helpers


def matches(name, patterns):
    """The first fnmatch pattern of ``patterns`` matching ``name``, else None."""
    for pattern in patterns or ():
        if fnmatch.fnmatchcase(name, pattern):
            return pattern
    return None


def _char_order(char):
    if char == "~":
        return -1
    if char.isdigit():
        return 0
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(first, second):
    """dpkg's comparison of an upstream version or a revision: alternating non-digit and digit runs."""
    while first or second:
        text_a = re.match(r"[^0-9]*", first).group()
        text_b = re.match(r"[^0-9]*", second).group()
        for index in range(max(len(text_a), len(text_b))):
            order_a = _char_order(text_a[index]) if index < len(text_a) else 0
            order_b = _char_order(text_b[index]) if index < len(text_b) else 0
            if order_a != order_b:
                return order_a - order_b
        first, second = first[len(text_a):], second[len(text_b):]
        digits_a = re.match(r"[0-9]*", first).group()
        digits_b = re.match(r"[0-9]*", second).group()
        if int(digits_a or 0) != int(digits_b or 0):
            return int(digits_a or 0) - int(digits_b or 0)
        first, second = first[len(digits_a):], second[len(digits_b):]
    return 0


def _split_version(version):
    epoch, sep, rest = version.partition(":")
    if not sep:
        epoch, rest = "0", version
    upstream, sep, revision = rest.rpartition("-")
    if not sep:
        upstream, revision = rest, ""
    return int(epoch or 0), upstream, revision


def debian_version_compare(first, second):
    """Negative, zero or positive as ``first`` sorts before, equal to or after ``second`` (Debian policy 5.6.12)."""
    epoch_a, upstream_a, revision_a = _split_version(first)
    epoch_b, upstream_b, revision_b = _split_version(second)
    if epoch_a != epoch_b:
        return epoch_a - epoch_b
    return _compare_part(upstream_a, upstream_b) or _compare_part(revision_a, revision_b)


def version_compare(first, second):
    """apt's version comparison (``apt_pkg.version_compare``; the same rules in Python without python3-apt)."""
    if apt_pkg is not None:
        return apt_pkg.version_compare(first, second)
    return debian_version_compare(first, second)


def parse_simulation(text):
    """Actions of an ``apt-get -s`` run: ``[{action, name, architecture, from, to}]`` and the raw lines.

    ``action`` is install (new), upgrade, downgrade, reinstall or remove. Package names come
    without the architecture suffix apt adds for foreign architectures; ``architecture`` has it.
    """
    actions, lines = [], []
    for line in text.splitlines():
        if line.startswith(("Inst ", "Remv ", "Purg ", "Conf ")):
            lines.append(line)
        match = _INST_RE.match(line)
        if match:
            full, old, new, _origins, arch = match.groups()
            name, _sep, qualifier = full.partition(":")
            if old is None:
                kind = "install"
            else:
                order = version_compare(new, old)
                kind = "upgrade" if order > 0 else "downgrade" if order < 0 else "reinstall"
            actions.append({"action": kind, "name": name, "architecture": qualifier or arch, "from": old, "to": new})
            continue
        match = _REMV_RE.match(line)
        if match:
            full, old = match.group(2), match.group(3)
            name, _sep, qualifier = full.partition(":")
            actions.append({"action": "remove", "name": name, "architecture": qualifier or None, "from": old,
                            "to": None})
    return actions, lines


def apt_errors(out, err):
    """The lines that explain an apt-get or dpkg failure: E:/W: lines and dpkg's error paragraphs."""
    picked = []
    lines = (out or "").splitlines() + (err or "").splitlines()
    for index, line in enumerate(lines):
        text = line.strip()
        if text.startswith(("E: ", "Err:")) or "dpkg: error processing" in text:
            picked.append(text)
            if "dpkg: error processing" in text and index + 1 < len(lines):
                picked.append(lines[index + 1].strip())
        elif text.startswith("W: ") and ("Failed to fetch" in text or "index files failed" in text):
            picked.append(text)
    seen = set()
    return [line for line in picked if not (line in seen or seen.add(line))]


def failing_packages(out, err):
    """Packages dpkg reported as failed (``dpkg: error processing package X (--configure):``)."""
    found = []
    for line in (out or "").splitlines() + (err or "").splitlines():
        match = re.search(r"dpkg: error processing (?:package|archive) (\S+)", line)
        if match:
            name = match.group(1).split(":")[0]
            if name not in found:
                found.append(name)
    return found


def parse_release(text):
    """Top-level fields of a Release or (clearsigned) InRelease file."""
    if text.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
        _head, _sep, rest = text.partition("\n\n")
        text = rest.split("\n-----BEGIN PGP SIGNATURE-----", 1)[0]
    fields = {}
    for line in text.splitlines():
        if not line or line[0] in " \t" or ":" not in line:
            continue
        key, _sep, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def is_security(origin):
    """True for a version that comes from a security suite (``*-security`` or a ``*-Security`` label)."""
    return bool(_SECURITY_RE.search(origin.get("suite") or "") or _SECURITY_RE.search(origin.get("codename") or "")
                or _SECURITY_RE.search(origin.get("label") or ""))


def read_os_release(path="/etc/os-release", debian_version="/etc/debian_version"):
    fields = {}
    try:
        with open(path) as handle:
            for line in handle:
                key, sep, value = line.strip().partition("=")
                if sep:
                    fields[key] = value.strip().strip('"').strip("'")
    except OSError:
        pass
    try:
        with open(debian_version) as handle:
            deb = handle.read().strip() or None
    except OSError:
        deb = None
    return {"id": fields.get("ID") or "unknown", "version_id": fields.get("VERSION_ID"),
            "version_codename": fields.get("VERSION_CODENAME"), "pretty_name": fields.get("PRETTY_NAME"),
            "debian_version": deb}


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def lock_holder(path):
    """PID of the process holding a write lock on ``path`` (fcntl, as apt and dpkg lock), else None."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    except OSError:
        return None
    try:
        query = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        l_type, _whence, _start, _len, pid = struct.unpack("hhqqi", answer)
        return pid if l_type != fcntl.F_UNLCK else None
    except OSError:
        return None
    finally:
        os.close(fd)


def process_name(pid):
    try:
        with open("/proc/%d/comm" % pid) as handle:
            return handle.read().strip()
    except OSError:
        return "?"


# --------------------------------------------------------------------------------------
# the host


class AptHost(object):
    """apt and dpkg on the host the module runs on.

    ``lock_timeout`` bounds every wait for the dpkg lock (apt-get's ``DPkg::Lock::Timeout`` and
    this class's own wait before ``dpkg --configure -a``). ``host`` names the host in messages.
    """

    def __init__(self, module, lock_timeout=300, host=None):
        self.module = module
        self.lock_timeout = int(lock_timeout)
        self.host = host or socket.gethostname()
        apt_pkg.init_config()
        apt_pkg.init_system()
        self.lists_dir = apt_pkg.config.find_dir("Dir::State::lists")
        self.archives_dir = apt_pkg.config.find_dir("Dir::Cache::archives")
        self.info_dir = os.path.join(os.path.dirname(apt_pkg.config.find_file("Dir::State::status")), "info")
        self._architecture = apt_pkg.config.find("APT::Architecture")
        self._cache = None
        self.commands = []

    # -- running commands ------------------------------------------------------------------
    def run(self, argv, quiet_env=True):
        env = dict(QUIET_ENV) if quiet_env else {"LC_ALL": "C", "LANG": "C"}
        self.commands.append(" ".join(argv))
        rc, out, err = self.module.run_command(argv, environ_update=env, check_rc=False)
        return rc, out or "", err or ""

    def apt_get(self, *args):
        return self.run(["apt-get", "-q", "-o", "Dpkg::Use-Pty=0"] + list(args))

    # -- the cache -------------------------------------------------------------------------
    def cache(self, refresh=False):
        """(Cache, DepCache, PackageRecords, SourceList), read again after a change with refresh=True."""
        if self._cache is None or refresh:
            try:
                cache = apt_pkg.Cache(None)
                depcache = apt_pkg.DepCache(cache)
                records = apt_pkg.PackageRecords(cache)
                sources = apt_pkg.SourceList()
                sources.read_main_list()
            except SystemError as exc:
                raise AptError("Failed to read the apt cache on %s: %s" % (self.host, str(exc).strip())) from None
            self._cache = (cache, depcache, records, sources)
        return self._cache

    @property
    def architecture(self):
        """dpkg's native architecture (``APT::Architecture``)."""
        return self._architecture

    def package(self, name, architecture=None):
        cache = self.cache()[0]
        keys = [(name, architecture)] if architecture and architecture != "all" else []
        keys.append(name)
        for key in keys:
            try:
                return cache[key]
            except KeyError:
                continue
        return None

    def installed_version(self, name, architecture=None):
        pkg = self.package(name, architecture)
        if pkg is None or pkg.current_ver is None:
            return None
        return pkg.current_ver.ver_str

    def is_held(self, name, architecture=None):
        pkg = self.package(name, architecture)
        return pkg is not None and pkg.selected_state == apt_pkg.SELSTATE_HOLD

    @staticmethod
    def _repository_files(version):
        return [(pf, index) for pf, index in version.file_list if pf.index_type != STATUS_FILE_TYPE]

    def find_version(self, name, version, architecture=None):
        pkg = self.package(name, architecture)
        if pkg is None:
            return None
        for ver in pkg.version_list:
            if ver.ver_str == version:
                return ver
        return None

    def deb_sha256(self, version):
        """SHA-256 of the .deb of a version as its repository index lists it (None when unknown)."""
        records = self.cache()[2]
        for entry in self._repository_files(version):
            if records.lookup(entry):
                found = records.hashes.find("SHA256")
                if found is not None:
                    return str(found).split(":", 1)[-1]
        return None

    def source_package(self, version):
        records = self.cache()[2]
        for entry in self._repository_files(version):
            if records.lookup(entry):
                return records.source_pkg or version.parent_pkg.name
        return version.parent_pkg.name

    def available(self, name, architecture=None):
        """Every version repositories offer for a package: ``[{version, deb_sha256}]``, newest first."""
        pkg = self.package(name, architecture)
        if pkg is None:
            return []
        found = []
        for ver in pkg.version_list:
            if self._repository_files(ver):
                found.append({"version": ver.ver_str, "deb_sha256": self.deb_sha256(ver)})
        return found

    # -- sources and their Release files ---------------------------------------------------
    def _source_bases(self):
        """[(id, uri, dist, list-file prefix)] of every configured source."""
        bases = []
        for meta in self.cache()[3].list:
            uri, dist = meta.uri, meta.dist
            if dist.endswith("/"):
                prefix = uri + ("" if dist in ("/", "./") else dist)
            else:
                prefix = uri + "dists/" + dist + "/"
            base = os.path.join(self.lists_dir, apt_pkg.uri_to_filename(prefix))
            bases.append(("%s %s" % (uri, dist), uri, dist, base))
        return bases

    def source_identity(self, source_id):
        """The identity of one source: its Release file's fields, date and SHA-256 as downloaded."""
        for ident, uri, dist, base in self._source_bases():
            if ident != source_id:
                continue
            entry = {"id": ident, "uri": uri, "dist": dist, "origin": None, "label": None, "suite": None,
                     "codename": None, "date": None, "valid_until": None, "release_file": None, "sha256": None,
                     "signed": False}
            for name in ("InRelease", "Release"):
                path = base + name
                if not os.path.isfile(path):
                    continue
                try:
                    with open(path, "rb") as handle:
                        raw = handle.read()
                except OSError:
                    continue
                fields = parse_release(raw.decode("utf-8", "replace"))
                entry.update(origin=fields.get("Origin"), label=fields.get("Label"), suite=fields.get("Suite"),
                             codename=fields.get("Codename"), date=fields.get("Date"),
                             valid_until=fields.get("Valid-Until"), release_file=name,
                             sha256=hashlib.sha256(raw).hexdigest(),
                             signed=name == "InRelease" or os.path.isfile(base + "Release.gpg"))
                break
            return entry
        return None

    def source_of(self, package_file):
        """Id of the configured source a package index file came from (the longest matching list prefix)."""
        filename = os.path.basename(package_file.filename or "")
        best = None
        for ident, _uri, _dist, base in self._source_bases():
            prefix = os.path.basename(base)
            if filename.startswith(prefix) and (best is None or len(prefix) > len(best[1])):
                best = (ident, prefix)
        return best[0] if best else None

    def origin_of(self, version):
        """Where a version comes from: origin, label, suite, codename, component, site, repositories, security."""
        files = self._repository_files(version)
        info = {"origin": None, "label": None, "suite": None, "codename": None, "component": None, "site": None,
                "repositories": [], "security": False}
        for pf, _index in files:
            origin = {"origin": pf.origin or None, "label": pf.label or None, "suite": pf.archive or None,
                      "codename": pf.codename or None, "component": pf.component or None, "site": pf.site or None}
            if info["suite"] is None or (is_security(origin) and not info["security"]):
                info.update(origin)
            info["security"] = info["security"] or is_security(origin)
            ident = self.source_of(pf)
            if ident and ident not in info["repositories"]:
                info["repositories"].append(ident)
        info["repositories"].sort()
        return info

    # -- dpkg state ------------------------------------------------------------------------
    def dpkg_problems(self):
        """Packages dpkg has not finished with: ``[{name, version, status}]`` (half-configured, unpacked ...)."""
        rc, out, err = self.run(["dpkg-query", "-W", "-f", "${binary:Package}\t${Version}\t${db:Status-Abbrev}\n"],
                                quiet_env=False)
        if rc != 0:
            raise AptError("Failed to read the dpkg status on %s: %s" % (self.host, (err or out).strip()))
        problems = []
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) != 3 or len(parts[2]) < 2:
                continue
            status = parts[2]
            if status[1] in "HUFWt" or status[2:3] == "R":
                problems.append({"name": parts[0].split(":")[0], "version": parts[1], "status": status.strip()})
        return problems

    def dpkg_audit(self):
        """The text of ``dpkg --audit`` (empty when dpkg has nothing to report)."""
        _rc, out, err = self.run(["dpkg", "--audit"], quiet_env=False)
        return (out + err).strip()

    def interrupted(self):
        """True when a dpkg run was interrupted (its journal in /var/lib/dpkg/updates is not empty)."""
        updates = os.path.join(os.path.dirname(self.info_dir), "updates")
        try:
            return any(name.isdigit() for name in os.listdir(updates))
        except OSError:
            return False

    def wait_for_lock(self, deadline=None, paths=DPKG_LOCKS, what="dpkg"):
        """Wait until no process holds the dpkg locks; AptError naming the holder after lock_timeout."""
        deadline = deadline or time.monotonic() + self.lock_timeout
        while True:
            held = [(path, lock_holder(path)) for path in paths]
            held = [(path, pid) for path, pid in held if pid]
            if not held:
                return
            if time.monotonic() >= deadline:
                path, pid = held[0]
                raise AptError("Failed to lock %s on %s: %s is held by process %d (%s) after waiting %d s "
                               "(lock_timeout)" % (what, self.host, path, pid, process_name(pid), self.lock_timeout))
            time.sleep(0.5)

    def configure_pending(self):
        """``dpkg --configure -a`` (after waiting for the lock); AptError when it fails."""
        self.wait_for_lock()
        rc, out, err = self.run(["dpkg", "--force-confold", "--force-confdef", "--configure", "-a"])
        if rc != 0:
            detail = "; ".join(apt_errors(out, err)[:KEEP_OUTPUT]) or (err or out).strip()[-2000:]
            raise AptError("Failed to repair dpkg on %s with dpkg --configure -a: %s" % (self.host, detail))
        return out

    # -- apt timers ------------------------------------------------------------------------
    @staticmethod
    def systemd_running():
        return os.path.isdir("/run/systemd/system")

    def pause_timers(self):
        """Stop the apt timers that are active (apt-daily, apt-daily-upgrade) for the run; returns them."""
        if not self.systemd_running():
            return []
        rc, out, _err = self.run(["systemctl", "is-active"] + list(APT_TIMERS), quiet_env=False)
        states = out.split()
        active = [unit for unit, state in zip(APT_TIMERS, states) if state == "active"]
        if active:
            self.run(["systemctl", "stop"] + active, quiet_env=False)
        return active

    def resume_timers(self, timers):
        if timers:
            self.run(["systemctl", "start"] + list(timers), quiet_env=False)

    def wait_for_apt_services(self, deadline=None):
        """Wait while apt-daily(-upgrade).service run (unattended-upgrades runs inside the latter)."""
        if not self.systemd_running():
            return
        deadline = deadline or time.monotonic() + self.lock_timeout
        while True:
            _rc, out, _err = self.run(["systemctl", "is-active"] + list(APT_SERVICES), quiet_env=False)
            busy = ("activating", "active", "deactivating")
            running = [unit for unit, state in zip(APT_SERVICES, out.split()) if state in busy]
            if not running:
                return
            if time.monotonic() >= deadline:
                raise AptError("Failed to lock dpkg on %s: %s still running after %d s (lock_timeout)"
                               % (self.host, ", ".join(running), self.lock_timeout))
            time.sleep(1)

    # -- apt-get ---------------------------------------------------------------------------
    def update(self):
        """``apt-get update`` (after waiting for the lists lock); any repository that cannot be reached is an error."""
        self.wait_for_lock(paths=(os.path.join(self.lists_dir, LISTS_LOCK),), what="the apt lists")
        rc, out, err = self.apt_get("-o", "APT::Update::Error-Mode=any", "update")
        if rc != 0:
            detail = "; ".join(apt_errors(out, err)[:KEEP_OUTPUT]) or (err or out).strip()[-2000:]
            raise AptError("Failed to refresh the apt lists on %s: %s" % (self.host, detail))
        self._cache = None

    def _install_args(self, specs, allow_downgrades=False, allow_held=False, removals=()):
        args = ["--no-install-recommends"]
        if allow_downgrades:
            args.append("--allow-downgrades")
        if allow_held:
            args.append("--allow-change-held-packages")
        return args + ["install"] + list(specs) + ["%s-" % name for name in removals]

    def simulate(self, specs, allow_downgrades=False, allow_held=False, removals=()):
        """``apt-get -s install`` of exact specs: (actions, raw lines); AptError when apt refuses."""
        rc, out, err = self.apt_get("-s", *self._install_args(specs, allow_downgrades, allow_held, removals))
        if rc != 0:
            detail = "; ".join(apt_errors(out, err)[:KEEP_OUTPUT]) or (err or out).strip()[-2000:]
            raise AptError("Failed to simulate apt-get install %s on %s: %s"
                           % (" ".join(list(specs) + ["%s-" % n for n in removals]), self.host, detail))
        return parse_simulation(out)

    def download(self, specs, allow_downgrades=False, allow_held=False):
        """Download every archive first: a repository failing now leaves the host untouched."""
        rc, out, err = self.apt_get("-y", "--download-only", *self._install_args(specs, allow_downgrades, allow_held))
        if rc != 0:
            detail = "; ".join(apt_errors(out, err)[:KEEP_OUTPUT]) or (err or out).strip()[-2000:]
            raise AptError("Failed to download the packages on %s: %s; nothing was installed"
                           % (self.host, detail), phase="download")

    def install(self, specs, allow_downgrades=False, allow_held=False, removals=()):
        """Install from the archives already downloaded (``--no-download``); returns apt-get's output."""
        rc, out, err = self.apt_get(
            "-y", "--no-download", "-o", "DPkg::Lock::Timeout=%d" % self.lock_timeout, *(CONFFILE_OPTIONS + tuple(
                self._install_args(specs, allow_downgrades, allow_held, removals))))
        self._cache = None
        if rc != 0:
            detail = apt_errors(out, err)
            lock = [line for line in detail if "Could not get lock" in line or "Unable to acquire" in line]
            if lock:
                raise AptError("Failed to lock dpkg on %s: %s" % (self.host, "; ".join(lock)), phase="lock")
            raise AptError("; ".join(detail[:KEEP_OUTPUT]) or (err or out).strip()[-2000:], phase="install",
                           failed_packages=failing_packages(out, err))
        return out

    def cached_archive(self, name, version, architecture):
        """Path of the .deb of ``name`` ``version`` kept in apt's archive cache, else None."""
        escaped = version.replace(":", "%3a")
        for arch in (architecture, "all", self.architecture):
            path = os.path.join(self.archives_dir, "%s_%s_%s.deb" % (name, escaped, arch))
            if os.path.isfile(path):
                rc, out, _err = self.run(["dpkg-deb", "-f", path, "Package", "Version"], quiet_env=False)
                fields = parse_release(out) if rc == 0 else {}
                if fields.get("Package") == name and fields.get("Version") == version:
                    return path
        return None

    # -- after a change: reboot and services ---------------------------------------------
    def unit_files(self, name, architecture=None):
        """systemd service units an installed package ships (from dpkg's file list)."""
        units = []
        for candidate in ("%s:%s.list" % (name, architecture or self.architecture), "%s.list" % name):
            path = os.path.join(self.info_dir, candidate)
            try:
                with open(path) as handle:
                    for raw in handle:
                        line = raw.strip()
                        if line.startswith(UNIT_DIRS) and line.endswith(".service") and "@" not in line:
                            units.append(os.path.basename(line))
            except OSError:
                continue
            break
        return sorted(set(units))

    def active_units(self, units):
        units = sorted(set(units))
        if not units or not self.systemd_running():
            return []
        _rc, out, _err = self.run(["systemctl", "is-active"] + units, quiet_env=False)
        return [unit for unit, state in zip(units, out.split()) if state in ("active", "activating", "reloading")]

    def needrestart(self):
        """needrestart's batch answer (``needrestart -b -r l``): (services, kernel status) or None without it."""
        binary = self.module.get_bin_path("needrestart", opt_dirs=["/usr/sbin", "/sbin"])
        if not binary:
            return None
        rc, out, _err = self.run([binary, "-b", "-r", "l"], quiet_env=False)
        if rc != 0:
            return None
        services, kernel = [], None
        for line in out.splitlines():
            key, _sep, value = line.partition(":")
            if key.strip() == "NEEDRESTART-SVC":
                services.append(value.strip())
            elif key.strip() == "NEEDRESTART-KSTA":
                kernel = value.strip()
        return sorted(set(services)), kernel

    def newest_kernel(self, boot="/boot"):
        try:
            names = os.listdir(boot)
        except OSError:
            return None
        versions = [name[len("vmlinuz-"):] for name in names if name.startswith("vmlinuz-")]
        newest = None
        for version in versions:
            if newest is None or version_compare(version, newest) > 0:
                newest = version
        return newest

    def reboot_status(self, changed_names=(), patterns=REBOOT_PATTERNS):
        """(reboot needed, reasons): the reboot-required flag, a newer kernel, needrestart, name patterns."""
        reasons = []
        if os.path.exists(REBOOT_REQUIRED):
            pkgs = []
            try:
                with open(REBOOT_REQUIRED + ".pkgs") as handle:
                    pkgs = sorted(set(line.strip() for line in handle if line.strip()))
            except OSError:
                pass
            reasons.append("%s exists%s" % (REBOOT_REQUIRED, (" (packages: %s)" % ", ".join(pkgs)) if pkgs else ""))
        running = os.uname()[2]
        newest = self.newest_kernel()
        if newest and newest != running:
            reasons.append("the running kernel is %s, the newest installed is %s" % (running, newest))
        answer = self.needrestart()
        if answer is not None and answer[1] in ("2", "3"):
            reasons.append("needrestart reports a pending kernel upgrade (status %s)" % answer[1])
        flagged = sorted(name for name in changed_names if matches(name, patterns))
        if flagged:
            reasons.append("upgraded packages that need a reboot: %s" % ", ".join(flagged))
        return bool(reasons), reasons

    def changed_at(self, name, architecture=None):
        """When dpkg last unpacked a package (the modification time of its file list), else None."""
        for candidate in ("%s:%s.list" % (name, architecture or self.architecture), "%s.list" % name):
            try:
                return os.stat(os.path.join(self.info_dir, candidate)).st_mtime
            except OSError:
                continue
        return None

    def unit_states(self, units):
        """{unit: (active state, unix time it became active or None)} from ``systemctl show``."""
        units = sorted(set(units))
        if not units or not self.systemd_running():
            return {}
        rc, out, _err = self.run(["systemctl", "show", "--timestamp=unix", "-p", "Id", "-p", "ActiveState",
                                  "-p", "ActiveEnterTimestamp"] + units, quiet_env=False)
        states = {}
        # One block per unit, in the order asked (an alias reports the Id of the unit it names).
        for unit, block in zip(units, out.strip().split("\n\n")):
            fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            stamp = fields.get("ActiveEnterTimestamp", "").lstrip("@")
            states[unit] = (fields.get("ActiveState"), int(stamp) if stamp.isdigit() else None)
        return states

    def stale_services(self, packages):
        """Running services shipped by ``packages`` ([(name, architecture)]) that started before dpkg last
        unpacked their package: they still run the old code and need a restart."""
        shipped = {}
        for name, arch in packages:
            changed = self.changed_at(name, arch)
            for unit in self.unit_files(name, arch):
                shipped[unit] = max(shipped.get(unit) or 0, changed or 0)
        stale = []
        for unit, (state, started) in self.unit_states(list(shipped)).items():
            if state in ("active", "activating", "reloading") and (started is None or started <= shipped[unit]):
                stale.append(unit)
        return sorted(stale)

    def services_to_restart(self, packages):
        """(services to restart, whether needrestart was asked): needrestart's list when it is installed,
        plus the running services ``packages`` ship that started before their package was unpacked."""
        found = set(self.stale_services(packages))
        answer = self.needrestart()
        if answer is not None:
            found.update(answer[0])
        return sorted(found), answer is not None


# --------------------------------------------------------------------------------------
# planning


def upgradable(host):
    """Installed packages whose candidate version is newer: ``[{name, architecture, installed, candidate}]``."""
    cache, depcache = host.cache()[:2]
    found = []
    for pkg in cache.packages:
        current = pkg.current_ver
        if current is None:
            continue
        candidate = depcache.get_candidate_ver(pkg)
        if candidate is None or version_compare(candidate.ver_str, current.ver_str) <= 0:
            continue
        found.append({"name": pkg.name, "architecture": pkg.architecture, "installed": current.ver_str,
                      "candidate": candidate.ver_str, "spec": "%s=%s" % (pkg.get_fullname(True), candidate.ver_str)})
    return sorted(found, key=lambda item: (item["name"], item["architecture"]))


def _violations(actions, refused_names):
    """Why a simulated solution is not acceptable for a plan (removals, refused packages, downgrades)."""
    problems = []
    for act in actions:
        if act["action"] == "remove":
            problems.append("would remove %s %s" % (act["name"], act["from"]))
        elif act["action"] == "downgrade":
            problems.append("would downgrade %s to %s" % (act["name"], act["to"]))
        elif act["name"] in refused_names:
            problems.append("needs %s %s, which is %s" % (act["name"], act["to"], refused_names[act["name"]]))
    return problems


def plan_upgrade(host, include=("*",), exclude=(), allow_held=False, reboot_patterns=REBOOT_PATTERNS):
    """What an upgrade would install on this host, as apt's resolver decides it.

    Every upgradable package the patterns select (``include``, then not ``exclude``; held packages
    only with ``allow_held``) is asked for at its candidate version with ``apt-get -s install``.
    New packages the upgrade needs are planned whatever ``include`` says, unless ``exclude`` names them.
    A solution that removes a package, downgrades one, or needs an excluded or held package is
    not acceptable: the packages responsible are held back (each is simulated alone to find them),
    with the reason, and the rest is simulated again. New packages the upgrade needs (for example
    a new kernel ABI package) are part of the plan unless an exclude pattern names them.

    Returns ``(packages, excluded, held_back, simulation lines)``; each package carries its
    installed and new version, origin, repositories, security and reboot flags, the .deb's
    SHA-256 and the active services it ships.
    """
    selected, excluded, held_back, refused = [], [], [], {}
    for item in upgradable(host):
        name = item["name"]
        if not matches(name, include):
            excluded.append({"name": name, "installed": item["installed"], "candidate": item["candidate"],
                             "reason": "not matched by include"})
            refused[name] = "not included"
            continue
        pattern = matches(name, exclude)
        if pattern:
            excluded.append({"name": name, "installed": item["installed"], "candidate": item["candidate"],
                             "reason": "excluded by pattern %s" % pattern})
            refused[name] = "excluded by pattern %s" % pattern
            continue
        if host.is_held(name, item["architecture"]) and not allow_held:
            held_back.append({"name": name, "installed": item["installed"], "candidate": item["candidate"],
                              "reason": "held (apt-mark hold); allow_held includes it"})
            refused[name] = "held"
            continue
        selected.append(item)

    actions, lines = [], []
    for _round in range(len(selected) + 1):
        if not selected:
            actions, lines = [], []
            break
        try:
            actions, lines = host.simulate([item["spec"] for item in selected], allow_held=allow_held)
            together = None
        except AptError as exc:  # apt found no solution at all
            actions, lines, together = [], [], exc.msg
        new_refused = dict(refused)
        for act in actions:
            # New packages the upgrade needs come along whatever `include` says; `exclude` stops them.
            if act["action"] == "install":
                pattern = matches(act["name"], exclude)
                if pattern:
                    new_refused[act["name"]] = "excluded by pattern %s" % pattern
        if together is None and not _violations(actions, new_refused):
            break
        # Find the packages whose own upgrade is not acceptable, hold them back, try the rest again.
        keep = []
        for item in selected:
            try:
                alone, _lines = host.simulate([item["spec"]], allow_held=allow_held)
                problems = _violations(alone, new_refused)
            except AptError as exc:
                problems = ["apt finds no solution: %s" % exc.msg.split(": ", 1)[-1]]
            if problems:
                held_back.append({"name": item["name"], "installed": item["installed"], "candidate": item["candidate"],
                                  "reason": "; ".join(problems)})
                refused[item["name"]] = "held back"
            else:
                keep.append(item)
        if len(keep) == len(selected):
            # Each is fine alone but not all together: hold back the last one and try again.
            last = keep.pop()
            held_back.append({"name": last["name"], "installed": last["installed"], "candidate": last["candidate"],
                              "reason": "cannot be upgraded together with the rest: %s"
                              % (together or "; ".join(_violations(actions, new_refused)))})
            refused[last["name"]] = "held back"
        selected = keep

    packages = []
    for act in actions:
        if act["action"] not in ("upgrade", "install"):
            continue
        version = host.find_version(act["name"], act["to"], act["architecture"])
        origin = host.origin_of(version) if version is not None else {}
        arch = version.arch if version is not None else act["architecture"]
        services = host.active_units(host.unit_files(act["name"], arch)) if act["from"] else []
        packages.append({
            "name": act["name"],
            "architecture": arch,
            "installed": act["from"],
            "version": act["to"],
            "deb_sha256": host.deb_sha256(version) if version is not None else None,
            "source_package": host.source_package(version) if version is not None else act["name"],
            "origin": origin.get("origin"),
            "label": origin.get("label"),
            "suite": origin.get("suite"),
            "codename": origin.get("codename"),
            "component": origin.get("component"),
            "site": origin.get("site"),
            "repositories": origin.get("repositories", []),
            "security": bool(origin.get("security")),
            "reboot": bool(matches(act["name"], reboot_patterns)),
            "services": services,
        })
    return packages, excluded, held_back, lines
