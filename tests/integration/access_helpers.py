"""Shared set-up of the access review and revocation integration tests.

A Django database is made by Django itself: ``migrate`` of django.contrib.auth and contenttypes
(the tables the sample app in lab/app uses for its users) against the test cluster, in a
subprocess of the test interpreter. Accounts are then written as Django writes them.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import textwrap

import pytest
from psycopg import sql

MIGRATE = textwrap.dedent("""
    import os, django
    from django.conf import settings
    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "HOST": os.environ["T_HOST"],
                               "PORT": os.environ["T_PORT"], "NAME": os.environ["T_DB"],
                               "USER": os.environ["T_USER"], "PASSWORD": os.environ["T_PASSWORD"]}},
        USE_TZ=True)
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0, interactive=False)
""")


def django_database(cluster, dbname):
    """Create ``dbname`` and migrate Django's auth tables into it."""
    pytest.importorskip("django", reason="Django (lab/app/requirements.txt) is not installed")
    cluster.execute(sql.SQL("CREATE DATABASE {0}").format(sql.Identifier(dbname)))
    env = dict(os.environ, T_HOST=cluster.host, T_PORT=str(cluster.port), T_DB=dbname, T_USER=cluster.superuser,
               T_PASSWORD=cluster.password)
    subprocess.run([sys.executable, "-c", MIGRATE], env=env, check=True, capture_output=True, timeout=180)


def days_ago(days, now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now - datetime.timedelta(days=days)


def add_user(cluster, dbname, username, last_login=None, joined_days=400, superuser=False, staff=False, active=True):
    """An auth_user row as Django writes it; returns its id."""
    rows = cluster.execute(
        "INSERT INTO auth_user (password, last_login, is_superuser, username, first_name, last_name, email, "
        "is_staff, is_active, date_joined) VALUES ('!', %s, %s, %s, '', '', '', %s, %s, %s) RETURNING id",
        (last_login, superuser, username, staff, active, days_ago(joined_days)), dbname=dbname)
    return rows[0][0]


def grant_permission(cluster, dbname, user_id, codename):
    cluster.execute("INSERT INTO auth_user_user_permissions (user_id, permission_id) "
                    "SELECT %s, id FROM auth_permission WHERE codename = %s", (user_id, codename), dbname=dbname)


def old_log_line(moment, user, pid=4242, database="postgres"):
    """A 'connection authorized' line as PostgreSQL 15 writes it with log_line_prefix '%m [%p] '."""
    stamp = moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.123 UTC")
    return "%s [%d] LOG:  connection authorized: user=%s database=%s application_name=psql\n" % (
        stamp, pid, user, database)


def ids(result):
    return sorted(item["id"] for item in result["findings"])
