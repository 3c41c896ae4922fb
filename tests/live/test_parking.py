"""The parking middleware (``kernel_status.asgi.WaitParkingMiddleware``), in this process:
Django's ASGI handler under it, driven with ASGI messages, and the hub woken by this
process's commits. Held reads are parked outside Django's request (its request ends), are
run again through Django at each change, and count once against the rate limit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.core.asgi import get_asgi_application
from django.core.signals import request_finished
from django.test import override_settings
from django.utils import timezone
from rest_framework.authtoken.models import Token

from kernel_status import mirror
from kernel_status.asgi import WaitParkingMiddleware
from kernel_status.choices import AccessRole
from kernel_status.events import CellNotification
from kernel_status.live import hub as hubs
from kernel_status.models import Session, SessionAccess
from kernel_status.throttle_rates import NO_THROTTLES, STATUS_SCOPE
from tests.utils import STATUS_URL, eventually_async

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 25  # far longer than any answer here needs


class Exchange:
    """One HTTP request to an ASGI application: what it sent, and a way to leave."""

    def __init__(self, app: Any, headers: dict[str, str], path: str = STATUS_URL) -> None:
        self.sent: list[dict[str, Any]] = []
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.incoming.put_nowait({"type": "http.request", "body": b"", "more_body": False})
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.task = asyncio.ensure_future(app(scope, self.incoming.get, self._send))

    async def _send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def leave(self) -> None:
        self.incoming.put_nowait({"type": "http.disconnect"})

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        await asyncio.wait_for(self.task, TIMEOUT)
        start, *bodies = self.sent
        names = {k.decode().lower(): v.decode() for k, v in start["headers"]}
        return start["status"], names, b"".join(m.get("body", b"") for m in bodies)


@pytest.fixture
def started(users: dict[str, User]) -> Session:
    session = mirror.register_session("p1", owner=users["owner"], notebook="nb.py")
    SessionAccess.objects.create(session=session, user=users["editor"], role=AccessRole.EDIT)
    mirror.kernel_started("p1")
    return session


@pytest.fixture
def finished() -> Iterator[list[object]]:
    """Django's ``request_finished``, each time it is sent."""
    seen: list[object] = []

    def note(sender: object, **kwargs: Any) -> None:
        seen.append(sender)

    request_finished.connect(note)
    yield seen
    request_finished.disconnect(note)


def auth(user: User) -> dict[str, str]:
    key = Token.objects.get_or_create(user=user)[0].key
    return {"Authorization": f"Token {key}", "Marimo-Session-Id": "p1"}


async def held(app: Any, headers: dict[str, str], wait: int = 55) -> tuple[Exchange, str]:
    """A blocking read, parked: its first pass answered (inside) and its request ended."""
    first = Exchange(app, headers)
    status, names, _ = await first.answer()
    assert status == 200
    etag = names["etag"]
    hub = hubs.get_hub()
    # The listener's first pass wakes every waiter once: let it go by first.
    hub.subscribe(()).close()
    await eventually_async(lambda: hub.listener is not None and hub.listener.connects >= 1)
    waiting = Exchange(app, {**headers, "If-None-Match": etag, "Prefer": f"wait={wait}"})
    await eventually_async(lambda: hub.subscriptions == 1 and not hub._all, what="the waiter")
    return waiting, etag


def app() -> Any:
    return WaitParkingMiddleware(get_asgi_application())


def test_a_parked_read_ends_its_django_request_and_a_change_answers_200(
    started: Session, users: dict[str, User], finished: list[object]
) -> None:
    editor = auth(users["editor"])

    async def scenario() -> tuple[int, dict[str, str], bytes, int, int]:
        waiting, _ = await held(app(), editor)
        await asyncio.sleep(0.2)
        ended_while_held = len(finished)  # the plain read's and the held read's first pass
        assert not waiting.sent  # the kept 304 is not sent
        await sync_to_async(mirror.apply_events)(
            "p1", [CellNotification("a", timezone.now(), "running")]
        )
        status, names, body = await waiting.answer()
        return status, names, body, ended_while_held, hubs.get_hub().subscriptions

    status, names, body, ended_while_held, left = async_to_sync(scenario)()
    assert ended_while_held == 2
    assert status == 200
    assert json.loads(body)["state"] == "running"
    assert names["preference-applied"] == "wait=55"
    assert left == 0


def test_a_parked_read_times_out_with_its_kept_304(
    started: Session, users: dict[str, User]
) -> None:
    editor = auth(users["editor"])

    async def scenario() -> tuple[int, dict[str, str], bytes, str]:
        waiting, etag = await held(app(), editor, wait=1)
        status, names, body = await waiting.answer()
        return status, names, body, etag

    status, names, body, etag = async_to_sync(scenario)()
    assert status == 304
    assert body == b""
    assert names["etag"] == etag
    assert names["preference-applied"] == "wait=1"
    assert names["cache-control"] == "private, no-cache"


def test_clients_that_leave_parked_reads_free_them(
    started: Session, users: dict[str, User]
) -> None:
    """200 parked reads whose clients disconnect leave no subscription, and are sent nothing."""
    editor = auth(users["editor"])

    async def scenario() -> tuple[int, list[dict[str, Any]], int]:
        application = app()
        first, etag = await held(application, editor)
        hub = hubs.get_hub()
        wait = {**editor, "If-None-Match": etag, "Prefer": "wait=55"}
        waitings = [first, *(Exchange(application, wait) for _ in range(199))]
        await eventually_async(lambda: hub.subscriptions == 200 and not hub._all, what="200")
        most = hub.subscriptions
        for waiting in waitings:
            waiting.leave()
        await asyncio.wait_for(asyncio.gather(*(w.task for w in waitings)), TIMEOUT)
        return most, [m for w in waitings for m in w.sent], hub.subscriptions

    most, sent, left = async_to_sync(scenario)()
    assert most == 200
    assert sent == []
    assert left == 0


def test_a_change_that_leaves_the_answer_alone_parks_again_and_is_not_throttled(
    started: Session, users: dict[str, User], finished: list[object]
) -> None:
    """Three wake-ups that change nothing (heartbeats) run the read again through Django,
    uncounted; the held request counted once, so the caller still has its rate's last read."""
    rates = {**NO_THROTTLES, STATUS_SCOPE: "3/min"}
    editor = auth(users["editor"])

    async def scenario() -> list[int]:
        application = app()
        waiting, _ = await held(application, editor)  # reads 1 and 2 of 3
        for beat in range(3):
            await sync_to_async(mirror.kernel_heartbeat)("p1")
            await eventually_async(lambda beat=beat: len(finished) >= 3 + beat, what="a re-run")
        assert not waiting.sent
        await sync_to_async(mirror.kernel_stopped)("p1")
        statuses = [(await waiting.answer())[0]]
        for _ in range(2):
            statuses.append((await Exchange(application, editor).answer())[0])
        return statuses

    with override_settings(
        REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": rates},
    ):
        statuses = async_to_sync(scenario)()
    assert statuses == [200, 200, 429]


def test_changes_during_the_passes_run_it_again_and_the_timeout_still_answers(
    started: Session, users: dict[str, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of three passes run again meets a change that commits while it reads (a
    heartbeat): each is followed by one more pass, then the read parks and its wait ends
    with the kept 304, not with passes for ever."""
    from kernel_status.api import watch

    editor = auth(users["editor"])
    passes: list[int] = []
    first_pass = watch._first_pass

    def pass_meeting_a_change(request: Any) -> Any:
        passes.append(1)
        if 2 <= len(passes) <= 4:  # the runs again, not the held read's first pass
            mirror.kernel_heartbeat("p1")
        return first_pass(request)

    monkeypatch.setattr(watch, "_first_pass", pass_meeting_a_change)

    async def scenario() -> tuple[int, dict[str, str]]:
        waiting, _ = await held(app(), editor, wait=3)
        passes.clear()
        passes.append(1)  # the held read's first pass
        await sync_to_async(mirror.kernel_heartbeat)("p1")
        status, names, _ = await waiting.answer()
        return status, names

    status, names = async_to_sync(scenario)()
    assert status == 304
    assert names["preference-applied"] == "wait=3"
    assert len(passes) == 5  # the first, three that met a change, and one that did not
