"""The bridge's writer: batching, retries, unknown sessions, and both sinks."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings

from kernel_status import mirror
from kernel_status.choices import CellRuntimeState, ProcessState
from kernel_status.contrib.marimo.writer import (
    DirectSink,
    FatalWriteError,
    HttpSink,
    SendResult,
    Sent,
    Writer,
    _Queue,
    _retry_after,
    compact,
    to_wire,
)
from kernel_status.events import (
    CellNotification,
    KernelEvent,
    KernelHeartbeat,
    KernelStarted,
    KernelStopped,
)
from kernel_status.mirror.wire import KernelEventBatchSerializer
from kernel_status.models import CellStatus, KernelProcess, Session
from tests.mirror import test_invariant as invariant
from tests.utils import eventually_async

T0 = timezone.now().replace(microsecond=123456)


def at(seconds: float) -> Any:
    return T0 + timedelta(seconds=seconds)


def cell(cell_id: str, seconds: float, status: str | None = None, stale: bool | None = None) -> Any:
    return CellNotification(cell_id, at(seconds), status=status, stale_inputs=stale)


class ScriptedSink:
    """Records every batch; answers from a script (then WRITTEN), optionally after a gate."""

    def __init__(self, *answers: SendResult | Exception, only: str | None = None) -> None:
        self.answers = list(answers)
        self.only = only  # the session the script is for; others are written
        self.batches: list[tuple[str, list[KernelEvent]]] = []
        self.gate: asyncio.Event | None = None
        self.closed = False

    async def send(self, session_id: str, events: Sequence[KernelEvent]) -> SendResult:
        self.batches.append((session_id, list(events)))
        if self.gate is not None:
            await self.gate.wait()
        if self.answers and self.only in {None, session_id}:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return SendResult(Sent.WRITTEN)

    async def aclose(self) -> None:
        self.closed = True


def writer_for(sink: ScriptedSink, **options: Any) -> Writer:
    options = {"unknown_retry": 0.05, "backoff_initial": 0.01, "backoff_max": 0.02, **options}
    return Writer(sink, **options)


def test_events_submitted_together_and_during_a_send_go_in_one_batch() -> None:
    async def scenario() -> ScriptedSink:
        sink = ScriptedSink()
        sink.gate = asyncio.Event()
        writer = writer_for(sink)
        writer.submit("s", [cell("a", 1, "queued")])
        writer.submit("s", [cell("b", 2, "queued")])
        await eventually_async(lambda: len(sink.batches) == 1, what="the first send")
        assert writer.queued_events == 2  # the batch being sent counts as not written yet
        assert not await writer.drain(timeout=0.05)
        # While that batch is being written, three frames arrive: they wait together.
        for i in range(3):
            writer.submit("s", [cell("a", 3 + i, "running")])
        sink.gate.set()
        await eventually_async(
            lambda: len(sink.batches) == 2 and writer.queued_events == 0,
            what="both batches written",
        )
        await writer.aclose()
        return sink

    sink = asyncio.run(scenario())
    assert [len(events) for _, events in sink.batches] == [2, 3]
    assert sink.closed
    assert sink.batches[1][1] == [cell("a", 3 + i, "running") for i in range(3)]


@pytest.mark.parametrize(
    "failure",
    [
        SendResult(Sent.RETRY, detail="HTTP 503"),
        SendResult(Sent.RETRY, detail="HTTP 429"),
        SendResult(Sent.RETRY, detail="ConnectError"),
    ],
)
def test_a_failed_batch_is_sent_again_in_front_of_newer_events(
    failure: SendResult, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> ScriptedSink:
        sink = ScriptedSink(failure, failure)
        writer = writer_for(sink)
        writer.submit("s", [cell("a", 1, "running")])
        await eventually_async(lambda: len(sink.batches) == 1, what="the first send")
        writer.submit("s", [cell("a", 2, "idle")])
        await eventually_async(
            lambda: writer.queued_events == 0 and writer.stats.batches == 1,
            what="the batch written",
        )
        await writer.aclose()
        return sink

    with caplog.at_level(logging.WARNING, "kernel_status.contrib.marimo"):
        sink = asyncio.run(scenario())
    assert [events for _, events in sink.batches] == [
        [cell("a", 1, "running")],
        [cell("a", 1, "running"), cell("a", 2, "idle")],
        [cell("a", 1, "running"), cell("a", 2, "idle")],
    ]
    assert sum(f"could not write 1 events ({failure.detail})" in m for m in caplog.messages) == 1


@pytest.mark.parametrize(
    ("retry_after", "backoff", "least", "most"),
    [
        (30.0, 0.02, 30.0, 30.0),  # the server asks for longer than the backoff: its wait
        (0.5, 20.0, 10.0, 20.0),  # a shorter Retry-After does not cut the backoff
        (None, 20.0, 10.0, 20.0),
    ],
)
def test_retry_after_is_the_least_wait_before_the_next_send(
    retry_after: float | None, backoff: float, least: float, most: float
) -> None:
    async def scenario() -> float:
        writer = writer_for(ScriptedSink(), backoff_initial=backoff, backoff_max=backoff)
        failed = SendResult(Sent.RETRY, retry_after=retry_after, detail="HTTP 503")
        delay = writer._after("s", _Queue(), [cell("a", 1, "idle")], failed)
        await writer.aclose()
        return delay

    assert least <= asyncio.run(scenario()) <= most


def test_an_unknown_session_is_kept_and_tried_again_until_it_is_registered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unknown = SendResult(Sent.UNKNOWN_SESSION)

    async def scenario() -> tuple[ScriptedSink, list[str]]:
        sink = ScriptedSink(unknown, unknown, unknown, only="late")
        writer = writer_for(sink)
        writer.submit("late", [KernelStarted(at(0)), cell("a", 1, "running")])
        await eventually_async(lambda: len(sink.batches) == 2, what="two sends")
        seen = writer.unknown_sessions
        writer.submit("other", [KernelStarted(at(0))])  # other sessions are not held up
        await eventually_async(
            lambda: writer.stats.batches == 2 and not writer.unknown_sessions,
            what="both sessions written",
        )
        await writer.aclose()
        return sink, seen

    with caplog.at_level(logging.INFO, "kernel_status.contrib.marimo"):
        sink, seen = asyncio.run(scenario())
    assert seen == ["late"]
    late = [events for sid, events in sink.batches if sid == "late"]
    assert len(late) == 4
    assert [events for sid, events in sink.batches if sid == "other"] == [[KernelStarted(at(0))]]
    assert all(events == [KernelStarted(at(0)), cell("a", 1, "running")] for events in late)
    assert [m for m in caplog.messages if "'late'" in m] == [
        "Session 'late' is not in the mirror (not registered yet?); keeping its events and "
        "trying again every 0.05 s",
        "Session 'late' is in the mirror now; writing its events",
    ]


class NeverRegisteredSink(ScriptedSink):
    """The mirror knows none of the sessions, and never will."""

    async def send(self, session_id: str, events: Sequence[KernelEvent]) -> SendResult:
        self.batches.append((session_id, list(events)))
        return SendResult(Sent.UNKNOWN_SESSION)


def test_an_ended_session_that_stays_unknown_is_given_up_and_a_live_one_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [1000.0]  # the writer's clock: moved by the test, never waited for

    def sends(*session_ids: str) -> int:
        return sum(sid in session_ids for sid, _ in sink.batches)

    sink = NeverRegisteredSink()

    async def scenario() -> tuple[list[str], list[str]]:
        writer = writer_for(sink, unknown_retry=0.01, unknown_give_up=600, clock=lambda: clock[0])
        for session_id in ("ended-1", "ended-2", "live"):
            writer.submit(session_id, [KernelStarted(at(0)), cell("a", 1, "idle")])
        await eventually_async(
            lambda: len(writer.unknown_sessions) == 3, what="three unknown sessions"
        )
        for session_id in ("ended-1", "ended-2"):
            writer.submit(session_id, [KernelStopped(at(2), cause="session closed in marimo")])
            writer.session_ended(session_id)
        before = sends("ended-1"), sends("ended-2")
        # Tried again after the end, but within unknown_give_up: kept.
        await eventually_async(
            lambda: sends("ended-1") > before[0] + 1 and sends("ended-2") > before[1] + 1,
            what="the ended sessions tried again",
        )
        still_kept = writer.unknown_sessions
        clock[0] += 600
        await eventually_async(
            lambda: sorted(writer._queues) == ["live"], what="the ended sessions given up"
        )
        ended_sends, live_sends = sends("ended-1", "ended-2"), sends("live")
        # The live session is tried again for ever; the ended ones are not.
        await eventually_async(
            lambda: sends("live") >= live_sends + 3, what="the live session tried again"
        )
        assert sends("ended-1", "ended-2") == ended_sends
        kept_live = writer.unknown_sessions
        assert writer.queued_events == 2
        await writer.aclose()
        return still_kept, kept_live

    with caplog.at_level(logging.INFO, "kernel_status.contrib.marimo"):
        still_kept, kept_live = asyncio.run(scenario())
    assert still_kept == ["ended-1", "ended-2", "live"]
    assert kept_live == ["live"]
    given_up = [m for m in caplog.messages if "dropping" in m]
    assert given_up == [
        f"Session '{sid}' ended in marimo 600 s ago and is still not in the mirror; dropping "
        "its 3 unwritten events"
        for sid in ("ended-1", "ended-2")
    ]


def test_a_refused_token_is_fatal_and_keeps_the_batch() -> None:
    async def scenario() -> tuple[FatalWriteError, int]:
        sink = ScriptedSink(FatalWriteError("HTTP 403"))
        writer = writer_for(sink)
        writer.submit("s", [cell("a", 1, "idle")])
        error = await asyncio.wait_for(writer.wait_fatal(), 5)
        queued = writer.queued_events
        await writer.aclose()
        return error, queued

    error, queued = asyncio.run(scenario())
    assert str(error) == "HTTP 403"
    assert queued == 1


def test_an_ended_session_is_forgotten_once_written() -> None:
    async def scenario() -> tuple[int, int]:
        sink = ScriptedSink(SendResult(Sent.RETRY))
        writer = writer_for(sink)
        writer.submit("s", [KernelStopped(at(1), cause="x")])
        writer.session_ended("s")
        queued_while_retrying = writer.queued_events + len(writer._queues)
        await eventually_async(lambda: not writer._queues, what="the ended session forgotten")
        await writer.aclose()
        return queued_while_retrying, len(sink.batches)

    assert asyncio.run(scenario()) == (2, 2)


def test_a_long_backlog_is_folded() -> None:
    async def scenario() -> list[KernelEvent]:
        sink = ScriptedSink()
        sink.gate = asyncio.Event()
        writer = writer_for(sink, max_queued=10)
        writer.submit("s", [KernelStarted(at(0))])
        await eventually_async(lambda: len(sink.batches) == 1, what="the first send")
        writer.submit("s", [cell("a", i, "running" if i % 2 else "idle") for i in range(1, 12)])
        sink.gate.set()
        await eventually_async(
            lambda: writer.queued_events == 0 and writer.stats.batches == 2,
            what="both batches written",
        )
        await writer.aclose()
        return sink.batches[1][1]

    assert asyncio.run(scenario()) == [cell("a", 11, "running")]


async def within_turns(check: Callable[[], bool], turns: int = 100) -> bool:
    """Whether ``check`` holds within ``turns`` turns of the event loop, no time waited: what
    an event wakes at once, and a wait that polls on a timer does not."""
    for _ in range(turns):
        if check():
            return True
        await asyncio.sleep(0)
    return check()


def test_drain_returns_as_soon_as_the_last_batch_is_written() -> None:
    async def scenario() -> None:
        sink = ScriptedSink()
        sink.gate = asyncio.Event()
        writer = writer_for(sink)
        writer.submit("a", [cell("a", 1, "idle")])
        writer.submit("b", [cell("b", 1, "idle")])
        drained = asyncio.create_task(writer.drain(timeout=60))
        await eventually_async(lambda: len(sink.batches) == 2, what="two sends")
        assert not await within_turns(drained.done)  # both batches are being sent
        sink.gate.set()
        assert await within_turns(drained.done)
        assert drained.result() is True
        assert writer.queued_events == 0
        await writer.aclose()

    asyncio.run(scenario())


def test_drain_does_not_wait_for_a_session_the_mirror_does_not_know() -> None:
    async def scenario() -> None:
        sink = ScriptedSink(SendResult(Sent.UNKNOWN_SESSION), only="late")
        sink.gate = asyncio.Event()
        writer = writer_for(sink, unknown_retry=60)
        writer.submit("late", [cell("a", 1, "idle")])
        writer.submit("known", [cell("a", 1, "idle")])
        drained = asyncio.create_task(writer.drain(timeout=60))
        await eventually_async(lambda: len(sink.batches) == 2, what="two sends")
        sink.gate.set()
        assert await within_turns(drained.done)
        assert drained.result() is True
        assert writer.unknown_sessions == ["late"]
        assert writer.queued_events == 1  # kept, for when the platform registers it
        await writer.aclose()

    asyncio.run(scenario())


def test_drain_times_out_while_a_batch_is_not_written() -> None:
    async def scenario() -> None:
        sink = ScriptedSink()
        sink.gate = asyncio.Event()  # never opened: the send hangs
        writer = writer_for(sink)
        writer.submit("s", [cell("a", 1, "idle")])
        assert await writer.drain(timeout=0.05) is False
        assert writer.queued_events == 1
        await writer.aclose()

    asyncio.run(scenario())


def test_drain_stops_waiting_when_the_mirror_refuses_the_bridge() -> None:
    async def scenario() -> None:
        sink = ScriptedSink(FatalWriteError("HTTP 401"))
        sink.gate = asyncio.Event()
        writer = writer_for(sink)
        writer.submit("s", [cell("a", 1, "idle")])
        drained = asyncio.create_task(writer.drain(timeout=60))
        await eventually_async(lambda: len(sink.batches) == 1, what="the first send")
        sink.gate.set()
        assert await within_turns(drained.done)
        assert drained.result() is False
        assert writer.queued_events == 1  # the refused batch is kept, not written
        await writer.aclose()

    asyncio.run(scenario())


def test_drain_with_nothing_to_write_returns_at_once() -> None:
    async def scenario() -> tuple[bool, bool]:
        writer = writer_for(ScriptedSink())
        empty = await writer.drain(timeout=0)
        writer.submit("s", [KernelStopped(at(1), cause="x")])
        writer.session_ended("s")
        written = await writer.drain(timeout=60)
        await writer.aclose()
        return empty, written

    assert asyncio.run(scenario()) == (True, True)


# --- compact ---------------------------------------------------------------------------------


def mirrored(session_id: str, now: datetime | None = None) -> Any:
    """Everything the mirror stores for a session, field timestamps and activity included,
    and its state at ``now``."""
    session = Session.objects.with_state(now=now).get(session_id=session_id)
    kernel = KernelProcess.objects.filter(session=session).values().first()
    if kernel is not None:
        del kernel["session_id"]
    # A row that a kernel start reset (idle, not stale, neither set since) says what no row
    # says: a backlog's events older than its start create such rows, their folded form none.
    cells = CellStatus.objects.filter(session=session).exclude(
        status=CellRuntimeState.IDLE, status_at=None, stale=False, stale_at=None
    )
    return (
        session.state,
        session.last_activity,
        kernel,
        [
            (c.cell_id, c.status, c.status_at, c.stale, c.stale_at, c.notified_at)
            for c in cells.order_by("cell_id")
        ],
    )


def whole_and_folded(
    make_session: Any,
    backlog: list[KernelEvent],
    before: Sequence[KernelEvent] = (),
    now: datetime | None = None,
) -> tuple[Any, Any]:
    """The mirror after ``before`` and then the whole backlog, and after ``before`` and then
    the folded backlog."""
    outcomes = []
    for events in (backlog, compact(backlog)):
        session_id = make_session(kernel=None).session_id
        if before:
            mirror.apply_events(session_id, before)
        mirror.apply_events(session_id, events)
        outcomes.append(mirrored(session_id, now))
    return outcomes[0], outcomes[1]


@pytest.mark.django_db
def test_compact_has_the_effect_of_the_whole_backlog(make_session: Any) -> None:
    backlog: list[KernelEvent] = [
        KernelStarted(at(0)),
        cell("a", 1, "queued"),
        cell("b", 1.5, "queued", stale=True),
        cell("a", 2, "running"),
        cell("a", 3, None, stale=True),  # keeps "running", sets stale
        KernelHeartbeat(at(3.5)),
        cell("b", 4, "running"),
        cell("a", 5, "idle"),
        KernelHeartbeat(at(6)),
        cell("c", 7, "disabled-transitively"),
    ]
    folded = compact(list(reversed(backlog)))
    assert len(folded) < len(backlog)
    whole, folded_outcome = whole_and_folded(make_session, backlog)
    assert folded_outcome == whole
    assert whole[3][0] == ("a", CellRuntimeState.IDLE, at(5), True, at(3), at(5))


@pytest.mark.django_db
def test_compact_keeps_a_kernel_restart(make_session: Any) -> None:
    """The review's case: a status from before a restart must not survive it."""
    backlog: list[KernelEvent] = [
        KernelStarted(at(0)),
        cell("c", 1, "running"),
        KernelStopped(at(2), exit_code=1, cause="killed"),
        KernelStarted(at(3)),
        cell("c", 4),  # console output: no status
    ]
    assert compact(backlog) == [KernelStarted(at(3)), cell("c", 4)]
    whole, folded = whole_and_folded(make_session, backlog)
    assert whole[0] == "idle"
    assert folded == whole


@pytest.mark.django_db
def test_compact_keeps_each_field_with_its_own_timestamp(make_session: Any) -> None:
    backlog: list[KernelEvent] = [
        cell("c", 1, "running"),
        cell("c", 2, None, stale=True),
        cell("c", 3),
        KernelStopped(at(4), exit_code=1, cause="killed"),
        KernelStopped(at(5)),
    ]
    assert compact(backlog) == backlog
    # Written before the backlog: a newer status arrives first; the backlog's older
    # console output must not hide it, nor its stale flag be stamped too late.
    before = [KernelStarted(at(0)), cell("c", 2.5, "idle", stale=False)]
    whole, folded = whole_and_folded(make_session, backlog, before)
    assert folded == whole
    assert whole[3] == [("c", "idle", at(2.5), False, at(2.5), at(3))]


# Examples share the test's database transaction; each one uses sessions of its own.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=invariant.EVENTS, backlog=invariant.EVENTS)
def test_compact_is_exact_whatever_the_mirror_stored(
    make_session: Any, before: list[KernelEvent], backlog: list[KernelEvent]
) -> None:
    """Any backlog, written after any events (older, newer or at the same time): the whole
    backlog and its folded form leave the same mirror: every field of the cells and the
    kernel with its timestamp, the last activity and the state."""
    # The state at one instant: both sessions must be read inside the same liveness window.
    now = invariant.now_for_reads()
    whole, folded = whole_and_folded(make_session, backlog, before, now)
    assert folded == whole


# --- the wire format and the sinks -----------------------------------------------------------

EVERY_KIND: list[KernelEvent] = [
    KernelStarted(at(0)),
    cell("a", 1, "queued"),
    cell("a", 2, None, stale=False),
    KernelHeartbeat(at(3)),
    KernelStopped(at(4), exit_code=-9, cause="killed"),
    KernelStopped(at(5)),
]


def test_the_wire_format_reads_back_as_the_same_events() -> None:
    serializer = KernelEventBatchSerializer(
        data={"events": [to_wire(event) for event in EVERY_KIND]},
        context={"received_at": at(100)},
    )
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["events"] == EVERY_KIND


def http_sink(handler: Callable[[httpx.Request], httpx.Response]) -> HttpSink:
    return HttpSink(
        "http://mirror.test/api/kernel/events",
        "secret",
        transport=httpx.MockTransport(handler),
    )


def test_the_http_sink_posts_the_batch_with_the_token_and_session_header() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"applied": 6, "ignored_older": 0})

    async def scenario() -> SendResult:
        sink = http_sink(handler)
        try:
            return await sink.send("sess-é", EVERY_KIND)
        finally:
            await sink.aclose()

    assert asyncio.run(scenario()) == SendResult(Sent.WRITTEN)
    (request,) = requests
    assert (request.method, str(request.url)) == ("POST", "http://mirror.test/api/kernel/events")
    assert request.headers["Authorization"] == "Token secret"
    raw = dict(request.headers.raw)
    assert raw[b"Marimo-Session-Id"] == "sess-é".encode()  # UTF-8, as the endpoint reads it
    assert json.loads(request.content) == {"events": [to_wire(e) for e in EVERY_KIND]}


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (404, {}, SendResult(Sent.UNKNOWN_SESSION)),
        (503, {"Retry-After": "1"}, SendResult(Sent.RETRY, 1.0, "HTTP 503")),
        (429, {"Retry-After": "7"}, SendResult(Sent.RETRY, 7.0, "HTTP 429")),
        (
            503,
            {"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"},
            SendResult(Sent.RETRY, 300.0, "HTTP 503"),
        ),
        (
            503,
            {"Retry-After": "Thu, 01 Jan 2015 00:00:00 GMT"},
            SendResult(Sent.RETRY, 0.0, "HTTP 503"),
        ),
        (503, {"Retry-After": "soon"}, SendResult(Sent.RETRY, None, "HTTP 503")),
        (502, {}, SendResult(Sent.RETRY, None, "HTTP 502")),
        (400, {}, SendResult(Sent.DROPPED, None, "HTTP 400: bad")),
    ],
)
def test_the_http_sink_reads_the_answer(
    status: int, headers: dict[str, str], expected: SendResult
) -> None:
    sink = http_sink(lambda _: httpx.Response(status, json={"detail": "bad"}, headers=headers))

    async def scenario() -> SendResult:
        try:
            return await sink.send("s", EVERY_KIND[:1])
        finally:
            await sink.aclose()

    assert asyncio.run(scenario()) == expected


# 2015-10-21 07:28:00 UTC, the "now" of the Retry-After cases.
NOW = 1445412480.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        # delta-seconds
        ("7", 7.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("3600", 300.0),  # at most RETRY_AFTER_MAX
        ("-5", 0.0),
        # an HTTP date, in each of RFC 9110's three formats
        ("Wed, 21 Oct 2015 07:30:00 GMT", 120.0),
        ("Wednesday, 21-Oct-15 07:30:00 GMT", 120.0),
        ("Wed Oct 21 07:30:00 2015", 120.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # now
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # past: no wait asked
        ("Thu, 22 Oct 2015 07:28:00 GMT", 300.0),  # a day ahead: at most RETRY_AFTER_MAX
        # garbage and missing: the backoff alone decides
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("Wed, 32 Oct 2015 07:30:00 GMT", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_delta_seconds_and_http_dates(
    value: str | None, seconds: float | None
) -> None:
    assert _retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize("status", [401, 403])
def test_the_http_sink_treats_a_refused_token_as_fatal(status: int) -> None:
    sink = http_sink(lambda request: httpx.Response(status, json={"detail": "no"}))

    async def scenario() -> None:
        try:
            await sink.send("s", EVERY_KIND[:1])
        finally:
            await sink.aclose()

    with pytest.raises(FatalWriteError, match=f"answered {status}: no"):
        asyncio.run(scenario())


def test_the_http_sink_retries_when_the_connection_fails() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async def scenario() -> SendResult:
        sink = http_sink(handler)
        try:
            return await sink.send("s", EVERY_KIND[:1])
        finally:
            await sink.aclose()

    refused = SendResult(Sent.RETRY, detail="ConnectError: connection refused")
    assert asyncio.run(scenario()) == refused


@pytest.mark.django_db(transaction=True)
def test_the_direct_sink_applies_or_says_the_session_is_unknown(make_session: Any) -> None:
    make_session("known", kernel=None)

    async def scenario() -> tuple[SendResult, SendResult]:
        sink = DirectSink()
        try:
            events = [KernelStarted(timezone.now()), cell("a", 1, "running")]
            return await sink.send("known", events), await sink.send("unknown", events)
        finally:
            await sink.aclose()

    assert asyncio.run(scenario()) == (SendResult(Sent.WRITTEN), SendResult(Sent.UNKNOWN_SESSION))
    assert KernelProcess.objects.get(session__session_id="known").state == ProcessState.RUNNING


@pytest.mark.django_db(transaction=True)
def test_the_direct_sink_drops_a_batch_stamped_too_far_ahead(make_session: Any) -> None:
    make_session("skewed", kernel=None)

    async def scenario() -> SendResult:
        sink = DirectSink()
        try:
            ahead = timezone.now() + timedelta(hours=1)
            return await sink.send("skewed", [KernelStarted(ahead)])
        finally:
            await sink.aclose()

    result = asyncio.run(scenario())
    assert result.outcome is Sent.DROPPED
    assert "KERNEL_STATUS_MAX_CLOCK_SKEW" in result.detail
    assert not KernelProcess.objects.filter(session__session_id="skewed").exists()


def test_an_unexpected_sink_error_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> ScriptedSink:
        sink = ScriptedSink(RuntimeError("boom"))
        writer = writer_for(sink)
        writer.submit("s", [cell("a", 1, "idle")])
        await eventually_async(lambda: writer.stats.batches == 1, what="the batch written")
        await writer.aclose()
        return sink

    with caplog.at_level(logging.ERROR, "kernel_status.contrib.marimo"):
        sink = asyncio.run(scenario())
    assert len(sink.batches) == 2
    assert "Session 's': writing failed unexpectedly" in caplog.messages


def test_a_long_outage_keeps_retrying_at_the_cap() -> None:
    """Thousands of failed sends in a row: the delay stays at the cap (2.0 ** 1024 used to
    raise OverflowError here and end the session's writing task)."""

    async def scenario() -> list[float]:
        writer = writer_for(ScriptedSink(), backoff_initial=0.5, backoff_max=30.0)
        queue = _Queue(attempt=5000)
        batch: list[KernelEvent] = [cell("a", 1, "idle")]
        delays = [writer._after("s", queue, batch, SendResult(Sent.RETRY)) for _ in range(3)]
        assert queue.attempt == 5003
        assert queue.events == batch * 3  # each failed batch is kept for the next try
        await writer.aclose()
        return delays

    assert all(15.0 <= delay <= 30.0 for delay in asyncio.run(scenario()))
