"""The db_review and db_maintenance roles through ansible-playbook against a real cluster.

The plays run the roles on localhost the way weekly.yml and monthly.yml run them (module_defaults
for the postgres group, PGPASSWORD from the environment, never in the play), then the report
role; the test reads the check results and the report the run wrote.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.postgres import ClusterFactory
from tests.integration.module_runner import COLLECTIONS_PATH

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(pg_bindir):
    factory = ClusterFactory(pg_bindir, prefix="dbroles")
    try:
        yield factory(settings={"autovacuum": "off", "shared_preload_libraries": "pg_stat_statements"})
    finally:
        factory.close()


def play(name, role, role_vars, cluster, out, reset):
    return {
        "name": name,
        "hosts": "localhost",
        "gather_facts": False,
        "module_defaults": {
            "group/upkeep.runbooks.postgres": {
                "login_host": cluster.host,
                "login_port": cluster.port,
                "login_user": "postgres",
            }
        },
        "roles": [{"role": role, "vars": role_vars}],
        "post_tasks": [
            {
                "name": "Keep the results",
                "ansible.builtin.copy": {"content": "{{ %s | to_json }}" % reset, "dest": str(out), "mode": "0600"},
            },
            {"name": "Start the next play afresh", "ansible.builtin.set_fact": {reset: []}},
        ],
    }


def run_playbook(cluster, tmp_path, plays, check=False):
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(plays))
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_PATH),
        PGPASSWORD=cluster.password,
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCALHOST_WARNING="0",
        PWD=str(tmp_path),  # relative report and snapshot directories are taken from PWD, as a shell sets it
    )
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        "ansible_python_interpreter=%s" % sys.executable,
        str(playbook),
    ] + (["--check"] if check else [])
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert cluster.password not in proc.stdout + proc.stderr
    return proc


def by_check(path):
    return {item["check"]: item for item in json.loads(path.read_text())}


def test_weekly_review_compares_with_last_week_and_monthly_maintenance_dry_runs_first(cluster, tmp_path):
    cluster.execute("CREATE DATABASE shop")
    for statement in (
        "CREATE EXTENSION pg_stat_statements",
        "CREATE TABLE orders (id int, customer_id int, note text)",
        "INSERT INTO orders SELECT g, g % 100, 'n' FROM generate_series(1, 6000) g",
        "CREATE INDEX orders_customer_idx ON orders (customer_id)",
        "CREATE INDEX orders_customer_id_idx ON orders (customer_id, id)",
        "ANALYZE orders",
        "DELETE FROM orders WHERE id > 2000",
    ):
        cluster.execute(statement, dbname="shop")
    review_vars = {
        "db_review_databases": ["shop"],
        "db_review_become_user": "",
        "db_review_snapshot_dir": "reports/weekly/db_review",
        "db_review_data_path": str(cluster.datadir),
    }
    maintenance_vars = {
        "db_maintenance_databases": ["shop"],
        "db_maintenance_become_user": "",
        "db_maintenance_data_path": str(cluster.datadir),
        "db_maintenance_lock_timeout": 2,
    }
    week1, dry, real = tmp_path / "week1.json", tmp_path / "dry.json", tmp_path / "real.json"
    run_playbook(
        cluster,
        tmp_path,
        [
            play("weekly review", "upkeep.runbooks.db_review", review_vars, cluster, week1, "db_review_results"),
            play(
                "monthly dry run",
                "upkeep.runbooks.db_maintenance",
                maintenance_vars,
                cluster,
                dry,
                "db_maintenance_results",
            ),
            play(
                "monthly maintenance",
                "upkeep.runbooks.db_maintenance",
                dict(maintenance_vars, db_maintenance_dry_run=False),
                cluster,
                real,
                "db_maintenance_results",
            ),
        ],
    )
    first = by_check(week1)
    assert first["db_review:shop:duplicate_indexes"]["status"] == "warn"
    assert first["db_review:shop:vacuum_due"]["value"][0]["table"] == "public.orders"
    assert "no previous report" in first["db_review:shop:size_growth"]["message"]
    snapshot = tmp_path / "reports/weekly/db_review/localhost/shop.json"
    assert json.loads(snapshot.read_text())["database"] == "shop"
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600

    planned = by_check(dry)
    vac = planned["db_maintenance:shop:vacuum:public.orders"]
    assert vac["status"] == "ok" and vac["value"]["outcome"] == "would_run"
    assert vac["message"].startswith('check mode: would run VACUUM (ANALYZE) "public"."orders";')
    assert planned["db_maintenance:shop"]["message"].startswith("check mode (dry run), nothing changed")

    done = by_check(real)
    vac = done["db_maintenance:shop:vacuum:public.orders"]
    assert vac["value"]["outcome"] == "done" and vac["value"]["before"]["dead_rows"] == 4000
    assert vac["value"]["after"]["dead_rows"] == 0
    assert cluster.scalar("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'orders'", dbname="shop") == 0

    # next week: compared with the snapshot, and the report gets both roles' results
    week2 = tmp_path / "week2.json"
    report = play("weekly review", "upkeep.runbooks.db_review", review_vars, cluster, week2, "db_review_results")
    report["post_tasks"] = report["post_tasks"][:1]
    run_playbook(
        cluster,
        tmp_path,
        [
            report,
            {
                "name": "report",
                "hosts": "localhost",
                "gather_facts": False,
                "roles": [
                    {
                        "role": "upkeep.runbooks.report",
                        "vars": {
                            "report_cadence": "weekly",
                            "report_host_pattern": "localhost",
                            "report_result_vars": ["db_review_results"],
                            "report_dir": str(tmp_path / "reports"),
                            "report_fail_on_failed_checks": False,
                            "report_history": False,
                        },
                    }
                ],
            },
        ],
    )
    second = by_check(week2)
    growth = second["db_review:shop:size_growth"]
    assert "no previous report" not in growth["message"] and growth["value"]["growth_bytes_per_day"] is not None
    assert second["db_review:shop:vacuum_due"]["value"] == [], "the maintenance run vacuumed and analyzed orders"
    written = sorted((tmp_path / "reports/weekly").glob("*/report.json"))
    assert written, list((tmp_path / "reports").rglob("*"))
    checks = json.loads(written[-1].read_text())
    text = json.dumps(checks)
    assert "db_review:shop:duplicate_indexes" in text and "public.orders_customer_idx" in text
