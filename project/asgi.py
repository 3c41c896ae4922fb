"""The example project over ASGI: ``uvicorn project.asgi:application``.

Under ASGI, ``GET /api/kernel/status`` honours ``Prefer: wait`` and
``GET /api/kernel/sessions/stream`` streams (docs/watching.md). ``DJANGO_SERVE_STATIC=1``
serves the admin's static files too, as ``runserver --insecure`` does: ``make demo`` sets it;
in production a web server or WhiteNoise serves them.
"""

import gc
import os

from django.core.asgi import get_asgi_application

from kernel_status.asgi import WaitParkingMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# Thousands of held waiters are long-lived objects. With CPython's default thresholds
# (700, 10, 10) a request's young objects get promoted, and full collections, which walk
# every waiter, came every few seconds and paused the loop. Rarer young collections let a
# request's objects die young; 10,000 rather than more, since each parked read leaves its
# first pass's cycles for the collector (docs/deployment.md, "Parked waits and garbage
# collection").
gc.set_threshold(10_000, 10, 10)

django_application = get_asgi_application()

if os.environ.get("DJANGO_SERVE_STATIC") == "1":
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django_application = ASGIStaticFilesHandler(django_application)

# Held blocking reads wait parked, outside Django's request chain (docs/deployment.md):
# outermost, so that a parked read holds nothing of what is inside.
application = WaitParkingMiddleware(django_application)
