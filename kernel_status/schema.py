"""drf-spectacular extensions, loaded by :class:`kernel_status.apps.KernelStatusConfig`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent

from kernel_status.choices import KernelStatus

KERNEL_STATUS_ENUM_COMPONENT = "KernelStatusStateEnum"


class KernelStatusFieldExtension(OpenApiSerializerFieldExtension):  # type: ignore[no-untyped-call]
    """Documents :class:`~kernel_status.serializers.KernelStatusField` as a named enum component.

    drf-spectacular names enums after the field ("StateEnum"), which collides with any other
    ``state`` enum in a host project; registering the component ourselves pins its name.
    """

    target_class = "kernel_status.serializers.KernelStatusField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        component = ResolvedComponent(  # type: ignore[no-untyped-call]
            name=KERNEL_STATUS_ENUM_COMPONENT,
            type=ResolvedComponent.SCHEMA,
            object=KERNEL_STATUS_ENUM_COMPONENT,
            schema={
                "type": "string",
                "enum": list(KernelStatus.values),
                "description": "Derived state of a session's kernel.",
            },
        )
        auto_schema.registry.register_on_missing(component)
        return component.ref
