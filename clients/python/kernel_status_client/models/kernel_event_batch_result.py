from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="KernelEventBatchResult")


@_attrs_define
class KernelEventBatchResult:
    """What the batch did.

    Attributes:
        applied (int): Events written.
        ignored_older (int): Events older than what was stored (or repeated).
    """

    applied: int
    ignored_older: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        applied = self.applied

        ignored_older = self.ignored_older

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "applied": applied,
                "ignored_older": ignored_older,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        applied = d.pop("applied")

        ignored_older = d.pop("ignored_older")

        kernel_event_batch_result = cls(
            applied=applied,
            ignored_older=ignored_older,
        )

        kernel_event_batch_result.additional_properties = d
        return kernel_event_batch_result

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
