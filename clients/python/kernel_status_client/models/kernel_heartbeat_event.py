from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.kernel_heartbeat_event_op_enum import KernelHeartbeatEventOpEnum

if TYPE_CHECKING:
    from ..models.kernel_heartbeat_data import KernelHeartbeatData


T = TypeVar("T", bound="KernelHeartbeatEvent")


@_attrs_define
class KernelHeartbeatEvent:
    """An event with op "kernel-heartbeat".

    Attributes:
        op (KernelHeartbeatEventOpEnum):
        data (KernelHeartbeatData): When the kernel was last seen alive (default: when the server received it).
    """

    op: KernelHeartbeatEventOpEnum
    data: KernelHeartbeatData
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        op = self.op.value

        data = self.data.to_dict()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "op": op,
                "data": data,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.kernel_heartbeat_data import KernelHeartbeatData  # noqa: PLC0415

        d = dict(src_dict)
        op = KernelHeartbeatEventOpEnum(d.pop("op"))

        data = KernelHeartbeatData.from_dict(d.pop("data"))

        kernel_heartbeat_event = cls(
            op=op,
            data=data,
        )

        kernel_heartbeat_event.additional_properties = d
        return kernel_heartbeat_event

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
