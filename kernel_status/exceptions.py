"""API errors raised by kernel_status views, rendered by DRF as JSON ``{"detail": ...}``."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound


class InvalidSessionIdHeader(APIException):
    """The ``Marimo-Session-Id`` header is missing or malformed."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("Invalid Marimo-Session-Id header.")
    default_code = "invalid_session_id"


class SessionNotFound(NotFound):
    """No session with that id, or none the caller may see: the answer is the same."""

    default_detail = _("Session not found.")
    default_code = "session_not_found"
