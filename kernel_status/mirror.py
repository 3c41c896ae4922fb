"""The write API: how a platform keeps the mirror true.

Every write to a session runs in one transaction that first locks the session's row, so
writers of the same session queue up instead of racing: no IntegrityError, no deadlock (one
lock, always taken first), and the newest event always wins. A batch costs at most six
queries whatever its size.

Ordering rules, applied per event by timestamp:

- a cell notification applies when it is newer than the cell's stored notification and
  not older than the kernel's last start; ``None`` status or stale_inputs keeps the stored
  value (marimo's merge);
- ``started`` and ``stopped`` apply when newer than the kernel's last start or stop;
  ``started`` resets every cell to idle, and cell notifications older than it are ignored;
- a heartbeat applies to a running kernel, when newer than its last heartbeat.

Equal timestamps count as already applied, so applying the same batch twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import router, transaction
from django.utils import timezone

from kernel_status.choices import CellRuntimeState, ProcessState
from kernel_status.events import (
    ApplyResult,
    CellNotification,
    KernelEvent,
    KernelHeartbeat,
    KernelStarted,
    KernelStopped,
)
from kernel_status.models import CellStatus, KernelProcess, Session
from kernel_status.upserts import fetch_cells, upsert_cells
from kernel_status.validators import session_id_problem, validate_session_id

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

__all__ = [
    "SessionOwnerMismatch",
    "UnknownSession",
    "apply_events",
    "close_session",
    "delete_session",
    "kernel_heartbeat",
    "kernel_started",
    "kernel_stopped",
    "register_session",
]

CLOSED_CAUSE = "session closed"


class UnknownSession(LookupError):
    """No session has this id."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"No session with id {session_id!r}.")
        self.session_id = session_id


class SessionOwnerMismatch(ValueError):
    """A session id is already registered to another owner."""


def _db() -> str:
    return router.db_for_write(Session)


def register_session(session_id: str, *, owner: AbstractBaseUser, notebook: str) -> Session:
    """Create the session, or update its notebook if it is already registered to ``owner``.

    Raises :class:`django.core.exceptions.ValidationError` for a bad id and
    :class:`SessionOwnerMismatch` when the id belongs to someone else.
    """
    validate_session_id(session_id)  # before any query: PostgreSQL refuses NUL bytes
    # AUTH_USER_MODEL may be any user model; the stubs only know the default one.
    new = Session(session_id=session_id, owner=owner, notebook=notebook)  # type: ignore[misc]
    new.full_clean(validate_unique=False)
    using = _db()
    with transaction.atomic(using=using):
        # Insert-or-nothing first, so two registrations of a new id cannot both insert; the
        # row then exists and the lock below orders them.
        Session.objects.using(using).bulk_create([new], ignore_conflicts=True)
        session = Session.objects.using(using).select_for_update().get(session_id=session_id)
        if session.owner_id != owner.pk:
            raise SessionOwnerMismatch(f"Session {session_id!r} belongs to another owner.")
        if session.notebook != notebook:
            session.notebook = notebook
            session.full_clean()
            session.save(using=using, update_fields=["notebook", "updated_at"])
        return session


def close_session(session_id: str, *, at: datetime | None = None) -> ApplyResult:
    """The browser tab is gone: record the kernel as stopped, keep the rows for inspection."""
    return apply_events(session_id, [KernelStopped(at or timezone.now(), cause=CLOSED_CAUSE)])


def delete_session(session_id: str) -> bool:
    """Remove the session and everything mirrored for it. ``False`` if it did not exist."""
    if session_id_problem(session_id) is not None:
        return False
    using = _db()
    with transaction.atomic(using=using):
        # Wait for writers of this session first: deleting under them would make their
        # new cell rows point at a deleted session.
        sessions = Session.objects.using(using).filter(session_id=session_id)
        if not list(sessions.select_for_update().values_list("pk", flat=True)):
            return False
        sessions.delete()
    return True


def kernel_started(session_id: str, *, at: datetime | None = None) -> ApplyResult:
    return apply_events(session_id, [KernelStarted(at or timezone.now())])


def kernel_heartbeat(session_id: str, *, at: datetime | None = None) -> ApplyResult:
    return apply_events(session_id, [KernelHeartbeat(at or timezone.now())])


def kernel_stopped(
    session_id: str,
    *,
    at: datetime | None = None,
    exit_code: int | None = None,
    cause: str = "",
) -> ApplyResult:
    return apply_events(
        session_id, [KernelStopped(at or timezone.now(), exit_code=exit_code, cause=cause)]
    )


def apply_events(session_id: str, events: Iterable[KernelEvent]) -> ApplyResult:
    """Apply a batch of events to one session in one transaction.

    Raises :class:`UnknownSession` (and changes nothing) when no session has this id.
    """
    if session_id_problem(session_id) is not None:
        raise UnknownSession(session_id)  # no session can have such an id
    batch = sorted(events, key=lambda event: event.timestamp)  # stable: ties keep their order
    using = _db()
    with transaction.atomic(using=using):
        try:
            session = (
                Session.objects.using(using)
                .select_for_update()
                .only("pk")
                .get(session_id=session_id)
            )
        except Session.DoesNotExist:
            raise UnknownSession(session_id) from None
        # Read after the lock is held: a join in the locking query would see the kernel row
        # as it was before a concurrent writer committed.
        kernel = KernelProcess.objects.using(using).filter(session_id=session.pk).first()
        batch_state = _BatchState(session, kernel, using)
        result = batch_state.apply(batch)
        batch_state.save()
    return result


@dataclass
class _StoredCell:
    row: CellStatus
    stored_at: datetime | None  # notified_at when the batch began
    dirty: bool = False


class _BatchState:
    """The session's kernel and touched cells in memory while a batch is applied."""

    def __init__(self, session: Session, kernel: KernelProcess | None, using: str) -> None:
        self.session = session
        self.using = using
        self.kernel_existed = kernel is not None
        self.kernel = kernel or KernelProcess(session=session)
        self.kernel_dirty = False
        self.transition_at_start = self._last_transition()
        self.heartbeat_at_start = self.kernel.last_heartbeat_at or self.kernel.started_at
        self.cells: dict[str, _StoredCell] = {}
        self.reset_at: datetime | None = None

    def apply(self, batch: Sequence[KernelEvent]) -> ApplyResult:
        cell_ids = {event.cell_id for event in batch if isinstance(event, CellNotification)}
        if cell_ids:
            stored = fetch_cells(self.session.pk, cell_ids, using=self.using)
            self.cells = {
                cell_id: _StoredCell(row, row.notified_at) for cell_id, row in stored.items()
            }
        result = ApplyResult()
        for event in batch:
            if self._apply_one(event):
                result.applied += 1
            else:
                result.ignored_older += 1
        return result

    def save(self) -> None:
        if self.reset_at is not None:
            # Touched cells are written again by the upsert below, with newer timestamps.
            CellStatus.objects.using(self.using).filter(
                session_id=self.session.pk, notified_at__lt=self.reset_at
            ).update(status=CellRuntimeState.IDLE, stale=False, notified_at=self.reset_at)
        if self.kernel_dirty:
            self.kernel.save(using=self.using, force_insert=not self.kernel_existed)
        upsert_cells(
            self.session.pk, (c.row for c in self.cells.values() if c.dirty), using=self.using
        )

    # --- one event ------------------------------------------------------------------------

    def _apply_one(self, event: KernelEvent) -> bool:
        if isinstance(event, CellNotification):
            return self._cell(event)
        if isinstance(event, KernelStarted):
            return self._started(event)
        if isinstance(event, KernelHeartbeat):
            return self._heartbeat(event)
        return self._stopped(event)

    def _cell(self, event: CellNotification) -> bool:
        started_at = self.kernel.started_at
        if started_at is not None and event.timestamp < started_at:
            return False  # from a previous kernel process
        cell = self.cells.get(event.cell_id)
        if cell is None:
            row = CellStatus(
                session=self.session,
                cell_id=event.cell_id,
                status=CellRuntimeState.IDLE,
                stale=False,
                notified_at=event.timestamp,
            )
            cell = self.cells[event.cell_id] = _StoredCell(row, stored_at=None)
        elif not _is_newer(event.timestamp, cell.stored_at, cell.row.notified_at):
            return False
        row = cell.row
        if event.status is not None:
            row.status = event.status
        if event.stale_inputs is not None:
            row.stale = event.stale_inputs
        row.notified_at = event.timestamp
        cell.dirty = True
        return True

    def _started(self, event: KernelStarted) -> bool:
        if not _is_newer(event.timestamp, self.transition_at_start, self._last_transition()):
            return False
        kernel = self.kernel
        kernel.state = ProcessState.RUNNING
        kernel.started_at = event.timestamp
        # A heartbeat of the new process may have arrived before its start.
        previous = kernel.last_heartbeat_at
        kernel.last_heartbeat_at = max(event.timestamp, previous or event.timestamp)
        kernel.stopped_at = kernel.exit_code = None
        kernel.exit_cause = ""
        self.kernel_dirty = True
        # A new process has run nothing.
        self.reset_at = event.timestamp
        for cell in self.cells.values():
            if cell.row.notified_at < event.timestamp:
                cell.row.status = CellRuntimeState.IDLE
                cell.row.stale = False
                cell.row.notified_at = event.timestamp
                cell.dirty = True
        return True

    def _heartbeat(self, event: KernelHeartbeat) -> bool:
        kernel = self.kernel
        current = kernel.last_heartbeat_at or kernel.started_at
        if kernel.state != ProcessState.RUNNING or not _is_newer(
            event.timestamp, self.heartbeat_at_start, current
        ):
            return False
        kernel.last_heartbeat_at = event.timestamp
        self.kernel_dirty = True
        return True

    def _stopped(self, event: KernelStopped) -> bool:
        if not _is_newer(event.timestamp, self.transition_at_start, self._last_transition()):
            return False
        kernel = self.kernel
        kernel.state = ProcessState.STOPPED
        kernel.stopped_at = event.timestamp
        if event.exit_code is not None:
            kernel.exit_code = event.exit_code
        if event.cause:
            kernel.exit_cause = event.cause
        self.kernel_dirty = True
        return True

    def _last_transition(self) -> datetime | None:
        times = [t for t in (self.kernel.started_at, self.kernel.stopped_at) if t is not None]
        return max(times, default=None)


def _is_newer(timestamp: datetime, stored: datetime | None, current: datetime | None) -> bool:
    """Newer than what was stored before the batch, and not older than the batch's own writes."""
    return (stored is None or timestamp > stored) and (current is None or timestamp >= current)
