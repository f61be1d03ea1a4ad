"""Celery application: `celery -A sampleapp worker` / `celery -A sampleapp inspect ping`.

Broker and result backend are REDIS_URL (see settings.CELERY_*). Tasks are found in
each installed app's ``tasks`` module.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sampleapp.settings")

app = Celery("sampleapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
