"""System checks for kernel_status settings. Error ids are stable: never reuse one."""

from __future__ import annotations

# The public API: see "Public and internal modules" in docs/reference.md.
__all__ = [
    "SUPPORTED_DATABASE_VENDORS",
    "check_database_vendors",
    "check_settings",
    "check_sqlite_transaction_mode",
]

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.db import connections, router
from django.db.utils import ConnectionHandler
from django.utils import timezone
from django.utils.module_loading import import_string

from kernel_status.conf import conf


@register("kernel_status")
def check_settings(**kwargs: Any) -> list[CheckMessage]:
    return [
        *_check_liveness_window(),
        *_check_access_policy(),
        *_check_max_batch_size(),
        *_check_use_tz(),
        *_check_max_clock_skew(),
        *check_sqlite_transaction_mode(settings.DATABASES),
        *check_database_vendors(),
        *_check_token_authentication(),
        *_check_throttle_rates(),
        *_check_throttle_cache(),
        *_check_listen_database(),
        *_check_stream_max_seconds(),
        *_check_database_deadline(),
    ]


def _seconds_problem(value: object, *, zero: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    return not math.isfinite(value) or value < 0 or (value == 0 and not zero)


def _check_database_deadline() -> list[CheckMessage]:
    """The deadline and the breaker's cooldown (kernel_status.deadline)."""
    errors: list[CheckMessage] = []
    deadline = conf.KERNEL_STATUS_QUERY_DEADLINE
    if deadline is not None and _seconds_problem(deadline, zero=False):
        errors.append(
            Error(
                "KERNEL_STATUS_QUERY_DEADLINE must be a positive, finite number of seconds, "
                f"or None; got {deadline!r}.",
                hint="Set it a little above the database's statement timeout, for example "
                "the statement timeout plus 0.5 s; None turns the bound off.",
                id="kernel_status.E013",
            )
        )
    cooldown = conf.KERNEL_STATUS_DATABASE_COOLDOWN
    if _seconds_problem(cooldown, zero=True):
        errors.append(
            Error(
                "KERNEL_STATUS_DATABASE_COOLDOWN must be a non-negative, finite number of "
                f"seconds; got {cooldown!r}.",
                hint="0 turns the breaker off.",
                id="kernel_status.E013",
            )
        )
    return errors


# Caches whose counts are per process: under several workers each keeps its own, and the
# limits multiply by the number of workers (or, for DummyCache, do not hold at all).
PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


def _check_throttle_cache() -> list[CheckMessage]:
    """Rate limits on, DEBUG off, and the default cache per process: W002."""
    from django.core.cache import DEFAULT_CACHE_ALIAS
    from rest_framework.settings import api_settings

    from kernel_status.api.throttling import throttle_rate
    from kernel_status.conf import DEFAULT_RATES, parse_rate

    rates = api_settings.DEFAULT_THROTTLE_RATES
    if settings.DEBUG or (rates is not None and not isinstance(rates, Mapping)):
        return []
    if not getattr(settings, "ROOT_URLCONF", None):
        return []  # no URLs, no endpoints to limit (the bridge's HTTP mode)
    try:
        on = [scope for scope in DEFAULT_RATES if parse_rate(throttle_rate(scope)) is not None]
    except (TypeError, KeyError, ValueError):  # rates DRF cannot use: E009 says so
        return []
    backend = settings.CACHES.get(DEFAULT_CACHE_ALIAS, {}).get("BACKEND", "")
    try:
        backend_class = import_string(backend)
    except ImportError:
        return []  # Django's own cache checks report a backend that cannot be imported
    per_process = tuple(import_string(name) for name in PER_PROCESS_CACHES)
    if not on or not (isinstance(backend_class, type) and issubclass(backend_class, per_process)):
        return []
    return [
        Warning(
            f"Rate limits are on ({', '.join(on)}), but the default cache is "
            f"{backend_class.__name__}, which each process keeps for itself: with N workers "
            "every limit lets N times its rate through.",
            hint="Use a shared cache with atomic increments for CACHES['default'], such as "
            "django.core.cache.backends.redis.RedisCache or Memcached.",
            id="kernel_status.W002",
        )
    ]


def _check_listen_database() -> list[CheckMessage]:
    """The PostgreSQL LISTEN connection of watching (docs/watching.md)."""
    from kernel_status.live.listener import listener_database_problem

    problem = listener_database_problem()
    if problem is not None:
        return [Error(f"KERNEL_STATUS_LISTEN_DATABASE {problem}.", id="kernel_status.E011")]
    if conf.KERNEL_STATUS_LISTEN_DATABASE is None:
        entry = settings.DATABASES.get(
            router.db_for_read(apps.get_model("kernel_status", "Session")), {}
        )
        if "postgresql" in str(entry.get("ENGINE", "")) and entry.get(
            "DISABLE_SERVER_SIDE_CURSORS"
        ):
            # Django's setting for PgBouncer in transaction mode: LISTEN cannot work there.
            return [
                Warning(
                    "The mirror's database looks pooled in transaction mode "
                    "(DISABLE_SERVER_SIDE_CURSORS), where LISTEN does not work: waits and "
                    "streams would only see other processes' writes by polling.",
                    hint="Set KERNEL_STATUS_LISTEN_DATABASE to an alias or connection string "
                    "that reaches PostgreSQL directly.",
                    id="kernel_status.W003",
                )
            ]
    return []


def _check_stream_max_seconds() -> list[CheckMessage]:
    """The change stream's lifetime: ``None`` or a positive finite number of seconds."""
    value = conf.KERNEL_STATUS_STREAM_MAX_SECONDS
    if value is None:
        return []
    if not isinstance(value, bool) and isinstance(value, int | float) and 0 < value < math.inf:
        return []
    return [
        Error(
            f"KERNEL_STATUS_STREAM_MAX_SECONDS must be None or a positive number of seconds; "
            f"got {value!r}.",
            id="kernel_status.E012",
        )
    ]


def _check_throttle_rates() -> list[CheckMessage]:
    """A rate DRF cannot parse raises on every request of its endpoint (a 500 each)."""
    from rest_framework.settings import api_settings

    from kernel_status.api.throttling import throttle_rate
    from kernel_status.conf import DEFAULT_RATES, parse_rate

    rates = api_settings.DEFAULT_THROTTLE_RATES
    if rates is not None and not isinstance(rates, Mapping):
        return [
            Error(
                "REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'] must be a dict of scope to rate; "
                f"got {rates!r}.",
                id="kernel_status.E009",
            )
        ]
    errors: list[CheckMessage] = []
    for scope in DEFAULT_RATES:
        rate = throttle_rate(scope)
        try:
            parse_rate(rate)
        except ValueError as error:
            errors.append(
                Error(
                    f"REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'][{scope!r}] is {rate!r}: {error}.",
                    hint="Use '<requests>/<s|m|h|d>', such as '600/min', or None for no limit.",
                    id="kernel_status.E009",
                )
            )
    return errors


def _check_token_authentication() -> list[CheckMessage]:
    """DRF's TokenAuthentication without its app answers every token request with a 500
    (``Token has no attribute objects``); say so at startup instead."""
    from rest_framework.authentication import TokenAuthentication
    from rest_framework.settings import api_settings

    if apps.is_installed("rest_framework.authtoken"):
        return []
    try:
        # Classes once DRF has imported them (the stubs say strings).
        classes: list[object] = list(api_settings.DEFAULT_AUTHENTICATION_CLASSES)
    except ImportError:  # DRF reports a bad path itself, on the first request
        return []
    needing_app = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in classes
        if isinstance(cls, type)
        and issubclass(cls, TokenAuthentication)
        and cls.model is None  # the default: rest_framework.authtoken's Token
    ]
    if not needing_app:
        return []
    return [
        Error(
            f"{', '.join(needing_app)} is in REST_FRAMEWORK['DEFAULT_AUTHENTICATION_CLASSES'], "
            "but 'rest_framework.authtoken' is not in INSTALLED_APPS: every request with a "
            "token would fail with a server error.",
            hint="Add 'rest_framework.authtoken' to INSTALLED_APPS and run migrate.",
            id="kernel_status.E007",
        )
    ]


def check_sqlite_transaction_mode(databases: Mapping[str, Any]) -> list[CheckMessage]:
    return [
        Warning(
            f"Database {alias!r} is SQLite without transaction_mode IMMEDIATE: concurrent "
            "writers of the mirror may fail with 'database is locked' halfway through a batch.",
            hint=f'Set DATABASES[{alias!r}]["OPTIONS"]["transaction_mode"] = "IMMEDIATE".',
            id="kernel_status.W001",
        )
        for alias, database in databases.items()
        if database.get("ENGINE") == "django.db.backends.sqlite3"
        and database.get("OPTIONS", {}).get("transaction_mode") != "IMMEDIATE"
    ]


# The backends whose set-based statements kernel_status.mirror.statements writes: by
# connection.vendor (Django's built-in sqlite3, postgresql and mysql backends, and
# third-party ones built on them).
SUPPORTED_DATABASE_VENDORS = {
    "sqlite": "SQLite",
    "postgresql": "PostgreSQL",
    "mysql": "MariaDB (10.6+) or MySQL (8.0+)",
}


def check_database_vendors(handler: ConnectionHandler | None = None) -> list[CheckMessage]:
    """A database that holds the mirror on a backend without our statements: refused here,
    not at the first POST /api/kernel/events (a 500)."""
    handler = connections if handler is None else handler
    cell_status = apps.get_model("kernel_status", "CellStatus")
    errors: list[CheckMessage] = []
    for alias in handler:
        if not router.allow_migrate_model(alias, cell_status):
            continue
        # The backend class's attribute: no connection is opened.
        connection = handler[alias]
        if connection.settings_dict.get("ENGINE") == "django.db.backends.dummy":
            continue  # no database at all (DATABASES = {}, the bridge's HTTP mode): nothing stored
        vendor = connection.vendor
        if vendor in SUPPORTED_DATABASE_VENDORS:
            continue
        engine = connection.settings_dict.get("ENGINE", "")
        errors.append(
            Error(
                f"Database {alias!r} ({engine}, vendor {vendor!r}) is not supported by "
                "kernel_status: its ingestion needs per-field ordering upserts written for "
                f"each backend, and {vendor!r} has none.",
                hint="Supported: "
                + ", ".join(SUPPORTED_DATABASE_VENDORS.values())
                + ", through Django's built-in backends. Route kernel_status's models to one "
                "of these with a database router, or use one for the default database.",
                id="kernel_status.E010",
            )
        )
    return errors


def _check_use_tz() -> list[CheckMessage]:
    if not settings.USE_TZ:
        return [
            Error(
                "kernel_status needs USE_TZ = True: it compares the timestamps kernel hosts "
                "send (UTC) with stored ones.",
                id="kernel_status.E006",
            )
        ]
    return []


def _check_max_batch_size() -> list[CheckMessage]:
    value = conf.KERNEL_STATUS_MAX_BATCH_SIZE
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return [
            Error(
                f"KERNEL_STATUS_MAX_BATCH_SIZE must be a positive integer; got {value!r}.",
                id="kernel_status.E005",
            )
        ]
    return []


def _check_liveness_window() -> list[CheckMessage]:
    value = conf.KERNEL_STATUS_LIVENESS_WINDOW
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        return [
            Error(
                "KERNEL_STATUS_LIVENESS_WINDOW must be a number of seconds, a timedelta, "
                f"or None; got {value!r}.",
                id="kernel_status.E001",
            )
        ]
    try:
        window = conf.liveness_window  # the conversion the status query uses
        usable = window is not None and window > timedelta(0)
        if window is not None and usable:
            timezone.now() - window  # the status query's cutoff: within datetime's range?
    except (OverflowError, ValueError):  # NaN, infinite, or beyond what datetimes can reach
        usable = False
    if not usable:
        return [
            Error(
                f"KERNEL_STATUS_LIVENESS_WINDOW must be positive and finite; got {value!r}.",
                hint="Set it to None to turn the liveness window off.",
                id="kernel_status.E002",
            )
        ]
    return []


def _check_max_clock_skew() -> list[CheckMessage]:
    value = conf.KERNEL_STATUS_MAX_CLOCK_SKEW
    if value is None:
        return []
    usable = not isinstance(value, bool) and isinstance(value, int | float | timedelta)
    if usable:
        try:
            skew = conf.max_clock_skew  # the conversion the write API uses
            usable = skew is not None and skew >= timedelta(0)
            if skew is not None and usable:
                timezone.now() + skew  # the write API's horizon: within datetime's range?
        except (OverflowError, ValueError):  # NaN, infinite, or beyond what datetimes reach
            usable = False
    if not usable:
        return [
            Error(
                "KERNEL_STATUS_MAX_CLOCK_SKEW must be a non-negative, finite number of "
                f"seconds or timedelta, or None; got {value!r}.",
                hint="Set it to None to accept timestamps however far ahead (not advised: "
                "one event stamped years ahead pins its session).",
                id="kernel_status.E008",
            )
        ]
    return []


def _check_access_policy() -> list[CheckMessage]:
    from kernel_status.queries.access import AccessPolicy

    path = conf.KERNEL_STATUS_ACCESS_POLICY
    try:
        policy_class = import_string(path)
    except Exception as exc:  # an ImportError, or anything the module raised on import
        return [
            Error(
                f"KERNEL_STATUS_ACCESS_POLICY {path!r} cannot be imported: {exc}",
                id="kernel_status.E003",
            )
        ]
    if not (isinstance(policy_class, type) and issubclass(policy_class, AccessPolicy)):
        return [
            Error(
                f"KERNEL_STATUS_ACCESS_POLICY {path!r} is not a subclass of "
                "kernel_status.access.AccessPolicy.",
                id="kernel_status.E004",
            )
        ]
    return []
