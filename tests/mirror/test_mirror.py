"""The Python write API: lifecycle, merge, ordering, idempotency, atomicity, cost."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from kernel_status import mirror
from kernel_status.choices import CellRuntimeState as Cell
from kernel_status.choices import ProcessState, SessionState
from kernel_status.events import (
    ApplyResult,
    CellNotification,
    KernelEvent,
    KernelHeartbeat,
    KernelStarted,
    KernelStopped,
)
from kernel_status.mirror.changes import latest_change_id
from kernel_status.models import CellStatus, Change, KernelProcess, Session
from tests.utils import (
    at,
    prepared_statements,
    prepared_statements_allowed,
    require_prepared_statements,
)

pytestmark = pytest.mark.usefixtures("recent_base")  # at() is 30 s back


def cells_of(session: Session) -> dict[str, tuple[str, bool]]:
    return {c.cell_id: (c.status, c.stale) for c in CellStatus.objects.filter(session=session)}


def status_of(session: Session) -> str:
    return str(Session.objects.with_state().get(pk=session.pk).state)


def op(
    cell_id: str, t: float, status: str | None = None, stale: bool | None = None
) -> CellNotification:
    return CellNotification(cell_id=cell_id, timestamp=at(t), status=status, stale_inputs=stale)


# --- sessions ----------------------------------------------------------------------------------


def test_register_is_idempotent_and_updates_the_notebook(users: dict[str, User]) -> None:
    first = mirror.register_session("s1", owner=users["owner"], notebook="a.py")
    again = mirror.register_session("s1", owner=users["owner"], notebook="b.py")
    assert first.pk == again.pk
    assert Session.objects.get(pk=first.pk).notebook == "b.py"


def test_register_refuses_another_owner(users: dict[str, User], session: Session) -> None:
    with pytest.raises(mirror.SessionOwnerMismatch):
        mirror.register_session("s1", owner=users["stranger"], notebook="nb.py")
    assert Session.objects.get(pk=session.pk).owner == users["owner"]


@pytest.mark.parametrize("bad_id", ["", "x" * 129, "a\x00b", "\ud800", "a\udc00"])
def test_register_refuses_bad_ids(users: dict[str, User], bad_id: str) -> None:
    with pytest.raises(ValidationError):
        mirror.register_session(bad_id, owner=users["owner"], notebook="nb.py")
    assert not Session.objects.exists()


def test_close_marks_the_kernel_stopped(session: Session) -> None:
    mirror.kernel_started("s1", at=at(0))
    mirror.close_session("s1", at=at(5))
    kernel = KernelProcess.objects.get(session=session)
    assert (kernel.state, kernel.stopped_at, kernel.exit_cause) == (
        ProcessState.STOPPED,
        at(5),
        "session closed",
    )


def test_delete_removes_everything(session: Session) -> None:
    mirror.apply_events("s1", [KernelStarted(at(0)), op("a", 1, Cell.RUNNING)])
    assert mirror.delete_session("s1") is True
    assert mirror.delete_session("s1") is False
    assert not CellStatus.objects.exists()
    assert not KernelProcess.objects.exists()


def test_unknown_session_raises_and_writes_nothing(session: Session) -> None:
    with pytest.raises(mirror.UnknownSession):
        mirror.apply_events("nope", [KernelStarted(at(0)), op("a", 1, Cell.RUNNING)])
    assert not KernelProcess.objects.exists()
    assert not CellStatus.objects.exists()


# --- kernel lifecycle --------------------------------------------------------------------------


def test_started_runs_the_kernel_and_resets_every_cell(session: Session) -> None:
    mirror.apply_events(
        "s1",
        [
            KernelStarted(at(0)),
            op("a", 1, Cell.RUNNING),
            op("b", 2, Cell.QUEUED, stale=True),
            op("c", 3, Cell.DISABLED_TRANSITIVELY),
        ],
    )
    assert status_of(session) == SessionState.RUNNING
    result = mirror.kernel_started("s1", at=at(10))
    assert result == ApplyResult(applied=1)
    assert cells_of(session) == {"a": ("idle", False), "b": ("idle", False), "c": ("idle", False)}
    kernel = KernelProcess.objects.get(session=session)
    assert (kernel.state, kernel.started_at, kernel.last_heartbeat_at) == (
        "running",
        at(10),
        at(10),
    )
    assert status_of(session) == SessionState.IDLE


def test_cell_ops_from_before_a_restart_are_ignored(session: Session) -> None:
    mirror.kernel_started("s1", at=at(10))
    result = mirror.apply_events("s1", [op("a", 5, Cell.RUNNING), op("b", 11, Cell.QUEUED)])
    assert result == ApplyResult(applied=1, ignored_older=1)
    assert cells_of(session) == {"b": ("queued", False)}


def test_heartbeat_keeps_the_kernel_alive(session: Session) -> None:
    long_ago = timezone.now() - timedelta(minutes=10)
    mirror.kernel_started("s1", at=long_ago)
    assert status_of(session) == SessionState.STOPPED  # silent past the 60 s window
    assert mirror.kernel_heartbeat("s1") == ApplyResult(applied=1)
    assert status_of(session) == SessionState.IDLE


def test_heartbeat_does_not_revive_a_stopped_kernel(session: Session) -> None:
    mirror.apply_events("s1", [KernelStarted(at(0)), KernelStopped(at(1), exit_code=1)])
    # Recorded (heartbeats of one process commute with its stop), but no revival.
    assert mirror.kernel_heartbeat("s1", at=at(2)) == ApplyResult(applied=1)
    kernel = KernelProcess.objects.get(session=session)
    assert (kernel.state, kernel.last_heartbeat_at) == (ProcessState.STOPPED, at(2))
    assert status_of(session) == SessionState.STOPPED


def test_older_heartbeat_is_ignored(session: Session) -> None:
    mirror.apply_events("s1", [KernelStarted(at(0)), KernelHeartbeat(at(5))])
    assert mirror.kernel_heartbeat("s1", at=at(3)) == ApplyResult(ignored_older=1)
    assert KernelProcess.objects.get(session=session).last_heartbeat_at == at(5)


def test_stopped_records_exit_code_and_cause(session: Session) -> None:
    mirror.kernel_started("s1", at=at(0))
    mirror.kernel_stopped("s1", at=at(4), exit_code=-9, cause="killed by signal 9")
    kernel = KernelProcess.objects.get(session=session)
    assert (kernel.state, kernel.stopped_at, kernel.exit_code, kernel.exit_cause) == (
        "stopped",
        at(4),
        -9,
        "killed by signal 9",
    )
    assert status_of(session) == SessionState.STOPPED


def test_a_stop_older_than_the_start_is_ignored(session: Session) -> None:
    mirror.kernel_started("s1", at=at(10))
    assert mirror.kernel_stopped("s1", at=at(5)) == ApplyResult(ignored_older=1)
    assert KernelProcess.objects.get(session=session).state == ProcessState.RUNNING


def test_a_start_older_than_the_stop_leaves_the_kernel_stopped(session: Session) -> None:
    mirror.apply_events("s1", [KernelStarted(at(0)), KernelStopped(at(10))])
    # In timestamp order the start at 5 came before the stop at 10: it is the last start
    # (cells older than it are reset) but the kernel stays stopped.
    assert mirror.kernel_started("s1", at=at(5)) == ApplyResult(applied=1)
    kernel = KernelProcess.objects.get(session=session)
    assert (kernel.state, kernel.started_at, kernel.stopped_at) == ("stopped", at(5), at(10))
    assert mirror.kernel_started("s1", at=at(5)) == ApplyResult(ignored_older=1)


# --- cell notifications ------------------------------------------------------------------------


def test_null_status_and_stale_keep_the_stored_values(session: Session) -> None:
    mirror.apply_events("s1", [op("a", 1, Cell.RUNNING, stale=False)])
    mirror.apply_events("s1", [op("a", 2, None, stale=True)])
    assert cells_of(session) == {"a": ("running", True)}
    mirror.apply_events("s1", [op("a", 3, Cell.IDLE, None)])
    assert cells_of(session) == {"a": ("idle", True)}


def test_first_notification_without_status_creates_an_idle_cell(session: Session) -> None:
    mirror.apply_events("s1", [op("a", 1)])
    assert cells_of(session) == {"a": ("idle", False)}


def test_older_notification_never_overwrites_a_newer_one(session: Session) -> None:
    mirror.apply_events("s1", [op("a", 5, Cell.IDLE)])
    result = mirror.apply_events("s1", [op("a", 4, Cell.RUNNING), op("a", 5, Cell.QUEUED)])
    assert result == ApplyResult(ignored_older=2)
    assert cells_of(session) == {"a": ("idle", False)}
    assert CellStatus.objects.get(session=session).notified_at == at(5)


def test_out_of_order_batch_is_applied_by_timestamp(session: Session) -> None:
    result = mirror.apply_events(
        "s1", [op("a", 3, Cell.IDLE), op("a", 1, Cell.QUEUED), op("a", 2, Cell.RUNNING)]
    )
    assert result == ApplyResult(applied=3)
    assert cells_of(session) == {"a": ("idle", False)}


def test_null_fields_merge_only_with_newer_values(session: Session) -> None:
    # Stored: running at t=5. The batch's queued at t=3 is older and must not leak in
    # through the newer null-status notification at t=7.
    mirror.apply_events("s1", [op("a", 5, Cell.RUNNING)])
    result = mirror.apply_events("s1", [op("a", 3, Cell.QUEUED), op("a", 7, None, stale=True)])
    assert result == ApplyResult(applied=1, ignored_older=1)
    assert cells_of(session) == {"a": ("running", True)}


def test_applying_the_same_batch_twice_changes_nothing(session: Session) -> None:
    batch: list[KernelEvent] = [
        KernelStarted(at(0)),
        op("a", 1, Cell.RUNNING),
        op("b", 2, Cell.QUEUED),
        KernelHeartbeat(at(3)),
        op("a", 4, Cell.IDLE, stale=True),
    ]
    assert mirror.apply_events("s1", batch) == ApplyResult(applied=5)
    snapshot = (
        list(CellStatus.objects.values().order_by("cell_id")),
        list(KernelProcess.objects.values()),
    )
    assert mirror.apply_events("s1", batch) == ApplyResult(ignored_older=5)
    assert snapshot == (
        list(CellStatus.objects.values().order_by("cell_id")),
        list(KernelProcess.objects.values()),
    )


# --- cost ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 100, 1000])
def test_a_batch_is_a_constant_number_of_queries(session: Session, size: int) -> None:
    mirror.apply_events("s1", [op(f"c{i}", 1, Cell.IDLE) for i in range(0, 2000, 2)])  # stored
    batch: list[KernelEvent] = [
        KernelStarted(at(2)),
        *(op(f"c{i}", 3, Cell.QUEUED) for i in range(size)),
    ]
    with CaptureQueriesContext(connection) as context:
        result = mirror.apply_events("s1", batch)
    assert result == ApplyResult(applied=size + 1)
    # Lock the session, read its kernel, read the touched cells, reset the others,
    # write the kernel, upsert the cells, move the session's last activity forward (on
    # PostgreSQL the kernel and the cells are one read, and the upsert and the last activity
    # one statement); then the change log's row for watchers (on PostgreSQL, the row and its
    # NOTIFY are part of the upsert's statement).
    writes = [
        q["sql"]
        for q in context.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))
    ]
    assert len(writes) == (5 if connection.vendor == "postgresql" else 8), writes
    assert CellStatus.objects.filter(session=session, status=Cell.QUEUED).count() == size


def test_a_batch_of_one_cell_op_is_three_statements_on_postgresql_and_its_change_note(
    session: Session,
) -> None:
    """A kernel host's commonest batch: lock, read, write (one round trip each); on
    PostgreSQL the write also logs the change and NOTIFYs watchers, elsewhere the change log's
    row is one more statement."""
    mirror.apply_events("s1", [op("c0", 1, Cell.IDLE)])
    before = latest_change_id(using="default")
    with CaptureQueriesContext(connection) as context:
        result = mirror.apply_events("s1", [op("c0", 2, Cell.RUNNING), op("c1", 2, Cell.QUEUED)])
    assert result == ApplyResult(applied=2)
    statements = [
        q["sql"]
        for q in context.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))
    ]
    assert len(statements) == (3 if connection.vendor == "postgresql" else 6), statements
    if connection.vendor == "postgresql":
        assert "pg_notify" in statements[-1]
    # One row of the change log, for this session.
    assert list(Change.objects.filter(pk__gt=before).values_list("session_pk", "access")) == [
        (session.pk, False)
    ]
    assert dict(CellStatus.objects.values_list("cell_id", "status")) == {
        "c0": Cell.RUNNING,
        "c1": Cell.QUEUED,
    }
    stored = Session.objects.get(pk=session.pk).last_activity
    assert stored == at(2)
    mirror.apply_events("s1", [op("c0", 1.5, Cell.IDLE)])  # older: no change, never back
    assert Session.objects.get(pk=session.pk).last_activity == stored
    assert CellStatus.objects.get(cell_id="c0").status == Cell.RUNNING


def test_postgresql_prepares_the_write_statements_when_allowed_with_the_same_rows(
    users: dict[str, User],
) -> None:
    """With ``prepare_threshold`` set (docs/performance.md), the lock, the read and the
    upsert with its change note are prepared once per connection; the rows are those of the
    unprepared path."""
    require_prepared_statements()
    batches: list[list[KernelEvent]] = [
        [KernelStarted(at(1)), op("c0", 1, Cell.QUEUED)],
        [op("c0", 2, Cell.RUNNING), op("c1", 2, stale=True)],
        [op("c0", 1.5, Cell.IDLE)],  # older: ignored
        [KernelHeartbeat(at(3))],  # no cell: the kernel row and the note only
        [op("c0", 4, Cell.IDLE), op("c1", 4, Cell.RUNNING, stale=False)],
        [KernelStopped(at(5), exit_code=0)],
    ]

    def mirrored(session_id: str) -> tuple[object, ...]:
        session = mirror.register_session(session_id, owner=users["owner"], notebook="nb.py")
        results = [mirror.apply_events(session_id, batch) for batch in batches * 3]
        cells = CellStatus.objects.filter(session=session).order_by("cell_id")
        kernel = KernelProcess.objects.filter(session=session)
        return (
            results,
            list(cells.values("cell_id", "status", "status_at", "stale", "stale_at")),
            list(kernel.values("state", "started_at", "last_heartbeat_at", "stopped_at")),
            Session.objects.get(pk=session.pk).last_activity,
            Change.objects.filter(session_pk=session.pk).count(),
        )

    plain = mirrored("plain")
    with prepared_statements_allowed():
        prepared = mirrored("prepared")
        statements = prepared_statements()
    assert prepared == plain
    assert any("FOR UPDATE" in s and "kernel_status_session" in s for s in statements), statements
    assert any("pg_notify" in s and "kernel_status_cellstatus" in s for s in statements)


# --- bad events ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: CellNotification("a", at(0), status="done"), "status must be one of"),
        (lambda: CellNotification("", at(0)), "cell_id is empty"),
        (lambda: CellNotification("x" * 129, at(0)), "longer than 128"),
        (lambda: CellNotification("a\x00", at(0)), "control characters"),
        (lambda: CellNotification("\ud800", at(0)), "lone surrogate"),
        (lambda: CellNotification("a", at(0), stale_inputs=1), "stale_inputs must be a bool"),  # type: ignore[arg-type]
        (lambda: CellNotification("a", datetime(2026, 1, 1)), "aware datetime"),
        (lambda: KernelStarted(datetime(2026, 1, 1)), "aware datetime"),
        (lambda: KernelStopped(at(0), exit_code=2**31), "32 bits"),
        (lambda: KernelStopped(at(0), cause="x" * 256), "longer than 255"),
    ],
)
def test_bad_events_are_refused_before_the_database(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]
