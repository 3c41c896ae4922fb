"""drf-spectacular extensions, loaded by :class:`kernel_status.apps.KernelStatusConfig`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent

from kernel_status.mirror.wire import EVENT_SERIALIZERS
from kernel_status.validators import CELL_ID_MAX_LENGTH, id_schema


class PinnedEnumFieldExtension(OpenApiSerializerFieldExtension):  # type: ignore[no-untyped-call]
    """Documents a :class:`~kernel_status.mirror.wire.PinnedEnumField` as a named component.

    Registering the component ourselves pins its name, so a host project's schema needs no
    ``ENUM_NAME_OVERRIDES`` for our enums.
    """

    target_class = "kernel_status.mirror.wire.PinnedEnumField"
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


class OpFieldExtension(OpenApiSerializerFieldExtension):  # type: ignore[no-untyped-call]
    """An event's ``op``: an enum of its one value, so each event component pins its op."""

    target_class = "kernel_status.mirror.wire.OpField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        return {"type": "string", "enum": [self.target.op], "description": self.target.help_text}


class CellIdFieldExtension(OpenApiSerializerFieldExtension):  # type: ignore[no-untyped-call]
    """A cell id, with the length and pattern the server checks."""

    target_class = "kernel_status.mirror.wire.CellIdField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        return id_schema(CELL_ID_MAX_LENGTH)


class KernelEventFieldExtension(OpenApiSerializerFieldExtension):  # type: ignore[no-untyped-call]
    """One item of a batch: ``oneOf`` the event components, with a discriminator on ``op``
    that maps every op the server takes (and the server takes no other)."""

    target_class = "kernel_status.mirror.wire.KernelEventField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        refs = {
            op: auto_schema.resolve_serializer(serializer, direction).ref  # type: ignore[arg-type]
            for op, serializer in EVENT_SERIALIZERS.items()
        }
        union: dict[str, Any] = {
            "oneOf": list(refs.values()),
            "discriminator": {
                "propertyName": "op",
                "mapping": {op: ref["$ref"] for op, ref in refs.items()},
            },
        }
        component = ResolvedComponent(  # type: ignore[no-untyped-call]
            name="KernelEvent", type=ResolvedComponent.SCHEMA, object="KernelEvent", schema=union
        )
        auto_schema.registry.register_on_missing(component)
        return component.ref
