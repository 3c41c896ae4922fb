from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

if TYPE_CHECKING:
    from ..models.cell_op_event import CellOpEvent
    from ..models.kernel_heartbeat_event import KernelHeartbeatEvent
    from ..models.kernel_started_event import KernelStartedEvent
    from ..models.kernel_stopped_event import KernelStoppedEvent


T = TypeVar("T", bound="KernelEventBatch")


@_attrs_define
class KernelEventBatch:
    """Events of one session, in any order: timestamps decide.

    Attributes:
        events (list[CellOpEvent | KernelHeartbeatEvent | KernelStartedEvent | KernelStoppedEvent]): marimo `cell-op`
            frames and lifecycle reports. At most KERNEL_STATUS_MAX_BATCH_SIZE (default 1000) per request.
    """

    events: list[CellOpEvent | KernelHeartbeatEvent | KernelStartedEvent | KernelStoppedEvent]
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.cell_op_event import CellOpEvent  # noqa: PLC0415
        from ..models.kernel_heartbeat_event import KernelHeartbeatEvent  # noqa: PLC0415
        from ..models.kernel_started_event import KernelStartedEvent  # noqa: PLC0415

        events = []
        for events_item_data in self.events:
            events_item: dict[str, Any]
            if isinstance(events_item_data, CellOpEvent):
                events_item = events_item_data.to_dict()
            elif isinstance(events_item_data, KernelStartedEvent):
                events_item = events_item_data.to_dict()
            elif isinstance(events_item_data, KernelHeartbeatEvent):
                events_item = events_item_data.to_dict()
            else:
                events_item = events_item_data.to_dict()

            events.append(events_item)

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "events": events,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.cell_op_event import CellOpEvent  # noqa: PLC0415
        from ..models.kernel_heartbeat_event import KernelHeartbeatEvent  # noqa: PLC0415
        from ..models.kernel_started_event import KernelStartedEvent  # noqa: PLC0415
        from ..models.kernel_stopped_event import KernelStoppedEvent  # noqa: PLC0415

        d = dict(src_dict)
        events = []
        _events = d.pop("events")
        for events_item_data in _events:

            def _parse_events_item(
                data: object,
            ) -> CellOpEvent | KernelHeartbeatEvent | KernelStartedEvent | KernelStoppedEvent:
                try:
                    if not isinstance(data, dict):
                        raise TypeError()
                    componentsschemas_kernel_event_type_0 = CellOpEvent.from_dict(data)

                    return componentsschemas_kernel_event_type_0
                except (TypeError, ValueError, AttributeError, KeyError):
                    pass
                try:
                    if not isinstance(data, dict):
                        raise TypeError()
                    componentsschemas_kernel_event_type_1 = KernelStartedEvent.from_dict(data)

                    return componentsschemas_kernel_event_type_1
                except (TypeError, ValueError, AttributeError, KeyError):
                    pass
                try:
                    if not isinstance(data, dict):
                        raise TypeError()
                    componentsschemas_kernel_event_type_2 = KernelHeartbeatEvent.from_dict(data)

                    return componentsschemas_kernel_event_type_2
                except (TypeError, ValueError, AttributeError, KeyError):
                    pass
                if not isinstance(data, dict):
                    raise TypeError()
                componentsschemas_kernel_event_type_3 = KernelStoppedEvent.from_dict(data)

                return componentsschemas_kernel_event_type_3

            events_item = _parse_events_item(events_item_data)

            events.append(events_item)

        kernel_event_batch = cls(
            events=events,
        )

        kernel_event_batch.additional_properties = d
        return kernel_event_batch

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
