"""The marimo bridge against a real marimo 0.25.2 server on a folder of notebooks.

Websocket clients play the browser tabs (``/ws?session_id=<tab id>&file=<path>``), cells run
through the tabs' session ids (``POST /api/kernel/run``), and marimo's own
``GET /api/kernel/status`` is the oracle the mirror must agree with. HTTP mode runs the
``kernel_status_bridge`` command as its own process against pytest-django's live server;
direct mode runs the bridge in a thread of the test process, on the test database.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connections
from rest_framework.authtoken.models import Token

from kernel_status import mirror
from kernel_status.choices import ProcessState
from kernel_status.contrib.marimo.translate import SESSION_CLOSED_CAUSE
from kernel_status.models import CellStatus, KernelProcess, Session
from tests.integration.marimo_server import (
    BridgeThread,
    MarimoServer,
    Tab,
    eventually,
    marimo_server,
    notebook,
    serve_notebooks,
    serve_notebooks_in,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and process groups"),
]

REPO = Path(__file__).resolve().parents[2]
SLEEP_CODE = "import time\n\ntime.sleep(2)"
CODES = ["x = 1", SLEEP_CODE]
SCENARIO_TIMEOUT = 30.0
BRIDGE_LAG = 5.0  # how long the mirror may trail marimo
RECOVERY = 20.0  # under the 30 s of backoff the restart test's bridge would otherwise sleep
FAST = ["--poll-interval", "0.3", "--heartbeat-interval", "1", "--unknown-retry", "0.5"]


@pytest.fixture
def marimo(tmp_path: Path) -> Iterator[MarimoServer]:
    notebooks = {f"{name}.py": notebook(*CODES) for name in "abcd"}
    with serve_notebooks(tmp_path, notebooks) as server:
        yield server


def our_state(session_id: str) -> str:
    state: str = Session.objects.with_state().get(session_id=session_id).state
    return state


def agree(marimo: MarimoServer, session_id: str, expected: str) -> None:
    """Both answer ``expected``: marimo first, then ours within the bridge's lag."""
    eventually(
        lambda: marimo.status(session_id) == expected, SCENARIO_TIMEOUT, f"marimo {expected}"
    )
    eventually(lambda: our_state(session_id) == expected, BRIDGE_LAG, f"mirror {expected}")
    assert marimo.status(session_id) == expected


def run_cells(marimo: MarimoServer, tab: Tab) -> None:
    code, body = marimo.run(tab.session_id, tab.cell_ids, CODES)
    assert (code, body) == (200, {"success": True})


def register(tab: Tab, owner: User) -> None:
    mirror.register_session(tab.session_id, owner=owner, notebook=tab.path)


def kernel_running(session_id: str) -> bool:
    return KernelProcess.objects.filter(
        session__session_id=session_id, state=ProcessState.RUNNING
    ).exists()


# --- the bridge, as a process (HTTP mode) or in a thread (direct mode) ---------------------------


@dataclass
class BridgeProcess:
    process: subprocess.Popen[bytes]
    log: Path
    health: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def followed(self) -> set[str]:
        return set(re.findall(r"Following session '([^']+)'", self.output()))

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(20)


def start_bridge_process(
    marimo: MarimoServer, live_server: Any, tmp_path: Path, **env: str
) -> BridgeProcess:
    """``kernel_status_bridge`` in HTTP mode, as its own process, with ``env`` added."""
    service, _ = User.objects.get_or_create(username="bridge-service")
    service.user_permissions.add(Permission.objects.get(codename="report_kernel_events"))
    token, _ = Token.objects.get_or_create(user=service)
    log = tmp_path / "bridge.log"
    env = {
        **os.environ,
        "KERNEL_STATUS_BRIDGE_TOKEN": token.key,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "DJANGO_SETTINGS_MODULE": "project.settings",
        **env,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, str(REPO / "manage.py"), "kernel_status_bridge"),
                *("--marimo-url", marimo.url),
                *("--api-url", f"{live_server.url}/api/kernel/events"),
                *FAST,
                "--health-file",
                str(tmp_path / "health.json"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )
    return BridgeProcess(process, log, tmp_path / "health.json")


@pytest.fixture
def http_bridge(marimo: MarimoServer, live_server: Any, tmp_path: Path) -> Iterator[BridgeProcess]:
    bridge = start_bridge_process(marimo, live_server, tmp_path)
    try:
        yield bridge
    finally:
        if bridge.process.poll() is None:
            bridge.process.kill()
            bridge.process.wait(10)


# --- the tests ----------------------------------------------------------------------------------


def test_http_mode_follows_the_tab_without_displacing_it(
    marimo: MarimoServer, http_bridge: BridgeProcess, users: dict[str, User]
) -> None:
    tab = Tab(marimo, "a.py")
    tab.wait_ready()
    register(tab, users["owner"])
    eventually(lambda: kernel_running(tab.session_id), SCENARIO_TIMEOUT, "the bridge's attach")
    agree(marimo, tab.session_id, "idle")

    before = len(tab.frames)
    run_cells(marimo, tab)  # through the tab's own session id: accepted
    agree(marimo, tab.session_id, "running")
    agree(marimo, tab.session_id, "idle")
    assert tab.is_open
    assert tab.ops_since(before).count("cell-op") >= 6  # queued, running, idle per cell

    before = len(tab.frames)
    run_cells(marimo, tab)  # the tab can still run cells: the bridge took nothing away
    agree(marimo, tab.session_id, "running")
    agree(marimo, tab.session_id, "idle")
    assert tab.is_open
    assert "cell-op" in tab.ops_since(before)

    # The bridge created no session, and the mirror keeps marimo's (the tab's) session id.
    assert marimo.running() == {tab.session_id: "a.py"}
    assert list(Session.objects.values_list("session_id", flat=True)) == [tab.session_id]

    health = json.loads(http_bridge.health.read_text())
    assert health["marimo_reachable"] is True
    assert health["sessions"] == health["attached"] == [tab.session_id]
    assert health["unknown_to_mirror"] == []
    assert health["written_batches"] > 0

    # The kernel dies: marimo says so, and the mirror records the stop with marimo's words.
    for pid in marimo.kernel_pids():
        os.kill(pid, signal.SIGKILL)
    eventually(lambda: our_state(tab.session_id) == "stopped", SCENARIO_TIMEOUT, "stopped")
    kernel = KernelProcess.objects.get(session__session_id=tab.session_id)
    assert kernel.exit_cause == "The kernel was stopped unexpectedly."

    assert http_bridge.stop() == 0
    output = http_bridge.output()
    assert http_bridge.followed() == {tab.session_id}
    assert f"Session '{tab.session_id}': attached read-only (2 cells)" in output
    # Its own fresh id, the notebook's file key, kiosk: never the tab's id.
    (attach_url,) = re.findall(rf"Session '{tab.session_id}': attaching as (\S+)", output)
    assert re.search(
        r"\?session_id=kernel-status-bridge-[0-9a-f]{32}&file=a.py&kiosk=true$", attach_url
    )
    assert "ERROR" not in output, output


def mirrored(session_id: str) -> tuple[Any, ...]:
    """What a bridge restart must leave alone: the kernel's start, the cells, the activity."""
    kernel = KernelProcess.objects.get(session__session_id=session_id)
    cells = CellStatus.objects.filter(session__session_id=session_id).order_by("cell_id")
    return (
        kernel.state,
        kernel.started_at,
        list(cells.values_list("cell_id", "status", "status_at", "stale", "stale_at")),
        Session.objects.get(session_id=session_id).last_activity,
    )


def last_heartbeat(session_id: str) -> datetime:
    heard = KernelProcess.objects.get(session__session_id=session_id).last_heartbeat_at
    assert heard is not None
    return heard


def test_direct_mode_follows_the_tab(
    marimo: MarimoServer, users: dict[str, User], tmp_path: Path
) -> None:
    tab = Tab(marimo, "b.py")
    tab.wait_ready()
    register(tab, users["owner"])
    health = tmp_path / "health.json"
    bridge = BridgeThread(marimo, health_file=health)
    try:
        eventually(lambda: kernel_running(tab.session_id), SCENARIO_TIMEOUT, "the attach")
        agree(marimo, tab.session_id, "idle")
        before = len(tab.frames)
        run_cells(marimo, tab)
        agree(marimo, tab.session_id, "running")
        agree(marimo, tab.session_id, "idle")
        assert tab.is_open
        assert tab.ops_since(before).count("cell-op") >= 6
        assert marimo.running() == {tab.session_id: "b.py"}
        assert set(bridge.bridge.followers) == {tab.session_id}
        assert bridge.bridge.followed_total == 1
    finally:
        bridge.stop()

    # The bridge restarts with the same health file while the kernel runs on: the second
    # process reports the same start, so the cells are not reset and the restart is no
    # activity. Its heartbeats keep the kernel alive, and it follows the next run.
    kept = mirrored(tab.session_id)
    heard = last_heartbeat(tab.session_id)
    bridge = BridgeThread(marimo, health_file=health)
    try:
        eventually(
            lambda: last_heartbeat(tab.session_id) > heard,
            SCENARIO_TIMEOUT,
            "the second bridge's attach",
        )
        assert mirrored(tab.session_id) == kept
        agree(marimo, tab.session_id, "idle")
        run_cells(marimo, tab)
        agree(marimo, tab.session_id, "running")
        agree(marimo, tab.session_id, "idle")
        assert mirrored(tab.session_id)[1] == kept[1]  # the same kernel
    finally:
        bridge.stop()
    connections.close_all()


# The heaviest scenario (four sessions): in the Django 5.2 passes only, with the other slow
# tests. What the bridge does does not depend on the Django version.
@pytest.mark.slow
def test_one_bridge_process_follows_sessions_that_come_and_go(
    marimo: MarimoServer, http_bridge: BridgeProcess, users: dict[str, User]
) -> None:
    owner = users["owner"]
    tabs = {name: Tab(marimo, f"{name}.py") for name in ("a", "b", "c")}
    for tab in tabs.values():
        tab.wait_ready()
    register(tabs["a"], owner)
    register(tabs["b"], owner)  # c is not registered yet: the platform is late
    for name in ("a", "b"):
        eventually(lambda n=name: kernel_running(tabs[n].session_id), SCENARIO_TIMEOUT, name)
    eventually(
        lambda: f"Session '{tabs['c'].session_id}' is not in the mirror" in http_bridge.output(),
        SCENARIO_TIMEOUT,
        "the bridge to notice the unregistered session",
    )

    # A session opened while the bridge runs is followed; the late registration is caught up.
    tabs["d"] = Tab(marimo, "d.py")
    tabs["d"].wait_ready()
    register(tabs["d"], owner)
    register(tabs["c"], owner)
    for name in ("c", "d"):
        eventually(lambda n=name: kernel_running(tabs[n].session_id), SCENARIO_TIMEOUT, name)

    for tab in tabs.values():
        run_cells(marimo, tab)
    for tab in tabs.values():
        agree(marimo, tab.session_id, "running")
    for tab in tabs.values():
        agree(marimo, tab.session_id, "idle")

    # A session closed while the bridge runs is recorded as stopped; the others carry on.
    marimo.shutdown(tabs["b"].session_id)
    eventually(lambda: our_state(tabs["b"].session_id) == "stopped", SCENARIO_TIMEOUT, "b")
    kernel = KernelProcess.objects.get(session__session_id=tabs["b"].session_id)
    assert kernel.exit_cause == SESSION_CLOSED_CAUSE
    run_cells(marimo, tabs["a"])
    agree(marimo, tabs["a"].session_id, "running")
    assert all(tabs[n].is_open for n in ("a", "c", "d"))
    # The bridge's socket to b was closed too; a kiosk attach by file creates no session.
    assert marimo.running() == {tabs[n].session_id: f"{n}.py" for n in ("a", "c", "d")}

    assert http_bridge.stop() == 0
    assert http_bridge.followed() == {tab.session_id for tab in tabs.values()}
    output = http_bridge.output()
    assert f"Session '{tabs['c'].session_id}' is in the mirror now" in output
    assert "ERROR" not in output, output


def test_the_bridge_follows_new_sessions_after_marimo_restarts(
    tmp_path: Path, users: dict[str, User], caplog: pytest.LogCaptureFixture
) -> None:
    """marimo stops and starts again on the same port: the old session is recorded as ended,
    and a session opened on the new server is followed, without waiting out a backoff."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.py").write_text(notebook(*CODES))
    first = contextlib.ExitStack()
    marimo = first.enter_context(serve_notebooks_in(folder, tmp_path))
    bridge: BridgeThread | None = None  # None once stopped
    try:
        old = Tab(marimo, "a.py")
        old.wait_ready()
        register(old, users["owner"])
        # A backoff of at least 30 s, longer than the waits below: only an early listing
        # (marimo's /health answering again) can pick up the restarted server in time.
        bridge = thread = BridgeThread(marimo, backoff_initial=60.0, backoff_max=60.0)
        eventually(lambda: kernel_running(old.session_id), SCENARIO_TIMEOUT, "the attach")

        with caplog.at_level(logging.INFO, "kernel_status.contrib.marimo"):
            first.close()  # marimo stops, with its kernels
            eventually(lambda: not thread.bridge.marimo_reachable, SCENARIO_TIMEOUT, "the outage")
            with marimo_server(folder, tmp_path, port=urlsplit(marimo.url).port) as again:
                new = Tab(again, "b.py")
                new.wait_ready()
                register(new, users["owner"])
                eventually(lambda: kernel_running(new.session_id), RECOVERY, "the new attach")
                assert set(thread.bridge.followers) == {new.session_id}
                thread.stop()
                bridge = None
        assert our_state(old.session_id) == "stopped"
        assert our_state(new.session_id) == "idle"
        assert "marimo answers /health again; listing its sessions" in caplog.messages
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        if bridge is not None:
            bridge.stop()
        first.close()
        connections.close_all()


def test_a_wrong_marimo_token_is_reported_as_unauthorized(tmp_path: Path, live_server: Any) -> None:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "a.py").write_text(notebook(*CODES))
    with serve_notebooks_in(folder, tmp_path, token="the-right-token") as marimo:
        bridge = start_bridge_process(
            marimo, live_server, tmp_path, KERNEL_STATUS_MARIMO_TOKEN="a-wrong-token"
        )
        try:
            assert bridge.process.wait(SCENARIO_TIMEOUT) == 1  # not retried forever
        finally:
            if bridge.process.poll() is None:
                bridge.process.kill()
    health = json.loads(bridge.health.read_text())
    assert health["marimo"] == "unauthorized"
    assert health["marimo_reachable"] is False
    assert "/auth/login" in health["marimo_error"]
    output = bridge.output()
    assert re.search(
        r" ERROR marimo refused the bridge's access token \(wrong token\): GET / answered 303, "
        r"a redirect to \S*/auth/login",
        output,
    ), output
    assert "--marimo-token-file or $KERNEL_STATUS_MARIMO_TOKEN" in output
    assert "unreachable" not in output
