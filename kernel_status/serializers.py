"""Serializers of kernel_status's API bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import TextChoices
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_serializer
from rest_framework import serializers

from kernel_status.choices import CellRuntimeState, SessionState
from kernel_status.events import (
    EXIT_CAUSE_MAX_LENGTH,
    EXIT_CODE_MAX,
    EXIT_CODE_MIN,
    CellNotification,
    KernelEvent,
    KernelHeartbeat,
    KernelStarted,
    KernelStopped,
    from_epoch,
)
from kernel_status.models import Session
from kernel_status.validators import CELL_ID_MAX_LENGTH, cell_id_problem


class PinnedEnumField(serializers.ChoiceField):
    """A choice field documented as an enum component with a fixed name.

    drf-spectacular names enums after the field ("StateEnum", "StatusEnum"), which collides
    with other enums of the same field name in a host project's schema.
    """

    choices_class: type[TextChoices]
    enum_component_name: str

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=self.choices_class.choices, **kwargs)


class SessionStateField(PinnedEnumField):
    """A :class:`SessionState` value."""

    choices_class = SessionState
    enum_component_name = "KernelStatusStateEnum"


class CellRuntimeStateField(PinnedEnumField):
    """A :class:`CellRuntimeState` value (marimo's runtime state of a cell)."""

    choices_class = CellRuntimeState
    enum_component_name = "CellRuntimeStateEnum"


@extend_schema_serializer(component_name="KernelStatusResponse")
class KernelStatusResponseSerializer(serializers.Serializer[Session]):
    """Answer of `GET /api/kernel/status`."""

    state = SessionStateField(
        read_only=True,
        help_text="`stopped`: the kernel process is not alive. `running`: alive, and a cell is "
        "queued or running. `idle`: alive, and no cell is queued or running.",
    )


@extend_schema_serializer(component_name="KernelStatusError")
class ErrorSerializer(serializers.Serializer[object]):
    """Body of every error answer."""

    detail = serializers.CharField(read_only=True, help_text="What went wrong, for a human.")


# --- ingestion -----------------------------------------------------------------------------------


class TimestampField(serializers.FloatField):
    """Seconds since the epoch (marimo's ``time.time()``). Refuses NaN, infinities, booleans
    and strings, which a lax float field would read as 1970 or parse."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", 253402300799)  # 9999-12-31
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """JSON ``true``/``false`` only: ``"false"`` or ``0`` is an error, not a guess."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class EventDataSerializer(serializers.Serializer[Any]):
    """The ``data`` of one event op; turns itself into a write-API event."""

    def to_event(self, received_at: datetime) -> KernelEvent:
        raise NotImplementedError

    def timestamp_or(self, received_at: datetime) -> datetime:
        timestamp = self.validated_data.get("timestamp")
        return received_at if timestamp is None else from_epoch(timestamp)


@extend_schema_serializer(component_name="CellOpData")
class CellOpDataSerializer(EventDataSerializer):
    """marimo's cell notification. Other keys (output, console, ...) are accepted and ignored."""

    cell_id = serializers.CharField(max_length=CELL_ID_MAX_LENGTH, trim_whitespace=False)
    status = CellRuntimeStateField(required=False, allow_null=True)
    stale_inputs = StrictBooleanField(required=False, allow_null=True)
    timestamp = TimestampField()

    def validate_cell_id(self, value: str) -> str:
        problem = cell_id_problem(value)
        if problem is not None:
            raise serializers.ValidationError(f"Cell id {problem}.")
        return value

    def to_event(self, received_at: datetime) -> CellNotification:
        data = self.validated_data
        return CellNotification(
            cell_id=data["cell_id"],
            timestamp=from_epoch(data["timestamp"]),
            status=data.get("status"),
            stale_inputs=data.get("stale_inputs"),
        )


@extend_schema_serializer(component_name="KernelStartedData")
class KernelStartedDataSerializer(EventDataSerializer):
    """When the new kernel process started.

    Required: a start stamped on arrival would be newer than the cell-ops sent with it, and
    would reset them to idle.
    """

    timestamp = TimestampField()

    def to_event(self, received_at: datetime) -> KernelStarted:
        return KernelStarted(self.timestamp_or(received_at))


@extend_schema_serializer(component_name="KernelHeartbeatData")
class KernelHeartbeatDataSerializer(EventDataSerializer):
    """When the kernel was last seen alive (default: when the server received it)."""

    timestamp = TimestampField(required=False)

    def to_event(self, received_at: datetime) -> KernelHeartbeat:
        return KernelHeartbeat(self.timestamp_or(received_at))


@extend_schema_serializer(component_name="KernelStoppedData")
class KernelStoppedDataSerializer(EventDataSerializer):
    """When the kernel process exited (default: when the server received it), and why."""

    timestamp = TimestampField(required=False)
    exit_code = serializers.IntegerField(
        required=False, allow_null=True, min_value=EXIT_CODE_MIN, max_value=EXIT_CODE_MAX
    )
    cause = serializers.CharField(
        required=False, allow_blank=True, max_length=EXIT_CAUSE_MAX_LENGTH
    )

    def to_event(self, received_at: datetime) -> KernelStopped:
        data = self.validated_data
        return KernelStopped(
            self.timestamp_or(received_at),
            exit_code=data.get("exit_code"),
            cause=data.get("cause", ""),
        )


# The ops the ingestion endpoint mirrors; every other op is counted as ignored.
EVENT_DATA_SERIALIZERS: dict[str, type[EventDataSerializer]] = {
    "cell-op": CellOpDataSerializer,
    "kernel-started": KernelStartedDataSerializer,
    "kernel-heartbeat": KernelHeartbeatDataSerializer,
    "kernel-stopped": KernelStoppedDataSerializer,
}


def _event_serializer(op: str, data: type[EventDataSerializer]) -> type:
    name = "".join(part.capitalize() for part in op.split("-")) + "Event"
    return extend_schema_serializer(component_name=name)(
        type(
            f"{name}Serializer",
            (serializers.Serializer,),
            {
                "__doc__": f'An event with op "{op}".',
                "op": serializers.CharField(help_text=f'Always "{op}".'),
                "data": data(),
            },
        )
    )


@extend_schema_serializer(component_name="KernelEventBatch")
class KernelEventBatchSerializer(serializers.Serializer[Any]):
    """Events of one session, in any order: timestamps decide."""

    events = serializers.ListField(
        child=PolymorphicProxySerializer(
            component_name="KernelEvent",
            serializers=[
                _event_serializer(op, data) for op, data in EVENT_DATA_SERIALIZERS.items()
            ],
            resource_type_field_name="op",
        ),
        help_text="marimo frames and lifecycle reports. Frames with any other op are "
        "accepted and counted in ignored_ops.",
    )


@extend_schema_serializer(component_name="KernelEventBatchResult")
class KernelEventBatchResultSerializer(serializers.Serializer[Any]):
    """What the batch did."""

    applied = serializers.IntegerField(read_only=True, help_text="Events written.")
    ignored_older = serializers.IntegerField(
        read_only=True, help_text="Events older than what was stored (or repeated)."
    )
    ignored_ops = serializers.IntegerField(
        read_only=True, help_text="Frames whose op is not mirrored."
    )


@extend_schema_serializer(component_name="KernelEventBatchItemError")
class BatchItemErrorSerializer(serializers.Serializer[Any]):
    index = serializers.IntegerField(read_only=True, help_text="Position in `events`.")
    field = serializers.CharField(read_only=True, help_text='Path in the item, e.g. "data.status".')
    message = serializers.CharField(read_only=True)


@extend_schema_serializer(component_name="KernelEventBatchError")
class BatchErrorSerializer(ErrorSerializer):
    """A rejected batch: nothing was applied."""

    # A declared field, so it does not replace Serializer.errors at run time.
    errors = BatchItemErrorSerializer(many=True, read_only=True, required=False)  # type: ignore[assignment]
