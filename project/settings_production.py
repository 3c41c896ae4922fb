"""Production settings of the example project.

Use with ``DJANGO_SETTINGS_MODULE=project.settings_production``.
Passes ``manage.py check --deploy`` with no warnings. Required environment:

- ``DJANGO_SECRET_KEY``: at least 50 random characters; there is no fallback.
- ``DJANGO_ALLOWED_HOSTS``: the host names served, comma-separated.
- ``DATABASE_URL``: PostgreSQL, for example ``postgres://kernel_status@db:5432/kernel_status``,
  or MariaDB/MySQL, ``mysql://kernel_status@db:3306/kernel_status``, with the timeouts and
  utf8mb4 that project.settings sets for each (docs/deployment.md, docs/mysql.md).

Optional: ``DJANGO_NUM_PROXIES``, the number of reverse proxies in front of Django (default
1; 0 when clients connect directly); ``DJANGO_API_DOCS_PUBLIC=1`` serves the API schema and
docs pages (``/api/schema/``, ``/api/docs/``) without authentication; ``REDIS_URL``, for
example ``redis://127.0.0.1:6379/0``, keeps the cache (the rate limits' counters) in Redis,
shared by every worker. Without it the cache is per process, and check kernel_status.W002
warns that the limits multiply with the workers.

It assumes TLS ends at a proxy that sets ``X-Forwarded-Proto: https`` (and strips it from
clients) and appends the client's address to ``X-Forwarded-For``. See docs/deployment.md.

The recommended deployment (docs/deployment.md, project/deploy/nginx.conf): nginx, the one
proxy, in front of two servers of these settings on one database. On 2 cores:

- ``gunicorn project.wsgi:application --worker-class gthread --workers 2 --threads 4``:
  plain status reads, ``POST /api/kernel/events`` and everything else;
- ``uvicorn project.asgi:application --workers 1``: blocking reads (``If-None-Match`` with
  ``Prefer: wait=N``) and the change stream ``/api/kernel/sessions/stream``.

PostgreSQL connections: gunicorn 2 x 4 threads = 8, uvicorn 1 x (1 LISTEN + 4 readers,
KERNEL_STATUS_WATCH_READERS) = 5, plus one each for the culler and the marimo bridge: 15,
under the default max_connections of 100.
"""

from __future__ import annotations

import os

from project.settings import *  # noqa: F403
from project.settings import REST_FRAMEWORK, SPECTACULAR_SETTINGS

DEBUG = False
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
ALLOWED_HOSTS = [host.strip() for host in os.environ["DJANGO_ALLOWED_HOSTS"].split(",")]

# HTTPS only: redirect plain HTTP, cookies never sent in clear, and browsers told to keep to
# HTTPS for a year (HSTS; preload makes it permanent in browsers, so serve every subdomain
# over HTTPS before enabling this in a real deployment).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", str(365 * 24 * 3600)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True

# Client IPs for the per-IP limits (failed authentications): behind N proxies the client is
# the Nth address from the right of X-Forwarded-For. Unset, every caller would have the
# proxy's IP, and one client's bad tokens would lock every other client out.
REST_FRAMEWORK = {**REST_FRAMEWORK, "NUM_PROXIES": int(os.environ.get("DJANGO_NUM_PROXIES", "1"))}

# The schema and docs pages only for authenticated callers (a token, or a session from the
# admin's login in a browser): they map every endpoint, parameter and error for whoever asks.
# drf-spectacular reads these when its views are imported, so they are set here, not later.
if os.environ.get("DJANGO_API_DOCS_PUBLIC") != "1":
    SPECTACULAR_SETTINGS = {
        **SPECTACULAR_SETTINGS,
        "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    }

# Several workers: a per-process cache would multiply the limits (silenced for the demo only).
SILENCED_SYSTEM_CHECKS = []

# The rate limits count in the default cache: in Redis, one count for every worker and
# server, with atomic increments. Short socket timeouts: a Redis that hangs costs a request
# at most a second, and the limits let it through (kernel_status.api.throttling).
if os.environ.get("REDIS_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            "KEY_PREFIX": os.environ.get("DJANGO_CACHE_KEY_PREFIX", "kernel_status"),
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
