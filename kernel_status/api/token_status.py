"""The status endpoint's token path: DRF's token authentication and the status read in one
SQL statement (:func:`kernel_status.queries.status.fetch_token_status`).

DRF's :class:`~rest_framework.authentication.TokenAuthentication` looks the token up with a
query of its own, then the status query runs: two round trips per poll. When the request's
first authenticator is DRF's own ``TokenAuthentication`` (its methods and model unchanged),
the ``Authorization`` header is well formed, the session header is valid and the access
policy provides :meth:`~kernel_status.access.AccessPolicy.token_access_level_expression`,
the view takes this path instead, and sets ``request.user`` and ``request.auth`` exactly as
DRF would. Everything else (session authentication, a host's own classes, a malformed
header, another policy) goes through DRF's normal path, with the same answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from kernel_status.api.session_header import get_session_id
from kernel_status.exceptions import InvalidSessionIdHeader
from kernel_status.queries.status import TokenStatus, fetch_token_status, token_path_available

if TYPE_CHECKING:
    from django.db.models import Model
    from rest_framework.request import Request


class TokenStatusRequest:
    """What the token path needs from a request it can answer: the authenticator, its token
    model, the key and the session id."""

    __slots__ = ("authenticator", "key", "model", "session_id")

    def __init__(
        self, authenticator: TokenAuthentication, model: type[Model], key: str, session_id: str
    ) -> None:
        self.authenticator = authenticator
        self.model = model
        self.key = key
        self.session_id = session_id


def _is_drf_token_authentication(authenticator: object) -> bool:
    # A subclass that changes how a token is read or checked keeps DRF's path.
    if not isinstance(authenticator, TokenAuthentication):
        return False
    cls = type(authenticator)
    return (
        cls.authenticate is TokenAuthentication.authenticate
        and cls.authenticate_credentials is TokenAuthentication.authenticate_credentials
        and cls.get_model is TokenAuthentication.get_model
        and authenticator.model is None
    )


def token_status_request(request: Request) -> TokenStatusRequest | None:
    """The request's token path, or ``None`` for DRF's normal path.

    Only requests whose token header DRF would hand to ``authenticate_credentials`` qualify
    (the keyword, then exactly one key that decodes); the malformed ones get DRF's own
    answers from the normal path, as does a missing or invalid session header (which is
    answered after authentication).
    """
    authenticators = request.authenticators
    if not authenticators or not _is_drf_token_authentication(authenticators[0]):
        return None
    authenticator = authenticators[0]
    assert isinstance(authenticator, TokenAuthentication)
    parts = get_authorization_header(request).split()
    if len(parts) != 2 or parts[0].lower() != authenticator.keyword.lower().encode():
        return None
    try:
        key = parts[1].decode()
        session_id = get_session_id(request)
    except (UnicodeError, InvalidSessionIdHeader):
        return None
    model = authenticator.get_model()
    if not token_path_available(model):
        return None
    return TokenStatusRequest(authenticator, model, key, session_id)


def authenticate_and_fetch(request: Request, fast: TokenStatusRequest) -> TokenStatus:
    """Authenticate ``request`` as DRF's ``TokenAuthentication`` would, reading the status in
    the same statement; raise DRF's own ``AuthenticationFailed`` on a bad token or an
    inactive user (with ``request.user`` anonymous, as DRF leaves it)."""
    found = fetch_token_status(fast.model, fast.key, fast.session_id)
    drf_request: Any = request  # DRF's own bookkeeping, as Request._authenticate() does it
    if found is None:
        drf_request._not_authenticated()
        raise AuthenticationFailed(_("Invalid token."))
    user = found.token.user  # type: ignore[attr-defined]
    if not user.is_active:
        drf_request._not_authenticated()
        raise AuthenticationFailed(_("User inactive or deleted."))
    drf_request._authenticator = fast.authenticator
    request.user, request.auth = user, found.token
    return found
