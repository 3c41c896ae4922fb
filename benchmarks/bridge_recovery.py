"""Recovery of the marimo bridge: from marimo answering ``/health`` again after a restart to
a session opened on the restarted server being followed.

Starts a real marimo server (the test extra's marimo 0.25.2), opens a notebook from a
websocket client that plays the browser tab, and lets the bridge (in a thread, with its
default poll and heartbeat intervals, writing to a sink that accepts everything) follow it.
Then, ``ROUNDS`` times: stop marimo, leave it down for ``OUTAGE`` seconds (so that the
bridge's listing backoff has grown, as in a real outage), start it again on the same port,
and open a new tab as soon as ``/health`` answers, as a reconnecting browser would. Printed
per round, from the first 200 of ``/health`` (polled every 10 ms):

- listed: the bridge starts following the new session (its ``Following session`` step);
- attached: marimo accepted the bridge's read-only attach (``kernel-ready``);
- tab ready: the tab's own ``kernel-ready``, what marimo's kernel start costs anyway.

    python benchmarks/bridge_recovery.py
    BRIDGE_RECOVERY_ROUNDS=5 BRIDGE_RECOVERY_OUTAGE=20 python benchmarks/bridge_recovery.py
    BRIDGE_RECOVERY_LOG=1 python benchmarks/bridge_recovery.py  # with the bridge's log
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django

django.setup()

from kernel_status.contrib.marimo.bridge import MarimoBridge  # noqa: E402
from kernel_status.contrib.marimo.writer import SendResult, Sent  # noqa: E402
from kernel_status.events import KernelEvent  # noqa: E402
from tests.integration.marimo_server import (  # noqa: E402
    STARTUP_TIMEOUT,
    BridgeThread,
    Tab,
    eventually,
    marimo_server,
    notebook,
)
from tests.utils import free_port  # noqa: E402

ROUNDS = int(os.environ.get("BRIDGE_RECOVERY_ROUNDS", "3"))
OUTAGE = float(os.environ.get("BRIDGE_RECOVERY_OUTAGE", "10"))


class AcceptingSink:
    """The mirror is not what is measured: every batch is written at once."""

    async def send(self, session_id: str, events: Sequence[KernelEvent]) -> SendResult:
        return SendResult(Sent.WRITTEN)

    async def aclose(self) -> None:
        pass


class HealthWatch:
    """Notes when ``/health`` first answers 200, polled every 10 ms from a thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answered_at: float | None = None
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                    if response.status == 200:
                        self.answered_at = time.monotonic()
                        return
            except OSError:
                pass
            time.sleep(0.01)


def restart_and_follow(
    bridge: MarimoBridge, folder: Path, workdir: Path, port: int, path: str
) -> tuple[float, float, float]:
    """Start marimo again on ``port``, open ``path`` as soon as /health answers; seconds
    from that answer to the bridge listing the new session, attaching, and the tab ready."""
    watch = HealthWatch(f"http://127.0.0.1:{port}")
    with marimo_server(folder, workdir, port=port) as marimo:
        eventually(lambda: watch.answered_at is not None, STARTUP_TIMEOUT, "health")
        assert watch.answered_at is not None
        tab = Tab(marimo, path)
        eventually(lambda: tab.session_id in bridge.followers, 30.0, "the listing")
        listed = time.monotonic()
        eventually(lambda: bridge.followers[tab.session_id].attached, 30.0, "the attach")
        attached = time.monotonic()
        tab.wait_ready()
        ready = time.monotonic()
    return listed - watch.answered_at, attached - watch.answered_at, ready - watch.answered_at


def main() -> None:
    if os.environ.get("BRIDGE_RECOVERY_LOG"):  # the bridge's own log, to see what woke it
        logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s")
        logging.getLogger("kernel_status.contrib.marimo").setLevel(logging.INFO)
    port = free_port()
    rows: list[tuple[float, float, float]] = []
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        folder = workdir / "notebooks"
        folder.mkdir()
        for round_ in range(ROUNDS + 1):
            (folder / f"n{round_}.py").write_text(notebook("x = 1"))
        with marimo_server(folder, workdir, port=port) as marimo:
            tab = Tab(marimo, "n0.py")
            tab.wait_ready()
            thread = BridgeThread(
                marimo, sink=AcceptingSink(), poll_interval=2.0, heartbeat_interval=15.0
            )
            bridge = thread.bridge
            eventually(lambda: tab.session_id in bridge.followers, STARTUP_TIMEOUT, "follow")
        try:
            for round_ in range(1, ROUNDS + 1):
                # marimo_server's exit stopped marimo (round 1) or the round before did.
                eventually(lambda: not bridge.marimo_reachable, STARTUP_TIMEOUT, "the outage")
                time.sleep(OUTAGE)
                rows.append(restart_and_follow(bridge, folder, workdir, port, f"n{round_}.py"))
                print(
                    f"round {round_}: listed {rows[-1][0]:.3f} s, attached "
                    f"{rows[-1][1]:.3f} s, tab ready {rows[-1][2]:.3f} s after /health",
                    flush=True,
                )
        finally:
            thread.stop()
    for name, column in (("listed", 0), ("attached", 1), ("tab ready", 2)):
        values = [row[column] for row in rows]
        print(
            f"{name:>9}: median {statistics.median(values):.3f} s, max {max(values):.3f} s "
            f"over {len(values)} restarts (outage {OUTAGE:g} s, poll interval 2 s)"
        )


if __name__ == "__main__":
    main()
