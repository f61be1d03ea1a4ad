"""URL map of the sample application."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from audit.views import recent_events
from orders.views import revenue_search
from sampleapp.views import fault, healthz, whoami

urlpatterns = [
    path("healthz/", healthz, name="healthz"),
    path("whoami/", whoami, name="whoami"),
    path("lab/fault/", fault, name="lab-fault"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("events/recent/", recent_events, name="recent-events"),
    path("orders/revenue/", revenue_search, name="orders-revenue"),
    path("admin/", admin.site.urls),
]
