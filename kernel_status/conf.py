"""Settings of kernel_status, read live from ``django.conf.settings``, and the names that
settings and hosts refer to: the permissions and the rate-limit scopes with their defaults.

Each property reads the setting on every access, so ``override_settings`` works in tests.
Bad values are reported by the system checks in :mod:`kernel_status.checks`. Nothing here
imports DRF or the app's models, so a settings module may import it (``NO_THROTTLES``).
"""

from __future__ import annotations

# The public API: see "Public and internal modules" in docs/reference.md.
__all__ = [
    "DEFAULT_ACCESS_POLICY",
    "DEFAULT_DATABASE_COOLDOWN",
    "DEFAULT_LIVENESS_WINDOW",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_CLOCK_SKEW",
    "DEFAULT_MAX_WAIT",
    "DEFAULT_RATES",
    "EVENTS_SCOPE",
    "FAILED_AUTH_SCOPE",
    "NO_THROTTLES",
    "REPORT_PERMISSION",
    "SESSIONS_SCOPE",
    "STATUS_SCOPE",
    "VIEW_ALL_PERMISSION",
    "Settings",
    "conf",
    "parse_rate",
]

from datetime import timedelta
from typing import Any

from django.conf import settings

DEFAULT_LIVENESS_WINDOW = timedelta(seconds=60)
DEFAULT_ACCESS_POLICY = "kernel_status.access.DefaultAccessPolicy"
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_MAX_CLOCK_SKEW = timedelta(seconds=300)
# After the database failed to answer in time, 503 at once for this long (docs/deployment.md).
DEFAULT_DATABASE_COOLDOWN = 1.0
# Watching (docs/watching.md): the longest Prefer: wait a blocking status read honours.
DEFAULT_MAX_WAIT = 60

# Granted to the service accounts of kernel hosts (POST /api/kernel/events); edit access to a
# session does not imply it.
REPORT_PERMISSION = "kernel_status.report_kernel_events"
# Granted to cullers and dashboards: GET /api/kernel/sessions lists every session.
VIEW_ALL_PERMISSION = "kernel_status.view_all_sessions"

# The throttle scopes, their default rates (REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] overrides
# them per scope; None turns a limit off), and what a valid rate is.
STATUS_SCOPE = "kernel_status.status"
EVENTS_SCOPE = "kernel_status.events"
SESSIONS_SCOPE = "kernel_status.sessions"
FAILED_AUTH_SCOPE = "kernel_status.failed_auth"

DEFAULT_RATES: dict[str, str | None] = {
    # A client polling every 250 ms for a minute, with room for a few tabs.
    STATUS_SCOPE: "600/min",
    # One account may report for a whole server: the marimo bridge posts one batch per
    # session per burst of frames, as one service account, at most 4 at once. At 20 ms a
    # write that is 200 requests/s: this default does not throttle a bridge on a healthy
    # server, and still stops a runaway client (docs/deployment.md, "Rate limits").
    EVENTS_SCOPE: "12000/min",
    # A culler or dashboard pages through the listing now and then.
    SESSIONS_SCOPE: "120/min",
    FAILED_AUTH_SCOPE: "30/min",
}

# REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] with every kernel_status limit off (tests, load
# generators: one user on one IP).
NO_THROTTLES: dict[str, str | None] = dict.fromkeys(DEFAULT_RATES)


# DRF's periods: it reads only the first letter after the slash ("10/min", "10/minute").
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: object) -> tuple[int, int] | None:
    """``(requests, seconds)`` as DRF's throttles read ``rate``; ``None`` for ``None`` (no limit).

    DRF's own grammar (``SimpleRateThrottle.parse_rate``, which tests/test_checks.py holds
    this to), written here rather than imported: DRF's throttling module reads the settings on
    import, and this one must work inside a settings module. Raises ``ValueError`` where DRF
    would fail on every request, and for a count below one (``None`` turns a limit off).
    """
    if rate is None:
        return None
    if not isinstance(rate, str):
        raise ValueError("a rate is a string such as '600/min', or None")
    try:
        count, period = rate.split("/")
        requests, seconds = int(count), PERIODS[period[0]]
    except (ValueError, KeyError, IndexError):
        raise ValueError(
            "a rate is '<requests>/<period>', the period s, m, h or d (or longer)"
        ) from None
    if requests < 1:
        raise ValueError("a rate allows at least one request; None turns the limit off")
    return requests, seconds


class Settings:
    @property
    def KERNEL_STATUS_LIVENESS_WINDOW(self) -> Any:
        """Raw setting: seconds (int or float), a ``timedelta``, or ``None`` to turn it off."""
        return getattr(settings, "KERNEL_STATUS_LIVENESS_WINDOW", DEFAULT_LIVENESS_WINDOW)

    @property
    def liveness_window(self) -> timedelta | None:
        """How long a running kernel may stay silent before it counts as stopped."""
        value = self.KERNEL_STATUS_LIVENESS_WINDOW
        if value is None or isinstance(value, timedelta):
            return value
        return timedelta(seconds=value)

    @property
    def KERNEL_STATUS_ACCESS_POLICY(self) -> str:
        """Dotted path of the :class:`~kernel_status.access.AccessPolicy` to use."""
        return str(getattr(settings, "KERNEL_STATUS_ACCESS_POLICY", DEFAULT_ACCESS_POLICY))

    @property
    def KERNEL_STATUS_MAX_BATCH_SIZE(self) -> int:
        """Most events one ingestion request may carry; more get 413."""
        return getattr(settings, "KERNEL_STATUS_MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE)

    @property
    def KERNEL_STATUS_MAX_CLOCK_SKEW(self) -> Any:
        """Raw setting: seconds (int or float), a ``timedelta``, or ``None`` to turn it off."""
        return getattr(settings, "KERNEL_STATUS_MAX_CLOCK_SKEW", DEFAULT_MAX_CLOCK_SKEW)

    @property
    def max_clock_skew(self) -> timedelta | None:
        """How far ahead of the server clock an event's timestamp may be."""
        value = self.KERNEL_STATUS_MAX_CLOCK_SKEW
        if value is None or isinstance(value, timedelta):
            return value
        return timedelta(seconds=value)

    # --- A frozen database (docs/deployment.md, "A bound on every request") -------------

    @property
    def KERNEL_STATUS_QUERY_DEADLINE(self) -> Any:
        """Seconds a request may spend on the database before its connection is cut (503);
        ``None``: no bound but the database's own timeouts."""
        return getattr(settings, "KERNEL_STATUS_QUERY_DEADLINE", None)

    @property
    def KERNEL_STATUS_DATABASE_COOLDOWN(self) -> Any:
        """Seconds a process answers 503 at once after a request was cut off by the deadline
        or could not connect, before it lets one request probe the database; 0: never."""
        return getattr(settings, "KERNEL_STATUS_DATABASE_COOLDOWN", DEFAULT_DATABASE_COOLDOWN)

    # --- Watching: blocking status reads and the change stream (docs/watching.md) ----------

    @property
    def KERNEL_STATUS_MAX_WAIT(self) -> Any:
        """Longest ``Prefer: wait`` honoured, in seconds; longer ones are clamped to it."""
        return getattr(settings, "KERNEL_STATUS_MAX_WAIT", DEFAULT_MAX_WAIT)

    @property
    def KERNEL_STATUS_LISTEN_DATABASE(self) -> Any:
        """Where the PostgreSQL ``LISTEN`` connection goes: ``None`` (the alias the mirror is
        read from), another alias of ``DATABASES``, or a libpq connection string / URL."""
        return getattr(settings, "KERNEL_STATUS_LISTEN_DATABASE", None)

    @property
    def KERNEL_STATUS_WATCH_POLL_INTERVAL(self) -> float:
        """Seconds between change-counter reads (SQLite, MariaDB, or while the PostgreSQL
        listener is down): how late a write made by another process is seen there."""
        return float(getattr(settings, "KERNEL_STATUS_WATCH_POLL_INTERVAL", 0.5))

    @property
    def KERNEL_STATUS_WATCH_READERS(self) -> int:
        """Threads (and so, at most, database connections) that waits and streams read with."""
        return int(getattr(settings, "KERNEL_STATUS_WATCH_READERS", 4))

    @property
    def KERNEL_STATUS_STREAM_HEARTBEAT(self) -> float:
        """Seconds between heartbeat comments on an idle change stream."""
        return float(getattr(settings, "KERNEL_STATUS_STREAM_HEARTBEAT", 15))

    @property
    def KERNEL_STATUS_STREAM_QUEUE(self) -> int:
        """Events a stream may have waiting for a slow client before it is dropped."""
        return int(getattr(settings, "KERNEL_STATUS_STREAM_QUEUE", 1000))

    @property
    def KERNEL_STATUS_STREAM_MAX_SECONDS(self) -> Any:
        """Seconds a change stream lasts past its snapshot before it is sent ``reconnect``
        and ended (``None``: no limit)."""
        return getattr(settings, "KERNEL_STATUS_STREAM_MAX_SECONDS", None)

    @property
    def stream_max_seconds(self) -> float | None:
        """The stream lifetime in seconds, or ``None`` (check E012 refuses anything else)."""
        value = self.KERNEL_STATUS_STREAM_MAX_SECONDS
        return None if value is None else float(value)

    @property
    def KERNEL_STATUS_CHANGE_LOG_SIZE(self) -> int:
        """Rows of the change log kept for ``Last-Event-ID`` replays (older ones are pruned)."""
        return int(getattr(settings, "KERNEL_STATUS_CHANGE_LOG_SIZE", 10000))


conf = Settings()
