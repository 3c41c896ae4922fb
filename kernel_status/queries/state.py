"""The one place where a session's kernel status is derived.

The endpoint, the admin and any other reader annotate sessions with
:func:`session_state_expression` (through ``Session.objects.with_state()``), so they all
agree, and the derivation runs inside the same SQL query that loads the session.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db.models import Case, CharField, Exists, F, Lookup, OuterRef, Q, Value, When
from django.utils import timezone

from kernel_status.choices import BUSY_CELL_STATES, ProcessState, SessionState
from kernel_status.conf import conf
from kernel_status.queries import mirror_model


def kernel_alive_q(*, now: datetime | None = None) -> Q:
    """Sessions whose kernel process counts as alive at ``now``.

    Alive means: state ``running``, and, when a liveness window is set, heard from (last
    heartbeat, or start when no heartbeat came yet) within that window.
    """
    alive = Q(kernel__state=ProcessState.RUNNING)
    window = conf.liveness_window
    if window is None:
        return alive
    cutoff = (now or timezone.now()) - window
    heard_from = Q(kernel__last_heartbeat_at__gte=cutoff) | Q(
        kernel__last_heartbeat_at__isnull=True, kernel__started_at__gte=cutoff
    )
    return alive & heard_from


class InLiterals(Lookup):
    """``<field> IN ('a', 'b')`` with the values written into the SQL instead of bound.

    SQLite's planner uses a partial index only when the query repeats the index's condition
    with the same literals: with bound parameters (what ``status__in=`` gives) it falls back
    to the plain ``session_id`` index and walks every cell of the session. A lookup, not a
    boolean function, so that no Django version compares it with ``= True``.
    """

    lookup_name = "in_literals"
    prepare_rhs = False

    def __init__(self, field: str, values: Sequence[str]) -> None:
        for value in values:
            # Only code constants belong here; they are quoted as they are.
            if not re.fullmatch(r"[A-Za-z0-9_-]+", value):
                raise ValueError(f"Not a plain literal: {value!r}")
        super().__init__(F(field), tuple(values))

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        lhs_sql, lhs_params = self.process_lhs(compiler, connection)
        literals = ", ".join(f"'{value}'" for value in self.rhs)
        return f"{lhs_sql} IN ({literals})", tuple(lhs_params)


class BusyCellsExist(Exists):
    """``EXISTS`` a queued or running cell of the outer session; on MySQL, one per status.

    MySQL and MariaDB cannot range-scan ``(session_id, status IN (...))`` when the session id
    comes from the outer row (a listing page, ``with_state()``): they probe the busy-cell index
    on ``session_id`` alone and walk the session's idle cells before reaching a busy one. An
    ``EXISTS`` per busy status is a ref on both columns of that index, flat in the idle cells.
    """

    def __init__(self) -> None:
        cells = mirror_model("CellStatus")._default_manager
        busy = cells.filter(InLiterals("status", BUSY_CELL_STATES), session_id=OuterRef("pk"))
        super().__init__(busy)
        self.per_status = [Exists(busy.filter(status=status)) for status in BUSY_CELL_STATES]

    def resolve_expression(self, *args: Any, **kwargs: Any) -> Any:
        resolved = super().resolve_expression(*args, **kwargs)
        resolved.per_status = [each.resolve_expression(*args, **kwargs) for each in self.per_status]
        return resolved

    def relabeled_clone(self, change_map: Mapping[str, str]) -> Any:
        clone = super().relabeled_clone(change_map)
        clone.per_status = [each.relabeled_clone(change_map) for each in self.per_status]
        return clone

    def as_mysql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        compiled = [compiler.compile(each) for each in self.per_status]
        params = tuple(param for _, part_params in compiled for param in part_params)
        return "(" + " OR ".join(part for part, _ in compiled) + ")", params


def busy_cells_exist() -> Exists:
    """Whether the session has a cell that is queued or running, whatever its stale flag.

    Matches the partial index ``kernel_status_busy_cells`` (same condition, same literals):
    one index probe per session on PostgreSQL and SQLite, however many idle cells it has; on
    MySQL and MariaDB, one probe of ``(session_id, status)`` per busy status.
    """
    return BusyCellsExist()


def session_state_expression(*, now: datetime | None = None) -> Case:
    """SQL expression giving a :class:`SessionState` value for each session row.

    - ``stopped``: the kernel is not alive (no process row, ``not_started``, ``stopped``,
      or silent past the liveness window);
    - ``running``: alive, and any cell is ``queued`` or ``running``, whatever its stale flag
      (marimo's own rule: it queues a stale cell first and clears the flag afterwards);
    - ``idle``: alive otherwise (``idle`` and ``disabled-transitively`` cells).
    """
    return Case(
        When(
            kernel_alive_q(now=now),
            then=Case(
                When(busy_cells_exist(), then=Value(SessionState.RUNNING.value)),
                default=Value(SessionState.IDLE.value),
            ),
        ),
        default=Value(SessionState.STOPPED.value),
        output_field=CharField(),
    )
