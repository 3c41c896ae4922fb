from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.cell_runtime_state_enum import CellRuntimeStateEnum
from ..types import UNSET, Unset

T = TypeVar("T", bound="CellOpData")


@_attrs_define
class CellOpData:
    """marimo's cell notification. Other keys (output, console, ...) are accepted and ignored.

    Attributes:
        cell_id (str):
        timestamp (float): Seconds since the epoch. At most KERNEL_STATUS_MAX_CLOCK_SKEW (300 s by default) ahead of the
            server's clock: a later one makes the batch a 400.
        status (CellRuntimeStateEnum | None | Unset):
        stale_inputs (bool | None | Unset):
    """

    cell_id: str
    timestamp: float
    status: CellRuntimeStateEnum | None | Unset = UNSET
    stale_inputs: bool | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        cell_id = self.cell_id

        timestamp = self.timestamp

        status: None | str | Unset
        if isinstance(self.status, Unset):
            status = UNSET
        elif isinstance(self.status, CellRuntimeStateEnum):
            status = self.status.value
        else:
            status = self.status

        stale_inputs: bool | None | Unset
        if isinstance(self.stale_inputs, Unset):
            stale_inputs = UNSET
        else:
            stale_inputs = self.stale_inputs

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "cell_id": cell_id,
                "timestamp": timestamp,
            }
        )
        if status is not UNSET:
            field_dict["status"] = status
        if stale_inputs is not UNSET:
            field_dict["stale_inputs"] = stale_inputs

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        cell_id = d.pop("cell_id")

        timestamp = d.pop("timestamp")

        def _parse_status(data: object) -> CellRuntimeStateEnum | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                status_type_1 = CellRuntimeStateEnum(data)

                return status_type_1
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(CellRuntimeStateEnum | None | Unset, data)

        status = _parse_status(d.pop("status", UNSET))

        def _parse_stale_inputs(data: object) -> bool | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(bool | None | Unset, data)

        stale_inputs = _parse_stale_inputs(d.pop("stale_inputs", UNSET))

        cell_op_data = cls(
            cell_id=cell_id,
            timestamp=timestamp,
            status=status,
            stale_inputs=stale_inputs,
        )

        cell_op_data.additional_properties = d
        return cell_op_data

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
