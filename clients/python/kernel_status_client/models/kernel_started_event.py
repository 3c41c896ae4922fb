from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.kernel_started_event_op_enum import KernelStartedEventOpEnum

if TYPE_CHECKING:
    from ..models.kernel_started_data import KernelStartedData


T = TypeVar("T", bound="KernelStartedEvent")


@_attrs_define
class KernelStartedEvent:
    """An event with op "kernel-started".

    Attributes:
        op (KernelStartedEventOpEnum):
        data (KernelStartedData): When the new kernel process started.

            Required: a start stamped on arrival would be newer than the cell-ops sent with it, and
            would reset them to idle.
    """

    op: KernelStartedEventOpEnum
    data: KernelStartedData
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
        from ..models.kernel_started_data import KernelStartedData  # noqa: PLC0415

        d = dict(src_dict)
        op = KernelStartedEventOpEnum(d.pop("op"))

        data = KernelStartedData.from_dict(d.pop("data"))

        kernel_started_event = cls(
            op=op,
            data=data,
        )

        kernel_started_event.additional_properties = d
        return kernel_started_event

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
