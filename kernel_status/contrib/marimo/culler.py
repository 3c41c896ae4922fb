"""Shut down marimo sessions that the mirror shows idle or stopped for too long.

The mirror decides who is idle: the core's listing (:func:`kernel_status.queries.listing.listing`,
its ``idle_for`` rule and the one shared state derivation). marimo is asked to close each
session through :class:`~kernel_status.contrib.marimo.client.MarimoHome`, and the mirror
then records the session as closed (:func:`kernel_status.mirror.close_session`).

Only sessions that marimo itself lists are touched: the mirror may hold sessions of other
marimo servers, or sessions closed long ago.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from django.utils import timezone

from kernel_status import mirror
from kernel_status.contrib.marimo.client import MarimoHome, MarimoUnavailable
from kernel_status.models import Session
from kernel_status.queries.listing import SessionFilter, listing

__all__ = ["CullReport", "Culled", "Marimo", "MarimoHome", "MarimoUnavailable", "cull"]

# SQLite allows 999 parameters per statement; marimo's list is looked up in chunks.
LOOKUP_CHUNK = 500


class Marimo(Protocol):
    """What the culler needs from a marimo server (:class:`MarimoHome` in production)."""

    base_url: str

    def running_sessions(self) -> dict[str, str]: ...

    def shutdown_session(self, session_id: str) -> dict[str, str]: ...


@dataclass(frozen=True)
class Culled:
    """What happened to one session."""

    session_id: str
    notebook: str
    state: str
    last_activity: datetime | None
    action: str  # "shut down", "would shut down", "skipped", "refused"
    reason: str = ""

    def line(self, now: datetime) -> str:
        since = self.last_activity
        quiet = "no activity yet" if since is None else f"last activity {since.isoformat()}"
        if since is not None:
            quiet += f" ({(now - since).total_seconds():.0f} s ago)"
        text = f"{self.action}: {self.session_id} ({self.notebook}) {self.state}, {quiet}"
        return f"{text}: {self.reason}" if self.reason else text


@dataclass
class CullReport:
    culled: list[Culled]
    not_on_server: int  # idle in the mirror, but this marimo server does not list them

    @property
    def refused(self) -> Culled | None:
        return next((c for c in self.culled if c.action == "refused"), None)


def candidates(running: set[str], idle_for: timedelta, *, now: datetime) -> list[Session]:
    """Sessions marimo lists that the mirror shows idle or stopped for ``idle_for``, oldest
    activity first."""
    rule = SessionFilter(idle_for=idle_for)
    ids = sorted(running)
    rows: list[Session] = []
    for start in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[start : start + LOOKUP_CHUNK]
        rows += listing(Session.objects.filter(session_id__in=chunk), rule, now=now)
    return sorted(rows, key=lambda s: (s.last_activity or s.created_at, s.pk))


def idle_in_mirror(idle_for: timedelta, *, now: datetime) -> int:
    """How many sessions of the whole mirror are idle or stopped for ``idle_for``: one
    ``COUNT`` query."""
    return listing(Session.objects.all(), SessionFilter(idle_for=idle_for), now=now).count()


def cull(
    marimo: Marimo,
    *,
    idle_for: timedelta,
    limit: int | None = None,
    dry_run: bool = False,
    clock: Callable[[], datetime] = timezone.now,
    report: Callable[[Culled], None] = lambda culled: None,
) -> CullReport:
    """Shut down (up to ``limit``) sessions idle or stopped for ``idle_for``.

    Stops at the first refusal from marimo (an authentication problem would refuse them all).
    Raises :class:`MarimoUnavailable` when marimo cannot even list its sessions.
    """
    running = set(marimo.running_sessions())
    now = clock()
    found = candidates(running, idle_for, now=now)
    # The candidates are exactly the idle sessions that marimo lists, at the same ``now``.
    not_on_server = max(0, idle_in_mirror(idle_for, now=now) - len(found))
    result = CullReport([], not_on_server)
    for session in found[:limit]:
        entry = _cull_one(marimo, session, idle_for, dry_run, clock)
        result.culled.append(entry)
        report(entry)
        if entry.action == "refused":
            break
    return result


def _cull_one(
    marimo: Marimo,
    session: Session,
    idle_for: timedelta,
    dry_run: bool,
    clock: Callable[[], datetime],
) -> Culled:
    def outcome(action: str, reason: str = "") -> Culled:
        return Culled(
            session.session_id,
            session.notebook,
            session.state,  # type: ignore[attr-defined]
            session.last_activity,
            action,
            reason,
        )

    if dry_run:
        return outcome("would shut down")
    # The listing may be seconds old: a cell may have started running since.
    rule = SessionFilter(idle_for=idle_for)
    if not listing(Session.objects.filter(pk=session.pk), rule, now=clock()).exists():
        return outcome("skipped", "active again since it was listed")
    try:
        still_open = marimo.shutdown_session(session.session_id)
    except MarimoUnavailable as error:
        return outcome("refused", str(error))
    if session.session_id in still_open:
        return outcome("refused", "marimo still lists the session after shutting it down")
    mirror.close_session(session.session_id, at=clock())
    return outcome("shut down")
