"""Many sessions in one query: what ``GET /api/kernel/sessions`` and the culler read.

Every row carries the state from the one shared derivation (``session_state_expression()``),
its last activity and its numbers of queued and running cells, all computed in the single SQL
query that loads the page: per-row subqueries, never a query per session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from kernel_status.choices import BUSY_CELL_STATES, AccessLevel, CellRuntimeState, SessionState
from kernel_status.conf import VIEW_ALL_PERMISSION
from kernel_status.queries import mirror_model
from kernel_status.queries.access import get_access_policy
from kernel_status.queries.state import InLiterals, session_state_expression

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

# Longest idle_for accepted: beyond it "now - idle_for" leaves the datetime range.
MAX_IDLE_FOR_SECONDS = 100 * 365 * 86400


@dataclass(frozen=True)
class SessionFilter:
    """The listing's filters; ``None`` means "any"."""

    state: SessionState | None = None
    idle_for: timedelta | None = None


class FilterError(ValueError):
    """A filter value that cannot be used; the message is meant for the caller."""


def parse_state(value: str) -> SessionState:
    if value not in SessionState.values:
        raise FilterError(f"state must be one of {', '.join(SessionState.values)}, not {value!r}.")
    return SessionState(value)


def parse_idle_for(value: str) -> timedelta:
    """Seconds, as a non-negative decimal number (``3600``, ``90.5``)."""
    try:
        seconds = float(value)
    except ValueError:
        raise FilterError(f"idle_for must be a number of seconds, not {value!r}.") from None
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_IDLE_FOR_SECONDS:
        raise FilterError(
            f"idle_for must be between 0 and {MAX_IDLE_FOR_SECONDS} seconds, not {value!r}."
        )
    return timedelta(seconds=seconds)


def cell_count(status: CellRuntimeState) -> Coalesce:
    """How many of the session's cells have this busy status (a correlated subquery per row).

    The busy-cell condition, as literals, lets SQLite count through the partial index
    ``kernel_status_busy_cells`` instead of every cell of the session (see ``InLiterals``).
    """
    if status not in BUSY_CELL_STATES:
        raise ValueError(f"Only busy statuses are counted, not {status!r}")
    counted = (
        mirror_model("CellStatus")
        ._default_manager.filter(
            InLiterals("status", BUSY_CELL_STATES), session_id=OuterRef("pk"), status=status
        )
        .order_by()
        .values("session_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def sessions_for(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Any]:
    """Sessions the user may edit, or every session with ``kernel_status.view_all_sessions``."""
    sessions: QuerySet[Any] = mirror_model("Session")._default_manager.all()
    if user.has_perm(VIEW_ALL_PERMISSION):  # type: ignore[union-attr]
        return sessions
    level = get_access_policy().access_level_expression(user)
    editable: QuerySet[Any] = sessions.annotate(access_level=level)
    return editable.filter(access_level__gte=AccessLevel.EDIT)


def listing(
    sessions: QuerySet[Any], filters: SessionFilter, *, now: datetime | None = None
) -> QuerySet[Any]:
    """Annotate ``state``, ``queued_cells`` and ``running_cells``, and apply the filters.

    ``idle_for`` keeps sessions that are idle or stopped and had no activity for at least that
    long. A session with no recorded activity counts from its registration, so a session
    registered a moment ago is not culled before its kernel had time to start.
    """
    now = now or timezone.now()
    rows: QuerySet[Any] = sessions.annotate(
        state=session_state_expression(now=now),
        queued_cells=cell_count(CellRuntimeState.QUEUED),
        running_cells=cell_count(CellRuntimeState.RUNNING),
    )
    if filters.state is not None:
        rows = rows.filter(state=filters.state.value)
    if filters.idle_for is not None:
        cutoff = now - filters.idle_for
        quiet = Q(last_activity__lte=cutoff) | Q(last_activity__isnull=True, created_at__lte=cutoff)
        # As a subquery: planners then read the quiet sessions from the kernel_status_quiet_since
        # index (two ranges) and probe each by pk, instead of walking the table in pk order
        # (SQLite does, for the pages' ORDER BY pk) and testing every session.
        quiet_pks = mirror_model("Session")._default_manager.filter(quiet).values("pk")
        resting = [SessionState.IDLE.value, SessionState.STOPPED.value]
        rows = rows.filter(pk__in=quiet_pks, state__in=resting)
    return rows.only("pk", "session_id", "notebook", "last_activity", "created_at")
