"""The state rules, through the endpoint and through Session.objects.with_state()."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from kernel_status.choices import CellRuntimeState as Cell
from kernel_status.choices import ProcessState, SessionState
from kernel_status.models import Session
from tests.utils import MakeSession, cells, get_status

IDLE_CELL_MIXES = {
    "no cells": [],
    "idle": cells(Cell.IDLE, Cell.IDLE),
    "disabled-transitively": cells(Cell.DISABLED_TRANSITIVELY),
    "stale disabled-transitively": cells(Cell.DISABLED_TRANSITIVELY, stale=True),
    "idle and stale idle": [*cells(Cell.IDLE), *cells(Cell.IDLE, stale=True)],
}
BUSY_CELL_MIXES = {
    "queued": cells(Cell.QUEUED),
    # marimo's rule: busy whatever the stale flag (it queues a stale cell, then clears it).
    "stale queued": cells(Cell.QUEUED, stale=True),
    "stale running": cells(Cell.RUNNING, stale=True),
    "running": cells(Cell.RUNNING),
    "running among idle": [*cells(Cell.IDLE) * 5, *cells(Cell.RUNNING)],
    "queued among stale and disabled": [
        *cells(Cell.RUNNING, stale=True),
        *cells(Cell.DISABLED_TRANSITIVELY),
        *cells(Cell.QUEUED),
    ],
}


@pytest.fixture
def editor(token_client: Callable[[str], APIClient]) -> APIClient:
    return token_client("editor")


def assert_state(client: APIClient, session: Session, expected: SessionState) -> None:
    response = get_status(client, session.session_id)
    assert response.status_code == 200
    assert response.json() == {"state": expected, "last_activity": None}
    assert Session.objects.with_state().get(pk=session.pk).state == expected


@pytest.mark.parametrize("mix", IDLE_CELL_MIXES.values(), ids=IDLE_CELL_MIXES.keys())
def test_alive_kernel_without_busy_cells_is_idle(
    make_session: MakeSession, editor: APIClient, mix: list[tuple[str, bool]]
) -> None:
    assert_state(editor, make_session(cells=mix), SessionState.IDLE)


@pytest.mark.parametrize("mix", BUSY_CELL_MIXES.values(), ids=BUSY_CELL_MIXES.keys())
def test_alive_kernel_with_a_busy_cell_is_running(
    make_session: MakeSession, editor: APIClient, mix: list[tuple[str, bool]]
) -> None:
    assert_state(editor, make_session(cells=mix), SessionState.RUNNING)


@pytest.mark.parametrize("kernel", [ProcessState.NOT_STARTED, ProcessState.STOPPED])
def test_kernel_not_running_is_stopped_even_with_busy_cells(
    make_session: MakeSession, editor: APIClient, kernel: ProcessState
) -> None:
    session = make_session(kernel=kernel, cells=cells(Cell.RUNNING, Cell.QUEUED))
    assert_state(editor, session, SessionState.STOPPED)


def test_session_without_kernel_process_is_stopped(
    make_session: MakeSession, editor: APIClient
) -> None:
    assert_state(editor, make_session(kernel=None), SessionState.STOPPED)


def test_kernel_silent_past_the_liveness_window_is_stopped(
    make_session: MakeSession, editor: APIClient
) -> None:
    # The default window is 60 seconds.
    fresh = make_session(heartbeat_age=timedelta(seconds=50), cells=cells(Cell.RUNNING))
    silent = make_session(heartbeat_age=timedelta(seconds=70), cells=cells(Cell.RUNNING))
    assert_state(editor, fresh, SessionState.RUNNING)
    assert_state(editor, silent, SessionState.STOPPED)


def test_started_kernel_without_heartbeat_is_judged_by_its_start(
    make_session: MakeSession, editor: APIClient
) -> None:
    session = make_session(heartbeat_age=timedelta(seconds=10))
    session.kernel.last_heartbeat_at = None
    session.kernel.save()
    assert_state(editor, session, SessionState.IDLE)
    session.kernel.started_at = timezone.now() - timedelta(minutes=5)
    session.kernel.save()
    assert_state(editor, session, SessionState.STOPPED)


def test_running_kernel_never_heard_from_is_stopped(
    make_session: MakeSession, editor: APIClient
) -> None:
    assert_state(editor, make_session(heartbeat_age=None), SessionState.STOPPED)


@pytest.mark.parametrize("window", [10, 10.5, timedelta(seconds=10)])
def test_liveness_window_setting_is_read_live(
    make_session: MakeSession, editor: APIClient, window: object
) -> None:
    session = make_session(heartbeat_age=timedelta(seconds=30))
    assert_state(editor, session, SessionState.IDLE)
    with override_settings(KERNEL_STATUS_LIVENESS_WINDOW=window):
        assert_state(editor, session, SessionState.STOPPED)


@override_settings(KERNEL_STATUS_LIVENESS_WINDOW=None)
def test_liveness_window_can_be_turned_off(make_session: MakeSession, editor: APIClient) -> None:
    session = make_session(heartbeat_age=timedelta(days=30), cells=cells(Cell.QUEUED))
    assert_state(editor, session, SessionState.RUNNING)
    assert_state(editor, make_session(heartbeat_age=None), SessionState.IDLE)


def test_with_state_derives_every_session_in_one_query(
    make_session: MakeSession, django_assert_num_queries: object
) -> None:
    expected = {
        make_session(cells=cells(Cell.RUNNING)).pk: SessionState.RUNNING,
        make_session(cells=cells(Cell.IDLE)).pk: SessionState.IDLE,
        make_session(kernel=ProcessState.STOPPED).pk: SessionState.STOPPED,
        make_session(kernel=None).pk: SessionState.STOPPED,
    }
    with django_assert_num_queries(1):  # type: ignore[operator]
        derived = dict(Session.objects.with_state().values_list("pk", "state"))
    assert derived == expected
    running = Session.objects.with_state().filter(state=SessionState.RUNNING)
    assert [s.pk for s in running] == [pk for pk, s in expected.items() if s == "running"]
