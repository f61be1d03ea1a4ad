"""Project-level views: health check and the current user."""

import logging
import time

import redis
from django.conf import settings
from django.db import connection
from django.http import Http404, JsonResponse
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


FAULT_MAX_DELAY = 10.0


@never_cache
@require_safe
def fault(request):
    """Lab only (LAB_FAULTS=true, else 404): answer with ``?status=`` after ``?delay=`` seconds.

    The error-rate and latency checks are proven with it: a known mix of requests through nginx
    gives a known 5xx rate and known slow answers. The delay is capped at 10 s.
    """
    if not settings.LAB_FAULTS:
        raise Http404("not enabled")
    try:
        status = int(request.GET.get("status", "200"))
        delay = float(request.GET.get("delay", "0"))
    except ValueError:
        return JsonResponse({"error": "status must be an integer and delay a number"}, status=400)
    if not 200 <= status <= 599 or not 0 <= delay <= FAULT_MAX_DELAY:
        return JsonResponse({"error": "status must be 200-599 and delay 0-%s" % FAULT_MAX_DELAY}, status=400)
    if delay:
        time.sleep(delay)
    return JsonResponse({"status": status, "delay": delay}, status=status)
