"""Serializers of kernel_status's API bodies."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from kernel_status.choices import KernelStatus
from kernel_status.models import Session


class KernelStatusField(serializers.ChoiceField):
    """A :class:`KernelStatus` value; documented as the pinned ``KernelStatusStateEnum``."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(choices=KernelStatus.choices, **kwargs)  # type: ignore[arg-type]


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
