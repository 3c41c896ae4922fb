"""The write API's reads and writes: one statement each, whatever the batch size.

They are plain SQL with fixed text: for small batches, building ORM queries cost more than
running them.

Django's ``bulk_create`` splits batches on SQLite (999 parameters per statement) and ``__in``
lists grow with the batch, so on SQLite and PostgreSQL the whole batch travels as a single
JSON parameter instead. MariaDB and MySQL take plain parameter lists (their limit, 65,535
parameters, is far above a batch's). Other databases fall back to the ORM; the system check
``kernel_status.E010`` refuses them.

The upsert applies the mirror's ordering per field in SQL (see
:mod:`kernel_status.mirror.ordering`): should a writer ever bypass the session lock, it still
cannot move a field back in time.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Greatest

from kernel_status.choices import CellRuntimeState
from kernel_status.mirror.changes import Note, noted, pg_note_sql
from kernel_status.mirror.ordering import STATUS_TIE_RANK
from kernel_status.models import CellStatus, KernelProcess, Session
from kernel_status.queries.prepared import statement_cursor


def lock_session(session_id: str, *, using: str) -> int | None:
    """Lock the session's row for this transaction; its primary key, or ``None``.

    Plain SQL: a batch of one event is mostly query building when the ORM builds it.
    """
    connection = connections[using]
    table = connection.ops.quote_name(Session._meta.db_table)
    pk = connection.ops.quote_name(str(Session._meta.pk.column))
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with statement_cursor(connection) as cursor:
        cursor.execute(f"SELECT {pk} FROM {table} WHERE session_id = %s{lock}", [session_id])
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def fetch_kernel_and_cells(
    session_pk: int, cell_ids: Collection[str], *, using: str
) -> tuple[KernelProcess | None, dict[str, CellRow]]:
    """The session's kernel process row and these cells' rows: one query on PostgreSQL (a
    round trip is most of a small batch's cost there), :func:`fetch_kernel` and
    :func:`fetch_cells` elsewhere. Run it after :func:`lock_session`, in its own statement,
    so that it sees what a concurrent writer committed before the lock was granted."""
    connection = connections[using]
    if connection.vendor != "postgresql" or not cell_ids:
        kernel = fetch_kernel(session_pk, using=using)
        return kernel, (fetch_cells(session_pk, cell_ids, using=using) if cell_ids else {})
    quote = connection.ops.quote_name
    fields = KernelProcess._meta.concrete_fields
    kernel_columns = ", ".join(f"k.{quote(str(f.column))}" for f in fields)
    cell_columns = ", ".join(f"c.{name}" for name in CELL_COLUMNS)
    sql = (
        f"SELECT {kernel_columns}, {cell_columns} FROM (SELECT %s::bigint AS id) s "
        f"LEFT JOIN {quote(KernelProcess._meta.db_table)} k ON k.session_id = s.id "
        f"LEFT JOIN {quote(CellStatus._meta.db_table)} c ON c.session_id = s.id "
        "AND c.cell_id IN (SELECT jsonb_array_elements_text(%s::jsonb))"
    )
    with statement_cursor(connection) as cursor:
        cursor.execute(sql, [session_pk, json.dumps(list(cell_ids))])
        rows = cursor.fetchall()
    width = len(fields)
    first = rows[0]  # the LEFT JOINs from one constant row give at least one row
    kernel = None
    if first[0] is not None:  # the kernel row's key, the session's
        kernel = KernelProcess.from_db(using, [f.attname for f in fields], first[:width])
    cells = {r[width]: CellRow(*r[width:]) for r in rows if r[width] is not None}
    return kernel, cells


def fetch_kernel(session_pk: int, *, using: str) -> KernelProcess | None:
    """The session's kernel process row (one query)."""
    table = connections[using].ops.quote_name(KernelProcess._meta.db_table)
    rows = KernelProcess.objects.db_manager(using).raw(
        f"SELECT * FROM {table} WHERE session_id = %s", [session_pk]
    )
    return next(iter(rows), None)


@dataclass(slots=True)
class CellRow:
    """A cell row as the write API handles it: cheaper to load and dump than a model."""

    cell_id: str
    status: str
    status_at: datetime | None
    stale: bool
    stale_at: datetime | None
    notified_at: datetime


CELL_COLUMNS = ["cell_id", "status", "status_at", "stale", "stale_at", "notified_at"]


def fetch_cells(session_pk: int, cell_ids: Collection[str], *, using: str) -> dict[str, CellRow]:
    """The stored rows of these cells of one session, by cell id (one query)."""
    connection = connections[using]
    table = connection.ops.quote_name(CellStatus._meta.db_table)
    params: list[Any] = [session_pk, json.dumps(list(cell_ids))]
    if connection.vendor == "postgresql":
        where = "cell_id IN (SELECT jsonb_array_elements_text(%s::jsonb))"
    elif connection.vendor == "sqlite":
        where = "cell_id IN (SELECT value FROM json_each(%s))"
    elif connection.vendor == "mysql":
        # A plain IN list: JSON_TABLE's strings would have to name the column's collation,
        # which differs between MariaDB and MySQL (see migration 0006).
        if not cell_ids:
            return {}
        params = [session_pk, *cell_ids]
        where = f"cell_id IN ({', '.join(['%s'] * len(cell_ids))})"
    else:  # pragma: no cover - refused by the system check kernel_status.E010
        queryset = CellStatus.objects.using(using).filter(
            session_id=session_pk, cell_id__in=list(cell_ids)
        )
        return {c.cell_id: CellRow(*(getattr(c, name) for name in CELL_COLUMNS)) for c in queryset}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(CELL_COLUMNS)} FROM {table} WHERE session_id = %s AND {where}",
            params,
        )
        rows = cursor.fetchall()
    if connection.vendor in ("sqlite", "mysql"):
        # SQLite (Django's own converter) and MySQLdb hand back naive datetimes in the
        # database's zone; MySQLdb gives the boolean as an integer.
        zone = connection.timezone
        return {
            r[0]: CellRow(
                r[0],
                r[1],
                None if r[2] is None else r[2].replace(tzinfo=zone),
                bool(r[3]),
                None if r[4] is None else r[4].replace(tzinfo=zone),
                r[5].replace(tzinfo=zone),
            )
            for r in rows
        }
    return {r[0]: CellRow(*r) for r in rows}


def advance_last_activity(session_pk: int, at: datetime, *, using: str) -> None:
    """Move the session's ``last_activity`` forward to ``at``, never back (one query)."""
    connection = connections[using]
    table = connection.ops.quote_name(Session._meta.db_table)
    pk = connection.ops.quote_name(str(Session._meta.pk.column))
    value = connection.ops.adapt_datetimefield_value(at)
    if connection.vendor == "mysql":
        # The condition in SET, the primary key alone in WHERE: with it in WHERE, InnoDB may
        # walk the (last_activity, created_at) index instead and lock other sessions' rows on
        # the way, which deadlocks writers of different sessions.
        sql = (
            f"UPDATE {table} SET last_activity = CASE WHEN last_activity IS NULL "
            f"OR last_activity < %s THEN %s ELSE last_activity END WHERE {pk} = %s"
        )
        params = [value, value, session_pk]
    else:
        sql = (
            f"UPDATE {table} SET last_activity = %s "
            f"WHERE {pk} = %s AND (last_activity IS NULL OR last_activity < %s)"
        )
        params = [value, session_pk, value]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def reset_cells(session_pk: int, at: datetime, *, using: str) -> None:
    """A kernel start at ``at``: every field of the session's cells set before it is reset.

    One statement; see :func:`kernel_status.mirror.batch.reset_cell` for the rule. MySQL
    assigns left to right, each assignment seeing the ones before: every condition reads only
    timestamps, and each timestamp is assigned after its value, so all read stored values.
    """
    status_old = Q(status_at__isnull=True) | Q(status_at__lt=at)
    stale_old = Q(stale_at__isnull=True) | Q(stale_at__lt=at)
    CellStatus.objects.using(using).filter(session_id=session_pk).filter(
        (status_old & (~Q(status=CellRuntimeState.IDLE) | Q(status_at__isnull=False)))
        | (stale_old & (Q(stale=True) | Q(stale_at__isnull=False)))
        | Q(notified_at__lt=at)
    ).update(
        status=Case(When(status_old, then=Value(CellRuntimeState.IDLE)), default=F("status")),
        status_at=Case(When(status_old, then=Value(None)), default=F("status_at")),
        stale=Case(When(stale_old, then=Value(False)), default=F("stale")),
        stale_at=Case(When(stale_old, then=Value(None)), default=F("stale_at")),
        notified_at=Greatest(F("notified_at"), Value(at)),
    )


def _rank_sql(column: str) -> str:
    whens = " ".join(f"WHEN '{value}' THEN {rank}" for value, rank in STATUS_TIE_RANK.items())
    return f"(CASE {column} {whens} END)"


def _newer_sql(table: str, excluded: str, field: str, tie: str) -> str:
    """SQL: the incoming value of ``field`` replaces the stored one (ordering.is_newer)."""
    return _newer_at_sql(f"{excluded}.{field}_at", f"{table}.{field}_at", tie)


def _newer_at_sql(new_at: str, old_at: str, tie: str) -> str:
    return (
        f"({new_at} IS NOT NULL AND ({old_at} IS NULL OR {new_at} > {old_at} "
        f"OR ({new_at} = {old_at} AND {tie})))"
    )


def _on_conflict_sql(table: str, excluded: str, greatest: str) -> str:
    status_newer = _newer_sql(
        table,
        excluded,
        "status",
        f"{_rank_sql(f'{excluded}.status')} > {_rank_sql(f'{table}.status')}",
    )
    # Ties: False wins over True (ordering.stale_tie_rank).
    stale_newer = _newer_sql(table, excluded, "stale", f"{excluded}.stale < {table}.stale")
    return f"""
        ON CONFLICT (session_id, cell_id) DO UPDATE SET
            status = CASE WHEN {status_newer} THEN {excluded}.status ELSE {table}.status END,
            status_at = CASE WHEN {status_newer}
                THEN {excluded}.status_at ELSE {table}.status_at END,
            stale = CASE WHEN {stale_newer} THEN {excluded}.stale ELSE {table}.stale END,
            stale_at = CASE WHEN {stale_newer}
                THEN {excluded}.stale_at ELSE {table}.stale_at END,
            notified_at = {greatest}({table}.notified_at, {excluded}.notified_at)
        WHERE {status_newer} OR {stale_newer}
            OR {excluded}.notified_at > {table}.notified_at
    """


def _on_duplicate_key_sql() -> str:
    """MySQL's upsert clause: the same rule as :func:`_on_conflict_sql`.

    MySQL and MariaDB apply the assignments left to right, and each one sees the new values of
    those before it. So each value is assigned before its timestamp, while its condition still
    reads the stored timestamp; the timestamp's own condition reads only the timestamp: it
    moves forward whenever the value was replaced (and, in a tie, stays equal). ``VALUES()``
    names the incoming row on both servers (MySQL 8.0.20+ deprecates it for a row alias, which
    MariaDB lacks).
    """
    status_newer = _newer_at_sql(
        "VALUES(status_at)",
        "status_at",
        f"{_rank_sql('VALUES(status)')} > {_rank_sql('status')}",
    )
    stale_newer = _newer_at_sql("VALUES(stale_at)", "stale_at", "VALUES(stale) < stale")

    def forward(column: str) -> str:
        new = f"VALUES({column})"
        return (
            f"{column} = IF({new} IS NOT NULL AND ({column} IS NULL OR {new} > {column}), "
            f"{new}, {column})"
        )

    return f"""
        ON DUPLICATE KEY UPDATE
            status = IF({status_newer}, VALUES(status), status),
            {forward("status_at")},
            stale = IF({stale_newer}, VALUES(stale), stale),
            {forward("stale_at")},
            notified_at = GREATEST(notified_at, VALUES(notified_at))
    """


def _payload(rows: list[CellRow], stamp: Any) -> str:
    def at(value: datetime | None) -> Any:
        return None if value is None else stamp(value)

    return json.dumps(
        [
            {
                "cell_id": c.cell_id,
                "status": c.status,
                "status_at": at(c.status_at),
                "stale": c.stale,
                "stale_at": at(c.stale_at),
                "notified_at": stamp(c.notified_at),
            }
            for c in rows
        ]
    )


def upsert_cells(
    session_pk: int,
    cells: Iterable[CellRow],
    *,
    using: str,
    last_activity: datetime | None = None,
    note: Note | None = None,
) -> bool:
    """Insert or update these cell rows in one statement, each field only forward in time.

    With ``last_activity``, also :func:`advance_last_activity`; with ``note``, also log the
    change (:mod:`kernel_status.mirror.changes`): in the same statement on PostgreSQL (a
    data-modifying CTE; a round trip less for each), after it elsewhere, except the note.
    Returns whether the note was logged; when not, the caller logs it.
    """
    rows = list(cells)
    connection: BaseDatabaseWrapper = connections[using]
    if not rows or (last_activity is not None and connection.vendor != "postgresql"):
        if rows:
            upsert_cells(session_pk, rows, using=using)
        if last_activity is not None:
            advance_last_activity(session_pk, last_activity, using=using)
        return False
    table = connection.ops.quote_name(CellStatus._meta.db_table)
    columns = "session_id, cell_id, status, status_at, stale, stale_at, notified_at"
    if connection.vendor == "postgresql":
        payload = _payload(rows, datetime.isoformat)
        params_pg: list[Any] = []
        ctes: list[str] = []
        if last_activity is not None:
            # Every item sees the statement's snapshot and they touch different tables; the
            # session row is already locked by this transaction.
            sessions = connection.ops.quote_name(Session._meta.db_table)
            pk = connection.ops.quote_name(str(Session._meta.pk.column))
            ctes.append(
                f"activity AS (UPDATE {sessions} SET last_activity = %s "
                f"WHERE {pk} = %s AND (last_activity IS NULL OR last_activity < %s))"
            )
            params_pg += [last_activity, session_pk, last_activity]
        upsert = _upsert_pg_sql(table, columns)
        params_pg += [session_pk, payload]
        with statement_cursor(connection) as cursor:
            if note is None:
                head = f"WITH {', '.join(ctes)} " if ctes else ""
                cursor.execute(head + upsert, params_pg)
                return False
            # The upsert becomes one more item; the statement ends with the note's SELECT.
            note_cte, select, note_params = pg_note_sql(note, connection)
            ctes += [f"cells AS ({upsert})", note_cte]
            cursor.execute(f"WITH {', '.join(ctes)} {select}", params_pg + note_params)
            change_id = int(cursor.fetchone()[0])
        noted(note, change_id, using=using)
        return True
    if connection.vendor == "sqlite":
        # Django's own SQLite text format and time zone, so comparisons with rows the ORM
        # wrote order correctly.
        zone = connection.timezone

        def stamp(value: datetime) -> str:
            # What adapt_datetimefield_value gives for an aware datetime, without its checks.
            return str(value.astimezone(zone).replace(tzinfo=None))

        payload = _payload(rows, stamp)
        fields = ", ".join(
            f"json_extract(value, '$.{name}')"
            for name in ["cell_id", "status", "status_at", "stale", "stale_at", "notified_at"]
        )
        sql = f"""
            INSERT INTO {table} ({columns})
            SELECT %s, {fields}
            FROM json_each(%s) WHERE true
            {_on_conflict_sql(table, "excluded", "max")}
        """
    elif connection.vendor == "mysql":
        adapt = connection.ops.adapt_datetimefield_value
        params: list[Any] = []
        for r in rows:
            params += [
                session_pk,
                r.cell_id,
                r.status,
                adapt(r.status_at),
                r.stale,
                adapt(r.stale_at),
                adapt(r.notified_at),
            ]
        values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {values} {_on_duplicate_key_sql()}",
                params,
            )
        return False
    else:  # pragma: no cover - refused by the system check kernel_status.E010
        CellStatus.objects.using(using).bulk_create(
            [
                CellStatus(session_id=session_pk, **{n: getattr(r, n) for n in CELL_COLUMNS})
                for r in rows
            ],
            update_conflicts=True,
            unique_fields=["session", "cell_id"],
            update_fields=["status", "status_at", "stale", "stale_at", "notified_at"],
        )
        return False
    with connection.cursor() as cursor:
        cursor.execute(sql, [session_pk, payload])
    return False


def _upsert_pg_sql(table: str, columns: str) -> str:
    return f"""
        INSERT INTO {table} ({columns})
        SELECT %s, r.cell_id, r.status, r.status_at, r.stale, r.stale_at, r.notified_at
        FROM jsonb_to_recordset(%s::jsonb) AS r(
            cell_id text, status text, status_at timestamptz, stale boolean,
            stale_at timestamptz, notified_at timestamptz
        )
        {_on_conflict_sql(table, "EXCLUDED", "GREATEST")}
    """
