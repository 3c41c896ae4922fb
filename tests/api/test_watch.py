"""Watching: blocking status reads (Prefer: wait) and the change stream, against a real ASGI
server (uvicorn, in another process: its wake-ups come from the database, as in production)
and, for what a test must count inside the server, Django's async test client.

No timed assertions: a wait that must end early is given a wait far longer than the client's
own timeout, so only an early answer can pass.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import AsyncClient, Client, override_settings
from django.utils import timezone
from rest_framework.authtoken.models import Token

from kernel_status import mirror
from kernel_status.api.watch import requested_wait
from kernel_status.choices import AccessRole, ProcessState
from kernel_status.events import CellNotification, KernelStarted
from kernel_status.live import hub as hubs
from kernel_status.live.stream import Row, Stream
from kernel_status.models import Change, KernelProcess, Session, SessionAccess
from tests.utils import (
    EVENTS_URL,
    STATUS_URL,
    eventually_async,
    outside_connection,
    uvicorn_server,
)

pytestmark = pytest.mark.django_db(transaction=True)

STREAM_URL = "/api/kernel/sessions/stream"
# Longer than any client timeout below: a wait that answers at all answered early.
LONG_WAIT = 55
CLIENT_TIMEOUT = 25


def token(user: User) -> str:
    key: str = Token.objects.get_or_create(user=user)[0].key
    return key


def headers(user: User, session_id: str | None = None, **extra: str) -> dict[str, str]:
    found = {"Authorization": f"Token {token(user)}", **extra}
    if session_id is not None:
        found["Marimo-Session-Id"] = session_id
    return found


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    log = tmp_path / "uvicorn.log"
    with uvicorn_server(log=log, env={"KERNEL_STATUS_TEST_HEARTBEAT": "1"}) as (url, _):
        yield url
    print(log.read_text()[-5000:])  # shown when the test fails


@pytest.fixture
def started(users: dict[str, User]) -> Session:
    session = mirror.register_session("w1", owner=users["owner"], notebook="nb.py")
    SessionAccess.objects.create(session=session, user=users["editor"], role=AccessRole.EDIT)
    mirror.kernel_started("w1")
    return session


def current(base: str, user: User, session_id: str = "w1") -> httpx.Response:
    return httpx.get(base + STATUS_URL, headers=headers(user, session_id), timeout=CLIENT_TIMEOUT)


def wait_in_thread(
    base: str, user: User, etag: str, wait: int = LONG_WAIT, session_id: str = "w1"
) -> tuple[threading.Thread, dict[str, httpx.Response]]:
    """Start a blocking read; the answer lands in the dict under "response"."""
    answer: dict[str, httpx.Response] = {}
    request_headers = headers(user, session_id, **{"If-None-Match": etag, "Prefer": f"wait={wait}"})

    def run() -> None:
        answer["response"] = httpx.get(
            base + STATUS_URL, headers=request_headers, timeout=CLIENT_TIMEOUT
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, answer


def answered(thread: threading.Thread, answer: dict[str, httpx.Response]) -> httpx.Response:
    thread.join(CLIENT_TIMEOUT + 5)
    assert "response" in answer, "the blocking read did not answer"
    return answer["response"]


def held(base: str) -> None:
    """Give the server the moment it needs to start holding the request: a plain read
    queued behind it on the same server has been answered."""
    httpx.get(base + "/api/schema/", timeout=CLIENT_TIMEOUT)


# --- the blocking read ----------------------------------------------------------------------


def test_a_change_answers_200_with_the_new_body(
    server: str, started: Session, users: dict[str, User]
) -> None:
    first = current(server, users["editor"])
    assert first.status_code == 200
    assert first.json()["state"] == "idle"
    thread, answer = wait_in_thread(server, users["editor"], first.headers["ETag"])
    held(server)
    # Written in this process: the server hears of it from the database.
    mirror.apply_events("w1", [CellNotification("a", timezone.now(), "running")])
    response = answered(thread, answer)
    assert response.status_code == 200
    assert response.json()["state"] == "running"
    assert response.headers["Preference-Applied"] == f"wait={LONG_WAIT}"
    assert response.headers["ETag"] != first.headers["ETag"]
    assert response.headers["Cache-Control"] == "private, no-cache"


def test_a_change_posted_to_the_same_server_wakes_the_waiter(
    server: str, started: Session, users: dict[str, User]
) -> None:
    reporter = User.objects.create_superuser("host")
    first = current(server, users["owner"])
    thread, answer = wait_in_thread(server, users["owner"], first.headers["ETag"])
    held(server)
    body = {"events": [{"op": "kernel-stopped", "data": {"timestamp": time.time()}}]}
    posted = httpx.post(
        server + EVENTS_URL, json=body, headers=headers(reporter, "w1"), timeout=CLIENT_TIMEOUT
    )
    assert posted.status_code == 200, posted.text
    response = answered(thread, answer)
    assert response.status_code == 200
    assert response.json()["state"] == "stopped"


def test_no_change_answers_304_with_preference_applied(
    server: str, started: Session, users: dict[str, User]
) -> None:
    first = current(server, users["editor"])
    thread, answer = wait_in_thread(server, users["editor"], first.headers["ETag"], wait=1)
    response = answered(thread, answer)
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["Preference-Applied"] == "wait=1"
    assert response.headers["ETag"] == first.headers["ETag"]


def test_a_stale_etag_answers_at_once(
    server: str, started: Session, users: dict[str, User]
) -> None:
    thread, answer = wait_in_thread(server, users["editor"], '"not-the-tag"')
    response = answered(thread, answer)
    assert response.status_code == 200
    assert response.json()["state"] == "idle"
    assert response.headers["Preference-Applied"] == f"wait={LONG_WAIT}"


def test_a_revoked_share_answers_the_strangers_404(
    server: str, started: Session, users: dict[str, User]
) -> None:
    first = current(server, users["editor"])
    thread, answer = wait_in_thread(server, users["editor"], first.headers["ETag"])
    held(server)
    SessionAccess.objects.filter(user=users["editor"]).delete()
    response = answered(thread, answer)
    stranger = current(server, users["stranger"])
    assert stranger.status_code == 404
    assert response.status_code == 404
    assert response.json() == stranger.json()
    assert "Preference-Applied" not in response.headers


def test_a_stranger_gets_404_before_any_wait(
    server: str, started: Session, users: dict[str, User]
) -> None:
    etag = current(server, users["owner"]).headers["ETag"]
    thread, answer = wait_in_thread(server, users["stranger"], etag)
    response = answered(thread, answer)
    assert response.status_code == 404
    assert "Preference-Applied" not in response.headers


def test_a_liveness_expiry_during_the_wait_answers_stopped(
    server: str, started: Session, users: dict[str, User]
) -> None:
    # The kernel's last heartbeat is 58 s old: the 60 s window closes in about 2 s.
    KernelProcess.objects.filter(session=started).update(
        last_heartbeat_at=timezone.now() - timedelta(seconds=58)
    )
    first = current(server, users["editor"])
    assert first.json()["state"] == "idle"
    thread, answer = wait_in_thread(server, users["editor"], first.headers["ETag"])
    response = answered(thread, answer)
    assert response.status_code == 200
    assert response.json()["state"] == "stopped"


def test_a_rolled_back_batch_leaves_no_trace(
    server: str, started: Session, users: dict[str, User]
) -> None:
    before = Change.objects.count()
    first = current(server, users["editor"])
    thread, answer = wait_in_thread(server, users["editor"], first.headers["ETag"], wait=2)
    held(server)
    with pytest.raises(RuntimeError):  # noqa: PT012, SIM117 - the batch, then a failure
        with transaction.atomic():
            mirror.kernel_stopped("w1")
            raise RuntimeError("the platform's own check failed")
    response = answered(thread, answer)
    assert response.status_code == 304
    assert Change.objects.count() == before
    assert current(server, users["editor"]).json()["state"] == "idle"


def test_another_users_session_does_not_answer_the_waiter(
    server: str, started: Session, users: dict[str, User]
) -> None:
    mirror.register_session("other", owner=users["stranger"], notebook="x.py")
    mirror.kernel_started("other")
    first = current(server, users["editor"])
    thread, answer = wait_in_thread(server, users["editor"], first.headers["ETag"], wait=2)
    held(server)
    mirror.kernel_stopped("other")
    response = answered(thread, answer)
    assert response.status_code == 304
    assert response.headers["Preference-Applied"] == "wait=2"


def test_a_burst_of_plain_reads_under_asgi_uses_only_the_reader_pools_connections(
    tmp_path: Path, started: Session, users: dict[str, User]
) -> None:
    """200 plain reads at once, with persistent connections as in the example project: each
    is answered, and the server opens no more database connections than its reader threads
    and its LISTEN connection. (Run as Django runs a sync view under ASGI, each concurrent
    request had a thread and a connection of its own: 200 at once exceeded PostgreSQL's 100.)"""
    if connection.vendor != "postgresql":
        pytest.skip("counts the server's connections in pg_stat_activity")
    readers = 4  # KERNEL_STATUS_WATCH_READERS's default
    request_headers = headers(users["editor"], "w1")
    seen: set[int] = set()
    done = threading.Event()

    def sample(ours: int) -> None:
        with outside_connection() as watcher:
            query = (
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s"
            )
            while not done.is_set():
                seen.update(pid for (pid,) in watcher.execute(query, [ours]).fetchall())

    async def burst(base: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            return await asyncio.gather(
                *(client.get(base + STATUS_URL, headers=request_headers) for _ in range(200))
            )

    environment = {"KERNEL_STATUS_TEST_CONN_MAX_AGE": "60"}
    with uvicorn_server(log=tmp_path / "uvicorn.log", env=environment) as (base, _):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            ours = cursor.fetchone()[0]
        sampler = threading.Thread(target=sample, args=(ours,), daemon=True)
        sampler.start()
        try:
            answers = asyncio.run(burst(base))
            current(base, users["editor"])  # after the burst, still served
        finally:
            done.set()
            sampler.join(10)
    assert {(a.status_code, a.json()["state"]) for a in answers} == {(200, "idle")}
    assert 1 <= len(seen) <= readers + 1, sorted(seen)


def test_sigterm_answers_waiters_promptly(
    tmp_path: Path, started: Session, users: dict[str, User]
) -> None:
    with uvicorn_server(log=tmp_path / "log") as (base, process):
        first = current(base, users["editor"])
        thread, answer = wait_in_thread(base, users["editor"], first.headers["ETag"])
        held(base)
        process.send_signal(signal.SIGTERM)
        response = answered(thread, answer)
        assert response.status_code == 304
        assert response.headers["Preference-Applied"] == f"wait={LONG_WAIT}"
        process.wait(timeout=CLIENT_TIMEOUT)


@pytest.mark.parametrize(
    ("prefer", "expected"),
    [
        ("wait=10", 10),
        ("WAIT = 10", 10),
        ('wait="7"', 7),
        ("respond-async, wait=5", 5),
        ("wait=5; foo=bar", 5),
        ("wait=5, wait=9", 5),  # the first one counts
        ("wait=100000", 60),  # clamped
        ("wait=0", None),
        ("wait=-1", None),
        ("wait=1.5", None),
        ("wait=abc", None),
        ("wait=", None),
        ("wait=١٢", None),  # digits, but not ASCII ones
        ("return=minimal", None),
        ("", None),
        (None, None),
        ("wait=" + "9" * 400, None),
    ],
)
def test_prefer_wait_is_read_as_rfc_7240_allows(prefer: str | None, expected: int | None) -> None:
    assert requested_wait(prefer) == expected


@override_settings(KERNEL_STATUS_MAX_WAIT=5)
def test_the_maximum_wait_is_a_setting() -> None:
    assert requested_wait("wait=30") == 5


def test_under_wsgi_prefer_wait_is_not_applied(started: Session, users: dict[str, User]) -> None:
    client = Client(headers=headers(users["editor"], "w1"))
    etag = client.get(STATUS_URL)["ETag"]
    response = client.get(STATUS_URL, headers={"If-None-Match": etag, "Prefer": "wait=30"})
    assert response.status_code == 304
    assert "Preference-Applied" not in response


def test_under_wsgi_the_stream_says_it_needs_asgi(users: dict[str, User]) -> None:
    response = Client(headers=headers(users["editor"])).get(STREAM_URL)
    assert response.status_code == 501
    assert response["Content-Type"] == "application/json"
    assert "ASGI" in response.json()["detail"]


def test_malformed_prefer_under_asgi_answers_as_today(
    server: str, started: Session, users: dict[str, User]
) -> None:
    etag = current(server, users["editor"]).headers["ETag"]
    for prefer in ("wait=abc", "wait=0", "wait=" + "9" * 5000):
        response = httpx.get(
            server + STATUS_URL,
            headers=headers(users["editor"], "w1", **{"If-None-Match": etag, "Prefer": prefer}),
            timeout=CLIENT_TIMEOUT,
        )
        assert response.status_code == 304, prefer
        assert "Preference-Applied" not in response.headers


def test_abandoned_waits_free_their_waiters(started: Session, users: dict[str, User]) -> None:
    """1,000 blocking reads started and abandoned (their tasks cancelled, as Django's ASGI
    handler does when the client disconnects) leave no subscription behind."""

    auth = headers(users["editor"], "w1")

    async def scenario() -> tuple[int, int]:
        client = AsyncClient()
        first = await client.get(STATUS_URL, headers=auth)
        assert first.status_code == 200, first.content
        wait_headers = {**auth, "If-None-Match": first["ETag"], "Prefer": f"wait={LONG_WAIT}"}
        hub = hubs.get_hub()
        tasks = [
            asyncio.ensure_future(client.get(STATUS_URL, headers=wait_headers)) for _ in range(1000)
        ]
        await eventually_async(lambda: hub.subscriptions == 1000, timeout=120, what="1,000 waiters")
        most = hub.subscriptions
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return most, hub.subscriptions

    most, left = async_to_sync(scenario)()
    assert most == 1000
    assert left == 0


def test_held_waits_and_streams_hold_no_thread_of_the_server(
    tmp_path: Path, started: Session, users: dict[str, User]
) -> None:
    """Django's ASGI handler gives each request a thread of its own until the request ends;
    30 held blocking reads and 10 held streams let theirs go, so the server's threads stay
    what they were before (held, each would keep one: 40 more)."""
    if not Path("/proc/self/task").is_dir():
        pytest.skip("counts the server's threads in /proc")
    auth = headers(users["editor"], "w1")
    limits = httpx.Limits(max_connections=100)

    def server_threads(process: Any) -> int:
        return len(os.listdir(f"/proc/{process.pid}/task"))

    async def plain_reads(client: httpx.AsyncClient, base: str) -> str:
        answers = await asyncio.gather(
            *(client.get(base + STATUS_URL, headers=auth) for _ in range(8))
        )
        assert {a.status_code for a in answers} == {200}
        return answers[0].headers["ETag"]

    async def scenario(base: str, process: Any) -> tuple[int, int]:
        async with httpx.AsyncClient(limits=limits, timeout=CLIENT_TIMEOUT) as client:
            # Once the reader pool, the listener and the watchdog have started:
            etag = await plain_reads(client, base)
            short = {**auth, "If-None-Match": etag, "Prefer": "wait=1"}
            assert (await client.get(base + STATUS_URL, headers=short)).status_code == 304
            await asyncio.sleep(0.5)  # the ended requests' own threads have exited
            before = server_threads(process)
            waiting = {**auth, "If-None-Match": etag, "Prefer": f"wait={LONG_WAIT}"}
            waits = [
                asyncio.ensure_future(client.get(base + STATUS_URL, headers=waiting))
                for _ in range(30)
            ]
            streams = []
            for _ in range(10):
                request = client.build_request("GET", base + STREAM_URL, headers=auth)
                response = await client.send(request, stream=True)
                lines = response.aiter_lines()
                while await anext(lines) != "event: ready":
                    pass
                streams.append(response)
            await plain_reads(client, base)  # answered behind the 30 waits: they are held
            await eventually_async(
                lambda: server_threads(process) <= before + 2, timeout=10, what="no held thread"
            )
            held = server_threads(process)
            assert not any(wait.done() for wait in waits)
            for response in streams:
                await response.aclose()
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            return before, held

    with uvicorn_server(log=tmp_path / "uvicorn.log") as (base, process):
        before, held = asyncio.run(scenario(base, process))
    assert held <= before + 2, (before, held)


# --- the change stream ----------------------------------------------------------------------


class EventReader:
    """Reads a text/event-stream response: events as dicts, comments counted."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()
        self.comments = 0

    def next(self) -> dict[str, Any]:
        # Heartbeats keep the client's read timeout from firing: a stream that sends only
        # them must still fail the test, not hold it for ever.
        deadline = time.monotonic() + CLIENT_TIMEOUT
        fields: dict[str, Any] = {}
        for line in self.lines:
            assert time.monotonic() < deadline, f"no event within {CLIENT_TIMEOUT} s: {fields}"
            if line == "":
                if "event" in fields or "data" in fields:
                    if "data" in fields:
                        fields["data"] = json.loads(fields["data"])
                    return fields
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise AssertionError(f"the stream ended: {fields}")

    def rest(self) -> list[str]:
        """The lines left, once the server ends the stream (within the client's timeout)."""
        deadline = time.monotonic() + CLIENT_TIMEOUT
        left: list[str] = []
        for line in self.lines:
            assert time.monotonic() < deadline, f"the stream did not end: {left[-5:]}"
            left.append(line)
        return left

    def until(self, name: str) -> list[dict[str, Any]]:
        seen = []
        while True:
            found = self.next()
            seen.append(found)
            assert found.get("event") not in {"error", "reconnect"}, seen
            if found.get("event") == name:
                return seen


def stream(base: str, user: User, **extra: str) -> Any:
    return httpx.stream(
        "GET", base + STREAM_URL, headers=headers(user, **extra), timeout=CLIENT_TIMEOUT
    )


def test_stream_snapshot_changes_and_resume(
    server: str, started: Session, users: dict[str, User]
) -> None:
    mirror.register_session("theirs", owner=users["stranger"], notebook="x.py")
    with stream(server, users["editor"]) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        reader = EventReader(response)
        snapshot = reader.until("ready")
        statuses = [e for e in snapshot if e["event"] == "status"]
        assert [e["data"]["session_id"] for e in statuses] == ["w1"]
        assert statuses[0]["data"]["state"] == "idle"
        assert snapshot[-1]["data"] == {"resumed": False, "replayed": 0, "sessions": 1}
        # A change of another user's session sends nothing; one of ours sends its event.
        mirror.kernel_stopped("theirs")
        mirror.kernel_stopped("w1")
        changed = reader.next()
        assert changed["event"] == "status"
        assert changed["data"]["session_id"] == "w1"
        assert changed["data"]["state"] == "stopped"
        last_id = changed["id"]
        assert int(last_id) >= int(snapshot[-1]["id"])
    while_away = timezone.now()
    mirror.apply_events("w1", [KernelStarted(while_away)])
    with stream(server, users["editor"], **{"Last-Event-ID": last_id}) as response:
        reader = EventReader(response)
        replay = reader.until("ready")
        assert [e["event"] for e in replay] == ["status", "ready"]
        assert replay[0]["data"]["session_id"] == "w1"
        assert replay[0]["data"]["state"] == "idle"
        assert replay[-1]["data"]["resumed"] is True
    with stream(server, users["editor"], **{"Last-Event-ID": "999999999"}) as response:
        reader = EventReader(response)
        events = reader.until("ready")
        assert events[0]["event"] == "reset"
        assert [e["event"] for e in events[1:]] == ["status", "ready"]


def test_stream_heartbeat(server: str, started: Session, users: dict[str, User]) -> None:
    with stream(server, users["editor"]) as response:
        reader = EventReader(response)
        reader.until("ready")
        mirror.kernel_heartbeat("w1")  # wakes the stream; nothing to send
        for line in reader.lines:
            assert not line.startswith(("event:", "data:")), line
            if line == ": heartbeat":
                break


def test_stream_revoked_share_is_removed_and_then_silent(
    server: str, started: Session, users: dict[str, User]
) -> None:
    with stream(server, users["editor"]) as response:
        reader = EventReader(response)
        reader.until("ready")
        SessionAccess.objects.filter(user=users["editor"]).delete()
        removed = reader.next()
        assert removed["event"] == "removed"
        assert removed["data"] == {"session_id": "w1"}
        mirror.kernel_stopped("w1")
        mine = mirror.register_session("mine", owner=users["editor"], notebook="m.py")
        following = reader.next()
        assert following["event"] == "status"
        assert following["data"]["session_id"] == mine.session_id


@pytest.mark.parametrize(
    ("refuse", "detail"),
    [
        ("deactivate", "User inactive or deleted."),
        ("delete the token", "Invalid token."),
    ],
)
def test_a_stream_whose_caller_is_refused_ends_at_the_next_change(
    server: str, started: Session, users: dict[str, User], refuse: str, detail: str
) -> None:
    editor = users["editor"]
    with stream(server, editor) as response:
        reader = EventReader(response)
        reader.until("ready")
        if refuse == "deactivate":
            User.objects.filter(pk=editor.pk).update(is_active=False)
        else:
            Token.objects.filter(user=editor).delete()
        mirror.kernel_stopped("w1")  # a change the caller would have been sent
        seen = [reader.next()]
        if seen[0]["event"] == "status":
            # A wake-up already under way (the poller's first pass) checked the caller just
            # before the refusal committed, and read the change just after it: one event.
            seen.append(reader.next())
        assert [event["event"] for event in seen[:-1]] in ([], ["status"])
        assert seen[-1]["event"] == "error"
        assert seen[-1]["data"] == {"detail": f"{detail} Reconnect with valid credentials."}
        assert reader.rest() == []  # the stream ends there


def test_stream_filters_like_the_listing(
    server: str, started: Session, users: dict[str, User]
) -> None:
    with stream(server, users["editor"]) as response:
        pass
    response = httpx.get(
        server + STREAM_URL + "?state=busy", headers=headers(users["editor"]), timeout=10
    )
    assert response.status_code == 400
    assert "state must be one of" in response.json()["detail"]
    anonymous = httpx.get(server + STREAM_URL, timeout=10)
    assert anonymous.status_code == 401


def test_a_slow_stream_consumer_is_dropped(started: Session) -> None:
    """The stream's queue is bounded: a client that stops reading while changes pile up is
    sent "reconnect" and the stream ends, instead of growing without bound."""

    def read_rows(pks: set[int] | None, filtered: bool) -> dict[int, Row]:
        # A fresh item on every read: every change is a change of the entry.
        now = timezone.now().isoformat()
        return {started.pk: Row("w1", {"session_id": "w1", "read_at": now}, None)}

    async def scenario() -> list[bytes]:
        hub = hubs.get_hub()
        stream = Stream(hub, read_rows, last_event_id=None, queue_size=3, heartbeat=60)
        chunks = stream.events()
        first = [await chunks.__anext__()]  # retry:, then the client stops reading
        await eventually_async(lambda: stream.queue.qsize() >= 2, what="the snapshot")
        for change in range(10):
            hub.dispatch(10_000 + change, [started.pk])
            await eventually_async(
                lambda: stream.dropped or not any(s.pending for s in hub._every()),
                what="the stream to take the change",
            )
        rest = [chunk async for chunk in chunks]
        assert stream.dropped
        assert hub.subscriptions == 0
        return first + rest

    chunks = async_to_sync(scenario)()
    assert chunks[0].startswith(b"retry:")
    assert b"event: reconnect" in chunks[-1]
    assert len(chunks) <= 4


def test_a_stream_past_its_lifetime_is_sent_reconnect_after_its_snapshot(
    started: Session,
) -> None:
    """KERNEL_STATUS_STREAM_MAX_SECONDS ends a stream with "reconnect", naming the id of the
    last event sent, and never before the snapshot is out: here the snapshot's read alone
    outlasts the lifetime."""

    def read_rows(pks: set[int] | None, filtered: bool) -> dict[int, Row]:
        time.sleep(0.05)
        return {started.pk: Row("w1", {"session_id": "w1"}, None)}

    async def scenario() -> list[bytes]:
        hub = hubs.get_hub()
        stream = Stream(
            hub, read_rows, last_event_id=None, queue_size=10, heartbeat=60, max_seconds=0.001
        )
        chunks = [chunk async for chunk in stream.events()]
        assert hub.subscriptions == 0
        return chunks

    chunks = async_to_sync(scenario)()
    assert chunks[0].startswith(b"retry:")
    names = [re.findall(rb"^event: (\w+)$", chunk, re.M) for chunk in chunks[1:]]
    assert names == [[b"status"], [b"ready"], [b"reconnect"]]
    ready_id = re.findall(rb"^id: (\d+)$", chunks[2], re.M)
    assert ready_id
    assert re.findall(rb"^id: (\d+)$", chunks[3], re.M) == ready_id
    assert b"KERNEL_STATUS_STREAM_MAX_SECONDS" in chunks[3]


# --- wake-ups at the source -----------------------------------------------------------------


def test_commits_wake_only_their_sessions_and_rollbacks_none(users: dict[str, User]) -> None:
    one = mirror.register_session("one", owner=users["owner"], notebook="a.py")
    two = mirror.register_session("two", owner=users["owner"], notebook="b.py")

    async def scenario() -> None:
        hub = hubs.get_hub()
        with hub.subscribe([one.pk]) as waiter:
            # The listener's first connection makes every waiter re-read once: let it pass.
            listener = hub.listener
            assert listener is not None
            await eventually_async(lambda: listener.connects >= 1, what="the listener")
            await eventually_async(lambda: waiter.pending, what="the first re-read")
            waiter.take()

            def rolled_back() -> None:
                with pytest.raises(RuntimeError):  # noqa: PT012, SIM117 - a batch, a failure
                    with transaction.atomic():
                        mirror.kernel_started("one")
                        raise RuntimeError

            await sync_to_async(rolled_back)()
            await sync_to_async(mirror.kernel_started)("two")
            await sync_to_async(mirror.kernel_started)("one")
            await eventually_async(lambda: waiter.pending, what="the commit's wake-up")
            changed, everything = waiter.take()
            assert changed == {one.pk}
            assert not everything

    async_to_sync(scenario)()
    assert two.pk != one.pk


@pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").split(":")[0] not in {"postgres", "postgresql"},
    reason="LISTEN/NOTIFY: PostgreSQL only",
)
def test_two_server_processes_share_changes_through_postgresql(
    tmp_path: Path, started: Session, users: dict[str, User]
) -> None:
    """A change posted to one server wakes a waiter and a stream held by the other: how the
    app scales out across processes and machines."""
    assert connection.vendor == "postgresql"
    reporter = User.objects.create_superuser("host")
    with (
        uvicorn_server(log=tmp_path / "a.log") as (writer, _),
        uvicorn_server(log=tmp_path / "b.log") as (watcher, _),
    ):
        first = current(watcher, users["editor"])
        thread, answer = wait_in_thread(watcher, users["editor"], first.headers["ETag"])
        held(watcher)
        with stream(watcher, users["editor"]) as response:
            reader = EventReader(response)
            reader.until("ready")
            body = {"events": [{"op": "kernel-stopped", "data": {"timestamp": time.time()}}]}
            posted = httpx.post(
                writer + EVENTS_URL, json=body, headers=headers(reporter, "w1"), timeout=10
            )
            assert posted.status_code == 200
            event = reader.next()
            assert event["event"] == "status"
            assert event["data"]["state"] == "stopped"
        response = answered(thread, answer)
        assert response.status_code == 200
        assert response.json()["state"] == "stopped"
        assert KernelProcess.objects.get(session=started).state == ProcessState.STOPPED


# --- faults at wake-up ----------------------------------------------------------------------


def _held_wait(user: User, fault: Any) -> tuple[int, Any, dict[str, str], int]:
    """A blocking read held by the in-process hub; ``fault()`` runs (on a thread) once it is
    held, then a change to the session wakes it. The first answer, and the waiter's."""

    auth = headers(user, "w1")

    async def scenario() -> Any:
        client = AsyncClient()
        first = await client.get(STATUS_URL, headers=auth)
        assert first.status_code == 200, first.content
        wait_headers = {**auth, "If-None-Match": first["ETag"], "Prefer": f"wait={LONG_WAIT}"}
        hub = hubs.get_hub()
        # The listener's first connection wakes every waiter once; let that pass before the
        # waiter is held, so that its one wake-up is the change below, read after the fault.
        hub.subscribe(()).close()
        await eventually_async(
            lambda: hub.listener is not None and hub.listener.connects >= 1,
            timeout=30,
            what="the listener",
        )
        task = asyncio.ensure_future(client.get(STATUS_URL, headers=wait_headers))
        # Held: past its first read, which narrowed its subscription from every session
        # (``_all``) to this one; a fault before that would meet the first read instead.
        await eventually_async(
            lambda: hub.subscriptions == 1 and not hub._all, timeout=30, what="the waiter"
        )
        await sync_to_async(fault)()
        # A change of the session: written in this process, it wakes the waiter at once.
        await sync_to_async(mirror.apply_events)(
            "w1", [CellNotification("a", timezone.now(), "running")]
        )
        answer = await asyncio.wait_for(task, CLIENT_TIMEOUT)
        return first.status_code, answer, hub.subscriptions

    first_status, answer, left = async_to_sync(scenario)()
    return first_status, answer, auth, left


def test_the_database_failing_at_wake_up_answers_503_json(
    started: Session, users: dict[str, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    from kernel_status.api import token_status, views

    def gone() -> None:
        # The waiter's re-read meets a database that has gone away (as a terminated
        # backend or a failed connection raises).
        def fetch_status(*args: Any, **kwargs: Any) -> Any:
            raise OperationalError("terminating connection due to administrator command")

        # Both reads of the status view: DRF's path and the token path's one statement.
        monkeypatch.setattr(views, "fetch_status", fetch_status)
        monkeypatch.setattr(token_status, "fetch_token_status", fetch_status)

    first, answer, _, left = _held_wait(users["editor"], gone)
    assert first == 200
    assert answer.status_code == 503
    assert json.loads(answer.content) == {"detail": "The database is busy; retry shortly."}
    assert answer["Content-Type"] == "application/json"
    assert answer["Cache-Control"] == "no-store"
    assert "Preference-Applied" not in answer
    assert left == 0


def test_a_user_deactivated_during_the_wait_is_answered_as_without_waiting(
    started: Session, users: dict[str, User]
) -> None:
    editor = users["editor"]

    def deactivate() -> None:
        User.objects.filter(pk=editor.pk).update(is_active=False)

    first, answer, auth, left = _held_wait(editor, deactivate)
    assert first == 200
    # What the same request answers now, without waiting: the token of an inactive user.
    plain = Client().get(STATUS_URL, headers=auth)
    assert plain.status_code == 401
    assert answer.status_code == 401
    assert json.loads(answer.content) == json.loads(plain.content)
    assert json.loads(answer.content)["detail"] == "User inactive or deleted."
    assert answer["WWW-Authenticate"] == plain["WWW-Authenticate"]
    assert "Preference-Applied" not in answer
    assert left == 0
