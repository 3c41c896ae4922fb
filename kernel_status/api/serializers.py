"""Serializers of the API's response bodies; the request body of a batch is in
:mod:`kernel_status.mirror.wire`."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from kernel_status.choices import SessionState
from kernel_status.mirror.wire import PinnedEnumField
from kernel_status.models import Session


class SessionStateField(PinnedEnumField):
    """A :class:`SessionState` value."""

    choices_class = SessionState
    enum_component_name = "KernelStatusStateEnum"


@extend_schema_serializer(component_name="KernelStatusResponse")
class KernelStatusResponseSerializer(serializers.Serializer[Session]):
    """Answer of `GET /api/kernel/status`."""

    state = SessionStateField(
        read_only=True,
        help_text="`stopped`: the kernel process is not alive. `running`: alive, and a cell is "
        "queued or running. `idle`: alive, and no cell is queued or running.",
    )
    # Optional in the schema (neither required nor read-only), so clients generated before
    # it existed keep working, and new clients accept answers from older servers.
    last_activity = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default_timezone=UTC,
        help_text="The latest timestamp among the kernel starts and the cell notifications "
        "with a status (a cell queued, starting to run or finishing) of the current kernel "
        "process (ISO 8601, UTC); null when there is none yet, or after a reset. Heartbeats, "
        "stops, status-less notifications and reads never change it.",
    )


@extend_schema_serializer(component_name="KernelSession")
class KernelSessionSerializer(serializers.Serializer[Session]):
    """One session of `GET /api/kernel/sessions`."""

    session_id = serializers.CharField(read_only=True, help_text="The Marimo-Session-Id.")
    notebook = serializers.CharField(read_only=True, help_text="The notebook's path.")
    state = SessionStateField(
        read_only=True, help_text="The same derived state as `GET /api/kernel/status`."
    )
    last_activity = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        default_timezone=UTC,
        help_text="The latest timestamp among the kernel starts and the cell notifications "
        "with a status (a cell queued, starting to run or finishing) of the current kernel "
        "process (UTC); null when there is none yet, or after a reset. Heartbeats, stops, "
        "status-less notifications and reads never change it.",
    )
    queued_cells = serializers.IntegerField(read_only=True, help_text="Cells queued to run.")
    running_cells = serializers.IntegerField(read_only=True, help_text="Cells running now.")


_DETAIL_DATA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
# The JSON in an event's `data`, per event name.
STREAM_EVENT_DATA: dict[str, dict[str, Any]] = {
    "status": {"$ref": "#/components/schemas/KernelSession"},
    "removed": {
        "type": "object",
        "properties": {"session_id": {"type": "string"}},
        "required": ["session_id"],
    },
    "ready": {
        "type": "object",
        "properties": {
            "resumed": {"type": "boolean"},
            "replayed": {"type": "integer", "minimum": 0},
            "sessions": {"type": "integer", "minimum": 0},
        },
        "required": ["resumed", "replayed", "sessions"],
    },
    "reset": _DETAIL_DATA,
    "reconnect": _DETAIL_DATA,
    "error": _DETAIL_DATA,
}


@extend_schema_field(
    {
        "type": "string",
        "x-contentMediaType": "application/json",
        "x-data-schemas": STREAM_EVENT_DATA,
    }
)
class EventDataField(serializers.CharField):
    """An SSE ``data:`` field: JSON text."""


@extend_schema_serializer(component_name="KernelSessionEvent")
class KernelSessionEventSerializer(serializers.Serializer[Any]):
    """One event of ``GET /api/kernel/sessions/stream``, as its SSE fields."""

    # The wire fields, as text/event-stream carries them (OpenAPI's reading of an event
    # stream's schema): `id` and `data` are text; `data` is JSON, whose schema per event is in
    # `x-data-schemas` (OpenAPI 3.0 has no contentSchema).
    id = serializers.RegexField(
        r"^[0-9]+$",
        read_only=True,
        help_text="The change position after this event (digits): send it back as `Last-Event-ID`.",
    )
    event = serializers.ChoiceField(
        read_only=True,
        choices=list(STREAM_EVENT_DATA),
        help_text="`status`: `data` is the session's entry (as in the listing). `removed`: "
        "`data` is `{session_id}` of a session that left the caller's view. `ready`: the "
        "snapshot or replay is complete (`data`: `resumed`, `replayed`, `sessions`). `reset`: "
        "`Last-Event-ID` could not be replayed, a fresh snapshot follows. `reconnect` and "
        "`error` (`data`: `detail`) end the stream.",
    )
    data = EventDataField(  # type: ignore[assignment]
        read_only=True,
        help_text="The event's payload as JSON text: for `status`, a `KernelSession`; for the "
        "others, the object that `x-data-schemas` gives under the event's name.",
    )


@extend_schema_serializer(component_name="KernelStatusError")
class ErrorSerializer(serializers.Serializer[object]):
    """Body of every error answer."""

    detail = serializers.CharField(read_only=True, help_text="What went wrong, for a human.")


@extend_schema_serializer(component_name="KernelEventBatchResult")
class KernelEventBatchResultSerializer(serializers.Serializer[Any]):
    """What the batch did."""

    applied = serializers.IntegerField(read_only=True, help_text="Events written.")
    ignored_older = serializers.IntegerField(
        read_only=True, help_text="Events older than what was stored (or repeated)."
    )


@extend_schema_serializer(component_name="KernelEventBatchItemError")
class BatchItemErrorSerializer(serializers.Serializer[Any]):
    index = serializers.IntegerField(read_only=True, help_text="Position in `events`.")
    field = serializers.CharField(read_only=True, help_text='Path in the item, e.g. "data.status".')
    message = serializers.CharField(read_only=True)


@extend_schema_serializer(component_name="KernelEventBatchError")
class BatchErrorSerializer(ErrorSerializer):
    """A rejected request: nothing was applied. ``errors`` lists each invalid item, when the
    items are what is wrong (not for a bad header or a body that is not a batch)."""

    # A declared field, so it does not replace Serializer.errors at run time. Not read-only:
    # drf-spectacular would then mark it required, and it is sent only for invalid items.
    errors = BatchItemErrorSerializer(many=True, required=False)  # type: ignore[assignment]
