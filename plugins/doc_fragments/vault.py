# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options shared by every Vault module of upkeep.runbooks; mirrors
    # vault_common_argument_spec() in plugins/module_utils/_vault.py.
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Address of the Vault (or OpenBao) server, for example C(https://vault.example.com:8200).
      - Falls back to the E(VAULT_ADDR) environment variable of the node that runs the module.
    type: str
    aliases: [vault_addr]
  auth_method:
    description:
      - How to authenticate.
      - V(token) uses O(token). V(approle) logs in with O(role_id) and O(secret_id) at the
        C(auth/approle) mount and uses the token it is given for this run only.
      - Falls back to E(VAULT_AUTH_METHOD).
    type: str
    default: token
    choices: [token, approle]
  token:
    description:
      - Vault token for O(auth_method=token). It is checked with C(auth/token/lookup-self) before
        anything else is done.
      - Falls back to E(VAULT_TOKEN).
    type: str
  role_id:
    description:
      - AppRole role ID for O(auth_method=approle).
      - Falls back to E(VAULT_ROLE_ID).
    type: str
  secret_id:
    description:
      - AppRole secret ID for O(auth_method=approle).
      - Falls back to E(VAULT_SECRET_ID).
    type: str
  namespace:
    description:
      - Vault Enterprise / OpenBao namespace every request is sent to.
      - Falls back to E(VAULT_NAMESPACE).
    type: str
  ca_cert:
    description:
      - File with the certificate authorities the server certificate must be signed by.
      - Falls back to E(VAULT_CACERT).
    type: path
    aliases: [cacert]
  validate_certs:
    description:
      - Whether the server certificate is verified. Only turn this off against a lab server.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for each answer of Vault.
    type: int
    default: 30
  mount_point:
    description:
      - Path of the KV version 2 secrets engine the secrets live in.
    type: str
    default: secret
notes:
  - Every write of secret data uses check-and-set with the version that was read, so of two
    concurrent writers only one succeeds; the other fails without overwriting anything.
  - A rotated secret's current version is named by its custom metadata key C(upkeep_current_version);
    between the two steps of a rotation the latest version may be a pending one.
  - Failures read C(Failed to <action> at <url>) followed by the cause (permission denied, not found,
    check-and-set mismatch, Vault is sealed, connection refused, TLS error, timeout). Tokens, secret IDs
    and secret values never appear in a message or a return value.
requirements:
  - hvac on the node that runs the module (Debian package C(python3-hvac), or C(pip install hvac))
"""
