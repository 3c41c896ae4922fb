"""Turning an ingestion request body into write-API events, or saying exactly what is wrong."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.utils import timezone
from rest_framework.exceptions import ParseError

from kernel_status.conf import conf
from kernel_status.events import KernelEvent
from kernel_status.exceptions import BatchTooLarge, InvalidEventBatch
from kernel_status.serializers import EVENT_DATA_SERIALIZERS


@dataclass
class ParsedBatch:
    events: list[KernelEvent]
    ignored_ops: int


def parse_batch(body: Any) -> ParsedBatch:
    """Validate the whole batch before anything is applied: all of it is valid, or none."""
    if not isinstance(body, Mapping) or not isinstance(body.get("events"), list):
        raise ParseError('The body must be a JSON object with an "events" list.')
    items: list[Any] = body["events"]
    limit = conf.KERNEL_STATUS_MAX_BATCH_SIZE
    if len(items) > limit:
        raise BatchTooLarge(
            f"The batch has {len(items)} events; at most {limit} are accepted per request."
        )
    received_at = timezone.now()
    events: list[KernelEvent] = []
    ignored_ops = 0
    errors: list[dict[str, object]] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            errors.append({"index": index, "field": "", "message": "Must be a JSON object."})
            continue
        op = item.get("op")
        if not isinstance(op, str):
            errors.append({"index": index, "field": "op", "message": "Must be a string."})
            continue
        if op not in EVENT_DATA_SERIALIZERS:
            ignored_ops += 1
            continue
        data = item.get("data")
        if not isinstance(data, Mapping):
            errors.append({"index": index, "field": "data", "message": "Must be a JSON object."})
            continue
        serializer = EVENT_DATA_SERIALIZERS[op](data=data)
        if not serializer.is_valid():
            errors.extend(
                {"index": index, "field": f"data.{path}", "message": message}
                for path, message in _flatten(serializer.errors)
            )
            continue
        events.append(serializer.to_event(received_at))
    if errors:
        raise InvalidEventBatch(errors)
    return ParsedBatch(events, ignored_ops)


def _flatten(errors: Any, prefix: str = "") -> list[tuple[str, str]]:
    """DRF's nested error dict as ("path", "message") pairs."""
    if isinstance(errors, Mapping):
        return [
            pair
            for key, value in errors.items()
            for pair in _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        ]
    if isinstance(errors, list):
        return [pair for value in errors for pair in _flatten(value, prefix)]
    return [(prefix, str(errors))]
