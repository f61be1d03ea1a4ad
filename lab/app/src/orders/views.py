"""JSON views over the orders."""

from django.db.models import Count, Q, Sum
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from orders.models import Order

SEARCH_MIN_LENGTH = 3


@never_cache
@require_safe
def revenue_search(request):
    """Order count and revenue per currency of the orders whose notes or metadata mention `?q=`.

    Aggregates only (no names, no addresses), so it needs no sign-in. Deliberately unindexed:
    a case-insensitive substring match over the notes and over the JSON metadata cast to text
    (`UPPER(metadata::text) LIKE UPPER('%q%')`) reads and converts every order: with the lab's
    20 000 orders the fastest of 60 calls took 112 ms on a busy 2-core machine (the notes alone,
    about 10 ms idle, would not be slow enough). This is the lab's slow query, the one the
    weekly database review names (docs/database-maintenance.md); a real application would
    search a trigram or full-text index instead.
    """
    q = (request.GET.get("q") or "").strip()
    if len(q) < SEARCH_MIN_LENGTH:
        return JsonResponse({"detail": f"q must have at least {SEARCH_MIN_LENGTH} characters"}, status=400)
    rows = (
        Order.objects.filter(Q(notes__icontains=q) | Q(metadata__icontains=q))
        .order_by()
        .values("currency")
        .annotate(orders=Count("id"), revenue=Sum("total"))
        .order_by("currency")
    )
    return JsonResponse(
        {
            "q": q,
            "orders": sum(r["orders"] for r in rows),
            "revenue": {r["currency"]: str(r["revenue"]) for r in rows},
        }
    )
