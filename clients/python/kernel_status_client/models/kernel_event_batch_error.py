from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.kernel_event_batch_item_error import KernelEventBatchItemError


T = TypeVar("T", bound="KernelEventBatchError")


@_attrs_define
class KernelEventBatchError:
    """A rejected request: nothing was applied. ``errors`` lists each invalid item, when the
    items are what is wrong (not for a bad header or a body that is not a batch).

        Attributes:
            detail (str): What went wrong, for a human.
            errors (list[KernelEventBatchItemError] | Unset):
    """

    detail: str
    errors: list[KernelEventBatchItemError] | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        detail = self.detail

        errors: list[dict[str, Any]] | Unset = UNSET
        if not isinstance(self.errors, Unset):
            errors = []
            for errors_item_data in self.errors:
                errors_item = errors_item_data.to_dict()
                errors.append(errors_item)

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "detail": detail,
            }
        )
        if errors is not UNSET:
            field_dict["errors"] = errors

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.kernel_event_batch_item_error import KernelEventBatchItemError  # noqa: PLC0415

        d = dict(src_dict)
        detail = d.pop("detail")

        _errors = d.pop("errors", UNSET)
        errors: list[KernelEventBatchItemError] | Unset = UNSET
        if _errors is not UNSET:
            errors = []
            for errors_item_data in _errors:
                errors_item = KernelEventBatchItemError.from_dict(errors_item_data)

                errors.append(errors_item)

        kernel_event_batch_error = cls(
            detail=detail,
            errors=errors,
        )

        kernel_event_batch_error.additional_properties = d
        return kernel_event_batch_error

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
