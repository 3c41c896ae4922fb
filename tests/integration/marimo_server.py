"""A real marimo server on a folder of notebooks, websocket clients that play browser tabs,
and the bridge in a thread.

Shared by the real-marimo tests in tests/integration/ and by benchmarks/bridge_lag.py.
"""

from __future__ import annotations

import asyncio
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
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.utils import eventually, free_port, stop

__all__ = [
    "STARTUP_TIMEOUT",
    "BridgeThread",
    "MarimoServer",
    "Tab",
    "eventually",
    "marimo_missing",
    "marimo_server",
    "notebook",
    "serve_notebooks",
    "serve_notebooks_in",
]

STARTUP_TIMEOUT = 60.0


def marimo_missing() -> str | None:
    if importlib.util.find_spec("marimo") is None:
        return (
            "marimo is not installed; install the test group: make install, or "
            "pip install -e '.[marimo]' --group test"
        )
    return None


@contextlib.contextmanager
def serve_notebooks(tmp_path: Path, notebooks: dict[str, str]) -> Iterator[MarimoServer]:
    """``marimo edit`` on ``tmp_path/notebooks`` holding ``notebooks`` (file name: source).

    Skips without marimo, and fails instead under ``CI=true``, where these tests must run.
    """
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name, source in notebooks.items():
        (folder / name).write_text(source)
    with serve_notebooks_in(folder, tmp_path) as server:
        yield server


@contextlib.contextmanager
def serve_notebooks_in(
    folder: Path, workdir: Path, *, token: str | None = None
) -> Iterator[MarimoServer]:
    """:func:`marimo_server` on ``folder``, skipped (or failed under ``CI=true``) without
    marimo."""
    import pytest  # here: benchmarks/bridge_lag.py uses this module without pytest

    missing = marimo_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (CI=true requires these tests)")
        pytest.skip(missing)
    with marimo_server(folder, workdir, token=token) as server:
        yield server


def notebook(*codes: str) -> str:
    """A marimo notebook whose cells hold ``codes``."""
    cells = "".join(
        f"\n\n@app.cell\ndef _():\n{textwrap.indent(code, '    ')}\n    return\n" for code in codes
    )
    footer = "\n\nif __name__ == '__main__':\n    app.run()\n"
    return f"import marimo\n\napp = marimo.App()\n{cells}{footer}"


@dataclass
class MarimoServer:
    process: subprocess.Popen[bytes]
    url: str
    folder: Path
    log: Path
    server_token: str = ""
    token: str | None = None  # marimo's access token, if it runs with one

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Marimo-Server-Token": self.server_token,
                **({"Authorization": f"Bearer {self.token}"} if self.token else {}),
                **(headers or {}),
            },
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _json(error.read())

    def status(self, session_id: str) -> str:
        """marimo's own GET /api/kernel/status: the oracle."""
        code, body = self.request(
            "GET", "/api/kernel/status", headers={"Marimo-Session-Id": session_id}
        )
        if code == 500 and "Invalid session id" in str(body):
            return "gone"
        assert code == 200, f"marimo answered {code}: {body!r}"
        state: str = body["state"]
        return state

    def run(self, session_id: str, cell_ids: list[str], codes: list[str]) -> tuple[int, Any]:
        """Run cells as the tab does: its session id, plus marimo's server token."""
        return self.request(
            "POST",
            "/api/kernel/run",
            {"cellIds": cell_ids, "codes": codes},
            {"Marimo-Session-Id": session_id},
        )

    def running(self) -> dict[str, str]:
        code, body = self.request("POST", "/api/home/running_notebooks", {})
        assert code == 200, body
        return {entry["sessionId"]: entry["path"] for entry in body["files"]}

    def shutdown(self, session_id: str) -> None:
        code, body = self.request("POST", "/api/home/shutdown_session", {"sessionId": session_id})
        assert code == 200, body

    def kernel_pids(self) -> list[int]:
        """The kernels: the server's multiprocessing children."""
        listing = subprocess.run(
            ["ps", "-A", "-ww", "-o", "pid=,ppid=,command="],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [
            int(pid)
            for pid, ppid, command in (line.split(None, 2) for line in listing.splitlines())
            if int(ppid) == self.process.pid and "spawn_main" in command
        ]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


@contextlib.contextmanager
def marimo_server(
    folder: Path, workdir: Path, *, port: int | None = None, token: str | None = None
) -> Iterator[MarimoServer]:
    """``marimo edit <folder> --headless`` on ``port`` (a free one by default), with access
    token ``token`` (none by default); killed with its kernels after. Entered again with the
    same port, it is marimo restarted."""
    home = workdir / "marimo-home"  # marimo's config and state stay out of the real home
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "PYTHONUNBUFFERED": "1",
    }
    port = port or free_port()
    log = workdir / "marimo.log"
    auth = ("--token-password", token) if token else ("--no-token",)
    with log.open("ab") as out:  # appended: a restarted server keeps the log before
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "marimo", "edit", str(folder), "--headless"),
                *(*auth, "--port", str(port), "--host", "127.0.0.1"),
                "--skip-update-check",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,  # its own process group: nothing it starts outlives it
        )
    server = MarimoServer(process, f"http://127.0.0.1:{port}", folder, log, token=token)
    try:
        eventually(lambda: _up(server), STARTUP_TIMEOUT, "marimo to answer")
        code, page = server.request("GET", "/")
        match = re.search(r'"serverToken":\s*"([^"]+)"', str(page))
        assert code == 200, f"marimo's page answered {code}:\n{server.output()}"
        assert match, f"no server token in marimo's page:\n{server.output()}"
        server.server_token = match.group(1)
        yield server
    finally:
        stop(process)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _up(server: MarimoServer) -> bool:
    assert server.process.poll() is None, f"marimo exited:\n{server.output()}"
    try:
        return server.request("GET", "/health")[0] == 200
    except OSError:
        return False


@dataclass
class Tab:
    """A websocket client that connects as a browser tab does: its own id and the file."""

    server: MarimoServer
    path: str
    session_id: str = field(default_factory=lambda: f"tab-{uuid.uuid4().hex[:12]}")
    frames: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    closed: tuple[int | None, str | None] | None = None
    cell_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from websockets.sync.client import connect

        url = self.server.url.replace("http", "ws", 1)
        self._socket = connect(
            f"{url}/ws?session_id={self.session_id}&file={self.path}", max_size=None
        )
        self._reader = threading.Thread(target=self._read, name=f"tab {self.path}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            with self._socket:
                for raw in self._socket:
                    message = json.loads(raw)
                    if message["op"] == "kernel-ready":
                        self.cell_ids = list(message["data"]["cell_ids"])
                    self.frames.append((time.time(), message))
        except ConnectionClosed:
            pass
        self.closed = (self._socket.close_code, self._socket.close_reason)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> list[str]:
        eventually(lambda: bool(self.cell_ids) or self.closed is not None, timeout, "kernel-ready")
        assert self.closed is None, f"marimo closed the tab: {self.closed}"
        return self.cell_ids

    @property
    def is_open(self) -> bool:
        return self.closed is None and self._reader.is_alive()

    def ops_since(self, index: int) -> list[str]:
        return [message["op"] for _, message in self.frames[index:]]

    def close(self) -> None:
        self._socket.close()
        self._reader.join(10)


class BridgeThread:
    """The bridge in a thread of this process, with its own event loop."""

    def __init__(self, marimo: MarimoServer, sink: Any = None, **settings: Any) -> None:
        from kernel_status.contrib.marimo.bridge import BridgeSettings, MarimoBridge
        from kernel_status.contrib.marimo.writer import DirectSink, Writer

        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()
        options = {"poll_interval": 0.3, "heartbeat_interval": 1.0, **settings}
        self.bridge = MarimoBridge(
            BridgeSettings(marimo.url, **options),
            Writer(sink or DirectSink(), unknown_retry=0.5),
        )
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="bridge", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self.bridge.run(self.stop_event))
        except BaseException as error:
            self.error = error
        finally:
            self.loop.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the bridge did not stop"
        assert self.error is None, self.error
