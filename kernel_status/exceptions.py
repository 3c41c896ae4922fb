"""API errors raised by kernel_status views, rendered by DRF as JSON ``{"detail": ...}``."""

from __future__ import annotations

# The public API: see "Public and internal modules" in docs/reference.md.
__all__ = [
    "BatchTooLarge",
    "BodyTooLarge",
    "DatabaseUnavailable",
    "InvalidCursor",
    "InvalidEventBatch",
    "InvalidQuery",
    "InvalidSessionIdHeader",
    "LengthRequired",
    "SessionNotFound",
    "StreamNeedsASGI",
]

from django.utils.translation import gettext_lazy as _
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound


class InvalidSessionIdHeader(APIException):
    """The ``Marimo-Session-Id`` header is missing or malformed."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("Invalid Marimo-Session-Id header.")
    default_code = "invalid_session_id"


class InvalidEventBatch(APIException):
    """Some items of a batch are invalid; the body lists each one. Nothing was applied."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("Invalid event batch.")
    default_code = "invalid_event_batch"

    def __init__(self, errors: list[dict[str, object]]) -> None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        where = f"events[{first['index']}]" + (f".{first['field']}" if first["field"] else "")
        super().__init__(f"Invalid event batch: {where}: {first['message']}{more}")
        self.errors = errors


class BatchTooLarge(APIException):
    """More events than ``KERNEL_STATUS_MAX_BATCH_SIZE`` in one request."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("Too many events in one batch.")
    default_code = "batch_too_large"


class BodyTooLarge(APIException):
    """A request body over Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is too large.")
    default_code = "body_too_large"


class DatabaseUnavailable(APIException):
    """The database refused the work for now (locked, lock timeout, connection lost)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = _("The database is busy; retry shortly.")
    default_code = "database_unavailable"
    wait = 1  # seconds; DRF's exception handler turns it into Retry-After


class SessionNotFound(NotFound):
    """No session with that id, or none the caller may see: the answer is the same."""

    default_detail = _("Session not found.")
    default_code = "session_not_found"


class LengthRequired(APIException):
    """A body sent without ``Content-Length`` (``Transfer-Encoding: chunked``).

    Not every WSGI server passes a chunked body on (Django's runserver reads it as empty), so
    it is refused rather than read as an empty batch.
    """

    status_code = status.HTTP_411_LENGTH_REQUIRED
    default_detail = _("A Content-Length header is required; chunked bodies are not accepted.")
    default_code = "length_required"


class InvalidCursor(NotFound):
    """A cursor the server did not issue: it names no page, as an unknown id names nothing.

    404, not 400: a cursor is opaque, so no schema can tell a client which strings are
    cursors; a 400 would say the request was malformed when it only points nowhere.
    """

    default_detail = _("Invalid cursor.")
    default_code = "invalid_cursor"


class InvalidQuery(APIException):
    """A query parameter the listing cannot use."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("Invalid query parameter.")
    default_code = "invalid_query"


class StreamNeedsASGI(APIException):
    """The change stream was asked of a WSGI server, which would hold a worker per stream."""

    status_code = status.HTTP_501_NOT_IMPLEMENTED
    default_detail = _(
        "The change stream needs an ASGI server (uvicorn project.asgi:application, for "
        "example); this one serves WSGI. Poll GET /api/kernel/sessions instead."
    )
    default_code = "asgi_required"
