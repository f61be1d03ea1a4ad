"""Process and loopback helpers shared by the lab's own servers (openbao.py, aptrepo.py).

Standard library only: labctl, Molecule playbooks and the pytest fixtures load those scripts,
and they import this one from the same directory.
"""

import os
import signal
import socket
import time


def free_loopback_port(host="127.0.0.1"):
    """A TCP port free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def listening(host, port, timeout=0.5):
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def alive(pid):
    """Whether `pid` runs (a zombie child of ours, which still answers kill(0), does not)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def terminate(pid, proc=None, timeout=10):
    """SIGTERM `pid`, SIGKILL it after `timeout` seconds; reap `proc` (its Popen) when it is ours."""
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    if alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if proc is not None:
        proc.wait(timeout=timeout)


def write_private(path, text):
    """Write `text` to `path` with mode 0600 from the start (temp file, fsync, rename)."""
    tmp = "%s.tmp-%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
