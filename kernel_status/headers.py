"""Reading the ``Marimo-Session-Id`` request header."""

from __future__ import annotations

from django.http import HttpRequest

from kernel_status.exceptions import InvalidSessionIdHeader
from kernel_status.validators import session_id_problem

SESSION_ID_HEADER = "Marimo-Session-Id"


def get_session_id(request: HttpRequest) -> str:
    """The session id the client sent, or :class:`InvalidSessionIdHeader` saying what is wrong."""
    value = request.headers.get(SESSION_ID_HEADER)
    if value is None:
        raise InvalidSessionIdHeader(f"The {SESSION_ID_HEADER} header is required.")
    problem = session_id_problem(value)
    if problem is not None:
        raise InvalidSessionIdHeader(f"The {SESSION_ID_HEADER} header {problem}.")
    return value
