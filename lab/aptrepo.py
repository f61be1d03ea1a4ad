#!/usr/bin/env python3
"""A real, signed apt repository on loopback for the patching runbook: the lab, Molecule and the tests.

    aptrepo.py up      --dir DIR [--listen 127.0.0.41:8080] [--snapshot N]
    aptrepo.py publish --dir DIR --snapshot N
    aptrepo.py remove  --dir DIR --package NAME --version VERSION
    aptrepo.py down    --dir DIR
    aptrepo.py status  --dir DIR
    aptrepo.py serve   --dir DIR          (foreground; what `up` runs in the background)

`up` builds the test packages with dpkg-deb (once, into DIR/debs), makes a signing key with
`gpg --batch` (DIR/gnupg, 0700; the public half in DIR/repo-key.asc), creates two aptly local
repositories and publishes them, signed, as two distributions of one repository: `upkeep`
(updates) and `upkeep-security` (security updates, the `*-security` suite apt hosts know). Each
`publish --snapshot N` adds the packages of step N to the local repositories, takes a new aptly
snapshot of each and switches the published distributions to them: a new Release file (new
Date, new hashes) that still lists every earlier version, as a mirror that keeps old versions
does. `remove` drops one version and publishes again: a repository that lacks what another one
had. The HTTP server (Python's http.server, threads) serves DIR/aptly/public on the loopback
address; it keeps the port it was given across stop and start.

Steps (versions 1.0-1, 1.1-1, 1.2-1 ...):

    1  every package at 1.0-1 (upkeep-testconf 1:1.0-1: an epoch)
    2  upkeep-testlib + upkeep-testlib-dep 1.1-1 (security), upkeep-testsvc (now depending on the new
       package upkeep-testhelper), upkeep-testreboot, upkeep-testconf (a changed conffile),
       upkeep-testfail (postinst exits 1), upkeep-testrm (conflicts with upkeep-testlegacy): the set
       staging tests
    3  upkeep-testlib, upkeep-testlib-dep, upkeep-testsvc and upkeep-testhelper 1.2-1: newer than what
       staging tested

A fault hook for "the repository goes down mid-run": while DIR/hold exists the server does not
answer requests for .deb files (they wait); stopping the server then drops those connections,
as a mirror that dies during the download does. Every request is logged to DIR/http.log.

aptly, not reprepro: an aptly local repository keeps every version of a package and its
snapshots are immutable, so a published snapshot can offer 1.2-1 as the candidate while still
providing the 1.1-1 staging tested. Debian bookworm's reprepro (5.3.1) keeps one version per
package and distribution; it could not show the key proof (production installs the tested
version although a newer one is published).

Only the standard library plus the Debian packages aptly, gnupg and dpkg (dpkg-deb) are used,
so labctl, a Molecule playbook and the pytest fixtures (tests/fixtures/apt_repo.py imports this
file) all drive the same code.
"""

import argparse
import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from labproc import alive, free_loopback_port, listening, terminate

SUITE = "upkeep"
SECURITY_SUITE = "upkeep-security"
COMPONENT = "main"
ORIGIN = "upkeep-test"
ARCHITECTURES = ("amd64", "arm64")
KEY_NAME = "upkeep test repository"
KEY_EMAIL = "repo@upkeep.invalid"
MAINTAINER = "upkeep.runbooks tests <tests@upkeep.invalid>"
DEFAULT_LISTEN = "127.0.0.41:8080"
HOLD_FILE = "hold"


class RepoError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------
# the test packages


def _sh(*lines):
    return "#!/bin/sh\nset -e\n" + "\n".join(lines) + "\n"


def _svc_postinst():
    # First installation: enable and start the unit. An upgrade only reloads systemd and does
    # NOT restart the service: it keeps running the old code until someone restarts it.
    return _sh(
        'if [ "$1" = configure ] && [ -d /run/systemd/system ]; then',
        '  systemctl daemon-reload || true',
        '  if [ -z "$2" ]; then',
        '    systemctl enable upkeep-testsvc.service >/dev/null 2>&1 || true',
        '    systemctl start upkeep-testsvc.service || true',
        '  fi',
        'fi')


def _svc_prerm():
    return _sh('if [ "$1" = remove ] && [ -d /run/systemd/system ]; then',
               '  systemctl stop upkeep-testsvc.service || true', 'fi')


def _reboot_postinst():
    # What a kernel's postinst does (through update-notifier's notify-reboot-required).
    return _sh('if [ "$1" = configure ] && [ -n "$2" ]; then',
               '  touch /var/run/reboot-required',
               '  echo upkeep-testreboot >> /var/run/reboot-required.pkgs',
               'fi')


def _failing_postinst():
    return _sh('if [ "$1" = configure ]; then',
               '  echo "upkeep-testfail: simulated configuration failure" >&2',
               '  exit 1',
               'fi')


SERVICE_UNIT = """[Unit]
Description=upkeep.runbooks test service (restart me after an upgrade)

[Service]
ExecStart=/usr/lib/upkeep-test/testsvc
Restart=no

[Install]
WantedBy=multi-user.target
"""


def package_specs():
    """Every package of every step: dicts with name, version, step, suite, depends, files, scripts ..."""
    specs = []

    def add(step, name, version, suite=SUITE, depends=None, conflicts=None, files=None, conffiles=None,
            scripts=None, description=None):
        specs.append(dict(step=step, name=name, version=version, suite=suite, depends=depends,
                          conflicts=conflicts, files=dict(files or {}), conffiles=dict(conffiles or {}),
                          scripts=dict(scripts or {}), description=description or name))

    for step, ver in ((1, "1.0-1"), (2, "1.1-1"), (3, "1.2-1")):
        suite = SECURITY_SUITE if step == 2 else SUITE
        upstream = ver.split("-")[0]
        add(step, "upkeep-testlib-dep", ver, suite=suite,
            files={"usr/lib/upkeep-test/libdep.version": ver + "\n"},
            description="upkeep test library dependency")
        add(step, "upkeep-testlib", ver, suite=suite, depends="upkeep-testlib-dep (>= %s)" % upstream,
            files={"usr/lib/upkeep-test/lib.version": ver + "\n"},
            description="upkeep test library (depends on upkeep-testlib-dep of the same version)")
        if step > 1:
            add(step, "upkeep-testhelper", ver, files={"usr/lib/upkeep-test/helper.version": ver + "\n"},
                description="upkeep test helper the service needs from 1.1 on (new to hosts that had 1.0)")
        add(step, "upkeep-testsvc", ver,
            depends="upkeep-testlib (>= 1.0)" + (", upkeep-testhelper (>= %s)" % upstream if step > 1 else ""),
            files={"usr/lib/upkeep-test/testsvc": "#!/bin/sh\n# upkeep-testsvc %s\nexec sleep infinity\n" % ver,
                   "lib/systemd/system/upkeep-testsvc.service": SERVICE_UNIT},
            scripts={"postinst": _svc_postinst(), "prerm": _svc_prerm()},
            description="upkeep test service with a systemd unit")
    for step, ver in ((1, "1.0-1"), (2, "1.1-1")):
        add(step, "upkeep-testreboot", ver, files={"usr/lib/upkeep-test/reboot.version": ver + "\n"},
            scripts={"postinst": _reboot_postinst()},
            description="upkeep test package whose upgrade asks for a reboot")
        add(step, "upkeep-testconf", "1:" + ver,
            conffiles={"etc/upkeep-testconf.conf": "# upkeep-testconf default configuration\nsetting = %s\n" % ver},
            description="upkeep test package with a conffile that changes")
        add(step, "upkeep-testrm", ver, conflicts="upkeep-testlegacy" if step == 2 else None,
            files={"usr/lib/upkeep-test/rm.version": ver + "\n"},
            description="upkeep test package whose new version conflicts with upkeep-testlegacy")
    add(1, "upkeep-testfail", "1.0-1", files={"usr/lib/upkeep-test/fail.version": "1.0-1\n"},
        description="upkeep test package (this version configures fine)")
    add(2, "upkeep-testfail", "1.1-1", files={"usr/lib/upkeep-test/fail.version": "1.1-1\n"},
        scripts={"postinst": _failing_postinst()}, description="upkeep test package whose postinst fails")
    add(1, "upkeep-testlegacy", "1.0-1", files={"usr/lib/upkeep-test/legacy.version": "1.0-1\n"},
        description="upkeep test package the new upkeep-testrm conflicts with")
    return specs


def deb_filename(spec):
    return "%s_%s_all.deb" % (spec["name"], spec["version"].replace(":", "%3a"))


def build_deb(spec, outdir):
    """Build one package with dpkg-deb into `outdir` (skipped when it exists); returns its path."""
    target = os.path.join(outdir, deb_filename(spec))
    if os.path.exists(target):
        return target
    root = target + ".root"
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "DEBIAN"))
    doc = "usr/share/doc/%s/README" % spec["name"]
    contents = dict(spec["files"], **spec["conffiles"])
    contents[doc] = "%s %s: a package the upkeep.runbooks tests build.\n" % (spec["name"], spec["version"])
    for rel, text in contents.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, 0o755 if text.startswith("#!") else 0o644)
    control = ["Package: %s" % spec["name"], "Version: %s" % spec["version"], "Architecture: all",
               "Maintainer: %s" % MAINTAINER, "Section: misc", "Priority: optional"]
    if spec["depends"]:
        control.append("Depends: %s" % spec["depends"])
    if spec["conflicts"]:
        control.append("Conflicts: %s" % spec["conflicts"])
    control.append("Description: %s\n %s %s, built by lab/aptrepo.py." % (spec["description"], spec["name"],
                                                                            spec["version"]))
    with open(os.path.join(root, "DEBIAN", "control"), "w") as handle:
        handle.write("\n".join(control) + "\n")
    if spec["conffiles"]:
        with open(os.path.join(root, "DEBIAN", "conffiles"), "w") as handle:
            handle.write("".join("/%s\n" % rel for rel in sorted(spec["conffiles"])))
    for name, text in spec["scripts"].items():
        path = os.path.join(root, "DEBIAN", name)
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, 0o755)  # noqa: S103 - maintainer scripts must be executable
    tmp = target + ".tmp"
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, tmp])
    os.replace(tmp, target)
    shutil.rmtree(root, ignore_errors=True)
    return target


def build_debs(outdir):
    """Build every test package (idempotent); returns {(name, version): path}."""
    os.makedirs(outdir, exist_ok=True)
    return {(spec["name"], spec["version"]): build_deb(spec, outdir) for spec in package_specs()}


# --------------------------------------------------------------------------------------
# helpers


def run(argv, env=None, check=True):
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RepoError("%s exited %d: %s" % (" ".join(argv[:4]), proc.returncode,
                                              (proc.stderr or proc.stdout).strip()[-2000:]))
    return proc


def split_listen(text):
    host, _, port = text.rpartition(":")
    if not host.startswith("127."):
        raise RepoError("%s is not a loopback address: the repository only ever binds 127.0.0.0/8" % host)
    return host, int(port)


# --------------------------------------------------------------------------------------
# the repository


class AptRepo(object):
    """One signed repository in `workdir`, served on `host:port` (a free port when None).

    workdir holds debs/, gnupg/ (0700), repo-key.asc, aptly.conf, aptly/ (aptly's root; the
    published tree is aptly/public), state.json, http.log, server.pid and, as a fault hook, hold.
    """

    def __init__(self, workdir, host="127.0.0.1", port=None, debs_dir=None):
        self.workdir = os.path.abspath(str(workdir))
        self.host = host
        self.port = port
        self.debs_dir = os.path.abspath(str(debs_dir)) if debs_dir else self.path("debs")
        self.proc = None
        self._log = None
        state = self._state()
        if state.get("port") and not self.port:
            self.port = state["port"]
            self.host = state.get("host", self.host)

    # -- where things are ----------------------------------------------------------------
    def path(self, *names):
        return os.path.join(self.workdir, *names)

    @property
    def url(self):
        return "http://%s:%d/" % (self.host, self.port)

    @property
    def key_file(self):
        """The repository's public key (ASCII armour), for a host's `Signed-By:`."""
        return self.path("repo-key.asc")

    @property
    def public_dir(self):
        return self.path("aptly", "public")

    @property
    def log_file(self):
        return self.path("http.log")

    def sources(self, signed_by="/etc/apt/keyrings/upkeep-test.asc", suites=(SUITE, SECURITY_SUITE)):
        """A deb822 .sources stanza naming this repository, for /etc/apt/sources.list.d/."""
        return ("Types: deb\nURIs: %s\nSuites: %s\nComponents: %s\nSigned-By: %s\n"
                % (self.url, " ".join(suites), COMPONENT, signed_by))

    # -- state -----------------------------------------------------------------------------
    def _state(self):
        try:
            with open(self.path("state.json")) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return {}

    def _save(self, **changes):
        state = self._state()
        state.update(changes)
        tmp = self.path("state.json.tmp")
        with open(tmp, "w") as handle:
            json.dump(state, handle, indent=2, sort_keys=True)
        os.replace(tmp, self.path("state.json"))

    @property
    def step(self):
        """The newest step published (0: nothing yet)."""
        return self._state().get("step", 0)

    # -- key and aptly ---------------------------------------------------------------------
    @property
    def gnupg_home(self):
        """The signing key's GnuPG home (0700). gpg-agent's socket lives in it and a Unix socket path
        must stay short, so a deep work directory (pytest's) gets one in /tmp named after it."""
        inside = self.path("gnupg")
        if len(inside) < 80:
            return inside
        return "/tmp/upkeep-gnupg-%s" % hashlib.sha256(self.workdir.encode()).hexdigest()[:12]

    def _gpg_env(self):
        return dict(os.environ, GNUPGHOME=self.gnupg_home)

    def _stop_agent(self):
        """gpg and aptly start a gpg-agent for the key: stop it once they are done, none lingers."""
        if os.path.isdir(self.gnupg_home):
            run(["gpgconf", "--kill", "gpg-agent"], env=self._gpg_env(), check=False)

    def fingerprint(self):
        return self._state().get("fingerprint")

    def _make_key(self):
        if self.fingerprint() and os.path.exists(self.key_file):
            return
        home = self.gnupg_home
        os.makedirs(home, mode=0o700, exist_ok=True)
        os.chmod(home, 0o700)
        params = ("%%no-protection\nKey-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\n"
                  "Name-Real: %s\nName-Email: %s\nExpire-Date: 0\n%%commit\n" % (KEY_NAME, KEY_EMAIL))
        try:
            proc = subprocess.run(["gpg", "--batch", "--gen-key"], input=params, env=self._gpg_env(), text=True,
                                  capture_output=True, check=False)
            if proc.returncode != 0:
                raise RepoError("gpg --gen-key failed: %s" % proc.stderr.strip()[-2000:])
            out = run(["gpg", "--batch", "--with-colons", "--list-secret-keys", KEY_EMAIL],
                      env=self._gpg_env()).stdout
            fingerprint = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))
            armour = run(["gpg", "--batch", "--armor", "--export", fingerprint], env=self._gpg_env()).stdout
        finally:
            self._stop_agent()
        with open(self.key_file, "w") as handle:
            handle.write(armour)
        self._save(fingerprint=fingerprint)

    def _aptly(self, *args):
        return run(["aptly", "-config=" + self.path("aptly.conf")] + list(args), env=self._gpg_env())

    def init(self):
        """Packages, key, aptly configuration and the two local repositories. Idempotent."""
        if shutil.which("aptly") is None:
            raise RepoError("aptly is not installed (Debian package aptly; make deps installs it)")
        os.makedirs(self.workdir, exist_ok=True)
        build_debs(self.debs_dir)
        self._make_key()
        if not os.path.exists(self.path("aptly.conf")):
            with open(self.path("aptly.conf"), "w") as handle:
                json.dump({"rootDir": self.path("aptly"), "architectures": list(ARCHITECTURES),
                           "gpgProvider": "gpg", "downloadConcurrency": 1}, handle, indent=2)
        if not self._state().get("repos"):
            for repo in (SUITE, SECURITY_SUITE):
                self._aptly("repo", "create", "-distribution=" + repo, "-component=" + COMPONENT, repo)
            self._save(repos=[SUITE, SECURITY_SUITE], snapshots=0)
        return self

    def _publish_current(self):
        """New snapshots of both local repositories; publish them (first time) or switch to them."""
        state = self._state()
        number = state.get("snapshots", 0) + 1
        key = "-gpg-key=" + self.fingerprint()
        try:
            self._publish_snapshots(state, number, key)
        finally:
            self._stop_agent()
        self._save(snapshots=number, published=True)

    def _publish_snapshots(self, state, number, key):
        for repo in (SUITE, SECURITY_SUITE):
            snapshot = "%s-%d" % (repo, number)
            self._aptly("snapshot", "create", snapshot, "from", "repo", repo)
            if state.get("published"):
                self._aptly("publish", "switch", key, repo, snapshot)
            else:
                self._aptly("publish", "snapshot", key, "-distribution=" + repo, "-origin=" + ORIGIN,
                            "-label=" + ("%s-security" % ORIGIN if repo == SECURITY_SUITE else ORIGIN),
                            snapshot)

    def publish(self, step):
        """Add the packages of steps up to `step` and publish new snapshots (one Release per call)."""
        self.init()
        done = self.step
        if step <= done:
            raise RepoError("step %d is already published (newest: %d)" % (step, done))
        debs = build_debs(self.debs_dir)
        for suite in (SUITE, SECURITY_SUITE):
            files = [debs[(spec["name"], spec["version"])] for spec in package_specs()
                     if done < spec["step"] <= step and spec["suite"] == suite]
            if files:
                self._aptly("repo", "add", suite, *files)
        self._publish_current()
        self._save(step=step)
        return self

    def remove(self, name, version):
        """Drop one version from the repository and publish: a repository that lacks it."""
        removed = False
        for repo in (SUITE, SECURITY_SUITE):
            out = self._aptly("repo", "remove", repo, "Name (= %s), $Version (= %s)" % (name, version)).stdout
            removed = removed or "removed" in out
        if not removed:
            raise RepoError("%s %s is not in the repository" % (name, version))
        self._publish_current()
        return self

    def add(self, *deb_files, suite=SUITE):
        """Add .deb files to `suite` and publish: another build of a version already removed (a
        rebuilt package on a mirror), or a package from elsewhere."""
        self.init()
        self._aptly("repo", "add", suite, *deb_files)
        self._publish_current()
        return self

    def release_sha256(self, suite=SUITE):
        """SHA-256 of the published InRelease of `suite` (what a host downloads)."""
        with open(os.path.join(self.public_dir, "dists", suite, "InRelease"), "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()

    # -- the server --------------------------------------------------------------------------
    def pid(self):
        if self.proc is not None:
            return self.proc.pid if self.proc.poll() is None else None
        try:
            with open(self.path("server.pid")) as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    @property
    def running(self):
        return self.pid() is not None

    def start(self, detach=False, timeout=15):
        """Serve the published tree on host:port (kept across restarts). Idempotent."""
        if self.running and listening(self.host, self.port):
            return self
        if not self.port:
            self.port = free_loopback_port(self.host)
        self._save(host=self.host, port=self.port)
        if listening(self.host, self.port):
            raise RepoError("%s:%d is taken by a process this repository did not start" % (self.host, self.port))
        self._log = open(self.path("server.out"), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "serve", "--dir", self.workdir],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=detach)
        with open(self.path("server.pid"), "w") as handle:
            handle.write(str(self.proc.pid))
        deadline = time.monotonic() + timeout
        while not listening(self.host, self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RepoError("the repository server did not listen on %s:%d; see %s"
                                % (self.host, self.port, self.path("server.out")))
            time.sleep(0.05)
        return self

    def stop(self, timeout=10):
        """Stop the server: open connections (a held download) are cut. Idempotent."""
        pid = self.pid()
        proc, self.proc = self.proc, None
        if pid is not None:
            terminate(pid, proc, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        try:
            os.unlink(self.path("server.pid"))
        except OSError:
            pass

    def close(self):
        """Stop the server and remove a GnuPG home kept outside the work directory (see gnupg_home)."""
        self.stop()
        self._stop_agent()
        if not self.gnupg_home.startswith(self.workdir + os.sep):
            shutil.rmtree(self.gnupg_home, ignore_errors=True)

    def hold(self):
        """From now on requests for .deb files wait (until release() or the server stops)."""
        open(self.path(HOLD_FILE), "w").close()

    def release(self):
        try:
            os.unlink(self.path(HOLD_FILE))
        except OSError:
            pass

    def requests(self):
        """The request lines logged so far (`GET /pool/... 200` ...)."""
        try:
            with open(self.log_file) as handle:
                return [line.rstrip("\n") for line in handle]
        except OSError:
            return []

    def wait_for_request(self, fragment, timeout=60):
        """Wait until a logged request line contains `fragment`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(fragment in line for line in self.requests()):
                return True
            time.sleep(0.1)
        raise RepoError("no request for %r within %ds" % (fragment, timeout))

    def up(self, step=1, detach=False):
        self.init()
        if self.step < step:
            self.publish(step)
        return self.start(detach=detach)


# --------------------------------------------------------------------------------------
# the HTTP server (the `serve` command)


def serve(workdir):
    repo = AptRepo(workdir)
    root = repo.public_dir
    hold = repo.path(HOLD_FILE)
    log = open(repo.log_file, "a", buffering=1)

    class Handler(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=root, **kwargs)

        def do_GET(self):  # noqa: N802 - the http.server name
            if self.path.split("?")[0].endswith(".deb") and os.path.exists(hold):
                log.write("%.3f HELD %s\n" % (time.time(), self.path))
                while os.path.exists(hold):
                    time.sleep(0.05)
            super().do_GET()

        def log_message(self, fmt, *args):
            log.write("%.3f %s\n" % (time.time(), fmt % args))

    server = http.server.ThreadingHTTPServer((repo.host, repo.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever()


# --------------------------------------------------------------------------------------
# command line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "publish", "remove", "down", "status", "serve"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--dir", required=True)
        if name == "up":
            cmd.add_argument("--listen", default=DEFAULT_LISTEN)
            cmd.add_argument("--snapshot", type=int, default=1)
        if name == "publish":
            cmd.add_argument("--snapshot", type=int, required=True)
        if name == "remove":
            cmd.add_argument("--package", required=True)
            cmd.add_argument("--version", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            serve(args.dir)
            return 0
        if args.command == "up":
            host, port = split_listen(args.listen)
            repo = AptRepo(args.dir, host=host, port=port).up(step=args.snapshot, detach=True)
            print(json.dumps({"url": repo.url, "key_file": repo.key_file, "step": repo.step,
                              "suites": [SUITE, SECURITY_SUITE]}))
            return 0
        repo = AptRepo(args.dir)
        if args.command == "publish":
            repo.publish(args.snapshot)
        elif args.command == "remove":
            repo.remove(args.package, args.version)
        elif args.command == "down":
            repo.stop()
        print(json.dumps({"url": repo.url if repo.port else None, "running": repo.running, "step": repo.step,
                          "key_file": repo.key_file}))
        return 0
    except RepoError as exc:
        print("aptrepo: %s" % exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
