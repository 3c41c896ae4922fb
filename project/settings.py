"""Settings of the example host project.

SQLite by default; PostgreSQL, MariaDB or MySQL when ``DATABASE_URL`` is set, for example
``postgres://postgres@127.0.0.1:5432/kernel_status`` or
``mysql://root@127.0.0.1:3306/kernel_status``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url

import kernel_status
from kernel_status.throttle_rates import DEFAULT_RATES

BASE_DIR = Path(__file__).resolve().parent.parent

# The example project is for local use only; never deploy it with this key. Production:
# project/settings_production.py, which takes the key from the environment with no fallback.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "kernel-status-example-project-not-secret")
# Off unless asked for (make demo does): debug pages list settings and URLs.
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "kernel_status",
    "kernel_status.contrib.marimo",
    "project.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "project.wsgi.application"

# Persistent connections, checked before each request reuses them, so the first request
# after a database restart does not fail on a dead connection.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=60, conn_health_checks=True
    ),
}
# Bounds on waiting for PostgreSQL, MariaDB and MySQL, so that a stuck database gives a 503
# with Retry-After instead of hanging the workers: seconds to connect, milliseconds per
# statement (lock waits included). The endpoints' queries take milliseconds.
DATABASE_CONNECT_TIMEOUT = int(os.environ.get("DATABASE_CONNECT_TIMEOUT", "5"))
DATABASE_STATEMENT_TIMEOUT = int(os.environ.get("DATABASE_STATEMENT_TIMEOUT", "5000"))
# A frozen server enforces no statement timeout (its kernel still acknowledges TCP): the app
# cuts off a request's connection half a second after the statement timeout would have ended
# its statement, and answers 503 (docs/deployment.md, "A bound on every request").
# 0 in the environment turns it off.
KERNEL_STATUS_QUERY_DEADLINE = (
    float(os.environ.get("KERNEL_STATUS_QUERY_DEADLINE", DATABASE_STATEMENT_TIMEOUT / 1000 + 0.5))
    or None
)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        connect_timeout=DATABASE_CONNECT_TIMEOUT,
        options=f"-c statement_timeout={DATABASE_STATEMENT_TIMEOUT}",
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    # utf8mb4, not Django's default "utf8" (utf8mb3, which cannot store every character);
    # READ COMMITTED, as Django recommends for MySQL (fewer gap locks and deadlocks than
    # REPEATABLE READ). Lock waits, row locks (innodb_lock_wait_timeout) and table locks of
    # DDL or LOCK TABLES (lock_wait_timeout, a year by default) alike, end after the statement
    # timeout (whole seconds, at least 1); the statement timeout itself is set per connection
    # by project.mysql, since MariaDB and MySQL name it differently.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        charset="utf8mb4",
        isolation_level="read committed",
        connect_timeout=DATABASE_CONNECT_TIMEOUT,
        init_command=(
            "SET SESSION innodb_lock_wait_timeout = {0}, lock_wait_timeout = {0}".format(
                max(1, -(-DATABASE_STATEMENT_TIMEOUT // 1000))
            )
        ),
    )
    # The test database too: pytest-django creates it with these.
    DATABASES["default"].setdefault("TEST", {}).update(
        CHARSET="utf8mb4", COLLATION="utf8mb4_unicode_ci"
    )
    import project.mysql  # noqa: F401 - connects the statement-timeout receiver
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers take SQLite's write lock when their transaction begins, so concurrent kernel
    # hosts queue up instead of failing with "database is locked" halfway through a batch.
    DATABASES["default"].setdefault("OPTIONS", {})["transaction_mode"] = "IMMEDIATE"

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK: dict[str, Any] = {
    # Token first, so an unauthenticated call gets 401 with "WWW-Authenticate: Token".
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # kernel_status's scopes at their defaults (docs/settings.md, "Rate limits"): name a
    # scope here to change its rate; None turns it off.
    "DEFAULT_THROTTLE_RATES": dict(DEFAULT_RATES),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "kernel_status",
    "DESCRIPTION": "Is my kernel busy? The state of a notebook session's kernel.",
    "VERSION": kernel_status.__version__,
    "SERVE_INCLUDE_SCHEMA": False,
    # Offline docs: assets come from drf-spectacular-sidecar, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# The demo has no kernel host sending heartbeats, so its kernels would all look stopped a
# minute after seeding. A real deployment keeps the default window (60 seconds).
KERNEL_STATUS_LIVENESS_WINDOW = None

# The demo runs in one process (runserver), where a per-process cache counts the rate limits
# right; settings_production turns the warning back on (kernel_status.W002).
SILENCED_SYSTEM_CHECKS: list[str] = ["kernel_status.W002"]
