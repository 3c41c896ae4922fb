"""Include under ``api/``: ``path("api/", include("kernel_status.urls"))``."""

from __future__ import annotations

from django.urls import path

from kernel_status.api.views import KernelEventsView, KernelSessionListView, KernelStatusView

app_name = "kernel_status"

urlpatterns = [
    path("kernel/status", KernelStatusView.as_view(), name="status"),
    path("kernel/events", KernelEventsView.as_view(), name="events"),
    path("kernel/sessions", KernelSessionListView.as_view(), name="sessions"),
]
