#!/usr/bin/env python3
"""Bring the local lab up or down.

    labctl.py up       build the image if its definition changed, start the S3 and Vault
                       endpoints, start one container per lab host, provision them
    labctl.py down     remove the lab's containers, stop the endpoints, drop lab/.state
    labctl.py status   what is running

The host map is the lab inventory (inventories/lab): each host names its container
(`lab_container`) and its loopback address (`lab_address`); the S3 and Vault endpoints
come from `lab_s3_endpoint` and `lab_vault_addr`. Every address is on 127.0.0.0/8 and the
containers share the host network, so each service binds only its own address.

Vault gets an AppRole `upkeep` for the runbooks: its role_id and secret_id are generated
once into lab/.state/vault-role-id and lab/.state/vault-secret-id (0600), and the lab
inventory reads them from there (upkeep_vault_connection).

Running `up` twice is harmless: running containers and endpoints are kept and the
provisioning playbook is idempotent. A container running an older lab image is replaced
by one on the new image (its volumes go with it; provisioning builds it again).
"""

import argparse
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
STATE = os.path.join(HERE, ".state")
INVENTORY = os.path.join(TOP, "inventories", "lab")
LABEL = "upkeep.lab=lab"
APPROLE = "upkeep"
VOLUMES = ("/var/lib/postgresql", "/var/log")
VENV_BIN = os.path.dirname(sys.executable)


def log(msg):
    print("[lab] %s" % msg, flush=True)


def die(msg):
    print("[lab] error: %s" % msg, file=sys.stderr, flush=True)
    sys.exit(1)


def run(cmd, check=True, capture=False, **kw):
    proc = subprocess.run(cmd, check=False, text=True, capture_output=capture, **kw)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip() if capture else ""
        die("%s exited %d%s" % (" ".join(cmd[:3]), proc.returncode, (": " + detail[-2000:]) if detail else ""))
    return proc


def inventory():
    out = run([os.path.join(VENV_BIN, "ansible-inventory"), "-i", INVENTORY, "--list"], capture=True).stdout
    data = json.loads(out)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    hosts = {name: hv for name, hv in hostvars.items() if "lab_container" in hv}
    if not hosts:
        die("the lab inventory defines no host with lab_container")
    common = next(iter(hosts.values()))
    return hosts, common


def loopback(host_port):
    """(host, port) from 'http://127.0.0.31:9000' or '127.0.0.31:9000'; refuses non-loopback."""
    if "://" in host_port:
        parsed = urllib.parse.urlsplit(host_port)
        host, port = parsed.hostname, parsed.port
    else:
        host, _, port = host_port.rpartition(":")
    if not ipaddress.ip_address(host).is_loopback:
        die("%s is not a loopback address: the lab only ever binds 127.0.0.0/8" % host)
    return host, int(port)


def listening(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- endpoints run on the host: S3 (moto server) and Vault ---------------------------

def endpoint_command(name, host, port):
    if name == "s3":
        return [os.path.join(VENV_BIN, "moto_server"), "-H", host, "-p", str(port)]
    for binary in ("vault", "bao"):
        path = shutil.which(binary)
        if path:
            return [path, "server", "-dev", "-dev-root-token-id=root", "-dev-listen-address=%s:%d" % (host, port)]
    role_id, secret_id = approle_ids()
    return [sys.executable, os.path.join(HERE, "vault_emulator.py"), "--listen", "%s:%d" % (host, port),
            "--state", os.path.join(STATE, "vault-data.json"),
            "--approle", "%s:%s:%s" % (APPROLE, role_id, secret_id)]


def approle_ids():
    """(role_id, secret_id) of the lab's AppRole, generated once into lab/.state (0600)."""
    ids = []
    for name in ("vault-role-id", "vault-secret-id"):
        path = os.path.join(STATE, name)
        if not os.path.exists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(str(uuid.uuid4()))
        with open(path) as handle:
            ids.append(handle.read().strip())
    return ids[0], ids[1]


def vault_api(url, method, path, token=None, body=None):
    """Status of one Vault API call on the lab's loopback endpoint; HTTPError for 4xx/5xx."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Vault-Token"] = token
    request = urllib.request.Request(  # noqa: S310 - http on the lab's loopback endpoint only
        url.rstrip("/") + "/v1/" + path, method=method, headers=headers,
        data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - same
        return response.status


def approle_login_works(url):
    role_id, secret_id = approle_ids()
    try:
        return vault_api(url, "POST", "auth/approle/login", body={"role_id": role_id, "secret_id": secret_id}) == 200
    except (urllib.error.URLError, OSError):
        return False


def configure_dev_vault_approle(url):
    """A real `vault`/`bao -dev` server: enable AppRole and define the lab's role with the lab's IDs.

    The emulator gets the same role from its --approle option. Dev mode has KV v2 at secret/.
    """
    role_id, secret_id = approle_ids()
    policy = 'path "secret/*" { capabilities = ["create", "read", "update", "patch", "list"] }\n'
    try:
        vault_api(url, "POST", "sys/auth/approle", "root", {"type": "approle"})
    except urllib.error.HTTPError as exc:
        if exc.code != 400:  # 400: already enabled
            raise
    vault_api(url, "PUT", "sys/policies/acl/upkeep-rotation", "root", {"policy": policy})
    vault_api(url, "POST", "auth/approle/role/" + APPROLE, "root", {"token_policies": "upkeep-rotation"})
    vault_api(url, "POST", "auth/approle/role/%s/role-id" % APPROLE, "root", {"role_id": role_id})
    try:
        vault_api(url, "POST", "auth/approle/role/%s/custom-secret-id" % APPROLE, "root", {"secret_id": secret_id})
    except urllib.error.HTTPError as exc:
        if exc.code != 400:  # 400: this secret_id exists already
            raise


def pid_alive(pidfile):
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start_endpoint(name, url):
    host, port = loopback(url)
    pidfile = os.path.join(STATE, name + ".pid")
    if pid_alive(pidfile) and listening(host, port):
        if name != "vault" or approle_login_works(url):
            log("%s endpoint already up at %s" % (name, url))
            return
        log("vault endpoint at %s has no lab AppRole yet: restarting it" % url)
        stop_endpoint(name)
    if listening(host, port):
        die("%s:%d is taken by a process the lab did not start" % (host, port))
    logfile = open(os.path.join(STATE, name + ".log"), "ab")
    proc = subprocess.Popen(endpoint_command(name, host, port), stdout=logfile, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=STATE)
    with open(pidfile, "w") as handle:
        handle.write(str(proc.pid))
    deadline = time.monotonic() + 30
    while not listening(host, port):
        if proc.poll() is not None or time.monotonic() > deadline:
            die("%s endpoint did not start at %s; see %s" % (name, url, logfile.name))
        time.sleep(0.2)
    if name == "vault" and endpoint_command(name, host, port)[0] != sys.executable:
        configure_dev_vault_approle(url)
    log("%s endpoint up at %s" % (name, url))


def stop_endpoint(name):
    pidfile = os.path.join(STATE, name + ".pid")
    pid = pid_alive(pidfile)
    if pid:
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not pid_alive(pidfile):
                break
            time.sleep(0.1)
        log("%s endpoint stopped" % name)


# --- containers ------------------------------------------------------------------------

def container_state(name):
    proc = run(["podman", "container", "inspect", "--format", "{{.State.Status}}", name], check=False, capture=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def container_image(name):
    proc = run(["podman", "container", "inspect", "--format", "{{.ImageName}}", name], check=False, capture=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def start_container(host, hv, image):
    name = hv["lab_container"]
    state = container_state(name)
    if state == "running" and container_image(name) == image:
        log("%s already running (%s)" % (host, name))
        return
    if state == "running":
        log("%s runs %s, not %s: replacing it" % (host, container_image(name), image))
    if state is not None:
        run(["podman", "rm", "-f", "-v", name], capture=True)
    loopback("%s:0" % hv["lab_address"])
    # The database and log directories are volumes of their own, as on a real server, so
    # the daily disk checks see them as mounted file systems (the overlay root is not in
    # the mount facts). Anonymous volumes: `podman rm -v` takes them away with the host.
    run(["podman", "run", "--detach", "--name", name, "--hostname", host, "--label", LABEL,
         "--network", "host", "--systemd", "always", "--tmpfs", "/tmp"]
        + [arg for path in VOLUMES for arg in ("--volume", path)] + [image], capture=True)
    # systemd is PID 1: wait until it has booted far enough to run units.
    deadline = time.monotonic() + 60
    while True:
        out = run(["podman", "exec", name, "systemctl", "is-system-running"], check=False, capture=True).stdout.strip()
        if out in ("running", "degraded"):
            break
        if time.monotonic() > deadline:
            die("%s: systemd did not finish booting (state %r)" % (host, out))
        time.sleep(0.5)
    log("%s started (%s at %s)" % (host, name, hv["lab_address"]))


def lab_containers():
    out = run(["podman", "ps", "-a", "--filter", "label=" + LABEL, "--format", "{{.Names}}"], capture=True).stdout
    return [line for line in out.split() if line]


# --- commands ----------------------------------------------------------------------------

def cmd_up(args):
    if shutil.which("podman") is None:
        die("podman is not installed (make lab-up installs it when run as root)")
    os.makedirs(STATE, mode=0o700, exist_ok=True)
    hosts, common = inventory()
    image = run([os.path.join(HERE, "build-images.sh")], capture=False, stdout=subprocess.PIPE).stdout.strip()
    image = image.splitlines()[-1]
    start_endpoint("s3", common["lab_s3_endpoint"])
    start_endpoint("vault", common["lab_vault_addr"])
    for host in sorted(hosts):
        start_container(host, hosts[host], image)
    if args.no_provision:
        return
    log("provisioning the lab hosts")
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"))
    run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", INVENTORY, os.path.join(HERE, "provision.yml")], env=env)
    log("lab is up: %s" % ", ".join("%s=%s" % (h, hosts[h]["lab_address"]) for h in sorted(hosts)))


def cmd_down(_args):
    names = lab_containers() if shutil.which("podman") else []
    if names:
        run(["podman", "rm", "-f", "-v", "-t", "5"] + names, capture=True)
        log("removed containers: %s" % ", ".join(names))
    for name in ("s3", "vault"):
        stop_endpoint(name)
    shutil.rmtree(STATE, ignore_errors=True)
    log("lab is down")


def cmd_status(_args):
    hosts, common = inventory()
    for host in sorted(hosts):
        print("%-6s %-18s %s" % (host, hosts[host]["lab_address"], container_state(hosts[host]["lab_container"])
                                 or "absent"))
    for name, key in (("s3", "lab_s3_endpoint"), ("vault", "lab_vault_addr")):
        host, port = loopback(common[key])
        print("%-6s %-18s %s" % (name, "%s:%d" % (host, port), "up" if listening(host, port) else "down"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up")
    up.add_argument("--no-provision", action="store_true", help="start containers and endpoints only")
    sub.add_parser("down")
    sub.add_parser("status")
    args = parser.parse_args()
    {"up": cmd_up, "down": cmd_down, "status": cmd_status}[args.command](args)


if __name__ == "__main__":
    main()
