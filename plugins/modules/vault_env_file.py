#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: vault_env_file
short_description: Render an application's secrets env file from the current versions of Vault KV v2 secrets
version_added: 0.3.0
description:
  - Reads the B(current) version of each KV version 2 secret named in O(variables) (the version the custom
    metadata key C(upkeep_current_version) names, written by M(upkeep.runbooks.vault_secret_rotate) and
    M(upkeep.runbooks.vault_pg_rotate); the latest version when a secret has no such pointer) and writes
    one C(KEY=VALUE) line per variable to O(dest), in the order of O(variables).
  - The file format is the plain one the sample application and most env-file loaders read without any shell
    semantics; no quoting, no expansion, the value verbatim after the first C(=). A list value (such as
    C(SECRET_KEY_FALLBACKS)) is written as its items joined with C(,).
  - A value containing a line break, or a list item containing a comma, cannot be represented in that format
    and fails the task before anything is written.
  - Each secret is read once, whatever the number of variables taken from it, so all variables of one path
    come from the same version.
  - The file is written atomically (temporary file in the same directory, fsync, rename) with mode O(mode),
    then given O(owner) and O(group). The task reports a change only when the content, the owner, the group
    or the mode differ.
  - No value is ever returned, logged or shown in a diff. The result names the variables written and those
    whose value changed.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - upkeep.runbooks.vault
attributes:
  check_mode:
    support: full
    details:
      - Reads Vault and the existing file, validates every value, and reports in C(changed) and
        RV(changed_names) what would change. Nothing is written.
  diff_mode:
    support: partial
    details:
      - The diff lists only the names of the variables whose value changes, with the value shown as
        C(<changed>), plus the owner, group and mode when they change. Values are never shown.
  platform:
    platforms: posix
options:
  dest:
    description:
      - The env file to write. Its directory must exist.
    type: path
    required: true
  variables:
    description:
      - The variables of the file, written in this order.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the environment variable (letters, digits and C(_), not starting with a digit).
        type: str
        required: true
      path:
        description:
          - KV path of the secret below O(mount_point), for example V(sampleapp/django).
        type: str
        required: true
      field:
        description:
          - Field of the secret whose value is written. Defaults to O(variables[].name).
        type: str
  owner:
    description:
      - User that owns the file. Defaults to the user running the module (for a new file) or the current owner.
    type: str
  group:
    description:
      - Group of the file. Defaults to the primary group of the user running the module (for a new file) or the
        current group.
    type: str
  mode:
    description:
      - Permissions of the file as an octal number, for example V('0600') or V('0640') (quote it in YAML).
      - A mode that gives access to other users is refused for a file of secrets.
    type: raw
    default: '0600'
  header:
    description:
      - One comment line written at the top of the file (a C(#) is added when it does not start with one), for
        example to say where the file comes from. It must not contain a line break.
    type: str
notes:
  - Run the module on the host that uses the file; it needs hvac there (Debian package C(python3-hvac)).
  - Restart the services that read the file when RV(changed_names) is not empty.
seealso:
  - module: upkeep.runbooks.vault_secret_rotate
  - module: upkeep.runbooks.vault_pg_rotate
"""

EXAMPLES = r"""
- name: Render the sample app's secrets from Vault
  upkeep.runbooks.vault_env_file:
    url: "{{ lab_vault_addr }}"
    token: "{{ vault_token }}"
    dest: /etc/sampleapp/secrets.env
    owner: root
    group: sampleapp
    mode: '0640'
    header: Rendered from Vault by Ansible; do not edit
    variables:
      - {name: DB_USER, path: sampleapp/database, field: username}
      - {name: DB_PASSWORD, path: sampleapp/database, field: password}
      - {name: SECRET_KEY, path: sampleapp/django}
      - {name: SECRET_KEY_FALLBACKS, path: sampleapp/django}
      - {name: JWT_SIGNING_KEY, path: sampleapp/django}
      - {name: JWT_SIGNING_KEY_FALLBACKS, path: sampleapp/django}
  no_log: true
  register: secrets_env

- name: Restart the app when a secret changed
  ansible.builtin.systemd_service:
    name: sampleapp-gunicorn
    state: restarted
  when: secrets_env.changed_names | length > 0
"""

RETURN = r"""
dest:
  description: The file written (or that would be, in check mode).
  returned: always
  type: str
  sample: /etc/sampleapp/secrets.env
names:
  description: Names of the variables in the file, sorted.
  returned: success
  type: list
  elements: str
  sample: [DB_PASSWORD, DB_USER, SECRET_KEY, SECRET_KEY_FALLBACKS]
changed_names:
  description:
    - Names whose value differs from the file before the run (new names included), sorted. Names that were in the
      file before and are no longer written are included too.
  returned: success
  type: list
  elements: str
  sample: [SECRET_KEY, SECRET_KEY_FALLBACKS]
versions:
  description: For each KV path read, the version that was read (the current one).
  returned: success
  type: dict
  sample: {sampleapp/database: 4, sampleapp/django: 7}
"""

import grp  # noqa: E402
import os  # noqa: E402
import pwd  # noqa: E402
import re  # noqa: E402
import stat  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.upkeep.runbooks.plugins.module_utils import _files  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils import _vault  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._envfile import parse_env  # noqa: E402
from ansible_collections.upkeep.runbooks.plugins.module_utils._failure import Failure  # noqa: E402

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CHANGED = "<changed>"


def _breaks_line(text):
    """True when ``text`` holds a character a line-based reader would split on."""
    return len(("x" + text + "x").splitlines()) != 1 or "\x00" in text


def render_value(value, name, where):
    """The text written for ``value``; raises Failure (naming ``name`` only, never the value)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = str(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, list):
        items = []
        for index, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise Failure("Failed to render %s: item %d of %s is a %s; only strings and numbers can be written"
                              % (name, index, where, type(item).__name__))
            item_text = str(item)
            if "," in item_text:
                raise Failure("Failed to render %s: item %d of %s contains a comma, which would split it in two "
                              "when the list is read back" % (name, index, where))
            items.append(item_text)
        text = ",".join(items)
    elif value is None:
        raise Failure("Failed to render %s: %s is null" % (name, where))
    else:
        raise Failure("Failed to render %s: %s is a %s; only strings, numbers and lists can be written"
                      % (name, where, type(value).__name__))
    if _breaks_line(text):
        raise Failure("Failed to render %s: the value of %s contains a line break (or NUL), which an env file "
                      "cannot hold" % (name, where))
    return text


def parse_mode(value):
    """The mode option as an int; raises Failure."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        text = str(value or "").strip()
        if not re.match(r"^0?[0-7]{3,4}$", text):
            raise Failure("Failed to check mode: expected an octal mode such as '0600' or '0640', got %r" % (value,))
        mode = int(text, 8)
    if mode & ~0o7777:
        raise Failure("Failed to check mode: %o is not a file mode" % mode)
    if mode & stat.S_IRWXO:
        raise Failure("Failed to check mode: %04o gives other users access to a file of secrets; use 0600 or 0640"
                      % mode)
    return mode


def resolve_owner(owner, group):
    """(uid or None, gid or None); raises Failure for unknown names."""
    uid = gid = None
    if owner not in (None, ""):
        try:
            uid = int(owner) if str(owner).isdigit() else pwd.getpwnam(owner).pw_uid
        except KeyError:
            raise Failure("Failed to check owner: no user %r on this host" % owner) from None
    if group not in (None, ""):
        try:
            gid = int(group) if str(group).isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise Failure("Failed to check group: no group %r on this host" % group) from None
    return uid, gid


def check_variables(variables):
    seen = set()
    checked = []
    for index, var in enumerate(variables):
        name = (var.get("name") or "").strip()
        path = (var.get("path") or "").strip().strip("/")
        if not NAME_RE.match(name):
            raise Failure("Failed to check variables: item %d has the invalid name %r (letters, digits and _ only, "
                          "not starting with a digit)" % (index, var.get("name")))
        if name in seen:
            raise Failure("Failed to check variables: %s is listed twice" % name)
        if not path:
            raise Failure("Failed to check variables: %s has no path" % name)
        seen.add(name)
        checked.append(dict(name=name, path=path, field=var.get("field") or name))
    if not checked:
        raise Failure("Failed to check variables: the list is empty")
    return checked


def read_secrets(vault, variables):
    """path -> KVSecret of its current version (each path read once); raises Failure or VaultError."""
    secrets = {}
    for var in variables:
        path = var["path"]
        if path in secrets:
            continue
        secret, _meta = _vault.read_current(vault, path)
        if secret is None:
            raise Failure("Failed to read %s at %s: no such secret (not found)" % (vault.describe(path), vault.where()))
        if secret.data is None:
            state = "destroyed" if secret.destroyed else "deleted"
            raise Failure("Failed to read %s at %s: its current version %s is %s"
                          % (vault.describe(path), vault.where(), secret.version, state))
        secrets[path] = secret
    return secrets


def render(vault, variables, secrets, header):
    lines = []
    if header:
        lines.append(header if header.startswith("#") else "# " + header)
    values = {}
    for var in variables:
        secret = secrets[var["path"]]
        where = "field %s of %s version %s" % (var["field"], vault.describe(var["path"]), secret.version)
        if var["field"] not in secret.data:
            raise Failure("Failed to render %s: %s does not exist" % (var["name"], where))
        text = render_value(secret.data[var["field"]], var["name"], where)
        values[var["name"]] = text
        lines.append("%s=%s" % (var["name"], text))
    return "\n".join(lines) + "\n", values


def describe_attrs(st, mode=None, uid=None, gid=None):
    """Owner/group/mode lines for the diff."""
    lines = []
    if st is not None:
        mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    if mode is not None:
        lines.append("# mode: %04o" % mode)
    if uid is not None:
        lines.append("# owner: %s" % _user_name(uid))
    if gid is not None:
        lines.append("# group: %s" % _group_name(gid))
    return lines


def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def run(module, vault_factory):
    params = module.params
    dest = params["dest"]
    variables = check_variables(params["variables"])
    mode = parse_mode(params["mode"])
    uid, gid = resolve_owner(params["owner"], params["group"])
    if params["header"] and _breaks_line(params["header"]):
        raise Failure("Failed to render header: it must be one line")
    directory = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(directory):
        raise Failure("Failed to write %s: the directory %s does not exist" % (dest, directory))
    if os.path.isdir(dest):
        raise Failure("Failed to write %s: it is a directory" % dest)

    vault = vault_factory()
    try:
        secrets = read_secrets(vault, variables)
    finally:
        vault.close()
    content, values = render(vault, variables, secrets, params["header"])
    versions = dict((path, secret.version) for path, secret in secrets.items())

    before_text, st = None, None
    if os.path.lexists(dest):
        try:
            st = os.stat(dest)
            with open(dest, "rb") as handle:
                before_text = handle.read().decode("utf-8", "replace")
        except OSError as exc:
            raise Failure("Failed to read %s: %s" % (dest, exc.strerror or exc.__class__.__name__)) from None
    before_values = parse_env(before_text) if before_text is not None else {}
    changed_names = sorted(set(name for name in values if before_values.get(name) != values[name])
                           | set(name for name in before_values if name not in values))

    content_changed = before_text != content
    want_uid = uid if uid is not None else (st.st_uid if st is not None else os.geteuid())
    want_gid = gid if gid is not None else (st.st_gid if st is not None else os.getegid())
    attrs_changed = st is None or (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) != (mode, want_uid, want_gid)
    changed = content_changed or attrs_changed

    result = dict(changed=changed, dest=dest, names=sorted(values), changed_names=changed_names, versions=versions)
    if module._diff:
        before_lines = describe_attrs(st) if st is not None else []
        after_lines = describe_attrs(None, mode, want_uid, want_gid)
        before_lines += ["%s=%s" % (name, CHANGED) for name in changed_names if name in before_values]
        after_lines += ["%s=%s" % (name, CHANGED) for name in changed_names if name in values]
        result["diff"] = dict(before_header=dest, after_header=dest,
                              before="\n".join(before_lines) + "\n" if st is not None else "",
                              after="\n".join(after_lines) + "\n")
    if not changed or module.check_mode:
        return result

    try:
        if content_changed:
            _files.write_atomic(dest, content, mode=mode, uid=want_uid, gid=want_gid)
        if (os.stat(dest).st_uid, os.stat(dest).st_gid) != (want_uid, want_gid):
            os.chown(dest, want_uid, want_gid)
        if stat.S_IMODE(os.stat(dest).st_mode) != mode:
            os.chmod(dest, mode)
    except OSError as exc:
        raise Failure("Failed to write %s: %s" % (dest, exc.strerror or exc.__class__.__name__)) from None
    return result


def main():
    argument_spec = _vault.vault_common_argument_spec()
    argument_spec.update(
        dest=dict(type="path", required=True),
        variables=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            path=dict(type="str", required=True),
            field=dict(type="str"),
        )),
        owner=dict(type="str"),
        group=dict(type="str"),
        mode=dict(type="raw", default="0600"),
        header=dict(type="str"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    base = dict(changed=False, dest=module.params["dest"])
    _vault.ensure_hvac(module)
    try:
        result = run(module, lambda: _vault.connect(module))
    except Failure as exc:
        out = dict(base)
        out.update(exc.extra)
        module.fail_json(msg=exc.msg, **out)
    except _vault.VaultError as exc:
        module.fail_json(msg=exc.message, vault_status=exc.status, vault_reason=exc.reason, **base)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
