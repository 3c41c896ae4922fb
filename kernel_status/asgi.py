"""What an ASGI deployment wraps its application with.

Kept for its import path; the middleware lives in :mod:`kernel_status.live.parking`::

    from django.core.asgi import get_asgi_application

    from kernel_status.asgi import WaitParkingMiddleware

    application = WaitParkingMiddleware(get_asgi_application())
"""

from __future__ import annotations

# The public API: see "Public and internal modules" in docs/reference.md.
__all__ = ["WaitParkingMiddleware"]

from kernel_status.live.parking import WaitParkingMiddleware
