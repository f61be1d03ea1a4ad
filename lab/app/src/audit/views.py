"""Read-only JSON views over the audit log."""

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from audit.models import Event

RECENT_LIMIT = 20


@never_cache
@require_safe
def recent_events(request):
    """The 20 newest events, optionally for one action (`?action=login_failed`).

    Served from the created_at index (and the action index when filtered).
    Signed-in users only: the log holds IP addresses and user names.
    """
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "authentication required"}, status=401)
    events = Event.objects.select_related("actor").order_by("-created_at", "-id")
    action = request.GET.get("action")
    if action:
        events = events.filter(action=action)
    return JsonResponse({"events": [event.as_dict() for event in events[:RECENT_LIMIT]]})
