"""A batch of events applied to one locked session: the mirror's rules, in memory, then saved
in a few set-based statements (:mod:`kernel_status.mirror.statements`). A batch costs at most
seven queries whatever its size.

**The invariant.** For any set of notifications of one session, split into batches in any
way, with the batches sent in any order and any of them sent again, the final mirror equals
the result of applying every notification once, one at a time, in timestamp order. A
``None`` status or ``stale_inputs`` keeps the previous value *of that field only*. Kernel
starts, stops and heartbeats follow their rules: a start resets the cells, and cell
notifications older than the last start are ignored.

Ordering is decided per field, never per cell (see :mod:`kernel_status.mirror.ordering`): a cell's
status and its stale flag each keep the timestamp of the notification that set them
(``status_at``, ``stale_at``), and a notification sets a field only when it is newer than
that field's own timestamp. A status-less notification (console output) therefore never hides
an older status that arrives later. ``notified_at`` is the newest notification seen, for
display only.

- a cell notification is ignored when older than the kernel's last start;
- ``started`` applies when newer than the last start: it resets every cell whose fields were
  set before it (status ``idle``, not stale, field timestamps cleared, so a notification
  with the start's own timestamp still applies), and clears a stop and exit report older
  than it. A start older than a stop leaves the kernel stopped;
- ``stopped`` applies to the current process (not older than its last start): the newest
  stop gives ``stopped_at``; exit code and cause are ordered like cell fields;
- a heartbeat of the current process (not older than its start) moves
  ``last_heartbeat_at`` forward. It never revives a stopped kernel.

**Equal timestamps.** Two notifications of one field with the same timestamp (microsecond
resolution) are decided by a fixed rank of their values, so the result does not depend on
which arrived first: for a status the value that ends a run wins (``queued`` < ``running``
< ``disabled-transitively`` < ``idle``), for a stale flag ``False`` wins. At equal
timestamps a stop wins over a start. Sending the same notification again changes nothing.

**Clock guard.** A timestamp further ahead of the server clock than
``KERNEL_STATUS_MAX_CLOCK_SKEW`` (default 300 s) is refused with
:class:`~kernel_status.mirror.events.ClockSkewError`
before anything is written; one event stamped years ahead would otherwise pin the session.
:func:`~kernel_status.mirror.writes.reset_session` clears a session's mirror that is stuck for
any other reason.

**Last activity.** ``Session.last_activity`` is the greatest timestamp among the kernel
starts and the cell notifications *with a status* of the current kernel process. marimo sends
a status only when a cell is queued, starts running and finishes, so each one is a run
happening. Heartbeats, stops, status-less notifications and reads never count. It looks at
the events only, never at the stored rows, so it does not depend on arrival order or batching:
the maximum of a set is the same in any order, and a batch sent twice changes nothing. A
notification older than the last start cannot change it, since the start itself is newer.
:func:`~kernel_status.mirror.writes.reset_session` clears it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from kernel_status.choices import CellRuntimeState, ProcessState
from kernel_status.mirror.changes import note_changed, note_of
from kernel_status.mirror.events import (
    ApplyResult,
    CellNotification,
    KernelEvent,
    KernelHeartbeat,
    KernelStarted,
    KernelStopped,
)
from kernel_status.mirror.ordering import STATUS_TIE_RANK, is_newer, stale_tie_rank
from kernel_status.mirror.statements import (
    CellRow,
    fetch_cells,
    reset_cells,
    upsert_cells,
)
from kernel_status.models import KernelProcess, Session
from kernel_status.validators import EXIT_CODE_MIN

# Within one timestamp: a start first (it resets), then the rest, a stop last (it wins).
_KIND_ORDER = {KernelStarted: 0, CellNotification: 1, KernelHeartbeat: 1, KernelStopped: 2}


def _order(event: KernelEvent) -> tuple[datetime, int]:
    return event.timestamp, _KIND_ORDER[type(event)]


def cell_ids_of(batch: Iterable[KernelEvent]) -> set[str]:
    """The ids of the cells a batch notifies about."""
    return {event.cell_id for event in batch if isinstance(event, CellNotification)}


def in_apply_order(events: Iterable[KernelEvent]) -> list[KernelEvent]:
    """The events sorted as a batch applies them: by timestamp, then by kind."""
    return sorted(events, key=_order)


class BatchState:
    """The session's kernel and touched cells in memory while a batch is applied.

    Every rule compares an event with the stored field it would change (see
    :mod:`kernel_status.mirror.ordering`), so the batch gives the same rows whatever ran before it.
    """

    def __init__(
        self,
        session: Session,
        kernel: KernelProcess | None,
        using: str,
        cells: dict[str, CellRow] | None = None,
    ) -> None:
        self.session = session
        self.using = using
        self.kernel_existed = kernel is not None
        self.kernel = kernel or KernelProcess(session=session)
        self.kernel_dirty = False
        # The batch's cells, when the caller read them with the kernel (fetch_kernel_and_cells).
        self.cells_loaded = cells is not None
        self.cells: dict[str, CellRow] = cells or {}
        self.dirty_cells: set[str] = set()
        self.reset_at: datetime | None = None
        self.activity: datetime | None = None  # the latest activity in this batch

    def apply(self, batch: Sequence[KernelEvent]) -> ApplyResult:
        cell_ids = cell_ids_of(batch)
        if cell_ids and not self.cells_loaded:
            self.cells = fetch_cells(self.session.pk, cell_ids, using=self.using)
        result = ApplyResult()
        for event in batch:
            if self._apply_one(event):
                result.applied += 1
            else:
                result.ignored_older += 1
        return result

    def save(self, *, note: bool = False) -> None:
        """Write the batch; ``note``: also log the session's change for watchers (folded
        into the upsert where the database allows)."""
        if self.reset_at is not None:
            # Touched cells are reset in memory too; the upsert below keeps the reset.
            reset_cells(self.session.pk, self.reset_at, using=self.using)
        if self.kernel_dirty:
            self.kernel.save(using=self.using, force_insert=not self.kernel_existed)
        # last_activity only forward: a batch of old events never moves it back.
        pending = note_of([self.session.pk]) if note else None
        if (
            not upsert_cells(
                self.session.pk,
                (self.cells[cell_id] for cell_id in self.dirty_cells),
                using=self.using,
                last_activity=self.activity,
                note=pending,
            )
            and note
        ):
            note_changed([self.session.pk], using=self.using)

    def _active_at(self, at: datetime) -> None:
        if self.activity is None or at > self.activity:
            self.activity = at

    # --- one event ------------------------------------------------------------------------

    def _apply_one(self, event: KernelEvent) -> bool:
        if isinstance(event, CellNotification):
            return self._cell(event)
        if isinstance(event, KernelStarted):
            return self._started(event)
        if isinstance(event, KernelHeartbeat):
            return self._heartbeat(event)
        return self._stopped(event)

    def _of_current_process(self, timestamp: datetime) -> bool:
        started_at = self.kernel.started_at
        return started_at is None or timestamp >= started_at

    def _cell(self, event: CellNotification) -> bool:
        at = event.timestamp
        if not self._of_current_process(at):
            return False  # from a previous kernel process
        row = self.cells.get(event.cell_id)
        if row is None:
            row = self.cells[event.cell_id] = CellRow(
                event.cell_id, CellRuntimeState.IDLE, None, False, None, at
            )
            changed = True
        else:
            changed = at > row.notified_at
            if changed:
                row.notified_at = at
        status = event.status
        if status is not None:
            # A run happened then, whatever the stored status: never compare with the row.
            self._active_at(at)
        if status is not None and is_newer(
            at, STATUS_TIE_RANK[status], row.status_at, STATUS_TIE_RANK[row.status]
        ):
            row.status, row.status_at = status, at
            changed = True
        stale = event.stale_inputs
        if stale is not None and is_newer(
            at, stale_tie_rank(stale), row.stale_at, stale_tie_rank(row.stale)
        ):
            row.stale, row.stale_at = stale, at
            changed = True
        if changed:
            self.dirty_cells.add(event.cell_id)
        return changed

    def _started(self, event: KernelStarted) -> bool:
        kernel, at = self.kernel, event.timestamp
        if kernel.started_at is not None and at <= kernel.started_at:
            return False
        kernel.started_at = at
        # A heartbeat of the new process may have arrived before its start.
        previous = kernel.last_heartbeat_at
        kernel.last_heartbeat_at = at if previous is None else max(at, previous)
        # A stop and an exit report older than the start belong to the previous process.
        if kernel.stopped_at is not None and kernel.stopped_at < at:
            kernel.stopped_at = None
        if kernel.exit_code_at is not None and kernel.exit_code_at < at:
            kernel.exit_code = kernel.exit_code_at = None
        if kernel.exit_cause_at is not None and kernel.exit_cause_at < at:
            kernel.exit_cause, kernel.exit_cause_at = "", None
        kernel.state = ProcessState.RUNNING if kernel.stopped_at is None else ProcessState.STOPPED
        self.kernel_dirty = True
        self._active_at(at)
        # A new process has run nothing.
        self.reset_at = at
        for cell_id, row in self.cells.items():
            if reset_cell(row, at):
                self.dirty_cells.add(cell_id)
        return True

    def _heartbeat(self, event: KernelHeartbeat) -> bool:
        kernel, at = self.kernel, event.timestamp
        if not self._of_current_process(at):
            return False
        if kernel.last_heartbeat_at is not None and at <= kernel.last_heartbeat_at:
            return False
        kernel.last_heartbeat_at = at
        self.kernel_dirty = True
        return True

    def _stopped(self, event: KernelStopped) -> bool:
        kernel, at = self.kernel, event.timestamp
        if not self._of_current_process(at):
            return False
        changed = False
        if kernel.stopped_at is None or at > kernel.stopped_at:
            kernel.state = ProcessState.STOPPED
            kernel.stopped_at = at
            changed = True
        code = event.exit_code
        if code is not None and is_newer(
            at, code, kernel.exit_code_at, _code_rank(kernel.exit_code)
        ):
            kernel.exit_code, kernel.exit_code_at = code, at
            changed = True
        cause = event.cause
        if cause and is_newer(at, cause, kernel.exit_cause_at, kernel.exit_cause):
            kernel.exit_cause, kernel.exit_cause_at = cause, at
            changed = True
        self.kernel_dirty |= changed
        return changed


def _code_rank(code: int | None) -> int:
    return EXIT_CODE_MIN - 1 if code is None else code


def reset_cell(row: CellRow, at: datetime) -> bool:
    """A kernel start at ``at``: fields set before it go back to idle and not stale.

    Their timestamps are cleared, not set to ``at``: a notification with the start's own
    timestamp is not older than the start, and must win whatever its value.
    """
    changed = False
    if row.status_at is None or row.status_at < at:
        changed |= row.status != CellRuntimeState.IDLE or row.status_at is not None
        row.status, row.status_at = CellRuntimeState.IDLE, None
    if row.stale_at is None or row.stale_at < at:
        changed |= row.stale or row.stale_at is not None
        row.stale, row.stale_at = False, None
    if row.notified_at < at:
        row.notified_at = at
        changed = True
    return changed
