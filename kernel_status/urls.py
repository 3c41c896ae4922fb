"""Include under ``api/``: ``path("api/", include("kernel_status.urls"))``."""

from __future__ import annotations

from django.urls import path

from kernel_status.api.views import KernelEventsView, KernelSessionListView
from kernel_status.api.watch import status_view, stream_view

app_name = "kernel_status"

urlpatterns = [
    # Sync under WSGI (as before), async under ASGI, where Prefer: wait is honoured.
    path("kernel/status", status_view, name="status"),
    path("kernel/events", KernelEventsView.as_view(), name="events"),
    path("kernel/sessions", KernelSessionListView.as_view(), name="sessions"),
    path("kernel/sessions/stream", stream_view, name="sessions-stream"),
]
