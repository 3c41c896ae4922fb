"""Many sessions in one query: what ``GET /api/kernel/sessions`` and the culler read.

Every row carries the state from the one shared derivation (``Session.objects.with_state()``),
its last activity and its numbers of queued and running cells, all computed in the single SQL
query that loads the page: per-row subqueries, never a query per session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from kernel_status.choices import BUSY_CELL_STATES, AccessLevel, CellRuntimeState, SessionState
from kernel_status.models import CellStatus, Session, SessionQuerySet
from kernel_status.state import InLiterals

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

VIEW_ALL_PERMISSION = "kernel_status.view_all_sessions"

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
        CellStatus.objects.filter(
            InLiterals("status", BUSY_CELL_STATES), session_id=OuterRef("pk"), status=status
        )
        .order_by()
        .values("session_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def sessions_for(user: AbstractBaseUser | AnonymousUser) -> SessionQuerySet:
    """Sessions the user may edit, or every session with ``kernel_status.view_all_sessions``."""
    sessions = Session.objects.all()
    if user.has_perm(VIEW_ALL_PERMISSION):  # type: ignore[union-attr]
        return sessions
    return sessions.with_access_level(user).filter(access_level__gte=AccessLevel.EDIT)  # type: ignore[misc]


def listing(
    sessions: SessionQuerySet, filters: SessionFilter, *, now: datetime | None = None
) -> SessionQuerySet:
    """Annotate ``state``, ``queued_cells`` and ``running_cells``, and apply the filters.

    ``idle_for`` keeps sessions that are idle or stopped and had no activity for at least that
    long. A session with no recorded activity counts from its registration, so a session
    registered a moment ago is not culled before its kernel had time to start.
    """
    now = now or timezone.now()
    rows = sessions.with_state(now=now).annotate(
        queued_cells=cell_count(CellRuntimeState.QUEUED),
        running_cells=cell_count(CellRuntimeState.RUNNING),
    )
    if filters.state is not None:
        rows = rows.filter(state=filters.state.value)  # type: ignore[misc]
    if filters.idle_for is not None:
        cutoff = now - filters.idle_for
        quiet = Q(last_activity__lte=cutoff) | Q(last_activity__isnull=True, created_at__lte=cutoff)
        resting = [SessionState.IDLE.value, SessionState.STOPPED.value]
        rows = rows.filter(quiet, state__in=resting)  # type: ignore[misc]
    return rows.only("pk", "session_id", "notebook", "last_activity", "created_at")
