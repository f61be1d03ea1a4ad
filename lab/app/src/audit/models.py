"""The audit/event log."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class Event(models.Model):
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit_events",
    )
    action = models.CharField(max_length=64, db_index=True)
    target = models.TextField(blank=True)
    payload = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True)
    # A default rather than auto_now_add, so that imports and the demo seed can set it.
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action}"

    def as_dict(self):
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "action": self.action,
            "actor": self.actor.get_username() if self.actor_id else None,
            "target": self.target,
            "ip": self.ip,
            "payload": self.payload,
        }
