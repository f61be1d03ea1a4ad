"""Helpers for the pitr_restore tests: run the module into a fresh directory, read the restored server."""

from __future__ import annotations

import contextlib

import psycopg

from tests.fixtures.postgres import free_port
from tests.integration.module_runner import run_module

MODULE = "upkeep.runbooks.pitr_restore"


def restore_settings(stanza, name):
    """Port and socket directory of its own for a restored server (the source's are taken)."""
    sock = stanza.restore_dir(name + "-sock")
    return {"port": free_port(), "unix_socket_directories": str(sock)}


def pitr(stanza, datadir, check_mode=False, timeout=300, **overrides):
    args = stanza.module_args(data_directory=str(datadir), start_timeout=120, recovery_timeout=180)
    args.update(overrides)
    res = run_module(MODULE, args, check_mode=check_mode, timeout=timeout)
    assert stanza.cluster.password not in res.output
    return res


def restored_rows(stanza, res, sql="SELECT id FROM heartbeat ORDER BY id"):
    """Rows of ``sql`` on the server the module restored (TCP, the source's superuser password)."""
    with psycopg.connect(host="127.0.0.1", port=res["server"]["port"], user="postgres",
                         password=stanza.cluster.password, dbname="postgres", connect_timeout=10,
                         autocommit=True) as conn:
        return [row[0] if len(row) == 1 else row for row in conn.execute(sql).fetchall()]


@contextlib.contextmanager
def source_stopped(stanza):
    """The disaster: the source primary is down while the block runs (this one machine is its host too)."""
    stanza.cluster.stop("fast")
    try:
        yield
    finally:
        stanza.cluster.start()
