"""The mirror's invariant, by property-based tests (Hypothesis).

For any set of notifications of one session, split into batches in any way, with the batches
sent in any order and any of them sent again, the final mirror equals the result of applying
every notification once, one at a time, in timestamp order. ``reference`` below is that
one-at-a-time model; it shares no code with kernel_status.mirror.

Example counts come from the Hypothesis profile (tests/conftest.py): ``ci`` under CI=true
(derandomized, a fixed count per database run), ``dev`` otherwise.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from kernel_status import mirror
from kernel_status.choices import CellRuntimeState, ProcessState, SessionState
from kernel_status.events import (
    CellNotification,
    KernelEvent,
    KernelHeartbeat,
    KernelStarted,
    KernelStopped,
    from_epoch,
)
from kernel_status.models import CellStatus, KernelProcess, Session
from tests.utils import post

# Whole seconds, so that epoch floats plus a few microseconds survive the trip through JSON.
BASE_EPOCH = float(int(timezone.now().timestamp()) - 20)
# Offsets in microseconds: few enough that timestamps collide often.
OFFSETS = st.integers(min_value=0, max_value=12)
CELL_IDS = st.sampled_from(["a", "b", "c"])
STATUSES = st.one_of(st.none(), st.sampled_from(CellRuntimeState.values))
STALE = st.one_of(st.none(), st.booleans())
EXIT_CODES = st.one_of(st.none(), st.sampled_from([0, 1, -9]))
CAUSES = st.sampled_from(["", "killed", "session closed"])

# Examples share the test's database transaction; each one uses a session of its own.
PER_EXAMPLE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
_session_ids = itertools.count()


def at(offset: int) -> datetime:
    return from_epoch(epoch(offset))


def epoch(offset: int) -> float:
    return BASE_EPOCH + offset / 1_000_000


def cell_ops() -> st.SearchStrategy[KernelEvent]:
    return st.builds(
        lambda cell_id, offset, status, stale: CellNotification(cell_id, at(offset), status, stale),
        CELL_IDS,
        OFFSETS,
        STATUSES,
        STALE,
    )


def kernel_events() -> st.SearchStrategy[KernelEvent]:
    return st.one_of(
        st.builds(lambda offset: KernelStarted(at(offset)), OFFSETS),
        st.builds(lambda offset: KernelHeartbeat(at(offset)), OFFSETS),
        st.builds(
            lambda offset, code, cause: KernelStopped(at(offset), exit_code=code, cause=cause),
            OFFSETS,
            EXIT_CODES,
            CAUSES,
        ),
    )


EVENTS = st.lists(st.one_of(cell_ops(), cell_ops(), kernel_events()), max_size=14)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[KernelEvent], list[list[KernelEvent]]]:
    """A notification set, and the batches it is delivered in: any partition, any order,
    some batches sent again."""
    events = draw(EVENTS)
    shuffled = draw(st.permutations(events))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(events) - 1)))) if events else [])
    bounds = [0, *(c for c in cuts if c < len(events)), len(events)]
    batches = [shuffled[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    if batches:
        batches += [
            batches[i] for i in draw(st.lists(st.sampled_from(range(len(batches))), max_size=3))
        ]
    return events, draw(st.permutations(batches))


# --- the sequential reference ------------------------------------------------------------------

STATUS_RANK = {"queued": 0, "running": 1, "disabled-transitively": 2, "idle": 3}


@dataclass
class Kernel:
    state: str = ProcessState.NOT_STARTED
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    last_heartbeat_at: datetime | None = None
    exit_code: int | None = None
    exit_cause: str = ""


@dataclass
class Mirror:
    cells: dict[str, tuple[str, bool]] = field(default_factory=dict)
    kernel: Kernel | None = None
    state: str = SessionState.STOPPED
    last_activity: datetime | None = None


def reference(events: Sequence[KernelEvent], now: datetime) -> Mirror:
    """Every notification once, one at a time, in timestamp order.

    Within one timestamp: the start first, then cell-ops and heartbeats, then the stop. Of
    several values for one field at one timestamp the documented rank decides: for a status
    the one that ends a run, for a stale flag ``False``, for exit codes and causes the
    largest. Activity is the time of the last start or status-bearing cell-op applied.
    """
    model = Mirror()
    by_time: dict[datetime, list[KernelEvent]] = defaultdict(list)
    for event in events:
        by_time[event.timestamp].append(event)
    for t in sorted(by_time):
        group = by_time[t]
        if any(isinstance(e, KernelStarted) for e in group):
            model.kernel = Kernel(ProcessState.RUNNING, t, None, t)
            model.cells = {cell_id: ("idle", False) for cell_id in model.cells}
            model.last_activity = t
        ops: dict[str, list[CellNotification]] = defaultdict(list)
        for e in group:
            if isinstance(e, CellNotification):
                ops[e.cell_id].append(e)
        for cell_id, cell_ops_at_t in ops.items():
            status, stale = model.cells.get(cell_id, ("idle", False))
            statuses = [o.status for o in cell_ops_at_t if o.status is not None]
            if statuses:
                status = max(statuses, key=STATUS_RANK.__getitem__)
                model.last_activity = t  # a cell was queued, started or finished
            flags = [o.stale_inputs for o in cell_ops_at_t if o.stale_inputs is not None]
            if flags:
                stale = min(flags)  # False wins a tie
            model.cells[cell_id] = (status, stale)
        if any(isinstance(e, KernelHeartbeat) for e in group):
            model.kernel = model.kernel or Kernel()
            model.kernel.last_heartbeat_at = t
        stops = [e for e in group if isinstance(e, KernelStopped)]
        if stops:
            stopped = model.kernel = model.kernel or Kernel()
            stopped.state, stopped.stopped_at = ProcessState.STOPPED, t
            codes = [s.exit_code for s in stops if s.exit_code is not None]
            if codes:
                stopped.exit_code = max(codes)
            causes = [s.cause for s in stops if s.cause]
            if causes:
                stopped.exit_cause = max(causes)
    kernel = model.kernel
    if kernel is not None and kernel.state == ProcessState.RUNNING:
        # Alive: inside the default 60 s liveness window at ``now``.
        heard = kernel.last_heartbeat_at or kernel.started_at
        assert heard is not None
        assert now - heard < timedelta(seconds=60)
        busy = any(status in ("queued", "running") for status, _ in model.cells.values())
        model.state = SessionState.RUNNING if busy else SessionState.IDLE
    return model


def stored(session: Session, now: datetime) -> Mirror:
    row = KernelProcess.objects.filter(session=session).first()
    kernel = None
    if row is not None:
        kernel = Kernel(
            row.state,
            row.started_at,
            row.stopped_at,
            row.last_heartbeat_at,
            row.exit_code,
            row.exit_cause,
        )
    row_with_state = Session.objects.with_state(now=now).get(pk=session.pk)
    return Mirror(
        {c.cell_id: (c.status, c.stale) for c in CellStatus.objects.filter(session=session)},
        kernel,
        str(row_with_state.state),
        row_with_state.last_activity,
    )


def normalized(model: Mirror) -> Mirror:
    """An idle, not stale cell and no row at all say the same."""
    cells = {k: v for k, v in model.cells.items() if v != ("idle", False)}
    return Mirror(cells, model.kernel, model.state, model.last_activity)


def new_session(users: dict[str, User]) -> Session:
    return mirror.register_session(f"h{next(_session_ids)}", owner=users["owner"], notebook="nb.py")


def now_for_reads() -> datetime:
    return at(0) + timedelta(seconds=1)


# --- the properties --------------------------------------------------------------------------


@PER_EXAMPLE
@given(delivery=deliveries())
def test_any_batching_order_and_repeats_give_the_sequential_result(
    users: dict[str, User], delivery: tuple[list[KernelEvent], list[list[KernelEvent]]]
) -> None:
    events, batches = delivery
    session = new_session(users)
    for batch in batches:
        mirror.apply_events(session.session_id, batch)
    now = now_for_reads()
    assert normalized(stored(session, now)) == normalized(reference(events, now))


def as_item(event: KernelEvent) -> dict[str, Any]:
    """The wire form of an event, as a kernel host sends it."""
    t = event.timestamp.timestamp()
    if isinstance(event, CellNotification):
        return {
            "op": "cell-op",
            "data": {
                "cell_id": event.cell_id,
                "status": event.status,
                "stale_inputs": event.stale_inputs,
                "console": None,
                "timestamp": t,
            },
        }
    if isinstance(event, KernelStarted):
        return {"op": "kernel-started", "data": {"timestamp": t}}
    if isinstance(event, KernelHeartbeat):
        return {"op": "kernel-heartbeat", "data": {"timestamp": t}}
    data: dict[str, Any] = {"timestamp": t}
    if event.exit_code is not None:
        data["exit_code"] = event.exit_code
    if event.cause:
        data["cause"] = event.cause
    return {"op": "kernel-stopped", "data": data}


def http_examples() -> int:
    """A quarter of the profile's count: each example is several full requests."""
    return max(10, settings().max_examples // 4)


@settings(PER_EXAMPLE, max_examples=http_examples())
@given(delivery=deliveries())
def test_the_invariant_holds_through_post_api_kernel_events(
    users: dict[str, User],
    reporter: APIClient,
    delivery: tuple[list[KernelEvent], list[list[KernelEvent]]],
) -> None:
    events, batches = delivery
    session = new_session(users)
    for batch in batches:
        response = post(reporter, {"events": [as_item(e) for e in batch]}, session.session_id)
        assert response.status_code == 200, response.content
    now = now_for_reads()
    assert normalized(stored(session, now)) == normalized(reference(events, now))


def test_timestamps_survive_json() -> None:
    """The HTTP property compares datetimes rebuilt from floats: no microsecond may shift."""
    for offset in range(13):
        assert from_epoch(at(offset).timestamp()) == at(offset)


def _all_orders(events: list[KernelEvent]) -> Iterator[list[list[KernelEvent]]]:
    for order in itertools.permutations(events):
        yield [[e] for e in order]


@pytest.mark.parametrize(
    "events",
    [
        # The reproduction, and its tie variants.
        [
            KernelStarted(at(0)),
            CellNotification("c", at(2)),
            CellNotification("c", at(1), "running"),
        ],
        [CellNotification("c", at(1), "queued"), CellNotification("c", at(1), "idle", True)],
        [
            KernelStarted(at(1)),
            KernelStopped(at(1), exit_code=1),
            CellNotification("c", at(1), "running"),
        ],
        [
            KernelStarted(at(0)),
            KernelStopped(at(2)),
            KernelStarted(at(1)),
            CellNotification("c", at(1), "queued"),
        ],
        # Review finding 1.2: activity must end at the idle, in every order.
        [
            KernelStarted(at(0)),
            CellNotification("c", at(1), "running"),
            CellNotification("c", at(3), "idle"),
        ],
    ],
    ids=[
        "issue-7",
        "status-tie",
        "start-stop-op-tie",
        "start-before-stop-arrives-late",
        "activity-run-ends",
    ],
)
def test_every_order_of_single_event_batches(
    users: dict[str, User], events: list[KernelEvent]
) -> None:
    """Small sets, exhaustively: every arrival order, one event per batch."""
    now = now_for_reads()
    expected = normalized(reference(events, now))
    for batches in _all_orders(events):
        session = new_session(users)
        for batch in batches:
            mirror.apply_events(session.session_id, batch)
        assert normalized(stored(session, now)) == expected, batches
