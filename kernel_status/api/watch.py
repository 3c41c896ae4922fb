"""Watching: the blocking status read (``Prefer: wait``) and the change stream (SSE).

Both endpoints are *dual-mode* views (:class:`DualModeView`): under a WSGI server Django
calls the plain DRF view directly, exactly as before (no event loop, no extra hop; ``Prefer:
wait`` is not applied and the stream answers 501); under an ASGI server Django awaits the
async layer here. That layer reuses the DRF views for everything they decide (authentication,
the failed-authentication and rate throttles, the permission and the compiled status query)
by running them on a reader thread (:func:`kernel_status.live.reads.read`), and only adds the
waiting: a subscription to the process's hub (:mod:`kernel_status.live.hub`), which holds no
thread and no database connection. Under :class:`kernel_status.live.parking.WaitParkingMiddleware`
a blocking read hands that subscription to the middleware and its request ends; the
middleware runs it again at each change (:func:`_woken_pass`).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from asgiref.sync import markcoroutinefunction
from django.db import DatabaseError, connections
from django.db.models import F
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.utils import timezone
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response

from kernel_status.api.openapi.operations import stream_schema
from kernel_status.api.serializers import KernelSessionSerializer
from kernel_status.api.views import KernelSessionListView, KernelStatusView
from kernel_status.choices import ProcessState
from kernel_status.conf import conf
from kernel_status.exceptions import DatabaseUnavailable, StreamNeedsASGI
from kernel_status.live import reads
from kernel_status.live.hub import get_hub
from kernel_status.live.parking import Ticket, ticket_of
from kernel_status.live.request_thread import release_request_thread
from kernel_status.live.stream import CallerGone, ReadRows, Row, stream_events
from kernel_status.models import Session
from kernel_status.queries.listing import SessionFilter, listing, sessions_for

logger = logging.getLogger("kernel_status")

# The jitter added to a wait: up to 1/16 of it (as Consul does), at most this many seconds.
MAX_JITTER = 1.0

_PREFERENCE = re.compile(r'^\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*("[^"]*"|[^;,\s]*))?')


def requested_wait(prefer: str | None) -> int | None:
    """The seconds of ``Prefer: wait=N`` (RFC 7240), clamped to ``KERNEL_STATUS_MAX_WAIT``.

    ``None`` (the preference is ignored, as RFC 7240 allows) when there is none, or when its
    value is not a positive whole number of seconds (``wait=abc``, ``wait=-1``, ``wait=0``,
    ``wait=1.5``). Only the first ``wait`` counts (RFC 7240, section 2).
    """
    if not prefer:
        return None
    for preference in prefer.split(","):
        match = _PREFERENCE.match(preference)
        if match is None or match.group(1).lower() != "wait":
            continue
        value = (match.group(2) or "").strip('"')
        if not value.isascii() or not value.isdigit() or len(value) > 12 or int(value) < 1:
            return None
        return min(int(value), max(1, int(conf.KERNEL_STATUS_MAX_WAIT)))
    return None


def _marker_attributes() -> dict[str, Any]:
    """What ``markcoroutinefunction`` sets on a function in this Python: the attribute that
    ``iscoroutinefunction`` looks for (``_is_coroutine`` up to 3.11, then another)."""

    def probe() -> None:
        pass

    return dict(markcoroutinefunction(probe).__dict__)


_MARKERS = _marker_attributes()


def _in_event_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class DualModeView:
    """A view that is sync when Django serves WSGI and async when it serves ASGI.

    Django asks ``iscoroutinefunction(view)`` when it is about to call the view: from the
    event loop's thread under ASGI, from a worker thread with no running loop under WSGI. So
    the coroutine marker is present only when a loop runs in the asking thread, and the plain
    view keeps its plain cost under WSGI. Other attributes (``cls``, ``initkwargs``,
    ``csrf_exempt``: what drf-spectacular and the middlewares read) are the sync view's.
    """

    def __init__(
        self,
        sync_view: Callable[..., HttpResponseBase],
        async_view: Callable[..., Any],
    ) -> None:
        self.sync_view = sync_view
        self.async_view = async_view

    def __call__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if _in_event_loop():
            return self.async_view(request, *args, **kwargs)
        return self.sync_view(request, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in _MARKERS:
            if _in_event_loop():
                return _MARKERS[name]
            raise AttributeError(name)
        if name == "_non_atomic_requests" and _in_event_loop():
            # ATOMIC_REQUESTS cannot wrap an async view; these views only read.
            return set(connections.settings)
        return getattr(self.__dict__["sync_view"], name)


# --- The blocking status read ---------------------------------------------------------------


class WatchedStatusView(KernelStatusView):
    """The status view, noting which session it answered for."""

    session_pk: int | None = None

    def check_throttles(self, request: Request) -> None:
        ticket = ticket_of(request._request)
        if ticket is not None and ticket.woken:
            return  # a parked read run again: the held request was counted once
        super().check_throttles(request)

    def get_object(self) -> Session:
        session = super().get_object()
        self.session_pk = session.pk
        return session


def _first_pass(request: HttpRequest) -> tuple[WatchedStatusView, HttpResponseBase]:
    """The status view, whole: authentication, throttles, permission, query, 200/304/4xx."""
    view = WatchedStatusView(**WatchedStatusView.as_view().initkwargs)  # type: ignore[attr-defined]
    view.setup(request)
    response = view.dispatch(request)
    if isinstance(response, Response):
        response.render()
    if response.status_code == 304 and view.session_pk is None:
        # Another get() that answered without get_object(): find the session's key.
        session_id = request.headers.get("Marimo-Session-Id", "")
        found = Session.objects.filter(session_id=session_id).values_list("pk", flat=True)
        view.session_pk = found.first()
    return view, response


def _reauthenticate(request: Request) -> None:
    """Forget who the request authenticated as, so that the next ``request.user`` asks the
    authenticators again: a user deactivated (or a token deleted, a session logged out)
    during the wait is answered as the same request without a wait would be."""
    django_request = request._request
    if hasattr(django_request, "user"):
        # AuthenticationMiddleware's lazy user (what SessionAuthentication reads) caches too.
        from django.contrib import auth
        from django.utils.functional import SimpleLazyObject

        django_request.__dict__.pop("_cached_user", None)
        django_request.user = SimpleLazyObject(lambda: auth.get_user(django_request))  # type: ignore[assignment]
    request.__dict__.pop("_user", None)
    request.__dict__.pop("_auth", None)


def _again(view: WatchedStatusView) -> HttpResponseBase:
    """The answer now, without throttling again: who the caller is (one authentication
    query), the permission and the state, through the view's own get() (the compiled query
    and the object permission)."""
    request = view.request
    assert isinstance(request, Request)
    try:
        # On the token path this reads the token, the user and the session's row again, in
        # one statement: the first read's row is never reused.
        _reauthenticate(request)
        view.perform_authentication(request)
        response = view.get(request)
    except Exception as exc:
        response = view.handle_exception(exc)
    response = view.finalize_response(request, response)
    response.render()
    return response


def _error(view: WatchedStatusView, exc: Exception) -> HttpResponseBase:
    response = view.finalize_response(view.request, view.handle_exception(exc))
    response.render()
    return response


def _applied(response: HttpResponseBase, wait: int) -> HttpResponseBase:
    if response.status_code in (200, 304):
        response["Preference-Applied"] = f"wait={wait}"
    return response


async def watch_status(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
    """``GET /api/kernel/status`` under ASGI."""
    wait = requested_wait(request.headers.get("Prefer"))
    if wait is None or not request.headers.get("If-None-Match"):
        # Today's read, on a reader thread: run as Django runs a sync view under ASGI, each
        # concurrent request would get a thread, and so a database connection, of its own.
        return await reads.read(_plain_read, request, args, kwargs)
    try:
        return await _wait_for_change(request, wait)
    except DatabaseError as error:  # the view's handler could not even be reached
        logger.warning("Database unavailable during a wait: %s", error)
        return _json_error(503, "The database is busy; retry shortly.", "database_unavailable")


_plain_status = KernelStatusView.as_view()


def _plain_read(
    request: HttpRequest, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> HttpResponseBase:
    response = _plain_status(request, *args, **kwargs)
    if isinstance(response, Response):
        response.render()
    return response


async def _wait_for_change(request: HttpRequest, wait: int) -> HttpResponseBase:
    import asyncio

    ticket = ticket_of(request)
    if ticket is not None and ticket.woken:
        return await _woken_pass(request, ticket, wait)
    loop = asyncio.get_running_loop()
    hub = get_hub()
    # Subscribed to every session until the first read names this one: a change that
    # commits between the read and the narrowing is not missed.
    with hub.subscribe(None) as subscription:
        view, response = await reads.read(_first_pass, request)
        if response.status_code != 304 or view.session_pk is None:
            return _applied(response, wait)
        missed = subscription.narrow([view.session_pk])
        deadline = loop.time() + wait + random.uniform(0, min(MAX_JITTER, wait / 16))
        if ticket is not None:
            # The parking middleware waits; this request ends with the 304 that it keeps.
            ticket.park(hub.subscribe([view.session_pk]), view.session_pk, deadline, missed)
            return _applied(response, wait)
        release_request_thread()  # the wait holds no thread; the wake-up starts one again
        while True:
            if not missed:
                try:
                    expiry = await reads.read(reads.next_expiry, [view.session_pk])
                except DatabaseError as error:
                    return await reads.read(_error, view, error)
                timeout = deadline - loop.time()
                if expiry is not None:
                    timeout = min(timeout, reads.until_expiry(expiry))
                woke = await subscription.wait(max(0.0, timeout))
                if subscription.closing:
                    return _applied(response, wait)  # shutting down: the 304 at once
                if not woke and loop.time() >= deadline:
                    return _applied(response, wait)  # no change: 304
                subscription.take()
            missed = False
            # Woken by a change of this session (or a liveness expiry, or a resync): the
            # permission and the state again; a change that left the answer alone waits on.
            again = await reads.read(_again, view)
            if again.status_code != 304:
                return _applied(again, wait)


async def _woken_pass(request: HttpRequest, ticket: Ticket, wait: int) -> HttpResponseBase:
    """A parked read run again: the whole view as a new request, but not throttled again."""
    if ticket.database_failed:
        logger.warning("Database unavailable during a parked wait")
        return _json_error(503, "The database is busy; retry shortly.", "database_unavailable")
    view, response = await reads.read(_first_pass, request)
    if response.status_code == 304 and view.session_pk is not None:
        assert ticket.subscription is not None
        missed = ticket.subscription.narrow([view.session_pk])
        ticket.park(ticket.subscription, view.session_pk, ticket.deadline, missed)
    return _applied(response, wait)


def _json_error(status: int, detail: str, code: str) -> JsonResponse:
    response = JsonResponse({"detail": detail, "code": code}, status=status)
    response["Cache-Control"] = "no-store"
    if status == 503:
        response["Retry-After"] = str(DatabaseUnavailable.wait)  # as the views' 503 says
    return response


status_view = DualModeView(_plain_status, watch_status)


# --- The change stream ----------------------------------------------------------------------


class KernelSessionStreamView(KernelSessionListView):
    """``GET /api/kernel/sessions/stream``: the same caller, rate limit and filters as the
    listing. Under WSGI it answers 501; under ASGI its get() only checks the request, and
    :func:`watch_stream` streams."""

    streaming = False
    filters: SessionFilter | None = None

    @stream_schema
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not self.streaming:
            raise StreamNeedsASGI()
        self.filters = self.get_filters()
        return Response(status=200)


def _open_stream(request: HttpRequest) -> tuple[KernelSessionStreamView, HttpResponseBase]:
    view = KernelSessionStreamView(**KernelSessionStreamView.as_view().initkwargs)  # type: ignore[attr-defined]
    view.streaming = True
    view.setup(request)
    response = view.dispatch(request)
    if isinstance(response, Response):
        response.render()
    return view, response


_serializer = KernelSessionSerializer()


def _still_authenticated(view: KernelSessionStreamView) -> None:
    """Authenticate the stream's request again, as a new request would be; raise
    :class:`CallerGone` with the answer's detail when it would be refused."""
    request = view.request
    assert isinstance(request, Request)
    try:
        _reauthenticate(request)
        view.perform_authentication(request)
        view.check_permissions(request)
    except APIException as refused:
        raise CallerGone(str(refused.detail)) from None


def _row_reader(view: KernelSessionStreamView) -> ReadRows:
    filters = view.filters or SessionFilter()
    opened = True  # the first read follows the stream's own authentication

    def read_rows(pks: set[int] | None, filtered: bool) -> dict[int, Row]:
        """The caller's sessions (under its filters), with its permission, read now; after
        the first read, once the caller is authenticated again (one query a wake-up)."""
        nonlocal opened
        if opened:
            opened = False
        else:
            _still_authenticated(view)
        now = timezone.now()
        chosen = filters if filtered else SessionFilter()
        rows = listing(sessions_for(view.request.user), chosen, now=now).annotate(
            kernel_state=F("kernel__state"),
            heard=Coalesce("kernel__last_heartbeat_at", "kernel__started_at"),
        )
        if pks is not None:
            rows = rows.filter(pk__in=sorted(pks))
        window = conf.liveness_window
        found: dict[int, Row] = {}
        for session in rows.order_by("pk"):
            expiry = None
            running = session.kernel_state == ProcessState.RUNNING and session.heard is not None
            if window is not None and running and session.heard + window > now:
                expiry = session.heard + window
            item = dict(_serializer.to_representation(session))
            found[session.pk] = Row(session.session_id, item, expiry)
        return found

    return read_rows


async def watch_stream(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
    """``GET /api/kernel/sessions/stream`` under ASGI."""
    try:
        view, response = await reads.read(_open_stream, request)
    except DatabaseError as error:
        logger.warning("Database unavailable opening a stream: %s", error)
        return _json_error(503, "The database is busy; retry shortly.", "database_unavailable")
    if response.status_code != 200:
        return response
    events = stream_events(
        get_hub(),
        _row_reader(view),
        request.headers.get("Last-Event-ID"),
        queue_size=conf.KERNEL_STATUS_STREAM_QUEUE,
        heartbeat=conf.KERNEL_STATUS_STREAM_HEARTBEAT,
        max_seconds=conf.stream_max_seconds,
    )
    stream = StreamingHttpResponse(
        _without_request_thread(events), content_type="text/event-stream"
    )
    stream["Cache-Control"] = "no-store"
    stream["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return stream


async def _without_request_thread(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    # Iterated once the middlewares have seen the response: from here on, the stream's only
    # sync work is on the reader pool.
    release_request_thread()
    async for chunk in events:
        yield chunk


stream_view = DualModeView(KernelSessionStreamView.as_view(), watch_stream)
