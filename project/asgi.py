"""The example project over ASGI: ``uvicorn project.asgi:application``.

Under ASGI, ``GET /api/kernel/status`` honours ``Prefer: wait`` and
``GET /api/kernel/sessions/stream`` streams (docs/watching.md). ``DJANGO_SERVE_STATIC=1``
serves the admin's static files too, as ``runserver --insecure`` does: ``make demo`` sets it;
in production a web server or WhiteNoise serves them.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

application = get_asgi_application()

if os.environ.get("DJANGO_SERVE_STATIC") == "1":
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)
