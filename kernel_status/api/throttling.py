"""Rate limits of the endpoints: DRF throttles whose rates are read live from settings.

Scopes, and their rates unless ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` names them (a
rate of ``None`` turns a limit off):

- ``kernel_status.status``: status reads, per user (per IP for anonymous callers);
- ``kernel_status.events``: ingestion requests, per user;
- ``kernel_status.sessions``: session listings (a page each), per user;
- ``kernel_status.failed_auth``: failed authentications (401s), per client IP. Once over the
  rate, the IP gets 429 *before* its credentials are looked at, so tokens cannot be guessed
  at speed; credentials that authenticated recently still pass (:class:`FailedAuthThrottle`).

Counts live in Django's default cache, as atomic counters (``cache.add`` and ``cache.incr``)
in a sliding window (:class:`WindowCounter`), not DRF's history list, which each request reads
and writes back whole, so that concurrent requests lose each other's entries. Share the cache
between processes (Redis or Memcached, whose ``incr`` is atomic) for limits that hold across
workers; check ``kernel_status.W002`` warns of a per-process one. Client IPs come from
``REMOTE_ADDR``, or from ``X-Forwarded-For`` when DRF's ``NUM_PROXIES`` is set.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any

from django.conf import settings
from django.core.cache.backends.base import BaseCache
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

logger = logging.getLogger("kernel_status")


def throttle_rate(scope: str) -> str | None:
    """The rate of ``scope``: the host's ``DEFAULT_THROTTLE_RATES`` entry, else ours."""
    rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES or {}
    rate: str | None = rates[scope] if scope in rates else DEFAULT_RATES[scope]
    return rate


class _LiveRate:
    """DRF binds ``THROTTLE_RATES`` at import; this reads the rate on every request, so
    ``override_settings`` works and a missing scope falls back to our default."""

    scope: str | None  # as DRF's; each of our throttles names one

    def get_rate(self) -> str | None:
        assert self.scope is not None
        return throttle_rate(self.scope)


class WindowCounter:
    """Requests in a sliding window of ``duration`` seconds, counted atomically in ``cache``.

    Each fixed window of ``duration`` has its own counter (``cache.add`` creates it, then
    ``cache.incr`` counts, atomic on Redis and Memcached). A request is counted against the
    current window's count plus the previous window's, weighted by how much of the previous
    window the sliding one still covers: no burst of twice the limit at a window's edge, and
    two small integers per key instead of a list of timestamps.

    :meth:`take` counts a request first and takes it back if it is over the limit, so
    concurrent requests never together pass more than the limit, and refused requests do not
    count (as in DRF, a client polling too fast still gets its rate through).
    """

    def __init__(self, cache: BaseCache, key: str, limit: int, duration: int) -> None:
        self.cache, self.key, self.limit, self.duration = cache, key, limit, duration
        self._wait: float | None = None  # set when take() refuses

    def _window(self, now: float) -> tuple[int, float]:
        """The current window's number and how far into it ``now`` is (0 to 1)."""
        index, into = divmod(now, self.duration)
        return int(index), into / self.duration

    def _key(self, index: int) -> str:
        return f"{self.key}_w{index}"

    def _previous(self, index: int, elapsed: float) -> float:
        """The previous window's count, weighted by the part the sliding window covers."""
        previous = self.cache.get(self._key(index - 1)) or 0
        return float(previous) * (1 - elapsed)

    def take(self, now: float) -> bool:
        """Count a request at ``now`` if the window has room for it; whether it had.

        A cache that fails (Redis down) lets the request through, logged: the limits protect
        the API, and are no reason to refuse every request while the cache is away.
        """
        try:
            return self._take(now)
        except Exception as error:  # any backend's own errors (redis.ConnectionError, ...)
            logger.warning("Rate limit %s not applied, the cache failed: %r", self.key, error)
            return True

    def _take(self, now: float) -> bool:
        index, elapsed = self._window(now)
        previous = self._previous(index, elapsed)
        if previous >= self.limit:  # full without counting: no write
            self._wait = self._wait_for(previous, self._current(index), elapsed)
            return False
        current = self._incr(self._key(index))
        if previous + current <= self.limit:
            return True
        self.give_back(now)
        self._wait = self._wait_for(previous, current - 1, elapsed)
        return False

    def give_back(self, now: float) -> None:
        """Take back a request counted by :meth:`take` (it did not count after all)."""
        # ValueError: the counter is gone (expired, or the cache keeps nothing); anything
        # else: the cache failed, and take() let the request through anyway.
        with contextlib.suppress(Exception):
            self.cache.decr(self._key(self._window(now)[0]))

    def count(self, now: float) -> float:
        """The weighted count at ``now``, without counting anything."""
        index, elapsed = self._window(now)
        return self._previous(index, elapsed) + self._current(index)

    def add(self, now: float) -> None:
        """Count a request that was not taken (a failure recorded after the fact)."""
        try:
            self._incr(self._key(self._window(now)[0]))
        except Exception as error:  # as in take()
            logger.warning("Rate limit %s not counted, the cache failed: %r", self.key, error)

    def wait(self, now: float) -> float:
        """Seconds until a request would fit, after :meth:`take` refused one."""
        if self._wait is None:
            index, elapsed = self._window(now)
            self._wait = self._wait_for(
                self._previous(index, elapsed), self._current(index), elapsed
            )
        return self._wait

    def _current(self, index: int) -> int:
        return int(self.cache.get(self._key(index)) or 0)

    def _wait_for(self, previous: float, current: int, elapsed: float) -> float:
        """When the weighted count leaves room for one more request: the previous window's
        share fades linearly, and at the next window the current count becomes that share."""
        room = self.limit - 1 - current
        if room >= 0:
            weight = previous / (1 - elapsed) if elapsed < 1 else 0.0  # the unweighted count
            if weight <= room:
                return 0.0
            return (1 - room / weight - elapsed) * self.duration
        # Full in this window alone: wait for the next, where this count fades in turn.
        return (1 - elapsed + max(0.0, 1 - (self.limit - 1) / current)) * self.duration

    def _incr(self, key: str) -> int:
        # Each counter lives two windows (the second as the previous one), and is counted
        # only in the first: it never expires while counted, so incr never recreates it
        # without an expiry (Django's RedisCache checks that the key exists, then INCRs).
        try:
            return int(self.cache.incr(key))
        except ValueError:  # not there yet: the first to add it wins, the others count on
            self.cache.add(key, 0, 2 * self.duration + 1)
        try:
            return int(self.cache.incr(key))
        except ValueError:  # a cache that keeps nothing (DummyCache): no limit to apply
            return 1


class AtomicRateThrottle(_LiveRate, UserRateThrottle):
    """DRF's per-user throttle (per IP for anonymous callers), counted by a
    :class:`WindowCounter` instead of DRF's history list."""

    num_requests: int
    duration: int

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        self.now = self.timer()
        self.counter = WindowCounter(self.cache, key, self.num_requests, self.duration)
        return self.counter.take(self.now)

    def wait(self) -> float | None:
        counter: WindowCounter | None = getattr(self, "counter", None)
        if counter is None:
            return None
        return max(1.0, math.ceil(counter.wait(self.now)))


class StatusRateThrottle(AtomicRateThrottle):
    scope = STATUS_SCOPE


class EventsRateThrottle(AtomicRateThrottle):
    scope = EVENTS_SCOPE


class SessionsRateThrottle(AtomicRateThrottle):
    scope = SESSIONS_SCOPE


class FailedAuthThrottle(_LiveRate, SimpleRateThrottle):
    """Counts failed authentications per client IP.

    The views call :meth:`allow_request` before authentication, :meth:`record_success` once
    a caller is authenticated, :meth:`record_failure` when they answer 401 and
    :meth:`release` when the request ends (a no-op if one of the others settled it). An IP over its
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
        """Whether the IP may try its credentials. Unproven ones take a failure's place in
        the window at once, given back on success (:meth:`record_success`) or when the
        request ends otherwise (:meth:`release`): so concurrent guesses cannot all pass a
        check that none has counted yet."""
        self.reserved = False
        self.proof = None
        self.proven_at: float | None = None
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        self.proof = self.proof_key(request)
        self.now = self.timer()
        self.counter = WindowCounter(self.cache, self.key, self.num_requests, self.duration)
        if self.proof is not None:
            with contextlib.suppress(Exception):  # a failing cache: take() decides
                self.proven_at = self.cache.get(self.proof)
        if self.proven_at is not None:
            return True  # checked, and counted only if it fails (record_failure)
        self.reserved = self.counter.take(self.now)
        return self.reserved

    def wait(self) -> float | None:
        counter: WindowCounter | None = getattr(self, "counter", None)
        if counter is None:
            return None
        return max(1.0, math.ceil(counter.wait(self.now)))

    def release(self) -> None:
        """Give back the place taken by :meth:`allow_request`: the request ended without an
        authentication failure (a success, or an error before authentication finished)."""
        if getattr(self, "reserved", False):
            self.reserved = False
            self.counter.give_back(self.now)

    def record_success(self, request: Request, view: Any) -> None:
        """Remember the credentials as good; call after :meth:`allow_request`."""
        self.release()
        if self.rate is None or self.proof is None:
            return
        if self.proven_at is None or self.now - self.proven_at > self.proof_seconds / 2:
            with contextlib.suppress(Exception):  # a failing cache: not remembered this time
                self.cache.set(self.proof, self.now, self.proof_seconds)

    def record_failure(self, request: Request, view: Any) -> None:
        """Count a failed authentication (401); call after :meth:`allow_request`."""
        if self.rate is None or not hasattr(self, "counter"):
            return
        if self.reserved:  # already in the window
            self.reserved = False
        else:
            self.counter.add(self.now)
        if self.proof is not None and self.proven_at is not None:
            # Revoked since: it is checked like any other now.
            with contextlib.suppress(Exception):
                self.cache.delete(self.proof)
