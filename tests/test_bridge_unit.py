"""The marimo bridge against a scripted websocket server that speaks marimo's frames."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from http import HTTPStatus
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from kernel_status import mirror
from kernel_status.bridge import (
    CONNECTION_LOST_CAUSE,
    BridgeConfig,
    BridgeError,
    MarimoBridge,
    Outcome,
    parse_frame,
)
from kernel_status.choices import ProcessState
from kernel_status.models import CellStatus, KernelProcess, Session
from tests.utils import SESSION_ID, eventually

SID = SESSION_ID
Step = Callable[[ServerConnection], None]


# --- a fake marimo ------------------------------------------------------------------------------


def frame(op: str, **data: Any) -> str:
    return json.dumps({"op": op, "data": {"op": op, **data}})


def kernel_ready(*cell_ids: str, resumed: bool = False) -> str:
    return frame(
        "kernel-ready",
        cell_ids=list(cell_ids),
        codes=["pass"] * len(cell_ids),
        names=["_"] * len(cell_ids),
        resumed=resumed,
        kiosk=False,
        ui_values={},
    )


_last_timestamp = 0.0


def fresh_timestamp() -> float:
    """Now, in epoch seconds, and at least a millisecond after the previous one."""
    global _last_timestamp
    _last_timestamp = max(time.time(), _last_timestamp + 0.001)
    return _last_timestamp


def cell_op(cell_id: str, status: str | None, *, at: float | None = None) -> str:
    return frame(
        "cell-op",
        cell_id=cell_id,
        status=status,
        stale_inputs=None,
        output=None,
        console=None,
        timestamp=fresh_timestamp() if at is None else at,
    )


def kernel_stopped_banner() -> str:
    return frame(
        "banner",
        title="Kernel stopped",
        description="The kernel was stopped unexpectedly. Click Restart to start a fresh kernel.",
        variant="danger",
        action="restart",
    )


def send(*frames: str | Callable[[], str]) -> Step:
    """Send frames; callables are called at send time (for fresh timestamps)."""

    def step(ws: ServerConnection) -> None:
        for item in frames:
            ws.send(item() if callable(item) else item)

    return step


def close(code: int, reason: str) -> Step:
    return lambda ws: ws.close(code, reason)


def drop() -> Step:
    """Cut the TCP connection without a close frame, as a network failure does."""
    return lambda ws: ws.socket.shutdown(socket.SHUT_RDWR)


def wait_for(gate: threading.Event) -> Step:
    def step(ws: ServerConnection) -> None:
        gate.wait(10)

    return step


class FakeMarimo:
    """Plays one script (a list of steps) per websocket connection, then holds it open.

    ``status`` is what ``GET /api/kernel/status`` answers; ``None`` answers like marimo for a
    session it does not know (500, "Invalid session id").
    """

    def __init__(self) -> None:
        self.scripts: queue.Queue[list[Step]] = queue.Queue()
        self.status: str | None = "idle"
        self.requests: list[Request] = []
        self.connections = 0
        self.server: Server = serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def play(self, *steps: Step) -> None:
        self.scripts.put(list(steps))

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        if not request.path.startswith("/api/kernel/status"):
            return None
        if self.status is None:
            session_id = request.headers.get("Marimo-Session-Id")
            body = {"detail": f"Invalid session id: {session_id}"}
            return _json_response(HTTPStatus.INTERNAL_SERVER_ERROR, body)
        return _json_response(HTTPStatus.OK, {"state": self.status})

    def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        try:
            script = self.scripts.get_nowait()
        except queue.Empty:
            script = []
        for step in script:
            step(ws)
        while True:  # hold the connection until the client leaves
            try:
                ws.recv()
            except Exception:
                return

    def shutdown(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


def _json_response(status: HTTPStatus, body: object) -> Response:
    content = json.dumps(body).encode()
    headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(content))})
    return Response(status.value, status.phrase, headers, content)


@pytest.fixture
def marimo() -> Iterator[FakeMarimo]:
    fake = FakeMarimo()
    yield fake
    fake.shutdown()


def make_bridge(url: str, **overrides: Any) -> MarimoBridge:
    options: dict[str, Any] = {
        "heartbeat_interval": 5.0,
        "give_up_after": 5.0,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        "open_timeout": 2.0,
        "http_timeout": 2.0,
    }
    options.update(overrides)
    return MarimoBridge(BridgeConfig(url=url, session_id=SID, **options))


class Running:
    def __init__(self) -> None:
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None


@contextmanager
def in_background(bridge: MarimoBridge) -> Iterator[Running]:
    """Run the bridge in a thread (it commits, so the test needs transactional_db)."""
    running = Running()

    def target() -> None:
        try:
            running.outcome = bridge.run()
        except BaseException as error:
            running.error = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        bridge.stop()
        thread.join(10)
        assert not thread.is_alive(), "the bridge did not stop"
    if running.error is not None:
        raise running.error


def state() -> str:
    return str(Session.objects.with_state().get(session_id=SID).state)


def cells() -> dict[str, str]:
    return dict(CellStatus.objects.filter(session__session_id=SID).values_list("cell_id", "status"))


def kernel() -> KernelProcess:
    return KernelProcess.objects.get(session__session_id=SID)


# --- translating frames -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_kernel_ready_starts_the_kernel_and_cell_ops_become_cells(
    marimo: FakeMarimo, session: Session
) -> None:
    gate = threading.Event()
    marimo.play(
        send(kernel_ready("a", "b")),
        send(lambda: cell_op("a", "queued"), lambda: cell_op("b", "queued")),
        send(lambda: cell_op("a", "running")),
        wait_for(gate),
        send(lambda: cell_op("a", "idle"), lambda: cell_op("b", "running")),
        send(lambda: cell_op("b", None), lambda: cell_op("b", "idle")),
    )
    bridge = make_bridge(marimo.url)
    with in_background(bridge) as running:
        eventually(lambda: cells() == {"a": "running", "b": "queued"})
        assert state() == "running"
        assert kernel().state == ProcessState.RUNNING
        assert bridge.cell_ids == ("a", "b")
        gate.set()
        eventually(lambda: cells() == {"a": "idle", "b": "idle"})
        assert state() == "idle"
    assert running.outcome is Outcome.STOP_REQUESTED
    assert kernel().state == ProcessState.RUNNING  # stopping the bridge stops no kernel


@pytest.mark.django_db(transaction=True)
def test_heartbeats_while_idle(marimo: FakeMarimo, session: Session) -> None:
    marimo.play(send(kernel_ready("a")))
    with in_background(make_bridge(marimo.url, heartbeat_interval=0.1)):
        eventually(lambda: KernelProcess.objects.filter(session=session).exists())
        started = kernel().started_at
        assert started is not None
        beats: set[datetime] = set()

        def two_beats() -> bool:
            heartbeat = kernel().last_heartbeat_at
            if heartbeat is not None and heartbeat > started:
                beats.add(heartbeat)
            return len(beats) >= 2

        eventually(two_beats)
        assert state() == "idle"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "greeting",
    [
        pytest.param([frame("reconnected")], id="reconnected"),
        pytest.param([frame("reconnected"), kernel_ready("a", resumed=True)], id="resumed"),
    ],
)
def test_a_reconnect_keeps_the_kernel_and_its_cells(
    marimo: FakeMarimo, session: Session, greeting: list[str]
) -> None:
    started_running = time.time()
    gate = threading.Event()
    marimo.play(send(kernel_ready("a"), lambda: cell_op("a", "running", at=time.time())), drop())
    # marimo answers a reconnect with `reconnected` (and replays nothing), or, when it hands
    # over an orphaned session, with a resumed kernel-ready followed by a replay.
    replay = cell_op("a", "running", at=started_running)
    marimo.play(send(*greeting, replay), wait_for(gate), send(lambda: cell_op("a", "idle")))
    marimo.status = "running"
    with in_background(make_bridge(marimo.url)):
        eventually(lambda: marimo.connections == 2)
        eventually(lambda: any(r.path.startswith("/api/kernel/status") for r in marimo.requests))
        time.sleep(0.2)
        assert cells() == {"a": "running"}
        assert state() == "running"
        process = kernel()
        assert process.started_at is not None
        assert process.last_heartbeat_at is not None
        assert process.last_heartbeat_at > process.started_at  # a heartbeat, not a restart
        gate.set()
        eventually(lambda: cells() == {"a": "idle"})
        assert kernel().started_at == process.started_at


@pytest.mark.django_db(transaction=True)
def test_a_reconnect_catches_up_with_cells_that_finished_meanwhile(
    marimo: FakeMarimo, session: Session
) -> None:
    marimo.play(send(kernel_ready("a", "b"), lambda: cell_op("a", "running")), drop())
    marimo.play(send(frame("reconnected")))
    marimo.status = "idle"  # marimo sends no cell-op for what happened while disconnected
    with in_background(make_bridge(marimo.url)):
        eventually(lambda: marimo.connections == 2)
        eventually(lambda: cells() == {"a": "idle"})
        assert state() == "idle"


@pytest.mark.django_db(transaction=True)
def test_a_reconnect_to_a_dead_kernel_records_the_stop(
    marimo: FakeMarimo, session: Session
) -> None:
    marimo.play(send(kernel_ready("a")), drop())
    marimo.play(send(frame("reconnected")))
    marimo.status = "stopped"  # marimo keeps a dead session, and reattaches to it
    with in_background(make_bridge(marimo.url)) as running:
        eventually(lambda: running.outcome is not None)
    assert running.outcome is Outcome.KERNEL_STOPPED
    assert state() == "stopped"


# --- the end of a kernel, or of the connection ----------------------------------------------------


def test_kernel_stopped_banner_stops_the_kernel(marimo: FakeMarimo, session: Session) -> None:
    marimo.play(
        send(kernel_ready("a"), lambda: cell_op("a", "running"), kernel_stopped_banner()),
        close(1000, "MARIMO_SHUTDOWN"),
    )
    assert make_bridge(marimo.url).run() is Outcome.KERNEL_STOPPED
    process = kernel()
    assert process.state == ProcessState.STOPPED
    assert process.exit_cause == "The kernel was stopped unexpectedly."
    assert state() == "stopped"


def test_kernel_startup_error_stops_the_kernel(marimo: FakeMarimo, session: Session) -> None:
    marimo.play(
        send(frame("kernel-startup-error", error="No module named 'numpy'")),
        close(1011, "MARIMO_KERNEL_STARTUP_ERROR"),
    )
    assert make_bridge(marimo.url).run() is Outcome.KERNEL_STOPPED
    assert kernel().exit_cause == "kernel startup failed: No module named 'numpy'"


@pytest.mark.parametrize(
    ("status", "outcome", "kernel_state"),
    [
        pytest.param(None, Outcome.KERNEL_STOPPED, ProcessState.STOPPED, id="session-closed"),
        pytest.param("idle", Outcome.DISPLACED, ProcessState.RUNNING, id="taken-over"),
    ],
)
def test_a_shutdown_close_without_banner(
    marimo: FakeMarimo,
    session: Session,
    status: str | None,
    outcome: Outcome,
    kernel_state: ProcessState,
) -> None:
    marimo.play(send(kernel_ready("a")), close(1000, "MARIMO_SHUTDOWN"))
    marimo.status = status
    assert make_bridge(marimo.url).run() is outcome
    assert kernel().state == kernel_state
    if outcome is Outcome.KERNEL_STOPPED:
        assert kernel().exit_cause == "session closed by marimo"


def test_a_refusal_is_fatal(marimo: FakeMarimo, session: Session) -> None:
    marimo.play(close(3000, "MARIMO_UNAUTHORIZED"))
    with pytest.raises(BridgeError, match="MARIMO_UNAUTHORIZED"):
        make_bridge(marimo.url).run()
    assert marimo.connections == 1


def test_connection_refused_for_good_records_connection_lost(session: Session) -> None:
    mirror.kernel_started(SID)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bridge = make_bridge(f"http://127.0.0.1:{port}", give_up_after=0.6)
    began = time.monotonic()
    assert bridge.run() is Outcome.CONNECTION_LOST
    assert time.monotonic() - began >= 0.6
    process = kernel()
    assert process.state == ProcessState.STOPPED
    assert process.exit_cause == CONNECTION_LOST_CAUSE
    assert state() == "stopped"


def test_the_connection_carries_the_session_id_and_token(
    marimo: FakeMarimo, session: Session
) -> None:
    marimo.play(send(frame("reconnected")), send(kernel_stopped_banner()))
    marimo.status = "running"
    assert make_bridge(marimo.url, token="s3cr&t").run() is Outcome.KERNEL_STOPPED
    websocket, status = marimo.requests
    assert websocket.path == f"/ws?session_id={SID}&access_token=s3cr%26t"
    assert status.path == "/api/kernel/status"
    assert status.headers["Marimo-Session-Id"] == SID
    assert status.headers["Authorization"] == "Bearer s3cr&t"


# --- configuration and the command ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "ws_url", "status_url"),
    [
        ("http://h:2718", "ws://h:2718/ws?session_id=s", "http://h:2718/api/kernel/status"),
        ("https://h/m/", "wss://h/m/ws?session_id=s", "https://h/m/api/kernel/status"),
        ("ws://h:1", "ws://h:1/ws?session_id=s", "http://h:1/api/kernel/status"),
    ],
)
def test_urls(url: str, ws_url: str, status_url: str) -> None:
    config = BridgeConfig(url=url, session_id="s")
    assert config.ws_url == ws_url
    assert config.status_url == status_url
    with_token = BridgeConfig(url=url, session_id="s", token="t")
    assert with_token.ws_url == ws_url + "&access_token=t"
    assert with_token.ws_url_for_logs == ws_url + "&access_token=***"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "ftp://h"}, "is not an http"),
        ({"url": "http://h/?x=1"}, "without a query"),
        ({"session_id": ""}, "session id"),
        ({"heartbeat_interval": 0}, "heartbeat"),
    ],
)
def test_bad_configuration(options: dict[str, Any], message: str) -> None:
    with pytest.raises(BridgeError, match=message):
        BridgeConfig(**{"url": "http://h", "session_id": "s", **options})


def test_frames_that_are_not_marimo_frames() -> None:
    data = {"op": "cell-op", "cell_id": "a"}
    assert parse_frame(frame("cell-op", cell_id="a")) == ("cell-op", data)
    assert parse_frame("not json") is None
    assert parse_frame('{"op": "x"}') is None
    assert parse_frame("[]") is None


def test_unknown_session_is_a_command_error(db: None) -> None:
    with pytest.raises(CommandError, match="No session with id 'nope' in the mirror"):
        call_command("kernel_status_bridge", url="http://127.0.0.1:1", session_id="nope")


def test_the_command_registers_a_missing_session(
    marimo: FakeMarimo, users: dict[str, User]
) -> None:
    marimo.play(send(kernel_ready("a"), kernel_stopped_banner()))
    call_command(
        "kernel_status_bridge",
        "--url",
        marimo.url,
        "--session-id",
        SID,
        "--owner",
        "owner",
        "--notebook",
        "nb.py",
        "--heartbeat-interval",
        "1",
        verbosity=0,
    )
    registered = Session.objects.get(session_id=SID)
    assert registered.owner == users["owner"]
    assert registered.notebook == "nb.py"
    assert kernel().state == ProcessState.STOPPED


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"owner": "owner"}, "--owner and --notebook go together"),
        ({"owner": "nobody", "notebook": "nb.py"}, "No user 'nobody'"),
        ({"owner": "stranger", "notebook": "nb.py"}, "belongs to another owner"),
        ({"give_up_after": -1}, "give_up_after"),
    ],
)
def test_command_errors(session: Session, options: dict[str, Any], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("kernel_status_bridge", url="http://127.0.0.1:1", session_id=SID, **options)
