from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="KernelStartedData")


@_attrs_define
class KernelStartedData:
    """When the new kernel process started.

    Required: a start stamped on arrival would be newer than the cell-ops sent with it, and
    would reset them to idle.

        Attributes:
            timestamp (float): Seconds since the epoch. At most KERNEL_STATUS_MAX_CLOCK_SKEW (300 s by default) ahead of the
                server's clock: a later one makes the batch a 400.
    """

    timestamp: float
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        timestamp = self.timestamp

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "timestamp": timestamp,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        timestamp = d.pop("timestamp")

        kernel_started_data = cls(
            timestamp=timestamp,
        )

        kernel_started_data.additional_properties = d
        return kernel_started_data

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
