"""Project-level views: health check and the current user."""

import logging

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)


def _check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        row = cursor.fetchone()
    if row != (1,):
        raise RuntimeError("unexpected reply")


def _check_redis():
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        if not client.ping():
            raise RuntimeError("unexpected reply")
    finally:
        client.close()


@never_cache
@require_safe
def healthz(request):
    """200 when a SELECT 1 round trip and a Redis PING both succeed, else 503.

    A failed check reports only the exception class name: exception messages of
    database drivers can carry host names, user names or parts of a DSN.
    """
    body = {"status": "ok"}
    for name, check in (("database", _check_database), ("redis", _check_redis)):
        try:
            check()
        except Exception as exc:  # any failure makes the check fail
            body[name] = exc.__class__.__name__
            body["status"] = "fail"
            logger.warning("healthz: %s check failed: %s", name, exc.__class__.__name__)
        else:
            body[name] = "ok"
    return JsonResponse(body, status=200 if body["status"] == "ok" else 503)


@never_cache
@require_safe
def whoami(request):
    user = request.user
    return JsonResponse(
        {
            "authenticated": bool(user.is_authenticated),
            "username": user.get_username() if user.is_authenticated else None,
        }
    )
