"""The HTTP API: ``GET /api/kernel/status`` for clients, ``POST /api/kernel/events`` for hosts.

Their OpenAPI documentation is in :mod:`kernel_status.openapi`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import cache
from typing import Any, TypeVar

from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.db.models import Model
from django.http import Http404
from rest_framework import status
from rest_framework.exceptions import APIException, AuthenticationFailed, NotAuthenticated
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from kernel_status.conditional import body_etag, none_match
from kernel_status.exceptions import DatabaseUnavailable, InvalidEventBatch, SessionNotFound
from kernel_status.headers import get_session_id
from kernel_status.ingest import EventBatchParser, ingest
from kernel_status.models import Session
from kernel_status.openapi import events_schema, status_schema
from kernel_status.permissions import CanReportKernelEvents, HasSessionEditAccess
from kernel_status.serializers import (
    KernelEventBatchResultSerializer,
    KernelEventBatchSerializer,
    KernelStatusResponseSerializer,
)
from kernel_status.status_query import fetch_status
from kernel_status.throttling import EventsRateThrottle, FailedAuthThrottle, StatusRateThrottle

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
    """What both endpoints share: JSON answers that are never cached, whatever goes wrong
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

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
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
            self.failed_auth_throttle_class().record_failure(self.request, self)
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
        # The mirror changes constantly: no answer may be used without asking again, and
        # errors may not be stored at all.
        success = response.status_code in (200, 304)
        response["Cache-Control"] = self.success_cache_control if success else "no-store"
        if response.status_code == 304:
            del response["Content-Type"]  # no body
        return response


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
    http_method_names = ["get"]
    success_cache_control = "private, no-cache"

    def get_object(self) -> Session:
        session_id = get_session_id(self.request)
        # One query, compiled once per shape: the access level and the derived state.
        row = fetch_status(self.request.user, session_id)
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
        if none_match(request.headers.get("If-None-Match"), etag):
            response = Response(data)
        else:
            response = Response(status=304)
        # No Vary: the tag depends on the body alone, so a cache that revalidates an answer
        # kept for another session or user can only be told "not modified" when the bytes
        # are the same; leaving it out saves ~45 bytes on every poll.
        response["ETag"] = etag
        return response


class KernelEventsView(KernelAPIView[Any]):
    """Take a batch of events for one session from a kernel host and apply it atomically
    (:func:`kernel_status.ingest.ingest` parses, limits, applies and reports)."""

    permission_classes = [CanReportKernelEvents]
    throttle_classes = [EventsRateThrottle]
    parser_classes = [EventBatchParser]
    serializer_class = KernelEventBatchSerializer
    http_method_names = ["post"]

    @events_schema
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        result = ingest(request, get_session_id(request))
        return Response(KernelEventBatchResultSerializer(result).data)

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        if isinstance(exc, InvalidEventBatch) and isinstance(response.data, dict):
            response.data["errors"] = exc.errors
        return response
