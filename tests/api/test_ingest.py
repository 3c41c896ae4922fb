"""POST /api/kernel/events: kernel hosts report marimo frames and lifecycle events."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from kernel_status.models import CellStatus, KernelProcess, Session
from tests.utils import EVENTS_URL, cell_op, get_status, post, post_text

OPS_MESSAGE = 'Must be one of: "cell-op", "kernel-started", "kernel-heartbeat", "kernel-stopped".'
NULL_MESSAGE = "This field may not be null."
NOW = time.time()  # only for tests that do not depend on the liveness window


def stored_cells() -> dict[str, str]:
    return dict(CellStatus.objects.values_list("cell_id", "status"))


def test_frames_and_lifecycle_are_applied(
    session: Session, reporter: APIClient, users: dict[str, User]
) -> None:
    now = time.time()  # not NOW: the state depends on the 60 s liveness window
    body = {
        "events": [
            {"op": "kernel-started", "data": {"timestamp": now - 5}},
            cell_op("a", "queued", now - 4),
            cell_op("a", "running", now - 3),
            {"op": "kernel-heartbeat", "data": {"timestamp": now - 2}},
        ]
    }
    response = post(reporter, body)
    assert response.status_code == 200
    assert response.json() == {"applied": 4, "ignored_older": 0}
    assert response["Cache-Control"] == "no-store"
    assert stored_cells() == {"a": "running"}
    owner = APIClient()
    owner.force_authenticate(users["owner"])
    assert get_status(owner, "s1").json()["state"] == "running"

    response = post(
        reporter,
        {"events": [{"op": "kernel-stopped", "data": {"exit_code": -9, "cause": "killed"}}]},
    )
    assert response.json() == {"applied": 1, "ignored_older": 0}
    kernel = KernelProcess.objects.get(session=session)
    assert (kernel.state, kernel.exit_code, kernel.exit_cause) == ("stopped", -9, "killed")
    assert get_status(owner, "s1").json()["state"] == "stopped"


def test_same_batch_twice_is_ignored_the_second_time(session: Session, reporter: APIClient) -> None:
    body = {"events": [cell_op("a", "running", NOW), cell_op("b", "idle", NOW)]}
    assert post(reporter, body).json() == {"applied": 2, "ignored_older": 0}
    assert post(reporter, body).json() == {"applied": 0, "ignored_older": 2}
    assert stored_cells() == {"a": "running", "b": "idle"}


def mirror_snapshot(session: Session) -> dict[str, Any]:
    """Every mirrored row of the session, as stored."""
    return {
        "session": Session.objects.filter(pk=session.pk).values().get(),
        "kernel": list(KernelProcess.objects.filter(session=session).values()),
        "cells": list(CellStatus.objects.filter(session=session).order_by("cell_id").values()),
    }


def test_empty_batch_is_fine_and_changes_nothing(session: Session, reporter: APIClient) -> None:
    started = {"op": "kernel-started", "data": {"timestamp": NOW - 1}}
    assert post(reporter, {"events": [started, cell_op("a", "running", NOW)]}).status_code == 200
    before = mirror_snapshot(session)
    with CaptureQueriesContext(connection) as queries:
        response = post(reporter, {"events": []})
    assert response.status_code == 200
    assert response.json() == {"applied": 0, "ignored_older": 0}
    assert mirror_snapshot(session) == before
    writes = [
        q["sql"]
        for q in queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    assert writes == []


# --- authorization ----------------------------------------------------------------------------


def test_anonymous_gets_401(session: Session) -> None:
    response = post(APIClient(), {"events": []})
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("username", ["owner", "editor", "viewer", "stranger"])
def test_session_access_does_not_allow_reporting(
    session: Session, users: dict[str, User], username: str
) -> None:
    client = APIClient()
    client.force_authenticate(users[username])
    response = post(client, {"events": [cell_op("a", "running", NOW)]})
    assert response.status_code == 403
    assert response.json() == {
        "detail": "The kernel_status.report_kernel_events permission is required."
    }
    assert not CellStatus.objects.exists()


def test_unauthorized_caller_cannot_probe_sessions(
    session: Session, users: dict[str, User]
) -> None:
    client = APIClient()
    client.force_authenticate(users["editor"])
    existing = post(client, {"events": []}, session_id="s1")
    missing = post(client, {"events": []}, session_id="nope")
    assert existing.status_code == missing.status_code == 403
    assert existing.content == missing.content
    assert dict(existing.headers) == dict(missing.headers)


def test_inactive_account_with_the_permission_is_refused(
    session: Session, users: dict[str, User]
) -> None:
    account = users["inactive"]
    account.user_permissions.add(Permission.objects.get(codename="report_kernel_events"))
    client = APIClient()
    client.force_authenticate(User.objects.get(pk=account.pk))
    assert post(client, {"events": []}).status_code == 403


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=200)
def test_body_over_the_upload_limit_gets_413(session: Session, reporter: APIClient) -> None:
    response = post(reporter, {"events": [cell_op("a", "idle", NOW)] * 3})
    assert response.status_code == 413
    assert response.json()["detail"].endswith("(DATA_UPLOAD_MAX_MEMORY_SIZE).")
    assert not CellStatus.objects.exists()


def test_database_trouble_is_a_json_503(
    session: Session, reporter: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("database is locked")

    monkeypatch.setattr("kernel_status.mirror.ingest.apply_events", locked)
    response = post(reporter, {"events": [cell_op("a", "idle", NOW)]})
    assert response.status_code == 503
    assert response.json() == {"detail": "The database is busy; retry shortly."}
    assert response["Retry-After"] == "1"
    assert response["Cache-Control"] == "no-store"


def test_permission_granted_directly_works(session: Session, users: dict[str, User]) -> None:
    account = users["stranger"]
    account.user_permissions.add(Permission.objects.get(codename="report_kernel_events"))
    client = APIClient()
    client.force_authenticate(User.objects.get(pk=account.pk))
    assert post(client, {"events": []}).status_code == 200


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "field", "message"),
    [
        ("nope", "", "Must be a JSON object."),
        ({"data": {}}, "op", OPS_MESSAGE),
        ({"op": 7, "data": {}}, "op", OPS_MESSAGE),
        ({"op": {}, "data": {}}, "op", OPS_MESSAGE),  # was a 500: a dict is not hashable
        # Other marimo frames are not mirrored: a host sends only these four ops.
        ({"op": "variables", "data": {"variables": []}}, "op", OPS_MESSAGE),
        ({"op": "cell-op"}, "data", "This field is required."),
        (
            {"op": "cell-op", "data": "x"},
            "data",
            "Invalid data. Expected a dictionary, but got str.",
        ),
        (cell_op(" \u00a0", "idle", NOW), "data.cell_id", "Cell id is empty."),
        (cell_op(7, "idle", NOW), "data.cell_id", "Not a valid string."),
        (cell_op("a", "done", NOW), "data.status", '"done" is not a valid choice.'),
        (cell_op("", "idle", NOW), "data.cell_id", "This field may not be blank."),
        (cell_op("a\x01", "idle", NOW), "data.cell_id", "Cell id contains control characters."),
        (
            cell_op("\ud800", "idle", NOW),
            "data.cell_id",
            "Cell id contains a lone surrogate, which is not valid Unicode.",
        ),
        (cell_op("a", "idle", "yesterday"), "data.timestamp", "A valid number is required."),
        (
            cell_op("a", "idle", -1),
            "data.timestamp",
            "Ensure this value is greater than or equal to 0.",
        ),
        ({"op": "cell-op", "data": {"cell_id": "a"}}, "data.timestamp", "This field is required."),
        (cell_op("a", "idle", True), "data.timestamp", "A valid number is required."),
        (cell_op("a", "idle", "1e9"), "data.timestamp", "A valid number is required."),
        (cell_op("a", "x" * 129, NOW), "data.status", '"' + "x" * 129 + '" is not a valid choice.'),
        (
            cell_op("a" * 129, "idle", NOW),
            "data.cell_id",
            "Cell id is longer than 128 characters.",
        ),
        ({"op": "kernel-started", "data": {}}, "data.timestamp", "This field is required."),
        (
            cell_op("a", "idle", NOW, stale_inputs="false"),
            "data.stale_inputs",
            "Must be a valid boolean.",
        ),
        (
            cell_op("a", "idle", NOW, stale_inputs="maybe"),
            "data.stale_inputs",
            "Must be a valid boolean.",
        ),
        (
            {"op": "kernel-stopped", "data": {"exit_code": "x"}},
            "data.exit_code",
            "A valid integer is required.",
        ),
        # Strings only: 0 would otherwise be stored as "0".
        ({"op": "kernel-stopped", "data": {"cause": 0}}, "data.cause", "Not a valid string."),
        ({"op": "kernel-stopped", "data": {"cause": None}}, "data.cause", NULL_MESSAGE),
    ],
)
def test_invalid_item_is_named_and_nothing_is_applied(
    session: Session, reporter: APIClient, item: Any, field: str, message: str
) -> None:
    body = {"events": [cell_op("ok", "running", NOW), {"op": "kernel-heartbeat", "data": {}}, item]}
    response = post_text(reporter, json.dumps(body))
    assert response.status_code == 400
    where = f"events[2].{field}" if field else "events[2]"
    assert response.json() == {
        "detail": f"Invalid event batch: {where}: {message}",
        "errors": [{"index": 2, "field": field, "message": message}],
    }
    assert not CellStatus.objects.exists()
    assert not KernelProcess.objects.exists()


def test_every_invalid_item_is_listed(session: Session, reporter: APIClient) -> None:
    body = {"events": [cell_op("a", "done", NOW), cell_op("b", "idle", NOW), 7]}
    response = post(reporter, body)
    assert response.status_code == 400
    assert response.json()["detail"].endswith("(and 1 more)")
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [
        (0, "data.status"),
        (2, ""),
    ]


@pytest.mark.parametrize(
    "body",
    [[], {"events": {}}, {"evts": []}, "events"],
    ids=["list", "events-not-list", "no-events", "string"],
)
def test_body_of_wrong_shape_gets_400(session: Session, reporter: APIClient, body: Any) -> None:
    response = post(reporter, body)
    assert response.status_code == 400
    assert response.json() == {"detail": 'The body must be a JSON object with an "events" list.'}


@pytest.mark.parametrize("raw", [b"{not json", b'{"events": [NaN]}'])
def test_malformed_json_gets_400(session: Session, reporter: APIClient, raw: bytes) -> None:
    response = reporter.post(
        EVENTS_URL, raw, content_type="application/json", headers={"Marimo-Session-Id": "s1"}
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"].startswith("JSON parse error")


def test_non_json_body_gets_415(session: Session, reporter: APIClient) -> None:
    response = reporter.post(
        EVENTS_URL, "events", content_type="text/plain", headers={"Marimo-Session-Id": "s1"}
    )
    assert response.status_code == 415
    assert response.json() == {"detail": 'Unsupported media type "text/plain" in request.'}


@override_settings(KERNEL_STATUS_MAX_BATCH_SIZE=3)
def test_batch_over_the_limit_gets_413_and_changes_nothing(
    session: Session, reporter: APIClient
) -> None:
    ok = post(reporter, {"events": [cell_op(c, "idle", NOW) for c in "abc"]})
    assert ok.status_code == 200
    response = post(reporter, {"events": [cell_op(c, "running", NOW + 1) for c in "abcd"]})
    assert response.status_code == 413
    assert response.json() == {
        "detail": "The batch has 4 events; at most 3 are accepted per request."
    }
    assert stored_cells() == {"a": "idle", "b": "idle", "c": "idle"}


def test_unknown_session_gets_404(session: Session, reporter: APIClient) -> None:
    response = post(reporter, {"events": [cell_op("a", "idle", NOW)]}, session_id="nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "Session not found."}
    assert not CellStatus.objects.exists()


@pytest.mark.parametrize("value", [None, "", "x" * 129, "a\x00b", "\ud800"])
def test_bad_header_gets_400(session: Session, reporter: APIClient, value: str | None) -> None:
    response = post(reporter, {"events": []}, session_id=value)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("The Marimo-Session-Id header ")


def test_head_gets_405(session: Session, reporter: APIClient) -> None:
    response = reporter.head(EVENTS_URL, headers={"Marimo-Session-Id": "s1"})
    assert (response.status_code, response["Allow"], response.content) == (405, "POST", b"")


def test_get_gets_405(session: Session, reporter: APIClient) -> None:
    response = reporter.get(EVENTS_URL, headers={"Marimo-Session-Id": "s1"})
    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "GET" not allowed.'}


# --- cost ----------------------------------------------------------------------------------------


def test_query_count_does_not_grow_with_the_batch(session: Session, reporter: APIClient) -> None:
    def count(size: int, t: float) -> int:
        body = {
            "events": [
                {"op": "kernel-started", "data": {"timestamp": t}},
                *(cell_op(f"c{i}", "running", t + 1) for i in range(size)),
            ]
        }
        with CaptureQueriesContext(connection) as context:
            response = post(reporter, body)
        assert response.json()["applied"] == size + 1
        return len(context.captured_queries)

    count(1, NOW - 200)  # warm-up: the first request also loads the account's permissions
    assert count(1, NOW - 100) == count(999, NOW - 50)
    assert stored_cells()["c998"] == "running"


def test_heartbeat_without_timestamp_is_stamped_on_arrival(
    session: Session, reporter: APIClient
) -> None:
    now = time.time()
    post(reporter, {"events": [{"op": "kernel-started", "data": {"timestamp": now - 30}}]})
    post(reporter, {"events": [{"op": "kernel-heartbeat", "data": {}}]})
    heartbeat = KernelProcess.objects.get(session=session).last_heartbeat_at
    assert heartbeat is not None
    assert heartbeat.timestamp() >= now


def test_cell_ops_sent_with_their_kernel_start_are_kept(
    session: Session, reporter: APIClient, users: dict[str, User]
) -> None:
    # marimo stamps cell-ops itself; the start is stamped by the host, before them.
    now = time.time()
    body = {
        "events": [
            cell_op("a", "running", now - 1),
            {"op": "kernel-started", "data": {"timestamp": now - 2}},
        ]
    }
    assert post(reporter, body).json() == {"applied": 2, "ignored_older": 0}
    owner = APIClient()
    owner.force_authenticate(users["owner"])
    assert get_status(owner, "s1").json()["state"] == "running"
