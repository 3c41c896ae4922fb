"""Ordering per field, equal timestamps, the clock guard and the reset of a stuck mirror."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from kernel_status import mirror
from kernel_status.choices import CellRuntimeState as Cell
from kernel_status.choices import ProcessState, SessionState
from kernel_status.events import (
    ApplyResult,
    CellNotification,
    KernelStarted,
    KernelStopped,
    from_epoch,
)
from kernel_status.mirror.statements import CellRow, upsert_cells
from kernel_status.models import CellStatus, KernelProcess, Session
from tests.utils import at, cell_op, post

pytestmark = pytest.mark.usefixtures("recent_base")  # at() is 30 s back


def op(cell_id: str, t: float, status: str | None = None, stale: bool | None = None) -> Any:
    return CellNotification(cell_id=cell_id, timestamp=at(t), status=status, stale_inputs=stale)


def cell(cell_id: str = "c") -> tuple[str, bool]:
    row = CellStatus.objects.get(cell_id=cell_id)
    return row.status, row.stale


def state_of(session: Session) -> str:
    return str(Session.objects.with_state().get(pk=session.pk).state)


# --- the reproduction ------------------------------------------------------------------


def test_status_less_op_in_an_earlier_batch_does_not_hide_an_older_status(
    session: Session, reporter: APIClient, users: dict[str, User]
) -> None:
    """The three lines of issue 7, one batch each, over HTTP: marimo says running."""
    t = time.time() - 10
    started = post(reporter, {"events": [{"op": "kernel-started", "data": {"timestamp": t}}]})
    console = post(reporter, {"events": [cell_op("c", None, t + 2, console={"data": "hi"})]})
    running = post(reporter, {"events": [cell_op("c", "running", t + 1)]})
    assert [r.status_code for r in (started, console, running)] == [200, 200, 200]
    assert running.json() == {"applied": 1, "ignored_older": 0}
    owner = APIClient()
    owner.force_authenticate(users["owner"])
    answer = owner.get("/api/kernel/status", headers={"Marimo-Session-Id": "s1"}).json()
    assert answer["state"] == "running"
    row = CellStatus.objects.get(cell_id="c")
    assert (row.status, row.status_at, row.notified_at) == (
        "running",
        from_epoch(t + 1),
        from_epoch(t + 2),
    )


def test_each_field_keeps_its_own_order(session: Session) -> None:
    mirror.apply_events("s1", [op("c", 5, None, stale=True)])
    assert mirror.apply_events("s1", [op("c", 3, Cell.QUEUED, stale=False)]) == ApplyResult(
        applied=1
    )
    assert cell() == ("queued", True)  # status from t=3, stale flag from t=5
    assert mirror.apply_events("s1", [op("c", 4, Cell.RUNNING, stale=False)]) == ApplyResult(
        applied=1
    )
    assert cell() == ("running", True)
    assert mirror.apply_events("s1", [op("c", 2, Cell.IDLE, stale=False)]) == ApplyResult(
        ignored_older=1
    )
    assert cell() == ("running", True)


def test_a_start_resets_only_fields_set_before_it(session: Session) -> None:
    mirror.apply_events("s1", [op("a", 1, Cell.RUNNING, stale=True), op("b", 12, Cell.QUEUED)])
    mirror.apply_events("s1", [op("a", 11, None, stale=True)])
    assert mirror.kernel_started("s1", at=at(10)) == ApplyResult(applied=1)
    # a: status from before the start is reset, its stale flag (t=11) is of the new process.
    assert {c.cell_id: (c.status, c.stale) for c in CellStatus.objects.all()} == {
        "a": ("idle", True),
        "b": ("queued", False),
    }
    assert mirror.apply_events("s1", [op("a", 9, Cell.RUNNING)]) == ApplyResult(ignored_older=1)


def test_an_op_with_the_starts_timestamp_applies_in_either_order(
    users: dict[str, User],
) -> None:
    for name, batches in {
        "start first": [[KernelStarted(at(1))], [op("c", 1, Cell.QUEUED)]],
        "op first": [[op("c", 1, Cell.QUEUED)], [KernelStarted(at(1))]],
        "one batch": [[op("c", 1, Cell.QUEUED), KernelStarted(at(1))]],
    }.items():
        session = mirror.register_session(name, owner=users["owner"], notebook="nb.py")
        for batch in batches:
            mirror.apply_events(name, batch)
        assert CellStatus.objects.get(session=session).status == "queued", name
        assert state_of(session) == SessionState.RUNNING, name


# --- equal timestamps --------------------------------------------------------------------------

# The value that wins a tie, for each pair of values at the same microsecond.
STATUS_TIES = [
    (Cell.QUEUED, Cell.RUNNING, Cell.RUNNING),
    (Cell.QUEUED, Cell.IDLE, Cell.IDLE),
    (Cell.RUNNING, Cell.IDLE, Cell.IDLE),
    (Cell.RUNNING, Cell.DISABLED_TRANSITIVELY, Cell.DISABLED_TRANSITIVELY),
    (Cell.DISABLED_TRANSITIVELY, Cell.IDLE, Cell.IDLE),
    (Cell.QUEUED, Cell.DISABLED_TRANSITIVELY, Cell.DISABLED_TRANSITIVELY),
]


@pytest.mark.parametrize(("first", "second", "winner"), STATUS_TIES)
def test_equal_timestamps_of_a_status_are_decided_by_rank(
    users: dict[str, User], first: str, second: str, winner: str
) -> None:
    for name, (a, b) in {"ab": (first, second), "ba": (second, first)}.items():
        mirror.register_session(name, owner=users["owner"], notebook="nb.py")
        mirror.apply_events(name, [op("c", 1.000001, a)])
        mirror.apply_events(name, [op("c", 1.000001, b)])
        assert CellStatus.objects.get(session__session_id=name).status == winner, name


def test_equal_timestamps_of_a_stale_flag_clear_it(users: dict[str, User]) -> None:
    for name, order in {"ab": (True, False), "ba": (False, True)}.items():
        mirror.register_session(name, owner=users["owner"], notebook="nb.py")
        for stale in order:
            mirror.apply_events(name, [op("c", 1, None, stale=stale)])
        assert CellStatus.objects.get(session__session_id=name).stale is False, name


def test_equal_timestamps_of_a_start_and_a_stop_leave_it_stopped(users: dict[str, User]) -> None:
    for name, order in {
        "ab": (KernelStarted, KernelStopped),
        "ba": (KernelStopped, KernelStarted),
    }.items():
        mirror.register_session(name, owner=users["owner"], notebook="nb.py")
        for kind in order:
            mirror.apply_events(name, [kind(at(1))])
        kernel = KernelProcess.objects.get(session__session_id=name)
        assert (kernel.state, kernel.started_at, kernel.stopped_at) == ("stopped", at(1), at(1))


def test_exit_reports_of_one_process_are_ordered_per_field(session: Session) -> None:
    mirror.apply_events(
        "s1",
        [
            KernelStarted(at(0)),
            KernelStopped(at(3), cause="session closed"),
            KernelStopped(at(2), exit_code=-9, cause="killed"),
            KernelStopped(at(1), exit_code=1),
        ],
    )
    kernel = KernelProcess.objects.get(session=session)
    assert (kernel.stopped_at, kernel.exit_code, kernel.exit_cause) == (
        at(3),
        -9,
        "session closed",
    )
    mirror.kernel_started("s1", at=at(4))  # a new process: the report was the old one's
    kernel = KernelProcess.objects.get(session=session)
    assert (kernel.state, kernel.stopped_at, kernel.exit_code, kernel.exit_cause) == (
        "running",
        None,
        None,
        "",
    )


def test_upsert_refuses_to_move_a_field_back_in_time(session: Session) -> None:
    """A writer bypassing the session lock (and the write API's checks) still cannot."""
    mirror.apply_events("s1", [op("c", 5, Cell.RUNNING, stale=True)])
    older = CellRow(
        "c", status="idle", status_at=at(4), stale=False, stale_at=at(6), notified_at=at(6)
    )
    upsert_cells(session.pk, [older], using="default")
    row = CellStatus.objects.get()
    assert (row.status, row.status_at, row.stale, row.stale_at, row.notified_at) == (
        "running",
        at(5),
        False,
        at(6),
        at(6),
    )
    tie = CellRow(
        "c", status="queued", status_at=at(5), stale=True, stale_at=at(6), notified_at=at(5)
    )
    upsert_cells(session.pk, [tie], using="default")  # both lose their ties
    row = CellStatus.objects.get()
    assert (row.status, row.stale, row.notified_at) == ("running", False, at(6))


# --- state rule --------------------------------------------------------------------------------


def test_a_stale_queued_cell_makes_the_kernel_busy(session: Session) -> None:
    mirror.apply_events("s1", [KernelStarted(at(0)), op("c", 1, Cell.QUEUED, stale=True)])
    assert state_of(session) == SessionState.RUNNING
    mirror.apply_events("s1", [op("c", 2, Cell.DISABLED_TRANSITIVELY)])
    assert state_of(session) == SessionState.IDLE


# --- clock guard -------------------------------------------------------------------------------


def test_python_api_refuses_a_timestamp_too_far_ahead(session: Session) -> None:
    ahead = timezone.now() + timedelta(seconds=400)
    with pytest.raises(mirror.ClockSkewError, match="event 2 is stamped") as caught:
        mirror.apply_events("s1", [KernelStarted(at(0)), op("c", 0), KernelStopped(ahead)])
    assert isinstance(caught.value, ValueError)
    assert (caught.value.index, caught.value.timestamp) == (2, ahead)  # as given, not sorted
    assert not KernelProcess.objects.exists()
    assert not CellStatus.objects.exists()


def test_a_small_skew_is_accepted(session: Session) -> None:
    assert mirror.kernel_started("s1", at=timezone.now() + timedelta(seconds=250)) == ApplyResult(
        applied=1
    )


@override_settings(KERNEL_STATUS_MAX_CLOCK_SKEW=None)
def test_the_clock_guard_can_be_turned_off(session: Session) -> None:
    far = datetime(9999, 12, 30, tzinfo=UTC)
    assert mirror.kernel_started("s1", at=far) == ApplyResult(applied=1)
    assert KernelProcess.objects.get(session=session).started_at == far


@override_settings(KERNEL_STATUS_MAX_CLOCK_SKEW=5)
def test_the_skew_setting_is_read_live(session: Session) -> None:
    with pytest.raises(mirror.ClockSkewError):
        mirror.kernel_heartbeat("s1", at=timezone.now() + timedelta(seconds=10))


def test_http_names_the_item_stamped_too_far_ahead(session: Session, reporter: APIClient) -> None:
    now = time.time()
    body = {
        "events": [
            {"op": "kernel-started", "data": {"timestamp": now - 5}},
            cell_op("c", "running", now - 4),
            {"op": "kernel-stopped", "data": {"timestamp": 253402300799}},  # 9999-12-31
        ]
    }
    response = post(reporter, body)
    assert response.status_code == 400
    error = response.json()["errors"]
    assert [(e["index"], e["field"]) for e in error] == [(2, "data.timestamp")]
    assert "KERNEL_STATUS_MAX_CLOCK_SKEW" in error[0]["message"]
    assert response.json()["detail"].startswith("Invalid event batch: events[2].data.timestamp: ")
    assert not KernelProcess.objects.exists()
    assert not CellStatus.objects.exists()


# --- reset ---------------------------------------------------------------------------------------


FAR = timezone.now() + timedelta(days=3650)


def pinned(session: Session) -> None:
    """A session pinned by an event from far ahead, written before the clock guard existed."""
    with override_settings(KERNEL_STATUS_MAX_CLOCK_SKEW=None):
        mirror.apply_events(session.session_id, [KernelStarted(at(0)), op("c", 1, Cell.RUNNING)])
        mirror.apply_events(session.session_id, [op("c", 0, Cell.RUNNING, stale=True)])
        mirror.apply_events(session.session_id, [CellNotification("c", FAR, Cell.RUNNING)])
    assert state_of(session) == SessionState.RUNNING
    mirror.apply_events(session.session_id, [op("c", 2, Cell.IDLE)])
    assert state_of(session) == SessionState.RUNNING  # stuck
    assert activity_of(session) == FAR  # pinned too: it only moves forward


def activity_of(session: Session) -> datetime | None:
    return Session.objects.get(pk=session.pk).last_activity


def test_reset_session_forgets_the_mirror_until_the_next_start(session: Session) -> None:
    pinned(session)
    assert mirror.reset_session("s1") is True
    assert not CellStatus.objects.exists()
    assert not KernelProcess.objects.exists()
    assert Session.objects.filter(session_id="s1", notebook="nb.py").exists()
    assert state_of(session) == SessionState.STOPPED
    assert activity_of(session) is None
    mirror.apply_events("s1", [KernelStarted(at(3)), op("c", 4, Cell.QUEUED)])
    assert state_of(session) == SessionState.RUNNING
    assert activity_of(session) == at(4)
    assert mirror.reset_session("nope") is False
    assert mirror.reset_session("") is False


def test_reset_command(session: Session, users: dict[str, User]) -> None:
    pinned(session)
    other = mirror.register_session("s2", owner=users["owner"], notebook="nb.py")
    mirror.apply_events("s2", [KernelStarted(at(0)), op("c", 1, Cell.RUNNING)])
    out = StringIO()
    call_command("kernel_status_reset", "s1", stdout=out)
    assert out.getvalue() == "Reset the mirror of session 's1'.\n"
    assert not CellStatus.objects.filter(session=session).exists()
    assert not KernelProcess.objects.filter(session=session).exists()
    assert activity_of(session) is None
    assert state_of(other) == SessionState.RUNNING  # untouched
    assert activity_of(other) == at(1)


def test_reset_command_refuses_unknown_ids_and_changes_nothing(session: Session) -> None:
    pinned(session)
    with pytest.raises(CommandError, match="No session with id 'nope'") as caught:
        call_command("kernel_status_reset", "nope", "s1", stdout=StringIO())
    assert caught.value.returncode == 1
    assert CellStatus.objects.filter(session=session).exists()
    assert KernelProcess.objects.get(session=session).state == ProcessState.RUNNING
    assert activity_of(session) == FAR


def test_admin_action_resets_the_selected_sessions(
    session: Session, users: dict[str, User], client: Client
) -> None:
    pinned(session)
    other = mirror.register_session("s2", owner=users["owner"], notebook="nb.py")
    mirror.apply_events("s2", [KernelStarted(at(0)), op("c", 1, Cell.RUNNING)])
    url = reverse("admin:kernel_status_session_changelist")
    body = {"action": "reset_mirror", "_selected_action": [session.pk]}

    viewer = User.objects.create_user("viewer-only", is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_session", content_type__app_label="kernel_status")
    )
    client.force_login(viewer)
    client.post(url, body)
    assert KernelProcess.objects.filter(session=session).exists()  # needs change permission
    assert activity_of(session) == FAR

    client.force_login(users["superuser"])
    response = client.post(url, body, follow=True)
    assert response.status_code == 200
    assert "Reset the mirror of 1 session." in response.content.decode()
    assert not CellStatus.objects.filter(session=session).exists()
    assert not KernelProcess.objects.filter(session=session).exists()
    assert state_of(session) == SessionState.STOPPED
    assert activity_of(session) is None
    assert state_of(other) == SessionState.RUNNING
    assert activity_of(other) == at(1)
