"""The bridge notices marimo coming back at once, and says so when marimo refuses its token.

A fake marimo API (listings and ``/health`` scripted, every call recorded) and, for the
followers, a real websocket server that closes as marimo does. The backoff is a minute, so a
listing that comes before the scenario's guard can only be an early one; the assertions are
on the order of the calls, never on elapsed time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve

from kernel_status.contrib.marimo.bridge import BridgeSettings, MarimoBridge
from kernel_status.contrib.marimo.client import MarimoAPI, MarimoUnauthorized, MarimoUnavailable
from kernel_status.contrib.marimo.writer import SendResult, Sent, Writer
from kernel_status.events import KernelEvent

GUARD = 10.0  # a hang guard, far under the minute of backoff the bridge would sleep


class NullSink:
    async def send(self, session_id: str, events: Sequence[KernelEvent]) -> SendResult:
        return SendResult(Sent.WRITTEN)

    async def aclose(self) -> None:
        pass


class FakeMarimo:
    """Stands in for :class:`MarimoAPI`: ``listings`` and ``health`` answer in turn (the last
    one repeats); ``calls`` records what the bridge asked, in order."""

    def __init__(
        self,
        listings: Sequence[dict[str, str] | Exception],
        health: Sequence[bool],
        ws_url: str = "ws://127.0.0.1:9/ws",
    ) -> None:
        self.listings = list(listings)
        self.health = list(health)
        self.ws_url = ws_url
        self.token: str | None = None
        self.base_url = "http://marimo.test"
        self.calls: list[str] = []
        self.changed = asyncio.Event()

    def note(self, call: str) -> None:
        self.calls.append(call)
        self.changed.set()

    async def running_sessions(self) -> dict[str, str]:
        answer = self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]
        if isinstance(answer, Exception):
            self.note(f"list: {type(answer).__name__}")
            raise answer
        self.note(f"list: {sorted(answer)}")
        return answer

    async def healthy(self, timeout: float) -> bool:
        up = self.health.pop(0) if len(self.health) > 1 else self.health[0]
        self.note(f"health: {'up' if up else 'down'}")
        return up

    def attach_url(self, attach_id: str, file_key: str, *, redact: bool = False) -> str:
        return self.ws_url

    async def wait_for(self, predicate: Callable[[list[str]], bool]) -> None:
        while not predicate(self.calls):
            self.changed.clear()
            await self.changed.wait()

    async def aclose(self) -> None:
        pass


def bridge_with(fake: FakeMarimo, **settings: object) -> MarimoBridge:
    options: dict[str, object] = {
        "backoff_initial": 60.0,
        "backoff_max": 60.0,
        "poll_interval": 60.0,
        "health_probe_interval": 0.01,
        **settings,
    }
    bridge = MarimoBridge(BridgeSettings("http://marimo.test", **options), Writer(NullSink()))  # type: ignore[arg-type]
    bridge.marimo = fake  # type: ignore[assignment]
    return bridge


async def run_until(
    bridge: MarimoBridge, fake: FakeMarimo, done: Callable[[list[str]], bool]
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    try:
        async with asyncio.timeout(GUARD):
            await fake.wait_for(done)
    finally:
        stop.set()
        await task


def test_a_no_session_close_lists_at_once_during_an_outage() -> None:
    """marimo restarted: the follower's reattach is refused with MARIMO_NO_SESSION while
    discovery is in its backoff; discovery lists at once and records the session's end."""

    async def scenario() -> list[str]:
        outage_seen = asyncio.Event()

        async def handler(websocket: ServerConnection) -> None:
            await outage_seen.wait()  # close only once discovery is in its backoff
            fake.note("ws: closed MARIMO_NO_SESSION")
            await websocket.close(1000, "MARIMO_NO_SESSION")

        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            fake = FakeMarimo(
                [{"s1": "a.py"}, MarimoUnavailable("marimo is down"), {}],
                health=[True],  # /health never failed: only the close can wake discovery
                ws_url=f"ws://127.0.0.1:{port}/ws",
            )
            bridge = bridge_with(fake, poll_interval=0.01)
            original = fake.running_sessions

            async def listing() -> dict[str, str]:
                try:
                    return await original()
                except MarimoUnavailable:
                    outage_seen.set()
                    raise

            fake.running_sessions = listing  # type: ignore[method-assign]
            await run_until(bridge, fake, lambda calls: "list: []" in calls)
            assert bridge.followers == {}  # the session ended in marimo
        return [call for call in fake.calls if not call.startswith("health")]

    calls = asyncio.run(scenario())
    assert calls == [
        "list: ['s1']",
        "list: MarimoUnavailable",
        "ws: closed MARIMO_NO_SESSION",
        "list: []",
    ]


def test_health_answering_again_lists_at_once(tmp_path: Path) -> None:
    health_file = tmp_path / "health.json"

    async def scenario() -> tuple[list[str], list[dict[str, object]]]:
        fake = FakeMarimo(
            [MarimoUnavailable("connection refused"), {}],
            health=[False, False, False, True],
        )
        bridge = bridge_with(fake, health_file=health_file)
        seen: list[dict[str, object]] = []
        write = bridge._write_health

        def record() -> None:
            write()
            seen.append(json.loads(health_file.read_text()))

        bridge._write_health = record  # type: ignore[method-assign]
        await run_until(bridge, fake, lambda calls: "list: []" in calls)
        return fake.calls, seen

    calls, seen = asyncio.run(scenario())
    assert calls == [
        "list: MarimoUnavailable",
        "health: down",
        "health: down",
        "health: down",
        "health: up",
        "list: []",
    ]
    assert [(h["marimo"], h["marimo_reachable"]) for h in seen] == [
        ("unreachable", False),
        ("reachable", True),
    ]
    assert seen[0]["marimo_error"] == "connection refused"
    assert seen[1]["marimo_error"] is None


def test_a_failing_listing_while_health_answers_keeps_its_backoff() -> None:
    """marimo up but refusing to list (a 500): /health answering is no news, so no early
    listing, and one probe is the whole cost until the backoff ends."""

    async def scenario() -> list[str]:
        fake = FakeMarimo([MarimoUnavailable("POST answered 500")], health=[True])
        bridge = bridge_with(fake, health_probe_interval=0.001)
        await run_until(bridge, fake, lambda calls: calls.count("health: up") >= 20)
        return fake.calls

    calls = asyncio.run(scenario())
    assert calls.count("list: MarimoUnavailable") == 1
    assert set(calls[1:]) == {"health: up"}


def test_a_refused_marimo_token_ends_the_bridge_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    health_file = tmp_path / "health.json"
    refusal = MarimoUnauthorized("GET / answered 303, a redirect to /auth/login?next=%2F")

    async def scenario() -> list[str]:
        fake = FakeMarimo([refusal], health=[True])
        fake.token = "wrong"
        bridge = bridge_with(fake, health_file=health_file)
        with pytest.raises(MarimoUnauthorized):
            async with asyncio.timeout(GUARD):
                await bridge.run(asyncio.Event())
        return fake.calls

    with caplog.at_level(logging.INFO, "kernel_status.contrib.marimo"):
        calls = asyncio.run(scenario())
    assert calls == ["list: MarimoUnauthorized"]  # not retried
    health = json.loads(health_file.read_text())
    assert health["marimo"] == "unauthorized"
    assert health["marimo_reachable"] is False
    assert "/auth/login" in health["marimo_error"]
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert error.startswith("marimo refused the bridge's access token (wrong token)")
    assert "--marimo-token-file or $KERNEL_STATUS_MARIMO_TOKEN" in error


@pytest.mark.parametrize(
    ("page", "headers", "refused"),
    [
        (303, {"location": "/auth/login?next=%2F"}, MarimoUnauthorized),  # marimo's own
        (401, {}, MarimoUnauthorized),  # an auth proxy in front of marimo
        (403, {}, MarimoUnauthorized),
        (502, {}, MarimoUnavailable),  # a proxy with marimo down: not the token
    ],
)
def test_the_client_tells_a_refused_token_from_marimo_down(
    page: int, headers: dict[str, str], refused: type[Exception]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "healthy"})
        return httpx.Response(page, headers=headers, text="no")

    async def scenario() -> tuple[bool, Exception]:
        api = MarimoAPI("http://marimo.test", token="wrong")
        await api._client.aclose()
        api._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        try:
            healthy = await api.healthy(1.0)  # /health needs no token
            with pytest.raises(MarimoUnavailable) as error:
                await api.running_sessions()
        finally:
            await api.aclose()
        return healthy, error.value

    healthy, error = asyncio.run(scenario())
    assert healthy is True
    assert type(error) is refused
    if page == 303:
        assert str(error) == "GET / answered 303, a redirect to /auth/login?next=%2F"
