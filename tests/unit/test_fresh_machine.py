"""`make deps` and the lab image build as a fresh machine (or another branch's) sees them.

CI's machine already has every Debian package, so the install branch of `make deps` never
runs there. These tests run the real Makefile with a PATH in which `dpkg-query` reports every
package as missing, `apt-get` only records how it was called and `id` says who we are, and
assert what a newcomer's machine would have run.
"""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


def deb_packages():
    out = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(REPO),
                          "--eval", "print-deb-packages: ; @echo $(DEB_PACKAGES)", "print-deb-packages"],
                         capture_output=True, text=True, check=True).stdout
    packages = out.split()
    assert packages, "DEB_PACKAGES is empty"
    return packages


def fake_tools(bindir, log, uid):
    """dpkg-query: nothing installed; apt-get: appends one line per call to `log`; id -u: `uid`."""
    bindir.mkdir()
    scripts = {
        "dpkg-query": "#!/bin/sh\necho \"dpkg-query: no packages found matching $3\" >&2\nexit 1\n",
        "apt-get": "#!/bin/sh\nprintf 'DEBIAN_FRONTEND=%%s %%s\\n' \"${DEBIAN_FRONTEND:-}\" \"$*\" >> %s\n"
                   % shlex.quote(str(log)),
        "id": "#!/bin/sh\nif [ \"$1\" = -u ]; then echo %d; else exec /usr/bin/id \"$@\"; fi\n" % uid,
    }
    for name, body in scripts.items():
        path = bindir / name
        path.write_text(body)
        path.chmod(0o755)


def run_deps(tmp_path, uid):
    log = tmp_path / "apt-get.log"
    fake_tools(tmp_path / "bin", log, uid)
    env = dict(os.environ, PATH="%s:%s" % (tmp_path / "bin", os.environ.get("PATH", "/usr/bin:/bin")))
    env.pop("DEBIAN_FRONTEND", None)
    proc = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "deps"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, calls


def test_root_runs_one_update_and_one_install_naming_every_package(tmp_path):
    proc, calls = run_deps(tmp_path, uid=0)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(calls) == 2, calls
    assert calls[0] == "DEBIAN_FRONTEND= update"
    frontend, verb, *args = calls[1].split(" ")
    assert frontend == "DEBIAN_FRONTEND=noninteractive"
    assert verb == "install"
    options = [arg for arg in args if arg.startswith("-")]
    assert options == ["-y", "--no-install-recommends"]
    assert [arg for arg in args if not arg.startswith("-")] == deb_packages()
    assert "command not found" not in proc.stderr


def test_non_root_prints_the_command_and_fails_without_running_anything(tmp_path):
    proc, calls = run_deps(tmp_path, uid=1000)
    assert proc.returncode != 0
    assert calls == []
    packages = deb_packages()
    assert "Missing Debian packages: " + " ".join(packages) in proc.stderr
    command = "apt-get update && apt-get install -y --no-install-recommends " + " ".join(packages)
    assert command in proc.stderr


def test_nothing_missing_runs_nothing(tmp_path):
    log = tmp_path / "apt-get.log"
    fake_tools(tmp_path / "bin", log, uid=0)
    (tmp_path / "bin" / "dpkg-query").write_text("#!/bin/sh\necho 'install ok installed'\n")
    env = dict(os.environ, PATH="%s:%s" % (tmp_path / "bin", os.environ.get("PATH", "/usr/bin:/bin")))
    proc = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "deps"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert not log.exists()


def test_an_image_already_built_becomes_latest_again(tmp_path):
    """lab/build-images.sh with the image of this definition already built (another branch's may
    be `latest`): it builds nothing, points `latest` at this one and prints its reference."""
    calls = tmp_path / "podman.log"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    podman = bindir / "podman"
    podman.write_text("#!/bin/sh\necho \"$*\" >> %s\nexit 0\n" % shlex.quote(str(calls)))
    podman.chmod(0o755)
    env = dict(os.environ, PATH="%s:%s" % (bindir, os.environ.get("PATH", "/usr/bin:/bin")),
               UPKEEP_LAB_MIRROR="http://deb.example.invalid/debian")
    proc = subprocess.run([str(REPO / "lab" / "build-images.sh")], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    image = proc.stdout.strip().splitlines()[-1]
    assert image.startswith("localhost/upkeep-lab:") and image != "localhost/upkeep-lab:latest"
    lines = calls.read_text().splitlines()
    assert lines == ["image exists %s" % image, "tag %s localhost/upkeep-lab:latest" % image], lines


# Programs the tests and the lab look up that a fresh Debian machine does not get from
# DEB_PACKAGES, each with the reason that is fine.
NOT_FROM_DEB_PACKAGES = {
    "make": "the newcomer's first command is make itself",
    "npm": "Node.js comes with the machine image; the npm audit tests skip without it",
    "chromium-browser": "a fallback name for other distributions; Debian's chromium is in DEB_PACKAGES",
}
_LOOKUP = r"""(?:which\(\s*["']([A-Za-z0-9_.+-]+)["']|["']((?:/usr)?/s?bin/[A-Za-z0-9_.+-]+)["'])"""


def _programs_looked_up():
    """{program name: absolute path the code names, or None when it is looked up on PATH}."""
    import re

    found = {}
    for root in ("tests", "lab", "bench"):
        for path in (REPO / root).rglob("*.py"):
            for match in re.finditer(_LOOKUP, path.read_text(errors="replace")):
                if match.group(1):
                    found.setdefault(match.group(1), None)
                else:
                    found[os.path.basename(match.group(2))] = match.group(2)
    return found


def _owning_package(path):
    candidates = [path, path.replace("/usr/sbin/", "/sbin/").replace("/usr/bin/", "/bin/"), os.path.realpath(path)]
    for candidate in candidates:
        proc = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True, check=False)
        owners = [line.split(":", 1)[0] for line in proc.stdout.splitlines() if not line.startswith("diversion by")]
        if proc.returncode == 0 and owners:
            return owners[0].split(",")[0].strip()
    return None


def _direct_dependencies(packages):
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Depends}\n"] + list(packages),
                         capture_output=True, text=True, check=False).stdout
    return {alt.split()[0].split(":")[0] for dep in out.replace("\n", ",").split(",") if dep.strip()
            for alt in dep.split("|")[:1]}


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian machine")
def test_every_program_the_tests_use_comes_from_a_listed_package():
    """CI's machine has every package an earlier session installed, so a program a new test needs
    (nginx, rsyslogd, pgbackrest ...) works there even when nobody added its package to
    DEB_PACKAGES; a newcomer's `make test` would then fail. Every program the tests, the lab and
    the benchmarks look up must come from DEB_PACKAGES (or a direct dependency of one), an
    essential or required package, the .venv, or be listed above with a reason."""
    listed = set(deb_packages())
    allowed = listed | _direct_dependencies(listed)
    problems = []
    programs = _programs_looked_up()
    assert {"nginx", "rsyslogd", "pgbackrest", "redis-server", "aptly"} <= set(programs), sorted(programs)
    for program, named in sorted(programs.items()):
        if program in NOT_FROM_DEB_PACKAGES or (REPO / ".venv" / "bin" / program).exists():
            continue
        path = named or shutil.which(program, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        if path is None or not os.path.exists(path):
            problems.append("%s: not installed here, so its package cannot be checked" % program)
            continue
        package = _owning_package(path)
        if package is None:
            problems.append("%s (%s): no Debian package owns it" % (program, path))
            continue
        fields = subprocess.run(["dpkg-query", "-W", "-f", "${Essential} ${Priority}", package],
                                capture_output=True, text=True, check=False).stdout.split()
        if package in allowed or "yes" in fields or "required" in fields:
            continue
        problems.append("%s comes from package %s, which is not in DEB_PACKAGES" % (program, package))
    assert not problems, "\n".join(problems)
