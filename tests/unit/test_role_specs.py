"""Every role's meta/argument_specs.yml mirrors its defaults/main.yml, and names follow the house style."""

import pathlib

import pytest
import yaml

ROLES = sorted(p for p in (pathlib.Path(__file__).resolve().parents[2] / "roles").iterdir() if p.is_dir())


def load(path):
    with open(path) as handle:
        return yaml.safe_load(handle) or {}


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_argument_specs_mirror_defaults(role):
    defaults = load(role / "defaults" / "main.yml")
    options = load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    required = {name for name, spec in options.items() if spec.get("required")}
    assert set(defaults) == set(options) - required, "defaults and argument_specs disagree on the variable names"
    for name, value in defaults.items():
        assert options[name].get("default") == value, "%s: default %r in defaults, %r in argument_specs" % (
            name, value, options[name].get("default"))
    for name in required:
        assert "default" not in options[name], "%s is required and must not have a default" % name
    for name, spec in options.items():
        assert spec.get("description"), "%s has no description" % name


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_variable_prefixes(role):
    prefix = role.name + "_"
    for name in load(role / "defaults" / "main.yml"):
        assert name.startswith(prefix), "public variable %s of role %s must start with %s" % (name, role.name, prefix)
    vars_file = role / "vars" / "main.yml"
    if vars_file.exists():
        for name in load(vars_file):
            assert name.startswith("__" + prefix), "internal variable %s must start with __%s" % (name, prefix)


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_preflight_is_assertions_only(role):
    preflight = role / "tasks" / "preflight.yml"
    if not preflight.exists():
        pytest.skip("role has no preflight")
    for task in load(preflight):
        assert "ansible.builtin.assert" in task, "preflight task %r is not an assertion" % task.get("name")
