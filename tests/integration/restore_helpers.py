"""Helpers for the pg_backup_verify and pg_restore integration tests.

Backups are made with the real pg_backup module (tests/integration/pg_backup_helpers.backup);
this file adds a data set with awkward identifiers, copies of backups that tests may damage, and
checks on the restored databases.
"""

from __future__ import annotations

import json
import os
import shutil

from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest
from psycopg import sql

from tests.integration.module_runner import run_module
from tests.integration.pg_backup_helpers import backup as run_backup

AWKWARD_DB = 'Wéird "db" Naïve'
AWKWARD_SCHEMA = 'Sché ma "q"'

# Quotes, spaces, upper case and non-ASCII in schema, table and column names, plus inheritance,
# partitions, a sequence, indexes and an empty table.
AWKWARD_SCRIPT = '''
CREATE SCHEMA "Sché ma ""q""";
CREATE TABLE "Sché ma ""q"""."Tab le ""X""" (
    id integer PRIMARY KEY,
    "Näme" text NOT NULL,
    payload jsonb,
    created timestamptz NOT NULL DEFAULT timestamptz '2026-01-01 00:00:00+00'
);
INSERT INTO "Sché ma ""q"""."Tab le ""X""" (id, "Näme", payload)
SELECT g, 'nom ' || g || ' é ü 漢', jsonb_build_object('g', g) FROM generate_series(1, 1500) g;
CREATE INDEX "Näme idx" ON "Sché ma ""q"""."Tab le ""X""" ("Näme");
CREATE TABLE public."UPPER" (id bigserial PRIMARY KEY, v numeric(12, 2) NOT NULL);
INSERT INTO public."UPPER" (v) SELECT g * 1.25 FROM generate_series(1, 250) g;
CREATE TABLE public."données" (id integer, t text);
INSERT INTO public."données" SELECT g, md5(g::text) FROM generate_series(1, 42) g;
CREATE INDEX ON public."données" (t);
CREATE TABLE public.empty_table (id integer);
CREATE TABLE public.parent (id integer, note text);
CREATE TABLE public.child (extra text) INHERITS (public.parent);
INSERT INTO public.parent SELECT g, 'p' FROM generate_series(1, 5) g;
INSERT INTO public.child SELECT g, 'c', 'x' FROM generate_series(1, 7) g;
CREATE TABLE public.events (id integer, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO public.events SELECT g, date '2025-06-01' + g FROM generate_series(1, 400) g;
'''

AWKWARD_COUNTS = {
    (AWKWARD_SCHEMA, 'Tab le "X"'): 1500,
    ("public", "UPPER"): 250,
    ("public", "données"): 42,
    ("public", "empty_table"): 0,
    ("public", "parent"): 12,  # count(*) includes the inheriting child, as pg_backup counts it
    ("public", "child"): 7,
    ("public", "events_2025"): 213,
    ("public", "events_2026"): 187,
}


def create_awkward(cluster, dbname=AWKWARD_DB):
    cluster.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    with cluster.connect(dbname=dbname) as conn:
        conn.execute(AWKWARD_SCRIPT)
    return dbname


def make_backup(cluster, database, backup_dir, **options):
    """A backup by the real pg_backup module; returns its result (``path`` is the backup directory)."""
    options.setdefault("label", "daily")
    res = run_backup(cluster, database, backup_dir, **options)
    assert res.rc == 0 and not res.failed, res
    return res


def copy_backup(source, dest_root):
    """Copy a backup directory to ``dest_root/<database-safe>/<backup_id>`` (same layout); returns the copy."""
    manifest = _manifest.load_manifest(source)
    dest = _manifest.backup_path(str(dest_root), manifest["database"], manifest["backup_id"])
    os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
    shutil.copytree(source, dest)
    return dest


def rewrite_manifest(path, change):
    """Load the manifest of ``path``, let ``change(dict)`` edit it, write it back atomically."""
    manifest_path = os.path.join(path, _manifest.MANIFEST_NAME)
    with open(manifest_path, encoding="utf-8") as handle:
        data = json.load(handle)
    change(data)
    _manifest.write_json_atomic(manifest_path, data)
    return data


def dump_file(path):
    manifest = _manifest.load_manifest(path)
    return os.path.join(path, _manifest.dump_name(manifest["database"], manifest["format"], manifest["compression"]))


def flip_byte(file_path, offset=None):
    size = os.path.getsize(file_path)
    offset = size // 2 if offset is None else offset
    with open(file_path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x5A]))


def databases(cluster):
    return {row[0] for row in cluster.execute("SELECT datname FROM pg_database")}


def table_counts(cluster, dbname, tables):
    counts = {}
    with cluster.connect(dbname=dbname) as conn:
        for schema, name in tables:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
            counts[(schema, name)] = conn.execute(query).fetchone()[0]
    return counts


def manifest_counts(path):
    manifest = _manifest.load_manifest(path)
    return {(t["schema"], t["name"]): t["rows"] for t in manifest["tables"]}


def run(module, cluster, check_mode=False, diff=False, timeout=300, **args):
    """Run one of the collection's modules against ``cluster`` and check the password stayed secret."""
    res = run_module(module, cluster.module_args(**args), check_mode=check_mode, diff=diff, timeout=timeout)
    assert cluster.password not in res.output, "the password leaked into the module output"
    return res


def check(result, name):
    """The check named ``name`` of a pg_backup_verify result."""
    found = [item for item in result.get("checks", []) if item["name"] == name]
    assert found, "no check %r in %r" % (name, result.get("checks"))
    return found[0]
