"""The bridge against a real marimo server, with marimo's own GET /api/kernel/status as oracle.

Each test starts ``marimo edit`` headless on 127.0.0.1 with a two-cell notebook, bridges one
session into the mirror from a background thread, and checks that marimo's endpoint and ours
agree: running while a cell sleeps, idle after it finished, stopped after the kernel process
was killed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connections
from rest_framework.test import APIClient

from kernel_status import mirror
from kernel_status.bridge import BridgeConfig, MarimoBridge, Outcome
from kernel_status.choices import ProcessState
from kernel_status.models import KernelProcess
from tests.utils import eventually, free_port

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(sys.platform == "win32", reason="kills the kernel with SIGKILL (POSIX)"),
]

SID = "marimo-bridged"
SLEEP_CODE = "import time\n\ntime.sleep(4)"
OTHER_CODE = "x = 1 + 1"
NOTEBOOK = f"""import marimo

app = marimo.App()


@app.cell
def _():
{textwrap.indent(SLEEP_CODE, "    ")}
    return


@app.cell
def _():
{textwrap.indent(OTHER_CODE, "    ")}
    return (x,)


if __name__ == "__main__":
    app.run()
"""
STARTUP_TIMEOUT = 30.0
SCENARIO_TIMEOUT = 30.0
BRIDGE_LAG = 5.0  # how long the mirror may trail marimo


def require_marimo() -> None:
    if importlib.util.find_spec("marimo") is not None:
        return
    message = "marimo is not installed; install the test extra: pip install -e '.[test]'"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true requires these tests)")
    pytest.skip(message)


@dataclass
class MarimoServer:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    server_token: str = ""

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def headers(self, session_id: str) -> dict[str, str]:
        return {"Marimo-Session-Id": session_id, "Marimo-Server-Token": self.server_token}

    def status(self, session_id: str) -> str:
        code, body = self.get("/api/kernel/status", self.headers(session_id))
        assert code == 200, f"marimo answered {code}: {body!r}"
        state: str = json.loads(body)["state"]
        return state

    def run(self, session_id: str, cell_ids: list[str], codes: list[str]) -> None:
        request = urllib.request.Request(
            self.url + "/api/kernel/run",
            data=json.dumps({"cellIds": cell_ids, "codes": codes}).encode(),
            headers={**self.headers(session_id), "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response) == {"success": True}

    def kernel_pid(self) -> int:
        """The kernel: the server's multiprocessing child (not its resource tracker)."""
        listing = subprocess.run(
            ["ps", "-A", "-ww", "-o", "pid=,ppid=,command="],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in listing.splitlines():
            pid, ppid, command = line.split(None, 2)
            if int(ppid) == self.process.pid and "spawn_main" in command:
                return int(pid)
        raise AssertionError(f"marimo has no kernel process:\n{listing}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def marimo(tmp_path: Path) -> Iterator[MarimoServer]:
    require_marimo()
    notebook = tmp_path / "notebook.py"
    notebook.write_text(NOTEBOOK)
    home = tmp_path / "home"  # marimo's config and state stay out of the real home
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
                *(sys.executable, "-m", "marimo", "edit", str(notebook), "--headless"),
                *("--no-token", "--port", str(port), "--host", "127.0.0.1"),
                "--skip-update-check",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
            start_new_session=True,  # its own process group, so nothing it starts outlives it
        )
    server = MarimoServer(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_until_up(server)
        code, page = server.get("/")
        match = re.search(rb'"serverToken":\s*"([^"]+)"', page)
        assert code == 200, f"marimo's page answered {code}:\n{server.output()}"
        assert match, f"no server token in marimo's page:\n{server.output()}"
        server.server_token = match.group(1).decode()
        yield server
    finally:
        _stop(process)


def _wait_until_up(server: MarimoServer) -> None:
    def up() -> bool:
        assert server.process.poll() is None, f"marimo exited:\n{server.output()}"
        try:
            return server.get("/health")[0] == 200
        except OSError:
            return False

    eventually(up, STARTUP_TIMEOUT, "marimo to answer")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop marimo, then kill whatever is left in its process group (its kernel too)."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@dataclass
class Bridged:
    marimo: MarimoServer
    bridge: MarimoBridge
    client: APIClient
    result: dict[str, Any]
    thread: threading.Thread

    def marimo_state(self) -> str:
        return self.marimo.status(SID)

    def our_state(self) -> str:
        response = self.client.get("/api/kernel/status", headers={"Marimo-Session-Id": SID})
        assert response.status_code == 200, response.content
        state: str = response.json()["state"]
        return state

    def run_sleeping_cell(self) -> None:
        cell_ids = list(self.bridge.cell_ids)
        assert len(cell_ids) == 2, cell_ids
        self.marimo.run(SID, cell_ids[:1], [SLEEP_CODE])

    def agree(self, expected: str) -> None:
        """Both endpoints answer ``expected``: marimo first, then ours; ours first, then marimo."""
        eventually(lambda: self.marimo_state() == expected, SCENARIO_TIMEOUT, f"marimo {expected}")
        eventually(lambda: self.our_state() == expected, BRIDGE_LAG, f"ours {expected}")
        assert self.marimo_state() == expected
        eventually(lambda: self.our_state() == expected, SCENARIO_TIMEOUT, f"ours {expected}")
        eventually(lambda: self.marimo_state() == expected, BRIDGE_LAG, f"marimo {expected}")
        assert self.our_state() == expected


@pytest.fixture
def bridged(marimo: MarimoServer, users: dict[str, User]) -> Iterator[Bridged]:
    mirror.register_session(SID, owner=users["owner"], notebook="notebook.py")
    bridge = MarimoBridge(
        BridgeConfig(url=marimo.url, session_id=SID, heartbeat_interval=1.0, give_up_after=5.0)
    )
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["outcome"] = bridge.run()
        except BaseException as error:
            result["error"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=target, name="bridge", daemon=True)
    thread.start()
    client = APIClient()
    client.force_authenticate(users["owner"])
    state = Bridged(marimo, bridge, client, result, thread)
    try:
        # The bridge's connection creates marimo's session; kernel-ready names the cells.
        started = lambda: bool(bridge.cell_ids) or not thread.is_alive()  # noqa: E731
        eventually(started, STARTUP_TIMEOUT, "marimo's kernel-ready")
        assert "error" not in result, result
        yield state
    finally:
        bridge.stop()
        thread.join(15)
        assert not thread.is_alive(), "the bridge did not stop"
    assert "error" not in result, result


def test_both_say_running_while_a_cell_sleeps(bridged: Bridged) -> None:
    bridged.agree("idle")
    bridged.run_sleeping_cell()
    bridged.agree("running")


def test_both_say_idle_after_the_cell_finished(bridged: Bridged) -> None:
    bridged.run_sleeping_cell()
    bridged.agree("running")
    bridged.agree("idle")


def test_both_say_stopped_after_the_kernel_was_killed(bridged: Bridged) -> None:
    bridged.run_sleeping_cell()
    bridged.agree("running")
    os.kill(bridged.marimo.kernel_pid(), signal.SIGKILL)
    bridged.agree("stopped")
    bridged.thread.join(10)
    assert bridged.result.get("outcome") is Outcome.KERNEL_STOPPED
    kernel = KernelProcess.objects.get(session__session_id=SID)
    assert kernel.state == ProcessState.STOPPED
    assert kernel.exit_cause == "The kernel was stopped unexpectedly."
