"""Lag of the marimo bridge: from a cell-op leaving marimo to its mirror row being committed.

Starts a real marimo server (the test extra's marimo 0.25.2) on a notebook of 50 quick cells,
opens it from a websocket client that plays the browser tab, and runs all 50 cells through
the tab's session id, ``ROUNDS`` times per mode. The bridge follows the session:

- direct mode: events applied with the write API on a throwaway test database;
- HTTP mode: events posted to ``POST /api/kernel/events`` of the example project served by
  ``manage.py runserver`` in a process of its own (DEBUG off), on the same database, with a
  service account's token.

Lag is measured per cell-op: the bridge's clock when the batch holding it was committed (the
write API returned, or the endpoint answered 200) minus the frame's ``timestamp``, stamped by
marimo's kernel on the same machine. The baseline, measured in the same run on the same
frames, is when the tab's plain websocket client received them: what marimo's transport
costs anyway.

    python benchmarks/bridge_lag.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kernel_status python benchmarks/bridge_lag.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("DJANGO_DEBUG", "0")  # DEBUG keeps every query in memory

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Permission  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment, teardown_test_environment  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from kernel_status import mirror  # noqa: E402
from kernel_status.contrib.marimo.writer import (  # noqa: E402
    DirectSink,
    HttpSink,
    SendResult,
    Sent,
    Sink,
)
from kernel_status.events import CellNotification, KernelEvent  # noqa: E402
from kernel_status.models import Session  # noqa: E402
from tests.integration.marimo_server import (  # noqa: E402
    BridgeThread,
    MarimoServer,
    Tab,
    eventually,
    marimo_server,
    notebook,
)
from tests.utils import free_port  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CELLS = 50
ROUNDS = int(os.environ.get("BRIDGE_LAG_ROUNDS", "10"))


class TimedSink:
    """Notes, per live cell-op, when the batch holding it was committed."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.lags: list[float] = []
        self.measuring = False

    async def send(self, session_id: str, events: Sequence[KernelEvent]) -> SendResult:
        result = await self.inner.send(session_id, events)
        committed = time.time()
        if result.outcome is Sent.WRITTEN and self.measuring:
            self.lags.extend(
                committed - event.timestamp.timestamp()
                for event in events
                if isinstance(event, CellNotification)
            )
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()


def measure(marimo: MarimoServer, tab: Tab, sink: TimedSink) -> tuple[list[float], list[float]]:
    """Run every cell ROUNDS times; the bridge's lags and the tab's, for the same cell-ops."""
    bridge = BridgeThread(marimo, sink, poll_interval=0.5, heartbeat_interval=5.0)
    try:
        eventually(lambda: tab.session_id in bridge.bridge.followers, 30, "the bridge to follow")
        eventually(lambda: bridge.bridge.followers[tab.session_id].attached, 30, "the attach")
        time.sleep(1.0)  # the attach's replay is written, and is not measured
        sink.measuring = True
        first_frame = len(tab.frames)
        codes = [f"v{i} = {i}" for i in range(CELLS)]
        for _ in range(ROUNDS):
            runs = tab.ops_since(0).count("completed-run")
            code, body = marimo.run(tab.session_id, tab.cell_ids, codes)
            assert (code, body) == (200, {"success": True}), body
            # One run at a time: marimo says this one completed, and all of it is written.
            eventually(lambda r=runs: tab.ops_since(0).count("completed-run") > r, 60, "the run")
            eventually(lambda: state(tab.session_id) == "idle", 60, "the mirror idle")
            eventually(lambda: bridge.bridge.writer.queued_events == 0, 60, "the writer")
        sink.measuring = False
    finally:
        bridge.stop()
    tab_lags = [
        received - message["data"]["timestamp"]
        for received, message in tab.frames[first_frame:]
        if message["op"] == "cell-op"
    ]
    return sink.lags, tab_lags


def state(session_id: str) -> str:
    value: str = Session.objects.with_state().get(session_id=session_id).state
    return value


def percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000, ordered[-1] * 1000


def test_database_url() -> str:
    """DATABASE_URL of the test database, for the server process."""
    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        return f"sqlite:///{name}"
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


@contextmanager
def api_server() -> Iterator[str]:
    """``manage.py runserver`` on the test database; the events endpoint's URL."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": test_database_url(), "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, str(REPO / "manage.py"), "runserver", "--noreload", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            urllib.request.urlopen(f"{url}/api/kernel/status", timeout=1)
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    try:
        eventually(up, 30, "runserver")
        yield f"{url}/api/kernel/events"
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    if connection.vendor == "sqlite":
        test_file = Path(tempfile.mkdtemp()) / "bench.sqlite3"
        connection.settings_dict["TEST"]["NAME"] = str(test_file)
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    work = Path(tempfile.mkdtemp())
    folder = work / "notebooks"
    folder.mkdir()
    (folder / "fifty.py").write_text(notebook(*(f"v{i} = {i}" for i in range(CELLS))))
    try:
        user_model = get_user_model()
        owner = user_model.objects.create(username="bench")
        service = user_model.objects.create(username="bridge")
        service.user_permissions.add(Permission.objects.get(codename="report_kernel_events"))
        token = Token.objects.create(user=service).key
        with marimo_server(folder, work) as marimo, api_server() as api:
            tab = Tab(marimo, "fifty.py")
            assert len(tab.wait_ready()) == CELLS
            mirror.register_session(tab.session_id, owner=owner, notebook="fifty.py")
            results = {
                "direct": measure(marimo, tab, TimedSink(DirectSink())),
                "http": measure(marimo, tab, TimedSink(HttpSink(api, token))),
            }
            tab.close()
        print(
            f"database: {connection.vendor}  (Django {django.get_version()}); "
            f"{CELLS} cells x {ROUNDS} runs per mode"
        )
        print(
            f"{'mode':>7} {'cell-ops':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
            f" {'tab p50':>8} {'tab p99':>8} {'p50 ratio':>9}"
        )
        for mode, (lags, tab_lags) in results.items():
            p50, p99, worst = percentiles(lags)
            t50, t99, _ = percentiles(tab_lags)
            print(
                f"{mode:>7} {len(lags):>8} {p50:>8.1f} {p99:>8.1f} {worst:>8.1f}"
                f" {t50:>8.1f} {t99:>8.1f} {p50 / t50:>8.1f}x"
            )
    finally:
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
