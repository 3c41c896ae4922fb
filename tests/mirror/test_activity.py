"""Session.last_activity: what counts as activity, what does not, and that reads never count.

The rule: the greatest timestamp among kernel starts and status-bearing cell notifications
of the current kernel process. That it does not depend on arrival order or batching is also
a property of the invariant tests (tests/mirror/test_invariant.py).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from kernel_status import mirror
from kernel_status.choices import CellRuntimeState as Cell
from kernel_status.events import (
    CellNotification,
    KernelEvent,
    KernelHeartbeat,
    KernelStarted,
    KernelStopped,
)
from kernel_status.models import Session
from tests.utils import SESSION_ID, get_status

BASE = timezone.now().replace(microsecond=0) - timedelta(seconds=60)


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def op(
    cell_id: str, seconds: float, status: str | None = None, stale: bool | None = None
) -> CellNotification:
    return CellNotification(cell_id, at(seconds), status=status, stale_inputs=stale)


def apply(*events: KernelEvent) -> None:
    mirror.apply_events(SESSION_ID, list(events))


def activity() -> datetime | None:
    return Session.objects.get(session_id=SESSION_ID).last_activity


@pytest.fixture
def started(session: Session) -> Session:
    apply(KernelStarted(at(0)))
    return session


# --- what counts ---------------------------------------------------------------------------------


def test_nothing_happened_yet(session: Session) -> None:
    assert activity() is None


def test_the_kernel_starting(session: Session) -> None:
    apply(KernelStarted(at(5)))
    assert activity() == at(5)
    apply(KernelStopped(at(6)), KernelStarted(at(7)))  # a restart
    assert activity() == at(7)


@pytest.mark.parametrize("busy", [Cell.QUEUED, Cell.RUNNING])
def test_a_cell_becoming_busy(started: Session, busy: str) -> None:
    apply(op("c", 3, busy))
    assert activity() == at(3)


def test_a_cell_becoming_idle_again(started: Session) -> None:
    apply(op("c", 1, Cell.QUEUED))
    apply(op("c", 2, Cell.RUNNING))  # queued to running: the run starts
    assert activity() == at(2)
    apply(op("c", 9, Cell.IDLE))
    assert activity() == at(9)


def test_busy_to_disabled_counts_as_becoming_idle(started: Session) -> None:
    apply(op("c", 1, Cell.RUNNING), op("c", 4, Cell.DISABLED_TRANSITIVELY))
    assert activity() == at(4)


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(op("c", 30, Cell.IDLE), id="idle cell reported idle (a run that ended)"),
        pytest.param(op("new", 30, Cell.IDLE), id="new idle cell"),
        pytest.param(op("new", 30, Cell.DISABLED_TRANSITIVELY), id="idle cell disabled"),
        pytest.param(op("c", 30, Cell.IDLE, stale=True), id="status with a stale flag"),
    ],
)
def test_any_status_counts_whatever_the_stored_status(started: Session, event: KernelEvent) -> None:
    """marimo sends a status only when a cell is queued, starts running or finishes: each is a
    run. Comparing with the stored status would make the result depend on arrival order."""
    apply(op("c", 1, Cell.IDLE))
    assert activity() == at(1)
    apply(event)
    assert activity() == at(30)


def test_a_batch_records_its_latest_activity(started: Session) -> None:
    apply(op("a", 3, Cell.RUNNING), op("b", 2, Cell.QUEUED), op("a", 6, Cell.IDLE))
    assert activity() == at(6)


# --- what does not count -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(KernelHeartbeat(at(30)), id="heartbeat"),
        pytest.param(KernelStopped(at(30), exit_code=0, cause="done"), id="stop"),
        pytest.param(op("c", 30), id="status-less op (console output)"),
        pytest.param(op("c", 30, stale=True), id="stale flag only"),
    ],
)
def test_no_activity(started: Session, event: KernelEvent) -> None:
    apply(op("c", 1, Cell.IDLE))
    assert activity() == at(1)
    apply(event)
    assert activity() == at(1)


def test_notifications_of_the_previous_process_do_not_count(session: Session) -> None:
    apply(KernelStarted(at(10)))
    apply(op("c", 5, Cell.RUNNING), op("c", 6, Cell.IDLE))
    assert activity() == at(10)


def test_an_older_start_does_not_count(session: Session) -> None:
    apply(KernelStarted(at(10)))
    apply(KernelStarted(at(4)))
    assert activity() == at(10)


# --- order and repeats ---------------------------------------------------------------------------


def test_out_of_order_delivery_never_moves_it_back(started: Session) -> None:
    apply(op("c", 8, Cell.RUNNING))
    apply(op("d", 3, Cell.QUEUED))  # older, delivered later
    assert activity() == at(8)
    apply(op("c", 2, Cell.QUEUED))  # older than the stored status: ignored for the status
    assert activity() == at(8)


def test_the_end_of_a_run_delivered_before_its_start_counts(started: Session) -> None:
    apply(op("c", 9, Cell.IDLE))  # the end of a run, delivered before its start
    assert activity() == at(9)
    apply(op("c", 5, Cell.RUNNING))  # older than the stored status: changes nothing
    assert activity() == at(9)
    assert mirror.apply_events(SESSION_ID, [op("c", 5, Cell.RUNNING)]).applied == 0
    assert activity() == at(9)


def test_every_arrival_order_gives_the_same_activity(
    session: Session, users: dict[str, User]
) -> None:
    """Review finding 1.2: start T0, running T1, idle T3, one per batch, in all 6 orders.
    The rule used to compare with the stored status, and half the orders ended at T1."""
    events: list[KernelEvent] = [
        KernelStarted(at(0)),
        op("c", 1, Cell.RUNNING),
        op("c", 3, Cell.IDLE),
    ]
    ends: dict[tuple[KernelEvent, ...], datetime | None] = {}
    for n, order in enumerate(itertools.permutations(events)):
        session_id = f"order-{n}"
        mirror.register_session(session_id, owner=users["owner"], notebook="nb.py")
        for event in order:
            mirror.apply_events(session_id, [event])
        ends[order] = Session.objects.get(session_id=session_id).last_activity
    assert len(ends) == 6
    assert set(ends.values()) == {at(3)}


def test_a_notification_before_its_start_arrives_is_outdone_by_the_start(
    session: Session,
) -> None:
    apply(op("c", 5, Cell.RUNNING))  # the start at 10 has not arrived yet
    assert activity() == at(5)
    apply(KernelStarted(at(10)))
    apply(op("d", 7, Cell.IDLE))  # of the previous process now: ignored
    assert activity() == at(10)


def test_a_retried_batch_changes_nothing(started: Session) -> None:
    batch = [op("c", 2, Cell.RUNNING), op("c", 4, Cell.IDLE)]
    apply(*batch)
    updated = Session.objects.get(session_id=SESSION_ID).updated_at
    apply(*batch)
    session = Session.objects.get(session_id=SESSION_ID)
    assert (session.last_activity, session.updated_at) == (at(4), updated)


def test_http_ingestion_records_it_and_the_status_answers_it(
    session: Session, reporter: APIClient, users: dict[str, User]
) -> None:
    start = round(timezone.now().timestamp()) - 5.0  # recent: inside the liveness window
    body = {
        "events": [
            {"op": "kernel-started", "data": {"timestamp": start}},
            {
                "op": "cell-op",
                "data": {"cell_id": "c", "status": "running", "timestamp": start + 2.5},
            },
        ]
    }
    response = reporter.post(
        "/api/kernel/events", body, format="json", headers={"Marimo-Session-Id": SESSION_ID}
    )
    assert response.status_code == 200, response.content
    busy_at = datetime.fromtimestamp(start + 2.5, tz=UTC)
    assert activity() == busy_at
    owner = APIClient()
    owner.force_authenticate(users["owner"])
    assert get_status(owner, SESSION_ID).json() == {
        "state": "running",
        "last_activity": busy_at.isoformat().replace("+00:00", "Z"),
    }


# --- reads ---------------------------------------------------------------------------------------


def test_reads_never_change_it(started: Session, users: dict[str, User], client: Client) -> None:
    apply(op("c", 2, Cell.RUNNING))
    before = Session.objects.values().get(session_id=SESSION_ID)
    owner = APIClient()
    owner.force_authenticate(users["owner"])
    etag = get_status(owner, SESSION_ID)["ETag"]
    assert get_status(owner, SESSION_ID, HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert owner.get("/api/kernel/sessions").status_code == 200
    assert owner.get("/api/kernel/sessions", {"idle_for": "0"}).status_code == 200
    client.force_login(users["superuser"])
    changelist = client.get("/admin/kernel_status/session/")
    change = client.get(f"/admin/kernel_status/session/{started.pk}/change/")
    assert (changelist.status_code, change.status_code) == (200, 200)
    assert Session.objects.values().get(session_id=SESSION_ID) == before
