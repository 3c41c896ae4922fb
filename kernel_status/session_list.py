"""``GET /api/kernel/sessions``: the sessions the caller may edit, a page at a time."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from kernel_status.exceptions import InvalidCursor, InvalidQuery
from kernel_status.listing import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    FilterError,
    SessionFilter,
    listing,
    parse_idle_for,
    parse_state,
    sessions_for,
)
from kernel_status.models import Session, SessionQuerySet
from kernel_status.openapi import CURSOR_DESCRIPTION, PAGE_SIZE_DESCRIPTION, sessions_schema
from kernel_status.permissions import IsActiveUser
from kernel_status.serializers import KernelSessionSerializer
from kernel_status.throttling import SessionsRateThrottle
from kernel_status.views import KernelAPIView


class SessionCursorPagination(CursorPagination):
    """Cursor pagination on the session's primary key: unique and never changes, so pages
    neither skip nor repeat sessions while their states and activity change."""

    ordering = "pk"
    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    invalid_cursor_message = "Invalid cursor."
    cursor_query_description = CURSOR_DESCRIPTION
    page_size_query_description = PAGE_SIZE_DESCRIPTION

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
            raise InvalidQuery(
                f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}, not {raw!r}."
            )
        return int(raw)

    def decode_cursor(self, request: Request) -> Cursor | None:
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise InvalidCursor() from None
        # The position is compared with the integer primary key: a crafted cursor with text
        # there would reach the database as a bad value.
        position = None if cursor is None else cursor.position
        if position is not None and not str(position).lstrip("-").isdigit():
            raise InvalidCursor()
        return cursor


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
    http_method_names = ["get"]

    def get_queryset(self) -> SessionQuerySet:
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
