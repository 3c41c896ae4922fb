"""The HTTP API: ``GET /api/kernel/status`` for clients, ``POST /api/kernel/events`` for hosts,
``GET /api/kernel/sessions`` for cullers and dashboards.

Their OpenAPI documentation is in :mod:`kernel_status.api.openapi.operations`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import cache
from typing import Any, TypeVar

from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError, router
from django.db.models import Model, QuerySet
from django.http import Http404
from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException, AuthenticationFailed, NotAuthenticated
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from kernel_status.api.conditional import body_etag, client_has_current
from kernel_status.api.openapi.operations import events_schema, sessions_schema, status_schema
from kernel_status.api.pagination import SessionCursorPagination
from kernel_status.api.parsers import EventBatchParser, check_length
from kernel_status.api.permissions import CanReportKernelEvents, HasSessionEditAccess, IsActiveUser
from kernel_status.api.renderers import JSONRenderer
from kernel_status.api.serializers import (
    KernelEventBatchResultSerializer,
    KernelSessionSerializer,
    KernelStatusResponseSerializer,
)
from kernel_status.api.session_header import get_session_id
from kernel_status.api.throttling import (
    EventsRateThrottle,
    FailedAuthThrottle,
    SessionsRateThrottle,
    StatusRateThrottle,
)
from kernel_status.api.token_status import authenticate_and_fetch, token_status_request
from kernel_status.deadline import bounded, shed_if_open
from kernel_status.exceptions import (
    DatabaseUnavailable,
    InvalidEventBatch,
    InvalidQuery,
    SessionNotFound,
)
from kernel_status.mirror.ingest import ingest
from kernel_status.mirror.wire import KernelEventBatchSerializer
from kernel_status.models import Session
from kernel_status.queries.listing import (
    FilterError,
    SessionFilter,
    listing,
    parse_idle_for,
    parse_state,
    sessions_for,
)
from kernel_status.queries.status import StatusRow, fetch_status

logger = logging.getLogger("kernel_status")

_M = TypeVar("_M", bound=Model)


class JSONOnlyNegotiation(DefaultContentNegotiation):
    """Always JSON, whatever ``Accept`` says: no browsable-API HTML page, no 406."""

    def select_renderer(
        self,
        request: Request,
        renderers: Iterable[BaseRenderer],
        format_suffix: str | None = None,
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class KernelAPIView(GenericAPIView[_M]):
    """What the endpoints share: JSON answers that are never cached, whatever goes wrong
    (database trouble is a 503, a bug a JSON 500, even with ``DEBUG`` on), rate limits with
    failed authentications counted per IP, and none of the host's pagination or filters."""

    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnlyNegotiation
    pagination_class = None
    filter_backends = []
    # "no-store" for every answer; views with conditional GETs let caches keep their
    # successful answers, provided they revalidate each time.
    success_cache_control = "no-store"
    failed_auth_throttle_class = FailedAuthThrottle
    failed_auth_throttle: FailedAuthThrottle  # this request's, set by initial()

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # The request's database work is bounded by KERNEL_STATUS_QUERY_DEADLINE.
        with bounded(mirror_aliases()):
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        shed_if_open()  # the database failed to answer just now: 503 without trying it
        self.check_failed_auth_throttle(request)
        super().initial(request, *args, **kwargs)

    def check_failed_auth_throttle(self, request: Request) -> None:
        """429 for an IP over its failed-authentication rate, before its credentials are
        looked at (unless they authenticated recently): DRF's own throttles run after
        authentication, which a bad token fails."""
        self.failed_auth_throttle = self.failed_auth_throttle_class()
        if not self.failed_auth_throttle.allow_request(request, self):
            self.throttled(request, self.failed_auth_throttle.wait() or 0)

    def perform_authentication(self, request: Request) -> None:
        super().perform_authentication(request)
        if request.user.is_authenticated:  # only failures count; good credentials are noted
            self.failed_auth_throttle.record_success(request, self)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, NotAuthenticated | AuthenticationFailed):
            # This request's throttle holds its place in the window (allow_request).
            throttle = getattr(self, "failed_auth_throttle", None)
            if throttle is None:
                throttle = self.failed_auth_throttle_class()
                throttle.allow_request(self.request, self)
            throttle.record_failure(self.request, self)
        if isinstance(exc, OperationalError | InterfaceError):
            # A locked SQLite file, a PostgreSQL statement or lock timeout, a connection that
            # failed or was lost: retrying is the answer.
            logger.warning("Database unavailable: %s", exc)
            exc = DatabaseUnavailable()
        if not isinstance(exc, APIException | Http404 | PermissionDenied):
            # DRF would re-raise it, and Django answer with an HTML page (a debug page when
            # DEBUG is on). Clients of a JSON API get JSON; the traceback goes to the log.
            logger.error("Internal error answering %s", self.request.path, exc_info=exc)
            return Response(
                {"detail": "Internal server error."},
                status=status.HTTP_500_INTERNAL_SERVER_ERROR,
            )
        return super().handle_exception(exc)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        throttle = getattr(self, "failed_auth_throttle", None)
        if throttle is not None:  # ended without a 401: it was no failed authentication
            throttle.release()
        # The mirror changes constantly: no answer may be used without asking again, and
        # errors may not be stored at all.
        success = response.status_code in (200, 304)
        response["Cache-Control"] = self.success_cache_control if success else "no-store"
        if response.status_code == 304:
            del response["Content-Type"]  # no body
        return response


def mirror_aliases() -> tuple[str, ...]:
    """The databases a request of the endpoints reads and writes (the token and user tables
    live with them, or on the default database)."""
    read, write = router.db_for_read(Session), router.db_for_write(Session)
    return (read,) if read == write else (read, write)


@cache
def _status_serializer() -> KernelStatusResponseSerializer:
    # One instance for every request: to_representation() keeps no state, and building a
    # serializer (deep copies of its fields) cost as much per request as the status query.
    return KernelStatusResponseSerializer()


class KernelStatusView(KernelAPIView[Session]):
    """Answer ``{"state": "running" | "idle" | "stopped"}`` for the session in the header.

    Order of checks: authentication (401), then the header (400), then one query that
    loads the session only if the caller may see it (404 otherwise, whether or not it
    exists), then edit access (403), then the answer (200).
    """

    permission_classes = [HasSessionEditAccess]
    throttle_classes = [StatusRateThrottle]
    serializer_class = KernelStatusResponseSerializer
    http_method_names = ["get", "head"]  # HEAD: GET's answer without the body (RFC 9110 9.3.2)
    success_cache_control = "private, no-cache"
    # The row read with the token on the token path (kernel_status.api.token_status).
    token_path_row: StatusRow | None
    token_path_taken = False

    def perform_authentication(self, request: Request) -> None:
        fast = token_status_request(request)
        if fast is None:
            super().perform_authentication(request)
            return
        # One statement: the token, its user, the access level and the state.
        self.token_path_row = authenticate_and_fetch(request, fast).status
        self.token_path_taken = True
        self.failed_auth_throttle.record_success(request, self)

    def get_object(self) -> Session:
        if self.token_path_taken:
            row = self.token_path_row
        else:
            # One query, compiled once per shape: the access level and the derived state.
            row = fetch_status(self.request.user, get_session_id(self.request))
        if row is None:
            raise SessionNotFound()
        session = Session(pk=row.pk, session_id=row.session_id, last_activity=row.last_activity)
        session.access_level = row.access_level  # type: ignore[attr-defined]
        session.state = row.state  # type: ignore[attr-defined]
        self.check_object_permissions(self.request, session)
        return session

    @status_schema
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # get_object() checks every permission first: a 304 reveals no more than a 200.
        data = _status_serializer().to_representation(self.get_object())
        etag = body_etag(JSONRenderer().render(data))
        if client_has_current(request.headers.get("If-None-Match"), etag):
            response = Response(status=304)
        else:
            response = Response(data)
        # No Vary: the tag depends on the body alone, so a cache that revalidates an answer
        # kept for another session or user can only be told "not modified" when the bytes
        # are the same; leaving it out saves ~45 bytes on every poll.
        response["ETag"] = etag
        return response


class KernelEventsView(KernelAPIView[Any]):
    """Take a batch of events for one session from a kernel host and apply it atomically
    (:func:`kernel_status.mirror.ingest.ingest` validates, applies and reports)."""

    permission_classes = [CanReportKernelEvents]
    throttle_classes = [EventsRateThrottle]
    parser_classes = [EventBatchParser]
    serializer_class = KernelEventBatchSerializer
    http_method_names = ["post"]

    @events_schema
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        session_id = get_session_id(request)
        check_length(request)
        received_at = timezone.now()
        result = ingest(session_id, request.data, received_at)
        return Response(KernelEventBatchResultSerializer(result).data)

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        if isinstance(exc, InvalidEventBatch) and isinstance(response.data, dict):
            response.data["errors"] = exc.errors
        return response


# Keeps unknown parameters (a typo such as idle-for) from silently widening the listing.
KNOWN_PARAMETERS = frozenset({"state", "idle_for", "cursor", "page_size"})


class KernelSessionListView(KernelAPIView[Session]):
    """The sessions the caller may edit (every session with ``view_all_sessions``).

    Queries: authentication, the permission lookup (Django caches it per request; none for
    superusers), then one query per page, whatever the page size and the number of cells.
    """

    permission_classes = [IsActiveUser]
    throttle_classes = [SessionsRateThrottle]
    serializer_class = KernelSessionSerializer
    pagination_class = SessionCursorPagination  # type: ignore[assignment]
    http_method_names = ["get", "head"]

    def get_queryset(self) -> QuerySet[Session]:
        return listing(sessions_for(self.request.user), self.get_filters())

    def get_filters(self) -> SessionFilter:
        params = self.request.query_params
        unknown = sorted(set(params) - KNOWN_PARAMETERS)
        if unknown:
            raise InvalidQuery(f"Unknown query parameter: {unknown[0]}.")
        try:
            state = params.get("state")
            idle_for = params.get("idle_for")
            return SessionFilter(
                state=None if state is None else parse_state(state),
                idle_for=None if idle_for is None else parse_idle_for(idle_for),
            )
        except FilterError as error:
            raise InvalidQuery(str(error)) from None

    @sessions_schema
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset: QuerySet[Session] = self.get_queryset()
        page = self.paginate_queryset(queryset)
        assert page is not None  # pagination is always on
        return self.get_paginated_response(self.get_serializer(page, many=True).data)
