"""Helpers for the pg_backup integration tests: a realistic schema, wrapper client programs, restore checks."""

from __future__ import annotations

import os
import stat
import subprocess
import textwrap

from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest as m
from psycopg import sql

from tests.integration.module_runner import run_module

MODULE = "upkeep.runbooks.pg_backup"

# A small shop: several schemas, JSON, text, numeric, timestamptz, indexes, FKs, a partitioned
# table, an unlogged table, an empty table, a view and a materialized view.
SHOP_SCHEMA = """
CREATE SCHEMA sales;
CREATE SCHEMA audit;
CREATE TABLE public.customer (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    profile jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sales."order" (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES public.customer (id),
    total numeric(12, 2) NOT NULL,
    status text NOT NULL,
    placed_at timestamptz NOT NULL
);
CREATE INDEX order_customer_idx ON sales."order" (customer_id);
CREATE INDEX order_placed_idx ON sales."order" (placed_at);
CREATE TABLE sales.order_line (
    order_id bigint NOT NULL REFERENCES sales."order" (id),
    sku text NOT NULL,
    qty integer NOT NULL,
    price numeric(10, 2) NOT NULL,
    PRIMARY KEY (order_id, sku)
);
CREATE TABLE audit.event (
    id bigserial,
    at timestamptz NOT NULL,
    kind text NOT NULL,
    payload jsonb
) PARTITION BY RANGE (at);
CREATE TABLE audit.event_2025 PARTITION OF audit.event FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE audit.event_2026 PARTITION OF audit.event FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX event_payload_idx ON audit.event USING gin (payload);
CREATE UNLOGGED TABLE public.cache (k text PRIMARY KEY, v text);
CREATE TABLE public.empty_table (id integer);
CREATE VIEW sales.order_totals AS SELECT customer_id, sum(total) AS total FROM sales."order" GROUP BY customer_id;

INSERT INTO public.customer (email, name, profile, created_at)
SELECT 'user' || g || '@example.org', 'Customer ' || g,
       jsonb_build_object('tier', g % 3, 'tags', jsonb_build_array('a' || g % 7, 'b' || g % 11)),
       timestamptz '2025-01-01' + g * interval '17 minutes'
FROM generate_series(1, @customers@) g;
INSERT INTO sales."order" (customer_id, total, status, placed_at)
SELECT 1 + g % @customers@, round((g * 7.31) % 1000, 2), (ARRAY['new', 'paid', 'shipped'])[1 + g % 3],
       timestamptz '2025-06-01' + g * interval '3 minutes'
FROM generate_series(1, @orders@) g;
INSERT INTO sales.order_line (order_id, sku, qty, price)
SELECT o, 'SKU-' || s, 1 + (o + s) % 5, round(((o * s) % 500) / 3.0, 2)
FROM generate_series(1, @orders@) o, generate_series(1, 2) s;
INSERT INTO audit.event (at, kind, payload)
SELECT timestamptz '2025-03-01' + g * interval '11 minutes', 'kind' || g % 5,
       jsonb_build_object('n', g, 'text', md5(g::text))
FROM generate_series(1, @events@) g;
INSERT INTO public.cache SELECT 'k' || g, repeat('v', 50) FROM generate_series(1, 100) g;
CREATE MATERIALIZED VIEW sales.daily AS
    SELECT date_trunc('day', placed_at) AS day, count(*) AS orders FROM sales."order" GROUP BY 1;
ANALYZE;
"""

SHOP_TABLES = {
    ("audit", "event_2025"), ("audit", "event_2026"), ("public", "cache"), ("public", "customer"),
    ("public", "empty_table"), ("sales", "order"), ("sales", "order_line"),
}


def create_shop(cluster, dbname, customers=2000, orders=8000, events=12000):
    cluster.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    script = SHOP_SCHEMA
    for key, value in (("customers", customers), ("orders", orders), ("events", events)):
        script = script.replace("@%s@" % key, str(int(value)))
    with cluster.connect(dbname=dbname) as conn:
        conn.execute(script)  # no parameters: psycopg sends the text as it is
    return dbname


def exact_counts(cluster, dbname, tables):
    counts = {}
    with cluster.connect(dbname=dbname) as conn:
        for schema, name in tables:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
            counts[(schema, name)] = conn.execute(query).fetchone()[0]
    return counts


def backup(cluster, database, backup_dir, check_mode=False, env=None, **options):
    args = cluster.module_args(database=database, backup_dir=str(backup_dir), **options)
    res = run_module(MODULE, args, check_mode=check_mode, env=env, timeout=300)
    assert cluster.password not in res.output, "the password leaked into the module output"
    return res


def client_env(cluster):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGHOST=cluster.host, PGPORT=str(cluster.port), PGUSER=cluster.superuser, PGPASSWORD=cluster.password)
    return env


def restore_into(cluster, manifest_dir, target_db):
    """Restore a pg_backup backup into a new database with the real pg_restore; returns the process."""
    manifest = m.load_manifest(manifest_dir)
    dump = os.path.join(manifest_dir, m.dump_name(manifest["database"], manifest["format"], manifest["compression"]))
    cluster.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target_db)))
    pg_restore = os.path.join(cluster.bindir, "pg_restore")
    env = dict(client_env(cluster), PGDATABASE=target_db)
    argv = [pg_restore, "--exit-on-error", "--no-owner", "-d", target_db]
    if dump.endswith(".zst"):
        zstd = subprocess.Popen(["zstd", "-dcq", dump], stdout=subprocess.PIPE)
        proc = subprocess.run(argv, stdin=zstd.stdout, env=env, capture_output=True, text=True, check=False)
        zstd.stdout.close()
        assert zstd.wait() == 0
    else:
        proc = subprocess.run(argv + [dump], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


def toc_count(cluster, manifest_dir):
    manifest = m.load_manifest(manifest_dir)
    dump = os.path.join(manifest_dir, m.dump_name(manifest["database"], manifest["format"], manifest["compression"]))
    pg_restore = os.path.join(cluster.bindir, "pg_restore")
    if dump.endswith(".zst"):
        out = subprocess.run("zstd -dcq '%s' | '%s' --list" % (dump, pg_restore), shell=True,  # noqa: S602
                             capture_output=True, text=True, check=True).stdout
    else:
        out = subprocess.run([pg_restore, "--list", dump], capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if line.strip() and not line.startswith(";"))


def assert_private_tree(path):
    """Directories 0700, files 0600, everywhere below ``path``."""
    for current, _dirs, files in os.walk(path):
        assert stat.S_IMODE(os.stat(current).st_mode) == 0o700, current
        for name in files:
            full = os.path.join(current, name)
            assert stat.S_IMODE(os.stat(full).st_mode) == 0o600, full


def no_partials(backup_dir):
    leftovers = []
    for current, dirs, _files in os.walk(str(backup_dir)):
        leftovers.extend(os.path.join(current, d) for d in dirs if d.endswith(".partial"))
    return leftovers


def make_bin_dir(tmp_path, real_bindir, pg_dump_script=None, name="bin"):
    """A pg_bin_dir with pg_restore/pg_dumpall linked to the real ones and pg_dump either linked or a wrapper.

    ``pg_dump_script`` is the body of a bash script; ``$REAL`` is the real pg_dump. ``--version``
    calls always go straight to the real program.
    """
    bindir = tmp_path / name
    bindir.mkdir()
    for tool in ("pg_restore", "pg_dumpall"):
        os.symlink(os.path.join(real_bindir, tool), bindir / tool)
    if pg_dump_script is None:
        os.symlink(os.path.join(real_bindir, "pg_dump"), bindir / "pg_dump")
    else:
        wrapper = bindir / "pg_dump"
        wrapper.write_text(
            "#!/bin/bash\nREAL=%s\n" % os.path.join(real_bindir, "pg_dump")
            + 'if [ "$1" = "--version" ]; then exec "$REAL" "$@"; fi\n'
            + textwrap.dedent(pg_dump_script)
        )
        wrapper.chmod(0o755)
    return bindir
