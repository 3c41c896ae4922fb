"""Cursors for kernel_status's fixed-text SQL: prepared statements on PostgreSQL when allowed.

PostgreSQL spends more time planning the status query and the write API's upsert than running
them. Prepared statements skip that, but Django turns them off by default (``prepare_threshold``
None, for connection poolers that cannot carry them), and its client-side binding cursors never
prepare. So when the host allows them (``DATABASES[...]["OPTIONS"]["prepare_threshold"]``
set), kernel_status's own statements (fixed text, a handful of shapes) run through a
server-side binding cursor that prepares each once per connection; Django's other queries are
unaffected.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import BaseDatabaseWrapper


@cache
def preparing_cursor_class() -> Any:
    """A psycopg 3 cursor class that prepares every statement it executes, or ``None`` (with
    psycopg2, which has no server-side binding). Imported on first use: the PostgreSQL backend
    cannot be imported where no driver is installed."""
    try:
        from django.db.backends.postgresql.base import ServerBindingCursor
    except (ImportError, ImproperlyConfigured):
        return None
    base: Any = ServerBindingCursor

    class PreparingCursor(base):  # type: ignore[misc]
        def execute(
            self, query: Any, params: Any = None, *, prepare: bool | None = None, **kwargs: Any
        ) -> Any:
            return super().execute(query, params, prepare=True, **kwargs)

    return PreparingCursor


def statement_cursor(connection: BaseDatabaseWrapper) -> Any:
    """A cursor for fixed-text SQL: on PostgreSQL with ``prepare_threshold`` set, one that
    prepares what it executes; otherwise Django's own cursor."""
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        raw = connection.connection
        cursor_class = preparing_cursor_class()
        if getattr(raw, "prepare_threshold", None) is not None and cursor_class is not None:
            return connection._prepare_cursor(cursor_class(raw))  # type: ignore[attr-defined]
    return connection.cursor()
