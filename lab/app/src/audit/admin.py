from django.contrib import admin

from audit.models import Event


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "action", "actor", "target", "ip")
    list_filter = ("action",)
    search_fields = ("target", "actor__username")
    date_hierarchy = "created_at"
    raw_id_fields = ("actor",)
    list_select_related = ("actor",)
