"""Rate limits of the two endpoints: DRF throttles whose rates are read live from settings.

Scopes, and their rates unless ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` names them (a
rate of ``None`` turns a limit off):

- ``kernel_status.status``: status reads, per user (per IP for anonymous callers);
- ``kernel_status.events``: ingestion requests, per user;
- ``kernel_status.sessions``: session listings (a page each), per user;
- ``kernel_status.failed_auth``: failed authentications (401s), per client IP. Once over the
  rate, the IP gets 429 *before* its credentials are looked at, so tokens cannot be guessed
  at speed.

Counts live in Django's default cache: share it between processes (Redis, Memcached, the
database cache) for limits that hold across workers. Client IPs come from ``REMOTE_ADDR``, or
from ``X-Forwarded-For`` when DRF's ``NUM_PROXIES`` is set.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

STATUS_SCOPE = "kernel_status.status"
EVENTS_SCOPE = "kernel_status.events"
SESSIONS_SCOPE = "kernel_status.sessions"
FAILED_AUTH_SCOPE = "kernel_status.failed_auth"

DEFAULT_RATES: dict[str, str | None] = {
    # A client polling every 250 ms for a minute, with room for a few tabs.
    STATUS_SCOPE: "600/min",
    # Hosts batch their events; a service account usually reports many sessions.
    EVENTS_SCOPE: "3000/min",
    # A culler or dashboard pages through the listing now and then.
    SESSIONS_SCOPE: "120/min",
    FAILED_AUTH_SCOPE: "30/min",
}


def throttle_rate(scope: str) -> str | None:
    """The rate of ``scope``: the host's ``DEFAULT_THROTTLE_RATES`` entry, else ours."""
    rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES or {}
    rate: str | None = rates[scope] if scope in rates else DEFAULT_RATES[scope]
    return rate


class _LiveRate:
    """DRF binds ``THROTTLE_RATES`` at import; this reads the rate on every request, so
    ``override_settings`` works and a missing scope falls back to our default."""

    scope: str

    def get_rate(self) -> str | None:
        return throttle_rate(self.scope)


class StatusRateThrottle(_LiveRate, UserRateThrottle):
    scope = STATUS_SCOPE


class EventsRateThrottle(_LiveRate, UserRateThrottle):
    scope = EVENTS_SCOPE


class SessionsRateThrottle(_LiveRate, UserRateThrottle):
    scope = SESSIONS_SCOPE


class FailedAuthThrottle(_LiveRate, SimpleRateThrottle):
    """Counts failed authentications per client IP; :meth:`allow_request` only checks.

    The views call :meth:`allow_request` before authentication and :meth:`record_failure`
    when they answer 401.
    """

    scope = FAILED_AUTH_SCOPE
    num_requests: int
    duration: int

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        self.now = self.timer()
        self.history = [t for t in self.cache.get(self.key, []) if t > self.now - self.duration]
        return len(self.history) < self.num_requests

    def record_failure(self, request: Request, view: Any) -> None:
        if self.rate is None:
            return
        self.allow_request(request, view)
        self.history.insert(0, self.now)
        self.cache.set(self.key, self.history, self.duration)
