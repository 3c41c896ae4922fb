"""Serializers of kernel_status's API bodies."""

from __future__ import annotations

from typing import Any

from django.db.models import TextChoices
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_serializer
from rest_framework import serializers

from kernel_status.choices import CellRuntimeState, KernelStatus
from kernel_status.events import CellNotification, from_epoch
from kernel_status.models import Session
from kernel_status.validators import session_id_problem


class PinnedEnumField(serializers.ChoiceField):
    """A choice field documented as an enum component with a fixed name.

    drf-spectacular names enums after the field ("StateEnum", "StatusEnum"), which collides
    with other enums of the same field name in a host project's schema.
    """

    choices_class: type[TextChoices]
    enum_component_name: str

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=self.choices_class.choices, **kwargs)


class KernelStatusField(PinnedEnumField):
    """A :class:`KernelStatus` value."""

    choices_class = KernelStatus
    enum_component_name = "KernelStatusStateEnum"


class CellRuntimeStateField(PinnedEnumField):
    """A :class:`CellRuntimeState` value (marimo's runtime state of a cell)."""

    choices_class = CellRuntimeState
    enum_component_name = "CellRuntimeStateEnum"


@extend_schema_serializer(component_name="KernelStatusResponse")
class KernelStatusResponseSerializer(serializers.Serializer[Session]):
    """Answer of `GET /api/kernel/status`."""

    state = KernelStatusField(
        source="status",
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
    """Seconds since the epoch (marimo's ``time.time()``); refuses NaN and infinities."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", 253402300799)  # 9999-12-31
        super().__init__(**kwargs)


@extend_schema_serializer(component_name="CellOpData")
class CellOpDataSerializer(serializers.Serializer[Any]):
    """marimo's cell notification. Other keys (output, console, ...) are accepted and ignored."""

    cell_id = serializers.CharField(max_length=128, trim_whitespace=False)
    status = CellRuntimeStateField(required=False, allow_null=True)
    stale_inputs = serializers.BooleanField(required=False, allow_null=True)
    timestamp = TimestampField()

    def validate_cell_id(self, value: str) -> str:
        problem = session_id_problem(value)
        if problem is not None:
            raise serializers.ValidationError(f"Cell id {problem}.")
        return value

    def to_event(self) -> CellNotification:
        data = self.validated_data
        return CellNotification(
            cell_id=data["cell_id"],
            timestamp=from_epoch(data["timestamp"]),
            status=data.get("status"),
            stale_inputs=data.get("stale_inputs"),
        )


@extend_schema_serializer(component_name="KernelLifecycleData")
class KernelLifecycleDataSerializer(serializers.Serializer[Any]):
    """When it happened (default: when the server received it), and for a stop, why."""

    timestamp = TimestampField(required=False)
    exit_code = serializers.IntegerField(
        required=False, allow_null=True, min_value=-(2**31), max_value=2**31 - 1
    )
    cause = serializers.CharField(required=False, allow_blank=True, max_length=255)


def _event_serializer(op: str, data: type[serializers.Serializer[Any]], doc: str) -> type:
    name = "".join(part.capitalize() for part in op.split("-")) + "Event"
    return extend_schema_serializer(component_name=name)(
        type(
            f"{name}Serializer",
            (serializers.Serializer,),
            {
                "__doc__": doc,
                "op": serializers.CharField(help_text=f'Always "{op}".'),
                "data": data(),
            },
        )
    )


EVENT_SERIALIZERS: dict[str, type] = {
    "cell-op": _event_serializer(
        "cell-op", CellOpDataSerializer, "A marimo websocket frame, verbatim."
    ),
    "kernel-started": _event_serializer(
        "kernel-started", KernelLifecycleDataSerializer, "A new kernel process is up."
    ),
    "kernel-heartbeat": _event_serializer(
        "kernel-heartbeat", KernelLifecycleDataSerializer, "The kernel process is alive."
    ),
    "kernel-stopped": _event_serializer(
        "kernel-stopped", KernelLifecycleDataSerializer, "The kernel process exited."
    ),
}


@extend_schema_serializer(component_name="KernelEventBatch")
class KernelEventBatchSerializer(serializers.Serializer[Any]):
    """Events of one session, in any order: timestamps decide."""

    events = serializers.ListField(
        child=PolymorphicProxySerializer(
            component_name="KernelEvent",
            serializers=list(EVENT_SERIALIZERS.values()),
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
