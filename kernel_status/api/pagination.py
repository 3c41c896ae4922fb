"""The listing's pages: cursor pagination on the primary key, with our errors."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request

from kernel_status.api.openapi.operations import CURSOR_DESCRIPTION, PAGE_SIZE_DESCRIPTION
from kernel_status.exceptions import InvalidCursor, InvalidQuery
from kernel_status.queries.listing import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE


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
        if cursor is None:
            return None
        # DRF decodes leniently: base64 skips characters outside its alphabet, so "%%%" or ""
        # read as the first page. Only a cursor written exactly as this server writes it is
        # one it issued.
        if request.query_params[self.cursor_query_param] != self._written(cursor):
            raise InvalidCursor()
        # The position is compared with the integer primary key: a crafted cursor with text
        # there would reach the database as a bad value.
        position = cursor.position
        if position is not None and not str(position).lstrip("-").isdigit():
            raise InvalidCursor()
        return cursor

    def _written(self, cursor: Cursor) -> str | None:
        """The ``cursor`` parameter of the link that DRF writes for ``cursor``."""
        query = parse_qs(urlsplit(self.encode_cursor(cursor)).query)
        values = query.get(self.cursor_query_param)
        return values[0] if values else None
