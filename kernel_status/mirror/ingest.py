"""The ingestion of a posted batch, from its parsed body to the write's report.

One owner for what the body goes through after HTTP has read it: its wire shape
(:class:`~kernel_status.mirror.wire.KernelEventBatchSerializer`: 400 naming each invalid item),
the write (404 for an unknown session) and the report. The HTTP limits of the body itself (411,
413 in bytes or in events, JSON nesting) are in :mod:`kernel_status.api.parsers`.

A batch of nothing but plainly valid cell-ops (most of what a kernel host sends) skips DRF:
:func:`~kernel_status.mirror.events.read_cell_op` reads each into the event the serializer
would make, 5 to 11 times faster for 64 to 1,000 cell-ops. One doubtful item sends the whole
batch through the serializer, so every error and every other op is answered as it answers them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.settings import api_settings

from kernel_status.conf import conf
from kernel_status.exceptions import InvalidEventBatch, SessionNotFound
from kernel_status.mirror.events import ApplyResult, CellNotification, KernelEvent, read_cell_op
from kernel_status.mirror.wire import KernelEventBatchSerializer
from kernel_status.mirror.writes import UnknownSession, apply_events

NOT_A_BATCH = 'The body must be a JSON object with an "events" list.'


def ingest(session_id: str, body: Any, received_at: datetime) -> ApplyResult:
    """Apply a parsed batch body to the session, or raise the API error that says why not.

    ``received_at`` stands in for the timestamp of events sent without one.
    """
    events: Sequence[KernelEvent] | None = fast_cell_ops(body, received_at)
    if events is None:
        serializer = KernelEventBatchSerializer(data=body, context={"received_at": received_at})
        if not serializer.is_valid():
            raise _batch_error(serializer.errors)
        events = serializer.validated_data["events"]
    try:
        return apply_events(session_id, events)
    except UnknownSession:
        raise SessionNotFound() from None


def fast_cell_ops(body: Any, received_at: datetime) -> list[CellNotification] | None:
    """The events of a batch of plainly valid cell-ops, as the serializer would read them
    (its clock guard included), or ``None`` for the serializer to read the batch."""
    if not isinstance(body, dict):
        return None
    items = body.get("events")
    if not isinstance(items, list):
        return None
    skew = conf.max_clock_skew
    horizon = None if skew is None else received_at + skew
    events: list[CellNotification] = []
    for item in items:
        if not isinstance(item, dict) or item.get("op") != "cell-op":
            return None
        data = item.get("data")
        if not isinstance(data, dict):
            return None
        event = read_cell_op(data, horizon)
        if event is None:
            return None
        events.append(event)
    return events


def _batch_error(errors: Mapping[str, Any]) -> ParseError | InvalidEventBatch:
    items = errors.get("events")
    if not isinstance(items, Mapping):  # not a JSON object with an "events" list
        return ParseError(NOT_A_BATCH)
    return InvalidEventBatch(
        [
            {"index": index, "field": field, "message": message}
            for index, item_errors in sorted(items.items())
            for field, message in _flatten(item_errors)
        ]
    )


def _flatten(errors: Any, prefix: str = "") -> list[tuple[str, str]]:
    """DRF's nested error dict as ("path", "message") pairs; errors of a whole object (DRF's
    ``non_field_errors``) take the object's path."""
    if isinstance(errors, Mapping):
        return [
            pair
            for key, value in errors.items()
            for pair in _flatten(value, _join(prefix, str(key)))
        ]
    if isinstance(errors, list):
        return [pair for value in errors for pair in _flatten(value, prefix)]
    return [(prefix, str(errors))]


def _join(prefix: str, key: str) -> str:
    if key == api_settings.NON_FIELD_ERRORS_KEY:
        return prefix
    return f"{prefix}.{key}" if prefix else key
