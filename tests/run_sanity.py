#!/usr/bin/env python3
"""Run `ansible-test sanity` on the collection exactly as it ships.

ansible-test needs the collection at .../ansible_collections/upkeep/runbooks. This builds
the tarball (so build_ignore is honoured), installs it into a temporary tree, adds
tests/sanity (the ignore files live there and are not shipped), and runs the sanity tests
in ansible-test's own virtualenvs (`--venv`), with the Python that runs this script.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
PYVER = "%d.%d" % sys.version_info[:2]


def run(cmd, **kw):
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


# ansible-test bootstraps pip into each of its virtualenvs with a get-pip script it downloads
# from its own file host, which this machine cannot reach (only package registries are).
# It looks in its cache first, so the cache gets an equivalent bootstrap: the interpreter's
# bundled pip (ensurepip), then the pinned pip from PyPI. get-pip's own flags are dropped.
PIP_BOOTSTRAP = """\
import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap()
# ensurepip points PIP_CONFIG_FILE at /dev/null for itself; the pip install below must
# see the machine's pip configuration (index, certificates) like any other pip run.
if os.environ.get("PIP_CONFIG_FILE") == os.devnull:
    del os.environ["PIP_CONFIG_FILE"]
args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
"""


def provide_pip_bootstrap():
    import ansible_test  # noqa: F401 - located through the running interpreter

    source = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")
    with open(source) as handle:
        version = re.search(r"pip='([0-9.]+)'", handle.read()).group(1)
    cache = os.path.expanduser("~/.ansible/test/cache/get_pip_%s.py" % version.replace(".", "_"))
    if not os.path.exists(cache) or open(cache).read() != PIP_BOOTSTRAP:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        with open(cache, "w") as handle:
            handle.write(PIP_BOOTSTRAP)


def main():
    provide_pip_bootstrap()
    work = tempfile.mkdtemp(prefix="upkeep-sanity-")
    try:
        run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", work, TOP], cwd=TOP)
        tarball = glob.glob(os.path.join(work, "upkeep-runbooks-*.tar.gz"))[0]
        run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--no-deps", "--force",
             "-p", os.path.join(work, "collections"), tarball])
        dest = os.path.join(work, "collections", "ansible_collections", "upkeep", "runbooks")
        if os.path.isdir(os.path.join(TOP, "tests", "sanity")):
            shutil.copytree(os.path.join(TOP, "tests", "sanity"), os.path.join(dest, "tests", "sanity"))
        cmd = [os.path.join(BIN, "ansible-test"), "sanity", "--venv", "--python", PYVER, "--color", "no"]
        cmd += sys.argv[1:]
        proc = subprocess.run(cmd, cwd=dest, check=False)
        return proc.returncode
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
