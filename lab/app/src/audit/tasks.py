"""Celery tasks of the audit app."""

import socket

from celery import shared_task

from audit.models import Event


@shared_task(name="audit.tasks.record_heartbeat", ignore_result=False)
def record_heartbeat():
    """Write a `heartbeat` event; proves worker -> broker -> database end to end."""
    task_id = record_heartbeat.request.id
    event = Event.objects.create(
        action="heartbeat",
        target="celery",
        payload={"hostname": socket.gethostname(), "task_id": task_id},
    )
    return event.pk
