"""The bridge's discovery: bounded, never its own ids, never ambiguous files, stops recorded."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kernel_status.contrib.marimo.bridge import ATTACH_ID_PREFIX, BridgeSettings, MarimoBridge
from kernel_status.contrib.marimo.translate import SESSION_CLOSED_CAUSE, Frame
from kernel_status.contrib.marimo.writer import SendResult, Sent, Writer
from kernel_status.events import KernelEvent, KernelHeartbeat, KernelStarted, KernelStopped


class RecordingSink:
    def __init__(self) -> None:
        self.batches: list[tuple[str, list[KernelEvent]]] = []

    async def send(self, session_id: str, events: Sequence[KernelEvent]) -> SendResult:
        self.batches.append((session_id, list(events)))
        return SendResult(Sent.WRITTEN)

    async def aclose(self) -> None:
        pass


def test_discovery_is_bounded_and_records_a_stop_for_sessions_that_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> tuple[list[list[str]], RecordingSink]:
        sink = RecordingSink()
        writer = Writer(sink)
        # Nothing listens on port 9: the followers keep retrying, far apart.
        settings = BridgeSettings("http://127.0.0.1:9", max_sessions=2, backoff_initial=60)
        bridge = MarimoBridge(settings, writer)
        seen = []
        try:
            bridge._reconcile(
                {
                    "s1": "a.py",
                    "s2": "b.py",
                    "s3": "c.py",  # over --max-sessions: waits for a slot
                    f"{ATTACH_ID_PREFIX}0123": "a.py",  # another bridge: never followed
                    "s4": "shared.py",  # two sessions on one file: a kiosk attach by
                    "s5": "shared.py",  # file cannot tell them apart
                }
            )
            seen.append(sorted(bridge.followers))
            bridge._reconcile({"s2": "b.py", "s3": "c.py"})  # s1 ended; s3 gets its slot
            seen.append(sorted(bridge.followers))
            assert await writer.drain(timeout=10)  # the writer's task sends s1's stop
            seen.append([str(bridge.followed_total)])
        finally:
            await bridge._stop_followers()
            await writer.aclose()
            await bridge.marimo.aclose()
        return seen, sink

    with caplog.at_level(logging.INFO, "kernel_status.contrib.marimo"):
        seen, sink = asyncio.run(scenario())
    assert seen == [["s1", "s2"], ["s2", "s3"], ["3"]]
    ((session_id, (stop,)),) = sink.batches
    assert session_id == "s1"
    assert isinstance(stop, KernelStopped)
    assert stop.cause == SESSION_CLOSED_CAUSE
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        "Not following session 's3' (c.py) yet: already following 2 sessions (--max-sessions)"
        in warnings
    )
    assert sum("run 'shared.py'" in message for message in warnings) == 2
    assert not [m for m in caplog.messages if ATTACH_ID_PREFIX in m and "Following" in m]


def test_a_restarted_bridge_reports_the_kernel_starts_of_the_one_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The health file carries the start each live kernel was reported with; a bridge started
    with the same file reports the same start for a kernel marimo still runs."""
    health = tmp_path / "health.json"
    attached_at = datetime(2026, 1, 1, 12, 0, 0, 123457, tzinfo=UTC)  # microseconds survive
    later = attached_at + timedelta(seconds=90)
    ready = Frame("kernel-ready", {"kiosk": True, "resumed": True, "cell_ids": ["c"]})

    async def run_bridge(listing: dict[str, str], at: datetime) -> tuple[list[Any], Any]:
        writer = Writer(RecordingSink())
        settings = BridgeSettings("http://127.0.0.1:9", backoff_initial=60, health_file=health)
        bridge = MarimoBridge(settings, writer)
        try:
            bridge._reconcile(listing)
            follower = bridge.followers.get("s1")
            events = follower.translator.translate([ready], at).events if follower else []
            bridge._write_health()
        finally:
            await bridge._stop_followers()
            await writer.aclose()
            await bridge.marimo.aclose()
        return events, json.loads(health.read_text())["kernel_starts"]

    first, starts = asyncio.run(run_bridge({"s1": "a.py"}, attached_at))
    assert first[0] == KernelStarted(attached_at)
    assert starts == {"s1": attached_at.isoformat()}

    with caplog.at_level(logging.INFO, "kernel_status.contrib.marimo"):
        # s1 still runs in marimo; s2 is new to both bridges.
        second, starts = asyncio.run(run_bridge({"s1": "a.py", "s2": "b.py"}, later))
    assert second == [KernelStarted(attached_at), KernelHeartbeat(later)]
    assert starts == {"s1": attached_at.isoformat()}  # s2 has not attached yet
    assert "1 kernel starts remembered from" in caplog.text

    # A kernel that ended in marimo is forgotten; an unreadable file starts afresh.
    assert asyncio.run(run_bridge({"s2": "b.py"}, later)) == ([], {})
    health.write_text('{"kernel_starts": {"s1": "yesterday"}}')
    with caplog.at_level(logging.WARNING, "kernel_status.contrib.marimo"):
        third, _ = asyncio.run(run_bridge({"s1": "a.py"}, later))
    assert third[0] == KernelStarted(later)
    assert "Cannot read the kernel starts in" in caplog.text
