"""Conditional status reads: ETag, If-None-Match, 304, and who may get one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from kernel_status.api.conditional import body_etag, client_has_current
from kernel_status.choices import CellRuntimeState as Cell
from kernel_status.choices import ProcessState
from kernel_status.models import CellStatus, Session
from tests.utils import MakeSession, cells, get_status

REVALIDATE = "private, no-cache"

# One setup per derived state.
STATES = {
    "running": {"cells": cells(Cell.RUNNING)},
    "idle": {"cells": cells(Cell.IDLE)},
    "stopped": {"kernel": ProcessState.STOPPED},
}


def assert_full_answer(response: Any, body: dict[str, Any]) -> str:
    assert response.status_code == 200
    assert response.json() == body
    assert response["ETag"] == body_etag(response.content)
    assert response["Cache-Control"] == REVALIDATE
    assert "Vary" not in response  # the tag depends on the body alone
    etag: str = response["ETag"]
    return etag


def assert_not_modified(response: Any, etag: str) -> None:
    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag
    assert response["Cache-Control"] == REVALIDATE
    assert "Content-Type" not in response


@pytest.mark.parametrize("state", STATES)
def test_304_while_nothing_changed_for_each_state(
    make_session: MakeSession, token_client: Callable[[str], APIClient], state: str
) -> None:
    session = make_session(**STATES[state])  # type: ignore[arg-type]
    client = token_client("editor")
    etag = assert_full_answer(
        get_status(client, session.session_id), {"state": state, "last_activity": None}
    )
    for header in [etag, f"W/{etag}", f'"other", {etag}', "*"]:
        response = get_status(client, session.session_id, HTTP_IF_NONE_MATCH=header)
        assert_not_modified(response, etag)


@pytest.mark.parametrize("state", STATES)
def test_a_stale_tag_gets_the_full_answer(
    make_session: MakeSession, token_client: Callable[[str], APIClient], state: str
) -> None:
    session = make_session(**STATES[state])  # type: ignore[arg-type]
    client = token_client("editor")
    etag = assert_full_answer(
        get_status(client, session.session_id), {"state": state, "last_activity": None}
    )
    response = get_status(client, session.session_id, HTTP_IF_NONE_MATCH='"not-the-tag"')
    assert assert_full_answer(response, {"state": state, "last_activity": None}) == etag


def test_the_tag_changes_exactly_when_the_body_changes(
    make_session: MakeSession, token_client: Callable[[str], APIClient]
) -> None:
    session = make_session(cells=cells(Cell.IDLE))
    client = token_client("editor")
    seen: dict[str, bytes] = {}

    def read() -> str:
        response = get_status(client, session.session_id)
        etag = assert_full_answer(response, response.json())
        assert seen.setdefault(etag, response.content) == response.content
        return etag

    idle = read()
    assert read() == idle  # nothing changed
    CellStatus.objects.filter(session=session).update(status=Cell.RUNNING)
    running = read()
    assert running != idle
    assert get_status(client, session.session_id, HTTP_IF_NONE_MATCH=idle).status_code == 200
    Session.objects.filter(pk=session.pk).update(
        last_activity=datetime(2026, 1, 5, 9, 30, 12, 250000, tzinfo=UTC)
    )
    active = read()
    assert active not in {idle, running}
    response = get_status(client, session.session_id)
    assert response.json() == {"state": "running", "last_activity": "2026-01-05T09:30:12.250000Z"}
    CellStatus.objects.filter(session=session).update(status=Cell.IDLE)
    assert read() not in {idle, running, active}
    assert len(seen) == 4


@pytest.mark.parametrize(
    ("username", "status"), [("viewer", 403), ("stranger", 404), ("inactive", 401)]
)
@pytest.mark.parametrize("header", ["tag", "*"])
def test_no_304_without_access(
    make_session: MakeSession,
    token_client: Callable[[str], APIClient],
    username: str,
    status: int,
    header: str,
) -> None:
    session = make_session(cells=cells(Cell.RUNNING))
    etag = assert_full_answer(
        get_status(token_client("owner"), session.session_id),
        {"state": "running", "last_activity": None},
    )
    if_none_match = etag if header == "tag" else "*"
    client = token_client(username)
    response = get_status(client, session.session_id, HTTP_IF_NONE_MATCH=if_none_match)
    assert response.status_code == status
    assert response["Cache-Control"] == "no-store"
    assert "ETag" not in response
    if username == "stranger":  # the same answer as for a session that does not exist
        missing = get_status(client, "no-such", HTTP_IF_NONE_MATCH=if_none_match)
        assert (missing.status_code, missing.content) == (404, response.content)


def test_no_304_for_anonymous_callers(make_session: MakeSession) -> None:
    session = make_session()
    response = get_status(APIClient(), session.session_id, HTTP_IF_NONE_MATCH="*")
    assert response.status_code == 401
    assert "ETag" not in response


def test_a_304_costs_the_same_queries_as_a_200(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session(cells=cells(Cell.QUEUED))
    client = APIClient()
    client.force_authenticate(users["editor"])
    with CaptureQueriesContext(connection) as full:
        etag = get_status(client, session.session_id)["ETag"]
    with CaptureQueriesContext(connection) as conditional:
        response = get_status(client, session.session_id, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304
    assert len(full.captured_queries) == len(conditional.captured_queries) == 1


def test_sessions_with_equal_bodies_share_a_tag(
    make_session: MakeSession, token_client: Callable[[str], APIClient]
) -> None:
    # The tag depends on the body alone, so a 304 can only confirm bytes the caller has.
    client = token_client("editor")
    first = get_status(client, make_session(cells=cells(Cell.IDLE)).session_id)
    second = get_status(client, make_session(cells=cells(Cell.IDLE)).session_id)
    assert first.content == second.content
    assert first["ETag"] == second["ETag"]


@pytest.mark.parametrize(
    ("header", "current"),
    [
        (None, False),
        ("", False),
        ('"abc"', True),
        ('W/"abc"', True),
        ('"x", "abc"', True),
        ("*", True),
        ('"abcd"', False),
        ("garbage", False),
    ],
)
def test_client_has_current(header: str | None, current: bool) -> None:
    assert client_has_current(header, '"abc"') is current
