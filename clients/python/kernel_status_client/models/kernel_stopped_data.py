from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

T = TypeVar("T", bound="KernelStoppedData")


@_attrs_define
class KernelStoppedData:
    """When the kernel process exited (default: when the server received it), and why.

    Attributes:
        timestamp (float | Unset): Seconds since the epoch. At most KERNEL_STATUS_MAX_CLOCK_SKEW (300 s by default)
            ahead of the server's clock: a later one makes the batch a 400.
        exit_code (int | None | Unset):
        cause (str | Unset):
    """

    timestamp: float | Unset = UNSET
    exit_code: int | None | Unset = UNSET
    cause: str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        timestamp = self.timestamp

        exit_code: int | None | Unset
        if isinstance(self.exit_code, Unset):
            exit_code = UNSET
        else:
            exit_code = self.exit_code

        cause = self.cause

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({})
        if timestamp is not UNSET:
            field_dict["timestamp"] = timestamp
        if exit_code is not UNSET:
            field_dict["exit_code"] = exit_code
        if cause is not UNSET:
            field_dict["cause"] = cause

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        timestamp = d.pop("timestamp", UNSET)

        def _parse_exit_code(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        exit_code = _parse_exit_code(d.pop("exit_code", UNSET))

        cause = d.pop("cause", UNSET)

        kernel_stopped_data = cls(
            timestamp=timestamp,
            exit_code=exit_code,
            cause=cause,
        )

        kernel_stopped_data.additional_properties = d
        return kernel_stopped_data

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
