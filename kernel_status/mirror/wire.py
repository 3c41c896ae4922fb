"""The wire format of a batch for ``POST /api/kernel/events``: DRF serializers that read each
event into a write-API event, and from which the schema documents the request body.

Defined here once, for the ingestion path (:mod:`kernel_status.mirror.ingest`) and for the
schema (the extensions in :mod:`kernel_status.api.openapi.extensions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db.models import TextChoices
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from kernel_status.choices import CellRuntimeState
from kernel_status.conf import conf
from kernel_status.mirror.events import (
    MAX_EPOCH_SECONDS,
    MIN_EPOCH_SECONDS,
    CellNotification,
    KernelEvent,
    KernelHeartbeat,
    KernelStarted,
    KernelStopped,
    from_epoch,
    stale_inputs_problem,
    status_problem,
    timestamp_problem,
)
from kernel_status.validators import (
    EXIT_CAUSE_MAX_LENGTH,
    EXIT_CODE_MAX,
    EXIT_CODE_MIN,
    cell_id_problem,
)


class PinnedEnumField(serializers.ChoiceField):
    """A choice field documented as an enum component with a fixed name.

    drf-spectacular names enums after the field ("StateEnum", "StatusEnum"), which collides
    with other enums of the same field name in a host project's schema.
    """

    choices_class: type[TextChoices]
    enum_component_name: str

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=self.choices_class.choices, **kwargs)


class CellRuntimeStateField(PinnedEnumField):
    """A :class:`CellRuntimeState` value (marimo's runtime state of a cell), by the rule
    :func:`~kernel_status.mirror.events.status_problem`."""

    choices_class = CellRuntimeState
    enum_component_name = "CellRuntimeStateEnum"

    def to_internal_value(self, data: Any) -> str:
        problem = status_problem(data)
        if problem is not None:
            self.fail(problem, input=data)
        return str(data)


class TimestampField(serializers.FloatField):
    """Seconds since the epoch (marimo's ``time.time()``), by the rule
    :func:`~kernel_status.mirror.events.timestamp_problem`: it refuses NaN, infinities,
    booleans and strings, which a lax float field would read as 1970 or parse."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", MIN_EPOCH_SECONDS)
        kwargs.setdefault("max_value", MAX_EPOCH_SECONDS)
        # The clock guard depends on the server's clock, which a static schema cannot state.
        kwargs.setdefault(
            "help_text",
            "Seconds since the epoch. At most KERNEL_STATUS_MAX_CLOCK_SKEW (300 s by default) "
            "ahead of the server's clock: a later one makes the batch a 400.",
        )
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> float:
        problem = timestamp_problem(data)
        if problem is not None:
            self.fail(problem, min_value=MIN_EPOCH_SECONDS, max_value=MAX_EPOCH_SECONDS)
        return float(data)


class StrictBooleanField(serializers.BooleanField):
    """JSON ``true``/``false`` only: ``"false"`` or ``0`` is an error, not a guess (the rule
    :func:`~kernel_status.mirror.events.stale_inputs_problem`)."""

    def to_internal_value(self, data: Any) -> bool:
        problem = stale_inputs_problem(data)
        if problem is not None:
            self.fail(problem, input=data)
        return bool(data)


class EventDataSerializer(serializers.Serializer[Any]):
    """The ``data`` of one event op; turns itself into a write-API event."""

    def to_event(self, received_at: datetime) -> KernelEvent:
        return self.build_event(self.validated_data, received_at)

    def build_event(self, data: Mapping[str, Any], received_at: datetime) -> KernelEvent:
        """The event of validated ``data``; ``received_at`` stands in for a missing timestamp."""
        raise NotImplementedError


def _timestamp_or(data: Mapping[str, Any], received_at: datetime) -> datetime:
    timestamp = data.get("timestamp")
    return received_at if timestamp is None else from_epoch(timestamp)


class CellIdField(serializers.CharField):
    """A cell id: the constraints of :func:`~kernel_status.validators.cell_id_problem`, which
    the schema states as ``minLength``, ``maxLength`` and ``pattern``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        problem = cell_id_problem(data)
        if problem is not None:
            raise serializers.ValidationError(f"Cell id {problem}.")
        return data


class StrictCharField(serializers.CharField):
    """JSON strings only: ``0`` or ``false`` is an error, not ``"0"``."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_serializer(component_name="CellOpData")
class CellOpDataSerializer(EventDataSerializer):
    """marimo's cell notification. Other keys (output, console, ...) are accepted and ignored."""

    cell_id = CellIdField()
    status = CellRuntimeStateField(required=False, allow_null=True)
    stale_inputs = StrictBooleanField(required=False, allow_null=True)
    timestamp = TimestampField()

    def to_event(self, received_at: datetime) -> CellNotification:
        return self.build_event(self.validated_data, received_at)

    def build_event(self, data: Mapping[str, Any], received_at: datetime) -> CellNotification:
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

    def build_event(self, data: Mapping[str, Any], received_at: datetime) -> KernelStarted:
        return KernelStarted(_timestamp_or(data, received_at))


@extend_schema_serializer(component_name="KernelHeartbeatData")
class KernelHeartbeatDataSerializer(EventDataSerializer):
    """When the kernel was last seen alive (default: when the server received it)."""

    timestamp = TimestampField(required=False)

    def build_event(self, data: Mapping[str, Any], received_at: datetime) -> KernelHeartbeat:
        return KernelHeartbeat(_timestamp_or(data, received_at))


@extend_schema_serializer(component_name="KernelStoppedData")
class KernelStoppedDataSerializer(EventDataSerializer):
    """When the kernel process exited (default: when the server received it), and why."""

    timestamp = TimestampField(required=False)
    exit_code = serializers.IntegerField(
        required=False, allow_null=True, min_value=EXIT_CODE_MIN, max_value=EXIT_CODE_MAX
    )
    cause = StrictCharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=EXIT_CAUSE_MAX_LENGTH
    )

    def build_event(self, data: Mapping[str, Any], received_at: datetime) -> KernelStopped:
        return KernelStopped(
            _timestamp_or(data, received_at),
            exit_code=data.get("exit_code"),
            cause=data.get("cause", ""),
        )


class OpField(serializers.ChoiceField):
    """The ``op`` of one kind of event: exactly one value, documented as an enum of one."""

    def __init__(self, op: str, **kwargs: Any) -> None:
        self.op = op
        super().__init__(choices=[op], help_text=f'Always "{op}".', **kwargs)


class EventSerializer(serializers.Serializer[Any]):
    """One frame, ``{"op": ..., "data": {...}}``; other keys are ignored."""

    def to_event(self, received_at: datetime) -> KernelEvent:
        data: EventDataSerializer = self.fields["data"]  # type: ignore[assignment]
        return data.build_event(self.validated_data["data"], received_at)


def _event_serializer(op: str, data: type[EventDataSerializer]) -> type[EventSerializer]:
    name = "".join(part.capitalize() for part in op.split("-")) + "Event"
    cls = type(
        f"{name}Serializer",
        (EventSerializer,),
        {"__doc__": f'An event with op "{op}".', "op": OpField(op), "data": data()},
    )
    return extend_schema_serializer(component_name=name)(cls)


# Every op the endpoint takes, with its event; any other op is rejected.
EVENT_SERIALIZERS: dict[str, type[EventSerializer]] = {
    op: _event_serializer(op, data)
    for op, data in {
        "cell-op": CellOpDataSerializer,
        "kernel-started": KernelStartedDataSerializer,
        "kernel-heartbeat": KernelHeartbeatDataSerializer,
        "kernel-stopped": KernelStoppedDataSerializer,
    }.items()
}


class KernelEventField(serializers.Field):  # type: ignore[type-arg]
    """One item of ``events``, validated by the serializer of its ``op`` into a write-API event.

    The schema documents it as a ``oneOf`` of the event components with a discriminator on
    ``op`` (see :mod:`kernel_status.api.openapi.extensions`). The moment of arrival, for events
    without a timestamp, comes from the context's ``received_at``.
    """

    default_error_messages = {
        "not_object": "Must be a JSON object.",
        "op": "Must be one of: {ops}.",
    }

    def to_internal_value(self, data: Any) -> KernelEvent:
        if not isinstance(data, Mapping):
            self.fail("not_object")
        op = data.get("op")
        serializer_class = EVENT_SERIALIZERS.get(op) if isinstance(op, str) else None
        if serializer_class is None:
            ops = ", ".join(f'"{op}"' for op in EVENT_SERIALIZERS)
            raise serializers.ValidationError({"op": [self.error_messages["op"].format(ops=ops)]})
        serializer = serializer_class(data=data)
        if not serializer.is_valid():
            raise serializers.ValidationError(serializer.errors)
        received_at: datetime = self.context["received_at"]
        event: KernelEvent = serializer.to_event(received_at)
        skew = conf.max_clock_skew
        if skew is not None and event.timestamp > received_at + skew:
            # One event stamped far ahead would pin the session: nothing later could undo it.
            raise serializers.ValidationError(
                {
                    "data": {
                        "timestamp": [
                            "Is more than KERNEL_STATUS_MAX_CLOCK_SKEW "
                            f"({skew.total_seconds():g} s) ahead of the server clock."
                        ]
                    }
                }
            )
        return event

    def to_representation(self, value: Any) -> Any:
        raise NotImplementedError("events are only read")


@extend_schema_serializer(component_name="KernelEventBatch")
class KernelEventBatchSerializer(serializers.Serializer[Any]):
    """Events of one session, in any order: timestamps decide."""

    # Its size limit (413) is checked by kernel_status.api.parsers, with the body's, before any
    # item is validated.
    events = serializers.ListField(
        child=KernelEventField(),
        help_text="marimo `cell-op` frames and lifecycle reports. At most "
        "KERNEL_STATUS_MAX_BATCH_SIZE (default 1000) per request.",
    )
