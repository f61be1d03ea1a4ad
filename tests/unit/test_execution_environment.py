"""execution-environment.yml agrees with the rest of the repository (no image is built here).

`make ee` builds the image (ee/build.sh); these checks keep the definition from drifting: the
tarball it installs is the one `make build` writes, its pins are the tool chain the tests run
with, and ansible-builder accepts it and renders a Containerfile whose pip steps are offline.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def load(name):
    with open(REPO / name) as handle:
        return yaml.safe_load(handle)


def pins():
    found = {}
    for line in (REPO / "requirements-dev.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]+\])?==(\S+)", line.strip())
        if match:
            found[match.group(1).lower()] = match.group(3)
    return found


def test_installs_the_tarball_make_build_writes():
    ee, galaxy = load("execution-environment.yml"), load("galaxy.yml")
    tarball = "%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], galaxy["version"])
    assert ee["additional_build_files"] == [{"src": tarball, "dest": "collections"}]
    assert ee["dependencies"]["galaxy"] == {"collections": [{"name": "collections/" + tarball, "type": "file"}]}
    for ignored in ("ee", "execution-environment.yml", "context"):
        assert ignored in galaxy["build_ignore"]


def test_python_pins_match_the_tool_chain():
    deps = load("execution-environment.yml")["dependencies"]
    wanted = pins()
    listed = [deps["ansible_core"]["package_pip"], deps["ansible_runner"]["package_pip"]] + deps["python"]
    for requirement in listed:
        name, version = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]+\])?==(\S+)$", requirement).groups()
        assert wanted.get(name.lower()) == version, "%s: %s in the EE, %s in requirements-dev.txt" % (
            name, version, wanted.get(name.lower()))


@pytest.mark.skipif(not (Path(sys.executable).parent / "ansible-builder").exists(), reason="no ansible-builder")
def test_ansible_builder_renders_an_offline_build(tmp_path):
    shutil.copy(REPO / "execution-environment.yml", tmp_path / "execution-environment.yml")
    (tmp_path / "upkeep-runbooks-0.1.0.tar.gz").write_bytes(b"")  # only copied into the context
    subprocess.run([str(Path(sys.executable).parent / "ansible-builder"), "create", "-f",
                    str(tmp_path / "execution-environment.yml"), "-c", str(tmp_path / "context")],
                   check=True, capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    containerfile = (tmp_path / "context" / "Containerfile").read_text()
    lines = containerfile.splitlines()
    # pip is pointed at /wheels before the first pip call of any stage, and no longer in the image.
    conf = lines.index("RUN printf '[global]\\nno-index = true\\nfind-links = /wheels\\n' > /etc/pip.conf")
    first_pip = min(i for i, line in enumerate(lines) if "pip install" in line)
    assert conf < first_pip
    assert lines.index("RUN rm -f /etc/pip.conf") > max(i for i, line in enumerate(lines) if "pip install" in line)
    assert lines.index("RUN rm -f /etc/pip.conf") < lines.index("USER 1000")
    assert "PIP_NO_INDEX" not in containerfile
    assert 'ARG PKGMGR="/usr/local/bin/apt-pkgmgr"' in containerfile
    assert (tmp_path / "context" / "_build" / "collections" / "upkeep-runbooks-0.1.0.tar.gz").exists()
