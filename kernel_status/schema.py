"""drf-spectacular extensions, loaded by :class:`kernel_status.apps.KernelStatusConfig`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent


class PinnedEnumFieldExtension(OpenApiSerializerFieldExtension):  # type: ignore[no-untyped-call]
    """Documents a :class:`~kernel_status.serializers.PinnedEnumField` as a named component.

    Registering the component ourselves pins its name, so a host project's schema needs no
    ``ENUM_NAME_OVERRIDES`` for our enums.
    """

    target_class = "kernel_status.serializers.PinnedEnumField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        field = self.target
        name = field.enum_component_name
        schema: dict[str, Any] = {
            "type": "string",
            "enum": list(field.choices_class.values),
            "description": (field.choices_class.__doc__ or "").strip(),
        }
        component = ResolvedComponent(  # type: ignore[no-untyped-call]
            name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema
        )
        auto_schema.registry.register_on_missing(component)
        if getattr(field, "allow_null", False):
            return {"allOf": [component.ref], "nullable": True}
        return component.ref
