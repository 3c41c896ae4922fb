"""A psycopg 3 cursor that prepares every statement it executes (PostgreSQL only).

``None`` with psycopg2, which has no server-side binding.
"""

from __future__ import annotations

from typing import Any

PreparingCursor: Any = None

try:
    from django.db.backends.postgresql.base import ServerBindingCursor as _Base
except ImportError:  # psycopg2, or no PostgreSQL driver at all
    pass
else:
    _base: Any = _Base

    class _PreparingCursor(_base):  # type: ignore[misc]
        def execute(
            self, query: Any, params: Any = None, *, prepare: bool | None = None, **kwargs: Any
        ) -> Any:
            return super().execute(query, params, prepare=True, **kwargs)

    PreparingCursor = _PreparingCursor
