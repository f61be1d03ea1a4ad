from django.contrib import admin

from orders.models import Customer, Order, OrderLine


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("name", "email", "country", "created_at")
    list_filter = ("country",)
    search_fields = ("name", "email")


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("id", "customer", "status", "total", "currency", "created_at")
    list_filter = ("status", "currency")
    search_fields = ("customer__name", "customer__email")
    date_hierarchy = "created_at"
    raw_id_fields = ("customer",)
    list_select_related = ("customer",)
    inlines = (OrderLineInline,)
