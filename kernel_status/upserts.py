"""Set-based reads and writes of cell rows: one statement whatever the batch size.

Django's ``bulk_create`` splits batches on SQLite (999 parameters per statement) and ``__in``
lists grow with the batch, so on SQLite and PostgreSQL the whole batch travels as a single
JSON parameter instead. Other databases fall back to the ORM.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable

from django.db import connections
from django.db.models.expressions import RawSQL

from kernel_status.models import CellStatus


def fetch_cells(session_pk: int, cell_ids: Collection[str], *, using: str) -> dict[str, CellStatus]:
    """The stored rows of these cells of one session, by cell id (one query)."""
    connection = connections[using]
    queryset = CellStatus.objects.using(using).filter(session_id=session_pk)
    if connection.vendor == "postgresql":
        ids = RawSQL("SELECT jsonb_array_elements_text(%s::jsonb)", [json.dumps(list(cell_ids))])
        queryset = queryset.filter(cell_id__in=ids)
    elif connection.vendor == "sqlite":
        ids = RawSQL("SELECT value FROM json_each(%s)", [json.dumps(list(cell_ids))])
        queryset = queryset.filter(cell_id__in=ids)
    else:
        queryset = queryset.filter(cell_id__in=list(cell_ids))
    return {cell.cell_id: cell for cell in queryset}


def upsert_cells(session_pk: int, cells: Iterable[CellStatus], *, using: str) -> None:
    """Insert or update these cell rows in one statement.

    The caller decided what is newest; the ``WHERE`` still refuses to move a row back in
    time, should a writer ever bypass the session lock.
    """
    rows = list(cells)
    if not rows:
        return
    connection = connections[using]
    table = connection.ops.quote_name(CellStatus._meta.db_table)
    if connection.vendor == "postgresql":
        payload = [
            {
                "cell_id": c.cell_id,
                "status": c.status,
                "stale": c.stale,
                "notified_at": c.notified_at.isoformat(),
            }
            for c in rows
        ]
        sql = f"""
            INSERT INTO {table} (session_id, cell_id, status, stale, notified_at)
            SELECT %s, r.cell_id, r.status, r.stale, r.notified_at
            FROM jsonb_to_recordset(%s::jsonb)
                AS r(cell_id text, status text, stale boolean, notified_at timestamptz)
            ON CONFLICT (session_id, cell_id) DO UPDATE
            SET status = EXCLUDED.status, stale = EXCLUDED.stale,
                notified_at = EXCLUDED.notified_at
            WHERE {table}.notified_at <= EXCLUDED.notified_at
        """
    elif connection.vendor == "sqlite":
        payload = [
            {
                "cell_id": c.cell_id,
                "status": c.status,
                "stale": c.stale,
                # Django's own SQLite text format and time zone, so comparisons with rows
                # the ORM wrote order correctly.
                "notified_at": connection.ops.adapt_datetimefield_value(c.notified_at),
            }
            for c in rows
        ]
        sql = f"""
            INSERT INTO {table} (session_id, cell_id, status, stale, notified_at)
            SELECT %s, json_extract(value, '$.cell_id'), json_extract(value, '$.status'),
                json_extract(value, '$.stale'), json_extract(value, '$.notified_at')
            FROM json_each(%s) WHERE true
            ON CONFLICT (session_id, cell_id) DO UPDATE
            SET status = excluded.status, stale = excluded.stale,
                notified_at = excluded.notified_at
            WHERE {table}.notified_at <= excluded.notified_at
        """
    else:  # pragma: no cover - only SQLite and PostgreSQL are tested
        CellStatus.objects.using(using).bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["session", "cell_id"],
            update_fields=["status", "stale", "notified_at"],
        )
        return
    with connection.cursor() as cursor:
        cursor.execute(sql, [session_pk, json.dumps(payload)])
