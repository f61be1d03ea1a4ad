#!/usr/bin/env python3
"""Bring the local lab up or down.

    labctl.py up       build the image if its definition changed, start the S3 endpoint, the
                       stand-in advisory service (lab/advisory_server.py) and OpenBao, start
                       one container per lab host (log1 is the log collector), provision them
                       (provision.yml also starts nginx as the S3 endpoint's TLS terminator for
                       pgBackRest), then configure continuous archiving (playbooks/pitr.yml)
    labctl.py down     remove the lab's containers, stop the endpoints, drop lab/.state
    labctl.py status   what is running

The host map is the lab inventory (inventories/lab): each host names its container
(`lab_container`) and its loopback address (`lab_address`); the S3 and Vault endpoints
come from `lab_s3_endpoint` and `lab_vault_addr`. Every address is on 127.0.0.0/8 and the
containers share the host network, so each service binds only its own address.

Vault is a real OpenBao server (lab/openbao.py, the `bao` of .venv/bin): raft storage in
lab/.state/openbao, initialised once with one key share, the unseal key and root token in
lab/.state/openbao/init.json (0600, never printed), unsealed by every `up`. The runbooks log
in with an AppRole `upkeep` whose role_id and secret_id are generated once into
lab/.state/vault-role-id and lab/.state/vault-secret-id (0600); the lab inventory reads them
from there (upkeep_vault_connection).

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
import subprocess
import sys
import time
import urllib.parse

import aptrepo
import openbao

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


listening = openbao.listening


# --- endpoints run on the host: S3 (moto server) and OpenBao ----------------------------

def pid_alive(pidfile):
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def openbao_server(url=None):
    """The lab's OpenBao (lab/openbao.py), its directory lab/.state/openbao."""
    if url is None:
        return openbao._server_for(os.path.join(STATE, "openbao"))
    host, port = loopback(url)
    return openbao.BaoServer(os.path.join(STATE, "openbao"), host=host, port=port, cluster_port=port + 1)


def apt_repository(url=None):
    """The lab's signed apt repository (lab/aptrepo.py), its directory lab/.state/aptrepo."""
    if url is None:
        return aptrepo.AptRepo(os.path.join(STATE, "aptrepo"))
    host, port = loopback(url)
    return aptrepo.AptRepo(os.path.join(STATE, "aptrepo"), host=host, port=port)


def start_apt_repository(url):
    """Serve the test repository at `url`: step 1 (every package at 1.0-1) until the hosts are
    provisioned; cmd_up publishes step 2 (the set staging tests) afterwards."""
    try:
        repo = apt_repository(url).up(step=1, detach=True)
    except aptrepo.RepoError as exc:
        die("apt repository at %s: %s" % (url, exc))
    log("apt repository up at %s (step %d)" % (repo.url, repo.step))
    return repo


def start_vault(url):
    """A real OpenBao at `url`: started, initialised once (key and root token in
    lab/.state/openbao/init.json, 0600), unsealed, KV v2 at secret/, the lab's AppRole."""
    server = openbao_server(url)
    was_running = server.running
    try:
        server.up(detach=True)
        openbao.approle_for_lab(server, STATE, APPROLE)
    except openbao.BaoError as exc:
        die("OpenBao at %s: %s" % (url, exc))
    log("vault endpoint %s at %s (OpenBao, unsealed)" % ("already up" if was_running else "up", url))


def start_endpoint(name, url, argv=None):
    """Start `argv` (default: moto's S3 server) serving `url`, unless the lab already runs it there."""
    host, port = loopback(url)
    pidfile = os.path.join(STATE, name + ".pid")
    if pid_alive(pidfile) and listening(host, port):
        log("%s endpoint already up at %s" % (name, url))
        return
    if listening(host, port):
        die("%s:%d is taken by a process the lab did not start" % (host, port))
    logfile = open(os.path.join(STATE, name + ".log"), "ab")
    if argv is None:
        argv = [os.path.join(VENV_BIN, "moto_server"), "-H", host, "-p", str(port)]
    proc = subprocess.Popen(argv, stdout=logfile,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=STATE)
    with open(pidfile, "w") as handle:
        handle.write(str(proc.pid))
    deadline = time.monotonic() + 30
    while not listening(host, port):
        if proc.poll() is not None or time.monotonic() > deadline:
            die("%s endpoint did not start at %s; see %s" % (name, url, logfile.name))
        time.sleep(0.2)
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


def start_container(host, hv, image, replace=False, add_hosts=()):
    name = hv["lab_container"]
    state = container_state(name)
    if state == "running" and container_image(name) == image and not replace:
        log("%s already running (%s)" % (host, name))
        return
    if state == "running" and replace:
        log("%s was provisioned against an earlier Vault: replacing it" % host)
    elif state == "running":
        log("%s runs %s, not %s: replacing it" % (host, container_image(name), image))
    if state is not None:
        run(["podman", "rm", "-f", "-v", name], capture=True)
    loopback("%s:0" % hv["lab_address"])
    # The database and log directories are volumes of their own, as on a real server, so
    # the daily disk checks see them as mounted file systems (the overlay root is not in
    # the mount facts). Anonymous volumes: `podman rm -v` takes them away with the host.
    run(["podman", "run", "--detach", "--name", name, "--hostname", host, "--label", LABEL,
         "--network", "host", "--systemd", "always", "--tmpfs", "/tmp"]
        + [arg for entry in add_hosts for arg in ("--add-host", entry)]
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
    # The stand-in for the advisory services of pip-audit and npm audit (docs/log-shipping-and-audit.md).
    host, port = loopback(common["lab_advisory_url"])
    start_endpoint("advisory", common["lab_advisory_url"],
                   [sys.executable, os.path.join(HERE, "advisory_server.py"), "--host", host, "--port", str(port)])
    if pid_alive(os.path.join(STATE, "vault.pid")):
        log("stopping the Vault endpoint an older lab started (before OpenBao)")
        stop_endpoint("vault")
    new_vault = not os.path.exists(os.path.join(STATE, "openbao", "init.json"))
    start_vault(common["lab_vault_addr"])
    repo = start_apt_repository(common["lab_apt_url"])
    # pgBackRest reaches the S3 endpoint's TLS terminator by a name its certificate holds (provision.yml).
    add_hosts = []
    if common.get("lab_s3_tls_name") and common.get("lab_s3_tls_address"):
        loopback("%s:0" % common["lab_s3_tls_address"])
        add_hosts.append("%s:%s" % (common["lab_s3_tls_name"], common["lab_s3_tls_address"]))
    for host in sorted(hosts):
        # Hosts provisioned against another Vault hold its passwords: a new Vault gets new hosts.
        start_container(host, hosts[host], image, replace=new_vault, add_hosts=add_hosts)
    if args.no_provision:
        return
    log("provisioning the lab hosts")
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"))
    run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", INVENTORY, os.path.join(HERE, "provision.yml")], env=env)
    # Continuous archiving into the S3 repository through the TLS terminator (idempotent): the DR drill's stanza.
    log("configuring continuous archiving (playbooks/pitr.yml)")
    run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", INVENTORY, os.path.join(TOP, "playbooks", "pitr.yml")],
        env=env)
    if repo.step < 2:
        # The hosts run the 1.0-1 packages; step 2 gives `make demo RUNBOOK=patch` something to patch.
        repo.publish(2)
        log("apt repository: published step 2 (the 1.1-1 set staging tests)")
    log("lab is up: %s" % ", ".join("%s=%s" % (h, hosts[h]["lab_address"]) for h in sorted(hosts)))


def cmd_down(_args):
    names = lab_containers() if shutil.which("podman") else []
    if names:
        run(["podman", "rm", "-f", "-v", "-t", "5"] + names, capture=True)
        log("removed containers: %s" % ", ".join(names))
    stop_endpoint("s3-tls")  # nginx in front of S3 (provision.yml); its pid file is lab/.state/s3-tls.pid
    stop_endpoint("s3")
    stop_endpoint("advisory")
    if os.path.isdir(os.path.join(STATE, "aptrepo")):
        apt_repository().stop()
        log("apt repository stopped")
    stop_endpoint("vault")  # an older lab's Vault endpoint, if one is still running
    if os.path.isdir(os.path.join(STATE, "openbao")):
        openbao_server().stop()
        log("vault endpoint stopped")
    shutil.rmtree(STATE, ignore_errors=True)
    log("lab is down")


def cmd_status(_args):
    hosts, common = inventory()
    for host in sorted(hosts):
        print("%-6s %-18s %s" % (host, hosts[host]["lab_address"], container_state(hosts[host]["lab_container"])
                                 or "absent"))
    host, port = loopback(common["lab_s3_endpoint"])
    print("%-6s %-18s %s" % ("s3", "%s:%d" % (host, port), "up" if listening(host, port) else "down"))
    if common.get("lab_s3_tls_address"):
        host, port = common["lab_s3_tls_address"], int(common["lab_s3_tls_port"])
        print("%-6s %-18s %s" % ("s3tls", "%s:%d" % (host, port), "up" if listening(host, port) else "down"))
    host, port = loopback(common["lab_advisory_url"])
    print("%-6s %-18s %s" % ("advis.", "%s:%d" % (host, port), "up" if listening(host, port) else "down"))
    host, port = loopback(common["lab_vault_addr"])
    state = "down"
    if listening(host, port):
        state = "sealed" if openbao_server(common["lab_vault_addr"]).is_sealed() else "up (unsealed)"
    print("%-6s %-18s %s" % ("vault", "%s:%d" % (host, port), state))


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
