"""The HTTP API: ``GET /api/kernel/status`` for clients, ``POST /api/kernel/events`` for hosts."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from django.conf import settings
from django.db import OperationalError
from django.db.models import Model
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from kernel_status.events import ApplyResult, KernelEvent
from kernel_status.exceptions import (
    BodyTooLarge,
    DatabaseUnavailable,
    InvalidEventBatch,
    SessionNotFound,
)
from kernel_status.headers import SESSION_ID_HEADER, get_session_id
from kernel_status.ingest import parse_batch
from kernel_status.mirror import UnknownSession, apply_events
from kernel_status.models import Session, SessionQuerySet
from kernel_status.permissions import CanReportKernelEvents, HasSessionEditAccess
from kernel_status.serializers import (
    BatchErrorSerializer,
    ErrorSerializer,
    KernelEventBatchResultSerializer,
    KernelEventBatchSerializer,
    KernelStatusResponseSerializer,
)

logger = logging.getLogger("kernel_status")

_M = TypeVar("_M", bound=Model)


def _error(
    example_name: str, description: str, detail: str, serializer: type = ErrorSerializer
) -> OpenApiResponse:
    return OpenApiResponse(
        response=serializer,
        description=description,
        examples=[OpenApiExample(example_name, value={"detail": detail})],
    )


SESSION_ID_PARAMETER = OpenApiParameter(
    SESSION_ID_HEADER,
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="Id of the notebook session (1 to 128 characters, no control characters).",
)
MISSING_HEADER = _error(
    "MissingHeader",
    "Header missing, empty, too long or with control characters.",
    f"The {SESSION_ID_HEADER} header is required.",
)
NOT_AUTHENTICATED = _error(
    "NotAuthenticated", "Not authenticated.", "Authentication credentials were not provided."
)


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
    """What both endpoints share: JSON answers that are never cached, JSON for database
    trouble too, and none of the host's pagination or filters."""

    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnlyNegotiation
    pagination_class = None
    filter_backends = []

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, OperationalError):
            # A locked SQLite file or a PostgreSQL lock timeout: retrying is the answer.
            logger.warning("Database unavailable: %s", exc)
            exc = DatabaseUnavailable()
        return super().handle_exception(exc)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        # The mirror changes constantly: no answer, errors included, may be cached.
        response["Cache-Control"] = "no-store"
        return response


class KernelStatusView(KernelAPIView[Session]):
    """Answer ``{"state": "running" | "idle" | "stopped"}`` for the session in the header.

    Order of checks: authentication (401), then the header (400), then one query that
    loads the session only if the caller may see it (404 otherwise, whether or not it
    exists), then edit access (403), then the answer (200).
    """

    permission_classes = [HasSessionEditAccess]
    serializer_class = KernelStatusResponseSerializer
    http_method_names = ["get"]

    def get_queryset(self) -> SessionQuerySet:
        return Session.objects.visible_to(self.request.user).with_state()

    def get_object(self) -> Session:
        session_id = get_session_id(self.request)
        # One query: access level and derived status come back as annotations.
        try:
            session = self.get_queryset().only("pk").get(session_id=session_id)
        except Session.DoesNotExist:
            raise SessionNotFound() from None
        self.check_object_permissions(self.request, session)
        return session

    @extend_schema(
        operation_id="kernel_status",
        summary="Is this session's kernel busy?",
        description=(
            "Derived state of the kernel of the session named by the `Marimo-Session-Id` "
            "header. Requires edit access to that session. Responses are never cached."
        ),
        tags=["kernel"],
        parameters=[SESSION_ID_PARAMETER],
        responses={
            200: OpenApiResponse(
                response=KernelStatusResponseSerializer,
                description="The kernel's state.",
                examples=[OpenApiExample("Running", value={"state": "running"})],
            ),
            400: MISSING_HEADER,
            401: NOT_AUTHENTICATED,
            403: _error(
                "EditAccessRequired",
                "Authenticated, may view the session but not edit it.",
                "Edit access to this session is required.",
            ),
            404: _error(
                "SessionNotFound",
                "No such session, or the caller has no access to it.",
                "Session not found.",
            ),
            405: _error("MethodNotAllowed", "Method other than GET.", 'Method "POST" not allowed.'),
        },
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(self.get_serializer(self.get_object()).data)


class KernelEventsView(KernelAPIView[Any]):
    """Take a batch of events for one session from a kernel host and apply it atomically."""

    permission_classes = [CanReportKernelEvents]
    parser_classes = [JSONParser]
    serializer_class = KernelEventBatchSerializer
    http_method_names = ["post"]

    @extend_schema(
        operation_id="kernel_events",
        summary="Report kernel and cell events of one session",
        description=(
            "For kernel hosts. Applies marimo `cell-op` frames (verbatim) and lifecycle "
            "reports (`kernel-started`, `kernel-heartbeat`, `kernel-stopped`) to the mirror in "
            "one transaction. Events older than what is stored are ignored, so retries and "
            "out-of-order delivery are safe. Frames with other ops are accepted and counted. "
            "Requires the `kernel_status.report_kernel_events` permission; session edit "
            "access does not count. A rejected batch changes nothing."
        ),
        tags=["kernel"],
        parameters=[SESSION_ID_PARAMETER],
        request=KernelEventBatchSerializer,
        responses={
            200: OpenApiResponse(
                response=KernelEventBatchResultSerializer,
                description="The batch was applied.",
                examples=[
                    OpenApiExample(
                        "Applied", value={"applied": 3, "ignored_older": 1, "ignored_ops": 2}
                    )
                ],
            ),
            400: OpenApiResponse(
                response=BatchErrorSerializer,
                description="Bad header, body that is not JSON, or invalid items (each listed "
                "in `errors`). Nothing was applied.",
                examples=[
                    OpenApiExample(
                        "InvalidItem",
                        value={
                            "detail": 'Invalid event batch: events[0].data.status: "done" is '
                            "not a valid choice.",
                            "errors": [
                                {
                                    "index": 0,
                                    "field": "data.status",
                                    "message": '"done" is not a valid choice.',
                                }
                            ],
                        },
                    )
                ],
            ),
            401: NOT_AUTHENTICATED,
            403: _error(
                "MissingPermission",
                "Authenticated without the report_kernel_events permission.",
                "The kernel_status.report_kernel_events permission is required.",
            ),
            404: _error("SessionNotFound", "No session has this id.", "Session not found."),
            405: _error("MethodNotAllowed", "Method other than POST.", 'Method "GET" not allowed.'),
            413: _error(
                "BatchTooLarge",
                "More events than KERNEL_STATUS_MAX_BATCH_SIZE, or a body larger than "
                "DATA_UPLOAD_MAX_MEMORY_SIZE.",
                "The batch has 1001 events; at most 1000 are accepted per request.",
            ),
            415: _error(
                "UnsupportedMediaType",
                "The body is not JSON.",
                'Unsupported media type "text/plain" in request.',
            ),
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        session_id = get_session_id(request)
        self.check_body_size(request)
        batch = parse_batch(request.data)
        result = self.perform_apply(session_id, batch.events)
        result = replace(result, ignored_ops=batch.ignored_ops)
        return Response(KernelEventBatchResultSerializer(result).data)

    def check_body_size(self, request: Request) -> None:
        # DRF reads the body as a stream, past Django's own check of this setting.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            raise BodyTooLarge(
                f"The body has {length} bytes; at most {limit} are accepted "
                "(DATA_UPLOAD_MAX_MEMORY_SIZE)."
            )

    def perform_apply(self, session_id: str, events: Sequence[KernelEvent]) -> ApplyResult:
        try:
            return apply_events(session_id, events)
        except UnknownSession:
            raise SessionNotFound() from None

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        if isinstance(exc, InvalidEventBatch) and isinstance(response.data, dict):
            response.data["errors"] = exc.errors
        return response
