"""Reading the ``Marimo-Session-Id`` request header, which names the session of a request."""

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
    try:
        value = _from_wire(value)
    except UnicodeDecodeError:
        raise InvalidSessionIdHeader(f"The {SESSION_ID_HEADER} header is not UTF-8.") from None
    problem = session_id_problem(value)
    if problem is not None:
        raise InvalidSessionIdHeader(f"The {SESSION_ID_HEADER} header {problem}.")
    return value


def _from_wire(value: str) -> str:
    """The header as the client meant it.

    WSGI and ASGI servers decode header bytes as latin-1 (PEP 3333), so a UTF-8 id such as
    "sésame" arrives as "sÃ©same". Characters above U+00FF cannot come from a server, only
    from a test client that passed text: those are taken as they are.
    """
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return value
    return raw.decode("utf-8")
