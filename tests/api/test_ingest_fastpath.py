"""The ingestion endpoint's fast path for batches of cell-ops: the serializer's events, or none.

``kernel_status.mirror.ingest.fast_cell_ops`` reads a batch of plainly valid cell-ops without DRF;
anything it declines goes through ``KernelEventBatchSerializer`` as before. So it must never
accept what the serializer refuses, nor read anything differently.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from kernel_status import mirror
from kernel_status.api import views
from kernel_status.choices import CellRuntimeState
from kernel_status.events import from_epoch
from kernel_status.mirror import ingest
from kernel_status.mirror.ingest import fast_cell_ops
from kernel_status.mirror.wire import KernelEventBatchSerializer
from kernel_status.models import CellStatus, KernelProcess, Session
from tests.utils import SESSION_ID, cell_op, post, post_text

RECEIVED_AT = timezone.now().replace(microsecond=0)
NOW = RECEIVED_AT.timestamp()
SKEW = 300.0  # KERNEL_STATUS_MAX_CLOCK_SKEW's default

# --- what the serializer makes of a batch ---------------------------------------------------


def serializer_events(body: Any, received_at: datetime = RECEIVED_AT) -> list[Any] | None:
    serializer = KernelEventBatchSerializer(data=body, context={"received_at": received_at})
    return list(serializer.validated_data["events"]) if serializer.is_valid() else None


def assert_parity(body: Any, received_at: datetime = RECEIVED_AT) -> bool:
    """The fast path declines ``body`` or reads exactly the serializer's events; whether it
    took it."""
    fast = fast_cell_ops(body, received_at)
    if fast is None:
        return False
    assert serializer_events(body, received_at) == fast
    return True


# --- generated cell-op data, valid and not ---------------------------------------------------

timestamps = st.one_of(
    st.floats(min_value=0, max_value=NOW + 2 * SKEW),  # the usual, and past the clock guard
    st.floats(),  # NaN, infinities, negatives, beyond 9999
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=253402300790, max_value=253402300810),  # around the upper bound
    st.floats(min_value=253402300799, max_value=253402300800),
    st.sampled_from([NOW + SKEW, NOW + SKEW + 1e-6, NOW + SKEW - 1e-6, -0.0, 0, 1e-7]),
    st.booleans(),
    st.text(max_size=5),
    st.sampled_from(["1e9", str(NOW), None, [NOW], {"t": NOW}]),
)
cell_ids = st.one_of(
    st.text(max_size=8),  # includes empty, blank, control characters
    st.text(alphabet="xy", min_size=126, max_size=130),  # around the 128 limit
    st.sampled_from(["a", " a ", "\t", "", "a\x00b", "a\x85", "Hbdk", "\ud800", "a\udfff"]),
    st.integers(),
    st.none(),
    st.booleans(),
)
statuses = st.one_of(
    st.sampled_from([*CellRuntimeState.values, None, "", "IDLE", "done", " idle"]),
    st.integers(),
    st.booleans(),
    st.lists(st.just("idle"), max_size=1),
)
stale_flags = st.one_of(st.none(), st.booleans(), st.sampled_from([0, 1, "false", "true", ""]))
extra = st.dictionaries(
    st.sampled_from(["op", "output", "console", "run_id", "serialization", "other"]),
    st.one_of(st.none(), st.text(max_size=3), st.integers()),
    max_size=3,
)
MISSING = object()


@st.composite
def cell_op_data(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = draw(extra)
    for key, strategy in [
        ("cell_id", cell_ids),
        ("status", statuses),
        ("stale_inputs", stale_flags),
        ("timestamp", timestamps),
    ]:
        value = draw(st.one_of(strategy, st.just(MISSING)))
        if value is not MISSING:
            data[key] = value
    return data


@given(data=cell_op_data())
def test_a_generated_cell_op_is_declined_or_read_as_the_serializer_reads_it(
    data: dict[str, Any],
) -> None:
    assert_parity({"events": [{"op": "cell-op", "data": data}]})


@given(data=st.lists(cell_op_data(), min_size=1, max_size=4))
def test_a_generated_batch_is_declined_or_read_as_the_serializer_reads_it(
    data: list[dict[str, Any]],
) -> None:
    assert_parity({"events": [{"op": "cell-op", "data": d} for d in data]})


@pytest.mark.parametrize("skew", [None, 0, 1])
@given(data=cell_op_data())
def test_the_clock_guard_is_the_serializers_at_any_setting(
    skew: float | None, data: dict[str, Any]
) -> None:
    with override_settings(KERNEL_STATUS_MAX_CLOCK_SKEW=skew):
        assert_parity({"events": [{"op": "cell-op", "data": data}]})


VALID: list[dict[str, Any]] = [
    {"cell_id": "a", "status": "idle", "timestamp": 1.5},
    {"cell_id": "a", "status": None, "stale_inputs": True, "timestamp": 2},
    {"cell_id": "a", "timestamp": 0},
    {"cell_id": " a ", "status": "queued", "stale_inputs": False, "timestamp": NOW},
    {"cell_id": "x" * 128, "status": "running", "timestamp": NOW + SKEW},  # at the horizon
    {"cell_id": "a", "status": "idle", "timestamp": 253402300799},  # at the bound, no guard
    cell_op("Hbdk", "running", NOW)["data"],  # marimo's frame, with keys nobody reads
]


@pytest.mark.parametrize("data", VALID)
def test_plainly_valid_cell_ops_take_the_fast_path(data: dict[str, Any]) -> None:
    body = {"events": [{"op": "cell-op", "data": data, "other": 1}]}
    skew = None if data["timestamp"] > NOW + SKEW else SKEW
    with override_settings(KERNEL_STATUS_MAX_CLOCK_SKEW=skew):
        assert assert_parity(body)
        (event,) = fast_cell_ops(body, RECEIVED_AT) or []
    assert event.timestamp == from_epoch(float(data["timestamp"]))
    assert (event.cell_id, event.status) == (data["cell_id"], data.get("status"))


@pytest.mark.parametrize(
    "body",
    [
        {"events": []},  # nothing to read either way
        {"events": [cell_op("a", "idle", NOW), cell_op("b", "running", NOW - 1)]},
    ],
)
def test_whole_batches_of_valid_cell_ops_take_the_fast_path(body: Any) -> None:
    assert assert_parity(body)


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"events": None},
        {"events": {"0": cell_op("a", "idle", NOW)}},
        {"events": [cell_op("a", "idle", NOW), {"op": "kernel-heartbeat", "data": {}}]},
        {"events": [cell_op("a", "idle", NOW), 7]},
        {"events": [{"op": "cell-op", "data": None}]},
        {"events": [{"op": "cell-op", "data": [["cell_id", "a"]]}]},
        {"events": [{"op": "cell-op"}]},
        {"events": [{"data": cell_op("a", "idle", NOW)["data"]}]},
        {"events": [cell_op("a", "idle", NOW + SKEW + 1)]},  # past the clock guard
        {"events": [cell_op("a", "idle", math.nan)]},
        {"events": [cell_op("a", "idle", True)]},
        {"events": [cell_op("a", "idle", 253402300799.9999999)]},
    ],
)
def test_anything_doubtful_is_left_to_the_serializer(body: Any) -> None:
    assert fast_cell_ops(body, RECEIVED_AT) is None


# --- over HTTP -------------------------------------------------------------------------------


def stored(session_id: str) -> list[tuple[Any, ...]]:
    return list(
        CellStatus.objects.filter(session__session_id=session_id)
        .order_by("cell_id")
        .values_list("cell_id", "status", "stale", "notified_at", "status_at", "stale_at")
    )


def test_a_batch_of_cell_ops_is_applied_and_answered_as_through_the_serializer(
    session: Session, reporter: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror.register_session("s2", owner=session.owner, notebook="nb.py")
    now = timezone.now().timestamp()
    body = {
        "events": [
            cell_op("a", "queued", now - 3),
            cell_op("a", "running", now - 2),
            cell_op("b", "idle", now - 1, stale_inputs=True),
            cell_op("c", None, now - 1, stale_inputs=False),
            cell_op("b", "queued", now - 5),  # older: status keeps the newer idle
        ]
    }
    assert fast_cell_ops(body, timezone.now()) is not None
    post(reporter, {"events": []})  # loads the reporter's permissions, which are then cached
    with CaptureQueriesContext(connection) as fast_queries:
        fast = [post(reporter, body), post(reporter, body)]
    monkeypatch.setattr(ingest, "fast_cell_ops", lambda body, received_at: None)
    with CaptureQueriesContext(connection) as slow_queries:
        slow = [post(reporter, body, session_id="s2"), post(reporter, body, session_id="s2")]

    assert [r.status_code for r in fast] == [r.status_code for r in slow] == [200, 200]
    assert [r.json() for r in fast] == [r.json() for r in slow]
    assert fast[0].json() == {"applied": 5, "ignored_older": 0}
    assert fast[1].json() == {"applied": 0, "ignored_older": 5}
    assert [r["Cache-Control"] for r in fast] == [r["Cache-Control"] for r in slow]
    assert stored(session.session_id) == stored("s2")
    assert [(cell, status, stale) for cell, status, stale, *_ in stored("s2")] == [
        ("a", "running", False),
        ("b", "idle", True),
        ("c", "idle", False),
    ]
    assert len(fast_queries) == len(slow_queries)


@pytest.mark.parametrize(
    ("item", "field", "message"),
    [
        (cell_op("a", "idle", True), "data.timestamp", "A valid number is required."),
        (cell_op("a", "done", NOW), "data.status", '"done" is not a valid choice.'),
        (cell_op("", "idle", NOW), "data.cell_id", "This field may not be blank."),
        (
            cell_op("a", "idle", -1),
            "data.timestamp",
            "Ensure this value is greater than or equal to 0.",
        ),
        (
            cell_op("a", "idle", NOW + 10 * SKEW),
            "data.timestamp",
            "Is more than KERNEL_STATUS_MAX_CLOCK_SKEW (300 s) ahead of the server clock.",
        ),
        ({"op": "cell-op", "data": None}, "data", "This field may not be null."),
        (  # was a 500 on PostgreSQL: the fast path took it, and no JSON may hold it
            cell_op("\ud800", "idle", NOW),
            "data.cell_id",
            "Cell id contains a lone surrogate, which is not valid Unicode.",
        ),
    ],
)
def test_one_invalid_cell_op_gets_the_serializers_400(
    session: Session, reporter: APIClient, item: Any, field: str, message: str
) -> None:
    body = {"events": [cell_op("ok", "running", NOW), item, cell_op("ok2", "idle", NOW)]}
    response = post_text(reporter, json.dumps(body))  # "\ud800" escaped, as JSON allows
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"Invalid event batch: events[1].{field}: {message}",
        "errors": [{"index": 1, "field": field, "message": message}],
    }
    assert not CellStatus.objects.exists()
    assert not KernelProcess.objects.exists()


# --- the endpoint's answers: the fast path changes none ------------------------------------

odd_numbers = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),  # NaN and infinities become JSON's non-standard NaN and Infinity tokens
    st.sampled_from([10**400, -(10**400), 2**63, 2**31, 1e308, 5e-324, -0.0, NOW]),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "0x10", "1_000", " 1"]),
)
odd_text = st.one_of(
    st.text(max_size=6),
    st.text(st.characters(categories=["Cs", "Cc", "Zs"]), min_size=1, max_size=3),
    st.sampled_from(["\ud800", "a\udfff", "\udbff\udc00", "\x00", "a\x00", "😀"]),
    st.integers(min_value=127, max_value=10_000).map(lambda length: "x" * length),
)
junk = st.recursive(
    st.none() | st.booleans() | odd_numbers | odd_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=8,
)
OPS = ["cell-op", "kernel-started", "kernel-heartbeat", "kernel-stopped"]


valid_cell_op_data = st.fixed_dictionaries(
    {
        "cell_id": st.text("abcXYZ09-_ é😀", min_size=1, max_size=10),
        "status": st.sampled_from([*CellRuntimeState.values, None]),
        "timestamp": st.floats(min_value=0, max_value=NOW),
    },
    optional={"stale_inputs": st.booleans(), "output": st.none()},
)


@st.composite
def odd_cell_op(draw: st.DrawFn, data: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A cell-op frame of ``data``, now and then with a value replaced by an odd one."""
    drawn = draw(data)
    for key, strategy in [
        ("cell_id", odd_text),
        ("timestamp", odd_numbers),
        ("status", junk),
        ("stale_inputs", junk),
        ("output", junk),
    ]:
        if draw(st.integers(0, 14)) == 0:
            drawn[key] = draw(strategy)
    return {"op": "cell-op", "data": drawn}


lifecycle_event = st.fixed_dictionaries(
    {
        "op": st.one_of(st.sampled_from(OPS), junk),
        "data": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "timestamp": st.one_of(timestamps, odd_numbers),
                    "exit_code": odd_numbers,
                    "cause": odd_text,
                },
            ),
            junk,
        ),
    }
)
# Batches of cell-ops, valid but for a value now and then, which the fast path may take;
# batches of any cell-op data; batches of anything; anything.
event_items = st.one_of(odd_cell_op(cell_op_data()), lifecycle_event, junk)
batches = st.one_of(
    st.fixed_dictionaries(
        {"events": st.lists(odd_cell_op(valid_cell_op_data), min_size=1, max_size=4)}
    ),
    st.fixed_dictionaries({"events": st.lists(odd_cell_op(cell_op_data()), max_size=4)}),
    st.fixed_dictionaries({"events": st.lists(event_items, max_size=4)}),
    junk,
)


def answer(client: APIClient, text: str) -> tuple[int, Any, list[tuple[Any, ...]], list[Any]]:
    """The endpoint's answer to ``text`` and what it stored, then rolled back."""
    with transaction.atomic():
        response = post_text(client, text)
        result = (
            response.status_code,
            response.json(),
            stored(SESSION_ID),
            list(KernelProcess.objects.values_list("state", "started_at", "stopped_at")),
        )
        transaction.set_rollback(True)
    return result


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=batches)
def test_the_fast_path_and_the_serializer_answer_every_batch_alike(
    session: Session, reporter: APIClient, monkeypatch: pytest.MonkeyPatch, body: Any
) -> None:
    """Over HTTP, on this run's database: the answer (status, body, stored rows) is the same
    with the fast path as through the serializer alone, and never a 500."""
    # One clock for both requests: an event stamped near the clock guard's horizon, or one
    # stamped on arrival, is read alike by both.
    monkeypatch.setattr(views, "timezone", type("Clock", (), {"now": lambda: RECEIVED_AT}))
    taken: list[bool] = []

    def fast(body: Any, received_at: datetime) -> list[Any] | None:
        events = fast_cell_ops(body, received_at)  # the module's own, as imported
        taken.append(events is not None)
        return events

    text = json.dumps(body)
    monkeypatch.setattr(ingest, "fast_cell_ops", fast)
    with_fast_path = answer(reporter, text)
    monkeypatch.setattr(ingest, "fast_cell_ops", lambda body, received_at: None)
    serializer_only = answer(reporter, text)

    assert with_fast_path[0] != 500, with_fast_path[1]
    assert serializer_only[0] != 500, serializer_only[1]
    assert with_fast_path == serializer_only
    event(f"fast path: {bool(taken and taken[0])}, answer: {with_fast_path[0]}")
    if taken and taken[0]:
        assert with_fast_path[0] == 200
        assert assert_parity(json.loads(text), RECEIVED_AT)


def test_a_400_that_quotes_a_lone_surrogate_is_json(session: Session, reporter: APIClient) -> None:
    # DRF's renderer could not encode the message as UTF-8, and Django answered with HTML.
    response = post_text(reporter, json.dumps({"events": [cell_op("a", "\ud800", NOW)]}))
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert b'"\\"\\ud800\\" is not a valid choice."' in response.content
    assert response.json()["errors"] == [
        {"index": 0, "field": "data.status", "message": '"\ud800" is not a valid choice.'}
    ]
