"""Rate limits of the two endpoints: DRF throttles whose rates are read live from settings.

Scopes, and their rates unless ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` names them (a
rate of ``None`` turns a limit off):

- ``kernel_status.status``: status reads, per user (per IP for anonymous callers);
- ``kernel_status.events``: ingestion requests, per user;
- ``kernel_status.sessions``: session listings (a page each), per user;
- ``kernel_status.failed_auth``: failed authentications (401s), per client IP. Once over the
  rate, the IP gets 429 *before* its credentials are looked at, so tokens cannot be guessed
  at speed; credentials that authenticated recently still pass (:class:`FailedAuthThrottle`).

Counts live in Django's default cache: share it between processes (Redis, Memcached, the
database cache) for limits that hold across workers. Client IPs come from ``REMOTE_ADDR``, or
from ``X-Forwarded-For`` when DRF's ``NUM_PROXIES`` is set.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.crypto import salted_hmac
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

from kernel_status.conf import (
    DEFAULT_RATES,
    EVENTS_SCOPE,
    FAILED_AUTH_SCOPE,
    SESSIONS_SCOPE,
    STATUS_SCOPE,
)


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

    The views call :meth:`allow_request` before authentication, :meth:`record_success` once
    a caller is authenticated and :meth:`record_failure` when they answer 401. An IP over its
    rate is refused before its credentials are looked at, except credentials that
    authenticated within ``proof_seconds``: only they pass, so a client that works keeps
    working while a guesser shares its IP, and the guesser learns nothing (its credentials,
    even a right guess, are never checked while the IP is over the rate).
    """

    scope = FAILED_AUTH_SCOPE
    # A credential stays proven this long after its last successful authentication (renewed
    # when half of it has passed, so an active client never lapses).
    proof_seconds = 24 * 3600
    num_requests: int
    duration: int

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def proof_key(self, request: Request) -> str | None:
        """A cache key for the request's credentials (a keyed hash: no secret in the cache),
        or ``None`` without any."""
        authorization = request.META.get("HTTP_AUTHORIZATION", "")
        cookie = request.COOKIES.get(settings.SESSION_COOKIE_NAME, "")
        credentials = f"{authorization}\n{cookie}"
        if not credentials.strip():
            return None
        digest = salted_hmac(f"{__name__}.proof", credentials, algorithm="sha256").hexdigest()
        return f"throttle_{self.scope}_proof_{digest}"

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        self.proof = self.proof_key(request)
        found = self.cache.get_many([self.key] if self.proof is None else [self.key, self.proof])
        self.now = self.timer()
        self.history = [t for t in found.get(self.key, []) if t > self.now - self.duration]
        self.proven_at: float | None = None if self.proof is None else found.get(self.proof)
        return len(self.history) < self.num_requests or self.proven_at is not None

    def record_success(self, request: Request, view: Any) -> None:
        """Remember the credentials as good; call after :meth:`allow_request`."""
        if self.rate is None or self.proof is None:
            return
        if self.proven_at is None or self.now - self.proven_at > self.proof_seconds / 2:
            self.cache.set(self.proof, self.now, self.proof_seconds)

    def record_failure(self, request: Request, view: Any) -> None:
        if self.rate is None:
            return
        self.allow_request(request, view)
        self.history.insert(0, self.now)
        self.cache.set(self.key, self.history, self.duration)
        if (
            self.proof is not None and self.proven_at is not None
        ):  # revoked since: it is checked like any other now
            self.cache.delete(self.proof)
