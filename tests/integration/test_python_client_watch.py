"""The Python client's watching helpers live against an ASGI server (uvicorn in another
process, on the test database seeded with the demo data): `wait_for_change`, the
wait-until-idle helpers on top of it, and `follow_sessions` over the change stream. Under
WSGI (pytest-django's live server) they fall back, or refuse, as documented.

No timed assertions: the waits are long, so only an early answer can pass quickly.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.management import call_command
from kernel_status_client import (
    AuthenticatedClient,
    KernelStatusRequestError,
    StreamError,
    StreamEvent,
    WaitTimeoutError,
    async_follow_sessions,
    async_wait_for_change,
    async_wait_until_idle,
    follow_sessions,
    wait_for_change,
    wait_until_idle,
)
from kernel_status_client.api.kernel import kernel_status
from kernel_status_client.models import KernelSessionsStreamState, KernelStatusStateEnum
from pytest_django.live_server_helper import LiveServer

from tests.utils import EVENTS_URL, uvicorn_server

pytestmark = [
    pytest.mark.skipif(
        bool(os.environ.get("DATABASE_URL")),
        reason="the generated clients are tested on the SQLite pass only",
    ),
    pytest.mark.django_db(transaction=True),
]

LONG_WAIT = 50
# Event timestamps only move forward: an event older than the stored one is ignored.
_last_stamp = [0.0]


@pytest.fixture
def demo() -> dict[str, Any]:
    out = io.StringIO()
    call_command("kernel_status_demo", "--json", stdout=out)
    seeded: dict[str, Any] = json.loads(out.getvalue())
    return seeded


@pytest.fixture
def asgi(tmp_path: Path, demo: dict[str, Any]) -> Iterator[str]:
    log = tmp_path / "uvicorn.log"
    with uvicorn_server(log=log) as (url, _):
        yield url
    print(log.read_text()[-5000:])  # shown when the test fails


def client(base_url: str, token: str, **httpx_args: Any) -> AuthenticatedClient:
    return AuthenticatedClient(
        base_url=base_url, token=token, prefix="Token", httpx_args=httpx_args
    )


def report(base_url: str, demo: dict[str, Any], status: str) -> None:
    """As the demo's reporter: the running session's busy cells are now ``status``."""
    cells = ["train", "report"] if status == "idle" else ["train"]
    stamp = _last_stamp[0] = max(time.time() + 1, _last_stamp[0] + 1)
    response = httpx.post(
        base_url + EVENTS_URL,
        headers={
            "Authorization": f"Token {demo['users']['reporter']}",
            "Marimo-Session-Id": demo["sessions"]["running"],
        },
        json={
            "events": [
                {"op": "cell-op", "data": {"cell_id": c, "status": status, "timestamp": stamp}}
                for c in cells
            ]
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == len(cells), response.text


def first_tag(api: AuthenticatedClient, session_id: str) -> str:
    answer = kernel_status.sync_detailed(client=api, marimo_session_id=session_id)
    assert answer.status_code == 200
    return answer.headers["ETag"]


# --- wait_for_change ----------------------------------------------------------------------


def test_wait_for_change_answers_304_with_the_wait_applied(asgi: str, demo: dict[str, Any]) -> None:
    with client(asgi, demo["users"]["editor"]) as api:
        tag = first_tag(api, demo["sessions"]["idle"])
        change = wait_for_change(api, demo["sessions"]["idle"], tag, wait=1)
    assert (change.status, change.etag, change.waited, change.changed) == (None, tag, 1, False)


def test_wait_for_change_wakes_with_the_new_body(asgi: str, demo: dict[str, Any]) -> None:
    running = demo["sessions"]["running"]

    async def scenario() -> Any:
        async with client(asgi, demo["users"]["editor"]) as api:
            first = await kernel_status.asyncio_detailed(client=api, marimo_session_id=running)
            tag = first.headers["ETag"]
            waiting = asyncio.create_task(async_wait_for_change(api, running, tag, wait=LONG_WAIT))
            await asyncio.to_thread(report, asgi, demo, "idle")
            return tag, await waiting

    tag, change = asyncio.run(scenario())
    assert change.changed
    assert change.status.state is KernelStatusStateEnum.IDLE
    assert change.waited == LONG_WAIT
    assert change.etag not in (None, tag)


def test_wait_for_change_raises_the_strangers_404(asgi: str, demo: dict[str, Any]) -> None:
    with (
        client(asgi, demo["users"]["stranger"]) as api,
        pytest.raises(KernelStatusRequestError) as caught,
    ):
        wait_for_change(api, demo["sessions"]["running"], '"x"', wait=LONG_WAIT)
    assert (caught.value.status_code, caught.value.detail) == (404, "Session not found.")


@pytest.mark.parametrize("wait", [0, -1, 1.5, True])
def test_wait_for_change_refuses_a_wait_that_is_not_whole_seconds(wait: Any) -> None:
    with (
        AuthenticatedClient(base_url="http://127.0.0.1:9", token="t") as api,
        pytest.raises(ValueError, match="wait must be a whole number of seconds from 1"),
    ):
        wait_for_change(api, "s", '"x"', wait=wait)


def test_wait_for_change_under_wsgi_answers_at_once_unapplied(
    live_server: LiveServer, demo: dict[str, Any]
) -> None:
    with client(live_server.url, demo["users"]["editor"]) as api:
        tag = first_tag(api, demo["sessions"]["running"])
        change = wait_for_change(api, demo["sessions"]["running"], tag, wait=LONG_WAIT)
    assert (change.status, change.etag, change.waited) == (None, tag, None)


# --- wait_until_idle over blocking reads ----------------------------------------------------


def recorder(sent: list[httpx.Request], answers: list[httpx.Response]) -> dict[str, Any]:
    return {
        "event_hooks": {
            "request": [sent.append],
            "response": [answers.append],
        }
    }


def test_wait_until_idle_makes_one_blocking_read_instead_of_polling(
    asgi: str, demo: dict[str, Any]
) -> None:
    sent: list[httpx.Request] = []
    answers: list[httpx.Response] = []

    def finish_on_second_read(request: httpx.Request) -> None:
        if len(sent) == 2:  # the blocking read is going out: the cells finish
            report(asgi, demo, "idle")

    hooks = recorder(sent, answers)
    hooks["event_hooks"]["request"].append(finish_on_second_read)
    with client(asgi, demo["users"]["editor"], **hooks) as api:
        idle = wait_until_idle(api, demo["sessions"]["running"], timeout=30, interval=0.01)
    assert idle.state is KernelStatusStateEnum.IDLE
    assert [r.headers.get("Prefer") for r in sent] == [None, "wait=29"]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[1].headers["Preference-Applied"] == "wait=29"
    assert sent[1].headers["If-None-Match"] == answers[0].headers["ETag"]


def test_wait_until_idle_times_out_on_held_reads(asgi: str, demo: dict[str, Any]) -> None:
    sent: list[httpx.Request] = []
    answers: list[httpx.Response] = []
    with (
        client(asgi, demo["users"]["editor"], **recorder(sent, answers)) as api,
        pytest.raises(WaitTimeoutError) as caught,
    ):
        wait_until_idle(api, demo["sessions"]["running"], timeout=1.5, interval=0.01)
    assert caught.value.last_state is KernelStatusStateEnum.RUNNING
    first, *held = answers
    # Each read after the first was held for a second (no 10 ms polling): one or two fit.
    assert first.status_code == 200
    assert 1 <= len(held) <= 2, [a.status_code for a in answers]
    assert {(a.status_code, a.headers.get("Preference-Applied")) for a in held} == {(304, "wait=1")}


def test_async_wait_until_idle_over_blocking_reads(asgi: str, demo: dict[str, Any]) -> None:
    answers: list[httpx.Response] = []

    async def record(response: httpx.Response) -> None:
        answers.append(response)

    async def scenario() -> Any:
        api = client(asgi, demo["users"]["editor"], event_hooks={"response": [record]})
        async with api:
            waiting = asyncio.create_task(
                async_wait_until_idle(api, demo["sessions"]["running"], timeout=30)
            )
            await asyncio.to_thread(report, asgi, demo, "idle")
            return await waiting

    assert asyncio.run(scenario()).state is KernelStatusStateEnum.IDLE
    # The first read, and then at most one more: the held read, answered by the change.
    assert 1 <= len(answers) <= 2
    assert all(a.headers.get("Preference-Applied") for a in answers[1:])


# --- follow_sessions ------------------------------------------------------------------------


def until(events: Iterator[StreamEvent], name: str) -> list[StreamEvent]:
    seen = []
    for event in events:
        seen.append(event)
        if event.event == name:
            return seen
    raise AssertionError(f"the stream ended before a {name!r} event: {seen}")


def test_follow_sessions_snapshot_change_and_resume(asgi: str, demo: dict[str, Any]) -> None:
    running = demo["sessions"]["running"]
    with client(asgi, demo["users"]["editor"]) as api:
        events = follow_sessions(api, reconnect=False)
        snapshot = until(events, "ready")
        states = {e.session.session_id: e.session.state.value for e in snapshot[:-1]}
        assert states[running] == "running"
        assert set(states) >= set(demo["sessions"].values())
        assert snapshot[-1].data["resumed"] is False
        resume_from = snapshot[-1].id
        assert resume_from is not None

        report(asgi, demo, "idle")
        change = next(events)
        assert (change.event, change.data["session_id"], change.data["state"]) == (
            "status",
            running,
            "idle",
        )
        assert change.id is not None
        assert int(change.id) > int(resume_from)
        events.close()  # closes the response

        # Reconnecting from before the change replays it, then says it resumed.
        resumed = until(follow_sessions(api, last_event_id=resume_from, reconnect=False), "ready")
    # The replay is at least once: changes committed shortly before the id (here, the demo's
    # seeding) are sent again too, in case a late commit took a lower id.
    replayed = {e.data["session_id"]: e.data["state"] for e in resumed[:-1]}
    assert {e.event for e in resumed[:-1]} == {"status"}
    assert replayed[running] == "idle"
    assert set(replayed) <= set(demo["sessions"].values())
    assert resumed[-1].data["resumed"] is True


def test_async_follow_sessions_with_a_filter(asgi: str, demo: dict[str, Any]) -> None:
    async def scenario() -> list[StreamEvent]:
        async with client(asgi, demo["users"]["editor"]) as api:
            seen: list[StreamEvent] = []
            stream = async_follow_sessions(
                api, state=KernelSessionsStreamState.RUNNING, reconnect=False
            )
            async for event in stream:
                seen.append(event)
                if event.event == "ready":
                    break
            await stream.aclose()
            return seen

    events = asyncio.run(scenario())
    assert [e.event for e in events] == ["status", "ready"]
    assert events[0].data["session_id"] == demo["sessions"]["running"]
    with pytest.raises(ValueError, match="carries no session"):
        _ = events[1].session


def test_follow_sessions_under_wsgi_raises_501(
    live_server: LiveServer, demo: dict[str, Any]
) -> None:
    with (
        client(live_server.url, demo["users"]["editor"]) as api,
        pytest.raises(StreamError) as caught,
    ):
        next(follow_sessions(api))
    assert caught.value.status_code == 501
    assert b"ASGI" in caught.value.body
