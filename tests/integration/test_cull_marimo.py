"""The culler against a real marimo 0.25.2 server.

marimo serves a directory of two notebooks (a second session of the same notebook would only
be a read-only viewer of the first). A tab opens each; one bridge follows both into the mirror
(kernel_status.contrib.marimo): one stays idle, the other runs a sleeping cell.
``manage.py kernel_status_cull`` must shut the idle one down in marimo, record it closed in
the mirror, and leave the busy one running.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connections
from django.utils import timezone

from kernel_status import mirror
from kernel_status.choices import ProcessState
from kernel_status.contrib.marimo.client import MarimoHome
from kernel_status.models import KernelProcess, Session
from tests.integration.marimo_server import (  # the real-marimo harness
    STARTUP_TIMEOUT,
    BridgeThread,
    MarimoServer,
    Tab,
    notebook,
    serve_notebooks,
)
from tests.utils import eventually

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
    source = notebook("x = 1", "y = 2")
    with serve_notebooks(tmp_path, {"idle.py": source, "busy.py": source}) as server:
        yield server


def mirrored_state(session_id: str) -> str:
    state: str = Session.objects.with_state().get(session_id=session_id).state
    return state


@pytest.fixture
def two_sessions(marimo: MarimoServer, users: dict[str, User]) -> Iterator[MarimoServer]:
    """A tab on each notebook, both mirrored by one bridge (direct mode)."""
    tabs = {
        sid: Tab(marimo, path, session_id=sid)
        for sid, path in ((IDLE, "idle.py"), (BUSY, "busy.py"))
    }
    for session_id, tab in tabs.items():
        tab.wait_ready()
        mirror.register_session(session_id, owner=users["owner"], notebook=tab.path)
    bridge = BridgeThread(marimo)
    try:
        for session_id in tabs:
            eventually(
                lambda sid=session_id: KernelProcess.objects.filter(
                    session__session_id=sid, state=ProcessState.RUNNING
                ).exists(),
                STARTUP_TIMEOUT,
                f"the bridge to follow {session_id}",
            )
        code, body = marimo.run(BUSY, tabs[BUSY].cell_ids[:1], [LONG_SLEEP])
        assert (code, body) == (200, {"success": True})
        eventually(lambda: marimo.status(BUSY) == "running", 30, "marimo: busy session running")
        eventually(lambda: mirrored_state(BUSY) == "running", 10, "mirror: busy session running")
        eventually(lambda: mirrored_state(IDLE) == "idle", 10, "mirror: idle session idle")
        yield marimo
    finally:
        bridge.stop()
        for tab in tabs.values():
            tab.close()
        connections.close_all()


def cull(marimo: MarimoServer, *args: str) -> str:
    out = io.StringIO()
    call_command(
        "kernel_status_cull",
        *("--marimo-url", marimo.url, "--idle-for", f"{IDLE_FOR:g}", *args),
        stdout=out,
    )
    return out.getvalue()


@pytest.fixture
def home(two_sessions: MarimoServer) -> Iterator[MarimoHome]:
    """The culler's own client of marimo's home endpoints, to check what marimo lists."""
    with MarimoHome(two_sessions.url, server_token=two_sessions.server_token) as home:
        yield home


def test_the_culler_shuts_down_the_idle_session_only(
    two_sessions: MarimoServer, home: MarimoHome
) -> None:
    marimo = two_sessions
    assert home.running_sessions().keys() >= {IDLE, BUSY}
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
    assert home.running_sessions().keys() >= {IDLE, BUSY}  # a dry run changes nothing
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
    with MarimoHome(two_sessions.url) as home:
        assert home.running_sessions().keys() >= {IDLE, BUSY}
