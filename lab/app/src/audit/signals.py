"""Audit events for sign-ins, sign-outs and failed sign-ins."""

import json
import logging

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from audit.models import Event

# One JSON object per sign-in and failed sign-in, for log-based review
# (upkeep.runbooks.auth_failure_review reads `{"event": ...}` wherever it starts in the line).
auth_log = logging.getLogger("audit.auth")


def _log_auth(event, username, ip, level=logging.INFO):
    auth_log.log(level, json.dumps({"event": event, "username": username, "ip": ip or None},
                                   ensure_ascii=False, separators=(", ", ": ")))

_MAX_USER_AGENT = 512
_MAX_USERNAME = 150


def _client(request):
    if request is None:
        return None, ""
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy sets it.
    ip = request.META.get("REMOTE_ADDR") or None
    return ip, request.META.get("HTTP_USER_AGENT", "")[:_MAX_USER_AGENT]


@receiver(user_logged_in, dispatch_uid="audit_user_logged_in")
def record_login(sender, request, user, **kwargs):
    ip, agent = _client(request)
    Event.objects.create(actor=user, action="login", target=f"user:{user.pk}", ip=ip, user_agent=agent)
    _log_auth("user_logged_in", user.get_username(), ip)


@receiver(user_logged_out, dispatch_uid="audit_user_logged_out")
def record_logout(sender, request, user, **kwargs):
    ip, agent = _client(request)
    Event.objects.create(
        actor=user if user is not None and user.is_authenticated else None,
        action="logout",
        target=f"user:{user.pk}" if user is not None else "",
        ip=ip,
        user_agent=agent,
    )


@receiver(user_login_failed, dispatch_uid="audit_user_login_failed")
def record_login_failed(sender, credentials, request=None, **kwargs):
    # Django already masks the password in `credentials`; keep the attempted username only.
    ip, agent = _client(request)
    username = str(credentials.get("username", ""))[:_MAX_USERNAME]
    Event.objects.create(action="login_failed", target=f"username:{username}", payload={"username": username},
                         ip=ip, user_agent=agent)
    _log_auth("user_login_failed", username, ip, logging.WARNING)
