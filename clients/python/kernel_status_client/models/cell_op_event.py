from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.cell_op_event_op_enum import CellOpEventOpEnum

if TYPE_CHECKING:
    from ..models.cell_op_data import CellOpData


T = TypeVar("T", bound="CellOpEvent")


@_attrs_define
class CellOpEvent:
    """An event with op "cell-op".

    Attributes:
        op (CellOpEventOpEnum):
        data (CellOpData): marimo's cell notification. Other keys (output, console, ...) are accepted and ignored.
    """

    op: CellOpEventOpEnum
    data: CellOpData
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
        from ..models.cell_op_data import CellOpData  # noqa: PLC0415

        d = dict(src_dict)
        op = CellOpEventOpEnum(d.pop("op"))

        data = CellOpData.from_dict(d.pop("data"))

        cell_op_event = cls(
            op=op,
            data=data,
        )

        cell_op_event.additional_properties = d
        return cell_op_event

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
