"""The OpenAPI documentation of the endpoints: parameters, answers and examples.

Kept apart from :mod:`kernel_status.api.views`, so that the views read as views; the
drf-spectacular extensions for our own field types are in
:mod:`kernel_status.api.openapi.extensions`.
"""

from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)

from kernel_status.api.serializers import (
    BatchErrorSerializer,
    ErrorSerializer,
    KernelEventBatchResultSerializer,
    KernelSessionEventSerializer,
    KernelSessionSerializer,
    KernelStatusResponseSerializer,
)
from kernel_status.api.session_header import SESSION_ID_HEADER
from kernel_status.choices import SessionState
from kernel_status.conf import VIEW_ALL_PERMISSION
from kernel_status.mirror.wire import KernelEventBatchSerializer
from kernel_status.queries.listing import DEFAULT_PAGE_SIZE, MAX_IDLE_FOR_SECONDS, MAX_PAGE_SIZE
from kernel_status.validators import SESSION_ID_MAX_LENGTH, id_schema


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
    id_schema(SESSION_ID_MAX_LENGTH),
    OpenApiParameter.HEADER,
    required=True,
    description=f"Id of the notebook session: 1 to {SESSION_ID_MAX_LENGTH} characters, "
    "not only whitespace, no control characters. UTF-8 on the wire.",
)
RETRY_AFTER_HEADER = OpenApiParameter(
    "Retry-After",
    int,
    OpenApiParameter.HEADER,
    description="Seconds to wait before retrying.",
    response=[429, 503],
)

IF_NONE_MATCH_PARAMETER = OpenApiParameter(
    "If-None-Match",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="The `ETag` of the answer the client has; 304 with no body if it is current.",
)
PREFER_PARAMETER = OpenApiParameter(
    "Prefer",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="`wait=N` (RFC 7240), with `If-None-Match`, under an ASGI server: hold the "
    "request until the answer differs from the client's `ETag` (200), or N seconds pass "
    "(304). N is a whole number of seconds from 1; a larger one is clamped to the server's "
    "maximum (`KERNEL_STATUS_MAX_WAIT`, 60 by default), anything else is ignored (the read "
    "answers at once). Not applied under WSGI.",
    examples=[OpenApiExample("Wait", value="wait=30")],
)
PREFERENCE_APPLIED_HEADER = OpenApiParameter(
    "Preference-Applied",
    str,
    OpenApiParameter.HEADER,
    response=[200, 304],
    description="`wait=N`: the wait was honoured, for N seconds (the clamped value).",
)
ETAG_HEADER = OpenApiParameter(
    "ETag",
    str,
    OpenApiParameter.HEADER,
    response=[200, 304],
    description="Entity tag of the body; changes exactly when the body changes.",
)

NOT_AUTHENTICATED = _error(
    "NotAuthenticated", "Not authenticated.", "Authentication credentials were not provided."
)
DATABASE_UNAVAILABLE = _error(
    "DatabaseUnavailable",
    "The database is busy, locked, slow past its statement timeout, frozen past the server's "
    "deadline, or unreachable. Retry after `Retry-After` seconds. A POST answered so may "
    "have been applied all the same (its answer was lost); sending it again is safe.",
    "The database is busy; retry shortly.",
)
THROTTLED = _error(
    "Throttled",
    "Too many requests: over the caller's rate for this endpoint, or too many failed "
    "authentications from this IP (then refused before credentials are checked, except "
    "credentials that authenticated successfully within the last day, which still pass). "
    "Retry after `Retry-After` seconds.",
    "Request was throttled. Expected available in 42 seconds.",
)
BAD_HEADER_EXAMPLE = OpenApiExample(
    "MissingHeader", value={"detail": f"The {SESSION_ID_HEADER} header is required."}
)


status_schema = extend_schema(
    operation_id="kernel_status",
    summary="Is this session's kernel busy?",
    description=(
        "Derived state of the kernel of the session named by the `Marimo-Session-Id` "
        "header. Requires edit access to that session. Successful answers carry an "
        "`ETag` (a hash of the body: it changes exactly when the body changes) and "
        "`Cache-Control: private, no-cache`; send the tag back in `If-None-Match` to get "
        "304 with no body while nothing changed. Permission is checked first, so a caller "
        "without access gets the 401, 403 or 404, never a 304. Errors carry "
        "`Cache-Control: no-store`. With `If-None-Match` and `Prefer: wait=N`, under an ASGI "
        "server, the read blocks until the answer changes or N seconds pass (a long poll): "
        "permission is checked before the wait and again when it ends, and a liveness "
        "expiry during the wait answers `stopped`."
    ),
    tags=["kernel"],
    parameters=[
        SESSION_ID_PARAMETER,
        IF_NONE_MATCH_PARAMETER,
        PREFER_PARAMETER,
        ETAG_HEADER,
        PREFERENCE_APPLIED_HEADER,
        RETRY_AFTER_HEADER,
    ],
    responses={
        200: OpenApiResponse(
            response=KernelStatusResponseSerializer,
            description="The kernel's state.",
            examples=[
                OpenApiExample(
                    "Running",
                    value={"state": "running", "last_activity": "2026-01-05T09:30:12.250000Z"},
                )
            ],
        ),
        304: OpenApiResponse(
            response=None,
            description="Not modified: `If-None-Match` names the current `ETag`. No body.",
        ),
        400: OpenApiResponse(
            response=ErrorSerializer,
            description="Header missing, empty, too long, not UTF-8 or with control characters.",
            examples=[BAD_HEADER_EXAMPLE],
        ),
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
        429: THROTTLED,
        503: DATABASE_UNAVAILABLE,
    },
)


events_schema = extend_schema(
    operation_id="kernel_events",
    summary="Report kernel and cell events of one session",
    description=(
        "For kernel hosts. Applies marimo `cell-op` frames (verbatim) and lifecycle "
        "reports (`kernel-started`, `kernel-heartbeat`, `kernel-stopped`) to the mirror in "
        "one transaction. Events older than what is stored are ignored, so retries and "
        "out-of-order delivery are safe. Frames with any other op are rejected: send only "
        "these four. Requires the `kernel_status.report_kernel_events` permission; session "
        "edit access does not count. A rejected batch changes nothing."
    ),
    tags=["kernel"],
    parameters=[SESSION_ID_PARAMETER, RETRY_AFTER_HEADER],
    request=KernelEventBatchSerializer,
    responses={
        200: OpenApiResponse(
            response=KernelEventBatchResultSerializer,
            description="The batch was applied.",
            examples=[OpenApiExample("Applied", value={"applied": 3, "ignored_older": 1})],
        ),
        400: OpenApiResponse(
            response=BatchErrorSerializer,
            description="Bad header, a body that is not JSON or not a batch, or invalid items "
            "(each listed in `errors`), including timestamps more than "
            "KERNEL_STATUS_MAX_CLOCK_SKEW ahead of the server's clock. Nothing was applied.",
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
                ),
                BAD_HEADER_EXAMPLE,
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
        411: _error(
            "LengthRequired",
            "A body without Content-Length (Transfer-Encoding: chunked).",
            "A Content-Length header is required; chunked bodies are not accepted.",
        ),
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
        429: THROTTLED,
        503: DATABASE_UNAVAILABLE,
    },
)


CURSOR_DESCRIPTION = "Where the page starts: from the `next` or `previous` link."
PAGE_SIZE_DESCRIPTION = (
    f"Sessions per page, from 1 to {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE})."
)

sessions_schema = extend_schema(
    operation_id="kernel_sessions",
    summary="The sessions the caller may edit, with their states",
    description=(
        "Sessions the caller may edit (every session for holders of the "
        f"`{VIEW_ALL_PERMISSION}` permission, such as a culler's service account), in a "
        "stable order, a page at a time: follow `next` until it is null. Each entry's "
        "`state` is derived as for `GET /api/kernel/status`. One database query per page. "
        "Answers carry `Cache-Control: no-store`."
    ),
    tags=["kernel"],
    parameters=[
        OpenApiParameter("cursor", str, OpenApiParameter.QUERY, description=CURSOR_DESCRIPTION),
        OpenApiParameter(
            "page_size",
            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
            OpenApiParameter.QUERY,
            description=PAGE_SIZE_DESCRIPTION,
        ),
        OpenApiParameter(
            "state",
            str,
            OpenApiParameter.QUERY,
            enum=SessionState.values,
            description="Only sessions in this state.",
        ),
        OpenApiParameter(
            "idle_for",
            {"type": "number", "minimum": 0, "maximum": MAX_IDLE_FOR_SECONDS},
            OpenApiParameter.QUERY,
            description="Only sessions that are idle or stopped and had no activity for at "
            "least this many seconds (a session with no activity yet counts from its "
            f"registration). From 0 to {MAX_IDLE_FOR_SECONDS}.",
        ),
        RETRY_AFTER_HEADER,
    ],
    responses={
        200: OpenApiResponse(
            response=KernelSessionSerializer(many=True),
            description="A page of sessions; `next` is null on the last page.",
        ),
        400: OpenApiResponse(
            response=ErrorSerializer,
            description="A filter or page size that cannot be used, or an unknown query parameter.",
            examples=[
                OpenApiExample(
                    "InvalidFilter",
                    value={"detail": "state must be one of idle, running, stopped, not 'busy'."},
                )
            ],
        ),
        401: NOT_AUTHENTICATED,
        404: _error(
            "InvalidCursor",
            "A cursor that the server did not issue: it names no page.",
            "Invalid cursor.",
        ),
        405: _error("MethodNotAllowed", "Method other than GET.", 'Method "POST" not allowed.'),
        429: THROTTLED,
        503: DATABASE_UNAVAILABLE,
    },
)


stream_schema = extend_schema(
    operation_id="kernel_sessions_stream",
    summary="A stream of the state changes of the caller's sessions (Server-Sent Events)",
    description=(
        "Server-Sent Events for the sessions that `GET /api/kernel/sessions` lists for the "
        "caller, under the same filters. First a snapshot: one `status` event per session, "
        "then `ready`; then one `status` event per change of a session's entry, and one "
        "`removed` event when a session that was sent leaves the caller's view (deleted, "
        "access revoked, filtered out). Every event has an `id:`; reconnect with "
        "`Last-Event-ID` to have every session changed since replayed, or, when that is too "
        "old, a `reset` event and a fresh snapshot. A `: heartbeat` comment comes at least "
        "every 15 seconds. A client too slow to read is sent `reconnect` and the stream "
        "ends; a server shutting down does the same. Each event's `data` is JSON, described "
        "by the `KernelSessionEvent` component (the stream itself is `text/event-stream`). "
        "Needs an ASGI server: under WSGI the answer is 501."
    ),
    tags=["kernel"],
    parameters=[
        OpenApiParameter(
            "state",
            str,
            OpenApiParameter.QUERY,
            enum=SessionState.values,
            description="Only sessions in this state.",
        ),
        OpenApiParameter(
            "idle_for",
            {"type": "number", "minimum": 0, "maximum": MAX_IDLE_FOR_SECONDS},
            OpenApiParameter.QUERY,
            description="Only sessions idle or stopped with no activity for this many seconds "
            "(evaluated when a session changes).",
        ),
        OpenApiParameter(
            "Last-Event-ID",
            str,
            OpenApiParameter.HEADER,
            required=False,
            description="The `id:` of the last event received, to resume after it.",
        ),
        RETRY_AFTER_HEADER,
    ],
    responses={
        (200, "text/event-stream"): OpenApiResponse(
            response=KernelSessionEventSerializer,
            description="The event stream. Each event is `id:`, `event:` (the `event` field) "
            "and `data:` (the JSON of the `data` field).",
        ),
        400: OpenApiResponse(
            response=ErrorSerializer,
            description="A filter that cannot be used, or an unknown query parameter.",
        ),
        401: NOT_AUTHENTICATED,
        429: THROTTLED,
        501: _error(
            "AsgiRequired",
            "The server runs WSGI: streams need an ASGI server.",
            "The change stream needs an ASGI server.",
        ),
        503: DATABASE_UNAVAILABLE,
    },
)
