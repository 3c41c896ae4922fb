"""The culler against a real marimo 0.25.2 server.

marimo serves a directory of two notebooks (a second session of the same notebook would only
be a read-only viewer of the first). One session of each is bridged into the mirror
(kernel_status.bridge): one stays idle, the other runs a sleeping cell.
``manage.py kernel_status_cull`` must shut the idle one down in marimo, record it closed in
the mirror, and leave the busy one running.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connections
from django.utils import timezone

from kernel_status import mirror
from kernel_status.bridge import BridgeConfig, MarimoBridge
from kernel_status.choices import ProcessState
from kernel_status.culler import MarimoServer as MarimoHome
from kernel_status.models import KernelProcess, Session
from tests.integration.test_bridge_marimo import (  # the real-marimo harness
    NOTEBOOK,
    STARTUP_TIMEOUT,
    MarimoServer,
    _stop,
    _wait_until_up,
    require_marimo,
)
from tests.utils import eventually, free_port

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(sys.platform == "win32", reason="stops marimo's process group (POSIX)"),
]

IDLE, BUSY = "cull-idle", "cull-busy"
LONG_SLEEP = "import time\n\ntime.sleep(60)"  # outlives the test; marimo is killed after it
IDLE_FOR = 2.0


@pytest.fixture
def marimo(tmp_path: Path) -> Iterator[MarimoServer]:
    """``marimo edit`` on a directory with idle.py and busy.py."""
    require_marimo()
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in ("idle.py", "busy.py"):
        (notebooks / name).write_text(NOTEBOOK)
    home = tmp_path / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "PYTHONUNBUFFERED": "1",
    }
    port = free_port()
    log = tmp_path / "marimo.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "marimo", "edit", str(notebooks), "--headless"),
                *("--no-token", "--port", str(port), "--host", "127.0.0.1"),
                "--skip-update-check",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
            start_new_session=True,
        )
    server = MarimoServer(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_until_up(server)
        server.server_token = MarimoHome(server.url).get_server_token()
        yield server
    finally:
        _stop(process)


@dataclass(frozen=True)
class NotebookBridgeConfig(BridgeConfig):
    """A bridge to one notebook of a marimo server that serves a directory."""

    file: str = ""

    @property
    def ws_url(self) -> str:
        return f"{super().ws_url}&{urlencode([('file', self.file)])}"


@dataclass
class Bridge:
    bridge: MarimoBridge
    thread: threading.Thread
    result: dict[str, Any]


def start_bridge(url: str, session_id: str, file: str) -> Bridge:
    config = NotebookBridgeConfig(
        url=url, session_id=session_id, heartbeat_interval=1.0, give_up_after=5.0, file=file
    )
    bridge = MarimoBridge(config)
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["outcome"] = bridge.run()
        except BaseException as error:
            result["error"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=target, name=f"bridge-{session_id}", daemon=True)
    thread.start()
    return Bridge(bridge, thread, result)


def mirrored_state(session_id: str) -> str:
    state: str = Session.objects.with_state().get(session_id=session_id).state
    return state


@pytest.fixture
def two_sessions(marimo: MarimoServer, users: dict[str, User]) -> Iterator[MarimoServer]:
    bridges = []
    for session_id, file in ((IDLE, "idle.py"), (BUSY, "busy.py")):
        mirror.register_session(session_id, owner=users["owner"], notebook=file)
        bridges.append(start_bridge(marimo.url, session_id, file))
    try:
        for b in bridges:
            ready = lambda b=b: bool(b.bridge.cell_ids) or not b.thread.is_alive()  # noqa: E731
            eventually(ready, STARTUP_TIMEOUT, "marimo's kernel-ready")
            assert "error" not in b.result, b.result
        busy = bridges[1].bridge
        marimo.run(BUSY, list(busy.cell_ids[:1]), [LONG_SLEEP])
        eventually(lambda: marimo.status(BUSY) == "running", 30, "marimo: busy session running")
        eventually(lambda: mirrored_state(BUSY) == "running", 10, "mirror: busy session running")
        eventually(lambda: mirrored_state(IDLE) == "idle", 10, "mirror: idle session idle")
        yield marimo
    finally:
        for b in bridges:
            b.bridge.stop()
        for b in bridges:
            b.thread.join(15)
            assert not b.thread.is_alive(), "a bridge did not stop"


def cull(marimo: MarimoServer, *args: str) -> str:
    out = io.StringIO()
    call_command(
        "kernel_status_cull",
        *("--marimo-url", marimo.url, "--idle-for", f"{IDLE_FOR:g}", *args),
        stdout=out,
    )
    return out.getvalue()


def test_the_culler_shuts_down_the_idle_session_only(two_sessions: MarimoServer) -> None:
    marimo = two_sessions
    home = MarimoHome(marimo.url, server_token=marimo.server_token)
    assert home.running_sessions() >= {IDLE, BUSY}
    # The bridges recorded each kernel's start; the busy one's cell started running after.
    idle, busy = (Session.objects.get(session_id=sid) for sid in (IDLE, BUSY))
    assert idle.last_activity is not None
    assert busy.last_activity is not None
    assert busy.last_activity > idle.last_activity
    # Past the threshold: nothing happens in the idle session (heartbeats do not count).
    threshold = timedelta(seconds=IDLE_FOR)
    since = idle.last_activity
    eventually(lambda: timezone.now() - since > threshold, 10, "idle_for to pass")

    dry = cull(marimo, "--dry-run")
    assert f"would shut down: {IDLE} (idle.py) idle" in dry, dry
    assert BUSY not in dry
    assert home.running_sessions() >= {IDLE, BUSY}  # a dry run changes nothing
    assert mirrored_state(IDLE) == "idle"

    output = cull(marimo)  # the server token comes from marimo's page
    lines = output.splitlines()
    assert lines[0].startswith(f"shut down: {IDLE} (idle.py) idle, "), output
    assert lines[1].startswith("shut down 1 session(s) idle for at least 2 s on "), output
    assert len(lines) == 2, output

    running = home.running_sessions()
    assert IDLE not in running
    assert BUSY in running
    assert marimo.status(BUSY) == "running"
    assert mirrored_state(IDLE) == "stopped"
    assert KernelProcess.objects.get(session__session_id=IDLE).state == ProcessState.STOPPED
    assert mirrored_state(BUSY) == "running"

    again = cull(marimo)  # nothing left to do
    assert again.startswith("shut down 0 session(s) idle for at least 2 s"), again


def test_the_culler_says_why_marimo_refused(two_sessions: MarimoServer) -> None:
    with pytest.raises(CommandError) as refused:
        cull(two_sessions, "--server-token", "not-the-token")
    message = str(refused.value)
    assert message.startswith("marimo refused to list its sessions: POST /api/home/"), message
    assert "answered 401" in message
    assert mirrored_state(IDLE) == "idle"  # nothing was recorded
    assert MarimoHome(two_sessions.url).running_sessions() >= {IDLE, BUSY}
