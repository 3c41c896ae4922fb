from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.event_enum import EventEnum

T = TypeVar("T", bound="KernelSessionEvent")


@_attrs_define
class KernelSessionEvent:
    """One event of ``GET /api/kernel/sessions/stream``, as its SSE fields.

    Attributes:
        id (str): The change position after this event (digits): send it back as `Last-Event-ID`.
        event (EventEnum): * `status` - status
            * `removed` - removed
            * `ready` - ready
            * `reset` - reset
            * `reconnect` - reconnect
            * `error` - error
        data (str): The event's payload as JSON text: for `status`, a `KernelSession`; for the others, the object that
            `x-data-schemas` gives under the event's name.
    """

    id: str
    event: EventEnum
    data: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        id = self.id

        event = self.event.value

        data = self.data

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "id": id,
                "event": event,
                "data": data,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        id = d.pop("id")

        event = EventEnum(d.pop("event"))

        data = d.pop("data")

        kernel_session_event = cls(
            id=id,
            event=event,
            data=data,
        )

        kernel_session_event.additional_properties = d
        return kernel_session_event

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
