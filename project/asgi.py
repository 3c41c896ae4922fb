"""The example project over ASGI: ``uvicorn project.asgi:application``.

Under ASGI, ``GET /api/kernel/status`` honours ``Prefer: wait`` and
``GET /api/kernel/sessions/stream`` streams (docs/watching.md). ``DJANGO_SERVE_STATIC=1``
serves the admin's static files too, as ``runserver --insecure`` does: ``make demo`` sets it;
in production a web server or WhiteNoise serves them.
"""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# Thousands of held waiters are long-lived objects. With CPython's default thresholds
# (700, 10, 10) a request's young objects get promoted, and full collections, which walk
# every waiter, came every few seconds and paused the loop 1-2 s at 10,000 waiters. Rarer
# young collections let a request's objects die young (docs/deployment.md, "Garbage
# collection").
gc.set_threshold(50_000, 20, 20)

application = get_asgi_application()

if os.environ.get("DJANGO_SERVE_STATIC") == "1":
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)
