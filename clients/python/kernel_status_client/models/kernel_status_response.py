from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.kernel_status_state_enum import KernelStatusStateEnum

T = TypeVar("T", bound="KernelStatusResponse")


@_attrs_define
class KernelStatusResponse:
    """Answer of `GET /api/kernel/status`.

    Attributes:
        state (KernelStatusStateEnum): Derived state of a session's kernel, as `GET /api/kernel/status` answers it.
    """

    state: KernelStatusStateEnum
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        state = self.state.value

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "state": state,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        state = KernelStatusStateEnum(d.pop("state"))

        kernel_status_response = cls(
            state=state,
        )

        kernel_status_response.additional_properties = d
        return kernel_status_response

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
