"""The bridge's translation, on frames recorded from a real marimo 0.25.2 server.

tests/fixtures/marimo_0_25_2_frames.json holds what a kiosk client received
(tests/fixtures/record_marimo_frames.py): the attach while a cell was sleeping (marimo's
replay), a finished run, a second run, and the kernel killed mid-run ("Kernel stopped").
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from kernel_status import mirror
from kernel_status.choices import CellRuntimeState, ProcessState, SessionState
from kernel_status.contrib.marimo.translate import (
    SESSION_CLOSED_CAUSE,
    TICK,
    Frame,
    SessionTranslator,
    cell_notification,
    parse_frame,
)
from kernel_status.events import (
    CellNotification,
    KernelEvent,
    KernelHeartbeat,
    KernelStarted,
    KernelStopped,
    from_epoch,
)
from kernel_status.mirror.wire import CellOpDataSerializer
from kernel_status.models import CellStatus, KernelProcess, Session

RECORDING = json.loads(
    (Path(__file__).resolve().parents[2] / "fixtures" / "marimo_0_25_2_frames.json").read_text()
)
FRAMES: list[dict[str, Any]] = RECORDING["frames"]
ATTACHED_AT = from_epoch(FRAMES[0]["received_at"])
SID = "recorded-tab"


def ops() -> list[str]:
    return [json.loads(frame["text"])["op"] for frame in FRAMES]


def translate_all(translator: SessionTranslator) -> list[KernelEvent]:
    """Frame by frame, as the bridge receives them, stamped with their arrival time."""
    events: list[KernelEvent] = []
    for frame in FRAMES:
        result = translator.translate_raw([frame["text"]], from_epoch(frame["received_at"]))
        events.extend(result.events)
    return events


def bursts() -> list[list[dict[str, Any]]]:
    """The frames that arrived together (within 10 ms), as the bridge batches them."""
    groups: list[list[dict[str, Any]]] = []
    for frame in FRAMES:
        if groups and frame["received_at"] - groups[-1][0]["received_at"] < 0.01:
            groups[-1].append(frame)
        else:
            groups.append([frame])
    return groups


def test_the_recording_is_what_the_tests_assume() -> None:
    assert RECORDING["marimo"] == "0.25.2"
    assert ops()[0] == "kernel-ready"
    assert json.loads(FRAMES[0]["text"])["data"]["kiosk"] is True
    assert ops()[-1] == "banner"
    assert RECORDING["close"] == {"code": 1000, "reason": "MARIMO_SHUTDOWN"}
    assert {"variables", "execution", "completed-run", "environment-state"} <= set(ops())


def test_attach_starts_the_kernel_and_replayed_cell_ops_are_stamped_after_it() -> None:
    translator = SessionTranslator(SID)
    result = translator.translate_raw([f["text"] for f in FRAMES[:7]], ATTACHED_AT)
    assert result.attached == ("Hbol", "MJUe")
    assert not result.not_read_only
    assert result.events[:2] == [KernelStarted(ATTACHED_AT), KernelHeartbeat(ATTACHED_AT)]
    replayed = result.events[2:]
    # marimo's replay: the latest op of each cell, sent long before the attach.
    assert [(e.cell_id, e.status) for e in replayed if isinstance(e, CellNotification)] == [
        ("Hbol", "idle"),
        ("MJUe", "running"),
    ]
    assert [e.timestamp for e in replayed] == [ATTACHED_AT + TICK, ATTACHED_AT + 2 * TICK]


def test_live_cell_ops_keep_marimo_stamps_and_the_banner_stops_the_kernel() -> None:
    translator = SessionTranslator(SID)
    events = translate_all(translator)
    live = [
        e
        for e in events
        if isinstance(e, CellNotification) and e.timestamp > ATTACHED_AT + 2 * TICK
    ]
    recorded = [
        json.loads(f["text"])["data"]
        for f in FRAMES[7:]
        if json.loads(f["text"])["op"] == "cell-op"
    ]
    assert [(e.cell_id, e.status, e.timestamp) for e in live] == [
        (d["cell_id"], d["status"], from_epoch(d["timestamp"])) for d in recorded
    ]
    stop = events[-1]
    assert isinstance(stop, KernelStopped)
    assert stop.cause == "The kernel was stopped unexpectedly."
    assert stop.timestamp == from_epoch(FRAMES[-1]["received_at"])
    assert translator.stopped
    # After the stop, nothing more: not the close, not a heartbeat.
    assert translator.session_closed(stop.timestamp + timedelta(seconds=1)) == []
    assert translator.heartbeat(stop.timestamp + timedelta(seconds=1)) == []


@pytest.mark.django_db
# The recording's stamps are old; the liveness window is not what this test is about.
@override_settings(KERNEL_STATUS_LIVENESS_WINDOW=None)
def test_the_recording_applied_to_the_mirror_ends_as_marimo_did(make_session: Any) -> None:
    make_session(SID, kernel=None)
    translator = SessionTranslator(SID)
    states = []
    for burst in bursts():
        received_at = from_epoch(burst[-1]["received_at"])
        result = translator.translate_raw([frame["text"] for frame in burst], received_at)
        mirror.apply_events(SID, result.events)
        states.append(
            Session.objects.with_state().get(session_id=SID).state if result.events else None
        )
    # Attached mid-run (running), the run finished (idle), ran again (running), killed.
    seen = [state for state in states if state is not None]
    collapsed = [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]
    assert collapsed == [
        SessionState.RUNNING,
        SessionState.IDLE,
        SessionState.RUNNING,
        SessionState.STOPPED,
    ]
    kernel = KernelProcess.objects.get(session__session_id=SID)
    assert kernel.state == ProcessState.STOPPED
    assert kernel.started_at == from_epoch(bursts()[0][-1]["received_at"])
    assert kernel.exit_cause == "The kernel was stopped unexpectedly."
    assert dict(CellStatus.objects.values_list("cell_id", "status")) == {
        "Hbol": CellRuntimeState.IDLE,
        "MJUe": CellRuntimeState.RUNNING,
    }


def test_a_frontend_attach_is_flagged_and_starts_nothing() -> None:
    data = dict(json.loads(FRAMES[0]["text"])["data"], kiosk=False)
    result = SessionTranslator(SID).translate([Frame("kernel-ready", data)], ATTACHED_AT)
    assert result.not_read_only
    assert result.events == []


def test_a_reconnection_repeats_the_same_start() -> None:
    translator = SessionTranslator(SID)
    ready = parse_frame(FRAMES[0]["text"])
    assert ready is not None
    translator.translate([ready], ATTACHED_AT)
    later = ATTACHED_AT + timedelta(seconds=30)
    result = translator.translate([ready], later)
    assert result.events == [KernelStarted(ATTACHED_AT), KernelHeartbeat(later)]


def test_session_closed_records_one_stop_after_the_start() -> None:
    translator = SessionTranslator(SID)
    assert translator.heartbeat(ATTACHED_AT) == []  # not attached yet
    ready = parse_frame(FRAMES[0]["text"])
    assert ready is not None
    translator.translate([ready], ATTACHED_AT)
    # A clock that went backwards still gives a stop the mirror applies.
    (stop,) = translator.session_closed(ATTACHED_AT - timedelta(seconds=5))
    assert stop == KernelStopped(ATTACHED_AT + TICK, cause=SESSION_CLOSED_CAUSE)
    assert translator.session_closed(ATTACHED_AT + timedelta(seconds=5)) == []


@pytest.mark.parametrize(
    "raw",
    [b"\xff", "not json", "[]", '{"op": 1, "data": {}}', '{"op": "cell-op", "data": []}'],
)
def test_text_that_is_not_a_marimo_frame_is_counted(raw: str | bytes) -> None:
    result = SessionTranslator(SID).translate_raw([raw], ATTACHED_AT)
    assert (result.events, result.malformed) == ([], 1)


@pytest.mark.parametrize(
    "data",
    [
        {"cell_id": "a", "status": "done", "timestamp": 1.0},
        {"cell_id": "a", "status": "idle", "timestamp": "1"},
        {"cell_id": "a", "status": "idle"},
        {"cell_id": "", "status": "idle", "timestamp": 1.0},
        {"cell_id": "a", "stale_inputs": "false", "timestamp": 1.0},
    ],
)
def test_malformed_cell_ops_are_dropped(data: dict[str, Any]) -> None:
    result = SessionTranslator(SID).translate([Frame("cell-op", data)], ATTACHED_AT)
    assert (result.events, result.malformed) == ([], 1)


def test_live_ops_from_before_the_attach_keep_their_arrival_order() -> None:
    translator = SessionTranslator(SID)
    translator.translate([Frame("kernel-ready", {"cell_ids": ["a"], "kiosk": True})], ATTACHED_AT)
    before = ATTACHED_AT.timestamp() - 1
    result = translator.translate(
        [
            Frame("cell-op", {"cell_id": "a", "status": "running", "timestamp": before}),
            # Sent by marimo after the attach, but stamped before the last re-stamp.
            Frame("cell-op", {"cell_id": "a", "status": "idle", "timestamp": before + 0.5}),
            Frame("cell-op", {"cell_id": "a", "status": "queued", "timestamp": before + 2}),
        ],
        ATTACHED_AT,
    )
    assert [(e.status, e.timestamp) for e in result.events if isinstance(e, CellNotification)] == [
        ("running", ATTACHED_AT + TICK),
        ("idle", ATTACHED_AT + 2 * TICK),
        ("queued", datetime.fromtimestamp(before + 2, tz=UTC)),
    ]


EDGE_CELL_OPS: list[dict[str, Any]] = [
    {"cell_id": "a", "status": "idle", "timestamp": 1.5},
    {"cell_id": "a", "status": None, "stale_inputs": True, "timestamp": 2},
    {"cell_id": "a", "timestamp": 0},
    {"cell_id": "a", "status": "idle", "timestamp": float("nan")},
    {"cell_id": "a", "status": "idle", "timestamp": float("inf")},
    {"cell_id": "a", "status": "idle", "timestamp": -1},
    {"cell_id": "a", "status": "idle", "timestamp": 253402300800},
    {"cell_id": "a", "status": "idle", "timestamp": True},
    {"cell_id": 7, "status": "idle", "timestamp": 1.0},
    {"cell_id": "a\x00b", "status": "idle", "timestamp": 1.0},
    {"cell_id": "x" * 200, "status": "idle", "timestamp": 1.0},
    {"cell_id": "a", "status": 3, "timestamp": 1.0},
    {"cell_id": "a", "status": "idle", "stale_inputs": 0, "timestamp": 1.0},
]


@pytest.mark.parametrize(
    "data",
    [json.loads(f["text"])["data"] for f in FRAMES if json.loads(f["text"])["op"] == "cell-op"]
    + EDGE_CELL_OPS,
)
def test_cell_ops_are_read_as_the_ingestion_endpoint_reads_them(data: dict[str, Any]) -> None:
    serializer = CellOpDataSerializer(data=data)
    expected = serializer.to_event(ATTACHED_AT) if serializer.is_valid() else None
    assert cell_notification(data) == expected


# --- a restarted bridge ------------------------------------------------------------------------


def test_the_recorded_attach_is_a_resumed_kernel() -> None:
    assert json.loads(FRAMES[0]["text"])["data"]["resumed"] is True


def test_a_resumed_kernel_keeps_the_start_it_was_reported_with() -> None:
    ready = parse_frame(FRAMES[0]["text"])
    assert ready is not None
    later = ATTACHED_AT + timedelta(seconds=90)
    translator = SessionTranslator(SID, known_start=ATTACHED_AT)
    assert translator.reported_start == ATTACHED_AT  # remembered even before the attach
    result = translator.translate([ready], later)
    assert result.events == [KernelStarted(ATTACHED_AT), KernelHeartbeat(later)]
    assert translator.reported_start == ATTACHED_AT
    # Without a start to keep, the attach is the start, as on the first attach.
    first = SessionTranslator(SID).translate([ready], later)
    assert first.events == [KernelStarted(later), KernelHeartbeat(later)]


def test_a_new_kernel_gets_a_new_start_even_with_one_remembered() -> None:
    data = dict(json.loads(FRAMES[0]["text"])["data"], resumed=False)
    later = ATTACHED_AT + timedelta(seconds=90)
    translator = SessionTranslator(SID, known_start=ATTACHED_AT)
    result = translator.translate([Frame("kernel-ready", data)], later)
    assert result.events == [KernelStarted(later), KernelHeartbeat(later)]


def test_a_stopped_kernel_has_no_start_to_remember() -> None:
    translator = SessionTranslator(SID, known_start=ATTACHED_AT)
    translator.session_closed(ATTACHED_AT + timedelta(seconds=1))
    assert translator.reported_start is None


@pytest.mark.django_db
@override_settings(KERNEL_STATUS_LIVENESS_WINDOW=None)
def test_a_restarted_bridge_changes_nothing_but_the_heartbeat(make_session: Any) -> None:
    """The review's case: the same attach and replay, translated by a second bridge process
    90 s later, neither resets the cells nor counts as activity."""
    make_session(SID, kernel=None)
    attach = [frame["text"] for frame in bursts()[0]]  # kernel-ready and marimo's replay
    first = SessionTranslator(SID)
    mirror.apply_events(SID, first.translate_raw(attach, ATTACHED_AT).events)

    def stored() -> tuple[Any, ...]:
        kernel = KernelProcess.objects.values().get(session__session_id=SID)
        heartbeat = kernel.pop("last_heartbeat_at")
        cells = CellStatus.objects.filter(session__session_id=SID).order_by("cell_id")
        return (
            Session.objects.get(session_id=SID).last_activity,
            kernel,
            list(cells.values_list("cell_id", "status", "status_at", "stale", "notified_at")),
            heartbeat,
        )

    before = stored()
    assert before[1]["started_at"] == ATTACHED_AT
    assert ("MJUe", CellRuntimeState.RUNNING) in [cell[:2] for cell in before[2]]

    later = ATTACHED_AT + timedelta(seconds=90)
    second = SessionTranslator(SID, known_start=first.reported_start)
    mirror.apply_events(SID, second.translate_raw(attach, later).events)
    after = stored()
    assert after[:3] == before[:3]  # same start, same cells, no activity
    assert after[3] == later  # alive: the heartbeat moved
