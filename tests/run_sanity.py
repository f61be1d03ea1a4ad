#!/usr/bin/env python3
"""Run `ansible-test sanity` on the collection exactly as it ships.

ansible-test needs the collection at .../ansible_collections/upkeep/runbooks. This builds
the tarball (so build_ignore is honoured), installs it into a temporary tree, adds
tests/sanity (the ignore files live there and are not shipped), and runs the sanity tests
in ansible-test's own virtualenvs (`--venv`), with the Python that runs this script.
"""

import glob
import os
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


def main():
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
